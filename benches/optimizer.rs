//! Worst-case and tail time of one adaptive optimizer call, 16 phases.
//!
//! A 4-ring, 16-phase controller (two barrier groups, two phases per ring
//! per group, pedestrians on half the phases) is re-planned a million
//! times from random cycle measurements; every call is timed into an
//! HdrHistogram. Budget on the project's 2-core machine: worst case ≤ 1 ms
//! (a tick is 100 ms, and the call runs once per cycle on the control thread).
//!
//! Run: `cargo bench --bench optimizer`.

use std::fmt::Write as _;
use std::time::Instant as Wall;

use greenwave::config;
use greenwave::core::MAX_PHASES;
use greenwave::core::adaptive::{CycleMeasure, Optimizer, Replan};
use greenwave::engine::latency::Percentiles;
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
    let (cfg, _) = config::load_intersection_str("sixteen.toml", &sixteen_phase_controller())
        .unwrap_or_else(|e| panic!("benchmark controller invalid: {e:#?}"));
    let spec = cfg.spec;
    let plan = spec.plan(1).expect("plan 1");
    let mut optimizer = Optimizer::new(&spec, Replan { cycle: plan.cycle, splits: plan.splits });
    let mut rng = SmallRng::seed_from_u64(3);
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds");
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
        let t0 = Wall::now();
        let r = optimizer.replan(&spec, &spec.adaptive, &m);
        h.saturating_record((t0.elapsed().as_nanos() as u64).max(1));
        checksum = checksum.wrapping_add(r.cycle.as_millis());
    }
    println!(
        "{CALLS} optimizer calls, 16 phases / 4 rings, random measurements (mean cycle {:.1} s)",
        checksum as f64 / CALLS as f64 / 1000.0
    );
    println!("replan: {}", Percentiles::of(&h));
}
