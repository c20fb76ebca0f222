//! The cabinet register map: where each input and output lives on the wire,
//! and how frames are encoded into and decoded from 16-bit registers.
//!
//! Addresses are the 0-based *wire* addresses of the Modbus PDU (mbpoll's
//! `-r` and most PLC tools count from 1: wire 0 is `-r 1`, "30001" or
//! "40001"). `docs/modbus.md` is the engineer-facing page for this map;
//! every start address can be moved per cabinet in its controller file
//! (`[cabinet.registers]`), and the sizes of the counter blocks shrunk.
//!
//! The default map needs one read and one write per tick:
//! - input registers (FC04) 0..90: presence, status, simulated time and
//!   step, 64 volume counters, 16 camera zone counters;
//! - holding registers (FC03 read, FC16 write) 0..47: vehicle, pedestrian
//!   and overlap indications, heartbeat, requested mode, flash reason,
//!   step acknowledgement.
//!
//! The built-in simulated cabinet also mirrors presence as discrete inputs
//! (FC02) 0..64 and has a few simulator-only registers (see
//! [`SIM_MMU_FAULT`] and below); the daemon never uses those.

use crate::core::queue::QUEUE_MEASURED_MAX;
use crate::core::{
    CabinetStatus, FlashReason, Indication, InputFrame, MAX_DETECTORS, MAX_OVERLAPS, MAX_PHASES, OutputFrame,
    PedIndication,
};

/// Most registers one read may ask for (Modbus FC03/FC04 limit).
pub const MAX_READ: u16 = 125;
/// Most registers one write may carry (Modbus FC16 limit).
pub const MAX_WRITE: u16 = 123;
/// Items this close (in registers) share one read; the registers between
/// them are read too, so the device must answer for them.
pub const MAX_READ_GAP: u16 = 16;

// ---- input registers (FC04), default addresses -------------------------

/// 4 registers: detector presence, bit `(n - 1) % 16` of register
/// `(n - 1) / 16` for channel `n` (register 0 bit 0 = channel 1).
pub const PRESENCE: u16 = 0;
pub const PRESENCE_LEN: u16 = 4;
/// 1 register: cabinet status bits ([`STATUS_DOOR_OPEN`] ...).
pub const STATUS: u16 = 4;
/// 4 registers: simulated time, u64 milliseconds, most significant word
/// first. 0 on a real cabinet; a lockstep simulator's clock (`clock =
/// "cabinet"`).
pub const SIM_TIME: u16 = 5;
pub const SIM_TIME_LEN: u16 = 4;
/// 1 register: a lockstep simulator's step in milliseconds (must equal the
/// daemon's tick); 0 when the cabinet runs in real time.
pub const SIM_STEP: u16 = 9;
/// 64 registers: wrapping 16-bit volume counter per detector channel.
pub const VOLUME: u16 = 10;
pub const VOLUME_CHANNELS: u16 = MAX_DETECTORS as u16;
/// 16 registers: wrapping 16-bit count per camera zone (video detection);
/// zones are mapped to detector channels with `camera_zone_channels`.
pub const CAMERA: u16 = 74;
pub const CAMERA_ZONES: u16 = 16;
/// Registers (up to 16, one per camera zone): vehicles standing in the zone
/// now, as the video processor measures a queue (a level, not a counter).
/// Off in the default map (`camera_queue_zones = 0`, so the default read
/// stays 0..90); a cabinet whose cameras report queues sets the count.
pub const CAMERA_QUEUE: u16 = 90;

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

// ---- holding registers (FC03/FC16), default addresses ------------------

/// 16 registers: phase 1..16 vehicle indication ([`Indication`] values:
/// 0 dark, 1 red, 2 yellow, 3 green, 4 flashing red, 5 flashing yellow).
pub const VEHICLE: u16 = 0;
/// 16 registers: phase 1..16 pedestrian indication ([`PedIndication`]:
/// 0 dark, 1 don't walk, 2 pedestrian clearance (flashing don't walk), 3 walk).
pub const PED: u16 = 16;
/// 8 registers: overlap A..H indication ([`Indication`] values).
pub const OVERLAP: u16 = 32;
/// 1 register: heartbeat, +1 (wrapping) with every output write. A cabinet
/// whose heartbeat stops changing for its watchdog time flashes.
pub const HEARTBEAT: u16 = 40;
/// 1 register: requested mode, [`MODE_NORMAL`] or [`MODE_FLASH`].
pub const REQUESTED_MODE: u16 = 41;
/// 1 register: why the controller flashes ([`FlashReason`] value, the
/// Indiana event 173 parameter), 0 when it does not.
pub const FLASH_REASON: u16 = 42;
/// 4 registers: step acknowledgement, u64 ms most significant word first:
/// the simulated time of the tick whose outputs this write carries
/// (lockstep only).
pub const STEP_ACK: u16 = 43;
pub const STEP_ACK_LEN: u16 = 4;

/// Requested mode: nothing written yet (power-up value).
pub const MODE_NONE: u16 = 0;
/// Requested mode: the heads follow the indications written.
pub const MODE_NORMAL: u16 = 1;
/// Requested mode: the controller is in flash (the indications written are
/// the flash pattern); a cabinet may use its flash transfer relays.
pub const MODE_FLASH: u16 = 2;

// ---- simulator-only registers (built-in simulated cabinet) -------------

/// Input register: MMU fault kind ([`crate::io::mmu::MmuFault::code`]),
/// 0 when none.
pub const SIM_MMU_FAULT: u16 = 100;
/// Input register: channels in the MMU fault, bit per channel (phases
/// 1..16 in bits 0..15).
pub const SIM_MMU_CHANNELS: u16 = 101;
/// Input register: overlap channels in the MMU fault (A..H in bits 0..7).
pub const SIM_MMU_OVERLAPS: u16 = 102;
/// Holding register: write non-zero to reset a latched MMU fault (as a
/// technician presses the MMU's reset button).
pub const SIM_MMU_RESET: u16 = 100;
/// Holding register: cabinet switches the simulator reports in the status
/// register (door, manual flash, power fail bits as in [`STATUS`]), for
/// tests and demos.
pub const SIM_SWITCHES: u16 = 101;

/// Where each item lives for one cabinet. [`RegisterMap::default`] is the
/// documented map; a controller file may move any item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterMap {
    pub presence: u16,
    pub status: u16,
    pub sim_time: u16,
    pub sim_step: u16,
    pub volume: u16,
    /// Volume counters the cabinet has (channels 1..=n), 0..=64.
    pub volume_channels: u16,
    pub camera: u16,
    /// Camera zone counters the cabinet has, 0..=16.
    pub camera_zones: u16,
    pub camera_queue: u16,
    /// Camera zone queue registers the cabinet has, 0..=16 (zone `z`'s
    /// queue goes to the channel of `camera_zone_channels[z]`).
    pub camera_queue_zones: u16,
    pub vehicle: u16,
    pub ped: u16,
    pub overlap: u16,
    pub heartbeat: u16,
    pub requested_mode: u16,
    pub flash_reason: u16,
    pub step_ack: u16,
}

impl Default for RegisterMap {
    fn default() -> Self {
        RegisterMap {
            presence: PRESENCE,
            status: STATUS,
            sim_time: SIM_TIME,
            sim_step: SIM_STEP,
            volume: VOLUME,
            volume_channels: VOLUME_CHANNELS,
            camera: CAMERA,
            camera_zones: CAMERA_ZONES,
            camera_queue: CAMERA_QUEUE,
            camera_queue_zones: 0,
            vehicle: VEHICLE,
            ped: PED,
            overlap: OVERLAP,
            heartbeat: HEARTBEAT,
            requested_mode: REQUESTED_MODE,
            flash_reason: FLASH_REASON,
            step_ack: STEP_ACK,
        }
    }
}

/// A run of registers: `len` registers from `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Block {
    pub start: u16,
    pub len: u16,
}

impl Block {
    pub const fn new(start: u16, len: u16) -> Self {
        Block { start, len }
    }

    /// One past the last register (as u32: a block may end at 65536).
    pub fn end(self) -> u32 {
        self.start as u32 + self.len as u32
    }
}

/// A named block, for overlap checks and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    pub name: &'static str,
    pub block: Block,
}

impl RegisterMap {
    /// The input-register items the daemon reads; simulated time and step
    /// only for a lockstep cabinet.
    pub fn input_items(&self, lockstep: bool) -> Vec<Item> {
        let mut items = vec![
            Item { name: "presence", block: Block::new(self.presence, PRESENCE_LEN) },
            Item { name: "status", block: Block::new(self.status, 1) },
        ];
        if lockstep {
            items.push(Item { name: "sim_time", block: Block::new(self.sim_time, SIM_TIME_LEN) });
            items.push(Item { name: "sim_step", block: Block::new(self.sim_step, 1) });
        }
        if self.volume_channels > 0 {
            items.push(Item { name: "volume", block: Block::new(self.volume, self.volume_channels) });
        }
        if self.camera_zones > 0 {
            items.push(Item { name: "camera", block: Block::new(self.camera, self.camera_zones) });
        }
        if self.camera_queue_zones > 0 {
            items.push(Item { name: "camera_queue", block: Block::new(self.camera_queue, self.camera_queue_zones) });
        }
        items
    }

    /// The holding-register items the daemon writes; the step
    /// acknowledgement only for a lockstep cabinet.
    pub fn output_items(&self, lockstep: bool) -> Vec<Item> {
        let mut items = vec![
            Item { name: "vehicle", block: Block::new(self.vehicle, MAX_PHASES as u16) },
            Item { name: "ped", block: Block::new(self.ped, MAX_PHASES as u16) },
            Item { name: "overlap", block: Block::new(self.overlap, MAX_OVERLAPS as u16) },
            Item { name: "heartbeat", block: Block::new(self.heartbeat, 1) },
            Item { name: "requested_mode", block: Block::new(self.requested_mode, 1) },
            Item { name: "flash_reason", block: Block::new(self.flash_reason, 1) },
        ];
        if lockstep {
            items.push(Item { name: "step_ack", block: Block::new(self.step_ack, STEP_ACK_LEN) });
        }
        items
    }

    /// Problems with the map: items past the end of the address space or
    /// overlapping one another (each as "a and b overlap ..."). Both
    /// the lockstep items are included: a map must hold them all.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.volume_channels > VOLUME_CHANNELS {
            out.push(format!("volume_channels {} is more than {VOLUME_CHANNELS}", self.volume_channels));
        }
        if self.camera_zones > CAMERA_ZONES {
            out.push(format!("camera_zones {} is more than {CAMERA_ZONES}", self.camera_zones));
        }
        if self.camera_queue_zones > CAMERA_ZONES {
            out.push(format!("camera_queue_zones {} is more than {CAMERA_ZONES}", self.camera_queue_zones));
        }
        for (space, items) in
            [("input register", self.input_items(true)), ("holding register", self.output_items(true))]
        {
            for (i, a) in items.iter().enumerate() {
                if a.block.end() > 65536 {
                    out.push(format!(
                        "{} ({} registers from {}) runs past {space} 65535",
                        a.name, a.block.len, a.block.start
                    ));
                }
                for b in &items[i + 1..] {
                    if (a.block.start as u32) < b.block.end() && (b.block.start as u32) < a.block.end() {
                        out.push(format!(
                            "{} ({space}s {}..{}) and {} ({}..{}) overlap",
                            a.name,
                            a.block.start,
                            a.block.end(),
                            b.name,
                            b.block.start,
                            b.block.end()
                        ));
                    }
                }
            }
        }
        out
    }
}

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
            .find(|(b, _)| addr >= b.start && (addr as u32) < b.end())
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
    }
}

pub fn status_bits(s: CabinetStatus) -> u16 {
    (if s.door_open { STATUS_DOOR_OPEN } else { 0 })
        | (if s.manual_flash { STATUS_MANUAL_FLASH } else { 0 })
        | (if s.mmu_fault { STATUS_MMU_FAULT } else { 0 })
        | (if s.power_fail { STATUS_POWER_FAIL } else { 0 })
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
        within(map.step_ack, STEP_ACK_LEN).map(|k| (self.step_ack_ms >> (16 * (3 - k))) as u16)
    }

    /// The registers of `block`.
    pub fn words(&self, map: &RegisterMap, block: Block) -> Vec<u16> {
        (0..block.len).map(|k| self.value(map, block.start + k).unwrap_or(0)).collect()
    }

    /// Decode from a holding-register space (`regs[addr]`), for servers.
    /// Values that are not an indication decode as `None`.
    pub fn decode(map: &RegisterMap, regs: &[u16]) -> Result<OutputImage, String> {
        let get = |addr: u16| regs.get(addr as usize).copied().unwrap_or(0);
        let mut frame = OutputFrame::default();
        for k in 0..MAX_PHASES {
            let v = get(map.vehicle + k as u16);
            frame.vehicle[k] = indication(v).ok_or_else(|| format!("phase {} vehicle indication {v}", k + 1))?;
            let v = get(map.ped + k as u16);
            frame.ped[k] = ped_indication(v).ok_or_else(|| format!("phase {} pedestrian indication {v}", k + 1))?;
        }
        for k in 0..MAX_OVERLAPS {
            let v = get(map.overlap + k as u16);
            frame.overlap[k] = indication(v).ok_or_else(|| format!("overlap {} indication {v}", k + 1))?;
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
/// with `wrapping_sub`, right as long as fewer than 65,536 vehicles pass
/// between two reads. A frame the engine had no room for is not lost
/// either: [`CounterDiff::undelivered`] counts its vehicles again in the
/// next read's frame.
#[derive(Clone, Debug, Default)]
pub struct CounterDiff {
    last: Option<Counters>,
    /// The baseline before the latest read.
    before: Option<Counters>,
}

/// Volume counters and camera zone counters as read.
type Counters = ([u16; MAX_DETECTORS], [u16; CAMERA_ZONES as usize]);

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

    /// Fill `frame.counts` from `img` and the previous read: volume
    /// counters on their channel, camera zones on the channel they map to
    /// (`zone_channels[z]`, 0-based channel index).
    pub fn apply(&mut self, img: &InputImage, volume_channels: u16, zone_channels: &[usize], frame: &mut InputFrame) {
        frame.counts = [0; MAX_DETECTORS];
        if let Some((vol, cam)) = &self.last {
            let n = (volume_channels as usize).min(MAX_DETECTORS);
            for (count, (now, before)) in frame.counts.iter_mut().zip(img.volume.iter().zip(vol)).take(n) {
                *count = count.saturating_add(now.wrapping_sub(*before));
            }
            for (zone, &ch) in zone_channels.iter().enumerate().take(CAMERA_ZONES as usize) {
                if ch < MAX_DETECTORS {
                    frame.counts[ch] = frame.counts[ch].saturating_add(img.camera[zone].wrapping_sub(cam[zone]));
                }
            }
        }
        self.before = self.last.replace((img.volume, img.camera));
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
    fn default_map_is_one_read_and_one_write_and_consistent() {
        let m = RegisterMap::default();
        assert!(m.problems().is_empty(), "{:?}", m.problems());
        for lockstep in [false, true] {
            assert_eq!(plan_reads(&m.input_items(lockstep)), vec![Block::new(0, 90)]);
            let writes = plan_writes(&m.output_items(lockstep));
            assert_eq!(writes, vec![Block::new(0, if lockstep { 47 } else { 43 })]);
        }
    }

    #[test]
    fn moved_items_split_reads_and_writes() {
        let m = RegisterMap { camera: 1000, heartbeat: 500, ..RegisterMap::default() };
        assert_eq!(plan_reads(&m.input_items(false)), vec![Block::new(0, 74), Block::new(1000, 16)]);
        let w = plan_writes(&m.output_items(false));
        assert_eq!(w, vec![Block::new(0, 40), Block::new(41, 2), Block::new(500, 1)]);
        let overlapping = RegisterMap { status: 2, ..RegisterMap::default() };
        assert!(overlapping.problems()[0].contains("presence"), "{:?}", overlapping.problems());
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
        let mut regs = vec![0u16; 90];
        img.encode(&m, &mut regs);
        assert_eq!(regs[0], 0x0003);
        assert_eq!(regs[1], 0x0001);
        assert_eq!(regs[3], 0x8000);
        let reads = [(Block::new(0, 90), regs)];
        let back = InputImage::decode(&m, &Fetched { reads: &reads });
        assert_eq!(back, img);
        assert!(back.cabinet_status().manual_flash && back.cabinet_status().door_open);
        assert!(!back.cabinet_status().mmu_fault);
    }

    #[test]
    fn camera_queues_are_read_only_when_the_cabinet_has_them() {
        let m = RegisterMap { camera_queue_zones: 4, ..RegisterMap::default() };
        assert!(m.problems().is_empty(), "{:?}", m.problems());
        assert_eq!(plan_reads(&m.input_items(false)), vec![Block::new(0, 94)]);
        let mut img = InputImage::default();
        img.camera_queue[3] = 11;
        let mut regs = vec![0u16; 94];
        img.encode(&m, &mut regs);
        assert_eq!(regs[93], 11);
        let reads = [(Block::new(0, 94), regs)];
        assert_eq!(InputImage::decode(&m, &Fetched { reads: &reads }), img);
        // Zones land on their channels; zones past the count are not read.
        img.camera_queue[0] = 60_000;
        let zones = [DetectorChannel::new(33).unwrap().index(), 2, 3, 4, 5];
        let mut frame = InputFrame::default();
        apply_camera_queues(&img, 4, &zones, &mut frame);
        assert_eq!(frame.queued, 1 << 32 | 1 << 2 | 1 << 3 | 1 << 4);
        assert_eq!((frame.queue[32], frame.queue[4]), (QUEUE_MEASURED_MAX, 11));
        let too_many = RegisterMap { camera_queue_zones: 17, ..RegisterMap::default() };
        assert!(too_many.problems()[0].contains("camera_queue_zones 17"), "{:?}", too_many.problems());
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
        assert!(OutputImage::decode(&m, &bad).unwrap_err().contains("phase 4"));
        let flash = OutputImage::new(frame, Some(FlashReason::Shutdown), 1, 0);
        assert_eq!((flash.requested_mode, flash.flash_reason), (MODE_FLASH, 9));
    }

    #[test]
    fn counters_wrap_and_rebaseline() {
        let mut diff = CounterDiff::default();
        let mut img = InputImage::default();
        img.volume[0] = 65530;
        img.camera[0] = 10;
        let zones = [DetectorChannel::new(33).unwrap().index()];
        let mut frame = InputFrame::default();
        diff.apply(&img, 64, &zones, &mut frame);
        assert_eq!(frame.counts[0], 0, "the first read is the baseline");
        img.volume[0] = 4; // wrapped: 65530 → 65535 → 0 → 4 is 10 vehicles
        img.camera[0] = 12;
        diff.apply(&img, 64, &zones, &mut frame);
        assert_eq!((frame.counts[0], frame.counts[32]), (10, 2));
        diff.reset();
        img.volume[0] = 500;
        diff.apply(&img, 64, &zones, &mut frame);
        assert_eq!(frame.counts[0], 0, "after a reconnect the jump is not counted");
    }

    #[test]
    fn an_undelivered_frames_vehicles_count_in_the_next() {
        let mut diff = CounterDiff::default();
        let mut img = InputImage::default();
        let mut frame = InputFrame::default();
        for (volume, undelivered, counted) in [(100, false, 0), (103, true, 3), (105, false, 5), (106, false, 1)] {
            img.volume[0] = volume;
            diff.apply(&img, 64, &[], &mut frame);
            assert_eq!(frame.counts[0], counted, "read {volume}");
            if undelivered {
                diff.undelivered();
            }
        }
        img.volume[0] = 108;
        diff.apply(&img, 64, &[], &mut frame);
        diff.undelivered();
        diff.undelivered();
        img.volume[0] = 110;
        diff.apply(&img, 64, &[], &mut frame);
        assert_eq!(frame.counts[0], 4, "a second undelivered() changes nothing");
    }
}
