//! Schedule-driven control (`[adaptive] style = "schedule"`): every second
//! the intersection plans the vehicles it expects over a rolling horizon
//! and holds or ends its greens by that plan.
//!
//! # Method
//! This is the forward recursion of schedule-driven intersection control
//! (the SURTRAC family): demand is a list of *jobs* per *stage*, and the
//! planner orders their service to minimise the total delay.
//! - **Stages** ([`StageChain`]) are the sets of phases green together,
//!   derived from the ring-barrier structure: in each barrier group, the
//!   rings' k-th phases form the k-th stage (a ring with fewer phases in the
//!   group keeps its last one). Stages are served in this cyclic order, a
//!   stage with nothing to serve skipped, as the ring-barrier core does.
//! - **Demand** per phase is an arrival profile in [`BINS`] equal bins over
//!   the horizon plus bin 0, the vehicles standing at the stop bar now
//!   ([`Arrivals`]): the queue (camera or loop estimate), vehicles seen at
//!   advance loops projected by their travel time, neighbours' projected
//!   outflows where they are given, and the smoothed flow beyond what any
//!   of those can see. A stage's job per bin weighs every vehicle of its
//!   phases and takes the service time of its busiest ring (saturation
//!   headway per lane).
//! - **Recursion**: a state is how many jobs of each stage are served and
//!   which stage is green; from each, either the green stage serves its
//!   next job (within its maximum, unless nothing else waits) or the next
//!   stage with jobs left gets green after the current one's minimum and
//!   clearance, plus the start-up lost time. A job waiting from its arrival
//!   to its service start costs vehicles × wait. Per state only the least
//!   delay is kept (ties: the earlier finish) — the dominance rule of the
//!   schedule-driven literature, approximate where a later, cheaper state
//!   would have paid off.
//! - **Execution**: from the best complete schedule, each green phase is
//!   held until the schedule first leaves a stage containing it, or has
//!   served the last vehicles the intersection's own detectors saw,
//!   whichever is first (a neighbour's projection shapes the schedule and
//!   the outflow, but holds nothing). The
//!   controller consults [`Scheduler::holds`] only where a green may end
//!   (after its minimum and pedestrian service, with a conflicting call);
//!   clearances, minimums, max2 and preemption stay the core's.
//!
//! # Cost
//! The table holds [`TABLE`] entries (the product over stages of jobs + 1,
//! times the stage count; the lightest adjacent jobs are merged until it
//! fits), 128 KiB allocated once in [`Scheduler::new`]; a re-plan, and a
//! new definition ([`Scheduler::configure`]), allocate nothing.
//! Measured by `benches/optimizer.rs`.

use super::ids::{MAX_PHASES, PhaseId, PhaseSet};
use super::spec::{ControllerSpec, DetectorKind, DetectorPlacement, RingSpec};
use super::time::{Instant, Span};

/// At most one stage per phase.
pub const MAX_STAGES: usize = MAX_PHASES;
/// Arrival bins over the horizon, after bin 0 (the standing queue).
pub const BINS: usize = 12;
const MAX_JOBS: usize = BINS + 1;
/// Entries of the recursion's table: the product over stages of
/// (jobs + 1), times the stage count, stays within it.
pub const TABLE: usize = 8192;
/// Seconds of advance-loop counts remembered per phase: longer than any
/// advance loop's travel time.
const MEMORY_S: usize = 32;
/// Re-plan period.
pub const REPLAN: Span = Span::from_secs(1);
/// A plan older than this is not followed (the controller runs actuated).
const STALE: Span = Span::from_secs(3);
/// Below this many vehicles a bin is no job.
const MIN_JOB: f32 = 0.05;
/// Seconds of neighbours' projected arrivals kept per phase: more than the
/// longest horizon.
const EXPECTED_S: usize = 512;

/// Vehicles expected to cross a stop line (an intersection's projected
/// outflow), or to arrive at one (a neighbour's, moved by the travel time
/// between them): `vehicles[k]` over `[from + k·bin, from + (k+1)·bin)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    /// When the plan it comes from was made (its freshness).
    pub made: Instant,
    pub from: Instant,
    pub bin: Span,
    pub vehicles: [f32; BINS],
}

impl Projection {
    /// The same vehicles `travel` later: where they reach the next stop line.
    pub fn after(&self, travel: Span) -> Projection {
        Projection { from: self.from + travel, ..*self }
    }
}

/// The stages of a ring-barrier structure, in service order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageChain {
    stages: [PhaseSet; MAX_STAGES],
    /// Barrier group of each stage.
    group: [u8; MAX_STAGES],
    len: usize,
}

impl StageChain {
    pub fn new(spec: &ControllerSpec) -> Self {
        let mut chain = StageChain { stages: [PhaseSet::EMPTY; MAX_STAGES], group: [0; MAX_STAGES], len: 0 };
        for (g, &members) in spec.barrier_groups.iter().enumerate() {
            fn in_group(ring: &RingSpec, members: PhaseSet) -> impl Iterator<Item = &PhaseId> + Clone {
                ring.sequence.iter().filter(move |p| members.contains(**p))
            }
            let depth = spec.rings.iter().map(|r| in_group(r, members).count()).max().unwrap_or(0);
            for k in 0..depth {
                let mut stage = PhaseSet::EMPTY;
                for ring in &spec.rings {
                    if let Some(&p) = in_group(ring, members).nth(k).or_else(|| in_group(ring, members).last()) {
                        stage.insert(p);
                    }
                }
                // Every stage holds a phase of its own, so there are at
                // most as many stages as phases.
                chain.stages[chain.len] = stage;
                chain.group[chain.len] = g as u8;
                chain.len += 1;
            }
        }
        chain
    }

    pub fn stages(&self) -> &[PhaseSet] {
        &self.stages[..self.len]
    }

    /// The stage the green phases are in: the last in order that holds
    /// one of them (a ring ahead of the other has moved on, and the one
    /// behind follows).
    pub fn current(&self, green: PhaseSet) -> Option<usize> {
        (0..self.len).rev().find(|&s| self.stages[s].intersects(green))
    }
}

/// What the planner knows about one phase's arrivals, refreshed from the
/// detectors every tick ([`Scheduler::count`]) and read at each re-plan.
#[derive(Clone, Debug)]
struct Arrivals {
    /// Per phase, vehicles counted at its advance loops per second of
    /// control time (index: second modulo [`MEMORY_S`]).
    seen: [[u16; MEMORY_S]; MAX_PHASES],
    /// The second each slot was last written (a slot from an older second
    /// is empty).
    seen_at: [[u64; MEMORY_S]; MAX_PHASES],
    /// Advance loop to stop bar, per phase (the longest of its loops).
    travel: [Span; MAX_PHASES],
    /// Upstream neighbours' projected arrivals onto each phase, vehicles
    /// per second of control time (index: second modulo [`EXPECTED_S`]).
    /// A new projection overwrites the seconds it covers; earlier seconds
    /// keep what older projections said (those vehicles have left the
    /// neighbour already, so no newer projection mentions them).
    expected: [[f32; EXPECTED_S]; MAX_PHASES],
    /// The second each slot was last written.
    expected_at: [[u64; EXPECTED_S]; MAX_PHASES],
    /// When the latest projection onto each phase was made: older than
    /// [`STALE`], every projected second is ignored (the neighbour or the
    /// link is gone) and the phase plans from its own detectors.
    projected_made: [Option<Instant>; MAX_PHASES],
}

impl Arrivals {
    fn new(spec: &ControllerSpec) -> Self {
        let mut travel = [Span::ZERO; MAX_PHASES];
        for d in &spec.detectors {
            if d.kind == DetectorKind::Vehicle && d.placement == DetectorPlacement::Advance {
                for p in d.extends.union(d.calls).iter() {
                    travel[p.index()] = travel[p.index()].max(d.travel_time);
                }
            }
        }
        Arrivals {
            seen: [[0; MEMORY_S]; MAX_PHASES],
            seen_at: [[u64::MAX; MEMORY_S]; MAX_PHASES],
            travel,
            expected: [[0.0; EXPECTED_S]; MAX_PHASES],
            expected_at: [[u64::MAX; EXPECTED_S]; MAX_PHASES],
            projected_made: [None; MAX_PHASES],
        }
    }

    /// `n` vehicles crossed phase `p`'s advance loops at `now`.
    fn count(&mut self, now: Instant, p: PhaseId, n: u16) {
        if n == 0 {
            return;
        }
        let second = now.as_millis() / 1000;
        let slot = (second % MEMORY_S as u64) as usize;
        let (seen, at) = (&mut self.seen[p.index()][slot], &mut self.seen_at[p.index()][slot]);
        if *at != second {
            *at = second;
            *seen = 0;
        }
        *seen = seen.saturating_add(n);
    }

    /// An upstream neighbour's projected arrivals onto phase `p`, spread
    /// evenly over each bin's seconds.
    fn project(&mut self, p: PhaseId, arrivals: &Projection) {
        let bin = arrivals.bin.as_millis().max(1);
        let first = arrivals.from.as_millis() / 1000;
        let last = (arrivals.from.as_millis() + bin * BINS as u64).div_ceil(1000);
        // Seconds beyond the window would overwrite ones still ahead.
        let last = last.min(arrivals.made.as_millis() / 1000 + EXPECTED_S as u64);
        let (expected, at) = (&mut self.expected[p.index()], &mut self.expected_at[p.index()]);
        for second in first..last {
            let slot = (second % EXPECTED_S as u64) as usize;
            let (lo, hi) = (second * 1000, second * 1000 + 1000);
            let mut v = 0.0;
            for (k, n) in arrivals.vehicles.iter().enumerate() {
                let (b_lo, b_hi) =
                    (arrivals.from.as_millis() + k as u64 * bin, arrivals.from.as_millis() + (k as u64 + 1) * bin);
                let overlap = hi.min(b_hi).saturating_sub(lo.max(b_lo));
                v += n * overlap as f32 / bin as f32;
            }
            expected[slot] = v;
            at[slot] = second;
        }
        self.projected_made[p.index()] = Some(arrivals.made);
    }

    /// Vehicles projected onto phase `p` in the second starting at
    /// `second`; `None` where no fresh projection covers it.
    fn expected(&self, now: Instant, p: PhaseId, second: u64) -> Option<f32> {
        let made = self.projected_made[p.index()]?;
        if now.since(made) > STALE {
            return None;
        }
        let slot = (second % EXPECTED_S as u64) as usize;
        (self.expected_at[p.index()][slot] == second).then(|| self.expected[p.index()][slot])
    }

    /// Vehicles seen at `p`'s advance loops that have not reached the stop
    /// bar by `now`, each with its expected arrival.
    fn approaching(&self, now: Instant, p: PhaseId) -> impl Iterator<Item = (Span, u16)> + '_ {
        let second = now.as_millis() / 1000;
        let travel = self.travel[p.index()];
        (0..MEMORY_S).filter_map(move |slot| {
            let at = self.seen_at[p.index()][slot];
            let n = self.seen[p.index()][slot];
            if at == u64::MAX || n == 0 || second.saturating_sub(at) >= MEMORY_S as u64 {
                return None;
            }
            // Mid-second of the count, plus the travel time.
            let arrive = Instant::from_millis(at * 1000 + 500) + travel;
            (arrive > now).then(|| (arrive.since(now), n))
        })
    }
}

/// One phase's demand as the planner sees it at a re-plan.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseDemand {
    /// Vehicles standing or about to (the queue estimate or a camera's).
    pub queue: Option<u16>,
    /// Smoothed flow, vehicles per hour.
    pub flow_vph: f32,
    /// A call without a measured queue still needs serving.
    pub called: bool,
    /// A pedestrian waits: the phase's minimum includes its service.
    pub ped_called: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Job {
    /// From the re-plan, milliseconds.
    arrive: i64,
    /// How long the arrivals spread over.
    spread: i64,
    vehicles: f32,
    /// Green time the busiest ring needs to discharge it.
    service: i64,
    /// Vehicles this intersection's own detectors saw (not a neighbour's
    /// projection, not the flow's expectation): only these hold a green
    /// past its gap-out. Holding for a neighbour's platoon measured 14-30%
    /// more delay in every SIL run (docs/sil.md), as the plan cannot end
    /// the side street's green to be back for it.
    seen_here: bool,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: f32,
    /// When the last job served finishes, ms from the re-plan.
    time: i64,
    /// When the green stage started, ms from the re-plan (may be negative).
    green_at: i64,
    /// Index of the entry this one was reached from.
    prev: u32,
}

const UNREACHED: Entry = Entry { delay: f32::INFINITY, time: 0, green_at: 0, prev: u32::MAX };

/// Per-intersection planner state: the stage chain, per-stage bounds, the
/// recursion's table, and the plan in force.
#[derive(Clone, Debug)]
pub struct Scheduler {
    chain: StageChain,
    horizon: Span,
    /// Per stage: minimum (without / with pedestrian service), maximum,
    /// clearance when it ends, ms.
    min_green: [i64; MAX_STAGES],
    min_ped: [i64; MAX_STAGES],
    max_green: [i64; MAX_STAGES],
    clearance: [i64; MAX_STAGES],
    /// The stage whose jobs a phase's vehicles join (its first).
    home: [Option<u8>; MAX_PHASES],
    /// Saturation headway per phase, ms per vehicle.
    headway: [f32; MAX_PHASES],
    startup_lost: i64,
    jobs: [[Job; MAX_JOBS]; MAX_STAGES],
    job_len: [usize; MAX_STAGES],
    /// Per phase, the vehicles the last re-plan expected: bin 0 standing,
    /// then per bin of the horizon.
    profile: [[f32; MAX_JOBS]; MAX_PHASES],
    /// The part of `profile` a detector or a neighbour saw.
    observed: [[f32; MAX_JOBS]; MAX_PHASES],
    /// Per phase, the last plan's projected discharge per bin.
    outflow: [[f32; BINS]; MAX_PHASES],
    table: Box<[Entry; TABLE]>,
    arrivals: Arrivals,
    /// The plan in force: when it was made and until when each phase is held.
    planned_at: Option<Instant>,
    hold_until: [Instant; MAX_PHASES],
    /// Delay of the best schedule at the last re-plan, vehicle-seconds.
    planned_delay: f32,
}

impl Scheduler {
    pub fn new(spec: &ControllerSpec) -> Self {
        let chain = StageChain::new(spec);
        let table: Box<[Entry; TABLE]> =
            vec![UNREACHED; TABLE].into_boxed_slice().try_into().unwrap_or_else(|_| unreachable!("TABLE entries"));
        let mut s = Scheduler {
            chain,
            horizon: spec.adaptive.horizon,
            min_green: [0; MAX_STAGES],
            min_ped: [0; MAX_STAGES],
            max_green: [0; MAX_STAGES],
            clearance: [0; MAX_STAGES],
            home: [None; MAX_PHASES],
            headway: [2000.0; MAX_PHASES],
            startup_lost: 0,
            jobs: [[Job::default(); MAX_JOBS]; MAX_STAGES],
            job_len: [0; MAX_STAGES],
            profile: [[0.0; MAX_JOBS]; MAX_PHASES],
            observed: [[0.0; MAX_JOBS]; MAX_PHASES],
            outflow: [[0.0; BINS]; MAX_PHASES],
            table,
            arrivals: Arrivals::new(spec),
            planned_at: None,
            hold_until: [Instant::ZERO; MAX_PHASES],
            planned_delay: 0.0,
        };
        s.configure(spec);
        s
    }

    /// Take a new definition: stages, bounds and detectors again, the
    /// plan and the arrivals seen dropped. Allocates nothing.
    pub fn configure(&mut self, spec: &ControllerSpec) {
        let chain = StageChain::new(spec);
        self.chain = chain;
        self.horizon = spec.adaptive.horizon;
        self.startup_lost = spec.adaptive.startup_lost.as_millis() as i64;
        self.arrivals = Arrivals::new(spec);
        self.planned_at = None;
        self.home = [None; MAX_PHASES];
        let mut lanes = [0u16; MAX_PHASES];
        for d in &spec.detectors {
            if d.kind == DetectorKind::Vehicle && d.placement == DetectorPlacement::StopBar {
                for p in d.calls.iter() {
                    lanes[p.index()] += 1;
                }
            }
        }
        for ph in &spec.phases {
            let lanes = f32::from(lanes[ph.id.index()].max(1));
            self.headway[ph.id.index()] = 3_600_000.0 / (spec.adaptive.saturation_flow_vphpl * lanes);
        }
        for (i, &stage) in chain.stages().iter().enumerate() {
            let (mut min, mut min_ped, mut max, mut clear) = (0, 0, i64::MAX, 0);
            for p in stage.iter() {
                let Some(ph) = spec.phase(p) else { continue };
                let t = ph.timing;
                let ms = |s: Span| s.as_millis() as i64;
                min = min.max(ms(t.min_green));
                min_ped = min_ped.max(ms(t.min_green.max(if t.has_ped() { t.ped_service() } else { Span::ZERO })));
                max = max.min(ms(t.max2));
                clear = clear.max(ms(t.clearance()));
                self.home[p.index()].get_or_insert(i as u8);
            }
            (self.min_green[i], self.min_ped[i], self.max_green[i], self.clearance[i]) =
                (min, min_ped, max.max(min_ped), clear);
        }
    }

    /// `n` vehicles crossed phase `p`'s advance loops at `now`.
    pub fn count(&mut self, now: Instant, p: PhaseId, n: u16) {
        self.arrivals.count(now, p, n);
    }

    /// An upstream neighbour's projected arrivals onto phase `p` (the
    /// seconds they cover replace what earlier projections said).
    pub fn project(&mut self, p: PhaseId, arrivals: &Projection) {
        self.arrivals.project(p, arrivals);
    }

    /// The last plan's projected outflow of phase `p`: the seen vehicles
    /// it discharges over its planned greens, at most one per saturation
    /// headway.
    pub fn outflow(&self, p: PhaseId) -> Option<Projection> {
        let made = self.planned_at?;
        self.home[p.index()]?;
        let bin = Span::from_millis((self.horizon.as_millis() / BINS as u64).max(1));
        Some(Projection { made, from: made, bin, vehicles: self.outflow[p.index()] })
    }

    pub fn chain(&self) -> &StageChain {
        &self.chain
    }

    /// Whether the plan in force holds phase `p` green at `now`; `None`
    /// when no plan is fresh enough to follow.
    pub fn holds(&self, p: PhaseId, now: Instant) -> Option<bool> {
        let at = self.planned_at?;
        (now.since(at) <= STALE).then(|| now < self.hold_until[p.index()])
    }

    /// Until when the last plan holds phase `p` green.
    pub fn held_until(&self, p: PhaseId) -> Option<Instant> {
        self.planned_at.map(|_| self.hold_until[p.index()])
    }

    /// Whether a re-plan is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.planned_at.is_none_or(|at| now.since(at) >= REPLAN)
    }

    /// Drop the plan (the rings left normal operation).
    pub fn forget(&mut self) {
        self.planned_at = None;
    }

    /// Delay of the last plan's schedule, vehicle-seconds.
    pub fn planned_delay(&self) -> f32 {
        self.planned_delay
    }

    /// Plan at `now`: `green` are the phases green, the longest of them on
    /// for `elapsed`; `demand` per phase index. Sets the holds
    /// [`Self::holds`] reads.
    pub fn plan(&mut self, now: Instant, green: PhaseSet, elapsed: Span, demand: &[PhaseDemand; MAX_PHASES]) {
        let Some(current) = self.chain.current(green) else {
            self.planned_at = None;
            return;
        };
        self.build_jobs(now, demand);
        let stages = self.chain.len;
        let mut radix = [1usize; MAX_STAGES];
        let mut stride = [0usize; MAX_STAGES];
        let mut total = 1usize;
        for s in 0..stages {
            radix[s] = self.job_len[s] + 1;
            stride[s] = total;
            total *= radix[s];
        }
        let table = &mut self.table[..total * stages];
        table.fill(UNREACHED);
        let mut min = self.min_green;
        for (s, m) in min.iter_mut().enumerate().take(stages) {
            if self.chain.stages[s].iter().any(|p| demand[p.index()].ped_called) {
                *m = self.min_ped[s];
            }
        }
        table[current] = Entry { delay: 0.0, time: 0, green_at: -(elapsed.as_millis() as i64), prev: u32::MAX };

        let mut x = [0usize; MAX_STAGES];
        for xi in 0..total {
            if xi > 0 {
                // Next mixed-radix digits.
                for d in x.iter_mut().zip(&radix).take(stages) {
                    *d.0 += 1;
                    if *d.0 < *d.1 {
                        break;
                    }
                    *d.0 = 0;
                }
            }
            for s in 0..stages {
                let from = xi * stages + s;
                let e = table[from];
                if e.delay == f32::INFINITY {
                    continue;
                }
                let next = (1..=stages).map(|k| (s + k) % stages).find(|&i| x[i] < self.job_len[i]);
                let others_wait = next.is_some_and(|i| i != s);
                // The green stage serves its next job.
                if x[s] < self.job_len[s] {
                    let job = self.jobs[s][x[s]];
                    let start = e.time.max(job.arrive);
                    if !others_wait || start + job.service - e.green_at <= self.max_green[s] {
                        let to = (xi + stride[s]) * stages + s;
                        let reached = Entry {
                            delay: e.delay + job.vehicles * (start - job.arrive) as f32 / 1000.0,
                            time: (start + job.service).max(job.arrive + job.spread),
                            green_at: e.green_at,
                            prev: from as u32,
                        };
                        relax(&mut table[to], reached);
                    }
                }
                // Or the next stage with jobs left gets green.
                if let Some(i) = next.filter(|&i| i != s) {
                    let leave = e.time.max(e.green_at + min[s]);
                    let green_at = leave + self.clearance[s];
                    let job = self.jobs[i][x[i]];
                    let start = (green_at + self.startup_lost).max(job.arrive);
                    let to = (xi + stride[i]) * stages + i;
                    let reached = Entry {
                        delay: e.delay + job.vehicles * (start - job.arrive) as f32 / 1000.0,
                        time: (start + job.service).max(job.arrive + job.spread),
                        green_at,
                        prev: from as u32,
                    };
                    relax(&mut table[to], reached);
                }
            }
        }

        let last = (total - 1) * stages;
        let best = (0..stages).min_by(|&a, &b| table[last + a].delay.total_cmp(&table[last + b].delay));
        let Some(best) = best.map(|s| last + s).filter(|&i| table[i].delay.is_finite()) else {
            self.planned_at = None;
            return;
        };
        self.planned_delay = table[best].delay;
        // Walk the schedule back; the earliest time the schedule leaves a
        // stage holding each phase is when that phase may end.
        let horizon_end = now + self.horizon;
        let mut until = [horizon_end; MAX_PHASES];
        let mut path = [(0usize, 0usize, 0i64, 0i64); MAX_STAGES * MAX_JOBS];
        let mut steps = 0;
        let mut at = best;
        while table[at].prev != u32::MAX {
            let prev = table[at].prev as usize;
            let (from_stage, to_stage) = (prev % stages, at % stages);
            let served = (at / stages / stride[to_stage]) % radix[to_stage] - 1;
            path[steps] = (to_stage, served, table[at].time, table[at].green_at);
            steps += 1;
            if from_stage != to_stage {
                let leave = table[at].green_at - self.clearance[from_stage];
                let ends = now + Span::from_millis(leave.max(0) as u64);
                for p in self.chain.stages[from_stage].difference(self.chain.stages[to_stage]).iter() {
                    until[p.index()] = until[p.index()].min(ends);
                }
            }
            at = prev;
        }
        // The green stage's own run at the start of the schedule: it is
        // held for the vehicles its own detectors saw, not for a
        // neighbour's projection or the flow's expectation alone.
        let mut seen_served = 0i64;
        for &(stage, job, finish, _) in path[..steps].iter().rev() {
            if stage != current {
                break;
            }
            if self.jobs[stage][job].seen_here {
                seen_served = finish;
            }
        }
        let seen_until = now + Span::from_millis(seen_served.max(0) as u64);
        // Phases green but not in the current stage (a ring behind) are
        // not held: they end once the core allows.
        for p in green.iter() {
            let held = self.chain.stages[current].contains(p);
            self.hold_until[p.index()] = if held { until[p.index()].min(seen_until) } else { now };
        }
        // The schedule's greens in order: stage, start and end (ms from
        // now), the last one resting to the horizon's end.
        let mut runs = [(0usize, 0i64, i64::MAX); MAX_STAGES * MAX_JOBS + 1];
        runs[0] = (current, -(elapsed.as_millis() as i64), i64::MAX);
        let mut n = 1;
        for &(stage, _, _, green_at) in path[..steps].iter().rev() {
            let (last, ..) = runs[n - 1];
            if stage != last {
                runs[n - 1].2 = green_at - self.clearance[last];
                runs[n] = (stage, green_at, i64::MAX);
                n += 1;
            }
        }
        self.project_outflow(&runs[..n]);
        self.planned_at = Some(now);
    }

    /// Each phase's discharge over the schedule's greens `runs`, second by
    /// second: the standing vehicles and arrivals a detector or neighbour
    /// saw ([`Self::observed`]) queue, and leave one per saturation
    /// headway once its green has started up.
    fn project_outflow(&mut self, runs: &[(usize, i64, i64)]) {
        let bin = (self.horizon.as_millis() / BINS as u64).max(1) as i64;
        let horizon_s = bin * BINS as i64 / 1000;
        for (i, outflow) in self.outflow.iter_mut().enumerate() {
            *outflow = [0.0; BINS];
            if self.home[i].is_none() {
                continue;
            }
            let p = PhaseId::from_index(i);
            // Only what was seen, not the flow's expectation: the
            // neighbour counts these as seen too (they may hold its green).
            let profile = &self.observed[i];
            let per_s = 1000.0 / self.headway[i];
            let mut queue = profile[0];
            let mut k = 0;
            for t in 0..horizon_s {
                let (lo, hi) = (t * 1000, t * 1000 + 1000);
                queue += profile[1 + (lo / bin) as usize] * 1000.0 / bin as f32;
                while k + 1 < runs.len() && runs[k].2 <= lo {
                    k += 1;
                }
                let (stage, start, end) = runs[k];
                let started = if start > 0 { start + self.startup_lost } else { start };
                if self.chain.stages[stage].contains(p) && started < hi && lo < end {
                    let served = queue.min(per_s);
                    queue -= served;
                    outflow[(lo / bin) as usize] += served;
                }
            }
        }
    }

    /// Per stage, the jobs: one per bin with vehicles, merged until the
    /// table bound holds.
    fn build_jobs(&mut self, now: Instant, demand: &[PhaseDemand; MAX_PHASES]) {
        let arrivals = &self.arrivals;
        let bin = (self.horizon.as_millis() / BINS as u64).max(1) as i64;
        let horizon_ms = bin * BINS as i64;
        let horizon_s = (horizon_ms as u64).div_ceil(1000) + 1;
        let now_ms = now.as_millis() as i64;
        let (profile, observed) = (&mut self.profile, &mut self.observed);
        *profile = [[0f32; MAX_JOBS]; MAX_PHASES];
        let mut here = [[0f32; MAX_JOBS]; MAX_PHASES];
        for (i, d) in demand.iter().enumerate() {
            if self.home[i].is_none() {
                continue;
            }
            let p = PhaseId::from_index(i);
            let prof = &mut profile[i];
            let mut approaching = 0u16;
            for (in_, n) in arrivals.approaching(now, p) {
                let b = 1 + (in_.as_millis() as i64 / bin) as usize;
                if b < MAX_JOBS {
                    prof[b] += f32::from(n);
                }
                approaching = approaching.saturating_add(n);
            }
            // The loop estimate counts vehicles from the advance loop on,
            // so those still approaching are not standing yet.
            prof[0] = match d.queue {
                Some(q) => f32::from(q.saturating_sub(approaching)),
                None => f32::from(u8::from(d.called)),
            };
            // Beyond what the advance loops see: the neighbours' projected
            // arrivals where fresh, else the smoothed flow; second by second.
            let seen = arrivals.travel[i].as_millis() as i64;
            let per_ms = d.flow_vph / 3_600_000.0;
            let (mut expected, mut flow) = ([0f32; MAX_JOBS], [0f32; MAX_JOBS]);
            let first = now.as_millis() / 1000;
            for second in first..first + horizon_s {
                let (lo, hi) = ((second * 1000) as i64 - now_ms, (second * 1000 + 1000) as i64 - now_ms);
                let (lo, hi) = (lo.max(seen).max(0), hi.min(horizon_ms));
                if hi <= lo {
                    continue;
                }
                let b = 1 + (lo / bin) as usize;
                if b >= MAX_JOBS {
                    break;
                }
                // A neighbour's projection counts what it saw leave; the
                // flow's expectation tops it up where it is larger (traffic
                // the neighbour's through phase does not carry).
                let expect = per_ms * (hi - lo) as f32;
                match arrivals.expected(now, p, second) {
                    Some(v) => {
                        let v = v * (hi - lo) as f32 / 1000.0;
                        expected[b] += v;
                        flow[b] += (expect - v).max(0.0);
                    }
                    None => flow[b] += expect,
                }
            }
            here[i] = *prof;
            for (v, e) in prof.iter_mut().zip(&expected) {
                *v += e;
            }
            // What a detector or a neighbour saw; the flow is only expected.
            observed[i] = *prof;
            for (v, f) in prof.iter_mut().zip(&flow) {
                *v += f;
            }
        }
        for s in 0..self.chain.len {
            let (mut vehicles, mut service, mut seen) = ([0f32; MAX_JOBS], [0f32; MAX_JOBS], [0f32; MAX_JOBS]);
            for p in self.chain.stages[s].iter().filter(|p| self.home[p.index()] == Some(s as u8)) {
                for (b, &v) in profile[p.index()].iter().enumerate() {
                    vehicles[b] += v;
                    service[b] = service[b].max(v * self.headway[p.index()]);
                    seen[b] += here[p.index()][b];
                }
            }
            let mut len = 0;
            for (b, (&vehicles, &service)) in vehicles.iter().zip(&service).enumerate() {
                if vehicles < MIN_JOB {
                    continue;
                }
                let (arrive, spread) = if b == 0 { (0, 0) } else { ((b as i64 - 1) * bin, bin) };
                let seen_here = seen[b] >= 0.5;
                self.jobs[s][len] = Job { arrive, spread, vehicles, service: service as i64, seen_here };
                len += 1;
            }
            self.job_len[s] = len;
        }
        self.fit_table();
    }

    /// Merge the lightest adjacent jobs of the stage with the most until
    /// the table holds the recursion ([`TABLE`]).
    fn fit_table(&mut self) {
        let stages = self.chain.len;
        loop {
            let size = self.job_len[..stages].iter().try_fold(stages, |acc, &n| acc.checked_mul(n + 1));
            if size.is_some_and(|n| n <= TABLE) {
                return;
            }
            let Some(s) = (0..stages).max_by_key(|&s| self.job_len[s]) else { return };
            let jobs = &mut self.jobs[s][..self.job_len[s]];
            let Some(k) = (0..jobs.len() - 1).min_by(|&a, &b| {
                (jobs[a].vehicles + jobs[a + 1].vehicles).total_cmp(&(jobs[b].vehicles + jobs[b + 1].vehicles))
            }) else {
                return;
            };
            let (a, b) = (jobs[k], jobs[k + 1]);
            jobs[k] = Job {
                arrive: a.arrive,
                spread: b.arrive + b.spread - a.arrive,
                vehicles: a.vehicles + b.vehicles,
                service: a.service + b.service,
                seen_here: a.seen_here || b.seen_here,
            };
            jobs.copy_within(k + 2.., k + 1);
            self.job_len[s] -= 1;
        }
    }
}

/// Keep the lesser delay (ties: the earlier finish).
fn relax(slot: &mut Entry, reached: Entry) {
    if reached.delay < slot.delay || (reached.delay == slot.delay && reached.time < slot.time) {
        *slot = reached;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::eight_phase;

    fn p(n: u8) -> PhaseId {
        PhaseId::new(n).unwrap()
    }

    fn set(ns: &[u8]) -> PhaseSet {
        ns.iter().map(|&n| p(n)).collect()
    }

    #[test]
    fn stages_pair_the_rings_phases_within_each_barrier_group() {
        let chain = StageChain::new(&eight_phase());
        assert_eq!(chain.stages(), &[set(&[1, 5]), set(&[2, 6]), set(&[3, 7]), set(&[4, 8])]);
        assert_eq!(chain.current(set(&[2, 5])), Some(1), "the ring ahead sets the stage");
        assert_eq!(chain.current(set(&[4, 8])), Some(3));
    }

    fn demand(queues: &[(u8, u16)]) -> [PhaseDemand; MAX_PHASES] {
        let mut d = [PhaseDemand::default(); MAX_PHASES];
        for &(n, q) in queues {
            d[p(n).index()] = PhaseDemand { queue: Some(q), flow_vph: 0.0, called: q > 0, ped_called: false };
        }
        d
    }

    #[test]
    fn a_green_with_its_queue_left_is_held_and_ends_when_it_clears() {
        let spec = eight_phase();
        let mut s = Scheduler::new(&spec);
        let now = Instant::from_millis(60_000);
        // Phase 2/6 green for 10 s with 8 still queued; 2 wait on phase 4.
        s.plan(now, set(&[2, 6]), Span::from_secs(10), &demand(&[(2, 8), (6, 8), (4, 2)]));
        assert_eq!(s.holds(p(2), now), Some(true));
        let until = s.held_until(p(2)).unwrap();
        // 8 vehicles on one lane at 1800 veh/h: 16 s, then phase 4's turn.
        assert!(until > now + Span::from_secs(10) && until < now + Span::from_secs(30), "{until:?}");
    }

    #[test]
    fn a_long_queue_elsewhere_ends_a_light_green() {
        let spec = eight_phase();
        let mut s = Scheduler::new(&spec);
        let now = Instant::from_millis(60_000);
        s.plan(now, set(&[2, 6]), Span::from_secs(10), &demand(&[(2, 0), (6, 0), (4, 20), (8, 20)]));
        assert_eq!(s.holds(p(2), now), Some(false));
        assert_eq!(s.holds(p(6), now), Some(false));
    }

    #[test]
    fn a_platoon_seen_at_the_advance_loop_holds_the_green_for_it() {
        let mut spec = eight_phase();
        let mut advance = spec.detectors[1].clone();
        advance.channel = crate::core::DetectorChannel::new(20).unwrap();
        advance.placement = DetectorPlacement::Advance;
        advance.travel_time = Span::from_secs(6);
        spec.detectors.push(advance);
        let mut s = Scheduler::new(&spec);
        let now = Instant::from_millis(60_000);
        // Ten vehicles crossed the advance loop a second ago; the stop bar
        // is empty; two vehicles wait on phase 4.
        s.count(Instant::from_millis(59_000), p(2), 10);
        s.plan(now, set(&[2, 6]), Span::from_secs(20), &demand(&[(2, 10), (4, 2)]));
        assert!(s.held_until(p(2)).unwrap() > now + Span::from_secs(5), "held for the platoon");
        let mut without = Scheduler::new(&spec);
        without.plan(now, set(&[2, 6]), Span::from_secs(20), &demand(&[(2, 0), (4, 2)]));
        assert_eq!(without.holds(p(2), now), Some(false), "nothing coming: the waiting phase gets green");
    }

    #[test]
    fn the_outflow_discharges_the_queue_over_the_planned_green() {
        let spec = eight_phase();
        let mut s = Scheduler::new(&spec);
        let now = Instant::from_millis(60_000);
        s.plan(now, set(&[2, 6]), Span::from_secs(10), &demand(&[(2, 8), (4, 6)]));
        let out = s.outflow(p(2)).expect("phase 2 is planned");
        assert_eq!((out.made, out.from, out.bin), (now, now, Span::from_millis(7_500)));
        // 8 vehicles at 2 s each on one lane, projected second by second:
        // 4 in the first bin (the seconds starting in it), the rest within
        // the next 8 s, none later (no flow measured).
        assert_eq!(&out.vehicles[..3], &[4.0, 3.5, 0.5], "{:?}", out.vehicles);
        assert!((out.vehicles.iter().sum::<f32>() - 8.0).abs() < 0.01, "{:?}", out.vehicles);
        let side = s.outflow(p(4)).unwrap().vehicles;
        assert_eq!(side[0], 0.0, "phase 4 waits for 2's queue and the clearance: {side:?}");
        assert!((side.iter().sum::<f32>() - 6.0).abs() < 0.01, "{side:?}");
        let mut idle = Scheduler::new(&spec);
        assert_eq!(idle.outflow(p(2)), None, "no plan, no projection");
        idle.plan(now, PhaseSet::EMPTY, Span::ZERO, &demand(&[]));
        assert_eq!(idle.outflow(p(2)), None);
    }

    fn platoon(made: Instant, from: Instant, vehicles: f32) -> Projection {
        let mut v = [0.0; BINS];
        v[0] = vehicles;
        Projection { made, from, bin: Span::from_secs(5), vehicles: v }
    }

    #[test]
    fn a_neighbours_platoon_is_planned_for_until_it_is_stale_and_holds_no_green() {
        let spec = eight_phase();
        let now = Instant::from_millis(60_000);
        // Ten vehicles reach phase 2's stop bar 4 to 9 s from now; two
        // wait on phase 4.
        let coming = platoon(now, now + Span::from_secs(4), 10.0);
        let plan = |projection: Option<Projection>| {
            let mut s = Scheduler::new(&spec);
            if let Some(projection) = projection {
                s.project(p(2), &projection);
            }
            s.plan(now, set(&[2, 6]), Span::from_secs(20), &demand(&[(4, 2)]));
            s
        };
        let (alone, told) = (plan(None), plan(Some(coming)));
        assert!(told.planned_delay() > alone.planned_delay(), "the platoon's vehicles are in the plan");
        assert!(told.outflow(p(2)).unwrap().vehicles.iter().sum::<f32>() > 9.0, "and go on to the next member");
        // Phase 2 gaps out for the side street as it would alone: holding
        // for a platoon a link away costs more than it saves (docs/sil.md).
        assert_eq!(told.holds(p(2), now), Some(false), "no green is held for a neighbour's platoon");
        // The same projection made more than STALE ago: not planned for.
        let stale = plan(Some(Projection { made: Instant::from_millis(56_000), ..coming }));
        assert_eq!(stale.planned_delay(), alone.planned_delay(), "a silent neighbour is not followed");
    }

    #[test]
    fn a_newer_projection_replaces_only_the_seconds_it_covers() {
        let spec = eight_phase();
        let mut a = Arrivals::new(&spec);
        let t = Instant::from_millis(100_000);
        a.project(p(2), &platoon(t, t, 5.0));
        // A second later the neighbour's new plan starts from its own now:
        // the second already gone keeps the first projection's vehicle.
        let later = t + Span::from_secs(1);
        a.project(p(2), &platoon(later, later, 0.0));
        assert_eq!(a.expected(later, p(2), 100), Some(1.0));
        assert_eq!(a.expected(later, p(2), 101), Some(0.0));
        assert_eq!(a.expected(later, p(2), 170), None, "beyond both projections");
    }

    #[test]
    fn a_plan_goes_stale_without_re_planning() {
        let spec = eight_phase();
        let mut s = Scheduler::new(&spec);
        let now = Instant::from_millis(60_000);
        assert_eq!(s.holds(p(2), now), None);
        s.plan(now, set(&[2, 6]), Span::from_secs(10), &demand(&[(2, 8)]));
        assert!(s.holds(p(2), now).is_some());
        assert!(!s.due(now + Span::from_millis(900)) && s.due(now + REPLAN));
        assert_eq!(s.holds(p(2), now + Span::from_secs(10)), None);
    }
}
