//! Process-wide `tracing` setup.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `info` and above unless `RUST_LOG` says
/// otherwise (invalid directives in it are ignored rather than fatal, so a
/// typo cannot stop a signal controller from starting), written to stderr so
/// stdout stays free for command output (`greenwave check`).
///
/// `json` selects one JSON object per line, for log shippers; otherwise
/// human-readable lines. The `log` bridge (tracing-subscriber's default
/// `tracing-log` feature) stays on, because tokio-modbus logs through `log`.
///
/// Unless `RUST_LOG` names `async_nats`, the NATS client logs warnings only.
///
/// The first line logged is the build information, so every log starts by
/// saying what produced it. Calling this again (tests, or a second
/// initialisation) leaves the first subscriber in place and does nothing.
pub fn init_tracing(json: bool) {
    let mut filter = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into()).from_env_lossy();
    // async-nats logs every reconnect attempt at info; the daemon says a
    // broker's loss and return itself, once each (`daemon::nats`).
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("async_nats"))
        && let Ok(quiet) = "async_nats=warn".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = if json { builder.json().try_init() } else { builder.try_init() };
    if installed.is_ok() {
        tracing::info!(version = env!("CARGO_PKG_VERSION"), json, "{} starting", env!("CARGO_PKG_NAME"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second initialisation (as every test that logs may attempt) is a no-op.
    #[test]
    fn init_twice_does_not_panic() {
        init_tracing(false);
        init_tracing(true);
        tracing::debug!("still logging");
    }
}
