//! Engineer-facing configuration: `greenwave.toml` for the daemon and one
//! file per intersection under `controllers/`, turned into validated specs.
//!
//! Two stages, so parsing stays apart from checking: `raw` mirrors the TOML
//! one to one (serde, unknown keys reported), `validate` runs every check and
//! returns either the validated [`IntersectionConfig`] or *every* error, each
//! naming its file, key and reason.
//!
//! # Layout
//! - [`load`]: entry points for controller files ([`load_intersection`],
//!   [`load_intersection_str`], [`load_dir`]); config-rs does the TOML.
//! - [`daemon`]: `greenwave.toml` plus `GREENWAVE_*` overrides ([`DaemonConfig::load`]);
//!   [`grpc`]: its `[grpc]` section (listen address, TLS, tokens, limits);
//!   [`http`]: its `[http]` metrics listener;
//!   [`gbt20999`]: its `[gbt20999]` GB/T 20999-2017 adapter;
//!   [`corridor`]: its `[[corridor]]` arterials (members, travel times).
//! - [`check`]: the `greenwave check` report ([`check_report`]).
//! - [`registers`]: the cabinet register map a controller file may move
//!   (`[cabinet.registers]`), as plain addresses and lengths.
//! - [`raw`]: the file as written; `de`: strict deserialization that keeps
//!   going after a bad value; `key`: how keys are named in messages.
//! - `validate`: every check, raw → [`IntersectionConfig`]; [`clearance`]:
//!   the ITE and MUTCD minimum intervals it checks against.
//! - [`error`]: [`ConfigError`] and [`Warning`], `file: key: reason`.

use std::path::PathBuf;

use crate::core::spec::ControllerSpec;
use crate::core::{DetectorChannel, OverlapId, PhaseId, Span};

pub mod check;
pub mod clearance;
pub mod corridor;
pub mod daemon;
mod de;
pub mod error;
pub mod gbt20999;
pub mod grpc;
pub mod http;
mod key;
pub mod load;
pub mod nats;
pub mod ntcip;
pub mod raw;
pub mod registers;
mod validate;

pub use check::{CheckReport, FileCheck, Summary, check_report};
pub use corridor::CorridorConfig;
pub use daemon::{ClockSource, DaemonConfig, Env, EventLogConfig};
pub use error::{ConfigError, Warning};
pub use grpc::{GrpcConfig, Role};
pub use http::HttpConfig;
pub use load::{controller_files, load_dir, load_intersection, load_intersection_str};
pub use nats::{NatsAuth, NatsConfig};
pub use ntcip::NtcipConfig;
pub use registers::RegisterMap;
pub use validate::{
    DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_BAUD, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LINK_TIMEOUT,
    DEFAULT_MODBUS_UNIT_ID, DEFAULT_READ_AHEAD, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SATURATION_HEADWAY, DEFAULT_SIM_SEED,
};

/// One intersection, validated: the controller definition plus how to reach
/// its cabinet and, for the built-in simulator, its traffic.
#[derive(Clone, Debug)]
pub struct IntersectionConfig {
    pub spec: ControllerSpec,
    /// `[intersection] name`, for people ("Broadway & 5th Ave"); the id if not given.
    pub name: String,
    /// `[intersection] time_zone`: the IANA zone its schedule is read in,
    /// over the daemon's `time_zone`.
    pub time_zone: Option<chrono_tz::Tz>,
    /// `[intersection] location`: where it is, for the web view's map.
    pub location: Option<Location>,
    pub cabinet: CabinetConfig,
    pub traffic: TrafficConfig,
    /// Camera zones (`[[camera_zone]]`) and the detector channels they drive.
    pub camera_zones: Vec<CameraZone>,
    /// The file this came from (for reload and error messages).
    pub source: PathBuf,
    /// Its text, exactly as validated (the API's plan editor starts from it:
    /// a file rewritten since is not read again).
    pub text: std::sync::Arc<str>,
}

/// A point on the earth, WGS 84 degrees: latitude −90..=90 (north
/// positive), longitude −180..=180 (east positive).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// A video detection zone: a camera reports it by `id` over gRPC, and the
/// engine merges it into detector channel `channel` (presence ORed with the
/// cabinet's, counts added).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraZone {
    pub id: String,
    pub channel: DetectorChannel,
}

/// How the daemon reaches an intersection's cabinet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CabinetConfig {
    /// The built-in simulated cabinet with its traffic generator (served
    /// in-process over loopback Modbus by `greenwave run`).
    Simulated,
    /// A Modbus cabinet (TCP, RTU on a serial port, or RTU framing over TCP).
    Modbus(Box<ModbusCabinet>),
}

/// A Modbus cabinet as its controller file describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModbusCabinet {
    pub transport: ModbusTransport,
    pub unit_id: u8,
    /// Connecting (TCP) or opening the port (RTU) gives up after this.
    pub connect_timeout: Span,
    /// Each request gives up after this (then the link is reset).
    pub request_timeout: Span,
    /// No fresh inputs for this long → the intersection flashes (cabinet
    /// link lost); it restarts through start-up when inputs resume.
    pub link_timeout: Span,
    /// Reconnect delays: jittered, doubling from `backoff_min` to `backoff_max`.
    pub backoff_min: Span,
    pub backoff_max: Span,
    /// Poll period; `None` polls every tick.
    pub poll: Option<Span>,
    /// Inputs are read this long before each tick.
    pub read_ahead: Span,
    /// Where vehicle volume comes from.
    pub volume: VolumeSource,
    /// Camera zone `z` (from 1) counts on detector channel
    /// `camera_zone_channels[z - 1]`.
    pub camera_zone_channels: Vec<DetectorChannel>,
    pub one_master: OneMasterCheck,
    pub registers: RegisterMap,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModbusTransport {
    Tcp { address: String },
    RtuOverTcp { address: String },
    Rtu { path: String, baud: u32, parity: Parity, data_bits: u8, stop_bits: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// Bits on the wire for one character of a serial line: start, data,
/// parity and stop bits.
pub fn serial_char_bits(parity: Parity, data_bits: u8, stop_bits: u8) -> u32 {
    1 + u32::from(data_bits) + u32::from(parity != Parity::None) + u32::from(stop_bits)
}

/// Where an intersection's vehicle volumes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    /// The cabinet's volume counters (register map): loops are not counted
    /// again from their presence edges.
    Counters,
    /// Rising edges of presence (cabinets without counters).
    Edges,
}

/// How the cabinet client makes sure it is the cabinet's only master
/// (`docs/modbus.md`, "One master").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OneMasterCheck {
    /// Read the heartbeat register back (FC03) before each write: a value
    /// this daemon did not write is another master's.
    ReadBack,
    /// No check (a cabinet whose heartbeat register does not read back
    /// what was written).
    Off,
}

/// Demand for the built-in simulated cabinet (`[simulation]` in a controller file).
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficConfig {
    /// Seed of the arrival generator: the same seed gives the same traffic.
    pub seed: u64,
    /// Headway between vehicles discharging from a queue on green.
    pub saturation_headway: Span,
    pub lanes: Vec<LaneTraffic>,
    pub pedestrians: Vec<PedTraffic>,
}

/// One simulated lane: vehicles arrive at random, queue over the stop-bar
/// detector, and discharge while the head they obey is green (or yellow).
#[derive(Clone, Debug, PartialEq)]
pub struct LaneTraffic {
    /// Stop-bar detector channel the queue sits on.
    pub detector: DetectorChannel,
    /// The head the lane obeys: a phase or an overlap.
    pub head: LaneHead,
    /// Mean arrival rate (Poisson), vehicles per hour.
    pub arrivals_per_hour: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneHead {
    Phase(PhaseId),
    Overlap(OverlapId),
}

/// Simulated pedestrians pressing a push button (a pedestrian detector).
#[derive(Clone, Debug, PartialEq)]
pub struct PedTraffic {
    pub detector: DetectorChannel,
    pub per_hour: f64,
}
