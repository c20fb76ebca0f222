//! Fixed-size process images, PLC style: what the cabinet reports each tick
//! ([`InputFrame`]) and what the heads must show ([`OutputFrame`]). Both are
//! `Copy` so they move through channels and buffers without allocating.

use super::ids::{DetectorChannel, MAX_DETECTORS, MAX_OVERLAPS, MAX_PHASES, OverlapId, PhaseId, PhaseSet};
use super::time::{Instant, Span};

/// Cabinet status inputs, as a real cabinet wires them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CabinetStatus {
    /// Police-panel / technician manual flash switch: flash while on.
    pub manual_flash: bool,
    /// The hardware MMU (conflict monitor) has tripped: the cabinet is in
    /// flash whatever we command.
    pub mmu_fault: bool,
    /// Cabinet door open (alarm only).
    pub door_open: bool,
    /// Mains power lost (running on battery or about to).
    pub power_fail: bool,
    /// Another master writes this cabinet, so the controller does not
    /// drive it. Not a cabinet input: the cabinet client sets it from the
    /// heartbeat it reads back (`src/io/one_master.rs`).
    pub second_master: bool,
    /// The cabinet is too slow for the tick (its exchanges end after the
    /// next one is due). Alarm only: every minimum is timed from the
    /// cabinet's confirmations anyway. Set by the cabinet client.
    pub slow: bool,
}

/// Inputs read from the cabinet (or a simulator, or a replayed log) for one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputFrame {
    /// Detector presence, bit `n - 1` for channel `n`.
    pub presence: u64,
    /// Vehicles counted per channel since the previous frame, for detectors
    /// that count on their own (camera zones, volume counters); loops that
    /// only report presence are counted from their rising edges instead.
    pub counts: [u16; MAX_DETECTORS],
    /// Channels whose `counts` are the volume, zero included (bit `n - 1`
    /// for channel `n`): the cabinet counts them itself (Modbus volume
    /// counters, camera zones), so their rising edges are not counted as
    /// well. For other channels a count above zero is taken, else the edge.
    pub counted: u64,
    /// Channels whose counter stepped further than the lanes can pass
    /// since the previous read, or backwards (bit `n - 1` for channel `n`):
    /// that step is not in `counts`, and the channel's vehicle detector is
    /// faulted (Indiana 88) until its counter has been plausible for a
    /// minute ([`super::detector::most_vehicles`]).
    pub counter_faults: u64,
    /// Vehicles standing in the zone now, as a camera measures a queue (a
    /// level, not a counter), for the channels in `queued`.
    pub queue: [u16; MAX_DETECTORS],
    /// Channels whose `queue` is measured in this frame (bit `n - 1` for
    /// channel `n`); the others have no camera queue.
    pub queued: u64,
    pub cabinet: CabinetStatus,
    /// Preemption inputs on (bit `n - 1` for input `n`), as wired: the
    /// controller debounces them ([`super::preempt::PreemptInputs`]).
    pub preempt: u8,
    /// Transit priority inputs on, one per phase (a bus detector or
    /// check-in loop wired for that phase's request).
    pub priority: PhaseSet,
    /// The newest output frame the cabinet has confirmed it applied, and
    /// when: the controller times every minimum from here, as the heads
    /// show it ([`super::Controller::confirm_by_cabinet`]).
    pub ack: Option<FrameAck>,
}

/// The cabinet's confirmation of an output frame: frame number `frame`
/// (the controller's [`super::Controller::frame`]) was applied, at the
/// latest at `at` (when its write was answered, or the simulated time of
/// its step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameAck {
    pub frame: u64,
    pub at: Instant,
}

impl Default for InputFrame {
    fn default() -> Self {
        InputFrame {
            presence: 0,
            counts: [0; MAX_DETECTORS],
            counted: 0,
            counter_faults: 0,
            queue: [0; MAX_DETECTORS],
            queued: 0,
            cabinet: CabinetStatus::default(),
            preempt: 0,
            priority: PhaseSet::EMPTY,
            ack: None,
        }
    }
}

impl InputFrame {
    pub fn is_present(&self, ch: DetectorChannel) -> bool {
        self.presence & (1 << ch.index()) != 0
    }

    pub fn set_presence(&mut self, ch: DetectorChannel, on: bool) {
        if on {
            self.presence |= 1 << ch.index();
        } else {
            self.presence &= !(1 << ch.index());
        }
    }
}

/// A vehicle signal head (or overlap) indication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Indication {
    /// Not driven: only valid for channels that are not in use.
    #[default]
    Dark = 0,
    Red = 1,
    Yellow = 2,
    Green = 3,
    FlashingRed = 4,
    FlashingYellow = 5,
}

impl Indication {
    /// Green or yellow: the indications that may never show on two conflicting
    /// movements at once.
    pub fn is_permissive(self) -> bool {
        matches!(self, Indication::Green | Indication::Yellow)
    }

    pub fn symbol(self) -> char {
        match self {
            Indication::Dark => ' ',
            Indication::Red => 'R',
            Indication::Yellow => 'Y',
            Indication::Green => 'G',
            Indication::FlashingRed => 'r',
            Indication::FlashingYellow => 'y',
        }
    }
}

/// A pedestrian head indication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PedIndication {
    #[default]
    Dark = 0,
    DontWalk = 1,
    /// Pedestrian clearance.
    FlashingDontWalk = 2,
    Walk = 3,
}

impl PedIndication {
    pub fn symbol(self) -> char {
        match self {
            PedIndication::Dark => ' ',
            PedIndication::DontWalk => 'D',
            PedIndication::FlashingDontWalk => 'f',
            PedIndication::Walk => 'W',
        }
    }
}

/// What a pedestrian countdown display shows: whole seconds, rounded up so
/// that it never reads less than the time it stands for; zero is blank.
/// Two bytes, so the [`OutputFrame`] stays small.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Countdown(u16);

impl Countdown {
    /// Nothing shown.
    pub const BLANK: Countdown = Countdown(0);

    /// The display for `remaining`: its seconds rounded up (blank at zero),
    /// at most `u16::MAX` seconds.
    pub fn covering(remaining: Span) -> Self {
        Countdown(u16::try_from(remaining.as_millis().div_ceil(1000)).unwrap_or(u16::MAX))
    }

    /// The value as written to the cabinet (`src/io/registers.rs`) or read
    /// back from it.
    pub const fn from_secs(secs: u16) -> Self {
        Countdown(secs)
    }

    pub const fn secs(self) -> u16 {
        self.0
    }

    pub const fn span(self) -> Span {
        Span::from_secs(self.0 as u64)
    }

    pub const fn is_blank(self) -> bool {
        self.0 == 0
    }
}

/// What every head in the intersection shows for one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OutputFrame {
    pub vehicle: [Indication; MAX_PHASES],
    pub ped: [PedIndication; MAX_PHASES],
    pub overlap: [Indication; MAX_OVERLAPS],
    /// Crossings in a walk or clearance whose extended clearance was
    /// granted: an accessible pedestrian signal can say so, and the
    /// monitor times their clearance against the extended one.
    pub ped_extended: PhaseSet,
    /// Per crossing, the pedestrian clearance (flashing don't walk) still
    /// to run, for countdown displays (MUTCD 4E.07: shown only during the
    /// clearance). Timed as the controller times the clearance, from the
    /// cabinet's confirmation that the heads show it, and blank until
    /// then, so it never promises an end before the controller's own; a
    /// clearance extended while it runs makes it jump up. Blank outside
    /// clearances.
    pub ped_countdown: [Countdown; MAX_PHASES],
    /// Crossings whose accessible pedestrian signal gives its walk message
    /// (speech or percussive tone, and the vibrating arrow): the whole
    /// walk, or only its first [`ACCESSIBLE_WALK_AT_REST`] where the walk
    /// rests (MUTCD 4E.11).
    pub accessible_walk: PhaseSet,
}

/// How long an accessible walk message lasts on a crossing that rests in
/// walk (MUTCD 4E.11: the first 7 seconds of the walk), so it does not
/// sound for as long as the walk rests.
pub const ACCESSIBLE_WALK_AT_REST: Span = Span::from_secs(7);

impl OutputFrame {
    pub fn phase(&self, p: PhaseId) -> Indication {
        self.vehicle[p.index()]
    }

    pub fn ped(&self, p: PhaseId) -> PedIndication {
        self.ped[p.index()]
    }

    pub fn overlap(&self, o: OverlapId) -> Indication {
        self.overlap[o.index()]
    }

    pub fn countdown(&self, p: PhaseId) -> Countdown {
        self.ped_countdown[p.index()]
    }

    /// Crossings whose push-button locator tone sounds: those showing
    /// don't walk or its flashing clearance, so a blind pedestrian can find
    /// the button while the walk message is off; silent on dark heads, so
    /// in flash (MUTCD 4E.12).
    pub fn locator_tone(&self) -> PhaseSet {
        (0..MAX_PHASES)
            .filter(|&i| matches!(self.ped[i], PedIndication::DontWalk | PedIndication::FlashingDontWalk))
            .map(PhaseId::from_index)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_countdown_rounds_up_and_is_blank_only_at_zero() {
        assert_eq!(Countdown::covering(Span::ZERO), Countdown::BLANK);
        assert_eq!(Countdown::covering(Span::from_millis(1)).secs(), 1);
        assert_eq!(Countdown::covering(Span::from_millis(12_000)).secs(), 12);
        assert_eq!(Countdown::covering(Span::from_millis(12_001)).secs(), 13);
        assert_eq!(Countdown::covering(Span::from_secs(70_000)).secs(), u16::MAX);
        assert!(Countdown::covering(Span::from_millis(900)).span() >= Span::from_millis(900));
    }

    #[test]
    fn the_locator_tone_sounds_on_dont_walk_and_clearance_only() {
        let mut f = OutputFrame::default();
        let p = |n| PhaseId::new(n).unwrap();
        f.ped[p(2).index()] = PedIndication::DontWalk;
        f.ped[p(4).index()] = PedIndication::FlashingDontWalk;
        f.ped[p(6).index()] = PedIndication::Walk;
        let tone = f.locator_tone();
        assert_eq!(tone.iter().collect::<Vec<_>>(), vec![p(2), p(4)]);
    }
}
