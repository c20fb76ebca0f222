//! The daemon's HTTP listener (`[http]`): Prometheus / OpenMetrics at
//! `/metrics` and the web view ([`web`]), behind the gRPC API's tokens
//! and roles.
//!
//! One axum [`Router`] behind one gate ([`viewers_only`]): a viewer or
//! operator token, or an anonymous caller where `[http] anonymous` lets
//! them view, may read every route; anything else is refused and counted
//! in the API's refusals (same audit, same `code` metric). A browser
//! cannot put a bearer header on a page load or an `EventSource`, so the
//! gate also takes the token from a `token` query parameter (answered
//! with a cookie that carries it from then on) or from that cookie.
//!
//! The listener runs on the gRPC runtime and never touches the control
//! thread: a scrape reads what the engine already publishes
//! ([`metrics::Sources`]), off the runtime's two workers
//! (`spawn_blocking`), so a scrape of 1,000 intersections does not hold
//! up the gRPC calls they serve.
//!
//! # Layout
//! - [`metrics`]: the collector read at each scrape.
//! - [`web`]: the web view's pages, JSON and live feed; `corridor`: its
//!   corridor list and time-space diagram rows.
//! - this module: [`serve`], the gate, connections (HTTP/1.1 and HTTP/2,
//!   TLS when configured).

mod corridor;
pub mod metrics;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tonic::codegen::Service as _;
use tonic::transport::server::TcpConnectInfo;

use crate::api::ApiError;
use crate::api::audit::NO_ROLE;
use crate::api::auth::{Authenticator, Need, permit};
use crate::api::convert::echo;
use crate::api::refusals::{Refusal, Refusals};
use crate::api::server::{Accept, ListenerNames, Stream, Tls, accept, stopped};
use crate::config::{GrpcConfig, HttpConfig};

/// What the audit and the refusal counts call a refused HTTP request.
const METHOD: &str = "HTTP GET";
/// Open connections; past it new ones are closed at once. Scrapers keep
/// one connection each.
const MAX_CONNECTIONS: usize = 256;
/// How long open requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// A scraper offers HTTP/1.1; browsers and some clients HTTP/2.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// The cookie that carries a browser's token after `?token=`.
const TOKEN_COOKIE: &str = "greenwave_token";
/// OpenMetrics 1.0 text, which Prometheus asks for and parses.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Tls(#[from] ApiError),
    // The reason is in the message, not a `source`: a chain printed with
    // `{:#}` would say it twice.
    #[error("binding the metrics listener on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: std::io::Error },
}

/// A running listener.
#[derive(Debug)]
pub struct HttpServer {
    /// The address bound (the real port when the config said port 0).
    pub addr: SocketAddr,
    /// Who may scrape: a SIGHUP reload replaces its tokens with `[grpc]`'s.
    pub auth: Authenticator,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Stops accepting and waits (bounded) for requests in flight.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// What every request shares.
#[derive(Debug)]
struct Shared {
    /// `[grpc]`'s tokens with `[http]`'s anonymous role.
    auth: Authenticator,
    refusals: Arc<Refusals>,
    registry: Registry,
    /// Marks the token cookie `Secure`: a browser then sends it over TLS only.
    tls: bool,
}

/// Binds `cfg.listen` and serves on the current tokio runtime. Tokens come
/// from `grpc` (`[[grpc.token]]`), refusals go to `refusals`.
///
/// # Errors
/// TLS files unreadable or invalid, or the address cannot be bound.
pub async fn serve(
    cfg: &HttpConfig,
    grpc: &GrpcConfig,
    refusals: Arc<Refusals>,
    sources: metrics::Sources,
    feeds: web::Feeds,
) -> Result<HttpServer, HttpError> {
    let tls = cfg.tls.as_ref().map(|files| Tls::load_for(files, ALPN)).transpose()?.map(Arc::new);
    let listener =
        TcpListener::bind(cfg.listen).await.map_err(|reason| HttpError::Bind { addr: cfg.listen, reason })?;
    let addr = listener.local_addr().map_err(|reason| HttpError::Bind { addr: cfg.listen, reason })?;
    let auth = Authenticator::new(&GrpcConfig { anonymous: cfg.anonymous, ..grpc.clone() });
    let registry = metrics::registry(sources);
    let shared = Arc::new(Shared { auth: auth.clone(), refusals, registry, tls: tls.is_some() });
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(shared.clone())
        .merge(web::router(feeds))
        .layer(middleware::from_fn_with_state(shared.clone(), viewers_only));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let how = Accept {
        names: ListenerNames { log: "metrics listener", connect: "HTTP connect", handshake: "HTTP TLS handshake" },
        max_connections: MAX_CONNECTIONS,
        // No per-address bound of its own: a scraper or a browser needs few.
        max_per_peer: MAX_CONNECTIONS,
        tls,
        refusals: shared.refusals.clone(),
        stopping: stopping.clone(),
    };
    let task = tokio::spawn(accept(listener, how, move |stream, info, _| {
        http(stream, info, router.clone(), stopping.clone())
    }));
    let tls = if cfg.tls.is_some() { "on" } else { "off" };
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    tracing::info!("metrics on {scheme}://{addr}/metrics (tls: {tls}), web view on {scheme}://{addr}/");
    Ok(HttpServer { addr, auth, stop, task })
}

/// Lets viewers and operators through, with their [`Identity`] in the
/// request for routes that answer per intersection; refuses (and counts)
/// the rest.
///
/// [`Identity`]: crate::api::auth::Identity
async fn viewers_only(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr);
    let (headers, from_query) = browser_token(&req);
    let refused = match shared.auth.admit(headers.as_ref().unwrap_or(req.headers()), peer, None) {
        Ok(id) => match permit(&id, Need::View, METHOD) {
            Ok(()) => {
                req.extensions_mut().insert(id);
                let mut response = next.run(req).await;
                if let Some(token) = from_query {
                    let secure = if shared.tls { "; Secure" } else { "" };
                    let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
                    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
                        response.headers_mut().insert(header::SET_COOKIE, value);
                    }
                }
                return response;
            }
            Err(status) => (status, id.principal, id.role.name()),
        },
        Err(rejection) => (rejection.status, rejection.principal, rejection.role.map_or(NO_ROLE, |r| r.name())),
    };
    let (status, principal, role) = refused;
    let result = crate::api::audit::code_name(status.code());
    let refusal = Refusal {
        principal,
        role,
        peer,
        method: METHOD,
        request: format!("path {:?}", echo(req.uri().path())),
        result,
        detail: status.message().to_owned(),
        intersection: None,
    };
    shared.refusals.note(refusal, WallInstant::now());
    let code = match status.code() {
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = (code, format!("{result}: {}\n", status.message())).into_response();
    if code == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

/// A browser's token, when the request has no `Authorization` header: the
/// `token` query parameter (returned second, to be set as the cookie) or
/// the token cookie. Returns the headers to admit the request by, with the
/// token as a bearer header. The token is never logged: refusals record
/// the path only.
fn browser_token(req: &Request) -> (Option<axum::http::HeaderMap>, Option<String>) {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return (None, None);
    }
    let from_query = web::query_value(req.uri().query(), "token").filter(|t| !t.is_empty());
    let from_cookie =
        || {
            req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|cookies| {
                cookies.split(';').find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
            })
        };
    let Some(token) = from_query.or_else(from_cookie) else { return (None, None) };
    let Ok(bearer) = header::HeaderValue::from_str(&format!("Bearer {token}")) else { return (None, None) };
    let mut headers = req.headers().clone();
    headers.insert(header::AUTHORIZATION, bearer);
    (Some(headers), from_query.map(str::to_owned))
}

/// `/metrics`: the registry encoded off the runtime's workers (it takes
/// short locks: the measures, each cabinet's round-trip histogram).
async fn scrape(State(shared): State<Arc<Shared>>) -> Response {
    let encoded = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &shared.registry).map(|()| text)
    })
    .await;
    match encoded {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded\n").into_response(),
    }
}

/// Serves `router` on one connection until it closes, or gracefully from
/// `stopping`.
async fn http(
    io: Box<dyn Stream>,
    info: TcpConnectInfo,
    router: Router,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        // Where the gate looks for the peer, as on the gRPC listener.
        req.extensions_mut().insert(info.clone());
        // A `Router` is always ready, so no poll_ready.
        router.clone().call(req)
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that opens a connection and sends nothing is let go.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "metrics connection ended");
            }
            return;
        }
        () = stopped(&mut stopping) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
