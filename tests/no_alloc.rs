//! The control loop allocates nothing per tick.
//!
//! A counting global allocator counts allocations made on this thread while
//! armed. The engine ticks every shipped controller, fed by simulated
//! cabinets, through startup, plan changes (one intersection running its
//! adaptive plans schedule-driven, exchanging projected outflows with a
//! corridor neighbour and a remote one), a config reload, commands and
//! detector faults; only `Engine::tick` runs armed. Its own test binary,
//! because a global allocator is process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use greenwave::config;
use greenwave::core::spec::AdaptiveStyle;
use greenwave::core::{Command, Instant, OperatingMode, PhaseId, PhaseSet, Span};
use greenwave::engine::{Engine, EngineCommand, EngineConfig};
use greenwave::sim::SimCabinet;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: delegates every call to the system allocator unchanged; it only
// counts, and the thread-local it reads is const-initialised (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn armed<T>(f: impl FnOnce() -> T) -> T {
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    out
}

#[test]
fn engine_ticks_without_allocating() {
    // The counter itself works: an allocation while armed is seen.
    armed(|| drop(std::hint::black_box(Box::new(1u64))));
    assert_eq!(ALLOCATIONS.swap(0, Ordering::Relaxed), 2, "counting allocator sees alloc + dealloc");

    let mut configs: Vec<_> = config::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/controllers")))
        .expect("shipped controllers are valid")
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    // The first runs its adaptive plans schedule-driven (a plan a second;
    // the reload below keeps the style): in adaptive mode from step 2,000,
    // its coordinated plan 2 is adaptive from step 12,000 until the flash.
    configs[0].spec.adaptive.style = AdaptiveStyle::Schedule;
    // The first two are a corridor behind a member another daemon runs:
    // the first's projected outflows pass to the second in memory (its
    // planner keeps them), go out to the broker's channel towards the
    // remote member, and come back from it as commands.
    configs[1].spec.adaptive.style = AdaptiveStyle::Schedule;
    let tick = Span::from_millis(100);
    let start = Instant::from_millis(1_767_571_200_000);
    let cfg = EngineConfig { tick, ..EngineConfig::default() };
    let (mut engine, io) = Engine::new(configs.iter().map(|c| c.spec.clone()).collect(), cfg, start);
    engine.add_corridor("test".into(), vec![None, Some(0), Some(1)], &[Span::from_secs(30), Span::from_secs(25)]);
    let mut cabinets: Vec<SimCabinet> = configs.iter().map(|c| SimCabinet::new(&c.traffic)).collect();
    let mut frames: Vec<_> = (0..configs.len()).map(|i| *engine.controller(i).output()).collect();

    let mut now = start;
    let (mut counted_ticks, mut exported) = (0u64, 0u64);
    for step in 0..72_000u64 {
        // Outside the armed window: the cabinets' side and the readers.
        for (i, cab) in cabinets.iter_mut().enumerate() {
            io.inputs.send((i, cab.exchange(now, &frames[i]))).unwrap();
        }
        match step {
            // Staged changes, all applied at safe points inside armed ticks.
            2_000 => send(&io, 0, Command::SetMode(OperatingMode::Adaptive)),
            12_000 => send(&io, 0, Command::SelectPlan(2)),
            20_000 => send(&io, 1, Command::SetMode(OperatingMode::Fixed)),
            25_000 => send(&io, 0, Command::LoadSpec(Box::new(configs[0].spec.clone()))),
            30_000 => send(&io, 2, Command::Hold(PhaseSet::single(PhaseId::new(2).unwrap()))),
            31_000 => send(&io, 2, Command::Release(PhaseSet::single(PhaseId::new(2).unwrap()))),
            40_000 => send(&io, 0, Command::SetMode(OperatingMode::Flash)),
            45_000 => send(&io, 0, Command::SetMode(OperatingMode::Scheduled)),
            _ => {}
        }
        // Warm-up: the first ticks fill channel buffers and lazily
        // initialised statics (thread-locals, the clock).
        if step < 1_000 {
            engine.tick(now);
        } else {
            armed(|| engine.tick(now));
            counted_ticks += 1;
        }
        for (i, rx) in io.outputs.iter().enumerate() {
            while let Ok(msg) = rx.try_recv() {
                frames[i] = msg.frame;
            }
        }
        while let Ok(out) = io.outflows.try_recv() {
            // The remote member's phase 2 projection comes back, as its
            // daemon's exchange would send one.
            let (phase, projection) = (PhaseId::new(2).unwrap(), out.projection.after(Span::from_secs(30)));
            let arrivals = EngineCommand::Arrivals { intersection: 0, phase, projection, sent: out.sent };
            io.commands.send(arrivals).unwrap();
            exported += 1;
        }
        while io.events.try_recv().is_ok() {}
        while io.snapshots.try_recv().is_ok() {}
        while io.retired.try_recv().is_ok() {}
        if step % 100 == 0 {
            io.latency.latest();
        }
        now += tick;
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(io.stats.monitor_trips.load(Ordering::Relaxed), 0);
    assert!(io.latency.latest().0.count > 0, "latency was published while running");
    assert!(counted_ticks > 70_000);
    assert!(exported > 1_000, "intersection 0 projected towards its remote neighbour: {exported}");
    println!("{counted_ticks} engine ticks × {} intersections: {allocations} allocations", configs.len());
    assert_eq!(allocations, 0, "allocations inside Engine::tick");
}

fn send(io: &greenwave::engine::EngineIo, intersection: usize, command: Command) {
    io.commands
        .send(EngineCommand::Controller { intersection, command, ticket: greenwave::engine::Ticket::NONE })
        .unwrap();
}
