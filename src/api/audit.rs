//! The control audit trail: who asked what, when, and what came of it.
//!
//! Every Control call (refusals included: a viewer trying to set a mode is
//! worth knowing about) is logged with `tracing` under the `audit` target
//! and appended to the event journal as an [`AuditEntry`], so operators
//! watching the event stream see control actions in sequence with the
//! controller events they cause. Calls naming an intersection the daemon
//! does not run go to the log only (the journal's records belong to an
//! intersection).

use std::sync::Arc;

use tonic::Status;

use super::auth::Identity;
use super::events::{Journal, RecordKind};

/// One audited control command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// The token's name, or `anonymous`.
    pub principal: String,
    pub role: &'static str,
    pub peer: String,
    /// Full gRPC method, e.g. `greenwave.v1.Control/SetMode`.
    pub method: &'static str,
    /// The request in words.
    pub request: String,
    /// `ok` or the status code name.
    pub result: String,
    /// What was done, or why not.
    pub detail: String,
}

/// Logs and journals one control command; returns the journal sequence
/// number (0 when the intersection is unknown).
pub fn record(
    journal: &Journal,
    intersection: Option<usize>,
    caller: &Identity,
    method: &'static str,
    request: String,
    outcome: Result<&str, &Status>,
) -> u64 {
    let (principal, role, peer) = (caller.principal.to_string(), caller.role.name(), caller.peer_text());
    let (result, detail) = match outcome {
        Ok(detail) => ("ok".to_owned(), detail.to_owned()),
        Err(status) => (code_name(status.code()).to_owned(), status.message().to_owned()),
    };
    tracing::info!(
        target: "audit",
        %principal, role, %peer, method, %request, %result, %detail,
        "control command"
    );
    let Some(intersection) = intersection else { return 0 };
    let entry = AuditEntry { principal, role, peer, method, request, result, detail };
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
