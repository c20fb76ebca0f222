//! The adaptive optimizer: once per cycle, a new cycle length and split
//! table from the flows the detectors measured, inside the engineer's
//! bounds and the safety envelope.
//!
//! # Method
//! Per phase, the measured flow `q` (vehicles per hour, smoothed over
//! cycles) over its saturation flow `s` (per lane × lanes, the lanes being
//! its stop-bar detectors) gives the flow ratio `y = q / s`. Per barrier
//! group the critical ring is the one with the largest `Σy`; `Y` sums the
//! groups' critical ratios and `L` their lost time (clearances plus start-up
//! loss). Webster's cycle `C = (1.5 L + 5) / (1 − Y)` is clamped to the
//! engineer's `[min_cycle, max_cycle]`, to the sum of every ring's minimum
//! splits, and to `max_step` of change per cycle, so the plan never thrashes.
//! The time above the minimums goes to barrier groups in proportion to
//! their critical `Y` and, inside a group, to each ring's phases in
//! proportion to their `y`, so every ring crosses each barrier at the same
//! moment. Minimum splits include min green, the full pedestrian service
//! where the phase has pedestrians, yellow and red clearance: a split the
//! optimizer hands out never needs the controller to cut anything, and the
//! controller still enforces every minimum on its own.
//!
//! # Imposed cycle
//! [`Optimizer::replan_to`] plans a cycle given from outside (a corridor's
//! common cycle, see [`super::coord::CorridorTiming`]) instead of
//! Webster's: the splits still follow the measured flows. The cycle Webster
//! wants is kept ([`Optimizer::wanted_cycle`]) so a corridor can pick the
//! largest its members want.
//!
//! # Cost
//! Fixed arrays, a few passes over at most 16 phases: bounded, allocation
//! free, and measured by `benches/optimizer.rs`. It runs on the control
//! thread at the cycle boundary.

use super::ids::{MAX_DETECTORS, MAX_PHASES, PhaseSet};
use super::spec::{AdaptiveSpec, ControllerSpec, DetectorKind, DetectorPlacement, DetectorSpec, PhaseTiming};
use super::time::Span;

/// What the detectors saw during one cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CycleMeasure {
    pub elapsed: Span,
    /// Vehicles counted per phase (by phase index).
    pub vehicles: [u32; MAX_PHASES],
}

/// The optimizer's output: a cycle and a split per phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replan {
    pub cycle: Span,
    pub splits: [Span; MAX_PHASES],
}

/// Per-intersection optimizer state (smoothed flows, the plan in force).
#[derive(Clone, Copy, Debug)]
pub struct Optimizer {
    flow_vph: [f32; MAX_PHASES],
    lanes: [u8; MAX_PHASES],
    /// For each detector slot, the phase its count is credited to.
    credit: [Option<u8>; MAX_DETECTORS],
    seeded: bool,
    current: Replan,
    /// Webster's cycle at the last re-plan, within the bounds (no step limit).
    wanted: Span,
}

/// Splits are handed out in tenths of a second, like controller timers.
const RESOLUTION_MS: u64 = 100;

impl Optimizer {
    /// Start from `start` (the plan in force) for `spec`.
    pub fn new(spec: &ControllerSpec, start: Replan) -> Self {
        let mut lanes = [0u8; MAX_PHASES];
        let mut credit = [None; MAX_DETECTORS];
        // Flows are counted at the stop bar, where every vehicle crosses one
        // loop exactly once, and each stop-bar loop is a lane. A phase with
        // advance loops only is counted there instead.
        let phase_of = |d: &DetectorSpec| match d.kind {
            DetectorKind::Vehicle => d.calls.iter().next().or(d.extends.iter().next()),
            DetectorKind::Pedestrian => None,
        };
        let stop_bar_phases: PhaseSet =
            spec.detectors.iter().filter(|d| d.placement == DetectorPlacement::StopBar).filter_map(phase_of).collect();
        for (slot, d) in spec.detectors.iter().enumerate().take(MAX_DETECTORS) {
            let Some(p) = phase_of(d) else { continue };
            if d.placement == DetectorPlacement::Advance && stop_bar_phases.contains(p) {
                continue;
            }
            credit[slot] = Some(p.index() as u8);
            lanes[p.index()] = lanes[p.index()].saturating_add(1);
        }
        Optimizer { flow_vph: [0.0; MAX_PHASES], lanes, credit, seeded: false, current: start, wanted: start.cycle }
    }

    /// Which phase (index) detector `slot`'s vehicles are credited to.
    pub fn credited_phase(&self, slot: usize) -> Option<usize> {
        self.credit.get(slot).copied().flatten().map(usize::from)
    }

    pub fn current(&self) -> Replan {
        self.current
    }

    /// Smoothed flow of a phase, vehicles per hour.
    pub fn flow_vph(&self, phase_index: usize) -> f32 {
        self.flow_vph[phase_index]
    }

    /// The cycle the flows ask for (Webster's, within the bounds, before
    /// the step limit), as of the last re-plan; the starting plan's cycle
    /// before the first.
    pub fn wanted_cycle(&self) -> Span {
        self.wanted
    }

    /// The cycle lengths `spec` can run adaptively: from the larger of
    /// `min_cycle` and the longest ring's minimum splits summed over the
    /// barrier groups (min green or pedestrian service, plus clearances),
    /// up to `max_cycle`. Empty (`lower > upper`) when the minimums do not
    /// fit under `max_cycle`.
    pub fn cycle_limits(spec: &ControllerSpec, bounds: &AdaptiveSpec) -> (Span, Span) {
        let mut floor = Span::ZERO;
        for &members in &spec.barrier_groups {
            let mut group = Span::ZERO;
            for ring in &spec.rings {
                let ring_min = ring
                    .sequence
                    .iter()
                    .filter(|p| members.contains(**p))
                    .filter_map(|&p| spec.phase(p))
                    .map(|ph| min_split(&ph.timing))
                    .fold(Span::ZERO, |a, b| a + b);
                group = group.max(ring_min);
            }
            floor += group;
        }
        (bounds.min_cycle.max(floor), bounds.max_cycle)
    }

    /// Fold one cycle's measurement in and plan the next cycle.
    pub fn replan(&mut self, spec: &ControllerSpec, bounds: &AdaptiveSpec, m: &CycleMeasure) -> Replan {
        self.replan_to(spec, bounds, m, None)
    }

    /// [`Optimizer::replan`], with the next cycle's length `imposed` (kept
    /// within the bounds and the minimums; no step limit: the caller ramps)
    /// instead of Webster's. The splits share it by the flows as usual.
    pub fn replan_to(
        &mut self,
        spec: &ControllerSpec,
        bounds: &AdaptiveSpec,
        m: &CycleMeasure,
        imposed: Option<Span>,
    ) -> Replan {
        let hours = (m.elapsed.as_millis() as f32 / 3_600_000.0).max(1e-6);
        for (i, flow) in self.flow_vph.iter_mut().enumerate() {
            let measured = m.vehicles[i] as f32 / hours;
            *flow = if self.seeded { *flow + bounds.smoothing * (measured - *flow) } else { measured };
        }
        self.seeded = true;

        // Flow ratios and minimum splits.
        let mut y = [0.0f32; MAX_PHASES];
        let mut min_split = [Span::ZERO; MAX_PHASES];
        let mut lost = [Span::ZERO; MAX_PHASES];
        for ph in &spec.phases {
            let i = ph.id.index();
            let s = bounds.saturation_flow_vphpl * f32::from(self.lanes[i].max(1));
            y[i] = (self.flow_vph[i] / s).min(0.95);
            let t = &ph.timing;
            min_split[i] = self::min_split(t);
            lost[i] = t.clearance() + bounds.startup_lost;
        }

        // Per barrier group: the critical ring's ratio, lost time and the
        // minimum time every ring needs.
        let groups = spec.barrier_groups.len();
        let mut critical_y = [0.0f32; MAX_PHASES];
        let mut group_min = [Span::ZERO; MAX_PHASES];
        let mut total_y = 0.0f32;
        let mut total_lost = Span::ZERO;
        for (g, &members) in spec.barrier_groups.iter().enumerate() {
            let mut best: (f32, Span) = (-1.0, Span::ZERO);
            for ring in &spec.rings {
                let phases = ring.sequence.iter().filter(|p| members.contains(**p));
                let (ry, rlost, rmin) = phases.fold((0.0f32, Span::ZERO, Span::ZERO), |(a, b, c), p| {
                    (a + y[p.index()], b + lost[p.index()], c + min_split[p.index()])
                });
                if rmin.is_zero() {
                    continue; // this ring has no phase in the group
                }
                if ry > best.0 {
                    best = (ry, rlost);
                }
                group_min[g] = group_min[g].max(rmin);
            }
            critical_y[g] = best.0.max(0.0);
            total_y += critical_y[g];
            total_lost += best.1;
        }
        let cycle_floor: Span = group_min[..groups].iter().copied().fold(Span::ZERO, |a, b| a + b);

        // Webster, clamped to bounds, the minimums, and the step limit.
        let l = total_lost.as_secs_f64() as f32;
        let webster_s = (1.5 * l + 5.0) / (1.0 - total_y.min(0.9));
        let lower = bounds.min_cycle.max(cycle_floor);
        let upper = bounds.max_cycle.max(lower);
        let target = Span::from_secs(webster_s.round().max(0.0) as u64).clamp(lower, upper);
        self.wanted = target;
        let previous = self.current.cycle;
        let step = bounds.max_step;
        let stepped =
            if target > previous { target.min(previous + step) } else { target.max(previous.saturating_sub(step)) };
        let cycle = match imposed {
            // Not rounded: a corridor's offsets are kept to the millisecond.
            Some(c) => c.clamp(lower, upper).max(cycle_floor),
            None => round_down(stepped.clamp(lower, upper).max(cycle_floor)),
        };

        // Share the time above the minimums among groups, then phases.
        let slack = cycle.saturating_sub(cycle_floor);
        let weight_sum: f32 = critical_y[..groups].iter().sum();
        let mut splits = [Span::ZERO; MAX_PHASES];
        let mut handed_out = Span::ZERO;
        for (g, &members) in spec.barrier_groups.iter().enumerate() {
            let share = if weight_sum > 0.0 {
                critical_y[g] / weight_sum
            } else {
                group_min[g].as_millis() as f32 / cycle_floor.as_millis().max(1) as f32
            };
            let group_time = if g + 1 == groups {
                cycle.saturating_sub(handed_out) // the rounding remainder lands here
            } else {
                group_min[g] + round_down(scale(slack, share))
            };
            handed_out += group_time;
            for ring in &spec.rings {
                self.split_group(
                    ring.sequence.iter().copied().filter(|p| members.contains(*p)).collect(),
                    group_time,
                    &y,
                    &min_split,
                    &mut splits,
                );
            }
        }
        self.current = Replan { cycle, splits };
        self.current
    }

    /// Give one ring's phases of a barrier group `group_time` in all.
    fn split_group(
        &self,
        phases: PhaseSet,
        group_time: Span,
        y: &[f32; MAX_PHASES],
        min_split: &[Span; MAX_PHASES],
        splits: &mut [Span; MAX_PHASES],
    ) {
        let Some(last) = phases.iter().last() else { return };
        let base: Span = phases.iter().map(|p| min_split[p.index()]).fold(Span::ZERO, |a, b| a + b);
        let extra = group_time.saturating_sub(base);
        let ry: f32 = phases.iter().map(|p| y[p.index()]).sum();
        let count = phases.len() as f32;
        let mut given = Span::ZERO;
        for p in phases.iter() {
            let share = if ry > 0.0 { y[p.index()] / ry } else { 1.0 / count };
            let split = if p == last {
                group_time.saturating_sub(given)
            } else {
                min_split[p.index()] + round_down(scale(extra, share))
            };
            splits[p.index()] = split;
            given += split;
        }
    }
}

/// The shortest split a phase can have: min green (or the full pedestrian
/// service where it has pedestrians) plus its clearances.
fn min_split(t: &PhaseTiming) -> Span {
    let green = t.service(true);
    green + t.clearance()
}

fn scale(s: Span, factor: f32) -> Span {
    Span::from_millis((s.as_millis() as f64 * f64::from(factor.clamp(0.0, 1.0))) as u64)
}

fn round_down(s: Span) -> Span {
    Span::from_millis(s.as_millis() / RESOLUTION_MS * RESOLUTION_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::PhaseId;
    use crate::core::testing::eight_phase;

    fn start(spec: &ControllerSpec) -> Replan {
        let plan = spec.plan(2).unwrap();
        Replan { cycle: plan.cycle, splits: plan.splits }
    }

    fn measure(per_hour: [u32; 8], cycle_s: u64) -> CycleMeasure {
        let mut m = CycleMeasure { elapsed: Span::from_secs(cycle_s), vehicles: [0; MAX_PHASES] };
        for (i, v) in per_hour.iter().enumerate() {
            m.vehicles[i] = v * cycle_s as u32 / 3600;
        }
        m
    }

    fn check_structure(spec: &ControllerSpec, r: &Replan) {
        for ring in &spec.rings {
            let total: Span = ring.sequence.iter().map(|p| r.splits[p.index()]).fold(Span::ZERO, |a, b| a + b);
            assert_eq!(total, r.cycle, "ring splits sum to the cycle");
            for g in &spec.barrier_groups {
                let mine: Span = ring
                    .sequence
                    .iter()
                    .filter(|p| g.contains(**p))
                    .map(|p| r.splits[p.index()])
                    .fold(Span::ZERO, |a, b| a + b);
                let other = &spec.rings[1 - spec.rings.iter().position(|x| x == ring).unwrap()];
                let theirs: Span = other
                    .sequence
                    .iter()
                    .filter(|p| g.contains(**p))
                    .map(|p| r.splits[p.index()])
                    .fold(Span::ZERO, |a, b| a + b);
                assert_eq!(mine, theirs, "barriers stay aligned");
            }
        }
        for ph in &spec.phases {
            let t = ph.timing;
            let need = t.service(true) + t.clearance();
            assert!(
                r.splits[ph.id.index()] >= need,
                "phase {} split {} below its minimum {need}",
                ph.id,
                r.splits[ph.id.index()]
            );
        }
    }

    #[test]
    fn heavier_movements_get_more_green_and_structure_holds() {
        let spec = eight_phase();
        let mut opt = Optimizer::new(&spec, start(&spec));
        let mut r = opt.current();
        for _ in 0..20 {
            r = opt.replan(&spec, &AdaptiveSpec::default(), &measure([100, 1200, 80, 300, 100, 1100, 80, 250], 100));
            check_structure(&spec, &r);
        }
        let s = |n| r.splits[PhaseId::new(n).unwrap().index()];
        assert!(s(2) > s(4), "main street (1200 vph) gets more than side street (300 vph): {} vs {}", s(2), s(4));
    }

    #[test]
    fn cycle_moves_by_at_most_the_step_and_stays_in_bounds() {
        let spec = eight_phase();
        let bounds = AdaptiveSpec::default();
        let mut opt = Optimizer::new(&spec, start(&spec));
        let mut previous = opt.current().cycle;
        for k in 0..30 {
            let heavy = if k < 15 { 1700 } else { 50 };
            let r = opt.replan(
                &spec,
                &bounds,
                &measure([heavy / 4, heavy, heavy / 4, heavy / 2, heavy / 4, heavy, heavy / 4, heavy / 2], 100),
            );
            let change = if r.cycle > previous { r.cycle - previous } else { previous - r.cycle };
            assert!(change <= bounds.max_step, "cycle jumped by {change}");
            assert!(r.cycle <= bounds.max_cycle);
            check_structure(&spec, &r);
            previous = r.cycle;
        }
    }
}
