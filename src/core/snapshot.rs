//! A by-value picture of one controller, for operators, the terminal view
//! and tests. `Copy` and heap-free, so the engine can publish one every tick
//! through a preallocated channel.

use super::detector::DetectorFault;
use super::ids::{MAX_DETECTORS, MAX_PHASES, MAX_RINGS, PhaseId, PhaseSet};
use super::image::OutputFrame;
use super::spec::PlanMode;
use super::state::{Coordination, Interval, OperatingMode, PreemptStage, UnitState};
use super::time::{Instant, Span};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingSnapshot {
    pub phase: Option<PhaseId>,
    pub interval: Interval,
    /// Time in the current interval.
    pub elapsed: Span,
    /// Next phase decided at termination (during yellow and red clearance).
    pub next: Option<PhaseId>,
    /// Time the max timer has run, while green with a conflicting call.
    pub max_elapsed: Option<Span>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorSnapshot {
    pub channel: u8,
    /// Raw presence.
    pub presence: bool,
    /// Output after delay and extend.
    pub output: bool,
    pub fault: Option<DetectorFault>,
    /// Vehicles counted since start (wrapping).
    pub volume: u32,
    /// Presence time since start, for occupancy (wrapping).
    pub occupied_ms: u64,
}

/// The preemption in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreemptSnapshot {
    /// Preemption input, 1..=8.
    pub input: u8,
    pub stage: PreemptStage,
    /// When the current stage began.
    pub stage_since: Instant,
    /// When the input's call arrived.
    pub called_at: Instant,
    /// The input is still on (off during exit, or during a dwell held to
    /// its minimum duration).
    pub called: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub at: Instant,
    pub unit: UnitState,
    pub mode: OperatingMode,
    pub plan: u8,
    pub plan_mode: PlanMode,
    /// Zero in free mode.
    pub cycle: Span,
    /// Position in the coordination cycle, when coordinated or fixed.
    pub cycle_time: Option<Span>,
    /// Cycle zero's offset from the coordination reference: the plan's, or
    /// for an adaptive plan its corridor timing's (zero without one: its
    /// cycle runs from its own origin).
    pub offset: Span,
    pub coordination: Coordination,
    pub rings: [RingSnapshot; MAX_RINGS],
    pub ring_count: u8,
    pub present: PhaseSet,
    pub vehicle_calls: PhaseSet,
    pub ped_calls: PhaseSet,
    pub holds: PhaseSet,
    /// Phases whose calls are ignored: the plan's and the operator's omits,
    /// less the coordinated phases.
    pub omitted: PhaseSet,
    pub output: OutputFrame,
    /// Per detector, in the spec's order; `detector_count` are valid.
    pub detectors: [DetectorSnapshot; MAX_DETECTORS],
    pub detector_count: u8,
    pub events_dropped: u64,
    /// Version of the definition in force ([`super::ControllerSpec::version`]).
    pub config_version: u64,
    /// Version of a definition staged for the next barrier, if any.
    pub staged_version: Option<u64>,
    pub preempt: Option<PreemptSnapshot>,
    /// Phases with a transit priority request.
    pub priority: PhaseSet,
    /// The adaptive optimizer is re-planning this plan.
    pub adaptive: bool,
    /// Vehicles queued per phase (by index): a camera's measurement, else
    /// the loops' estimate; `None` where nothing measures it.
    pub queues: [Option<u16>; MAX_PHASES],
}
