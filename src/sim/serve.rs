//! `greenwave sim-cabinet`: serve simulated cabinets over Modbus until
//! stopped, and write the controller files that point the daemon at them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tracing::info;

use super::server::{Lockstep, SimCabinetSpec, SimServer, SimServerConfig};
use crate::config::IntersectionConfig;
use crate::core::Span;
use crate::io::runtime;

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
}

/// The controller file `text` made into cabinet `n`'s: its id suffixed and
/// its `[cabinet]` table replaced by a Modbus one at `address`.
pub fn controller_for(text: &str, id: &str, new_id: &str, kind: &str, address: SocketAddr) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut table = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.to_owned();
            if t == "[cabinet]" {
                let _ = writeln!(out, "[cabinet]\nkind = \"{kind}\"\naddress = \"{address}\"");
                continue;
            }
        }
        if table == "[cabinet]" && !t.is_empty() && !t.starts_with('#') {
            continue;
        }
        if table == "[intersection]" && t.starts_with("id") && t.contains(&format!("\"{id}\"")) {
            let _ = writeln!(out, "id = \"{new_id}\"");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `greenwave sim-cabinet`: serve `intersections` (with their controller
/// file text, for `--write-controllers`) until SIGINT/SIGTERM or the
/// duration.
pub fn serve_sim_cabinets(
    intersections: &[(IntersectionConfig, String)],
    opts: &SimCabinetOptions,
) -> anyhow::Result<()> {
    if intersections.is_empty() {
        bail!("no intersections to simulate");
    }
    let count = opts.count.unwrap_or(intersections.len());
    let digits = count.to_string().len();
    let cabinets: Vec<(SimCabinetSpec, &str, &str)> = (0..count)
        .map(|n| {
            let (x, text) = &intersections[n % intersections.len()];
            let id = if opts.count.is_some() { format!("{}-{:0digits$}", x.spec.id, n + 1) } else { x.spec.id.clone() };
            (SimCabinetSpec { id, spec: x.spec.clone(), traffic: x.traffic.clone() }, text.as_str(), x.spec.id.as_str())
        })
        .collect();
    let rt = runtime()?;
    let cfg = SimServerConfig {
        unit_id: opts.unit_id,
        rtu_over_tcp: opts.rtu_over_tcp,
        lockstep: opts.lockstep.then(|| Lockstep::new(opts.tick)),
        ..SimServerConfig::default()
    };
    let specs: Vec<SimCabinetSpec> = cabinets.iter().map(|(c, _, _)| c.clone()).collect();
    let server = rt.block_on(SimServer::start(&specs, opts.listen, cfg))?;
    let kind = if opts.rtu_over_tcp { "modbus-rtu-over-tcp" } else { "modbus-tcp" };
    if let Some(dir) = &opts.write_controllers {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for ((c, text, id), addr) in cabinets.iter().zip(&server.addrs) {
            let path = dir.join(format!("{}.toml", c.id));
            std::fs::write(&path, controller_for(text, id, &c.id, kind, *addr))
                .with_context(|| format!("writing {}", path.display()))?;
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
    info!(
        requests = shared.requests.load(Ordering::Relaxed),
        cabinets_in_mmu_fault = faults,
        "simulated cabinets stopped"
    );
    rt.block_on(server.stop());
    Ok(())
}
