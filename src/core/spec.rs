//! The validated controller definition the core runs: phases, rings,
//! barriers, detectors, overlaps, timing plans, the time-of-day schedule and
//! the bounds of the adaptive optimizer (which `adaptive` reads from here).
//!
//! A [`ControllerSpec`] is only ever built by `config::validate` (or by tests
//! through the same path), so the core may assume every invariant checked
//! there: phases in exactly one ring and barrier group, conflicts consistent
//! with the ring-barrier structure, clearances above their ITE minimums, splits
//! that fit their cycle. It is built once per (re)load and never allocates
//! while running.

use super::ids::{DetectorChannel, MAX_PHASES, OverlapId, PhaseId, PhaseSet};
use super::time::Span;

/// Recall mode (NTCIP 1202 `phaseOptions` recall bits, in words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recall {
    /// Served only on a detector or ped call.
    #[default]
    None,
    /// A constant vehicle call: served every cycle for at least min green.
    Min,
    /// A constant call that also holds the phase to its max green (no gap-out).
    Max,
    /// A constant pedestrian call: walk and ped clearance every cycle.
    Ped,
    /// A call placed only when no conflicting phase is called, so the phase
    /// is where the controller returns and rests when traffic is light.
    Soft,
}

/// What a phase's heads show while the intersection is in flash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlashIndication {
    #[default]
    Red,
    Yellow,
}

/// Timing of one phase, NTCIP 1202 `phaseTable` in plain words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseTiming {
    /// `phaseMinimumGreen`: green never ends before this.
    pub min_green: Span,
    /// `phasePassage`: each actuation extends green by this much (the gap).
    pub passage: Span,
    /// Volume-density operation (NTCIP 1202 names); zero where unused.
    pub density: VolumeDensity,
    /// `phaseMaximum1`: green limit once a conflicting call exists.
    pub max1: Span,
    /// `phaseMaximum2`: alternative limit selected by a plan.
    pub max2: Span,
    /// `phaseYellowChange`.
    pub yellow: Span,
    /// `phaseRedClear`.
    pub red_clear: Span,
    /// `phaseWalk`; zero means the phase has no pedestrian movement. It
    /// counts from the walk's start, so it includes any leading walk.
    pub walk: Span,
    /// Leading pedestrian interval: when pedestrians are served, walk
    /// starts this long before the vehicle green and the vehicle heads stay
    /// red meanwhile (MUTCD 4E.06, at least 3 s); zero for none. Shorter
    /// than `walk`, so walk always runs on into the green.
    pub leading_walk: Span,
    /// `phasePedestrianClear` (flashing don't walk).
    pub ped_clear: Span,
    /// The pedestrian clearance an extension request grants (an accessible
    /// push button's long press, or the crossing's extension input), in
    /// place of `ped_clear`; zero where the crossing has no extension.
    pub extended_ped_clear: Span,
    pub recall: Recall,
    /// Rest in walk: in free operation, a walk that has run its time stays
    /// on while no conflicting call, preemption or staged change waits.
    pub rest_in_walk: bool,
    /// Pedestrian recycle: in free operation, a ped call during the
    /// phase's green, after its walk, is served by a new walk in that green
    /// while nothing conflicting waits (else it waits for the next service).
    pub ped_recycle: bool,
    /// Served with a concurrent phase of another ring when its own ring has no
    /// call in the barrier group (NEMA dual entry).
    pub dual_entry: bool,
    /// NEMA conditional service: when a later phase of its ring gaps or
    /// maxes out with nothing else to serve before the barrier while
    /// another ring's green still times, the phase is served again if it
    /// has a call and its service fits in what that green can still run
    /// (its max, or its force-off or yield point in coordination): at
    /// least this long from the re-service's start, and its minimum
    /// service and clearance. `None`: never re-served.
    pub conditional_service: Option<Span>,
    pub flash: FlashIndication,
}

/// Volume-density timing: a longer initial green after a queue built up
/// on red, and a gap that shrinks while conflicting traffic waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolumeDensity {
    /// `phaseAddedInitial`: initial green per vehicle counted on red.
    pub added_initial: Span,
    /// `phaseMaximumInitial`: the most the added initial can reach.
    pub max_initial: Span,
    /// `phaseTimeBeforeReduction`: from a conflicting call to the gap's
    /// first reduction.
    pub time_before_reduction: Span,
    /// `phaseTimeToReduce`: from passage down to the minimum gap; zero
    /// turns gap reduction off.
    pub time_to_reduce: Span,
    /// `phaseMinimumGap`: the gap after reduction.
    pub min_gap: Span,
}

impl VolumeDensity {
    /// The initial green for `vehicles` counted since the phase's last
    /// yellow: `min_green` at least, `max_initial` at most.
    pub fn initial(&self, min_green: Span, vehicles: u16) -> Span {
        if self.added_initial.is_zero() {
            return min_green;
        }
        let added = Span::from_millis(self.added_initial.as_millis().saturating_mul(u64::from(vehicles)));
        added.min(self.max_initial).max(min_green)
    }

    /// The gap in force `waited` after a conflicting call arrived: the
    /// passage until the time before reduction, then down linearly over
    /// the time to reduce to the minimum gap.
    pub fn gap(&self, passage: Span, waited: Option<Span>) -> Span {
        let Some(waited) = waited else { return passage };
        // No time to reduce (the default): no reduction.
        if self.time_to_reduce.is_zero() || self.min_gap >= passage || waited <= self.time_before_reduction {
            return passage;
        }
        let reducing = waited - self.time_before_reduction;
        if reducing >= self.time_to_reduce {
            return self.min_gap;
        }
        let span = (passage - self.min_gap).as_millis();
        let cut = span * reducing.as_millis() / self.time_to_reduce.as_millis().max(1);
        passage - Span::from_millis(cut)
    }
}

impl PhaseTiming {
    pub fn has_ped(&self) -> bool {
        !self.walk.is_zero()
    }

    /// Green needed to serve a pedestrian fully inside green.
    pub fn ped_service(&self) -> Span {
        self.walk + self.ped_clear
    }

    /// The shortest the phase can be served (from its start, a leading
    /// walk included): min green, or with pedestrians their walk and
    /// clearance, and min green after any leading walk.
    pub fn service(&self, with_ped: bool) -> Span {
        if with_ped && self.has_ped() {
            (self.leading_walk + self.min_green).max(self.ped_service())
        } else {
            self.min_green
        }
    }

    /// Yellow plus red clearance.
    pub fn clearance(&self) -> Span {
        self.yellow + self.red_clear
    }
}

/// One phase of the controller.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseSpec {
    pub id: PhaseId,
    /// Free text for people ("EB through").
    pub name: String,
    /// Index into [`ControllerSpec::rings`].
    pub ring: usize,
    /// Index into [`ControllerSpec::barrier_groups`].
    pub group: usize,
    pub timing: PhaseTiming,
}

/// A ring: phases served one at a time, in this order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingSpec {
    pub sequence: Vec<PhaseId>,
}

/// Whether a detector serves vehicles or pedestrians (push buttons).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DetectorKind {
    #[default]
    Vehicle,
    Pedestrian,
}

/// Where a vehicle detector sits on its lane. Every vehicle crosses the
/// stop-bar loop once as it leaves; an advance loop (typically 3–5 s
/// upstream) sees it arrive, so the two counts bracket the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DetectorPlacement {
    #[default]
    StopBar,
    Advance,
}

/// NTCIP 1202 detector diagnostics; `None` disables a check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorDiagnostics {
    /// `vehicleDetectorNoActivity`: no actuation for this long is a fault.
    pub no_activity: Option<Span>,
    /// `vehicleDetectorMaxPresence`: continuous presence this long is a fault.
    pub max_presence: Option<Span>,
    /// `vehicleDetectorErraticCounts`: more actuations per minute is a fault.
    pub erratic_per_minute: Option<u16>,
}

/// A detector channel and what it does.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorSpec {
    pub channel: DetectorChannel,
    pub kind: DetectorKind,
    pub placement: DetectorPlacement,
    /// From an advance loop to the stop bar at the approach speed: arrivals
    /// on green project each actuation to the stop bar by this (ATSPM's
    /// distance over speed). Zero for stop-bar loops and push buttons.
    pub travel_time: Span,
    /// Phases this detector calls (`vehicleDetectorCallPhase`).
    pub calls: PhaseSet,
    /// Phases this detector extends while green.
    pub extends: PhaseSet,
    /// `vehicleDetectorDelay`: presence must last this long before it calls a
    /// phase that is not green.
    pub delay: Span,
    /// `vehicleDetectorExtend` (carry-over): output held this long after
    /// presence ends.
    pub extend: Span,
    /// A push button that asks for extended pedestrian clearance
    /// ([`PhaseTiming::extended_ped_clear`]) on the phases it calls, when
    /// pressed at least this long: an accessible push button's long press,
    /// or, at zero, every press of a crossing's extension input (a second
    /// button, a smart-card reader). `None` for other detectors.
    pub ped_extension: Option<Span>,
    pub diagnostics: DetectorDiagnostics,
}

/// An overlap: a signal group green with any of its parent phases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlapSpec {
    pub id: OverlapId,
    pub parents: PhaseSet,
    /// Phases that must never show green or yellow with this overlap.
    pub conflicts: PhaseSet,
    pub kind: OverlapKind,
}

/// How an overlap's head behaves beyond following its parents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverlapKind {
    /// Green with any parent, then its own yellow and red clearance.
    #[default]
    Normal,
    /// A protected/permissive left-turn head with a flashing yellow arrow
    /// (MUTCD 4D.17–4D.20, NTCIP 1202 FYA overlap): a green arrow with its
    /// one parent (the protected left phase), a flashing yellow arrow while
    /// `permissive` (the opposing through the left yields to) is green and
    /// the parent is not, and a steady yellow arrow whenever either ends,
    /// so the flashing arrow always ends with the opposing through and
    /// never leaves a left turner facing a "yellow trap".
    FlashingYellowArrow { permissive: PhaseId },
}

impl OverlapSpec {
    /// The opposing through of a flashing yellow arrow overlap.
    pub fn permissive_phase(&self) -> Option<PhaseId> {
        match self.kind {
            OverlapKind::Normal => None,
            OverlapKind::FlashingYellowArrow { permissive } => Some(permissive),
        }
    }

    /// What the flashing yellow arrow conflicts with: the protected arrow's
    /// conflicts except the opposing through it yields to.
    pub fn permissive_conflicts(&self) -> PhaseSet {
        match self.kind {
            OverlapKind::Normal => self.conflicts,
            OverlapKind::FlashingYellowArrow { permissive } => self.conflicts.difference(PhaseSet::single(permissive)),
        }
    }
}

/// How a plan runs the phases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlanMode {
    /// Fully actuated, no cycle (free).
    #[default]
    Free,
    /// Coordinated actuated: cycle, offset, splits, force-offs.
    Coordinated,
    /// Fixed time: every phase held to its split.
    Fixed,
}

/// Which maximum green a plan uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxSelect {
    #[default]
    Max1,
    Max2,
}

/// A timing plan (NTCIP "pattern" with its split table).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSpec {
    /// Plan number, as the schedule and operators refer to it (1..=255).
    pub number: u8,
    pub name: String,
    pub mode: PlanMode,
    /// Cycle length; zero in free mode.
    pub cycle: Span,
    /// Offset of the coordinated barrier group's start (cycle zero) from the
    /// coordination reference (midnight of the controller's clock).
    pub offset: Span,
    /// Split per phase (green + yellow + red clearance), indexed by phase
    /// index; zero for phases a free plan does not split.
    pub splits: [Span; MAX_PHASES],
    /// Coordinated phases: no gap-out, they hold green until their yield point.
    pub coordinated: PhaseSet,
    pub max_select: MaxSelect,
    /// Re-plan cycle and splits every cycle from measured flows (the plan's
    /// own cycle and splits are the starting point).
    pub adaptive: bool,
    /// Phases this plan never serves (NTCIP 1202 phase omit): their calls
    /// and recalls are ignored while it runs. Never a coordinated phase,
    /// never every phase of a ring; a preemption still serves its dwell
    /// and exit phases.
    pub omit: PhaseSet,
}

/// Civil date and time, as the time-of-day schedule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i32,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    /// 0 = Monday .. 6 = Sunday (ISO order).
    pub weekday: u8,
    /// Minutes since local midnight.
    pub minute_of_day: u16,
}

/// One step of a day plan: from `minute_of_day` on, run plan `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayPlanEvent {
    pub minute_of_day: u16,
    pub plan: u8,
}

/// A day plan: plan changes through the day, sorted by time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayPlan {
    pub name: String,
    pub events: Vec<DayPlanEvent>,
}

/// A holiday (or other special day) that runs its own day plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holiday {
    /// Year, or `None` for a holiday that repeats every year.
    pub year: Option<i32>,
    pub month: u8,
    pub day: u8,
    pub day_plan: usize,
}

/// Time-of-day schedule: which plan runs when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    pub day_plans: Vec<DayPlan>,
    /// Day plan index per weekday, Monday first.
    pub weekdays: [Option<usize>; 7],
    pub holidays: Vec<Holiday>,
}

impl Schedule {
    /// The plan the schedule asks for at `t`, or `None` when no day plan
    /// covers it (the controller then keeps its current plan).
    ///
    /// A day plan's first event applies from midnight only if it starts at
    /// 00:00; before its first event the previous day's last plan would be in
    /// force, which we approximate by the day plan's last event.
    pub fn plan_at(&self, t: CivilTime) -> Option<u8> {
        let holiday =
            self.holidays.iter().find(|h| h.month == t.month && h.day == t.day && h.year.is_none_or(|y| y == t.year));
        let day_plan = match holiday {
            Some(h) => h.day_plan,
            None => self.weekdays.get(t.weekday as usize).copied().flatten()?,
        };
        let events = &self.day_plans.get(day_plan)?.events;
        events.iter().rev().find(|e| e.minute_of_day <= t.minute_of_day).or_else(|| events.last()).map(|e| e.plan)
    }

    /// The schedule as the rows of a centre's schedule table (GB/T 20999
    /// class 0x0C, NTCIP 1201 `timeBaseScheduleTable`): one per day plan
    /// the week uses, with the weekdays that run it, then one per holiday.
    /// A holiday is the more specific row, so it wins over its weekday in
    /// both standards, as in [`Self::plan_at`].
    pub fn rows(&self) -> Vec<ScheduleRow> {
        let week = (0..self.day_plans.len()).filter_map(|d| {
            let weekdays = (0..7).filter(|&w| self.weekdays[w] == Some(d)).fold(0u8, |m, w| m | 1 << w);
            (weekdays != 0).then_some(ScheduleRow { days: ScheduleDays::Weekdays(weekdays), day_plan: d })
        });
        let holidays = self
            .holidays
            .iter()
            .map(|h| ScheduleRow { days: ScheduleDays::Date { month: h.month, day: h.day }, day_plan: h.day_plan });
        week.chain(holidays).collect()
    }
}

/// One row of [`Schedule::rows`]: the days it covers and the index of the
/// day plan they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleRow {
    pub days: ScheduleDays,
    pub day_plan: usize,
}

/// The days a schedule row covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleDays {
    /// Bit 0 Monday … bit 6 Sunday, every month and date.
    Weekdays(u8),
    /// A holiday: every weekday of that date (the year, if the holiday has
    /// one, is not in either standard's row).
    Date { month: u8, day: u8 },
}

/// Startup sequence (NTCIP `unitStartUpFlash`, then all red, then run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartupSpec {
    pub flash: Span,
    pub all_red: Span,
    /// Phases called when the controller first runs (usually the main street).
    pub phases: PhaseSet,
}

/// A preemption input (emergency vehicle, rail): NTCIP `preemptTable`, simplified.
///
/// Entry ends every other green through its full minimums and clearances,
/// then holds the dwell phases green while the call lasts (at least
/// `min_duration`); exit ends the dwell greens through their clearances,
/// serves the exit phases before anything else, then resumes normal
/// operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreemptSpec {
    /// Input number, 1..=8 (the Indiana preempt event parameter).
    pub input: u8,
    pub name: String,
    /// `preemptDelay`: the call must last this long before entry starts.
    pub delay: Span,
    /// `preemptMinimumDuration`: dwell lasts at least this long.
    pub min_duration: Span,
    /// Phases held green during dwell (they can time together).
    pub dwell: PhaseSet,
    /// Phases served first when preemption ends (they can time together).
    pub exit: PhaseSet,
    /// Rank among preempts, 1 first (rail over emergency vehicle over
    /// transit): a call of a better rank takes over a running preemption
    /// of a worse one; one of the same or a worse rank waits for it.
    pub priority: u8,
    /// A cabinet input must stand, on or off, this long before the
    /// controller takes the change (contact bounce, emitter flicker).
    pub debounce: Span,
    /// A call standing longer than this is a stuck input: released and
    /// faulted (Indiana 110) until the input goes off. `None`: no limit.
    pub max_presence: Option<Span>,
    /// Rail: the phases that clear the track, green first after entry.
    pub track_clearance: Option<TrackClearance>,
    /// Entry may cut a walk to this (never below it; the pedestrian
    /// clearance is always whole). `None`: entry never cuts a walk.
    pub truncated_walk: Option<Span>,
}

/// A rail preemption's track clearance: `phases` green together for
/// `green` (from when all are green) before the dwell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackClearance {
    pub phases: PhaseSet,
    pub green: Span,
}

/// Transit signal priority bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrioritySpec {
    /// Longest a priority request may extend a green beyond its max or
    /// force-off; zero disables green extension.
    pub max_extension: Span,
}

/// How the optimizer's plan is run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdaptiveStyle {
    /// Coordinated: the re-planned cycle and splits set the force-offs.
    #[default]
    Cycle,
    /// Free actuated: phases still gap out when their queue clears, and the
    /// re-planned splits become each phase's dynamic maximum green, between
    /// the engineer's maximum (max1, or max2 where the plan selects it) and
    /// max2. Cycles shrink at light demand and heavy phases may run longer
    /// than max1 near saturation.
    Free,
    /// Schedule-driven: free actuated, each green held or ended by a plan
    /// of the vehicles expected over the rolling horizon, re-made every
    /// second (`super::schedule`); up to max2, never below the minimums.
    Schedule,
}

/// In free style, the lowest maximum green the optimizer may set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxFloor {
    /// Never below the engineer's maximum for the plan (max1, or max2 where
    /// the plan selects it): the optimizer only lifts busy phases' maxima.
    #[default]
    EngineerMax,
    /// Down to the phase's minimum service (min green, pedestrian service):
    /// the re-planned green itself. Shorter cycles when the flows ask for
    /// them, which is where a permissive left in a shared lane gets its
    /// capacity (it clears at the end of each green).
    MinService,
}

/// Bounds an engineer sets on the optimizer (`[adaptive]` in a controller file).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveSpec {
    pub style: AdaptiveStyle,
    pub max_floor: MaxFloor,
    /// In free style, each phase's maximum green is its re-planned green
    /// times this (1.0..=2.0), then bounded by the floor and max2. The
    /// re-planned green serves the mean cycle; Poisson arrivals bring
    /// cycles above the mean, and a maximum at the mean cuts them.
    pub max_headroom: f32,
    pub min_cycle: Span,
    pub max_cycle: Span,
    /// Largest change of cycle length from one cycle to the next.
    pub max_step: Span,
    /// Saturation flow per lane, vehicles per hour of green.
    pub saturation_flow_vphpl: f32,
    /// Start-up lost time per phase (HCM: about 2 s).
    pub startup_lost: Span,
    /// Weight of the newest cycle in the smoothed flows (0..=1).
    pub smoothing: f32,
    /// Schedule style: how far ahead each plan looks.
    pub horizon: Span,
}

impl Default for AdaptiveSpec {
    fn default() -> Self {
        AdaptiveSpec {
            style: AdaptiveStyle::Cycle,
            max_floor: MaxFloor::EngineerMax,
            max_headroom: 1.0,
            min_cycle: Span::from_secs(50),
            max_cycle: Span::from_secs(150),
            max_step: Span::from_secs(10),
            saturation_flow_vphpl: 1800.0,
            startup_lost: Span::from_secs(2),
            smoothing: 0.3,
            horizon: Span::from_secs(90),
        }
    }
}

/// The whole validated controller.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerSpec {
    /// Intersection id, e.g. "main-and-5th"; the Indiana log's signal id.
    pub id: String,
    /// Version of this definition (1 as loaded at start; the API numbers
    /// each accepted change), so a snapshot can say which one is in force.
    pub version: u64,
    /// Phases present, in phase-number order.
    pub phases: Vec<PhaseSpec>,
    /// Phase index → position in `phases`, for phases present.
    pub phase_slot: [Option<u8>; MAX_PHASES],
    pub rings: Vec<RingSpec>,
    /// Barrier groups in sequence order; phases in the same group and
    /// different rings may time together.
    pub barrier_groups: Vec<PhaseSet>,
    /// Per phase index, the phases it must never show green or yellow with.
    /// Derived from the ring-barrier structure plus configured conflicts.
    pub conflicts: [PhaseSet; MAX_PHASES],
    pub detectors: Vec<DetectorSpec>,
    pub overlaps: Vec<OverlapSpec>,
    pub plans: Vec<PlanSpec>,
    /// Plan run when the schedule selects none.
    pub default_plan: u8,
    pub schedule: Schedule,
    pub startup: StartupSpec,
    pub preempts: Vec<PreemptSpec>,
    pub priority: PrioritySpec,
    /// Bounds of the adaptive optimizer.
    pub adaptive: AdaptiveSpec,
}

impl ControllerSpec {
    pub fn phase(&self, id: PhaseId) -> Option<&PhaseSpec> {
        self.phase_slot[id.index()].map(|slot| &self.phases[slot as usize])
    }

    /// All phases present, as a set.
    pub fn phase_set(&self) -> PhaseSet {
        self.phases.iter().map(|p| p.id).collect()
    }

    pub fn preempt(&self, input: u8) -> Option<&PreemptSpec> {
        self.preempts.iter().find(|p| p.input == input)
    }

    pub fn plan(&self, number: u8) -> Option<&PlanSpec> {
        self.plans.iter().find(|p| p.number == number)
    }

    /// Ring-barrier conflicts alone: same ring, or different barrier groups.
    /// Validation adds configured conflicts on top and rejects any that
    /// contradict concurrency.
    pub fn structural_conflicts(phases: &[PhaseSpec]) -> [PhaseSet; MAX_PHASES] {
        let mut conflicts = [PhaseSet::EMPTY; MAX_PHASES];
        for a in phases {
            for b in phases {
                if a.id != b.id && (a.ring == b.ring || a.group != b.group) {
                    conflicts[a.id.index()].insert(b.id);
                }
            }
        }
        conflicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        let ev = |h: u16, plan| DayPlanEvent { minute_of_day: h * 60, plan };
        Schedule {
            day_plans: vec![
                DayPlan { name: "weekday".into(), events: vec![ev(0, 1), ev(7, 2), ev(19, 1)] },
                DayPlan { name: "weekend".into(), events: vec![ev(9, 3)] },
            ],
            weekdays: [Some(0), Some(0), Some(0), Some(0), Some(0), Some(1), Some(1)],
            holidays: vec![Holiday { year: None, month: 12, day: 25, day_plan: 1 }],
        }
    }

    fn at(month: u8, day: u8, weekday: u8, hour: u16) -> CivilTime {
        CivilTime { year: 2026, month, day, weekday, minute_of_day: hour * 60 }
    }

    #[test]
    fn weekday_plans_follow_the_day_plan() {
        let s = schedule();
        assert_eq!(s.plan_at(at(11, 23, 0, 6)), Some(1));
        assert_eq!(s.plan_at(at(11, 23, 0, 8)), Some(2));
        assert_eq!(s.plan_at(at(11, 23, 0, 20)), Some(1));
    }

    #[test]
    fn holidays_override_weekdays_and_early_hours_carry_the_last_event() {
        let s = schedule();
        assert_eq!(s.plan_at(at(12, 25, 4, 10)), Some(3));
        // 06:00 on a weekend day, before the day plan's first event.
        assert_eq!(s.plan_at(at(11, 22, 6, 6)), Some(3));
    }
}
