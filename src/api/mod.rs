//! The gRPC API (`proto/greenwave/v1/greenwave.proto`): Watch, Control and
//! Ingest, with the standard health and reflection services, over TLS
//! (rustls) when configured.
//!
//! # Layout
//! - `pb`: the generated messages and services, and the descriptor set
//!   reflection serves.
//! - `server`: the listener (TCP, TLS, HTTP/2) in front of the routes.
//! - [`auth`]: bearer tokens → roles and intersections, rate limits, role
//!   checks; `gate`: authenticates every call and counts the refused.
//! - [`audit`]: control commands in the log and the event stream;
//!   [`refusals`]: refused calls and handshakes, once per burst.
//! - [`measures`]: per-phase performance measures from events.
//! - [`docs`]: controller definitions as the API edits them (plans).
//! - [`versions`]: accepted changes saved to the controller files, as
//!   numbered versions, and what operators set (restored at start).
//! - [`convert`]: prost ↔ domain, and field errors as INVALID_ARGUMENT.
//! - `watch`, `control`, `ingest`: the service implementations;
//!   [`emergency`]: Control's emergency route green waves, handed over
//!   between daemons through the broker;
//!   [`gateway`]: Control in-process, for the standards adapters.
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
pub mod emergency;
mod gate;
pub mod gateway;
mod ingest;
pub mod measures;
pub mod refusals;
pub(crate) mod server;
pub mod versions;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use tokio::sync::Semaphore;

use crate::config::grpc::{GrpcConfig, GrpcLimits};
use crate::engine::CameraFrame;
use crate::engine::board::SnapshotBoard;
use crate::engine::latency::LatencyReader;
use crate::engine::port::CommandPort;
use crate::telemetry::journal::Journal;

pub use docs::ControllerSource;
pub use gate::CallCounts;

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
    #[error("TLS: {path}: {reason}")]
    Tls { path: String, reason: String },
    // The reason is in the message, not a `source`: a chain printed with
    // `{:#}` would say it twice.
    #[error("binding the gRPC listener on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: std::io::Error },
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// State shared by every service: set up before the engine starts, so the
/// event hub can be in place from the first event.
#[derive(Debug)]
pub struct Api {
    core: Arc<Core>,
    /// Who may call, set when the API serves: SIGHUP replaces its tokens
    /// and TLS material ([`Api::replace_access`]).
    access: std::sync::Mutex<Option<Access>>,
    /// The emergency routes, made with the first engine handles: one
    /// registry for gRPC, the other front ends and the broker's handover.
    emergency: std::sync::OnceLock<Arc<emergency::Routes>>,
}

/// What a reload of `[grpc]` can replace in a running API.
#[derive(Debug)]
struct Access {
    auth: auth::Authenticator,
    tls: Option<Arc<server::Tls>>,
    /// `[grpc]` as the API runs it.
    config: GrpcConfig,
}

/// What the services share that does not depend on the engine's channels.
#[derive(Debug)]
struct Core {
    /// Intersection ids, in the engine's order.
    ids: Vec<String>,
    /// Shared with the web view, which reads names and layouts.
    docs: Arc<docs::Docs>,
    journal: Arc<Journal>,
    measures: Arc<measures::Measures>,
    refusals: Arc<refusals::Refusals>,
    /// Calls by method (the metrics read them).
    calls: Arc<CallCounts>,
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

    /// The index of intersection `id`, if `caller` may reach it.
    fn reach(&self, caller: &auth::Identity, id: &str, field: &str) -> Result<usize, tonic::Status> {
        let i = self.index(id, field)?;
        if caller.reaches(id) { Ok(i) } else { Err(caller.out_of_scope(field, id)) }
    }

    /// Indexes of the ids listed, or all `caller` may reach when the list
    /// is empty.
    fn select(&self, caller: &auth::Identity, ids: &[String], field: &str) -> Result<Vec<usize>, tonic::Status> {
        if ids.is_empty() {
            return Ok((0..self.ids.len()).filter(|&i| caller.reaches(&self.ids[i])).collect());
        }
        let mut picked: Vec<usize> = Vec::with_capacity(ids.len());
        for (k, id) in ids.iter().enumerate() {
            let i = self.reach(caller, id, &format!("{field}[{k}]"))?;
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
    /// The engine's counters (the wall-clock offset its schedules read).
    pub stats: Arc<crate::engine::EngineStats>,
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
    emergency: Arc<emergency::Routes>,
}

impl Shared {
    /// A place for one more open stream of `caller`: one of `max_streams`,
    /// and one of its token's `max_streams_per_token`.
    fn stream_permit(&self, caller: &auth::Identity) -> Result<StreamPermit, tonic::Status> {
        let global = self.streams.clone().try_acquire_owned().map_err(|_| {
            tonic::Status::resource_exhausted(format!(
                "too many open streams (grpc.limits.max_streams = {}); try again later",
                self.limits.max_streams
            ))
        })?;
        let mut open = self.streams_per_token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = open.entry(caller.principal.clone()).or_default();
        if *mine >= self.limits.max_streams_per_token {
            return Err(tonic::Status::resource_exhausted(format!(
                "\"{}\" has {} streams open (grpc.limits.max_streams_per_token = {}); close one first",
                caller.principal, mine, self.limits.max_streams_per_token
            )));
        }
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
        let docs = Arc::new(docs::Docs::new(sources)?);
        let journal = Arc::new(Journal::new(event_history));
        let refusals = Arc::new(refusals::Refusals::new(journal.clone()));
        let calls = Arc::default();
        let core = Core { ids, docs, journal, measures, refusals, calls };
        Ok(Api { core: Arc::new(core), access: std::sync::Mutex::default(), emergency: std::sync::OnceLock::new() })
    }

    /// The journal StreamEvents reads; the daemon's event fan-out fills it.
    pub fn journal(&self) -> Arc<Journal> {
        self.core.journal.clone()
    }

    /// The performance measures; the daemon's event fan-out feeds them.
    pub fn measures(&self) -> Arc<measures::Measures> {
        self.core.measures.clone()
    }

    /// Refused calls and handshakes (the metrics listener notes its own
    /// refused scrapes here too, so one audit and one count cover both).
    pub fn refusals(&self) -> Arc<refusals::Refusals> {
        self.core.refusals.clone()
    }

    /// The controller definitions in force (the web view reads their
    /// names and layouts).
    pub fn docs(&self) -> Arc<docs::Docs> {
        self.core.docs.clone()
    }

    /// Calls that reached the API, by method.
    pub fn calls(&self) -> Arc<CallCounts> {
        self.core.calls.clone()
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
        let tls = cfg.tls.as_ref().map(server::Tls::load).transpose()?.map(Arc::new);
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|reason| ApiError::Bind { addr: cfg.listen, reason })?;
        let addr = listener.local_addr().map_err(|reason| ApiError::Bind { addr: cfg.listen, reason })?;
        self.warn_unknown_scopes(cfg);
        let (stop_tx, stopping) = tokio::sync::watch::channel(false);
        let shared = self.shared(cfg, engine, stopping.clone(), event_log);
        let auth = auth::Authenticator::new(cfg);
        let routes = routes(cfg, shared, auth.clone())?;
        let cert_scopes = auth.clone();
        *self.access.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Access { auth, tls: tls.clone(), config: cfg.clone() });
        let refusals = self.core.refusals.clone();
        let connections = server::Connections {
            routes,
            auth: cert_scopes,
            tls,
            refusals: refusals.clone(),
            stopping: stopping.clone(),
        };
        let task = tokio::spawn(server::serve(listener, connections));
        let mut sweep_stop = stopping;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = every.tick() => refusals.sweep(std::time::Instant::now()),
                    _ = sweep_stop.wait_for(|&s| s) => break,
                }
            }
            // Counts of bursts still open reach the log before the exit.
            refusals.sweep(std::time::Instant::now() + refusals::BURST_GAP);
        });
        let tls = if cfg.tls.is_some() { "on" } else { "off" };
        tracing::info!("gRPC on {addr} (tls: {tls})");
        Ok(GrpcServer { addr, stop: stop_tx, task })
    }

    /// The Control service in-process for a standards adapter, over the
    /// same engine handles and limits as the gRPC listener.
    pub fn gateway(
        &self,
        cfg: &GrpcConfig,
        engine: EngineHandles,
        event_log: crate::telemetry::EventLogConfig,
    ) -> gateway::Gateway {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        gateway::Gateway::new(self.shared(cfg, engine, stopping, event_log), stop)
    }

    /// What the services share, under `cfg`'s limits, ending their
    /// streams when `stopping` flips.
    fn shared(
        &self,
        cfg: &GrpcConfig,
        engine: EngineHandles,
        stopping: tokio::sync::watch::Receiver<bool>,
        event_log: crate::telemetry::EventLogConfig,
    ) -> Arc<Shared> {
        let emergency = self.emergency_routes(&engine);
        Arc::new(Shared {
            core: self.core.clone(),
            engine,
            limits: cfg.limits,
            streams: Arc::new(Semaphore::new(cfg.limits.max_streams)),
            streams_per_token: Arc::default(),
            stopping,
            emergency,
            event_log,
        })
    }

    /// The daemon's emergency routes, over `engine` (the first handles
    /// given; the daemon has one engine).
    pub fn emergency_routes(&self, engine: &EngineHandles) -> Arc<emergency::Routes> {
        self.emergency.get_or_init(|| Arc::new(emergency::Routes::new(self.core.clone(), engine.clone()))).clone()
    }

    /// Says which scoped tokens and certificates name an intersection this
    /// daemon does not run (a typo reaches nothing, silently otherwise).
    fn warn_unknown_scopes(&self, cfg: &GrpcConfig) {
        let tokens = cfg.tokens.iter().filter_map(|t| Some(("grpc.token", &t.name, t.intersections.as_ref()?)));
        let certs = cfg.client_certs.iter().map(|c| ("grpc.client_cert", &c.name, &c.intersections));
        for (table, name, ids) in tokens.chain(certs) {
            for id in ids.iter().filter(|id| !self.core.ids.contains(id)) {
                tracing::warn!(%name, %id, "{table} names an intersection this daemon does not run");
            }
        }
    }

    /// Applies a reloaded `[grpc]`: tokens, the anonymous role and the TLS
    /// material (read again, so files rotated in place count) take effect
    /// for calls and connections from now on; open ones keep what they
    /// were admitted with. Returns what changed, in words. What only a
    /// restart changes (the address, TLS on or off, the limits) is
    /// refused whole, so nothing is half applied.
    ///
    /// # Errors
    /// What cannot be applied, in words; the access in force stays.
    pub fn replace_access(&self, new: &GrpcConfig) -> Result<Vec<String>, String> {
        let guard = self.access.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(access) = &*guard else {
            return if new.enabled {
                Err("the gRPC API is off; turning it on takes a restart".into())
            } else {
                Ok(vec![])
            };
        };
        let old = &access.config;
        let restart_only: Vec<&str> = [
            (old.enabled != new.enabled, "enabled"),
            (old.listen != new.listen, "listen"),
            (old.tls.is_some() != new.tls.is_some(), "tls (on or off)"),
            (old.limits != new.limits, "[grpc.limits]"),
        ]
        .into_iter()
        .filter_map(|(changed, key)| changed.then_some(key))
        .collect();
        if !restart_only.is_empty() {
            return Err(format!("{} changed, which only a restart applies", restart_only.join(", ")));
        }
        let mut changed = Vec::new();
        if let (Some(tls), Some(files)) = (&access.tls, &new.tls) {
            changed = tls.replace(files).map_err(|e| e.to_string())?;
        }
        self.warn_unknown_scopes(new);
        changed.extend(access.auth.replace(new));
        Ok(changed)
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

fn routes(
    cfg: &GrpcConfig,
    shared: Arc<Shared>,
    auth: auth::Authenticator,
) -> Result<tonic::service::Routes, ApiError> {
    let max = cfg.limits.max_message_bytes;
    let guard =
        gate::Guard { auth, refusals: shared.core.refusals.clone(), core: shared.core.clone(), max_message_bytes: max };
    let watch = pb::watch_server::WatchServer::new(watch::WatchService::new(shared.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let control = pb::control_server::ControlServer::new(control::ControlService::new(
        shared.core.clone(),
        shared.engine.clone(),
        shared.emergency.clone(),
    ))
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let ingest = pb::ingest_server::IngestServer::new(ingest::IngestService::new(shared.clone()))
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
        .add_service(guard.wrap(watch, gate::WATCH))
        .add_service(guard.wrap(control, gate::CONTROL))
        .add_service(guard.wrap(ingest, gate::INGEST))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok(routes.routes())
}
