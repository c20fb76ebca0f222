//! `greenwave.toml` on SIGHUP: the API's access (tokens, groups, the
//! anonymous role, TLS material) is replaced in the running daemon, and
//! the metrics listener admits scrapers by the new tokens too; the
//! rest is read at start only, and a change to it is reported as not
//! applied.
//!
//! Rotating a token or a certificate must not flash the region, so it
//! cannot take a restart: the new access applies to calls and connections
//! from the moment of the reload, those already open keep what they were
//! admitted with, and the signals never notice.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::{error, info, warn};

use crate::api::Api;
use crate::api::auth::Authenticator;
use crate::config::{DaemonConfig, GrpcConfig, Role};

/// `greenwave.toml` as the daemon started on it.
#[derive(Debug)]
pub(super) struct DaemonFile {
    path: PathBuf,
    /// The file's settings at start (`None`: there was no file), before
    /// any command-line override: what a reload compares against.
    at_start: Option<DaemonConfig>,
    /// `[grpc]` as the API runs it (overrides applied, reloads applied).
    running: Mutex<GrpcConfig>,
    /// The metrics listener's admission and its own anonymous role (`[http]`
    /// is read at start only), when it runs.
    scrapers: Option<(Authenticator, Option<Role>)>,
}

impl DaemonFile {
    pub(super) fn new(
        path: PathBuf,
        running: &GrpcConfig,
        scrapers: Option<(Authenticator, Option<Role>)>,
    ) -> DaemonFile {
        let at_start = path.exists().then(|| DaemonConfig::load(Some(&path)).ok()).flatten();
        DaemonFile { path, at_start, running: Mutex::new(running.clone()), scrapers }
    }

    /// Reads the file again and applies its access to `api`; every outcome
    /// is logged.
    pub(super) fn reload(&self, api: &Arc<Api>) {
        let file = self.path.display();
        if self.at_start.is_none() && !self.path.exists() {
            return;
        }
        let new = match DaemonConfig::load(Some(&self.path)) {
            Ok(c) => c,
            Err(errors) => {
                error!(%file, errors = errors.len(), "daemon settings not reloaded: the file has errors; the access in force kept");
                for e in errors {
                    error!("{e}");
                }
                return;
            }
        };
        if self.at_start.as_ref().map(beyond_access) != Some(beyond_access(&new)) {
            warn!(
                %file,
                "daemon settings changed beyond [grpc] tokens, groups, anonymous and TLS files: those changes are \
                 not applied (greenwave.toml is read at start; restart to apply them)"
            );
        }
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let mut grpc = running.clone();
        grpc.tokens = new.grpc.tokens;
        grpc.tls = new.grpc.tls;
        // Unset, anonymous viewing follows the address (as at start).
        grpc.anonymous = match (new.grpc.anonymous_explicit, grpc.listen.ip().is_loopback()) {
            (true, _) => new.grpc.anonymous,
            (false, true) => Some(Role::Viewer),
            (false, false) => None,
        };
        let result = api.replace_access(&grpc);
        if let (Ok(_), Some((auth, anonymous))) = (&result, &self.scrapers) {
            auth.replace(&GrpcConfig { anonymous: *anonymous, ..grpc.clone() });
        }
        match result {
            Ok(changed) if changed.is_empty() => info!(%file, "[grpc] access unchanged"),
            Ok(changed) => {
                info!(
                    %file,
                    changed = %changed.join("; "),
                    "[grpc] access reloaded: applies to calls and connections from now on; signals untouched"
                );
                *running = grpc;
            }
            Err(reason) => error!(%file, "[grpc] access not reloaded: {reason}; the access in force kept"),
        }
    }
}

/// `c` without what a reload applies, to see whether anything else changed.
fn beyond_access(c: &DaemonConfig) -> DaemonConfig {
    let mut c = c.clone();
    c.grpc.tokens.clear();
    c.grpc.anonymous = None;
    c.grpc.anonymous_explicit = false;
    if let Some(tls) = &mut c.grpc.tls {
        *tls = crate::config::grpc::TlsFiles {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            client_ca: None,
            require_client_cert: false,
        };
    }
    c
}
