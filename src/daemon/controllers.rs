//! Where a daemon's intersections come from, and the reload (SIGHUP).

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::api::versions::ControllerFile;
use crate::api::{Api, ControllerSource};
use crate::config::{self, IntersectionConfig};
use crate::core::Command;
use crate::engine::port::CommandPort;
use crate::engine::{EngineCommand, Ticket};

/// The shipped intersections, compiled in: `greenwave run` works from any
/// directory with no files at all, and `greenwave sim-cabinet` serves them.
pub const EMBEDDED: [(&str, &str); 3] = [
    ("broadway-and-5th.toml", include_str!("../../controllers/broadway-and-5th.toml")),
    ("elm-and-oak.toml", include_str!("../../controllers/elm-and-oak.toml")),
    ("river-rd-and-mill-st.toml", include_str!("../../controllers/river-rd-and-mill-st.toml")),
];

/// Where the intersections come from.
#[derive(Clone, Debug)]
pub enum Controllers {
    /// A controllers directory (`<id>.toml` files), read again on reload;
    /// what the API accepts is saved into it (`crate::api::versions`).
    Dir(PathBuf),
    /// The shipped intersections on simulated cabinets ([`EMBEDDED`]).
    Embedded,
    /// Controller files given as `(file name, TOML text)`: tests, benchmarks
    /// and tools that make their own. Reload reads them again, unchanged.
    Texts(Vec<(String, String)>),
    /// Configurations already loaded (and perhaps changed in code), with
    /// the TOML text the API's plan editor starts from. Reload keeps them.
    Loaded(Vec<(IntersectionConfig, String)>),
}

impl Controllers {
    /// Validates every controller; all errors (file, key, reason) or the
    /// configurations. Warnings are logged.
    ///
    /// # Errors
    /// Every configuration error, rendered.
    pub fn load(&self) -> Result<Vec<IntersectionConfig>, Vec<String>> {
        let loaded = match self {
            Controllers::Dir(dir) => config::load_dir(dir),
            Controllers::Embedded => load_texts(EMBEDDED.iter().map(|(n, t)| (*n, *t))),
            Controllers::Texts(texts) => load_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str()))),
            Controllers::Loaded(configs) => return Ok(configs.iter().map(|(c, _)| c.clone()).collect()),
        };
        match loaded {
            Ok(configs) => Ok(configs
                .into_iter()
                .map(|(cfg, warnings)| {
                    for w in warnings {
                        warn!("{w}");
                    }
                    cfg
                })
                .collect()),
            Err(errors) => Err(errors.iter().map(ToString::to_string).collect()),
        }
    }

    /// The controller file text of `config` (the API edits plans on it):
    /// the text it was validated from.
    fn text_of(&self, config: &IntersectionConfig) -> String {
        match self {
            Controllers::Loaded(configs) => configs
                .iter()
                .find(|(c, _)| c.spec.id == config.spec.id)
                .map_or_else(|| config.text.to_string(), |(_, t)| t.clone()),
            _ => config.text.to_string(),
        }
    }

    /// Each intersection's definition as the API's plan editor starts from.
    pub fn sources(&self, intersections: &[IntersectionConfig]) -> Vec<ControllerSource> {
        intersections
            .iter()
            .map(|x| ControllerSource {
                config: x.clone(),
                file_name: x.source.display().to_string(),
                toml: self.text_of(x),
                // Only a directory's files are the daemon's to rewrite.
                file: matches!(self, Controllers::Dir(_)).then(|| ControllerFile::new(x.source.clone(), &x.spec.id)),
            })
            .collect()
    }

    pub fn log_loaded(&self, count: usize) {
        match self {
            Controllers::Dir(d) => info!(controllers = %d.display(), count, "loaded intersections"),
            Controllers::Embedded => {
                info!(count, "no controllers directory: running the embedded default on simulated cabinets");
            }
            Controllers::Texts(_) | Controllers::Loaded(_) => info!(count, "loaded intersections"),
        }
    }
}

fn load_texts<'a>(
    texts: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<(IntersectionConfig, Vec<config::Warning>)>, Vec<config::ConfigError>> {
    let mut configs = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in texts {
        match config::load_intersection_str(name, text) {
            Ok(ok) => configs.push(ok),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() { Ok(configs) } else { Err(errors) }
}

/// Reloads the controllers of a running daemon (what SIGHUP does).
#[derive(Clone, Debug)]
pub struct Reloader {
    inner: Arc<ReloadInner>,
}

#[derive(Debug)]
struct ReloadInner {
    controllers: Controllers,
    ids: Vec<String>,
    /// Per intersection, what only a restart changes, as it runs.
    restart_only: Vec<RestartOnly>,
    /// `greenwave.toml`, for its `[grpc]` access.
    daemon_file: super::settings::DaemonFile,
    port: CommandPort,
    api: Arc<Api>,
}

/// The parts of a controller file a running daemon cannot change: the
/// cabinet link and the simulated traffic behind it are set up at start,
/// the time zone and camera zones are the engine's from start, the name is
/// the API's and the view's. A reload that changes one is rejected for that
/// intersection, with the reason: never half applied, never called in force.
#[derive(Debug, PartialEq)]
struct RestartOnly {
    name: String,
    time_zone: Option<chrono_tz::Tz>,
    cabinet: config::CabinetConfig,
    traffic: config::TrafficConfig,
    camera_zones: Vec<config::CameraZone>,
}

impl RestartOnly {
    fn of(c: &IntersectionConfig) -> RestartOnly {
        RestartOnly {
            name: c.name.clone(),
            time_zone: c.time_zone,
            cabinet: c.cabinet.clone(),
            traffic: c.traffic.clone(),
            camera_zones: c.camera_zones.clone(),
        }
    }

    /// The sections of `new` that differ from `self`, as the file names them.
    fn changed(&self, new: &RestartOnly) -> Vec<&'static str> {
        [
            (self.name != new.name, "[intersection] name"),
            (self.time_zone != new.time_zone, "[intersection] time_zone"),
            (self.cabinet != new.cabinet, "[cabinet]"),
            (self.traffic != new.traffic, "[simulation]"),
            (self.camera_zones != new.camera_zones, "[[camera_zone]]"),
        ]
        .into_iter()
        .filter_map(|(changed, section)| changed.then_some(section))
        .collect()
    }
}

impl Reloader {
    pub(super) fn new(
        controllers: Controllers,
        running: &[IntersectionConfig],
        daemon_file: super::settings::DaemonFile,
        port: CommandPort,
        api: Arc<Api>,
    ) -> Reloader {
        Reloader {
            inner: Arc::new(ReloadInner {
                controllers,
                ids: running.iter().map(|c| c.spec.id.clone()).collect(),
                restart_only: running.iter().map(RestartOnly::of).collect(),
                daemon_file,
                port,
                api,
            }),
        }
    }

    /// Validates the controllers again (each file read once) and stages
    /// every valid change of timing, plans, detectors and schedule (each
    /// applies at its controller's next barrier, logged then as in force).
    /// On any error keeps everything that runs now. What a reload cannot
    /// apply (a changed cabinet link, time zone, camera zones or name; an
    /// added or removed file) is logged as not applied, with what it takes.
    /// `greenwave.toml`'s `[grpc]` access is applied too
    /// ([`super::settings`]). Every outcome is logged.
    pub fn reload(&self) {
        let r = &self.inner;
        r.daemon_file.reload(&r.api);
        info!("reloading controllers");
        let configs = match r.controllers.load() {
            Ok(c) => c,
            Err(errors) => {
                error!(errors = errors.len(), "reload rejected; running plans kept");
                for e in errors {
                    error!("{e}");
                }
                return;
            }
        };
        for (id, _) in r.ids.iter().zip(&r.restart_only).filter(|(id, _)| !configs.iter().any(|c| c.spec.id == **id)) {
            warn!(%id, "controller file gone: not applied, the intersection keeps its running plan (removing an intersection takes a restart)");
        }
        for cfg in configs {
            let id = cfg.spec.id.clone();
            let Some(intersection) = r.ids.iter().position(|x| *x == id) else {
                warn!(%id, "new intersection in the controllers directory: not applied (adding one takes a restart)");
                continue;
            };
            let changed = r.restart_only[intersection].changed(&RestartOnly::of(&cfg));
            if !changed.is_empty() {
                error!(
                    %id,
                    file = %cfg.source.display(),
                    "reload rejected for this intersection: {} changed, which only a restart applies; its running plan kept",
                    changed.join(", ")
                );
                continue;
            }
            // The API edits plans on top of what is in force: from now on,
            // on top of the reloaded file.
            let text = r.controllers.text_of(&cfg);
            let mut spec = cfg.spec.clone();
            spec.version = r.api.reloaded(intersection, cfg, &text);
            let command = Command::LoadSpec(Box::new(spec));
            match r.port.send(EngineCommand::Controller { intersection, command, ticket: Ticket::NONE }) {
                Ok(()) => info!(%id, "reload staged: applies at the next barrier"),
                Err(e) => error!(%id, error = %e, "reload not staged"),
            }
        }
    }
}
