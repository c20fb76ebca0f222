//! Controller events in the Indiana hi-resolution data logger enumeration
//! (Purdue 2012, TPF-5(377) 2019), which ATSPM tools import directly, and
//! the fixed-capacity queue the core writes them into.

use super::time::Instant;

/// Indiana event codes the controller emits. The discriminant is the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum EventCode {
    PhaseOn = 0,
    PhaseBeginGreen = 1,
    PhaseCheck = 2,
    PhaseMinComplete = 3,
    PhaseGapOut = 4,
    PhaseMaxOut = 5,
    PhaseForceOff = 6,
    PhaseGreenTermination = 7,
    PhaseBeginYellowChange = 8,
    PhaseEndYellowChange = 9,
    PhaseBeginRedClearance = 10,
    PhaseEndRedClearance = 11,
    PhaseInactive = 12,
    PhaseSkipped = 14,
    TspEarlyForceOff = 19,
    PreemptionForceOff = 20,
    PedBeginWalk = 21,
    PedBeginClearance = 22,
    PedBeginSolidDontWalk = 23,
    /// The pedestrian heads went dark (flash cut a walk or clearance).
    PedDark = 24,
    BarrierTermination = 31,
    PhaseHoldActive = 41,
    PhaseHoldReleased = 42,
    PhaseCallRegistered = 43,
    PhaseCallDropped = 44,
    PedCallRegistered = 45,
    OverlapBeginGreen = 61,
    OverlapBeginYellow = 63,
    OverlapBeginRedClearance = 64,
    OverlapOff = 65,
    DetectorOff = 81,
    DetectorOn = 82,
    DetectorRestored = 83,
    DetectorFaultOther = 84,
    DetectorFaultWatchdog = 85,
    DetectorFaultOpenLoop = 86,
    DetectorFaultShortedLoop = 87,
    DetectorFaultExcessiveChange = 88,
    PedDetectorOff = 89,
    PedDetectorOn = 90,
    PreemptCallInputOn = 102,
    PreemptCallInputOff = 104,
    PreemptEntryStarted = 105,
    PreemptBeginDwell = 107,
    PreemptBeginExitInterval = 111,
    TspCheckIn = 112,
    TspAdjustExtendGreen = 114,
    TspCheckOut = 115,
    CoordPatternChange = 131,
    CycleLengthChange = 132,
    OffsetLengthChange = 133,
    SplitChange1 = 134,
    SplitChange2 = 135,
    SplitChange3 = 136,
    SplitChange4 = 137,
    SplitChange5 = 138,
    SplitChange6 = 139,
    SplitChange7 = 140,
    SplitChange8 = 141,
    SplitChange9 = 142,
    SplitChange10 = 143,
    SplitChange11 = 144,
    SplitChange12 = 145,
    SplitChange13 = 146,
    SplitChange14 = 147,
    SplitChange15 = 148,
    SplitChange16 = 149,
    CoordCycleStateChange = 150,
    CoordPhaseYieldPoint = 151,
    CoordPhaseBegin = 152,
    UnitControlStatusChange = 155,
    UnitFlashStatusChange = 173,
    UnitAlarmStatusChange = 174,
    ManualControlEnable = 178,
    AlarmOn = 200,
    AlarmOff = 201,
}

impl EventCode {
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// "Split N change" (134–149) for phase index 0..16; the parameter is
    /// the new split in seconds.
    pub const fn split_change(phase_index: usize) -> EventCode {
        const SPLITS: [EventCode; 16] = [
            EventCode::SplitChange1,
            EventCode::SplitChange2,
            EventCode::SplitChange3,
            EventCode::SplitChange4,
            EventCode::SplitChange5,
            EventCode::SplitChange6,
            EventCode::SplitChange7,
            EventCode::SplitChange8,
            EventCode::SplitChange9,
            EventCode::SplitChange10,
            EventCode::SplitChange11,
            EventCode::SplitChange12,
            EventCode::SplitChange13,
            EventCode::SplitChange14,
            EventCode::SplitChange15,
            EventCode::SplitChange16,
        ];
        SPLITS[phase_index]
    }
}

/// Alarm parameters (events 200/201) the controller raises from the
/// cabinet's status (`docs/modbus.md`); 3 is the engine's wall-clock step
/// (`ALARM_WALL_CLOCK_STEP` in `src/engine/mod.rs`) and 6 the event log
/// writer's (`ALARM_EVENT_LOG` in `src/telemetry/log_writer.rs`): the core
/// knows neither.
pub const ALARM_DOOR_OPEN: u16 = 1;
pub const ALARM_POWER_FAIL: u16 = 2;
/// Another master writes the cabinet (on while the episode lasts).
pub const ALARM_SECOND_MASTER: u16 = 4;
/// The cabinet is too slow for the tick (on while the episode lasts).
pub const ALARM_SLOW_CABINET: u16 = 5;

/// One logged event: when, what, and the parameter (phase, detector channel,
/// overlap number, plan number or status code, as the enumeration defines).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    pub at: Instant,
    pub code: EventCode,
    pub param: u16,
}

/// Events the core can hold between two drains. A tick emits a few dozen at
/// most (a barrier crossing with all phases); the engine drains every tick.
pub const EVENT_QUEUE_CAPACITY: usize = 512;

/// A fixed-capacity FIFO of events. Full means the drainer fell behind: the
/// newest events are dropped and counted rather than allocating.
#[derive(Clone, Debug)]
pub struct EventQueue {
    buf: [Event; EVENT_QUEUE_CAPACITY],
    head: usize,
    len: usize,
    dropped: u64,
}

impl Default for EventQueue {
    fn default() -> Self {
        const BLANK: Event = Event { at: Instant::ZERO, code: EventCode::PhaseOn, param: 0 };
        EventQueue { buf: [BLANK; EVENT_QUEUE_CAPACITY], head: 0, len: 0, dropped: 0 }
    }
}

impl EventQueue {
    pub fn push(&mut self, at: Instant, code: EventCode, param: u16) {
        if self.len == EVENT_QUEUE_CAPACITY {
            self.dropped += 1;
            return;
        }
        let slot = (self.head + self.len) % EVENT_QUEUE_CAPACITY;
        self.buf[slot] = Event { at, code, param };
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<Event> {
        if self.len == 0 {
            return None;
        }
        let e = self.buf[self.head];
        self.head = (self.head + 1) % EVENT_QUEUE_CAPACITY;
        self.len -= 1;
        Some(e)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Events lost because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_fifo_and_counts_overflow() {
        let mut q = EventQueue::default();
        for i in 0..(EVENT_QUEUE_CAPACITY as u16 + 3) {
            q.push(Instant::from_millis(i as u64), EventCode::DetectorOn, i);
        }
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.pop().unwrap().param, 0);
        assert_eq!(q.pop().unwrap().param, 1);
        assert_eq!(q.len(), EVENT_QUEUE_CAPACITY - 2);
    }
}
