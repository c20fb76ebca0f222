//! Cabinet I/O over Modbus: end-to-end latency and scale, with the daemon
//! as a separate process (the release `greenwave` binary) on loopback.
//!
//! Run: `cargo bench --bench modbus` (both), or
//! `cargo bench --bench modbus -- latency [cabinets] [seconds]` and
//! `cargo bench --bench modbus -- scale [N ...]` (default 1 100 1000).
//!
//! # Latency: detector change at the cabinet → output written
//! This process hosts probe cabinets: Modbus TCP servers (tokio-modbus)
//! speaking greenwave's register map, each behind its own port, each
//! timing its own samples. The daemon runs them as two-phase
//! intersections (phases 2 and 4, one ring, no recall, 1 s minimum green,
//! 0.1 s passage), so a phase rests in green once served. A sample: after
//! the resting green has lasted at least 1.5 s plus a random 0–1 s (the
//! call lands at a random point of the daemon's tick), the probe raises
//! the other phase's detector at `t0`. The controller must gap the resting
//! phase out at once, so the first write showing it yellow, at `t1`, is
//! the answer; `t1 - t0` is the sample. It covers everything on the path:
//! waiting for the next input read, the read, the channel into the control
//! thread, the controller's decision, the channel out, and the write. With
//! reads `read_ahead` before each tick and writes right after, it is at
//! most about one tick plus the pipeline; the target is p99 ≤ tick + 10 ms.
//!
//! # Scale: N simulated cabinets, one daemon, 10 Hz
//! `greenwave sim-cabinet --count N --write-controllers DIR` in one process
//! (N cabinets on N ports, cycling through the shipped intersections), and
//! `greenwave run --controllers DIR --stats-json` in another. After a
//! warm-up (connections), the daemon's CPU is read from
//! `/proc/<pid>/stat` (utime + stime over the window), its RSS from
//! `/proc/<pid>/status`, and the deadline jitter p99 (after the warm-up)
//! from the stats JSON it writes at exit.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greenwave::config::RegisterMap;
use greenwave::io::registers::OutputImage;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use tokio::net::TcpListener;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

const YELLOW: u16 = 2;
const GREEN: u16 = 3;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // with no arguments and must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("Modbus benchmark: run with `cargo bench --bench modbus`");
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    match args.first().map(String::as_str) {
        Some("latency") => {
            let cabinets = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(40);
            let secs = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(90);
            latency(cabinets, secs);
        }
        Some("scale") => {
            let ns: Vec<usize> = args[1..].iter().filter_map(|a| a.parse().ok()).collect();
            scale(if ns.is_empty() { &[1, 100, 1000] } else { &ns });
        }
        _ => {
            latency(40, 90);
            scale(&[1, 100, 1000]);
        }
    }
}

fn greenwave() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenwave"));
    // Every GREENWAVE_* variable is a daemon setting.
    for (k, _) in std::env::vars() {
        if k.starts_with("GREENWAVE_") {
            c.env_remove(k);
        }
    }
    c.env("NO_COLOR", "1");
    c
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
}

// ---- latency ----------------------------------------------------------------

/// Holding registers a probe cabinet keeps (the default map's 0..47).
const PROBE_HOLDING: usize = 64;

/// One probe cabinet's registers, shared with its Modbus service.
#[derive(Debug, Default)]
struct ProbeState {
    presence: u16,
    /// As last written, for the daemon's heartbeat read-back (FC03).
    holding: Vec<u16>,
    /// Every write of phases 2 and 4: (when, phase 2, phase 4).
    writes: VecDeque<(Instant, u16, u16)>,
}

#[derive(Clone, Debug)]
struct Probe {
    state: Arc<Mutex<ProbeState>>,
    map: RegisterMap,
}

impl Service for Probe {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap();
        let r = match req.request {
            Request::ReadInputRegisters(addr, cnt) => {
                let mut regs = vec![0u16; addr as usize + cnt as usize];
                regs[0] = st.presence;
                Ok(Response::ReadInputRegisters(regs[addr as usize..].to_vec()))
            }
            Request::ReadHoldingRegisters(addr, cnt) => {
                st.holding.resize(PROBE_HOLDING, 0);
                match st.holding.get(addr as usize..addr as usize + cnt as usize) {
                    Some(regs) => Ok(Response::ReadHoldingRegisters(regs.to_vec())),
                    None => Err(ExceptionCode::IllegalDataAddress),
                }
            }
            Request::WriteMultipleRegisters(addr, words) => {
                let mut regs = vec![0u16; PROBE_HOLDING];
                regs[addr as usize..addr as usize + words.len()].copy_from_slice(&words);
                match OutputImage::decode(&self.map, &regs) {
                    Ok(img) => {
                        st.holding = regs;
                        let (p2, p4) = (img.frame.vehicle[1] as u16, img.frame.vehicle[3] as u16);
                        st.writes.push_back((now, p2, p4));
                        if st.writes.len() > 256 {
                            st.writes.pop_front();
                        }
                        Ok(Response::WriteMultipleRegisters(addr, words.len() as u16))
                    }
                    Err(_) => Err(ExceptionCode::IllegalDataValue),
                }
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        std::future::ready(r)
    }
}

const PROBE_CONTROLLER: &str = r#"
[intersection]
id = "ID"
[cabinet]
kind = "modbus-tcp"
address = "ADDRESS"
volume = "edges"
[startup]
flash_s = 1
all_red_s = 2
phases = [2]
[sequence]
rings = [[2, 4]]
barriers = [[2], [4]]
[[phase]]
number = 2
min_green_s = 1
passage_s = 0.1
max1_s = 20
yellow_s = 3
red_clear_s = 0.9
approach_speed_kmh = 30
crossing_width_m = 1
[[phase]]
number = 4
min_green_s = 1
passage_s = 0.1
max1_s = 20
yellow_s = 3
red_clear_s = 0.9
approach_speed_kmh = 30
crossing_width_m = 1
[[detector]]
channel = 1
calls = [2]
[[detector]]
channel = 2
calls = [4]
[[plan]]
number = 1
mode = "free"
[schedule]
default_plan = 1
"#;

/// One probe cabinet's loop: call the phase at rest's rival, time the
/// first yellow write, repeat.
async fn probe_loop(state: Arc<Mutex<ProbeState>>, seed: u64, until: Instant, samples: Arc<Mutex<Vec<u64>>>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let last = |st: &Arc<Mutex<ProbeState>>| st.lock().unwrap().writes.back().copied();
    while Instant::now() < until {
        // Wait for a green at rest: one phase green, the other red, for 1.5 s.
        let Some((_, p2, p4)) = last(&state) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let resting = match (p2, p4) {
            (GREEN, _) => 2,
            (_, GREEN) => 4,
            _ => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        tokio::time::sleep(Duration::from_millis(1500 + rng.random_range(0..1000))).await;
        let still = last(&state).is_some_and(|(_, a, b)| if resting == 2 { a == GREEN } else { b == GREEN });
        if !still {
            continue;
        }
        let t0 = {
            let mut st = state.lock().unwrap();
            st.presence = if resting == 2 { 1 << 1 } else { 1 };
            Instant::now()
        };
        let deadline = t0 + Duration::from_secs(2);
        // The write's time is taken by the Modbus service as it arrives;
        // this loop only looks for it (coarsely, to stay out of the way).
        let t1 = loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let st = state.lock().unwrap();
            let hit =
                st.writes.iter().find(|(t, a, b)| *t >= t0 && if resting == 2 { *a == YELLOW } else { *b == YELLOW });
            if let Some((t, _, _)) = hit {
                break Some(*t);
            }
            if Instant::now() > deadline {
                break None;
            }
        };
        state.lock().unwrap().presence = 0;
        match t1 {
            Some(t1) => samples.lock().unwrap().push((t1 - t0).as_micros() as u64),
            None => eprintln!("probe: no yellow within 2 s of a call (controller not resting?)"),
        }
    }
}

fn latency(cabinets: usize, secs: u64) {
    println!(
        "== latency: detector change at the cabinet → output written ({cabinets} probe cabinets, {secs} s, loopback)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("controllers");
    std::fs::create_dir_all(&dir).unwrap();
    let mut states = Vec::new();
    for i in 0..cabinets {
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProbeState::default()));
        let probe = Probe { state: state.clone(), map: RegisterMap::default() };
        rt.spawn(async move {
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = |stream: tokio::net::TcpStream, _| {
                let probe = probe.clone();
                async move {
                    let _ = stream.set_nodelay(true);
                    Ok(Some((probe, stream)))
                }
            };
            let _ = server.serve(&on_connected, |_| {}).await;
        });
        let id = format!("probe-{i:03}");
        let text = PROBE_CONTROLLER.replace("ID", &id).replace("ADDRESS", &addr.to_string());
        std::fs::write(dir.join(format!("{id}.toml")), text).unwrap();
        states.push(state);
    }
    let daemon = greenwave()
        .args([
            "run",
            "--no-view",
            "--grpc-listen",
            "127.0.0.1:0",
            "--duration-s",
            &(secs + 5).to_string(),
            "--controllers",
        ])
        .arg(&dir)
        .current_dir(tmp.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start greenwave run");
    let _daemon = Killed(daemon);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = states
        .iter()
        .enumerate()
        .map(|(i, s)| rt.spawn(probe_loop(s.clone(), i as u64 + 1, until, samples.clone())))
        .collect();
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    let samples = samples.lock().unwrap();
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
    for s in samples.iter() {
        h.saturating_record(*s);
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let over = |ms: u64| samples.iter().filter(|s| **s > ms * 1000).count();
    println!("over one tick + 10 ms: {} of {} samples (over 2 ticks: {})", over(110), samples.len(), over(200));
    println!(
        "samples {}  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (tick 100 ms; target p99 ≤ 110 ms)",
        h.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
}

// ---- scale ------------------------------------------------------------------

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12) // utime, stime (fields 14 and 15 of stat)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The number after `"key":` inside the object after `"object":`.
fn json_number(json: &str, object: &str, key: &str) -> Option<f64> {
    let from = json.find(&format!("\"{object}\":"))?;
    let at = json[from..].find(&format!("\"{key}\":"))? + from + key.len() + 3;
    let end = json[at..].find([',', '}'])? + at;
    json[at..end].parse().ok()
}

fn scale(ns: &[usize]) {
    println!("== scale: N simulated cabinets (separate process) driven by one daemon at 10 Hz");
    let hz = clk_tck();
    let (warmup, measure) = (10u64, 30u64);
    let mut rows = Vec::new();
    for &n in ns {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("controllers");
        let mut sim = greenwave()
            .args(["sim-cabinet", "--listen", "127.0.0.1:0", "--count", &n.to_string(), "--write-controllers"])
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start greenwave sim-cabinet");
        let out = BufReader::new(sim.stdout.take().unwrap());
        let sim = Killed(sim);
        for line in out.lines().map_while(Result::ok) {
            if line == "ready" {
                break;
            }
        }
        let stats = tmp.path().join("stats.json");
        let daemon = greenwave()
            .args(["run", "--no-view", "--grpc-listen", "127.0.0.1:0", "--duration-s", &(warmup + measure).to_string()])
            .args(["--stats-warmup-s", &warmup.to_string(), "--stats-json"])
            .arg(&stats)
            .arg("--controllers")
            .arg(&dir)
            .current_dir(tmp.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start greenwave run");
        let pid = daemon.id();
        let mut daemon = Killed(daemon);
        std::thread::sleep(Duration::from_secs(warmup));
        let (c0, s0, t0) = (cpu_ticks(pid), cpu_ticks(sim.0.id()), Instant::now());
        std::thread::sleep(Duration::from_secs(measure - 2));
        let (c1, s1, t1) = (cpu_ticks(pid), cpu_ticks(sim.0.id()), Instant::now());
        let (rss, hwm) = (status_kb(pid, "VmRSS:"), status_kb(pid, "VmHWM:"));
        let dt = (t1 - t0).as_secs_f64();
        let cpu = (c1 - c0) as f64 / hz / dt * 100.0;
        let sim_cpu = (s1 - s0) as f64 / hz / dt * 100.0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        signal(&sim.0, "-TERM");
        let json = std::fs::read_to_string(&stats).unwrap_or_default();
        let jitter_p50 = json_number(&json, "jitter_after_warmup", "p50_us").unwrap_or(f64::NAN) / 1000.0;
        let jitter_p99 = json_number(&json, "jitter_after_warmup", "p99_us").unwrap_or(f64::NAN) / 1000.0;
        let jitter_max = json_number(&json, "jitter_after_warmup", "max_us").unwrap_or(f64::NAN) / 1000.0;
        let links = json_number(&json, "cabinets", "links_up").unwrap_or(f64::NAN);
        let reads = json_number(&json, "cabinets", "reads").unwrap_or(f64::NAN);
        let timeouts = json_number(&json, "cabinets", "timeouts").unwrap_or(f64::NAN);
        let rtt_p99 = json_number(&json, "rtt", "p99_us").unwrap_or(f64::NAN) / 1000.0;
        let overruns = json_number(&json, "overruns", "overruns").or_else(|| {
            let at = json.find("\"overruns\":")? + 11;
            json[at..].split([',', '}']).next()?.parse().ok()
        });
        rows.push(format!(
            "{n:>6} {cpu:>9.1}% {:>8.1} {:>8.1} {jitter_p50:>9.2} {jitter_p99:>9.2} {jitter_max:>9.2} {links:>6} {:>9.0} {timeouts:>8} {rtt_p99:>8.2} {:>7} {sim_cpu:>8.1}%",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            reads / (warmup + measure) as f64,
            overruns.map_or("?".into(), |o| format!("{o}")),
        ));
        println!("{}", rows.last().unwrap());
        let _ = wait_gone(&mut daemon);
        drop(sim);
    }
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9} {:>6} {:>9} {:>8} {:>8} {:>7} {:>9}",
        "N",
        "daemon CPU",
        "RSS MiB",
        "HWM MiB",
        "jit p50ms",
        "jit p99ms",
        "jit maxms",
        "links",
        "reads/s",
        "timeouts",
        "rtt p99",
        "overrun",
        "sim CPU"
    );
    for r in rows {
        println!("{r}");
    }
    println!("(CPU over {} s after a {warmup} s warm-up; 100% = one core; jitter after the warm-up)", measure - 2);
}

fn wait_gone(d: &mut Killed) -> Option<std::process::ExitStatus> {
    d.0.wait().ok()
}
