//! Cabinet I/O over Modbus, end to end.
//!
//! - Faults, in process: the real cabinet client tasks and engine against
//!   the simulated cabinet server, through a Modbus-aware fault-injecting
//!   TCP proxy: the cabinet killed and restarted, answers slower than the
//!   timeout, exception answers, garbage bytes, the connection dropped
//!   during a write, counters wrapping. Each asserts the flash (cabinet link
//!   lost) and the restart through start-up, no double counting, no panic;
//!   and the heartbeat +1 per accepted write across reconnections.
//! - One master: a second controller writing the same cabinet is seen,
//!   alarmed and yielded to until it stops; a cabinet that refuses to read
//!   its heartbeat back is driven as before.
//! - Lockstep: the unchanged engine on `clock = "cabinet"` through Modbus,
//!   faster than real time, with the same events as the in-process
//!   `simulate`.
//! - Interop with independent peers: a pymodbus server as the cabinet
//!   (checks what the daemon writes, with its own conflict check), a
//!   pymodbus serial RTU cabinet on a socat pseudo-terminal pair answering
//!   late (never taken for the next answer), `mbpoll` reading the
//!   simulated cabinet (`greenwave sim-cabinet`) while the daemon drives
//!   it, and a pymodbus client reading the pedestrian countdown fall over a
//!   clearance there, with the accessible signal's bits. A missing peer fails the test when
//!   `GW_TEST_REQUIRE_INTEROP=1` (scripts/test.sh), else it is skipped
//!   with a notice.
//!
//! Timings are shortened (50 ms tick, 0.5 s start-up, 0.4 s link timeout)
//! and every wait polls a condition under a deadline.

use std::ffi::OsStr;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as Wall};

use greenwave::config::RegisterMap;
use greenwave::config::registers::HEARTBEAT;
use greenwave::config::{self, CabinetConfig, ClockSource, DaemonConfig, IntersectionConfig, ModbusTransport};
use greenwave::core::detector::DetectorFault;
use greenwave::core::spec::DetectorKind;
use greenwave::core::{
    ALARM_SECOND_MASTER, ALARM_SLOW_CABINET, Event, EventCode, FlashReason, OutputFrame, Snapshot, Span,
};
use greenwave::daemon::Controllers;
use greenwave::engine::board::SnapshotBoard;
use greenwave::io::cabinet::CabinetStats;
use greenwave::io::default_cabinet;
use greenwave::io::registers::{OutputImage, plan_writes};
use greenwave::replay::SimTime;
use greenwave::sim::server::{Lockstep, SIM_PREEMPT, SimCabinetSpec, SimServer, SimServerConfig};
use greenwave::telemetry::journal::{Journal, Read, RecordKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::client::Writer;

use crate::daemon::{Daemon, expect_line, lines, wait_exit};

const TICK: Span = Span::from_millis(50);
const LINK_LOST: u16 = 6;
const STARTUP: u16 = 1;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped(id: &str) -> IntersectionConfig {
    let (mut cfg, _) = config::load_intersection(&root().join(format!("controllers/{id}.toml"))).expect("shipped");
    cfg.spec.startup.flash = Span::from_millis(500);
    cfg.spec.startup.all_red = Span::from_millis(500);
    cfg
}

fn sim_spec(cfg: &IntersectionConfig) -> SimCabinetSpec {
    SimCabinetSpec { id: cfg.spec.id.clone(), spec: cfg.spec.clone(), traffic: cfg.traffic.clone() }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ---- fault-injecting proxy ---------------------------------------------

const PASS: u8 = 0;
const SLOW: u8 = 1;
const EXCEPTION: u8 = 2;
const GARBAGE: u8 = 3;
/// Drop the connection at the next write request, then pass again.
const DROP_ON_WRITE: u8 = 4;
/// Refuse reads of holding registers (a cabinet that does not read its
/// outputs back), pass everything else.
const NO_READ_BACK: u8 = 5;
/// Answer every request 40 ms late: within the request timeout, but a
/// whole exchange no longer fits the 50 ms tick.
const SLUGGISH: u8 = 6;

/// A Modbus TCP proxy that reads whole request ADUs and, per its mode,
/// forwards them, delays the answer past the client's timeout, answers
/// with an exception itself, answers with garbage, or hangs up on a write.
/// It records the heartbeat of every write the cabinet accepted.
struct Proxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    drops: Arc<AtomicU64>,
    beats: Arc<Mutex<Vec<u16>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(loopback()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(PASS));
        let drops = Arc::new(AtomicU64::new(0));
        let beats = Arc::new(Mutex::new(Vec::new()));
        let (m, d, b) = (mode.clone(), drops.clone(), beats.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, d, b) = (m.clone(), d.clone(), b.clone());
                tokio::spawn(async move {
                    let _ = proxy_connection(client, upstream, m, d, b).await;
                });
            }
        });
        Proxy { addr, mode, drops, beats }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

async fn read_adu(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 6];
    s.read_exact(&mut head).await?;
    let len = u16::from_be_bytes([head[4], head[5]]) as usize;
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).await?;
    Ok([head.to_vec(), rest].concat())
}

/// The heartbeat an FC16 request ADU carries, if its registers cover the
/// default map's heartbeat register.
fn heartbeat_written(req: &[u8]) -> Option<u16> {
    let start = u16::from_be_bytes([req[8], req[9]]);
    let count = u16::from_be_bytes([req[10], req[11]]);
    let k = HEARTBEAT.checked_sub(start).filter(|k| *k < count)? as usize;
    // MBAP (7), function, address (2), count (2), byte count, then values.
    Some(u16::from_be_bytes([req[13 + 2 * k], req[14 + 2 * k]]))
}

async fn proxy_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    mode: Arc<AtomicU8>,
    drops: Arc<AtomicU64>,
    beats: Arc<Mutex<Vec<u16>>>,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    loop {
        let req = read_adu(&mut client).await?;
        let fc = req[7];
        match mode.load(Ordering::SeqCst) {
            EXCEPTION => {
                // tid, pid, len 3, unit, fc | 0x80, 0x04 server device failure
                let mut resp = req[..4].to_vec();
                resp.extend_from_slice(&[0, 3, req[6], fc | 0x80, 0x04]);
                client.write_all(&resp).await?;
            }
            GARBAGE => {
                client.write_all(b"\xde\xad\xbe\xef garbage \x00\xff\x13\x37").await?;
            }
            NO_READ_BACK if fc == 0x03 => {
                // 0x01 illegal function
                let mut resp = req[..4].to_vec();
                resp.extend_from_slice(&[0, 3, req[6], fc | 0x80, 0x01]);
                client.write_all(&resp).await?;
            }
            DROP_ON_WRITE if fc == 0x10 => {
                mode.store(PASS, Ordering::SeqCst);
                drops.fetch_add(1, Ordering::SeqCst);
                return Ok(()); // both sockets dropped mid-exchange
            }
            m => {
                server.write_all(&req).await?;
                let resp = read_adu(&mut server).await?;
                if fc == 0x10
                    && resp[7] == fc
                    && let Some(beat) = heartbeat_written(&req)
                {
                    beats.lock().unwrap().push(beat);
                }
                if m == SLOW {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                if m == SLUGGISH {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                client.write_all(&resp).await?;
            }
        }
    }
}

// ---- in-process daemon ----------------------------------------------------

/// The real daemon ([`greenwave::daemon`]) in-process on one intersection,
/// watched through its journal and snapshot board.
struct Rig {
    /// For the test's own servers and proxies (the daemon has its own).
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    daemon: Option<std::thread::JoinHandle<greenwave::daemon::Stopped>>,
    board: Arc<SnapshotBoard>,
    journal: Arc<Journal>,
    cabinets: Vec<(String, Arc<CabinetStats>)>,
    /// The next journal record to read.
    cursor: u64,
    seen: Vec<Event>,
    snapshot: Option<Snapshot>,
    /// The daemon's Indiana event log directory.
    logs: tempfile::TempDir,
    /// The controller file the intersection came from.
    controller: PathBuf,
}

/// A Modbus cabinet at `addr` with short test timeouts.
fn modbus_at(cfg: &mut IntersectionConfig, addr: SocketAddr) {
    let mut c = default_cabinet(ModbusTransport::Tcp { address: addr.to_string() });
    c.request_timeout = Span::from_millis(100);
    c.connect_timeout = Span::from_millis(300);
    c.link_timeout = Span::from_millis(400);
    c.backoff_min = Span::from_millis(20);
    c.backoff_max = Span::from_millis(200);
    cfg.cabinet = CabinetConfig::Modbus(Box::new(c));
}

impl Rig {
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    /// `greenwave run` on `cfg` alone, in-process, at a 50 ms tick, no gRPC.
    fn start(rt: tokio::runtime::Runtime, cfg: IntersectionConfig, clock: ClockSource) -> Rig {
        let logs = tempfile::tempdir().expect("tempdir");
        let mut config = DaemonConfig {
            tick_ms: TICK.as_millis(),
            view: false,
            clock,
            time_zone: chrono_tz::UTC,
            ..DaemonConfig::default()
        };
        config.grpc.enabled = false;
        config.event_log.dir = logs.path().to_path_buf();
        let controller = cfg.source.clone();
        let text = std::fs::read_to_string(&cfg.source).expect("controller text");
        let options = greenwave::daemon::Options::new(config, Controllers::Loaded(vec![(cfg, text)]));
        let daemon = greenwave::daemon::Daemon::start(options).expect("daemon starts");
        let (board, journal, cabinets) = (daemon.board().clone(), daemon.journal().clone(), daemon.cabinet_stats());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = std::thread::spawn(move || {
            daemon
                .run_until(async {
                    let _ = stopped.await;
                })
                .expect("daemon stops")
        });
        Rig {
            rt,
            stop: Some(stop),
            daemon: Some(daemon),
            board,
            journal,
            cabinets,
            cursor: 1,
            seen: Vec::new(),
            snapshot: None,
            logs,
            controller,
        }
    }

    fn pump(&mut self) {
        let mut records = Vec::new();
        if let Read::Gap { resume, .. } = self.journal.read(self.cursor, usize::MAX, &mut records) {
            panic!("journal lost records {}..{resume}", self.cursor);
        }
        self.cursor += records.len() as u64;
        self.seen.extend(records.into_iter().filter_map(|r| match r.kind {
            RecordKind::Indiana(e) => Some(e),
            RecordKind::Audit(_) => None,
        }));
        if let Some(s) = self.board.get(0) {
            self.snapshot = Some(*s);
        }
    }

    /// Wait (bounded) for a unit flash status change with `param` after
    /// event index `from`; returns its index.
    fn wait_flash(&mut self, param: u16, from: usize, within: Duration) -> usize {
        self.wait_event(EventCode::UnitFlashStatusChange, param, from, within)
    }

    /// Wait (bounded) for event `code` with `param` after event index
    /// `from`; returns its index.
    fn wait_event(&mut self, code: EventCode, param: u16, from: usize, within: Duration) -> usize {
        let deadline = Wall::now() + within;
        loop {
            self.pump();
            if let Some(i) =
                self.seen[from.min(self.seen.len())..].iter().position(|e| e.code == code && e.param == param)
            {
                return from + i;
            }
            assert!(
                Wall::now() < deadline,
                "no event {code:?} {param} within {within:?}; flash changes: {:?}",
                self.flash_changes()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait until the controller runs (start-up over: green shown).
    fn wait_running(&mut self, from: usize) -> usize {
        let deadline = Wall::now() + Duration::from_secs(10);
        loop {
            self.pump();
            if let Some(i) =
                self.seen[from.min(self.seen.len())..].iter().position(|e| e.code == EventCode::PhaseBeginGreen)
            {
                return from + i;
            }
            assert!(Wall::now() < deadline, "never ran; flash changes {:?}", self.flash_changes());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn flash_changes(&self) -> Vec<u16> {
        self.seen.iter().filter(|e| e.code == EventCode::UnitFlashStatusChange).map(|e| e.param).collect()
    }

    fn link_lost_count(&self) -> usize {
        self.flash_changes().iter().filter(|p| **p == LINK_LOST).count()
    }

    fn sleep(&mut self, d: Duration) {
        let end = Wall::now() + d;
        while Wall::now() < end {
            self.pump();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stats(&self) -> greenwave::io::CabinetTotals {
        greenwave::io::totals(&self.cabinets)
    }

    /// Stop as SIGTERM does (through flash); returns every event seen.
    fn stop(mut self) -> Vec<Event> {
        self.finish()
    }

    /// Stop, then have the independent checker read the event log the
    /// daemon wrote: no conflict, every interval closed (those a flash
    /// cut included).
    fn stop_and_check_the_event_log(mut self) {
        self.finish();
        check_event_log(self.logs.path(), &self.controller);
    }

    fn finish(&mut self) -> Vec<Event> {
        let _ = self.stop.take().expect("running").send(());
        let stopped = self.daemon.take().expect("running").join().expect("daemon thread");
        assert!(stopped.is_clean(), "{stopped:?}");
        self.pump();
        std::mem::take(&mut self.seen)
    }
}

fn detector_volume(s: &Snapshot) -> u64 {
    s.detectors[..s.detector_count as usize].iter().map(|d| d.volume as u64).sum()
}

// ---- fault tests ------------------------------------------------------------

#[test]
fn cabinet_killed_and_restarted_flashes_then_restarts_without_double_counting() {
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), SimServerConfig::default())).unwrap();
    let addr = server.addrs[0];
    modbus_at(&mut cfg, addr);
    let mut rig = Rig::start(rt, cfg.clone(), ClockSource::System);
    let ran = rig.wait_running(0);
    rig.sleep(Duration::from_secs(3));
    let counted_before: u64 = (0..64).map(|ch| server.shared.unit(0).volume(ch) as u64).sum();

    // Kill the cabinet: every connection dropped, nothing listening.
    rig.rt.block_on(server.stop());
    let lost = rig.wait_flash(LINK_LOST, ran, Duration::from_secs(3));
    // Restarted (a rebooted cabinet: counters from zero again).
    let server = rig.rt.block_on(SimServer::start(&[sim_spec(&cfg)], addr, SimServerConfig::default())).unwrap();
    let restart = rig.wait_flash(STARTUP, lost, Duration::from_secs(5));
    rig.wait_running(restart);
    rig.sleep(Duration::from_secs(2));
    let counted_after: u64 = (0..64).map(|ch| server.shared.unit(0).volume(ch) as u64).sum();
    let volume = detector_volume(rig.snapshot.as_ref().expect("snapshots"));
    // Every vehicle the controller counted was counted by one of the two
    // cabinets' counters; without re-baselining, the restart would have
    // added about 65,536 minus the old counter.
    assert!(volume <= counted_before + counted_after, "volume {volume} > {counted_before} + {counted_after}");
    let st = rig.stats();
    assert!(st.connects >= 2 && st.links_lost >= 1, "{st}");
    rig.stop_and_check_the_event_log();
    rig_stopped_server(server);
}

fn rig_stopped_server(server: SimServer) {
    let rt = Rig::runtime();
    rt.block_on(server.stop());
}

/// Runs `fault` on a proxied link: the intersection must flash (link
/// lost) while it lasts and restart through start-up once it ends.
fn proxied_fault(mode: u8) -> greenwave::io::CabinetTotals {
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), SimServerConfig::default())).unwrap();
    let proxy = rt.block_on(Proxy::start(server.addrs[0]));
    modbus_at(&mut cfg, proxy.addr);
    let mut rig = Rig::start(rt, cfg, ClockSource::System);
    let ran = rig.wait_running(0);
    proxy.set(mode);
    let lost = rig.wait_flash(LINK_LOST, ran, Duration::from_secs(3));
    rig.sleep(Duration::from_millis(500));
    proxy.set(PASS);
    let restart = rig.wait_flash(STARTUP, lost, Duration::from_secs(5));
    rig.wait_running(restart);
    let st = rig.stats();
    rig.stop_and_check_the_event_log();
    rig_stopped_server(server);
    st
}

/// A cabinet that answers in time but too slowly for the tick: said once
/// (alarm 200/5 on, then off once it keeps time again), counted, and no
/// interval shortened at the heads (the event log's checker and the
/// controller's own monitor); it never loses the link.
#[test]
fn a_cabinet_too_slow_for_the_tick_is_alarmed_counted_and_never_shortened() {
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), SimServerConfig::default())).unwrap();
    let proxy = rt.block_on(Proxy::start(server.addrs[0]));
    modbus_at(&mut cfg, proxy.addr);
    let mut rig = Rig::start(rt, cfg, ClockSource::System);
    let ran = rig.wait_running(0);
    proxy.set(SLUGGISH);
    let on = rig.wait_event(EventCode::AlarmOn, ALARM_SLOW_CABINET, ran, Duration::from_secs(3));
    rig.sleep(Duration::from_secs(2));
    proxy.set(PASS);
    // 100 exchanges on time at 50 ms end the episode.
    rig.wait_event(EventCode::AlarmOff, ALARM_SLOW_CABINET, on, Duration::from_secs(15));
    let st = rig.stats();
    assert!(st.late_exchanges > 0, "{st}");
    assert_eq!(rig.link_lost_count(), 0, "slow, not lost: {:?}", rig.flash_changes());
    rig.stop_and_check_the_event_log();
    rig_stopped_server(server);
}

#[test]
fn answers_slower_than_the_timeout_flash_then_recover() {
    let st = proxied_fault(SLOW);
    assert!(st.timeouts > 0 && st.connects >= 2, "timeouts reset the link: {st}");
}

#[test]
fn exception_answers_keep_the_link_but_flash_then_recover() {
    let st = proxied_fault(EXCEPTION);
    assert!(st.exceptions > 0, "{st}");
    assert_eq!(st.connects, 1, "an exception is not a transport error: {st}");
    assert_eq!(st.transport_errors, 0, "{st}");
}

#[test]
fn garbage_bytes_reset_the_link_then_recover() {
    let st = proxied_fault(GARBAGE);
    // Depending on the bytes: a frame that does not decode, or a length
    // that promises more than comes (the request times out).
    assert!(st.transport_errors + st.timeouts > 0 && st.connects >= 2, "{st}");
}

#[test]
fn connection_dropped_during_a_write_reconnects_at_once() {
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), SimServerConfig::default())).unwrap();
    let proxy = rt.block_on(Proxy::start(server.addrs[0]));
    modbus_at(&mut cfg, proxy.addr);
    let mut rig = Rig::start(rt, cfg, ClockSource::System);
    rig.wait_running(0);
    for _ in 0..3 {
        proxy.set(DROP_ON_WRITE);
        let deadline = Wall::now() + Duration::from_secs(3);
        while proxy.drops.load(Ordering::SeqCst) == 0 || proxy.mode.load(Ordering::SeqCst) != PASS {
            assert!(Wall::now() < deadline, "no write was dropped");
            rig.sleep(Duration::from_millis(10));
        }
        rig.sleep(Duration::from_millis(300));
    }
    rig.sleep(Duration::from_secs(1));
    let st = rig.stats();
    assert!(st.connects >= 4 && st.transport_errors >= 3, "{st}");
    // Reconnected well within the link timeout: never flashed.
    assert_eq!(rig.link_lost_count(), 0, "flash changes: {:?}", rig.flash_changes());
    let volume = detector_volume(rig.snapshot.as_ref().expect("snapshots"));
    let counted: u64 = (0..64).map(|ch| server.shared.unit(0).volume(ch) as u64).sum();
    assert!(volume <= counted, "volume {volume} counted more than the cabinet's {counted}");
    rig.stop();
    // One heartbeat count across the four connections: +1 per write the
    // cabinet accepted, never back to the start (the dropped writes never
    // reached it; their frames went again with the same count).
    let beats = proxy.beats.lock().unwrap().clone();
    assert!(beats.len() as u64 >= st.writes && beats.len() > 20, "{} beats, {st}", beats.len());
    if let Some(w) = beats.windows(2).find(|w| w[1] != w[0].wrapping_add(1)) {
        panic!("the heartbeat went from {} to {} ({} writes through 4 connections)", w[0], w[1], beats.len());
    }
    rig_stopped_server(server);
}

#[test]
fn volume_counters_wrap_without_loss_or_double_counting() {
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    // Busy lanes so the counters pass 65535 within seconds of the start.
    for lane in &mut cfg.traffic.lanes {
        lane.arrivals_per_hour = 3000.0;
    }
    let sim_cfg = SimServerConfig { counter_start: 65_530, ..SimServerConfig::default() };
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), sim_cfg)).unwrap();
    modbus_at(&mut cfg, server.addrs[0]);
    let mut rig = Rig::start(rt, cfg.clone(), ClockSource::System);
    let lanes: Vec<usize> = cfg.traffic.lanes.iter().map(|l| l.detector.index()).collect();
    let deadline = Wall::now() + Duration::from_secs(30);
    // The main street's lanes flow first and wrap within seconds.
    while lanes.iter().filter(|&&ch| server.shared.unit(0).volume(ch) < 1000).count() < 2 {
        assert!(
            Wall::now() < deadline,
            "counters did not wrap: {:?}",
            lanes.iter().map(|&ch| server.shared.unit(0).volume(ch)).collect::<Vec<_>>()
        );
        rig.sleep(Duration::from_millis(200));
    }
    rig.sleep(Duration::from_millis(300));
    // The controller's volume, then the cabinet's counters (read after, so
    // they may only be ahead by what arrived in between: never behind,
    // which would be double counting; and close, else vehicles were lost
    // at the wrap). Under load the snapshot may lag: take the closest of a
    // few looks.
    // Push buttons count no vehicles, though the cabinet counts their presses.
    let channels: Vec<usize> =
        cfg.spec.detectors.iter().filter(|d| d.kind == DetectorKind::Vehicle).map(|d| d.channel.index()).collect();
    let mut closest = u64::MAX;
    for _ in 0..20 {
        rig.pump();
        let volume = detector_volume(rig.snapshot.as_ref().expect("snapshots"));
        let counted: u64 =
            channels.iter().map(|&ch| server.shared.unit(0).volume(ch).wrapping_sub(65_530) as u64).sum();
        assert_eq!(rig.stats().counter_faults, 0, "a wrap is not a counter fault");
        assert!(volume >= 12, "two lanes wrapped: {volume} ({counted} by the cabinet)");
        assert!(volume <= counted, "controller counted {volume}, more than the cabinet's {counted}");
        closest = closest.min(counted - volume);
        if closest <= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(closest <= 2, "the controller stayed {closest} vehicles behind the cabinet's counters");
    rig.stop();
    rig_stopped_server(server);
}

/// A volume counter stepping backwards (a glitching counter card; before
/// issue #14 that step counted as 65,526 vehicles and fed the adaptive
/// flows) adds no vehicles: it is a counter fault, Indiana 88 on the
/// channel's detector and counted in the cabinet's stats, and the vehicles
/// after it count again. A push button counts none, though its channel's
/// counter moves.
#[test]
fn a_counter_stepping_backwards_is_a_fault_not_traffic() {
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    let sim_cfg = SimServerConfig { counter_start: 40_000, ..SimServerConfig::default() };
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), sim_cfg)).unwrap();
    modbus_at(&mut cfg, server.addrs[0]);
    let slot = |n: u8| cfg.spec.detectors.iter().position(|d| d.channel.number() == n).expect("detector");
    let (lane, button) = (slot(1), slot(9));
    assert_eq!(cfg.spec.detectors[button].kind, DetectorKind::Pedestrian);
    let mut rig = Rig::start(rt, cfg.clone(), ClockSource::System);
    let ran = rig.wait_running(0);
    rig.sleep(Duration::from_secs(1));
    let volume = |rig: &Rig, slot: usize| rig.snapshot.as_ref().expect("snapshots").detectors[slot].volume;
    let before = volume(&rig, lane);
    {
        let mut unit = server.shared.unit(0);
        let v = unit.volume(0);
        unit.set_volume(0, v.wrapping_sub(10));
        // A plausible step on the push button's counter: still no vehicle.
        let p = unit.volume(8);
        unit.set_volume(8, p.wrapping_add(1));
    }
    rig.wait_event(EventCode::DetectorFaultExcessiveChange, 1, ran, Duration::from_secs(3));
    rig.sleep(Duration::from_millis(500));
    let after = volume(&rig, lane);
    assert!(after.wrapping_sub(before) < 20, "the step backwards was counted: {before} → {after}");
    let snap = rig.snapshot.expect("snapshots");
    assert_eq!(snap.detectors[lane].fault, Some(DetectorFault::ImplausibleCount));
    assert_eq!(snap.detectors[button].volume, 0, "a push button counted vehicles");
    assert_eq!(snap.detectors[button].fault, None);
    let st = rig.stats();
    assert!(st.counter_faults >= 1, "{st}");
    rig.stop();
    rig_stopped_server(server);
}

// ---- preemption inputs -------------------------------------------------------

/// Issue #18.1: River Rd & Mill St's rail crossing raised through the
/// simulated cabinet's register, as a Modbus client writes it (holding
/// register `SIM_PREEMPT`, reported in the `preempt` input register the
/// daemon reads): entry, track clearance, dwell; let go, exit. In lockstep
/// (`clock = "cabinet"`), so the crossing's 15 s track clearance and 20 s
/// minimum dwell take simulated time, not the test's.
#[test]
fn a_rail_preemption_raised_through_the_cabinet_register_enters_clears_the_track_dwells_and_exits() {
    use EventCode::*;
    let rt = Rig::runtime();
    let mut cfg = shipped("river-rd-and-mill-st");
    let sim_cfg = SimServerConfig { lockstep: Some(Lockstep::new(TICK)), ..SimServerConfig::default() };
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), sim_cfg)).unwrap();
    modbus_at(&mut cfg, server.addrs[0]);
    let addr = server.addrs[0];
    let mut rig = Rig::start(rt, cfg, ClockSource::Cabinet);
    let ran = rig.wait_running(0);
    let raise = |rig: &Rig, bits: u16| {
        rig.rt.block_on(async {
            let mut ctx =
                tokio_modbus::client::tcp::connect_slave(addr, tokio_modbus::Slave(1)).await.expect("connects");
            ctx.write_single_register(SIM_PREEMPT, bits).await.expect("transport").expect("cabinet accepts");
        })
    };
    raise(&rig, 0b10);
    let dwell = rig.wait_event(PreemptBeginDwell, 2, ran, Duration::from_secs(60));
    raise(&rig, 0);
    rig.wait_event(PreemptBeginExitInterval, 2, dwell, Duration::from_secs(60));
    let seen = rig.stop();
    let rail: Vec<EventCode> =
        seen.iter().filter(|e| (102..=111).contains(&e.code.code()) && e.param == 2).map(|e| e.code).collect();
    assert_eq!(
        rail,
        [
            PreemptCallInputOn,
            PreemptEntryStarted,
            PreemptBeginTrackClearance,
            PreemptBeginDwell,
            PreemptCallInputOff,
            PreemptBeginExitInterval
        ]
    );
    let at = |code: EventCode| seen.iter().find(|e| e.code == code && e.param == 2).map(|e| e.at).expect("logged");
    let track = at(PreemptBeginTrackClearance);
    assert!(at(PreemptBeginDwell).since(track) >= Span::from_secs(15), "the track clearance is timed whole");
    assert!(at(PreemptBeginExitInterval).since(at(PreemptBeginDwell)) >= Span::from_secs(20), "minimum dwell");
    rig_stopped_server(server);
}

// ---- one master ------------------------------------------------------------

const SECOND_MASTER: u16 = 10;

/// Another controller on the same cabinet: a plain tokio-modbus client
/// writing the holding registers the daemon writes (`frame` in flash mode,
/// its own heartbeat) every 100 ms until `stop`; returns its writes.
async fn second_master(addr: SocketAddr, frame: OutputFrame, stop: Arc<AtomicBool>) -> u64 {
    let mut ctx = tokio_modbus::client::tcp::connect_slave(addr, tokio_modbus::Slave(1))
        .await
        .expect("the second master connects");
    let map = RegisterMap::default();
    let [block] = plan_writes(&map.output_items(false))[..] else { panic!("the default map is one write") };
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let mut beat = 40_000u16;
    let mut writes = 0;
    while !stop.load(Ordering::SeqCst) {
        every.tick().await;
        beat = beat.wrapping_add(1);
        let words = OutputImage::new(frame, Some(FlashReason::Operator), beat, 0).words(&map, block);
        ctx.write_multiple_registers(block.start, &words).await.expect("transport").expect("cabinet accepts");
        writes += 1;
    }
    writes
}

#[test]
fn a_second_master_is_seen_alarmed_and_yielded_to_until_it_stops() {
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), SimServerConfig::default())).unwrap();
    modbus_at(&mut cfg, server.addrs[0]);
    let mut rig = Rig::start(rt, cfg, ClockSource::System);
    let ran = rig.wait_running(0);

    // Another controller starts writing the cabinet (the cabinet's flash
    // pattern: the simulated MMU sees no clearance fault when it lands
    // between two of the daemon's frames).
    let flash = server.shared.unit(0).mmu.flash_frame();
    let stop = Arc::new(AtomicBool::new(false));
    let other = rig.rt.spawn(second_master(server.addrs[0], flash, stop.clone()));
    let started = Wall::now();
    let alarm = rig.wait_event(EventCode::AlarmOn, ALARM_SECOND_MASTER, ran, Duration::from_secs(2));
    let yielded = rig.wait_flash(SECOND_MASTER, ran, Duration::from_secs(1));
    println!("second master alarmed {} ms after it started writing", started.elapsed().as_millis());
    // The daemon has stopped writing: the heads follow the other master alone.
    let writes = rig.stats().writes;
    rig.sleep(Duration::from_millis(600));
    assert_eq!(rig.stats().writes, writes, "the daemon wrote while another master did");
    let written = *server.shared.unit(0).written();
    assert_eq!(
        (written.flash_reason, written.frame),
        (FlashReason::Operator as u16, flash),
        "the other master's frame"
    );
    assert_eq!(rig.flash_changes().last(), Some(&SECOND_MASTER), "in flash while the other master writes");

    // It stops: once the register has been still for the quiet time, the
    // episode ends (alarm off) and the intersection starts up again.
    stop.store(true, Ordering::SeqCst);
    let foreign = rig.rt.block_on(other).expect("second master task");
    let off = rig.wait_event(EventCode::AlarmOff, ALARM_SECOND_MASTER, alarm, Duration::from_secs(3));
    let restart = rig.wait_flash(STARTUP, yielded, Duration::from_secs(3));
    assert!(off <= restart, "alarm off, then start-up");
    rig.wait_running(restart);
    assert!(rig.stats().writes > writes, "the daemon writes again");
    let st = rig.stats();
    assert_eq!(st.second_master_episodes, 1, "{st}");
    assert!(
        st.foreign_writes >= 3 && st.foreign_writes <= foreign,
        "{} of {foreign} foreign writes seen: {st}",
        st.foreign_writes
    );
    rig.stop_and_check_the_event_log();
    rig_stopped_server(server);
}

#[test]
fn a_cabinet_that_does_not_read_back_is_driven_without_the_check() {
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), SimServerConfig::default())).unwrap();
    let proxy = rt.block_on(Proxy::start(server.addrs[0]));
    proxy.set(NO_READ_BACK);
    modbus_at(&mut cfg, proxy.addr);
    let mut rig = Rig::start(rt, cfg, ClockSource::System);
    rig.wait_running(0);
    rig.sleep(Duration::from_millis(500));
    let st = rig.stats();
    assert!(st.exceptions > 10 && st.writes > 10, "read-backs refused, frames written: {st}");
    assert_eq!((st.second_master_episodes, st.connects), (0, 1), "{st}");
    assert!(!rig.seen.iter().any(|e| e.param == ALARM_SECOND_MASTER && e.code == EventCode::AlarmOn));
    rig.stop();
    rig_stopped_server(server);
}

// ---- lockstep -----------------------------------------------------------

#[test]
fn lockstep_through_modbus_is_faster_than_real_time_and_matches_simulate() {
    let cfg = shipped("elm-and-oak");
    assert_eq!(cfg.cabinet, CabinetConfig::Simulated, "served by the embedded (lockstep) simulator");
    let simulated = Span::from_secs(120);
    let end = greenwave::replay::REPLAY_EPOCH + simulated;
    let started = Wall::now();
    let mut rig = Rig::start(Rig::runtime(), cfg.clone(), ClockSource::Cabinet);
    let deadline = Wall::now() + Duration::from_secs(60);
    while rig.snapshot.as_ref().is_none_or(|s| s.at < end + TICK) {
        assert!(Wall::now() < deadline, "lockstep too slow: {:?}", rig.snapshot.as_ref().map(|s| s.at));
        rig.pump();
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = started.elapsed();
    let seen = rig.stop();
    let (out, _, _) = greenwave::replay::simulate(&cfg, TICK, simulated, SimTime::default());
    let ours: Vec<&Event> = seen.iter().filter(|e| e.at <= end).collect();
    let theirs: Vec<&Event> = out.events.iter().filter(|e| e.at <= end).collect();
    let first_diff = ours.iter().zip(&theirs).position(|(a, b)| a != b);
    assert!(
        first_diff.is_none() && ours.len() == theirs.len(),
        "lockstep and simulate differ at event {first_diff:?} (lockstep {} events, simulate {}): {:?} vs {:?}",
        ours.len(),
        theirs.len(),
        first_diff.map(|i| ours[i]),
        first_diff.map(|i| theirs[i])
    );
    assert!(ours.iter().any(|e| e.code == EventCode::PhaseBeginGreen), "the controller ran");
    println!(
        "lockstep: {} s simulated in {:.2} s ({} events identical to simulate)",
        simulated.as_millis() / 1000,
        wall.as_secs_f64(),
        ours.len()
    );
    // Speed is a benchmark figure, not a test assertion: the run prints it
    // (faster than real time on the project machine), and correctness is the
    // identical event sequence asserted above.
}

// ---- interop with independent peers ------------------------------------------

/// Whether interop peers must be present (scripts/test.sh sets it).
fn required() -> bool {
    std::env::var("GW_TEST_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

pub(crate) fn missing(peer: &str) -> Option<()> {
    assert!(
        !required(),
        "{peer} is missing and GW_TEST_REQUIRE_INTEROP=1: run scripts/test.sh (it installs mbpoll and a .venv with pymodbus) or set GW_TEST_PYTHON"
    );
    eprintln!("notice: {peer} not found: interop test skipped (scripts/test.sh installs it)");
    None
}

/// A Python interpreter that passes `check` (a `-c` program exiting 0):
/// `GW_TEST_PYTHON`, else the project's `.venv`, else `python3`.
pub(crate) fn python_with(what: &str, check: &str) -> Option<String> {
    let python = std::env::var("GW_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = root().join(".venv/bin/python");
        if venv.exists() { venv.display().to_string() } else { "python3".into() }
    });
    let ok = Command::new(&python).args(["-c", check]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if ok { Some(python) } else { missing(&format!("python with {what} ({python})")).map(|_| python) }
}

fn python_with_pymodbus() -> Option<String> {
    python_with("pymodbus<4", "import pymodbus, sys; sys.exit(0 if pymodbus.__version__ < '4' else 1)")
}

/// `tools/interop/eventlog_check.py` on `logs` with `controller`'s
/// conflicts: its output, and whether it found nothing. `None` when there
/// is no Python 3.11 (tomllib) and interop is not required.
fn run_event_log_checker(logs: &Path, controller: &Path) -> Option<(bool, String)> {
    let python = python_with("Python 3.11 (tomllib)", "import tomllib")?;
    let out = Command::new(python)
        .arg(root().join("tools/interop/eventlog_check.py"))
        .arg("--controller")
        .arg(controller)
        .arg(logs)
        .output()
        .expect("run the event log checker");
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    ))
}

/// The independent checker finds nothing in the event log in `logs`.
fn check_event_log(logs: &Path, controller: &Path) {
    if let Some((clean, report)) = run_event_log_checker(logs, controller) {
        assert!(clean, "the event log checker found:\n{report}");
        println!("event log checker: {}", report.lines().last().unwrap_or_default());
    }
}

/// The checker is not vacuous: the log of the flash that cut a green
/// without closing it (before issue #14) has that green open at the flash,
/// and after the restart phase 4 green while phase 2 green.
#[test]
fn the_event_log_checker_finds_a_green_a_flash_left_open() {
    let tmp = tempfile::tempdir().unwrap();
    let log = "SignalID,Timestamp,EventCode,EventParam\n\
               elm-and-oak,2026-01-05 00:00:10.0,1,2\n\
               elm-and-oak,2026-01-05 00:00:12.0,173,6\n\
               elm-and-oak,2026-01-05 00:00:15.0,173,1\n\
               elm-and-oak,2026-01-05 00:00:20.0,173,0\n\
               elm-and-oak,2026-01-05 00:00:24.0,1,4\n\
               elm-and-oak,2026-01-05 00:00:30.0,173,9\n";
    std::fs::write(tmp.path().join("greenwave-events-000001.csv"), log).unwrap();
    let Some((clean, report)) = run_event_log_checker(tmp.path(), &root().join("controllers/elm-and-oak.toml")) else {
        return;
    };
    assert!(!clean, "{report}");
    assert!(report.contains("phase 2 green still open at a flash status change (173,6)"), "{report}");
    assert!(report.contains("CONFLICT: phase 4 green while phase 2 green"), "{report}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// elm-and-oak with a short start-up, its cabinet at `kind` `address`.
fn controller_file(dir: &Path, kind: &str, address: &str) {
    let addr: SocketAddr = address.parse().unwrap();
    let text = greenwave::sim::controller_for(&free_elm_and_oak(), "elm-and-oak", kind, addr).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("elm-and-oak.toml"), text).unwrap();
}

/// elm-and-oak with a short start-up, in free operation whenever it runs.
fn free_elm_and_oak() -> String {
    let text = std::fs::read_to_string(root().join("controllers/elm-and-oak.toml")).unwrap();
    let text = text
        .replace("flash_s = 6.0", "flash_s = 1.0")
        .replace("all_red_s = 4.0", "all_red_s = 2.0")
        // The daemon runs on the wall clock: on weekdays 07:00-19:00 the
        // schedule would run the coordinated plan, and Oak's call would wait
        // for its split window (up to a 70 s cycle plus offset seeking). Free
        // operation every day makes the test independent of the time it runs.
        .replace(
            r#"week = ["weekday", "weekday", "weekday", "weekday", "weekday", "#,
            r#"week = ["weekend", "weekend", "weekend", "weekend", "weekend", "#,
        );
    assert!(
        text.contains(r#"week = ["weekend", "weekend", "weekend", "weekend", "weekend", "weekend", "weekend"]"#),
        "schedule pinned to free"
    );
    text
}

/// `greenwave run` in `dir` on `dir/controllers`.
fn daemon(dir: &Path) -> Daemon {
    Daemon::start(dir, [OsStr::new("--controllers"), dir.join("controllers").as_os_str()])
}

#[test]
fn pymodbus_cabinet_checks_what_the_daemon_writes() {
    let Some(python) = python_with_pymodbus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut peer = Command::new(&python)
        .arg(root().join("tools/interop/pymodbus_cabinet.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pymodbus cabinet");
    let out = lines(peer.stdout.take().unwrap());
    let mut stdin = peer.stdin.take().unwrap();
    let mut peer = Killed(peer);
    let mut seen = Vec::new();
    let port = expect_line(&out, "PORT ", Duration::from_secs(30), &mut seen);
    let port = port.trim_start_matches("PORT ").trim().to_owned();
    controller_file(&tmp.path().join("controllers"), "modbus-tcp", &format!("127.0.0.1:{port}"));
    let mut d = daemon(tmp.path());
    d.expect_line("cabinet link up");
    let deadline = Wall::now() + Duration::from_secs(90);
    loop {
        if let Ok(l) = out.recv_timeout(Duration::from_millis(100)) {
            seen.push(l.clone());
            if l.starts_with("SEEN") {
                break;
            }
            assert!(!l.starts_with("FAIL"), "pymodbus cabinet: {l}");
        }
        assert!(Wall::now() < deadline, "the pymodbus cabinet never saw both phases served: {seen:?}");
    }
    d.signal("-TERM");
    assert!(d.wait().success(), "daemon exit");
    writeln!(stdin, "STOP").unwrap();
    let verdict = expect_line(&out, "", Duration::from_secs(15), &mut seen);
    assert!(verdict.starts_with("OK"), "pymodbus cabinet: {verdict}");
    assert!(wait_exit(&mut peer.0, Duration::from_secs(10)).success());
    println!("pymodbus: {verdict}");
}

fn mbpoll(args: &[&str]) -> (bool, String) {
    let out = Command::new("mbpoll").args(args).output().expect("run mbpoll");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// `[41]: 123` lines of mbpoll's output, as (reference, value).
fn mbpoll_values(text: &str) -> Vec<(u32, i64)> {
    text.lines()
        .filter_map(|l| {
            let (r, v) = l.trim().strip_prefix('[')?.split_once("]:")?;
            Some((r.parse().ok()?, v.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// `greenwave sim-cabinet` serving elm-and-oak as `text` has it, in
/// `dir`, with the daemon's controller file written to `dir/controllers`:
/// the process and its port.
fn sim_cabinet_process(dir: &Path, text: &str) -> (Killed, String) {
    let only = dir.join("only");
    std::fs::create_dir_all(&only).unwrap();
    std::fs::write(only.join("elm-and-oak.toml"), text).unwrap();
    let mut sim = Command::new(env!("CARGO_BIN_EXE_greenwave"))
        .args(["sim-cabinet", "--listen", "127.0.0.1:0", "--controllers"])
        .arg(&only)
        .arg("--write-controllers")
        .arg(dir.join("controllers"))
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start greenwave sim-cabinet");
    let out = lines(sim.stdout.take().unwrap());
    let sim = Killed(sim);
    let mut seen = Vec::new();
    let line = expect_line(&out, "elm-and-oak modbus-tcp", Duration::from_secs(20), &mut seen);
    expect_line(&out, "ready", Duration::from_secs(20), &mut seen);
    let port = line.split_whitespace().nth(2).and_then(|a| a.rsplit(':').next()).expect("address").to_owned();
    (sim, port)
}

#[test]
fn mbpoll_reads_the_simulated_cabinet_while_the_daemon_drives_it() {
    if Command::new("mbpoll").arg("-V").output().is_err() {
        return missing("mbpoll").unwrap_or(());
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("controllers/elm-and-oak.toml")).unwrap();
    let (sim, port) = sim_cabinet_process(tmp.path(), &text);
    let p = port.as_str();

    // Before the daemon: presence as discrete inputs, status and step.
    let (ok, text) = mbpoll(&["-m", "tcp", "-a", "1", "-p", p, "-t", "1", "-r", "1", "-c", "16", "-1", "127.0.0.1"]);
    assert!(ok && mbpoll_values(&text).len() == 16, "discrete inputs: {text}");
    let (ok, text) = mbpoll(&["-m", "tcp", "-a", "1", "-p", p, "-t", "3", "-r", "1", "-c", "10", "-1", "127.0.0.1"]);
    let v = mbpoll_values(&text);
    assert!(ok && v.len() == 10, "input registers: {text}");
    assert_eq!(v[4].1 & 0x10, 0x10, "status: cabinet flash before any controller: {text}");
    // A unit id the cabinet is not: an exception, not an answer.
    let (ok, text) = mbpoll(&["-m", "tcp", "-a", "7", "-p", p, "-t", "3", "-r", "1", "-c", "4", "-1", "127.0.0.1"]);
    assert!(!ok || mbpoll_values(&text).is_empty(), "unit 7 answered: {text}");

    let mut d = daemon(tmp.path());
    d.expect_line("cabinet link up");
    // The heartbeat (holding register 40, mbpoll reference 41) moves and the
    // requested mode is set.
    let read_hb = || {
        let (ok, text) =
            mbpoll(&["-m", "tcp", "-a", "1", "-p", p, "-t", "4", "-r", "41", "-c", "3", "-1", "127.0.0.1"]);
        let v = mbpoll_values(&text);
        assert!(ok && v.len() == 3, "holding registers: {text}");
        (v[0].1, v[1].1)
    };
    let (hb1, _) = read_hb();
    let deadline = Wall::now() + Duration::from_secs(5);
    let mode = loop {
        let (hb, mode) = read_hb();
        if hb != hb1 {
            break mode;
        }
        assert!(Wall::now() < deadline, "heartbeat stuck at {hb1}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(mode == 1 || mode == 2, "requested mode {mode}");
    // The MMU lets the controller drive the heads: no cabinet flash bit
    // once its start-up flash is written... the status has no MMU fault.
    let (ok, text) = mbpoll(&["-m", "tcp", "-a", "1", "-p", p, "-t", "3", "-r", "5", "-c", "1", "-1", "127.0.0.1"]);
    let v = mbpoll_values(&text);
    assert!(ok && v.len() == 1 && v[0].1 & 0x4 == 0, "MMU fault raised: {text}");
    drop(sim);
}

/// An outsider reads the pedestrian countdown and the accessible signal's
/// registers: `greenwave run` drives a `greenwave sim-cabinet` whose
/// controller file sets `ped_outputs`, with a pedestrian recall on Oak
/// (phase 4, a 14 s clearance) and free operation; pymodbus
/// (tools/interop/ped_countdown_reader.py) polls holding registers 16..66
/// through one whole walk and clearance and checks that the countdown is
/// blank in the walk, counts down from at most 14 to 1 or 2 without rising
/// over a clearance of at least 14 s that ends when its first number said,
/// and is blank again at don't walk; the walk message sounds in the walk,
/// the locator tone outside it.
#[test]
fn pymodbus_reads_the_countdown_fall_to_zero_over_a_pedestrian_clearance() {
    let Some(python) = python_with_pymodbus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let text = free_elm_and_oak();
    let oak_ped = "walk_s = 7.0\nped_clear_s = 14.0\n";
    assert!(text.contains(oak_ped), "Oak's pedestrian timing");
    let text = text.replace(oak_ped, &format!("{oak_ped}recall = \"ped\"\n"));
    let (_sim, port) = sim_cabinet_process(tmp.path(), &text);
    let file = tmp.path().join("controllers/elm-and-oak.toml");
    let written = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, written + "\n[cabinet.registers]\nped_outputs = true\n").unwrap();
    let mut d = daemon(tmp.path());
    d.expect_line("cabinet link up");
    let out = Command::new(&python)
        .arg(root().join("tools/interop/ped_countdown_reader.py"))
        .args([port.as_str(), "4", "14"])
        .output()
        .expect("run the pymodbus reader");
    let verdict = String::from_utf8_lossy(&out.stdout).into_owned();
    d.signal("-TERM");
    assert!(d.wait().success(), "daemon exit");
    assert!(
        out.status.success() && verdict.starts_with("OK"),
        "pymodbus reader: {verdict}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("pymodbus: {verdict}");
}

/// The `STATS` line of tools/interop/serial_cabinet.py: (reads, writes).
fn serial_cabinet_stats(
    stdin: &mut std::process::ChildStdin,
    out: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
) -> (u64, u64) {
    writeln!(stdin, "STATS").unwrap();
    let line = expect_line(out, "STATS ", Duration::from_secs(10), seen);
    let field = |name: &str| -> u64 {
        let value = line.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('='));
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    (field("reads"), field("writes"))
}

/// A serial Modbus RTU cabinet that is not Greenwave's code (pymodbus,
/// tools/interop/serial_cabinet.py) on one end of a pseudo-terminal pair
/// made by socat, the daemon's `modbus-rtu` cabinet on the other, at
/// 115200 baud. The cabinet answers two reads late: once while the daemon
/// drains the line after its request timeout (100 ms), once after the
/// drain, while the daemon waits for the answer to its next request (a
/// write). Neither late answer is taken for an answer: each costs one
/// timeout, the line is never reopened, no request fails on a mismatching
/// answer, the intersection never flashes, and the writes go on.
#[test]
fn rtu_serial_cabinet_late_answers_are_never_taken_for_the_next() {
    if Command::new("socat").arg("-V").output().is_err() {
        return missing("socat").unwrap_or(());
    }
    let Some(python) = python_with(
        "pymodbus<4 and pyserial",
        "import pymodbus, serial, sys; sys.exit(0 if pymodbus.__version__ < '4' else 1)",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (cabinet_end, daemon_end) = (tmp.path().join("cabinet"), tmp.path().join("daemon"));
    let pty = |end: &Path| format!("pty,raw,echo=0,link={}", end.display());
    let socat = Command::new("socat")
        .args([pty(&cabinet_end), pty(&daemon_end)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start socat");
    let _socat = Killed(socat);
    let deadline = Wall::now() + Duration::from_secs(10);
    while !(cabinet_end.exists() && daemon_end.exists()) {
        assert!(Wall::now() < deadline, "socat made no pseudo-terminal pair");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut peer = Command::new(&python)
        .arg(root().join("tools/interop/serial_cabinet.py"))
        .arg(&cabinet_end)
        .arg("115200")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the serial pymodbus cabinet");
    let out = lines(peer.stdout.take().unwrap());
    let mut stdin = peer.stdin.take().unwrap();
    let mut peer = Killed(peer);
    let mut seen = Vec::new();
    expect_line(&out, "READY", Duration::from_secs(30), &mut seen);

    let mut cfg = shipped("elm-and-oak");
    modbus_at(&mut cfg, loopback());
    if let CabinetConfig::Modbus(m) = &mut cfg.cabinet {
        let path = daemon_end.display().to_string();
        m.transport =
            ModbusTransport::Rtu { path, baud: 115_200, parity: config::Parity::None, data_bits: 8, stop_bits: 1 };
    }
    let mut rig = Rig::start(Rig::runtime(), cfg, ClockSource::System);
    rig.wait_running(0);
    rig.sleep(Duration::from_millis(500));
    for late_ms in [150, 250] {
        let before = rig.stats();
        writeln!(stdin, "LATE {late_ms}").unwrap();
        let answered = expect_line(&out, "LATE ANSWERED", Duration::from_secs(10), &mut seen);
        let writes_then: u64 = answered.rsplit('=').next().and_then(|n| n.parse().ok()).expect("writes");
        rig.sleep(Duration::from_secs(1));
        let (_, writes_now) = serial_cabinet_stats(&mut stdin, &out, &mut seen);
        // 20 ticks of 50 ms: the writes go on (a few may be skipped while
        // the line is drained).
        assert!(writes_now >= writes_then + 10, "{late_ms} ms late: writes {writes_then} → {writes_now} in 1 s");
        let st = rig.stats();
        assert_eq!(st.timeouts - before.timeouts, 1, "{late_ms} ms late: one timeout: {st}");
    }
    let st = rig.stats();
    assert_eq!(st.discarded_answers, 2, "both late answers discarded: {st}");
    assert_eq!(st.transport_errors, 0, "no request failed on a late answer: {st}");
    assert_eq!(st.connects, 1, "the line was never reopened: {st}");
    assert_eq!(rig.link_lost_count(), 0, "never flashed: {:?}", rig.flash_changes());
    rig.stop_and_check_the_event_log();
    writeln!(stdin, "STOP").unwrap();
    let verdict = expect_line(&out, "", Duration::from_secs(15), &mut seen);
    assert!(verdict.starts_with("OK"), "serial cabinet: {verdict}");
    assert!(wait_exit(&mut peer.0, Duration::from_secs(10)).success());
    println!("serial pymodbus: {verdict}; daemon: {st}");
}

// ---- framing and cabinet inputs ------------------------------------------------

#[test]
fn rtu_framing_over_tcp_drives_the_simulated_cabinet() {
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    let sim_cfg = SimServerConfig { rtu_over_tcp: true, ..SimServerConfig::default() };
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), sim_cfg)).unwrap();
    modbus_at(&mut cfg, server.addrs[0]);
    if let CabinetConfig::Modbus(m) = &mut cfg.cabinet {
        m.transport = ModbusTransport::RtuOverTcp { address: server.addrs[0].to_string() };
    }
    let mut rig = Rig::start(rt, cfg, ClockSource::System);
    rig.wait_running(0);
    rig.sleep(Duration::from_millis(500));
    let st = rig.stats();
    assert!(st.reads > 10 && st.writes > 10, "{st}");
    assert_eq!((st.exceptions, st.transport_errors, st.timeouts), (0, 0, 0), "{st}");
    assert!(server.shared.unit(0).mmu.in_control(), "the MMU sees the RTU heartbeat");
    rig.stop();
    // The cabinet's own account (`sim-cabinet --stats-json`): the start-up
    // and the shutdown flash written once each, a gap before every write
    // but the first.
    let seen = server.shared.stats();
    assert_eq!((seen.flashes[1], seen.flashes[9]), (1, 1), "{seen:?}");
    assert_eq!(seen.write_gaps.count, seen.writes - 1, "{seen:?}");
    rig_stopped_server(server);
}

#[test]
fn manual_flash_door_and_mmu_inputs_act_as_a_real_cabinets() {
    use greenwave::io::registers::{STATUS_DOOR_OPEN, STATUS_MANUAL_FLASH};
    const MANUAL: u16 = 4;
    const MMU: u16 = 5;
    let rt = Rig::runtime();
    let mut cfg = shipped("elm-and-oak");
    let server = rt.block_on(SimServer::start(&[sim_spec(&cfg)], loopback(), SimServerConfig::default())).unwrap();
    modbus_at(&mut cfg, server.addrs[0]);
    let mut rig = Rig::start(rt, cfg, ClockSource::System);
    let ran = rig.wait_running(0);

    // Technician: door open, manual flash switch on → flash; off → start-up.
    server.shared.unit(0).set_switches(STATUS_DOOR_OPEN | STATUS_MANUAL_FLASH);
    let flash = rig.wait_flash(MANUAL, ran, Duration::from_secs(15));
    assert!(rig.seen.iter().any(|e| e.code == EventCode::AlarmOn && e.param == 1), "door alarm logged");
    // The flash event leaves the engine a tick before the cabinet task
    // writes that frame, so give the write a moment to land.
    let deadline = Wall::now() + Duration::from_secs(2);
    while server.shared.unit(0).heads().vehicle.iter().any(|i| i.is_permissive()) {
        assert!(Wall::now() < deadline, "heads still green or yellow 2 s after the flash event");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.shared.unit(0).set_switches(0);
    let restart = rig.wait_flash(STARTUP, flash, Duration::from_secs(15));
    let ran = rig.wait_running(restart);

    // The MMU trips (here: it sees a conflict) → flash until it is reset.
    {
        let mut unit = server.shared.unit(0);
        let mut conflict = *unit.written();
        conflict.frame.vehicle[1] = greenwave::core::Indication::Green;
        conflict.frame.vehicle[3] = greenwave::core::Indication::Green;
        let t = greenwave::core::Instant::from_millis(u64::MAX / 2);
        assert!(unit.mmu.observe(t, &conflict.frame, conflict.heartbeat).is_some(), "conflict seen");
    }
    let tripped = rig.wait_flash(MMU, ran, Duration::from_secs(15));
    rig.sleep(Duration::from_millis(500));
    assert!(server.shared.unit(0).mmu.fault().is_some(), "latched");
    assert_eq!(rig.flash_changes().last(), Some(&MMU), "still in flash while the MMU holds");
    server.shared.unit(0).mmu.reset();
    let restart = rig.wait_flash(STARTUP, tripped, Duration::from_secs(15));
    rig.wait_running(restart);
    rig.stop_and_check_the_event_log();
    rig_stopped_server(server);
}
