//! The API's listener: TCP, TLS (rustls), HTTP/2 (hyper), in front of the
//! tonic routes.
//!
//! The daemon accepts connections itself rather than through tonic's
//! `Server`, for three things it needs and that server does not offer:
//! - **TLS material replaced in place** ([`Tls::replace`], on SIGHUP): a
//!   certificate rotation reaches new connections, and neither open calls
//!   nor the signals notice.
//! - **Refused handshakes are audited** (a client with the wrong CA, an
//!   expired certificate, plaintext on the TLS port) as refusals, counted
//!   in bursts per peer like refused calls ([`Refusals`]).
//! - **Small HTTP/2 send buffers** ([`SEND_BUFFER_BYTES`] per stream): what
//!   a client has not read waits in the client's window, not in a large
//!   server-side buffer, so a watcher that stops reading is not later
//!   replayed minutes of old states: the stream is simply not polled, and
//!   the next message it is sent is the newest (`super::watch`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::Request;
use tonic::transport::server::TcpConnectInfo;

use super::ApiError;
use super::audit::NO_ROLE;
use super::auth::{Authenticator, CertScope, UNAUTHENTICATED};
use super::refusals::{Refusal, Refusals, TLS_HANDSHAKE};
use crate::config::grpc::TlsFiles;

/// Bytes a stream may have queued beyond what the client's flow-control
/// window takes. hyper's default (400 KiB) holds thousands of state
/// updates; this holds a few.
pub const SEND_BUFFER_BYTES: usize = 16 * 1024;
/// Concurrent calls (HTTP/2 streams) per connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// Open connections, all clients; past it new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Of those, one peer address's (a control centre behind one NAT address
/// still has room; one host cannot take every connection).
pub const MAX_CONNECTIONS_PER_PEER: usize = 256;
/// A TLS handshake that takes longer is abandoned (and audited).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS material, replaceable while it runs.
#[derive(Debug)]
pub struct Tls {
    config: ArcSwap<rustls::ServerConfig>,
    /// The files and their bytes as loaded, to say what a reload changed.
    loaded: std::sync::Mutex<(TlsFiles, [Vec<u8>; 3])>,
    /// The application protocols offered (ALPN).
    alpn: &'static [&'static [u8]],
}

/// gRPC is HTTP/2 only.
const GRPC_ALPN: &[&[u8]] = &[b"h2"];

impl Tls {
    /// # Errors
    /// A file cannot be read, or its PEM is not a certificate chain, key or CA.
    pub fn load(files: &TlsFiles) -> Result<Tls, ApiError> {
        Self::load_for(files, GRPC_ALPN)
    }

    /// As [`Tls::load`], for a listener that speaks `alpn` (the metrics
    /// listener also takes HTTP/1.1, which is what scrapers speak).
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn load_for(files: &TlsFiles, alpn: &'static [&'static [u8]]) -> Result<Tls, ApiError> {
        let (config, bytes) = server_config(files, alpn)?;
        let loaded = std::sync::Mutex::new((files.clone(), bytes));
        Ok(Tls { config: ArcSwap::from_pointee(config), loaded, alpn })
    }

    /// An acceptor with the material in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Loads `files` again (rotated in place or moved) for the connections
    /// accepted from now on. Returns what changed, in words; on an error
    /// the material in use stays.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn replace(&self, files: &TlsFiles) -> Result<Vec<String>, ApiError> {
        let (config, bytes) = server_config(files, self.alpn)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (old_files, old_bytes) = &*loaded;
        let mut changed = Vec::new();
        for (k, what) in ["certificate", "key", "client CA"].into_iter().enumerate() {
            if old_bytes[k] != bytes[k] {
                changed.push(format!("TLS {what} replaced"));
            }
        }
        if old_files.require_client_cert != files.require_client_cert {
            changed.push(format!("require_client_cert = {}", files.require_client_cert));
        }
        self.config.store(Arc::new(config));
        *loaded = (files.clone(), bytes);
        Ok(changed)
    }
}

/// A rustls server configuration from PEM files, and the files' bytes.
fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<(rustls::ServerConfig, [Vec<u8>; 3]), ApiError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| ApiError::TlsFile { path: p.display().to_string(), source })
    };
    let bad = |p: &std::path::Path, reason: String| ApiError::Tls { path: p.display().to_string(), reason };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let ca_pem = files.client_ca.as_deref().map(read).transpose()?.unwrap_or_default();
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(bad(&files.cert, "no certificate in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad(&files.key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca_pem) {
                let c = c.map_err(|e| bad(ca, format!("not a PEM certificate: {e}")))?;
                roots.add(c).map_err(|e| bad(ca, e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.require_client_cert { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| bad(ca, e.to_string()))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad(&files.key, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((config, [cert_pem, key_pem, ca_pem]))
}

/// What each gRPC connection shares.
#[derive(Clone, Debug)]
pub(super) struct Connections {
    pub routes: tonic::service::Routes,
    /// Maps client certificates to their scopes.
    pub auth: Authenticator,
    pub tls: Option<Arc<Tls>>,
    pub refusals: Arc<Refusals>,
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Serves gRPC on `listener` until `stopping`, then lets open calls
/// finish (the caller bounds how long: dropping this future closes them).
pub(super) async fn serve(listener: TcpListener, shared: Connections) {
    let how = Accept {
        names: ListenerNames { log: "gRPC listener", connect: "TCP connect", handshake: "TLS handshake" },
        max_connections: MAX_CONNECTIONS,
        max_per_peer: MAX_CONNECTIONS_PER_PEER,
        tls: shared.tls.clone(),
        refusals: shared.refusals.clone(),
        stopping: shared.stopping.clone(),
    };
    accept(listener, how, move |stream, info, cert| {
        let cert = cert.and_then(|der| shared.auth.cert_scope(&der));
        http2(stream, info, cert, shared.clone())
    })
    .await;
}

/// An accepted connection's byte stream: TCP, or TLS over it.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How a listener names itself in the log and in the refusals it audits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListenerNames {
    pub log: &'static str,
    pub connect: &'static str,
    pub handshake: &'static str,
}

/// How a listener accepts: its connection bounds, TLS, where refusals go,
/// and when to stop.
#[derive(Debug)]
pub(crate) struct Accept {
    pub names: ListenerNames,
    pub max_connections: usize,
    pub max_per_peer: usize,
    pub tls: Option<Arc<Tls>>,
    pub refusals: Arc<Refusals>,
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Accepts connections until `how.stopping`, each within the bounds (past
/// them closed at once and audited), through the TLS handshake when TLS
/// is on (bounded by [`HANDSHAKE_TIMEOUT`]; a refused one audited), then
/// hands its stream, peer and client certificate (DER) to `serve`. After
/// the stop, waits for the open connections.
pub(crate) async fn accept<F, Fut>(listener: TcpListener, how: Accept, serve: F)
where
    F: Fn(Box<dyn Stream>, TcpConnectInfo, Option<CertificateDer<'static>>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let local = listener.local_addr().ok();
    let mut stopping = how.stopping.clone();
    let mut open = JoinSet::new();
    let mut per_peer: HashMap<IpAddr, usize> = HashMap::new();
    loop {
        tokio::select! {
            () = stopped(&mut stopping) => break,
            Some(ended) = open.join_next(), if !open.is_empty() => {
                // A connection task that panicked gives no address back;
                // its count is then kept (conservative) rather than guessed.
                if let Ok(ip) = ended
                    && let Some(n) = per_peer.get_mut(&ip)
                {
                    *n -= 1;
                    if *n == 0 {
                        per_peer.remove(&ip);
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let of_peer = per_peer.get(&remote.ip()).copied().unwrap_or(0);
                    if open.len() >= how.max_connections || of_peer >= how.max_per_peer {
                        let detail = format!(
                            "{} connections open, {of_peer} from this address (at most {}, {} per address); \
                             closed at once",
                            open.len(),
                            how.max_connections,
                            how.max_per_peer
                        );
                        refuse(&how.refusals, remote, how.names.connect, "RESOURCE_EXHAUSTED", detail);
                        continue;
                    }
                    let _ = tcp.set_nodelay(true);
                    *per_peer.entry(remote.ip()).or_default() += 1;
                    let info = TcpConnectInfo { local_addr: local, remote_addr: Some(remote) };
                    let (tls, refusals, names, serve) = (how.tls.clone(), how.refusals.clone(), how.names, serve.clone());
                    open.spawn(async move {
                        connection(tcp, info, tls, &refusals, names, serve).await;
                        remote.ip()
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some
                    // to close rather than spin.
                    tracing::warn!(error = %e, "{}: accept failed", how.names.log);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    while open.join_next().await.is_some() {}
}

async fn connection<F, Fut>(
    tcp: tokio::net::TcpStream,
    info: TcpConnectInfo,
    tls: Option<Arc<Tls>>,
    refusals: &Refusals,
    names: ListenerNames,
    serve: F,
) where
    F: Fn(Box<dyn Stream>, TcpConnectInfo, Option<CertificateDer<'static>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(tls) = tls else { return serve(Box::new(tcp), info, None).await };
    let Some(remote) = info.remote_addr else { return };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
        Ok(Ok(stream)) => {
            let cert =
                stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|c| c.clone().into_owned());
            serve(Box::new(stream), info, cert).await;
        }
        Ok(Err(e)) => refuse(refusals, remote, names.handshake, TLS_HANDSHAKE, e.to_string()),
        Err(_) => {
            let detail = format!("no handshake within {HANDSHAKE_TIMEOUT:?}");
            refuse(refusals, remote, names.handshake, TLS_HANDSHAKE, detail);
        }
    }
}

/// Audits a connection turned away before any call (no principal yet).
fn refuse(refusals: &Refusals, peer: SocketAddr, method: &'static str, result: &'static str, detail: String) {
    let refusal = Refusal {
        principal: UNAUTHENTICATED.into(),
        role: NO_ROLE,
        peer: Some(peer),
        method,
        request: String::new(),
        result,
        detail,
        intersection: None,
    };
    refusals.note(refusal, WallInstant::now());
}

/// Serves gRPC on one connection until it closes, or gracefully from
/// `stopping`.
async fn http2(io: Box<dyn Stream>, info: TcpConnectInfo, cert: Option<CertScope>, shared: Connections) {
    let routes = shared.routes.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut req = req.map(Body::new);
        // Where `tonic::Request::remote_addr` and the gate look for the
        // peer, and the gate for the client certificate's scope.
        req.extensions_mut().insert(info.clone());
        if let Some(cert) = &cert {
            req.extensions_mut().insert(cert.clone());
        }
        // `Routes` is always ready (axum's router), so no poll_ready.
        routes.clone().call(req)
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .max_send_buf_size(SEND_BUFFER_BYTES)
        // Dead peers release their streams.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = shared.stopping.clone();
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "gRPC connection ended");
            }
            return;
        }
        () = stopped(&mut stopping) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Resolves once the API is stopping (the flag's guard is not held on).
pub(crate) async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|&s| s).await;
}
