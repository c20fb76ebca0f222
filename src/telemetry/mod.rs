//! Observability: structured logs ([`init`]) and the Indiana hi-resolution
//! event log on disk that ATSPM tools import ([`eventlog`]), and the
//! numbered history of events and audit records the API streams
//! ([`journal`]).

pub mod eventlog;
pub mod init;
pub mod journal;

pub use eventlog::{
    EventLogConfig, EventLogStats, EventLogWriter, LogTimeZone, read_event_log, spawn_event_log_thread,
};
pub use init::init_tracing;
