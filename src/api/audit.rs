//! The control audit trail: who asked what, when, and what came of it.
//!
//! Every Control call (refusals included: a viewer trying to set a mode is
//! worth knowing about) is logged with `tracing` under the `audit` target
//! and appended to the event journal as an [`AuditEntry`], so operators
//! watching the event stream see control actions in sequence with the
//! controller events they cause. Calls naming an intersection the daemon
//! does not run go to the log only (the journal's records belong to an
//! intersection).
//!
//! Calls the handlers see are audited by them ([`record`]). Calls turned
//! away before a handler runs (no, unknown or malformed token; past the
//! rate limit) are audited by the [`ControlGate`] in front of the Control
//! service, which authenticates in place of the interceptor the other
//! services use: it knows the method from the path, and reads the
//! intersection from the rejected request's first message, so the record
//! reaches the event stream like any other. Admitted calls only pay for
//! the authentication they paid for before.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prost::Message;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{Extensions, Request, Response};
use tonic::codegen::{Body as _, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::Core;
use super::auth::{Authenticator, Identity, Rejection, peer_text};
use super::convert::echo;
pub use crate::telemetry::journal::AuditEntry;
use crate::telemetry::journal::{Journal, RecordKind};

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
    let (result, detail) = match outcome {
        Ok(detail) => ("ok".to_owned(), detail.to_owned()),
        Err(status) => (code_name(status.code()).to_owned(), status.message().to_owned()),
    };
    let entry = AuditEntry {
        principal: caller.principal.to_string(),
        role: caller.role.name(),
        peer: caller.peer_text(),
        method,
        request,
        result,
        detail,
    };
    write(journal, intersection, entry)
}

/// Logs and journals one control call turned away before its handler;
/// returns the journal sequence number (0 when the intersection is unknown).
pub fn record_rejection(
    journal: &Journal,
    intersection: Option<usize>,
    rejection: &Rejection,
    method: &'static str,
    request: String,
) -> u64 {
    let entry = AuditEntry {
        principal: rejection.principal.to_string(),
        role: rejection.role.map_or(NO_ROLE, |r| r.name()),
        peer: peer_text(rejection.peer),
        method,
        request,
        result: code_name(rejection.status.code()).to_owned(),
        detail: rejection.status.message().to_owned(),
    };
    write(journal, intersection, entry)
}

/// The role of a caller whose token was not known.
pub const NO_ROLE: &str = "none";

fn write(journal: &Journal, intersection: Option<usize>, entry: AuditEntry) -> u64 {
    let AuditEntry { principal, role, peer, method, request, result, detail } = &entry;
    tracing::info!(
        target: "audit",
        %principal, role, %peer, method, %request, %result, %detail,
        "control command"
    );
    let Some(intersection) = intersection else { return 0 };
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

/// Every Control method, as the audit log names it (`proto/greenwave/v1/greenwave.proto`).
const CONTROL_METHODS: [&str; 10] = [
    "greenwave.v1.Control/SetMode",
    "greenwave.v1.Control/ApplyTimingPlan",
    "greenwave.v1.Control/SetCoordination",
    "greenwave.v1.Control/RequestPreemption",
    "greenwave.v1.Control/RequestPriority",
    "greenwave.v1.Control/HoldPhases",
    "greenwave.v1.Control/ReleasePhases",
    "greenwave.v1.Control/ResetMonitor",
    "greenwave.v1.Control/ListVersions",
    "greenwave.v1.Control/RollbackVersion",
];

/// The method of a call to a path the Control service does not serve.
pub const UNKNOWN_CONTROL_METHOD: &str = "greenwave.v1.Control/?";

/// How long a rejected call's first message may take to arrive before the
/// rejection is audited without its intersection (log only).
const FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(1);

/// Authenticates every Control call (what the interceptor does for the
/// other services) and audits the ones it turns away; the handlers audit
/// the rest, so no call is audited twice.
///
/// An admitted call goes straight on to the Control service with its
/// [`Identity`]. A rejected one waits (bounded: the service's message size
/// limit and [`FIRST_MESSAGE_WAIT`]) for its first message, only to learn
/// which intersection it named, and is answered once it is audited.
#[derive(Clone, Debug)]
pub struct ControlGate<S> {
    inner: S,
    auth: Authenticator,
    core: Arc<Core>,
    max_message_bytes: usize,
}

impl<S> ControlGate<S> {
    pub(super) fn new(inner: S, auth: Authenticator, core: Arc<Core>, max_message_bytes: usize) -> Self {
        ControlGate { inner, auth, core, max_message_bytes }
    }
}

impl<S> Service<Request<Body>> for ControlGate<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let peer = remote_addr(req.extensions());
        match self.auth.admit(req.headers(), peer) {
            Ok(id) => {
                req.extensions_mut().insert(id);
                GateFuture::Admitted(self.inner.call(req))
            }
            Err(rejection) => {
                let (method, unknown_path) = match control_method(req.uri().path()) {
                    Some(m) => (m, None),
                    None => (UNKNOWN_CONTROL_METHOD, Some(req.uri().path().to_owned())),
                };
                let core = self.core.clone();
                let max = self.max_message_bytes;
                GateFuture::Rejected(Box::pin(async move {
                    let target = match unknown_path {
                        Some(_) => None,
                        None => tokio::time::timeout(FIRST_MESSAGE_WAIT, first_intersection_id(req.into_body(), max))
                            .await
                            .ok()
                            .flatten(),
                    };
                    let intersection = target.as_deref().and_then(|id| core.ids.iter().position(|x| x == id));
                    let request = match (&unknown_path, &target) {
                        (Some(path), _) => format!("path {:?}", echo(path)),
                        (None, Some(id)) => format!("intersection_id {:?} (request not read)", echo(id)),
                        (None, None) => "request not read".to_owned(),
                    };
                    record_rejection(&core.journal, intersection, &rejection, method, request);
                    Ok(rejection.status.into_http())
                }))
            }
        }
    }
}

impl<S: NamedService> NamedService for ControlGate<S> {
    const NAME: &'static str = S::NAME;
}

/// The future of a [`ControlGate`] call: the Control service's own for an
/// admitted call (no extra allocation), a boxed audit for a rejected one.
pub enum GateFuture<F> {
    Admitted(F),
    Rejected(BoxFuture<Response<Body>, Infallible>),
}

impl<F> std::fmt::Debug for GateFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GateFuture::Admitted(_) => "GateFuture::Admitted",
            GateFuture::Rejected(_) => "GateFuture::Rejected",
        })
    }
}

impl<F> Future for GateFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            GateFuture::Admitted(f) => Pin::new(f).poll(cx),
            GateFuture::Rejected(f) => f.as_mut().poll(cx),
        }
    }
}

/// The audit name of a Control path (`/greenwave.v1.Control/SetMode`).
fn control_method(path: &str) -> Option<&'static str> {
    let path = path.strip_prefix('/')?;
    CONTROL_METHODS.iter().copied().find(|m| *m == path)
}

/// The peer address, as `tonic::Request::remote_addr` finds it.
fn remote_addr(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|tls| tls.get_ref().remote_addr()))
}

/// Field 1 of every Control request.
#[derive(Clone, PartialEq, Message)]
struct Target {
    #[prost(string, tag = "1")]
    intersection_id: String,
}

/// The `intersection_id` of a call's first gRPC message: `None` if the
/// body ends or fails first, the message is compressed or longer than
/// `max` bytes, or it does not decode.
async fn first_intersection_id(mut body: Body, max: usize) -> Option<String> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // A gRPC message: compressed flag, big-endian u32 length, bytes.
        if let Some(header) = buf.get(..5) {
            if header[0] != 0 {
                return None;
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if len > max {
                return None;
            }
            if let Some(message) = buf.get(5..5 + len) {
                return Target::decode(message).ok().map(|t| t.intersection_id);
            }
        }
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await?.ok()?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_rpc_in_the_proto_has_an_audit_name() {
        let proto = include_str!("../../proto/greenwave/v1/greenwave.proto");
        let service = &proto[proto.find("service Control {").expect("Control service")..];
        let service = &service[..service.find("\n}").expect("end of service")];
        let rpcs: Vec<String> = service
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .map(|l| format!("greenwave.v1.Control/{}", &l[..l.find('(').expect("rpc name(")]))
            .collect();
        assert_eq!(rpcs, CONTROL_METHODS, "CONTROL_METHODS lists the proto's rpcs in order");
        assert_eq!(control_method("/greenwave.v1.Control/SetMode"), Some("greenwave.v1.Control/SetMode"));
        assert_eq!(control_method("/greenwave.v1.Control/Nope"), None);
    }

    fn grpc_frame(message: &impl Message) -> Vec<u8> {
        let bytes = message.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        frame.extend_from_slice(&bytes);
        frame
    }

    #[tokio::test]
    async fn the_intersection_is_read_from_any_control_request() {
        let plan = super::super::pb::ApplyTimingPlanRequest {
            intersection_id: "elm-and-oak".into(),
            source: Some(super::super::pb::apply_timing_plan_request::Source::ControllerToml("x = 1".into())),
            activate: true,
            expected_version: 3,
        };
        // Small enough that every byte is ASCII, so a `String` body carries it.
        let frame = String::from_utf8(grpc_frame(&plan)).expect("an ASCII frame");
        let id = first_intersection_id(Body::new(frame.clone()), 1024).await;
        assert_eq!(id.as_deref(), Some("elm-and-oak"));
        assert_eq!(first_intersection_id(Body::new(frame), 4).await, None, "longer than the limit");
        assert_eq!(first_intersection_id(Body::empty(), 1024).await, None, "no message");
    }

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_rejection_is_logged_and_journaled_like_a_handled_call() {
        let journal = Journal::new(10);
        let rejection = Rejection {
            status: Status::unauthenticated("missing bearer token"),
            principal: super::super::auth::UNAUTHENTICATED.into(),
            role: None,
            peer: Some("192.0.2.7:5000".parse().expect("addr")),
        };
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let (seq, unknown) = tracing::subscriber::with_default(subscriber, || {
            let seq = record_rejection(&journal, Some(0), &rejection, CONTROL_METHODS[0], "request not read".into());
            (seq, record_rejection(&journal, None, &rejection, CONTROL_METHODS[0], "request not read".into()))
        });
        let log = String::from_utf8(log.0.lock().expect("not poisoned").clone()).expect("utf-8");
        for field in [
            "audit:",
            "control command",
            "principal=unauthenticated",
            "role=\"none\"",
            "peer=192.0.2.7:5000",
            "method=\"greenwave.v1.Control/SetMode\"",
            "result=UNAUTHENTICATED",
            "detail=missing bearer token",
        ] {
            assert!(log.contains(field), "{field} in {log}");
        }
        assert_eq!(log.lines().count(), 2, "an unknown intersection is still logged: {log}");
        assert_eq!((seq, unknown), (1, 0), "journaled only for a known intersection");
        let mut out = Vec::new();
        journal.read(1, 10, &mut out);
        let RecordKind::Audit(entry) = &out[0].kind else { panic!("an audit record: {out:?}") };
        assert_eq!(
            (entry.principal.as_str(), entry.role, entry.peer.as_str(), entry.result.as_str()),
            ("unauthenticated", NO_ROLE, "192.0.2.7:5000", "UNAUTHENTICATED")
        );
        assert_eq!(entry.detail, "missing bearer token");
    }

    #[test]
    fn caller_text_is_clipped_on_a_char_boundary() {
        use super::super::convert::MAX_ECHO_CHARS;
        assert_eq!(echo("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(echo(&long).chars().count(), MAX_ECHO_CHARS);
    }
}
