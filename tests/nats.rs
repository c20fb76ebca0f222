//! The city feed end to end against a real broker (issue 17, item 4):
//! Debian's `nats-server` with JetStream on a free port and a temporary
//! store, the daemon in-process with `[nats]`, the broker killed for a few
//! seconds and started again on the same store, then every event in the
//! JetStream stream counted against the daemon's own Indiana event log of
//! the same run: the same events in the same order per intersection, no
//! duplicates, no gaps. An independent subscriber (`tools/interop/
//! nats_state.py`, nats-py) checks the state subject while the broker is up.
//!
//! Without `nats-server` (or without nats-py for the state check) the test
//! prints a notice and passes, unless `GW_TEST_REQUIRE_INTEROP=1`
//! (scripts/test.sh), when it fails.

use std::collections::{BTreeMap, HashSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use greenwave::config::{ClockSource, DaemonConfig, NatsConfig};
use greenwave::daemon::nats::{NatsStats, is_alarm_code};
use greenwave::daemon::{Controllers, Daemon, Options, Stopped};

use crate::grpc::interop::peer_python;
use crate::grpc::test_controller;

fn required() -> bool {
    std::env::var("GW_TEST_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// Debian's `nats-server`, on PATH or where the package puts it.
fn nats_server() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server"), PathBuf::from("/usr/bin/nats-server")])
        .find(|p| p.is_file());
    if on_path.is_none() {
        assert!(
            !required(),
            "GW_TEST_REQUIRE_INTEROP=1 but nats-server is not installed (scripts/test.sh installs it)"
        );
        eprintln!("notice: nats-server not installed (apt-get install nats-server); NATS test skipped");
    }
    on_path
}

/// A `nats-server -js` child on `port` with its store in `store` (killed
/// when dropped).
struct Broker {
    child: Child,
}

impl Broker {
    fn start(bin: &Path, port: u16, store: &Path) -> Broker {
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port} within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child }
    }

    /// SIGKILL: no goodbye to the clients, as a crash.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where one test's broker and daemon live: a temporary directory with
/// the broker's store and the daemon's event log, and a free port.
struct Site {
    _tmp: tempfile::TempDir,
    store: PathBuf,
    logs: PathBuf,
    port: u16,
    url: String,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (store, logs) = (tmp.path().join("jetstream"), tmp.path().join("log"));
        std::fs::create_dir_all(&logs).expect("mkdir");
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        Site { _tmp: tmp, store, logs, port, url: format!("nats://127.0.0.1:{port}") }
    }
}

/// Waits (bounded) until `ok`, polling.
fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One event as the stream holds it.
#[derive(Debug)]
struct Published {
    subject: String,
    msg_id: String,
    intersection: String,
    seq: u64,
    at_unix_ms: u64,
    code: u16,
    param: u16,
}

/// Every message in `stream`, in stream order, read with async-nats:
/// `(subject, message id, JSON body)`.
async fn read_raw(url: &str, stream: &str) -> Vec<(String, String, serde_json::Value)> {
    let client = async_nats::connect(url).await.expect("connect to the broker");
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(stream).await.expect("the daemon created the stream");
    let info = s.info().await.expect("stream info").clone();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let m = s.get_raw_message(seq).await.expect("message");
        let body: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON body");
        let msg_id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).expect("a message id");
        out.push((m.subject.to_string(), msg_id, body));
    }
    out
}

/// Every event and alarm in `stream`, in stream order (measures left out).
async fn read_stream(url: &str, stream: &str) -> Vec<Published> {
    let mut out = Vec::new();
    for (subject, msg_id, body) in read_raw(url, stream).await {
        if subject.ends_with(".measures") {
            continue;
        }
        out.push(Published {
            subject,
            msg_id,
            intersection: body["intersection"].as_str().expect("intersection").to_owned(),
            seq: body["seq"].as_u64().expect("seq"),
            at_unix_ms: body["at_unix_ms"].as_u64().expect("at_unix_ms"),
            code: u16::try_from(body["code"].as_u64().expect("code")).expect("u16"),
            param: u16::try_from(body["param"].as_u64().expect("param")).expect("u16"),
        });
    }
    out
}

/// Every event line of the daemon's event log, in file order.
fn read_log(dir: &Path) -> Vec<(String, u64, u16, u16)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| greenwave::telemetry::read_event_log(f).expect("event log"))
        .map(|(id, at, code, param)| (id, at.as_millis(), code, param))
        .collect()
}

/// Two intersections' controller files; the second's id has a '.', which
/// a subject token cannot hold.
fn controllers() -> [(String, String); 2] {
    let (a_name, a_text) = test_controller();
    let a_text = a_text.replace("flash_s = 6.0", "flash_s = 2.0").replace("all_red_s = 4.0", "all_red_s = 2.0");
    let b_text = a_text.replace("id = \"elm-and-oak\"", "id = \"oak.and-pine\"");
    [(a_name, a_text), ("oak.and-pine.toml".into(), b_text)]
}

/// The daemon in-process with `[nats]` (`nats` with the test's url and
/// rates), two intersections, the event log in `logs`.
struct Running {
    stats: Arc<NatsStats>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Stopped>,
}

impl Running {
    fn start(url: &str, logs: &Path, nats: NatsConfig, speed: f64) -> Running {
        let [(a_name, a_text), b] = controllers();
        // A lockstep simulation at `speed` times real time (10: ten times
        // the events per second of broker outage), stamped with simulated
        // control time from 2026-01-05 00:00 UTC.
        let mut config = DaemonConfig {
            tick_ms: 100,
            view: false,
            clock: ClockSource::Cabinet,
            lockstep_speed: Some(speed),
            time_zone: chrono_tz::UTC,
            nats: NatsConfig {
                enabled: true,
                url: url.to_owned(),
                state_interval: Duration::from_millis(200),
                flush_timeout: Duration::from_secs(10),
                ..nats
            },
            ..DaemonConfig::default()
        };
        config.grpc.enabled = false;
        config.event_log.dir = logs.to_path_buf();
        let controllers = Controllers::Texts(vec![(a_name, a_text), b]);
        Running::spawn(Daemon::start(Options::new(config, controllers)).expect("daemon starts"))
    }

    /// `daemon` (with `[nats]` on) running on a thread of its own until stopped.
    fn spawn(daemon: Daemon) -> Running {
        let stats = daemon.nats_stats().expect("[nats] on");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            daemon
                .run_until(async {
                    let _ = stopped.await;
                })
                .expect("daemon stops")
        });
        Running { stats, stop, thread }
    }

    /// As SIGTERM: through flash, the NATS flush bounded; it must stop clean.
    fn stop(self) {
        let _ = self.stop.send(());
        let stopped = self.thread.join().expect("daemon thread");
        assert!(stopped.is_clean(), "{stopped:?}");
    }
}

#[test]
fn a_broker_restart_loses_nothing_and_doubles_nothing() {
    let Some(bin) = nats_server() else { return };
    let python = peer_python("import nats", "nats-py");
    let Site { _tmp, store, logs, port, url } = Site::new();
    let broker = Broker::start(&bin, port, &store);

    let running = Running::start(&url, &logs, NatsConfig::default(), 10.0);
    let stats = running.stats.clone();

    wait_until("events acked by the broker", Duration::from_secs(20), || stats.events_acked.load(Relaxed) > 0);
    // The independent subscriber, while the broker is up.
    if let Some(python) = python {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/interop/nats_state.py");
        let out = Command::new(python)
            .arg(script)
            .args(["--url", &url, "--seconds", "2"])
            .output()
            .expect("run nats_state.py");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "nats_state.py: {text}\n{}", String::from_utf8_lossy(&out.stderr));
        let summary: serde_json::Value = serde_json::from_str(text.trim()).expect("a JSON summary");
        for (subject, id) in
            [("greenwave.elm-and-oak.state", "elm-and-oak"), ("greenwave.oak_and-pine.state", "oak.and-pine")]
        {
            let n = summary["per_subject"][subject].as_u64().unwrap_or(0);
            // 2 s at one every 200 ms: about 10.
            assert!(n >= 5, "{subject}: {n} state messages in 2 s; {summary}");
            assert_eq!(summary["intersections"][subject], id, "{summary}");
        }
    }

    // The broker dies; events keep coming and wait in the queue.
    broker.kill();
    wait_until("the client sees the broker gone", Duration::from_secs(15), || !stats.connected.load(Relaxed));
    let acked_before = stats.events_acked.load(Relaxed);
    std::thread::sleep(Duration::from_secs(4));
    let queued_in_outage = stats.queued.load(Relaxed);
    assert!(queued_in_outage > 0, "events were queued while the broker was away");
    assert_eq!(stats.events_acked.load(Relaxed), acked_before, "nothing is acked without a broker");

    // Back on the same store: the queue drains into the same stream.
    let broker = Broker::start(&bin, port, &store);
    wait_until("the queue drained after the restart", Duration::from_secs(30), || {
        stats.connected.load(Relaxed)
            && stats.queued.load(Relaxed) == 0
            && stats.events_acked.load(Relaxed) > acked_before
    });
    std::thread::sleep(Duration::from_secs(1));
    running.stop();
    assert_eq!(stats.left_at_shutdown.load(Relaxed), 0, "the shutdown flush delivered everything");
    assert_eq!(stats.dropped.load(Relaxed), 0, "nothing dropped within the bound");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let published = runtime.block_on(read_stream(&url, "GREENWAVE_EVENTS"));
    drop(broker);
    let logged = read_log(&logs);
    assert!(logged.len() > 200, "a simulated minute or two of two intersections: {} events", logged.len());

    // Every message id once: no retry was stored twice.
    let ids: HashSet<&str> = published.iter().map(|p| p.msg_id.as_str()).collect();
    assert_eq!(ids.len(), published.len(), "duplicate message ids in the stream");

    let by_intersection = |subject_kind: &str, alarms_only: bool| {
        let mut stream: BTreeMap<String, Vec<(u64, u64, u16, u16)>> = BTreeMap::new();
        for p in published.iter().filter(|p| p.subject.ends_with(subject_kind)) {
            stream.entry(p.intersection.clone()).or_default().push((p.seq, p.at_unix_ms, p.code, p.param));
        }
        let mut log: BTreeMap<String, Vec<(u64, u16, u16)>> = BTreeMap::new();
        for (id, at, code, param) in &logged {
            if !alarms_only || is_alarm_code(*code) {
                log.entry(id.clone()).or_default().push((*at, *code, *param));
            }
        }
        (stream, log)
    };
    let (stream, log) = by_intersection(".events", false);
    assert_eq!(stream.keys().collect::<Vec<_>>(), ["elm-and-oak", "oak.and-pine"]);
    assert_eq!(stream.keys().collect::<Vec<_>>(), log.keys().collect::<Vec<_>>());
    let mut total = 0;
    for (id, published) in &stream {
        let written = &log[id];
        assert_eq!(published.len(), written.len(), "{id}: events in the stream against the event log");
        let seqs: Vec<u64> = published.iter().map(|p| p.0).collect();
        assert_eq!(seqs, (1..=published.len() as u64).collect::<Vec<_>>(), "{id}: numbered 1.. without gaps");
        for (k, ((_, at, code, param), (log_at, log_code, log_param))) in published.iter().zip(written).enumerate() {
            assert_eq!((code, param), (log_code, log_param), "{id}: event {k} differs");
            // The log writes tenths of a second.
            assert!(at.abs_diff(*log_at) < 100, "{id}: event {k} at {at} ms, logged at {log_at} ms");
        }
        total += published.len();
    }
    let (alarms, logged_alarms) = by_intersection(".alarms", true);
    for (id, written) in &logged_alarms {
        let published = alarms.get(id).map_or(0, Vec::len);
        assert_eq!(published, written.len(), "{id}: alarms in the stream against the event log");
    }
    assert!(!logged_alarms.is_empty(), "start-up flash is on the alarm subject");
    eprintln!(
        "NATS broker restart: {total} events in the log, {total} in the stream ({} queued during the outage, \
         {} duplicate acks)",
        queued_in_outage,
        stats.duplicates.load(Relaxed)
    );
}

/// The broker is away from the start and the queue holds 40 messages: the
/// oldest are dropped and every one is counted, so what reaches the stream
/// plus what was dropped is exactly what the event log wrote (each alarm
/// counted twice, as it is published twice), and per intersection the
/// stream holds the newest events without a gap.
#[test]
fn a_full_queue_drops_the_oldest_and_counts_every_one() {
    let Some(bin) = nats_server() else { return };
    let Site { _tmp, store, logs, port, url } = Site::new();
    let running = Running::start(&url, &logs, NatsConfig { buffer_events: 40, ..NatsConfig::default() }, 10.0);
    let stats = running.stats.clone();
    wait_until("the queue overflowing", Duration::from_secs(30), || stats.dropped.load(Relaxed) >= 20);
    assert_eq!(stats.queued.load(Relaxed), 40, "the queue stays at its bound");
    assert_eq!(stats.events_acked.load(Relaxed), 0);

    let broker = Broker::start(&bin, port, &store);
    wait_until("the queue drained", Duration::from_secs(30), || {
        stats.connected.load(Relaxed) && stats.queued.load(Relaxed) == 0
    });
    running.stop();
    assert_eq!(stats.left_at_shutdown.load(Relaxed), 0);
    let dropped = stats.dropped.load(Relaxed);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let published = runtime.block_on(read_stream(&url, "GREENWAVE_EVENTS"));
    drop(broker);
    let logged = read_log(&logs);
    let logged_messages = logged.len() + logged.iter().filter(|(_, _, code, _)| is_alarm_code(*code)).count();
    assert_eq!(published.len() as u64 + dropped, logged_messages as u64, "delivered + dropped = written");

    let mut missing_events = 0;
    for id in ["elm-and-oak", "oak.and-pine"] {
        let seqs: Vec<u64> = published
            .iter()
            .filter(|p| p.intersection == id && p.subject.ends_with(".events"))
            .map(|p| p.seq)
            .collect();
        let written = logged.iter().filter(|l| l.0 == id).count() as u64;
        let first = *seqs.first().expect("events delivered");
        assert_eq!(seqs, (first..=written).collect::<Vec<_>>(), "{id}: the newest events, without a gap");
        missing_events += first - 1;
    }
    assert!(missing_events > 0 && missing_events <= dropped, "{missing_events} events missing, {dropped} dropped");
    eprintln!(
        "NATS queue overflow: {} written, {} delivered, {dropped} dropped (of them {missing_events} events)",
        logged_messages,
        published.len()
    );
}

/// Measures (issue 17, item 4): the lockstep simulation starts at 00:00
/// UTC and runs as fast as it can (up to 300 times real time) past 00:15;
/// each intersection's 00:00 bin then arrives on its measures subject in
/// the stream, once, with its bin in the message id, and its per-phase and
/// per-lane volumes, greens and push-button actuations are those
/// `greenwave measures` (`measure_log`) computes from the daemon's own
/// event log for that bin. The stream is made beforehand without the
/// measures subject, as an earlier version made it: the daemon adds it.
#[test]
fn a_closed_bin_of_measures_reaches_the_stream_as_the_log_measures_it() {
    let Some(bin) = nats_server() else { return };
    let Site { _tmp, store, logs, port, url } = Site::new();
    let broker = Broker::start(&bin, port, &store);
    // The stream as an earlier version made it, without the measures
    // subject: the daemon adds it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&url).await.expect("connect"));
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "GREENWAVE_EVENTS".into(),
            subjects: vec!["greenwave.*.events".into(), "greenwave.*.alarms".into()],
            ..Default::default()
        })
        .await
        .expect("create the stream");
    });
    let running = Running::start(&url, &logs, NatsConfig::default(), 300.0);
    let stats = running.stats.clone();
    wait_until("both intersections' first bin acked", Duration::from_secs(300), || {
        stats.measures_acked.load(Relaxed) >= 2
    });
    running.stop();
    assert_eq!(stats.dropped.load(Relaxed), 0);
    let raw = runtime.block_on(read_raw(&url, "GREENWAVE_EVENTS"));
    drop(broker);
    let measures: Vec<&(String, String, serde_json::Value)> =
        raw.iter().filter(|(subject, _, _)| subject.ends_with(".measures")).collect();
    let ids: HashSet<&str> = measures.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), measures.len(), "each bin once");
    let logged = read_log(&logs);
    let epoch = greenwave::replay::REPLAY_EPOCH.as_millis();
    const BIN_MS: u64 = 15 * 60 * 1000;
    let mut volume = 0;
    for ((name, text), subject) in
        controllers().iter().zip(["greenwave.elm-and-oak.measures", "greenwave.oak_and-pine.measures"])
    {
        let spec = greenwave::config::load_intersection_str(name, text).expect("valid").0.spec;
        let id = spec.id.to_string();
        let mine: Vec<&serde_json::Value> =
            measures.iter().filter(|(s, _, _)| s == subject).map(|(_, _, body)| body).collect();
        let first = mine.first().unwrap_or_else(|| panic!("{subject}: no measures message"));
        assert_eq!(first["intersection"], id.as_str());
        assert_eq!(first["bin_start_unix_ms"], epoch, "{subject}: the 00:00 bin first");
        assert_eq!(first["bin_end_unix_ms"], epoch + BIN_MS);
        let run = first["run"].as_u64().expect("run");
        assert!(ids.contains(format!("{id}:{run}:measures:{epoch}").as_str()), "{subject}: message id, {ids:?}");
        // The daemon's own event log of the same run, measured as
        // `greenwave measures` does.
        let events = logged
            .iter()
            .filter(|(i, ..)| *i == id)
            .map(|(_, at, code, param)| (greenwave::core::Instant::from_millis(*at), *code, *param));
        let log = greenwave::api::measures::measure_log(&spec, events);
        for body in &mine {
            let start = body["bin_start_unix_ms"].as_u64().expect("bin start");
            assert_eq!(start % BIN_MS, 0, "{subject}: bins are aligned");
            let bin = log.bins.iter().find(|b| b.start.as_millis() == start).expect("the log has the bin");
            let published: Vec<(u64, u64, u64, u64)> = body["phases"]
                .as_array()
                .expect("phases")
                .iter()
                .map(|p| {
                    let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
                    (n("phase"), n("volume"), n("greens"), n("ped_actuations"))
                })
                .collect();
            let measured: Vec<(u64, u64, u64, u64)> =
                bin.phases.iter().map(|(p, c)| (u64::from(p.number()), c.volume, c.greens, c.ped_actuations)).collect();
            assert_eq!(published, measured, "{subject}: bin {start}: (phase, volume, greens, ped actuations)");
            let lanes: Vec<(u64, u64)> = body["lanes"]
                .as_array()
                .expect("lanes")
                .iter()
                .map(|l| (l["detector"].as_u64().expect("detector"), l["volume"].as_u64().expect("volume")))
                .collect();
            let log_lanes: Vec<(u64, u64)> =
                bin.lanes.iter().map(|l| (u64::from(l.detector.number()), l.volume)).collect();
            assert_eq!(lanes, log_lanes, "{subject}: bin {start}: lane volumes");
            volume += lanes.iter().map(|l| l.1).sum::<u64>();
        }
    }
    assert!(volume > 100, "a quarter hour of simulated traffic: {volume} vehicles");
    eprintln!("NATS measures: {} bins published, {volume} vehicles, equal to the event log's measures", measures.len());
}

/// Broadway & 5th as `id`, schedule-style adaptive all day.
fn schedule_style(id: &str) -> (String, String) {
    let text = include_str!("../controllers/broadway-and-5th.toml")
        .replace("id = \"broadway-and-5th\"", &format!("id = \"{id}\""))
        .replace("[adaptive]\n", "[adaptive]\nstyle = \"schedule\"\n")
        .replace("default_plan = 1", "default_plan = 5")
        .replace("plan = 1 }", "plan = 5 }")
        .replace("plan = 2 }", "plan = 5 }")
        .replace("plan = 3 }", "plan = 5 }");
    (format!("{id}.toml"), text)
}

/// Issue 17, item 3: two daemons, one intersection each, one corridor
/// (`up` → `down`, 20 s apart), each listing the other as `remote`. Each
/// publishes its projected through outflow (phase 2 downstream, phase 6
/// upstream) and receives the other's. With the broker killed nothing
/// arrives, and both keep running; with the broker back, the exchange
/// resumes; with one daemon stopped, the other hears nothing more and
/// stops clean (the planner's drop of stale data is
/// `core::schedule::tests::a_neighbours_platoon_is_planned_for_until_it_is_stale_and_holds_no_green`).
#[test]
fn corridor_neighbours_in_two_daemons_exchange_outflows_over_the_broker() {
    let Some(bin) = nats_server() else { return };
    let site = Site::new();
    let mut broker = Some(Broker::start(&bin, site.port, &site.store));
    let start = |me: &str, other: &str| {
        let file = site.logs.join(format!("{me}.toml"));
        let toml = format!(
            "view = false\n[grpc]\nenabled = false\n[http]\nlisten = \"127.0.0.1:0\"\n[nats]\nurl = \"{}\"\n\
             [[corridor]]\nmembers = [\"up\", \"down\"]\ntravel_s = [20.0]\nremote = [\"{other}\"]\n",
            site.url
        );
        std::fs::write(&file, toml).expect("write greenwave.toml");
        let mut config = DaemonConfig::load(Some(&file)).expect("valid greenwave.toml");
        config.event_log.dir = site.logs.join(me);
        std::fs::create_dir_all(&config.event_log.dir).expect("mkdir");
        let daemon =
            Daemon::start(Options::new(config, Controllers::Texts(vec![schedule_style(me)]))).expect("daemon starts");
        let metrics = daemon.http_addr().expect("[http] on");
        (daemon.neighbour_stats().expect("a remote member"), metrics, Running::spawn(daemon))
    };
    let (up, up_metrics, up_daemon) = start("up", "down");
    let (down, _, down_daemon) = start("down", "up");
    let heard = |s: &greenwave::daemon::neighbours::NeighbourStats| s.received.load(Relaxed);
    wait_until("each daemon hears the other", Duration::from_secs(60), || heard(&up) > 3 && heard(&down) > 3);
    assert!(up.published.load(Relaxed) > 0 && down.published.load(Relaxed) > 0);
    assert_eq!((up.ignored.load(Relaxed), down.ignored.load(Relaxed)), (0, 0));
    // The same counters on /metrics (docs/metrics.md), for an operator.
    let scraped = scrape_metrics(up_metrics);
    for direction in ["published", "received"] {
        let line = format!("greenwave_neighbour_outflows_total{{direction=\"{direction}\"}} ");
        let count = scraped.lines().find_map(|l| l.strip_prefix(line.as_str())).and_then(|v| v.parse::<u64>().ok());
        assert!(count.is_some_and(|n| n > 0), "{direction}: {scraped}");
    }

    broker.take().expect("running").kill();
    std::thread::sleep(Duration::from_millis(500));
    let silent = (heard(&up), heard(&down));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((heard(&up), heard(&down)), silent, "nothing arrives without the broker");

    let _broker = Broker::start(&bin, site.port, &site.store);
    wait_until("the exchange resumes after the broker restarts", Duration::from_secs(30), || {
        heard(&up) > silent.0 + 2 && heard(&down) > silent.1 + 2
    });

    up_daemon.stop();
    std::thread::sleep(Duration::from_millis(500));
    let alone = heard(&down);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(heard(&down), alone, "a stopped neighbour sends nothing");
    // The other runs on and stops clean.
    down_daemon.stop();
}

/// The daemon's `/metrics` text (anonymous viewer on loopback).
fn scrape_metrics(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
}

/// A daemon in-process with `[nats]` on `url` and its gRPC API on a free
/// port, running `controller` in lockstep at 10× real time.
fn emergency_daemon(url: &str, logs: &Path, controller: (String, String)) -> (String, Running) {
    let mut config = DaemonConfig {
        tick_ms: 100,
        view: false,
        clock: ClockSource::Cabinet,
        lockstep_speed: Some(10.0),
        time_zone: chrono_tz::UTC,
        nats: NatsConfig { enabled: true, url: url.to_owned(), ..NatsConfig::default() },
        ..DaemonConfig::default()
    };
    config.grpc.listen = "127.0.0.1:0".parse().expect("addr");
    config.grpc.tokens = crate::grpc::tokens();
    config.event_log.dir = logs.to_path_buf();
    let daemon = Daemon::start(Options::new(config, Controllers::Texts(vec![controller]))).expect("daemon starts");
    let addr = format!("http://{}", daemon.grpc_addr().expect("gRPC on"));
    (addr, Running::spawn(daemon))
}

/// Issue #18.2, across daemons: a route started on the daemon that runs
/// Elm & Oak, whose second stop (Oak & Pine, 100 m on) another daemon
/// runs, is handed over through the broker. The other daemon plans the
/// same route and arms Oak & Pine's preempt itself (the vehicle, 10 m
/// short of Elm & Oak at 10 m/s, is 11 s from it: inside the 20 s lead);
/// the first daemon's report that the vehicle is past both releases it
/// there too. Each daemon shows the other's stop as not its own.
#[test]
fn an_emergency_route_is_handed_over_to_the_daemon_that_runs_the_stop() {
    use greenwave::api::pb;
    use greenwave::api::pb::control_client::ControlClient;
    use greenwave::api::pb::watch_client::WatchClient;

    use crate::grpc::{OPERATOR, VIEWER};

    let Some(bin) = nats_server() else { return };
    let Site { _tmp, store, logs, port, url } = Site::new();
    let _broker = Broker::start(&bin, port, &store);
    let [elm, pine] = controllers();
    let (logs_a, logs_b) = (logs.join("a"), logs.join("b"));
    std::fs::create_dir_all(&logs_a).expect("mkdir");
    std::fs::create_dir_all(&logs_b).expect("mkdir");
    let (addr_a, a) = emergency_daemon(&url, &logs_a, elm);
    let (addr_b, b) = emergency_daemon(&url, &logs_b, pine);
    let authed = |token: &str| {
        let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii");
        move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", bearer.clone());
            Ok(r)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let channel = |addr: String| async move {
            tonic::transport::Channel::from_shared(addr).expect("url").connect().await.expect("connect")
        };
        let (ch_a, ch_b) = (channel(addr_a).await, channel(addr_b).await);
        let mut control_a = ControlClient::with_interceptor(ch_a.clone(), authed(OPERATOR));
        let mut control_b = ControlClient::with_interceptor(ch_b.clone(), authed(VIEWER));
        let mut watch_b = WatchClient::with_interceptor(ch_b, authed(VIEWER));
        let state_b = async |w: &mut WatchClient<_>| {
            let get = pb::GetStateRequest { intersection_id: "oak.and-pine".into() };
            w.get_state(get).await.map(tonic::Response::into_inner).ok()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while state_b(&mut watch_b).await.is_none_or(|s| s.unit_state != pb::UnitState::Run as i32) {
            assert!(tokio::time::Instant::now() < deadline, "Oak & Pine runs");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let stop = |id: &str, link_m| pb::EmergencyStop {
            intersection_id: id.into(),
            preempt_input: 1,
            link_m,
            link_travel_s: 0.0,
        };
        let start = pb::StartEmergencyRouteRequest {
            route_id: "amb-12".into(),
            stops: vec![stop("elm-and-oak", 0.0), stop("oak.and-pine", 100.0)],
            distance_to_first_m: 10.0,
            speed_mps: 10.0,
            lead_s: 20.0,
            ..Default::default()
        };
        let started = control_a.start_emergency_route(start).await.expect("start on A").into_inner();
        let local: Vec<bool> = started.stops.iter().map(|s| s.local).collect();
        assert_eq!(local, [true, false], "{started:?}");

        // B plans it and arms its own stop.
        let id = || pb::EmergencyRouteId { route_id: "amb-12".into() };
        let armed = pb::EmergencyStopState::Armed as i32;
        loop {
            if let Ok(r) = control_b.get_emergency_route(id()).await {
                let r = r.into_inner();
                assert!(r.stops[1].local && !r.stops[0].local, "{r:?}");
                let called = state_b(&mut watch_b).await.and_then(|s| s.preemption).is_some_and(|p| p.called);
                if r.stops[1].state == armed && called {
                    break;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "Oak & Pine armed through the broker");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Past both, reported to A: B releases Oak & Pine.
        let past = pb::UpdateEmergencyVehicleRequest { route_id: "amb-12".into(), position_m: 120.0, speed_mps: 10.0 };
        let on_a = control_a.update_emergency_vehicle(past).await.expect("report on A").into_inner();
        assert!(on_a.finished, "{on_a:?}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = control_b.get_emergency_route(id()).await.expect("route on B").into_inner();
            let released = state_b(&mut watch_b).await.is_some_and(|s| s.preemption.is_none_or(|p| !p.called));
            if r.finished && r.stops[1].state == pb::EmergencyStopState::Passed as i32 && released {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "Oak & Pine released through the broker: {r:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    a.stop();
    b.stop();
}
