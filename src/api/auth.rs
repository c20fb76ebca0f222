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
//! call: it answers UNAUTHENTICATED for a bad or missing token and
//! RESOURCE_EXHAUSTED past the caller's rate, and otherwise leaves an
//! [`Identity`] in the request for the handler, which checks the role with
//! [`authorize`]. Watch and Ingest run it as a tonic interceptor; Control
//! runs it in [`ControlGate`](super::audit::ControlGate), which sees the
//! method and audits what it turns away.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant as WallInstant;

use ring::digest::{SHA256, digest};
use tonic::codegen::http::{HeaderMap, header::AUTHORIZATION};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::config::Role;
use crate::config::grpc::{GrpcConfig, TokenEntry};

/// The caller of one request, as the audit log names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's name from `greenwave.toml`, or `anonymous`.
    pub principal: Arc<str>,
    pub role: Role,
    pub peer: Option<SocketAddr>,
}

impl Identity {
    pub fn peer_text(&self) -> String {
        peer_text(self.peer)
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

/// Authenticates and rate-limits every call (a tonic interceptor; cheap to
/// clone, shared state behind `Arc`).
#[derive(Clone, Debug)]
pub struct Authenticator {
    tokens: Arc<[TokenEntry]>,
    anonymous: Option<Role>,
    limiter: Arc<RateLimiter>,
}

impl Authenticator {
    pub fn new(cfg: &GrpcConfig) -> Self {
        Authenticator {
            tokens: cfg.tokens.clone().into(),
            anonymous: cfg.anonymous,
            limiter: Arc::new(RateLimiter::new(cfg.limits.requests_per_s, cfg.limits.burst)),
        }
    }

    /// The identity behind `authorization` metadata.
    fn identify(&self, header: Option<&str>, peer: Option<SocketAddr>) -> Result<Identity, Status> {
        let Some(header) = header else {
            return match self.anonymous {
                Some(role) => Ok(Identity { principal: ANONYMOUS.into(), role, peer }),
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
        for entry in self.tokens.iter() {
            if constant_time_eq(hash.as_ref(), &entry.sha256) {
                found = Some(entry);
            }
        }
        let entry = found.ok_or_else(|| Status::unauthenticated("unknown bearer token"))?;
        Ok(Identity { principal: entry.name.as_str().into(), role: entry.role, peer })
    }

    /// Who is calling, from the request's headers and peer address, and
    /// whether they are within their rate.
    ///
    /// # Errors
    /// UNAUTHENTICATED for a missing (unless anonymous callers are allowed),
    /// malformed or unknown token; RESOURCE_EXHAUSTED past the caller's rate.
    pub fn admit(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<Identity, Rejection> {
        let header = match headers.get(AUTHORIZATION) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                Rejection::unauthenticated(peer, Status::unauthenticated("authorization metadata is not text"))
            })?),
        };
        let id = self.identify(header, peer).map_err(|status| Rejection::unauthenticated(peer, status))?;
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
        Ok(id)
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let id = self.admit(req.metadata().as_ref(), req.remote_addr()).map_err(|r| r.status)?;
        req.extensions_mut().insert(id);
        Ok(req)
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
        let none = a.admit(&HeaderMap::new(), peer).unwrap_err();
        assert_eq!(
            (none.status.code(), &*none.principal, none.role),
            (tonic::Code::Unauthenticated, UNAUTHENTICATED, None)
        );
        assert_eq!(none.peer, peer);
        let unknown = a.admit(&headers("nope"), peer).unwrap_err();
        assert_eq!(&*unknown.principal, UNAUTHENTICATED);
        assert_eq!(a.admit(&headers("op-secret"), peer).expect("within the burst").role, Role::Operator);
        let limited = a.admit(&headers("op-secret"), peer).unwrap_err();
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
