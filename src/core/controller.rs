//! The NEMA ring-barrier phase machine.
//!
//! # How a tick runs
//! [`Controller::handle_tick`] takes `now` and the cabinet's inputs and:
//! 1. processes detectors (delay, extend, diagnostics) into calls and
//!    extensions, and latches calls on phases that are not green;
//! 2. reacts to cabinet status (manual flash switch, hardware MMU, another
//!    master on the cabinet);
//! 3. times the unit: startup flash → all red → run, or flash;
//! 4. in run, times each ring: green (min, passage/gap, max, force-off,
//!    pedestrian walk and clearance), yellow, red clearance, then the next
//!    called phase of the barrier group, or the barrier, which all rings
//!    cross together;
//! 5. times the overlaps and renders the [`OutputFrame`].
//!
//! Every change emits an Indiana event. Nothing here allocates: state is in
//! fixed arrays and the event queue is a ring buffer.
//!
//! # Safe points
//! Timing plan, operating mode, a reloaded spec and an operator flash are
//! staged and applied only when every ring is at red with its clearance served
//! (the barrier). Staging counts as demand for a barrier crossing, so a resting
//! intersection still reaches that point, through its normal gap/max rules.
//!
//! # Decisions stick
//! When a green ends, the next phase is decided and kept through yellow and
//! red clearance (a green-yellow-green glitch is what SUMO's users hit,
//! sumo#10070): overlaps rely on it.

use super::adaptive::{CycleMeasure, Optimizer, Replan};
use super::coord::{CoordPlan, CorridorTiming};
use super::detector::{DetectorBank, DetectorDemand};
use super::event::{
    ALARM_DOOR_OPEN, ALARM_POWER_FAIL, ALARM_SECOND_MASTER, ALARM_SLOW_CABINET, Event, EventCode, EventQueue,
};
use super::ids::{MAX_DETECTORS, MAX_OVERLAPS, MAX_PHASES, MAX_RINGS, PhaseId, PhaseSet};
use super::image::{
    ACCESSIBLE_WALK_AT_REST, CabinetStatus, Countdown, FrameAck, Indication, InputFrame, OutputFrame, PedIndication,
};
use super::preempt::{PreemptInputs, input_bit};
use super::queue::QueueEstimator;
use super::schedule::{PhaseDemand, Projection, Scheduler};
use super::snapshot::{DetectorSnapshot, PreemptSnapshot, RingSnapshot, Snapshot};
use super::spec::{AdaptiveStyle, ControllerSpec, FlashIndication, MaxFloor, MaxSelect, PlanMode, PreemptSpec, Recall};
use super::state::{Coordination, FlashReason, Interval, OperatingMode, PreemptStage, UnitState};
use super::time::{Instant, Span};

/// Why a green ended (Indiana 4, 5, 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    GapOut,
    MaxOut,
    ForceOff,
    /// Ended early so a preemption can reach its dwell phases, or, on
    /// its exit, its exit phases.
    Preempt,
    /// Ended early (after its minimums) for a transit priority request.
    Priority,
}

impl Termination {
    fn event_code(self) -> EventCode {
        match self {
            Termination::GapOut => EventCode::PhaseGapOut,
            Termination::MaxOut => EventCode::PhaseMaxOut,
            Termination::ForceOff => EventCode::PhaseForceOff,
            Termination::Preempt => EventCode::PreemptionForceOff,
            Termination::Priority => EventCode::TspEarlyForceOff,
        }
    }
}

/// A green a ring decided to end this tick: its phase, why, and the phase
/// of the same barrier group to serve after the clearance (none: the ring
/// heads for the barrier).
#[derive(Clone, Copy, Debug)]
struct Ending {
    phase: PhaseId,
    why: Termination,
    next: Option<PhaseId>,
    /// `next` is a conditional service ([`Controller::conditional_service`]):
    /// the earliest the other rings' greens could be made to end, which
    /// its green must clear by.
    conditional_until: Option<Instant>,
}

/// Pedestrian interval of a green phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PedInterval {
    #[default]
    DontWalk,
    Walk,
    Clearance,
}

/// A command to the controller. All take effect at a safe point or are
/// instantaneous and safe (calls, holds).
#[derive(Debug)]
pub enum Command {
    SetMode(OperatingMode),
    /// Run plan `n` (time-of-day schedule or operator), from the next barrier.
    SelectPlan(u8),
    /// Hold these phases green once they are green (NTCIP phase hold).
    Hold(PhaseSet),
    Release(PhaseSet),
    /// Omit these phases (NTCIP phase omit), in place of the operator's
    /// previous omits and besides the plan's: their calls are ignored.
    /// The plan's coordinated phases and a preemption's targets are
    /// served all the same.
    Omit(PhaseSet),
    /// Place calls as a detector would (test, operator, central).
    PlaceCall {
        vehicle: PhaseSet,
        ped: PhaseSet,
    },
    /// Instant of coordination cycle zero before offsets (usually midnight).
    SetCoordinationReference(Instant),
    /// A reloaded, already validated controller definition.
    LoadSpec(Box<ControllerSpec>),
    /// Leave a fault flash through the start-up sequence (after the monitor
    /// was reset or the cabinet link came back).
    Restart,
    /// A preemption input (emergency vehicle, rail) turned on or off.
    Preempt {
        input: u8,
        active: bool,
    },
    /// A transit priority request for a phase (check-in / check-out).
    Priority {
        phase: PhaseId,
        active: bool,
    },
    /// A common cycle and offset for adaptive cycle-style plans (a
    /// corridor's or central's); `None` returns to the optimizer's own
    /// cycle and origin. Kept across plans; it acts, from the next re-plan,
    /// only while an adaptive cycle-style plan runs (see `adapt`). Refused
    /// when the cycle is outside what `[adaptive]` and the minimum splits
    /// allow ([`Optimizer::cycle_limits`]).
    Corridor(Option<CorridorTiming>),
}

/// The preemption being served (one at a time; others wait or take over
/// by rank, [`Controller::time_preempt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PreemptState {
    input: u8,
    stage: PreemptStage,
    since: Instant,
    /// During exit: the exit phases not yet turned green. They are the
    /// only demand until each has, so they are served first whatever the
    /// plan's sequence, windows or staged changes.
    exit_waiting: PhaseSet,
}

/// What a preemption lets be served now ([`Controller::preempt_targets`]).
#[derive(Clone, Copy, Debug)]
struct PreemptTargets {
    phases: PhaseSet,
    /// While it enters: the walk it may cut a green it ends to.
    truncated_walk: Option<Span>,
}

/// A command the controller refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("plan {0} is not defined for this intersection")]
    UnknownPlan(u8),
    #[error("plan {plan} has no cycle, so it cannot run {mode:?}")]
    PlanHasNoCycle { plan: u8, mode: OperatingMode },
    #[error("phases {0} are not defined for this intersection")]
    UnknownPhases(PhaseSet),
    #[error("preemption input {0} is not defined for this intersection")]
    UnknownPreempt(u8),
    #[error(
        "corridor cycle {cycle} cannot run here: the adaptive cycle must be within {lower}..={upper} \
         ([adaptive] min/max cycle and the sum of minimum splits)"
    )]
    CorridorCycle { cycle: Span, lower: Span, upper: Span },
}

/// When the heads first showed something the controller started: an
/// interval begun while output frame `frame` was being made shows from the
/// first cabinet confirmation of that frame or a later one. A minimum is
/// timed from there, so a late or lost write lengthens the interval and
/// nothing shortens it. Until confirmed, it has shown for no time at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Shown {
    frame: u64,
    at: Option<Instant>,
}

impl Shown {
    fn confirm(&mut self, ack: FrameAck) {
        if self.at.is_none() && ack.frame >= self.frame {
            self.at = Some(ack.at);
        }
    }

    /// How long the heads have shown it at `now`.
    fn elapsed(&self, now: Instant) -> Span {
        self.at.map_or(Span::ZERO, |t| now.since(t))
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct GreenTimers {
    last_extension: Instant,
    /// When a conflicting call first arrived: the max timer runs from here.
    max_start: Option<Instant>,
    min_done: bool,
    ped: PedInterval,
    ped_since: Instant,
    /// The walk or pedestrian clearance as the heads show it.
    ped_shown: Shown,
    /// This service's clearance is the extended one (granted during its
    /// walk or clearance; never taken back).
    ped_extended: bool,
    /// In the leading pedestrian interval: walk shows, the vehicle heads
    /// stay red until the walk has shown `leading_walk`. The ring's `shown`
    /// restarts at the vehicle green, so min green is timed from there.
    leading: bool,
    force_off_at: Option<Instant>,
    /// `force_off_at` is the split's own force-off point (the phase
    /// started inside its window with room for its minimums), not one
    /// pushed out to serve them.
    force_off_on_cycle: bool,
    yield_at: Option<Instant>,
    /// The initial green: the minimum, or more under volume-density
    /// (no gap-out before it; a max-out or force-off still ends it).
    initial: Span,
    /// A transit priority request has held this green past where it
    /// would have ended (114 logged).
    priority_extended: bool,
    /// A conditional service ends here, in any plan mode, after its
    /// minimums: its clearance then ends by the time the other rings'
    /// greens could run to, so it never holds the barrier back.
    conditional_end: Option<Instant>,
}

#[derive(Clone, Copy, Debug, Default)]
struct RingState {
    interval: Interval,
    /// The phase timing, or the one last served while idle.
    phase: Option<PhaseId>,
    since: Instant,
    /// The interval (and a green's minimum) as the heads show it.
    shown: Shown,
    /// Position in the ring's sequence of the phase last served in the
    /// current barrier group; phases after it are still servable.
    served_pos: Option<usize>,
    green: GreenTimers,
    /// Decided at termination and kept through clearance.
    next: Option<PhaseId>,
    /// `next` is a conditional service: [`Ending::conditional_until`].
    conditional_until: Option<Instant>,
    /// The ring has re-served a phase in this barrier group (conditional
    /// service): once per group, and its place in the sequence stays where
    /// it had got to, so it heads for the barrier after the re-service.
    conditional_served: bool,
}

/// Overlap interval, timed by the overlap itself so it can never go from
/// yellow straight back to green.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum OverlapInterval {
    #[default]
    Red,
    Green,
    /// A flashing yellow arrow's permissive display.
    Permissive,
    Yellow {
        shown: Shown,
        yellow: Span,
        red_clear: Span,
    },
    RedClear {
        shown: Shown,
        red_clear: Span,
    },
}

/// The plan in force, with its coordination arithmetic.
#[derive(Clone, Copy, Debug)]
struct ActivePlan {
    number: u8,
    mode: PlanMode,
    coord: Option<CoordPlan>,
    max_select: MaxSelect,
    /// Cycle and splits come from the optimizer, cycle by cycle.
    adaptive: bool,
    omit: PhaseSet,
}

/// One intersection's controller. See the module docs.
///
/// Methods: `handle_*` feed it (`handle_tick`, `handle_command`,
/// `enter_flash`); `output`, `poll_event`, `snapshot` read it.
#[derive(Debug)]
pub struct Controller {
    spec: Box<ControllerSpec>,
    /// A replaced spec, handed back to the caller to drop off the hot path.
    retired: Option<Box<ControllerSpec>>,
    unit: UnitState,
    mode: OperatingMode,
    plan: ActivePlan,
    coord_reference: Instant,
    rings: [RingState; MAX_RINGS],
    /// Current barrier group index.
    group: usize,
    /// When run starts, enter the current group rather than the next.
    enter_current_group: bool,
    overlaps: [OverlapInterval; MAX_OVERLAPS],
    detectors: DetectorBank,
    queues: QueueEstimator,
    vehicle_calls: PhaseSet,
    ped_calls: PhaseSet,
    /// Phases whose pedestrians asked for extended clearance (a long
    /// press, an extension input), granted at their next walk or
    /// clearance.
    ped_extensions: PhaseSet,
    holds: PhaseSet,
    /// The operator's omits ([`Command::Omit`]).
    operator_omit: PhaseSet,
    /// The phases omitted now: the plan's and the operator's, less the
    /// plan's coordinated phases.
    omitted: PhaseSet,
    pending_spec: Option<Box<ControllerSpec>>,
    pending_plan: Option<u8>,
    pending_mode: Option<OperatingMode>,
    preempt: Option<PreemptState>,
    /// Every preemption input's call (debounce, stuck-input fault).
    preempt_inputs: PreemptInputs,
    /// Transit priority inputs on at the previous tick: their edges are
    /// requests ([`Command::Priority`]).
    priority_wired: PhaseSet,
    /// Phases with an active transit priority request.
    priority: PhaseSet,
    /// Requests whose early green was granted (113 logged once each).
    priority_early: PhaseSet,
    /// A green has ended where the cycle puts it since the last
    /// disturbance ([`Coordination`]).
    in_step: bool,
    /// The optimizer, while an adaptive plan runs.
    optimizer: Option<Optimizer>,
    /// Cycle zero of the adaptive plan's current cycle.
    cycle_origin: Instant,
    /// Common cycle and offset imposed on adaptive cycle-style plans.
    corridor: Option<CorridorTiming>,
    /// Detector volumes at the start of the measured cycle.
    volume_mark: [u32; MAX_DETECTORS],
    /// Free-style adaptive: each phase's maximum green this cycle.
    dynamic_max: [Span; MAX_PHASES],
    /// Schedule-style adaptive's planner, kept for the definition
    /// (allocated once: a re-plan and a reload allocate nothing).
    scheduler: Option<Box<Scheduler>>,
    /// Per phase, vehicles its detectors counted since its last yellow
    /// (volume-density's added initial).
    waiting_vehicles: [u16; MAX_PHASES],
    cabinet: CabinetStatus,
    output: OutputFrame,
    events: EventQueue,
    now: Instant,
    cycle_time: Option<Span>,
    /// The start-up flash or all red as the heads show it.
    unit_shown: Shown,
    /// The number of the output frame being made (the one `output` holds
    /// after the next tick).
    next_frame: u64,
    /// Minimums are timed from the cabinet's confirmations
    /// ([`Self::confirm_by_cabinet`]), not from the decisions.
    awaits_ack: bool,
}

impl Controller {
    /// A controller at `now`, starting its start-up flash, on the spec's
    /// default plan.
    pub fn new(spec: ControllerSpec, now: Instant) -> Self {
        let queues = QueueEstimator::new(&spec);
        let scheduler = (spec.adaptive.style == AdaptiveStyle::Schedule).then(|| Box::new(Scheduler::new(&spec)));
        let spec = Box::new(spec);
        let plan = Self::activate(&spec, spec.default_plan, OperatingMode::Scheduled);
        let mut c = Controller {
            spec,
            retired: None,
            unit: UnitState::Flash { reason: FlashReason::Startup, since: now },
            mode: OperatingMode::Scheduled,
            plan,
            coord_reference: Instant::ZERO,
            rings: [RingState::default(); MAX_RINGS],
            group: 0,
            enter_current_group: true,
            overlaps: [OverlapInterval::default(); MAX_OVERLAPS],
            detectors: DetectorBank::default(),
            queues,
            vehicle_calls: PhaseSet::EMPTY,
            ped_calls: PhaseSet::EMPTY,
            ped_extensions: PhaseSet::EMPTY,
            holds: PhaseSet::EMPTY,
            operator_omit: PhaseSet::EMPTY,
            omitted: PhaseSet::EMPTY,
            pending_spec: None,
            pending_plan: None,
            pending_mode: None,
            preempt: None,
            preempt_inputs: PreemptInputs::default(),
            priority_wired: PhaseSet::EMPTY,
            priority: PhaseSet::EMPTY,
            priority_early: PhaseSet::EMPTY,
            in_step: false,
            optimizer: None,
            cycle_origin: now,
            corridor: None,
            volume_mark: [0; MAX_DETECTORS],
            dynamic_max: [Span::ZERO; MAX_PHASES],
            scheduler,
            waiting_vehicles: [0; MAX_PHASES],
            cabinet: CabinetStatus::default(),
            output: OutputFrame::default(),
            events: EventQueue::default(),
            now,
            cycle_time: None,
            unit_shown: Shown { frame: 1, at: Some(now) },
            next_frame: 1,
            awaits_ack: false,
        };
        c.events.push(now, EventCode::UnitFlashStatusChange, FlashReason::Startup as u16);
        c.events.push(now, EventCode::CoordPatternChange, c.plan.number as u16);
        c.plan_activated(now);
        c.render();
        c
    }

    // === reading ===

    pub fn spec(&self) -> &ControllerSpec {
        &self.spec
    }

    pub fn output(&self) -> &OutputFrame {
        &self.output
    }

    /// The number of the frame [`Self::output`] holds after a tick: what a
    /// cabinet confirms in [`InputFrame::ack`].
    pub fn frame(&self) -> u64 {
        self.next_frame - 1
    }

    /// Time every minimum (start-up flash and all red, minimum green,
    /// yellow, red clearance, walk, pedestrian clearance, overlap
    /// clearances) from the cabinet's confirmation that the heads show it
    /// ([`InputFrame::ack`]) instead of from the decision: for a real
    /// cabinet, whose writes can land late or not at all. Off, each is
    /// taken as shown when decided (replay, simulation, tests).
    pub fn confirm_by_cabinet(&mut self, on: bool) {
        self.awaits_ack = on;
        if on {
            // What runs now shows from the next confirmation on: longer,
            // never shorter.
            let fresh = Shown { frame: self.next_frame, at: None };
            self.unit_shown = fresh;
            for ring in &mut self.rings {
                ring.shown = fresh;
                ring.green.ped_shown = fresh;
            }
            for ov in &mut self.overlaps {
                if let OverlapInterval::Yellow { shown, .. } | OverlapInterval::RedClear { shown, .. } = ov {
                    *shown = fresh;
                }
            }
        } else {
            self.confirm(FrameAck { frame: self.next_frame, at: self.now });
        }
    }

    pub fn unit(&self) -> UnitState {
        self.unit
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// A spec replaced by a reload, to be dropped by the caller (off the
    /// real-time thread).
    pub fn take_retired_spec(&mut self) -> Option<Box<ControllerSpec>> {
        self.retired.take()
    }

    /// The optimizer, while an adaptive plan runs (its smoothed flows and
    /// the cycle it wants).
    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.optimizer.as_ref()
    }

    /// While an adaptive cycle-style plan runs: the current cycle's origin
    /// (cycle zero) and length.
    pub fn adaptive_cycle(&self) -> Option<(Instant, Span)> {
        match (self.optimizer, self.plan.coord) {
            (Some(_), Some(coord)) => Some((self.cycle_origin, coord.cycle)),
            _ => None,
        }
    }

    /// Instant of coordination cycle zero before offsets
    /// ([`Command::SetCoordinationReference`]).
    pub fn coord_reference(&self) -> Instant {
        self.coord_reference
    }

    /// The corridor timing in force, if any ([`Command::Corridor`]).
    pub fn corridor(&self) -> Option<CorridorTiming> {
        self.corridor
    }

    /// Everything an operator or a test wants to see, by value (no heap).
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            at: self.now,
            unit: self.unit,
            mode: self.mode,
            plan: self.plan.number,
            plan_mode: self.plan.mode,
            cycle: self.plan.coord.map(|c| c.cycle).unwrap_or_default(),
            cycle_time: self.cycle_time,
            offset: self.offset(),
            coordination: self.coordination(),
            rings: [RingSnapshot::default(); MAX_RINGS],
            ring_count: self.spec.rings.len() as u8,
            present: self.spec.phase_set(),
            vehicle_calls: self.vehicle_calls,
            ped_calls: self.ped_calls,
            holds: self.holds,
            omitted: self.omitted,
            output: self.output,
            detectors: [DetectorSnapshot::default(); super::ids::MAX_DETECTORS],
            detector_count: self.spec.detectors.len() as u8,
            events_dropped: self.events.dropped(),
            config_version: self.spec.version,
            staged_version: self.pending_spec.as_ref().map(|s| s.version),
            preempt: self.preempt.map(|p| PreemptSnapshot {
                input: p.input,
                stage: p.stage,
                stage_since: p.since,
                called_at: self.preempt_inputs.on_since(p.input),
                called: self.preempt_called(p.input),
            }),
            adaptive: self.optimizer.is_some(),
            priority: self.priority,
            queues: [None; MAX_PHASES],
        };
        for p in self.spec.phase_set().iter() {
            s.queues[p.index()] = self.queues.queue(p);
        }
        for (r, ring) in self.rings.iter().enumerate().take(self.spec.rings.len()) {
            s.rings[r] = RingSnapshot {
                phase: ring.phase,
                interval: ring.interval,
                elapsed: self.now.since(ring.since),
                next: ring.next,
                max_elapsed: match ring.interval {
                    Interval::Green => ring.green.max_start.map(|t| self.now.since(t)),
                    _ => None,
                },
            };
        }
        for (slot, d) in self.spec.detectors.iter().enumerate().take(super::ids::MAX_DETECTORS) {
            let st = self.detectors.state(slot);
            s.detectors[slot] = DetectorSnapshot {
                channel: d.channel.number(),
                presence: st.raw,
                output: st.output,
                fault: st.fault,
                volume: st.volume,
                occupied_ms: st.occupied_ms,
            };
        }
        s
    }

    /// Cycle zero's offset from the coordination reference
    /// ([`Snapshot::offset`]).
    fn offset(&self) -> Span {
        match (self.plan.coord, self.adaptive_cycle(), self.corridor) {
            (Some(_), Some(_), Some(t)) => t.offset,
            (Some(coord), ..) => coord.offset,
            (None, ..) => Span::ZERO,
        }
    }

    fn coordination(&self) -> Coordination {
        if self.plan.coord.is_none() {
            return Coordination::Free;
        }
        let walking = self.adaptive_cycle().zip(self.corridor).is_some_and(|((origin, _), t)| !t.lag(origin).is_zero());
        if self.in_step && !walking { Coordination::InStep } else { Coordination::Transitioning }
    }

    // === feeding ===

    /// Advance to `now` with this tick's inputs.
    pub fn handle_tick(&mut self, now: Instant, input: &InputFrame) {
        self.now = now;
        if let Some(ack) = input.ack.filter(|_| self.awaits_ack) {
            self.confirm(ack);
        }
        if let UnitState::Flash { reason: FlashReason::Shutdown, .. } = self.unit {
            // Stopping: the flash frame stands and the event log ends with
            // its 173 (no calls or detector changes after it).
            self.next_frame += 1;
            return;
        }
        let green = self.vehicle_green();
        let demand = self.detectors.process(now, &self.spec.detectors, input, green, &mut self.events);
        for (i, n) in demand.vehicles.iter().enumerate() {
            if *n > 0 && !green.contains(PhaseId::from_index(i)) {
                self.waiting_vehicles[i] = self.waiting_vehicles[i].saturating_add(*n);
            }
        }
        self.queues.update(now, &self.detectors, input);
        if let Some(s) = &mut self.scheduler {
            for p in self.spec.phase_set().iter() {
                s.count(now, p, self.queues.arrived(p));
            }
        }
        self.handle_cabinet(now, input.cabinet);
        self.register_calls(now, &demand);
        self.preempt_inputs.sample(now, input.preempt, &self.spec.preempts, &mut self.events);
        self.priority_inputs(now, input.priority);
        self.time_preempt(now);
        match self.unit {
            UnitState::Flash { reason: FlashReason::Startup, .. }
                if self.unit_shown.elapsed(now) >= self.spec.startup.flash =>
            {
                self.begin_all_red(now);
            }
            UnitState::Flash { .. } => {}
            UnitState::AllRed { .. } => {
                if self.unit_shown.elapsed(now) >= self.spec.startup.all_red {
                    self.begin_run(now);
                }
            }
            UnitState::Run => self.run(now, demand.extends),
        }
        self.time_overlaps(now);
        self.render();
        self.next_frame += 1;
    }

    /// The cabinet applied frame `ack.frame`: whatever started in it or
    /// before shows from `ack.at` (each keeps its first confirmation).
    fn confirm(&mut self, ack: FrameAck) {
        self.unit_shown.confirm(ack);
        for ring in &mut self.rings {
            ring.shown.confirm(ack);
            ring.green.ped_shown.confirm(ack);
        }
        for ov in &mut self.overlaps {
            if let OverlapInterval::Yellow { shown, .. } | OverlapInterval::RedClear { shown, .. } = ov {
                shown.confirm(ack);
            }
        }
    }

    /// A fresh [`Shown`] for something starting now: confirmed at once
    /// unless the cabinet confirms.
    fn starting(&self, now: Instant) -> Shown {
        Shown { frame: self.next_frame, at: (!self.awaits_ack).then_some(now) }
    }

    /// Apply an operator, schedule or reload command.
    ///
    /// # Errors
    /// Unknown plans or phases, or a mode the plan cannot run; the
    /// controller is unchanged then.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) -> Result<(), CommandError> {
        match cmd {
            Command::SetMode(mode) => {
                // Judged with the plan it will run: a selected plan not yet
                // in force applies at the same barrier as the mode (and a
                // restart restores a selection before the mode).
                let plan = self.pending_plan.unwrap_or(self.plan.number);
                if matches!(mode, OperatingMode::Coordinated | OperatingMode::Fixed)
                    && self.spec.plan(plan).is_some_and(|p| p.cycle.is_zero())
                {
                    return Err(CommandError::PlanHasNoCycle { plan, mode });
                }
                if let UnitState::Flash { reason: FlashReason::Operator, .. } = self.unit
                    && mode != OperatingMode::Flash
                {
                    self.mode = mode;
                    self.plan = Self::activate(&self.spec, self.plan.number, mode);
                    self.plan_activated(now);
                    self.begin_all_red(now);
                } else {
                    self.pending_mode = Some(mode);
                }
            }
            Command::SelectPlan(n) => {
                // A plan that arrives with a staged (reloaded) definition
                // may be selected with it: both apply at the same barrier.
                let staged = self.pending_spec.as_ref().is_some_and(|s| s.plan(n).is_some());
                if self.spec.plan(n).is_none() && !staged {
                    return Err(CommandError::UnknownPlan(n));
                }
                if n != self.plan.number {
                    self.pending_plan = Some(n);
                }
            }
            Command::Hold(set) => {
                self.check_phases(set)?;
                for p in set.difference(self.holds).iter() {
                    self.events.push(now, EventCode::PhaseHoldActive, p.number() as u16);
                }
                self.holds = self.holds.union(set);
            }
            Command::Omit(set) => {
                self.check_phases(set)?;
                self.operator_omit = set;
            }
            Command::Release(set) => {
                for p in set.intersection(self.holds).iter() {
                    self.events.push(now, EventCode::PhaseHoldReleased, p.number() as u16);
                }
                self.holds = self.holds.difference(set);
            }
            Command::PlaceCall { vehicle, ped } => {
                self.check_phases(vehicle.union(ped))?;
                let demand = DetectorDemand { calls: vehicle.union(ped), ped_calls: ped, ..DetectorDemand::default() };
                self.register_calls(now, &demand);
            }
            Command::SetCoordinationReference(t) => self.coord_reference = t,
            Command::LoadSpec(spec) => {
                if matches!(self.unit, UnitState::Run) {
                    self.pending_spec = Some(spec);
                } else {
                    self.install_spec(spec);
                }
            }
            Command::Preempt { input, active } => {
                let Some(spec) = self.spec.preempt(input) else {
                    return Err(CommandError::UnknownPreempt(input));
                };
                self.preempt_inputs.command(now, spec, active, &mut self.events);
            }
            Command::Priority { phase, active } => {
                self.check_phases(PhaseSet::single(phase))?;
                self.priority_request(now, phase, active);
            }
            Command::Corridor(timing) => {
                if let Some(t) = timing {
                    let (lower, upper) = Optimizer::cycle_limits(&self.spec, &self.spec.adaptive);
                    if t.cycle < lower || t.cycle > upper {
                        return Err(CommandError::CorridorCycle { cycle: t.cycle, lower, upper });
                    }
                }
                let timing = timing.map(|t| CorridorTiming { offset: t.offset.rem(t.cycle), ..t });
                if timing != self.corridor {
                    let offset = timing.map(|t| t.offset).unwrap_or_default();
                    self.events.push(now, EventCode::OffsetLengthChange, (offset.as_millis() / 1000) as u16);
                }
                self.corridor = timing;
            }
            Command::Restart => {
                if let UnitState::Flash { reason, .. } = self.unit
                    && reason != FlashReason::Operator
                    && !self.cabinet.manual_flash
                    && !self.cabinet.mmu_fault
                    && !self.cabinet.second_master
                {
                    self.begin_startup(now);
                }
            }
        }
        Ok(())
    }

    /// Go to flash at once: a fault (monitor trip, lost cabinet link,
    /// overrun) or shutdown. There is no clearance: like an MMU transfer, the
    /// flash relay takes the heads over now, and the event log closes every
    /// interval it cuts ([`Self::close_intervals`]). Leaving it takes
    /// [`Command::Restart`] (through the start-up sequence).
    pub fn enter_flash(&mut self, now: Instant, reason: FlashReason) {
        if let UnitState::Flash { reason: current, .. } = self.unit
            && current.precedence() >= reason.precedence()
        {
            return;
        }
        self.now = now;
        self.begin_flash(now, reason);
        self.render();
    }

    // === unit states ===

    /// Every way into flash goes through here (relabelling a flash that is
    /// on already, in `handle_cabinet`, is not one): the intervals showing
    /// are closed in the event log, then the flash is logged.
    fn begin_flash(&mut self, now: Instant, reason: FlashReason) {
        self.close_intervals(now);
        self.unit = UnitState::Flash { reason, since: now };
        self.unit_shown = self.starting(now);
        self.events.push(now, EventCode::UnitFlashStatusChange, reason as u16);
        self.reset_rings(now);
    }

    /// Log the end of every interval showing now, so that a reader of the
    /// log (an ATSPM import, a conflict checker) never sees a green left
    /// open across a flash and, after the restart, "phase 2 green while 4
    /// green". Each ends as the normal path ends it, without the intervals
    /// the flash skips: a walk or pedestrian clearance in pedestrian dark
    /// (24: flash darkens the pedestrian heads), a green in its termination
    /// (7, no yellow follows), a yellow (9) or red clearance (11) in its
    /// end; then the phase is inactive (12). An overlap that is not at rest
    /// goes off (65).
    fn close_intervals(&mut self, now: Instant) {
        for ring in &self.rings[..self.spec.rings.len()] {
            let Some(p) = ring.phase else { continue };
            let n = p.number() as u16;
            let end = match ring.interval {
                Interval::Idle => continue,
                Interval::Green => {
                    if ring.green.ped != PedInterval::DontWalk {
                        self.events.push(now, EventCode::PedDark, n);
                    }
                    // In a leading walk no vehicle green began (1), so
                    // none terminates.
                    (!ring.green.leading).then_some(EventCode::PhaseGreenTermination)
                }
                Interval::Yellow => Some(EventCode::PhaseEndYellowChange),
                Interval::RedClear => Some(EventCode::PhaseEndRedClearance),
            };
            if let Some(end) = end {
                self.events.push(now, end, n);
            }
            self.events.push(now, EventCode::PhaseInactive, n);
        }
        for ov in self.spec.overlaps.iter().take(MAX_OVERLAPS) {
            let (state, n) = (self.overlaps[ov.id.index()], ov.id.number() as u16);
            if state == OverlapInterval::Permissive {
                self.events.push(now, EventCode::FyaEndPermissive, n);
            }
            if state != OverlapInterval::Red {
                self.events.push(now, EventCode::OverlapOff, n);
            }
        }
    }

    fn begin_startup(&mut self, now: Instant) {
        self.begin_flash(now, FlashReason::Startup);
    }

    fn begin_all_red(&mut self, now: Instant) {
        self.unit = UnitState::AllRed { since: now };
        self.unit_shown = self.starting(now);
        self.events.push(now, EventCode::UnitFlashStatusChange, 0);
        self.reset_rings(now);
    }

    fn begin_run(&mut self, now: Instant) {
        self.unit = UnitState::Run;
        // Start-up serves its own phases, wherever the cycle is.
        self.in_step = false;
        self.events.push(now, EventCode::UnitControlStatusChange, self.mode as u16);
        let startup = self.spec.startup.phases;
        self.group = self.spec.barrier_groups.iter().position(|g| g.intersects(startup)).unwrap_or(0);
        self.enter_current_group = true;
        let demand = DetectorDemand { calls: startup, ..DetectorDemand::default() };
        self.register_calls(now, &demand);
        self.run(now, PhaseSet::EMPTY);
    }

    fn reset_rings(&mut self, now: Instant) {
        let shown = self.starting(now);
        for r in &mut self.rings {
            *r = RingState { since: now, shown, ..RingState::default() };
        }
        self.overlaps = [OverlapInterval::Red; MAX_OVERLAPS];
        self.cycle_time = None;
    }

    fn handle_cabinet(&mut self, now: Instant, status: CabinetStatus) {
        let before = self.cabinet;
        self.cabinet = status;
        for (was, is, param) in [
            (before.door_open, status.door_open, ALARM_DOOR_OPEN),
            (before.power_fail, status.power_fail, ALARM_POWER_FAIL),
            (before.second_master, status.second_master, ALARM_SECOND_MASTER),
            (before.slow, status.slow, ALARM_SLOW_CABINET),
        ] {
            if was != is {
                self.events.push(now, if is { EventCode::AlarmOn } else { EventCode::AlarmOff }, param);
            }
        }
        let held = if status.mmu_fault {
            Some(FlashReason::CabinetMonitor)
        } else if status.manual_flash {
            Some(FlashReason::ManualSwitch)
        } else {
            status.second_master.then_some(FlashReason::SecondMaster)
        };
        match (held, self.unit) {
            (Some(reason), UnitState::Flash { reason: current, since })
                if current.held_by_cabinet() && current.precedence() > reason.precedence() =>
            {
                // One cabinet cause let go, a lesser one still holds the
                // flash (the MMU released under the switch, or either
                // under another master): say so.
                self.unit = UnitState::Flash { reason, since };
                self.events.push(now, EventCode::UnitFlashStatusChange, reason as u16);
            }
            (Some(reason), _) => self.enter_flash(now, reason),
            (None, UnitState::Flash { reason, .. }) if reason.held_by_cabinet() => {
                // The cabinet released its flash: restart as a real
                // controller does when flash sense drops.
                self.begin_startup(now);
            }
            (None, _) => {}
        }
    }

    // === calls ===

    /// Log omits starting and ending (Indiana 46/47), and drop the calls
    /// of omitted phases.
    fn update_omits(&mut self, now: Instant) {
        let omitted = self.plan.omit.union(self.operator_omit).difference(self.plan.coordinated());
        let omitted = omitted.intersection(self.spec.phase_set());
        for p in omitted.difference(self.omitted).iter() {
            self.events.push(now, EventCode::PhaseOmitOn, p.number() as u16);
        }
        for p in self.omitted.difference(omitted).iter() {
            self.events.push(now, EventCode::PhaseOmitOff, p.number() as u16);
        }
        self.omitted = omitted;
        self.vehicle_calls = self.vehicle_calls.difference(omitted);
        self.ped_calls = self.ped_calls.difference(omitted);
    }

    fn register_calls(&mut self, now: Instant, demand: &DetectorDemand) {
        self.update_omits(now);
        let present = self.spec.phase_set().difference(self.omitted);
        let green = self.phases_in(Interval::Green);
        let mut vehicle = demand.calls;
        let mut ped = demand.ped_calls;
        for phase in &self.spec.phases {
            let on = match phase.timing.recall {
                Recall::Min | Recall::Max => true,
                Recall::Ped => {
                    ped.insert(phase.id);
                    true
                }
                Recall::None | Recall::Soft => false,
            };
            vehicle.set(phase.id, vehicle.contains(phase.id) || on);
        }
        match self.plan.mode {
            PlanMode::Fixed => vehicle = vehicle.union(present),
            PlanMode::Coordinated => vehicle = vehicle.union(self.plan.coordinated()),
            PlanMode::Free => {}
        }
        ped = ped.intersection(self.ped_phases()).difference(self.omitted);
        let new_vehicle = vehicle.difference(green).difference(self.vehicle_calls).intersection(present);
        for p in new_vehicle.iter() {
            self.events.push(now, EventCode::PhaseCallRegistered, p.number() as u16);
        }
        self.vehicle_calls = self.vehicle_calls.union(new_vehicle);
        // A ped call on a phase already in walk waits for the next service.
        let new_ped = ped.difference(self.ped_calls);
        for p in new_ped.iter() {
            self.events.push(now, EventCode::PedCallRegistered, p.number() as u16);
        }
        self.ped_calls = self.ped_calls.union(new_ped);
        self.ped_extensions = self.ped_extensions.union(demand.ped_extensions.intersection(self.extendable_phases()));

        // Soft recall: a call only when nothing conflicting is waiting.
        let waiting = self.vehicle_calls.union(self.ped_calls);
        for phase in self.spec.phases.iter().filter(|p| p.timing.recall == Recall::Soft && !self.omitted.contains(p.id))
        {
            let conflicting = self.spec.conflicts[phase.id.index()];
            if !waiting.intersects(conflicting) && !green.contains(phase.id) && !self.vehicle_calls.contains(phase.id) {
                self.vehicle_calls.insert(phase.id);
                self.events.push(now, EventCode::PhaseCallRegistered, phase.id.number() as u16);
            }
        }
    }

    fn ped_phases(&self) -> PhaseSet {
        self.spec.phases.iter().filter(|p| p.timing.has_ped()).map(|p| p.id).collect()
    }

    /// Nothing waits on a green phase `p` in free operation: no call on a
    /// conflicting phase, no preemption, no staged change. Rest in walk and
    /// pedestrian recycle act only then.
    fn quiet(&self, p: PhaseId) -> bool {
        let waiting = self.vehicle_calls.union(self.ped_calls);
        self.plan.mode == PlanMode::Free
            && self.preempt.is_none()
            && !self.staged()
            && !waiting.intersects(self.spec.conflicts[p.index()])
    }

    /// Phases with an extended pedestrian clearance to grant.
    fn extendable_phases(&self) -> PhaseSet {
        self.spec.phases.iter().filter(|p| !p.timing.extended_ped_clear.is_zero()).map(|p| p.id).collect()
    }

    fn check_phases(&self, set: PhaseSet) -> Result<(), CommandError> {
        let unknown = set.difference(self.spec.phase_set());
        if unknown.is_empty() { Ok(()) } else { Err(CommandError::UnknownPhases(unknown)) }
    }

    // === plans ===

    fn activate(spec: &ControllerSpec, number: u8, mode: OperatingMode) -> ActivePlan {
        let Some(plan) = spec.plan(number).or_else(|| spec.plans.first()) else {
            return ActivePlan {
                number,
                mode: PlanMode::Free,
                coord: None,
                max_select: MaxSelect::Max1,
                adaptive: false,
                omit: PhaseSet::EMPTY,
            };
        };
        let coord = CoordPlan::new(spec, plan);
        let plan_mode = match (mode, coord.is_some()) {
            (OperatingMode::Actuated, _) | (_, false) => PlanMode::Free,
            (OperatingMode::Coordinated | OperatingMode::Adaptive, true) => PlanMode::Coordinated,
            (OperatingMode::Fixed, true) => PlanMode::Fixed,
            (OperatingMode::Scheduled | OperatingMode::Flash, true) => plan.mode,
        };
        let adaptive = plan_mode == PlanMode::Coordinated
            && (mode == OperatingMode::Adaptive || (mode == OperatingMode::Scheduled && plan.adaptive));
        // Free- and schedule-style adaptive run actuated, the optimizer
        // setting maxima (free) or measuring flows (schedule).
        let plan_mode =
            if adaptive && spec.adaptive.style != AdaptiveStyle::Cycle { PlanMode::Free } else { plan_mode };
        // An adaptive plan keeps its own cycle origin (its cycle length
        // changes), so its coordination arithmetic has no offset.
        let coord = match (adaptive, coord) {
            (true, Some(c)) => CoordPlan::from_splits(spec, c.cycle, Span::ZERO, &plan.splits, c.coordinated),
            (_, c) => c,
        };
        ActivePlan {
            number: plan.number,
            mode: plan_mode,
            coord: if plan_mode == PlanMode::Free { None } else { coord },
            max_select: plan.max_select,
            adaptive,
            omit: plan.omit,
        }
    }

    /// Changes waiting for the barrier. A preemption holds them back
    /// (preemption takes precedence over flash, holds and plans).
    fn staged(&self) -> bool {
        self.preempt_targets().is_none()
            && (self.pending_spec.is_some() || self.pending_plan.is_some() || self.pending_mode.is_some())
    }

    // === transit priority inputs ===

    /// A transit priority request for `phase` checked in or out (a wired
    /// input's edge or a command; one request per phase either way).
    fn priority_request(&mut self, now: Instant, phase: PhaseId, active: bool) {
        match (active, self.priority.contains(phase)) {
            (true, false) => {
                self.priority.insert(phase);
                self.priority_early.remove(phase);
                self.events.push(now, EventCode::TspCheckIn, phase.number() as u16);
                let call = PhaseSet::single(phase);
                self.register_calls(now, &DetectorDemand { calls: call, ..DetectorDemand::default() });
            }
            (false, true) => {
                self.priority.remove(phase);
                self.events.push(now, EventCode::TspCheckOut, phase.number() as u16);
            }
            _ => {}
        }
    }

    /// The cabinet's transit priority inputs: a rising edge checks in, a
    /// falling one checks out (phases this controller has only).
    fn priority_inputs(&mut self, now: Instant, wired: PhaseSet) {
        let wired = wired.intersection(self.spec.phase_set());
        let (rose, fell) = (wired.difference(self.priority_wired), self.priority_wired.difference(wired));
        self.priority_wired = wired;
        for p in rose.iter() {
            self.priority_request(now, p, true);
        }
        for p in fell.iter() {
            self.priority_request(now, p, false);
        }
    }

    // === preemption ===

    /// `input` is calling: on, not stuck, and defined.
    fn preempt_called(&self, input: u8) -> bool {
        self.preempt_inputs.calls() & input_bit(input) != 0
    }

    /// The call to serve: the best ranked (`priority`, then input number)
    /// of those calling.
    fn best_preempt_call(&self) -> Option<&PreemptSpec> {
        let calls = self.preempt_inputs.calls();
        self.spec.preempts.iter().filter(|s| calls & input_bit(s.input) != 0).min_by_key(|s| (s.priority, s.input))
    }

    /// The only phases a preemption lets be served: the track clearance
    /// phases, then the dwell phases, while it enters or dwells; the exit
    /// phases not yet green while it exits. Every other green ends as soon
    /// as its minimums allow.
    fn preempt_targets(&self) -> Option<PreemptTargets> {
        let p = self.preempt?;
        let spec = self.spec.preempt(p.input)?;
        let phases = match (p.stage, spec.track_clearance) {
            (PreemptStage::Delay, _) => return None,
            (PreemptStage::Entry, Some(track)) => track.phases,
            (PreemptStage::TrackClearance, Some(track)) if self.now.since(p.since) < track.green => track.phases,
            (PreemptStage::Entry | PreemptStage::TrackClearance | PreemptStage::Dwell, _) => spec.dwell,
            (PreemptStage::Exit, _) => p.exit_waiting,
        };
        // Entering, a walk the preemption ends may be cut (never its
        // pedestrian clearance).
        let entering = matches!(p.stage, PreemptStage::Entry | PreemptStage::TrackClearance);
        Some(PreemptTargets { phases, truncated_walk: spec.truncated_walk.filter(|_| entering) })
    }

    fn time_preempt(&mut self, now: Instant) {
        // A better ranked call takes over once it has stood for its delay
        // (the running preemption holds the intersection until then), through
        // the clearances of the greens it ends, as any entry; during an exit,
        // the next call waiting is served at once; called again during its
        // exit, a preemption starts over (the exit phases it still owed give
        // way to its dwell). Each delay runs from its call.
        if let Some((input, rank, delay)) = self.best_preempt_call().map(|s| (s.input, s.priority, s.delay)) {
            let called_at = self.preempt_inputs.on_since(input);
            let takes_over = match self.preempt.and_then(|p| Some((p, self.spec.preempt(p.input)?.priority))) {
                None => true,
                Some((p, _)) if p.stage == PreemptStage::Exit => true,
                Some((p, running)) => p.input != input && rank < running && now.since(called_at) >= delay,
            };
            if takes_over {
                let stage = PreemptStage::Delay;
                self.preempt = Some(PreemptState { input, stage, since: called_at, exit_waiting: PhaseSet::EMPTY });
            }
        }
        let Some(mut p) = self.preempt else { return };
        let Some(spec) = self.spec.preempt(p.input) else {
            self.preempt = None; // removed by a reload
            return;
        };
        let (dwell, exit, delay, min_duration) = (spec.dwell, spec.exit, spec.delay, spec.min_duration);
        let track = spec.track_clearance;
        let called = self.preempt_called(p.input);
        // A definition loaded while the exit waited (in a flash) may name
        // other exit phases: only its own are still owed.
        p.exit_waiting = p.exit_waiting.intersection(exit);
        let green = self.phases_in(Interval::Green);
        match p.stage {
            PreemptStage::Delay if !called => {
                self.preempt = None;
                return;
            }
            PreemptStage::Delay if now.since(p.since) >= delay => {
                p.stage = PreemptStage::Entry;
                p.since = now;
                self.in_step = false;
                self.events.push(now, EventCode::PreemptEntryStarted, p.input as u16);
                // Preemption outranks an operator flash: leave it through
                // all red (the flash resumes after the exit).
                if let UnitState::Flash { reason: FlashReason::Operator, .. } = self.unit {
                    self.pending_mode = Some(OperatingMode::Flash);
                    self.begin_all_red(now);
                }
            }
            PreemptStage::Entry
                if let Some(t) = track
                    && green.intersection(t.phases) == t.phases =>
            {
                p.stage = PreemptStage::TrackClearance;
                p.since = now;
                self.events.push(now, EventCode::PreemptBeginTrackClearance, p.input as u16);
            }
            PreemptStage::Entry | PreemptStage::TrackClearance
                if green.intersection(dwell) == dwell
                    && (p.stage == PreemptStage::TrackClearance || track.is_none())
                    && track.is_none_or(|t| now.since(p.since) >= t.green) =>
            {
                p.stage = PreemptStage::Dwell;
                p.since = now;
                self.events.push(now, EventCode::PreemptBeginDwell, p.input as u16);
            }
            PreemptStage::Dwell if !called && now.since(p.since) >= min_duration => {
                self.events.push(now, EventCode::PreemptBeginExitInterval, p.input as u16);
                // Exit phases green already (the dwell phases, by default)
                // are served: they time on under the plan's rules.
                p.exit_waiting = exit.difference(self.phases_in(Interval::Green));
                if p.exit_waiting.is_empty() {
                    self.preempt = None;
                    return;
                }
                p.stage = PreemptStage::Exit;
                p.since = now;
                let demand = DetectorDemand { calls: p.exit_waiting, ..DetectorDemand::default() };
                self.register_calls(now, &demand);
            }
            PreemptStage::Exit if p.exit_waiting.is_empty() => {
                self.preempt = None;
                return;
            }
            _ => {}
        }
        self.preempt = Some(p);
    }

    /// A green ended (or a coordinated green reached its yield point) where
    /// the cycle puts it: the plan runs in step, unless a preemption still
    /// overrides it.
    fn cycle_kept(&mut self) {
        if self.preempt_targets().is_none() {
            self.in_step = true;
        }
    }

    /// At the barrier with every clearance served: apply what was staged.
    /// Returns false if the unit left run (operator flash).
    fn apply_staged(&mut self, now: Instant) -> bool {
        let coord_before = self.plan.coord;
        if let Some(spec) = self.pending_spec.take() {
            self.install_spec(spec);
        }
        let previous = self.plan;
        if let Some(mode) = self.pending_mode.take() {
            if mode == OperatingMode::Flash {
                self.begin_flash(now, FlashReason::Operator);
                return false;
            }
            if mode != self.mode {
                self.mode = mode;
                self.events.push(now, EventCode::UnitControlStatusChange, mode as u16);
            }
        }
        let number = self.pending_plan.take().unwrap_or(self.plan.number);
        self.plan = Self::activate(&self.spec, number, self.mode);
        self.plan_activated(now);
        if self.plan.coord != coord_before {
            self.in_step = false;
        }
        self.cycle_time = self.cycle_position(now);
        if self.plan.number != previous.number {
            self.events.push(now, EventCode::CoordPatternChange, self.plan.number as u16);
        }
        let cycle = |p: &ActivePlan| p.coord.map(|c| (c.cycle, c.offset)).unwrap_or_default();
        let (before, after) = (cycle(&previous), cycle(&self.plan));
        if before.0 != after.0 {
            self.events.push(now, EventCode::CycleLengthChange, (after.0.as_millis() / 1000) as u16);
        }
        if before.1 != after.1 {
            self.events.push(now, EventCode::OffsetLengthChange, (after.1.as_millis() / 1000) as u16);
        }
        true
    }

    fn install_spec(&mut self, spec: Box<ControllerSpec>) {
        let old = std::mem::replace(&mut self.spec, spec);
        self.retired = Some(old);
        // Detector slots may have moved: counting starts again, before the
        // plan marks the volumes its first cycle is measured from.
        self.detectors = DetectorBank::default();
        self.queues = QueueEstimator::new(&self.spec);
        if self.spec.adaptive.style == AdaptiveStyle::Schedule {
            match &mut self.scheduler {
                Some(s) => s.configure(&self.spec),
                // The one allocation of a reload that switches an
                // intersection to the schedule style.
                None => self.scheduler = Some(Box::new(Scheduler::new(&self.spec))),
            }
        }
        self.plan = Self::activate(&self.spec, self.plan.number, self.mode);
        self.plan_activated(self.now);
        let present = self.spec.phase_set();
        self.vehicle_calls = self.vehicle_calls.intersection(present);
        self.ped_calls = self.ped_calls.intersection(self.ped_phases());
        self.ped_extensions = self.ped_extensions.intersection(self.extendable_phases());
        self.holds = self.holds.intersection(present);
        self.group = self.group.min(self.spec.barrier_groups.len().saturating_sub(1));
        for r in &mut self.rings {
            r.served_pos = None;
            r.conditional_served = false;
            r.phase = None;
        }
    }

    // === adaptive ===

    /// A plan was (re)activated: start or stop the optimizer.
    fn plan_activated(&mut self, now: Instant) {
        self.optimizer = match (self.plan.adaptive, self.spec.plan(self.plan.number)) {
            (true, Some(plan)) => Some(Optimizer::new(&self.spec, Replan { cycle: plan.cycle, splits: plan.splits })),
            _ => None,
        };
        self.cycle_origin = now;
        self.mark_volumes();
        self.dynamic_max = [Span::ZERO; MAX_PHASES];
        if let (Some(opt), true) = (self.optimizer, self.plan.mode == PlanMode::Free) {
            self.set_dynamic_max(opt.current());
        }
    }

    /// Free-style adaptive: the plan's green for each phase, times
    /// `max_headroom`, becomes its maximum, never below min green and
    /// pedestrian service, never above max2, and by default
    /// ([`MaxFloor::EngineerMax`]) never below the engineer's maximum for
    /// the plan. Then the optimizer only lifts the maximum of a phase whose
    /// flow needs more: a light phase ends by
    /// gapping out when its queue clears anyway, and cutting a busy one
    /// below max1 cost delay in SIL (single intersection, near saturation,
    /// seed 1: 37.8 s against 34.5 s uncut). [`MaxFloor::MinService`] cuts
    /// too, for junctions whose capacity grows with the number of cycles.
    fn set_dynamic_max(&mut self, plan: Replan) {
        for ph in &self.spec.phases {
            let t = ph.timing;
            let service = t.service(true);
            let floor = match self.spec.adaptive.max_floor {
                MaxFloor::EngineerMax => service.max(self.engineer_max(&t)),
                MaxFloor::MinService => service,
            };
            let green = plan.splits[ph.id.index()].saturating_sub(t.clearance());
            let green = Span::from_millis((green.as_millis() as f32 * self.spec.adaptive.max_headroom) as u64);
            self.dynamic_max[ph.id.index()] = green.clamp(floor, t.max2.max(floor));
        }
    }

    /// The maximum green the engineer selected for the running plan.
    fn engineer_max(&self, t: &super::spec::PhaseTiming) -> Span {
        match self.plan.max_select {
            MaxSelect::Max1 => t.max1,
            MaxSelect::Max2 => t.max2,
        }
    }

    fn mark_volumes(&mut self) {
        for slot in 0..self.spec.detectors.len().min(MAX_DETECTORS) {
            self.volume_mark[slot] = self.detectors.state(slot).volume;
        }
    }

    /// Position in the cycle: from the coordination reference, or for an
    /// adaptive plan from its own cycle origin.
    fn cycle_position(&self, now: Instant) -> Option<Span> {
        let coord = self.plan.coord?;
        let reference = if self.plan.adaptive { self.cycle_origin } else { self.coord_reference };
        Some(coord.cycle_time(now, reference))
    }

    /// At each adaptive cycle boundary: measure the cycle, re-plan the
    /// next one, and log the new cycle and splits.
    fn adapt(&mut self, now: Instant) {
        let (Some(_), Some(coord)) = (self.optimizer, self.plan.coord) else { return };
        let boundary = self.cycle_origin + coord.cycle;
        if now < boundary {
            return;
        }
        self.replan(now, boundary);
    }

    /// Measure the cycle that ended at `boundary`, re-plan, and apply.
    fn replan(&mut self, now: Instant, boundary: Instant) {
        let Some(mut optimizer) = self.optimizer else { return };
        let mut measure = CycleMeasure { elapsed: boundary.since(self.cycle_origin), vehicles: [0; MAX_PHASES] };
        for slot in 0..self.spec.detectors.len().min(MAX_DETECTORS) {
            let counted = self.detectors.state(slot).volume.wrapping_sub(self.volume_mark[slot]);
            if let Some(i) = optimizer.credited_phase(slot) {
                measure.vehicles[i] = measure.vehicles[i].saturating_add(counted);
            }
        }
        self.mark_volumes();
        let before = optimizer.current();
        let imposed = self.corridor_cycle(boundary, before.cycle);
        let next = optimizer.replan_to(&self.spec, &self.spec.adaptive, &measure, imposed);
        self.optimizer = Some(optimizer);
        self.cycle_origin = boundary;
        match self.plan.coord {
            Some(coord) => {
                self.plan.coord =
                    CoordPlan::from_splits(&self.spec, next.cycle, Span::ZERO, &next.splits, coord.coordinated);
            }
            None => self.set_dynamic_max(next),
        }
        if next.cycle != before.cycle {
            self.events.push(now, EventCode::CycleLengthChange, (next.cycle.as_millis() / 1000) as u16);
        }
        for ph in &self.spec.phases {
            let i = ph.id.index();
            if next.splits[i] != before.splits[i] {
                self.events.push(now, EventCode::split_change(i), (next.splits[i].as_millis() / 1000) as u16);
            }
        }
    }

    /// With a corridor timing and a cycle-style plan: the length of the
    /// cycle starting at `origin`, walking the origin onto the corridor's
    /// grid ([`CorridorTiming::next_cycle`]). `None` (the optimizer's own
    /// cycle) in free style, which has no cycle, or when the timing no
    /// longer fits (a reload changed the bounds: the command was checked
    /// against the old ones; the corridor sends it again and is refused).
    fn corridor_cycle(&self, origin: Instant, previous: Span) -> Option<Span> {
        let t = self.corridor?;
        self.plan.coord?;
        let (lower, upper) = Optimizer::cycle_limits(&self.spec, &self.spec.adaptive);
        if t.cycle < lower || t.cycle > upper {
            return None;
        }
        Some(t.next_cycle(origin, previous, lower, upper, self.spec.adaptive.max_step))
    }

    // === running the rings ===

    fn phases_in(&self, interval: Interval) -> PhaseSet {
        let mut s = PhaseSet::EMPTY;
        for ring in &self.rings {
            if ring.interval == interval
                && let Some(p) = ring.phase
            {
                s.insert(p);
            }
        }
        s
    }

    /// Phases whose vehicle heads show green: green rings past any
    /// leading walk. Overlaps and detectors follow the vehicle heads; the
    /// rest of the phase machine the ring.
    fn vehicle_green(&self) -> PhaseSet {
        let mut s = PhaseSet::EMPTY;
        for ring in self.rings.iter().filter(|r| r.interval == Interval::Green && !r.green.leading) {
            if let Some(p) = ring.phase {
                s.insert(p);
            }
        }
        s
    }

    fn timing(&self, p: PhaseId) -> &super::spec::PhaseTiming {
        &self.spec.phase(p).expect("phases in rings are validated to exist").timing
    }

    /// Green needed before a phase may end: min green, and the full
    /// pedestrian service if it is to be served.
    fn needed(&self, p: PhaseId, with_ped: bool) -> Span {
        self.timing(p).service(with_ped)
    }

    /// Calls that count as demand now: all of them in free mode; in
    /// coordination, only those whose phase's window is open.
    fn effective_calls(&self) -> PhaseSet {
        if let Some(targets) = self.preempt_targets() {
            return targets.phases;
        }
        let calls = self.vehicle_calls.union(self.ped_calls);
        let (Some(coord), Some(c)) = (self.plan.coord, self.cycle_time) else {
            return calls;
        };
        calls
            .iter()
            .filter(|&p| coord.coordinated.contains(p) || coord.window(p, c, self.needed(p, false)).is_some())
            .collect()
    }

    /// Whether ring `r` may still serve the phase at position `i` of its
    /// sequence in this barrier group: one after the phase it served last,
    /// or, while a preemption names its targets (the only calls then), any:
    /// a dwell (or exit) phase this ring served earlier in the group is
    /// served again rather than waiting for a barrier that the other
    /// rings' dwell greens, held by the preemption, never reach.
    fn in_turn(&self, r: usize, i: usize) -> bool {
        self.rings[r].served_pos.is_none_or(|pos| i > pos) || self.preempt_targets().is_some()
    }

    /// Phases ring `r` may still serve in the current barrier group.
    fn servable(&self, r: usize) -> PhaseSet {
        let ring = &self.rings[r];
        let group = self.spec.barrier_groups[self.group];
        let mut s = PhaseSet::EMPTY;
        for (i, &p) in self.spec.rings[r].sequence.iter().enumerate() {
            if group.contains(p) && self.in_turn(r, i) {
                s.insert(p);
            }
        }
        if ring.interval == Interval::Green
            && let Some(p) = ring.phase
        {
            s.insert(p);
        }
        s
    }

    /// The first called phase ring `r` can serve next in this barrier group.
    fn next_in_group(&self, r: usize, calls: PhaseSet) -> Option<PhaseId> {
        let group = self.spec.barrier_groups[self.group];
        self.spec.rings[r]
            .sequence
            .iter()
            .enumerate()
            .find(|&(i, &p)| group.contains(p) && self.in_turn(r, i) && calls.contains(p))
            .map(|(_, &p)| p)
    }

    fn run(&mut self, now: Instant, extends: PhaseSet) {
        let rings = self.spec.rings.len();
        self.adapt(now);
        self.cycle_time = self.cycle_position(now);
        let calls = self.effective_calls();
        let mut servable = PhaseSet::EMPTY;
        for r in 0..rings {
            servable = servable.union(self.servable(r));
        }
        let cross = !calls.difference(servable).is_empty() || self.staged();
        self.reschedule(now);

        // 1. Greens: time them and decide which want to end. (`begin_green`
        //    is the one place a ring turns green, and it names the phase.)
        let mut wants: [Option<Ending>; MAX_RINGS] = [None; MAX_RINGS];
        for (r, want) in wants.iter_mut().enumerate().take(rings) {
            let RingState { interval: Interval::Green, phase: Some(p), .. } = self.rings[r] else { continue };
            self.time_green(now, r, p, extends);
            let next = self.next_in_group(r, calls);
            // The max timer times the vehicle green: not during a leading walk.
            let green = &self.rings[r].green;
            if (next.is_some() || cross) && green.max_start.is_none() && !green.leading {
                self.rings[r].green.max_start = Some(now);
                self.events.push(now, EventCode::PhaseCheck, p.number() as u16);
            }
            // The calls that started the max timer were dropped (an omit):
            // nothing conflicting waits, so the green rests and its max
            // timer starts again with the next conflicting call. (Latched
            // calls otherwise leave only by being served.)
            let waiting = self.vehicle_calls.union(self.ped_calls);
            if next.is_none() && !cross && !waiting.intersects(self.spec.conflicts[p.index()]) {
                self.rings[r].green.max_start = None;
            }
            if next.is_some() || cross {
                *want = self.termination(now, r, p, self.priority).map(|why| Ending {
                    phase: p,
                    why,
                    next,
                    conditional_until: None,
                });
                // Held only by its transit priority request: the green is
                // extended for the bus (114, once per green).
                if want.is_none()
                    && self.priority.contains(p)
                    && !self.rings[r].green.priority_extended
                    && self.termination(now, r, p, PhaseSet::EMPTY).is_some()
                {
                    self.rings[r].green.priority_extended = true;
                    self.events.push(now, EventCode::TspAdjustExtendGreen, p.number() as u16);
                }
            }
        }

        // 1b. Conditional service: a ring that gapped or maxed out with
        //     nothing left in its group re-serves an earlier called phase
        //     where its service fits in what the other rings still run.
        for r in 0..rings {
            if let Some(end) = wants[r]
                && let Some((next, until)) = self.conditional_service(now, r, end, &wants)
            {
                wants[r] = Some(Ending { next: Some(next), conditional_until: Some(until), ..end });
            }
        }

        // 2. Simultaneous gap-out at the barrier: a ring that gapped out
        //    with nothing left in its group keeps its green (and its
        //    extensions) while another ring still times green in the group;
        //    max-out and force-off end it regardless.
        let barrier_ready = |r: usize, wants: &[Option<Ending>; MAX_RINGS]| match self.rings[r].interval {
            Interval::Idle => true,
            Interval::Yellow | Interval::RedClear => self.rings[r].next.is_none(),
            Interval::Green => matches!(wants[r], Some(Ending { next: None, .. })),
        };
        let mut ending = [false; MAX_RINGS];
        for r in 0..rings {
            ending[r] = match wants[r] {
                Some(Ending { why: Termination::GapOut, next: None, .. }) => {
                    (0..rings).all(|o| o == r || barrier_ready(o, &wants))
                }
                Some(_) => true,
                None => false,
            };
        }
        for r in 0..rings {
            if ending[r]
                && let Some(end) = wants[r]
            {
                self.begin_yellow(now, r, end);
            }
        }

        // 3. Clearances.
        for r in 0..rings {
            let ring = self.rings[r];
            let Some(p) = ring.phase else { continue };
            match ring.interval {
                Interval::Yellow if ring.shown.elapsed(now) >= self.timing(p).yellow => {
                    self.events.push(now, EventCode::PhaseEndYellowChange, p.number() as u16);
                    self.events.push(now, EventCode::PhaseBeginRedClearance, p.number() as u16);
                    self.rings[r].interval = Interval::RedClear;
                    self.rings[r].since = now;
                    self.rings[r].shown = self.starting(now);
                }
                _ => {}
            }
            let ring = self.rings[r];
            if ring.interval == Interval::RedClear && ring.shown.elapsed(now) >= self.timing(p).red_clear {
                self.events.push(now, EventCode::PhaseEndRedClearance, p.number() as u16);
                self.events.push(now, EventCode::PhaseInactive, p.number() as u16);
                self.rings[r].interval = Interval::Idle;
                self.rings[r].since = now;
                self.rings[r].shown = self.starting(now);
                if let Some(n) = ring.next {
                    self.begin_green(now, r, n);
                }
            }
        }

        // 4. An idle ring may still serve a later phase of the group while
        //    another ring keeps the group open with a green that is not
        //    heading for the barrier.
        let group_open = (0..rings).any(|r| self.rings[r].interval == Interval::Green && !ending[r]);
        if group_open {
            for r in 0..rings {
                if self.rings[r].interval == Interval::Idle
                    && let Some(n) = self.next_in_group(r, calls)
                {
                    self.begin_green(now, r, n);
                }
            }
        }

        // 5. The barrier: every ring idle, every clearance served.
        if (0..rings).all(|r| self.rings[r].interval == Interval::Idle) {
            if self.overlaps.iter().any(|o| *o != OverlapInterval::Red) {
                return;
            }
            if self.staged() && !self.apply_staged(now) {
                return;
            }
            self.cross_barrier(now);
        }
    }

    /// Update a green's timers: min green, extensions, pedestrian intervals,
    /// the coordinated yield point.
    fn time_green(&mut self, now: Instant, r: usize, p: PhaseId, extends: PhaseSet) {
        let t = *self.timing(p);
        let (green_shown, starting) = (self.rings[r].shown.elapsed(now), self.starting(now));
        // A preemption entering may cut the walk of a green it ends, to its
        // truncated walk at the least (the clearance stays whole).
        let walk = match self.preempt_targets() {
            Some(PreemptTargets { phases, truncated_walk: Some(cut) }) if !phases.contains(p) => t.walk.min(cut),
            _ => t.walk,
        };
        let ring = &mut self.rings[r];
        if ring.green.leading {
            if ring.green.ped_shown.elapsed(now) < t.leading_walk {
                return;
            }
            // The walk has its head start: the vehicle green begins, and
            // its minimum, gap and max timers with it.
            ring.green.leading = false;
            ring.green.last_extension = now;
            ring.since = now;
            ring.shown = starting;
            self.events.push(now, EventCode::PhaseBeginGreen, p.number() as u16);
            return;
        }
        let g = &mut ring.green;
        if extends.contains(p) {
            g.last_extension = now;
        }
        // A request during the walk or clearance lengthens this clearance
        // if it ends by the force-off, or a coordinated phase's yield point
        // (a coordinated or fixed cycle keeps its splits); one at another
        // time waits for the phase's next walk.
        let shown = g.ped_shown.elapsed(now);
        let extended_end = match g.ped {
            PedInterval::Walk => Some(now + t.walk.saturating_sub(shown) + t.extended_ped_clear),
            PedInterval::Clearance => Some(now + t.extended_ped_clear.saturating_sub(shown)),
            PedInterval::DontWalk => None,
        };
        let cycled = self.plan.coord.is_some();
        let fits = extended_end.is_some_and(|end| match g.force_off_at.or(g.yield_at) {
            Some(limit) => end <= limit,
            None => !cycled,
        });
        if fits && self.ped_extensions.contains(p) {
            self.ped_extensions.remove(p);
            g.ped_extended = true;
        }
        if !g.min_done && green_shown >= t.min_green {
            g.min_done = true;
            self.events.push(now, EventCode::PhaseMinComplete, p.number() as u16);
        }
        let quiet = self.quiet(p);
        let g = &mut self.rings[r].green;
        match g.ped {
            PedInterval::Walk if t.rest_in_walk && quiet => {}
            PedInterval::DontWalk if t.ped_recycle && quiet && self.ped_calls.contains(p) => {
                // Recycle: the walk again, in this green.
                g.ped = PedInterval::Walk;
                g.ped_since = now;
                g.ped_shown = starting;
                self.ped_calls.remove(p);
                self.events.push(now, EventCode::PedBeginWalk, p.number() as u16);
            }
            PedInterval::Walk if g.ped_shown.elapsed(now) >= walk => {
                g.ped = PedInterval::Clearance;
                g.ped_since = now;
                g.ped_shown = starting;
                self.events.push(now, EventCode::PedBeginClearance, p.number() as u16);
            }
            PedInterval::Clearance
                if g.ped_shown.elapsed(now) >= if g.ped_extended { t.extended_ped_clear } else { t.ped_clear } =>
            {
                g.ped = PedInterval::DontWalk;
                g.ped_since = now;
                g.ped_shown = starting;
                self.events.push(now, EventCode::PedBeginSolidDontWalk, p.number() as u16);
            }
            _ => {}
        }
        if let (Some(coord), Some(c)) = (self.plan.coord, self.cycle_time)
            && coord.coordinated.contains(p)
            && let Some(d) = coord.time_to_yield(p, c)
        {
            let g = &mut self.rings[r].green;
            if g.yield_at.is_none() {
                self.events.push(now, EventCode::CoordPhaseYieldPoint, p.number() as u16);
            }
            g.yield_at = Some(now + d);
        }
        // A coordinated green at its yield point is where the cycle puts it.
        if self.rings[r].green.yield_at.is_some_and(|y| now >= y) {
            self.cycle_kept();
        }
    }

    /// Whether ring `r`'s green, phase `p`, may end now, and why.
    /// `priority`: the transit priority requests to honour (the active
    /// ones, or none to ask where the green would end without them).
    fn termination(&self, now: Instant, r: usize, p: PhaseId, priority: PhaseSet) -> Option<Termination> {
        let g = &self.rings[r].green;
        // Minimums and pedestrian service are never cut, not even by a
        // preemption: only then do precedence rules apply.
        if g.leading || !g.min_done || g.ped != PedInterval::DontWalk {
            return None;
        }
        // Preemption outranks holds and plans: every other green ends now,
        // the dwell phases stay green.
        if let Some(targets) = self.preempt_targets() {
            return (!targets.phases.contains(p)).then_some(Termination::Preempt);
        }
        // A conditional service borrows the other rings' time: it ends by
        // its limit whatever holds it.
        if g.conditional_end.is_some_and(|e| now >= e) {
            return Some(Termination::ForceOff);
        }
        if self.holds.contains(p) {
            return None;
        }
        let t = self.timing(p);
        let coordinated = self.plan.coordinated().contains(p) && self.plan.mode != PlanMode::Free;
        // Transit priority: early green by ending a conflicting,
        // non-coordinated green after its minimums...
        let waiting_priority = priority.difference(self.phases_in(Interval::Green));
        if !coordinated && waiting_priority.intersects(self.spec.conflicts[p.index()]) {
            return Some(Termination::Priority);
        }
        // ...or green extension: no gap-out, max and force-off pushed back
        // by at most the configured extension.
        let extension = if priority.contains(p) { self.spec.priority.max_extension } else { Span::ZERO };
        let max = self.max_green(p) + extension;
        let on_max = g.max_start.map(|s| now.since(s));
        let maxed = on_max.is_some_and(|m| m >= max) && !self.pressure_holds(now, p, on_max);
        // Volume-density: no gap-out inside the added initial; the gap
        // shrinks while a conflicting call waits (the max timer's start).
        let gap = t.density.gap(t.passage, on_max);
        let gapped = t.recall != Recall::Max
            && extension.is_zero()
            && self.rings[r].shown.elapsed(now) >= g.initial
            && now.since(g.last_extension) >= gap;
        let forced = g.force_off_at.is_some_and(|f| now >= f + extension);
        if let Some(held) = self.scheduled().and_then(|s| s.holds(p, now)) {
            // Schedule style: the plan may hold a green past its gap-out
            // for the vehicles it expects, up to the free-style maximum.
            // It does not cut a green its detectors still extend: a
            // camera's halting count drops to zero as a queue starts to
            // move, long before the queue has crossed (SIL, single
            // near-saturated: 254 s mean delay when the plan cut greens,
            // against 34.5 s free style).
            return if maxed {
                Some(Termination::MaxOut)
            } else if gapped && !held {
                Some(Termination::GapOut)
            } else {
                None
            };
        }
        match self.plan.mode {
            PlanMode::Free => {
                if maxed {
                    Some(Termination::MaxOut)
                } else if gapped {
                    Some(Termination::GapOut)
                } else {
                    None
                }
            }
            PlanMode::Coordinated | PlanMode::Fixed if self.plan.coordinated().contains(p) => {
                g.yield_at.is_some_and(|y| now >= y).then_some(Termination::ForceOff)
            }
            PlanMode::Coordinated => {
                if forced {
                    Some(Termination::ForceOff)
                } else if maxed {
                    Some(Termination::MaxOut)
                } else if gapped {
                    Some(Termination::GapOut)
                } else {
                    None
                }
            }
            PlanMode::Fixed => forced.then_some(Termination::ForceOff),
        }
    }

    /// Phase `p`'s maximum green now: free-style adaptive's for this
    /// cycle, else the one the plan selects.
    fn max_green(&self, p: PhaseId) -> Span {
        let t = self.timing(p);
        match (self.plan.max_select, self.dynamic_max[p.index()]) {
            (_, dynamic) if !dynamic.is_zero() => dynamic,
            (MaxSelect::Max1, _) => t.max1,
            (MaxSelect::Max2, _) => t.max2,
        }
    }

    /// The latest ring `r`'s green, phase `p`, runs to by the plan's own
    /// rules: its max timer's end (from now if it has not started: it
    /// starts no earlier), and in coordination its force-off, or its
    /// yield point if coordinated (`None` until that is known). A
    /// preemption, a hold, a transit priority request or free-style
    /// adaptive's queue rule may only end it sooner or hold it longer.
    fn green_limit(&self, now: Instant, r: usize, p: PhaseId) -> Option<Instant> {
        let g = &self.rings[r].green;
        let max_end = g.max_start.unwrap_or(now) + self.max_green(p);
        match self.plan.mode {
            PlanMode::Coordinated | PlanMode::Fixed if self.plan.coordinated().contains(p) => g.yield_at,
            PlanMode::Free => Some(max_end),
            PlanMode::Coordinated => Some(g.force_off_at.map_or(max_end, |f| f.min(max_end))),
            PlanMode::Fixed => g.force_off_at,
        }
    }

    /// Conditional service (NEMA TS 2): ring `r`'s green `end` gapped or
    /// maxed out with nothing left in its barrier group while every other
    /// ring that still times a green of the group keeps it (not ending it
    /// this tick). The ring may then serve again, once per group, the
    /// first earlier phase of the group with a call and
    /// `conditional_service` whose minimum service and clearance, and its
    /// `conditional_service` minimum, fit after `end`'s clearance before
    /// the earliest those greens could be made to end ([`Self::green_limit`]):
    /// the barrier then comes no later than those greens would bring it.
    /// Not while a preemption or a change staged for the barrier waits,
    /// nor after a force-off (a coordinated split is over). Returns the
    /// phase and that limit.
    fn conditional_service(
        &self,
        now: Instant,
        r: usize,
        end: Ending,
        wants: &[Option<Ending>; MAX_RINGS],
    ) -> Option<(PhaseId, Instant)> {
        let ring = &self.rings[r];
        let terminated = matches!(end.why, Termination::GapOut | Termination::MaxOut);
        if !terminated || end.next.is_some() || ring.conditional_served || self.preempt.is_some() || self.staged() {
            return None;
        }
        let mut until: Option<Instant> = None;
        for (o, other) in self.rings.iter().enumerate().take(self.spec.rings.len()) {
            if o == r || other.interval != Interval::Green || wants[o].is_some() {
                continue;
            }
            let limit = self.green_limit(now, o, other.phase?)?;
            until = Some(until.map_or(limit, |u| u.min(limit)));
        }
        let until = until?;
        let left = until.since(now).saturating_sub(self.timing(end.phase).clearance());
        let group = self.spec.barrier_groups[self.group];
        let calls = self.vehicle_calls.union(self.ped_calls).difference(self.omitted);
        let before = &self.spec.rings[r].sequence[..ring.served_pos?];
        let next = before.iter().copied().find(|&p| {
            let t = self.timing(p);
            let service = t.service(self.ped_calls.contains(p)) + t.clearance();
            group.contains(p) && calls.contains(p) && t.conditional_service.is_some_and(|min| service.max(min) <= left)
        })?;
        Some((next, until))
    }

    /// Free-style adaptive, per decision: a green at its re-planned maximum
    /// runs on (still gapping out as usual) while its queue (a camera's, or
    /// the loops' estimate, [`QueueEstimator`]) is at least as long as the
    /// longest queue waiting on a conflicting call: a max-pressure rule at
    /// the max-out decision. Only while the queue moves (a vehicle crossed
    /// a stop bar within [`super::queue::DISCHARGE_GAP`]): a long queue
    /// behind a blocked lane has no pressure. Never past max2, nor for a
    /// phase whose queue nothing measures.
    /// `on_max`: how long the phase's max timer has run.
    fn pressure_holds(&self, now: Instant, p: PhaseId, on_max: Option<Span>) -> bool {
        if self.optimizer.is_none() || self.plan.mode != PlanMode::Free {
            return false;
        }
        let Some(queue) = self.queues.queue(p) else { return false };
        let t = self.timing(p);
        let within = on_max.is_some_and(|m| m < t.max2);
        let waiting = self.vehicle_calls.intersection(self.spec.conflicts[p.index()]);
        within && queue > 0 && queue >= self.queues.longest(waiting) && self.queues.discharging(p, now)
    }

    /// Schedule style: phase `p`'s projected outflow from the plan in
    /// force, for the neighbours it feeds.
    pub fn projected_outflow(&self, p: PhaseId) -> Option<Projection> {
        self.scheduled()?.outflow(p)
    }

    /// Schedule style: an upstream neighbour's projected arrivals onto
    /// phase `p` (kept while another style runs, for when this one does).
    pub fn expect_arrivals(&mut self, p: PhaseId, arrivals: &Projection) {
        if let Some(s) = self.scheduler.as_deref_mut() {
            s.project(p, arrivals);
        }
    }

    /// Schedule style: the delay of the last plan (vehicle-seconds), which
    /// weighs every input the planner had (tests compare runs by it).
    #[cfg(test)]
    pub(crate) fn planned_delay(&self) -> Option<f32> {
        self.scheduled().map(Scheduler::planned_delay)
    }

    /// The planner, while a schedule-style adaptive plan runs in free mode.
    fn scheduled(&self) -> Option<&Scheduler> {
        let running = self.optimizer.is_some() && self.plan.mode == PlanMode::Free;
        self.scheduler.as_deref().filter(|_| running && self.spec.adaptive.style == AdaptiveStyle::Schedule)
    }

    /// Schedule style, once a second while a green runs: plan the
    /// vehicles expected over the horizon ([`Scheduler::plan`]).
    fn reschedule(&mut self, now: Instant) {
        let Some(opt) = self.optimizer else { return };
        if self.scheduled().is_none_or(|s| !s.due(now)) {
            return;
        }
        let green = self.phases_in(Interval::Green);
        if green.is_empty() {
            return;
        }
        let elapsed = self
            .rings
            .iter()
            .filter(|r| r.interval == Interval::Green)
            .map(|r| r.shown.elapsed(now))
            .max()
            .unwrap_or(Span::ZERO);
        let mut demand = [PhaseDemand::default(); MAX_PHASES];
        for p in self.spec.phase_set().iter() {
            demand[p.index()] = PhaseDemand {
                queue: self.queues.queue(p),
                flow_vph: opt.flow_vph(p.index()),
                called: self.vehicle_calls.contains(p),
                ped_called: self.ped_calls.contains(p) && self.timing(p).has_ped(),
            };
        }
        if let Some(s) = self.scheduler.as_deref_mut() {
            s.plan(now, green, elapsed, &demand);
        }
    }

    fn begin_yellow(&mut self, now: Instant, r: usize, Ending { phase: p, why, next, conditional_until }: Ending) {
        let n = p.number() as u16;
        if self.priority.contains(p) {
            // Served: the request checks out with this green.
            self.priority.remove(p);
            self.events.push(now, EventCode::TspCheckOut, n);
        }
        if why == Termination::GapOut {
            self.queues.cleared(p);
        }
        if why == Termination::Priority {
            // The conflicting green ends early for the bus: its request's
            // early green (113, once per request).
            let granted = self.priority.difference(self.priority_early).intersection(self.spec.conflicts[p.index()]);
            for q in granted.iter() {
                self.events.push(now, EventCode::TspAdjustEarlyGreen, q.number() as u16);
            }
            self.priority_early = self.priority_early.union(granted);
        }
        if why == Termination::ForceOff && self.rings[r].green.force_off_on_cycle {
            self.cycle_kept();
        }
        self.waiting_vehicles[p.index()] = 0;
        self.events.push(now, why.event_code(), n);
        self.events.push(now, EventCode::PhaseGreenTermination, n);
        self.events.push(now, EventCode::PhaseBeginYellowChange, n);
        let shown = self.starting(now);
        let ring = &mut self.rings[r];
        ring.interval = Interval::Yellow;
        ring.since = now;
        ring.shown = shown;
        ring.next = next;
        ring.conditional_until = conditional_until;
    }

    fn begin_green(&mut self, now: Instant, r: usize, p: PhaseId) {
        let pos = self.spec.rings[r].sequence.iter().position(|&q| q == p);
        let t = *self.timing(p);
        let coordinated = self.plan.coordinated().contains(p);
        let wants_ped = t.has_ped() && self.ped_calls.contains(p);
        let (mut force_off_at, mut force_off_on_cycle, mut serve_ped) = (None, false, wants_ped);
        if let (Some(coord), Some(c)) = (self.plan.coord, self.cycle_time)
            && !coordinated
        {
            if wants_ped && coord.window(p, c, self.needed(p, true)).is_none() {
                // No room for the pedestrians inside the window: serve the
                // vehicles now and keep the ped call for the next cycle.
                serve_ped = false;
            }
            // The phase was chosen while its window was open (or, a
            // preemption's exit phase, whatever the window), but clearance
            // ran since; a force-off never cuts the minimums.
            let to_force_off = coord.window(p, c, Span::ZERO).unwrap_or(Span::ZERO);
            let needed = self.needed(p, serve_ped);
            force_off_on_cycle = to_force_off >= needed;
            force_off_at = Some(now + to_force_off.max(needed));
        }
        // A conditional service is forced off so that its clearance ends by
        // its limit (its minimums uncut: a late cabinet link may have eaten
        // into the margin). In coordination that replaces its own force-off:
        // its split is over, the time is the other rings' split.
        let conditional_end = self.rings[r].conditional_until.map(|until| {
            let end = now + until.since(now).saturating_sub(t.clearance());
            end.max(now + self.needed(p, serve_ped))
        });
        if let Some(end) = conditional_end.filter(|_| force_off_at.is_some()) {
            (force_off_at, force_off_on_cycle) = (Some(end), false);
        }
        let shown = self.starting(now);
        let ring = &mut self.rings[r];
        ring.interval = Interval::Green;
        ring.phase = Some(p);
        ring.since = now;
        ring.shown = shown;
        ring.conditional_served |= conditional_end.is_some();
        // After a conditional service the ring's place stays where it had
        // got to: the phases after it are still to serve, the ones before
        // not again.
        ring.served_pos = if ring.conditional_served { ring.served_pos.max(pos) } else { pos };
        ring.next = None;
        ring.conditional_until = None;
        ring.green = GreenTimers {
            last_extension: now,
            max_start: None,
            min_done: false,
            ped: if serve_ped { PedInterval::Walk } else { PedInterval::DontWalk },
            ped_since: now,
            ped_shown: shown,
            ped_extended: false,
            leading: serve_ped && !t.leading_walk.is_zero(),
            force_off_at,
            force_off_on_cycle,
            yield_at: None,
            initial: t.density.initial(t.min_green, self.waiting_vehicles[p.index()]),
            priority_extended: false,
            conditional_end,
        };
        self.vehicle_calls.remove(p);
        if let Some(pre) = &mut self.preempt
            && pre.stage == PreemptStage::Exit
        {
            pre.exit_waiting.remove(p);
            if pre.exit_waiting.is_empty() {
                // Every exit phase served first: normal operation resumes.
                self.preempt = None;
            }
        }
        self.events.push(now, EventCode::PhaseOn, p.number() as u16);
        // With a leading walk, the vehicle green (1) follows when the
        // walk has led for its interval ([`Self::time_green`]).
        if !self.rings[r].green.leading {
            self.events.push(now, EventCode::PhaseBeginGreen, p.number() as u16);
        }
        if coordinated {
            self.events.push(now, EventCode::CoordPhaseBegin, p.number() as u16);
        }
        if serve_ped {
            self.ped_calls.remove(p);
            self.events.push(now, EventCode::PedBeginWalk, p.number() as u16);
        }
    }

    /// Every ring is idle: pick the next barrier group with a call and start
    /// each ring's first called phase in it (or its dual-entry phase).
    fn cross_barrier(&mut self, now: Instant) {
        let groups = self.spec.barrier_groups.len();
        let calls = self.effective_calls();
        let start = if self.enter_current_group { 0 } else { 1 };
        let Some(g) = (start..start + groups)
            .map(|k| (self.group + k) % groups)
            .find(|&g| self.spec.barrier_groups[g].intersects(calls))
        else {
            return; // rest in red: nothing to serve
        };
        if g != self.group || !self.enter_current_group {
            self.events.push(now, EventCode::BarrierTermination, self.group as u16 + 1);
        }
        let startup_phases = if self.enter_current_group && self.preempt_targets().is_none() {
            self.spec.startup.phases.intersection(self.spec.barrier_groups[g])
        } else {
            PhaseSet::EMPTY
        };
        self.enter_current_group = false;
        // Free-style adaptive: the ring-barrier cycle ends when the
        // sequence comes back round to an earlier (or the same) group.
        if g <= self.group && self.plan.coord.is_none() && self.optimizer.is_some() {
            self.replan(now, now);
        }
        self.group = g;
        for r in &mut self.rings {
            r.served_pos = None;
            r.conditional_served = false;
        }
        let rings = self.spec.rings.len();
        let mut starts: [Option<PhaseId>; MAX_RINGS] = [None; MAX_RINGS];
        for (r, s) in starts.iter_mut().enumerate().take(rings) {
            // Start-up begins in the start-up phases (usually 2 and 6), not
            // in a lead phase that happens to be called.
            let startup = self.spec.rings[r].sequence.iter().copied().find(|p| startup_phases.contains(*p));
            *s = startup.or_else(|| self.next_in_group(r, calls));
        }
        if starts.iter().any(Option::is_some) && self.preempt_targets().is_none() {
            for (r, s) in starts.iter_mut().enumerate().take(rings) {
                if s.is_none() {
                    *s = self.spec.rings[r]
                        .sequence
                        .iter()
                        .copied()
                        .find(|&p| self.spec.barrier_groups[g].contains(p) && self.timing(p).dual_entry);
                }
            }
        }
        for (r, s) in starts.into_iter().enumerate().take(rings) {
            if let Some(p) = s {
                self.begin_green(now, r, p);
            }
        }
    }

    // === overlaps and outputs ===

    fn time_overlaps(&mut self, now: Instant) {
        if !matches!(self.unit, UnitState::Run) {
            return;
        }
        let green = self.vehicle_green();
        for ov in self.spec.overlaps.iter().take(MAX_OVERLAPS) {
            let (i, n) = (ov.id.index(), ov.id.number() as u16);
            let parent_green = green.intersects(ov.parents);
            // A parent ending into another parent keeps the overlap green.
            let carried = self.rings[..self.spec.rings.len()].iter().any(|r| {
                matches!(r.interval, Interval::Yellow | Interval::RedClear)
                    && r.phase.is_some_and(|p| ov.parents.contains(p))
                    && r.next.is_some_and(|n| ov.parents.contains(n))
            });
            // A flashing yellow arrow's opposing through is green: the
            // left may turn, yielding (never together with the parent,
            // which conflicts with it: config/validate/detector.rs).
            let permissive_green = ov.permissive_phase().is_some_and(|p| green.contains(p));
            let state = self.overlaps[i];
            self.overlaps[i] = match state {
                OverlapInterval::Red if parent_green => {
                    self.events.push(now, EventCode::OverlapBeginGreen, n);
                    OverlapInterval::Green
                }
                OverlapInterval::Red if permissive_green => {
                    self.events.push(now, EventCode::FyaBeginPermissive, n);
                    OverlapInterval::Permissive
                }
                OverlapInterval::Green if !parent_green && !carried => {
                    self.events.push(now, EventCode::OverlapBeginYellow, n);
                    overlap_yellow(&self.spec, ov.parents, self.starting(now))
                }
                // The flashing arrow ends through a steady yellow arrow as
                // its opposing through ends: no yellow trap.
                OverlapInterval::Permissive if !permissive_green || parent_green => {
                    self.events.push(now, EventCode::FyaEndPermissive, n);
                    self.events.push(now, EventCode::OverlapBeginYellow, n);
                    let movements = ov.parents.union(ov.permissive_phase().map(PhaseSet::single).unwrap_or_default());
                    overlap_yellow(&self.spec, movements, self.starting(now))
                }
                OverlapInterval::Yellow { shown, yellow, red_clear } if shown.elapsed(now) >= yellow => {
                    self.events.push(now, EventCode::OverlapBeginRedClearance, n);
                    OverlapInterval::RedClear { shown: self.starting(now), red_clear }
                }
                OverlapInterval::RedClear { shown, red_clear } if shown.elapsed(now) >= red_clear => {
                    self.events.push(now, EventCode::OverlapOff, n);
                    OverlapInterval::Red
                }
                s => s,
            };
        }
    }

    fn render(&mut self) {
        let mut out = OutputFrame::default();
        let spec = &self.spec;
        match self.unit {
            UnitState::Flash { .. } => {
                for ph in &spec.phases {
                    out.vehicle[ph.id.index()] = match ph.timing.flash {
                        FlashIndication::Red => Indication::FlashingRed,
                        FlashIndication::Yellow => Indication::FlashingYellow,
                    };
                }
                for ov in spec.overlaps.iter().take(MAX_OVERLAPS) {
                    out.overlap[ov.id.index()] = Indication::FlashingRed;
                }
            }
            UnitState::AllRed { .. } | UnitState::Run => {
                for ph in &spec.phases {
                    out.vehicle[ph.id.index()] = Indication::Red;
                    if ph.timing.has_ped() {
                        out.ped[ph.id.index()] = PedIndication::DontWalk;
                    }
                }
                for ring in &self.rings[..spec.rings.len()] {
                    let Some(p) = ring.phase else { continue };
                    out.vehicle[p.index()] = match ring.interval {
                        Interval::Green if ring.green.leading => Indication::Red,
                        Interval::Green => Indication::Green,
                        Interval::Yellow => Indication::Yellow,
                        Interval::RedClear | Interval::Idle => Indication::Red,
                    };
                    if ring.interval == Interval::Green {
                        let g = &ring.green;
                        out.ped_extended.set(p, g.ped_extended && g.ped != PedInterval::DontWalk);
                        let t = self.timing(p);
                        match g.ped {
                            PedInterval::Walk => {
                                out.ped[p.index()] = PedIndication::Walk;
                                let message =
                                    !t.rest_in_walk || g.ped_shown.elapsed(self.now) < ACCESSIBLE_WALK_AT_REST;
                                out.accessible_walk.set(p, message);
                            }
                            PedInterval::Clearance => {
                                out.ped[p.index()] = PedIndication::FlashingDontWalk;
                                // Counted from the confirmation, as the
                                // clearance ends (`time_green`): before it the
                                // heads may not show it yet, and any number
                                // could promise an end before the real one.
                                let clear = if g.ped_extended { t.extended_ped_clear } else { t.ped_clear };
                                out.ped_countdown[p.index()] = g.ped_shown.at.map_or(Countdown::BLANK, |at| {
                                    Countdown::covering(clear.saturating_sub(self.now.since(at)))
                                });
                            }
                            PedInterval::DontWalk => {}
                        }
                    }
                }
                for ov in spec.overlaps.iter().take(MAX_OVERLAPS) {
                    out.overlap[ov.id.index()] = match self.overlaps[ov.id.index()] {
                        OverlapInterval::Green => Indication::Green,
                        OverlapInterval::Permissive => Indication::FlashingYellow,
                        OverlapInterval::Yellow { .. } => Indication::Yellow,
                        OverlapInterval::Red | OverlapInterval::RedClear { .. } => Indication::Red,
                    };
                }
            }
        }
        self.output = out;
    }
}

/// An overlap's yellow beginning (`shown`), timed as the longest yellow and
/// red clearance of `movements` (its parents; with a flashing yellow
/// arrow's opposing through when the flashing arrow ends), so it is never
/// shorter than theirs. The protected arrow's is its parent's alone: the
/// opposing through starts after the parent's clearance and must find the
/// arrow's done (src/core/monitor.rs); the flashing arrow's longer one is
/// waited for at the barrier.
fn overlap_yellow(spec: &ControllerSpec, movements: PhaseSet, shown: Shown) -> OverlapInterval {
    let (yellow, red_clear) = movements
        .iter()
        .filter_map(|p| spec.phase(p))
        .fold((Span::ZERO, Span::ZERO), |(y, r), ph| (y.max(ph.timing.yellow), r.max(ph.timing.red_clear)));
    OverlapInterval::Yellow { shown, yellow, red_clear }
}

impl ActivePlan {
    fn coordinated(&self) -> PhaseSet {
        self.coord.map(|c| c.coordinated).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::DetectorChannel;
    use crate::core::monitor::Monitor;
    use crate::core::spec::VolumeDensity;
    use crate::core::testing::{eight_phase, with_flashing_yellow_arrows};

    const TICK: Span = Span::from_millis(100);

    struct Rig {
        c: Controller,
        m: Monitor,
        now: Instant,
        input: InputFrame,
        log: Vec<Event>,
    }

    impl Rig {
        fn new() -> Self {
            Rig::with_spec(eight_phase())
        }

        fn with_spec(spec: ControllerSpec) -> Self {
            let m = Monitor::new(&spec);
            Rig {
                c: Controller::new(spec, Instant::ZERO),
                m,
                now: Instant::ZERO,
                input: InputFrame::default(),
                log: vec![],
            }
        }

        /// A controller on `spec` running its adaptive plan (plan 4).
        fn adaptive(spec: ControllerSpec) -> Self {
            let mut rig = Rig::with_spec(spec);
            rig.c.handle_command(Instant::ZERO, Command::SelectPlan(4)).unwrap();
            rig
        }

        fn run(&mut self, secs: u64) {
            for _ in 0..secs * 10 {
                self.step();
            }
        }

        fn run_ms(&mut self, ms: u64) {
            for _ in 0..ms / TICK.as_millis() {
                self.step();
            }
        }

        /// One tick.
        fn step(&mut self) {
            self.now += TICK;
            self.c.handle_tick(self.now, &self.input);
            if let Err(f) = self.m.check(self.now, self.c.output()) {
                panic!("monitor tripped at {}: {f}\n{:?}", self.now, self.c.snapshot());
            }
            while let Some(e) = self.c.poll_event() {
                self.log.push(e);
            }
        }

        fn detector(&mut self, ch: u8, on: bool) {
            self.input.set_presence(DetectorChannel::new(ch).unwrap(), on);
        }

        fn shows(&self, n: u8) -> Indication {
            self.c.output().phase(PhaseId::new(n).unwrap())
        }
    }

    #[test]
    fn starts_with_flash_then_all_red_then_main_street_green() {
        let mut rig = Rig::new();
        assert_eq!(rig.shows(2), Indication::FlashingYellow);
        rig.run(3);
        assert!(matches!(rig.c.unit(), UnitState::Flash { .. }));
        rig.run(2);
        assert!(matches!(rig.c.unit(), UnitState::AllRed { .. }));
        assert_eq!(rig.shows(2), Indication::Red);
        rig.run(2);
        assert_eq!(rig.c.unit(), UnitState::Run);
        assert_eq!(rig.shows(2), Indication::Green);
        assert_eq!(rig.shows(6), Indication::Green);
        assert_eq!(rig.shows(4), Indication::Red);
        assert_eq!(rig.c.snapshot().coordination, Coordination::Free, "plan 1 is free");
    }

    #[test]
    fn rests_in_green_without_calls_and_serves_a_side_street_call() {
        let mut rig = Rig::new();
        rig.run(60);
        assert_eq!(rig.shows(2), Indication::Green);
        rig.detector(4, true);
        rig.run(1);
        rig.detector(4, false);
        rig.run(20);
        let begun: Vec<u16> =
            rig.log.iter().filter(|e| e.code == EventCode::PhaseBeginGreen).map(|e| e.param).collect();
        assert!(begun.contains(&4), "phase 4 served: {begun:?}");
        // Phase 8 came along by dual entry.
        assert!(begun.contains(&8), "dual entry 8: {begun:?}");
        rig.run(30);
        assert_eq!(rig.shows(2), Indication::Green, "back to main street");
    }

    #[test]
    fn a_constant_call_maxes_out() {
        let mut rig = Rig::new();
        rig.run(10);
        rig.detector(2, true); // keeps extending 2
        rig.detector(4, true);
        rig.run(60);
        assert!(rig.log.iter().any(|e| e.code == EventCode::PhaseMaxOut && e.param == 2));
    }

    /// Green of phase `n` from its first begin green to its yellow.
    fn first_green(log: &[Event], n: u16) -> (Span, EventCode) {
        let start = log.iter().find(|e| e.code == EventCode::PhaseBeginGreen && e.param == n).expect("served").at;
        let end = log
            .iter()
            .find(|e| e.at >= start && e.code == EventCode::PhaseBeginYellowChange && e.param == n)
            .expect("ended")
            .at;
        let why = log
            .iter()
            .find(|e| {
                e.at == end
                    && e.param == n
                    && matches!(e.code, EventCode::PhaseGapOut | EventCode::PhaseMaxOut | EventCode::PhaseForceOff)
            })
            .expect("a termination")
            .code;
        (end.since(start), why)
    }

    fn with_density(n: u8, density: VolumeDensity) -> ControllerSpec {
        let mut spec = eight_phase();
        spec.phases.iter_mut().find(|p| p.id.number() == n).unwrap().timing.density = density;
        spec
    }

    /// Eight vehicles arrive on phase 4's red: with 1.5 s added per vehicle
    /// its initial green is 12 s, not the 8 s minimum it gaps out at
    /// without volume-density.
    #[test]
    fn added_initial_gives_the_queue_that_built_on_red_its_green() {
        let density = VolumeDensity {
            added_initial: Span::from_millis(1500),
            max_initial: Span::from_secs(15),
            ..VolumeDensity::default()
        };
        let mut greens = vec![];
        for spec in [eight_phase(), with_density(4, density)] {
            let mut rig = Rig::with_spec(spec);
            rig.run(20);
            for _ in 0..8 {
                rig.detector(4, true);
                rig.step();
                rig.step();
                rig.detector(4, false);
                rig.step();
                rig.step();
            }
            rig.run(40);
            greens.push(first_green(&rig.log, 4));
        }
        let (plain, dense) = (greens[0], greens[1]);
        assert_eq!(plain.1, EventCode::PhaseGapOut);
        assert!(plain.0 >= Span::from_secs(8) && plain.0 <= Span::from_millis(8200), "without: {plain:?}");
        assert_eq!(dense.1, EventCode::PhaseGapOut);
        assert!(dense.0 >= Span::from_secs(12) && dense.0 <= Span::from_millis(12200), "with: {dense:?}");
    }

    /// Vehicles 2.5 s apart keep a 3 s passage extending to max-out; with
    /// gap reduction (to 1 s over 4 s, 2 s after phase 2's recall call)
    /// the gap drops below the headway and phase 4 gaps out instead.
    #[test]
    fn gap_reduction_ends_a_steady_stream_while_conflicting_traffic_waits() {
        let density = VolumeDensity {
            time_before_reduction: Span::from_secs(2),
            time_to_reduce: Span::from_secs(4),
            min_gap: Span::from_secs(1),
            ..VolumeDensity::default()
        };
        let mut ends = vec![];
        for spec in [eight_phase(), with_density(4, density)] {
            let mut rig = Rig::with_spec(spec);
            rig.run(20);
            for _ in 0..30 {
                rig.detector(4, true);
                rig.run_ms(200);
                rig.detector(4, false);
                rig.run_ms(2300);
            }
            ends.push(first_green(&rig.log, 4));
        }
        assert_eq!(ends[0].1, EventCode::PhaseMaxOut, "without reduction: {:?}", ends[0]);
        assert_eq!(ends[1].1, EventCode::PhaseGapOut, "with reduction: {:?}", ends[1]);
        assert!(ends[1].0 < Span::from_secs(12), "with reduction: {:?}", ends[1]);
    }

    #[test]
    fn coordinated_plan_cycles_at_its_cycle_length() {
        let mut rig = Rig::new();
        rig.c.handle_command(Instant::ZERO, Command::SelectPlan(2)).unwrap();
        for ch in 1..=8 {
            rig.detector(ch, true);
        }
        rig.run(600);
        let starts: Vec<Instant> =
            rig.log.iter().filter(|e| e.code == EventCode::PhaseBeginGreen && e.param == 3).map(|e| e.at).collect();
        let gaps: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        assert!(gaps.len() >= 4, "{gaps:?}");
        assert!(gaps[2..].iter().all(|&g| g == 100_000), "phase 3 starts every cycle: {gaps:?}");
        assert_eq!(rig.c.snapshot().coordination, Coordination::InStep);
    }

    #[test]
    fn fixed_plan_repeats_exactly() {
        let mut rig = Rig::new();
        rig.c.handle_command(Instant::ZERO, Command::SelectPlan(3)).unwrap();
        rig.run(600);
        let starts: Vec<Instant> =
            rig.log.iter().filter(|e| e.code == EventCode::PhaseBeginGreen && e.param == 7).map(|e| e.at).collect();
        let gaps: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        assert!(gaps.len() >= 4, "{gaps:?}");
        assert!(gaps[2..].iter().all(|&g| g == 90_000), "{gaps:?}");
    }

    #[test]
    fn adaptive_plan_replans_the_cycle_from_measured_flows() {
        let mut rig = Rig::new();
        rig.c.handle_command(Instant::ZERO, Command::SelectPlan(4)).unwrap();
        // Heavy main street, light side street: the main street's detectors
        // count a vehicle every 2 s while the side street sees one every 20 s.
        for t in 0..1800u64 {
            let main = t % 2 == 0;
            rig.detector(2, main);
            rig.detector(6, main);
            rig.detector(4, t % 20 == 0);
            rig.detector(8, t % 20 == 10);
            rig.run(1);
        }
        let cycles: Vec<u16> =
            rig.log.iter().filter(|e| e.code == EventCode::CycleLengthChange).map(|e| e.param).collect();
        assert!(!cycles.is_empty(), "the optimizer changed the cycle");
        let splits_2: Vec<u16> =
            rig.log.iter().filter(|e| e.code == EventCode::split_change(1)).map(|e| e.param).collect();
        let splits_4: Vec<u16> =
            rig.log.iter().filter(|e| e.code == EventCode::split_change(3)).map(|e| e.param).collect();
        assert!(splits_2.last() > splits_4.last(), "main street split {splits_2:?} vs side {splits_4:?}");
    }

    /// Two adaptive intersections with different flows (so their optimizers
    /// want different cycles) given one corridor timing with different
    /// offsets: after the transition both run the common cycle, their cycle
    /// origins sit exactly on `reference + offset + k·cycle` (so exactly the
    /// offset difference apart), and no cycle on the way changed by more
    /// than `max_step` from the one before or from the common cycle.
    #[test]
    fn corridor_timing_puts_adaptive_cycle_origins_exactly_offset_apart() {
        let cycle = Span::from_secs(120);
        let reference = Instant::from_millis(12_345);
        let offsets = [Span::ZERO, Span::from_millis(37_300)];
        let mut rigs = [Rig::new(), Rig::new()];
        for (rig, offset) in rigs.iter_mut().zip(offsets) {
            rig.c.handle_command(Instant::ZERO, Command::SelectPlan(4)).unwrap();
            let timing = CorridorTiming { cycle, offset, reference };
            rig.c.handle_command(Instant::ZERO, Command::Corridor(Some(timing))).unwrap();
        }
        let step = rigs[0].c.spec().adaptive.max_step;
        let mut lengths: [Vec<Span>; 2] = [vec![], vec![]];
        for t in 0..3600u64 {
            for (k, rig) in rigs.iter_mut().enumerate() {
                // One busy main street, one light: Webster differs.
                let main = t.is_multiple_of(if k == 0 { 2 } else { 9 });
                rig.detector(2, main);
                rig.detector(6, main);
                rig.detector(4, t % 20 == 0);
                rig.detector(8, t % 20 == 10);
                rig.run(1);
                // (From the first barrier, where plan 4 takes over.)
                if let Some((_, length)) = rig.c.adaptive_cycle()
                    && lengths[k].last() != Some(&length)
                {
                    lengths[k].push(length);
                }
            }
        }
        let wanted: Vec<Span> = rigs.iter().map(|r| r.c.optimizer().unwrap().wanted_cycle()).collect();
        assert_ne!(wanted[0], wanted[1], "the two optimizers want different cycles");
        for (k, rig) in rigs.iter().enumerate() {
            let (origin, length) = rig.c.adaptive_cycle().unwrap();
            assert_eq!(length, cycle, "intersection {k} runs the common cycle: {:?}", lengths[k]);
            let timing = rig.c.corridor().unwrap();
            assert_eq!(timing.lag(origin), Span::ZERO, "intersection {k}'s origin is on the corridor grid");
            for w in lengths[k].windows(2) {
                assert!(w[0].max(w[1]) - w[0].min(w[1]) <= step, "cycle {} → {}: more than a step", w[0], w[1]);
            }
        }
        let (a, b) = (rigs[0].c.adaptive_cycle().unwrap().0, rigs[1].c.adaptive_cycle().unwrap().0);
        let apart = Span::from_millis((b.as_millis() as i128 - a.as_millis() as i128).rem_euclid(120_000) as u64);
        assert_eq!(apart, offsets[1] - offsets[0], "origins exactly the offset difference apart");
        // Leaving the corridor: back to the optimizer's own cycle.
        rigs[1].c.handle_command(rigs[1].now, Command::Corridor(None)).unwrap();
        rigs[1].run(900);
        assert_ne!(rigs[1].c.adaptive_cycle().unwrap().1, cycle, "the light intersection shortens its cycle again");
    }

    /// A corridor cycle outside `[adaptive]` bounds, or below the sum of the
    /// minimum splits, is refused and changes nothing.
    #[test]
    fn corridor_cycle_that_cannot_fit_is_refused() {
        let mut spec = eight_phase();
        spec.adaptive.min_cycle = Span::from_secs(5);
        let (floor, upper) = Optimizer::cycle_limits(&spec, &spec.adaptive);
        assert!(floor > spec.adaptive.min_cycle, "the minimum splits ({floor}) are above min_cycle here");
        let mut c = Controller::new(spec, Instant::ZERO);
        let timing =
            |secs| Some(CorridorTiming { cycle: Span::from_secs(secs), offset: Span::ZERO, reference: Instant::ZERO });
        for secs in [floor.as_millis() / 1000 - 1, upper.as_millis() / 1000 + 1] {
            assert_eq!(
                c.handle_command(Instant::ZERO, Command::Corridor(timing(secs))),
                Err(CommandError::CorridorCycle { cycle: Span::from_secs(secs), lower: floor, upper }),
            );
            assert_eq!(c.corridor(), None);
        }
        c.handle_command(Instant::ZERO, Command::Corridor(timing(100))).unwrap();
        assert_eq!(c.corridor().map(|t| t.cycle), Some(Span::from_secs(100)));
    }

    #[test]
    fn free_adaptive_sets_maxima_from_the_flows() {
        let mut spec = eight_phase();
        spec.adaptive.style = AdaptiveStyle::Free;
        let mut rig = Rig::adaptive(spec);
        for t in 0..1200u64 {
            // Saturated main street, a trickle on the side street.
            rig.detector(2, true);
            rig.detector(6, true);
            rig.detector(4, t % 30 == 0);
            rig.detector(8, t % 30 == 15);
            rig.run(1);
        }
        let snap = rig.c.snapshot();
        assert!(snap.adaptive && snap.cycle_time.is_none(), "free-style adaptive runs without a cycle timer");
        assert!(rig.log.iter().any(|e| e.code == EventCode::split_change(1)), "maxima re-planned");
        // Side street green stays short: it gaps out (its queue clears).
        assert!(rig.log.iter().any(|e| e.code == EventCode::PhaseGapOut && e.param == 4));
    }

    /// With `max_floor = min_service` the re-planned green is the maximum
    /// even below max1: a side street that never gaps out is held to its
    /// share of the flows (shorter cycles), where the default floor lets it
    /// run to the engineer's max1. `max_headroom` scales that maximum up.
    #[test]
    fn free_adaptive_min_service_floor_cuts_maxima_below_max1() {
        let side_green = |floor: MaxFloor, headroom: f32| {
            let mut spec = eight_phase();
            spec.adaptive.style = AdaptiveStyle::Free;
            spec.adaptive.max_floor = floor;
            spec.adaptive.max_headroom = headroom;
            let mut rig = Rig::adaptive(spec);
            for t in 0..12_000u64 {
                // Main street: a vehicle every 2 s (1800 veh/h); side
                // street: one every 10 s (360 veh/h). Presence never gaps,
                // so every green runs to its maximum.
                rig.detector(2, t % 20 != 19);
                rig.detector(6, t % 20 != 19);
                rig.detector(4, t % 100 != 99);
                rig.detector(8, t % 100 != 99);
                rig.step();
            }
            let mut log = rig.log;
            log.retain(|e| e.at >= Instant::ZERO + Span::from_secs(600)); // after the plan settled
            longest_green(&log, 4)
        };
        let held = side_green(MaxFloor::EngineerMax, 1.0);
        let cut = side_green(MaxFloor::MinService, 1.0);
        assert!(held >= Span::from_secs(40), "default floor: max1 (40 s) at least, got {held}");
        assert!(cut < Span::from_secs(40), "min-service floor: below max1, got {cut}");
        assert!(cut >= Span::from_secs(7), "never below min green: {cut}");
        let roomy = side_green(MaxFloor::MinService, 1.5);
        assert!(
            roomy.as_millis() > cut.as_millis() * 6 / 5,
            "headroom 1.5 lifts the cut maximum: {roomy} against {cut}"
        );
        assert!(roomy <= Span::from_secs(55), "never above max2: {roomy}");
    }

    /// Longest green of phase `n` in the log, from begin green to its termination.
    fn longest_green(log: &[Event], n: u16) -> Span {
        let mut began = None;
        let mut longest = Span::ZERO;
        for e in log.iter().filter(|e| e.param == n) {
            match e.code {
                EventCode::PhaseBeginGreen => began = Some(e.at),
                EventCode::PhaseGreenTermination => {
                    if let Some(b) = began.take() {
                        longest = longest.max(e.at.since(b));
                    }
                }
                _ => {}
            }
        }
        longest
    }

    /// Free-style adaptive, per decision: a green whose advance loops keep
    /// counting arrivals (a queue the stop bar has not discharged) runs on
    /// past its maximum against a side street whose queue is shorter, but
    /// never past max2; without the arrivals it maxes out at its maximum,
    /// which the optimizer never sets below the engineer's max1.
    #[test]
    fn free_adaptive_holds_a_longer_queue_past_its_max_up_to_max2() {
        let run = |arrivals: bool| {
            let mut spec = eight_phase();
            spec.adaptive.style = AdaptiveStyle::Free;
            for (n, ch) in [(2usize, 20u8), (6, 21)] {
                let mut advance = spec.detectors[n - 1].clone();
                advance.channel = DetectorChannel::new(ch).unwrap();
                advance.placement = crate::core::spec::DetectorPlacement::Advance;
                spec.detectors.push(advance);
            }
            let mut rig = Rig::adaptive(spec);
            for t in 0..9000u64 {
                // Main street discharging: a vehicle across each stop bar
                // every second, 0.1 s apart (no gap-out); a steady side
                // street call.
                rig.detector(2, t % 10 != 9);
                rig.detector(6, t % 10 != 9);
                rig.detector(4, t % 200 < 20);
                rig.detector(20, arrivals && t % 20 < 5);
                rig.detector(21, arrivals && (t + 10) % 20 < 5);
                rig.step();
            }
            rig.log
        };
        let held = longest_green(&run(true), 2);
        let maxed = longest_green(&run(false), 2);
        assert!(held > maxed, "held {held}, at its maximum {maxed}");
        // max1 is 40 s and max2 55 s from the conflicting call; the green
        // began at most min green (a few s) before it.
        assert!(maxed >= Span::from_secs(40), "cut below the engineer's max1: {maxed}");
        assert!(held <= Span::from_secs(55 + 15), "past max2: {held}");
    }

    /// Schedule style: a main street whose advance loop sees a vehicle
    /// every 4 s (one short pulse each: the 3 s passage runs out between
    /// them) is held past its gap-out for the vehicles on their way, while
    /// a side-street call waits; free style gaps it out. Neither runs it
    /// past its maximum.
    #[test]
    fn schedule_style_holds_a_green_for_the_vehicles_it_sees_coming() {
        let run = |style| {
            let mut spec = eight_phase();
            spec.adaptive.style = style;
            let mut advance = spec.detectors[1].clone();
            advance.channel = DetectorChannel::new(20).unwrap();
            advance.placement = crate::core::spec::DetectorPlacement::Advance;
            advance.travel_time = Span::from_secs(6);
            spec.detectors.push(advance);
            let mut rig = Rig::adaptive(spec);
            for t in 0..6000u64 {
                rig.detector(20, t % 40 == 0);
                rig.detector(4, t % 300 < 5);
                rig.step();
            }
            rig.log
        };
        let free = longest_green(&run(AdaptiveStyle::Free), 2);
        let log = run(AdaptiveStyle::Schedule);
        let held = longest_green(&log, 2);
        assert!(held > free + Span::from_secs(10), "held {held}, free style {free}");
        // max1 is 40 s from the conflicting call.
        assert!(held <= Span::from_secs(40 + 30), "past its maximum: {held}");
        assert!(log.iter().any(|e| e.code == EventCode::PhaseBeginGreen && e.param == 4), "the side street is served");
    }

    /// The same rule on camera queues alone (no advance loops): the main
    /// street runs on past its maximum while the camera sees its queue at
    /// least as long as the side street's and it discharges; it maxes out
    /// when the side street's queue is longer, or when its own stands still
    /// (its stop bars occupied, nobody crossing: a blocked lane).
    #[test]
    fn free_adaptive_weighs_camera_queues_at_the_max() {
        let run = |side_queue: u16, moving: bool| {
            let mut spec = eight_phase();
            spec.adaptive.style = AdaptiveStyle::Free;
            // Short cycles: the re-planned maxima stay at max1 (40 s), so
            // only the pressure rule can run the main street to max2.
            spec.adaptive.min_cycle = Span::from_secs(40);
            spec.adaptive.max_cycle = Span::from_secs(60);
            let mut rig = Rig::adaptive(spec);
            // Cameras on the stop-bar channels of phases 2, 6 and 4.
            rig.input.queued = 1 << 1 | 1 << 5 | 1 << 3;
            rig.input.queue[1] = 12;
            rig.input.queue[5] = 12;
            rig.input.queue[3] = side_queue;
            for t in 0..9000u64 {
                rig.detector(2, !moving || t % 10 != 9);
                rig.detector(6, !moving || t % 10 != 9);
                rig.detector(4, t % 200 < 20);
                rig.step();
            }
            rig.log
        };
        let held = longest_green(&run(3, true), 2);
        let outweighed = longest_green(&run(20, true), 2);
        let blocked = longest_green(&run(3, false), 2);
        assert!(held > outweighed, "held {held} against a shorter queue, {outweighed} against a longer one");
        assert!(held > blocked, "held {held} while discharging, {blocked} while standing still");
        assert!(held <= Span::from_secs(55 + 15), "past max2: {held}");
    }

    #[test]
    fn pedestrian_gets_walk_and_clearance() {
        let mut rig = Rig::new();
        rig.run(20);
        rig.detector(14, true);
        rig.run(1);
        rig.detector(14, false);
        rig.run(60);
        let walk = rig.log.iter().find(|e| e.code == EventCode::PedBeginWalk && e.param == 4).expect("walk");
        let fdw = rig.log.iter().find(|e| e.code == EventCode::PedBeginClearance && e.param == 4).expect("fdw");
        assert_eq!((fdw.at - walk.at).as_millis(), 7000);
    }

    /// A leading pedestrian interval: walk starts with the vehicle head
    /// red (21 without 1), the vehicle green follows 3 s later (1), the
    /// walk still counts from its own start, and min green from the
    /// vehicle green.
    #[test]
    fn a_leading_walk_starts_before_the_vehicle_green() {
        let mut spec = eight_phase();
        let p4 = spec.phase_slot[PhaseId::new(4).unwrap().index()].unwrap() as usize;
        spec.phases[p4].timing.leading_walk = Span::from_secs(3);
        let mut rig = Rig::with_spec(spec);
        rig.run(20);
        rig.detector(14, true);
        rig.run(1);
        rig.detector(14, false);
        let four = |rig: &Rig| (rig.shows(4), rig.c.output().ped(PhaseId::new(4).unwrap()));
        while rig.c.output().ped(PhaseId::new(4).unwrap()) != PedIndication::Walk {
            rig.step();
        }
        assert_eq!(four(&rig), (Indication::Red, PedIndication::Walk));
        assert_eq!(rig.shows(2), Indication::Red, "the conflicting main street has cleared");
        rig.run(60);
        let at = |code| rig.log.iter().find(|e| e.code == code && e.param == 4).expect("logged").at;
        let walk = at(EventCode::PedBeginWalk);
        assert_eq!(at(EventCode::PhaseOn), walk);
        assert_eq!((at(EventCode::PhaseBeginGreen) - walk).as_millis(), 3000);
        assert_eq!((at(EventCode::PedBeginClearance) - walk).as_millis(), 7000);
        assert!((at(EventCode::PhaseMinComplete) - at(EventCode::PhaseBeginGreen)).as_millis() >= 7000);
    }

    /// Phase 4's clearance (22 to 23) after a press held `held_ms` on its
    /// accessible push button (channel 14), 20 s into a quiet intersection.
    fn clearance_after_press(held_ms: u64) -> u64 {
        let mut rig = Rig::new();
        rig.run(20);
        rig.detector(14, true);
        rig.run_ms(held_ms);
        rig.detector(14, false);
        rig.run(60);
        let at = |code| rig.log.iter().find(|e| e.code == code && e.param == 4).expect("logged").at;
        (at(EventCode::PedBeginSolidDontWalk) - at(EventCode::PedBeginClearance)).as_millis()
    }

    /// An accessible push button: a short press gets the 12 s clearance, a
    /// press held 2 s (the long press) the extended 18 s, whether it is
    /// held before the walk or into it; the heads say so while it runs.
    #[test]
    fn a_long_press_extends_the_pedestrian_clearance() {
        assert_eq!(clearance_after_press(500), 12_000);
        assert_eq!(clearance_after_press(2500), 18_000);
        // Held 12 s: the walk starts after 2's clearance, within the press.
        assert_eq!(clearance_after_press(12_000), 18_000);
        let mut rig = Rig::new();
        rig.run(20);
        rig.detector(14, true);
        rig.run(3);
        rig.detector(14, false);
        let p4 = PhaseId::new(4).unwrap();
        while rig.c.output().ped(p4) != PedIndication::FlashingDontWalk {
            rig.step();
        }
        assert!(rig.c.output().ped_extended.contains(p4), "granted extension shown");
        rig.run(20);
        assert!(!rig.c.output().ped_extended.contains(p4), "cleared with the clearance");
    }

    /// Phase 4's pedestrian clearance (12 s) as the countdown shows it,
    /// one value a tick, from its first frame to its last; the cabinet
    /// confirms each frame one tick after it was written, at the time it
    /// was written, except the clearance's first `withheld` frames, whose
    /// confirmations are lost. Also: the ticks from the first frame to the
    /// end of the clearance.
    fn countdowns(withheld: usize) -> (Vec<u16>, usize) {
        let mut rig = Rig::new();
        rig.c.confirm_by_cabinet(true);
        let p4 = PhaseId::new(4).unwrap();
        let mut shown = Vec::new();
        let mut last = (0, Instant::ZERO);
        for tick in 0..1200 {
            if tick == 200 {
                rig.detector(14, true);
            }
            if tick == 205 {
                rig.detector(14, false);
            }
            let clearing = rig.c.output().ped(p4) == PedIndication::FlashingDontWalk;
            if !clearing || shown.len() > withheld {
                rig.input.ack = Some(FrameAck { frame: last.0, at: last.1 });
            }
            rig.step();
            last = (rig.c.frame(), rig.now);
            if rig.c.output().ped(p4) == PedIndication::FlashingDontWalk {
                shown.push(rig.c.output().countdown(p4).secs());
            } else {
                assert!(rig.c.output().countdown(p4).is_blank(), "a countdown outside the clearance");
                if !shown.is_empty() {
                    break;
                }
            }
        }
        let ticks = shown.len();
        (shown, ticks)
    }

    /// The countdown is blank until the cabinet confirms the clearance
    /// shows, then counts the seconds left from that confirmation, rounded
    /// up; a confirmation that comes late lengthens the clearance and the
    /// countdown with it (the rig's monitor checks every value against the
    /// clearance's end as it comes).
    #[test]
    fn the_countdown_counts_the_clearance_down_from_its_confirmation() {
        let (shown, ticks) = countdowns(0);
        // Written at t, confirmed at t a tick later: 12.0 s from t.
        assert_eq!(ticks, 120, "{shown:?}");
        assert_eq!(&shown[..3], &[0, 12, 12]);
        assert_eq!(shown.last(), Some(&1));
        assert!(shown[1..].windows(2).all(|w| w[0] >= w[1] && w[1] >= 1), "{shown:?}");
        // Its first 10 confirmations lost: blank until the first that came
        // (of its 11th frame, written 1 s in), and the clearance counted
        // from there.
        let (shown, ticks) = countdowns(10);
        assert_eq!(ticks, 130, "{shown:?}");
        assert!(shown[..11].iter().all(|&c| c == 0), "{shown:?}");
        assert_eq!(shown[11], 12);
    }

    /// The eight-phase controller with rest in walk and recycle on phase 2.
    fn resting_walk_on_2() -> (ControllerSpec, PhaseId) {
        let mut spec = eight_phase();
        let p2 = PhaseId::new(2).unwrap();
        let slot = spec.phase_slot[p2.index()].unwrap() as usize;
        spec.phases[slot].timing.rest_in_walk = true;
        spec.phases[slot].timing.ped_recycle = true;
        (spec, p2)
    }

    /// The accessible walk message sounds for the whole walk of a crossing
    /// that does not rest in walk, and for the first 7 s of one that does;
    /// the locator tone sounds on don't walk and clearance.
    #[test]
    fn the_accessible_walk_message_lasts_the_walk_or_its_first_seven_seconds_at_rest() {
        let (spec, p2) = resting_walk_on_2();
        let p4 = PhaseId::new(4).unwrap();
        let mut rig = Rig::with_spec(spec);
        rig.run(20);
        rig.detector(14, true);
        rig.run(1);
        rig.detector(14, false);
        let mut messages = 0;
        while rig.c.output().ped(p4) != PedIndication::FlashingDontWalk {
            rig.step();
            let out = rig.c.output();
            assert_eq!(out.accessible_walk.contains(p4), out.ped(p4) == PedIndication::Walk);
            assert_eq!(out.locator_tone().contains(p4), out.ped(p4) != PedIndication::Walk);
            messages += usize::from(out.accessible_walk.contains(p4));
        }
        assert_eq!(messages, 70, "the 7 s walk");
        assert!(rig.c.output().locator_tone().contains(p4));
        // Phase 2 rests in walk: a ped call recycles its walk, whose message
        // stops after 7 s while the walk stays on.
        rig.run(60);
        rig.detector(12, true);
        let mut messages = 0;
        for tick in 0..300 {
            if tick == 10 {
                rig.detector(12, false);
            }
            rig.step();
            messages += usize::from(rig.c.output().accessible_walk.contains(p2));
        }
        assert_eq!(rig.c.output().ped(p2), PedIndication::Walk, "resting in walk");
        assert_eq!(messages, 70);
    }

    /// Phase 2 with recycle and rest in walk: a press during its resting
    /// green brings the walk back at once, the walk stays on past its 7 s
    /// while nothing conflicting waits, and a side-street call ends it
    /// through its full clearance.
    #[test]
    fn a_resting_green_recycles_its_walk_and_rests_in_it() {
        let (spec, p2) = resting_walk_on_2();
        let mut rig = Rig::with_spec(spec);
        rig.run(30);
        assert_eq!((rig.shows(2), rig.c.output().ped(p2)), (Indication::Green, PedIndication::DontWalk));
        rig.detector(12, true);
        rig.run(1);
        rig.detector(12, false);
        assert_eq!(rig.c.output().ped(p2), PedIndication::Walk, "recycled in the green");
        rig.run(30);
        assert_eq!(rig.c.output().ped(p2), PedIndication::Walk, "rests in walk");
        rig.detector(4, true);
        rig.run(1);
        rig.detector(4, false);
        assert_eq!(rig.c.output().ped(p2), PedIndication::FlashingDontWalk);
        rig.run(30);
        assert!(rig.log.iter().any(|e| e.code == EventCode::PhaseBeginGreen && e.param == 4), "4 served");
        let walks = rig.log.iter().filter(|e| e.code == EventCode::PedBeginWalk && e.param == 2).count();
        assert_eq!(walks, 1);
    }

    #[test]
    fn preemption_reaches_its_dwell_phases_through_clearance_and_exits() {
        let mut rig = Rig::new();
        rig.run(20);
        assert_eq!(rig.shows(2), Indication::Green);
        rig.c.handle_command(rig.now, Command::Preempt { input: 1, active: true }).unwrap();
        rig.run(15);
        assert_eq!(rig.shows(4), Indication::Green, "dwell on 4");
        assert_eq!(rig.shows(8), Indication::Green, "dwell on 8");
        assert!(matches!(rig.c.snapshot().preempt, Some(PreemptSnapshot { input: 1, stage: PreemptStage::Dwell, .. })));
        // Holds and plans do not outrank it: it stays while called.
        rig.run(60);
        assert_eq!(rig.shows(4), Indication::Green);
        rig.c.handle_command(rig.now, Command::Preempt { input: 1, active: false }).unwrap();
        rig.run(30);
        assert!(rig.c.snapshot().preempt.is_none());
        assert!(rig.log.iter().any(|e| e.code == EventCode::PreemptBeginExitInterval));
        assert!(rig.log.iter().any(|e| e.code == EventCode::PreemptionForceOff && e.param == 2));
        assert_eq!(
            rig.c.handle_command(rig.now, Command::Preempt { input: 7, active: true }),
            Err(CommandError::UnknownPreempt(7))
        );
    }

    /// The textbook 8-phase intersection with a rail crossing on input 2
    /// (rank 1: track clearance on 4 and 8 for 10 s, then dwell on 2 and
    /// 6) over its fire station on input 1 (rank 2, dwell on 4 and 8).
    fn with_rail() -> ControllerSpec {
        let mut spec = eight_phase();
        let set = |ns: &[u8]| ns.iter().map(|&n| PhaseId::new(n).unwrap()).collect::<PhaseSet>();
        spec.preempts[0].priority = 2;
        let mut rail = spec.preempts[0].clone();
        rail.input = 2;
        rail.name = "rail".into();
        rail.priority = 1;
        rail.min_duration = Span::from_secs(5);
        rail.debounce = Span::from_millis(300);
        rail.track_clearance =
            Some(crate::core::spec::TrackClearance { phases: set(&[4, 8]), green: Span::from_secs(10) });
        rail.dwell = set(&[2, 6]);
        rail.exit = set(&[2, 6]);
        spec.preempts.push(rail);
        spec
    }

    fn preempt_events(log: &[Event]) -> Vec<(EventCode, u16)> {
        log.iter().filter(|e| (102..=111).contains(&e.code.code())).map(|e| (e.code, e.param)).collect()
    }

    /// Issue #18.1: the rail input, wired and debounced, takes over the
    /// fire station's dwell through full clearances: its track clearance
    /// (4 and 8 green, already, for its 10 s), then its dwell on 2 and 6;
    /// released, it exits and the fire station, still called, is served
    /// after it. Every step logged with its Indiana code; the monitor
    /// checks every frame.
    #[test]
    fn a_rail_preemption_takes_over_through_track_clearance_and_the_lower_one_is_served_after() {
        use EventCode::*;
        let mut rig = Rig::with_spec(with_rail());
        rig.run(20);
        rig.c.handle_command(rig.now, Command::Preempt { input: 1, active: true }).unwrap();
        rig.run(20);
        assert!(matches!(rig.c.snapshot().preempt, Some(PreemptSnapshot { input: 1, stage: PreemptStage::Dwell, .. })));
        // A 200 ms flicker of the gate contact is no call.
        rig.input.preempt = 0b10;
        rig.run_ms(200);
        rig.input.preempt = 0;
        rig.run(1);
        assert_eq!(rig.c.snapshot().preempt.map(|p| p.input), Some(1));
        rig.input.preempt = 0b10;
        rig.run(1);
        let entry = rig.now;
        assert!(matches!(
            rig.c.snapshot().preempt,
            Some(PreemptSnapshot { input: 2, stage: PreemptStage::TrackClearance, .. })
        ));
        rig.run(9);
        assert_eq!((rig.shows(4), rig.shows(8)), (Indication::Green, Indication::Green), "track clearance");
        rig.run(30);
        assert!(matches!(rig.c.snapshot().preempt, Some(PreemptSnapshot { input: 2, stage: PreemptStage::Dwell, .. })));
        assert_eq!((rig.shows(2), rig.shows(6)), (Indication::Green, Indication::Green), "dwell");
        let track = rig.log.iter().find(|e| e.code == PreemptBeginTrackClearance).unwrap().at;
        let end = rig.log.iter().find(|e| e.code == PhaseBeginYellowChange && e.param == 4 && e.at > track).unwrap();
        assert!(end.at.since(track) >= Span::from_secs(10) && track.since(entry) < Span::from_secs(1));
        rig.input.preempt = 0;
        rig.run(40);
        assert!(matches!(rig.c.snapshot().preempt, Some(PreemptSnapshot { input: 1, stage: PreemptStage::Dwell, .. })));
        assert_eq!(
            preempt_events(&rig.log),
            [
                (PreemptCallInputOn, 1),
                (PreemptEntryStarted, 1),
                (PreemptBeginDwell, 1),
                (PreemptCallInputOn, 2),
                (PreemptEntryStarted, 2),
                (PreemptBeginTrackClearance, 2),
                (PreemptBeginDwell, 2),
                (PreemptCallInputOff, 2),
                (PreemptBeginExitInterval, 2),
                (PreemptEntryStarted, 1),
                (PreemptBeginDwell, 1),
            ]
        );
    }

    /// Issue #18.1: a better ranked call with a delay takes over only when
    /// its delay has run from its call; until then the running preemption
    /// keeps the intersection (no return to normal operation between).
    #[test]
    fn a_better_call_takes_over_after_its_own_delay() {
        let mut spec = with_rail();
        spec.preempts[1].delay = Span::from_secs(5);
        let mut rig = Rig::with_spec(spec);
        rig.run(20);
        rig.c.handle_command(rig.now, Command::Preempt { input: 1, active: true }).unwrap();
        rig.run(20);
        rig.c.handle_command(rig.now, Command::Preempt { input: 2, active: true }).unwrap();
        rig.run(4);
        assert!(matches!(rig.c.snapshot().preempt, Some(PreemptSnapshot { input: 1, stage: PreemptStage::Dwell, .. })));
        rig.run(2);
        let taken = rig.c.snapshot().preempt.expect("preempted");
        assert_eq!((taken.input, taken.stage), (2, PreemptStage::TrackClearance));
    }

    /// Issue #18.1: a transit priority input wired for phase 4 checks in
    /// on its rising edge (112) and out on its falling edge (115), as the
    /// command does; an input for a phase the controller lacks is ignored.
    #[test]
    fn a_wired_transit_priority_input_checks_in_and_out_on_its_edges() {
        let mut rig = Rig::new();
        rig.run(20);
        let (p4, p12) = (PhaseId::new(4).unwrap(), PhaseId::new(12).unwrap());
        rig.input.priority = PhaseSet::single(p4).union(PhaseSet::single(p12));
        rig.run(1);
        assert_eq!(rig.c.snapshot().priority, PhaseSet::single(p4));
        rig.run(2);
        rig.input.priority = PhaseSet::EMPTY;
        rig.run(1);
        let tsp: Vec<_> = rig
            .log
            .iter()
            .filter(|e| matches!(e.code, EventCode::TspCheckIn | EventCode::TspCheckOut))
            .map(|e| (e.code, e.param))
            .collect();
        assert_eq!(tsp, [(EventCode::TspCheckIn, 4), (EventCode::TspCheckOut, 4)]);
    }

    /// Issue #18.1: a rail input stuck on past its maximum presence is
    /// released (exit) and faulted once (110); it calls again only after
    /// going off.
    #[test]
    fn a_stuck_preemption_input_is_released_and_faulted() {
        use EventCode::*;
        let mut spec = with_rail();
        spec.preempts[1].max_presence = Some(Span::from_secs(120));
        let mut rig = Rig::with_spec(spec);
        rig.run(20);
        rig.input.preempt = 0b10;
        rig.run(300);
        assert!(rig.c.snapshot().preempt.is_none(), "released");
        let faults: Vec<_> = rig.log.iter().filter(|e| e.code == PreemptMaxPresenceExceeded).map(|e| e.param).collect();
        assert_eq!(faults, [2]);
        assert!(rig.log.iter().any(|e| e.code == PreemptBeginExitInterval && e.param == 2));
        rig.input.preempt = 0;
        rig.run(2);
        rig.input.preempt = 0b10;
        rig.run(2);
        assert_eq!(rig.c.snapshot().preempt.map(|p| p.input), Some(2), "a new call after the input went off");
        assert_eq!(preempt_events(&rig.log).iter().filter(|(c, _)| *c == PreemptCallInputOn).count(), 2);
    }

    /// Issue #18.4: entering, a preemption with `ped_truncation` cuts a
    /// walk it ends to its truncated walk (4 s of phase 4's 7), and the
    /// pedestrian clearance stays whole (12 s); the monitor, told of the
    /// truncation by the spec, accepts it.
    #[test]
    fn preemption_entry_cuts_a_walk_to_its_truncated_walk_and_keeps_the_clearance() {
        let mut spec = eight_phase();
        let set = |ns: &[u8]| ns.iter().map(|&n| PhaseId::new(n).unwrap()).collect::<PhaseSet>();
        spec.preempts[0].dwell = set(&[2, 6]);
        spec.preempts[0].exit = set(&[2, 6]);
        spec.preempts[0].truncated_walk = Some(Span::from_secs(4));
        let mut rig = Rig::with_spec(spec);
        rig.run(20);
        rig.detector(14, true);
        rig.run(1);
        rig.detector(14, false);
        let began_walk =
            |log: &[Event]| log.iter().find(|e| e.code == EventCode::PedBeginWalk && e.param == 4).map(|e| e.at);
        while began_walk(&rig.log).is_none() {
            rig.step();
        }
        let walk = began_walk(&rig.log).expect("walk");
        rig.run(1);
        rig.c.handle_command(rig.now, Command::Preempt { input: 1, active: true }).unwrap();
        rig.run(40);
        let fdw = rig.log.iter().find(|e| e.code == EventCode::PedBeginClearance && e.param == 4).expect("fdw").at;
        let dw = rig.log.iter().find(|e| e.code == EventCode::PedBeginSolidDontWalk && e.param == 4).expect("dw").at;
        assert_eq!(fdw.since(walk), Span::from_secs(4), "walk cut to 4 s");
        assert_eq!(dw.since(fdw), Span::from_secs(12), "clearance whole");
    }

    /// Issue #15.4: on every plan type, the exit phases are the first
    /// greens after a preemption is let go, as soon as the dwell greens
    /// have shown their full yellow and red clearance: the release is
    /// acted on at the next tick, the dwell greens (long past their
    /// minimums, no walk) end there, and their clearance is the only wait,
    /// so the bound is one tick plus the longest dwell clearance. Every
    /// phase is called throughout (lead lefts too, which the ring sequence
    /// would serve before the throughs), the release falls at many points
    /// of the cycle (closed windows included), and the monitor checks
    /// every frame. A cycle plan then comes back into step.
    #[test]
    fn exit_phases_are_served_first_after_a_preemption_on_every_plan_type() {
        let set = |ns: &[u8]| ns.iter().map(|&n| PhaseId::new(n).unwrap()).collect::<PhaseSet>();
        // (plan, free-style adaptive), then (dwell, exit): the test spec's
        // and the shipped Broadway file's way round.
        let plans = [(1, false), (2, false), (3, false), (4, false), (4, true)];
        let preempts = [(set(&[4, 8]), set(&[2, 6])), (set(&[2, 6]), set(&[4, 8]))];
        for (plan, free_style) in plans {
            for (dwell, exit) in preempts {
                for release_at in (0..100u64).step_by(13) {
                    let mut spec = eight_phase();
                    if free_style {
                        spec.adaptive.style = AdaptiveStyle::Free;
                    }
                    spec.preempts[0].dwell = dwell;
                    spec.preempts[0].exit = exit;
                    let clearance = dwell.iter().map(|p| spec.phase(p).unwrap().timing.clearance()).max().unwrap();
                    let mut rig = Rig::with_spec(spec);
                    rig.c.handle_command(Instant::ZERO, Command::SelectPlan(plan)).unwrap();
                    for ch in 1..=8 {
                        rig.detector(ch, true);
                    }
                    rig.run(150);
                    let what = format!("plan {plan} (free style {free_style}), dwell {dwell}, release at {release_at}");
                    rig.c.handle_command(rig.now, Command::Preempt { input: 1, active: true }).unwrap();
                    rig.run(60 + release_at);
                    let dwelling = rig.c.snapshot().preempt.expect("preempted");
                    assert_eq!(dwelling.stage, PreemptStage::Dwell, "{what}");
                    assert_ne!(rig.c.snapshot().coordination, Coordination::InStep, "{what}: preempted");
                    rig.c.handle_command(rig.now, Command::Preempt { input: 1, active: false }).unwrap();
                    let released = rig.now;
                    rig.step();
                    let exiting = rig.c.snapshot().preempt.expect("exiting");
                    assert_eq!((exiting.stage, exiting.called), (PreemptStage::Exit, false), "{what}");
                    rig.run(300);
                    let first: Vec<&Event> = rig
                        .log
                        .iter()
                        .filter(|e| e.code == EventCode::PhaseBeginGreen && e.at > released)
                        .take(exit.len() as usize)
                        .collect();
                    let served: PhaseSet = first.iter().map(|e| PhaseId::new(e.param as u8).unwrap()).collect();
                    assert_eq!(served, exit, "{what}: first greens after the release {first:?}");
                    for e in &first {
                        assert!(e.at.since(released) <= TICK + clearance, "{what}: {e:?}, {clearance} clearance");
                    }
                    let snap = rig.c.snapshot();
                    assert!(snap.preempt.is_none(), "{what}");
                    let expected = if snap.cycle_time.is_some() { Coordination::InStep } else { Coordination::Free };
                    assert_eq!(snap.coordination, expected, "{what}: back in step within 300 s");
                }
            }
        }
    }

    /// An exit cut short by a fault flash waits through it, and is owed
    /// only what the definition in force names: one loaded meanwhile
    /// without those exit phases ends it, and normal service resumes.
    #[test]
    fn an_exit_waiting_through_a_flash_follows_the_definition_loaded_meanwhile() {
        let mut rig = Rig::new();
        rig.run(20);
        rig.c.handle_command(rig.now, Command::Preempt { input: 1, active: true }).unwrap();
        rig.run(30);
        rig.c.handle_command(rig.now, Command::Preempt { input: 1, active: false }).unwrap();
        rig.step();
        rig.c.enter_flash(rig.now, FlashReason::CabinetLinkLost);
        rig.run(5);
        assert_eq!(rig.c.snapshot().preempt.map(|p| p.stage), Some(PreemptStage::Exit), "waits through the flash");
        let mut spec = eight_phase();
        spec.version = 2;
        spec.preempts[0].exit = spec.preempts[0].dwell;
        rig.c.handle_command(rig.now, Command::LoadSpec(Box::new(spec))).unwrap();
        rig.step();
        assert!(rig.c.snapshot().preempt.is_none(), "nothing owed under the new definition");
        rig.c.handle_command(rig.now, Command::Restart).unwrap();
        let restarted = rig.now;
        rig.detector(3, true);
        rig.run(60);
        let served = rig.log.iter().any(|e| e.code == EventCode::PhaseBeginGreen && e.param == 3 && e.at > restarted);
        assert!(served, "phase 3 served after the restart");
    }

    /// A preemption called again during its exit starts over: the exit
    /// phases it was owed give way to the new entry and dwell.
    #[test]
    fn a_preemption_called_again_during_its_exit_dwells_again() {
        let mut rig = Rig::new();
        rig.run(20);
        let preempt = |active| Command::Preempt { input: 1, active };
        rig.c.handle_command(rig.now, preempt(true)).unwrap();
        rig.run(30);
        rig.c.handle_command(rig.now, preempt(false)).unwrap();
        rig.step();
        assert_eq!(rig.c.snapshot().preempt.map(|p| p.stage), Some(PreemptStage::Exit));
        rig.c.handle_command(rig.now, preempt(true)).unwrap();
        let recalled = rig.now;
        rig.run(15);
        let p = rig.c.snapshot().preempt.expect("preempted again");
        assert_eq!((p.stage, p.called, p.called_at), (PreemptStage::Dwell, true, recalled));
        assert_eq!((rig.shows(4), rig.shows(8), rig.shows(2)), (Indication::Green, Indication::Green, Indication::Red));
    }

    /// A bus checked in on the green phase holds it past its max (up to
    /// the extension): logged once as an extend-green adjustment (114) at
    /// the moment it would have maxed out, and not at all for a green that
    /// ends on its own first.
    #[test]
    fn transit_priority_extends_a_green_past_its_max_and_says_so_once() {
        let mut rig = Rig::new();
        rig.run(10);
        rig.detector(2, true); // keeps 2 extending towards its max
        rig.detector(4, true); // a conflicting call starts the max timer
        let p2 = PhaseId::new(2).unwrap();
        rig.c.handle_command(rig.now, Command::Priority { phase: p2, active: true }).unwrap();
        rig.run(70);
        let check = rig.log.iter().find(|e| e.code == EventCode::PhaseCheck && e.param == 2).expect("max timer").at;
        let extended: Vec<_> =
            rig.log.iter().filter(|e| e.code == EventCode::TspAdjustExtendGreen && e.param == 2).collect();
        assert_eq!(extended.len(), 1, "{extended:?}");
        // Phase 2's max1 is 40 s: where it would have maxed out.
        let at = extended[0].at.since(check);
        assert!(
            at >= Span::from_secs(40) && at <= Span::from_millis(40_200),
            "extended {at} after the max timer began"
        );
        let maxed = rig.log.iter().find(|e| e.code == EventCode::PhaseMaxOut && e.param == 2).expect("maxed out later");
        assert!(maxed.at.since(extended[0].at) >= Span::from_secs(10), "held for the 10 s extension");
    }

    #[test]
    fn transit_priority_ends_a_conflicting_green_early_and_checks_out() {
        let mut rig = Rig::new();
        rig.run(10);
        rig.detector(2, true); // keeps 2 extending towards its max
        rig.detector(6, true);
        rig.run(12);
        let p4 = PhaseId::new(4).unwrap();
        rig.c.handle_command(rig.now, Command::Priority { phase: p4, active: true }).unwrap();
        rig.run(20);
        let early =
            rig.log.iter().find(|e| e.code == EventCode::TspEarlyForceOff && e.param == 2).expect("early force-off");
        let green4 = rig.log.iter().find(|e| e.code == EventCode::PhaseBeginGreen && e.param == 4).expect("4 served");
        assert!(green4.at > early.at);
        // Both rings' conflicting greens ended for it: one early green.
        let adjusted: Vec<_> = rig.log.iter().filter(|e| e.code == EventCode::TspAdjustEarlyGreen).collect();
        assert_eq!(adjusted.len(), 1, "{adjusted:?}");
        assert_eq!((adjusted[0].param, adjusted[0].at), (4, early.at));
        rig.detector(2, false);
        rig.detector(6, false);
        rig.run(60);
        assert!(rig.log.iter().any(|e| e.code == EventCode::TspCheckOut && e.param == 4));
        assert!(rig.c.snapshot().priority.is_empty());
    }

    #[test]
    fn a_plan_new_in_a_staged_spec_can_be_selected_with_it() {
        let mut rig = Rig::new();
        rig.run(20);
        let mut spec = eight_phase();
        let mut extra = spec.plan(2).unwrap().clone();
        extra.number = 9;
        spec.plans.push(extra);
        assert_eq!(rig.c.handle_command(rig.now, Command::SelectPlan(9)), Err(CommandError::UnknownPlan(9)));
        rig.c.handle_command(rig.now, Command::LoadSpec(Box::new(spec))).unwrap();
        rig.c.handle_command(rig.now, Command::SelectPlan(9)).unwrap();
        rig.detector(4, true);
        rig.run(60);
        assert_eq!(rig.c.snapshot().plan, 9);
    }

    #[test]
    fn a_mode_is_judged_with_the_plan_selected_for_the_same_barrier() {
        let mut rig = Rig::new();
        assert_eq!(
            rig.c.handle_command(rig.now, Command::SetMode(OperatingMode::Fixed)),
            Err(CommandError::PlanHasNoCycle { plan: 1, mode: OperatingMode::Fixed }),
            "plan 1 is free"
        );
        rig.c.handle_command(rig.now, Command::SelectPlan(2)).unwrap();
        rig.c.handle_command(rig.now, Command::SetMode(OperatingMode::Fixed)).unwrap();
        rig.run(60);
        let s = rig.c.snapshot();
        assert_eq!((s.plan, s.plan_mode), (2, PlanMode::Fixed));
    }

    #[test]
    fn a_flash_is_never_relabelled_by_a_lesser_cause() {
        let mut rig = Rig::new();
        rig.run(20);
        rig.c.enter_flash(rig.now, FlashReason::MonitorTrip);
        // The link drops while the trip is latched: still a trip, and the
        // link coming back does not restart it.
        rig.c.enter_flash(rig.now, FlashReason::CabinetLinkLost);
        assert!(matches!(rig.c.unit(), UnitState::Flash { reason: FlashReason::MonitorTrip, .. }));
        rig.c.enter_flash(rig.now, FlashReason::Shutdown);
        assert!(matches!(rig.c.unit(), UnitState::Flash { reason: FlashReason::Shutdown, .. }), "shutdown is final");
        let order = [
            FlashReason::Startup,
            FlashReason::Operator,
            FlashReason::Overrun,
            FlashReason::CabinetLinkLost,
            FlashReason::ConfigInvalid,
            FlashReason::SecondMaster,
            FlashReason::ManualSwitch,
            FlashReason::CabinetMonitor,
            FlashReason::MonitorTrip,
            FlashReason::Shutdown,
        ];
        assert!(order.windows(2).all(|w| w[0].precedence() < w[1].precedence()));
    }

    #[test]
    fn operator_flash_goes_through_clearance_and_back() {
        let mut rig = Rig::new();
        rig.run(20);
        rig.c.handle_command(rig.now, Command::SetMode(OperatingMode::Flash)).unwrap();
        rig.run(30);
        assert!(matches!(rig.c.unit(), UnitState::Flash { reason: FlashReason::Operator, .. }));
        rig.c.handle_command(rig.now, Command::SetMode(OperatingMode::Scheduled)).unwrap();
        rig.run(5);
        assert_eq!(rig.c.unit(), UnitState::Run);
    }

    /// Phase 1 (the SB left, its max raised to 40 s) with conditional
    /// service at minimum `min` (`None`: off) on the free plan, after
    /// start-up (2 and 6 green at 6 s): a call on the side street 4 and on
    /// 1 at 7.1 s, 6's detector held on (it runs to its 40 s max, at
    /// 47.1 s), 2's clear (it gaps out at its 8 s minimum, at 14 s).
    /// `before`: what to do to the rig before the calls.
    fn conditional_run(min: Option<Span>, before: impl FnOnce(&mut Rig)) -> Rig {
        let mut spec = eight_phase();
        spec.phases[0].timing.conditional_service = min;
        spec.phases[0].timing.max1 = Span::from_secs(40);
        let mut rig = Rig::with_spec(spec);
        rig.run(7);
        assert_eq!((rig.shows(2), rig.shows(6)), (Indication::Green, Indication::Green), "start-up");
        before(&mut rig);
        rig.detector(6, true);
        for ch in [1, 4] {
            rig.detector(ch, true);
        }
        rig.step();
        for ch in [1, 4] {
            rig.detector(ch, false);
        }
        rig.run(60);
        rig
    }

    /// Coordinated plan 2 (100 s; 3 and 4 split 15/30 s beside 7 and 8)
    /// with conditional service on 3 at minimum `min`: 8's detector held
    /// on (it runs to its force-off), 3 called whenever 4 is green, 4
    /// extended only while 3 is green (it gaps out at its minimum).
    fn coordinated_run(min: Option<Span>) -> Rig {
        let mut spec = eight_phase();
        spec.phases[2].timing.conditional_service = min;
        let mut rig = Rig::with_spec(spec);
        rig.c.handle_command(Instant::ZERO, Command::SelectPlan(2)).unwrap();
        rig.detector(8, true);
        for _ in 0..6000 {
            // 3 called whenever 4 is green.
            let four = rig.c.snapshot().rings[0].phase == PhaseId::new(4);
            rig.detector(3, four && rig.shows(4) == Indication::Green);
            rig.detector(4, rig.shows(3) == Indication::Green);
            rig.step();
        }
        rig
    }

    fn at(log: &[Event], code: EventCode, n: u16) -> Vec<Instant> {
        log.iter().filter(|e| e.code == code && e.param == n).map(|e| e.at).collect()
    }

    /// The classic case: 2 gaps out while 6 runs on to its max; ring 1
    /// serves its left 1 again before the barrier, forced off so that its
    /// clearance ends as 6 maxes out. The barrier, and the side street's
    /// green, come exactly when they would have without it.
    #[test]
    fn conditional_service_re_serves_the_left_while_the_other_ring_runs_on() {
        let with = conditional_run(Some(Span::from_secs(9)), |_| {});
        let without = conditional_run(None, |_| {});
        let greens = |rig: &Rig, n| at(&rig.log, EventCode::PhaseBeginGreen, n);
        let side = |rig: &Rig| greens(rig, 4)[0];
        let before_side = |rig: &Rig, n| greens(rig, n).into_iter().filter(|t| *t < side(rig)).collect::<Vec<_>>();
        assert_eq!(before_side(&without, 1), vec![], "without it, 1 waits for the next cycle");
        let gap_out = at(&with.log, EventCode::PhaseGapOut, 2)[0];
        let (yellow_2, red_2) = (Span::from_secs(4), Span::from_millis(1500));
        assert_eq!(before_side(&with, 1), vec![gap_out + yellow_2 + red_2], "1 follows 2's clearance, once");
        let max_out_6 = at(&with.log, EventCode::PhaseMaxOut, 6)[0];
        assert_eq!(max_out_6, at(&without.log, EventCode::PhaseMaxOut, 6)[0], "6 times as it would have");
        // 1 rests beside 6 (simultaneous gap-out) until forced off so that
        // its yellow and red clearance (3.5 + 1.5 s) end as 6 maxes out.
        let forced = at(&with.log, EventCode::PhaseForceOff, 1);
        assert_eq!(forced, vec![Instant::from_millis(max_out_6.as_millis() - 5000)]);
        assert_eq!(at(&with.log, EventCode::PhaseEndRedClearance, 1), vec![max_out_6]);
        assert_eq!(side(&with), side(&without), "the barrier is crossed when it would have been");
        assert_eq!(before_side(&with, 2).len(), 1, "2 is not served again after the re-service");
    }

    /// The re-service needs the time: 1's minimum service and clearance
    /// and its configured minimum after 2's clearance, before 6 maxes out.
    /// As 2 gaps out (14 s) 6 has 47.1 - 14 = 33.1 s left, less 2's 5.5 s
    /// clearance: 27.6 s.
    #[test]
    fn conditional_service_starts_only_where_it_fits_before_the_other_rings_max() {
        let served = |min: u64| {
            let rig = conditional_run(Some(Span::from_secs(min)), |_| {});
            let side = at(&rig.log, EventCode::PhaseBeginGreen, 4)[0];
            at(&rig.log, EventCode::PhaseBeginGreen, 1).into_iter().filter(|t| *t < side).count()
        };
        assert_eq!(served(27), 1);
        assert_eq!(served(28), 0, "28 s do not fit in 27.6 s");
        // 6's max timer started with a call on 3 at 7.1 s; 2 gaps out with
        // nothing to serve and rests beside 6; 1 is called 30 s later, when
        // 6 has 47.1 - 37.2 = 9.9 s left: less 2's clearance, 4.4 s, short
        // of 1's minimum service and clearance (9 s).
        let late = conditional_run(Some(Span::from_secs(9)), |rig| {
            rig.detector(3, true);
            rig.step();
            rig.detector(3, false);
            rig.run(30);
        });
        let side = at(&late.log, EventCode::PhaseBeginGreen, 3)[0];
        let early: Vec<Instant> =
            at(&late.log, EventCode::PhaseBeginGreen, 1).into_iter().filter(|t| *t < side).collect();
        assert_eq!(early, vec![], "no room before 6's max-out");
    }

    /// No call on 1, or 1 omitted: 2 rests in green beside 6 (simultaneous
    /// gap-out), and 1 is not served before the barrier.
    #[test]
    fn conditional_service_needs_a_call_and_never_serves_an_omitted_phase() {
        let p1 = PhaseSet::single(PhaseId::new(1).unwrap());
        let omitted = conditional_run(Some(Span::from_secs(9)), |rig| {
            rig.c.handle_command(rig.now, Command::Omit(p1)).unwrap();
        });
        assert_eq!(at(&omitted.log, EventCode::PhaseBeginGreen, 1), vec![]);
        let mut spec = eight_phase();
        spec.phases[0].timing.conditional_service = Some(Span::from_secs(9));
        let mut rig = Rig::with_spec(spec);
        rig.run(7);
        rig.detector(6, true);
        rig.detector(4, true);
        rig.run(60);
        assert_eq!(at(&rig.log, EventCode::PhaseBeginGreen, 1), vec![], "no call on 1");
        let max_out = at(&rig.log, EventCode::PhaseMaxOut, 6)[0];
        assert_eq!(at(&rig.log, EventCode::PhaseBeginYellowChange, 2)[0], max_out, "2 rests beside 6");
    }

    /// Coordinated: 4 gaps out at its minimum while 8 runs to its
    /// force-off (94.5 s into the cycle); 3, called meanwhile, is
    /// re-served, and its clearance ends by 8's force-off. The coordinated
    /// 2 and 6 begin exactly when they do without it. Where 3's minimum
    /// does not fit (4 gaps out 31.5 s before 8's force-off: 26 s after
    /// its clearance), 3 is not re-served.
    #[test]
    fn conditional_service_in_coordination_never_crosses_the_force_off() {
        // Re-services (a green of 3 after 4's in the group), each checked
        // to have cleared when 8 is forced off.
        let re_services = |rig: &Rig| {
            let (mut after_four, mut re_serving, mut count) = (false, false, 0);
            for e in &rig.log {
                match (e.code, e.param) {
                    (EventCode::BarrierTermination, _) => after_four = false,
                    (EventCode::PhaseBeginGreen, 4) => after_four = true,
                    (EventCode::PhaseBeginGreen, 3) if after_four => (re_serving, count) = (true, count + 1),
                    (EventCode::PhaseEndRedClearance, 3) => re_serving = false,
                    (EventCode::PhaseForceOff, 8) => assert!(!re_serving, "3 re-served at 8's force-off {}", e.at),
                    _ => {}
                }
            }
            count
        };
        let (with, without) = (coordinated_run(Some(Span::from_secs(9))), coordinated_run(None));
        assert!(re_services(&with) >= 5, "3 re-served in (nearly) each of 6 cycles: {}", re_services(&with));
        assert_eq!(re_services(&without), 0);
        assert_eq!(re_services(&coordinated_run(Some(Span::from_secs(27)))), 0, "27 s do not fit");
        let begins = |rig: &Rig| at(&rig.log, EventCode::CoordPhaseBegin, 2);
        assert_eq!(begins(&with), begins(&without), "the coordinated phases begin on time");
    }

    /// The intervals the log has opened and not closed: green (1 until 7),
    /// yellow (8 until 9), red clearance (10 until 11), walk or pedestrian
    /// clearance (21 until 23 or 24), an overlap (61 until 65), a flashing
    /// yellow arrow (32 until 33).
    fn open_intervals(log: &[Event]) -> Vec<(EventCode, u16)> {
        use EventCode::*;
        let mut open: Vec<(EventCode, u16)> = Vec::new();
        for e in log {
            let (opens, closes): (Option<EventCode>, &[EventCode]) = match e.code {
                PhaseBeginGreen
                | PhaseBeginYellowChange
                | PhaseBeginRedClearance
                | PedBeginWalk
                | OverlapBeginGreen
                | FyaBeginPermissive => (Some(e.code), &[]),
                PhaseGreenTermination => (None, &[PhaseBeginGreen]),
                PhaseEndYellowChange => (None, &[PhaseBeginYellowChange]),
                PhaseEndRedClearance => (None, &[PhaseBeginRedClearance]),
                PedBeginSolidDontWalk | PedDark => (None, &[PedBeginWalk]),
                OverlapOff => (None, &[OverlapBeginGreen]),
                FyaEndPermissive => (None, &[FyaBeginPermissive]),
                _ => (None, &[]),
            };
            open.retain(|&(code, param)| !(param == e.param && closes.contains(&code)));
            open.extend(opens.map(|code| (code, e.param)));
        }
        open
    }

    /// However a flash cuts the cycle (green with a walk, pedestrian
    /// clearance, yellow, red clearance, an overlap green or in its
    /// clearance), every interval is closed in the log before the flash
    /// event, at the flash's instant.
    #[test]
    fn a_flash_closes_every_interval_it_cuts_in_the_event_log() {
        let mut spec = with_flashing_yellow_arrows(eight_phase());
        spec.overlaps.push(crate::core::spec::OverlapSpec {
            id: crate::core::ids::OverlapId::new(1).unwrap(),
            parents: PhaseSet::single(PhaseId::new(2).unwrap()),
            conflicts: spec.conflicts[PhaseId::new(2).unwrap().index()],
            kind: crate::core::spec::OverlapKind::Normal,
        });
        let mut closed_by = std::collections::BTreeSet::new();
        for cut in 0..120u64 {
            let mut rig = Rig::with_spec(spec.clone());
            // Every phase and crosswalk called, so the rings cycle.
            for ch in [1, 2, 3, 4, 5, 6, 7, 8, 12, 14, 16, 18] {
                rig.detector(ch, true);
            }
            rig.run(7);
            for _ in 0..cut * 7 {
                rig.step();
            }
            let at = rig.now;
            let reason = if cut % 2 == 0 { FlashReason::CabinetLinkLost } else { FlashReason::MonitorTrip };
            rig.c.enter_flash(at, reason);
            let cut_events = rig.log.len();
            while let Some(e) = rig.c.poll_event() {
                rig.log.push(e);
            }
            let flash = rig.log.iter().rposition(|e| e.code == EventCode::UnitFlashStatusChange).unwrap();
            assert_eq!(rig.log[flash], Event { at, code: EventCode::UnitFlashStatusChange, param: reason as u16 });
            assert_eq!(flash, rig.log.len() - 1, "the flash is logged after the intervals it closes");
            assert_eq!(open_intervals(&rig.log), vec![], "cut at {at}: {:?}", &rig.log[rig.log.len() - 12..]);
            closed_by.extend(rig.log[cut_events..].iter().map(|e| e.code.code()));
        }
        for code in [EventCode::PedDark, EventCode::PhaseGreenTermination, EventCode::PhaseEndYellowChange] {
            assert!(closed_by.contains(&code.code()), "no cut closed with {code:?}: {closed_by:?}");
        }
        for code in [
            EventCode::PhaseEndRedClearance,
            EventCode::PhaseInactive,
            EventCode::OverlapOff,
            EventCode::FyaEndPermissive,
        ] {
            assert!(closed_by.contains(&code.code()), "no cut closed with {code:?}: {closed_by:?}");
        }
    }

    #[test]
    fn an_omitted_phase_is_never_served_and_its_calls_are_ignored() {
        let p = |n: u8| PhaseId::new(n).unwrap();
        // The free plan omits the EB left 3; the operator then omits 4 as
        // well, and the coordinated plan cannot omit its phase 2.
        let mut spec = eight_phase();
        spec.plans[0].omit = PhaseSet::single(p(3));
        let mut rig = Rig::with_spec(spec);
        for ch in [1, 3, 4, 5, 7, 8] {
            rig.detector(ch, true);
        }
        rig.run(300);
        let greens = |log: &[Event], n: u8| {
            log.iter().filter(|e| e.code == EventCode::PhaseBeginGreen && e.param == n as u16).count()
        };
        assert_eq!(greens(&rig.log, 3), 0, "the plan's omit");
        assert!(greens(&rig.log, 4) > 2 && greens(&rig.log, 7) > 2, "the others cycle");
        assert!(rig.log.iter().any(|e| e.code == EventCode::PhaseOmitOn && e.param == 3));
        assert!(!rig.c.snapshot().vehicle_calls.contains(p(3)), "its call is dropped");
        rig.c.handle_command(rig.now, Command::Omit(PhaseSet::single(p(4)).union(PhaseSet::single(p(2))))).unwrap();
        rig.c.handle_command(rig.now, Command::SelectPlan(2)).unwrap();
        rig.c.handle_command(rig.now, Command::SetMode(OperatingMode::Coordinated)).unwrap();
        let from = rig.log.len();
        rig.run(200);
        let from = from + rig.log[from..].iter().position(|e| e.code == EventCode::CoordPatternChange).unwrap();
        rig.run(300);
        let after = &rig.log[from..];
        assert_eq!(greens(after, 4), 0, "the operator's omit");
        assert!(greens(after, 2) > 2, "coordinated 2 is served, omitted or not");
        assert!(greens(after, 3) > 2, "plan 2 does not omit 3");
        assert!(after.iter().any(|e| e.code == EventCode::PhaseOmitOff && e.param == 3));
        assert!(after.iter().all(|e| !(e.code == EventCode::PhaseOmitOn && e.param == 2)));
    }

    /// Overlap C's head (SB left 1, yielding to NB through 2), phases 1, 2
    /// and 6, tick by tick, with the lefts and 5th Ave called now and then.
    fn left_turn_heads(spec: ControllerSpec, ticks: u32) -> (Vec<[Indication; 4]>, Vec<Event>) {
        let mut rig = Rig::with_spec(spec);
        let c = crate::core::ids::OverlapId::from_letter('C').unwrap();
        let mut heads = Vec::new();
        for t in 0..ticks {
            // Lefts and 4 called for a second every 50 s, at different times.
            rig.detector(1, t % 500 < 10);
            rig.detector(5, (t + 150) % 500 < 10);
            rig.detector(4, (t + 300) % 500 < 10);
            rig.step();
            let out = rig.c.output();
            heads.push([out.overlap(c), rig.shows(1), rig.shows(2), rig.shows(6)]);
        }
        (heads, rig.log)
    }

    /// The distinct runs of overlap C's indication, in order.
    fn runs(heads: &[[Indication; 4]]) -> Vec<Indication> {
        let mut seq: Vec<Indication> = heads.iter().map(|h| h[0]).collect();
        seq.dedup();
        seq
    }

    #[test]
    fn a_flashing_yellow_arrow_runs_protected_then_permissive_and_ends_with_its_opposing_through() {
        use Indication::*;
        let (heads, log) = left_turn_heads(with_flashing_yellow_arrows(eight_phase()), 6000);
        let seq = runs(&heads);
        // Leading left: green arrow, yellow arrow, red arrow (1's red
        // clearance), then the flashing arrow with 2's green, ended by a
        // yellow arrow with 2's yellow.
        let cycle = [Green, Yellow, Red, FlashingYellow, Yellow, Red];
        assert!(seq.windows(6).any(|w| w == cycle), "{seq:?}");
        for (k, h) in heads.iter().enumerate() {
            let [arrow, left, through, _] = *h;
            match arrow {
                Green => assert_eq!(left, Green, "tick {k}: green arrow only with its left phase"),
                FlashingYellow => assert_eq!(through, Green, "tick {k}: flashing only with 2 green"),
                _ => {}
            }
            // The yellow trap: 2 shows yellow, the arrow never flashes.
            if k > 0 && heads[k - 1][0] == FlashingYellow && through != Green {
                assert_eq!(arrow, Yellow, "tick {k}: the flashing arrow ends through a steady yellow with 2");
            }
        }
        let count = |code| log.iter().filter(|e| e.code == code && e.param == 3).count();
        assert!(count(EventCode::FyaBeginPermissive) >= 2);
        assert!(count(EventCode::FyaBeginPermissive) - count(EventCode::FyaEndPermissive) <= 1);
    }

    #[test]
    fn a_lagging_left_never_leaves_its_turners_in_a_yellow_trap() {
        use Indication::*;
        // Ring 1 lags its left: 2 then 1, while 5 leads 6 in ring 2. When 2
        // ends, 6 runs on: the SB left's flashing arrow must end with 2.
        let mut spec = with_flashing_yellow_arrows(eight_phase());
        spec.rings[0].sequence = vec![PhaseId::new(2).unwrap(), PhaseId::new(1).unwrap()]
            .into_iter()
            .chain(spec.rings[0].sequence[2..].iter().copied())
            .collect();
        let (heads, _) = left_turn_heads(spec, 6000);
        let mut trapped_cases = 0;
        for w in heads.windows(2) {
            let ([was, ..], [arrow, _, through, opposite]) = (w[0], w[1]);
            if was == FlashingYellow && through == Yellow {
                assert_eq!(arrow, Yellow, "the flashing arrow ends as 2 ends");
                trapped_cases += usize::from(opposite == Green);
            }
        }
        assert!(trapped_cases > 0, "2 ended while 6 ran on (the yellow trap case) at least once");
        let seq = runs(&heads);
        assert!(seq.windows(4).any(|w| w == [FlashingYellow, Yellow, Red, Green]), "lagging protected: {seq:?}");
    }

    #[test]
    fn a_second_master_flashes_with_an_alarm_until_it_stops_then_starts_up() {
        let mut rig = Rig::new();
        rig.run(20);
        rig.input.cabinet.second_master = true;
        rig.step();
        assert!(matches!(rig.c.unit(), UnitState::Flash { reason: FlashReason::SecondMaster, .. }));
        let on = rig.log.iter().rposition(|e| e.code == EventCode::AlarmOn && e.param == ALARM_SECOND_MASTER);
        assert!(on.is_some(), "alarm 200/4");
        // Its writes unconfirmed, the engine sees a lost link: neither that
        // nor the link coming back (the engine's restart) ends it.
        rig.c.enter_flash(rig.now, FlashReason::CabinetLinkLost);
        rig.c.handle_command(rig.now, Command::Restart).unwrap();
        rig.run(10);
        assert!(matches!(rig.c.unit(), UnitState::Flash { reason: FlashReason::SecondMaster, .. }));
        let flashes = |log: &[Event]| log.iter().filter(|e| e.code == EventCode::UnitFlashStatusChange).count();
        assert_eq!(flashes(&rig.log[on.unwrap()..]), 1, "one flash event while it lasts");
        // The MMU trips meanwhile and lets go: labelled by what holds.
        rig.input.cabinet.mmu_fault = true;
        rig.step();
        assert!(matches!(rig.c.unit(), UnitState::Flash { reason: FlashReason::CabinetMonitor, .. }));
        rig.input.cabinet.mmu_fault = false;
        rig.step();
        assert!(matches!(rig.c.unit(), UnitState::Flash { reason: FlashReason::SecondMaster, .. }));
        assert_eq!(rig.log.last().map(|e| (e.code, e.param)), Some((EventCode::UnitFlashStatusChange, 10)));
        rig.input.cabinet.second_master = false;
        rig.step();
        assert!(rig.log.iter().any(|e| e.code == EventCode::AlarmOff && e.param == ALARM_SECOND_MASTER));
        assert!(matches!(rig.c.unit(), UnitState::Flash { reason: FlashReason::Startup, .. }));
        rig.run(10);
        assert_eq!(rig.c.unit(), UnitState::Run);
    }
}

#[cfg(test)]
mod fuzz {
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    use super::*;
    use crate::core::monitor::Monitor;
    use crate::core::testing::{eight_phase, with_flashing_yellow_arrows};

    /// Random detectors and commands against every plan: the monitor never
    /// trips and every call is served (half the seeds with flashing yellow
    /// arrow heads on the main-street lefts, half with conditional service
    /// on the leading lefts). The integration suite's property
    /// tests do this at scale over the shipped controllers.
    #[test]
    fn random_ticks_never_trip_the_monitor() {
        for seed in 0..12u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut spec = if seed % 2 == 0 { eight_phase() } else { with_flashing_yellow_arrows(eight_phase()) };
            spec.adaptive.style =
                [AdaptiveStyle::Cycle, AdaptiveStyle::Free, AdaptiveStyle::Schedule][seed as usize % 3];
            if seed % 3 == 0 {
                // Volume-density on every phase: added initial up to the
                // max, and a gap that shrinks to half.
                for ph in &mut spec.phases {
                    let t = &mut ph.timing;
                    t.density = crate::core::spec::VolumeDensity {
                        added_initial: Span::from_millis(1500),
                        max_initial: t.max1,
                        time_before_reduction: Span::from_secs(3),
                        time_to_reduce: Span::from_secs(6),
                        min_gap: Span::from_millis(t.passage.as_millis() / 2),
                    };
                }
            }
            if seed % 4 < 2 {
                // Conditional service on the leading lefts, at its least.
                for ph in spec.phases.iter_mut().filter(|ph| ph.id.number() % 2 == 1) {
                    ph.timing.conditional_service = Some(ph.timing.min_green + ph.timing.clearance());
                }
            }
            let mut m = Monitor::new(&spec);
            let mut c = Controller::new(spec, Instant::ZERO);
            let mut input = InputFrame::default();
            let mut now = Instant::ZERO;
            let mut waiting: [Option<Instant>; 16] = [None; 16];
            for tick in 0..40_000u32 {
                now += Span::from_millis(100);
                for ch in 0..18u32 {
                    if rng.random_ratio(1, 40) {
                        input.presence ^= 1 << ch;
                    }
                }
                if rng.random_ratio(1, 3000) {
                    let cmd = match rng.random_range(0..10) {
                        9 => Command::Omit(PhaseSet::from_bits(rng.random_range(0..0x100))),
                        8 => Command::Corridor(rng.random_bool(0.8).then(|| CorridorTiming {
                            cycle: Span::from_secs(rng.random_range(40..=160)),
                            offset: Span::from_millis(rng.random_range(0..160_000)),
                            reference: Instant::from_millis(rng.random_range(0..1_000_000)),
                        })),
                        6 => Command::Preempt { input: 1, active: rng.random_bool(0.5) },
                        7 => Command::Priority { phase: PhaseId::from_index(rng.random_range(0..8)), active: true },
                        0 => Command::SelectPlan(rng.random_range(1..=4)),
                        1 => Command::SetMode(OperatingMode::Flash),
                        2 => Command::SetMode(OperatingMode::Scheduled),
                        3 => Command::Hold(PhaseSet::from_bits(1 << rng.random_range(0..8))),
                        4 => Command::Release(PhaseSet::from_bits(0xff)),
                        _ => Command::SetMode(if rng.random_bool(0.5) {
                            OperatingMode::Actuated
                        } else {
                            OperatingMode::Adaptive
                        }),
                    };
                    let _ = c.handle_command(now, cmd);
                }
                c.handle_tick(now, &input);
                if let Err(f) = m.check(now, c.output()) {
                    panic!("seed {seed} tick {tick}: {f}\n{:#?}", c.snapshot());
                }
                let snap = c.snapshot();
                let undisturbed = snap.unit == UnitState::Run && snap.holds.is_empty() && snap.preempt.is_none();
                if undisturbed {
                    for p in snap.vehicle_calls.iter() {
                        let since = *waiting[p.index()].get_or_insert(now);
                        assert!(now.since(since) < Span::from_secs(400), "seed {seed}: phase {p} starved\n{snap:#?}");
                    }
                }
                for (i, w) in waiting.iter_mut().enumerate() {
                    if !snap.vehicle_calls.contains(PhaseId::from_index(i)) || !undisturbed {
                        *w = None;
                    }
                }
                while c.poll_event().is_some() {}
            }
        }
    }
}
