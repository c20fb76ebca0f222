//! `[gbt20999]` in `greenwave.toml`: the GB/T 20999-2017 adapter, a TCP
//! listener a Chinese traffic control centre (upper computer) connects to,
//! and optionally a UDP one (see `docs/standards.md`, "GB/T 20999-2017").
//!
//! ```toml
//! [gbt20999]
//! listen = "127.0.0.1:20999"      # default; the standard names no port
//! listen_udp = "127.0.0.1:20999"  # optional: frames over UDP too (no escaping); default none
//! enabled = true                  # default once the section is written
//! controller_id = 1               # the signal controller id frames must carry
//! role = "viewer"                 # or "operator": may set plans and modes
//! principal = "gbt20999-centre"   # who the audit log says acted
//! heartbeat_timeout_s = 45        # silence after which the link counts as lost; 0: never
//! link_loss_action = "none"       # or "flash", "local_fixed", "local_actuated", "local_coordinated"
//! report_interval_ms = 0          # active run-status reports this often; 0: none
//! profile = "capture"             # or "lining": where centre-control sets are addressed
//! insecure_plaintext = false      # off loopback: refused unless true (the protocol has no TLS)
//! ```
//!
//! # Off unless asked for
//! Without a `[gbt20999]` section there is no listener. The protocol has no
//! authentication, so whoever reaches the port acts with `role`: viewer by
//! default, and never off loopback unless `insecure_plaintext` says a
//! private network is intended.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::grpc::{self, Role};
use super::key::KeyPath;

/// No standard port exists (`/work/shared/STANDARDS.md` §1.1 lists the
/// vendors' 4050, 15050 and 8801); the standard's number is easy to find.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 20999);
/// Three of the 15 s heartbeat interval OpenATC defines (STANDARDS.md §1.1):
/// two lost heartbeats are not yet a lost link.
pub const DEFAULT_HEARTBEAT_TIMEOUT_S: u64 = 45;
pub const MAX_HEARTBEAT_TIMEOUT_S: u64 = 3600;
/// `report_interval_ms`: from a tick to an hour.
pub const REPORT_INTERVAL_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=3_600_000;
pub const DEFAULT_PRINCIPAL: &str = "gbt20999-centre";

/// The validated `[gbt20999]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gbt20999Config {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// A UDP listener next to the TCP one: one unescaped frame a datagram.
    pub listen_udp: Option<SocketAddr>,
    /// The signal controller id (header field) this daemon answers to.
    pub controller_id: u32,
    /// What a connected centre may do.
    pub role: Role,
    /// The centre's name in the audit log.
    pub principal: String,
    /// No frame for this long: the link is lost. `None`: never.
    pub heartbeat_timeout: Option<Duration>,
    pub link_loss_action: LinkLossAction,
    /// Active run-status reports this often; `None`: none.
    pub report_interval: Option<Duration>,
    pub profile: Profile,
    pub insecure_plaintext: bool,
}

/// What the controller does when the centre's link is lost after the
/// centre set a mode or plan: the standard's fault actions (class 0x10)
/// that Greenwave can run. Dark and all-red are not among them: the core
/// leaves service only to flash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkLossAction {
    /// Keep running what the centre set.
    #[default]
    None,
    /// Orderly flash (fault action 0x10).
    Flash,
    /// Local fixed time (0x40).
    LocalFixed,
    /// Local coordinated (0x50).
    LocalCoordinated,
    /// Local actuated (0x60).
    LocalActuated,
}

/// Where open implementations disagree, which one a centre follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Centre control (class 0x11) sets at object 1, attributes 2 (stage),
    /// 3 (plan), 4 (mode), element = intersection: as the captured frame.
    #[default]
    Capture,
    /// Centre control at objects 2 (stage), 3 (plan), 4 (mode), attribute
    /// and element 0: as lining's identifier map.
    Lining,
}

impl Default for Gbt20999Config {
    fn default() -> Self {
        Gbt20999Config {
            enabled: false,
            listen: DEFAULT_LISTEN,
            listen_udp: None,
            controller_id: 1,
            role: Role::Viewer,
            principal: DEFAULT_PRINCIPAL.into(),
            heartbeat_timeout: Some(Duration::from_secs(DEFAULT_HEARTBEAT_TIMEOUT_S)),
            link_loss_action: LinkLossAction::None,
            report_interval: None,
            profile: Profile::Capture,
            insecure_plaintext: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawRole {
    Viewer,
    Operator,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawGbt20999 {
    enabled: Option<bool>,
    listen: Option<String>,
    listen_udp: Option<String>,
    controller_id: Option<u32>,
    role: Option<RawRole>,
    principal: Option<String>,
    heartbeat_timeout_s: Option<u64>,
    link_loss_action: Option<LinkLossAction>,
    report_interval_ms: Option<u64>,
    profile: Option<Profile>,
    insecure_plaintext: Option<bool>,
}

/// Validates `[gbt20999]`; `error` receives each problem with its key.
pub(super) fn validate(raw: Option<RawGbt20999>, mut error: impl FnMut(KeyPath, String)) -> Gbt20999Config {
    let Some(raw) = raw else { return Gbt20999Config::default() };
    let at = KeyPath::root().key("gbt20999");
    let d = Gbt20999Config::default();
    let listen = grpc::parse_listen(raw.listen.as_deref(), DEFAULT_LISTEN, &at, &mut error);
    let insecure_plaintext = raw.insecure_plaintext.unwrap_or(false);
    let enabled = raw.enabled.unwrap_or(true);
    let listen_udp = raw.listen_udp.as_deref().and_then(|text| match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(e) => {
            error(at.key("listen_udp"), format!("\"{text}\" is not an address ip:port ({e})"));
            None
        }
    });
    let addresses = [("listen", Some(listen)), ("listen_udp", listen_udp)];
    for (key, addr) in addresses.into_iter().filter_map(|(k, a)| Some((k, a?))) {
        if enabled && !addr.ip().is_loopback() && !insecure_plaintext {
            error(
                at.key(key),
                format!(
                    "{addr} is not a loopback address: GB/T 20999 has no encryption or authentication, so set \
                     gbt20999.insecure_plaintext = true if a private network to the centre is intended"
                ),
            );
        }
    }
    let principal = raw.principal.unwrap_or(d.principal);
    if principal.is_empty() || principal.len() > 64 || principal.chars().any(char::is_control) {
        error(at.key("principal"), "1 to 64 printable characters".into());
    }
    let heartbeat_s = raw.heartbeat_timeout_s.unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT_S);
    if heartbeat_s > MAX_HEARTBEAT_TIMEOUT_S {
        error(at.key("heartbeat_timeout_s"), format!("{heartbeat_s} s is above {MAX_HEARTBEAT_TIMEOUT_S} s"));
    }
    let link_loss_action = raw.link_loss_action.unwrap_or_default();
    if heartbeat_s == 0 && link_loss_action != LinkLossAction::None {
        error(
            at.key("link_loss_action"),
            "needs heartbeat_timeout_s above 0: without it a silent link is never lost".into(),
        );
    }
    let report_interval = match raw.report_interval_ms {
        None | Some(0) => None,
        Some(ms) if REPORT_INTERVAL_MS_RANGE.contains(&ms) => Some(Duration::from_millis(ms)),
        Some(ms) => {
            error(
                at.key("report_interval_ms"),
                format!(
                    "{ms} ms is outside {}..={} ms (0: no reports)",
                    REPORT_INTERVAL_MS_RANGE.start(),
                    REPORT_INTERVAL_MS_RANGE.end()
                ),
            );
            None
        }
    };
    Gbt20999Config {
        enabled,
        listen,
        listen_udp,
        controller_id: raw.controller_id.unwrap_or(d.controller_id),
        role: match raw.role {
            Some(RawRole::Operator) => Role::Operator,
            Some(RawRole::Viewer) | None => Role::Viewer,
        },
        principal,
        heartbeat_timeout: (heartbeat_s > 0).then(|| Duration::from_secs(heartbeat_s)),
        link_loss_action,
        report_interval,
        profile: raw.profile.unwrap_or_default(),
        insecure_plaintext,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Gbt20999Config, Vec<String>) {
        let raw: RawGbt20999 = toml::from_str(text).expect("toml");
        let mut errors = Vec::new();
        let cfg = validate(Some(raw), |k, r| errors.push(format!("{}: {r}", k.env_var("GREENWAVE"))));
        (cfg, errors)
    }

    #[test]
    fn no_section_no_listener_and_a_section_turns_it_on_read_only_at_loopback() {
        let mut errors = Vec::new();
        assert_eq!(validate(None, |_, r| errors.push(r)), Gbt20999Config::default());
        assert!(!Gbt20999Config::default().enabled);
        let (cfg, errors) = check("");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(cfg.enabled);
        assert_eq!((cfg.listen, cfg.role, cfg.link_loss_action), (DEFAULT_LISTEN, Role::Viewer, LinkLossAction::None));
    }

    #[test]
    fn every_bad_key_is_named_with_its_reason() {
        let (_, errors) = check(
            "listen = \"0.0.0.0:20999\"\nheartbeat_timeout_s = 0\nlink_loss_action = \"flash\"\n\
             report_interval_ms = 5\nprincipal = \"\"",
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("GBT20999__LISTEN") && errors[0].contains("insecure_plaintext"), "{errors:?}");
        assert!(errors[1].contains("PRINCIPAL"), "{errors:?}");
        assert!(errors[2].contains("LINK_LOSS_ACTION") && errors[2].contains("heartbeat_timeout_s"), "{errors:?}");
        assert!(errors[3].contains("REPORT_INTERVAL_MS") && errors[3].contains("5 ms"), "{errors:?}");
        let (cfg, errors) = check(
            "listen = \"0.0.0.0:20999\"\ninsecure_plaintext = true\nrole = \"operator\"\n\
             link_loss_action = \"local_actuated\"\nheartbeat_timeout_s = 3\nprofile = \"lining\"",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((cfg.role, cfg.profile), (Role::Operator, Profile::Lining));
        assert_eq!(cfg.heartbeat_timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn a_udp_listener_is_optional_and_held_to_the_same_loopback_rule() {
        assert_eq!(check("").0.listen_udp, None);
        let (cfg, errors) = check("listen_udp = \"127.0.0.1:20998\"");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cfg.listen_udp, Some("127.0.0.1:20998".parse().expect("addr")));
        let (_, errors) = check("listen_udp = \"0.0.0.0:20999\"");
        assert!(errors.len() == 1 && errors[0].contains("GBT20999__LISTEN_UDP"), "{errors:?}");
        let (_, errors) = check("listen_udp = \"port 9\"");
        assert!(errors.len() == 1 && errors[0].contains("not an address"), "{errors:?}");
    }
}
