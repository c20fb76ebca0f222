//! The control audit trail: who asked what, when, and what came of it.
//!
//! Every Control call is logged with `tracing` under the `audit` target
//! and appended to the event journal as an [`AuditEntry`], so operators
//! watching the event stream see control actions in sequence with the
//! controller events they cause. Calls naming an intersection the daemon
//! does not run go to the log only (the journal's records belong to an
//! intersection).
//!
//! A command carried out is recorded here ([`record`]), one record each.
//! A refused call (by its handler, or before any handler by the
//! [`Gate`](super::gate::Gate)) is counted in
//! [`Refusals`](super::refusals::Refusals): one record per burst of the same
//! refusal, so no caller can flood the event history.

use std::sync::Arc;

use tonic::Status;

use super::auth::Identity;
use super::refusals::Refusal;
pub use crate::telemetry::journal::AuditEntry;
use crate::telemetry::journal::{Journal, RecordKind};

/// Logs and journals one control command carried out; returns the journal
/// sequence number.
pub fn record(
    history: &Journal,
    intersection: usize,
    caller: &Identity,
    method: &'static str,
    request: String,
    detail: String,
) -> u64 {
    let entry = AuditEntry {
        principal: caller.principal.to_string(),
        role: caller.role.name(),
        peer: caller.peer_text(),
        method,
        request,
        result: "ok".to_owned(),
        detail,
        calls: 1,
    };
    let AuditEntry { principal, role, peer, method, request, result, detail, .. } = &entry;
    tracing::info!(
        target: "audit",
        %principal, role, %peer, method, %request, %result, %detail,
        "control command"
    );
    journal(history, intersection, entry)
}

/// A call `caller` made that a handler refused with `status`, for
/// [`Refusals`](super::refusals::Refusals).
pub fn refusal(
    caller: &Identity,
    method: &'static str,
    request: String,
    status: &Status,
    intersection: Option<usize>,
) -> Refusal {
    Refusal {
        principal: caller.principal.clone(),
        role: caller.role.name(),
        peer: caller.peer,
        method,
        request,
        result: code_name(status.code()),
        detail: status.message().to_owned(),
        intersection,
    }
}

/// The role of a caller whose token was not known.
pub const NO_ROLE: &str = "none";

/// Appends `entry` to `intersection`'s history, stamped now.
pub fn journal(journal: &Journal, intersection: usize, entry: AuditEntry) -> u64 {
    journal.append(intersection, now_unix_ms(), RecordKind::Audit(Arc::new(entry)))
}

/// Wall-clock ms since the Unix epoch (audit records are stamped when the
/// command arrives, not when the controller applies it).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The canonical gRPC name of a status code (`INVALID_ARGUMENT`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
