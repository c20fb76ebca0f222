//! Corridors (`[[corridor]]`): one cycle and green-wave offsets for the
//! adaptive intersections along an arterial.
//!
//! Each adaptive intersection re-plans its own cycle, from its own origin,
//! so neighbours drift apart and no green wave forms. Once per period (the
//! longest cycle its members run now), on the control thread, a corridor:
//! 1. takes the **common cycle**: the largest cycle its members' optimizers
//!    want ([`crate::core::adaptive::Optimizer::wanted_cycle`]), rounded up
//!    to a whole second and kept inside what every member can run. It only
//!    grows at once; it shrinks when the largest wanted is more than
//!    [`SHRINK_DEADBAND`] below it (every change re-aligns the members);
//! 2. picks the **direction** of the wave: phase 2 (*forward*, from the
//!    first member towards the last) or phase 6 (*backward*), whichever
//!    carries more smoothed flow summed over the members; the other one
//!    must carry [`SWITCH_RATIO`] times more to turn the wave round;
//! 3. computes the **offsets** ([`offsets`]): the travel time from the
//!    wave's first member, modulo the cycle;
//! 4. sends each member [`Command::Corridor`]. Its controller then walks
//!    its cycle origin onto the offset by lengthening or shortening cycles
//!    within `max_cycle_step` ([`crate::core::coord::CorridorTiming`]).
//!
//! Members running a schedule-style adaptive plan (`src/core/schedule.rs`)
//! exchange instead, once a second ([`Corridor::exchange`]): each one's
//! projected outflow on the through phases becomes its neighbour's
//! projected arrivals, moved by the travel time between them — phase 2's
//! to the next member's phase 2, phase 6's to the previous member's
//! phase 6. A member that stops planning stops projecting, and its
//! neighbour's planner drops the data once it is stale.
//!
//! A projection reaches its neighbour's planner [`DELIVERY`] of control
//! time after it was sent ([`Deliveries`]), whether the neighbour runs in
//! this engine or in another daemon (over the broker, stamped with the
//! control time it was sent at): the same network split over daemons in
//! lockstep then plans exactly as one daemon does, as long as the broker
//! carries each projection within that delay (a later one is delivered
//! when it comes, and counted: `EngineStats::late_projections`).
//!
//! Only members running an adaptive plan in `style = "cycle"` take part
//! (at least two of them, or nothing is sent); the others keep the timing
//! they were sent last, which acts once they run such a plan. The
//! reference (cycle zero before offsets) is set, whenever the common cycle
//! changes, where the wave's first taking-part member's next cycle starts,
//! so that member needs no transition.
//!
//! Allocation-free once built: fixed `Vec`s sized at construction, reused.
//! A member refusing the timing (it cannot run the cycle) is logged once,
//! when it starts refusing.

use crossbeam_channel::Sender;

use super::{Intersection, Outflow};
use crate::core::adaptive::Optimizer;
use crate::core::coord::CorridorTiming;
use crate::core::schedule::{Projection, REPLAN};
use crate::core::{Command, Controller, Instant, PhaseId, Span};

/// The through movement from the first member towards the last: phase 2
/// (checked at compile time, as a constant).
pub const FORWARD_PHASE: PhaseId = PhaseId::from_index(1);
/// The through movement back, from the last member towards the first: phase 6.
pub const BACKWARD_PHASE: PhaseId = PhaseId::from_index(5);
/// The direction not served must carry this much more flow to turn the wave.
pub const SWITCH_RATIO: f32 = 1.1;
/// The common cycle shrinks only when the largest wanted is this far below.
pub const SHRINK_DEADBAND: Span = Span::from_secs(5);
/// Period while no member runs an adaptive cycle-style plan.
const IDLE_PERIOD: Span = Span::from_secs(60);
/// From sending a projected outflow to its neighbour's planner using it:
/// what the broker has, in control time, to carry it between daemons. A
/// lockstep simulation runs a second of control time in 50 ms or more of
/// real time (`docs/sil.md`); the broker on one host takes about one.
pub const DELIVERY: Span = Span::from_secs(1);
/// Projections waiting for their delivery time, per intersection: at most
/// two per inbound link are ever waiting (one sent each [`REPLAN`]), so
/// this holds four inbound links; more are dropped oldest first.
const WAITING: usize = 8;

/// Which way the green wave runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Phase 2: from the first member towards the last.
    Forward,
    /// Phase 6: from the last member towards the first.
    Backward,
}

/// Offsets of a one-way green wave: `reach[k]` is the travel time from the
/// first member to member `k` (`reach[0]` = 0). Forward, member `k` starts
/// its cycle `reach[k]` after the first; backward, `reach[last] − reach[k]`
/// after the last. Both modulo `cycle`.
pub fn offsets(reach: &[Span], cycle: Span, direction: Direction, out: &mut [Span]) {
    let total = reach.last().copied().unwrap_or_default();
    for (o, &r) in out.iter_mut().zip(reach) {
        let t = match direction {
            Direction::Forward => r,
            Direction::Backward => total - r,
        };
        *o = t.rem(cycle);
    }
}

/// The direction after comparing the two flows (vehicles per hour).
pub fn direction(current: Direction, forward_vph: f32, backward_vph: f32) -> Direction {
    match current {
        Direction::Forward if backward_vph > forward_vph * SWITCH_RATIO => Direction::Backward,
        Direction::Backward if forward_vph > backward_vph * SWITCH_RATIO => Direction::Forward,
        d => d,
    }
}

/// One corridor's state on the control thread.
#[derive(Debug)]
pub(super) struct Corridor {
    name: String,
    /// Engine indexes of the members, in order along the arterial; `None`
    /// for one another daemon runs (reached over the broker).
    members: Vec<Option<usize>>,
    /// Travel time from the first member to each.
    reach: Vec<Span>,
    /// Scratch: this period's offsets.
    offsets: Vec<Span>,
    /// Members refusing the timing now (logged when they start).
    refused: Vec<bool>,
    direction: Direction,
    timing: Option<(Span, Instant)>,
    next_at: Instant,
    next_exchange: Instant,
}

impl Corridor {
    pub(super) fn new(name: String, members: Vec<Option<usize>>, travel: &[Span]) -> Self {
        let mut reach = Vec::with_capacity(members.len());
        let mut t = Span::ZERO;
        reach.push(t);
        for &s in travel.iter().take(members.len().saturating_sub(1)) {
            t += s;
            reach.push(t);
        }
        let n = members.len();
        Corridor {
            name,
            members,
            reach,
            offsets: vec![Span::ZERO; n],
            refused: vec![false; n],
            direction: Direction::Forward,
            timing: None,
            next_at: Instant::ZERO,
            next_exchange: Instant::ZERO,
        }
    }

    /// Once a re-plan period: pass the schedule-style members' projected
    /// through outflows to their neighbours along the wave's phases; one
    /// bound for a member another daemon runs goes to `export` (the broker
    /// carries it, and that daemon adds the travel time).
    pub(super) fn exchange(&mut self, now: Instant, intersections: &mut [Intersection], export: &Sender<Outflow>) {
        if now < self.next_exchange {
            return;
        }
        self.next_exchange = now + REPLAN;
        for (k, pair) in self.members.windows(2).enumerate() {
            let travel = self.reach[k + 1] - self.reach[k];
            for (from, to, phase) in [(pair[0], pair[1], FORWARD_PHASE), (pair[1], pair[0], BACKWARD_PHASE)] {
                let Some(from) = from else { continue };
                let Some(projection) = intersections[from].controller.projected_outflow(phase) else { continue };
                match to {
                    Some(to) => {
                        intersections[to].deliveries.post(now + DELIVERY, phase, projection.after(travel));
                    }
                    // Full: the broker's side is behind; the next second's
                    // projection replaces this one anyway.
                    None => {
                        let _ = export.try_send(Outflow { intersection: from, phase, projection, sent: now });
                    }
                }
            }
        }
    }

    /// Once per period: choose the cycle, the direction and the offsets,
    /// and send them to the members among the engine's `intersections`.
    pub(super) fn update(&mut self, now: Instant, intersections: &mut [Intersection]) {
        if now < self.next_at {
            return;
        }
        let (fwd, bwd) = (FORWARD_PHASE.index(), BACKWARD_PHASE.index());
        let (mut wanted, mut lower, mut upper) = (Span::ZERO, Span::ZERO, Span::from_millis(u64::MAX));
        let (mut forward_vph, mut backward_vph) = (0.0f32, 0.0f32);
        let mut period = Span::ZERO;
        let mut taking_part = 0;
        for &i in self.members.iter().flatten() {
            let c = &intersections[i].controller;
            let (Some(opt), Some((_, length))) = (c.optimizer(), c.adaptive_cycle()) else { continue };
            taking_part += 1;
            wanted = wanted.max(opt.wanted_cycle());
            let (lo, hi) = Optimizer::cycle_limits(c.spec(), &c.spec().adaptive);
            (lower, upper) = (lower.max(lo), upper.min(hi));
            forward_vph += opt.flow_vph(fwd);
            backward_vph += opt.flow_vph(bwd);
            period = period.max(length);
        }
        self.next_at = now + if period.is_zero() { IDLE_PERIOD } else { period };
        if taking_part < 2 {
            return;
        }
        let mut cycle = Span::from_secs(wanted.as_millis().div_ceil(1000));
        if lower <= upper {
            // Members that cannot run it refuse (and are logged) otherwise.
            cycle = cycle.clamp(lower, upper);
        }
        self.direction = direction(self.direction, forward_vph, backward_vph);
        offsets(&self.reach, cycle, self.direction, &mut self.offsets);
        let reference = match self.timing {
            Some((current, reference)) if cycle <= current && cycle + SHRINK_DEADBAND >= current => {
                cycle = current;
                offsets(&self.reach, cycle, self.direction, &mut self.offsets);
                reference
            }
            _ => self.new_reference(cycle, intersections).unwrap_or(now),
        };
        self.timing = Some((cycle, reference));
        for (k, &i) in self.members.iter().enumerate() {
            let Some(i) = i else { continue };
            let c = &mut intersections[i].controller;
            let timing = CorridorTiming { cycle, offset: self.offsets[k], reference };
            match c.handle_command(now, Command::Corridor(Some(timing))) {
                Ok(()) => self.refused[k] = false,
                Err(e) => {
                    if !self.refused[k] {
                        // Rare (once per member and change): the control
                        // thread logs refused commands the same way.
                        tracing::warn!(corridor = %self.name, intersection = %c.spec().id, error = %e,
                            "corridor timing refused: this member keeps its own cycle");
                    }
                    self.refused[k] = true;
                }
            }
        }
    }

    /// A reference that puts the wave's first taking-part member's next
    /// cycle start on its offset.
    fn new_reference(&self, cycle: Span, intersections: &[Intersection]) -> Option<Instant> {
        let order = (0..self.members.len()).map(|k| match self.direction {
            Direction::Forward => k,
            Direction::Backward => self.members.len() - 1 - k,
        });
        for k in order {
            let Some(i) = self.members[k] else { continue };
            if let Some((origin, length)) = intersections[i].controller.adaptive_cycle() {
                let next = origin + length;
                let back = (self.offsets[k].as_millis() % cycle.as_millis().max(1)) as i128;
                return Some(Instant::from_millis((next.as_millis() as i128 - back).max(0) as u64));
            }
        }
        None
    }
}

/// One intersection's neighbours' projections waiting for their delivery
/// time (fixed capacity: posting and delivering allocate nothing).
#[derive(Debug, Default)]
pub(super) struct Deliveries {
    waiting: [Option<(Instant, PhaseId, Projection)>; WAITING],
}

impl Deliveries {
    /// Hold `projection` onto `phase` until `due`. When every slot is
    /// taken, the one due first gives way.
    pub(super) fn post(&mut self, due: Instant, phase: PhaseId, projection: Projection) {
        let slot = match self.waiting.iter().position(Option::is_none) {
            Some(free) => free,
            None => (0..WAITING).min_by_key(|&k| self.waiting[k].map(|(d, ..)| d)).unwrap_or(0),
        };
        self.waiting[slot] = Some((due, phase, projection));
    }

    /// Hand `controller` every projection due by `now`, in the order they
    /// fall due (a later one replaces what an earlier one said).
    pub(super) fn deliver(&mut self, now: Instant, controller: &mut Controller) {
        while let Some(k) = (0..WAITING)
            .filter(|&k| self.waiting[k].is_some_and(|(due, ..)| due <= now))
            .min_by_key(|&k| self.waiting[k].map(|(due, _, p)| (due, p.made)))
        {
            if let Some((_, phase, projection)) = self.waiting[k].take() {
                controller.expect_arrivals(phase, &projection);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::eight_phase;
    use crate::core::{DetectorChannel, InputFrame};
    use crate::engine::{Engine, EngineCommand, EngineConfig};
    use std::sync::atomic::Ordering;

    /// Two adaptive intersections in a corridor, run by the engine with
    /// heavier traffic on phase 2: they end up on one cycle with the
    /// downstream origin exactly the travel time (mod the cycle) after the
    /// upstream one.
    #[test]
    fn the_engine_puts_two_adaptive_members_on_a_forward_green_wave() {
        let t0 = Instant::from_millis(1_767_571_200_000);
        let (mut engine, io) = Engine::new(vec![eight_phase(), eight_phase()], EngineConfig::default(), t0);
        let travel = Span::from_millis(47_300);
        engine.add_corridor("test".into(), vec![Some(0), Some(1)], &[travel]);
        for i in 0..2 {
            let command = Command::SelectPlan(4);
            io.commands
                .send(EngineCommand::Controller { intersection: i, command, ticket: crate::engine::Ticket::NONE })
                .unwrap();
        }
        let mut now = t0;
        for t in 0..36_000u64 {
            now += Span::from_millis(100);
            for i in 0..2usize {
                let mut f = InputFrame::default();
                let sec = t / 10 + 3 * i as u64;
                for (ch, every) in [(2, 2), (6, 5), (4, 15), (8, 20)] {
                    f.set_presence(DetectorChannel::new(ch).unwrap(), sec.is_multiple_of(every));
                }
                let _ = io.inputs.try_send((i, f));
            }
            engine.tick(now);
            while io.events.try_recv().is_ok() {}
        }
        let (a, b) = (engine.controller(0), engine.controller(1));
        let (ta, tb) = (a.corridor().expect("member 0 has a timing"), b.corridor().expect("member 1 too"));
        assert_eq!(ta.cycle, tb.cycle);
        assert_eq!((ta.offset, tb.offset), (Span::ZERO, travel.rem(ta.cycle)), "forward: phase 2 is heavier");
        let (oa, la) = a.adaptive_cycle().unwrap();
        let (ob, lb) = b.adaptive_cycle().unwrap();
        assert_eq!((la, lb), (ta.cycle, ta.cycle), "both run the common cycle");
        assert_eq!((ta.lag(oa), tb.lag(ob)), (Span::ZERO, Span::ZERO), "both on their offsets");
        let apart = (ob.as_millis() as i128 - oa.as_millis() as i128).rem_euclid(ta.cycle.as_millis() as i128);
        assert_eq!(apart as u64, travel.rem(ta.cycle).as_millis());
    }

    /// Two schedule-style members: the upstream one's phase 2 carries a
    /// steady stream, a camera seeing its queue; the downstream one sees
    /// nothing on its own phase 2 loops and a call on phase 4 now and
    /// then. Told what is coming, the downstream member's plan counts the
    /// upstream's platoons, but holds no green for them: phase 2 gaps out
    /// for the side street as it does alone (holding for a platoon a link
    /// away measured 14-30% more delay in SIL, docs/sil.md).
    #[test]
    fn a_schedule_style_member_plans_for_the_platoon_its_neighbour_sends_and_holds_no_green_for_it() {
        let run = |joined: bool| {
            let t0 = Instant::from_millis(1_767_571_200_000);
            let (mut engine, io) = schedule_engine(2, joined.then_some([Some(0), Some(1)]), t0);
            let (mut now, mut longest, mut began, mut planned) = (t0, Span::ZERO, None, 0.0f64);
            for t in 0..18_000u64 {
                now += Span::from_millis(100);
                // A camera sees 8 vehicles queued on the upstream phase 2.
                let mut up = InputFrame { queued: 1 << 1, ..InputFrame::default() };
                up.queue[1] = 8;
                for (ch, every) in [(2, 2), (4, 20), (8, 20)] {
                    up.set_presence(DetectorChannel::new(ch).unwrap(), (t / 10).is_multiple_of(every));
                }
                let mut down = InputFrame::default();
                down.set_presence(DetectorChannel::new(4).unwrap(), (t / 10) % 30 < 2);
                let _ = io.inputs.try_send((0, up));
                let _ = io.inputs.try_send((1, down));
                engine.tick(now);
                planned += f64::from(engine.controller(1).planned_delay().unwrap_or(0.0));
                while let Ok((i, e)) = io.events.try_recv() {
                    if i != 1 || e.param != 2 {
                        continue;
                    }
                    match e.code {
                        crate::core::EventCode::PhaseBeginGreen => began = Some(e.at),
                        crate::core::EventCode::PhaseGreenTermination => {
                            if let Some(b) = began.take() {
                                longest = longest.max(e.at.since(b));
                            }
                        }
                        _ => {}
                    }
                }
            }
            (longest, planned)
        };
        let ((alone, planned_alone), (joined, planned_joined)) = (run(false), run(true));
        assert!(planned_joined > planned_alone * 1.5, "planned delay joined {planned_joined}, alone {planned_alone}");
        assert!(joined <= alone + Span::from_millis(100), "phase 2's longest green joined {joined}, alone {alone}");
    }

    /// One tick's inputs for two schedule-style members, varying second by
    /// second (a fixed hash of the second): a queued, busy phase 2 and 6
    /// upstream, lighter downstream, side-street calls at both.
    fn varied_inputs(t: u64) -> [InputFrame; 2] {
        let second = t / 10;
        let roll =
            |salt: u64| (second.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 59;
        let mut up = InputFrame { queued: 1 << 1, ..InputFrame::default() };
        up.queue[1] = (roll(1) % 12) as u16;
        let mut down = InputFrame::default();
        for (ch, up_odds, down_odds) in [(2, 20, 6), (6, 14, 20), (4, 4, 6), (8, 3, 4)] {
            up.set_presence(DetectorChannel::new(ch).unwrap(), roll(ch as u64 * 7) < up_odds);
            down.set_presence(DetectorChannel::new(ch).unwrap(), roll(ch as u64 * 13) < down_odds);
        }
        [up, down]
    }

    /// An engine of `n` schedule-style intersections running plan 4,
    /// with `corridor` (engine indexes per member, `None` where another
    /// engine runs it) when given, 20 s apart.
    fn schedule_engine(
        n: usize,
        corridor: Option<[Option<usize>; 2]>,
        t0: Instant,
    ) -> (Engine, crate::engine::EngineIo) {
        let mut spec = eight_phase();
        spec.adaptive.style = crate::core::spec::AdaptiveStyle::Schedule;
        let (mut engine, io) = Engine::new(vec![spec; n], EngineConfig::default(), t0);
        if let Some(members) = corridor {
            engine.add_corridor("test".into(), members.to_vec(), &[Span::from_secs(20)]);
        }
        for i in 0..n {
            let command = Command::SelectPlan(4);
            io.commands
                .send(EngineCommand::Controller { intersection: i, command, ticket: crate::engine::Ticket::NONE })
                .unwrap();
        }
        (engine, io)
    }

    /// What [`platoon_events`] saw of each member.
    struct Run {
        /// Events: code, phase, time.
        events: [Vec<(crate::core::EventCode, u16, Instant)>; 2],
        /// The planned delay after every tick.
        plans: [Vec<u32>; 2],
        late: u64,
    }

    /// Two schedule-style members with [`varied_inputs`], in one engine
    /// (`split` false; `lag` unused), or split over two whose outflows reach each other `lag` ticks after they are sent,
    /// as the broker carries them (`src/daemon/neighbours.rs`). Returns each
    /// member's events (code, phase, time), and the late projections counted.
    fn platoon_events(split: bool, lag: u64) -> Run {
        let t0 = Instant::from_millis(1_767_571_200_000);
        let parts: &[[Option<usize>; 2]] =
            if split { &[[Some(0), None], [None, Some(0)]] } else { &[[Some(0), Some(1)]] };
        let mut engines: Vec<_> =
            parts.iter().map(|m| schedule_engine(m.iter().flatten().count(), Some(*m), t0)).collect();
        // Member k runs in engine `home[k].0` at index `home[k].1`.
        let home = if split { [(0, 0), (1, 0)] } else { [(0, 0), (0, 1)] };
        // (tick it is handed over at, engine, command)
        let mut in_flight: Vec<(u64, usize, EngineCommand)> = Vec::new();
        let mut events: [Vec<(crate::core::EventCode, u16, Instant)>; 2] = Default::default();
        // Each member's planned delay after every tick.
        let mut plans: [Vec<u32>; 2] = Default::default();
        let mut now = t0;
        for t in 0..36_000u64 {
            now += Span::from_millis(100);
            for (k, frame) in varied_inputs(t).into_iter().enumerate() {
                let _ = engines[home[k].0].1.inputs.try_send((home[k].1, frame));
            }
            for (_, to, command) in in_flight.extract_if(.., |(at, ..)| *at <= t) {
                engines[to].1.commands.send(command).unwrap();
            }
            for (e, (engine, io)) in engines.iter_mut().enumerate() {
                engine.tick(now);
                for (k, &(he, i)) in home.iter().enumerate() {
                    if he == e {
                        let delay = engine.controller(i).planned_delay().unwrap_or(-1.0);
                        plans[k].push(delay.to_bits());
                    }
                }
                while let Ok((i, ev)) = io.events.try_recv() {
                    let k = home.iter().position(|&h| h == (e, i)).unwrap();
                    events[k].push((ev.code, ev.param, ev.at));
                }
                // Member 0's phase 2 flows to member 1, member 1's phase 6
                // back to member 0: each to the other engine's only one.
                while let Ok(o) = io.outflows.try_recv() {
                    let projection = o.projection.after(Span::from_secs(20));
                    let command = EngineCommand::Arrivals { intersection: 0, phase: o.phase, projection, sent: o.sent };
                    in_flight.push((t + lag, 1 - e, command));
                }
            }
        }
        let late = engines.iter().map(|(_, io)| io.stats.late_projections.load(Ordering::Relaxed)).sum();
        Run { events, plans, late }
    }

    /// A corridor split over two daemons plans exactly as in one, while the
    /// broker carries each projection within the delivery delay: the same
    /// events at the same control times. Later than that, it is counted.
    #[test]
    fn a_corridor_split_over_two_engines_runs_as_one_while_projections_come_in_time() {
        let one = platoon_events(false, 0);
        assert_eq!(one.late, 0);
        let greens = one.events[1].iter().filter(|e| e.0 == crate::core::EventCode::PhaseBeginGreen).count();
        assert!(greens > 150, "the downstream member cycles ({greens} greens)");
        for lag in [1, 5, 10] {
            let split = platoon_events(true, lag);
            assert_eq!(split.late, 0, "lag {lag} ticks");
            assert!(split.plans == one.plans, "lag {lag} ticks: the split corridor planned differently");
            assert!(split.events == one.events, "lag {lag} ticks: the split corridor ran differently");
        }
        let split = platoon_events(true, 12);
        assert!(split.late > 100, "1.2 s is past the delivery delay: {} late", split.late);
        assert!(split.plans != one.plans, "late projections change the plans");
    }

    fn s(secs: u64) -> Span {
        Span::from_secs(secs)
    }

    #[test]
    fn forward_offsets_are_cumulative_travel_mod_cycle() {
        let reach = [s(0), s(30), s(75), s(130)];
        let mut out = [Span::ZERO; 4];
        offsets(&reach, s(100), Direction::Forward, &mut out);
        assert_eq!(out, [s(0), s(30), s(75), s(30)]);
    }

    #[test]
    fn backward_offsets_count_from_the_last_member() {
        let reach = [s(0), s(30), s(75), s(130)];
        let mut out = [Span::ZERO; 4];
        offsets(&reach, s(100), Direction::Backward, &mut out);
        // 130, 100, 55, 0 s of travel from the last member, mod 100.
        assert_eq!(out, [s(30), s(0), s(55), s(0)]);
    }

    #[test]
    fn the_wave_turns_only_on_a_clear_majority() {
        assert_eq!(direction(Direction::Forward, 1000.0, 1050.0), Direction::Forward);
        assert_eq!(direction(Direction::Forward, 1000.0, 1200.0), Direction::Backward);
        assert_eq!(direction(Direction::Backward, 1050.0, 1000.0), Direction::Backward);
        assert_eq!(direction(Direction::Backward, 1200.0, 1000.0), Direction::Forward);
    }
}
