//! Cabinet I/O over Modbus: the client side of every cabinet link.
//!
//! # Layout
//! - [`registers`]: the wire encoding over the register map (`docs/modbus.md`;
//!   the map itself is [`crate::config::registers`]), read/write planning,
//!   wrapping counter diffs.
//! - [`cabinet`]: one tokio task per cabinet: timeouts, reconnect with
//!   jittered backoff, exceptions told apart from transport errors, RTT and
//!   error counts; real-time and lockstep schedules.
//! - [`rtu`]: RTU framing (serial line, or over TCP) with answers matched
//!   to requests, and the line drained after a timeout.
//! - [`error`]: [`CabinetError`], why a link failed, one variant per kind
//!   the client counts or handles apart.
//! - [`one_master`]: telling from the heartbeat read back that another
//!   master writes the cabinet, and when it has stopped.
//! - this module: wiring for `greenwave run` ([`CabinetPlan`], which also
//!   starts the embedded simulated cabinets of [`crate::sim::server`] for the
//!   intersections that have no hardware), totals and `--stats-json`.
//!
//! All of it runs on a tokio runtime of its own, apart from the control
//! thread: the engine is only ever reached through its bounded channels
//! (`try_send` / `try_recv`), so no cabinet can block or lock it.

pub mod cabinet;
pub mod error;
pub mod one_master;
pub mod registers;
pub mod rtu;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config as defaults;
use crate::config::{
    CabinetConfig, ClockSource, IntersectionConfig, ModbusCabinet, ModbusTransport, OneMasterCheck, RegisterMap,
    VolumeSource,
};
use crate::core::{InputFrame, Instant, Span};
use crate::engine::clock::{CabinetTime, Clock, SystemClock};
use crate::engine::latency::{LatencyHistograms, Percentiles};
use crate::engine::{Engine, EngineStats, OutputMsg};
use crate::realtime::{self, IO_PRIORITY};
use crate::sim::server::{Lockstep, SimCabinetSpec, SimServer, SimServerConfig, SimServerError};
use cabinet::{CabinetStats, CabinetTask};
pub use error::CabinetError;

/// How the cabinet I/O runtime's threads are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoScheduling {
    /// Normal priority: lockstep simulation, `greenwave sim-cabinet`.
    Normal,
    /// SCHED_FIFO [`IO_PRIORITY`], below the control thread
    /// ([`crate::realtime`]): a real-time daemon.
    Realtime,
}

/// The runtime cabinet I/O runs on: one worker per core but one, so the
/// control thread keeps a core to itself on small machines.
///
/// With [`IoScheduling::Realtime`] every thread of the runtime (workers,
/// and blocking-pool threads when they start) asks for SCHED_FIFO
/// [`IO_PRIORITY`] as it starts; the first to start says once whether it
/// was granted.
pub fn runtime(scheduling: IoScheduling) -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(cores.saturating_sub(1).max(1)).thread_name("greenwave-io").enable_all();
    if scheduling == IoScheduling::Realtime {
        let reported = Arc::new(AtomicBool::new(false));
        builder.on_thread_start(move || {
            let outcome = realtime::set_fifo(IO_PRIORITY);
            if !reported.swap(true, Ordering::Relaxed) {
                realtime::report_priority("cabinet I/O threads", IO_PRIORITY, &outcome);
            }
        });
    }
    builder.build()
}

/// A Modbus cabinet with the documented defaults at `address` (the
/// embedded simulator's cabinets).
pub fn default_cabinet(transport: ModbusTransport) -> ModbusCabinet {
    ModbusCabinet {
        transport,
        unit_id: crate::config::DEFAULT_MODBUS_UNIT_ID,
        connect_timeout: defaults::DEFAULT_CONNECT_TIMEOUT,
        request_timeout: defaults::DEFAULT_REQUEST_TIMEOUT,
        link_timeout: defaults::DEFAULT_LINK_TIMEOUT,
        backoff_min: defaults::DEFAULT_BACKOFF_MIN,
        backoff_max: defaults::DEFAULT_BACKOFF_MAX,
        poll: None,
        read_ahead: defaults::DEFAULT_READ_AHEAD,
        volume: VolumeSource::Counters,
        camera_zone_channels: Vec::new(),
        one_master: OneMasterCheck::ReadBack,
        registers: RegisterMap::default(),
    }
}

/// Why the cabinets of `greenwave run` could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("starting the embedded simulated cabinets")]
    EmbeddedSim(#[source] SimServerError),
    #[error("no embedded simulated cabinet left for intersection {0}")]
    NoSimulatedCabinetLeft(String),
    #[error("clock = \"cabinet\" but there are no cabinets")]
    NoCabinets,
    #[error("clock = \"cabinet\": intersection {id}")]
    SimTime {
        id: String,
        #[source]
        error: CabinetError,
    },
}

/// How `greenwave run` reaches every intersection's cabinet: resolved
/// before the engine starts (the embedded simulator bound, a lockstep
/// start time read).
#[derive(Debug)]
pub struct CabinetPlan {
    cabinets: Vec<(String, ModbusCabinet)>,
    clock: ClockSource,
    tick: Span,
    sim: Option<SimServer>,
    time: Option<CabinetTime>,
}

impl CabinetPlan {
    /// Start the embedded simulated cabinet server (on loopback, ephemeral
    /// ports, bound before anything talks to it) for the intersections whose
    /// cabinet is simulated, and collect every cabinet's link settings.
    pub fn new(
        rt: &tokio::runtime::Runtime,
        intersections: &[IntersectionConfig],
        tick: Span,
        clock: ClockSource,
    ) -> Result<CabinetPlan, PlanError> {
        let simulated: Vec<SimCabinetSpec> = intersections
            .iter()
            .filter(|x| x.cabinet == CabinetConfig::Simulated)
            .map(|x| SimCabinetSpec { id: x.spec.id.clone(), spec: x.spec.clone(), traffic: x.traffic.clone() })
            .collect();
        let sim = if simulated.is_empty() {
            None
        } else {
            let cfg = SimServerConfig {
                lockstep: (clock == ClockSource::Cabinet).then(|| Lockstep::new(tick)),
                ..SimServerConfig::default()
            };
            let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let server = rt.block_on(SimServer::start(&simulated, listen, cfg)).map_err(PlanError::EmbeddedSim)?;
            info!(
                cabinets = server.addrs.len(),
                first = %server.addrs[0],
                lockstep = clock == ClockSource::Cabinet,
                "embedded simulated cabinets serving Modbus TCP on loopback"
            );
            Some(server)
        };
        let mut sim_addrs = sim.iter().flat_map(|s| s.addrs.iter().copied());
        let mut cabinets = Vec::with_capacity(intersections.len());
        for x in intersections {
            let c = match &x.cabinet {
                CabinetConfig::Simulated => {
                    let addr = sim_addrs.next().ok_or_else(|| PlanError::NoSimulatedCabinetLeft(x.spec.id.clone()))?;
                    default_cabinet(ModbusTransport::Tcp { address: addr.to_string() })
                }
                CabinetConfig::Modbus(m) => (**m).clone(),
            };
            if let Some(p) = c.poll
                && !p.as_millis().is_multiple_of(tick.as_millis().max(1))
            {
                warn!(intersection = %x.spec.id, "cabinet poll_s {p} is not a whole number of ticks ({tick}): rounded down");
            }
            cabinets.push((x.spec.id.clone(), c));
        }
        Ok(CabinetPlan { cabinets, clock, tick, sim, time: None })
    }

    /// The engine's start time: now, or with `clock = "cabinet"` the
    /// simulated time of the first cabinet (and the engine's clock starts
    /// there).
    pub fn start_time(&mut self, rt: &tokio::runtime::Runtime) -> Result<Instant, PlanError> {
        match self.clock {
            ClockSource::System => Ok(SystemClock::new().now()),
            ClockSource::Cabinet => {
                let (id, first) = self.cabinets.first().ok_or(PlanError::NoCabinets)?;
                let t = rt
                    .block_on(cabinet::probe_sim_time(first, Duration::from_secs(10)))
                    .map_err(|error| PlanError::SimTime { id: id.clone(), error })?;
                info!(intersection = %id, sim_time_ms = t.as_millis(), "lockstep: simulated time from the cabinet");
                self.time = Some(CabinetTime::new(self.cabinets.len(), t));
                Ok(t)
            }
        }
    }

    /// Per-intersection link timeouts into the engine, and every cabinet's
    /// writes confirmed (before the engine is spawned).
    pub fn configure(&self, engine: &mut Engine) {
        for (i, (_, c)) in self.cabinets.iter().enumerate() {
            engine.set_input_timeout(i, c.link_timeout);
            engine.confirm_by_cabinet(i);
        }
    }

    /// Spawn one task per cabinet. Returns the running I/O, and the clock
    /// the engine must run on.
    pub fn spawn(
        self,
        rt: &tokio::runtime::Runtime,
        outputs: Vec<Receiver<OutputMsg>>,
        inputs: Sender<(usize, InputFrame)>,
        engine: Arc<EngineStats>,
    ) -> (CabinetIo, EngineClock) {
        let (stop, stop_rx) = watch::channel(false);
        let clock = SystemClock::new();
        // Tick pulse: one task watches the engine's tick counter (an atomic
        // it bumps after each tick) every millisecond and wakes the cabinet
        // tasks waiting for their frame, so a thousand tasks do not each
        // poll their channel. It sleeps between looks (a timer, not a
        // spin), which matters at SCHED_FIFO: a spinning real-time thread
        // would take its core from every normal process.
        let pulse = Arc::new(tokio::sync::Notify::new());
        {
            let pulse = pulse.clone();
            let stop = stop_rx.clone();
            rt.spawn(async move {
                let mut last = engine.ticks.load(Ordering::Acquire);
                let mut every = tokio::time::interval(Duration::from_millis(1));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                while !*stop.borrow() {
                    every.tick().await;
                    let now = engine.ticks.load(Ordering::Acquire);
                    if now != last {
                        last = now;
                        pulse.notify_waiters();
                    }
                }
            });
        }
        let mut tasks = Vec::new();
        let mut stats = Vec::new();
        for (i, ((id, cabinet), rx)) in self.cabinets.into_iter().zip(outputs).enumerate() {
            let s = Arc::new(CabinetStats::default());
            stats.push((id.clone(), s.clone()));
            let task = CabinetTask {
                intersection: i,
                id,
                cabinet,
                tick: self.tick,
                clock,
                inputs: inputs.clone(),
                outputs: rx,
                stats: s,
                lockstep: self.time.clone().map(|t| (t, i)),
                stop: stop_rx.clone(),
                pulse: pulse.clone(),
            };
            tasks.push(rt.spawn(task.run()));
        }
        let engine_clock = match &self.time {
            Some(t) => EngineClock::Cabinet(t.clock()),
            None => EngineClock::System(clock),
        };
        (CabinetIo { tasks, stop, stats, sim: self.sim, time: self.time }, engine_clock)
    }
}

/// The clock the engine runs on.
#[derive(Debug)]
pub enum EngineClock {
    System(SystemClock),
    Cabinet(crate::engine::clock::CabinetClock),
}

impl EngineClock {
    /// A lockstep clock paced at `speed` times real time at most
    /// (`lockstep_speed`); the real-time clock is left as it is.
    pub fn paced(self, speed: Option<f64>) -> Self {
        match (self, speed) {
            (EngineClock::Cabinet(c), Some(speed)) => EngineClock::Cabinet(c.paced(speed)),
            (clock, _) => clock,
        }
    }

    pub fn spawn(self, engine: Engine) -> std::io::Result<std::thread::JoinHandle<()>> {
        match self {
            EngineClock::System(c) => engine.spawn_realtime(c),
            EngineClock::Cabinet(c) => engine.spawn(c),
        }
    }
}

/// The running cabinet tasks (and the embedded simulator).
#[derive(Debug)]
pub struct CabinetIo {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    pub stats: Vec<(String, Arc<CabinetStats>)>,
    sim: Option<SimServer>,
    time: Option<CabinetTime>,
}

impl CabinetIo {
    /// Shutdown, step 1 (right after asking the engine to stop): a lockstep
    /// engine must not wait for simulated time any more.
    pub fn release_clock(&self) {
        if let Some(t) = &self.time {
            t.release();
        }
    }

    /// Shutdown, step 2 (after the engine has stopped): every task writes
    /// the engine's last (flash) frame and ends; bounded by `grace`. Then
    /// the embedded simulator stops.
    pub async fn finish(self, grace: Duration) {
        let _ = self.stop.send(true);
        let until = tokio::time::Instant::now() + grace;
        let mut unfinished = Vec::new();
        for (task, (id, _)) in self.tasks.into_iter().zip(&self.stats) {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(until, task).await.is_err() {
                abort.abort();
                unfinished.push(id.as_str());
            }
        }
        if !unfinished.is_empty() {
            // Their heads are left to the cabinet's own watchdog.
            warn!(
                cabinets = unfinished.len(),
                "no final flash frame within {} ms for: {}; their cabinets' watchdogs flash them",
                grace.as_millis(),
                unfinished.join(", ")
            );
        }
        if let Some(sim) = self.sim {
            sim.stop().await;
        }
    }

    /// One line of totals across every cabinet, for logs.
    pub fn summary(&self) -> CabinetTotals {
        totals(&self.stats)
    }
}

/// Totals across cabinets.
#[derive(Clone, Copy, Debug, Default)]
pub struct CabinetTotals {
    pub cabinets: usize,
    pub links_up: usize,
    pub reads: u64,
    pub writes: u64,
    pub timeouts: u64,
    pub exceptions: u64,
    pub transport_errors: u64,
    pub discarded_answers: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub inputs_dropped: u64,
    pub links_lost: u64,
    pub counter_faults: u64,
    pub foreign_writes: u64,
    pub second_master_episodes: u64,
    pub late_exchanges: u64,
    pub skipped_ticks: u64,
    pub rtt: Percentiles,
}

pub fn totals(stats: &[(String, Arc<CabinetStats>)]) -> CabinetTotals {
    let mut t = CabinetTotals { cabinets: stats.len(), ..CabinetTotals::default() };
    let mut rtt = cabinet::RTT_BOUNDS.histogram();
    for (_, s) in stats {
        let r = Ordering::Relaxed;
        t.links_up += usize::from(s.link_up.load(r));
        t.reads += s.reads.load(r);
        t.writes += s.writes.load(r);
        t.timeouts += s.timeouts.load(r);
        t.exceptions += s.exceptions.load(r);
        t.transport_errors += s.transport_errors.load(r);
        t.discarded_answers += s.discarded_answers.load(r);
        t.connects += s.connects.load(r);
        t.connect_failures += s.connect_failures.load(r);
        t.inputs_dropped += s.inputs_dropped.load(r);
        t.links_lost += s.links_lost.load(r);
        t.counter_faults += s.counter_faults.load(r);
        t.foreign_writes += s.foreign_writes.load(r);
        t.second_master_episodes += s.second_master_episodes.load(r);
        t.late_exchanges += s.late_exchanges.load(r);
        t.skipped_ticks += s.skipped_ticks.load(r);
        if let Ok(h) = s.rtt_us.lock() {
            let _ = rtt.add(&*h);
        }
    }
    // Histogram in µs; Percentiles::of reads ns.
    let p = Percentiles::of(&rtt);
    t.rtt = Percentiles {
        count: p.count,
        p50_us: p.p50_us * 1000.0,
        p99_us: p.p99_us * 1000.0,
        p999_us: p.p999_us * 1000.0,
        max_us: p.max_us * 1000.0,
    };
    t
}

impl std::fmt::Display for CabinetTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} links up, {} links lost, {} reads, {} writes, {} timeouts, {} exceptions, {} transport errors, {} answers discarded, {} connects ({} failed), {} counter faults, rtt p50={:.0}µs p99={:.0}µs max={:.0}µs",
            self.links_up,
            self.cabinets,
            self.links_lost,
            self.reads,
            self.writes,
            self.timeouts,
            self.exceptions,
            self.transport_errors,
            self.discarded_answers,
            self.connects,
            self.connect_failures,
            self.counter_faults,
            self.rtt.p50_us,
            self.rtt.p99_us,
            self.rtt.max_us
        )?;
        if self.late_exchanges > 0 {
            write!(
                f,
                ", too slow for the tick: {} late exchanges, {} ticks skipped",
                self.late_exchanges, self.skipped_ticks
            )?;
        }
        if self.second_master_episodes > 0 {
            write!(
                f,
                ", another master seen: {} episodes, {} foreign writes",
                self.second_master_episodes, self.foreign_writes
            )?;
        }
        Ok(())
    }
}

/// `greenwave run --stats-json`: engine and cabinet figures as one JSON
/// object. `jitter_after_warmup` excludes the first seconds (connections
/// being set up), when a warm-up snapshot was taken.
pub fn stats_json(
    engine: &EngineStats,
    latest: &LatencyHistograms,
    warmup: Option<&LatencyHistograms>,
    cabinets: &CabinetTotals,
    event_log: &crate::telemetry::EventLogHealth,
) -> String {
    let r = Ordering::Relaxed;
    let pct = |p: Percentiles| {
        format!(
            "{{\"count\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
            p.count, p.p50_us, p.p99_us, p.p999_us, p.max_us
        )
    };
    let mut after = latest.jitter_ns.clone();
    let steady = match warmup {
        Some(w) if after.subtract(&w.jitter_ns).is_ok() => pct(Percentiles::of(&after)),
        _ => "null".into(),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"ticks\":{},\"overruns\":{},\"monitor_trips\":{},\"dropped_outputs\":{},\"late_projections\":{},\"tick\":{},\"jitter\":{},\"jitter_after_warmup\":{},",
        engine.ticks.load(r),
        engine.overruns.load(r),
        engine.monitor_trips.load(r),
        engine.dropped_outputs.load(r),
        engine.late_projections.load(r),
        pct(Percentiles::of(&latest.tick_ns)),
        pct(Percentiles::of(&latest.jitter_ns)),
        steady
    );
    let _ = write!(
        s,
        "\"cabinets\":{{\"count\":{},\"links_up\":{},\"links_lost\":{},\"reads\":{},\"writes\":{},\"timeouts\":{},\"exceptions\":{},\"transport_errors\":{},\"discarded_answers\":{},\"connects\":{},\"connect_failures\":{},\"inputs_dropped\":{},\"counter_faults\":{},\"foreign_writes\":{},\"second_master_episodes\":{},\"late_exchanges\":{},\"skipped_ticks\":{},\"rtt\":{}}},",
        cabinets.cabinets,
        cabinets.links_up,
        cabinets.links_lost,
        cabinets.reads,
        cabinets.writes,
        cabinets.timeouts,
        cabinets.exceptions,
        cabinets.transport_errors,
        cabinets.discarded_answers,
        cabinets.connects,
        cabinets.connect_failures,
        cabinets.inputs_dropped,
        cabinets.counter_faults,
        cabinets.foreign_writes,
        cabinets.second_master_episodes,
        cabinets.late_exchanges,
        cabinets.skipped_ticks,
        pct(cabinets.rtt)
    );
    let _ = write!(
        s,
        "\"event_log\":{{\"written\":{},\"dropped\":{},\"behind\":{},\"outages\":{}}}}}",
        event_log.written.load(r),
        event_log.dropped.load(r),
        event_log.behind.load(r),
        event_log.outages.load(r)
    );
    s.push('\n');
    s
}
