//! The daemon: everything `greenwave run` starts, as one call.
//!
//! [`run`] starts the control thread, the cabinet I/O runtime (with the
//! embedded simulated cabinets when a controller asks for them), the event
//! fan-out (Indiana event log, performance measures, the journal gRPC
//! streams from, and with `[nats]` the city feed to a NATS broker), the gRPC API, the metrics listener (`[http]`), the
//! GB/T 20999 adapter (`[gbt20999]`) and the terminal view, then serves until `shutdown` resolves or the control
//! thread dies, and stops: every intersection to flash, that frame
//! written to every cabinet, the event log closed. `main.rs` only turns
//! arguments and signals into [`Options`] and a shutdown future; tests and
//! benchmarks start the same daemon in-process through [`Daemon::start`],
//! which also hands out what they observe it with.
//!
//! ```text
//!  controllers/*.toml ─► config ─► Engine (greenwave-control thread: controllers, monitors,
//!  greenwave.toml            │       time of day, absolute deadlines; no lock, no allocation)
//!                            │        ▲ bounded channels │ outputs       │ events   │ snapshots
//!                            │        │ inputs           ▼               ▼          ▼
//!                            │     cabinet tasks (greenwave-io runtime) fan-out   board
//!                            │        ▲ Modbus TCP/RTU                    │ log, measures, journal
//!                            │        ▼                                   ▼          ▼
//!                            │     cabinets / simulated cabinets      gRPC API (greenwave-grpc runtime),
//!                            └──── reload (SIGHUP) ─► CommandPort ◄── terminal view
//! ```
//!
//! # Layout
//! - [`controllers`]: where the intersections come from (a directory, the
//!   embedded default, or configs built in code) and the reload.
//! - [`fanout`]: the one thread between the engine's events and their readers.
//! - [`nats`]: the city feed (`[nats]`): events and alarms through JetStream
//!   with bounded store-and-forward, state snapshots on core NATS.
//! - the NTCIP 1202 agent (`[ntcip]`, [`crate::ntcip`]) on the gRPC runtime.
//! - [`gbt20999`]: the GB/T 20999-2017 adapter for Chinese traffic control
//!   centres; its sets go through the gRPC Control handlers in-process.
//! - this module: [`Options`], [`Daemon`], [`run`].

pub mod controllers;
pub mod fanout;
pub mod gbt20999;
pub mod nats;
pub mod neighbours;
mod settings;

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tracing::{error, info};

use crate::api::versions::{OperatorSettings, mode_word};
use crate::api::{Api, ControllerSource, EngineHandles, GrpcServer};
use crate::config::daemon::DaemonConfig;
use crate::config::{self, ClockSource, IntersectionConfig};
use crate::core::{FlashReason, Instant, Span};
use crate::engine::board::SnapshotBoard;
use crate::engine::latency::{LatencyHistograms, LatencyReader, Percentiles};
use crate::engine::port::CommandPort;
use crate::engine::{Engine, EngineCommand, EngineConfig, EngineIo, EngineStats};
use crate::http::HttpServer;
use crate::io::cabinet::CabinetStats;
use crate::io::{CabinetIo, CabinetPlan, CabinetTotals, IoScheduling};
use crate::ntcip::NtcipServer;
use crate::telemetry::eventlog::{EventLogConfig, LogTimeZone};
use crate::telemetry::journal::Journal;
use crate::telemetry::{EventLogHealth, EventLogStats, spawn_event_log_thread};
use crate::view::{self, ViewIntersection};
pub use controllers::{Controllers, Reloader};

/// How a daemon runs.
#[derive(Debug)]
pub struct Options {
    /// `greenwave.toml`, validated (overrides applied).
    pub config: DaemonConfig,
    /// The file `config` came from, for error messages about it.
    pub config_file: PathBuf,
    pub controllers: Controllers,
    /// The live terminal view on stdout (when stdout is a terminal and the
    /// config does not turn it off); log lines every 30 s otherwise.
    pub view: bool,
    /// On exit, write engine and cabinet figures to this JSON file.
    pub stats_json: Option<PathBuf>,
    /// The stats JSON also gives jitter without this first stretch.
    pub stats_warmup: Duration,
}

impl Options {
    /// A daemon on `config` and `controllers`, no view, no stats file.
    pub fn new(config: DaemonConfig, controllers: Controllers) -> Options {
        Options {
            config,
            config_file: PathBuf::from("greenwave.toml"),
            controllers,
            view: false,
            stats_json: None,
            stats_warmup: Duration::from_secs(10),
        }
    }
}

/// Why a daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration has errors (each with file, key and reason):
    /// nothing was started.
    #[error("{} configuration errors; nothing started", .0.len())]
    Config(Vec<String>),
    #[error(transparent)]
    Start(#[from] anyhow::Error),
}

/// What ended a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// The shutdown future resolved.
    Requested,
    /// The control thread ended on its own: it panicked.
    ControlThreadEnded,
}

/// How a run ended.
#[derive(Clone, Copy, Debug)]
pub struct Stopped {
    pub cause: StopCause,
    /// The control thread panicked (its outputs froze; each cabinet's
    /// watchdog flashed its intersection).
    pub control_panicked: bool,
    pub cabinets: CabinetTotals,
}

impl Stopped {
    /// Stopped on request with every thread healthy.
    pub fn is_clean(&self) -> bool {
        self.cause == StopCause::Requested && !self.control_panicked
    }
}

/// Runs a daemon until `shutdown` resolves (or its control thread dies),
/// then stops it through flash. Blocking: call it from a thread, not from
/// inside an async runtime.
///
/// # Errors
/// The configuration is invalid, or a listener, thread or runtime could not
/// start.
pub fn run(options: Options, shutdown: impl Future<Output = ()>) -> Result<Stopped, DaemonError> {
    Daemon::start(options)?.run_until(shutdown)
}

/// A started daemon.
#[derive(Debug)]
pub struct Daemon {
    io_rt: tokio::runtime::Runtime,
    grpc_rt: tokio::runtime::Runtime,
    engine_thread: JoinHandle<()>,
    cabinets: CabinetIo,
    grpc: Option<GrpcServer>,
    http: Option<HttpServer>,
    /// The NTCIP 1202 agent (`[ntcip]`).
    ntcip: Option<NtcipServer>,
    gbt20999: Option<gbt20999::Gbt20999Server>,
    port: CommandPort,
    board: Arc<SnapshotBoard>,
    latency: Arc<LatencyReader>,
    stats: Arc<EngineStats>,
    journal: Arc<Journal>,
    reloader: Reloader,
    event_log: JoinHandle<EventLogStats>,
    log_health: Arc<EventLogHealth>,
    /// The city feed's publisher (`[nats]`).
    nats: Option<nats::Publisher>,
    /// The exchange with corridor members in other daemons.
    neighbours: Option<Arc<neighbours::NeighbourStats>>,
    /// How long the publisher may still deliver at shutdown.
    nats_flush: Duration,
    /// Ends the view and warm-up threads.
    stop: Arc<AtomicBool>,
    warmup: Arc<std::sync::Mutex<Option<LatencyHistograms>>>,
    stats_json: Option<PathBuf>,
}

impl Daemon {
    /// Loads the controllers and starts everything; returns once the gRPC
    /// listener is bound and the control thread runs. Blocking (see [`run`]).
    ///
    /// # Errors
    /// As [`run`].
    pub fn start(options: Options) -> Result<Daemon, DaemonError> {
        let Options { config: daemon, config_file, controllers, view, stats_json, stats_warmup } = options;
        let intersections = controllers.load().map_err(DaemonError::Config)?;
        if intersections.is_empty() {
            return Err(DaemonError::Config(vec!["no intersections configured".into()]));
        }
        let ids: Vec<String> = intersections.iter().map(|x| x.spec.id.clone()).collect();
        let corridors = config::corridor::resolve(&daemon.corridors, &ids, &config_file)
            .map_err(|errors| DaemonError::Config(errors.iter().map(ToString::to_string).collect()))?;
        controllers.log_loaded(intersections.len());
        info!(zone = %daemon.time_zone, "time-of-day schedules in this zone where a controller file sets none");

        // In real time, the control thread and the cabinet I/O run at
        // real-time priorities (`crate::realtime`; each not granted is one
        // warning as its threads start). A lockstep run waits for its
        // simulator and needs them not. Memory locking is the binary's
        // call (it is process-wide: a test harness that starts daemons
        // in-process keeps its memory as it is).
        let realtime = daemon.clock == ClockSource::System;
        // Cabinet I/O (and the embedded simulated cabinets, served over
        // loopback Modbus) on its own runtime, resolved before the engine.
        let tick = Span::from_millis(daemon.tick_ms);
        let scheduling = if realtime { IoScheduling::Realtime } else { IoScheduling::Normal };
        let io_rt = crate::io::runtime(scheduling).context("starting the cabinet I/O runtime")?;
        let mut plan = CabinetPlan::new(&io_rt, &intersections, tick, daemon.clock).map_err(anyhow::Error::from)?;
        let ecfg = EngineConfig { tick, time_zone: daemon.time_zone, ..EngineConfig::default() };
        let specs = intersections.iter().map(|x| x.spec.clone()).collect();
        let start = plan.start_time(&io_rt).map_err(anyhow::Error::from)?;
        let (mut engine, io) = Engine::new(specs, ecfg, start);
        plan.configure(&mut engine);
        configure_zones(&mut engine, &intersections);
        let sources = controllers.sources(&intersections);
        restore_operators(&mut engine, &sources, start);
        let inbound = neighbours::inbound(&corridors);
        for (resolved, c) in corridors.into_iter().zip(&daemon.corridors) {
            let name = c.name.clone().unwrap_or_else(|| c.members.join(" – "));
            info!(corridor = %name, members = resolved.members.len(), "corridor: adaptive members share a cycle and green-wave offsets");
            let members = resolved.members.iter().map(|m| match m {
                config::corridor::Member::Local(i) => Some(*i),
                config::corridor::Member::Remote(_) => None,
            });
            engine.add_corridor(name, members.collect(), &resolved.travel);
        }
        let EngineIo {
            commands,
            outcomes,
            inputs,
            camera,
            outputs,
            snapshots,
            events,
            outflows,
            retired,
            latency,
            stats,
        } = io;
        let remote = daemon.corridors.iter().any(|c| !c.remote.is_empty());
        let neighbour_stats = if remote {
            let stats = neighbours::spawn(&daemon.nats, ids.clone(), inbound, outflows, commands.clone())
                .context("starting the corridor neighbour exchange")?;
            Some(stats)
        } else {
            // Nothing is exported without remote members: the channel
            // closes with it.
            drop(outflows);
            None
        };
        let port = CommandPort::new(commands, outcomes).context("starting the outcome router")?;

        let board = SnapshotBoard::new(intersections.len());
        board.spawn_feeder(snapshots).context("starting the snapshot board")?;
        let api = Api::new(sources, daemon.grpc.limits.event_history).context("setting up the gRPC API")?;
        let journal = api.journal();
        let log_cfg = EventLogConfig {
            dir: daemon.event_log.dir.clone(),
            max_file_bytes: daemon.event_log.max_file_bytes,
            keep_files: daemon.event_log.keep_files,
            time_zone: LogTimeZone::Zone(daemon.time_zone),
        };
        info!(dir = %log_cfg.dir.display(), "Indiana event log");
        let log_health = Arc::new(EventLogHealth::default());
        let nats = if daemon.nats.enabled {
            Some(nats::spawn(&daemon.nats, &ids, board.clone()).context("starting the NATS city feed")?)
        } else {
            None
        };
        let outbox = nats.as_ref().map(|p| p.outbox.clone());
        let (log_feed, _fanout) = fanout::spawn(events, journal.clone(), api.measures(), log_health.clone(), outbox)
            .context("starting the event fan-out")?;
        let event_log =
            spawn_event_log_thread(log_feed, ids.clone(), log_cfg.clone(), Some(journal.clone()), log_health.clone())
                .context("starting the event log")?;
        // The control thread hands replaced specs back here to be dropped
        // (no deallocation on the control thread); each one means a reload
        // is now in force.
        std::thread::Builder::new()
            .name("greenwave-retired".into())
            .spawn(move || {
                for old in retired.iter() {
                    info!(intersection = %old.id, "reloaded configuration in force (applied at the barrier)");
                }
            })
            .context("starting the retired-spec thread")?;
        let (cabinets, clock) = plan.spawn(&io_rt, outputs, inputs, stats.clone());
        let engine_thread = clock.paced(daemon.lockstep_speed).spawn(engine).context("starting the control thread")?;
        info!(tick_ms = daemon.tick_ms, intersections = ids.len(), "control thread running");

        let stop = Arc::new(AtomicBool::new(false));
        let latency = Arc::new(latency);
        let view_on = daemon.view && view && std::io::stdout().is_terminal();
        let nats_stats = nats.as_ref().map(|p| p.stats.clone());
        let status = Status {
            engine: stats.clone(),
            cabinets: cabinets.stats.clone(),
            log: log_health.clone(),
            nats: nats_stats.clone(),
        };
        spawn_view(view_on, &intersections, board.clone(), latency.clone(), status, stop.clone())
            .context("starting the view thread")?;
        let warmup = spawn_warmup_snapshot(stats_json.is_some(), stats_warmup, latency.clone())
            .context("starting the warm-up thread")?;
        let grpc_rt = crate::api::runtime().context("starting the gRPC runtime")?;
        let handles = EngineHandles {
            commands: port.clone(),
            camera,
            board: board.clone(),
            latency: latency.clone(),
            cabinet_links: cabinets.stats.iter().map(|(_, s)| s.clone()).collect(),
            stats: stats.clone(),
        };
        // The web view reads the same files ReadEventLog does.
        let web_log = log_cfg.clone();
        let ntcip = if daemon.ntcip.enabled {
            let sources = crate::ntcip::Sources {
                ids: ids.clone(),
                docs: api.docs(),
                board: board.clone(),
                control: api.gateway(&daemon.grpc, handles.clone(), log_cfg.clone()),
            };
            Some(grpc_rt.block_on(crate::ntcip::serve(&daemon.ntcip, sources)).context("starting the NTCIP agent")?)
        } else {
            None
        };
        let gbt20999 = if daemon.gbt20999.enabled {
            let gateway = api.gateway(&daemon.grpc, handles.clone(), log_cfg.clone());
            let serve = gbt20999::serve(&daemon.gbt20999, gateway);
            let listen = daemon.gbt20999.listen;
            Some(grpc_rt.block_on(serve).with_context(|| format!("starting the GB/T 20999 adapter on {listen}"))?)
        } else {
            None
        };
        if daemon.nats.enabled {
            let routes = api.emergency_routes(&handles);
            grpc_rt
                .block_on(nats::emergency_handover(&daemon.nats, routes))
                .context("starting the emergency route handover")?;
        }
        let grpc = if daemon.grpc.enabled {
            Some(grpc_rt.block_on(api.serve(&daemon.grpc, handles, log_cfg)).context("starting the gRPC API")?)
        } else {
            info!("gRPC API disabled ([grpc] enabled = false)");
            None
        };
        let http = if daemon.http.enabled {
            let sources = crate::http::metrics::Sources {
                ids: ids.clone(),
                engine: stats.clone(),
                latency: latency.clone(),
                board: board.clone(),
                cabinets: cabinets.stats.clone(),
                measures: api.measures(),
                refusals: api.refusals(),
                calls: api.calls(),
                event_log: log_health.clone(),
                nats: nats_stats.clone(),
                neighbours: neighbour_stats.clone(),
            };
            let feeds = crate::http::web::Feeds {
                ids: ids.clone(),
                board: board.clone(),
                cabinets: cabinets.stats.iter().map(|(_, s)| s.clone()).collect(),
                docs: api.docs(),
                event_log: web_log,
                corridors: daemon.corridors.clone(),
            };
            let serve = crate::http::serve(&daemon.http, &daemon.grpc, api.refusals(), sources, feeds);
            Some(grpc_rt.block_on(serve).context("starting the metrics listener")?)
        } else {
            None
        };
        let scrapers = http.as_ref().map(|h| (h.auth.clone(), daemon.http.anonymous));
        let daemon_file = settings::DaemonFile::new(config_file, &daemon.grpc, scrapers);
        let reloader = Reloader::new(controllers, &intersections, daemon_file, port.clone(), Arc::new(api));
        Ok(Daemon {
            io_rt,
            grpc_rt,
            engine_thread,
            cabinets,
            grpc,
            http,
            ntcip,
            gbt20999,
            port,
            board,
            latency,
            stats,
            journal,
            reloader,
            event_log,
            log_health,
            nats,
            neighbours: neighbour_stats,
            nats_flush: daemon.nats.flush_timeout,
            stop,
            warmup,
            stats_json,
        })
    }

    /// The GB/T 20999 adapter's address bound, when `[gbt20999]` is on.
    pub fn gbt20999_addr(&self) -> Option<SocketAddr> {
        self.gbt20999.as_ref().map(|g| g.addr)
    }

    /// The gRPC address bound (the real port when the config said port 0).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|g| g.addr)
    }

    /// The metrics listener's address, when `[http]` turned it on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.addr)
    }

    /// The NTCIP agent's UDP address, when `[ntcip]` turned it on.
    pub fn ntcip_addr(&self) -> Option<SocketAddr> {
        self.ntcip.as_ref().map(|n| n.addr)
    }

    /// The way in for commands, with outcomes.
    pub fn commands(&self) -> &CommandPort {
        &self.port
    }

    /// Every intersection's latest snapshot.
    pub fn board(&self) -> &Arc<SnapshotBoard> {
        &self.board
    }

    /// Events and audit records, numbered (what StreamEvents reads).
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The corridor neighbour exchange's counters, when a corridor has
    /// remote members.
    pub fn neighbour_stats(&self) -> Option<Arc<neighbours::NeighbourStats>> {
        self.neighbours.clone()
    }

    /// The NATS publisher's counters, when `[nats]` is on.
    pub fn nats_stats(&self) -> Option<Arc<nats::NatsStats>> {
        self.nats.as_ref().map(|p| p.stats.clone())
    }

    pub fn latency(&self) -> &Arc<LatencyReader> {
        &self.latency
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// Every cabinet link's counters (live: [`crate::io::totals`] sums them).
    pub fn cabinet_stats(&self) -> Vec<(String, Arc<CabinetStats>)> {
        self.cabinets.stats.clone()
    }

    /// What SIGHUP does: validate the controllers again and stage every
    /// valid change (see [`Reloader::reload`]).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` resolves or the control thread ends, then
    /// stops through flash. Blocking (see [`run`]).
    ///
    /// # Errors
    /// The stats file could not be written.
    pub fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<Stopped, DaemonError> {
        let control = &self.engine_thread;
        let stats = self.stats.clone();
        let cause = self.io_rt.block_on(async {
            tokio::pin!(shutdown);
            let mut watch = tokio::time::interval(Duration::from_millis(100));
            let mut steps_seen = 0;
            loop {
                tokio::select! {
                    () = &mut shutdown => return StopCause::Requested,
                    _ = watch.tick() => {
                        if control.is_finished() {
                            error!("control thread ended unexpectedly: stopping");
                            return StopCause::ControlThreadEnded;
                        }
                        log_wall_steps(&stats, &mut steps_seen);
                    }
                }
            }
        });
        Ok(self.stop(cause)?)
    }

    /// Shutdown: the API stops, the engine drives every intersection to
    /// flash and ends, every cabinet gets that frame (bounded wait), the
    /// event log closes, the NATS publisher delivers what it still holds
    /// (bounded by `flush_timeout_ms`) and says what it left.
    fn stop(self, cause: StopCause) -> anyhow::Result<Stopped> {
        if let Some(grpc) = self.grpc {
            self.grpc_rt.block_on(grpc.shutdown());
        }
        if let Some(http) = self.http {
            self.grpc_rt.block_on(http.shutdown());
        }
        if let Some(ntcip) = self.ntcip {
            self.grpc_rt.block_on(ntcip.shutdown());
        }
        if let Some(adapter) = self.gbt20999 {
            self.grpc_rt.block_on(adapter.shutdown());
        }
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.port.send(EngineCommand::Shutdown);
        self.cabinets.release_clock();
        let control_panicked = self.engine_thread.join().is_err();
        if control_panicked {
            error!("control thread panicked: its outputs froze and each cabinet's watchdog flashes the intersection");
        }
        let totals = self.cabinets.summary();
        self.io_rt.block_on(self.cabinets.finish(Duration::from_secs(2)));
        info!(%totals, "cabinet links closed");
        match self.event_log.join() {
            Ok(st) => info!(
                written = st.events_written,
                dropped = st.events_dropped,
                behind = self.log_health.behind.load(Ordering::Relaxed),
                "event log closed"
            ),
            Err(_) => error!("event log thread panicked"),
        }
        // The fan-out has ended (the event log's feed closed with it), so
        // the publisher's queue holds every event it will get.
        if let Some(publisher) = self.nats {
            publisher.finish(self.nats_flush);
        }
        // After the event log closed: its final counts are in the JSON.
        if let Some(path) = &self.stats_json {
            let warm = self.warmup.lock().ok().and_then(|w| w.clone());
            let histograms = self.latency.latest_histograms();
            let json = crate::io::stats_json(&self.stats, &histograms, warm.as_ref(), &totals, &self.log_health);
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        }
        let (tick, jitter) = self.latency.latest();
        info!(%tick, %jitter, "final latency");
        self.grpc_rt.shutdown_background();
        self.io_rt.shutdown_background();
        Ok(Stopped { cause, control_panicked, cabinets: totals })
    }
}

/// Each controller file's own `time_zone` over the daemon's.
fn configure_zones(engine: &mut Engine, intersections: &[IntersectionConfig]) {
    for (i, x) in intersections.iter().enumerate() {
        if let Some(zone) = x.time_zone {
            engine.set_time_zone(i, zone);
        }
    }
}

/// What operators set over gRPC before a restart (saved beside each
/// controller file), given back to the engine before its first tick at
/// `start`. A saved state that cannot be read or run is logged and the
/// intersection runs its schedule.
fn restore_operators(engine: &mut Engine, sources: &[ControllerSource], start: Instant) {
    for (i, source) in sources.iter().enumerate() {
        let Some(file) = &source.file else { continue };
        let id = &source.config.spec.id;
        let settings = match file.operator() {
            Ok(settings) if settings == OperatorSettings::default() => continue,
            Ok(settings) => settings,
            Err(e) => {
                error!(%id, error = %e, "saved operator settings not restored: the schedule runs");
                continue;
            }
        };
        match engine.restore_operator(i, &settings, start) {
            Ok(plan_restored) => info!(
                %id,
                mode = settings.mode.map_or("scheduled", mode_word),
                plan = ?settings.selected.filter(|_| plan_restored).map(|(n, _)| n),
                coordination_reference_unix_ms = ?settings.coordination_reference.map(Instant::as_millis),
                "operator settings restored (saved over gRPC before the restart)"
            ),
            Err(e) => error!(%id, error = %e, "saved operator settings refused by the controller: not all restored"),
        }
    }
}

/// The engine counts wall-clock steps (it never logs); say so here, once each.
fn log_wall_steps(stats: &EngineStats, seen: &mut u64) {
    let steps = stats.wall_steps.load(Ordering::Relaxed);
    if steps != *seen {
        *seen = steps;
        let offset_ms = stats.wall_offset_ms.load(Ordering::Relaxed);
        tracing::warn!(
            offset_ms,
            steps,
            "wall clock stepped: time of day re-anchored (control time unbroken; no interval shortened), alarm 200/3 logged"
        );
    }
}

/// With a stats file: a copy of the latency histograms once the warm-up
/// is over, so the JSON can give the jitter without it.
fn spawn_warmup_snapshot(
    on: bool,
    warmup: Duration,
    latency: Arc<LatencyReader>,
) -> std::io::Result<Arc<std::sync::Mutex<Option<LatencyHistograms>>>> {
    let slot = Arc::new(std::sync::Mutex::new(None));
    if on {
        let out = slot.clone();
        std::thread::Builder::new().name("greenwave-warmup".into()).spawn(move || {
            std::thread::sleep(warmup);
            if let Ok(mut s) = out.lock() {
                *s = Some(latency.latest_histograms());
            }
        })?;
    }
    Ok(slot)
}

/// What the status line reports: the engine's counters and every cabinet
/// link's.
struct Status {
    engine: Arc<EngineStats>,
    cabinets: Vec<(String, Arc<CabinetStats>)>,
    log: Arc<EventLogHealth>,
    nats: Option<Arc<nats::NatsStats>>,
}

impl Status {
    /// The status line logged every 30 s without a terminal: loop health,
    /// flashes by reason, cabinet links, what was dropped.
    fn log(&self, tick: &Percentiles, jitter: &Percentiles) {
        let (e, c) = (&self.engine, crate::io::totals(&self.cabinets));
        info!(
            ticks = e.ticks.load(Ordering::Relaxed),
            overruns = e.overruns.load(Ordering::Relaxed),
            monitor_trips = e.monitor_trips.load(Ordering::Relaxed),
            flashes = %flashes_by_reason(e),
            links_up = %format_args!("{}/{}", c.links_up, c.cabinets),
            links_lost = c.links_lost,
            counter_faults = c.counter_faults,
            dropped_outputs = e.dropped_outputs.load(Ordering::Relaxed),
            dropped_events = e.dropped_events.load(Ordering::Relaxed),
            log_written = self.log.written.load(Ordering::Relaxed),
            log_held = self.log.held.load(Ordering::Relaxed),
            log_dropped = self.log.lost(),
            %tick,
            %jitter,
            "running"
        );
        if let Some(n) = &self.nats {
            info!(
                connected = n.connected.load(Ordering::Relaxed),
                events_acked = n.events_acked.load(Ordering::Relaxed),
                alarms_acked = n.alarms_acked.load(Ordering::Relaxed),
                measures_acked = n.measures_acked.load(Ordering::Relaxed),
                states_sent = n.states_sent.load(Ordering::Relaxed),
                queued = n.queued.load(Ordering::Relaxed),
                dropped = n.dropped.load(Ordering::Relaxed),
                "nats"
            );
        }
    }
}

/// Flashes entered so far, by reason (`Startup:1,CabinetLinkLost:2`), or
/// `none`.
fn flashes_by_reason(stats: &EngineStats) -> String {
    let counts: Vec<String> = FlashReason::ALL
        .into_iter()
        .filter_map(|r| {
            let n = stats.flashes[r.index()].load(Ordering::Relaxed);
            (n > 0).then(|| format!("{r:?}:{n}"))
        })
        .collect();
    if counts.is_empty() { "none".into() } else { counts.join(",") }
}

fn spawn_view(
    on: bool,
    intersections: &[IntersectionConfig],
    board: Arc<SnapshotBoard>,
    latency: Arc<LatencyReader>,
    status: Status,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let views: Vec<ViewIntersection> = intersections
        .iter()
        .map(|x| ViewIntersection {
            id: x.spec.id.clone(),
            phase_names: x.spec.phases.iter().map(|p| (p.id.number(), p.name.clone())).collect(),
        })
        .collect();
    std::thread::Builder::new().name("greenwave-view".into()).spawn(move || {
        use std::sync::atomic::Ordering::Relaxed;
        let mut last_log = std::time::Instant::now();
        while !stop.load(Relaxed) {
            // Reading the latency also hands the engine its spare
            // histograms back, so it keeps publishing.
            let figures = latency.latest();
            std::thread::sleep(Duration::from_millis(500));
            if on {
                print!("{}", view::render(&views, &board, figures));
            } else if last_log.elapsed() >= Duration::from_secs(30) {
                last_log = std::time::Instant::now();
                let (tick, jitter) = figures;
                status.log(&tick, &jitter);
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_each_flash_reason_seen() {
        let stats = EngineStats::default();
        assert_eq!(flashes_by_reason(&stats), "none");
        stats.flashes[FlashReason::Startup.index()].fetch_add(2, Ordering::Relaxed);
        stats.flashes[FlashReason::CabinetLinkLost.index()].fetch_add(1, Ordering::Relaxed);
        assert_eq!(flashes_by_reason(&stats), "Startup:2,CabinetLinkLost:1");
    }
}
