//! The daemon's wiring for gRPC tests and the gRPC benchmark: engine
//! thread, simulated cabinets, snapshot board, event hub and the API server
//! on a loopback port chosen by the OS (as `greenwave run` wires them).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use greenwave::api::{Api, ControllerSource, EngineHandles, GrpcServer};
use greenwave::config::{self, GrpcConfig};
use greenwave::core::{InputFrame, Instant};
use greenwave::engine::board::SnapshotBoard;
use greenwave::engine::clock::{SimulatedClock, SystemClock};
use greenwave::engine::latency::LatencyReader;
use greenwave::engine::{Engine, EngineCommand, EngineConfig, EngineIo};
use greenwave::sim::SimCabinet;

/// How a test daemon runs.
pub struct Options {
    pub grpc: GrpcConfig,
    /// `(file name, controller TOML)` per intersection.
    pub controllers: Vec<(String, String)>,
    /// Simulated time at this multiple of real time; `None` for the real clock.
    pub speed: Option<f64>,
    pub event_history: usize,
    /// Control period, ms.
    pub tick_ms: u64,
}

pub struct Harness {
    pub addr: SocketAddr,
    pub latency: Arc<LatencyReader>,
    pub commands: Sender<EngineCommand>,
    server: Option<GrpcServer>,
    threads: Vec<JoinHandle<()>>,
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as u64
}

pub async fn start(opts: Options) -> Harness {
    let sources: Vec<ControllerSource> = opts
        .controllers
        .iter()
        .map(|(name, text)| {
            let (config, _) = config::load_intersection_str(name, text).expect("test controller is valid");
            ControllerSource { config, file_name: name.clone(), toml: text.clone() }
        })
        .collect();
    let specs = sources.iter().map(|s| s.config.spec.clone()).collect();
    let traffic: Vec<_> = sources.iter().map(|s| s.config.traffic.clone()).collect();
    let start = Instant::from_millis(now_unix_ms());
    let ecfg = EngineConfig { tick: greenwave::core::Span::from_millis(opts.tick_ms), ..EngineConfig::default() };
    let (engine, io) = Engine::new(specs, ecfg, start);
    let EngineIo { commands, inputs, camera, outputs, snapshots, events, retired, latency, .. } = io;
    let board = SnapshotBoard::new(traffic.len());
    let mut threads = vec![board.spawn_feeder(snapshots).expect("board thread")];
    let api = Api::new(sources, opts.event_history).expect("api");
    let (log_rx, hub) = api.spawn_event_hub(events).expect("hub thread");
    threads.push(hub);
    // No event log writer here: drain what the hub forwards to it.
    threads.push(std::thread::spawn(move || while log_rx.recv().is_ok() {}));
    threads.push(std::thread::spawn(move || while retired.recv().is_ok() {}));
    threads.push(spawn_sim(traffic, outputs, inputs));
    threads.push(match opts.speed {
        Some(speed) => engine.spawn(SimulatedClock::paced(start, speed)).expect("engine thread"),
        // As the daemon does: real-time priority where the process may have it.
        None => engine.spawn_realtime(SystemClock::new()).expect("engine thread"),
    });
    let latency = Arc::new(latency);
    let handles = EngineHandles { commands: commands.clone(), camera, board, latency: latency.clone() };
    let server = api.serve(&opts.grpc, handles).await.expect("server starts");
    Harness { addr: server.addr, latency, commands, server: Some(server), threads }
}

/// The simulated cabinets, as `greenwave run` drives them.
fn spawn_sim(
    traffic: Vec<config::TrafficConfig>,
    outputs: Vec<crossbeam_channel::Receiver<greenwave::engine::OutputMsg>>,
    inputs: Sender<(usize, InputFrame)>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut cabinets: Vec<_> = traffic.iter().map(SimCabinet::new).zip(outputs).collect();
        for i in 0..cabinets.len() {
            let _ = inputs.send((i, InputFrame::default()));
        }
        loop {
            for (i, (cabinet, rx)) in cabinets.iter_mut().enumerate() {
                let Ok(mut msg) = rx.recv() else { return };
                while let Ok(newer) = rx.try_recv() {
                    msg = newer;
                }
                if inputs.send((i, cabinet.exchange(msg.at, &msg.frame))).is_err() {
                    return;
                }
            }
        }
    })
}

impl Harness {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let _ = self.commands.send(EngineCommand::Shutdown);
        let threads = std::mem::take(&mut self.threads);
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await
        .expect("join threads");
    }
}
