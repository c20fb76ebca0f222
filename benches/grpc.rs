//! gRPC isolation benchmark: does watching the daemon slow its control loop?
//!
//! Runs the shipped controllers on the real daemon wiring (engine thread on
//! the real clock, simulated cabinets, snapshot board, event hub, gRPC on
//! loopback) at a 10 ms tick, and reports the engine's own tick latency
//! (per intersection tick, from its LatencyReader) with no watcher and with
//! 100 concurrent watchers (50 WatchState at 10 Hz + 50 StreamEvents), and
//! under a flood of control calls with a wrong token (as fast as 16 client
//! tasks on 4 connections can make them), and with 10 Prometheus scrapers
//! reading `/metrics` every second, and with 10 web-view clients (each,
//! every second, scrapes `/metrics` and loads the web view's JSON:
//! `/api/intersections`, `/api/state/{id}`, `/api/events/{id}`; and each
//! holds one `/live/{id}` server-sent-event stream open), each phase on a
//! fresh daemon (the metrics listener is on in every phase, idle
//! included), and with an NTCIP 1202 manager per intersection polling the
//! SNMP agent at 10 Hz (phase status groups and pattern / unit status, one
//! v2c GET of six objects each poll; the agent is on in every phase).
//! Then GetState requests per second from concurrent clients.
//!
//! Also with a GB/T 20999 centre polling the adapter at 10 Hz.
//!
//! Run: `cargo bench --bench grpc` (about 4 min), or
//! `cargo bench --bench grpc -- web` (or `-- ntcip`, `-- gbt20999`) for the
//! idle, web-view (or NTCIP, GB/T 20999) and idle-again phases alone (about
//! 1 min). Budget: tick p99.9 unchanged with 100 watchers,
//! under the flood, with the scrapers and with the web-view clients (none
//! may slow the control loop). Everything shares the project's two cores: engine,
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
use greenwave::config::gbt20999::Gbt20999Config;
use greenwave::config::ntcip::{Community, NtcipConfig};
use greenwave::config::{GrpcConfig, HttpConfig, Role};
use greenwave::engine::latency::Percentiles;
use greenwave::standards::gbt20999::{Address, DataValue, Deframer, Escaping, Frame, FrameType, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
/// How often each NTCIP manager polls (a centre's fast status poll).
const NTCIP_POLL_EVERY: Duration = Duration::from_millis(100);
/// Per poll: phaseStatusGroupReds/Yellows/Greens/VehCalls.1,
/// coordPatternStatus, unitControlStatus (docs/standards.md, "NTCIP 1202").
const NTCIP_POLLED: [&[u32]; 6] =
    [&[1, 4, 1, 2, 1], &[1, 4, 1, 3, 1], &[1, 4, 1, 4, 1], &[1, 4, 1, 8, 1], &[4, 10, 0], &[3, 5, 0]];

/// What runs against the daemon while its tick latency is measured.
#[derive(Clone, Copy, Debug)]
enum Load {
    Idle,
    /// Half WatchState at 10 Hz, half StreamEvents.
    Watchers(usize),
    /// SetMode calls with a wrong token, back to back.
    WrongTokenFlood,
    /// GB/T 20999 centres each querying run status, lamp groups and
    /// traffic data at 10 Hz, with active reports every second.
    Gbt20999Centres(usize),
    /// Clients each scraping `/metrics` every [`SCRAPE_EVERY`].
    Scrapers(usize),
    /// One NTCIP manager per intersection, polling every [`NTCIP_POLL_EVERY`].
    NtcipPollers,
    /// Clients each, every [`SCRAPE_EVERY`], scraping `/metrics` and
    /// loading the web view's JSON, each holding one `/live/{id}` open.
    WebViewers(usize),
}

/// What the web-view clients were answered.
#[derive(Debug, Default)]
struct WebCounts {
    scrapes: AtomicU64,
    /// JSON answers 200.
    json_ok: AtomicU64,
    /// JSON answers 503 (the event log's bounded concurrent reads).
    json_busy: AtomicU64,
    json_other: AtomicU64,
    /// `state` events on the live streams.
    live_states: AtomicU64,
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
    daemon_with(None).await
}

async fn daemon_with(gbt20999: Option<Gbt20999Config>) -> harness::Harness {
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
        ntcip: Some(NtcipConfig {
            enabled: true,
            listen: "127.0.0.1:0".parse().expect("addr"),
            communities: intersection_ids()
                .into_iter()
                .map(|id| Community { community: community(&id), intersection: id, role: Role::Viewer })
                .collect(),
            ..NtcipConfig::default()
        }),
        gbt20999,
    })
    .await
}

/// The v2c community of intersection `id` here.
fn community(id: &str) -> String {
    format!("bench-{id}")
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
    tick_latency_with(load, Arc::default()).await
}

async fn tick_latency_with(load: Load, web: Arc<WebCounts>) -> (Percentiles, u64) {
    let gbt20999 = matches!(load, Load::Gbt20999Centres(_)).then(|| Gbt20999Config {
        enabled: true,
        listen: "127.0.0.1:0".parse().expect("addr"),
        report_interval: Some(Duration::from_secs(1)),
        ..Gbt20999Config::default()
    });
    let h = daemon_with(gbt20999).await;
    let received = Arc::new(AtomicU64::new(0));
    let query_errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let watchers = match load {
        Load::Watchers(n) => n,
        Load::Idle
        | Load::WrongTokenFlood
        | Load::Scrapers(_)
        | Load::WebViewers(_)
        | Load::NtcipPollers
        | Load::Gbt20999Centres(_) => 0,
    };
    if let Load::Gbt20999Centres(n) = load {
        let addr = h.gbt20999_addr.expect("adapter on");
        for _ in 0..n {
            let (received, errors) = (received.clone(), query_errors.clone());
            tasks.push(tokio::spawn(async move { poll_gbt20999(addr, &received, &errors).await }));
        }
    }
    if let Load::WebViewers(n) = load {
        let addr = h.http_addr.expect("metrics on");
        let ids = intersection_ids();
        for k in 0..n {
            let id = ids[k % ids.len()].clone();
            let live = web.clone();
            let live_id = id.clone();
            tasks.push(tokio::spawn(async move { hold_live(addr, &live_id, &live).await }));
            let web = web.clone();
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(SCRAPE_EVERY);
                loop {
                    every.tick().await;
                    let text = scrape(addr).await;
                    assert!(text.ends_with("# EOF\n"), "a whole scrape");
                    web.scrapes.fetch_add(1, Ordering::Relaxed);
                    for path in
                        ["/api/intersections".to_owned(), format!("/api/state/{id}"), format!("/api/events/{id}")]
                    {
                        let answer = get(addr, &path).await;
                        let counter = match answer.split(' ').nth(1) {
                            Some("200") => &web.json_ok,
                            Some("503") => &web.json_busy,
                            _ => &web.json_other,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
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
    if let Load::NtcipPollers = load {
        let agent = h.ntcip_addr.expect("agent on");
        for id in intersection_ids() {
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                let auth = async_snmp::Auth::v2c(community(&id));
                let client = async_snmp::Client::builder(agent.to_string(), auth).connect().await.expect("client");
                let asc = [1, 3, 6, 1, 4, 1, 1206, 4, 2, 1];
                let oids: Vec<async_snmp::Oid> =
                    NTCIP_POLLED.iter().map(|o| async_snmp::Oid::from_slice(&[&asc[..], o].concat())).collect();
                let mut every = tokio::time::interval(NTCIP_POLL_EVERY);
                loop {
                    every.tick().await;
                    let answer = client.get_many(&oids).await.expect("an answer");
                    assert_eq!(answer.varbinds.len(), oids.len(), "every object answered");
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
    let errors = query_errors.load(Ordering::Relaxed);
    if errors > 0 {
        println!("GB/T 20999: {errors} queries answered with a query error");
    }
    (tick, received.load(Ordering::Relaxed))
}

/// A centre polling intersection 1 at 10 Hz (run status, lamp groups,
/// traffic data in one query); counts the replies.
async fn poll_gbt20999(addr: std::net::SocketAddr, replies: &AtomicU64, errors: &AtomicU64) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let mut deframer = Deframer::new();
    let mut buf = [0u8; 16384];
    for sequence in (0..=u8::MAX).cycle() {
        every.tick().await;
        let values = [(0x0D, 2), (0x03, 3), (0x0E, 2)]
            .iter()
            .enumerate()
            .map(|(k, &(class, object))| DataValue {
                index: k as u8 + 1,
                address: Address::new(class, object, 0, 0),
                value: Vec::new(),
            })
            .collect();
        let header =
            Header { version: 0x0100, centre: 1, controller: 1, intersection: 1, sequence, kind: FrameType::Query };
        let wire = Frame { header, values }.encode(Escaping::Escaped).expect("a small query");
        stream.write_all(&wire).await.expect("send");
        'reply: loop {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "the adapter closed the connection");
            for &b in &buf[..n] {
                if let Some(frame) = deframer.push(b) {
                    let frame = frame.expect("a valid frame");
                    // A query error is an answer too (and a wrong query):
                    // counted apart, so the phase says what it measured.
                    let answer = match frame.header.kind {
                        FrameType::QueryReply => replies,
                        FrameType::QueryError => errors,
                        _ => continue,
                    };
                    if frame.header.sequence == sequence {
                        answer.fetch_add(1, Ordering::Relaxed);
                        break 'reply;
                    }
                }
            }
        }
    }
}

/// `/metrics` over a fresh HTTP/1.1 connection, as a scraper reads it.
async fn scrape(addr: std::net::SocketAddr) -> String {
    get(addr, "/metrics").await
}

/// The whole answer (status line, headers, body) to a GET over a fresh
/// HTTP/1.1 connection, as a browser's fetch without keep-alive reads it.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut bytes = Vec::new();
    tcp.read_to_end(&mut bytes).await.expect("read");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Holds `/live/{id}` open, reading it as it comes, and counts its
/// `state` events (until the phase ends and the task is aborted).
async fn hold_live(addr: std::net::SocketAddr, id: &str, web: &WebCounts) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /live/{id} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("send");
    const MARK: &[u8] = b"event: state";
    let mut buf = vec![0u8; 64 * 1024];
    // A marker may straddle two reads: keep the last bytes of each.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(n > 0, "the live stream ended");
        tail.extend_from_slice(&buf[..n]);
        let mut last_end = 0;
        for at in 0..tail.len().saturating_sub(MARK.len() - 1) {
            if at >= last_end && tail[at..].starts_with(MARK) {
                web.live_states.fetch_add(1, Ordering::Relaxed);
                last_end = at + MARK.len();
            }
        }
        let keep_from = last_end.max(tail.len().saturating_sub(MARK.len() - 1));
        tail.drain(..keep_from);
    }
}

/// The shipped intersections' ids (the controller files' stems).
fn intersection_ids() -> Vec<String> {
    controllers()
        .iter()
        .map(|(path, _)| Path::new(path).file_stem().expect("a file name").to_string_lossy().into_owned())
        .collect()
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
    // `cargo bench --bench grpc -- web` (or `-- ntcip`, `-- gbt20999`): the
    // idle phases and that front end's phase only.
    let only = |name: &str| std::env::args().any(|a| a == name);
    let (web_only, ntcip_only, gbt_only) = (only("web"), only("ntcip"), only("gbt20999"));
    let all = !web_only && !ntcip_only && !gbt_only;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        println!("shipped controllers, 10 ms tick, {} s per phase, fresh daemon per phase\n", PHASE.as_secs());
        let web = Arc::new(WebCounts::default());
        let (idle, _) = tick_latency(Load::Idle).await;
        let mut rows = vec![("0 watchers".to_owned(), idle)];
        let mut lines = Vec::new();
        if all || gbt_only {
            let (polled, replies) = tick_latency(Load::Gbt20999Centres(1)).await;
            // Without replies the row would be an idle daemon under another name.
            assert!(replies > 0, "the GB/T 20999 centre got no query reply: the phase measured nothing");
            rows.push(("GB/T 20999 centre polling at 10 Hz (+ 1 s reports)".to_owned(), polled));
            lines.push(format!("GB/T 20999: {replies} query replies in {} s", PHASE.as_secs()));
        }
        if all {
            let (watched, messages) = tick_latency(Load::Watchers(WATCHERS)).await;
            let (flooded, refused) = tick_latency(Load::WrongTokenFlood).await;
            let (scraped, scrapes) = tick_latency(Load::Scrapers(SCRAPERS)).await;
            rows.push((format!("{WATCHERS} watchers (50 state + 50 event streams)"), watched));
            rows.push(("wrong-token flood".to_owned(), flooded));
            rows.push((format!("{SCRAPERS} clients scraping /metrics every second"), scraped));
            lines.push(format!("watchers received {messages} messages in {} s", PHASE.as_secs()));
            lines.push(format!(
                "flood: {refused} wrong-token calls refused in {} s ({:.0}/s)",
                PHASE.as_secs(),
                refused as f64 / PHASE.as_secs_f64()
            ));
            lines.push(format!("metrics: {scrapes} whole scrapes in {} s", PHASE.as_secs()));
        }
        if all || ntcip_only {
            let (polled, polls) = tick_latency(Load::NtcipPollers).await;
            let managers = intersection_ids().len();
            rows.push((format!("{managers} NTCIP managers polling at 10 Hz"), polled));
            lines.push(format!(
                "NTCIP: {polls} polls of {} objects answered in {} s",
                NTCIP_POLLED.len(),
                PHASE.as_secs()
            ));
        }
        if all || web_only {
            let (viewed, _) = tick_latency_with(Load::WebViewers(SCRAPERS), web.clone()).await;
            rows.push((format!("{SCRAPERS} web-view clients (metrics + JSON 1/s, live)"), viewed));
            let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
            lines.push(format!(
                "web view: {} whole scrapes, JSON {} answered 200 / {} 503 (event log reads busy) / {} other, \
             {} live states on {SCRAPERS} streams in {} s",
                n(&web.scrapes),
                n(&web.json_ok),
                n(&web.json_busy),
                n(&web.json_other),
                n(&web.live_states),
                PHASE.as_secs()
            ));
        }
        // Idle again, last: the first phase of a process has read worst in
        // every run so far, so the order shows next to the figures.
        let (idle_again, _) = tick_latency(Load::Idle).await;
        rows.push(("0 watchers, again (last phase)".to_owned(), idle_again));
        if all {
            let (rps, errors) = getstate_rps().await;
            lines.push(format!(
                "GetState: {rps:.0} requests/s from {GETSTATE_CLIENTS} concurrent clients ({errors} errors)"
            ));
        }
        println!(
            "{:<48} {:>8} {:>9} {:>9} {:>10} {:>10}",
            "tick latency (per intersection)", "ticks", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
        );
        for (name, p) in rows {
            println!(
                "{name:<48} {:>8} {:>9.1} {:>9.1} {:>10.1} {:>10.1}",
                p.count, p.p50_us, p.p99_us, p.p999_us, p.max_us
            );
        }
        println!();
        for line in lines {
            println!("{line}");
        }
    });
}
