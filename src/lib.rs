//! Greenwave: a real-time adaptive traffic signal controller.
//!
//! # Layout
//! Data flows top to bottom:
//! - [`config`]: engineer-facing files (`greenwave.toml`, `controllers/*.toml`)
//!   → validated [`core::ControllerSpec`], every error with file, key, reason.
//! - [`core`]: the pure, clock-injected NEMA ring-barrier phase machine, its
//!   detectors, coordination arithmetic, and the independent safety monitor.
//! - [`engine`]: the dedicated real-time thread that owns the controllers,
//!   ticks them on absolute deadlines, and publishes snapshots and events
//!   without locks or per-tick allocation.
//! - [`daemon`]: everything `greenwave run` starts, as one call
//!   ([`daemon::run`]): engine thread, cabinet tasks, event fan-out, gRPC,
//!   view, reload; tests and benchmarks start it in-process.
//! - [`http`]: the HTTP listener: Prometheus / OpenMetrics at `/metrics`,
//!   gathered at scrape time from what the engine already publishes, and
//!   the web view (live ring-barrier diagram, plots from the event log).
//! - [`emergency`]: the emergency route green wave: the pure planner that
//!   arms each intersection's preemption ahead of the vehicle and releases
//!   it behind; the gRPC Control service carries it out.
//! - [`ntcip`]: the NTCIP 1202 agent over SNMP (v1/v2c/v3) for central
//!   systems: objects generated from the MIB, SETs through the gRPC
//!   Control service's checks, staging and audit.
//! - [`realtime`]: real-time priorities (control thread above cabinet I/O
//!   above everything else) and locked memory, and the start-up line for
//!   each the daemon could not get.
//! - [`io`]: the cabinet client over Modbus (TCP, RTU): the wire encoding
//!   of the register map, the per-cabinet client tasks and their check
//!   that no other master writes the cabinet.
//! - [`sim`]: the built-in simulated cabinet in one place: the traffic
//!   generator, the cabinet as a Modbus server with its own MMU, and
//!   `greenwave sim-cabinet`.
//! - [`standards`]: centre-to-controller standards (GB/T 20999-2017) as
//!   pure codecs; the daemon's adapters speak through them.
//! - [`telemetry`]: tracing setup and the Indiana (ATSPM) event log.
//! - [`replay`]: recorded detector logs through the core at full speed.
//! - [`view`]: the live terminal view.
#![forbid(unsafe_code)]
#![warn(rust_2018_idioms, missing_debug_implementations)]

pub mod api;
pub mod config;
pub mod core;
pub mod daemon;
pub mod emergency;
pub mod engine;
pub mod http;
pub mod io;
pub mod ntcip;
pub mod realtime;
pub mod replay;
pub mod sim;
pub mod standards;
pub mod telemetry;
pub mod view;
