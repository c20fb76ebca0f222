//! Performance measures per phase, computed from the controller's Indiana
//! events the way ATSPM computes them (so they agree with a central ATSPM
//! fed from the event log):
//!
//! - volume: detector-on events (82) on the phase's vehicle detectors;
//! - arrivals on green: those that came while the phase was green;
//! - occupancy: share of time its vehicle detectors were occupied;
//! - split failure: a green whose occupancy ratio (any of the phase's
//!   detectors occupied) was above 0.79 and whose first 5 s of red were too;
//! - max-out / gap-out / force-off share of green terminations (5 / 4 / 6).
//!
//! The hub thread feeds every event here; readers take a copy under the
//! same short lock. Nothing runs on the control thread.

use std::sync::Mutex;

use crate::core::ids::{MAX_DETECTORS, MAX_PHASES};
use crate::core::spec::{ControllerSpec, DetectorKind};
use crate::core::{Event, EventCode, Instant, PhaseId, PhaseSet, Span};

/// ATSPM's split failure threshold on both occupancy ratios.
const SPLIT_FAILURE_RATIO: f64 = 0.79;
/// The red occupancy window after the end of yellow.
const RED_WINDOW: Span = Span::from_millis(5000);

/// Measures of one phase, as reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseMeasures {
    pub phase: PhaseId,
    pub volume: u64,
    pub occupancy: f64,
    pub greens: u64,
    pub split_failures: u64,
    pub arrivals_on_green: f64,
    pub max_out_share: f64,
    pub gap_out_share: f64,
    pub force_off_share: f64,
}

/// Measures of one intersection since its window started.
#[derive(Clone, Debug, PartialEq)]
pub struct IntersectionMeasures {
    pub window_start: Instant,
    pub window: Span,
    pub phases: Vec<PhaseMeasures>,
}

#[derive(Clone, Copy, Debug, Default)]
struct PhaseCounters {
    volume: u64,
    arrivals_on_green: u64,
    greens: u64,
    gap_outs: u64,
    max_outs: u64,
    force_offs: u64,
    split_failures: u64,
    /// Detectors of this phase occupied now.
    occupied: u8,
    /// Occupancy accrued up to here.
    mark: Instant,
    green_since: Option<Instant>,
    green_occupied: Span,
    /// Green occupancy ratio of the last green, waiting for its red window.
    last_gor: Option<f64>,
    /// End of the 5 s red window after yellow, while open.
    red_window_end: Option<Instant>,
    red_occupied: Span,
}

impl PhaseCounters {
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

#[derive(Clone, Debug)]
struct Accumulator {
    present: PhaseSet,
    /// Vehicle detector channel index → phases it calls.
    detector_phases: [PhaseSet; MAX_DETECTORS],
    /// Vehicle detectors per phase (occupancy mean).
    detectors_per_phase: [u32; MAX_PHASES],
    detector_on_since: [Option<Instant>; MAX_DETECTORS],
    detector_on_ms: [u64; MAX_DETECTORS],
    phases: [PhaseCounters; MAX_PHASES],
    window_start: Option<Instant>,
    last: Instant,
}

impl Accumulator {
    fn new(spec: &ControllerSpec) -> Self {
        let mut a = Accumulator {
            present: PhaseSet::EMPTY,
            detector_phases: [PhaseSet::EMPTY; MAX_DETECTORS],
            detectors_per_phase: [0; MAX_PHASES],
            detector_on_since: [None; MAX_DETECTORS],
            detector_on_ms: [0; MAX_DETECTORS],
            phases: [PhaseCounters::default(); MAX_PHASES],
            window_start: None,
            last: Instant::ZERO,
        };
        a.configure(spec);
        a
    }

    /// Takes a (re)loaded spec's detector wiring; counters carry on.
    fn configure(&mut self, spec: &ControllerSpec) {
        self.present = spec.phase_set();
        self.detector_phases = [PhaseSet::EMPTY; MAX_DETECTORS];
        self.detectors_per_phase = [0; MAX_PHASES];
        for d in spec.detectors.iter().filter(|d| d.kind == DetectorKind::Vehicle) {
            self.detector_phases[d.channel.index()] = d.calls;
            for p in d.calls.iter() {
                self.detectors_per_phase[p.index()] += 1;
            }
        }
    }

    fn record(&mut self, e: &Event) {
        let t = e.at;
        self.window_start.get_or_insert(t);
        self.last = self.last.max(t);
        self.close_red_windows(t);
        let phase = PhaseId::new(e.param.min(255) as u8).filter(|p| self.present.contains(*p));
        match (e.code, phase) {
            (EventCode::PhaseBeginGreen, Some(p)) => {
                let c = &mut self.phases[p.index()];
                c.accrue(t);
                c.greens += 1;
                c.green_since = Some(t);
                c.green_occupied = Span::ZERO;
            }
            (EventCode::PhaseGapOut, Some(p)) => self.phases[p.index()].gap_outs += 1,
            (EventCode::PhaseMaxOut, Some(p)) => self.phases[p.index()].max_outs += 1,
            (EventCode::PhaseForceOff, Some(p)) => self.phases[p.index()].force_offs += 1,
            (EventCode::PhaseBeginYellowChange, Some(p)) => {
                let c = &mut self.phases[p.index()];
                c.accrue(t);
                if let Some(since) = c.green_since.take() {
                    let green = t.since(since);
                    c.last_gor =
                        (!green.is_zero()).then(|| c.green_occupied.as_millis() as f64 / green.as_millis() as f64);
                }
            }
            (EventCode::PhaseEndYellowChange, Some(p)) => {
                let c = &mut self.phases[p.index()];
                c.accrue(t);
                c.red_window_end = Some(t + RED_WINDOW);
                c.red_occupied = Span::ZERO;
            }
            (EventCode::DetectorOn, _) => self.detector(e.param, t, true),
            (EventCode::DetectorOff, _) => self.detector(e.param, t, false),
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
        for p in self.detector_phases[ch].iter() {
            let c = &mut self.phases[p.index()];
            c.accrue(t);
            if on {
                c.occupied = c.occupied.saturating_add(1);
                c.volume += 1;
                if c.green_since.is_some() {
                    c.arrivals_on_green += 1;
                }
            } else {
                c.occupied = c.occupied.saturating_sub(1);
            }
        }
    }

    fn close_red_windows(&mut self, t: Instant) {
        for c in &mut self.phases {
            let Some(end) = c.red_window_end.filter(|&end| t >= end) else { continue };
            c.accrue(end);
            c.red_window_end = None;
            let ror5 = c.red_occupied.as_millis() as f64 / RED_WINDOW.as_millis() as f64;
            if c.last_gor.take().is_some_and(|gor| gor > SPLIT_FAILURE_RATIO) && ror5 > SPLIT_FAILURE_RATIO {
                c.split_failures += 1;
            }
        }
    }

    fn report(&self) -> IntersectionMeasures {
        let start = self.window_start.unwrap_or(self.last);
        let window = self.last.since(start);
        let share = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        let phases = self
            .present
            .iter()
            .map(|p| {
                let c = &self.phases[p.index()];
                let on_ms: u64 = (0..MAX_DETECTORS)
                    .filter(|&ch| self.detector_phases[ch].contains(p))
                    .map(|ch| {
                        self.detector_on_ms[ch]
                            + self.detector_on_since[ch].map_or(0, |s| self.last.since(s).as_millis())
                    })
                    .sum();
                let detectors = u64::from(self.detectors_per_phase[p.index()]);
                let terminations = c.gap_outs + c.max_outs + c.force_offs;
                PhaseMeasures {
                    phase: p,
                    volume: c.volume,
                    occupancy: share(on_ms, detectors * window.as_millis()),
                    greens: c.greens,
                    split_failures: c.split_failures,
                    arrivals_on_green: share(c.arrivals_on_green, c.volume),
                    max_out_share: share(c.max_outs, terminations),
                    gap_out_share: share(c.gap_outs, terminations),
                    force_off_share: share(c.force_offs, terminations),
                }
            })
            .collect();
        IntersectionMeasures { window_start: start, window, phases }
    }
}

/// The measures of every intersection, fed by the event hub.
#[derive(Debug)]
pub struct Measures {
    intersections: Mutex<Vec<Accumulator>>,
}

impl Measures {
    pub fn new<'a>(specs: impl IntoIterator<Item = &'a ControllerSpec>) -> Self {
        Measures { intersections: Mutex::new(specs.into_iter().map(Accumulator::new).collect()) }
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

    fn spec() -> ControllerSpec {
        let text = include_str!("../../controllers/elm-and-oak.toml");
        crate::config::load_intersection_str("elm-and-oak.toml", text).expect("shipped file is valid").0.spec
    }

    fn ev(ms: u64, code: EventCode, param: u16) -> (usize, Event) {
        (0, Event { at: Instant::from_millis(ms), code, param })
    }

    #[test]
    fn volume_arrivals_on_green_terminations_and_a_split_failure() {
        use EventCode::*;
        let m = Measures::new([&spec()]);
        // Phase 4 (detectors 3 and 4): a car waits on red, green at 10 s,
        // detector 3 occupied all green, max-out at 30 s, and the
        // queue still sits on the loop through the first 5 s of red.
        m.record(&[
            ev(0, DetectorOn, 3),
            ev(10_000, PhaseBeginGreen, 4),
            ev(12_000, DetectorOn, 4),
            ev(13_000, DetectorOff, 4),
            ev(30_000, PhaseMaxOut, 4),
            ev(30_000, PhaseBeginYellowChange, 4),
            ev(33_000, PhaseEndYellowChange, 4),
            ev(40_000, DetectorOff, 3),
        ]);
        let r = m.report(0).expect("intersection 0");
        let p4 = r.phases.iter().find(|p| p.phase.number() == 4).expect("phase 4");
        assert_eq!(p4.volume, 2);
        assert_eq!(p4.greens, 1);
        assert!((p4.arrivals_on_green - 0.5).abs() < 1e-9, "{p4:?}");
        assert!((p4.max_out_share - 1.0).abs() < 1e-9);
        assert_eq!(p4.split_failures, 1, "{p4:?}");
        // Detector 3 on 40 of 40 s, detector 4 on 1 s: (40 + 1) / (2 × 40).
        assert!((p4.occupancy - 41.0 / 80.0).abs() < 1e-9, "{p4:?}");
        assert_eq!(r.window, Span::from_millis(40_000));
    }
}
