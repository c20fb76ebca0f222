//! The real-time shell around the core.
//!
//! One dedicated OS thread owns every controller of the daemon (one per
//! intersection) and its safety monitor. Each tick, on an absolute deadline,
//! it drains commands and cabinet inputs from bounded crossbeam channels,
//! ticks each controller, checks its frame with the monitor, and publishes
//! outputs, events and snapshots with `try_send` (a full channel drops and
//! counts; it never blocks the loop). It takes no lock and allocates nothing
//! per tick (`tests/no_alloc.rs` proves it with a counting allocator).
//!
//! Deadlines are absolute (`next += tick`) and aligned to whole multiples of
//! the tick on the engine's clock (10:00:00.000, .100, .200 ... at 100 ms),
//! so cabinet I/O tasks know when the next tick runs without asking: they
//! read inputs just before it and write outputs just after. A late tick does
//! not shift the ones after it. Missed deadlines are not replayed in a burst: the loop
//! skips to the next future deadline and counts the overrun. A loop that is
//! late by more than `overrun_flash_after` puts every intersection in flash
//! (the outputs may have been stale for too long); they restart through the
//! start-up sequence once the loop keeps time again.

pub mod board;
pub mod clock;
pub mod corridor;
pub mod latency;
pub mod port;
pub mod time_of_day;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded};

use crate::core::schedule::Projection;
use crate::core::{
    Command, CommandError, Controller, ControllerSpec, Event, EventCode, FlashReason, InputFrame, Instant,
    MAX_DETECTORS, Monitor, OperatingMode, OutputFrame, PhaseId, Snapshot, Span, UnitState,
};
use crate::realtime::CONTROL_PRIORITY;
use clock::Clock;
use latency::{LatencyReader, LatencyRecorder, latency_pair};
use time_of_day::TimeOfDay;

/// The Indiana alarm parameter (event 200) for a wall-clock step: the
/// engine re-anchored the time of day on a corrected clock. (The cabinet's
/// are [`crate::core::ALARM_DOOR_OPEN`] and after, `docs/modbus.md`.)
pub const ALARM_WALL_CLOCK_STEP: u16 = 3;

/// How the engine runs (from `greenwave.toml`).
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Control period; NTCIP timers run in tenths, so 100 ms is the norm.
    pub tick: Span,
    /// No cabinet input for this long → flash (cabinet link lost).
    pub input_timeout: Span,
    /// Loop this late → flash (outputs were stale too long).
    pub overrun_flash_after: Span,
    /// Publish snapshots every this many ticks (1 = every tick).
    pub snapshot_every: u32,
    /// The time zone the time-of-day schedules are read in, where an
    /// intersection sets none ([`Engine::set_time_zone`]).
    pub time_zone: chrono_tz::Tz,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            tick: Span::from_millis(100),
            input_timeout: Span::from_millis(1000),
            overrun_flash_after: Span::from_millis(1000),
            snapshot_every: 1,
            time_zone: chrono_tz::UTC,
        }
    }
}

/// What other threads can ask of the engine. A command with a ticket is
/// answered on the outcome channel ([`Outcome`]) in the tick that handles
/// it; [`Ticket::NONE`] asks for no answer.
#[derive(Debug)]
pub enum EngineCommand {
    Controller {
        intersection: usize,
        command: Command,
        ticket: Ticket,
    },
    /// Operator reset of a latched monitor trip; the controller restarts
    /// through its start-up sequence.
    ResetMonitor {
        intersection: usize,
        ticket: Ticket,
    },
    /// Back to the time-of-day schedule: the plan it gives for now is
    /// asked for again at its next check (within a second), whatever was
    /// selected meanwhile. A centre's loss-of-control fallback (NTCIP
    /// `unitBackupTime`, src/ntcip).
    FollowSchedule {
        intersection: usize,
        ticket: Ticket,
    },
    /// A neighbour another daemon runs projects `projection` onto
    /// `phase` (already moved by the travel time; `src/daemon/neighbours.rs`).
    /// It reaches the planner [`corridor::DELIVERY`] after `sent`, the
    /// control time the neighbour sent it at.
    Arrivals {
        intersection: usize,
        phase: PhaseId,
        projection: Projection,
        sent: Instant,
    },
    /// Drive every intersection to flash, publish it, and stop.
    Shutdown,
}

/// A schedule-style intersection's projected outflow on a phase that
/// feeds a corridor member another daemon runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outflow {
    pub intersection: usize,
    pub phase: PhaseId,
    pub projection: Projection,
    /// The control time it was sent at (its neighbour uses it
    /// [`corridor::DELIVERY`] later).
    pub sent: Instant,
}

/// The number a command's [`Outcome`] comes back under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

impl Ticket {
    /// No answer wanted (the schedule, reloads).
    pub const NONE: Ticket = Ticket(0);
}

/// Why the engine refused a command: the controller's own checks, which
/// are the only ones (callers do not repeat them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Controller(#[from] CommandError),
    #[error("no latched monitor trip to reset")]
    NoMonitorTrip,
    #[error("no intersection with index {0} in this engine")]
    UnknownIntersection(usize),
}

/// The answer to a ticketed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ticket: Ticket,
    pub result: Result<(), Refusal>,
}

/// An output frame for one cabinet, with its number: the cabinet side tells
/// fresh frames from repeats by it, and confirms a written frame with it
/// ([`crate::core::FrameAck`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputMsg {
    /// The controller's frame number ([`Controller::frame`]).
    pub seq: u64,
    pub at: Instant,
    pub frame: OutputFrame,
    /// Why the intersection is in flash, `None` while it runs (start-up all
    /// red included): the cabinet's requested mode.
    pub flash: Option<FlashReason>,
}

/// Camera detections for one intersection (the gRPC Ingest service), by
/// detector channel (bit `n - 1` for channel `n`). The engine merges them
/// into the cabinet's frame every tick: presence is ORed, counts are added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CameraFrame {
    /// Channels this frame reports; the others keep their last camera state.
    pub channels: u64,
    /// Presence on the reported channels.
    pub presence: u64,
    /// Reported channels whose `counts` are their volume (the camera counts
    /// vehicles itself, so presence edges are not counted as well).
    pub counted: u64,
    /// Vehicles per channel since the camera's previous frame.
    pub counts: [u16; MAX_DETECTORS],
    /// Reported channels whose `queue` the camera measured.
    pub queued: u64,
    /// Vehicles standing in the zone now (a level, not a counter).
    pub queue: [u16; MAX_DETECTORS],
}

impl Default for CameraFrame {
    fn default() -> Self {
        CameraFrame {
            channels: 0,
            presence: 0,
            counted: 0,
            counts: [0; MAX_DETECTORS],
            queued: 0,
            queue: [0; MAX_DETECTORS],
        }
    }
}

/// A camera zone not reported for this long stops placing presence: a
/// stalled camera must not hold a call forever.
pub const CAMERA_STALE_AFTER: Span = Span::from_millis(2000);

/// The camera state of one intersection, merged into its input each tick.
#[derive(Clone, Copy, Debug)]
struct CameraInput {
    /// What the cameras last said: `channels` any camera has reported, each
    /// one's latest presence, queue and whether it counts; `counts` not yet
    /// handed to the controller.
    state: CameraFrame,
    /// When each channel was last reported.
    updated: [Instant; MAX_DETECTORS],
}

impl Default for CameraInput {
    fn default() -> Self {
        CameraInput { state: CameraFrame::default(), updated: [Instant::ZERO; MAX_DETECTORS] }
    }
}

impl CameraInput {
    fn update(&mut self, now: Instant, f: &CameraFrame) {
        let s = &mut self.state;
        let reported = |old: u64, new: u64| (old & !f.channels) | (new & f.channels);
        s.channels |= f.channels;
        s.presence = reported(s.presence, f.presence);
        s.counted = reported(s.counted, f.counted);
        s.queued = reported(s.queued, f.queued);
        for ch in 0..MAX_DETECTORS {
            if f.channels & (1 << ch) != 0 {
                self.updated[ch] = now;
                s.counts[ch] = s.counts[ch].saturating_add(f.counts[ch]);
                s.queue[ch] = f.queue[ch];
            }
        }
    }

    /// The cabinet's frame with the camera's detections merged in; the
    /// counts are consumed. Allocation-free (a copy of a fixed-size frame).
    fn merge(&mut self, now: Instant, cabinet: &InputFrame) -> InputFrame {
        let mut input = *cabinet;
        let s = &mut self.state;
        if s.channels == 0 {
            return input;
        }
        for ch in 0..MAX_DETECTORS {
            let bit = 1u64 << ch;
            if s.channels & bit == 0 {
                continue;
            }
            if now.since(self.updated[ch]) > CAMERA_STALE_AFTER {
                // A stalled camera's presence and queue are no longer true.
                s.presence &= !bit;
                s.queued &= !bit;
            }
            input.counts[ch] = input.counts[ch].saturating_add(std::mem::take(&mut s.counts[ch]));
            if s.queued & bit != 0 {
                input.queue[ch] = s.queue[ch];
            }
        }
        input.presence |= s.presence;
        input.counted |= s.counted;
        input.queued |= s.queued;
        input
    }
}

/// The time of day at control time `control`, with the wall clock
/// `wall_offset_ms` ahead of control time (see [`EngineStats::wall_offset_ms`]):
/// what schedules are read at.
pub fn time_of_day(control: Instant, wall_offset_ms: i64) -> Instant {
    Instant::from_millis(control.as_millis().saturating_add_signed(wall_offset_ms))
}

/// Counters shared with readers (atomics: no lock on either side).
#[derive(Debug, Default)]
pub struct EngineStats {
    pub ticks: AtomicU64,
    pub overruns: AtomicU64,
    pub dropped_events: AtomicU64,
    pub dropped_snapshots: AtomicU64,
    pub dropped_outputs: AtomicU64,
    pub monitor_trips: AtomicU64,
    /// Flashes entered, per reason ([`FlashReason::index`]): counted from
    /// each controller's flash events (173) as the engine drains them, so
    /// they agree with the event log.
    pub flashes: [AtomicU64; FlashReason::ALL.len()],
    /// Outcomes lost because nobody read them (should stay 0).
    pub dropped_outcomes: AtomicU64,
    /// Wall-clock steps the engine re-anchored on, and the wall clock's
    /// offset from control time after the latest (ms).
    pub wall_steps: AtomicU64,
    pub wall_offset_ms: AtomicI64,
    /// Neighbours' projections from other daemons that reached the control
    /// thread after their delivery time (used on arrival; should stay 0, or
    /// a lockstep run is not reproducible).
    pub late_projections: AtomicU64,
    pub running: AtomicBool,
}

/// The other ends of the engine's channels.
#[derive(Debug)]
pub struct EngineIo {
    pub commands: Sender<EngineCommand>,
    /// Answers to ticketed commands.
    pub outcomes: Receiver<Outcome>,
    /// Cabinet inputs: `(intersection, frame)`.
    pub inputs: Sender<(usize, InputFrame)>,
    /// Camera detections: `(intersection, frame)`, merged into the cabinet's.
    pub camera: Sender<(usize, CameraFrame)>,
    /// Per intersection, its output frames.
    pub outputs: Vec<Receiver<OutputMsg>>,
    pub snapshots: Receiver<(usize, Snapshot)>,
    pub events: Receiver<(usize, Event)>,
    /// Projected outflows towards corridor members other daemons run.
    pub outflows: Receiver<Outflow>,
    /// Specs replaced by reloads, to be dropped off the real-time thread.
    pub retired: Receiver<Box<ControllerSpec>>,
    pub latency: LatencyReader,
    pub stats: Arc<EngineStats>,
}

#[derive(Debug)]
struct Intersection {
    controller: Controller,
    monitor: Monitor,
    input: InputFrame,
    camera: CameraInput,
    last_input: Instant,
    /// The cabinet has sent an input since the engine started. Until then
    /// its link was never up, so none is lost: the intersection stays in
    /// its start-up flash (timed from the cabinet's confirmation once it
    /// answers), and a thousand cabinets connecting at once under load do
    /// not each flash for a lost link.
    heard: bool,
    /// The cabinet confirms what it applies ([`Engine::confirm_by_cabinet`]):
    /// the newest frame it confirmed, and when that confirmation came in.
    confirms: bool,
    acked_frame: u64,
    last_ack: Instant,
    /// No input for this long → flash (`EngineConfig::input_timeout` unless
    /// set per intersection).
    input_timeout: Span,
    outputs: Sender<OutputMsg>,
    time_of_day: TimeOfDay,
    /// Corridor neighbours' projections until their delivery time.
    deliveries: corridor::Deliveries,
}

/// The control loop's owned state. Build with [`Engine::new`], then either
/// [`Engine::spawn`] it on its own thread or drive [`Engine::tick`] directly
/// (tests, replay, benchmarks).
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    intersections: Vec<Intersection>,
    commands: Receiver<EngineCommand>,
    outcomes: Sender<Outcome>,
    inputs: Receiver<(usize, InputFrame)>,
    camera: Receiver<(usize, CameraFrame)>,
    snapshots: Sender<(usize, Snapshot)>,
    events: Sender<(usize, Event)>,
    retired: Sender<Box<ControllerSpec>>,
    latency: LatencyRecorder,
    stats: Arc<EngineStats>,
    seq: u64,
    /// Intersections flashed because the loop overran, to restart.
    overrun_flash: bool,
    shutdown: bool,
    /// `[[corridor]]`: common cycles and offsets for adaptive arterials.
    corridors: Vec<corridor::Corridor>,
    /// Towards the broker: outflows for corridor members elsewhere.
    outflows: Sender<Outflow>,
    /// Wall clock minus control time, ms: 0 until the wall clock steps.
    /// The time of day is read at `now + wall_offset_ms`.
    wall_offset_ms: i64,
    /// The second of control time the schedules were last read in.
    schedule_second: Option<u64>,
}

/// The first whole multiple of `tick` at or after `t`: where the engine's
/// deadlines fall (cabinet tasks use it to schedule their reads and writes).
pub fn align_up(t: Instant, tick: Span) -> Instant {
    let tick = tick.as_millis().max(1);
    Instant::from_millis(t.as_millis().div_ceil(tick) * tick)
}

/// What operators set that outlasts a restart (the API saves it beside the
/// controller file; the daemon restores it with
/// [`Engine::restore_operator`]). Instants are on the engine's clock, ms
/// since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperatorSettings {
    pub mode: Option<OperatingMode>,
    /// A plan selected, and when.
    pub selected: Option<(u8, Instant)>,
    /// Cycle zero of coordination, as SetCoordination set it.
    pub coordination_reference: Option<Instant>,
}

/// Events the engine can buffer towards the log and the API before dropping.
const EVENT_BUFFER: usize = 65_536;
/// Commands waiting for the next tick, and outcomes waiting to be read.
const COMMAND_BUFFER: usize = 1024;

impl Engine {
    pub fn new(specs: Vec<ControllerSpec>, cfg: EngineConfig, now: Instant) -> (Engine, EngineIo) {
        let n = specs.len().max(1);
        let (cmd_tx, cmd_rx) = bounded(COMMAND_BUFFER);
        let (outcome_tx, outcome_rx) = bounded(COMMAND_BUFFER);
        let (in_tx, in_rx) = bounded(n * 4);
        let (cam_tx, cam_rx) = bounded(n * 64);
        let (snap_tx, snap_rx) = bounded(n * 4);
        let (ev_tx, ev_rx) = bounded(EVENT_BUFFER);
        let (ret_tx, ret_rx) = bounded(n * 2);
        let (outflow_tx, outflow_rx) = bounded(n * 4);
        let (recorder, reader) = latency_pair();
        let mut outputs = Vec::with_capacity(specs.len());
        let intersections = specs
            .into_iter()
            .map(|spec| {
                let (out_tx, out_rx) = bounded(4);
                outputs.push(out_rx);
                Intersection {
                    monitor: Monitor::new(&spec),
                    controller: Controller::new(spec, now),
                    input: InputFrame::default(),
                    camera: CameraInput::default(),
                    last_input: now,
                    heard: false,
                    confirms: false,
                    acked_frame: 0,
                    last_ack: now,
                    input_timeout: cfg.input_timeout,
                    outputs: out_tx,
                    time_of_day: TimeOfDay::new(cfg.time_zone),
                    deliveries: corridor::Deliveries::default(),
                }
            })
            .collect();
        let stats = Arc::new(EngineStats::default());
        let engine = Engine {
            cfg,
            intersections,
            commands: cmd_rx,
            outcomes: outcome_tx,
            inputs: in_rx,
            camera: cam_rx,
            snapshots: snap_tx,
            events: ev_tx,
            retired: ret_tx,
            latency: recorder,
            stats: stats.clone(),
            seq: 0,
            overrun_flash: false,
            shutdown: false,
            corridors: Vec::new(),
            outflows: outflow_tx,
            wall_offset_ms: 0,
            schedule_second: None,
        };
        let io = EngineIo {
            commands: cmd_tx,
            outcomes: outcome_rx,
            inputs: in_tx,
            camera: cam_tx,
            outputs,
            snapshots: snap_rx,
            events: ev_rx,
            outflows: outflow_rx,
            retired: ret_rx,
            latency: reader,
            stats,
        };
        (engine, io)
    }

    pub fn controller(&self, intersection: usize) -> &Controller {
        &self.intersections[intersection].controller
    }

    /// Per-intersection input timeout (a cabinet's own link timeout);
    /// the engine-wide `input_timeout` applies where it is not set.
    pub fn set_input_timeout(&mut self, intersection: usize, timeout: Span) {
        if let Some(x) = self.intersections.get_mut(intersection) {
            x.input_timeout = timeout;
        }
    }

    /// The zone intersection `intersection`'s schedule is read in (its
    /// controller file's `time_zone`; the engine's otherwise).
    pub fn set_time_zone(&mut self, intersection: usize, zone: chrono_tz::Tz) {
        if let Some(x) = self.intersections.get_mut(intersection) {
            x.time_of_day = TimeOfDay::new(zone);
        }
    }

    /// What an operator last set, as saved (`crate::api::versions`), given
    /// back before the first tick at `now`. A plan selection lasts, as it
    /// does live, until the time-of-day schedule next changes plan: it is
    /// restored only when the schedule asks for the same plan at `now` as
    /// it did when the plan was selected, and that plan then counts as
    /// asked (so the schedule's first reading does not replace it).
    /// Returns whether the selection was restored.
    ///
    /// # Errors
    /// The controller refused the plan (no longer defined) or the mode (no
    /// cycle to run it with): what it refused is not restored.
    pub fn restore_operator(
        &mut self,
        intersection: usize,
        settings: &OperatorSettings,
        now: Instant,
    ) -> Result<bool, CommandError> {
        let Some(x) = self.intersections.get_mut(intersection) else { return Ok(false) };
        // Before the first tick: the control thread's no-allocation rule
        // does not apply yet.
        let schedule = x.controller.spec().schedule.clone();
        let wall = time_of_day(now, self.wall_offset_ms);
        let zone = x.time_of_day.zone();
        let asks_at = |t: Instant| schedule.plan_at(TimeOfDay::new(zone).civil(t));
        let restored = settings.selected.filter(|&(_, at)| asks_at(at) == asks_at(wall));
        if let Some((plan, _)) = restored {
            x.controller.handle_command(now, Command::SelectPlan(plan))?;
            x.time_of_day.due(&schedule, wall);
        }
        if let Some(reference) = settings.coordination_reference {
            x.controller.handle_command(now, Command::SetCoordinationReference(reference))?;
        }
        if let Some(mode) = settings.mode {
            x.controller.handle_command(now, Command::SetMode(mode))?;
        }
        Ok(restored.is_some())
    }

    /// Intersection `intersection`'s cabinet confirms the frames it applies
    /// ([`crate::core::InputFrame::ack`]): its controller times every
    /// minimum from those confirmations, and no confirmation for the link
    /// timeout is a lost link (flash), like no input.
    pub fn confirm_by_cabinet(&mut self, intersection: usize) {
        if let Some(x) = self.intersections.get_mut(intersection) {
            x.confirms = true;
            x.controller.confirm_by_cabinet(true);
        }
    }

    /// Coordinate `members` (engine indexes, in order along the arterial,
    /// phase 2 travelling from the first to the last) as a corridor with
    /// `travel[k]` from member `k` to `k + 1`. See [`corridor`].
    pub fn add_corridor(&mut self, name: String, members: Vec<Option<usize>>, travel: &[Span]) {
        if members.iter().flatten().any(|&i| i >= self.intersections.len()) || members.len() < 2 {
            tracing::warn!(corridor = %name, ?members, "corridor ignored: its members are not the engine's intersections");
            return;
        }
        self.corridors.push(corridor::Corridor::new(name, members, travel));
    }

    pub fn latency(&self) -> &LatencyRecorder {
        &self.latency
    }

    /// Whether a shutdown command has been handled.
    pub fn is_shut_down(&self) -> bool {
        self.shutdown
    }

    /// One control period at `now`: commands, inputs, every controller, its
    /// monitor, and publication. Allocation-free.
    pub fn tick(&mut self, now: Instant) {
        self.drain_commands(now);
        self.drain_inputs(now);
        self.follow_schedules(now);
        let publish_snapshot = self.seq.is_multiple_of(self.cfg.snapshot_every.max(1) as u64);
        self.seq += 1;
        for i in 0..self.intersections.len() {
            let started = std::time::Instant::now();
            self.tick_intersection(i, now, publish_snapshot);
            self.latency.record_tick(started.elapsed().as_nanos() as u64);
        }
        for c in &mut self.corridors {
            c.update(now, &mut self.intersections);
            c.exchange(now, &mut self.intersections, &self.outflows);
        }
        self.stats.ticks.fetch_add(1, Ordering::Relaxed);
        if self.seq.is_multiple_of(10) {
            self.latency.publish();
        }
    }

    fn tick_intersection(&mut self, i: usize, now: Instant, publish_snapshot: bool) {
        let x = &mut self.intersections[i];
        // No input, or (for a cabinet that confirms its writes) no write
        // confirmed, for the link timeout: the heads are out of our hands.
        let unconfirmed = x.confirms && now.since(x.last_ack) > x.input_timeout;
        let stale = x.heard && (now.since(x.last_input) > x.input_timeout || unconfirmed);
        // No log line here: the control thread never writes to a log (it
        // could block); the cabinet task logs the link it lost, and the
        // flash is an event.
        match (stale, x.controller.unit()) {
            (true, _) => x.controller.enter_flash(now, FlashReason::CabinetLinkLost),
            (false, UnitState::Flash { reason: FlashReason::CabinetLinkLost, .. }) => {
                let _ = x.controller.handle_command(now, Command::Restart);
            }
            _ => {}
        }
        let input = x.camera.merge(now, &x.input);
        x.input.counts = [0; MAX_DETECTORS];
        x.input.counter_faults = 0;
        x.deliveries.deliver(now, &mut x.controller);
        x.controller.handle_tick(now, &input);
        if let Some(old) = x.controller.take_retired_spec() {
            x.monitor.configure(x.controller.spec());
            let _ = self.retired.try_send(old);
        }
        let frame = *x.controller.output();
        if x.monitor.tripped().is_none()
            && let Err(fault) = x.monitor.check(now, &frame)
        {
            self.stats.monitor_trips.fetch_add(1, Ordering::Relaxed);
            tracing::error!(intersection = %x.controller.spec().id, %fault, "safety monitor tripped: flashing until reset");
            x.controller.enter_flash(now, FlashReason::MonitorTrip);
        }
        let shown = x.monitor.guard(x.controller.output());
        let flash = match x.controller.unit() {
            UnitState::Flash { reason, .. } => Some(reason),
            UnitState::AllRed { .. } | UnitState::Run => None,
        };
        let msg = OutputMsg { seq: x.controller.frame(), at: now, frame: shown, flash };
        if x.outputs.try_send(msg).is_err() {
            self.stats.dropped_outputs.fetch_add(1, Ordering::Relaxed);
        }
        while let Some(e) = x.controller.poll_event() {
            if e.code == EventCode::UnitFlashStatusChange
                && let Some(reason) = FlashReason::from_param(e.param)
            {
                self.stats.flashes[reason.index()].fetch_add(1, Ordering::Relaxed);
            }
            if self.events.try_send((i, e)).is_err() {
                self.stats.dropped_events.fetch_add(1, Ordering::Relaxed);
            }
        }
        if publish_snapshot && self.snapshots.try_send((i, x.controller.snapshot())).is_err() {
            self.stats.dropped_snapshots.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn drain_commands(&mut self, now: Instant) {
        loop {
            match self.commands.try_recv() {
                Ok(EngineCommand::Controller { intersection, command, ticket }) => {
                    let result = match self.intersections.get_mut(intersection) {
                        Some(x) => x.controller.handle_command(now, command).map_err(Refusal::from),
                        None => Err(Refusal::UnknownIntersection(intersection)),
                    };
                    self.answer(ticket, result);
                }
                Ok(EngineCommand::ResetMonitor { intersection, ticket }) => {
                    let result = match self.intersections.get_mut(intersection) {
                        Some(x) if x.monitor.tripped().is_some() => {
                            x.monitor.reset();
                            x.controller.handle_command(now, Command::Restart).map_err(Refusal::from)
                        }
                        Some(_) => Err(Refusal::NoMonitorTrip),
                        None => Err(Refusal::UnknownIntersection(intersection)),
                    };
                    self.answer(ticket, result);
                }
                Ok(EngineCommand::FollowSchedule { intersection, ticket }) => {
                    let result = match self.intersections.get_mut(intersection) {
                        Some(x) => {
                            x.time_of_day.forget();
                            Ok(())
                        }
                        None => Err(Refusal::UnknownIntersection(intersection)),
                    };
                    self.answer(ticket, result);
                }
                Ok(EngineCommand::Arrivals { intersection, phase, projection, sent }) => {
                    if let Some(x) = self.intersections.get_mut(intersection) {
                        let due = sent + corridor::DELIVERY;
                        if due < now {
                            self.stats.late_projections.fetch_add(1, Ordering::Relaxed);
                        }
                        x.deliveries.post(due, phase, projection);
                    }
                }
                Ok(EngineCommand::Shutdown) => {
                    self.shutdown = true;
                    for x in &mut self.intersections {
                        x.controller.enter_flash(now, FlashReason::Shutdown);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
    }

    /// The outcome of a ticketed command, for whoever waits on it.
    fn answer(&self, ticket: Ticket, result: Result<(), Refusal>) {
        if ticket != Ticket::NONE && self.outcomes.try_send(Outcome { ticket, result }).is_err() {
            self.stats.dropped_outcomes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Once per second of control time: each intersection's schedule, read
    /// at the wall-clock time in its zone, selects its plan when it asks
    /// for a new one (the controller changes at its next barrier).
    fn follow_schedules(&mut self, now: Instant) {
        let second = now.as_millis() / 1000;
        if self.schedule_second == Some(second) {
            return;
        }
        self.schedule_second = Some(second);
        let wall = time_of_day(now, self.wall_offset_ms);
        for x in &mut self.intersections {
            if let Some(plan) = x.time_of_day.due(&x.controller.spec().schedule, wall) {
                // A plan the running definition lacks (staged with a new
                // one) is asked for again once that is in force.
                if x.controller.handle_command(now, Command::SelectPlan(plan)).is_err() {
                    x.time_of_day.forget();
                }
            }
        }
    }

    /// The wall clock stepped (an NTP or GPS correction): control time goes
    /// on unbroken, so no interval that is timing is shortened or
    /// stretched; the time of day is read at the corrected wall time from
    /// the next tick, and coordination moves its cycle reference by the
    /// step so coordinated plans keep their offsets with neighbours on
    /// corrected clocks (the controller walks to the new offset through
    /// its ordinary, bounded transition). Each intersection logs alarm 200
    /// with parameter [`ALARM_WALL_CLOCK_STEP`].
    fn wall_stepped(&mut self, now: Instant, offset_ms: i64) {
        let step = offset_ms - self.wall_offset_ms;
        self.wall_offset_ms = offset_ms;
        self.schedule_second = None;
        self.stats.wall_steps.fetch_add(1, Ordering::Relaxed);
        self.stats.wall_offset_ms.store(offset_ms, Ordering::Relaxed);
        for (i, x) in self.intersections.iter_mut().enumerate() {
            // Before the epoch is not an instant: the same cycle position,
            // whole cycles of the running plan later, is.
            let moved = i128::from(x.controller.coord_reference().as_millis()) - i128::from(step);
            let cycle = i128::from(x.controller.snapshot().cycle.as_millis());
            let moved = if moved >= 0 || cycle == 0 { moved.max(0) } else { moved.rem_euclid(cycle) };
            let moved = Instant::from_millis(u64::try_from(moved).unwrap_or(u64::MAX));
            let _ = x.controller.handle_command(now, Command::SetCoordinationReference(moved));
            let alarm = Event { at: now, code: EventCode::AlarmOn, param: ALARM_WALL_CLOCK_STEP };
            if self.events.try_send((i, alarm)).is_err() {
                self.stats.dropped_events.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn drain_inputs(&mut self, now: Instant) {
        while let Ok((i, frame)) = self.inputs.try_recv() {
            if let Some(x) = self.intersections.get_mut(i) {
                // The newest frame's presence and status stand; counts add
                // up until a tick consumes them, so two frames between
                // ticks lose no vehicle and a tick with no new frame counts
                // none twice. Counter faults gather the same way.
                let (pending, faults) = (x.input.counts, x.input.counter_faults);
                x.input = frame;
                for (count, before) in x.input.counts.iter_mut().zip(pending) {
                    *count = count.saturating_add(before);
                }
                x.input.counter_faults |= faults;
                x.last_input = now;
                if !x.heard {
                    // Confirmations are due from now on.
                    x.heard = true;
                    x.last_ack = now;
                }
                if let Some(ack) = frame.ack.filter(|a| a.frame > x.acked_frame) {
                    x.acked_frame = ack.frame;
                    x.last_ack = now;
                }
            }
        }
        while let Ok((i, frame)) = self.camera.try_recv() {
            if let Some(x) = self.intersections.get_mut(i) {
                x.camera.update(now, &frame);
            }
        }
    }

    /// The loop was late by `lateness`: flash everything past the budget,
    /// restart once back on time.
    fn note_lateness(&mut self, now: Instant, lateness: Span) {
        if lateness > self.cfg.overrun_flash_after {
            if !self.overrun_flash {
                tracing::error!(late = %lateness, "control loop overran its budget: flashing all intersections");
            }
            self.overrun_flash = true;
            for x in &mut self.intersections {
                x.controller.enter_flash(now, FlashReason::Overrun);
            }
        } else if self.overrun_flash && lateness.is_zero() {
            self.overrun_flash = false;
            for x in &mut self.intersections {
                let _ = x.controller.handle_command(now, Command::Restart);
            }
        }
    }

    /// Run on absolute deadlines until shut down (or every command sender
    /// and input sender is gone).
    pub fn run(mut self, mut clock: impl Clock) {
        self.stats.running.store(true, Ordering::Relaxed);
        let mut deadline = align_up(clock.now(), self.cfg.tick);
        clock.wait_until(deadline);
        loop {
            let now = clock.now();
            if let Some(offset) = clock.wall_step() {
                self.wall_stepped(now, offset);
            }
            let lateness = now.since(deadline);
            self.latency.record_jitter(clock.nanos_past(deadline));
            self.note_lateness(now, lateness);
            self.tick(now);
            if self.shutdown {
                break;
            }
            deadline += self.cfg.tick;
            let after = clock.now();
            if after > deadline {
                // Missed one or more deadlines: skip, do not burst.
                self.stats.overruns.fetch_add(1, Ordering::Relaxed);
                let missed = after.since(deadline).as_millis() / self.cfg.tick.as_millis().max(1) + 1;
                deadline += Span::from_millis(missed * self.cfg.tick.as_millis());
            }
            clock.wait_until(deadline);
        }
        self.latency.publish();
        self.stats.running.store(false, Ordering::Relaxed);
    }

    /// Run on a dedicated, named OS thread.
    pub fn spawn(self, clock: impl Clock + 'static) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("greenwave-control".into()).spawn(move || self.run(clock))
    }

    /// Run on a dedicated thread at SCHED_FIFO [`CONTROL_PRIORITY`] when
    /// the process may have it (root, or `CAP_SYS_NICE` / `LimitRTPRIO` as
    /// the systemd unit grants; see [`crate::realtime`]): on a busy machine
    /// the scheduler then never makes a tick wait behind the I/O runtime,
    /// the API or anything else. Only for the real-time clock: a lockstep or
    /// as-fast-as-possible run never sleeps, and a spinning FIFO thread
    /// would starve the tasks it waits for.
    pub fn spawn_realtime(self, clock: impl Clock + 'static) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("greenwave-control".into()).spawn(move || {
            crate::realtime::raise_current_thread("control thread", CONTROL_PRIORITY);
            self.run(clock)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::eight_phase;

    fn volume(engine: &Engine) -> u32 {
        let s = engine.controller(0).snapshot();
        s.detectors[..s.detector_count as usize].iter().map(|d| d.volume).sum()
    }

    /// Counts reach the controller exactly once: a tick with no new cabinet
    /// frame adds nothing, and two frames between ticks both count.
    #[test]
    fn cabinet_counts_are_consumed_once_and_never_overwritten() {
        let t0 = Instant::from_millis(1_000_000);
        let (mut engine, io) = Engine::new(vec![eight_phase()], EngineConfig::default(), t0);
        let counted = |n: u16| {
            let mut f = InputFrame { counted: u64::MAX, ..InputFrame::default() };
            f.counts[0] = n;
            f
        };
        io.inputs.send((0, counted(3))).unwrap();
        engine.tick(t0 + Span::from_millis(100));
        assert_eq!(volume(&engine), 3);
        engine.tick(t0 + Span::from_millis(200));
        assert_eq!(volume(&engine), 3, "a tick without a new frame counted the old one again");
        io.inputs.send((0, counted(2))).unwrap();
        io.inputs.send((0, counted(4))).unwrap();
        engine.tick(t0 + Span::from_millis(300));
        assert_eq!(volume(&engine), 9, "the earlier of two frames between ticks was lost");
        // A counter fault in the earlier of two frames still reaches it.
        io.inputs.send((0, InputFrame { counter_faults: 1, ..counted(0) })).unwrap();
        io.inputs.send((0, counted(1))).unwrap();
        engine.tick(t0 + Span::from_millis(400));
        let snap = engine.controller(0).snapshot();
        assert_eq!(snap.detectors[0].fault, Some(crate::core::detector::DetectorFault::ImplausibleCount));
        assert_eq!(volume(&engine), 10);
    }

    /// A camera zone on a stop-bar channel counts as ATSPM would count
    /// it: every vehicle the camera counts is a detector-on in the event
    /// log, so the performance measures' volume is the camera's count,
    /// even while the zone's presence stands (a queue over it).
    #[test]
    fn camera_counts_reach_the_event_log_and_the_measures() {
        let spec = crate::config::load_intersection_str(
            "elm-and-oak.toml",
            include_str!("../../controllers/elm-and-oak.toml"),
        )
        .expect("shipped file is valid")
        .0
        .spec;
        let t0 = Instant::from_millis(1_796_626_800_000);
        let (mut engine, io) = Engine::new(vec![spec.clone()], EngineConfig::default(), t0);
        // Stop-bar loop 3 (phase 4) as a camera zone: presence from the
        // second frame on, 2 vehicles a frame in frames 2..=6 (10).
        let ch = crate::core::DetectorChannel::new(3).expect("channel 3");
        let bit = 1u64 << ch.index();
        let mut events = Vec::new();
        for k in 1..=20u64 {
            let now = t0 + Span::from_millis(100 * k);
            let mut f = CameraFrame { channels: bit, counted: bit, ..CameraFrame::default() };
            if k >= 2 {
                f.presence = bit;
            }
            if (2..=6).contains(&k) {
                f.counts[ch.index()] = 2;
            }
            io.camera.send((0, f)).expect("camera channel");
            io.inputs.send((0, InputFrame::default())).expect("input channel");
            engine.tick(now);
            while let Ok((_, e)) = io.events.try_recv() {
                events.push((e.at, e.code.code(), e.param));
            }
        }
        let ons = events.iter().filter(|&&(_, code, param)| code == 82 && param == 3).count();
        assert_eq!(ons, 10, "{events:?}");
        let m = crate::api::measures::measure_log(&spec, events);
        let lane = m.lanes.iter().find(|l| l.detector == ch).expect("loop 3 is a stop-bar lane");
        assert_eq!(lane.volume, 10);
        let p4 = m.phases.iter().find(|p| p.phase.number() == 4).expect("phase 4");
        assert_eq!(p4.counts.volume, 10);
    }

    /// Flashes are counted per reason as their events leave the
    /// controllers: the start-up flash, a lost cabinet link, shutdown.
    #[test]
    fn flashes_are_counted_by_reason() {
        let t0 = Instant::from_millis(1_000_000);
        let (mut engine, io) = Engine::new(vec![eight_phase()], EngineConfig::default(), t0);
        let flashes = |reason: FlashReason| io.stats.flashes[reason.index()].load(Ordering::Relaxed);
        engine.tick(t0 + Span::from_millis(100));
        assert_eq!(flashes(FlashReason::Startup), 1);
        // A cabinet not heard from yet has lost no link: still the start-up flash.
        engine.tick(t0 + Span::from_millis(3000));
        assert_eq!(flashes(FlashReason::CabinetLinkLost), 0, "a link never up is not lost");
        assert!(matches!(engine.controller(0).unit(), UnitState::Flash { reason: FlashReason::Startup, .. }));
        io.inputs.send((0, InputFrame::default())).unwrap();
        engine.tick(t0 + Span::from_millis(3100));
        // Then no cabinet input for longer than the input timeout.
        engine.tick(t0 + Span::from_millis(4200));
        engine.tick(t0 + Span::from_millis(4300));
        assert_eq!(flashes(FlashReason::CabinetLinkLost), 1, "counted once, not per tick");
        io.commands.send(EngineCommand::Shutdown).unwrap();
        engine.tick(t0 + Span::from_millis(4400));
        assert_eq!(flashes(FlashReason::Shutdown), 1);
        assert_eq!(flashes(FlashReason::MonitorTrip), 0);
    }

    /// A wall-clock step: control time runs on unbroken (the green that
    /// is timing keeps its full minimum), the schedule is read at the
    /// corrected time from the next second on, the coordination reference
    /// moves by the step, and every intersection logs alarm 200/3.
    #[test]
    fn a_wall_clock_step_re_anchors_the_time_of_day_only() {
        let t0 = Instant::from_millis(1_000_000);
        let (mut engine, io) = Engine::new(vec![eight_phase()], EngineConfig::default(), t0);
        let mut now = t0;
        for _ in 0..50 {
            now += Span::from_millis(100);
            engine.tick(now);
        }
        let before = engine.controller(0).snapshot();
        let reference = engine.controller(0).coord_reference();
        let stepped_at = now;
        engine.wall_stepped(now, 3_600_000);
        now += Span::from_millis(100);
        engine.tick(now);
        let after = engine.controller(0).snapshot();
        assert_eq!(after.rings[0].phase, before.rings[0].phase, "no interval cut short by the step");
        assert_eq!(after.rings[0].elapsed, before.rings[0].elapsed + Span::from_millis(100));
        // The test plan is free (no cycle): nothing to move before the epoch.
        assert_eq!(reference, Instant::ZERO);
        assert_eq!(engine.controller(0).coord_reference(), Instant::ZERO);
        assert_eq!(engine.wall_offset_ms, 3_600_000);
        let alarms: Vec<Event> =
            io.events.try_iter().map(|(_, e)| e).filter(|e| e.code == EventCode::AlarmOn).collect();
        assert_eq!(alarms, vec![Event { at: stepped_at, code: EventCode::AlarmOn, param: 3 }]);
        assert_eq!(io.stats.wall_steps.load(Ordering::Relaxed), 1);
    }

    /// A camera's queue reaches the controller as the latest level (not
    /// summed across frames) and stops counting once the camera is stale.
    /// What an operator set before a restart: the plan selected runs (the
    /// schedule's first reading does not replace it) while the schedule
    /// asks for what it asked then; once it has moved on, its plan runs.
    #[test]
    fn a_restored_selection_lasts_until_the_schedule_moves_on() {
        use crate::core::spec::{DayPlan, DayPlanEvent, Schedule};
        const HOUR: u64 = 3_600_000;
        // Plan 3 from midnight, plan 1 (the default) from noon, every day
        // (UTC): the schedule's first reading asks for a change.
        let events = vec![DayPlanEvent { minute_of_day: 0, plan: 3 }, DayPlanEvent { minute_of_day: 720, plan: 1 }];
        let mut spec = eight_phase();
        spec.schedule = Schedule {
            day_plans: vec![DayPlan { name: "all".into(), events }],
            weekdays: [Some(0); 7],
            holidays: vec![],
        };
        // 10:00 UTC.
        let t0 = Instant::from_millis(1_764_892_800_000 + 10 * HOUR);
        let reference = Instant::from_millis(1_764_900_000_000);
        let run = |selected_at: Instant| {
            let (mut engine, io) = Engine::new(vec![spec.clone()], EngineConfig::default(), t0);
            let settings = OperatorSettings {
                mode: None,
                selected: Some((2, selected_at)),
                coordination_reference: Some(reference),
            };
            let restored = engine.restore_operator(0, &settings, t0).unwrap();
            let mut now = t0;
            for _ in 0..600 {
                now += Span::from_millis(100);
                let _ = io.inputs.try_send((0, InputFrame::default()));
                engine.tick(now);
            }
            assert_eq!(engine.controller(0).coord_reference(), reference);
            (restored, engine.controller(0).snapshot().plan)
        };
        assert_eq!(run(Instant::from_millis(t0.as_millis() - HOUR)), (true, 2), "selected at 09:00: plan 3 asked then");
        assert_eq!(
            run(Instant::from_millis(t0.as_millis() - 20 * HOUR)),
            (false, 3),
            "selected at 14:00 the day before"
        );
    }

    /// A plan selected over the schedule stays until FollowSchedule (a
    /// centre's backup mode): then the schedule's plan runs again, though
    /// the schedule itself did not move.
    #[test]
    fn follow_schedule_brings_the_schedules_plan_back() {
        use crate::core::spec::{DayPlan, DayPlanEvent, Schedule};
        let mut spec = eight_phase();
        spec.schedule = Schedule {
            day_plans: vec![DayPlan { name: "all".into(), events: vec![DayPlanEvent { minute_of_day: 0, plan: 3 }] }],
            weekdays: [Some(0); 7],
            holidays: vec![],
        };
        let t0 = Instant::from_millis(1_764_892_800_000);
        let (mut engine, io) = Engine::new(vec![spec], EngineConfig::default(), t0);
        let mut now = t0;
        let mut run = |engine: &mut Engine, seconds: u64| {
            for _ in 0..seconds * 10 {
                now += Span::from_millis(100);
                let _ = io.inputs.try_send((0, InputFrame::default()));
                engine.tick(now);
            }
            engine.controller(0).snapshot().plan
        };
        assert_eq!(run(&mut engine, 120), 3, "the schedule's plan");
        let select = Command::SelectPlan(2);
        io.commands
            .try_send(EngineCommand::Controller { intersection: 0, command: select, ticket: Ticket::NONE })
            .unwrap();
        assert_eq!(run(&mut engine, 120), 2, "selected over the schedule, which does not ask again");
        io.commands.try_send(EngineCommand::FollowSchedule { intersection: 0, ticket: Ticket::NONE }).unwrap();
        assert_eq!(run(&mut engine, 120), 3, "the schedule's plan again");
    }

    #[test]
    fn camera_queues_are_the_latest_level_until_the_camera_goes_stale() {
        let t0 = Instant::from_millis(1_000_000);
        let mut camera = CameraInput::default();
        let mut frame = CameraFrame { channels: 1 << 2, queued: 1 << 2, ..CameraFrame::default() };
        frame.queue[2] = 7;
        camera.update(t0, &frame);
        frame.queue[2] = 5;
        camera.update(t0 + Span::from_millis(100), &frame);
        let input = camera.merge(t0 + Span::from_millis(200), &InputFrame::default());
        assert_eq!((input.queue[2], input.queued), (5, 1 << 2));
        let input = camera.merge(t0 + Span::from_millis(100) + CAMERA_STALE_AFTER, &InputFrame::default());
        assert_eq!(input.queued, 1 << 2, "still fresh at the limit");
        let input = camera.merge(t0 + Span::from_millis(200) + CAMERA_STALE_AFTER, &InputFrame::default());
        assert_eq!(input.queued, 0, "a stalled camera's queue is dropped");
    }
}
