//! `[nats]` in `greenwave.toml`: the city feed over a NATS broker (see
//! `docs/nats.md`).
//!
//! ```toml
//! [nats]
//! url = "nats://127.0.0.1:4222"   # default; tls://host:port for TLS
//! enabled = true                  # default once the section is written
//! subject_prefix = "greenwave"    # subjects are <prefix>.<intersection>.events|alarms|measures|state
//! stream = "GREENWAVE_EVENTS"     # the JetStream stream events, alarms and measures go into
//! state_interval_ms = 1000        # one state snapshot per intersection this often
//! buffer_events = 100000          # store-and-forward bound while the broker is away
//! flush_timeout_ms = 5000         # at shutdown, wait at most this long for the broker
//! # at most one way to authenticate:
//! token = "..."                   # or GREENWAVE_NATS__TOKEN
//! user = "greenwave"              # with password
//! password = "..."
//! credentials = "/etc/greenwave/nats.creds"   # a NATS .creds file (JWT + nkey seed)
//! ```
//!
//! # Off unless asked for
//! Without a `[nats]` section nothing connects anywhere: a broker is a
//! deployment's decision, as the metrics listener is.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::key::KeyPath;

/// The default broker: a local `nats-server` on its standard port.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_SUBJECT_PREFIX: &str = "greenwave";
pub const DEFAULT_STREAM: &str = "GREENWAVE_EVENTS";
pub const DEFAULT_STATE_INTERVAL_MS: u64 = 1000;
/// `state_interval_ms`: from a tick (the engine's fastest) to an hour.
pub const STATE_INTERVAL_MS_RANGE: std::ops::RangeInclusive<u64> = 10..=3_600_000;
/// About 4 MB of memory at 40 bytes an event, and a few minutes of a
/// busy daemon's events.
pub const DEFAULT_BUFFER_EVENTS: usize = 100_000;
/// `buffer_events` at most this many (about 400 MB).
pub const MAX_BUFFER_EVENTS: usize = 10_000_000;
pub const DEFAULT_FLUSH_TIMEOUT_MS: u64 = 5000;
/// `flush_timeout_ms` at most a minute: systemd's stop timeout must cover it.
pub const MAX_FLUSH_TIMEOUT_MS: u64 = 60_000;

/// The validated `[nats]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    pub enabled: bool,
    /// Broker address, `nats://host:port` (or `tls://`).
    pub url: String,
    pub auth: NatsAuth,
    /// First subject token(s): `<prefix>.<intersection>.events`.
    pub subject_prefix: String,
    /// The JetStream stream events, alarms and measures are published into (created
    /// if absent).
    pub stream: String,
    /// State snapshots on core NATS this often, per intersection.
    pub state_interval: Duration,
    /// Store-and-forward bound: messages (events, and alarms once more)
    /// waiting for the broker, besides the at most 256 in flight; beyond it
    /// the oldest are dropped and counted.
    pub buffer_events: usize,
    /// At shutdown, how long the publisher may still try to deliver.
    pub flush_timeout: Duration,
}

/// How the daemon authenticates to the broker.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    #[default]
    None,
    Token(String),
    UserPassword {
        user: String,
        password: String,
    },
    /// A `.creds` file (user JWT and nkey seed), read at start.
    Credentials(PathBuf),
}

/// Secrets stay out of debug output (the daemon logs its config on errors).
impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::Token(_) => f.write_str("Token(..)"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword {{ user: {user:?}, .. }}"),
            NatsAuth::Credentials(path) => write!(f, "Credentials({path:?})"),
        }
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            enabled: false,
            url: DEFAULT_URL.into(),
            auth: NatsAuth::None,
            subject_prefix: DEFAULT_SUBJECT_PREFIX.into(),
            stream: DEFAULT_STREAM.into(),
            state_interval: Duration::from_millis(DEFAULT_STATE_INTERVAL_MS),
            buffer_events: DEFAULT_BUFFER_EVENTS,
            flush_timeout: Duration::from_millis(DEFAULT_FLUSH_TIMEOUT_MS),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawNats {
    enabled: Option<bool>,
    url: Option<String>,
    subject_prefix: Option<String>,
    stream: Option<String>,
    state_interval_ms: Option<u64>,
    buffer_events: Option<usize>,
    flush_timeout_ms: Option<u64>,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
    credentials: Option<PathBuf>,
}

/// Validates `[nats]`; `error` receives each problem with its key.
pub(super) fn validate(raw: Option<RawNats>, mut error: impl FnMut(KeyPath, String)) -> NatsConfig {
    let Some(raw) = raw else { return NatsConfig::default() };
    let at = KeyPath::root().key("nats");
    let d = NatsConfig::default();
    let url = raw.url.unwrap_or(d.url);
    if let Err(reason) = check_url(&url) {
        error(at.key("url"), reason);
    }
    let subject_prefix = raw.subject_prefix.unwrap_or(d.subject_prefix);
    if let Err(reason) = check_subject_prefix(&subject_prefix) {
        error(at.key("subject_prefix"), reason);
    }
    let stream = raw.stream.unwrap_or(d.stream);
    if let Err(reason) = check_stream_name(&stream) {
        error(at.key("stream"), reason);
    }
    let state_ms = raw.state_interval_ms.unwrap_or(DEFAULT_STATE_INTERVAL_MS);
    if !STATE_INTERVAL_MS_RANGE.contains(&state_ms) {
        error(
            at.key("state_interval_ms"),
            format!(
                "{state_ms} ms is outside {}..={} ms",
                STATE_INTERVAL_MS_RANGE.start(),
                STATE_INTERVAL_MS_RANGE.end()
            ),
        );
    }
    let buffer_events = raw.buffer_events.unwrap_or(d.buffer_events);
    if !(1..=MAX_BUFFER_EVENTS).contains(&buffer_events) {
        error(at.key("buffer_events"), format!("{buffer_events} is outside 1..={MAX_BUFFER_EVENTS}"));
    }
    let flush_ms = raw.flush_timeout_ms.unwrap_or(DEFAULT_FLUSH_TIMEOUT_MS);
    if flush_ms > MAX_FLUSH_TIMEOUT_MS {
        error(
            at.key("flush_timeout_ms"),
            format!("{flush_ms} ms is above {MAX_FLUSH_TIMEOUT_MS} ms (systemd's stop timeout must cover it)"),
        );
    }
    let auth = match (raw.token, raw.user, raw.password, raw.credentials) {
        (None, None, None, None) => NatsAuth::None,
        (Some(token), None, None, None) if !token.is_empty() => NatsAuth::Token(token),
        (Some(_), None, None, None) => {
            error(at.key("token"), "must not be empty".into());
            NatsAuth::None
        }
        (None, Some(user), Some(password), None) if !user.is_empty() => NatsAuth::UserPassword { user, password },
        (None, Some(_), Some(_), None) => {
            error(at.key("user"), "must not be empty".into());
            NatsAuth::None
        }
        (None, Some(_), None, None) => {
            error(at.key("password"), "missing: user needs a password".into());
            NatsAuth::None
        }
        (None, None, Some(_), None) => {
            error(at.key("user"), "missing: password needs a user".into());
            NatsAuth::None
        }
        (None, None, None, Some(path)) if !path.as_os_str().is_empty() => NatsAuth::Credentials(path),
        (None, None, None, Some(_)) => {
            error(at.key("credentials"), "must not be empty".into());
            NatsAuth::None
        }
        (token, user, _, credentials) => {
            let given: Vec<&str> = [
                token.as_ref().map(|_| "token"),
                user.as_ref().map(|_| "user/password"),
                credentials.as_ref().map(|_| "credentials"),
            ]
            .into_iter()
            .flatten()
            .collect();
            error(at.key("token"), format!("one way to authenticate, not {}", given.join(" and ")));
            NatsAuth::None
        }
    };
    NatsConfig {
        enabled: raw.enabled.unwrap_or(true),
        url,
        auth,
        subject_prefix,
        stream,
        state_interval: Duration::from_millis(state_ms),
        buffer_events,
        flush_timeout: Duration::from_millis(flush_ms),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let scheme_ok = ["nats://", "tls://"].iter().any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err(format!("\"{url}\" must start with nats:// or tls:// (like \"{DEFAULT_URL}\")"));
    }
    url.parse::<async_nats::ServerAddr>()
        .map(|_| ())
        .map_err(|e| format!("\"{url}\" is not a NATS server address ({e})"))
}

/// One subject token: no separator, no wildcard, no white space.
pub fn is_subject_token(token: &str) -> bool {
    !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_subject_prefix(prefix: &str) -> Result<(), String> {
    if prefix.split('.').all(is_subject_token) {
        Ok(())
    } else {
        Err(format!(
            "\"{prefix}\" must be subject tokens of letters, digits, '-' or '_' joined by '.' (no wildcards, \
             no empty token)"
        ))
    }
}

fn check_stream_name(name: &str) -> Result<(), String> {
    if is_subject_token(name) {
        Ok(())
    } else {
        Err(format!("\"{name}\" must be letters, digits, '-' or '_' (a JetStream stream name)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (NatsConfig, Vec<String>) {
        let raw: RawNats = toml::from_str(text).expect("toml");
        let mut errors = Vec::new();
        let cfg = validate(Some(raw), |k, r| errors.push(format!("{}: {r}", k.env_var("GREENWAVE"))));
        (cfg, errors)
    }

    #[test]
    fn no_section_no_broker_and_a_section_turns_it_on_with_defaults() {
        let mut errors = Vec::new();
        let off = validate(None, |_, r| errors.push(r));
        assert!(!off.enabled);
        let (cfg, errors) = check("");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cfg, NatsConfig { enabled: true, ..NatsConfig::default() });
        assert_eq!(cfg.buffer_events, 100_000);
        assert_eq!(cfg.subject_prefix, "greenwave");
    }

    #[test]
    fn every_bad_key_is_reported_with_its_name() {
        let (_, errors) = check(
            "url = \"http://x:80\"\nsubject_prefix = \"city.*\"\nstream = \"A.B\"\nstate_interval_ms = 0\n\
             buffer_events = 0\nflush_timeout_ms = 600000\n",
        );
        let joined = errors.join("\n");
        assert_eq!(errors.len(), 6, "{joined}");
        for key in ["URL", "SUBJECT_PREFIX", "STREAM", "STATE_INTERVAL_MS", "BUFFER_EVENTS", "FLUSH_TIMEOUT_MS"] {
            assert!(joined.contains(&format!("GREENWAVE_NATS__{key}")), "{key}: {joined}");
        }
        assert!(joined.contains("must start with nats:// or tls://"), "{joined}");
    }

    #[test]
    fn one_way_to_authenticate() {
        let (cfg, errors) = check("token = \"s3cret\"");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cfg.auth, NatsAuth::Token("s3cret".into()));
        assert!(!format!("{cfg:?}").contains("s3cret"), "secrets stay out of debug output");
        let (cfg, errors) = check("user = \"gw\"\npassword = \"pw\"");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(matches!(cfg.auth, NatsAuth::UserPassword { .. }));
        let (_, errors) = check("user = \"gw\"");
        assert!(errors[0].contains("user needs a password"), "{errors:?}");
        let (_, errors) = check("token = \"t\"\ncredentials = \"/x.creds\"");
        assert!(errors[0].contains("one way to authenticate, not token and credentials"), "{errors:?}");
    }
}
