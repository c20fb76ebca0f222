//! Observability: structured logs ([`init`]) and the Indiana hi-resolution
//! event log on disk that ATSPM tools import ([`eventlog`], written by
//! [`log_writer`]), and the
//! numbered history of events and audit records the API streams
//! ([`journal`]).

pub mod eventlog;
pub mod init;
pub mod journal;
pub mod log_writer;

pub use eventlog::{EventLogConfig, LogTimeZone, read_event_log};
pub use init::init_tracing;
pub use log_writer::{EventLogHealth, EventLogStats, EventLogWriter, spawn_event_log_thread};
