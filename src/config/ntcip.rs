//! `[ntcip]` in `greenwave.toml`: the NTCIP 1202 agent, SNMP over UDP, for
//! central systems (see `docs/standards.md`, "NTCIP 1202").
//!
//! ```toml
//! [ntcip]
//! listen = "127.0.0.1:161"        # default (UDP); below 1024 needs CAP_NET_BIND_SERVICE
//! enabled = true                  # default once the section is written
//! allow_community_off_loopback = false   # v1/v2c communities off loopback: refused unless true
//! engine_file = "/var/lib/greenwave/ntcip-engine"  # optional: SNMPv3 engine id and boots, kept across restarts
//!
//! [[ntcip.community]]             # SNMPv1/v2c: one community per intersection and role
//! community = "elm-public"        # the community string (a shared secret sent in clear)
//! intersection = "elm-and-oak"
//! role = "viewer"                 # viewer | operator
//!
//! [[ntcip.user]]                  # SNMPv3 USM: the context name picks the intersection
//! name = "tmc"
//! role = "operator"               # viewer | operator
//! auth = "sha256"                 # sha1 | sha256 (HMAC, RFC 3414 / RFC 7860)
//! auth_passphrase = "..."         # at least 8 characters
//! privacy = "aes128"              # optional: aes128 (RFC 3826); without it, auth only
//! privacy_passphrase = "..."
//! intersections = ["elm-and-oak"] # optional: the only intersections it reaches (default all)
//! ```
//!
//! # Off unless asked for
//! Without an `[ntcip]` section no UDP port is opened. Communities travel
//! in clear text and SNMP has no rate limit of its own, so they are taken
//! only on a loopback listener unless `allow_community_off_loopback` says a
//! network address is intended (a cabinet network behind the centre's
//! firewall, as field practice has it); SNMPv3 users authenticate every
//! message and are taken on any address.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use super::grpc::{self, Role};
use super::key::KeyPath;

/// The default agent address: loopback, the SNMP agent port.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 161);
/// RFC 3414 section 11.2: a passphrase shorter than 8 octets is refused.
pub const MIN_PASSPHRASE: usize = 8;

/// The validated `[ntcip]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NtcipConfig {
    pub enabled: bool,
    /// UDP address the agent binds.
    pub listen: SocketAddr,
    pub communities: Vec<Community>,
    pub users: Vec<UsmUser>,
    /// Where the SNMPv3 engine id and boots counter are kept; `None`: a new
    /// engine id each start (managers rediscover it).
    pub engine_file: Option<PathBuf>,
}

/// An SNMPv1/v2c community: which intersection it reaches, with which role.
#[derive(Clone, PartialEq, Eq)]
pub struct Community {
    pub community: String,
    pub intersection: String,
    pub role: Role,
}

/// An SNMPv3 USM user.
#[derive(Clone, PartialEq, Eq)]
pub struct UsmUser {
    pub name: String,
    pub role: Role,
    pub auth: AuthProtocol,
    pub auth_passphrase: String,
    /// Privacy (encryption) and its passphrase; `None`: authentication only.
    pub privacy: Option<(PrivacyProtocol, String)>,
    /// The intersections the user reaches; `None`: all of them.
    pub intersections: Option<Vec<String>>,
}

/// Secrets stay out of debug output (the daemon logs its config on errors).
impl std::fmt::Debug for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Community").field("intersection", &self.intersection).field("role", &self.role).finish()
    }
}

impl std::fmt::Debug for UsmUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsmUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("auth", &self.auth)
            .field("privacy", &self.privacy.as_ref().map(|(p, _)| p))
            .field("intersections", &self.intersections)
            .finish()
    }
}

/// USM authentication: HMAC-SHA-96 (RFC 3414) or HMAC-SHA-256 (RFC 7860).
/// MD5 is not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProtocol {
    Sha1,
    Sha256,
}

/// USM privacy: AES-128 in CFB mode (RFC 3826). DES is not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyProtocol {
    Aes128,
}

impl Default for NtcipConfig {
    fn default() -> Self {
        NtcipConfig {
            enabled: false,
            listen: DEFAULT_LISTEN,
            communities: Vec::new(),
            users: Vec::new(),
            engine_file: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawNtcip {
    enabled: Option<bool>,
    listen: Option<String>,
    allow_community_off_loopback: Option<bool>,
    engine_file: Option<PathBuf>,
    #[serde(default)]
    community: Vec<RawCommunity>,
    #[serde(default)]
    user: Vec<RawUser>,
}

#[derive(Debug, Default, Deserialize)]
struct RawCommunity {
    community: Option<String>,
    intersection: Option<String>,
    role: Option<Role>,
}

#[derive(Debug, Default, Deserialize)]
struct RawUser {
    name: Option<String>,
    role: Option<Role>,
    auth: Option<AuthProtocol>,
    auth_passphrase: Option<String>,
    privacy: Option<PrivacyProtocol>,
    privacy_passphrase: Option<String>,
    intersections: Option<Vec<String>>,
}

/// Validates `[ntcip]`; `error` receives each problem with its key.
pub(super) fn validate(raw: Option<RawNtcip>, mut error: impl FnMut(KeyPath, String)) -> NtcipConfig {
    let Some(raw) = raw else { return NtcipConfig::default() };
    let at = KeyPath::root().key("ntcip");
    let listen = grpc::parse_listen(raw.listen.as_deref(), DEFAULT_LISTEN, &at, &mut error);
    let enabled = raw.enabled.unwrap_or(true);
    let off_loopback_ok = raw.allow_community_off_loopback.unwrap_or(false);
    if enabled && !raw.community.is_empty() && !listen.ip().is_loopback() && !off_loopback_ok {
        error(
            at.key("community"),
            format!(
                "{listen} is not a loopback address and communities cross the network in clear text: use \
                 [[ntcip.user]] (SNMPv3), or set ntcip.allow_community_off_loopback = true if that is intended"
            ),
        );
    }
    if enabled && raw.community.is_empty() && raw.user.is_empty() {
        error(at.clone(), "no [[ntcip.community]] or [[ntcip.user]]: nobody could use the agent".into());
    }
    let mut communities = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, c) in raw.community.into_iter().enumerate() {
        let c_at = at.key("community").index(i);
        let community = required_text(c.community, &c_at.key("community"), "the community string", &mut error);
        let intersection = required_text(c.intersection, &c_at.key("intersection"), "an intersection id", &mut error);
        let role = checked_role(c.role, &c_at.key("role"), &mut error);
        if let Some(text) = &community
            && !seen.insert(text.clone())
        {
            error(c_at.key("community"), "listed twice: a community reaches one intersection with one role".into());
            continue;
        }
        if let (Some(community), Some(intersection), Some(role)) = (community, intersection, role) {
            communities.push(Community { community, intersection, role });
        }
    }
    let mut users = Vec::new();
    let mut names = BTreeSet::new();
    for (i, u) in raw.user.into_iter().enumerate() {
        let u_at = at.key("user").index(i);
        let name = required_text(u.name, &u_at.key("name"), "the USM user name", &mut error);
        if let Some(name) = &name
            && !names.insert(name.clone())
        {
            error(u_at.key("name"), "listed twice".into());
            continue;
        }
        let role = checked_role(u.role, &u_at.key("role"), &mut error);
        let auth = u.auth.or_else(|| {
            error(u_at.key("auth"), "missing (required): sha1 | sha256".into());
            None
        });
        let auth_passphrase = passphrase(u.auth_passphrase, &u_at.key("auth_passphrase"), &mut error);
        let privacy = match (u.privacy, u.privacy_passphrase) {
            (None, None) => Some(None),
            (Some(p), text) => passphrase(text, &u_at.key("privacy_passphrase"), &mut error).map(|t| Some((p, t))),
            (None, Some(_)) => {
                error(u_at.key("privacy"), "missing: privacy_passphrase is set, so say which privacy (aes128)".into());
                None
            }
        };
        let intersections = u.intersections.filter(|ids| {
            let empty = ids.is_empty();
            if empty {
                error(u_at.key("intersections"), "empty: the user would reach nothing (omit it for all)".into());
            }
            !empty
        });
        if let (Some(name), Some(role), Some(auth), Some(auth_passphrase), Some(privacy)) =
            (name, role, auth, auth_passphrase, privacy)
        {
            users.push(UsmUser { name, role, auth, auth_passphrase, privacy, intersections });
        }
    }
    NtcipConfig { enabled, listen, communities, users, engine_file: raw.engine_file }
}

fn required_text(
    text: Option<String>,
    at: &KeyPath,
    what: &str,
    error: &mut impl FnMut(KeyPath, String),
) -> Option<String> {
    match text {
        Some(t) if !t.trim().is_empty() => Some(t),
        _ => {
            error(at.clone(), format!("missing (required): {what}"));
            None
        }
    }
}

fn passphrase(text: Option<String>, at: &KeyPath, error: &mut impl FnMut(KeyPath, String)) -> Option<String> {
    match text {
        Some(t) if t.len() >= MIN_PASSPHRASE => Some(t),
        Some(t) => {
            error(at.clone(), format!("{} characters: at least {MIN_PASSPHRASE} (RFC 3414)", t.len()));
            None
        }
        None => {
            error(at.clone(), format!("missing (required): at least {MIN_PASSPHRASE} characters"));
            None
        }
    }
}

/// Viewers read, operators also set; cameras have nothing to do here.
fn checked_role(role: Option<Role>, at: &KeyPath, error: &mut impl FnMut(KeyPath, String)) -> Option<Role> {
    match role {
        Some(r @ (Role::Viewer | Role::Operator)) => Some(r),
        Some(Role::Camera) => {
            error(at.clone(), "camera pushes detections over gRPC: viewer | operator here".into());
            None
        }
        None => {
            error(at.clone(), "missing (required): viewer | operator".into());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (NtcipConfig, Vec<String>) {
        let raw: RawNtcip = toml::from_str(text).expect("toml");
        let mut errors = Vec::new();
        let cfg = validate(Some(raw), |k, r| errors.push(format!("{}: {r}", k.env_var("X"))));
        (cfg, errors)
    }

    const USER: &str = "[[user]]\nname = \"tmc\"\nrole = \"operator\"\nauth = \"sha256\"\n\
                        auth_passphrase = \"authpass1\"\nprivacy = \"aes128\"\nprivacy_passphrase = \"privpass1\"\n";

    #[test]
    fn no_section_no_agent_and_a_section_turns_it_on_at_loopback() {
        let mut errors = Vec::new();
        assert_eq!(validate(None, |_, r| errors.push(r)), NtcipConfig::default());
        assert!(!NtcipConfig::default().enabled);
        let (cfg, errors) =
            check("[[community]]\ncommunity = \"elm\"\nintersection = \"elm-and-oak\"\nrole = \"viewer\"");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(cfg.enabled);
        assert_eq!(cfg.listen, DEFAULT_LISTEN);
        assert_eq!(cfg.communities[0].intersection, "elm-and-oak");
        assert_eq!(cfg.communities[0].role, Role::Viewer);
    }

    #[test]
    fn communities_off_loopback_only_when_allowed_and_users_anywhere() {
        let community = "[[community]]\ncommunity = \"elm\"\nintersection = \"elm-and-oak\"\nrole = \"viewer\"\n";
        let (_, errors) = check(&format!("listen = \"0.0.0.0:161\"\n{community}"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("X_NTCIP__COMMUNITY"), "{errors:?}");
        assert!(errors[0].contains("ntcip.allow_community_off_loopback = true"), "{errors:?}");
        let (_, errors) = check(&format!("listen = \"0.0.0.0:161\"\nallow_community_off_loopback = true\n{community}"));
        assert!(errors.is_empty(), "{errors:?}");
        let (cfg, errors) = check(&format!("listen = \"0.0.0.0:161\"\n{USER}"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cfg.users[0].privacy.as_ref().map(|(p, _)| *p), Some(PrivacyProtocol::Aes128));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let (cfg, errors) = check(
            "[[community]]\ncommunity = \"\"\nrole = \"camera\"\n\
             [[user]]\nname = \"tmc\"\nrole = \"viewer\"\nauth_passphrase = \"short\"\nprivacy_passphrase = \"privpass1\"\n\
             intersections = []\n",
        );
        let expect = [
            "X_NTCIP__COMMUNITY__0__COMMUNITY: missing (required): the community string",
            "X_NTCIP__COMMUNITY__0__INTERSECTION: missing (required): an intersection id",
            "X_NTCIP__COMMUNITY__0__ROLE: camera pushes detections over gRPC",
            "X_NTCIP__USER__0__AUTH: missing (required): sha1 | sha256",
            "X_NTCIP__USER__0__AUTH_PASSPHRASE: 5 characters: at least 8 (RFC 3414)",
            "X_NTCIP__USER__0__PRIVACY: missing: privacy_passphrase is set",
            "X_NTCIP__USER__0__INTERSECTIONS: empty",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:?}");
        for (e, want) in errors.iter().zip(expect) {
            assert!(e.starts_with(want), "{e:?} should start {want:?}");
        }
        assert!(cfg.communities.is_empty() && cfg.users.is_empty());
    }

    #[test]
    fn a_section_without_anyone_to_use_it_is_an_error() {
        let (_, errors) = check("");
        assert_eq!(errors, ["X_NTCIP: no [[ntcip.community]] or [[ntcip.user]]: nobody could use the agent"]);
        let (_, errors) = check("enabled = false");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let (cfg, _) = check(&format!(
            "{USER}[[community]]\ncommunity = \"sekrit-community\"\nintersection = \"a\"\nrole = \"viewer\"\n"
        ));
        let shown = format!("{cfg:?}");
        for secret in ["authpass1", "privpass1", "sekrit-community"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
