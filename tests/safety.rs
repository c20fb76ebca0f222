//! Safety properties over millions of random ticks.
//!
//! Every shipped controller is driven with random detector streams (busy,
//! sparse, stuck and chattering detectors), random operator and schedule
//! commands (plans, modes, flash, holds, calls, reloads, corridor timings)
//! and cabinet status changes. Two independent checkers watch every output frame:
//! - the core's [`Monitor`] (the software MMU: conflicts, yellow, red
//!   clearance, min green, walk and pedestrian clearance, no dark heads);
//! - this file's [`Observer`], written apart from both the phase machine and
//!   the monitor: conflicts from the validated conflict table, operator flash
//!   only through clearance, max green honoured, every call served within one
//!   maximum cycle.
//!
//! At least 3.2 million ticks run per test run (160 scenarios of 20,000 to
//! 32,000 ticks); the total is printed.

use std::path::Path;

use greenwave::config::{self, IntersectionConfig};
use greenwave::core::coord::CorridorTiming;
use greenwave::core::spec::{AdaptiveStyle, MaxSelect, PlanMode};
use greenwave::core::{
    CabinetStatus, Command, Controller, EventCode, FlashReason, Indication, InputFrame, Instant, Interval, MAX_PHASES,
    Monitor, OperatingMode, PhaseId, PhaseSet, Snapshot, Span, UnitState,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const TICK: Span = Span::from_millis(100);
const START: Instant = Instant::from_millis(1_767_571_200_000);
/// Random scenarios per run.
const CASES: u32 = 160;
/// Fewest ticks in a scenario.
const MIN_SCENARIO_TICKS: u32 = 20_000;
const MIN_TOTAL_TICKS: u64 = CASES as u64 * MIN_SCENARIO_TICKS as u64;

fn shipped() -> Vec<IntersectionConfig> {
    config::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/controllers")))
        .expect("shipped controllers are valid")
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// How one random scenario drives the detectors.
#[derive(Clone, Debug)]
struct Scenario {
    controller: usize,
    seed: u64,
    ticks: u32,
    /// Per tick, 1-in-N chance that a detector flips.
    flip_one_in: u32,
    /// Detector slots stuck on from the start (fault → recall).
    stuck: u64,
    /// Per tick, 1-in-N chance of a random command.
    command_one_in: u32,
}

fn scenario(controllers: usize) -> impl Strategy<Value = Scenario> {
    (
        0..controllers,
        any::<u64>(),
        MIN_SCENARIO_TICKS..32_000,
        prop_oneof![Just(3u32), Just(20), Just(200)],
        any::<u64>(),
        200u32..3_000,
    )
        .prop_map(|(controller, seed, ticks, flip_one_in, stuck_bits, command_one_in)| Scenario {
            controller,
            seed,
            ticks,
            flip_one_in,
            // Usually no stuck detector, sometimes one or two.
            stuck: if stuck_bits % 4 == 0 { stuck_bits & (stuck_bits >> 17) & 0xffff } else { 0 },
            command_one_in,
        })
}

/// A tiny deterministic generator for the per-tick draws (proptest picks
/// the scenario; drawing a million values through proptest would make every
/// case enormous to shrink).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn one_in(&mut self, n: u32) -> bool {
        self.next().is_multiple_of(n as u64)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The longest a ring-barrier cycle can take with every phase called and
/// extended to its max (or its pedestrian service).
fn max_cycle(x: &IntersectionConfig) -> Span {
    let spec = &x.spec;
    let mut total = Span::ZERO;
    for group in &spec.barrier_groups {
        let mut longest = Span::ZERO;
        for ring in &spec.rings {
            let mut t = Span::ZERO;
            for p in ring.sequence.iter().filter(|p| group.contains(**p)) {
                let timing = spec.phase(*p).unwrap().timing;
                let green = timing.max1.max(timing.max2).max(timing.min_green).max(timing.ped_service());
                t += green + timing.clearance();
            }
            longest = longest.max(t);
        }
        total += longest;
    }
    total
}

/// Checks written apart from the controller and the monitor.
struct Observer<'a> {
    x: &'a IntersectionConfig,
    previous: Option<Snapshot>,
    /// Per phase, since when its call has been waiting (counted from the
    /// later of registration and the last disturbance).
    waiting: [Option<Instant>; MAX_PHASES],
    /// Calls are only timed from here on (after commands, flash, holds).
    grace_until: Instant,
    call_bound: Span,
}

impl<'a> Observer<'a> {
    fn new(x: &'a IntersectionConfig) -> Self {
        // An adaptive plan may stretch its cycle up to the optimizer's bound.
        let longest_plan =
            x.spec.plans.iter().map(|p| p.cycle).max().unwrap_or_default().max(x.spec.adaptive.max_cycle);
        // Free: one max cycle. Coordinated or fixed: a call that just missed
        // its window waits for the next cycle's, and a plan transition can
        // stretch the first cycle; two plan cycles cover both.
        let call_bound = max_cycle(x).max(longest_plan + longest_plan) + Span::from_secs(1);
        Observer { x, previous: None, waiting: [None; MAX_PHASES], grace_until: START, call_bound }
    }

    fn disturbed(&mut self, now: Instant) {
        self.grace_until = now + self.call_bound;
        self.waiting = [None; MAX_PHASES];
    }

    fn check(&mut self, now: Instant, s: &Snapshot) -> Result<(), String> {
        let spec = &self.x.spec;
        // 1. Conflicts, from the validated conflict table.
        for a in spec.phases.iter() {
            if !s.output.phase(a.id).is_permissive() {
                continue;
            }
            for b in spec.conflicts[a.id.index()].iter() {
                if s.output.phase(b).is_permissive() {
                    return Err(format!("phases {} and {b} both green/yellow", a.id));
                }
            }
        }
        for ov in &spec.overlaps {
            if s.output.overlap(ov.id).is_permissive()
                && let Some(p) = ov.conflicts.iter().find(|p| s.output.phase(*p).is_permissive())
            {
                return Err(format!("overlap {} and conflicting phase {p} both green/yellow", ov.id));
            }
        }
        // 2. An orderly (operator) flash never cuts a green: greens end
        //    through yellow and red clearance first.
        if let (Some(prev), UnitState::Flash { reason: FlashReason::Operator, .. }) = (&self.previous, s.unit) {
            for p in spec.phases.iter() {
                let (was, is) = (prev.output.phase(p.id), s.output.phase(p.id));
                if was == Indication::Green && matches!(is, Indication::FlashingRed | Indication::FlashingYellow) {
                    return Err(format!("operator flash cut phase {}'s green", p.id));
                }
            }
        }
        // 3. Max green, once a conflicting call started the max timer
        //    (a transit priority request may add its bounded extension; a
        //    preemption dwell holds its phases as long as it is called).
        let plan = spec.plan(s.plan);
        let mode = s.plan_mode;
        for ring in s.rings.iter().take(s.ring_count as usize) {
            let (Interval::Green, Some(p), Some(max_elapsed)) = (ring.interval, ring.phase, ring.max_elapsed) else {
                continue;
            };
            let coordinated = plan.is_some_and(|pl| pl.coordinated.contains(p)) && mode != PlanMode::Free;
            if s.holds.contains(p) || coordinated || mode == PlanMode::Fixed || s.preempt.is_some() {
                continue;
            }
            let t = spec.phase(p).unwrap().timing;
            // Free-style adaptive sets maxima up to the engineer's max2.
            let max = match plan.map(|pl| pl.max_select).unwrap_or_default() {
                _ if s.adaptive => t.max1.max(t.max2),
                MaxSelect::Max1 => t.max1,
                MaxSelect::Max2 => t.max2,
            };
            let extension = if s.priority.contains(p) { spec.priority.max_extension } else { Span::ZERO };
            let allowed = max.max(t.ped_service()) + extension + TICK;
            if max_elapsed > allowed {
                return Err(format!("phase {p} green {max_elapsed} past its max timer start, allowed {allowed}"));
            }
        }
        // 4. Every call served within the bound.
        let running = s.unit == UnitState::Run && s.holds.is_empty() && s.preempt.is_none();
        if !running {
            self.disturbed(now);
        }
        for i in 0..MAX_PHASES {
            let p = PhaseId::from_index(i);
            let called = s.vehicle_calls.contains(p) || s.ped_calls.contains(p);
            let served = s.rings.iter().any(|r| r.phase == Some(p) && r.interval == Interval::Green);
            if !called || served || !running {
                self.waiting[i] = None;
                continue;
            }
            let since = *self.waiting[i].get_or_insert(now.max(self.grace_until));
            if now > since && now.since(since) > self.call_bound {
                return Err(format!(
                    "phase {p} called for {} without service (bound {})",
                    now.since(since),
                    self.call_bound
                ));
            }
        }
        self.previous = Some(*s);
        Ok(())
    }
}

fn random_command(rng: &mut Rng, x: &IntersectionConfig) -> Command {
    let phases: Vec<PhaseId> = x.spec.phases.iter().map(|p| p.id).collect();
    let pick = |rng: &mut Rng| PhaseSet::single(phases[rng.below(phases.len() as u64) as usize]);
    match rng.below(15) {
        10 | 11 if !x.spec.preempts.is_empty() => {
            let input = x.spec.preempts[rng.below(x.spec.preempts.len() as u64) as usize].input;
            Command::Preempt { input, active: rng.below(2) == 0 }
        }
        12 => Command::Priority { phase: phases[rng.below(phases.len() as u64) as usize], active: rng.below(3) != 0 },
        0 | 1 => Command::SelectPlan(x.spec.plans[rng.below(x.spec.plans.len() as u64) as usize].number),
        2 => Command::SetMode(
            [
                OperatingMode::Scheduled,
                OperatingMode::Actuated,
                OperatingMode::Coordinated,
                OperatingMode::Fixed,
                OperatingMode::Flash,
                OperatingMode::Adaptive,
            ][rng.below(6) as usize],
        ),
        3 => Command::SetMode(OperatingMode::Scheduled),
        4 => Command::Hold(pick(rng)),
        5 | 6 => Command::Release(x.spec.phase_set()),
        7 => Command::PlaceCall { vehicle: pick(rng), ped: pick(rng) },
        8 => {
            // A reload that also flips how adaptive plans run, so both
            // styles (and free style's per-decision queue rule, on the
            // advance loops that have one) are driven.
            let mut spec = x.spec.clone();
            spec.adaptive.style = if rng.below(2) == 0 { AdaptiveStyle::Cycle } else { AdaptiveStyle::Free };
            Command::LoadSpec(Box::new(spec))
        }
        13 | 14 => {
            // A corridor timing (or none), its cycle sometimes outside what
            // the intersection can run (refused), its offset anywhere.
            let (min, max) = (x.spec.adaptive.min_cycle.as_millis(), x.spec.adaptive.max_cycle.as_millis());
            let cycle = Span::from_millis(min.saturating_sub(10_000) + rng.below(max - min + 20_000));
            let timing = CorridorTiming {
                cycle,
                offset: Span::from_millis(rng.below(cycle.as_millis().max(1) * 2)),
                reference: Instant::from_millis(rng.below(1 << 40)),
            };
            Command::Corridor((rng.below(5) != 0).then_some(timing))
        }
        _ => Command::Restart,
    }
}

/// Run one scenario; returns the ticks run.
fn run_scenario(configs: &[IntersectionConfig], sc: &Scenario) -> Result<u64, TestCaseError> {
    let x = &configs[sc.controller];
    let mut rng = Rng(sc.seed | 1);
    let mut controller = Controller::new(x.spec.clone(), START);
    let mut monitor = Monitor::new(&x.spec);
    let mut observer = Observer::new(x);
    let mut input = InputFrame::default();
    for (slot, d) in x.spec.detectors.iter().enumerate() {
        if sc.stuck & (1 << slot) != 0 {
            input.set_presence(d.channel, true);
        }
    }
    let mut now = START;
    for tick in 0..sc.ticks {
        now += TICK;
        for (slot, d) in x.spec.detectors.iter().enumerate() {
            if sc.stuck & (1 << slot) == 0 && rng.one_in(sc.flip_one_in) {
                input.set_presence(d.channel, !input.is_present(d.channel));
            }
        }
        if rng.one_in(50) {
            // Cameras report queues on some channels (the adaptive layer's
            // pressure rule weighs them), now and then on none.
            let channels = x.spec.detectors.iter().fold(0u64, |m, d| m | 1 << d.channel.index());
            input.queued = rng.next() & channels;
            for d in &x.spec.detectors {
                input.queue[d.channel.index()] = rng.below(40) as u16;
            }
        }
        if rng.one_in(sc.command_one_in) {
            let cmd = random_command(&mut rng, x);
            let _ = controller.handle_command(now, cmd);
            observer.disturbed(now);
        }
        if rng.one_in(20_000) {
            // The technician flips the manual flash switch (and back later).
            input.cabinet = CabinetStatus { manual_flash: !input.cabinet.manual_flash, ..input.cabinet };
            observer.disturbed(now);
        }
        controller.handle_tick(now, &input);
        if let Err(fault) = monitor.check(now, controller.output()) {
            return Err(TestCaseError::fail(format!(
                "{}: monitor tripped at tick {tick}: {fault}\n{:#?}",
                x.spec.id,
                controller.snapshot()
            )));
        }
        let snap = controller.snapshot();
        observer
            .check(now, &snap)
            .map_err(|e| TestCaseError::fail(format!("{}: tick {tick}: {e}\n{snap:#?}", x.spec.id)))?;
        while let Some(e) = controller.poll_event() {
            if matches!(
                e.code,
                EventCode::CoordPatternChange | EventCode::UnitFlashStatusChange | EventCode::UnitControlStatusChange
            ) {
                observer.disturbed(now);
            }
        }
    }
    Ok(sc.ticks as u64)
}

#[test]
fn no_conflicts_full_clearances_minimums_max_and_service_over_millions_of_ticks() {
    let configs = shipped();
    let mut runner =
        TestRunner::new(Config { cases: CASES, max_shrink_iters: 32, failure_persistence: None, ..Config::default() });
    let total = std::cell::Cell::new(0u64);
    let per_controller = std::cell::RefCell::new(vec![0u64; configs.len()]);
    runner
        .run(&scenario(configs.len()), |sc| {
            let ticks = run_scenario(&configs, &sc)?;
            total.set(total.get() + ticks);
            per_controller.borrow_mut()[sc.controller] += ticks;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("safety property violated: {e}"));
    let total = total.get();
    println!("safety property test: {total} ticks, 0 violations");
    for (x, n) in configs.iter().zip(per_controller.borrow().iter()) {
        println!("  {}: {n} ticks", x.spec.id);
    }
    assert!(total >= MIN_TOTAL_TICKS, "only {total} ticks ran");
}
