//! The cabinet client's side of the register map: how frames are encoded
//! into and decoded from 16-bit registers, which reads and writes cover a
//! map, and how wrapping counters are diffed.
//!
//! Where each item lives is [`RegisterMap`], which the controller file
//! configures (`src/config/registers.rs`, engineer's page `docs/modbus.md`);
//! what goes into the registers is here: status bits, requested modes,
//! indication values, the u64 time words.

use crate::config::registers::{
    APS_LEN, Block, CAMERA_ZONES, Item, PRESENCE_LEN, RegisterMap, SIM_TIME_LEN, STEP_ACK_LEN, VOLUME_CHANNELS,
};
use crate::core::detector::most_vehicles;
use crate::core::queue::QUEUE_MEASURED_MAX;
use crate::core::{
    CabinetStatus, Countdown, FlashReason, Indication, InputFrame, Instant, MAX_DETECTORS, MAX_OVERLAPS, MAX_PHASES,
    OutputFrame, PedIndication, PhaseSet, Span,
};

/// Most registers one read may ask for (Modbus FC03/FC04 limit).
pub const MAX_READ: u16 = 125;
/// Most registers one write may carry (Modbus FC16 limit).
pub const MAX_WRITE: u16 = 123;
/// Items this close (in registers) share one read; the registers between
/// them are read too, so the device must answer for them.
pub const MAX_READ_GAP: u16 = 16;

/// Status bit: cabinet door open (alarm).
pub const STATUS_DOOR_OPEN: u16 = 1 << 0;
/// Status bit: police-panel / technician manual flash switch on.
pub const STATUS_MANUAL_FLASH: u16 = 1 << 1;
/// Status bit: the MMU (conflict monitor) has tripped; the cabinet flashes.
pub const STATUS_MMU_FAULT: u16 = 1 << 2;
/// Status bit: mains power failed.
pub const STATUS_POWER_FAIL: u16 = 1 << 3;
/// Status bit: the heads are on the cabinet's flash (flash sense),
/// whatever the reason. Informational.
pub const STATUS_CABINET_FLASH: u16 = 1 << 4;

/// Offsets within the `aps` registers: the accessible walk message, the
/// push-button locator tone, the extended clearance granted.
pub const APS_WALK: u16 = 0;
pub const APS_LOCATOR: u16 = 1;
pub const APS_EXTENDED: u16 = 2;

/// Requested mode: nothing written yet (power-up value).
pub const MODE_NONE: u16 = 0;
/// Requested mode: the heads follow the indications written.
pub const MODE_NORMAL: u16 = 1;
/// Requested mode: the controller is in flash (the indications written are
/// the flash pattern); a cabinet may use its flash transfer relays.
pub const MODE_FLASH: u16 = 2;

/// The reads that cover `items`: items sorted by address share a read while
/// the gap between them is at most [`MAX_READ_GAP`] and the read stays
/// within [`MAX_READ`] registers. The default map is one read.
pub fn plan_reads(items: &[Item]) -> Vec<Block> {
    let mut blocks: Vec<Block> = items.iter().map(|i| i.block).filter(|b| b.len > 0).collect();
    blocks.sort();
    let mut out: Vec<Block> = Vec::new();
    for b in blocks {
        if let Some(last) = out.last_mut() {
            let gap = (b.start as u32).saturating_sub(last.end());
            let end = last.end().max(b.end());
            if gap <= MAX_READ_GAP as u32 && end - last.start as u32 <= MAX_READ as u32 {
                last.len = (end - last.start as u32) as u16;
                continue;
            }
        }
        out.push(b);
    }
    out
}

/// The writes for `items`: only registers that are items are written, so a
/// write covers a contiguous run (at most [`MAX_WRITE`] registers). The
/// default map is one write.
pub fn plan_writes(items: &[Item]) -> Vec<Block> {
    let mut blocks: Vec<Block> = items.iter().map(|i| i.block).filter(|b| b.len > 0).collect();
    blocks.sort();
    let mut out: Vec<Block> = Vec::new();
    for b in blocks {
        if let Some(last) = out.last_mut()
            && b.start as u32 == last.end()
            && last.len as u32 + b.len as u32 <= MAX_WRITE as u32
        {
            last.len += b.len;
            continue;
        }
        out.push(b);
    }
    // A single item longer than one write (not in any valid map) is split.
    out.into_iter()
        .flat_map(|b| {
            (0..b.len.div_ceil(MAX_WRITE))
                .map(move |k| Block::new(b.start + k * MAX_WRITE, (b.len - k * MAX_WRITE).min(MAX_WRITE)))
        })
        .collect()
}

/// Register values fetched by reads, looked up by address.
#[derive(Debug)]
pub struct Fetched<'a> {
    pub reads: &'a [(Block, Vec<u16>)],
}

impl Fetched<'_> {
    pub fn get(&self, addr: u16) -> u16 {
        self.reads
            .iter()
            .find(|(b, _)| b.contains(addr))
            .and_then(|(b, v)| v.get((addr - b.start) as usize).copied())
            .unwrap_or(0)
    }

    fn u64_at(&self, addr: u16) -> u64 {
        (0..4).fold(0u64, |acc, k| acc << 16 | self.get(addr.wrapping_add(k)) as u64)
    }
}

/// The cabinet's inputs as registers hold them: counters are raw (the
/// client diffs them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputImage {
    pub presence: u64,
    pub status: u16,
    pub sim_time_ms: u64,
    pub sim_step_ms: u16,
    pub volume: [u16; MAX_DETECTORS],
    pub camera: [u16; CAMERA_ZONES as usize],
    pub camera_queue: [u16; CAMERA_ZONES as usize],
    /// Preemption inputs, bit `n - 1` for input `n` (bits 8..15 unused).
    pub preempt: u16,
    /// Transit priority inputs, bit `n - 1` for phase `n`.
    pub priority: u16,
}

impl Default for InputImage {
    fn default() -> Self {
        InputImage {
            presence: 0,
            status: 0,
            sim_time_ms: 0,
            sim_step_ms: 0,
            volume: [0; MAX_DETECTORS],
            camera: [0; CAMERA_ZONES as usize],
            camera_queue: [0; CAMERA_ZONES as usize],
            preempt: 0,
            priority: 0,
        }
    }
}

impl InputImage {
    /// Decode from fetched reads with `map`.
    pub fn decode(map: &RegisterMap, f: &Fetched<'_>) -> Self {
        let mut img = InputImage {
            presence: (0..PRESENCE_LEN).fold(0u64, |acc, k| acc | (f.get(map.presence + k) as u64) << (16 * k)),
            status: f.get(map.status),
            sim_time_ms: f.u64_at(map.sim_time),
            sim_step_ms: f.get(map.sim_step),
            preempt: f.get(map.preempt),
            priority: f.get(map.priority),
            ..InputImage::default()
        };
        for k in 0..map.volume_channels.min(VOLUME_CHANNELS) {
            img.volume[k as usize] = f.get(map.volume + k);
        }
        for k in 0..map.camera_zones.min(CAMERA_ZONES) {
            img.camera[k as usize] = f.get(map.camera + k);
        }
        for k in 0..map.camera_queue_zones.min(CAMERA_ZONES) {
            img.camera_queue[k as usize] = f.get(map.camera_queue + k);
        }
        img
    }

    /// Encode into an input-register space (`regs[addr]`), for servers.
    pub fn encode(&self, map: &RegisterMap, regs: &mut [u16]) {
        let mut put = |addr: u16, v: u16| {
            if let Some(r) = regs.get_mut(addr as usize) {
                *r = v;
            }
        };
        for k in 0..PRESENCE_LEN {
            put(map.presence + k, (self.presence >> (16 * k)) as u16);
        }
        put(map.status, self.status);
        for k in 0..SIM_TIME_LEN {
            put(map.sim_time + k, (self.sim_time_ms >> (16 * (3 - k))) as u16);
        }
        put(map.sim_step, self.sim_step_ms);
        put(map.preempt, self.preempt);
        put(map.priority, self.priority);
        for k in 0..map.volume_channels.min(VOLUME_CHANNELS) {
            put(map.volume + k, self.volume[k as usize]);
        }
        for k in 0..map.camera_zones.min(CAMERA_ZONES) {
            put(map.camera + k, self.camera[k as usize]);
        }
        for k in 0..map.camera_queue_zones.min(CAMERA_ZONES) {
            put(map.camera_queue + k, self.camera_queue[k as usize]);
        }
    }

    pub fn cabinet_status(&self) -> CabinetStatus {
        status_from_bits(self.status)
    }
}

pub fn status_from_bits(bits: u16) -> CabinetStatus {
    CabinetStatus {
        door_open: bits & STATUS_DOOR_OPEN != 0,
        manual_flash: bits & STATUS_MANUAL_FLASH != 0,
        mmu_fault: bits & STATUS_MMU_FAULT != 0,
        power_fail: bits & STATUS_POWER_FAIL != 0,
        second_master: false,
        slow: false,
    }
}

pub fn status_bits(s: CabinetStatus) -> u16 {
    (if s.door_open { STATUS_DOOR_OPEN } else { 0 })
        | (if s.manual_flash { STATUS_MANUAL_FLASH } else { 0 })
        | (if s.mmu_fault { STATUS_MMU_FAULT } else { 0 })
        | (if s.power_fail { STATUS_POWER_FAIL } else { 0 })
}

/// A holding register written with a value that is no indication
/// (phases and overlaps numbered from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadIndication {
    #[error("phase {phase} vehicle indication {value}")]
    Vehicle { phase: usize, value: u16 },
    #[error("phase {phase} pedestrian indication {value}")]
    Ped { phase: usize, value: u16 },
    #[error("overlap {overlap} indication {value}")]
    Overlap { overlap: usize, value: u16 },
}

/// What the daemon writes for one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputImage {
    pub frame: OutputFrame,
    pub heartbeat: u16,
    pub requested_mode: u16,
    pub flash_reason: u16,
    pub step_ack_ms: u64,
}

impl OutputImage {
    pub fn new(frame: OutputFrame, flash: Option<FlashReason>, heartbeat: u16, step_ack_ms: u64) -> Self {
        OutputImage {
            frame,
            heartbeat,
            requested_mode: if flash.is_some() { MODE_FLASH } else { MODE_NORMAL },
            flash_reason: flash.map_or(0, |r| r as u16),
            step_ack_ms,
        }
    }

    /// The value of holding register `addr` under `map`, if it is one of
    /// the items.
    pub fn value(&self, map: &RegisterMap, addr: u16) -> Option<u16> {
        let within =
            |start: u16, len: u16| (addr >= start && (addr as u32) < start as u32 + len as u32).then(|| addr - start);
        if let Some(k) = within(map.vehicle, MAX_PHASES as u16) {
            return Some(self.frame.vehicle[k as usize] as u16);
        }
        if let Some(k) = within(map.ped, MAX_PHASES as u16) {
            return Some(self.frame.ped[k as usize] as u16);
        }
        if let Some(k) = within(map.overlap, MAX_OVERLAPS as u16) {
            return Some(self.frame.overlap[k as usize] as u16);
        }
        if addr == map.heartbeat {
            return Some(self.heartbeat);
        }
        if addr == map.requested_mode {
            return Some(self.requested_mode);
        }
        if addr == map.flash_reason {
            return Some(self.flash_reason);
        }
        if map.ped_outputs {
            if let Some(k) = within(map.ped_countdown, MAX_PHASES as u16) {
                return Some(self.frame.ped_countdown[k as usize].secs());
            }
            if let Some(k) = within(map.aps, APS_LEN) {
                return Some(self.aps_word(k));
            }
        }
        within(map.step_ack, STEP_ACK_LEN).map(|k| (self.step_ack_ms >> (16 * (3 - k))) as u16)
    }

    /// Accessible pedestrian signal register `k` (from `aps`): the walk
    /// message, the locator tone, the extended clearance (bit `n - 1` for
    /// crossing `n`).
    fn aps_word(&self, k: u16) -> u16 {
        let f = &self.frame;
        match k {
            APS_WALK => f.accessible_walk,
            APS_LOCATOR => f.locator_tone(),
            _ => f.ped_extended,
        }
        .bits()
    }

    /// The registers of `block`.
    pub fn words(&self, map: &RegisterMap, block: Block) -> Vec<u16> {
        (0..block.len).map(|k| self.value(map, block.start + k).unwrap_or(0)).collect()
    }

    /// Decode from a holding-register space (`regs[addr]`), for servers.
    /// The first register that holds no indication is the error.
    pub fn decode(map: &RegisterMap, regs: &[u16]) -> Result<OutputImage, BadIndication> {
        let get = |addr: u16| regs.get(addr as usize).copied().unwrap_or(0);
        let mut frame = OutputFrame::default();
        for k in 0..MAX_PHASES {
            let value = get(map.vehicle + k as u16);
            frame.vehicle[k] = indication(value).ok_or(BadIndication::Vehicle { phase: k + 1, value })?;
            let value = get(map.ped + k as u16);
            frame.ped[k] = ped_indication(value).ok_or(BadIndication::Ped { phase: k + 1, value })?;
        }
        for k in 0..MAX_OVERLAPS {
            let value = get(map.overlap + k as u16);
            frame.overlap[k] = indication(value).ok_or(BadIndication::Overlap { overlap: k + 1, value })?;
        }
        if map.ped_outputs {
            for k in 0..MAX_PHASES {
                frame.ped_countdown[k] = Countdown::from_secs(get(map.ped_countdown + k as u16));
            }
            // The locator tone follows the pedestrian indications read above.
            frame.accessible_walk = PhaseSet::from_bits(get(map.aps + APS_WALK));
            frame.ped_extended = PhaseSet::from_bits(get(map.aps + APS_EXTENDED));
        }
        Ok(OutputImage {
            frame,
            heartbeat: get(map.heartbeat),
            requested_mode: get(map.requested_mode),
            flash_reason: get(map.flash_reason),
            step_ack_ms: (0..4).fold(0u64, |acc, k| acc << 16 | get(map.step_ack + k) as u64),
        })
    }
}

pub fn indication(v: u16) -> Option<Indication> {
    Some(match v {
        0 => Indication::Dark,
        1 => Indication::Red,
        2 => Indication::Yellow,
        3 => Indication::Green,
        4 => Indication::FlashingRed,
        5 => Indication::FlashingYellow,
        _ => return None,
    })
}

pub fn ped_indication(v: u16) -> Option<PedIndication> {
    Some(match v {
        0 => PedIndication::Dark,
        1 => PedIndication::DontWalk,
        2 => PedIndication::FlashingDontWalk,
        3 => PedIndication::Walk,
        _ => return None,
    })
}

/// Volume counters between two reads. The first read after a (re)connect
/// is the baseline and counts nothing, so a vehicle is never counted twice
/// across a reconnect (those that passed while the link was down are lost,
/// as they are for presence). 16-bit counters wrap: the difference is taken
/// with `wrapping_sub`. A frame the engine had no room for is not lost
/// either: [`CounterDiff::undelivered`] counts its vehicles again in the
/// next read's frame.
///
/// Counts that cannot be true are not counted: a step beyond what the lanes
/// can pass in the time between the two reads
/// ([`most_vehicles`](crate::core::detector::most_vehicles)) is a counter
/// fault, not traffic. That is also how a counter stepping backwards shows
/// (40,000 → 39,990 reads as a wrap of 65,526), while a real wrap is a
/// small step (65,535 → 3 is 4). Such a step counts nothing, its channel is
/// flagged in [`InputFrame::counter_faults`] and listed in
/// [`CounterDiff::implausible`], and the counter's new value is the
/// baseline for the next read.
#[derive(Clone, Debug, Default)]
pub struct CounterDiff {
    last: Option<Reading>,
    /// The baseline before the latest read.
    before: Option<Reading>,
    implausible: Vec<ImplausibleStep>,
}

/// Volume counters and camera zone counters as read, and when.
#[derive(Clone, Copy, Debug)]
struct Reading {
    at: Instant,
    volume: [u16; MAX_DETECTORS],
    camera: [u16; CAMERA_ZONES as usize],
}

/// Which counter a step was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// The channel's volume counter.
    Volume,
    /// Camera zone counter (0-based zone index), counting on the channel.
    CameraZone(usize),
}

/// A counter step that cannot be true, left uncounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImplausibleStep {
    pub counter: Counter,
    /// The detector channel it counts on (0-based index).
    pub channel: usize,
    pub before: u16,
    pub after: u16,
    /// Time between the two reads.
    pub elapsed: Span,
}

impl std::fmt::Display for ImplausibleStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (before, after, elapsed) = (self.before, self.after, self.elapsed);
        match self.counter {
            Counter::Volume => write!(f, "volume counter of channel {}", self.channel + 1)?,
            Counter::CameraZone(z) => write!(f, "camera zone {} counter (channel {})", z + 1, self.channel + 1)?,
        }
        let most = most_vehicles(elapsed);
        write!(
            f,
            " stepped {before} → {after} in {elapsed}: backwards, or more than the lanes can pass (at most {most})"
        )
    }
}

impl CounterDiff {
    /// Forget the baseline (after a reconnect).
    pub fn reset(&mut self) {
        self.last = None;
        self.before = None;
    }

    /// The latest read's frame did not reach the engine: diff the next
    /// read from the baseline before it, so its vehicles count there.
    pub fn undelivered(&mut self) {
        if let Some(b) = self.before {
            self.last = Some(b);
        }
    }

    /// The steps of the latest read that were not counted.
    pub fn implausible(&self) -> &[ImplausibleStep] {
        &self.implausible
    }

    /// Fill `frame.counts` and `frame.counter_faults` from `img`, read at
    /// `at`, and the previous read: volume counters on their channel,
    /// camera zones on the channel they map to (`zone_channels[z]`, 0-based
    /// channel index).
    pub fn apply(
        &mut self,
        img: &InputImage,
        at: Instant,
        volume_channels: u16,
        zone_channels: &[usize],
        frame: &mut InputFrame,
    ) {
        frame.counts = [0; MAX_DETECTORS];
        frame.counter_faults = 0;
        self.implausible.clear();
        if let Some(last) = &self.last {
            let elapsed = at.since(last.at);
            let most = most_vehicles(elapsed);
            let mut count = |counter: Counter, channel: usize, before: u16, after: u16| {
                let step = after.wrapping_sub(before);
                if u32::from(step) <= most {
                    frame.counts[channel] = frame.counts[channel].saturating_add(step);
                } else {
                    frame.counter_faults |= 1 << channel;
                    self.implausible.push(ImplausibleStep { counter, channel, before, after, elapsed });
                }
            };
            let n = (volume_channels as usize).min(MAX_DETECTORS);
            for (ch, (&after, &before)) in img.volume.iter().zip(&last.volume).enumerate().take(n) {
                count(Counter::Volume, ch, before, after);
            }
            for (zone, &ch) in zone_channels.iter().enumerate().take(CAMERA_ZONES as usize) {
                if ch < MAX_DETECTORS {
                    count(Counter::CameraZone(zone), ch, last.camera[zone], img.camera[zone]);
                }
            }
        }
        let reading = Reading { at, volume: img.volume, camera: img.camera };
        self.before = self.last.replace(reading);
    }
}

/// Fill `frame.queue` from the camera zones' queue registers: zone `z` (of
/// the first `queue_zones`) measures the channel `zone_channels[z]`
/// (0-based index). A level, not a counter: nothing to diff; a reading
/// past [`QUEUE_MEASURED_MAX`] is taken as that.
pub fn apply_camera_queues(img: &InputImage, queue_zones: u16, zone_channels: &[usize], frame: &mut InputFrame) {
    for (zone, &ch) in zone_channels.iter().enumerate().take(usize::from(queue_zones.min(CAMERA_ZONES))) {
        if ch < MAX_DETECTORS {
            frame.queue[ch] = img.camera_queue[zone].min(QUEUE_MEASURED_MAX);
            frame.queued |= 1 << ch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{DetectorChannel, PhaseId};

    #[test]
    fn default_map_is_one_read_and_one_write() {
        let m = RegisterMap::default();
        for lockstep in [false, true] {
            assert_eq!(plan_reads(&m.input_items(lockstep)), vec![Block::new(0, 108)]);
            let writes = plan_writes(&m.output_items(lockstep));
            assert_eq!(writes, vec![Block::new(0, if lockstep { 47 } else { 43 })]);
        }
    }

    #[test]
    fn moved_items_split_reads_and_writes() {
        let m = RegisterMap { camera: 1000, heartbeat: 500, ..RegisterMap::default() };
        assert_eq!(
            plan_reads(&m.input_items(false)),
            vec![Block::new(0, 74), Block::new(106, 2), Block::new(1000, 16)]
        );
        let w = plan_writes(&m.output_items(false));
        assert_eq!(w, vec![Block::new(0, 40), Block::new(41, 2), Block::new(500, 1)]);
    }

    #[test]
    fn inputs_round_trip() {
        let m = RegisterMap::default();
        let mut img = InputImage {
            presence: 0x8000_0000_0001_0003,
            status: STATUS_MANUAL_FLASH | STATUS_DOOR_OPEN,
            sim_time_ms: 1_767_571_200_123,
            sim_step_ms: 100,
            ..InputImage::default()
        };
        img.volume[63] = 65535;
        img.camera[2] = 7;
        img.preempt = 0b10;
        img.priority = 1 << 1;
        let mut regs = vec![0u16; 108];
        img.encode(&m, &mut regs);
        assert_eq!(regs[0], 0x0003);
        assert_eq!(regs[1], 0x0001);
        assert_eq!(regs[3], 0x8000);
        assert_eq!((regs[106], regs[107]), (0b10, 0b10));
        let reads = [(Block::new(0, 108), regs)];
        let back = InputImage::decode(&m, &Fetched { reads: &reads });
        assert_eq!(back, img);
        assert!(back.cabinet_status().manual_flash && back.cabinet_status().door_open);
        assert!(!back.cabinet_status().mmu_fault);
    }

    #[test]
    fn camera_queues_are_read_only_when_the_cabinet_has_them() {
        let m = RegisterMap { camera_queue_zones: 4, ..RegisterMap::default() };
        assert_eq!(plan_reads(&m.input_items(false)), vec![Block::new(0, 108)]);
        let mut img = InputImage::default();
        img.camera_queue[3] = 11;
        let mut regs = vec![0u16; 108];
        img.encode(&m, &mut regs);
        assert_eq!(regs[93], 11);
        let reads = [(Block::new(0, 108), regs)];
        assert_eq!(InputImage::decode(&m, &Fetched { reads: &reads }), img);
        // Zones land on their channels; zones past the count are not read.
        img.camera_queue[0] = 60_000;
        let zones = [DetectorChannel::new(33).unwrap().index(), 2, 3, 4, 5];
        let mut frame = InputFrame::default();
        apply_camera_queues(&img, 4, &zones, &mut frame);
        assert_eq!(frame.queued, 1 << 32 | 1 << 2 | 1 << 3 | 1 << 4);
        assert_eq!((frame.queue[32], frame.queue[4]), (QUEUE_MEASURED_MAX, 11));
    }

    #[test]
    fn outputs_round_trip() {
        let m = RegisterMap::default();
        let mut frame = OutputFrame::default();
        frame.vehicle[PhaseId::new(2).unwrap().index()] = Indication::Green;
        frame.ped[1] = PedIndication::Walk;
        frame.overlap[0] = Indication::Yellow;
        let img = OutputImage::new(frame, None, 41, 1_767_571_200_100);
        let words = img.words(&m, Block::new(0, 47));
        assert_eq!(words[1], 3);
        assert_eq!(words[17], 3);
        assert_eq!(words[32], 2);
        assert_eq!(words[40], 41);
        assert_eq!(words[41], MODE_NORMAL);
        assert_eq!(OutputImage::decode(&m, &words), Ok(img));
        let mut bad = words.clone();
        bad[3] = 9;
        assert_eq!(OutputImage::decode(&m, &bad), Err(BadIndication::Vehicle { phase: 4, value: 9 }));
        let flash = OutputImage::new(frame, Some(FlashReason::Shutdown), 1, 0);
        assert_eq!((flash.requested_mode, flash.flash_reason), (MODE_FLASH, 9));
    }

    /// With `ped_outputs`, the countdowns and the accessible signals' bits
    /// follow the step acknowledgement: one write in lockstep (0..66), two
    /// without (the step acknowledgement's registers are not written), and
    /// they read back as written.
    #[test]
    fn pedestrian_outputs_round_trip_after_the_step_acknowledgement() {
        let m = RegisterMap { ped_outputs: true, ..RegisterMap::default() };
        assert_eq!(plan_writes(&m.output_items(true)), vec![Block::new(0, 66)]);
        assert_eq!(plan_writes(&m.output_items(false)), vec![Block::new(0, 43), Block::new(47, 19)]);
        let (p2, p4) = (PhaseId::new(2).unwrap(), PhaseId::new(4).unwrap());
        let mut frame = OutputFrame::default();
        frame.ped[p2.index()] = PedIndication::Walk;
        frame.ped[p4.index()] = PedIndication::FlashingDontWalk;
        frame.ped_countdown[p4.index()] = Countdown::from_secs(17);
        frame.accessible_walk.insert(p2);
        frame.ped_extended.insert(p4);
        let img = OutputImage::new(frame, None, 7, 0);
        let words = img.words(&m, Block::new(0, 66));
        assert_eq!(words[47 + 3], 17, "phase 4's countdown");
        assert_eq!((words[63], words[64], words[65]), (0b10, 0b1000, 0b1000), "walk 2, locator 4, extended 4");
        assert_eq!(OutputImage::decode(&m, &words), Ok(img));
        // A cabinet without them is not written them.
        assert_eq!(img.value(&RegisterMap::default(), 50), None);
    }

    /// A read `ms` after the first.
    fn read(ms: u64) -> Instant {
        Instant::from_millis(1_000_000 + ms)
    }

    #[test]
    fn counters_wrap_and_rebaseline() {
        let mut diff = CounterDiff::default();
        let mut img = InputImage::default();
        img.volume[0] = 65530;
        img.camera[0] = 10;
        let zones = [DetectorChannel::new(33).unwrap().index()];
        let mut frame = InputFrame::default();
        diff.apply(&img, read(0), 64, &zones, &mut frame);
        assert_eq!(frame.counts[0], 0, "the first read is the baseline");
        img.volume[0] = 4; // wrapped: 65530 → 65535 → 0 → 4 is 10 vehicles
        img.camera[0] = 12;
        diff.apply(&img, read(5000), 64, &zones, &mut frame);
        assert_eq!((frame.counts[0], frame.counts[32]), (10, 2));
        assert_eq!(frame.counter_faults, 0, "10 vehicles in 5 s is a wrap: {:?}", diff.implausible());
        diff.reset();
        img.volume[0] = 500;
        diff.apply(&img, read(5100), 64, &zones, &mut frame);
        assert_eq!(frame.counts[0], 0, "after a reconnect the jump is not counted");
        assert_eq!(frame.counter_faults, 0, "nor is it a fault");
    }

    #[test]
    fn an_undelivered_frames_vehicles_count_in_the_next() {
        let mut diff = CounterDiff::default();
        let mut img = InputImage::default();
        let mut frame = InputFrame::default();
        let reads = [(100, false, 0), (103, true, 3), (105, false, 5), (106, false, 1)];
        for (k, (volume, undelivered, counted)) in reads.into_iter().enumerate() {
            img.volume[0] = volume;
            diff.apply(&img, read(1000 * k as u64), 64, &[], &mut frame);
            assert_eq!(frame.counts[0], counted, "read {volume}");
            if undelivered {
                diff.undelivered();
            }
        }
        img.volume[0] = 108;
        diff.apply(&img, read(4000), 64, &[], &mut frame);
        diff.undelivered();
        diff.undelivered();
        img.volume[0] = 110;
        diff.apply(&img, read(4100), 64, &[], &mut frame);
        assert_eq!(frame.counts[0], 4, "a second undelivered() changes nothing");
    }

    /// A counter stepping backwards (the 16-bit counter's "wrap" of
    /// 65,526) or further than the lanes pass is a fault, not traffic: the
    /// channel counts nothing and is flagged, the counter's new value is
    /// the next baseline, and the other channels count on. A real wrap in
    /// the same time counts.
    #[test]
    fn a_counter_stepping_backwards_counts_nothing_and_is_flagged() {
        let mut diff = CounterDiff::default();
        let mut img = InputImage::default();
        let mut frame = InputFrame::default();
        let zones = [DetectorChannel::new(33).unwrap().index()];
        img.volume[0] = 40_000;
        img.volume[1] = 65_535;
        img.volume[2] = 7;
        img.camera[0] = 100;
        diff.apply(&img, read(0), 64, &zones, &mut frame);
        img.volume[0] = 39_990; // backwards
        img.volume[1] = 3; // a wrap of 4 in a second: the bound
        img.volume[2] = 12; // 5 in a second: one too many
        img.camera[0] = 101;
        diff.apply(&img, read(1000), 64, &zones, &mut frame);
        assert_eq!(&frame.counts[..4], &[0, 4, 0, 0]);
        assert_eq!(frame.counts[32], 1);
        assert_eq!(frame.counter_faults, 0b101);
        let second = Span::from_secs(1);
        assert_eq!(
            diff.implausible(),
            &[
                ImplausibleStep {
                    counter: Counter::Volume,
                    channel: 0,
                    before: 40_000,
                    after: 39_990,
                    elapsed: second
                },
                ImplausibleStep { counter: Counter::Volume, channel: 2, before: 7, after: 12, elapsed: second },
            ]
        );
        img.volume[0] = 39_991;
        img.camera[0] = 0; // the zone counter reset: 101 → 0
        diff.apply(&img, read(1100), 64, &zones, &mut frame);
        assert_eq!(frame.counts[0], 1, "counted from the new value");
        assert_eq!(frame.counter_faults, 1 << 32);
        assert_eq!(diff.implausible()[0].counter, Counter::CameraZone(0));
        assert!(diff.implausible()[0].to_string().starts_with("camera zone 1 counter (channel 33) stepped 101 → 0"));
    }
}
