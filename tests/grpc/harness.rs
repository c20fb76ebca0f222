//! The real daemon ([`greenwave::daemon`]) in-process for gRPC tests and the
//! gRPC benchmark: the embedded simulated cabinets over loopback Modbus,
//! the API on a port the OS chooses, the event log in a temporary folder.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use greenwave::config::gbt20999::Gbt20999Config;
use greenwave::config::{ClockSource, DaemonConfig, GrpcConfig, HttpConfig, NtcipConfig};
use greenwave::daemon::{Controllers, Daemon, Options as DaemonOptions, Reloader, Stopped};
use greenwave::engine::latency::LatencyReader;

/// How a test daemon runs.
pub struct Options {
    pub grpc: GrpcConfig,
    /// `(file name, controller TOML)` per intersection.
    pub controllers: Vec<(String, String)>,
    /// A lockstep simulation paced at this multiple of real time; `None`
    /// for the real clock.
    pub speed: Option<f64>,
    pub event_history: usize,
    /// Control period, ms.
    pub tick_ms: u64,
    /// The `greenwave.toml` a reload reads (`None`: none).
    pub config_file: Option<PathBuf>,
    /// A controllers directory to run, as `greenwave run --controllers`
    /// does (changes over gRPC are saved there): `controllers` are written
    /// into it where it has no file of that name. `None`: the controllers
    /// run from their texts and changes live in memory.
    pub dir: Option<PathBuf>,
    /// The metrics listener (`[http]`); `None`: off.
    pub http: Option<HttpConfig>,
    /// The NTCIP agent (`[ntcip]`); `None`: off.
    pub ntcip: Option<NtcipConfig>,
    /// The GB/T 20999 adapter (`[gbt20999]`); `None`: off.
    pub gbt20999: Option<Gbt20999Config>,
}

pub struct Harness {
    pub addr: SocketAddr,
    /// The metrics listener's address, when [`Options::http`] asked for one.
    pub http_addr: Option<SocketAddr>,
    /// The NTCIP agent's UDP address, when [`Options::ntcip`] asked for one.
    pub ntcip_addr: Option<SocketAddr>,
    /// The GB/T 20999 adapter's address, when [`Options::gbt20999`] asked for one.
    pub gbt20999_addr: Option<SocketAddr>,
    pub latency: Arc<LatencyReader>,
    /// What SIGHUP does.
    pub reloader: Reloader,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    daemon: Option<JoinHandle<Stopped>>,
    _logs: tempfile::TempDir,
}

pub async fn start(opts: Options) -> Harness {
    let logs = tempfile::tempdir().expect("tempdir");
    let mut config = DaemonConfig {
        tick_ms: opts.tick_ms,
        view: false,
        clock: if opts.speed.is_some() { ClockSource::Cabinet } else { ClockSource::System },
        lockstep_speed: opts.speed,
        time_zone: chrono_tz::UTC,
        grpc: opts.grpc,
        ..DaemonConfig::default()
    };
    config.grpc.limits.event_history = opts.event_history;
    config.event_log.dir = logs.path().to_path_buf();
    if let Some(http) = opts.http {
        config.http = http;
    }
    if let Some(ntcip) = opts.ntcip {
        config.ntcip = ntcip;
    }
    if let Some(gbt20999) = opts.gbt20999 {
        config.gbt20999 = gbt20999;
    }
    let controllers = match opts.dir {
        Some(dir) => {
            for (name, text) in &opts.controllers {
                let file = dir.join(name);
                if !file.exists() {
                    std::fs::write(&file, text).expect("write a controller file");
                }
            }
            Controllers::Dir(dir)
        }
        None => Controllers::Texts(opts.controllers),
    };
    let mut options = DaemonOptions::new(config, controllers);
    if let Some(file) = opts.config_file {
        options.config_file = file;
    }
    let daemon = tokio::task::spawn_blocking(move || Daemon::start(options))
        .await
        .expect("start thread")
        .expect("daemon starts");
    let addr = daemon.grpc_addr().expect("gRPC on");
    let http_addr = daemon.http_addr();
    let ntcip_addr = daemon.ntcip_addr();
    let gbt20999_addr = daemon.gbt20999_addr();
    let latency = daemon.latency().clone();
    let reloader = daemon.reloader();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = std::thread::spawn(move || {
        daemon
            .run_until(async {
                let _ = stopped.await;
            })
            .expect("daemon stops")
    });
    Harness {
        addr,
        http_addr,
        ntcip_addr,
        gbt20999_addr,
        latency,
        reloader,
        stop: Some(stop),
        daemon: Some(daemon),
        _logs: logs,
    }
}

impl Harness {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the daemon as SIGTERM does (through flash); it must stop clean.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let daemon = self.daemon.take().expect("running");
        let stopped = tokio::task::spawn_blocking(move || daemon.join()).await.expect("join").expect("daemon thread");
        assert!(stopped.is_clean(), "{stopped:?}");
    }
}
