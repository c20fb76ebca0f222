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

use super::ids::{MAX_PHASES, PhaseId, PhaseSet};
use super::spec::{ControllerSpec, PlanSpec};
use super::time::{Instant, Span};

/// A phase starting this close before its window opens is still allowed to
/// start: tick quantisation makes barrier crossings land a few ticks early.
const WINDOW_TOLERANCE: Span = Span::from_secs(2);

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
    /// the time from now to that force-off.
    pub fn window(&self, p: PhaseId, c: Span, needed: Span) -> Option<Span> {
        let to_force_off = self.until(c, self.force_off[p.index()]);
        let mut window = self.until(self.window_open[p.index()], self.force_off[p.index()]);
        if window.is_zero() {
            window = self.cycle;
        }
        (to_force_off >= needed && to_force_off <= window + WINDOW_TOLERANCE).then_some(to_force_off)
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
