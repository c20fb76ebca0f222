//! Who is calling, and may they: bearer tokens → roles, per-caller rate
//! limits, and the role each method needs.
//!
//! Tokens are compared by their SHA-256 against the hashes in
//! `greenwave.toml` (the daemon never holds a token at rest). Tokens are
//! long random secrets, not passwords, so a plain SHA-256 is enough (no salt
//! or key stretching is needed against guessing a 256-bit value); every
//! configured hash is compared in constant time so a timing difference
//! never tells how close a guess was.
//!
//! [`Authenticator::admit`] runs before every Watch, Control and Ingest
//! call, in the [`Gate`](super::gate::Gate): it answers UNAUTHENTICATED for
//! a bad or missing token and RESOURCE_EXHAUSTED past the caller's rate (or
//! past its peer address's failed authentications), and otherwise leaves an
//! [`Identity`] in the request for the handler, which checks the role with
//! [`authorize`] and the intersections with [`Identity::reaches`].
//!
//! The tokens and the anonymous role can be replaced while the daemon
//! runs ([`Authenticator::replace`], on SIGHUP): calls already admitted
//! keep the identity they were admitted with.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant as WallInstant;

use arc_swap::ArcSwap;
use ring::digest::{SHA256, digest};
use tonic::codegen::http::{HeaderMap, header::AUTHORIZATION};
use tonic::{Request, Status};

use crate::config::Role;
use crate::config::grpc::{ClientCertEntry, GrpcConfig, TokenEntry};

/// The caller of one request, as the audit log names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's name from `greenwave.toml`, or `anonymous`.
    pub principal: Arc<str>,
    pub role: Role,
    pub peer: Option<SocketAddr>,
    /// The intersections the token may reach; `None`: all of them.
    pub scope: Option<Arc<[String]>>,
}

impl Identity {
    pub fn peer_text(&self) -> String {
        peer_text(self.peer)
    }

    /// Whether the caller's token may reach intersection `id`.
    pub fn reaches(&self, id: &str) -> bool {
        self.scope.as_ref().is_none_or(|ids| ids.iter().any(|x| x == id))
    }

    /// PERMISSION_DENIED naming the caller and the intersection out of its
    /// scope.
    pub fn out_of_scope(&self, field: &str, id: &str) -> Status {
        Status::permission_denied(format!(
            "{field}: {} may not reach intersection \"{id}\" (grpc.token or grpc.client_cert intersections/groups)",
            describe(self)
        ))
    }
}

/// A peer address for the audit log, `unknown` when the transport gave none.
pub fn peer_text(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".into(), |p| p.to_string())
}

/// A call turned away before its handler: why, and who made it as far as
/// that is known.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub status: Status,
    /// [`UNAUTHENTICATED`] when the token was missing, unknown or
    /// malformed; the token's name (or `anonymous`) when only the rate
    /// limit refused the call.
    pub principal: Arc<str>,
    /// The caller's role, when the token was known.
    pub role: Option<Role>,
    pub peer: Option<SocketAddr>,
}

impl Rejection {
    fn unauthenticated(peer: Option<SocketAddr>, status: Status) -> Self {
        Rejection { status, principal: UNAUTHENTICATED.into(), role: None, peer }
    }
}

/// What a method needs from its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Watch state, events, measures: viewers and operators.
    View,
    /// Change the signals: operators.
    Control,
    /// Push detections: cameras.
    Ingest,
    /// List intersections: anyone authenticated (cameras need their zones).
    Any,
}

impl Need {
    fn allows(self, role: Role) -> bool {
        match self {
            Need::View => matches!(role, Role::Viewer | Role::Operator),
            Need::Control => role == Role::Operator,
            Need::Ingest => role == Role::Camera,
            Need::Any => true,
        }
    }

    fn roles(self) -> &'static str {
        match self {
            Need::View => "viewer or operator",
            Need::Control => "operator",
            Need::Ingest => "camera",
            Need::Any => "any role",
        }
    }
}

/// The identity the interceptor left in the request.
///
/// # Errors
/// UNAUTHENTICATED if the request did not pass the interceptor (a wiring bug).
pub fn identity<T>(req: &Request<T>) -> Result<Identity, Status> {
    req.extensions().get::<Identity>().cloned().ok_or_else(|| Status::unauthenticated("not authenticated"))
}

/// Whether `id`'s role may call `method`.
///
/// # Errors
/// PERMISSION_DENIED naming the role the caller has and the one it needs.
pub fn permit(id: &Identity, need: Need, method: &str) -> Result<(), Status> {
    if need.allows(id.role) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{} has role {}; {method} needs {}",
            describe(id),
            id.role.name(),
            need.roles()
        )))
    }
}

/// [`identity`] then [`permit`], for methods that are not audited.
///
/// # Errors
/// As [`identity`] and [`permit`].
pub fn authorize<T>(req: &Request<T>, need: Need, method: &str) -> Result<Identity, Status> {
    let id = identity(req)?;
    permit(&id, need, method)?;
    Ok(id)
}

fn describe(id: &Identity) -> String {
    if &*id.principal == ANONYMOUS {
        "an anonymous caller (no token)".into()
    } else {
        format!("token \"{}\"", id.principal)
    }
}

/// The principal of callers without a token.
pub const ANONYMOUS: &str = "anonymous";

/// The principal the audit log gives a caller whose token was missing,
/// unknown or malformed.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// The SHA-256 of a token, as `greenwave.toml` stores it (64 hex digits).
pub fn hash_token(token: &str) -> String {
    digest(&SHA256, token.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Shortest token `greenwave token hash` accepts: 128 bits of hex.
pub const MIN_TOKEN_LEN: usize = 32;

/// Who may call: the tokens and the anonymous role, replaced whole on
/// SIGHUP.
#[derive(Debug)]
struct Access {
    tokens: Vec<TokenEntry>,
    anonymous: Option<Role>,
    client_certs: Vec<ClientCertEntry>,
}

impl Access {
    fn of(cfg: &GrpcConfig) -> Access {
        Access { tokens: cfg.tokens.clone(), anonymous: cfg.anonymous, client_certs: cfg.client_certs.clone() }
    }
}

/// The scope of the client certificate a TLS connection presented, when
/// `[[grpc.client_cert]]` lists it; the server puts it in each request
/// of the connection.
#[derive(Clone, Debug)]
pub struct CertScope {
    pub name: Arc<str>,
    pub intersections: Arc<[String]>,
}

/// Authenticates and rate-limits every call (cheap to clone, shared state
/// behind `Arc`).
#[derive(Clone, Debug)]
pub struct Authenticator {
    access: Arc<ArcSwap<Access>>,
    limiter: Arc<RateLimiter>,
    /// Failed authentications per peer address.
    failures: Arc<RateLimiter>,
}

impl Authenticator {
    pub fn new(cfg: &GrpcConfig) -> Self {
        Authenticator {
            access: Arc::new(ArcSwap::from_pointee(Access::of(cfg))),
            limiter: Arc::new(RateLimiter::new(cfg.limits.requests_per_s, cfg.limits.burst)),
            failures: Arc::new(RateLimiter::new(cfg.limits.failed_auth_per_s, cfg.limits.failed_auth_burst)),
        }
    }

    /// From now on, admits by `cfg`'s tokens and anonymous role (limits
    /// stay as they were started). Returns what changed, in words, for the
    /// log.
    pub fn replace(&self, cfg: &GrpcConfig) -> Vec<String> {
        let old = self.access.load();
        let mut changed = Vec::new();
        for t in &cfg.tokens {
            match old.tokens.iter().find(|o| o.name == t.name) {
                None => changed.push(format!("token \"{}\" added ({})", t.name, t.role.name())),
                Some(o) if o.sha256 != t.sha256 => changed.push(format!("token \"{}\" replaced", t.name)),
                Some(o) if o.role != t.role || o.intersections != t.intersections => {
                    changed.push(format!("token \"{}\" changed role or intersections", t.name));
                }
                Some(_) => {}
            }
        }
        for o in old.tokens.iter().filter(|o| !cfg.tokens.iter().any(|t| t.name == o.name)) {
            changed.push(format!("token \"{}\" revoked", o.name));
        }
        if old.anonymous != cfg.anonymous {
            let name = |r: Option<Role>| r.map_or("none", Role::name);
            changed.push(format!("anonymous {} -> {}", name(old.anonymous), name(cfg.anonymous)));
        }
        if old.client_certs != cfg.client_certs {
            changed.push("client certificate scopes changed (for new connections)".into());
        }
        self.access.store(Arc::new(Access::of(cfg)));
        changed
    }

    /// The scope of a client certificate (DER), if one is configured.
    pub fn cert_scope(&self, der: &[u8]) -> Option<CertScope> {
        let hash = digest(&SHA256, der);
        let access = self.access.load();
        let entry = access.client_certs.iter().find(|c| constant_time_eq(hash.as_ref(), &c.sha256))?;
        Some(CertScope {
            name: entry.name.as_str().into(),
            intersections: entry.intersections.iter().cloned().collect(),
        })
    }

    /// The identity behind `authorization` metadata.
    fn identify(&self, header: Option<&str>, peer: Option<SocketAddr>) -> Result<Identity, Status> {
        let access = self.access.load();
        let Some(header) = header else {
            return match access.anonymous {
                Some(role) => Ok(Identity { principal: ANONYMOUS.into(), role, peer, scope: None }),
                None => Err(Status::unauthenticated("missing bearer token (metadata `authorization: Bearer <token>`)")),
            };
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("malformed authorization metadata: expected `Bearer <token>`"))?;
        let hash = digest(&SHA256, token.as_bytes());
        let mut found: Option<&TokenEntry> = None;
        // Every entry is compared in full, whatever matched before.
        for entry in &access.tokens {
            if constant_time_eq(hash.as_ref(), &entry.sha256) {
                found = Some(entry);
            }
        }
        let entry = found.ok_or_else(|| Status::unauthenticated("unknown bearer token"))?;
        let scope = entry.intersections.as_ref().map(|ids| ids.iter().cloned().collect());
        Ok(Identity { principal: entry.name.as_str().into(), role: entry.role, peer, scope })
    }

    /// Who is calling, from the request's headers and peer address, and
    /// whether they are within their rate.
    ///
    /// # Errors
    /// UNAUTHENTICATED for a missing (unless anonymous callers are allowed),
    /// malformed or unknown token; RESOURCE_EXHAUSTED past the caller's
    /// rate, or for a failed authentication past the peer address's
    /// allowance of them (`grpc.limits.failed_auth_*`).
    pub fn admit(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        cert: Option<&CertScope>,
    ) -> Result<Identity, Rejection> {
        let identified = match headers.get(AUTHORIZATION) {
            None => self.identify(None, peer),
            Some(v) => match v.to_str() {
                Ok(header) => self.identify(Some(header), peer),
                Err(_) => Err(Status::unauthenticated("authorization metadata is not text")),
            },
        };
        let mut id = identified.map_err(|status| {
            if self.failures.allow(RateKey::Peer(peer.map(|p| p.ip())), WallInstant::now()) {
                return Rejection::unauthenticated(peer, status);
            }
            // Past the allowance the answer no longer says why: a caller
            // trying tokens learns nothing more, and its refusals count as
            // one burst (`super::refusals`).
            let status = Status::resource_exhausted(format!(
                "too many failed authentications from this address: {} in a burst, then {} per s \
                 (grpc.limits.failed_auth_burst, failed_auth_per_s)",
                self.failures.burst, self.failures.rate_per_s
            ));
            Rejection::unauthenticated(peer, status)
        })?;
        let key = if &*id.principal == ANONYMOUS {
            RateKey::Peer(peer.map(|p| p.ip()))
        } else {
            RateKey::Token(id.principal.clone())
        };
        if !self.limiter.allow(key, WallInstant::now()) {
            let status = Status::resource_exhausted(format!(
                "rate limit: at most {} requests/s (burst {}) per {}",
                self.limiter.rate_per_s,
                self.limiter.burst,
                if &*id.principal == ANONYMOUS { "peer address" } else { "token" }
            ));
            return Err(Rejection { status, principal: id.principal, role: Some(id.role), peer });
        }
        if let Some(cert) = cert {
            // The certificate narrows what the token reaches.
            let within: Arc<[String]> = match &id.scope {
                None => cert.intersections.clone(),
                Some(token) => token.iter().filter(|x| cert.intersections.contains(x)).cloned().collect(),
            };
            id.scope = Some(within);
        }
        Ok(id)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RateKey {
    Token(Arc<str>),
    Peer(Option<IpAddr>),
}

/// A token bucket per caller.
#[derive(Debug)]
struct RateLimiter {
    rate_per_s: u32,
    burst: u32,
    buckets: Mutex<HashMap<RateKey, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: WallInstant,
}

/// Buckets kept before idle (full) ones are forgotten: bounds the memory
/// anonymous callers from many addresses can take.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    fn new(rate_per_s: u32, burst: u32) -> Self {
        RateLimiter { rate_per_s, burst, buckets: Mutex::new(HashMap::new()) }
    }

    fn allow(&self, key: RateKey, now: WallInstant) -> bool {
        let capacity = f64::from(self.burst.max(1));
        let rate = f64::from(self.rate_per_s.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < capacity);
        }
        let b = buckets.entry(key).or_insert(Bucket { tokens: capacity, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::grpc::parse_sha256;
    use std::time::Duration;

    fn auth(anonymous: Option<Role>) -> Authenticator {
        let token = |name: &str, role, secret: &str| TokenEntry {
            name: name.into(),
            role,
            sha256: parse_sha256(&hash_token(secret)).expect("hash is hex"),
            intersections: None,
        };
        let cfg = GrpcConfig {
            tokens: vec![token("ops", Role::Operator, "op-secret"), token("wall", Role::Viewer, "view-secret")],
            anonymous,
            ..GrpcConfig::default()
        };
        Authenticator::new(&cfg)
    }

    #[test]
    fn sha256_matches_the_standard_test_vector() {
        assert_eq!(hash_token("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    }

    #[test]
    fn tokens_map_to_roles_and_bad_ones_are_unauthenticated() {
        let a = auth(None);
        let id = a.identify(Some("Bearer op-secret"), None).expect("known token");
        assert_eq!((&*id.principal, id.role), ("ops", Role::Operator));
        assert_eq!(a.identify(Some("Bearer nope"), None).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(a.identify(Some("op-secret"), None).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(a.identify(None, None).unwrap_err().code(), tonic::Code::Unauthenticated);
        let anon = auth(Some(Role::Viewer)).identify(None, None).expect("anonymous viewer");
        assert_eq!(anon.role, Role::Viewer);
    }

    #[test]
    fn a_rejection_names_the_best_identity_known() {
        let mut cfg = GrpcConfig::default();
        cfg.limits.requests_per_s = 1;
        cfg.limits.burst = 1;
        let a = Authenticator { limiter: Authenticator::new(&cfg).limiter, ..auth(None) };
        let peer = Some("192.0.2.7:5000".parse().expect("addr"));
        let headers = |token: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, format!("Bearer {token}").parse().expect("ascii"));
            h
        };
        let none = a.admit(&HeaderMap::new(), peer, None).unwrap_err();
        assert_eq!(
            (none.status.code(), &*none.principal, none.role),
            (tonic::Code::Unauthenticated, UNAUTHENTICATED, None)
        );
        assert_eq!(none.peer, peer);
        let unknown = a.admit(&headers("nope"), peer, None).unwrap_err();
        assert_eq!(&*unknown.principal, UNAUTHENTICATED);
        assert_eq!(a.admit(&headers("op-secret"), peer, None).expect("within the burst").role, Role::Operator);
        let limited = a.admit(&headers("op-secret"), peer, None).unwrap_err();
        assert_eq!(
            (limited.status.code(), &*limited.principal, limited.role),
            (tonic::Code::ResourceExhausted, "ops", Some(Role::Operator))
        );
    }

    #[test]
    fn roles_allow_only_their_methods() {
        assert!(Need::View.allows(Role::Operator) && Need::View.allows(Role::Viewer));
        assert!(!Need::View.allows(Role::Camera));
        assert!(Need::Control.allows(Role::Operator) && !Need::Control.allows(Role::Viewer));
        assert!(Need::Ingest.allows(Role::Camera) && !Need::Ingest.allows(Role::Operator));
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let l = RateLimiter::new(10, 2);
        let t0 = WallInstant::now();
        let k = || RateKey::Token("a".into());
        assert!(l.allow(k(), t0) && l.allow(k(), t0));
        assert!(!l.allow(k(), t0), "burst spent");
        assert!(l.allow(k(), t0 + Duration::from_millis(100)), "one token after 100 ms at 10/s");
        assert!(l.allow(RateKey::Peer(None), t0), "buckets are per caller");
    }
}
