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
//!   counted in the bin the walk starts in;
//! - approach delay (ATSPM's): each advance arrival at the stop bar while
//!   the phase is red (from its end of yellow, 9, to its next begin green,
//!   event 1) waits until that green; per phase, the total of those
//!   waits, the vehicles that waited, and per vehicle over every advance
//!   arrival (arrivals on green and yellow wait nothing), each wait in the
//!   bin of its arrival;
//! - preemption, per input: requests (input on, 102), services (entry
//!   started, 105), how long the input stayed on (102 to 104, in the bin
//!   of the 102) and the dwell (107 to the begin of exit, 111, in the bin
//!   of the 107);
//! - transit priority, per phase: requests (check-in, 112) and services
//!   (the phase green before the request's check-out, 115: at the
//!   check-in if it was green then, else at its begin green).
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
/// Preemption inputs, 1..=8 (the Indiana preempt event parameter).
pub const MAX_PREEMPTS: usize = 8;

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
    /// Advance arrivals on red whose green has come (approach delay
    /// samples), and their total wait for it.
    pub arrivals_on_red: u64,
    pub approach_delay_ms: u64,
    /// Transit priority check-ins, and those served with a green.
    pub priority_requests: u64,
    pub priority_services: u64,
}

/// Counts of one preemption input over a window or a bin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreemptCounts {
    /// Input on (102).
    pub requests: u64,
    /// Entry started (105).
    pub services: u64,
    /// Input on to input off (102 to 104), of the requests whose input went
    /// off.
    pub input_on_ms: u64,
    /// Dwells that ended (107 to 111), and their total.
    pub dwells: u64,
    pub dwell_ms: u64,
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
    /// Approach delay per vehicle (every advance arrival, those that did
    /// not wait included); `None` without advance arrivals.
    pub delay_per_vehicle_s: Option<f64>,
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
    /// The controller's preemption inputs, in input order.
    pub preempts: Vec<(u8, PreemptCounts)>,
}

/// A bin of one intersection that has closed ([`Measures::close_bins`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ClosedBin {
    pub intersection: usize,
    /// When counting began in the bin: its start, or the intersection's
    /// first event if later (the daemon started within the bin).
    pub counted_from: Instant,
    pub bin: BinMeasures,
}

/// Measures of one intersection since its window started.
#[derive(Clone, Debug, PartialEq)]
pub struct IntersectionMeasures {
    pub window_start: Instant,
    pub window: Span,
    pub phases: Vec<PhaseMeasures>,
    pub lanes: Vec<LaneVolume>,
    /// The controller's preemption inputs, in input order.
    pub preempts: Vec<(u8, PreemptCounts)>,
    /// Oldest first; the daemon keeps the last hour's.
    pub bins: Vec<BinMeasures>,
}

/// The start of the 15-minute bin `t` falls in.
pub fn bin_start(t: Instant) -> Instant {
    Instant::from_millis(t.as_millis() - t.as_millis() % BIN.as_millis())
}

/// Counts of a window or a bin, by phase and by detector channel.
#[derive(Clone, Copy, Debug)]
struct Tally {
    start: Instant,
    phases: [PhaseCounts; MAX_PHASES],
    lanes: [u64; MAX_DETECTORS],
    preempts: [PreemptCounts; MAX_PREEMPTS],
}

impl Tally {
    fn new(start: Instant) -> Self {
        Tally {
            start,
            phases: [PhaseCounts::default(); MAX_PHASES],
            lanes: [0; MAX_DETECTORS],
            preempts: [PreemptCounts::default(); MAX_PREEMPTS],
        }
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
    /// Red since its end of yellow (9), until its next begin green (1):
    /// an advance arrival now waits for that green.
    red: bool,
    /// A transit priority request is checked in (112 until 115), and
    /// whether it has been served (its phase green since).
    priority: Option<bool>,
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

/// Advance arrivals waiting on red for their phase's green, per bin of
/// arrival: (bin start, vehicles, sum of their arrival times in ms). One
/// entry per bin a red spans, so a phase never green again costs one
/// entry per 15 minutes, not one per vehicle.
type Waiting = Vec<(Instant, u64, u64)>;

/// Where a preemption input stands.
#[derive(Clone, Copy, Debug, Default)]
struct PreemptState {
    /// Input on (102) since, until input off (104).
    on_since: Option<Instant>,
    /// Dwell (107) since, until begin exit (111).
    dwell_since: Option<Instant>,
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
    waiting: [Waiting; MAX_PHASES],
    preempt: [PreemptState; MAX_PREEMPTS],
    /// Preemption inputs the controller defines (bit `n - 1`), reported
    /// even without events.
    preempt_inputs: u8,
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
    /// Bins before this one have been handed out as closed
    /// ([`Measures::close_bins`]); `None` before the first.
    closed_before: Option<Instant>,
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
            waiting: std::array::from_fn(|_| Vec::new()),
            preempt: [PreemptState::default(); MAX_PREEMPTS],
            preempt_inputs: 0,
            in_transit: BinaryHeap::new(),
            total: Tally::new(Instant::ZERO),
            bins: VecDeque::new(),
            keep_bins,
            window_start: None,
            last: Instant::ZERO,
            closed_before: None,
        };
        a.configure(spec);
        a
    }

    /// Takes a (re)loaded spec's detector wiring; counts carry on.
    fn configure(&mut self, spec: &ControllerSpec) {
        self.present = spec.phase_set();
        self.wiring = [Wiring::default(); MAX_DETECTORS];
        self.stop_bars_per_phase = [0; MAX_PHASES];
        self.preempt_inputs = spec
            .preempts
            .iter()
            .filter(|p| (1..=MAX_PREEMPTS as u8).contains(&p.input))
            .fold(0, |m, p| m | 1 << (p.input - 1));
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

    /// Counts into the window and into `t`'s bin (made if missing, in
    /// order: a wait or a dwell is counted in its bin when it ends). A bin
    /// older than the ones kept is counted in the window only.
    fn count(&mut self, t: Instant, add: impl Fn(&mut Tally)) {
        add(&mut self.total);
        let start = bin_start(t);
        let at = self.bins.partition_point(|b| b.start < start);
        if self.bins.get(at).is_none_or(|b| b.start != start) {
            if at == 0 && self.bins.len() >= self.keep_bins {
                return;
            }
            self.bins.insert(at, Tally::new(start));
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
                s.red = false;
                let served = s.priority == Some(false);
                if served {
                    s.priority = Some(true);
                }
                self.count(t, |c| {
                    c.phases[p.index()].greens += 1;
                    if served {
                        c.phases[p.index()].priority_services += 1;
                    }
                });
                for (bin, vehicles, arrived_ms) in std::mem::take(&mut self.waiting[p.index()]) {
                    let delay = vehicles * t.as_millis() - arrived_ms;
                    self.count(bin, |c| {
                        let c = &mut c.phases[p.index()];
                        c.arrivals_on_red += vehicles;
                        c.approach_delay_ms += delay;
                    });
                }
            }
            (EventCode::PhaseEndYellowChange, Some(p)) => self.state[p.index()].red = true,
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
            (EventCode::TspCheckIn, Some(p)) => {
                let s = &mut self.state[p.index()];
                let green = s.green_since.is_some();
                s.priority = Some(green);
                self.count(t, |c| {
                    let c = &mut c.phases[p.index()];
                    c.priority_requests += 1;
                    if green {
                        c.priority_services += 1;
                    }
                });
            }
            (EventCode::TspCheckOut, Some(p)) => self.state[p.index()].priority = None,
            (
                EventCode::PreemptCallInputOn
                | EventCode::PreemptCallInputOff
                | EventCode::PreemptEntryStarted
                | EventCode::PreemptBeginDwell
                | EventCode::PreemptBeginExitInterval,
                _,
            ) => self.preemption(e.code, e.param, t),
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

    fn preemption(&mut self, code: EventCode, input: u16, t: Instant) {
        let Some(i) = (input as usize).checked_sub(1).filter(|&i| i < MAX_PREEMPTS) else { return };
        match code {
            EventCode::PreemptCallInputOn => {
                // A second 102 without a 104 between: the first request's
                // input-off was never logged, so it has no duration (as an
                // ATSPM pairing of 102 with 104 leaves it unmatched).
                self.preempt[i].on_since = Some(t);
                self.count(t, |c| c.preempts[i].requests += 1);
            }
            EventCode::PreemptCallInputOff => {
                if let Some(since) = self.preempt[i].on_since.take() {
                    self.count(since, |c| c.preempts[i].input_on_ms += t.since(since).as_millis());
                }
            }
            EventCode::PreemptEntryStarted => self.count(t, |c| c.preempts[i].services += 1),
            EventCode::PreemptBeginDwell => self.preempt[i].dwell_since = Some(t),
            EventCode::PreemptBeginExitInterval => {
                if let Some(since) = self.preempt[i].dwell_since.take() {
                    self.count(since, |c| {
                        c.preempts[i].dwells += 1;
                        c.preempts[i].dwell_ms += t.since(since).as_millis();
                    });
                }
            }
            _ => {}
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
            let bin = bin_start(at);
            for p in phases.iter().filter(|p| self.state[p.index()].red) {
                let waiting = &mut self.waiting[p.index()];
                match waiting.last_mut() {
                    Some((b, vehicles, sum)) if *b == bin => {
                        *vehicles += 1;
                        *sum += at.as_millis();
                    }
                    _ => waiting.push((bin, 1, at.as_millis())),
                }
            }
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

    /// The bins that end at or before `now` and were not handed out yet,
    /// oldest first: every bin from the first counted one, a bin without
    /// counts as zeros, at most the kept bins before the current one. Advance arrivals and red
    /// windows that ended before the current bin are settled first, as
    /// the next event would settle them (against the same phase states:
    /// every event before `now` has been recorded).
    fn close_bins(&mut self, now: Instant, out: &mut Vec<BinMeasures>) {
        let Some(first) = self.window_start else { return };
        let current = bin_start(now);
        let from = self.closed_before.unwrap_or_else(|| bin_start(first));
        if from >= current {
            return;
        }
        self.arrive_before(current);
        self.close_red_windows(current);
        // The bins before the current one that are surely still kept (the
        // current one may hold counts too): an older bin may have been
        // dropped, and must not be sent as zeros.
        let back = (self.keep_bins.saturating_sub(1) as u64).saturating_mul(BIN.as_millis());
        let kept = current.as_millis().saturating_sub(back);
        let mut start = from.as_millis().max(kept);
        while start < current.as_millis() {
            let at = Instant::from_millis(start);
            let empty = Tally::new(at);
            let tally = self.bins.iter().find(|b| b.start == at).unwrap_or(&empty);
            out.push(self.bin(tally));
            start += BIN.as_millis();
        }
        self.closed_before = Some(current);
    }

    fn bin(&self, b: &Tally) -> BinMeasures {
        BinMeasures {
            start: b.start,
            phases: self.present.iter().map(|p| (p, b.phases[p.index()])).collect(),
            lanes: self.lanes(b),
            preempts: self.preempts(b),
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

    /// The controller's preemption inputs, and any other that logged.
    fn preempts(&self, tally: &Tally) -> Vec<(u8, PreemptCounts)> {
        (0..MAX_PREEMPTS)
            .filter(|&i| self.preempt_inputs & (1 << i) != 0 || tally.preempts[i] != PreemptCounts::default())
            .map(|i| (i as u8 + 1, tally.preempts[i]))
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
                    delay_per_vehicle_s: (c.arrivals > 0)
                        .then(|| c.approach_delay_ms as f64 / 1000.0 / c.arrivals as f64),
                }
            })
            .collect();
        let bins = self.bins.iter().map(|b| self.bin(b)).collect();
        IntersectionMeasures {
            window_start: start,
            window,
            phases,
            lanes: self.lanes(&self.total),
            preempts: self.preempts(&self.total),
            bins,
        }
    }
}

/// The event codes the measures read.
const MEASURED: [EventCode; 19] = [
    EventCode::PhaseBeginGreen,
    EventCode::PhaseEndYellowChange,
    EventCode::TspCheckIn,
    EventCode::TspCheckOut,
    EventCode::PreemptCallInputOn,
    EventCode::PreemptCallInputOff,
    EventCode::PreemptEntryStarted,
    EventCode::PreemptBeginDwell,
    EventCode::PreemptBeginExitInterval,
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

    /// Every intersection's bins that closed before `now` (control time:
    /// every event before it has been recorded) and were not handed out
    /// yet, as `(intersection, bin)`, oldest first (the NATS measures
    /// subject). The counts are those of the bin at its close; a count
    /// described by a moment in the bin but known only later (an approach
    /// delay whose green comes after the bin, a preemption input or
    /// dwell still on) joins the bin in [`Measures::report`] afterwards.
    pub fn close_bins(&self, now: Instant, out: &mut Vec<ClosedBin>) {
        let mut bins = Vec::new();
        for (intersection, a) in self.lock().iter_mut().enumerate() {
            a.close_bins(now, &mut bins);
            let first = a.window_start.unwrap_or(Instant::ZERO);
            out.extend(bins.drain(..).map(|bin| ClosedBin {
                intersection,
                counted_from: if first > bin.start { first } else { bin.start },
                bin,
            }));
        }
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

    /// Broadway & 5th phase 2, advance loop 17 (6.48 s to the stop bar):
    /// arrivals on red wait for the next green, arrivals on green and on
    /// yellow wait nothing, and a wait is counted in the bin of its
    /// arrival even when its green comes in the next bin.
    #[test]
    fn approach_delay_is_the_wait_of_red_arrivals_for_the_next_green() {
        use EventCode::*;
        let m = Measures::new([&spec(include_str!("../../controllers/broadway-and-5th.toml"))]);
        let q = BIN.as_millis();
        let over_the_loop = |ms: u64| [ev(ms, DetectorOn, 17), ev(ms + 300, DetectorOff, 17)];
        let mut events = vec![ev(q - 30_000, PhaseEndYellowChange, 2)];
        // At the stop bar at q - 18.52 s and q - 16.52 s (red, bin 0).
        events.extend(over_the_loop(q - 25_000));
        events.extend(over_the_loop(q - 23_000));
        events.push(ev(q + 5_000, PhaseBeginGreen, 2));
        // On green, then on yellow (yellow 8 at q + 40 s, red at q + 44 s).
        events.extend(over_the_loop(q + 20_000));
        events.extend(over_the_loop(q + 35_000));
        events.push(ev(q + 40_000, PhaseBeginYellowChange, 2));
        events.push(ev(q + 44_000, PhaseEndYellowChange, 2));
        // On red (q + 46.48 s) with no green after it yet: no delay so far.
        events.extend(over_the_loop(q + 40_000));
        events.push(ev(q + 60_000, DetectorOn, 2));
        m.record(&events);
        let r = m.report(0).expect("intersection 0");
        let c = phase(&r, 2).counts;
        // (q + 5 s) - (q - 18.52 s) + (q + 5 s) - (q - 16.52 s).
        assert_eq!((c.arrivals, c.arrivals_on_red, c.approach_delay_ms), (5, 2, 23_520 + 21_520), "{c:?}");
        let per_vehicle = phase(&r, 2).delay_per_vehicle_s.expect("advance arrivals");
        assert!((per_vehicle - 45.04 / 5.0).abs() < 1e-9, "{per_vehicle}");
        let bin = |k: usize| r.bins[k].phases.iter().find(|(p, _)| p.number() == 2).expect("phase 2").1;
        assert_eq!((bin(0).arrivals, bin(0).arrivals_on_red, bin(0).approach_delay_ms), (2, 2, 45_040));
        assert_eq!((bin(1).arrivals, bin(1).arrivals_on_red, bin(1).approach_delay_ms), (3, 0, 0));
        // Phase 1 has no advance loop: no arrivals, no delay per vehicle.
        assert_eq!(phase(&r, 1).delay_per_vehicle_s, None);
    }

    /// Elm & Oak preemption input 1: requests, services, how long the
    /// input stayed on and the dwell; a repeated input-on without an
    /// input-off between is a request whose first part has no duration.
    #[test]
    fn preemption_requests_services_and_durations_per_input() {
        use EventCode::*;
        let m = Measures::new([&spec(include_str!("../../controllers/elm-and-oak.toml"))]);
        m.record(&[
            ev(1_000, PreemptCallInputOn, 1),
            ev(1_000, PreemptEntryStarted, 1),
            ev(5_000, PreemptBeginDwell, 1),
            ev(20_000, PreemptCallInputOff, 1),
            ev(20_000, PreemptBeginExitInterval, 1),
            ev(30_000, PreemptCallInputOn, 1),
            ev(31_000, PreemptCallInputOn, 1),
            ev(40_000, PreemptCallInputOff, 1),
        ]);
        let r = m.report(0).expect("intersection 0");
        let expected =
            PreemptCounts { requests: 3, services: 1, input_on_ms: 19_000 + 9_000, dwells: 1, dwell_ms: 15_000 };
        assert_eq!(r.preempts, [(1, expected)]);
        assert_eq!(r.bins[0].preempts, [(1, expected)]);
        // Without events, the controller's inputs are still reported.
        let quiet = Measures::new([&spec(include_str!("../../controllers/elm-and-oak.toml"))]);
        quiet.record(&[ev(0, DetectorOn, 3)]);
        assert_eq!(quiet.report(0).expect("intersection 0").preempts, [(1, PreemptCounts::default())]);
    }

    /// Elm & Oak: a check-in on red served by the next green, one during a
    /// green served by it, and one withdrawn before any green.
    #[test]
    fn priority_requests_and_the_greens_that_serve_them() {
        use EventCode::*;
        let m = Measures::new([&spec(include_str!("../../controllers/elm-and-oak.toml"))]);
        m.record(&[
            ev(1_000, TspCheckIn, 4),
            ev(5_000, PhaseBeginGreen, 4),
            ev(9_000, TspCheckOut, 4),
            ev(9_000, PhaseBeginYellowChange, 4),
            ev(10_000, PhaseBeginGreen, 2),
            ev(12_000, TspCheckIn, 2),
            ev(15_000, TspCheckOut, 2),
            ev(15_000, PhaseBeginYellowChange, 2),
            ev(20_000, TspCheckIn, 4),
            ev(22_000, TspCheckOut, 4),
            ev(30_000, PhaseBeginGreen, 4),
        ]);
        let r = m.report(0).expect("intersection 0");
        let p = |n| {
            let c = phase(&r, n).counts;
            (c.priority_requests, c.priority_services)
        };
        assert_eq!((p(2), p(4)), ((1, 1), (2, 1)));
    }

    /// What the NATS measures subject publishes: each bin once, after it
    /// closed, from the first counted one, a bin without counts as zeros.
    #[test]
    fn closed_bins_are_handed_out_once_and_empty_ones_as_zeros() {
        use EventCode::*;
        let m = Measures::new([&spec(include_str!("../../controllers/elm-and-oak.toml"))]);
        let q = BIN.as_millis();
        let mut out = Vec::new();
        m.close_bins(Instant::from_millis(q), &mut out);
        assert!(out.is_empty(), "nothing counted yet");
        m.record(&[ev(q / 2, DetectorOn, 3), ev(q / 2 + 500, DetectorOff, 3)]);
        m.close_bins(Instant::from_millis(q - 1), &mut out);
        assert!(out.is_empty(), "the bin is still open");
        m.record(&[ev(2 * q + 10, DetectorOn, 4)]);
        m.close_bins(Instant::from_millis(2 * q + 10), &mut out);
        let volume = |b: &BinMeasures| b.phases.iter().find(|(p, _)| p.number() == 4).expect("phase 4").1.volume;
        let got: Vec<(u64, u64, u64)> =
            out.iter().map(|c| (c.bin.start.as_millis(), c.counted_from.as_millis(), volume(&c.bin))).collect();
        assert_eq!(got, [(0, q / 2, 1), (q, q, 0)]);
        assert_eq!(out[0].bin.lanes.iter().map(|l| l.volume).collect::<Vec<_>>(), [0, 0, 1, 0]);
        let first = out[0].bin.clone();
        out.clear();
        m.close_bins(Instant::from_millis(3 * q - 1), &mut out);
        assert!(out.is_empty(), "each bin once");
        // GetPerformance's bin is the one handed out.
        assert_eq!(m.report(0).expect("intersection 0").bins[0], first);
        // After a long silence, only the bins surely still kept.
        m.record(&[ev(10 * q + 5, DetectorOff, 4)]);
        m.close_bins(Instant::from_millis(10 * q + 5), &mut out);
        assert_eq!(out.iter().map(|c| c.bin.start.as_millis() / q).collect::<Vec<_>>(), [7, 8, 9]);
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
