//! gRPC isolation benchmark: does watching the daemon slow its control loop?
//!
//! Runs the shipped controllers on the real daemon wiring (engine thread on
//! the real clock, simulated cabinets, snapshot board, event hub, gRPC on
//! loopback) at a 10 ms tick, and reports the engine's own tick latency
//! (per intersection tick, from its LatencyReader) with no watcher and with
//! 100 concurrent watchers (50 WatchState at 10 Hz + 50 StreamEvents), and
//! under a flood of control calls with a wrong token (as fast as 16 client
//! tasks on 4 connections can make them), and with 10 Prometheus scrapers
//! reading `/metrics` every second, each phase on a fresh daemon (the
//! metrics listener is on in every phase, idle included). Then GetState
//! requests per second from concurrent clients.
//!
//! Run: `cargo bench --bench grpc` (about 3 min). Budget: tick p99.9
//! unchanged with 100 watchers, under the flood and with the scrapers
//! (none may slow the control loop). Everything shares the project's two cores: engine,
//! server, and the clients of this benchmark.

#[path = "../tests/grpc/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use greenwave::api::pb;
use greenwave::api::pb::control_client::ControlClient;
use greenwave::api::pb::watch_client::WatchClient;
use greenwave::config::{GrpcConfig, HttpConfig};
use greenwave::engine::latency::Percentiles;
use tonic::transport::Channel;

const PHASE: Duration = Duration::from_secs(30);
const WATCHERS: usize = 100;
const CONNECTIONS: usize = 10;
const GETSTATE_CLIENTS: usize = 8;
const GETSTATE_FOR: Duration = Duration::from_secs(10);
const FLOOD_TASKS: usize = 16;
const FLOOD_CONNECTIONS: usize = 4;
const SCRAPERS: usize = 10;
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// What runs against the daemon while its tick latency is measured.
#[derive(Clone, Copy, Debug)]
enum Load {
    Idle,
    /// Half WatchState at 10 Hz, half StreamEvents.
    Watchers(usize),
    /// SetMode calls with a wrong token, back to back.
    WrongTokenFlood,
    /// Clients each scraping `/metrics` every [`SCRAPE_EVERY`].
    Scrapers(usize),
}

fn controllers() -> Vec<(String, String)> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/controllers"));
    greenwave::config::controller_files(dir)
        .expect("controllers/")
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).expect("read controller")))
        .collect()
}

async fn daemon() -> harness::Harness {
    let grpc = GrpcConfig { listen: "127.0.0.1:0".parse().expect("addr"), ..GrpcConfig::default() };
    let grpc = GrpcConfig {
        limits: greenwave::config::grpc::GrpcLimits {
            max_streams: 1024,
            // Every watcher here is anonymous: one principal.
            max_streams_per_token: 1024,
            requests_per_s: 1_000_000,
            burst: 1_000_000,
            ..grpc.limits
        },
        ..grpc
    };
    harness::start(harness::Options {
        grpc,
        controllers: controllers(),
        speed: None,
        event_history: 100_000,
        tick_ms: 10,
        config_file: None,
        dir: None,
        http: Some(HttpConfig { enabled: true, listen: "127.0.0.1:0".parse().expect("addr"), ..HttpConfig::default() }),
    })
    .await
}

async fn channels(h: &harness::Harness, n: usize) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Channel::from_shared(h.url()).expect("url").connect().await.expect("connect"));
    }
    out
}

/// Tick latency over one phase on a fresh daemon under `load`, and the
/// messages received (watchers) or calls answered (flood).
async fn tick_latency(load: Load) -> (Percentiles, u64) {
    let h = daemon().await;
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let watchers = match load {
        Load::Watchers(n) => n,
        Load::Idle | Load::WrongTokenFlood | Load::Scrapers(_) => 0,
    };
    if let Load::Scrapers(n) = load {
        let addr = h.http_addr.expect("metrics on");
        for _ in 0..n {
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(SCRAPE_EVERY);
                loop {
                    every.tick().await;
                    let text = scrape(addr).await;
                    assert!(text.ends_with("# EOF\n"), "a whole scrape");
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    if let Load::WrongTokenFlood = load {
        let chans = channels(&h, FLOOD_CONNECTIONS).await;
        for k in 0..FLOOD_TASKS {
            let mut c = ControlClient::new(chans[k % FLOOD_CONNECTIONS].clone());
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let mut req = tonic::Request::new(pb::SetModeRequest {
                        intersection_id: "broadway-and-5th".into(),
                        mode: pb::Mode::Flash as i32,
                    });
                    req.metadata_mut().insert("authorization", "Bearer not-a-token".parse().expect("ascii"));
                    let refused = c.set_mode(req).await.is_err();
                    assert!(refused, "a wrong token changed the mode");
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    let chans = channels(&h, CONNECTIONS).await;
    for k in 0..watchers {
        let mut w = WatchClient::new(chans[k % CONNECTIONS].clone());
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            if k % 2 == 0 {
                let req = pb::WatchStateRequest { intersection_ids: vec![], min_interval_ms: 100 };
                let mut s = w.watch_state(req).await.expect("watch").into_inner();
                while let Ok(Some(_)) = s.message().await {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                let req = pb::StreamEventsRequest { from_seq: 0, intersection_ids: vec![], exclude_audit: false };
                let mut s = w.stream_events(req).await.expect("events").into_inner();
                while let Ok(Some(_)) = s.message().await {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Reading hands the engine its spare histograms back, so it keeps
    // publishing (it never allocates to publish).
    let started = Instant::now();
    while started.elapsed() < PHASE {
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.latency.latest();
    }
    let (tick, _) = h.latency.latest();
    for t in &tasks {
        t.abort();
    }
    h.stop().await;
    (tick, received.load(Ordering::Relaxed))
}

/// `/metrics` over a fresh HTTP/1.1 connection, as a scraper reads it.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.expect("read");
    text
}

async fn getstate_rps() -> (f64, u64) {
    let h = daemon().await;
    let chans = channels(&h, GETSTATE_CLIENTS).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ch in chans {
        let (count, errors) = (count.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = WatchClient::new(ch);
            while started.elapsed() < GETSTATE_FOR {
                let req = pb::GetStateRequest { intersection_id: "broadway-and-5th".into() };
                match w.get_state(req).await {
                    Ok(_) => count.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let rps = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    h.stop().await;
    (rps, errors.load(Ordering::Relaxed))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("gRPC benchmark: run with `cargo bench --bench grpc`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        println!("shipped controllers, 10 ms tick, {} s per phase, fresh daemon per phase\n", PHASE.as_secs());
        let (idle, _) = tick_latency(Load::Idle).await;
        let (watched, messages) = tick_latency(Load::Watchers(WATCHERS)).await;
        let (flooded, refused) = tick_latency(Load::WrongTokenFlood).await;
        let (scraped, scrapes) = tick_latency(Load::Scrapers(SCRAPERS)).await;
        let (rps, errors) = getstate_rps().await;
        println!(
            "{:<44} {:>8} {:>9} {:>9} {:>10} {:>10}",
            "tick latency (per intersection)", "ticks", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
        );
        for (name, p) in [
            ("0 watchers", idle),
            (&*format!("{WATCHERS} watchers (50 state + 50 event streams)"), watched),
            ("wrong-token flood", flooded),
            (&*format!("{SCRAPERS} clients scraping /metrics every second"), scraped),
        ] {
            println!(
                "{name:<44} {:>8} {:>9.1} {:>9.1} {:>10.1} {:>10.1}",
                p.count, p.p50_us, p.p99_us, p.p999_us, p.max_us
            );
        }
        println!("\nwatchers received {messages} messages in {} s", PHASE.as_secs());
        println!(
            "flood: {refused} wrong-token calls refused in {} s ({:.0}/s)",
            PHASE.as_secs(),
            refused as f64 / PHASE.as_secs_f64()
        );
        println!("metrics: {scrapes} whole scrapes in {} s", PHASE.as_secs());
        println!("GetState: {rps:.0} requests/s from {GETSTATE_CLIENTS} concurrent clients ({errors} errors)");
    });
}
