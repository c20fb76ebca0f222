//! Where a daemon's intersections come from, and the reload (SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tracing::{error, info, warn};

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
    /// A controllers directory (`<id>.toml` files), read again on reload.
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

    /// The controller file text of `config` (the API edits plans on it).
    fn text_of(&self, config: &IntersectionConfig) -> anyhow::Result<String> {
        let name = config.source.display().to_string();
        let found = match self {
            Controllers::Dir(_) => {
                return std::fs::read_to_string(&config.source)
                    .with_context(|| format!("reading {name} again for the gRPC API"));
            }
            Controllers::Embedded => EMBEDDED.iter().find(|(n, _)| Path::new(n) == config.source).map(|(_, t)| *t),
            Controllers::Texts(texts) => {
                texts.iter().find(|(n, _)| Path::new(n) == config.source).map(|(_, t)| t.as_str())
            }
            Controllers::Loaded(configs) => {
                configs.iter().find(|(c, _)| c.spec.id == config.spec.id).map(|(_, t)| t.as_str())
            }
        };
        found.map(str::to_owned).with_context(|| format!("no controller text for {name}"))
    }

    /// Each intersection's definition as the API's plan editor starts from.
    ///
    /// # Errors
    /// A controller file cannot be read again.
    pub fn sources(&self, intersections: &[IntersectionConfig]) -> anyhow::Result<Vec<ControllerSource>> {
        intersections
            .iter()
            .map(|x| {
                Ok(ControllerSource {
                    config: x.clone(),
                    file_name: x.source.display().to_string(),
                    toml: self.text_of(x)?,
                })
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
    port: CommandPort,
    api: Arc<Api>,
}

impl Reloader {
    pub(super) fn new(controllers: Controllers, ids: Vec<String>, port: CommandPort, api: Arc<Api>) -> Reloader {
        Reloader { inner: Arc::new(ReloadInner { controllers, ids, port, api }) }
    }

    /// Validates the controllers again and stages every valid change (each
    /// applies at its controller's next barrier); on any error keeps
    /// everything that runs now. Every outcome is logged.
    pub fn reload(&self) {
        let r = &self.inner;
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
        for cfg in configs {
            let id = cfg.spec.id.clone();
            let Some(intersection) = r.ids.iter().position(|x| *x == id) else {
                warn!(%id, "new intersection in the controllers directory: takes effect on restart");
                continue;
            };
            // The API edits plans on top of what is in force: from now on,
            // on top of the reloaded file.
            let Ok(text) = r.controllers.text_of(&cfg) else { continue };
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
