//! `greenwave.toml`: the daemon's own settings, from an optional file plus
//! `GREENWAVE_*` environment variables (which win).
//!
//! Environment names: the prefix, one `_`, then the key path with `__`
//! between tables: `GREENWAVE_TICK_MS`, `GREENWAVE_EVENT_LOG__DIR`. The
//! prefix separator is set explicitly because config-rs otherwise reuses the
//! `__` separator for it and silently ignores `GREENWAVE_TICK_MS`. Variable
//! names are case-insensitive (config-rs
//! lowercases them); keys in the file are case-sensitive. Every
//! `GREENWAVE_*` variable is read as a setting, so an unknown one is an error
//! like an unknown key in the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ::config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use super::corridor::{self, CorridorConfig, RawCorridor};
use super::de::{Deserialized, deserialize_all, is_from_env};
use super::error::ConfigError;
use super::gbt20999::{self, Gbt20999Config, RawGbt20999};
use super::grpc::{self, GrpcConfig, RawGrpc};
use super::http::{self, HttpConfig, RawHttp};
use super::key::KeyPath;
use super::load::read_error;
use super::nats::{self, NatsConfig, RawNats};
use super::ntcip::{self, NtcipConfig, RawNtcip};

/// Prefix of the environment variables that override `greenwave.toml`.
pub const ENV_PREFIX: &str = "GREENWAVE";
/// Accepted engine tick periods: faster than 10 ms buys nothing at 0.1 s
/// signal timing resolution; slower than 1 s misses detector pulses.
pub const TICK_MS_RANGE: std::ops::RangeInclusive<u64> = 10..=1000;
/// Smallest event log file worth rotating.
pub const MIN_EVENT_LOG_FILE_BYTES: u64 = 4096;
/// `event_log.max_file_bytes` at most 1 GiB: a file an ATSPM import takes whole.
pub const MAX_EVENT_LOG_FILE_BYTES: u64 = 1 << 30;
/// `event_log.keep_files` at most this many.
pub const MAX_EVENT_LOG_FILES: usize = 100_000;
/// `lockstep_speed` at most this many simulated seconds per real second.
pub const MAX_LOCKSTEP_SPEED: f64 = 10_000.0;

/// The daemon's validated settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    /// Directory of controller files (`<id>.toml`).
    pub controllers: PathBuf,
    /// Engine tick period, ms.
    pub tick_ms: u64,
    pub event_log: EventLogConfig,
    /// Show the live terminal view.
    pub view: bool,
    /// Where the engine's time comes from.
    pub clock: ClockSource,
    /// `time_zone`: the IANA zone time-of-day schedules are read in, where
    /// a controller file sets none. Default: the host's zone, read once at
    /// start (UTC when it cannot be read).
    pub time_zone: chrono_tz::Tz,
    /// `lockstep_speed`: with `clock = "cabinet"`, at most this many
    /// simulated seconds per real second (a simulation people watch, or
    /// tests); `None`: as fast as the cabinets step.
    pub lockstep_speed: Option<f64>,
    /// The gRPC API (`[grpc]`).
    pub grpc: GrpcConfig,
    /// The metrics listener (`[http]`).
    pub http: HttpConfig,
    /// The city feed over NATS (`[nats]`; off without the section).
    pub nats: NatsConfig,
    /// The NTCIP 1202 agent over SNMP (`[ntcip]`; off without the section).
    pub ntcip: NtcipConfig,
    /// The GB/T 20999-2017 adapter (`[gbt20999]`; off without the section).
    pub gbt20999: Gbt20999Config,
    /// Adaptive arterials sharing a cycle (`[[corridor]]`, see
    /// [`super::corridor`]); member ids are checked against the
    /// controllers by [`corridor::resolve`].
    pub corridors: Vec<CorridorConfig>,
}

/// `clock`: the engine's time source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockSource {
    /// The machine's monotonic clock (real time).
    #[default]
    System,
    /// Lockstep simulation: the simulated time the cabinets publish (their
    /// simulated-time registers); the daemon acknowledges each step.
    Cabinet,
}

/// Where the Indiana event log goes and how it rotates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLogConfig {
    pub dir: PathBuf,
    /// A file is rotated once it reaches this size.
    pub max_file_bytes: u64,
    /// Rotated files kept; older ones are deleted.
    pub keep_files: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            controllers: PathBuf::from("controllers"),
            tick_ms: 100,
            event_log: EventLogConfig::default(),
            view: true,
            clock: ClockSource::System,
            time_zone: host_time_zone(),
            lockstep_speed: None,
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            nats: NatsConfig::default(),
            ntcip: NtcipConfig::default(),
            gbt20999: Gbt20999Config::default(),
            corridors: Vec::new(),
        }
    }
}

impl Default for EventLogConfig {
    fn default() -> Self {
        EventLogConfig { dir: PathBuf::from("log"), max_file_bytes: 10 * 1024 * 1024, keep_files: 10 }
    }
}

/// Where environment overrides come from: the process, or (in tests) a map,
/// so no test ever calls `set_var`.
#[derive(Clone, Debug)]
pub enum Env {
    Process,
    Vars(BTreeMap<String, String>),
}

#[derive(Debug, Default, Deserialize)]
struct RawDaemon {
    controllers: Option<PathBuf>,
    tick_ms: Option<u64>,
    event_log: Option<RawEventLog>,
    view: Option<bool>,
    clock: Option<ClockSource>,
    time_zone: Option<String>,
    lockstep_speed: Option<f64>,
    grpc: Option<RawGrpc>,
    http: Option<RawHttp>,
    nats: Option<RawNats>,
    ntcip: Option<RawNtcip>,
    gbt20999: Option<RawGbt20999>,
    #[serde(default)]
    corridor: Vec<RawCorridor>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEventLog {
    dir: Option<PathBuf>,
    max_file_bytes: Option<u64>,
    keep_files: Option<usize>,
}

impl DaemonConfig {
    /// Loads the daemon settings: defaults, then `file` if given (it must
    /// exist), then the process's `GREENWAVE_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<DaemonConfig, Vec<ConfigError>> {
        Self::load_with_env(file, Env::Process)
    }

    /// [`DaemonConfig::load`] with the environment given explicitly. Every
    /// problem is returned; a value set in the environment is reported
    /// against `environment` and its variable name.
    pub fn load_with_env(file: Option<&Path>, env: Env) -> Result<DaemonConfig, Vec<ConfigError>> {
        load(file, env)
    }
}

/// An IANA time zone name (`Asia/Shanghai`, `America/New_York`, `UTC`).
///
/// # Errors
/// Not a zone in the compiled-in IANA database, in words.
pub fn parse_time_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("\"{name}\" is not an IANA time zone name (like \"Asia/Shanghai\" or \"UTC\")"))
}

/// The host's zone, as the operating system names it; UTC when it has
/// none or names one the database lacks.
fn host_time_zone() -> chrono_tz::Tz {
    iana_time_zone::get_timezone().ok().and_then(|name| parse_time_zone(&name).ok()).unwrap_or(chrono_tz::UTC)
}

fn load(file: Option<&Path>, env: Env) -> Result<DaemonConfig, Vec<ConfigError>> {
    let file_name = file.map_or_else(|| PathBuf::from("greenwave.toml"), Path::to_path_buf);
    let mut builder = Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(File::from(path).format(FileFormat::Toml));
    }
    let environment = Environment::with_prefix(ENV_PREFIX).prefix_separator("_").separator("__");
    let environment = match env {
        Env::Process => environment,
        Env::Vars(vars) => environment.source(Some(vars.into_iter().collect())),
    };
    let tree = match builder.add_source(environment).build() {
        Ok(config) => config.cache,
        Err(e) => return Err(vec![ConfigError::new(&file_name, "", read_error(e))]),
    };
    let doc: Deserialized<RawDaemon> = deserialize_all(tree);
    // A value set in the environment is reported against its variable, not
    // the file it overrode.
    let locate = |from_env: bool, path: &KeyPath, key: String, reason: String| {
        if from_env {
            ConfigError::new(Path::new("environment"), key, format!("{reason} ({})", path.env_var(ENV_PREFIX)))
        } else {
            ConfigError::new(&file_name, key, reason)
        }
    };
    let mut errors: Vec<ConfigError> =
        doc.problems.iter().map(|p| locate(p.from_env, &p.path, p.key.clone(), p.reason.clone())).collect();
    let mut error = |path: KeyPath, reason: String| {
        let from_env = path.lookup(&doc.tree).is_some_and(is_from_env);
        errors.push(locate(from_env, &path, path.render(&doc.tree), reason));
    };

    let defaults = DaemonConfig::default();
    let raw = doc.value;
    let root = KeyPath::root();
    let controllers = raw.controllers.unwrap_or(defaults.controllers);
    if controllers.as_os_str().is_empty() {
        error(root.key("controllers"), "must not be empty".into());
    }
    let tick_ms = raw.tick_ms.unwrap_or(defaults.tick_ms);
    if !TICK_MS_RANGE.contains(&tick_ms) {
        error(
            root.key("tick_ms"),
            format!("{tick_ms} ms is outside {}..={} ms", TICK_MS_RANGE.start(), TICK_MS_RANGE.end()),
        );
    }
    let raw_log = raw.event_log.unwrap_or_default();
    let log_at = root.key("event_log");
    let event_log = EventLogConfig {
        dir: raw_log.dir.unwrap_or(defaults.event_log.dir),
        max_file_bytes: raw_log.max_file_bytes.unwrap_or(defaults.event_log.max_file_bytes),
        keep_files: raw_log.keep_files.unwrap_or(defaults.event_log.keep_files),
    };
    if event_log.dir.as_os_str().is_empty() {
        error(log_at.key("dir"), "must not be empty".into());
    }
    if !(MIN_EVENT_LOG_FILE_BYTES..=MAX_EVENT_LOG_FILE_BYTES).contains(&event_log.max_file_bytes) {
        error(
            log_at.key("max_file_bytes"),
            format!(
                "{} bytes is outside {MIN_EVENT_LOG_FILE_BYTES}..={MAX_EVENT_LOG_FILE_BYTES} (4 KiB to 1 GiB)",
                event_log.max_file_bytes
            ),
        );
    }
    if !(1..=MAX_EVENT_LOG_FILES).contains(&event_log.keep_files) {
        error(
            log_at.key("keep_files"),
            format!("{} is outside 1..={MAX_EVENT_LOG_FILES} (at least the file being written)", event_log.keep_files),
        );
    }
    let time_zone = match &raw.time_zone {
        Some(name) => parse_time_zone(name).unwrap_or_else(|reason| {
            error(root.key("time_zone"), reason);
            chrono_tz::UTC
        }),
        None => host_time_zone(),
    };
    let clock = raw.clock.unwrap_or_default();
    if let Some(speed) = raw.lockstep_speed {
        if !(speed.is_finite() && speed > 0.0 && speed <= MAX_LOCKSTEP_SPEED) {
            error(
                root.key("lockstep_speed"),
                format!("{speed} must be above 0 and at most {MAX_LOCKSTEP_SPEED} simulated seconds per second"),
            );
        } else if clock != ClockSource::Cabinet {
            error(root.key("lockstep_speed"), "only paces a lockstep simulation: set clock = \"cabinet\" too".into());
        }
    }
    let grpc = grpc::validate(raw.grpc, &mut error);
    let http = http::validate(raw.http, &mut error);
    let nats = nats::validate(raw.nats, &mut error);
    let ntcip = ntcip::validate(raw.ntcip, &mut error);
    let gbt20999 = gbt20999::validate(raw.gbt20999, &mut error);
    let corridors = corridor::validate(raw.corridor, nats.enabled, &mut error, |p| p.render(&doc.tree));
    let config = DaemonConfig {
        controllers,
        tick_ms,
        event_log,
        view: raw.view.unwrap_or(defaults.view),
        clock,
        time_zone,
        lockstep_speed: raw.lockstep_speed,
        grpc,
        http,
        nats,
        ntcip,
        gbt20999,
        corridors,
    };
    if errors.is_empty() { Ok(config) } else { Err(errors) }
}
