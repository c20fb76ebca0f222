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
    /// A flashing yellow arrow overlap begins its permissive display.
    FyaBeginPermissive = 32,
    /// A flashing yellow arrow overlap ends its permissive display.
    FyaEndPermissive = 33,
    PhaseHoldActive = 41,
    PhaseHoldReleased = 42,
    PhaseCallRegistered = 43,
    PhaseCallDropped = 44,
    PedCallRegistered = 45,
    /// A phase is omitted (its plan's `omit` or an operator's).
    PhaseOmitOn = 46,
    PhaseOmitOff = 47,
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
    PreemptBeginTrackClearance = 106,
    PreemptBeginDwell = 107,
    PreemptMaxPresenceExceeded = 110,
    PreemptBeginExitInterval = 111,
    TspCheckIn = 112,
    TspAdjustEarlyGreen = 113,
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

    /// Every code, in numeric order: the table [`from_code`](Self::from_code)
    /// searches and the web view's event log lists.
    pub const ALL: [EventCode; 83] = [
        EventCode::PhaseOn,
        EventCode::PhaseBeginGreen,
        EventCode::PhaseCheck,
        EventCode::PhaseMinComplete,
        EventCode::PhaseGapOut,
        EventCode::PhaseMaxOut,
        EventCode::PhaseForceOff,
        EventCode::PhaseGreenTermination,
        EventCode::PhaseBeginYellowChange,
        EventCode::PhaseEndYellowChange,
        EventCode::PhaseBeginRedClearance,
        EventCode::PhaseEndRedClearance,
        EventCode::PhaseInactive,
        EventCode::PhaseSkipped,
        EventCode::TspEarlyForceOff,
        EventCode::PreemptionForceOff,
        EventCode::PedBeginWalk,
        EventCode::PedBeginClearance,
        EventCode::PedBeginSolidDontWalk,
        EventCode::PedDark,
        EventCode::BarrierTermination,
        EventCode::FyaBeginPermissive,
        EventCode::FyaEndPermissive,
        EventCode::PhaseHoldActive,
        EventCode::PhaseHoldReleased,
        EventCode::PhaseCallRegistered,
        EventCode::PhaseCallDropped,
        EventCode::PedCallRegistered,
        EventCode::PhaseOmitOn,
        EventCode::PhaseOmitOff,
        EventCode::OverlapBeginGreen,
        EventCode::OverlapBeginYellow,
        EventCode::OverlapBeginRedClearance,
        EventCode::OverlapOff,
        EventCode::DetectorOff,
        EventCode::DetectorOn,
        EventCode::DetectorRestored,
        EventCode::DetectorFaultOther,
        EventCode::DetectorFaultWatchdog,
        EventCode::DetectorFaultOpenLoop,
        EventCode::DetectorFaultShortedLoop,
        EventCode::DetectorFaultExcessiveChange,
        EventCode::PedDetectorOff,
        EventCode::PedDetectorOn,
        EventCode::PreemptCallInputOn,
        EventCode::PreemptCallInputOff,
        EventCode::PreemptEntryStarted,
        EventCode::PreemptBeginTrackClearance,
        EventCode::PreemptBeginDwell,
        EventCode::PreemptMaxPresenceExceeded,
        EventCode::PreemptBeginExitInterval,
        EventCode::TspCheckIn,
        EventCode::TspAdjustEarlyGreen,
        EventCode::TspAdjustExtendGreen,
        EventCode::TspCheckOut,
        EventCode::CoordPatternChange,
        EventCode::CycleLengthChange,
        EventCode::OffsetLengthChange,
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
        EventCode::CoordCycleStateChange,
        EventCode::CoordPhaseYieldPoint,
        EventCode::CoordPhaseBegin,
        EventCode::UnitControlStatusChange,
        EventCode::UnitFlashStatusChange,
        EventCode::UnitAlarmStatusChange,
        EventCode::ManualControlEnable,
        EventCode::AlarmOn,
        EventCode::AlarmOff,
    ];

    /// The code with number `code`, if the controller has one.
    pub fn from_code(code: u16) -> Option<EventCode> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// The code's name as the Indiana enumeration writes it (the event log
    /// view shows it next to the number).
    pub const fn name(self) -> &'static str {
        match self {
            EventCode::PhaseOn => "Phase On",
            EventCode::PhaseBeginGreen => "Phase Begin Green",
            EventCode::PhaseCheck => "Phase Check",
            EventCode::PhaseMinComplete => "Phase Min Complete",
            EventCode::PhaseGapOut => "Phase Gap Out",
            EventCode::PhaseMaxOut => "Phase Max Out",
            EventCode::PhaseForceOff => "Phase Force Off",
            EventCode::PhaseGreenTermination => "Phase Green Termination",
            EventCode::PhaseBeginYellowChange => "Phase Begin Yellow Clearance",
            EventCode::PhaseEndYellowChange => "Phase End Yellow Clearance",
            EventCode::PhaseBeginRedClearance => "Phase Begin Red Clearance",
            EventCode::PhaseEndRedClearance => "Phase End Red Clearance",
            EventCode::PhaseInactive => "Phase Inactive",
            EventCode::PhaseSkipped => "Phase Skipped",
            EventCode::TspEarlyForceOff => "TSP Early Force Off",
            EventCode::PreemptionForceOff => "Preemption Force Off",
            EventCode::PedBeginWalk => "Pedestrian Begin Walk",
            EventCode::PedBeginClearance => "Pedestrian Begin Clearance",
            EventCode::PedBeginSolidDontWalk => "Pedestrian Begin Solid Don't Walk",
            EventCode::PedDark => "Pedestrian Dark",
            EventCode::BarrierTermination => "Barrier Termination",
            EventCode::FyaBeginPermissive => "FYA Begin Permissive",
            EventCode::FyaEndPermissive => "FYA End Permissive",
            EventCode::PhaseHoldActive => "Phase Hold Active",
            EventCode::PhaseHoldReleased => "Phase Hold Released",
            EventCode::PhaseCallRegistered => "Phase Call Registered",
            EventCode::PhaseCallDropped => "Phase Call Dropped",
            EventCode::PedCallRegistered => "Pedestrian Call Registered",
            EventCode::PhaseOmitOn => "Phase Omit On",
            EventCode::PhaseOmitOff => "Phase Omit Off",
            EventCode::OverlapBeginGreen => "Overlap Begin Green",
            EventCode::OverlapBeginYellow => "Overlap Begin Yellow",
            EventCode::OverlapBeginRedClearance => "Overlap Begin Red Clearance",
            EventCode::OverlapOff => "Overlap Off",
            EventCode::DetectorOff => "Detector Off",
            EventCode::DetectorOn => "Detector On",
            EventCode::DetectorRestored => "Detector Restored",
            EventCode::DetectorFaultOther => "Detector Fault Other",
            EventCode::DetectorFaultWatchdog => "Detector Fault Watchdog",
            EventCode::DetectorFaultOpenLoop => "Detector Fault Open Loop",
            EventCode::DetectorFaultShortedLoop => "Detector Fault Shorted Loop",
            EventCode::DetectorFaultExcessiveChange => "Detector Fault Excessive Change",
            EventCode::PedDetectorOff => "Pedestrian Detector Off",
            EventCode::PedDetectorOn => "Pedestrian Detector On",
            EventCode::PreemptCallInputOn => "Preempt Call Input On",
            EventCode::PreemptCallInputOff => "Preempt Call Input Off",
            EventCode::PreemptEntryStarted => "Preempt Entry Started",
            EventCode::PreemptBeginTrackClearance => "Preempt Begin Track Clearance",
            EventCode::PreemptBeginDwell => "Preempt Begin Dwell Service",
            EventCode::PreemptMaxPresenceExceeded => "Preempt Max Presence Exceeded",
            EventCode::PreemptBeginExitInterval => "Preempt Begin Exit Interval",
            EventCode::TspCheckIn => "TSP Check In",
            EventCode::TspAdjustEarlyGreen => "TSP Adjustment to Early Green",
            EventCode::TspAdjustExtendGreen => "TSP Adjustment to Extend Green",
            EventCode::TspCheckOut => "TSP Check Out",
            EventCode::CoordPatternChange => "Coord Pattern Change",
            EventCode::CycleLengthChange => "Cycle Length Change",
            EventCode::OffsetLengthChange => "Offset Length Change",
            EventCode::SplitChange1 => "Split 1 Change",
            EventCode::SplitChange2 => "Split 2 Change",
            EventCode::SplitChange3 => "Split 3 Change",
            EventCode::SplitChange4 => "Split 4 Change",
            EventCode::SplitChange5 => "Split 5 Change",
            EventCode::SplitChange6 => "Split 6 Change",
            EventCode::SplitChange7 => "Split 7 Change",
            EventCode::SplitChange8 => "Split 8 Change",
            EventCode::SplitChange9 => "Split 9 Change",
            EventCode::SplitChange10 => "Split 10 Change",
            EventCode::SplitChange11 => "Split 11 Change",
            EventCode::SplitChange12 => "Split 12 Change",
            EventCode::SplitChange13 => "Split 13 Change",
            EventCode::SplitChange14 => "Split 14 Change",
            EventCode::SplitChange15 => "Split 15 Change",
            EventCode::SplitChange16 => "Split 16 Change",
            EventCode::CoordCycleStateChange => "Coord Cycle State Change",
            EventCode::CoordPhaseYieldPoint => "Coordinated Phase Yield Point",
            EventCode::CoordPhaseBegin => "Coordinated Phase Begin",
            EventCode::UnitControlStatusChange => "Unit Control Status Change",
            EventCode::UnitFlashStatusChange => "Unit Flash Status Change",
            EventCode::UnitAlarmStatusChange => "Unit Alarm Status Change",
            EventCode::ManualControlEnable => "Manual Control Enable",
            EventCode::AlarmOn => "Alarm On",
            EventCode::AlarmOff => "Alarm Off",
        }
    }

    /// "Split N change" (134–149) for phase index 0..16; the parameter is
    /// the new split in seconds.
    pub const fn split_change(phase_index: usize) -> EventCode {
        Self::ALL[Self::SPLIT_CHANGE_1 + phase_index]
    }

    /// Where the sixteen split changes begin in [`ALL`](Self::ALL)
    /// (numeric order keeps them together), found at compile time.
    const SPLIT_CHANGE_1: usize = {
        let mut i = 0;
        while Self::ALL[i] as u16 != EventCode::SplitChange1 as u16 {
            i += 1;
        }
        i
    };
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

    /// `ALL` lists every variant once, in order, so `from_code` knows them
    /// all: counted against the enum's own text (`name` is an exhaustive
    /// match, so every variant has a name).
    #[test]
    fn every_code_is_listed_once_with_a_name() {
        let text = include_str!("event.rs");
        let start = text.find("pub enum EventCode {").expect("the enum");
        let body = &text[start..start + text[start..].find("\n}\n").expect("its end")];
        let variants = body.lines().filter(|l| l.trim_end().ends_with(',') && l.contains(" = ")).count();
        assert_eq!(EventCode::ALL.len(), variants);
        assert!(EventCode::ALL.windows(2).all(|w| w[0].code() < w[1].code()), "in numeric order, no repeats");
        for e in EventCode::ALL {
            assert_eq!(EventCode::from_code(e.code()), Some(e));
            assert!(!e.name().is_empty());
        }
        assert_eq!(EventCode::from_code(13), None);
        assert_eq!(EventCode::PhaseGapOut.name(), "Phase Gap Out");
    }

    #[test]
    fn split_changes_are_134_to_149_by_phase() {
        for i in 0..16 {
            assert_eq!(EventCode::split_change(i).code(), 134 + i as u16);
        }
    }

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
