//! Performance measures per phase and per lane, computed from the
//! controller's Indiana events with ATSPM's definitions, so they agree with a
//! central ATSPM fed from the event log (docs/measures.md has the
//! cross-check against the `atspm` package and each difference):
//!
//! - volume: detector-on events (82) on stop-bar loops, per lane (one loop
//!   per lane) and per phase. Advance loops and push buttons are not volume:
//!   every vehicle crosses one stop bar once, while an advance loop would
//!   count it twice;
//! - arrivals on green: detector-on events of advance loops, each projected
//!   to the stop bar by the loop's travel time, that reach it while the
//!   phase is green (ATSPM arrivals on green need advance detection; a
//!   phase without an advance loop has no arrivals);
//! - occupancy: share of time the phase's stop-bar loops were occupied;
//! - split failure: a green whose occupancy ratio (any of the phase's
//!   stop-bar loops occupied, ATSPM "by approach") was above 0.79 and whose
//!   first 5 s of red from the start of red clearance were too;
//! - max-out / gap-out / force-off share of green terminations (5 / 4 / 6);
//! - pedestrians: push-button actuations (90) of the phases a button calls,
//!   walks served (21), and pedestrian delay (ATSPM's): from the first
//!   actuation while the phase's walk is not showing to the walk's start,
//!   counted in the bin the walk starts in.
//!
//! Counts are kept for the whole window and in 15-minute bins aligned to
//! the clock (ATSPM's aggregation), each count in the bin of the moment it
//! describes: an actuation when it happened, an arrival when it reached the
//! stop bar, a split failure when its red window closed, a green when it
//! began.
//!
//! The hub thread feeds every event here; readers take a copy under the
//! same short lock. Nothing runs on the control thread.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Mutex;

use crate::core::ids::{MAX_DETECTORS, MAX_PHASES};
use crate::core::spec::{ControllerSpec, DetectorKind, DetectorPlacement};
use crate::core::{DetectorChannel, Event, EventCode, Instant, PhaseId, PhaseSet, Span};

/// ATSPM's split failure threshold on both occupancy ratios.
const SPLIT_FAILURE_RATIO: f64 = 0.79;
/// The red occupancy window after the start of red clearance.
const RED_WINDOW: Span = Span::from_millis(5000);
/// ATSPM aggregates into 15-minute bins.
pub const BIN: Span = Span::from_millis(15 * 60 * 1000);
/// Bins the daemon keeps per intersection: the last hour, so that 1,000
/// intersections stay within a few megabytes.
const LIVE_BINS: usize = 4;

/// Counts of one phase over a window or a bin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseCounts {
    /// Stop-bar actuations.
    pub volume: u64,
    /// Advance-loop actuations that have reached the stop bar.
    pub arrivals: u64,
    /// Those that reached it on green.
    pub arrivals_on_green: u64,
    pub greens: u64,
    pub split_failures: u64,
    pub gap_outs: u64,
    pub max_outs: u64,
    pub force_offs: u64,
    pub ped_actuations: u64,
    pub ped_walks: u64,
    /// Pedestrians who waited for a walk (delay samples), and their total
    /// wait.
    pub ped_waits: u64,
    pub ped_delay_ms: u64,
}

/// Measures of one phase, as reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseMeasures {
    pub phase: PhaseId,
    pub counts: PhaseCounts,
    pub occupancy: f64,
    /// Share of arrivals on green; `None` without advance arrivals.
    pub arrivals_on_green: Option<f64>,
    pub max_out_share: f64,
    pub gap_out_share: f64,
    pub force_off_share: f64,
}

/// Stop-bar actuations of one lane's loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneVolume {
    pub detector: DetectorChannel,
    pub volume: u64,
}

/// Counts of one 15-minute bin.
#[derive(Clone, Debug, PartialEq)]
pub struct BinMeasures {
    pub start: Instant,
    /// Phases present, in order.
    pub phases: Vec<(PhaseId, PhaseCounts)>,
    /// Stop-bar loops, in channel order.
    pub lanes: Vec<LaneVolume>,
}

/// Measures of one intersection since its window started.
#[derive(Clone, Debug, PartialEq)]
pub struct IntersectionMeasures {
    pub window_start: Instant,
    pub window: Span,
    pub phases: Vec<PhaseMeasures>,
    pub lanes: Vec<LaneVolume>,
    /// Oldest first; the daemon keeps the last hour's.
    pub bins: Vec<BinMeasures>,
}

/// Counts of a window or a bin, by phase and by detector channel.
#[derive(Clone, Copy, Debug)]
struct Tally {
    start: Instant,
    phases: [PhaseCounts; MAX_PHASES],
    lanes: [u64; MAX_DETECTORS],
}

impl Tally {
    fn new(start: Instant) -> Self {
        Tally { start, phases: [PhaseCounts::default(); MAX_PHASES], lanes: [0; MAX_DETECTORS] }
    }
}

/// Where a phase's stop-bar occupancy stands in its cycle.
#[derive(Clone, Copy, Debug, Default)]
struct PhaseState {
    /// Stop-bar loops of this phase occupied now.
    occupied: u8,
    /// Occupancy accrued up to here.
    mark: Instant,
    green_since: Option<Instant>,
    green_occupied: Span,
    /// Green occupancy ratio of the last green, waiting for its red window.
    last_gor: Option<f64>,
    /// End of the 5 s red window, while open.
    red_window_end: Option<Instant>,
    red_occupied: Span,
    /// The phase's walk is showing (21 until 22): an actuation then waits
    /// for nothing.
    walking: bool,
    /// First push-button actuation since the last walk, waiting for one.
    ped_waiting_since: Option<Instant>,
}

impl PhaseState {
    /// Adds occupied time up to `t` to the open green or red window.
    fn accrue(&mut self, t: Instant) {
        if t <= self.mark {
            return;
        }
        if self.occupied > 0 {
            if self.green_since.is_some() {
                self.green_occupied += t.since(self.mark);
            }
            if let Some(end) = self.red_window_end {
                let until = if t < end { t } else { end };
                self.red_occupied += until.since(self.mark);
            }
        }
        self.mark = t;
    }
}

/// Which measures a detector channel feeds.
#[derive(Clone, Copy, Debug, Default)]
struct Wiring {
    /// Phases whose volume and occupancy this stop-bar loop is.
    stop_bar: PhaseSet,
    /// Phases whose arrivals this advance loop is.
    advance: PhaseSet,
    /// Phases whose walk this push button calls.
    ped: PhaseSet,
    travel_time: Span,
}

#[derive(Clone, Debug)]
struct Accumulator {
    present: PhaseSet,
    wiring: [Wiring; MAX_DETECTORS],
    /// Stop-bar loops per phase (occupancy mean).
    stop_bars_per_phase: [u32; MAX_PHASES],
    detector_on_since: [Option<Instant>; MAX_DETECTORS],
    detector_on_ms: [u64; MAX_DETECTORS],
    state: [PhaseState; MAX_PHASES],
    /// Advance actuations on their way to the stop bar: (arrival, channel
    /// index). Resolved once every event before the arrival is applied,
    /// so a phase change at the same instant counts first (as ATSPM orders
    /// phase events before detector events).
    in_transit: BinaryHeap<Reverse<(Instant, usize)>>,
    total: Tally,
    bins: VecDeque<Tally>,
    keep_bins: usize,
    window_start: Option<Instant>,
    last: Instant,
}

impl Accumulator {
    fn new(spec: &ControllerSpec, keep_bins: usize) -> Self {
        let mut a = Accumulator {
            present: PhaseSet::EMPTY,
            wiring: [Wiring::default(); MAX_DETECTORS],
            stop_bars_per_phase: [0; MAX_PHASES],
            detector_on_since: [None; MAX_DETECTORS],
            detector_on_ms: [0; MAX_DETECTORS],
            state: [PhaseState::default(); MAX_PHASES],
            in_transit: BinaryHeap::new(),
            total: Tally::new(Instant::ZERO),
            bins: VecDeque::new(),
            keep_bins,
            window_start: None,
            last: Instant::ZERO,
        };
        a.configure(spec);
        a
    }

    /// Takes a (re)loaded spec's detector wiring; counts carry on.
    fn configure(&mut self, spec: &ControllerSpec) {
        self.present = spec.phase_set();
        self.wiring = [Wiring::default(); MAX_DETECTORS];
        self.stop_bars_per_phase = [0; MAX_PHASES];
        for d in &spec.detectors {
            let w = &mut self.wiring[d.channel.index()];
            match (d.kind, d.placement) {
                (DetectorKind::Pedestrian, _) => w.ped = d.calls,
                (DetectorKind::Vehicle, DetectorPlacement::StopBar) => {
                    w.stop_bar = d.calls;
                    for p in d.calls.iter() {
                        self.stop_bars_per_phase[p.index()] += 1;
                    }
                }
                (DetectorKind::Vehicle, DetectorPlacement::Advance) => {
                    w.advance = d.calls;
                    w.travel_time = d.travel_time;
                }
            }
        }
    }

    /// Counts into the window and into `t`'s bin. A bin older than the
    /// ones kept is counted in the window only.
    fn count(&mut self, t: Instant, add: impl Fn(&mut Tally)) {
        add(&mut self.total);
        let start = Instant::from_millis(t.as_millis() - t.as_millis() % BIN.as_millis());
        if self.bins.back().is_none_or(|b| b.start < start) {
            self.bins.push_back(Tally::new(start));
            while self.bins.len() > self.keep_bins {
                self.bins.pop_front();
            }
        }
        if let Some(bin) = self.bins.iter_mut().rev().find(|b| b.start == start) {
            add(bin);
        }
    }

    fn record(&mut self, e: &Event) {
        let t = e.at;
        self.window_start.get_or_insert(t);
        self.last = self.last.max(t);
        self.arrive_before(t);
        self.close_red_windows(t);
        let phase = PhaseId::new(e.param.min(255) as u8).filter(|p| self.present.contains(*p));
        match (e.code, phase) {
            (EventCode::PhaseBeginGreen, Some(p)) => {
                let s = &mut self.state[p.index()];
                s.accrue(t);
                s.green_since = Some(t);
                s.green_occupied = Span::ZERO;
                self.count(t, |c| c.phases[p.index()].greens += 1);
            }
            (EventCode::PhaseGapOut, Some(p)) => self.count(t, |c| c.phases[p.index()].gap_outs += 1),
            (EventCode::PhaseMaxOut, Some(p)) => self.count(t, |c| c.phases[p.index()].max_outs += 1),
            (EventCode::PhaseForceOff, Some(p)) => self.count(t, |c| c.phases[p.index()].force_offs += 1),
            (EventCode::PhaseBeginYellowChange, Some(p)) => {
                let s = &mut self.state[p.index()];
                s.accrue(t);
                if let Some(since) = s.green_since.take() {
                    let green = t.since(since);
                    s.last_gor =
                        (!green.is_zero()).then(|| s.green_occupied.as_millis() as f64 / green.as_millis() as f64);
                }
            }
            (EventCode::PhaseBeginRedClearance, Some(p)) => {
                let s = &mut self.state[p.index()];
                s.accrue(t);
                s.red_window_end = Some(t + RED_WINDOW);
                s.red_occupied = Span::ZERO;
            }
            (EventCode::PedBeginWalk, Some(p)) => {
                let s = &mut self.state[p.index()];
                s.walking = true;
                let waited = s.ped_waiting_since.take().map(|since| t.since(since).as_millis());
                self.count(t, |c| {
                    let c = &mut c.phases[p.index()];
                    c.ped_walks += 1;
                    if let Some(ms) = waited {
                        c.ped_waits += 1;
                        c.ped_delay_ms += ms;
                    }
                });
            }
            (EventCode::PedBeginClearance, Some(p)) => self.state[p.index()].walking = false,
            (EventCode::DetectorOn, _) => self.detector(e.param, t, true),
            (EventCode::DetectorOff, _) => self.detector(e.param, t, false),
            (EventCode::PedDetectorOn, _) => self.push_button(e.param, t),
            _ => {}
        }
    }

    fn detector(&mut self, channel: u16, t: Instant, on: bool) {
        let Some(ch) = (channel as usize).checked_sub(1).filter(|&c| c < MAX_DETECTORS) else { return };
        let was_on = self.detector_on_since[ch].is_some();
        if was_on == on {
            return;
        }
        if on {
            self.detector_on_since[ch] = Some(t);
        } else if let Some(since) = self.detector_on_since[ch].take() {
            self.detector_on_ms[ch] += t.since(since).as_millis();
        }
        let w = self.wiring[ch];
        for p in w.stop_bar.iter() {
            let s = &mut self.state[p.index()];
            s.accrue(t);
            s.occupied = if on { s.occupied.saturating_add(1) } else { s.occupied.saturating_sub(1) };
        }
        if on && !w.stop_bar.is_empty() {
            self.count(t, |c| {
                c.lanes[ch] += 1;
                for p in w.stop_bar.iter() {
                    c.phases[p.index()].volume += 1;
                }
            });
        }
        if on && !w.advance.is_empty() {
            self.in_transit.push(Reverse((t + w.travel_time, ch)));
        }
    }

    fn push_button(&mut self, channel: u16, t: Instant) {
        let Some(ch) = (channel as usize).checked_sub(1).filter(|&c| c < MAX_DETECTORS) else { return };
        let phases = self.wiring[ch].ped;
        for p in phases.iter() {
            let s = &mut self.state[p.index()];
            if !s.walking {
                s.ped_waiting_since.get_or_insert(t);
            }
        }
        self.count(t, |c| {
            for p in phases.iter() {
                c.phases[p.index()].ped_actuations += 1;
            }
        });
    }

    /// Advance actuations that reached the stop bar before `t`, against the
    /// phase states in force then.
    fn arrive_before(&mut self, t: Instant) {
        while let Some(&Reverse((at, ch))) = self.in_transit.peek().filter(|Reverse((at, _))| *at < t) {
            self.in_transit.pop();
            let phases = self.wiring[ch].advance;
            let green: PhaseSet = phases.iter().filter(|p| self.state[p.index()].green_since.is_some()).collect();
            self.count(at, |c| {
                for p in phases.iter() {
                    c.phases[p.index()].arrivals += 1;
                }
                for p in green.iter() {
                    c.phases[p.index()].arrivals_on_green += 1;
                }
            });
        }
    }

    fn close_red_windows(&mut self, t: Instant) {
        let present = self.present;
        for p in present.iter() {
            let s = &mut self.state[p.index()];
            let Some(end) = s.red_window_end.filter(|&end| t >= end) else { continue };
            s.accrue(end);
            s.red_window_end = None;
            let ror5 = s.red_occupied.as_millis() as f64 / RED_WINDOW.as_millis() as f64;
            if s.last_gor.take().is_some_and(|gor| gor > SPLIT_FAILURE_RATIO) && ror5 > SPLIT_FAILURE_RATIO {
                self.count(end, |c| c.phases[p.index()].split_failures += 1);
            }
        }
    }

    /// Stop-bar loops, in channel order.
    fn lanes(&self, tally: &Tally) -> Vec<LaneVolume> {
        (0..MAX_DETECTORS)
            .filter(|&ch| !self.wiring[ch].stop_bar.is_empty())
            .filter_map(|ch| {
                Some(LaneVolume { detector: DetectorChannel::new(ch as u8 + 1)?, volume: tally.lanes[ch] })
            })
            .collect()
    }

    fn report(&self) -> IntersectionMeasures {
        let start = self.window_start.unwrap_or(self.last);
        let window = self.last.since(start);
        let share = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        let phases = self
            .present
            .iter()
            .map(|p| {
                let c = self.total.phases[p.index()];
                let on_ms: u64 = (0..MAX_DETECTORS)
                    .filter(|&ch| self.wiring[ch].stop_bar.contains(p))
                    .map(|ch| {
                        self.detector_on_ms[ch]
                            + self.detector_on_since[ch].map_or(0, |s| self.last.since(s).as_millis())
                    })
                    .sum();
                let detectors = u64::from(self.stop_bars_per_phase[p.index()]);
                let terminations = c.gap_outs + c.max_outs + c.force_offs;
                PhaseMeasures {
                    phase: p,
                    counts: c,
                    occupancy: share(on_ms, detectors * window.as_millis()),
                    arrivals_on_green: (c.arrivals > 0).then(|| share(c.arrivals_on_green, c.arrivals)),
                    max_out_share: share(c.max_outs, terminations),
                    gap_out_share: share(c.gap_outs, terminations),
                    force_off_share: share(c.force_offs, terminations),
                }
            })
            .collect();
        let bins = self
            .bins
            .iter()
            .map(|b| BinMeasures {
                start: b.start,
                phases: self.present.iter().map(|p| (p, b.phases[p.index()])).collect(),
                lanes: self.lanes(b),
            })
            .collect();
        IntersectionMeasures { window_start: start, window, phases, lanes: self.lanes(&self.total), bins }
    }
}

/// The event codes the measures read.
const MEASURED: [EventCode; 11] = [
    EventCode::PhaseBeginGreen,
    EventCode::PhaseGapOut,
    EventCode::PhaseMaxOut,
    EventCode::PhaseForceOff,
    EventCode::PhaseBeginYellowChange,
    EventCode::PhaseBeginRedClearance,
    EventCode::PedBeginWalk,
    EventCode::PedBeginClearance,
    EventCode::DetectorOff,
    EventCode::DetectorOn,
    EventCode::PedDetectorOn,
];

/// The measures of a whole event log of one intersection, as read back
/// from its file (`(time, event code, parameter)`, in file order), every
/// bin kept (`greenwave measures`). Advance actuations still on their way
/// to the stop bar when the log ends are counted against the phase states
/// at its end, as ATSPM carries the last signal state on.
pub fn measure_log(
    spec: &ControllerSpec,
    events: impl IntoIterator<Item = (Instant, u16, u16)>,
) -> IntersectionMeasures {
    let mut a = Accumulator::new(spec, usize::MAX);
    for (at, code, param) in events {
        if let Some(&code) = MEASURED.iter().find(|c| c.code() == code) {
            a.record(&Event { at, code, param });
        }
    }
    a.arrive_before(Instant::from_millis(u64::MAX));
    a.report()
}

/// The measures of every intersection, fed by the event hub.
#[derive(Debug)]
pub struct Measures {
    intersections: Mutex<Vec<Accumulator>>,
}

impl Measures {
    pub fn new<'a>(specs: impl IntoIterator<Item = &'a ControllerSpec>) -> Self {
        let all = specs.into_iter().map(|s| Accumulator::new(s, LIVE_BINS)).collect();
        Measures { intersections: Mutex::new(all) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Accumulator>> {
        self.intersections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A batch of `(intersection, event)` from the engine.
    pub fn record(&self, events: &[(usize, Event)]) {
        let mut all = self.lock();
        for (i, e) in events {
            if let Some(a) = all.get_mut(*i) {
                a.record(e);
            }
        }
    }

    /// A new spec for intersection `i` (reload or applied plan).
    pub fn configure(&self, i: usize, spec: &ControllerSpec) {
        if let Some(a) = self.lock().get_mut(i) {
            a.configure(spec);
        }
    }

    pub fn report(&self, i: usize) -> Option<IntersectionMeasures> {
        self.lock().get(i).map(Accumulator::report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ControllerSpec {
        crate::config::load_intersection_str("t.toml", text).expect("shipped file is valid").0.spec
    }

    fn ev(ms: u64, code: EventCode, param: u16) -> (usize, Event) {
        (0, Event { at: Instant::from_millis(ms), code, param })
    }

    fn phase(r: &IntersectionMeasures, n: u8) -> PhaseMeasures {
        *r.phases.iter().find(|p| p.phase.number() == n).expect("phase present")
    }

    #[test]
    fn volume_terminations_and_a_split_failure_from_stop_bar_loops() {
        use EventCode::*;
        let m = Measures::new([&spec(include_str!("../../controllers/elm-and-oak.toml"))]);
        // Phase 4 (stop-bar loops 3 and 4): a car waits on red, green at
        // 10 s, loop 3 occupied all green, max-out at 30 s, and the queue
        // still sits on the loop through the first 5 s of red clearance.
        m.record(&[
            ev(0, DetectorOn, 3),
            ev(10_000, PhaseBeginGreen, 4),
            ev(12_000, DetectorOn, 4),
            ev(13_000, DetectorOff, 4),
            ev(30_000, PhaseMaxOut, 4),
            ev(30_000, PhaseBeginYellowChange, 4),
            ev(33_000, PhaseBeginRedClearance, 4),
            ev(40_000, DetectorOff, 3),
        ]);
        let r = m.report(0).expect("intersection 0");
        let p4 = phase(&r, 4);
        assert_eq!(p4.counts.volume, 2);
        assert_eq!(p4.counts.greens, 1);
        assert_eq!(p4.arrivals_on_green, None, "no advance loop, no arrivals: {p4:?}");
        assert!((p4.max_out_share - 1.0).abs() < 1e-9);
        assert_eq!(p4.counts.split_failures, 1, "{p4:?}");
        // Loop 3 on 40 of 40 s, loop 4 on 1 s: (40 + 1) / (2 × 40).
        assert!((p4.occupancy - 41.0 / 80.0).abs() < 1e-9, "{p4:?}");
        assert_eq!(r.window, Span::from_millis(40_000));
        let lanes: Vec<(u8, u64)> = r.lanes.iter().map(|l| (l.detector.number(), l.volume)).collect();
        assert_eq!(lanes, [(1, 0), (2, 0), (3, 1), (4, 1)]);
    }

    /// Broadway & 5th phase 2: stop-bar loops 2 and 3, advance loop 17 at
    /// 90 m (6.48 s at 50 km/h). The advance loop is not volume, and its
    /// arrivals are judged when they reach the stop bar.
    #[test]
    fn advance_loops_are_arrivals_projected_to_the_stop_bar_not_volume() {
        use EventCode::*;
        let m = Measures::new([&spec(include_str!("../../controllers/broadway-and-5th.toml"))]);
        m.record(&[
            // Over the loop 5 s before green: at the stop bar on green.
            ev(5_000, DetectorOn, 17),
            ev(5_500, DetectorOff, 17),
            ev(10_000, PhaseBeginGreen, 2),
            ev(11_000, DetectorOn, 2),
            ev(11_500, DetectorOff, 2),
            // Over the loop on green, but at the stop bar after yellow.
            ev(20_000, DetectorOn, 17),
            ev(20_500, DetectorOff, 17),
            ev(25_000, PhaseBeginYellowChange, 2),
            ev(40_000, DetectorOn, 3),
        ]);
        let p2 = phase(&m.report(0).expect("intersection 0"), 2);
        assert_eq!(p2.counts.volume, 2, "{p2:?}");
        assert_eq!((p2.counts.arrivals, p2.counts.arrivals_on_green), (2, 1), "{p2:?}");
        assert_eq!(p2.arrivals_on_green, Some(0.5));
    }

    /// Elm & Oak phase 2, push button 9: a press during the walk waits for
    /// nothing; the first press after it waits until the next walk, the
    /// second press joins it.
    #[test]
    fn pedestrian_delay_runs_from_the_first_press_to_the_walk() {
        use EventCode::*;
        let m = Measures::new([&spec(include_str!("../../controllers/elm-and-oak.toml"))]);
        m.record(&[
            ev(0, PedBeginWalk, 2),
            ev(2_000, PedDetectorOn, 9),
            ev(7_000, PedBeginClearance, 2),
            ev(20_000, PedDetectorOn, 9),
            ev(30_000, PedDetectorOn, 9),
            ev(65_000, PedBeginWalk, 2),
        ]);
        let c = phase(&m.report(0).expect("intersection 0"), 2).counts;
        assert_eq!((c.ped_actuations, c.ped_walks, c.ped_waits, c.ped_delay_ms), (3, 2, 1, 45_000), "{c:?}");
    }

    #[test]
    fn counts_fall_into_clock_aligned_fifteen_minute_bins() {
        use EventCode::*;
        let m = Measures::new([&spec(include_str!("../../controllers/elm-and-oak.toml"))]);
        let quarter = BIN.as_millis();
        m.record(&[
            ev(quarter - 1, DetectorOn, 3),
            ev(quarter, DetectorOn, 4),
            ev(quarter + 1, DetectorOff, 3),
            ev(6 * quarter + 5, DetectorOn, 3),
        ]);
        let r = m.report(0).expect("intersection 0");
        let starts: Vec<u64> = r.bins.iter().map(|b| b.start.as_millis()).collect();
        assert_eq!(starts, [0, quarter, 6 * quarter]);
        let volume = |b: &BinMeasures| b.phases.iter().find(|(p, _)| p.number() == 4).expect("phase 4").1.volume;
        assert_eq!(r.bins.iter().map(volume).collect::<Vec<_>>(), [1, 1, 1]);
        // The daemon keeps the last hour.
        m.record(&[
            ev(20 * quarter, DetectorOff, 4),
            ev(20 * quarter + 1, DetectorOn, 4),
            ev(21 * quarter, DetectorOff, 3),
            ev(21 * quarter + 1, DetectorOn, 3),
        ]);
        let starts: Vec<u64> = m.report(0).expect("intersection 0").bins.iter().map(|b| b.start.as_millis()).collect();
        assert_eq!(starts, [quarter, 6 * quarter, 20 * quarter, 21 * quarter]);
    }
}
