//! The gRPC API (`proto/greenwave/v1/greenwave.proto`): Watch, Control and
//! Ingest, with the standard health and reflection services, over TLS
//! (rustls) when configured.
//!
//! # Layout
//! - `pb`: the generated messages and services, and the descriptor set
//!   reflection serves.
//! - [`auth`]: bearer tokens → roles, rate limits, role checks.
//! - [`audit`]: control commands in the log and the event stream, and the
//!   gate that authenticates Control calls and audits those it turns away.
//! - [`measures`]: per-phase performance measures from events.
//! - [`docs`]: controller definitions as the API edits them (plans).
//! - [`versions`]: accepted changes saved to the controller files, as
//!   numbered versions, and what operators set (restored at start).
//! - [`convert`]: prost ↔ domain, and field errors as INVALID_ARGUMENT.
//! - `watch`, `control`, `ingest`: the service implementations.
//!
//! # Isolation from the control thread
//! The API never touches the controllers. It reads snapshots from the
//! [`SnapshotBoard`] (wait-free), events from the journal the daemon's
//! event fan-out fills (bounded ring), latency from the [`LatencyReader`], and sends
//! commands and camera frames with `try_send` on the engine's bounded
//! channels: a full channel is RESOURCE_EXHAUSTED for the caller, never a
//! wait for the engine. Every stream has its own task and bounded buffer,
//! so a slow client only ever slows itself (and is told it lagged).

pub mod audit;
pub mod auth;
mod control;
pub mod convert;
pub mod docs;
mod ingest;
pub mod measures;
pub mod versions;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use tokio::sync::Semaphore;
use tonic::transport::{Certificate, Server, ServerTlsConfig};

use crate::config::grpc::{GrpcConfig, GrpcLimits, TlsFiles};
use crate::engine::CameraFrame;
use crate::engine::board::SnapshotBoard;
use crate::engine::latency::LatencyReader;
use crate::engine::port::CommandPort;
use crate::telemetry::journal::Journal;

pub use docs::ControllerSource;

/// The generated protobuf messages and services (`greenwave.v1`).
#[allow(clippy::all, missing_debug_implementations, rust_2018_idioms)]
pub mod pb {
    tonic::include_proto!("greenwave.v1");

    /// The encoded descriptors of `greenwave.v1`, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("greenwave_descriptor");
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Doc(#[from] docs::DocError),
    #[error("reading {path}: {source}")]
    TlsFile { path: String, source: std::io::Error },
    #[error("TLS configuration: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("binding the gRPC listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// State shared by every service: set up before the engine starts, so the
/// event hub can be in place from the first event.
#[derive(Debug)]
pub struct Api {
    core: Arc<Core>,
}

/// What the services share that does not depend on the engine's channels.
#[derive(Debug)]
struct Core {
    /// Intersection ids, in the engine's order.
    ids: Vec<String>,
    docs: docs::Docs,
    journal: Arc<Journal>,
    measures: Arc<measures::Measures>,
}

impl Core {
    /// The index of intersection `id`.
    fn index(&self, id: &str, field: &str) -> Result<usize, tonic::Status> {
        if id.is_empty() {
            return Err(convert::invalid(field, "must name an intersection"));
        }
        self.ids
            .iter()
            .position(|x| x == id)
            .ok_or_else(|| tonic::Status::not_found(format!("{field}: no intersection \"{}\"", convert::echo(id))))
    }

    /// Indexes of the ids listed, or all when the list is empty.
    fn select(&self, ids: &[String], field: &str) -> Result<Vec<usize>, tonic::Status> {
        if ids.is_empty() {
            return Ok((0..self.ids.len()).collect());
        }
        let mut picked: Vec<usize> = Vec::with_capacity(ids.len());
        for (k, id) in ids.iter().enumerate() {
            let i = self.index(id, &format!("{field}[{k}]"))?;
            // Listed twice would mean every update twice.
            if picked.contains(&i) {
                return Err(convert::invalid(
                    &format!("{field}[{k}]"),
                    format!("\"{}\" is listed twice", convert::echo(id)),
                ));
            }
            picked.push(i);
        }
        Ok(picked)
    }
}

/// The engine's side of the API: channels into it and what it publishes.
#[derive(Clone, Debug)]
pub struct EngineHandles {
    pub commands: CommandPort,
    pub camera: Sender<(usize, CameraFrame)>,
    pub board: Arc<SnapshotBoard>,
    pub latency: Arc<LatencyReader>,
    /// Each intersection's cabinet link counters, in the daemon's order.
    pub cabinet_links: Vec<Arc<crate::io::cabinet::CabinetStats>>,
}

/// An open stream's place (see `Shared::stream_permit`); given back when
/// the stream ends.
#[derive(Debug)]
struct StreamPermit {
    _global: tokio::sync::OwnedSemaphorePermit,
    principal: Arc<str>,
    open: Arc<std::sync::Mutex<std::collections::HashMap<Arc<str>, usize>>>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

/// Everything a service handler needs.
#[derive(Debug)]
struct Shared {
    core: Arc<Core>,
    engine: EngineHandles,
    limits: GrpcLimits,
    /// One permit per open stream (watchers and cameras), so many clients
    /// cannot make the daemon hold unbounded tasks and buffers.
    streams: Arc<Semaphore>,
    /// Open streams per token (principal).
    streams_per_token: Arc<std::sync::Mutex<std::collections::HashMap<Arc<str>, usize>>>,
    /// Flips to `true` at shutdown: open streams end so the server can drain.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Where the event log is on disk (ReadEventLog reads it).
    event_log: crate::telemetry::EventLogConfig,
}

impl Shared {
    /// A place for one more open stream of `caller`: one of `max_streams`,
    /// and one of its token's `max_streams_per_token`.
    fn stream_permit(&self, caller: &auth::Identity) -> Result<StreamPermit, tonic::Status> {
        let mut open = self.streams_per_token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = open.entry(caller.principal.clone()).or_default();
        if *mine >= self.limits.max_streams_per_token {
            return Err(tonic::Status::resource_exhausted(format!(
                "\"{}\" has {} streams open (grpc.limits.max_streams_per_token = {}); close one first",
                caller.principal, mine, self.limits.max_streams_per_token
            )));
        }
        let global = self.streams.clone().try_acquire_owned().map_err(|_| {
            tonic::Status::resource_exhausted(format!(
                "too many open streams (grpc.limits.max_streams = {}); try again later",
                self.limits.max_streams
            ))
        })?;
        *mine += 1;
        Ok(StreamPermit { _global: global, principal: caller.principal.clone(), open: self.streams_per_token.clone() })
    }
}

impl Api {
    /// # Errors
    /// A controller source does not parse as TOML.
    pub fn new(sources: Vec<ControllerSource>, event_history: usize) -> Result<Api, ApiError> {
        let ids = sources.iter().map(|s| s.config.spec.id.clone()).collect();
        let measures = Arc::new(measures::Measures::new(sources.iter().map(|s| &s.config.spec)));
        let docs = docs::Docs::new(sources)?;
        let journal = Arc::new(Journal::new(event_history));
        Ok(Api { core: Arc::new(Core { ids, docs, journal, measures }) })
    }

    /// The journal StreamEvents reads; the daemon's event fan-out fills it.
    pub fn journal(&self) -> Arc<Journal> {
        self.core.journal.clone()
    }

    /// The performance measures; the daemon's event fan-out feeds them.
    pub fn measures(&self) -> Arc<measures::Measures> {
        self.core.measures.clone()
    }

    /// A SIGHUP reload stages a new definition for intersection `i`:
    /// returns the version it gets (0 for an index this API does not have).
    pub fn reloaded(&self, i: usize, config: crate::config::IntersectionConfig, text: &str) -> u64 {
        if i >= self.core.docs.len() {
            return 0;
        }
        self.core.measures.configure(i, &config.spec);
        self.core.docs.reloaded(i, config, text)
    }

    /// Binds `cfg.listen` and serves the API on the current tokio runtime.
    ///
    /// # Errors
    /// TLS files unreadable or invalid, or the address cannot be bound.
    pub async fn serve(
        &self,
        cfg: &GrpcConfig,
        engine: EngineHandles,
        event_log: crate::telemetry::EventLogConfig,
    ) -> Result<GrpcServer, ApiError> {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ApiError::Bind { addr: cfg.listen, source })?;
        let addr = listener.local_addr().map_err(|source| ApiError::Bind { addr: cfg.listen, source })?;
        let (stop_tx, stopping) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            core: self.core.clone(),
            engine,
            limits: cfg.limits,
            streams: Arc::new(Semaphore::new(cfg.limits.max_streams)),
            streams_per_token: Arc::default(),
            stopping,
            event_log,
        });
        let router = routes(cfg, shared)?;
        let mut builder = Server::builder()
            // Per connection: bounded concurrent calls and HTTP/2 streams,
            // and keepalives so dead peers release their streams.
            .concurrency_limit_per_connection(64)
            .max_concurrent_streams(128)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .tcp_nodelay(true);
        if let Some(tls) = &cfg.tls {
            builder = builder.tls_config(tls_config(tls)?).map_err(ApiError::Tls)?;
        }
        let router = builder.add_routes(router);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let mut stop_rx = stop_tx.subscribe();
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop_rx.wait_for(|&s| s).await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        });
        let tls = if cfg.tls.is_some() { "on" } else { "off" };
        tracing::info!("gRPC on {addr} (tls: {tls})");
        Ok(GrpcServer { addr, stop: stop_tx, task })
    }
}

/// The API's own tokio runtime (two workers, `greenwave-grpc`): client
/// load never competes with cabinet I/O, which has its own runtime, and
/// the control loop has its own thread. Its threads stay at normal
/// priority (the daemon builds it from its main thread, which never asks
/// for more): a busy client yields to the control thread and the cabinet
/// I/O, both real-time (`crate::realtime`).
///
/// # Errors
/// The OS refused the worker threads.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("greenwave-grpc").enable_all().build()
}

/// A running server.
#[derive(Debug)]
pub struct GrpcServer {
    /// The address bound (the real port when the config said port 0).
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// How long open calls get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl GrpcServer {
    /// Ends every stream, stops accepting, and waits (bounded) for calls in
    /// flight.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.task).await.is_err() {
            tracing::warn!("gRPC calls still open after {SHUTDOWN_GRACE:?}; closing them");
            abort.abort();
        }
    }
}

fn tls_config(tls: &TlsFiles) -> Result<ServerTlsConfig, ApiError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| ApiError::TlsFile { path: p.display().to_string(), source })
    };
    let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?)).client_auth_optional(!tls.require_client_cert);
    }
    Ok(config)
}

fn routes(cfg: &GrpcConfig, shared: Arc<Shared>) -> Result<tonic::service::Routes, ApiError> {
    use tonic::service::interceptor::InterceptedService;
    let auth = auth::Authenticator::new(cfg);
    let max = cfg.limits.max_message_bytes;
    let watch = pb::watch_server::WatchServer::new(watch::WatchService::new(shared.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let control = pb::control_server::ControlServer::new(control::ControlService::new(shared.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    // Control authenticates in a gate that knows the method, so calls it
    // turns away are audited like the ones the handlers refuse.
    let control = audit::ControlGate::new(control, auth.clone(), shared.core.clone(), max);
    let ingest = pb::ingest_server::IngestServer::new(ingest::IngestService::new(shared))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Serving as long as the process runs: health reflects the API, and a
    // flashing intersection is state (GetState), not an unhealthy server.
    for name in ["", "greenwave.v1.Watch", "greenwave.v1.Control", "greenwave.v1.Ingest"] {
        let reporter = health_reporter.clone();
        tokio::spawn(async move { reporter.set_service_status(name, tonic_health::ServingStatus::Serving).await });
    }
    // Both reflection versions: grpcurl and tonic speak v1, the Python
    // grpcio-reflection client only v1alpha (tests/grpc/interop.rs runs it).
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(InterceptedService::new(watch, auth.clone()))
        .add_service(control)
        .add_service(InterceptedService::new(ingest, auth))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok(routes.routes())
}
