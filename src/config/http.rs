//! `[http]` in `greenwave.toml`: the HTTP listener that serves Prometheus /
//! OpenMetrics at `/metrics` (see `docs/metrics.md`).
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:9464"       # default (the Prometheus exporter port)
//! enabled = true                  # default once the section is written
//! anonymous = "viewer"            # default on loopback only, as [grpc]
//! insecure_plaintext = false      # off loopback without [http.tls]: refused unless true
//!
//! [http.tls]                      # optional; required off loopback
//! cert = "/etc/greenwave/tls/server.pem"
//! key = "/etc/greenwave/tls/server.key"
//! ```
//!
//! Who may scrape is `[grpc]`'s business: the same `[[grpc.token]]`
//! entries, and a viewer or operator token may read `/metrics`. Only the
//! anonymous role is the listener's own, because it follows its address.
//!
//! # Off unless asked for
//! Without an `[http]` section there is no listener: one more open port
//! on a roadside cabinet is the operator's decision, and several daemons
//! on one host (tests, benchmarks, a regional server's replicas) would
//! otherwise fight over 9464.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

use super::grpc::{self, RawAnonymous, RawTls, Role, TlsFiles};
use super::key::KeyPath;

/// The default metrics address: loopback, the port Prometheus exporters
/// conventionally take.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// The validated `[http]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// The role of a scraper without a token, if any may scrape.
    pub anonymous: Option<Role>,
    /// A plaintext listener off loopback is intended.
    pub insecure_plaintext: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: false,
            listen: DEFAULT_LISTEN,
            tls: None,
            anonymous: Some(Role::Viewer),
            insecure_plaintext: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHttp {
    enabled: Option<bool>,
    listen: Option<String>,
    anonymous: Option<RawAnonymous>,
    insecure_plaintext: Option<bool>,
    tls: Option<RawTls>,
}

/// Validates `[http]`; `error` receives each problem with its key.
pub(super) fn validate(raw: Option<RawHttp>, mut error: impl FnMut(KeyPath, String)) -> HttpConfig {
    let Some(raw) = raw else { return HttpConfig::default() };
    let at = KeyPath::root().key("http");
    let listen = grpc::parse_listen(raw.listen.as_deref(), DEFAULT_LISTEN, &at, &mut error);
    let tls = grpc::validate_tls(raw.tls, &at, &mut error);
    let insecure_plaintext = raw.insecure_plaintext.unwrap_or(false);
    let enabled = raw.enabled.unwrap_or(true);
    if enabled && let Err(reason) = grpc::check_exposure("http", listen, tls.is_some(), insecure_plaintext) {
        error(at.key("listen"), reason);
    }
    HttpConfig { enabled, listen, tls, anonymous: grpc::anonymous_role(raw.anonymous, listen), insecure_plaintext }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (HttpConfig, Vec<String>) {
        let raw: RawHttp = toml::from_str(text).expect("toml");
        let mut errors = Vec::new();
        let cfg = validate(Some(raw), |k, r| errors.push(format!("{}: {r}", k.env_var("X"))));
        (cfg, errors)
    }

    #[test]
    fn no_section_no_listener_and_a_section_turns_it_on_at_loopback() {
        let mut errors = Vec::new();
        assert_eq!(validate(None, |_, r| errors.push(r)), HttpConfig::default());
        assert!(!HttpConfig::default().enabled);
        let (cfg, errors) = check("");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(cfg.enabled);
        assert_eq!((cfg.listen, cfg.anonymous), (DEFAULT_LISTEN, Some(Role::Viewer)));
    }

    #[test]
    fn public_plaintext_is_refused_as_for_grpc() {
        let (cfg, errors) = check("listen = \"0.0.0.0:9464\"");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("not a loopback address: configure [http.tls]"), "{errors:?}");
        assert!(errors[0].contains("http.insecure_plaintext = true"), "{errors:?}");
        assert_eq!(cfg.anonymous, None, "no anonymous scraping off loopback");
        let (_, errors) = check("listen = \"0.0.0.0:9464\"\ninsecure_plaintext = true");
        assert!(errors.is_empty(), "{errors:?}");
        let (_, errors) = check("listen = \"0.0.0.0:9464\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"");
        assert!(errors.is_empty(), "{errors:?}");
    }
}
