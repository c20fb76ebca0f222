//! The gate in front of Watch, Control and Ingest: authenticates every
//! call and counts the ones it turns away.
//!
//! It stands where a tonic interceptor would, but sees the HTTP request:
//! the method (from the path) names each refusal in the audit, and for a
//! refused Control call the gate reads the first message to learn which
//! intersection it named, so the record reaches that intersection's event
//! stream like any other. That read is bounded ([`FIRST_MESSAGE_WAIT`], the
//! message size limit) and made only for the first refusal of a burst
//! ([`Refusals::opens_burst`]): a flood is answered at once. Admitted calls
//! go straight on with their [`Identity`] and pay nothing more.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant as WallInstant};

use prost::Message;
use tonic::body::Body;
use tonic::codegen::http::{Extensions, Request, Response};
use tonic::codegen::{Body as _, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::transport::server::TcpConnectInfo;

use super::Core;
use super::audit::{NO_ROLE, code_name};
use super::auth::{Authenticator, CertScope};
use super::convert::echo;
use super::refusals::{Refusal, Refusals};

/// The methods of one service (`proto/greenwave/v1/greenwave.proto`), as
/// the audit names them.
#[derive(Clone, Copy, Debug)]
pub struct Methods {
    /// Every rpc, `greenwave.v1.Control/SetMode`, in the proto's order.
    pub all: &'static [&'static str],
    /// The name of a path the service does not serve.
    pub unknown: &'static str,
    /// Refused calls are read for the intersection they name (Control:
    /// field 1 of every request is `intersection_id`, but for the
    /// emergency route calls' `route_id`, which names none).
    pub read_target: bool,
}

pub const CONTROL: Methods = Methods {
    all: &[
        "greenwave.v1.Control/SetMode",
        "greenwave.v1.Control/ApplyTimingPlan",
        "greenwave.v1.Control/SetCoordination",
        "greenwave.v1.Control/RequestPreemption",
        "greenwave.v1.Control/RequestPriority",
        "greenwave.v1.Control/HoldPhases",
        "greenwave.v1.Control/ReleasePhases",
        "greenwave.v1.Control/OmitPhases",
        "greenwave.v1.Control/ResetMonitor",
        "greenwave.v1.Control/ListVersions",
        "greenwave.v1.Control/RollbackVersion",
        super::emergency::START,
        super::emergency::UPDATE,
        super::emergency::CANCEL,
        super::emergency::GET,
    ],
    unknown: "greenwave.v1.Control/?",
    read_target: true,
};

pub const WATCH: Methods = Methods {
    all: &[
        "greenwave.v1.Watch/ListIntersections",
        "greenwave.v1.Watch/GetState",
        "greenwave.v1.Watch/WatchState",
        "greenwave.v1.Watch/StreamEvents",
        "greenwave.v1.Watch/GetPerformance",
        "greenwave.v1.Watch/ReadEventLog",
    ],
    unknown: "greenwave.v1.Watch/?",
    read_target: false,
};

pub const INGEST: Methods =
    Methods { all: &["greenwave.v1.Ingest/PushDetections"], unknown: "greenwave.v1.Ingest/?", read_target: false };

impl Methods {
    /// The audit name of `path` (`/greenwave.v1.Control/SetMode`).
    fn name(&self, path: &str) -> Option<&'static str> {
        let path = path.strip_prefix('/')?;
        self.all.iter().copied().find(|m| *m == path)
    }
}

/// Calls that reached a gate, by method: every rpc of the three services
/// and one "?" per service for paths they do not serve, so the metrics'
/// `method` label has a fixed set of values (25).
#[derive(Debug)]
pub struct CallCounts {
    methods: Vec<&'static str>,
    counts: Vec<AtomicU64>,
}

impl Default for CallCounts {
    fn default() -> Self {
        let methods: Vec<&'static str> =
            [WATCH, CONTROL, INGEST].iter().flat_map(|m| m.all.iter().copied().chain([m.unknown])).collect();
        let counts = methods.iter().map(|_| AtomicU64::new(0)).collect();
        CallCounts { methods, counts }
    }
}

impl CallCounts {
    fn count(&self, method: &'static str) {
        if let Some(k) = self.methods.iter().position(|m| *m == method) {
            self.counts[k].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls so far, per method (every one, zeros included).
    pub fn by_method(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.methods.iter().copied().zip(self.counts.iter().map(|n| n.load(Ordering::Relaxed)))
    }
}

/// How long a refused call's first message may take to arrive before the
/// refusal is audited without its intersection (log only).
const FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(1);

/// What every service's gate shares.
#[derive(Clone, Debug)]
pub struct Guard {
    pub auth: Authenticator,
    pub refusals: Arc<Refusals>,
    pub core: Arc<Core>,
    pub max_message_bytes: usize,
}

impl Guard {
    /// `inner`, behind a gate.
    pub fn wrap<S>(&self, inner: S, methods: Methods) -> Gate<S> {
        Gate { inner, methods, guard: self.clone() }
    }
}

/// Authenticates every call of the service it wraps and counts the
/// refusals (see the module docs).
#[derive(Clone, Debug)]
pub struct Gate<S> {
    inner: S,
    methods: Methods,
    guard: Guard,
}

impl<S> Service<Request<Body>> for Gate<S>
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
        let known = self.methods.name(req.uri().path());
        self.guard.core.calls.count(known.unwrap_or(self.methods.unknown));
        let cert = req.extensions().get::<CertScope>();
        let rejection = match self.guard.auth.admit(req.headers(), peer, cert) {
            Ok(id) => {
                req.extensions_mut().insert(id.clone());
                let method = known.unwrap_or(self.methods.unknown);
                let call = AdmittedCall { id, method, refusals: self.guard.refusals.clone() };
                return GateFuture::Admitted(self.inner.call(req), Some(call));
            }
            Err(rejection) => rejection,
        };
        let method = known.unwrap_or(self.methods.unknown);
        let result = code_name(rejection.status.code());
        let read_target = self.methods.read_target
            && known.is_some()
            && self.guard.refusals.opens_burst(peer, &rejection.principal, method, result, rejection.status.message());
        let path = known.is_none().then(|| req.uri().path().to_owned());
        let Guard { core, refusals, max_message_bytes: max, .. } = self.guard.clone();
        GateFuture::Rejected(Box::pin(async move {
            let target = if read_target {
                tokio::time::timeout(FIRST_MESSAGE_WAIT, first_intersection_id(req.into_body(), max))
                    .await
                    .ok()
                    .flatten()
            } else {
                None
            };
            let intersection = target.as_deref().and_then(|id| core.ids.iter().position(|x| x == id));
            let request = match (&path, &target) {
                (Some(path), _) => format!("path {:?}", echo(path)),
                (None, Some(id)) => format!("intersection_id {:?} (request not read)", echo(id)),
                (None, None) => "request not read".to_owned(),
            };
            let refusal = Refusal {
                principal: rejection.principal.clone(),
                role: rejection.role.map_or(NO_ROLE, |r| r.name()),
                peer,
                method,
                request,
                result,
                detail: rejection.status.message().to_owned(),
                intersection,
            };
            refusals.note(refusal, WallInstant::now());
            Ok(rejection.status.into_http())
        }))
    }
}

impl<S: NamedService> NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}

/// The future of a [`Gate`] call: the service's own for an admitted call
/// (no extra allocation), a boxed audit for a refused one.
pub enum GateFuture<F> {
    /// The call, and who made it (taken when it answers).
    Admitted(F, Option<AdmittedCall>),
    Rejected(BoxFuture<Response<Body>, Infallible>),
}

/// An admitted call, for the answer to a request that did not decode.
#[derive(Debug)]
pub struct AdmittedCall {
    id: super::auth::Identity,
    method: &'static str,
    refusals: Arc<Refusals>,
}

impl<F> std::fmt::Debug for GateFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GateFuture::Admitted(..) => "GateFuture::Admitted",
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
            GateFuture::Admitted(f, call) => {
                let Ok(response) = std::task::ready!(Pin::new(f).poll(cx));
                Poll::Ready(Ok(match call.take() {
                    Some(call) => undecodable_is_invalid(response, call),
                    None => response,
                }))
            }
            GateFuture::Rejected(f) => f.as_mut().poll(cx),
        }
    }
}

/// tonic answers a request message that does not decode with INTERNAL (as
/// gRPC's status code guide has it for the server's own parse errors); to
/// a control centre it is the caller's malformed request:
/// INVALID_ARGUMENT, and a refusal like any other.
fn undecodable_is_invalid(response: Response<Body>, call: AdmittedCall) -> Response<Body> {
    let undecodable = response.headers().get("grpc-status").is_some_and(|c| c == "13")
        && tonic::Status::from_header_map(response.headers())
            .is_some_and(|s| s.message().starts_with("failed to decode Protobuf message"));
    if !undecodable {
        return response;
    }
    let detail = tonic::Status::from_header_map(response.headers()).map(|s| s.message().to_owned()).unwrap_or_default();
    let status = tonic::Status::invalid_argument(format!("the request is not a {} message: {detail}", call.method));
    let refusal = super::audit::refusal(&call.id, call.method, "request not decoded".into(), &status, None);
    call.refusals.note(refusal, WallInstant::now());
    status.into_http()
}

/// The peer address the server put in the request (`super::server`).
fn remote_addr(extensions: &Extensions) -> Option<SocketAddr> {
    extensions.get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr)
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
    fn every_rpc_in_the_proto_has_an_audit_name() {
        let proto = include_str!("../../proto/greenwave/v1/greenwave.proto");
        for (service, methods) in [("Control", CONTROL), ("Watch", WATCH), ("Ingest", INGEST)] {
            let body = &proto[proto.find(&format!("service {service} {{")).expect("service")..];
            let body = &body[..body.find("\n}").expect("end of service")];
            let rpcs: Vec<String> = body
                .lines()
                .filter_map(|l| l.trim().strip_prefix("rpc "))
                .map(|l| format!("greenwave.v1.{service}/{}", &l[..l.find('(').expect("rpc name(")]))
                .collect();
            assert_eq!(rpcs, methods.all, "{service}: the audit names list the proto's rpcs in order");
        }
        assert_eq!(CONTROL.name("/greenwave.v1.Control/SetMode"), Some("greenwave.v1.Control/SetMode"));
        assert_eq!(CONTROL.name("/greenwave.v1.Control/Nope"), None);
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

    #[test]
    fn caller_text_is_clipped_on_a_char_boundary() {
        use super::super::convert::MAX_ECHO_CHARS;
        assert_eq!(echo("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(echo(&long).chars().count(), MAX_ECHO_CHARS);
    }
}
