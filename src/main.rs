//! `greenwave`: the daemon and its engineer tools. Thin glue: arguments,
//! config, threads, signals. The work lives in the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use crossbeam_channel::Sender;
use tracing::{error, info, warn};

use greenwave::config::{self, IntersectionConfig};
use greenwave::core::spec::CivilTime;
use greenwave::core::{Command, Span};
use greenwave::engine::board::SnapshotBoard;
use greenwave::engine::{Engine, EngineCommand, EngineConfig, EngineIo};
use greenwave::replay::{self, DetectorLog};
use greenwave::telemetry;
use greenwave::view::{self, ViewIntersection};

/// EX_CONFIG from sysexits.h: the configuration is invalid.
const EX_CONFIG: u8 = 78;

#[derive(Parser, Debug)]
#[command(name = "greenwave", version, about = "Real-time adaptive traffic signal controller")]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon. With no controllers directory it runs the embedded
    /// default: the shipped intersections on simulated cabinets and traffic.
    Run(RunArgs),
    /// Validate controller files (or folders of them); every error with
    /// file, key and reason. Exits 78 if any file has errors.
    Check {
        /// Files or directories (default: controllers/).
        paths: Vec<PathBuf>,
    },
    /// Run a recorded detector log through a controller at full speed and
    /// write the Indiana event log.
    Replay {
        /// The controller file.
        #[arg(long)]
        controller: PathBuf,
        /// Detector log (CSV: time_s,channel,presence).
        #[arg(long)]
        detectors: PathBuf,
        /// Event log to write (CSV; ATSPM import format).
        #[arg(long)]
        events: PathBuf,
        #[arg(long, default_value_t = 100)]
        tick_ms: u64,
    },
    /// Serve simulated cabinets over Modbus (traffic generator, MMU,
    /// watchdog): what `greenwave run` drives when no hardware is there.
    SimCabinet(SimCabinetArgs),
    /// gRPC bearer tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Run a controller on its simulated traffic at full speed.
    Simulate {
        #[arg(long)]
        controller: PathBuf,
        /// Simulated seconds.
        #[arg(long, default_value_t = 3600)]
        duration_s: u64,
        #[arg(long)]
        events: Option<PathBuf>,
        /// Also write the detector log the traffic produced (for replay).
        #[arg(long)]
        record_detectors: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        tick_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Read a token on stdin and print the SHA-256 that `[[grpc.token]]
    /// sha256` takes (greenwave.toml stores only the hash).
    Hash,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Daemon config file (default: greenwave.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Controllers directory (overrides the config file).
    #[arg(long)]
    controllers: Option<PathBuf>,
    /// No live terminal view (log lines instead).
    #[arg(long)]
    no_view: bool,
    /// Stop (as on SIGTERM) after this many seconds: smoke tests, demos.
    #[arg(long)]
    duration_s: Option<u64>,
    /// Serve the gRPC API on this address (overrides `[grpc] listen`;
    /// port 0 picks a free port, logged as "gRPC on ADDR").
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<std::net::SocketAddr>,
    /// On exit, write engine and cabinet figures (tick latency, deadline
    /// jitter, cabinet RTT and error counts) to this JSON file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// Jitter in the stats JSON is also given without the first this many
    /// seconds (connections being set up).
    #[arg(long, default_value_t = 10)]
    stats_warmup_s: u64,
}

#[derive(Args, Debug)]
struct SimCabinetArgs {
    /// Address of the first cabinet; cabinet n listens on the port after
    /// cabinet n-1's (port 0: an ephemeral port each).
    #[arg(long, default_value = "127.0.0.1:5020")]
    listen: std::net::SocketAddr,
    /// Controllers directory (default: the shipped intersections, built in).
    #[arg(long)]
    controllers: Option<PathBuf>,
    /// Serve this many cabinets, cycling through the intersections (ids get
    /// a -0001, -0002, ... suffix); for scale tests.
    #[arg(long)]
    count: Option<usize>,
    /// Lockstep simulation: simulated time advances one tick each time every
    /// cabinet has acknowledged the current one (daemon with clock = "cabinet").
    #[arg(long)]
    lockstep: bool,
    /// Lockstep step (the daemon's tick).
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// Serve RTU framing over TCP instead of Modbus TCP.
    #[arg(long)]
    rtu_over_tcp: bool,
    #[arg(long, default_value_t = 1)]
    unit_id: u8,
    /// Write a controller file per cabinet here, each pointing at its port
    /// (`greenwave run --controllers DIR` then drives them all).
    #[arg(long)]
    write_controllers: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration_s: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_tracing(cli.log_json);
    let result = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::SimCabinet(args) => sim_cabinet_cmd(args),
        Cmd::Check { paths } => Ok(check(paths)),
        Cmd::Token(TokenCmd::Hash) => token_hash(),
        Cmd::Replay { controller, detectors, events, tick_ms } => replay_cmd(&controller, &detectors, &events, tick_ms),
        Cmd::Simulate { controller, duration_s, events, record_detectors, tick_ms } => {
            simulate_cmd(&controller, duration_s, events.as_deref(), record_detectors.as_deref(), tick_ms)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("greenwave: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `greenwave token hash`: the token from stdin (one line), its SHA-256 on stdout.
fn token_hash() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the token from stdin")?;
    let token = line.trim_end_matches(['\r', '\n']);
    if token.chars().count() < greenwave::api::auth::MIN_TOKEN_LEN {
        bail!(
            "a token must be a long random secret (at least {} characters, e.g. `openssl rand -hex 32`)",
            greenwave::api::auth::MIN_TOKEN_LEN
        );
    }
    println!("{}", greenwave::api::auth::hash_token(token));
    Ok(ExitCode::SUCCESS)
}

fn check(paths: Vec<PathBuf>) -> ExitCode {
    let paths = if paths.is_empty() { vec![PathBuf::from("controllers")] } else { paths };
    let report = config::check_report(&paths);
    print!("{}", report.render());
    if report.has_errors() { ExitCode::from(EX_CONFIG) } else { ExitCode::SUCCESS }
}

/// Load one controller file for the engineer tools, printing every error.
fn load_one(path: &Path) -> anyhow::Result<IntersectionConfig> {
    match config::load_intersection(path) {
        Ok((cfg, warnings)) => {
            for w in warnings {
                warn!("{w}");
            }
            Ok(cfg)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            bail!("{} has {} configuration errors", path.display(), errors.len())
        }
    }
}

fn write_events(path: &Path, signal_id: &str, events: &[greenwave::core::Event]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = telemetry::eventlog::event_file(signal_id, events, telemetry::eventlog::LogTimeZone::Utc)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn replay_cmd(controller: &Path, detectors: &Path, events: &Path, tick_ms: u64) -> anyhow::Result<ExitCode> {
    let cfg = load_one(controller)?;
    let log = DetectorLog::load(detectors).with_context(|| format!("reading {}", detectors.display()))?;
    let started = std::time::Instant::now();
    let out = replay::replay(cfg.spec.clone(), &log, Span::from_millis(tick_ms), None);
    write_events(events, &cfg.spec.id, &out.events)?;
    println!(
        "replayed {} detector changes: {} ticks ({:.0} s simulated) in {:.2} s, {} events → {}, monitor trips: {}",
        log.changes.len(),
        out.ticks,
        out.ticks as f64 * tick_ms as f64 / 1000.0,
        started.elapsed().as_secs_f64(),
        out.events.len(),
        events.display(),
        out.monitor_trips
    );
    Ok(if out.monitor_trips == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn simulate_cmd(
    controller: &Path,
    duration_s: u64,
    events: Option<&Path>,
    record: Option<&Path>,
    tick_ms: u64,
) -> anyhow::Result<ExitCode> {
    let cfg = load_one(controller)?;
    let started = std::time::Instant::now();
    let (out, log, cabinet) = replay::simulate(&cfg, Span::from_millis(tick_ms), Span::from_secs(duration_s));
    if let Some(path) = events {
        write_events(path, &cfg.spec.id, &out.events)?;
    }
    if let Some(path) = record {
        std::fs::write(path, log.to_csv()).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{}: {} s simulated in {:.2} s, {} ticks, {} events, monitor trips: {}",
        cfg.spec.id,
        duration_s,
        started.elapsed().as_secs_f64(),
        out.ticks,
        out.events.len(),
        out.monitor_trips
    );
    println!("{:<10} {:>8} {:>8} {:>10} {:>12}", "detector", "arrived", "served", "max queue", "mean delay");
    for lane in cabinet.generator().lane_stats() {
        println!(
            "{:<10} {:>8} {:>8} {:>10} {:>11.1}s",
            lane.detector.number(),
            lane.arrived,
            lane.departed,
            lane.max_queue,
            lane.mean_stopped_delay().map(|d| d.as_secs_f64()).unwrap_or(0.0)
        );
    }
    Ok(if out.monitor_trips == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Where the intersections come from: a controllers directory, or the
/// embedded default.
enum Source {
    Dir(PathBuf),
    Embedded,
}

/// The shipped intersections, compiled in: `greenwave run` works from any
/// directory with no files at all.
const EMBEDDED: [(&str, &str); 3] = [
    ("broadway-and-5th.toml", include_str!("../controllers/broadway-and-5th.toml")),
    ("elm-and-oak.toml", include_str!("../controllers/elm-and-oak.toml")),
    ("river-rd-and-mill-st.toml", include_str!("../controllers/river-rd-and-mill-st.toml")),
];

fn load_source(source: &Source) -> Result<Vec<IntersectionConfig>, Vec<String>> {
    let loaded = match source {
        Source::Dir(dir) => config::load_dir(dir),
        Source::Embedded => {
            let mut configs = Vec::new();
            let mut errors = Vec::new();
            for (name, text) in EMBEDDED {
                match config::load_intersection_str(name, text) {
                    Ok(ok) => configs.push(ok),
                    Err(e) => errors.extend(e),
                }
            }
            if errors.is_empty() { Ok(configs) } else { Err(errors) }
        }
    };
    match loaded {
        Ok(configs) => Ok(configs
            .into_iter()
            .map(|(cfg, warnings)| {
                for w in warnings {
                    warn!("{w}");
                }
                cfg
            })
            .collect()),
        Err(errors) => Err(errors.iter().map(ToString::to_string).collect()),
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config_path = args.config.clone().or_else(|| Some(PathBuf::from("greenwave.toml")).filter(|p| p.exists()));
    let daemon = match config::daemon::DaemonConfig::load(config_path.as_deref()) {
        Ok(d) => d,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    let mut daemon = daemon;
    if let Some(addr) = args.grpc_listen
        && let Err(reason) = daemon.grpc.override_listen(addr)
    {
        eprintln!("greenwave: --grpc-listen: {reason}");
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let dir = args.controllers.clone().unwrap_or_else(|| daemon.controllers.clone());
    // The embedded (simulated) default is only for a bare `greenwave run`:
    // a configured directory that is missing is an error, never a silent
    // switch to simulated cabinets.
    let explicit = args.controllers.is_some() || config_path.is_some();
    let source = match (dir.is_dir(), explicit) {
        (true, _) => Source::Dir(dir),
        (false, false) => Source::Embedded,
        (false, true) => {
            eprintln!("greenwave: controllers directory {} does not exist", dir.display());
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    let intersections = match load_source(&source) {
        Ok(i) => i,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("greenwave: {} configuration errors; nothing started", errors.len());
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    if intersections.is_empty() {
        bail!("no intersections configured");
    }
    let all_ids: Vec<String> = intersections.iter().map(|x| x.spec.id.clone()).collect();
    let config_file = config_path.clone().unwrap_or_else(|| PathBuf::from("greenwave.toml"));
    let corridors = match config::corridor::resolve(&daemon.corridors, &all_ids, &config_file) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("greenwave: {} configuration errors; nothing started", errors.len());
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    match &source {
        Source::Dir(d) => info!(controllers = %d.display(), count = intersections.len(), "loaded intersections"),
        Source::Embedded => info!(
            count = intersections.len(),
            "no controllers directory: running the embedded default on simulated cabinets"
        ),
    }
    // Cabinet I/O (and the embedded simulated cabinets, served over
    // loopback Modbus) on its own runtime, resolved before the engine starts.
    let tick = Span::from_millis(daemon.tick_ms);
    let io_rt = greenwave::io::runtime()?;
    let mut plan = greenwave::io::CabinetPlan::new(&io_rt, &intersections, tick, daemon.clock)?;
    let ecfg = EngineConfig { tick, ..EngineConfig::default() };
    let specs = intersections.iter().map(|x| x.spec.clone()).collect();
    let (mut engine, io) = Engine::new(specs, ecfg, plan.start_time(&io_rt)?);
    plan.configure(&mut engine);
    for (resolved, c) in corridors.into_iter().zip(&daemon.corridors) {
        let name = c.name.clone().unwrap_or_else(|| c.members.join(" – "));
        let members = resolved.members.len();
        info!(corridor = %name, members, "corridor: adaptive members share a cycle and green-wave offsets");
        engine.add_corridor(name, resolved.members, &resolved.travel);
    }
    let EngineIo { commands, inputs, camera, outputs, snapshots, events, retired, latency, stats } = io;
    let ids: Vec<String> = intersections.iter().map(|x| x.spec.id.clone()).collect();

    let board = SnapshotBoard::new(intersections.len());
    board.spawn_feeder(snapshots)?;
    let log_cfg = telemetry::eventlog::EventLogConfig {
        dir: daemon.event_log.dir.clone(),
        max_file_bytes: daemon.event_log.max_file_bytes,
        keep_files: daemon.event_log.keep_files,
        time_zone: telemetry::eventlog::LogTimeZone::Local,
    };
    info!(dir = %log_cfg.dir.display(), "Indiana event log");
    // The event hub sits between the engine and the event log: it numbers
    // every event for gRPC StreamEvents and forwards it to the log.
    let api = greenwave::api::Api::new(api_sources(&source, &intersections)?, daemon.grpc.limits.event_history)?;
    let (events, _hub) = api.spawn_event_hub(events)?;
    let event_log = telemetry::eventlog::spawn_event_log_thread(events, ids.clone(), log_cfg)?;
    // The control thread hands replaced specs back here to be dropped (no
    // deallocation on the control thread); each one means a reload is now
    // in force.
    std::thread::Builder::new().name("greenwave-retired".into()).spawn(move || {
        for old in retired.iter() {
            info!(intersection = %old.id, "reloaded configuration in force (applied at the barrier)");
        }
    })?;
    let (cabinets, clock) = plan.spawn(&io_rt, outputs, inputs, stats.clone());
    let engine_thread = clock.spawn(engine)?;
    info!(tick_ms = daemon.tick_ms, intersections = ids.len(), "control thread running");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    spawn_schedule(&intersections, commands.clone(), stop.clone())?;
    let view_on = daemon.view && !args.no_view && std::io::stdout().is_terminal();
    let latency = Arc::new(latency);
    spawn_view(view_on, &intersections, board.clone(), latency.clone(), stats.clone(), stop.clone())?;

    let warmup = spawn_warmup_snapshot(args.stats_json.is_some(), args.stats_warmup_s, latency.clone())?;
    let grpc_rt = greenwave::api::runtime()?;
    let handles = greenwave::api::EngineHandles {
        commands: commands.clone(),
        camera,
        board: board.clone(),
        latency: latency.clone(),
    };
    let grpc = grpc_rt.block_on(serve_grpc(&api, &daemon.grpc, handles))?;
    let stopped_by = io_rt.block_on(wait_for_signals(&source, &ids, &commands, &api, &engine_thread, args.duration_s));
    if let Some(grpc) = grpc {
        grpc_rt.block_on(grpc.shutdown());
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = commands.send(EngineCommand::Shutdown);
    cabinets.release_clock();
    let control_panicked = engine_thread.join().is_err();
    if control_panicked {
        error!("control thread panicked: its outputs froze and each cabinet's watchdog flashes the intersection");
    }
    // The engine's last frame is flash: every cabinet gets it (bounded wait).
    let totals = cabinets.summary();
    io_rt.block_on(cabinets.finish(Duration::from_secs(2)));
    info!(%totals, "cabinet links closed");
    if let Some(path) = &args.stats_json {
        let warm = warmup.lock().ok().and_then(|w| w.clone());
        let json = greenwave::io::stats_json(&stats, &latency.latest_histograms(), warm.as_ref(), &totals);
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    match event_log.join() {
        Ok(Ok(st)) => info!(written = st.events_written, dropped = st.events_dropped, "event log closed"),
        Ok(Err(e)) => error!(error = %e, "event log failed"),
        Err(_) => error!("event log thread panicked"),
    }
    let (tick, jitter) = latency.latest();
    info!(%tick, %jitter, "final latency");
    if stopped_by != StoppedBy::Request || control_panicked {
        error!(?stopped_by, control_panicked, "greenwave stopped after a failure");
        return Ok(ExitCode::FAILURE);
    }
    info!("signals driven to flash; greenwave stopped");
    Ok(ExitCode::SUCCESS)
}

/// What ended the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoppedBy {
    Request,
    /// The control thread ended on its own: it panicked.
    ControlThreadEnded,
    /// No signal handlers: the daemon could never be stopped cleanly.
    NoSignalHandlers,
}

/// Signals: SIGINT (Ctrl-C at a terminal) and SIGTERM (systemd, container
/// runtimes) stop the daemon; SIGHUP reloads the controllers. Serves
/// reloads until a stop signal, the run duration, or the control thread
/// ending (checked every 100 ms, so the daemon says so at
/// once and exits with an error for the supervisor to restart it).
async fn wait_for_signals(
    source: &Source,
    ids: &[String],
    commands: &Sender<EngineCommand>,
    api: &greenwave::api::Api,
    control: &std::thread::JoinHandle<()>,
    duration_s: Option<u64>,
) -> StoppedBy {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        error!("cannot install signal handlers; stopping");
        return StoppedBy::NoSignalHandlers;
    };
    info!("ready: SIGHUP reloads the controllers, SIGTERM or Ctrl-C stops");
    let deadline = async {
        match duration_s {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut watch = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: stopping"); return StoppedBy::Request; }
            _ = int.recv() => { info!("SIGINT: stopping"); return StoppedBy::Request; }
            _ = &mut deadline => { info!("run duration reached: stopping"); return StoppedBy::Request; }
            _ = hup.recv() => reload(source, ids, commands, api),
            _ = watch.tick() => if control.is_finished() {
                error!("control thread ended unexpectedly: stopping");
                return StoppedBy::ControlThreadEnded;
            },
        }
    }
}

/// Validate the controllers again and stage every valid change; on any
/// error keep everything that runs now.
fn reload(source: &Source, ids: &[String], commands: &Sender<EngineCommand>, api: &greenwave::api::Api) {
    info!("SIGHUP: reloading controllers");
    let configs = match load_source(source) {
        Ok(c) => c,
        Err(errors) => {
            error!(errors = errors.len(), "reload rejected; running plans kept");
            for e in errors {
                error!("{e}");
            }
            return;
        }
    };
    for cfg in configs {
        let id = cfg.spec.id.clone();
        match ids.iter().position(|x| *x == id) {
            Some(intersection) => {
                // The API edits plans on top of what is in force: from now
                // on, on top of the reloaded file.
                if let Ok(text) = std::fs::read_to_string(&cfg.source) {
                    api.reloaded(intersection, cfg.clone(), &text);
                }
                let command = Command::LoadSpec(Box::new(cfg.spec));
                if commands.send(EngineCommand::Controller { intersection, command }).is_ok() {
                    info!(%id, "reload staged: applies at the next barrier");
                }
            }
            None => warn!(%id, "new intersection in the controllers directory: takes effect on restart"),
        }
    }
}

/// Starts the gRPC API unless `[grpc] enabled = false`.
async fn serve_grpc(
    api: &greenwave::api::Api,
    cfg: &greenwave::config::GrpcConfig,
    engine: greenwave::api::EngineHandles,
) -> anyhow::Result<Option<greenwave::api::GrpcServer>> {
    if !cfg.enabled {
        info!("gRPC API disabled ([grpc] enabled = false)");
        return Ok(None);
    }
    Ok(Some(api.serve(cfg, engine).await?))
}

/// Each intersection's controller file text, for the API's plan editor.
fn api_sources(
    source: &Source,
    intersections: &[IntersectionConfig],
) -> anyhow::Result<Vec<greenwave::api::ControllerSource>> {
    intersections
        .iter()
        .map(|x| {
            let file_name = x.source.display().to_string();
            let toml = match source {
                Source::Dir(_) => std::fs::read_to_string(&x.source)
                    .with_context(|| format!("reading {file_name} again for the gRPC API"))?,
                Source::Embedded => EMBEDDED
                    .iter()
                    .find(|(name, _)| Path::new(name) == x.source)
                    .map(|(_, text)| (*text).to_owned())
                    .with_context(|| format!("{file_name} is not an embedded controller"))?,
            };
            Ok(greenwave::api::ControllerSource { config: x.clone(), file_name, toml })
        })
        .collect()
}

/// `greenwave sim-cabinet`: the intersections of a directory (or the
/// shipped ones) as simulated Modbus cabinets.
fn sim_cabinet_cmd(args: SimCabinetArgs) -> anyhow::Result<ExitCode> {
    let texts: Vec<(String, String)> = match &args.controllers {
        Some(dir) => config::controller_files(dir)?
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
                Ok((p.display().to_string(), text))
            })
            .collect::<anyhow::Result<_>>()?,
        None => EMBEDDED.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect(),
    };
    let mut loaded = Vec::new();
    let mut errors = 0;
    for (name, text) in texts {
        match config::load_intersection_str(&name, &text) {
            Ok((cfg, _)) => loaded.push((cfg, text)),
            Err(e) => {
                errors += e.len();
                e.iter().for_each(|e| eprintln!("{e}"));
            }
        }
    }
    if errors > 0 {
        eprintln!("greenwave: {errors} configuration errors; nothing started");
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let opts = greenwave::io::SimCabinetOptions {
        listen: args.listen,
        count: args.count,
        lockstep: args.lockstep,
        tick: Span::from_millis(args.tick_ms),
        rtu_over_tcp: args.rtu_over_tcp,
        unit_id: args.unit_id,
        write_controllers: args.write_controllers,
        duration: args.duration_s.map(Duration::from_secs),
    };
    greenwave::io::serve_sim_cabinets(&loaded, &opts)?;
    Ok(ExitCode::SUCCESS)
}

/// With `--stats-json`: a copy of the latency histograms once the warm-up
/// is over, so the JSON can give the jitter without it.
fn spawn_warmup_snapshot(
    on: bool,
    warmup_s: u64,
    latency: Arc<greenwave::engine::latency::LatencyReader>,
) -> std::io::Result<Arc<std::sync::Mutex<Option<greenwave::engine::latency::LatencyHistograms>>>> {
    let slot = Arc::new(std::sync::Mutex::new(None));
    if on {
        let out = slot.clone();
        std::thread::Builder::new().name("greenwave-warmup".into()).spawn(move || {
            std::thread::sleep(Duration::from_secs(warmup_s));
            if let Ok(mut s) = out.lock() {
                *s = Some(latency.latest_histograms());
            }
        })?;
    }
    Ok(slot)
}

/// The time-of-day schedule: every few seconds, ask each intersection for
/// the plan its schedule wants now (the controller applies it at a barrier).
fn spawn_schedule(
    intersections: &[IntersectionConfig],
    commands: Sender<EngineCommand>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    let schedules: Vec<_> = intersections.iter().map(|x| x.spec.schedule.clone()).collect();
    std::thread::Builder::new().name("greenwave-schedule".into()).spawn(move || {
        use chrono::{Datelike, Local, Timelike};
        let mut last: Vec<Option<u8>> = vec![None; schedules.len()];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let now = Local::now();
            let t = CivilTime {
                year: now.year(),
                month: now.month() as u8,
                day: now.day() as u8,
                weekday: now.weekday().num_days_from_monday() as u8,
                minute_of_day: (now.hour() * 60 + now.minute()) as u16,
            };
            for (i, s) in schedules.iter().enumerate() {
                let want = s.plan_at(t);
                if let Some(plan) = want
                    && want != last[i]
                {
                    last[i] = want;
                    let command = Command::SelectPlan(plan);
                    let _ = commands.send(EngineCommand::Controller { intersection: i, command });
                }
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    })?;
    Ok(())
}

fn spawn_view(
    on: bool,
    intersections: &[IntersectionConfig],
    board: Arc<SnapshotBoard>,
    latency: Arc<greenwave::engine::latency::LatencyReader>,
    stats: Arc<greenwave::engine::EngineStats>,
    stop: Arc<std::sync::atomic::AtomicBool>,
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
            if on {
                print!("{}", view::render(&views, &board, figures));
                std::thread::sleep(Duration::from_millis(500));
            } else {
                std::thread::sleep(Duration::from_millis(500));
                if last_log.elapsed() >= Duration::from_secs(30) {
                    last_log = std::time::Instant::now();
                    let (tick, jitter) = figures;
                    info!(
                        ticks = stats.ticks.load(Relaxed),
                        overruns = stats.overruns.load(Relaxed),
                        monitor_trips = stats.monitor_trips.load(Relaxed),
                        %tick,
                        %jitter,
                        "running"
                    );
                }
            }
        }
    })?;
    Ok(())
}
