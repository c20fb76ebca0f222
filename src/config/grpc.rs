//! `[grpc]` in `greenwave.toml`: where the API listens, TLS, who may call it
//! (bearer tokens, stored as SHA-256 hashes) and the limits that keep one
//! client from hurting the others.
//!
//! ```toml
//! [grpc]
//! listen = "127.0.0.1:50051"      # default; `enabled = false` turns the API off
//! anonymous = "viewer"            # default on loopback only: see below
//!
//! [grpc.tls]                      # optional; required off loopback
//! cert = "/etc/greenwave/tls/server.pem"
//! key = "/etc/greenwave/tls/server.key"
//! client_ca = "/etc/greenwave/tls/clients-ca.pem"   # optional: verify client certificates
//! require_client_cert = true                        # default false (optional client certs)
//!
//! [[grpc.token]]
//! name = "tmc-operator"           # who, in the audit log
//! role = "operator"               # viewer | operator | camera
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # greenwave token hash
//! groups = ["downtown"]           # optional, with `intersections = [..]`: the only
//!                                 # intersections the token reaches (default all)
//!
//! [[grpc.client_cert]]            # optional: scope a client certificate
//! name = "east-tmc"               # who, in the audit log
//! sha256 = "…"                    # openssl x509 -in client.pem -outform der | sha256sum
//! intersections = ["elm-and-oak"] # and/or groups: the most its calls reach, whatever the token
//!
//! [grpc.limits]
//! max_message_bytes = 1048576
//! requests_per_s = 50             # per token (or per peer address when anonymous)
//! burst = 100
//! max_streams = 256               # concurrent watch and ingest streams, all clients
//! max_streams_per_token = 64      # of those, one token's (all anonymous callers count as one)
//! event_history = 100000          # events held for resuming StreamEvents
//! camera_frames_per_s = 50        # per PushDetections stream
//! failed_auth_burst = 20          # failed authentications per peer address in a burst,
//! failed_auth_per_s = 1           # then per second; past them: RESOURCE_EXHAUSTED
//!
//! [grpc.groups]                   # optional: named sets of intersections for tokens
//! downtown = ["elm-and-oak", "main-and-5th"]
//! ```
//!
//! # The safe default
//! With no `[grpc]` section the API listens on `127.0.0.1:50051` and lets
//! anonymous callers *view* (watch state and events): only processes on
//! this machine can reach it, and nothing they can do changes the signals.
//! Control and camera ingest always need a token. Off loopback, the default
//! is no anonymous access, and a plaintext listener is refused (bearer
//! tokens would cross the network in clear) unless `insecure_plaintext =
//! true` says that is intended.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use super::key::KeyPath;

/// The default API address: loopback only, port 50051.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50051);

/// What a caller may do. Roles do not nest except that an operator may also
/// watch: a camera can push detections and list intersections, nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watch state, events and performance measures.
    Viewer,
    /// Everything a viewer may, plus control commands.
    Operator,
    /// Push camera detections (and list intersections).
    Camera,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Camera => "camera",
        }
    }
}

/// A bearer token as configured: its owner, role and SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Who holds it; this is the "who" of every audit record.
    pub name: String,
    pub role: Role,
    /// SHA-256 of the token. The token itself is never stored.
    pub sha256: [u8; 32],
    /// The intersections the token may reach (its `intersections` and the
    /// members of its `groups`); `None`: every intersection.
    pub intersections: Option<Vec<String>>,
}

impl std::fmt::Debug for TokenEntry {
    // Hashes are not secrets, but there is no reason to spread them around logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("intersections", &self.intersections)
            .finish_non_exhaustive()
    }
}

/// A client certificate scoped to intersections: calls over a connection
/// that presented it reach at most those, whatever their token reaches.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertEntry {
    pub name: String,
    /// SHA-256 of the certificate (DER).
    pub sha256: [u8; 32],
    pub intersections: Vec<String>,
}

impl std::fmt::Debug for ClientCertEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertEntry")
            .field("name", &self.name)
            .field("intersections", &self.intersections)
            .finish_non_exhaustive()
    }
}

/// Server certificate and key, and optionally the CA that signs client
/// certificates (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate signed by `client_ca`.
    pub require_client_cert: bool,
}

/// Bounds on what clients may ask of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// Sustained requests per second per token (per peer IP when anonymous).
    pub requests_per_s: u32,
    /// Requests allowed in a burst above the sustained rate.
    pub burst: u32,
    /// Concurrent server and client streams (watchers, cameras), all clients.
    pub max_streams: usize,
    /// Of those, one token's (anonymous callers share one), so one client
    /// cannot take every stream.
    pub max_streams_per_token: usize,
    /// Events held in memory for StreamEvents to resume from.
    pub event_history: usize,
    /// Frames per second one PushDetections stream may send.
    pub camera_frames_per_s: u32,
    /// Failed authentications one peer address may make in a burst…
    pub failed_auth_burst: u32,
    /// …and per second after it; past them its unauthenticated calls are
    /// RESOURCE_EXHAUSTED.
    pub failed_auth_per_s: u32,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            max_message_bytes: 1024 * 1024,
            requests_per_s: 50,
            burst: 100,
            max_streams: 256,
            max_streams_per_token: 64,
            event_history: 100_000,
            camera_frames_per_s: 50,
            failed_auth_burst: 20,
            failed_auth_per_s: 1,
        }
    }
}

/// The validated `[grpc]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub tokens: Vec<TokenEntry>,
    /// Client certificates scoped to intersections (`[[grpc.client_cert]]`).
    pub client_certs: Vec<ClientCertEntry>,
    /// The role of a caller without a token, if any may call.
    pub anonymous: Option<Role>,
    /// `anonymous` was written in the file (else it follows the address).
    pub anonymous_explicit: bool,
    /// A plaintext listener off loopback is intended.
    pub insecure_plaintext: bool,
    pub limits: GrpcLimits,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            enabled: true,
            listen: DEFAULT_LISTEN,
            tls: None,
            tokens: Vec::new(),
            client_certs: Vec::new(),
            anonymous: Some(Role::Viewer),
            anonymous_explicit: false,
            insecure_plaintext: false,
            limits: GrpcLimits::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawGrpc {
    enabled: Option<bool>,
    listen: Option<String>,
    anonymous: Option<RawAnonymous>,
    insecure_plaintext: Option<bool>,
    tls: Option<RawTls>,
    #[serde(default)]
    token: Vec<RawToken>,
    limits: Option<RawLimits>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    client_cert: Vec<RawClientCert>,
}

#[derive(Debug, Default, Deserialize)]
struct RawClientCert {
    name: Option<String>,
    sha256: Option<String>,
    intersections: Option<Vec<String>>,
    groups: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawAnonymous {
    None,
    Viewer,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    require_client_cert: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RawToken {
    name: Option<String>,
    role: Option<Role>,
    sha256: Option<String>,
    intersections: Option<Vec<String>>,
    groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawLimits {
    max_message_bytes: Option<usize>,
    requests_per_s: Option<u32>,
    burst: Option<u32>,
    max_streams: Option<usize>,
    max_streams_per_token: Option<usize>,
    event_history: Option<usize>,
    camera_frames_per_s: Option<u32>,
    failed_auth_burst: Option<u32>,
    failed_auth_per_s: Option<u32>,
}

/// Smallest message limit that still fits a whole controller file.
const MIN_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest message limit: a bigger request is an attack or a bug.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Validates `[grpc]`; `error` receives each problem with its key.
pub(super) fn validate(raw: Option<RawGrpc>, mut error: impl FnMut(KeyPath, String)) -> GrpcConfig {
    let raw = raw.unwrap_or_default();
    let defaults = GrpcConfig::default();
    let at = KeyPath::root().key("grpc");
    let listen = parse_listen(raw.listen.as_deref(), defaults.listen, &at, &mut error);
    let tls = validate_tls(raw.tls, &at, &mut error);
    let insecure_plaintext = raw.insecure_plaintext.unwrap_or(false);
    if let Err(reason) = check_exposure("grpc", listen, tls.is_some(), insecure_plaintext) {
        error(at.key("listen"), reason);
    }

    let mut tokens = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut hashes: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    for (i, t) in raw.token.into_iter().enumerate() {
        let t_at = at.key("token").index(i);
        let name = t.name.filter(|n| !n.trim().is_empty());
        if name.is_none() {
            error(t_at.key("name"), "missing (required): who holds the token, for the audit log".into());
        }
        if t.role.is_none() {
            error(t_at.key("role"), "missing (required): viewer | operator | camera".into());
        }
        let sha256 = match t.sha256.as_deref() {
            None => {
                error(t_at.key("sha256"), "missing (required): `greenwave token hash` prints it".into());
                None
            }
            Some(hex) => parse_sha256(hex).or_else(|| {
                error(t_at.key("sha256"), "must be 64 hex digits (the SHA-256 of the token, not the token)".into());
                None
            }),
        };
        if let Some(n) = &name
            && let Some(first) = names.insert(n.clone(), i)
        {
            error(t_at.key("name"), format!("\"{n}\" is also the name of token {}: names must be unique", first + 1));
        }
        let mut duplicate = false;
        if let Some(h) = sha256
            && let Some(first) = hashes.insert(h, i)
        {
            error(t_at.key("sha256"), format!("the same token as token {}: each token has one role", first + 1));
            duplicate = true;
        }
        let intersections = token_scope(t.intersections, t.groups, &raw.groups, &t_at, &mut error);
        // A token listed twice never gets a second role.
        if let (Some(name), Some(role), Some(sha256), false) = (name, t.role, sha256, duplicate) {
            tokens.push(TokenEntry { name, role, sha256, intersections });
        }
    }

    let mut client_certs = Vec::new();
    let scopes_certs = !raw.client_cert.is_empty();
    for (i, c) in raw.client_cert.into_iter().enumerate() {
        let c_at = at.key("client_cert").index(i);
        let name = c.name.filter(|n| !n.trim().is_empty());
        if name.is_none() {
            error(c_at.key("name"), "missing (required): whose certificate, for the audit log".into());
        }
        if client_certs.iter().any(|e: &ClientCertEntry| Some(&e.name) == name.as_ref()) {
            error(c_at.key("name"), "names must be unique".into());
        }
        let sha256 = match c.sha256.as_deref().map(parse_sha256) {
            Some(Some(h)) => Some(h),
            _ => {
                error(
                    c_at.key("sha256"),
                    "must be 64 hex digits: `openssl x509 -in client.pem -outform der | sha256sum`".into(),
                );
                None
            }
        };
        let scope = token_scope(c.intersections, c.groups, &raw.groups, &c_at, &mut error);
        if scope.is_none() {
            error(c_at.key("intersections"), "missing: a scoped certificate names intersections or groups".into());
        }
        if let (Some(name), Some(sha256), Some(intersections)) = (name, sha256, scope) {
            client_certs.push(ClientCertEntry { name, sha256, intersections });
        }
    }
    if scopes_certs && tls.as_ref().is_none_or(|t| t.client_ca.is_none()) {
        error(at.key("client_cert"), "needs [grpc.tls] client_ca (client certificates are only seen over TLS)".into());
    }

    let anonymous = anonymous_role(raw.anonymous, listen);

    let l = raw.limits.unwrap_or_default();
    let d = GrpcLimits::default();
    let l_at = at.key("limits");
    let limits = GrpcLimits {
        max_message_bytes: l.max_message_bytes.unwrap_or(d.max_message_bytes),
        requests_per_s: l.requests_per_s.unwrap_or(d.requests_per_s),
        burst: l.burst.unwrap_or(d.burst),
        max_streams: l.max_streams.unwrap_or(d.max_streams),
        // Unset: 64, or all of a smaller max_streams.
        max_streams_per_token: l
            .max_streams_per_token
            .unwrap_or(d.max_streams_per_token.min(l.max_streams.unwrap_or(d.max_streams))),
        event_history: l.event_history.unwrap_or(d.event_history),
        camera_frames_per_s: l.camera_frames_per_s.unwrap_or(d.camera_frames_per_s),
        failed_auth_burst: l.failed_auth_burst.unwrap_or(d.failed_auth_burst),
        failed_auth_per_s: l.failed_auth_per_s.unwrap_or(d.failed_auth_per_s),
    };
    if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&limits.max_message_bytes) {
        error(
            l_at.key("max_message_bytes"),
            format!("{} bytes is outside {MIN_MESSAGE_BYTES}..={MAX_MESSAGE_BYTES}", limits.max_message_bytes),
        );
    }
    for (key, value) in [
        ("requests_per_s", limits.requests_per_s as usize),
        ("burst", limits.burst as usize),
        ("max_streams", limits.max_streams),
        ("camera_frames_per_s", limits.camera_frames_per_s as usize),
        ("failed_auth_burst", limits.failed_auth_burst as usize),
        ("failed_auth_per_s", limits.failed_auth_per_s as usize),
    ] {
        if value == 0 {
            error(l_at.key(key), "must be at least 1".into());
        }
    }
    if !(1..=limits.max_streams.max(1)).contains(&limits.max_streams_per_token) {
        error(
            l_at.key("max_streams_per_token"),
            format!("{} is outside 1..={} (max_streams)", limits.max_streams_per_token, limits.max_streams),
        );
    }
    if !(1000..=10_000_000).contains(&limits.event_history) {
        error(l_at.key("event_history"), format!("{} is outside 1000..=10000000 events", limits.event_history));
    }
    GrpcConfig {
        enabled: raw.enabled.unwrap_or(true),
        listen,
        tls,
        tokens,
        client_certs,
        anonymous,
        anonymous_explicit: raw.anonymous.is_some(),
        insecure_plaintext,
        limits,
    }
}

/// The intersections a token (or client certificate) reaches: its
/// `intersections` and the members of its `groups`; `None` when it names
/// neither (every intersection).
/// Whether the ids name intersections is the daemon's to check (it knows
/// them; this file does not).
fn token_scope(
    intersections: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    defined: &BTreeMap<String, Vec<String>>,
    at: &KeyPath,
    error: &mut impl FnMut(KeyPath, String),
) -> Option<Vec<String>> {
    if intersections.is_none() && groups.is_none() {
        return None;
    }
    let mut ids = intersections.unwrap_or_default();
    let mut unknown = false;
    for (k, group) in groups.unwrap_or_default().iter().enumerate() {
        match defined.get(group) {
            Some(members) => ids.extend(members.iter().cloned()),
            None => {
                error(at.key("groups").index(k), format!("no group \"{group}\" in [grpc.groups]"));
                unknown = true;
            }
        }
    }
    ids.sort();
    ids.dedup();
    if ids.is_empty() && !unknown {
        error(
            at.key("intersections"),
            "reaches no intersection: list some, or leave out intersections and groups for all".into(),
        );
    }
    Some(ids)
}

impl GrpcConfig {
    /// Listen on `addr` instead (`greenwave run --grpc-listen`), under the
    /// same rules as the file: off loopback it needs TLS (or
    /// `insecure_plaintext`), and anonymous viewing follows the address
    /// unless the file set it.
    ///
    /// # Errors
    /// The address would expose bearer tokens in clear text.
    pub fn override_listen(&mut self, addr: SocketAddr) -> Result<(), String> {
        check_exposure("grpc", addr, self.tls.is_some(), self.insecure_plaintext)?;
        self.listen = addr;
        if !self.anonymous_explicit {
            self.anonymous = addr.ip().is_loopback().then_some(Role::Viewer);
        }
        Ok(())
    }
}

/// Plaintext off loopback sends bearer tokens in clear text: only when the
/// configuration says so. `section` names the listener's table (`grpc`,
/// `http`): the rule is the same for every listener that takes tokens.
pub(super) fn check_exposure(
    section: &str,
    listen: SocketAddr,
    tls: bool,
    insecure_plaintext: bool,
) -> Result<(), String> {
    if listen.ip().is_loopback() || tls || insecure_plaintext {
        return Ok(());
    }
    Err(format!(
        "{listen} is not a loopback address: configure [{section}.tls] (bearer tokens would cross the network in \
         clear text), or set {section}.insecure_plaintext = true if that is intended"
    ))
}

/// A listener's `listen` (`at.listen`): the address, or `default` when
/// unset or (reported) not an address.
pub(super) fn parse_listen(
    text: Option<&str>,
    default: SocketAddr,
    at: &KeyPath,
    error: &mut impl FnMut(KeyPath, String),
) -> SocketAddr {
    match text {
        None => default,
        Some(text) => text.parse::<SocketAddr>().unwrap_or_else(|e| {
            error(at.key("listen"), format!("\"{text}\" is not an address ip:port ({e})"));
            default
        }),
    }
}

/// A listener's `[<at>.tls]`: both files named, and a client CA when
/// client certificates are required.
pub(super) fn validate_tls(
    raw: Option<RawTls>,
    at: &KeyPath,
    error: &mut impl FnMut(KeyPath, String),
) -> Option<TlsFiles> {
    let t = raw?;
    let tls_at = at.key("tls");
    let cert = required_path(t.cert, &tls_at.key("cert"), error);
    let key = required_path(t.key, &tls_at.key("key"), error);
    let require_client_cert = t.require_client_cert.unwrap_or(false);
    if require_client_cert && t.client_ca.is_none() {
        error(tls_at.key("require_client_cert"), "needs client_ca (the CA that signs client certificates)".into());
    }
    Some(TlsFiles { cert: cert?, key: key?, client_ca: t.client_ca, require_client_cert })
}

/// The role of callers without a token: as written, else viewers on
/// loopback (only this machine can reach it) and nobody elsewhere.
pub(super) fn anonymous_role(raw: Option<RawAnonymous>, listen: SocketAddr) -> Option<Role> {
    match raw {
        Some(RawAnonymous::Viewer) => Some(Role::Viewer),
        Some(RawAnonymous::None) => None,
        None => listen.ip().is_loopback().then_some(Role::Viewer),
    }
}

fn required_path(p: Option<PathBuf>, at: &KeyPath, error: &mut impl FnMut(KeyPath, String)) -> Option<PathBuf> {
    match p {
        Some(p) if !p.as_os_str().is_empty() => Some(p),
        _ => {
            error(at.clone(), "missing (required): a PEM file".into());
            None
        }
    }
}

/// 64 hex digits → 32 bytes.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawGrpc) -> (GrpcConfig, Vec<String>) {
        let mut errors = Vec::new();
        let cfg = validate(Some(raw), |k, r| errors.push(format!("{}: {r}", k.env_var("X"))));
        (cfg, errors)
    }

    #[test]
    fn defaults_are_loopback_with_anonymous_viewers() {
        let (cfg, errors) = check(RawGrpc::default());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cfg, GrpcConfig::default());
        assert!(cfg.listen.ip().is_loopback());
        assert_eq!(cfg.anonymous, Some(Role::Viewer));
    }

    #[test]
    fn public_plaintext_is_refused_and_anonymous_off() {
        let (cfg, errors) = check(RawGrpc { listen: Some("0.0.0.0:50051".into()), ..RawGrpc::default() });
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("not a loopback address"), "{errors:?}");
        assert_eq!(cfg.anonymous, None);
        let (_, errors) = check(RawGrpc {
            listen: Some("0.0.0.0:50051".into()),
            insecure_plaintext: Some(true),
            ..RawGrpc::default()
        });
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn tokens_need_name_role_and_a_real_hash() {
        let good = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let (cfg, errors) = check(RawGrpc {
            token: vec![
                RawToken {
                    name: Some("a".into()),
                    role: Some(Role::Operator),
                    sha256: Some(good.into()),
                    ..RawToken::default()
                },
                RawToken { name: Some("a".into()), role: None, sha256: Some("secret".into()), ..RawToken::default() },
                RawToken {
                    name: Some("b".into()),
                    role: Some(Role::Viewer),
                    sha256: Some(good.into()),
                    ..RawToken::default()
                },
            ],
            ..RawGrpc::default()
        });
        assert_eq!(cfg.tokens.len(), 1);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("64 hex digits")));
        assert!(errors.iter().any(|e| e.contains("names must be unique")));
        assert!(errors.iter().any(|e| e.contains("same token as token 1")));
    }

    #[test]
    fn a_token_reaches_its_intersections_and_groups() {
        let hash = |c: char| Some(c.to_string().repeat(64));
        let token = |name: &str, sha, intersections: Option<Vec<&str>>, groups: Option<Vec<&str>>| RawToken {
            name: Some(name.into()),
            role: Some(Role::Operator),
            sha256: sha,
            intersections: intersections.map(|v| v.into_iter().map(String::from).collect()),
            groups: groups.map(|v| v.into_iter().map(String::from).collect()),
        };
        let (cfg, errors) = check(RawGrpc {
            token: vec![
                token("all", hash('a'), None, None),
                token("east", hash('b'), Some(vec!["elm-and-oak"]), Some(vec!["downtown"])),
                token("typo", hash('c'), None, Some(vec!["uptown"])),
                token("none", hash('d'), Some(vec![]), None),
            ],
            groups: [("downtown".to_string(), vec!["main-and-5th".to_string(), "elm-and-oak".to_string()])].into(),
            ..RawGrpc::default()
        });
        assert_eq!(cfg.tokens[0].intersections, None, "no list: every intersection");
        assert_eq!(
            cfg.tokens[1].intersections.as_deref(),
            Some(&["elm-and-oak".to_string(), "main-and-5th".to_string()][..])
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("no group \"uptown\" in [grpc.groups]")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("reaches no intersection")), "{errors:?}");
    }

    #[test]
    fn a_client_certificate_scope_needs_a_hash_intersections_and_client_ca() {
        let (_, errors) = check(RawGrpc {
            client_cert: vec![RawClientCert { name: Some("east".into()), ..RawClientCert::default() }],
            ..RawGrpc::default()
        });
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("sha256sum")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("names intersections or groups")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("needs [grpc.tls] client_ca")), "{errors:?}");
    }
}
