//! Worst-case and tail time of the adaptive planners on the control thread.
//!
//! - **Optimizer** (once per cycle): a 4-ring, 16-phase controller (two
//!   barrier groups, two phases per ring per group, pedestrians on half the
//!   phases) is re-planned a million times from random cycle measurements.
//!   Budget: worst case ≤ 1 ms (a tick is 100 ms).
//! - **Schedule** (`style = "schedule"`, once a second): the shipped
//!   Broadway & 5th (8 phases, 2 rings) with two stop-bar lanes per phase
//!   (16 lanes) and an advance loop on each through phase, horizons of 60,
//!   90 and 120 s, dense random demand (queues up to 30 vehicles, flows up
//!   to 900 veh/h per lane, bursts at the advance loops, pedestrians),
//!   200,000 plans each, planned [`PASSES`] times over from the same seed.
//!   Budget: p99.9 ≤ 200 µs, worst ≤ 1 ms. Besides every call, it reports
//!   each input's fastest pass: the plan's own cost, which a preemption or
//!   a vCPU pause on one pass cannot inflate (both also land on the
//!   thread's CPU clock).
//!
//! Every call is timed into HdrHistograms (wall clock, and the thread's CPU
//! time: see `Timer`), on a thread that runs as the
//! daemon's control thread does (SCHED_FIFO 50, memory locked) where that
//! is granted, so that the worst case is the planner's and not another
//! process's time slice; the first line says what was granted.
//! `GW_BENCH_PRIORITY=normal` measures at normal priority instead. Like
//! the control thread, which sleeps between ticks, the loop rests 1 ms
//! after every 10 ms of planning (untimed): a real-time thread that never
//! sleeps is stopped 50 ms of every second by the kernel's real-time limit
//! (`sched_rt_runtime_us`), which measured as a 54 ms "worst plan" in every
//! run at SCHED_FIFO before it rested.
//!
//! Run: `cargo bench --bench optimizer`.

use std::fmt::Write as _;
use std::time::Instant as Wall;

use greenwave::config;
use greenwave::core::adaptive::{CycleMeasure, Optimizer, Replan};
use greenwave::core::schedule::{PhaseDemand, Scheduler};
use greenwave::core::{ControllerSpec, Instant, MAX_PHASES, PhaseSet, Span};
use greenwave::engine::latency::Percentiles;
use greenwave::realtime;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::SmallRng};

const CALLS: u64 = 1_000_000;

/// Four rings of four phases: ring r has phases 4r+1..4r+4, the first two
/// in barrier group 1, the last two in group 2.
fn sixteen_phase_controller() -> String {
    let mut t = String::from(
        "[intersection]\nid = \"sixteen\"\n[cabinet]\nkind = \"simulated\"\n[startup]\nflash_s = 6\nall_red_s = 4\nphases = [2, 6, 10, 14]\n[sequence]\nrings = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]\nbarriers = [[1, 2, 5, 6, 9, 10, 13, 14], [3, 4, 7, 8, 11, 12, 15, 16]]\n",
    );
    for n in 1..=16 {
        let ped = n % 2 == 0;
        let _ = write!(
            t,
            "[[phase]]\nnumber = {n}\nmin_green_s = 6\npassage_s = 2\nmax1_s = 40\nyellow_s = 4\nred_clear_s = 2\nrecall = \"min\"\napproach_speed_kmh = 50\ncrossing_width_m = 15\n{}",
            if ped { "walk_s = 7\nped_clear_s = 14\nped_crossing_m = 14\n" } else { "" }
        );
        let _ = write!(
            t,
            "[[detector]]\nchannel = {n}\ncalls = [{n}]\n[[detector]]\nchannel = {}\ncalls = [{n}]\n",
            n + 16
        );
    }
    let splits: Vec<String> = (1..=16).map(|n| format!("{n} = {}", if n % 2 == 0 { 40 } else { 20 })).collect();
    let _ = write!(
        t,
        "[[plan]]\nnumber = 1\nmode = \"adaptive\"\ncycle_s = 120\nsplits_s = {{ {} }}\ncoordinated = [2, 6, 10, 14]\n[schedule]\ndefault_plan = 1\n",
        splits.join(", ")
    );
    t
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("optimizer benchmark: run with `cargo bench --bench optimizer`");
        return;
    }
    as_control_thread();
    optimizer();
    for horizon in [60, 90, 120] {
        schedule(horizon);
    }
}

/// Raise this thread as `src/engine/mod.rs` raises the control thread, unless
/// `GW_BENCH_PRIORITY=normal`, and print what it got.
fn as_control_thread() {
    if std::env::var("GW_BENCH_PRIORITY").is_ok_and(|v| v == "normal") {
        println!("bench thread: normal priority (GW_BENCH_PRIORITY=normal)");
        return;
    }
    let memory =
        realtime::try_lock_memory().map_or_else(|e| format!("memory not locked ({e})"), |()| "memory locked".into());
    let priority = realtime::CONTROL_PRIORITY;
    let thread = realtime::set_fifo(priority)
        .map_or_else(|e| format!("normal priority (SCHED_FIFO refused: {e})"), |()| format!("SCHED_FIFO {priority}"));
    println!("bench thread: {thread}, {memory}, as the daemon's control thread");
}

/// Times each call twice: wall clock, and this thread's CPU time (which
/// leaves out time the thread was not running: preempted, or its vCPU taken
/// by the hypervisor, "steal", which `report` also gives for the run). The
/// planner's cost is the CPU time; the wall time is what the tick saw.
/// Rests 1 ms once 10 ms of work have run (see the module docs).
struct Timer {
    wall: Histogram<u64>,
    cpu: Histogram<u64>,
    worked_since: Wall,
    steal_before: Option<u64>,
}

impl Timer {
    fn new() -> Timer {
        let h = || Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds");
        Timer { wall: h(), cpu: h(), worked_since: Wall::now(), steal_before: steal_ms() }
    }

    /// Runs `work`, records it, and gives its result and its CPU time (ns).
    fn time<T>(&mut self, work: impl FnOnce() -> T) -> (T, u64) {
        let (w0, c0) = (Wall::now(), thread_cpu_ns());
        let out = work();
        let (c1, w1) = (thread_cpu_ns(), w0.elapsed());
        let cpu = c1.saturating_sub(c0).max(1);
        self.wall.saturating_record((w1.as_nanos() as u64).max(1));
        self.cpu.saturating_record(cpu);
        if self.worked_since.elapsed() >= std::time::Duration::from_millis(10) {
            std::thread::sleep(std::time::Duration::from_millis(1));
            self.worked_since = Wall::now();
        }
        (out, cpu)
    }

    fn report(&self, what: &str) {
        println!("{what} (wall): {}", Percentiles::of(&self.wall));
        println!("{what} (on CPU): {}", Percentiles::of(&self.cpu));
        if let (Some(before), Some(after)) = (self.steal_before, steal_ms()) {
            println!("host steal over the run, both vCPUs: {} ms", after.saturating_sub(before));
        }
    }
}

fn thread_cpu_ns() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// The hypervisor's steal time so far, ms (`/proc/stat`, USER_HZ = 100).
fn steal_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    cpu.split_whitespace().nth(8)?.parse::<u64>().ok().map(|ticks| ticks * 10)
}

fn optimizer() {
    let (cfg, _) = config::load_intersection_str("sixteen.toml", &sixteen_phase_controller())
        .unwrap_or_else(|e| panic!("benchmark controller invalid: {e:#?}"));
    let spec = cfg.spec;
    let plan = spec.plan(1).expect("plan 1");
    let mut optimizer = Optimizer::new(&spec, Replan { cycle: plan.cycle, splits: plan.splits });
    let mut rng = SmallRng::seed_from_u64(3);
    let mut timer = Timer::new();
    let mut checksum = 0u64;
    for _ in 0..CALLS {
        let cycle = optimizer.current().cycle;
        let mut m = CycleMeasure { elapsed: cycle, vehicles: [0; MAX_PHASES] };
        // Demand swings from nearly empty to beyond saturation, so the
        // cycle moves through its whole range and every branch runs.
        let load = rng.random_range(0.02..1.0f64);
        let most = ((cycle.as_millis() / 1000) as f64 * load) as u32;
        for v in m.vehicles.iter_mut() {
            *v = rng.random_range(0..=most);
        }
        let (r, _) = timer.time(|| optimizer.replan(&spec, &spec.adaptive, &m));
        checksum = checksum.wrapping_add(r.cycle.as_millis());
    }
    println!(
        "{CALLS} optimizer calls, 16 phases / 4 rings, random measurements (mean cycle {:.1} s)",
        checksum as f64 / CALLS as f64 / 1000.0
    );
    timer.report("replan");
}

const PLANS: u64 = 200_000;

/// Broadway & 5th as shipped, with a second stop-bar lane on every phase.
fn sixteen_lanes(horizon_s: u64) -> ControllerSpec {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/controllers/broadway-and-5th.toml");
    let text = std::fs::read_to_string(path).expect("shipped controller");
    let (cfg, _) = config::load_intersection_str(path, &text).unwrap_or_else(|e| panic!("{e:#?}"));
    let mut spec = cfg.spec;
    let stop_bars: Vec<_> = spec
        .detectors
        .iter()
        .filter(|d| d.placement == greenwave::core::spec::DetectorPlacement::StopBar && !d.calls.is_empty())
        .cloned()
        .collect();
    spec.detectors.extend(stop_bars);
    spec.adaptive.horizon = Span::from_secs(horizon_s);
    spec
}

/// The same plans run this many times over: the fastest pass of each is
/// the planner's own cost for that input, which a preemption or a
/// hypervisor pause on one pass cannot inflate.
const PASSES: usize = 3;

fn schedule(horizon_s: u64) {
    let spec = sixteen_lanes(horizon_s);
    let mut timer = Timer::new();
    let mut fastest = vec![u64::MAX; PLANS as usize];
    let mut slowest = vec![0u64; PLANS as usize];
    let mut held = [0u64; PASSES];
    let mut delay = [0f64; PASSES];
    for pass in 0..PASSES {
        let mut scheduler = Scheduler::new(&spec);
        let stages: Vec<PhaseSet> = scheduler.chain().stages().to_vec();
        let mut rng = SmallRng::seed_from_u64(horizon_s);
        let mut now = Instant::from_millis(1_000_000);
        for k in 0..PLANS as usize {
            now += Span::from_secs(1);
            let mut demand = [PhaseDemand::default(); MAX_PHASES];
            for ph in &spec.phases {
                let queue = rng.random_range(0..=30u16);
                demand[ph.id.index()] = PhaseDemand {
                    queue: Some(queue),
                    flow_vph: rng.random_range(0.0..1800.0),
                    called: queue > 0,
                    ped_called: rng.random_ratio(1, 4),
                };
                // Bursts at the advance loops over the last seconds.
                if rng.random_ratio(1, 2) {
                    scheduler.count(now, ph.id, rng.random_range(1..=4));
                }
            }
            let stage = stages[rng.random_range(0..stages.len())];
            let elapsed = Span::from_millis(rng.random_range(0..60_000));
            let ((), cpu) = timer.time(|| scheduler.plan(now, stage, elapsed, &demand));
            fastest[k] = fastest[k].min(cpu);
            slowest[k] = slowest[k].max(cpu);
            held[pass] += u64::from(stage.iter().any(|p| scheduler.holds(p, now) == Some(true)));
            delay[pass] += f64::from(scheduler.planned_delay());
        }
    }
    // Every pass planned the same: the passes time the same work.
    assert!(held.iter().all(|&h| h == held[0]) && delay.iter().all(|&d| d == delay[0]), "{held:?} {delay:?}");
    println!(
        "{PLANS} schedule plans × {PASSES} passes, 8 phases / 16 lanes, horizon {horizon_s} s, dense random demand ({:.0}% held the green)",
        held[0] as f64 * 100.0 / PLANS as f64
    );
    timer.report("plan");
    let mut per_input = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds");
    for &ns in &fastest {
        per_input.saturating_record(ns);
    }
    println!("plan, per input (the fastest of its {PASSES} passes, on CPU): {}", Percentiles::of(&per_input));
    let worst = (0..fastest.len()).max_by_key(|&k| slowest[k]).expect("plans");
    println!(
        "the slowest single call: plan {worst}, {:.1} µs; the fastest pass of the same input: {:.1} µs",
        slowest[worst] as f64 / 1000.0,
        fastest[worst] as f64 / 1000.0
    );
}
