//! Tick latency of one 8-phase intersection under random detector load.
//!
//! Measures what the engine does per intersection per tick — controller
//! tick plus the independent monitor's check of the frame — one million
//! times (about 28 simulated hours at 100 ms), each timed on its own into an
//! HdrHistogram, and prints p50 / p99 / p99.9 / max. Then the same for the
//! whole `Engine::tick` (channels, snapshot, event drain) with one and with
//! the three shipped intersections.
//!
//! Run: `cargo bench --bench tick` (budget on the project's 2-core machine:
//! p99.9 ≤ 10 µs, max ≤ 100 µs per intersection tick).

use std::path::Path;
use std::time::Instant as Wall;

use greenwave::config::{self, IntersectionConfig};
use greenwave::core::{Controller, InputFrame, Instant, Monitor, Span};
use greenwave::engine::latency::Percentiles;
use greenwave::engine::{Engine, EngineConfig};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::SmallRng};

const TICKS: u64 = 1_000_000;
const START: Instant = Instant::from_millis(1_767_571_200_000);

fn shipped() -> Vec<IntersectionConfig> {
    config::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/controllers")))
        .expect("shipped controllers are valid")
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// Random detector load: each tick every detector of the intersection
/// flips with probability 1/15 (a busy intersection: several changes per
/// tick), so the phase machine keeps calling, extending and terminating.
fn random_input(rng: &mut SmallRng, channels: &[u8], input: &mut InputFrame) {
    for &ch in channels {
        if rng.random_ratio(1, 15) {
            input.presence ^= 1 << (ch - 1);
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds")
}

fn report(name: &str, h: &Histogram<u64>) {
    println!("{name:<52} {}", Percentiles::of(h));
}

fn bench_controller(x: &IntersectionConfig) {
    let mut rng = SmallRng::seed_from_u64(7);
    let channels: Vec<u8> = x.spec.detectors.iter().map(|d| d.channel.number()).collect();
    let mut controller = Controller::new(x.spec.clone(), START);
    let mut monitor = Monitor::new(&x.spec);
    let mut input = InputFrame::default();
    let mut h = histogram();
    let mut now = START;
    let mut trips = 0u64;
    for _ in 0..TICKS {
        now += Span::from_millis(100);
        random_input(&mut rng, &channels, &mut input);
        let t0 = Wall::now();
        controller.handle_tick(now, &input);
        let ok = monitor.check(now, controller.output()).is_ok();
        let ns = t0.elapsed().as_nanos() as u64;
        h.saturating_record(ns.max(1));
        trips += u64::from(!ok);
        while controller.poll_event().is_some() {}
    }
    report(&format!("controller+monitor tick, {} ({} phases)", x.spec.id, x.spec.phases.len()), &h);
    assert_eq!(trips, 0, "monitor tripped during the benchmark");
}

fn bench_engine(configs: &[IntersectionConfig]) {
    let mut rng = SmallRng::seed_from_u64(11);
    let cfg = EngineConfig::default();
    let (mut engine, io) = Engine::new(configs.iter().map(|c| c.spec.clone()).collect(), cfg, START);
    let channels: Vec<Vec<u8>> =
        configs.iter().map(|c| c.spec.detectors.iter().map(|d| d.channel.number()).collect()).collect();
    let mut inputs = vec![InputFrame::default(); configs.len()];
    let mut h = histogram();
    let mut now = START;
    for _ in 0..TICKS / 4 {
        now += cfg.tick;
        for (i, input) in inputs.iter_mut().enumerate() {
            random_input(&mut rng, &channels[i], input);
            io.inputs.send((i, *input)).expect("engine alive");
        }
        let t0 = Wall::now();
        engine.tick(now);
        h.saturating_record((t0.elapsed().as_nanos() as u64).max(1));
        for rx in &io.outputs {
            while rx.try_recv().is_ok() {}
        }
        while io.events.try_recv().is_ok() {}
        while io.snapshots.try_recv().is_ok() {}
    }
    let ids: Vec<&str> = configs.iter().map(|c| c.spec.id.as_str()).collect();
    report(&format!("Engine::tick, {} intersection(s) {}", configs.len(), ids.join("+")), &h);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("tick benchmark: run with `cargo bench --bench tick`");
        return;
    }
    let configs = shipped();
    println!("{TICKS} ticks per controller, random detector load\n");
    for x in &configs {
        bench_controller(x);
    }
    let eight = configs.iter().find(|c| c.spec.phases.len() == 8).expect("an 8-phase controller ships");
    bench_engine(std::slice::from_ref(eight));
    bench_engine(&configs);
}
