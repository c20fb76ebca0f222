//! `greenwave`: the daemon and its engineer tools. Thin glue: arguments
//! and signals in, the library's calls, exit codes out.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tracing::{error, info, warn};

use greenwave::config::{self, IntersectionConfig};
use greenwave::core::{Instant, Span};
use greenwave::daemon::{self, Controllers, Daemon, DaemonError, Reloader};
use greenwave::replay::{self, DetectorLog, SimTime};
use greenwave::telemetry;

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
        /// Control tick, 10..=1000 ms (as the daemon's `tick_ms`).
        #[arg(long, default_value_t = 100, value_parser = tick_ms)]
        tick_ms: u64,
        #[command(flatten)]
        time: SimTimeArgs,
    },
    /// Serve simulated cabinets over Modbus (traffic generator, MMU,
    /// watchdog): what `greenwave run` drives when no hardware is there.
    SimCabinet(SimCabinetArgs),
    /// gRPC bearer tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Performance measures of an event log (ATSPM definitions, 15-minute
    /// bins; docs/measures.md), as CSV lines
    /// `bin_start_unix_ms,measure,phase_or_detector,value`.
    Measures {
        /// The controller file: its detectors say what each one measures.
        #[arg(long)]
        controller: PathBuf,
        /// Event log (CSV, ATSPM import layout, UTC); lines of other
        /// signals are skipped.
        #[arg(long)]
        events: PathBuf,
    },
    /// Run a controller on its simulated traffic at full speed.
    Simulate {
        #[arg(long)]
        controller: PathBuf,
        /// Simulated seconds, 1..=31622400 (366 days).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_622_400))]
        duration_s: u64,
        #[arg(long)]
        events: Option<PathBuf>,
        /// Also write the detector log the traffic produced (for replay).
        #[arg(long)]
        record_detectors: Option<PathBuf>,
        /// Control tick, 10..=1000 ms (as the daemon's `tick_ms`).
        #[arg(long, default_value_t = 100, value_parser = tick_ms)]
        tick_ms: u64,
        #[command(flatten)]
        time: SimTimeArgs,
    },
}

/// Simulated time for `replay` and `simulate`: the schedule follows it.
#[derive(Args, Debug)]
struct SimTimeArgs {
    /// Wall-clock time at the start, RFC 3339 (e.g. 2026-12-07T06:58:00+08:00);
    /// default 2026-01-05T00:00:00Z, a Monday.
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// IANA zone the time-of-day schedule is read in, where the controller
    /// file sets none (default UTC).
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<String>,
}

impl SimTimeArgs {
    fn resolve(&self) -> anyhow::Result<SimTime> {
        let mut at = SimTime::default();
        if let Some(text) = &self.start {
            let t = chrono::DateTime::parse_from_rfc3339(text)
                .with_context(|| format!("--start {text:?}: not an RFC 3339 time like 2026-12-07T06:58:00+08:00"))?;
            let ms = u64::try_from(t.timestamp_millis()).with_context(|| format!("--start {text:?}: before 1970"))?;
            at.start = Instant::from_millis(ms);
        }
        if let Some(zone) = &self.time_zone {
            at.time_zone = config::daemon::parse_time_zone(zone).map_err(|e| anyhow::anyhow!("--time-zone: {e}"))?;
        }
        Ok(at)
    }
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
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
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
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
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
    /// a -0001, -0002, ... suffix); for scale tests. 1..=10000.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    count: Option<u64>,
    /// Lockstep simulation: simulated time advances one tick each time every
    /// cabinet has acknowledged the current one (daemon with clock = "cabinet").
    #[arg(long)]
    lockstep: bool,
    /// Lockstep step (the daemon's tick), 10..=1000 ms.
    #[arg(long, default_value_t = 100, value_parser = tick_ms)]
    tick_ms: u64,
    /// Serve RTU framing over TCP instead of Modbus TCP.
    #[arg(long)]
    rtu_over_tcp: bool,
    /// Modbus unit id the cabinets answer to, 1..=247.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=247))]
    unit_id: u8,
    /// Write a controller file per cabinet here, each pointing at its port
    /// (`greenwave run --controllers DIR` then drives them all).
    #[arg(long)]
    write_controllers: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    duration_s: Option<u64>,
    /// On exit, write what the cabinets saw (writes, the gaps between two
    /// writes to a cabinet, flash reasons written, MMU faults) to this JSON file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
}

/// `--tick-ms`: the daemon's range ([`config::daemon::TICK_MS_RANGE`]).
fn tick_ms(text: &str) -> Result<u64, String> {
    let range = config::daemon::TICK_MS_RANGE;
    let ms: u64 = text.parse().map_err(|_| format!("{text:?} is not a whole number of milliseconds"))?;
    if range.contains(&ms) { Ok(ms) } else { Err(format!("{ms} ms is outside {}..={} ms", range.start(), range.end())) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_tracing(cli.log_json);
    let result = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::SimCabinet(args) => sim_cabinet_cmd(args),
        Cmd::Check { paths } => Ok(check(paths)),
        Cmd::Token(TokenCmd::Hash) => token_hash(),
        Cmd::Replay { controller, detectors, events, tick_ms, time } => {
            replay_cmd(&controller, &detectors, &events, tick_ms, &time)
        }
        Cmd::Measures { controller, events } => measures_cmd(&controller, &events),
        Cmd::Simulate { controller, duration_s, events, record_detectors, tick_ms, time } => {
            simulate_cmd(&controller, duration_s, events.as_deref(), record_detectors.as_deref(), tick_ms, &time)
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

fn replay_cmd(
    controller: &Path,
    detectors: &Path,
    events: &Path,
    tick_ms: u64,
    time: &SimTimeArgs,
) -> anyhow::Result<ExitCode> {
    let cfg = load_one(controller)?;
    let mut at = time.resolve()?;
    at.time_zone = cfg.time_zone.unwrap_or(at.time_zone);
    let log = DetectorLog::load(detectors).with_context(|| format!("reading {}", detectors.display()))?;
    let started = std::time::Instant::now();
    let out = replay::replay(cfg.spec.clone(), &log, Span::from_millis(tick_ms), None, at);
    write_events(events, &cfg.spec.id, &out.events)?;
    if out.skipped_changes > 0 {
        let channels: Vec<String> =
            (0..64).filter(|b| out.skipped_channels & (1 << b) != 0).map(|b| (b + 1).to_string()).collect();
        tracing::warn!(
            "{} of {} detector changes skipped: {} has no detector on channel {}",
            out.skipped_changes,
            log.changes.len(),
            controller.display(),
            channels.join(", ")
        );
    }
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

fn measures_cmd(controller: &Path, events: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load_one(controller)?;
    let log = telemetry::eventlog::read_event_log(events).with_context(|| format!("reading {}", events.display()))?;
    let own = log.into_iter().filter(|(id, ..)| *id == cfg.spec.id).map(|(_, at, code, param)| (at, code, param));
    let m = greenwave::api::measures::measure_log(&cfg.spec, own);
    let mut out = String::from("bin_start_unix_ms,measure,phase_or_detector,value\n");
    for bin in &m.bins {
        let start = bin.start.as_millis();
        for (p, c) in &bin.phases {
            for (name, value) in [
                ("volume", c.volume),
                ("arrivals", c.arrivals),
                ("arrivals_on_green", c.arrivals_on_green),
                ("greens", c.greens),
                ("split_failures", c.split_failures),
                ("ped_actuations", c.ped_actuations),
                ("ped_walks", c.ped_walks),
                ("ped_waits", c.ped_waits),
                ("ped_delay_ms", c.ped_delay_ms),
                ("arrivals_on_red", c.arrivals_on_red),
                ("approach_delay_ms", c.approach_delay_ms),
                ("priority_requests", c.priority_requests),
                ("priority_services", c.priority_services),
            ] {
                out.push_str(&format!("{start},{name},{},{value}\n", p.number()));
            }
        }
        for lane in &bin.lanes {
            out.push_str(&format!("{start},lane_volume,{},{}\n", lane.detector.number(), lane.volume));
        }
        for (input, c) in &bin.preempts {
            for (name, value) in [
                ("preempt_requests", c.requests),
                ("preempt_services", c.services),
                ("preempt_input_on_ms", c.input_on_ms),
                ("preempt_dwells", c.dwells),
                ("preempt_dwell_ms", c.dwell_ms),
            ] {
                out.push_str(&format!("{start},{name},{input},{value}\n"));
            }
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn simulate_cmd(
    controller: &Path,
    duration_s: u64,
    events: Option<&Path>,
    record: Option<&Path>,
    tick_ms: u64,
    time: &SimTimeArgs,
) -> anyhow::Result<ExitCode> {
    let cfg = load_one(controller)?;
    let at = time.resolve()?;
    let started = std::time::Instant::now();
    let (out, log, cabinet) = replay::simulate(&cfg, Span::from_millis(tick_ms), Span::from_secs(duration_s), at);
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

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config_path = args.config.clone().or_else(|| Some(PathBuf::from("greenwave.toml")).filter(|p| p.exists()));
    let mut config = match config::DaemonConfig::load(config_path.as_deref()) {
        Ok(d) => d,
        Err(errors) => return Ok(config_errors(errors.iter().map(ToString::to_string))),
    };
    if let Some(addr) = args.grpc_listen
        && let Err(reason) = config.grpc.override_listen(addr)
    {
        eprintln!("greenwave: --grpc-listen: {reason}");
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let dir = args.controllers.clone().unwrap_or_else(|| config.controllers.clone());
    // The embedded (simulated) default is only for a bare `greenwave run`:
    // a configured directory that is missing is an error, never a silent
    // switch to simulated cabinets.
    let explicit = args.controllers.is_some() || config_path.is_some();
    let controllers = match (dir.is_dir(), explicit) {
        (true, _) => Controllers::Dir(dir),
        (false, false) => Controllers::Embedded,
        (false, true) => {
            eprintln!("greenwave: controllers directory {} does not exist", dir.display());
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    // Locked memory (`greenwave::realtime`) is process-wide, so the process
    // asks, not the library; a lockstep simulation needs it not.
    if config.clock == config::ClockSource::System {
        greenwave::realtime::lock_memory();
    }
    let options = daemon::Options {
        config,
        config_file: config_path.unwrap_or_else(|| PathBuf::from("greenwave.toml")),
        controllers,
        view: !args.no_view,
        stats_json: args.stats_json,
        stats_warmup: Duration::from_secs(args.stats_warmup_s),
    };
    let daemon = match Daemon::start(options) {
        Ok(d) => d,
        Err(DaemonError::Config(errors)) => return Ok(config_errors(errors)),
        Err(e) => return Err(e.into()),
    };
    let no_handlers = Cell::new(false);
    let duration = args.duration_s.map(Duration::from_secs);
    let reloader = daemon.reloader();
    let stopped = daemon.run_until(signals(reloader, duration, &no_handlers))?;
    if !stopped.is_clean() || no_handlers.get() {
        error!(cause = ?stopped.cause, control_panicked = stopped.control_panicked, no_signal_handlers = no_handlers.get(), "greenwave stopped after a failure");
        return Ok(ExitCode::FAILURE);
    }
    info!("signals driven to flash; greenwave stopped");
    Ok(ExitCode::SUCCESS)
}

/// Every configuration error on stderr; nothing started (exit 78).
fn config_errors(errors: impl IntoIterator<Item = String>) -> ExitCode {
    let mut count = 0;
    for e in errors {
        eprintln!("{e}");
        count += 1;
    }
    eprintln!("greenwave: {count} configuration errors; nothing started");
    ExitCode::from(EX_CONFIG)
}

/// Signals: SIGINT (Ctrl-C at a terminal) and SIGTERM (systemd, container
/// runtimes) stop the daemon; SIGHUP reloads the controllers. Resolves on a
/// stop signal or after `duration`; at once, flagging `no_handlers`, when
/// the handlers cannot be installed (the daemon could never be stopped
/// cleanly).
async fn signals(reloader: Reloader, duration: Option<Duration>, no_handlers: &Cell<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        error!("cannot install signal handlers; stopping");
        no_handlers.set(true);
        return;
    };
    info!("ready: SIGHUP reloads the controllers, SIGTERM or Ctrl-C stops");
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: stopping"); return; }
            _ = int.recv() => { info!("SIGINT: stopping"); return; }
            () = &mut deadline => { info!("run duration reached: stopping"); return; }
            _ = hup.recv() => {
                info!("SIGHUP: reloading controllers");
                reloader.reload();
            }
        }
    }
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
        None => daemon::controllers::EMBEDDED.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect(),
    };
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in texts {
        match config::load_intersection_str(&name, &text) {
            Ok((cfg, _)) => loaded.push((cfg, text)),
            Err(e) => errors.extend(e.iter().map(ToString::to_string)),
        }
    }
    if !errors.is_empty() {
        return Ok(config_errors(errors));
    }
    let opts = greenwave::sim::SimCabinetOptions {
        listen: args.listen,
        // At most 10,000 (the argument's range): fits any usize.
        count: args.count.map(|n| n as usize),
        lockstep: args.lockstep,
        tick: Span::from_millis(args.tick_ms),
        rtu_over_tcp: args.rtu_over_tcp,
        unit_id: args.unit_id,
        write_controllers: args.write_controllers,
        duration: args.duration_s.map(Duration::from_secs),
        stats_json: args.stats_json,
    };
    greenwave::sim::serve_sim_cabinets(&loaded, &opts)?;
    Ok(ExitCode::SUCCESS)
}
