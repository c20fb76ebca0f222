//! `greenwave sim-cabinet`: serve simulated cabinets over Modbus until
//! stopped, and write the controller files that point the daemon at them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::info;

use super::server::{Lockstep, SimCabinetSpec, SimServer, SimServerConfig, SimServerError};
use crate::config::IntersectionConfig;
use crate::core::Span;
use crate::io::{IoScheduling, runtime};

/// `greenwave sim-cabinet` options.
#[derive(Clone, Debug)]
pub struct SimCabinetOptions {
    pub listen: SocketAddr,
    /// Serve this many cabinets, cycling through the intersections given.
    pub count: Option<usize>,
    pub lockstep: bool,
    pub tick: Span,
    pub rtu_over_tcp: bool,
    pub unit_id: u8,
    /// Write one controller file per cabinet here, pointing at its port.
    pub write_controllers: Option<PathBuf>,
    pub duration: Option<Duration>,
    /// On exit, write what the cabinets saw ([`SimStats`](super::server::SimStats)) to this JSON file.
    pub stats_json: Option<PathBuf>,
}

/// Why a controller file could not be made into a simulated cabinet's.
#[derive(Debug, thiserror::Error)]
pub enum ControllerFileError {
    #[error("not TOML: {0}")]
    Parse(toml::de::Error),
    #[error("`intersection` is not a table")]
    IntersectionNotATable,
    #[error("cannot write it back as TOML: {0}")]
    Serialize(toml::ser::Error),
}

/// The controller file `text` made into a simulated cabinet's: its
/// `[intersection] id` set to `new_id` and its `[cabinet]` table replaced by
/// `kind` (`modbus-tcp`, `modbus-rtu-over-tcp`) at `address`, every other
/// key kept.
///
/// The file is parsed and written back, so its comments and layout are not
/// kept: the result is for the daemon, the engineer's file stays the
/// source.
pub fn controller_for(
    text: &str,
    new_id: &str,
    kind: &str,
    address: SocketAddr,
) -> Result<String, ControllerFileError> {
    let mut file: toml::Table = text.parse().map_err(ControllerFileError::Parse)?;
    let intersection = file
        .entry("intersection")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or(ControllerFileError::IntersectionNotATable)?;
    intersection.insert("id".into(), new_id.into());
    let mut cabinet = toml::Table::new();
    cabinet.insert("kind".into(), kind.into());
    cabinet.insert("address".into(), address.to_string().into());
    file.insert("cabinet".into(), cabinet.into());
    toml::to_string(&file).map_err(ControllerFileError::Serialize)
}

/// Why `greenwave sim-cabinet` stopped before serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no intersections to simulate")]
    NoIntersections,
    #[error("starting the I/O runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Start(#[from] SimServerError),
    #[error("creating {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("writing {}", path.display())]
    ControllerFile {
        path: PathBuf,
        #[source]
        error: ControllerFileError,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

/// `greenwave sim-cabinet`: serve `intersections` (with their controller
/// file text, for `--write-controllers`) until SIGINT/SIGTERM or the
/// duration.
pub fn serve_sim_cabinets(
    intersections: &[(IntersectionConfig, String)],
    opts: &SimCabinetOptions,
) -> Result<(), ServeError> {
    if intersections.is_empty() {
        return Err(ServeError::NoIntersections);
    }
    let count = opts.count.unwrap_or(intersections.len());
    let digits = count.to_string().len();
    let cabinets: Vec<(SimCabinetSpec, &str)> = (0..count)
        .map(|n| {
            let (x, text) = &intersections[n % intersections.len()];
            let id = if opts.count.is_some() { format!("{}-{:0digits$}", x.spec.id, n + 1) } else { x.spec.id.clone() };
            (SimCabinetSpec { id, spec: x.spec.clone(), traffic: x.traffic.clone() }, text.as_str())
        })
        .collect();
    let rt = runtime(IoScheduling::Normal).map_err(ServeError::Runtime)?;
    let cfg = SimServerConfig {
        unit_id: opts.unit_id,
        rtu_over_tcp: opts.rtu_over_tcp,
        lockstep: opts.lockstep.then(|| Lockstep::new(opts.tick)),
        ..SimServerConfig::default()
    };
    let specs: Vec<SimCabinetSpec> = cabinets.iter().map(|(c, _)| c.clone()).collect();
    let server = rt.block_on(SimServer::start(&specs, opts.listen, cfg))?;
    let kind = if opts.rtu_over_tcp { "modbus-rtu-over-tcp" } else { "modbus-tcp" };
    if let Some(dir) = &opts.write_controllers {
        std::fs::create_dir_all(dir).map_err(|error| ServeError::CreateDir { path: dir.clone(), error })?;
        for ((c, text), addr) in cabinets.iter().zip(&server.addrs) {
            let path = dir.join(format!("{}.toml", c.id));
            match controller_for(text, &c.id, kind, *addr) {
                Ok(file) => std::fs::write(&path, file).map_err(|error| ServeError::Write { path, error })?,
                Err(error) => return Err(ServeError::ControllerFile { path, error }),
            }
        }
    }
    for (c, addr) in specs.iter().zip(&server.addrs).take(20) {
        println!("{} {kind} {addr} unit {}", c.id, opts.unit_id);
    }
    if specs.len() > 20 {
        println!("... {} cabinets on {} to {}", specs.len(), server.addrs[0], server.addrs[specs.len() - 1]);
    }
    info!(
        cabinets = specs.len(),
        lockstep = opts.lockstep,
        controllers = ?opts.write_controllers.as_deref().map(Path::display).map(|d| d.to_string()),
        "simulated cabinets serving"
    );
    // Machine-readable readiness for scripts: listeners are bound.
    println!("ready");
    let shared = server.shared.clone();
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        let until = async {
            match opts.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = int.recv() => info!("SIGINT: stopping"),
            _ = until => info!("duration reached: stopping"),
        }
    });
    let faults = (0..shared.units.len()).filter(|&i| shared.unit(i).mmu.fault().is_some()).count();
    rt.block_on(server.stop());
    let stats = shared.stats();
    info!(
        requests = shared.requests.load(Ordering::Relaxed),
        cabinets_in_mmu_fault = faults,
        writes = stats.writes,
        write_gap = %stats.write_gaps,
        "simulated cabinets stopped"
    );
    if let Some(path) = &opts.stats_json {
        std::fs::write(path, stats.to_json()).map_err(|error| ServeError::Write { path: path.clone(), error })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, CabinetConfig, ModbusTransport};

    /// Every shipped controller, made into simulated cabinet 7's, loads as
    /// the same intersection under the new id with a Modbus cabinet.
    #[test]
    fn controller_files_load_with_the_new_id_and_address() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("controllers");
        let address: SocketAddr = "127.0.0.1:5027".parse().unwrap();
        for path in config::controller_files(&dir).unwrap() {
            let text = std::fs::read_to_string(&path).unwrap();
            let (original, _) = config::load_intersection_str("original.toml", &text).unwrap();
            let new_id = format!("{}-7", original.spec.id);
            for (kind, transport) in [
                ("modbus-tcp", ModbusTransport::Tcp { address: address.to_string() }),
                ("modbus-rtu-over-tcp", ModbusTransport::RtuOverTcp { address: address.to_string() }),
            ] {
                let out = controller_for(&text, &new_id, kind, address).unwrap();
                let (x, _) = config::load_intersection_str(&format!("{new_id}.toml"), &out)
                    .unwrap_or_else(|e| panic!("{}: {e:?}\n{out}", path.display()));
                assert_eq!(x.spec.id, new_id);
                let CabinetConfig::Modbus(m) = &x.cabinet else { panic!("{}: not a Modbus cabinet", path.display()) };
                assert_eq!(m.transport, transport);
                let mut spec = x.spec.clone();
                spec.id = original.spec.id.clone();
                assert_eq!(spec, original.spec, "{}: only the id changes", path.display());
                assert_eq!(x.traffic, original.traffic);
            }
        }
    }
}
