//! The cabinet register map a controller file describes: where each input
//! and output item starts on the wire, how many registers it takes, and
//! whether a map is usable (no item past the address space, none
//! overlapping another).
//!
//! Addresses are the 0-based *wire* addresses of the Modbus PDU (mbpoll's
//! `-r` and most PLC tools count from 1: wire 0 is `-r 1`, "30001" or
//! "40001"). `docs/modbus.md` is the engineer-facing page for this map;
//! every start address can be moved per cabinet in its controller file
//! (`[cabinet.registers]`), and the sizes of the counter blocks shrunk.
//!
//! The default map needs one read and one write per tick:
//! - input registers (FC04) 0..108: presence, status, simulated time and
//!   step, 64 volume counters, 16 camera zone counters, then (after the
//!   room for camera queues, read with them) the preemption and transit
//!   priority inputs;
//! - holding registers (FC03 read, FC16 write) 0..47: vehicle, pedestrian
//!   and overlap indications, heartbeat, requested mode, flash reason,
//!   step acknowledgement; then, for a cabinet with pedestrian countdown
//!   displays or accessible pedestrian signals (`ped_outputs`), 47..66:
//!   the countdowns and the accessible signals' bits.
//!
//! This is plain data, so config validates it without knowing Modbus; the
//! values inside the registers (bits, indications, counters) are encoded by
//! the cabinet client (`src/io/registers.rs`).

use crate::core::{MAX_DETECTORS, MAX_OVERLAPS, MAX_PHASES};

// ---- input registers (FC04), default addresses -------------------------

/// 4 registers: detector presence, bit `(n - 1) % 16` of register
/// `(n - 1) / 16` for channel `n` (register 0 bit 0 = channel 1).
pub const PRESENCE: u16 = 0;
pub const PRESENCE_LEN: u16 = 4;
/// 1 register: cabinet status bits (door, manual flash, MMU fault, power
/// fail, flash sense; `docs/modbus.md`).
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
/// stays one block); a cabinet whose cameras report queues sets the count.
pub const CAMERA_QUEUE: u16 = 90;
/// 1 register: preemption inputs 1..8 (optical emitter receivers, rail
/// gate or track circuit relays), bit `n - 1` for input `n`; the
/// controller debounces them (`[[preempt]] debounce_s`).
pub const PREEMPT: u16 = 106;
/// 1 register: transit priority inputs, bit `n - 1` for a request on
/// phase `n` (a bus check-in detector wired for that phase): a rising
/// edge checks in, a falling one checks out.
pub const PRIORITY: u16 = 107;

// ---- holding registers (FC03/FC16), default addresses ------------------

/// 16 registers: phase 1..16 vehicle indication
/// ([`Indication`](crate::core::Indication) values: 0 dark, 1 red,
/// 2 yellow, 3 green, 4 flashing red, 5 flashing yellow).
pub const VEHICLE: u16 = 0;
/// 16 registers: phase 1..16 pedestrian indication
/// ([`PedIndication`](crate::core::PedIndication): 0 dark, 1 don't walk,
/// 2 pedestrian clearance (flashing don't walk), 3 walk).
pub const PED: u16 = 16;
/// 8 registers: overlap A..H indication
/// ([`Indication`](crate::core::Indication) values).
pub const OVERLAP: u16 = 32;
/// 1 register: heartbeat, +1 (wrapping) with every output write the
/// cabinet accepts, one count for the life of the process (reconnections
/// continue it). A cabinet whose heartbeat stops changing for its watchdog
/// time flashes.
pub const HEARTBEAT: u16 = 40;
/// 1 register: requested mode (normal or flash; `docs/modbus.md`).
pub const REQUESTED_MODE: u16 = 41;
/// 1 register: why the controller flashes ([`FlashReason`](crate::core::FlashReason) value, the
/// Indiana event 173 parameter), 0 when it does not.
pub const FLASH_REASON: u16 = 42;
/// 4 registers: step acknowledgement, u64 ms most significant word first:
/// the simulated time of the tick whose outputs this write carries
/// (lockstep only).
pub const STEP_ACK: u16 = 43;
pub const STEP_ACK_LEN: u16 = 4;
/// 16 registers (with `ped_outputs`): phase 1..16 pedestrian countdown,
/// whole seconds of pedestrian clearance left, 0 blank
/// ([`Countdown`](crate::core::Countdown)).
pub const PED_COUNTDOWN: u16 = 47;
/// 3 registers (with `ped_outputs`), bit `n - 1` for crossing `n`: the
/// accessible pedestrian signal's walk message, its push-button locator
/// tone, and the extended clearance granted.
pub const APS: u16 = 63;
pub const APS_LEN: u16 = 3;

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
    pub preempt: u16,
    pub priority: u16,
    pub vehicle: u16,
    pub ped: u16,
    pub overlap: u16,
    pub heartbeat: u16,
    pub requested_mode: u16,
    pub flash_reason: u16,
    pub step_ack: u16,
    pub ped_countdown: u16,
    pub aps: u16,
    /// The cabinet has pedestrian countdown displays or accessible
    /// pedestrian signals: `ped_countdown` and `aps` are written. Off by
    /// default, as a cabinet without those registers refuses the write.
    pub ped_outputs: bool,
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
            preempt: PREEMPT,
            priority: PRIORITY,
            vehicle: VEHICLE,
            ped: PED,
            overlap: OVERLAP,
            heartbeat: HEARTBEAT,
            requested_mode: REQUESTED_MODE,
            flash_reason: FLASH_REASON,
            step_ack: STEP_ACK,
            ped_countdown: PED_COUNTDOWN,
            aps: APS,
            ped_outputs: false,
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

    pub fn contains(self, addr: u16) -> bool {
        addr >= self.start && (addr as u32) < self.end()
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
            Item { name: "preempt", block: Block::new(self.preempt, 1) },
            Item { name: "priority", block: Block::new(self.priority, 1) },
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
    /// acknowledgement only for a lockstep cabinet, the pedestrian
    /// countdowns and accessible signals only with `ped_outputs`.
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
        if self.ped_outputs {
            items.push(Item { name: "ped_countdown", block: Block::new(self.ped_countdown, MAX_PHASES as u16) });
            items.push(Item { name: "aps", block: Block::new(self.aps, APS_LEN) });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_map_and_camera_queues_are_consistent() {
        for m in [RegisterMap::default(), RegisterMap { camera_queue_zones: 4, ..RegisterMap::default() }] {
            assert!(m.problems().is_empty(), "{:?}", m.problems());
        }
    }

    /// The pedestrian outputs take room only where the cabinet has them.
    #[test]
    fn pedestrian_outputs_are_items_only_when_the_cabinet_has_them() {
        let on = RegisterMap { ped_outputs: true, ..RegisterMap::default() };
        assert!(on.problems().is_empty(), "{:?}", on.problems());
        let names = |m: &RegisterMap| m.output_items(false).iter().map(|i| i.name).collect::<Vec<_>>();
        assert!(names(&on).ends_with(&["ped_countdown", "aps"]));
        assert!(!names(&RegisterMap::default()).contains(&"aps"));
        let clash = RegisterMap { aps: 62, ..on };
        assert!(clash.problems()[0].contains("ped_countdown"), "{:?}", clash.problems());
        assert!(RegisterMap { aps: 62, ..RegisterMap::default() }.problems().is_empty());
    }

    #[test]
    fn overlapping_or_oversized_items_are_problems() {
        let overlapping = RegisterMap { status: 2, ..RegisterMap::default() };
        assert!(overlapping.problems()[0].contains("presence"), "{:?}", overlapping.problems());
        let too_many = RegisterMap { camera_queue_zones: 17, ..RegisterMap::default() };
        assert!(too_many.problems()[0].contains("camera_queue_zones 17"), "{:?}", too_many.problems());
    }
}
