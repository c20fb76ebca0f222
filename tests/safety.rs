//! Safety properties over millions of random ticks.
//!
//! Every shipped controller is driven with random detector streams (busy,
//! sparse, stuck and chattering detectors), in half the scenarios with
//! conditional service on every phase that can have it ([`with_conditional_service`])
//! and uneven rates across detectors,
//! random operator and schedule
//! commands (plans, modes, flash, holds, omits, calls, preemptions,
//! reloads, corridor timings), cabinet status changes and, in most scenarios, random
//! cabinet preemption and transit priority inputs ([`CabinetInputs`]:
//! several at once, chattering under the debounce, toggling, stuck on past
//! their maximum presence). Most scenarios also put a random cabinet
//! link between the controller and the heads ([`Link`]): each frame lands
//! late by a random delay, or is lost, sometimes for a whole stall, and the
//! cabinet confirms what it applied; the controller times its minimums from
//! those confirmations. Independent checkers watch every frame:
//! - the core's [`Monitor`] (the software MMU: conflicts, yellow, red
//!   clearance, min green, walk and pedestrian clearance, the pedestrian
//!   countdown never under-reading the clearance, no dark heads), on the
//!   frames as the controller decided them and, a second one, on the
//!   frames as the heads showed them, at the times they landed ([`Heads`],
//!   which also checks the start-up all red; the countdown is checked on
//!   the decided frames only, [`Heads::land`] says why);
//! - this file's [`Observer`], written apart from both the phase machine and
//!   the monitor: conflicts from the validated conflict table (a flashing
//!   yellow arrow only while its opposing through is green, and with
//!   nothing else its left conflicts with), operator flash
//!   only through clearance, max green honoured, every call served within one
//!   maximum cycle (plus what the link holds back; on links a cabinet
//!   keeps, [`Link::keeps_service`]), and a phase served twice in a barrier
//!   group only by its conditional service.
//!
//! At least 3.2 million ticks run per test run (160 scenarios of 20,000 to
//! 32,000 ticks); the total is printed.

use std::collections::VecDeque;
use std::path::Path;

use greenwave::config::{self, IntersectionConfig};
use greenwave::core::coord::CorridorTiming;
use greenwave::core::spec::{AdaptiveStyle, MaxSelect, PlanMode};
use greenwave::core::{
    CabinetStatus, Command, Controller, Countdown, EventCode, FlashReason, FrameAck, Indication, InputFrame, Instant,
    Interval, MAX_PHASES, MAX_RINGS, Monitor, OperatingMode, OutputFrame, PedIndication, PhaseId, PhaseSet,
    PreemptStage, Snapshot, Span, UnitState,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const TICK: Span = Span::from_millis(100);
const START: Instant = Instant::from_millis(1_767_571_200_000);
/// Random scenarios per run of the test command; `GW_SAFETY_CASES=N` runs a
/// longer campaign (docs/safety.md).
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
    /// The cabinet link to the heads; `None`: frames shown as decided.
    link: Option<Link>,
    /// The cabinet's preemption and priority inputs; `None`: all off.
    cabinet_inputs: Option<CabinetInputs>,
    /// Conditional service on every phase that can have it, and uneven
    /// traffic to exercise it.
    conditional_service: bool,
}

/// Random cabinet preemption and transit priority inputs, drawn from a
/// generator of their own (so the scenarios found before them replay as
/// they were).
#[derive(Clone, Copy, Debug)]
struct CabinetInputs {
    /// Per tick and preemption input, 1-in-N chance that it flips (3:
    /// chattering under any debounce; several inputs are often on at once,
    /// so ranks take over and wait).
    preempt_flip_one_in: u32,
    /// Preemption inputs stuck on from the start (bit `n - 1` for input
    /// `n`): faulted past their maximum presence, or preempting for good.
    preempt_stuck: u8,
    /// Per tick and phase, 1-in-N chance that its priority input flips.
    priority_flip_one_in: u32,
}

impl CabinetInputs {
    /// This tick's inputs from the previous ones; true if any changed.
    fn step(&self, rng: &mut Rng, x: &IntersectionConfig, input: &mut InputFrame) -> bool {
        let before = (input.preempt, input.priority);
        for p in &x.spec.preempts {
            let bit = 1u8 << (p.input - 1);
            if self.preempt_stuck & bit != 0 {
                input.preempt |= bit;
            } else if rng.one_in(self.preempt_flip_one_in) {
                input.preempt ^= bit;
            }
        }
        for ph in &x.spec.phases {
            if rng.one_in(self.priority_flip_one_in) {
                input.priority = PhaseSet::from_bits(input.priority.bits() ^ PhaseSet::single(ph.id).bits());
            }
        }
        before != (input.preempt, input.priority)
    }
}

/// How frames travel to the heads: each lands `0..=max_delay` late (never
/// before the one written earlier), is lost one time in `loss_one_in`, and
/// one tick in `stall_one_in` starts a stall that loses every frame for up
/// to `max_stall`. The cabinet confirms a frame when it lands.
#[derive(Clone, Copy, Debug)]
struct Link {
    max_delay: Span,
    loss_one_in: u32,
    stall_one_in: u32,
    max_stall: Span,
}

impl Link {
    /// A link a cabinet keeps: every frame lands within two ticks, few are
    /// lost. Harsher ones hold every interval back far enough that a tight
    /// coordinated or fixed cycle can run out of room for a phase (safe, and
    /// said by the cabinet's slow-link warning, but not served within the
    /// observer's bound), so only the safety checks apply to them.
    fn keeps_service(&self) -> bool {
        self.max_delay <= Span::from_millis(200) && self.loss_one_in >= 10 && self.max_stall <= Span::from_millis(300)
    }
}

fn scenario(controllers: usize) -> impl Strategy<Value = Scenario> {
    (
        0..controllers,
        any::<u64>(),
        MIN_SCENARIO_TICKS..32_000,
        prop_oneof![Just(3u32), Just(20), Just(200)],
        any::<u64>(),
        200u32..3_000,
        prop_oneof![
            1 => Just(None),
            3 => (0u64..=450, 2u32..50, 200u32..5_000, 0u64..=900).prop_map(|(delay, loss, stall, stall_ms)| Some(Link {
                max_delay: Span::from_millis(delay),
                loss_one_in: loss,
                stall_one_in: stall,
                max_stall: Span::from_millis(stall_ms),
            })),
        ],
        prop_oneof![
            1 => Just(None),
            3 => (prop_oneof![Just(3u32), Just(400), Just(4_000)], any::<u8>(), prop_oneof![Just(500u32), Just(5_000)])
                .prop_map(|(flip, stuck_bits, priority)| Some(CabinetInputs {
                    preempt_flip_one_in: flip,
                    // Usually none stuck, sometimes one or two.
                    preempt_stuck: if stuck_bits % 4 == 0 { stuck_bits & (stuck_bits >> 3) } else { 0 },
                    priority_flip_one_in: priority,
                })),
        ],
        any::<bool>(),
    )
        .prop_map(
            |(
                controller,
                seed,
                ticks,
                flip_one_in,
                stuck_bits,
                command_one_in,
                link,
                cabinet_inputs,
                conditional_service,
            )| {
                Scenario {
                    controller,
                    seed,
                    ticks,
                    flip_one_in,
                    // Usually no stuck detector, sometimes one or two.
                    stuck: if stuck_bits % 4 == 0 { stuck_bits & (stuck_bits >> 17) & 0xffff } else { 0 },
                    command_one_in,
                    link,
                    cabinet_inputs,
                    conditional_service,
                }
            },
        )
}

/// `x` with conditional service on every phase that has a later phase of
/// its ring in its barrier group and a concurrent ring there, each at
/// its least minimum or up to 5 s more (drawn from `rng`).
fn with_conditional_service(x: &IntersectionConfig, rng: &mut Rng) -> IntersectionConfig {
    let mut x = x.clone();
    let spec = &mut x.spec;
    for i in 0..spec.phases.len() {
        let (id, r, g) = (spec.phases[i].id, spec.phases[i].ring, spec.phases[i].group);
        let group = spec.barrier_groups[g];
        let sequence = &spec.rings[r].sequence;
        let later = sequence.iter().skip_while(|p| **p != id).skip(1).any(|p| group.contains(*p));
        let concurrent =
            spec.rings.iter().enumerate().any(|(o, ring)| o != r && ring.sequence.iter().any(|p| group.contains(*p)));
        if later && concurrent {
            let t = &mut spec.phases[i].timing;
            let least = t.min_green + t.clearance();
            t.conditional_service = Some(least + Span::from_millis(rng.below(5_001)));
        }
    }
    x
}

/// The heads at the far end of a [`Link`]: frames land in order, each
/// checked by a monitor of its own at the time it lands.
struct Heads<'a> {
    x: &'a IntersectionConfig,
    link: Link,
    monitor: Monitor,
    /// Written, not yet landed: when it lands, its number, the frame.
    in_flight: VecDeque<(Instant, u64, OutputFrame)>,
    last_landing: Instant,
    stalled_until: Instant,
    confirmed: Option<FrameAck>,
    /// Since when every vehicle head has shown red after a flash (the
    /// start-up or flash-exit all red), if it does.
    all_red_since: Option<Instant>,
    after_flash: bool,
}

impl<'a> Heads<'a> {
    fn new(x: &'a IntersectionConfig, link: Link) -> Self {
        Heads {
            x,
            link,
            monitor: Monitor::new(&x.spec),
            in_flight: VecDeque::new(),
            last_landing: START,
            stalled_until: START,
            confirmed: None,
            all_red_since: None,
            after_flash: true,
        }
    }

    /// The controller wrote frame `number` at `now`.
    fn write(&mut self, rng: &mut Rng, now: Instant, number: u64, frame: &OutputFrame) {
        if rng.one_in(self.link.stall_one_in) {
            self.stalled_until = now + Span::from_millis(rng.below(self.link.max_stall.as_millis() + 1));
        }
        if now < self.stalled_until || rng.one_in(self.link.loss_one_in) {
            return;
        }
        let lands = (now + Span::from_millis(rng.below(self.link.max_delay.as_millis() + 1))).max(self.last_landing);
        self.last_landing = lands;
        self.in_flight.push_back((lands, number, *frame));
    }

    /// Lands what is due by `now`; returns the newest confirmation.
    fn land(&mut self, now: Instant) -> Result<Option<FrameAck>, String> {
        while let Some(&(at, number, frame)) = self.in_flight.front().filter(|f| f.0 <= now) {
            self.in_flight.pop_front();
            // The countdown is checked on the frames as decided (its
            // promise is the controller's own end of the clearance): at the
            // heads a write that lands late or is lost holds the flashing
            // don't walk on under the last number landed, as it holds
            // every indication, so no number written could bound it there.
            let indications = OutputFrame { ped_countdown: [Countdown::BLANK; MAX_PHASES], ..frame };
            self.monitor.check(at, &indications).map_err(|f| format!("at the heads, {at}: {f}"))?;
            self.check_all_red(at, &frame)?;
            self.confirmed = Some(FrameAck { frame: number, at });
        }
        Ok(self.confirmed)
    }

    /// The all red after a flash lasts the start-up all red at the heads.
    fn check_all_red(&mut self, at: Instant, frame: &OutputFrame) -> Result<(), String> {
        let phases = || self.x.spec.phases.iter().map(|p| frame.phase(p.id));
        if phases().any(|i| matches!(i, Indication::FlashingRed | Indication::FlashingYellow)) {
            self.after_flash = true;
            self.all_red_since = None;
        } else if self.after_flash && phases().all(|i| i == Indication::Red) {
            self.all_red_since.get_or_insert(at);
        } else if self.after_flash && phases().any(|i| i == Indication::Green) {
            let shown = self.all_red_since.map_or(Span::ZERO, |s| at.since(s));
            let required = self.x.spec.startup.all_red;
            if shown < required {
                return Err(format!("at the heads, {at}: the all red after flash lasted {shown}, needs {required}"));
            }
            self.after_flash = false;
        }
        Ok(())
    }
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
                let green =
                    timing.max1.max(timing.max2).max(timing.service(true)).max(timing.walk + timing.extended_ped_clear);
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
    late: Span,
    /// Check that every call is served within `call_bound`.
    liveness: bool,
    /// The preemption entering (input), since when, while the unit runs.
    entering: Option<(u8, Instant)>,
    /// Per ring, the barrier group and sequence position of its latest
    /// green start (forgotten outside normal running).
    served: [Option<(usize, usize)>; MAX_RINGS],
    /// Per ring, the phase it decided to serve again (its green's yellow
    /// named it next).
    re_serving: [Option<PhaseId>; MAX_RINGS],
    /// Greens served again in their barrier group (conditional service).
    re_served: u64,
}

impl<'a> Observer<'a> {
    /// `late`: the most a link can hold a frame back (delay plus stall).
    fn new(x: &'a IntersectionConfig, late: Span, liveness: bool) -> Self {
        // An adaptive plan may stretch its cycle up to the optimizer's bound.
        let longest_plan =
            x.spec.plans.iter().map(|p| p.cycle).max().unwrap_or_default().max(x.spec.adaptive.max_cycle);
        // Free: one max cycle. Coordinated or fixed: a call that just missed
        // its window waits for the next cycle's, and a plan transition can
        // stretch the first cycle; two plan cycles cover both.
        // Each interval of a cycle can be held back by a late link (about
        // five per phase served, counting the ones other rings run).
        let intervals = 5 * x.spec.phases.len() as u64;
        let call_bound = max_cycle(x).max(longest_plan + longest_plan)
            + Span::from_secs(1)
            + Span::from_millis(intervals * (late + TICK).as_millis());
        let waiting = [None; MAX_PHASES];
        Observer {
            x,
            previous: None,
            waiting,
            grace_until: START,
            call_bound,
            late,
            liveness,
            entering: None,
            served: [None; MAX_RINGS],
            re_serving: [None; MAX_RINGS],
            re_served: 0,
        }
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
        // A walk or pedestrian clearance (a leading walk shows it on a red
        // vehicle head) is its phase's movement too.
        for a in spec.phases.iter() {
            if !matches!(s.output.ped(a.id), PedIndication::Walk | PedIndication::FlashingDontWalk) {
                continue;
            }
            if let Some(b) = spec.conflicts[a.id.index()].iter().find(|b| s.output.phase(*b).is_permissive()) {
                return Err(format!("pedestrians of phase {} walk while conflicting phase {b} is green/yellow", a.id));
            }
        }
        for ov in &spec.overlaps {
            if s.output.overlap(ov.id).is_permissive()
                && let Some(p) = ov.conflicts.iter().find(|p| s.output.phase(*p).is_permissive())
            {
                // A flashing yellow arrow's steady yellow ends its permissive
                // movement together with the opposing through's yellow (its
                // protected yellow never meets that: the two share a ring).
                let ending = ov.permissive_phase() == Some(p)
                    && s.output.overlap(ov.id) == Indication::Yellow
                    && s.output.phase(p) == Indication::Yellow;
                if !ending {
                    return Err(format!("overlap {} and conflicting phase {p} both green/yellow", ov.id));
                }
            }
            // A flashing yellow arrow: only while its opposing through is
            // green (no yellow trap), and never with what the left yields
            // to nothing for.
            if let Some(opposing) = ov.permissive_phase()
                && s.output.overlap(ov.id) == Indication::FlashingYellow
                && s.unit == UnitState::Run
            {
                if s.output.phase(opposing) != Indication::Green {
                    return Err(format!("overlap {} flashes while opposing phase {opposing} is not green", ov.id));
                }
                if let Some(p) = ov.permissive_conflicts().iter().find(|p| s.output.phase(*p).is_permissive()) {
                    return Err(format!("overlap {}'s flashing yellow arrow with conflicting phase {p}", ov.id));
                }
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
            // Max green is checked in free operation only. Coordinated, a
            // phase's window can open before its split (at the force-off
            // of a skipped phase before it, or in a transition); at its max
            // with no other phase's window open it rests in green until
            // one opens, within its split's force-off (src/core/coord.rs).
            let windowed = mode == PlanMode::Coordinated;
            if s.holds.contains(p) || coordinated || windowed || mode == PlanMode::Fixed || s.preempt.is_some() {
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
            // Minimums and pedestrian intervals run until the heads have
            // shown them: a late link stretches them past the max timer.
            let held_back =
                if self.late.is_zero() { Span::ZERO } else { Span::from_millis(2 * (self.late + TICK).as_millis()) };
            // An extended pedestrian clearance may hold green longer.
            let ped = t.ped_service().max(t.walk + t.extended_ped_clear);
            let allowed = max.max(ped) + extension + TICK + held_back;
            if max_elapsed > allowed {
                return Err(format!("phase {p} green {max_elapsed} past its max timer start, allowed {allowed}"));
            }
        }
        // 4. A preemption entering (track clearance included) reaches its
        //    dwell within the bound while the unit runs: no ring waits for a
        //    barrier that the greens the preemption holds never reach.
        let entering = s
            .preempt
            .filter(|p| matches!(p.stage, PreemptStage::Entry | PreemptStage::TrackClearance))
            .filter(|_| s.unit == UnitState::Run);
        self.entering = entering.map(|p| match self.entering {
            Some((input, since)) if input == p.input => (input, since),
            _ => (p.input, now),
        });
        if let Some((input, since)) = self.entering
            && self.liveness
            && now.since(since) > self.call_bound
        {
            return Err(format!("preemption {input} entering for {} (bound {})", now.since(since), self.call_bound));
        }
        // 5. A ring serves its phases in sequence order within a barrier
        //    group; only a phase with conditional service comes again, and
        //    only while another ring's green of the group still runs (a
        //    preemption serves its phases in any order; start-up and flash
        //    begin anew).
        self.check_sequence(s)?;
        // 6. Every call served within the bound.
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
            if self.liveness && now > since && now.since(since) > self.call_bound {
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

impl Observer<'_> {
    /// The controller crossed a barrier (Indiana 31, logged before the
    /// greens it starts): every ring's sequence starts anew, in the same
    /// barrier group too.
    fn crossed_barrier(&mut self) {
        self.served = [None; MAX_RINGS];
        self.re_serving = [None; MAX_RINGS];
    }

    /// Check 5: a green whose place in its ring's sequence is not after
    /// the ring's latest in the barrier group is a re-service, decided as
    /// the green before it ended (its yellow names it next): only for a
    /// phase with conditional service, and only while another ring's
    /// green of the group runs on.
    fn check_sequence(&mut self, s: &Snapshot) -> Result<(), String> {
        let normal = |s: &Snapshot| s.unit == UnitState::Run && s.preempt.is_none();
        let Some(prev) = self.previous.filter(|p| normal(p) && normal(s)) else {
            self.served = [None; MAX_RINGS];
            self.re_serving = [None; MAX_RINGS];
            return Ok(());
        };
        let spec = &self.x.spec;
        let rings = s.ring_count as usize;
        let place = |r: usize, p: PhaseId| {
            let phase = spec.phase(p)?;
            Some((phase.group, spec.rings[r].sequence.iter().position(|q| *q == p)?))
        };
        for (r, ring) in s.rings.iter().enumerate().take(rings) {
            let was = prev.rings[r];
            let began = |i: Interval| ring.interval == i && (was.interval != i || was.phase != ring.phase);
            if began(Interval::Yellow)
                && let Some(next) = ring.next
                && let Some((group, pos)) = place(r, next)
                && self.served[r].is_some_and(|(g, last)| g == group && pos <= last)
            {
                if spec.phase(next).is_none_or(|ph| ph.timing.conditional_service.is_none()) {
                    return Err(format!(
                        "phase {next} to be served again in its barrier group without conditional service"
                    ));
                }
                let runs_on = s.rings.iter().enumerate().take(rings).any(|(o, q)| {
                    o != r
                        && q.interval == Interval::Green
                        && q.phase.and_then(|q| place(o, q)).is_some_and(|(g, _)| g == group)
                });
                if !runs_on {
                    return Err(format!("phase {next} to be served again with no other ring's green in its group"));
                }
                self.re_serving[r] = Some(next);
                self.re_served += 1;
            }
            if began(Interval::Green)
                && let Some(p) = ring.phase
                && let Some((group, pos)) = place(r, p)
            {
                let again = self.served[r].is_some_and(|(g, last)| g == group && pos <= last);
                if again && self.re_serving[r] != Some(p) {
                    return Err(format!("phase {p} served again in its barrier group out of turn"));
                }
                if !again {
                    self.served[r] = Some((group, pos));
                }
                self.re_serving[r] = None;
            }
        }
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
        5 => Command::Release(x.spec.phase_set()),
        // An operator omit of one phase (any: the plan's coordinated
        // phases are served regardless), or the omits cleared.
        6 => Command::Omit(if rng.below(2) == 0 { pick(rng) } else { PhaseSet::EMPTY }),
        7 => Command::PlaceCall { vehicle: pick(rng), ped: pick(rng) },
        8 => {
            // A reload that also flips how adaptive plans run, so every
            // style (free style's per-decision queue rule and the schedule
            // style's plan, on the advance loops that feed them) is driven.
            let mut spec = x.spec.clone();
            spec.adaptive.style = match rng.below(3) {
                0 => AdaptiveStyle::Cycle,
                1 => AdaptiveStyle::Free,
                _ => AdaptiveStyle::Schedule,
            };
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
/// What one scenario ran: ticks, and the events it drove of the intervals
/// added since the test began (preemption entries, track clearances,
/// stuck inputs faulted, flashing yellow arrows; Indiana 105, 106, 110,
/// 32), so the run shows they were exercised.
#[derive(Clone, Copy, Debug, Default)]
struct Ran {
    ticks: u64,
    counted: [u64; 4],
    /// Frames showing a pedestrian countdown, summed over crossings (the
    /// monitor checks each against the clearance's end).
    countdowns: u64,
    /// Conditional services ([`Observer::re_served`]).
    re_served: u64,
}

const COUNTED: [EventCode; 4] = [
    EventCode::PreemptEntryStarted,
    EventCode::PreemptBeginTrackClearance,
    EventCode::PreemptMaxPresenceExceeded,
    EventCode::FyaBeginPermissive,
];

fn run_scenario(configs: &[IntersectionConfig], sc: &Scenario) -> Result<Ran, TestCaseError> {
    let mut ran = Ran { ticks: sc.ticks as u64, ..Ran::default() };
    let conditional;
    let mut conditional_rng = Rng((sc.seed ^ 0x5851_f42d) | 1);
    let x = match sc.conditional_service {
        true => {
            conditional = with_conditional_service(&configs[sc.controller], &mut conditional_rng);
            &conditional
        }
        false => &configs[sc.controller],
    };
    // Per detector, 1-in-N chance a tick that it flips. With conditional
    // service, uneven traffic (each detector 1, 4 or 16 times quieter):
    // a through gapping out beside one that runs on, with a left waiting,
    // is what re-serves a phase, and even traffic seldom makes it.
    let flip: Vec<u32> = x
        .spec
        .detectors
        .iter()
        .map(|_| match sc.conditional_service {
            true => sc.flip_one_in * [1, 4, 16][conditional_rng.below(3) as usize],
            false => sc.flip_one_in,
        })
        .collect();
    let mut rng = Rng(sc.seed | 1);
    let mut controller = Controller::new(x.spec.clone(), START);
    let mut monitor = Monitor::new(&x.spec);
    let late = sc.link.map_or(Span::ZERO, |l| l.max_delay + l.max_stall);
    let mut observer = Observer::new(x, late, sc.link.is_none_or(|l| l.keeps_service()));
    let mut heads = sc.link.map(|link| Heads::new(x, link));
    if heads.is_some() {
        controller.confirm_by_cabinet(true);
    }
    let mut input = InputFrame::default();
    let mut inputs_rng = Rng((sc.seed ^ 0x9e37_79b9_7f4a_7c15) | 1);
    for (slot, d) in x.spec.detectors.iter().enumerate() {
        if sc.stuck & (1 << slot) != 0 {
            input.set_presence(d.channel, true);
        }
    }
    let mut now = START;
    for tick in 0..sc.ticks {
        now += TICK;
        for (slot, d) in x.spec.detectors.iter().enumerate() {
            if sc.stuck & (1 << slot) == 0 && rng.one_in(flip[slot]) {
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
        if let Some(ci) = &sc.cabinet_inputs
            && ci.step(&mut inputs_rng, x, &mut input)
        {
            observer.disturbed(now);
        }
        if rng.one_in(20_000) {
            // The technician flips the manual flash switch (and back later).
            input.cabinet = CabinetStatus { manual_flash: !input.cabinet.manual_flash, ..input.cabinet };
            observer.disturbed(now);
        }
        if let Some(h) = &mut heads {
            input.ack = h.land(now).map_err(|e| TestCaseError::fail(format!("{}: tick {tick}: {e}", x.spec.id)))?;
        }
        controller.handle_tick(now, &input);
        if let Some(h) = &mut heads {
            h.write(&mut rng, now, controller.frame(), controller.output());
        }
        if let Err(fault) = monitor.check(now, controller.output()) {
            return Err(TestCaseError::fail(format!(
                "{}: monitor tripped at tick {tick}: {fault}\n{:#?}",
                x.spec.id,
                controller.snapshot()
            )));
        }
        ran.countdowns += controller.output().ped_countdown.iter().filter(|c| !c.is_blank()).count() as u64;
        while let Some(e) = controller.poll_event() {
            if let Some(k) = COUNTED.iter().position(|&c| c == e.code) {
                ran.counted[k] += 1;
            }
            if matches!(
                e.code,
                EventCode::CoordPatternChange | EventCode::UnitFlashStatusChange | EventCode::UnitControlStatusChange
            ) {
                observer.disturbed(now);
            }
            if e.code == EventCode::BarrierTermination {
                observer.crossed_barrier();
            }
        }
        let snap = controller.snapshot();
        observer
            .check(now, &snap)
            .map_err(|e| TestCaseError::fail(format!("{}: tick {tick}: {e}\n{snap:#?}", x.spec.id)))?;
    }
    ran.re_served = observer.re_served;
    Ok(ran)
}

#[test]
fn no_conflicts_full_clearances_minimums_max_and_service_over_millions_of_ticks() {
    let configs = shipped();
    let cases = std::env::var("GW_SAFETY_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(CASES).max(CASES);
    let mut runner =
        TestRunner::new(Config { cases, max_shrink_iters: 32, failure_persistence: None, ..Config::default() });
    let total = std::cell::Cell::new(0u64);
    let per_controller = std::cell::RefCell::new(vec![0u64; configs.len()]);
    let counted = std::cell::Cell::new([0u64; 4]);
    let countdowns = std::cell::Cell::new(0u64);
    let re_served = std::cell::Cell::new(0u64);
    runner
        .run(&scenario(configs.len()), |sc| {
            let ran = run_scenario(&configs, &sc)?;
            total.set(total.get() + ran.ticks);
            per_controller.borrow_mut()[sc.controller] += ran.ticks;
            counted.set(std::array::from_fn(|k| counted.get()[k] + ran.counted[k]));
            countdowns.set(countdowns.get() + ran.countdowns);
            re_served.set(re_served.get() + ran.re_served);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("safety property violated: {e}"));
    let total = total.get();
    let [entries, track_clearances, stuck, arrows] = counted.get();
    println!("safety property test: {total} ticks, 0 violations");
    println!(
        "  preemption: {entries} entries (105), {track_clearances} track clearances (106), \
         {stuck} stuck inputs faulted (110)"
    );
    println!("  pedestrian countdown: {} crossing-ticks counted down, none under-read", countdowns.get());
    println!("  flashing yellow arrows: {arrows} permissive intervals (32)");
    println!("  conditional service: {} phases served again before the barrier", re_served.get());
    for (x, n) in configs.iter().zip(per_controller.borrow().iter()) {
        println!("  {}: {n} ticks", x.spec.id);
    }
    assert!(total >= MIN_TOTAL_TICKS, "only {total} ticks ran");
    assert!(countdowns.get() > 0, "no pedestrian clearance counted down: the countdown check never ran");
}

/// Found by CI (8b7ae75): on Broadway & 5th's adaptive coordinated plan
/// 5, camera queues weigh the pressure rule so phase 3 gets exactly its
/// minimum split, and the lossy link holds phase 2's clearance ~0.3 s past
/// the split boundary; phase 3's window was then short of its min green
/// every cycle and its call waited forever (297.3 s against the bound of
/// 297.2 s when the observer stopped it). `src/core/coord.rs` now lets a
/// phase start up to `WINDOW_TOLERANCE` late, minimum uncut.
#[test]
fn a_light_phase_at_its_minimum_split_is_served_when_clearances_end_late() {
    let sc = Scenario {
        controller: 0,
        seed: 5142684480762667289,
        ticks: 31848,
        flip_one_in: 200,
        stuck: 0,
        command_one_in: 2650,
        cabinet_inputs: None,
        conditional_service: false,
        link: Some(Link {
            max_delay: Span::from_millis(196),
            loss_one_in: 14,
            stall_one_in: 1758,
            max_stall: Span::from_millis(109),
        }),
    };
    run_scenario(&shipped(), &sc).expect("every call served within the bound");
}

/// Found by two 8,000-scenario campaigns: Broadway & 5th switched to
/// coordinated mode on plan 4 (a fixed plan, no coordinated phase). In a
/// transition phase 4 started at cycle 41 s, well before its split (58–90
/// s); in step phase 8 started at 48.5 s, its window opened by phase 7's
/// force-off with 7 skipped. At their 30 s max no other phase's window was
/// open, so each rested in green past it (31.3 and 32.7 s against the
/// observer's 31.3 and 32.7 s, rounded) until the next window opened.
#[test]
fn a_phase_started_before_its_split_rests_in_green_until_a_window_opens() {
    let in_step = Scenario {
        controller: 0,
        seed: 3889647614365933397,
        ticks: 31689,
        flip_one_in: 200,
        stuck: 0,
        command_one_in: 1124,
        cabinet_inputs: None,
        conditional_service: false,
        link: Some(Link {
            max_delay: Span::from_millis(344),
            loss_one_in: 41,
            stall_one_in: 2765,
            max_stall: Span::from_millis(835),
        }),
    };
    run_scenario(&shipped(), &in_step).expect("no violation in step");
    let sc = Scenario {
        controller: 0,
        seed: 2895751430904532584,
        ticks: 30805,
        flip_one_in: 200,
        stuck: 0,
        command_one_in: 450,
        cabinet_inputs: None,
        conditional_service: false,
        link: Some(Link {
            max_delay: Span::from_millis(336),
            loss_one_in: 25,
            stall_one_in: 3921,
            max_stall: Span::from_millis(148),
        }),
    };
    run_scenario(&shipped(), &sc).expect("no violation");
}
