//! Coordination arithmetic: where each phase's split starts and is forced
//! off within the cycle, when a phase may still start, and when a
//! coordinated phase yields.
//!
//! **Offset reference.** Cycle zero is the start of the barrier group that
//! holds the coordinated phases (the group's first split), `offset` after the
//! coordination reference instant. With lagging lefts that is the start of
//! coordinated green (the TS2 reference); with leading lefts it is the start of
//! the leading lefts. Stated once here because SUMO users trip over exactly
//! this (sumo#17833).
//!
//! **Force-offs are fixed** (NTCIP `coordForceMode` fixed): a phase that
//! gaps out early gives its time to the phases after it in the ring, and the
//! coordinated phases return early and rest until their yield point.
//!
//! **Transition.** The cycle timer follows the active plan immediately; a
//! phase may only start while its window leaves room for its minimums, and a
//! coordinated phase only yields after it has been green inside its own split
//! in the current cycle. The first cycle after a change is therefore longer or
//! shorter, but never cuts a minimum, a pedestrian interval or a clearance.
//!
//! **Corridors.** An adaptive plan keeps its own cycle origin, so
//! neighbours drift apart. A [`CorridorTiming`] gives it a common cycle and
//! an offset: [`CorridorTiming::next_cycle`] picks each re-planned cycle's
//! length so that the cycle origin walks, by at most the engineer's
//! `max_cycle_step` per cycle, onto `reference + offset + k·cycle`.

use super::ids::{MAX_PHASES, PhaseId, PhaseSet};
use super::spec::{ControllerSpec, PlanSpec};
use super::time::{Instant, Span};

/// A phase starting this close outside its window is still allowed to
/// start. Early: tick quantisation makes barrier crossings land a few ticks
/// before the window opens. Late: a clearance held until the heads confirm
/// it (a slow or lossy cabinet link) ends a little after the split boundary,
/// so a phase whose split is exactly its minimum (the adaptive optimizer
/// gives a light phase just that) would find its window short by those
/// milliseconds every cycle and never be served. Starting late never cuts
/// the minimum: the phase is forced off when it has timed it, and the
/// phases after it in the ring give up the overrun.
const WINDOW_TOLERANCE: Span = Span::from_secs(2);

/// A common cycle and an offset imposed on an adaptive cycle-style plan (a
/// corridor's, or central's): its optimizer still splits each cycle by the
/// measured flows, but the cycle length is this one, and cycle zero (the
/// start of the coordinated barrier group, as above) lands `offset` after
/// `reference`, modulo `cycle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorridorTiming {
    pub cycle: Span,
    pub offset: Span,
    pub reference: Instant,
}

impl CorridorTiming {
    /// How far `origin` lies past the latest target origin
    /// (`reference + offset + k·cycle`), in `0..cycle`.
    pub fn lag(&self, origin: Instant) -> Span {
        let c = self.cycle.as_millis().max(1) as i128;
        let t = origin.as_millis() as i128 - self.reference.as_millis() as i128 - self.offset.as_millis() as i128;
        Span::from_millis(t.rem_euclid(c) as u64)
    }

    /// The length of the cycle that starts at `origin`, after a cycle of
    /// `previous`, inside `[lower, upper]` (which must hold `self.cycle`):
    /// 1. while `previous` is more than `step` away from the common cycle,
    ///    one `step` towards it (the optimizer's own ramp);
    /// 2. then the common cycle, shortened or lengthened (the shorter way,
    ///    the other if that one has no room) to close the origin's lag, by
    ///    at most `step` from both the common cycle and `previous`.
    ///
    /// Once the origin is on the grid the cycle is exactly the common one.
    pub fn next_cycle(&self, origin: Instant, previous: Span, lower: Span, upper: Span, step: Span) -> Span {
        let c = self.cycle;
        if previous + step < c {
            return (previous + step).clamp(lower, upper);
        }
        if previous > c + step {
            return (previous - step).clamp(lower, upper);
        }
        let lag = self.lag(origin);
        if lag.is_zero() {
            return c;
        }
        let lo = (c.saturating_sub(step)).max(previous.saturating_sub(step)).max(lower).min(c);
        let hi = (c + step).min(previous + step).min(upper).max(c);
        let (room_short, room_long) = (c - lo, hi - c);
        let (shorten, lengthen) = (lag, c - lag);
        if (shorten <= lengthen && !room_short.is_zero()) || room_long.is_zero() {
            c - shorten.min(room_short)
        } else {
            c + lengthen.min(room_long)
        }
    }
}

/// Precomputed cycle positions of one coordinated or fixed plan. Plain
/// arrays: built when a plan is activated, read every tick without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoordPlan {
    pub cycle: Span,
    pub offset: Span,
    /// Start of each phase's split, in cycle time.
    split_start: [Span; MAX_PHASES],
    /// Force-off point of each phase (end of split minus its clearance).
    force_off: [Span; MAX_PHASES],
    /// Per phase, where its window opens: the yield point of its ring's
    /// coordinated phase, or (rings with none, fixed time) the force-off of
    /// the phase before it in the ring.
    window_open: [Span; MAX_PHASES],
    pub coordinated: PhaseSet,
}

impl CoordPlan {
    /// `None` for free plans (no cycle).
    pub fn new(spec: &ControllerSpec, plan: &PlanSpec) -> Option<Self> {
        Self::from_splits(spec, plan.cycle, plan.offset, &plan.splits, plan.coordinated)
    }

    /// From a cycle and split table (a plan's, or the adaptive optimizer's).
    pub fn from_splits(
        spec: &ControllerSpec,
        cycle: Span,
        offset: Span,
        splits: &[Span; MAX_PHASES],
        coordinated: PhaseSet,
    ) -> Option<Self> {
        if cycle.is_zero() {
            return None;
        }
        let groups = spec.barrier_groups.len();
        let first_group = spec.barrier_groups.iter().position(|g| g.intersects(coordinated)).unwrap_or(0);
        let mut split_start = [Span::ZERO; MAX_PHASES];
        let mut force_off = [Span::ZERO; MAX_PHASES];
        let mut group_start = Span::ZERO;
        for k in 0..groups {
            let g = (first_group + k) % groups;
            let mut group_len = Span::ZERO;
            for ring in &spec.rings {
                let mut t = group_start;
                for &p in ring.sequence.iter().filter(|p| spec.barrier_groups[g].contains(**p)) {
                    let split = splits[p.index()];
                    let clearance = spec.phase(p).map(|ph| ph.timing.clearance()).unwrap_or_default();
                    split_start[p.index()] = t;
                    force_off[p.index()] = t + split.saturating_sub(clearance);
                    t += split;
                }
                group_len = group_len.max(t - group_start);
            }
            group_start += group_len;
        }
        let mut window_open = [Span::ZERO; MAX_PHASES];
        for ring in &spec.rings {
            let coordinated_phase = ring.sequence.iter().find(|p| coordinated.contains(**p));
            for (i, p) in ring.sequence.iter().enumerate() {
                let before = ring.sequence[(i + ring.sequence.len() - 1) % ring.sequence.len()];
                let opener = coordinated_phase.copied().unwrap_or(before);
                window_open[p.index()] = force_off[opener.index()];
            }
        }
        Some(CoordPlan { cycle, offset, split_start, force_off, window_open, coordinated })
    }

    /// Position in the cycle at `now`, given the coordination reference.
    pub fn cycle_time(&self, now: Instant, reference: Instant) -> Span {
        let c = self.cycle.as_millis() as i128;
        let t = now.as_millis() as i128 - reference.as_millis() as i128 - self.offset.as_millis() as i128;
        Span::from_millis(t.rem_euclid(c) as u64)
    }

    fn until(&self, from: Span, to: Span) -> Span {
        Span::from_millis(
            (to.as_millis() + self.cycle.as_millis() - from.as_millis() % self.cycle.as_millis())
                % self.cycle.as_millis(),
        )
    }

    /// If non-coordinated phase `p` may start at cycle time `c` and still
    /// time `needed` (min green, pedestrian service) before its force-off,
    /// give or take [`WINDOW_TOLERANCE`], the time from now to that
    /// force-off.
    pub fn window(&self, p: PhaseId, c: Span, needed: Span) -> Option<Span> {
        let to_force_off = self.until(c, self.force_off[p.index()]);
        let mut window = self.until(self.window_open[p.index()], self.force_off[p.index()]);
        if window.is_zero() {
            window = self.cycle;
        }
        (to_force_off + WINDOW_TOLERANCE >= needed && to_force_off <= window + WINDOW_TOLERANCE).then_some(to_force_off)
    }

    /// If coordinated phase `p` is inside its own split at cycle time `c`,
    /// the time from now to its yield point (its force-off).
    pub fn time_to_yield(&self, p: PhaseId, c: Span) -> Option<Span> {
        let (start, yield_at) = (self.split_start[p.index()], self.force_off[p.index()]);
        (c >= start && c < yield_at).then(|| yield_at - c)
    }

    pub fn force_off_point(&self, p: PhaseId) -> Span {
        self.force_off[p.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From any origin, cycles chosen by `next_cycle` put the origin on the
    /// corridor's grid within the shortest-way bound, each cycle within a
    /// step of the common one and of the one before, and then stay there.
    #[test]
    fn next_cycle_walks_any_origin_onto_the_grid_by_steps() {
        let (lower, upper, step) = (Span::from_secs(60), Span::from_secs(150), Span::from_secs(10));
        for cycle_s in [60u64, 90, 150] {
            let t = CorridorTiming {
                cycle: Span::from_secs(cycle_s),
                offset: Span::from_millis(23_700),
                reference: Instant::from_millis(1_000),
            };
            for start in (0..cycle_s * 1000).step_by(3_100) {
                let mut origin = Instant::from_millis(5_000_000 + start);
                let mut previous = t.cycle;
                let mut cycles = 0;
                while !t.lag(origin).is_zero() {
                    let next = t.next_cycle(origin, previous, lower, upper, step);
                    assert!(next >= lower && next <= upper, "{next} outside the bounds");
                    assert!(next.max(t.cycle) - next.min(t.cycle) <= step, "{next}: more than a step off the cycle");
                    assert!(next.max(previous) - next.min(previous) <= step, "{previous} → {next}");
                    origin += next;
                    previous = next;
                    cycles += 1;
                    assert!(cycles <= cycle_s.div_ceil(10) + 1, "cycle {cycle_s} s, start {start}: not aligned yet");
                }
                assert_eq!(t.next_cycle(origin, t.cycle, lower, upper, step), t.cycle, "aligned: the common cycle");
            }
        }
    }

    /// A phase whose split is exactly its minimum (the optimizer's share for
    /// a light movement) still starts when the clearance before it ends a
    /// little late, as a held clearance does every cycle on a slow link;
    /// past the tolerance it waits for the next cycle.
    #[test]
    fn a_minimum_split_still_opens_when_the_clearance_before_it_ends_late() {
        let spec = crate::core::testing::eight_phase();
        let phase = |n| PhaseId::new(n).unwrap();
        let (p3, p4) = (phase(3), phase(4));
        let min_green = spec.phase(p3).unwrap().timing.min_green;
        let mut splits = [Span::from_secs(20); MAX_PHASES];
        splits[p3.index()] = min_green + spec.phase(p3).unwrap().timing.clearance();
        splits[p4.index()] = Span::from_secs(40) - splits[p3.index()];
        let coord = CoordPlan::from_splits(&spec, Span::from_secs(80), Span::ZERO, &splits, PhaseSet::single(phase(2)))
            .expect("a cycle");
        let start = coord.split_start[p3.index()];
        assert_eq!(coord.window(p3, start, min_green), Some(min_green), "on time: the whole minimum");
        let late = start + Span::from_millis(300);
        assert_eq!(coord.window(p3, late, min_green), Some(min_green - Span::from_millis(300)), "300 ms late");
        assert_eq!(coord.window(p3, start + WINDOW_TOLERANCE + Span::from_millis(100), min_green), None);
    }

    /// A cycle far from the common one ramps by steps first.
    #[test]
    fn next_cycle_ramps_towards_the_common_cycle() {
        let t = CorridorTiming { cycle: Span::from_secs(120), offset: Span::ZERO, reference: Instant::ZERO };
        let (lower, upper, step) = (Span::from_secs(50), Span::from_secs(150), Span::from_secs(10));
        let origin = Instant::from_millis(7_000);
        assert_eq!(t.next_cycle(origin, Span::from_secs(80), lower, upper, step), Span::from_secs(90));
        assert_eq!(t.next_cycle(origin, Span::from_secs(145), lower, upper, step), Span::from_secs(135));
        assert_eq!(t.lag(Instant::from_millis(7_000)), Span::from_millis(7_000));
        // Lag 7 s of 120: the short way is to shorten by 7 s.
        assert_eq!(t.next_cycle(origin, Span::from_secs(120), lower, upper, step), Span::from_secs(113));
        // At the lower bound already: lengthen instead (by a step).
        let low = CorridorTiming { cycle: Span::from_secs(50), ..t };
        assert_eq!(low.next_cycle(origin, Span::from_secs(50), lower, upper, step), Span::from_secs(60));
    }
}
