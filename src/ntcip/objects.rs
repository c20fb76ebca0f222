//! What each served NTCIP 1202 object reads as, from one intersection's
//! definition and latest snapshot: pure functions of their arguments, so
//! every mapping is tested without a socket (docs/standards.md lists them).
//!
//! Table rows follow the MIB's "rows = the max object" rule: phases
//! `1..=maxPhases` (the highest phase number defined), a row for a number
//! the controller does not use reads as disabled (`phaseRing` 0,
//! `vehicleDetectorCallPhase` 0); patterns `1..=maxPatterns` likewise (cycle 0).

use crate::core::detector::DetectorFault;
use crate::core::ids::{PhaseId, PhaseSet};
use crate::core::spec::{ControllerSpec, PlanMode, ScheduleDays, ScheduleRow};
use crate::core::{FlashReason, Indication, OperatingMode, PedIndication, PreemptStage, Snapshot, Span, UnitState};

use super::mib::Object;

/// Highest pattern number NTCIP can name: 254 is free and 255 flash
/// (`systemPatternControl`, `coordPatternStatus`).
pub const MAX_PATTERN: u8 = 253;
pub const PATTERN_FREE: u8 = 254;
pub const PATTERN_FLASH: u8 = 255;

/// What the agent itself holds per intersection: the centre's last
/// `systemPatternControl`, `unitBackupTime`, and whether the backup timer
/// ran out since the centre last set anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CentreState {
    pub pattern_control: u8,
    pub backup_time_s: u16,
    pub in_backup: bool,
}

/// One intersection as the objects read it.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub spec: &'a ControllerSpec,
    /// `None` before the engine published its first snapshot.
    pub snap: Option<&'a Snapshot>,
    pub centre: CentreState,
}

impl View<'_> {
    pub fn max_phases(&self) -> u32 {
        self.spec.phases.iter().map(|p| u32::from(p.id.number())).max().unwrap_or(0)
    }

    pub fn max_detectors(&self) -> u32 {
        self.spec.detectors.iter().map(|d| u32::from(d.channel.number())).max().unwrap_or(0)
    }

    pub fn max_patterns(&self) -> u32 {
        self.spec.plans.iter().map(|p| p.number).filter(|&n| n <= MAX_PATTERN).max().map_or(0, u32::from)
    }

    pub fn max_day_plans(&self) -> u32 {
        self.spec.schedule.day_plans.len().min(255) as u32
    }

    /// The most events any day plan has: every day plan has this many
    /// rows (NTCIP 1201 `maxDayPlanEvents`), the unused ones empty.
    pub fn max_day_plan_events(&self) -> u32 {
        self.spec.schedule.day_plans.iter().map(|d| d.events.len()).max().unwrap_or(0).min(255) as u32
    }

    fn schedule_rows(&self) -> Vec<ScheduleRow> {
        let mut rows = self.spec.schedule.rows();
        rows.truncate(usize::from(u16::MAX));
        rows
    }

    pub fn max_preempts(&self) -> u32 {
        self.spec.preempts.iter().map(|p| u32::from(p.input)).max().unwrap_or(0)
    }

    /// The instances of `object` in OID order: `[]` for a scalar (`.0`),
    /// else each row's index arcs.
    pub fn rows(&self, object: Object) -> Vec<Vec<u32>> {
        let one = |n: u32| (1..=n).map(|k| vec![k]).collect();
        match table_of(object) {
            Table::Scalar => vec![vec![]],
            Table::Phase => one(self.max_phases()),
            Table::PhaseGroup => one(self.max_phases().div_ceil(8)),
            Table::Detector => one(self.max_detectors()),
            Table::DetectorGroup => one(self.max_detectors().div_ceil(8)),
            Table::Pattern => one(self.max_patterns()),
            Table::Split => {
                let phases = self.max_phases();
                (1..=self.max_patterns()).flat_map(|s| (1..=phases).map(move |p| vec![s, p])).collect()
            }
            Table::Preempt => one(self.max_preempts()),
            Table::TimeBaseSchedule => one(self.schedule_rows().len() as u32),
            Table::DayPlanEvent => {
                let events = self.max_day_plan_events();
                (1..=self.max_day_plans()).flat_map(|d| (1..=events).map(move |e| vec![d, e])).collect()
            }
        }
    }

    /// The value of `object` at row `index` (`[]` for a scalar), if that
    /// instance exists.
    pub fn value(&self, object: Object, index: &[u32]) -> Option<i64> {
        if !self.rows(object).iter().any(|r| r == index) {
            return None;
        }
        let row = index.first().copied().unwrap_or(0);
        Some(match table_of(object) {
            Table::Scalar => self.scalar(object),
            Table::Phase => self.phase(object, row),
            Table::PhaseGroup => self.phase_group(object, row),
            Table::Detector => self.detector(object, row),
            Table::DetectorGroup => self.detector_group(object, row),
            Table::Pattern => self.pattern(object, row),
            Table::Split => self.split(object, row, index.get(1).copied().unwrap_or(0)),
            Table::Preempt => self.preempt(object, row),
            Table::TimeBaseSchedule => self.time_base_schedule(object, row),
            Table::DayPlanEvent => self.day_plan_event(object, row, index.get(1).copied().unwrap_or(0)),
        })
    }

    fn scalar(&self, object: Object) -> i64 {
        let snap = self.snap;
        match object {
            Object::MaxPhases => self.max_phases().into(),
            Object::MaxPhaseGroups => self.max_phases().div_ceil(8).into(),
            Object::MaxVehicleDetectors => self.max_detectors().into(),
            Object::MaxVehicleDetectorStatusGroups => self.max_detectors().div_ceil(8).into(),
            Object::MaxPatterns | Object::MaxSplits | Object::MaxTimebaseAscActions => self.max_patterns().into(),
            Object::MaxPreempts => self.max_preempts().into(),
            Object::MaxRings => self.spec.rings.len() as i64,
            Object::UnitBackupTime => self.centre.backup_time_s.into(),
            Object::SystemPatternControl => self.centre.pattern_control.into(),
            Object::UnitControlStatus => self.unit_control_status(),
            Object::UnitFlashStatus => snap.map_or(1, |s| flash_status(s.unit)),
            Object::UnitAlarmStatus1 => snap.map_or(0, alarm_status1),
            Object::ShortAlarmStatus => snap.map_or(0, short_alarm_status),
            Object::CoordPatternStatus => snap.map_or(0, |s| pattern_status(s).into()),
            Object::LocalFreeStatus => snap.map_or(1, free_status),
            Object::CoordCycleStatus => snap.map_or(0, |s| match s.cycle_time {
                // Counts down from the cycle length to zero.
                Some(t) if !s.cycle.is_zero() => secs(s.cycle.saturating_sub(t)),
                _ => 0,
            }),
            Object::CoordSyncStatus => snap.and_then(|s| s.cycle_time).map_or(0, secs),
            Object::TimebaseAscActionStatus => self.timebase_action(),
            Object::MaxTimeBaseScheduleEntries => self.schedule_rows().len() as i64,
            Object::MaxDayPlans => self.max_day_plans().into(),
            Object::MaxDayPlanEvents => self.max_day_plan_events().into(),
            _ => 0,
        }
    }

    /// `unitControlStatus`: the centre's pattern in force (systemControl),
    /// its backup timer run out (backupMode), else the time-of-day
    /// schedule (timebase).
    fn unit_control_status(&self) -> i64 {
        if self.centre.in_backup {
            4
        } else if self.centre.pattern_control != 0 {
            2
        } else {
            6
        }
    }

    /// `timebaseAscActionStatus`: one action per pattern (action n runs
    /// pattern n), the running plan's while the schedule is in control.
    fn timebase_action(&self) -> i64 {
        match self.snap {
            Some(s)
                if self.centre.pattern_control == 0 && s.mode == OperatingMode::Scheduled && s.plan <= MAX_PATTERN =>
            {
                s.plan.into()
            }
            _ => 0,
        }
    }

    fn phase(&self, object: Object, number: u32) -> i64 {
        let Some(p) = u8::try_from(number).ok().and_then(|n| self.spec.phases.iter().find(|p| p.id.number() == n))
        else {
            // A phase number this controller does not use: a disabled row.
            return if object == Object::PhaseNumber { number.into() } else { 0 };
        };
        let t = &p.timing;
        match object {
            Object::PhaseNumber => number.into(),
            Object::PhaseWalk => secs(t.walk),
            Object::PhasePedestrianClear => secs(t.ped_clear),
            Object::PhaseMinimumGreen => secs(t.min_green),
            Object::PhasePassage => tenths(t.passage),
            Object::PhaseMaximum1 => secs(t.max1),
            Object::PhaseMaximum2 => secs(t.max2),
            Object::PhaseYellowChange => tenths(t.yellow),
            Object::PhaseRedClear => tenths(t.red_clear),
            Object::PhaseAddedInitial => tenths(t.density.added_initial),
            Object::PhaseMaximumInitial => secs(t.density.max_initial),
            Object::PhaseTimeBeforeReduction => secs(t.density.time_before_reduction),
            Object::PhaseTimeToReduce => secs(t.density.time_to_reduce),
            Object::PhaseMinimumGap => tenths(t.density.min_gap),
            // Rings are numbered from 1 in NTCIP, indexed from 0 here.
            Object::PhaseRing => p.ring as i64 + 1,
            _ => 0,
        }
    }

    fn phase_group(&self, object: Object, group: u32) -> i64 {
        if object == Object::PhaseStatusGroupNumber {
            return group.into();
        }
        let Some(s) = self.snap else { return 0 };
        let vehicle = |want: &[Indication]| phases_where(|p| want.contains(&s.output.phase(p)));
        let ped = |want: PedIndication| phases_where(|p| s.output.ped(p) == want);
        let (on, next) =
            s.rings[..usize::from(s.ring_count)].iter().fold((PhaseSet::EMPTY, PhaseSet::EMPTY), |(on, next), r| {
                let mut on = on;
                let mut next = next;
                if let Some(p) = r.phase {
                    on.insert(p);
                }
                if let Some(p) = r.next {
                    next.insert(p);
                }
                (on, next)
            });
        let set = match object {
            Object::PhaseStatusGroupReds => vehicle(&[Indication::Red, Indication::FlashingRed]),
            Object::PhaseStatusGroupYellows => vehicle(&[Indication::Yellow, Indication::FlashingYellow]),
            Object::PhaseStatusGroupGreens => vehicle(&[Indication::Green]),
            Object::PhaseStatusGroupDontWalks => ped(PedIndication::DontWalk),
            Object::PhaseStatusGroupPedClears => ped(PedIndication::FlashingDontWalk),
            Object::PhaseStatusGroupWalks => ped(PedIndication::Walk),
            Object::PhaseStatusGroupVehCalls => s.vehicle_calls,
            Object::PhaseStatusGroupPedCalls => s.ped_calls,
            Object::PhaseStatusGroupPhaseOns => on,
            Object::PhaseStatusGroupPhaseNexts => next,
            _ => PhaseSet::EMPTY,
        };
        group_bits(set.bits().into(), group)
    }

    /// The detector on channel `number` and its index in the spec (and
    /// the snapshot, which keeps the spec's order).
    fn channel(&self, number: u32) -> Option<(usize, &crate::core::spec::DetectorSpec)> {
        self.spec.detectors.iter().enumerate().find(|(_, d)| u32::from(d.channel.number()) == number)
    }

    fn detector(&self, object: Object, number: u32) -> i64 {
        if object == Object::VehicleDetectorNumber {
            return number.into();
        }
        let Some((i, d)) = self.channel(number) else { return 0 };
        let minutes = |s: Option<Span>| s.map_or(0, |s| (s.as_millis() / 60_000).min(255) as i64);
        match object {
            // NTCIP has one call phase per detector: the lowest it calls.
            Object::VehicleDetectorCallPhase => d.calls.iter().next().map_or(0, |p| p.number().into()),
            Object::VehicleDetectorDelay => tenths(d.delay),
            Object::VehicleDetectorExtend => tenths(d.extend),
            Object::VehicleDetectorNoActivity => minutes(d.diagnostics.no_activity),
            Object::VehicleDetectorMaxPresence => minutes(d.diagnostics.max_presence),
            Object::VehicleDetectorErraticCounts => d.diagnostics.erratic_per_minute.map_or(0, |n| n.min(255).into()),
            Object::VehicleDetectorAlarms => {
                self.snap.and_then(|s| s.detectors[i].fault).map_or(0, detector_alarm_bits)
            }
            _ => 0,
        }
    }

    fn detector_group(&self, object: Object, group: u32) -> i64 {
        if object == Object::VehicleDetectorStatusGroupNumber {
            return group.into();
        }
        let Some(s) = self.snap else { return 0 };
        let mut bits: u64 = 0;
        for (i, d) in self.spec.detectors.iter().enumerate() {
            let live = &s.detectors[i];
            let on = match object {
                Object::VehicleDetectorStatusGroupActive => live.presence,
                Object::VehicleDetectorStatusGroupAlarms => live.fault.is_some(),
                _ => false,
            };
            if on && d.channel.number() >= 1 {
                bits |= 1 << (d.channel.number() - 1);
            }
        }
        group_bits(bits, group)
    }

    fn pattern(&self, object: Object, number: u32) -> i64 {
        let plan = u8::try_from(number).ok().and_then(|n| self.spec.plan(n));
        match object {
            Object::PatternNumber | Object::TimebaseAscActionNumber => number.into(),
            // Split table n holds pattern n's splits; action n runs pattern n.
            Object::PatternSplitNumber | Object::TimebaseAscPattern => number.into(),
            Object::PatternCycleTime => plan.map_or(0, |p| secs(p.cycle)),
            Object::PatternOffsetTime => plan.map_or(0, |p| secs(p.offset)),
            _ => 0,
        }
    }

    fn split(&self, object: Object, split: u32, phase: u32) -> i64 {
        let plan = u8::try_from(split).ok().and_then(|n| self.spec.plan(n));
        let id = u8::try_from(phase).ok().and_then(PhaseId::new);
        match object {
            Object::SplitNumber => split.into(),
            Object::SplitPhase => phase.into(),
            Object::SplitTime => plan.zip(id).map_or(0, |(p, id)| secs(p.splits[id.index()])),
            Object::SplitCoordPhase => plan.zip(id).map_or(0, |(p, id)| i64::from(p.coordinated.contains(id))),
            _ => 0,
        }
    }

    fn preempt(&self, object: Object, input: u32) -> i64 {
        let spec = self.spec.preempts.iter().find(|p| u32::from(p.input) == input);
        match object {
            Object::PreemptNumber => input.into(),
            Object::PreemptDelay => spec.map_or(0, |p| secs(p.delay)),
            Object::PreemptMinimumDuration => spec.map_or(0, |p| secs(p.min_duration)),
            Object::PreemptState => match self.snap.and_then(|s| s.preempt).filter(|p| u32::from(p.input) == input) {
                // notActiveWithCall, entryStarted, trackService, dwell,
                // exitStarted.
                Some(p) => match p.stage {
                    PreemptStage::Delay => 3,
                    PreemptStage::Entry => 4,
                    PreemptStage::TrackClearance => 5,
                    PreemptStage::Dwell => 6,
                    PreemptStage::Exit => 8,
                },
                // notActive; an input the controller does not have: other.
                None if spec.is_some() => 2,
                None => 1,
            },
            _ => 0,
        }
    }
}

impl View<'_> {
    /// `timeBaseScheduleTable` (NTCIP 1201): the rows of
    /// [`crate::core::spec::Schedule::rows`] in the MIB's bit layout
    /// (month bit 1 = January, day bit 1 = Sunday, date bit 1 = the 1st;
    /// bit 0 of each is reserved). A weekday row allows every month and
    /// date; a holiday row its month and date on every weekday, so it is
    /// the more specific row the MIB's selection rule picks.
    fn time_base_schedule(&self, object: Object, number: u32) -> i64 {
        const EVERY_MONTH: i64 = 0b1_1111_1111_1110;
        const EVERY_DAY: i64 = 0b1111_1110;
        const EVERY_DATE: i64 = 0xFFFF_FFFE;
        let Some(row) = (number as usize).checked_sub(1).and_then(|k| self.schedule_rows().get(k).copied()) else {
            return 0;
        };
        let (month, day, date) = match row.days {
            // Greenwave's bit 0 is Monday; the MIB's Monday is bit 2 and
            // its Sunday bit 1.
            ScheduleDays::Weekdays(week) => {
                let mib = (0..7).filter(|w| week & 1 << w != 0).fold(0i64, |m, w| m | 1 << ((w + 1) % 7 + 1));
                (EVERY_MONTH, mib, EVERY_DATE)
            }
            ScheduleDays::Date { month, day } => (1 << month.clamp(1, 12), EVERY_DAY, 1 << day.clamp(1, 31)),
        };
        match object {
            Object::TimeBaseScheduleNumber => number.into(),
            Object::TimeBaseScheduleMonth => month,
            Object::TimeBaseScheduleDay => day,
            Object::TimeBaseScheduleDate => date,
            Object::TimeBaseScheduleDayPlan => row.day_plan as i64 + 1,
            _ => 0,
        }
    }

    /// `timeBaseDayPlanTable` (NTCIP 1201): day plan `number`'s event
    /// `event` (file order); the action is the time-base action of the
    /// event's plan (`timebaseAscActionNumber`, action n runs pattern n),
    /// which the agent sends as that object's OID. An unused event reads
    /// 00:00 with no action (0).
    fn day_plan_event(&self, object: Object, number: u32, event: u32) -> i64 {
        let found = self
            .spec
            .schedule
            .day_plans
            .get((number as usize).wrapping_sub(1))
            .and_then(|d| d.events.get((event as usize).wrapping_sub(1)))
            .filter(|e| e.plan <= MAX_PATTERN);
        match object {
            Object::DayPlanNumber => number.into(),
            Object::DayPlanEventNumber => event.into(),
            Object::DayPlanHour => found.map_or(0, |e| (e.minute_of_day / 60).into()),
            Object::DayPlanMinute => found.map_or(0, |e| (e.minute_of_day % 60).into()),
            Object::DayPlanActionNumberOID => found.map_or(0, |e| e.plan.into()),
            _ => 0,
        }
    }
}

/// The table an object's rows come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Scalar,
    Phase,
    PhaseGroup,
    Detector,
    DetectorGroup,
    Pattern,
    Split,
    Preempt,
    TimeBaseSchedule,
    DayPlanEvent,
}

fn table_of(object: Object) -> Table {
    use Object::*;
    match object {
        PhaseNumber
        | PhaseWalk
        | PhasePedestrianClear
        | PhaseMinimumGreen
        | PhasePassage
        | PhaseMaximum1
        | PhaseMaximum2
        | PhaseYellowChange
        | PhaseRedClear
        | PhaseAddedInitial
        | PhaseMaximumInitial
        | PhaseTimeBeforeReduction
        | PhaseTimeToReduce
        | PhaseMinimumGap
        | PhaseRing => Table::Phase,
        PhaseStatusGroupNumber
        | PhaseStatusGroupReds
        | PhaseStatusGroupYellows
        | PhaseStatusGroupGreens
        | PhaseStatusGroupDontWalks
        | PhaseStatusGroupPedClears
        | PhaseStatusGroupWalks
        | PhaseStatusGroupVehCalls
        | PhaseStatusGroupPedCalls
        | PhaseStatusGroupPhaseOns
        | PhaseStatusGroupPhaseNexts => Table::PhaseGroup,
        VehicleDetectorNumber
        | VehicleDetectorCallPhase
        | VehicleDetectorDelay
        | VehicleDetectorExtend
        | VehicleDetectorNoActivity
        | VehicleDetectorMaxPresence
        | VehicleDetectorErraticCounts
        | VehicleDetectorAlarms => Table::Detector,
        VehicleDetectorStatusGroupNumber | VehicleDetectorStatusGroupActive | VehicleDetectorStatusGroupAlarms => {
            Table::DetectorGroup
        }
        PatternNumber
        | PatternCycleTime
        | PatternOffsetTime
        | PatternSplitNumber
        | TimebaseAscActionNumber
        | TimebaseAscPattern => Table::Pattern,
        SplitNumber | SplitPhase | SplitTime | SplitCoordPhase => Table::Split,
        PreemptNumber | PreemptDelay | PreemptMinimumDuration | PreemptState => Table::Preempt,
        TimeBaseScheduleNumber
        | TimeBaseScheduleMonth
        | TimeBaseScheduleDay
        | TimeBaseScheduleDate
        | TimeBaseScheduleDayPlan => Table::TimeBaseSchedule,
        DayPlanNumber | DayPlanEventNumber | DayPlanHour | DayPlanMinute | DayPlanActionNumberOID => {
            Table::DayPlanEvent
        }
        MaxPhases
        | MaxPhaseGroups
        | MaxVehicleDetectors
        | MaxVehicleDetectorStatusGroups
        | UnitBackupTime
        | UnitControlStatus
        | UnitFlashStatus
        | UnitAlarmStatus1
        | ShortAlarmStatus
        | MaxPatterns
        | MaxSplits
        | CoordPatternStatus
        | LocalFreeStatus
        | CoordCycleStatus
        | CoordSyncStatus
        | SystemPatternControl
        | MaxTimebaseAscActions
        | TimebaseAscActionStatus
        | MaxPreempts
        | MaxRings
        | MaxTimeBaseScheduleEntries
        | MaxDayPlans
        | MaxDayPlanEvents => Table::Scalar,
    }
}

/// Whole seconds (the MIB's unit for most times), truncated.
fn secs(s: Span) -> i64 {
    (s.as_millis() / 1000) as i64
}

/// Tenths of a second (passage, yellow, red clearance, detector delay).
fn tenths(s: Span) -> i64 {
    (s.as_millis() / 100) as i64
}

fn phases_where(pred: impl Fn(PhaseId) -> bool) -> PhaseSet {
    let mut set = PhaseSet::EMPTY;
    for i in 0..crate::core::ids::MAX_PHASES {
        let p = PhaseId::from_index(i);
        if pred(p) {
            set.insert(p);
        }
    }
    set
}

/// The MIB's status group bitmap: group g's bit k is number 8(g-1)+k+1
/// (bit 7 = number 8g, bit 0 = number 8g-7), from `bits` where bit n-1 is
/// number n.
fn group_bits(bits: u64, group: u32) -> i64 {
    let shift = 8 * (group.saturating_sub(1));
    if shift >= 64 { 0 } else { ((bits >> shift) & 0xff) as i64 }
}

/// `vehicleDetectorAlarms`: bit 2 erratic output, bit 1 max presence,
/// bit 0 no activity.
fn detector_alarm_bits(fault: DetectorFault) -> i64 {
    match fault {
        DetectorFault::NoActivity => 1,
        DetectorFault::MaxPresence => 2,
        DetectorFault::Erratic | DetectorFault::ImplausibleCount => 4,
    }
}

/// `unitFlashStatus`: notFlash(2), automatic(3), localManual(4),
/// faultMonitor(5), mmu(6), startup(7), other(1).
fn flash_status(unit: UnitState) -> i64 {
    match unit {
        UnitState::Flash { reason, .. } => match reason {
            FlashReason::Startup => 7,
            FlashReason::Operator => 3,
            FlashReason::MonitorTrip => 5,
            FlashReason::ManualSwitch => 4,
            FlashReason::CabinetMonitor => 6,
            _ => 1,
        },
        UnitState::AllRed { .. } | UnitState::Run => 2,
    }
}

fn running_coordination(s: &Snapshot) -> bool {
    matches!(s.unit, UnitState::Run) && s.plan_mode != PlanMode::Free && s.mode != OperatingMode::Actuated
}

/// `coordPatternStatus`: the running pattern, 254 free, 255 flash.
fn pattern_status(s: &Snapshot) -> u8 {
    match s.unit {
        UnitState::Flash { .. } => PATTERN_FLASH,
        _ if !running_coordination(s) => PATTERN_FREE,
        _ => s.plan.min(MAX_PATTERN),
    }
}

/// `localFreeStatus`: notFree(2), commandFree(3: free was asked for),
/// coordFree(6: the plan runs free), other(1: flash).
fn free_status(s: &Snapshot) -> i64 {
    match s.unit {
        UnitState::Flash { .. } => 1,
        _ if s.mode == OperatingMode::Actuated => 3,
        _ if s.plan_mode == PlanMode::Free => 6,
        _ => 2,
    }
}

/// `unitAlarmStatus1`: bit 7 coord active, bit 6 local free, bit 5 local
/// flash (the cabinet's flash switch), bit 4 MMU flash.
fn alarm_status1(s: &Snapshot) -> i64 {
    let mut bits = 0;
    if running_coordination(s) && s.preempt.is_none() {
        bits |= 1 << 7;
    }
    if matches!(s.unit, UnitState::Run) && !running_coordination(s) {
        bits |= 1 << 6;
    }
    if let UnitState::Flash { reason, .. } = s.unit {
        match reason {
            FlashReason::ManualSwitch => bits |= 1 << 5,
            FlashReason::CabinetMonitor => bits |= 1 << 4,
            _ => {}
        }
    }
    bits
}

/// `shortAlarmStatus`: bit 5 detector fault, bit 1 T&F flash (switch or
/// MMU), bit 0 preempt.
fn short_alarm_status(s: &Snapshot) -> i64 {
    let mut bits = 0;
    if s.detectors[..usize::from(s.detector_count)].iter().any(|d| d.fault.is_some()) {
        bits |= 1 << 5;
    }
    if matches!(s.unit, UnitState::Flash { reason: FlashReason::ManualSwitch | FlashReason::CabinetMonitor, .. }) {
        bits |= 1 << 1;
    }
    if s.preempt.is_some() {
        bits |= 1;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::image::OutputFrame;
    use crate::core::testing::eight_phase;
    use crate::core::{Controller, Instant};
    use crate::ntcip::mib::{DEVICES, OBJECTS};

    fn p(n: u8) -> PhaseId {
        PhaseId::new(n).expect("phase")
    }

    /// The generated table against the OIDs the project's survey of NTCIP
    /// 1202 quotes (docs/standards.md, "NTCIP 1202"): asc, the groups, the
    /// phase status group columns; the NTCIP 1201 time base below
    /// `global` (devices.6.3.3); and GETNEXT order.
    #[test]
    fn the_generated_table_agrees_with_the_surveyed_oids_and_walks_in_order() {
        assert_eq!(DEVICES, [1, 3, 6, 1, 4, 1, 1206, 4, 2]);
        // Below asc (devices.1), without the asc arc.
        let arcs = |name: &str| {
            OBJECTS.iter().find(|e| e.name == name).and_then(|e| e.arcs.strip_prefix(&[1][..])).map(<[u32]>::to_vec)
        };
        let groups = [
            ("phase", 1),
            ("vehicleDetector", 2),
            ("unit", 3),
            ("pattern", 4),
            ("split", 4),
            ("timebaseAsc", 5),
            ("preempt", 6),
        ];
        for e in &OBJECTS {
            if let Some((_, g)) = groups.iter().find(|(prefix, _)| e.name.starts_with(prefix)) {
                assert_eq!(e.arcs[..2], [1, *g], "{} under asc.{g}", e.name);
            }
        }
        let columns = [
            "Reds",
            "Yellows",
            "Greens",
            "DontWalks",
            "PedClears",
            "Walks",
            "VehCalls",
            "PedCalls",
            "PhaseOns",
            "PhaseNexts",
        ];
        for (k, c) in columns.iter().enumerate() {
            assert_eq!(arcs(&format!("phaseStatusGroup{c}")), Some(vec![1, 4, 1, k as u32 + 2]), "{c}");
        }
        assert_eq!(arcs("unitBackupTime").map(|a| a[0]), Some(3));
        assert_eq!(arcs("maxRings"), Some(vec![7, 1]));
        assert!(OBJECTS.windows(2).all(|w| w[0].arcs < w[1].arcs), "rows in OID order");
        let writable: Vec<_> = OBJECTS.iter().filter(|e| e.writable).map(|e| e.name).collect();
        assert_eq!(
            writable,
            [
                "phaseWalk",
                "phasePedestrianClear",
                "phaseMinimumGreen",
                "phasePassage",
                "phaseMaximum1",
                "phaseYellowChange",
                "phaseRedClear",
                "unitBackupTime",
                "splitTime",
                "systemPatternControl"
            ]
        );
        let global = |name: &str| OBJECTS.iter().find(|e| e.name == name).map(|e| e.arcs.to_vec());
        assert_eq!(global("dayPlanHour"), Some(vec![6, 3, 3, 5, 1, 3]));
        assert_eq!(global("timeBaseScheduleDayPlan"), Some(vec![6, 3, 3, 2, 1, 5]));
        assert!(OBJECTS.iter().find(|e| e.name == "dayPlanActionNumberOID").is_some_and(|e| e.oid));
        assert!(OBJECTS.iter().find(|e| e.name == "timeBaseScheduleDate").is_some_and(|e| e.unsigned));
    }

    /// elm-and-oak's week (weekday Mon–Fri, weekend Sat–Sun) and holidays
    /// as NTCIP 1201 rows.
    #[test]
    fn the_schedule_reads_as_time_base_rows_and_day_plan_events() {
        let (cfg, _) = crate::config::load_intersection_str(
            "elm-and-oak.toml",
            include_str!("../../controllers/elm-and-oak.toml"),
        )
        .expect("elm-and-oak");
        let v = view(&cfg.spec, None);
        assert_eq!(v.value(Object::MaxTimeBaseScheduleEntries, &[]), Some(4), "2 week rows + 2 holidays");
        // Weekdays: Monday (bit 2) … Friday (bit 6); the weekend Saturday (bit 7) and Sunday (bit 1).
        assert_eq!(v.value(Object::TimeBaseScheduleDay, &[1]), Some(0b0111_1100));
        assert_eq!(v.value(Object::TimeBaseScheduleDay, &[2]), Some(0b1000_0010));
        assert_eq!(v.value(Object::TimeBaseScheduleDayPlan, &[2]), Some(2));
        // 12-25: December (bit 12), the 25th (bit 25), any weekday, the weekend day plan.
        let christmas = [4];
        assert_eq!(v.value(Object::TimeBaseScheduleMonth, &christmas), Some(1 << 12));
        assert_eq!(v.value(Object::TimeBaseScheduleDate, &christmas), Some(1 << 25));
        assert_eq!(v.value(Object::TimeBaseScheduleDayPlan, &christmas), Some(2));
        assert_eq!(v.value(Object::TimeBaseScheduleDate, &[1]), Some(0xFFFF_FFFE), "every date");
        // Weekday day plan: 00:00 plan 1, 07:00 plan 2, 19:00 plan 1;
        // the weekend's one event leaves rows 2 and 3 empty.
        assert_eq!(v.value(Object::MaxDayPlanEvents, &[]), Some(3));
        assert_eq!(v.rows(Object::DayPlanHour).len(), 6);
        assert_eq!(v.value(Object::DayPlanHour, &[1, 2]), Some(7));
        assert_eq!(v.value(Object::DayPlanActionNumberOID, &[1, 2]), Some(2));
        assert_eq!(v.value(Object::DayPlanHour, &[1, 3]), Some(19));
        assert_eq!(v.value(Object::DayPlanActionNumberOID, &[2, 2]), Some(0), "unused event");
    }

    fn view<'a>(spec: &'a ControllerSpec, snap: Option<&'a Snapshot>) -> View<'a> {
        View { spec, snap, centre: CentreState::default() }
    }

    #[test]
    fn phase_rows_read_the_timing_in_the_mibs_units() {
        let spec = eight_phase();
        let v = view(&spec, None);
        assert_eq!(v.value(Object::MaxPhases, &[]), Some(8));
        assert_eq!(v.rows(Object::PhaseNumber).len(), 8);
        assert_eq!(v.value(Object::PhaseMinimumGreen, &[2]), Some(8), "seconds");
        assert_eq!(v.value(Object::PhasePassage, &[2]), Some(30), "tenths");
        assert_eq!(v.value(Object::PhaseYellowChange, &[1]), Some(35), "tenths");
        assert_eq!(v.value(Object::PhaseWalk, &[2]), Some(7));
        assert_eq!(v.value(Object::PhaseMinimumGreen, &[9]), None, "no row past maxPhases");
        assert_eq!(v.value(Object::MaxPhases, &[1]), None, "a scalar has one instance");
        // Plan 2: coordinated on 2 and 6 at 100 s, split table 2.
        assert_eq!(v.value(Object::PatternCycleTime, &[2]), Some(100));
        assert_eq!(v.value(Object::SplitCoordPhase, &[2, 2]), Some(1));
        assert_eq!(v.value(Object::SplitCoordPhase, &[2, 1]), Some(0));
        assert_eq!(v.value(Object::VehicleDetectorCallPhase, &[3]), Some(3), "channel = phase");
    }

    #[test]
    fn status_groups_are_the_mibs_bitmaps_and_flash_reads_as_pattern_255() {
        let spec = eight_phase();
        let mut snap = Controller::new(spec.clone(), Instant::from_millis(0)).snapshot();
        snap.unit = UnitState::Run;
        let mut frame = OutputFrame::default();
        frame.vehicle[p(2).index()] = Indication::Green;
        frame.vehicle[p(6).index()] = Indication::Yellow;
        frame.vehicle[p(1).index()] = Indication::Red;
        snap.output = frame;
        snap.vehicle_calls = PhaseSet::single(p(8));
        let v = view(&spec, Some(&snap));
        assert_eq!(v.value(Object::PhaseStatusGroupGreens, &[1]), Some(0b0000_0010), "bit 1 = phase 2");
        assert_eq!(v.value(Object::PhaseStatusGroupYellows, &[1]), Some(0b0010_0000), "bit 5 = phase 6");
        assert_eq!(v.value(Object::PhaseStatusGroupReds, &[1]), Some(0b0000_0001));
        assert_eq!(v.value(Object::PhaseStatusGroupVehCalls, &[1]), Some(0b1000_0000), "bit 7 = phase 8");
        snap.unit = UnitState::Flash { reason: FlashReason::Operator, since: Instant::from_millis(0) };
        let v = view(&spec, Some(&snap));
        assert_eq!(v.value(Object::CoordPatternStatus, &[]), Some(255));
        assert_eq!(v.value(Object::UnitFlashStatus, &[]), Some(3), "automatic");
        let centre = CentreState { pattern_control: 2, backup_time_s: 30, in_backup: false };
        assert_eq!(View { centre, ..v }.value(Object::UnitControlStatus, &[]), Some(2), "systemControl");
        let centre = CentreState { in_backup: true, ..centre };
        assert_eq!(View { centre, ..v }.value(Object::UnitControlStatus, &[]), Some(4), "backupMode");
    }
}
