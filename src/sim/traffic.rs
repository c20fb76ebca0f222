//! Simulated demand: vehicles that arrive, queue at the stop bar and obey
//! their signal head, and pedestrians that press push buttons.
//!
//! The model is deliberately simple (a point queue at the stop line), but it
//! is event-driven inside each step, so the result does not depend on how
//! often [`TrafficGenerator::step`] is called: arrivals, departures and the
//! yellow cut-off are handled at their own millisecond, in time order.
//!
//! # Vehicles, per lane
//! - **Arrivals** are Poisson at the lane's `arrivals_per_hour` (exponential
//!   gaps). Each lane and each push button draws from its own seeded stream,
//!   so the demand is the same whatever the signal does and however the
//!   steps are sliced: two timing plans are compared on identical traffic
//!   (common random numbers), and adding a lane does not reshuffle the others.
//! - **Green** (and **flashing yellow**, treated as an unopposed permissive
//!   movement): the queue discharges one vehicle per `saturation_headway`,
//!   the first one a headway after green starts (standing in for start-up
//!   lost time). A vehicle that arrives with no queue passes without stopping.
//! - **Yellow**: a vehicle that reaches the stop line (next to discharge, or
//!   arriving with no queue) within [`YELLOW_GO_WINDOW`] of yellow onset is
//!   too close to stop and goes; after that the lane behaves as red.
//! - **Red**: nothing departs; arrivals join the queue.
//! - **Flashing red** and **dark** (a dark signal is legally an all-way stop):
//!   stop-and-go. Every vehicle stops at the line, then goes
//!   [`STOP_SIGN_WAIT`] later; the next one pulls up [`PULL_UP`] after that,
//!   one vehicle per [`STOP_AND_GO_HEADWAY`]. This keeps queues moving in flash
//!   so a long flash never deadlocks the simulation.
//!
//! # The stop-bar detector
//! A short presence loop at the stop line. It is occupied while a vehicle is
//! *stopped* on it (the head of a standing queue) and for
//! [`CROSSING_OCCUPANCY`] as each vehicle crosses it. The vehicles behind the
//! head of a moving queue are not on the loop, so a discharging queue shows
//! one pulse per vehicle with gaps between them, as a short loop does.
//!
//! Every vehicle therefore makes exactly one rising edge: when it stops on
//! the empty loop, or when it crosses it moving. That is why the simulator
//! leaves [`InputFrame::counts`] at zero: the controller counts presence-only
//! loops from their rising edges, and reporting counts as well would count a
//! vehicle that arrived on red twice (once by its edge, once as it departs).
//! Two vehicles crossing less than [`CROSSING_OCCUPANCY`] apart merge into one
//! pulse and are counted once, the undercount a real loop has too.
//!
//! Presence is reported if the loop was occupied at any time since the
//! previous step (a latched input), so a crossing shorter than the scan
//! period is never missed.
//!
//! # Pedestrians
//! Poisson presses at `per_hour` per push button; each press is a
//! [`PED_PRESS`] presence pulse on the button's detector channel.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::{LaneHead, LaneTraffic, PedTraffic, TrafficConfig};
use crate::core::{DetectorChannel, Indication, InputFrame, Instant, OutputFrame, Span};

/// Loop occupancy of a vehicle crossing a 6 ft stop-bar loop at discharge
/// speed (about 20 ft of vehicle plus loop at 15-35 mph).
pub const CROSSING_OCCUPANCY: Span = Span::from_millis(400);

/// Time after yellow onset within which a vehicle at the stop line still goes.
pub const YELLOW_GO_WINDOW: Span = Span::from_millis(1000);

/// Stop-and-go (flashing red, dark): how long a vehicle waits at the line.
pub const STOP_SIGN_WAIT: Span = Span::from_millis(3000);

/// Stop-and-go: time for the next vehicle to pull up to the line after the
/// previous one leaves.
pub const PULL_UP: Span = Span::from_millis(1000);

/// Stop-and-go discharge rate: one vehicle per this long.
pub const STOP_AND_GO_HEADWAY: Span = Span::from_millis(PULL_UP.as_millis() + STOP_SIGN_WAIT.as_millis());

/// How long a push-button press holds the pedestrian detector on.
pub const PED_PRESS: Span = Span::from_millis(500);

/// Measures of effectiveness of one simulated lane since the generator started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneStats {
    /// The lane's stop-bar detector (identifies the lane in reports).
    pub detector: DetectorChannel,
    /// The head the lane obeys.
    pub head: LaneHead,
    /// Vehicles that reached the stop line.
    pub arrived: u64,
    /// Vehicles that crossed the stop line.
    pub departed: u64,
    /// Vehicles queued now.
    pub queue: u32,
    /// Longest queue seen.
    pub max_queue: u32,
    /// Vehicles that had to join a queue (stopped at least once). A vehicle
    /// joining a queue that is already moving counts too, as it must slow to
    /// queue speed.
    pub stops: u64,
    /// Total stopped delay, the integral of the queue over time, in
    /// vehicle-milliseconds (integer so it is exact and deterministic).
    pub stopped_delay_vehicle_ms: u64,
}

impl LaneStats {
    /// Total stopped delay in vehicle-seconds.
    pub fn stopped_delay_vehicle_secs(&self) -> f64 {
        self.stopped_delay_vehicle_ms as f64 / 1000.0
    }

    /// Mean stopped delay per arrived vehicle; `None` before any arrival.
    /// Vehicles still queued have accrued only part of their delay.
    pub fn mean_stopped_delay(&self) -> Option<Span> {
        (self.arrived > 0).then(|| Span::from_millis(self.stopped_delay_vehicle_ms / self.arrived))
    }
}

/// Measures of one simulated push button.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PedStats {
    pub detector: DetectorChannel,
    /// Button presses since the generator started.
    pub presses: u64,
}

/// How vehicles on a lane may move under the indication they see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Movement {
    /// Queue discharges at saturation headway; arrivals without a queue pass.
    Flow,
    /// Nothing departs.
    Stop,
    /// Every vehicle stops, then goes; one per [`STOP_AND_GO_HEADWAY`].
    StopAndGo,
}

/// A Poisson arrival process on its own random stream.
#[derive(Debug)]
struct Arrivals {
    rng: SmallRng,
    /// Mean gap between arrivals in milliseconds; `None` for no demand.
    mean_gap_ms: Option<f64>,
    /// Next arrival; scheduled lazily because the generator does not know
    /// the timeline until it is first stepped.
    next: Option<Instant>,
}

impl Arrivals {
    fn new(seed: u64, stream: u64, per_hour: f64) -> Self {
        // Distinct, well-mixed seed per stream (golden-ratio increment, as
        // SplitMix64 does); `seed_from_u64` expands it further.
        let stream_seed = seed ^ (stream + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mean_gap_ms = (per_hour.is_finite() && per_hour > 0.0).then(|| 3_600_000.0 / per_hour);
        Arrivals { rng: SmallRng::seed_from_u64(stream_seed), mean_gap_ms, next: None }
    }

    /// An exponential gap, at least 1 ms so time always advances.
    fn gap(&mut self, mean_ms: f64) -> Span {
        let u: f64 = self.rng.random(); // [0, 1)
        let ms = -(1.0 - u).ln() * mean_ms;
        Span::from_millis((ms.round() as u64).max(1))
    }

    /// When the next arrival is due; the first one is scheduled from
    /// `anchor` (the start of the first window the process sees).
    fn due(&mut self, anchor: Instant) -> Option<Instant> {
        let mean = self.mean_gap_ms?;
        if self.next.is_none() {
            self.next = Some(anchor + self.gap(mean));
        }
        self.next
    }

    /// The arrival returned by [`due`](Self::due) happened: draw the next.
    fn take(&mut self) {
        if let (Some(next), Some(mean)) = (self.next, self.mean_gap_ms) {
            self.next = Some(next + self.gap(mean));
        }
    }
}

/// One lane's dynamic state.
#[derive(Debug)]
struct Lane {
    detector: DetectorChannel,
    head: LaneHead,
    arrivals: Arrivals,
    /// Indication seen in the previous step; `None` before the first step.
    shown: Option<Indication>,
    /// When `shown` began (window start of the step that first saw it).
    shown_since: Instant,
    movement: Movement,
    /// When the next queued vehicle crosses the line; `None` while nothing
    /// is discharging. Invariant: `None` whenever the queue is empty.
    next_discharge: Option<Instant>,
    /// A vehicle stands on the loop from this instant (a future instant while
    /// it pulls up in stop-and-go). `None` when the head of the queue is
    /// moving or there is no queue.
    stopped_on_loop: Option<Instant>,
    /// End of the current crossing pulse.
    pulse_until: Instant,
}

impl Lane {
    fn occupied_at(&self, t: Instant) -> bool {
        self.stopped_on_loop.is_some_and(|s| s <= t) || t < self.pulse_until
    }

    /// The movement `ind` allows at `t`, and when that changes by itself (the
    /// yellow cut-off).
    fn movement_for(ind: Indication, since: Instant, t: Instant) -> (Movement, Option<Instant>) {
        match ind {
            Indication::Green | Indication::FlashingYellow => (Movement::Flow, None),
            Indication::Yellow => {
                let cutoff = since + YELLOW_GO_WINDOW;
                if t < cutoff { (Movement::Flow, Some(cutoff)) } else { (Movement::Stop, None) }
            }
            Indication::Red => (Movement::Stop, None),
            Indication::FlashingRed | Indication::Dark => (Movement::StopAndGo, None),
        }
    }

    /// Switch to `movement` at `t`, rescheduling the head of the queue.
    fn enter(&mut self, movement: Movement, t: Instant, queue: u32, headway: Span) {
        self.movement = movement;
        if queue == 0 {
            self.next_discharge = None;
            self.stopped_on_loop = None;
            return;
        }
        match movement {
            Movement::Flow => {
                let start = t + headway;
                self.next_discharge = Some(self.next_discharge.map_or(start, |d| d.min(start)));
            }
            Movement::Stop => {
                self.next_discharge = None;
                // The head of a moving queue stops at the line.
                self.stopped_on_loop.get_or_insert(t);
            }
            Movement::StopAndGo => {
                let on = self.stopped_on_loop.map_or(t, |s| s.max(t));
                self.stopped_on_loop = Some(on);
                self.next_discharge = Some(on + STOP_SIGN_WAIT);
            }
        }
    }

    /// Advance the lane through the window `(t0, t1]` under `ind`. Returns
    /// whether the loop was occupied at any time in the window.
    fn advance(&mut self, stats: &mut LaneStats, t0: Instant, t1: Instant, ind: Indication, headway: Span) -> bool {
        if self.shown != Some(ind) {
            // The controller's outputs change at an exchange: the new
            // indication has been showing since the window start.
            self.shown = Some(ind);
            self.shown_since = t0;
        }
        let mut occupied = self.occupied_at(t0);
        let (movement, mut cutoff) = Self::movement_for(ind, self.shown_since, t0);
        if movement != self.movement {
            self.enter(movement, t0, stats.queue, headway);
        }

        let mut t_prev = t0;
        loop {
            let arrival = self.arrivals.due(t0).filter(|&a| a <= t1);
            let discharge = self.next_discharge.filter(|&d| d <= t1);
            let cut = cutoff.filter(|&c| c <= t1);
            // Ties: the cut-off first (a vehicle exactly at it stops), then
            // the departure (it frees the line for the arrival).
            let Some(t) = [cut, discharge, arrival].into_iter().flatten().min() else { break };
            stats.stopped_delay_vehicle_ms += stats.queue as u64 * t.since(t_prev).as_millis();
            t_prev = t;

            if cut == Some(t) {
                cutoff = None;
                self.enter(Movement::Stop, t, stats.queue, headway);
            } else if discharge == Some(t) {
                self.discharge(stats, t, headway);
                occupied = true;
            } else {
                self.arrivals.take();
                occupied |= self.arrive(stats, t);
            }
        }
        stats.stopped_delay_vehicle_ms += stats.queue as u64 * t1.since(t_prev).as_millis();
        occupied || self.stopped_on_loop.is_some_and(|s| s <= t1)
    }

    fn discharge(&mut self, stats: &mut LaneStats, t: Instant, headway: Span) {
        stats.queue -= 1;
        stats.departed += 1;
        self.pulse_until = t + CROSSING_OCCUPANCY;
        self.stopped_on_loop = None;
        self.next_discharge = None;
        if stats.queue == 0 {
            return;
        }
        match self.movement {
            Movement::Flow => self.next_discharge = Some(t + headway),
            Movement::StopAndGo => {
                self.stopped_on_loop = Some(t + PULL_UP);
                self.next_discharge = Some(t + STOP_AND_GO_HEADWAY);
            }
            // Nothing is scheduled to discharge while stopped.
            Movement::Stop => {}
        }
    }

    /// A vehicle reaches the stop line at `t`; returns whether it occupied
    /// the loop (passed over it or stopped on it).
    fn arrive(&mut self, stats: &mut LaneStats, t: Instant) -> bool {
        stats.arrived += 1;
        if self.movement == Movement::Flow && stats.queue == 0 {
            stats.departed += 1;
            self.pulse_until = t + CROSSING_OCCUPANCY;
            return true;
        }
        stats.queue += 1;
        stats.stops += 1;
        stats.max_queue = stats.max_queue.max(stats.queue);
        if stats.queue > 1 {
            return false; // joins the back of the queue, upstream of the loop
        }
        self.stopped_on_loop = Some(t);
        if self.movement == Movement::StopAndGo {
            self.next_discharge = Some(t + STOP_SIGN_WAIT);
        }
        true
    }
}

/// One push button's dynamic state.
#[derive(Debug)]
struct PedButton {
    detector: DetectorChannel,
    presses: Arrivals,
    pulse_until: Instant,
}

/// The simulated traffic of one intersection. Built once from the
/// controller file's `[simulation]` section; [`step`](Self::step) never
/// allocates and is deterministic for a given seed and output sequence.
#[derive(Debug)]
pub struct TrafficGenerator {
    headway: Span,
    lanes: Vec<Lane>,
    /// Parallel to `lanes`, kept separate so it can be lent out as a slice.
    lane_stats: Vec<LaneStats>,
    peds: Vec<PedButton>,
    ped_stats: Vec<PedStats>,
    /// Every channel this generator drives, cleared at each step so a reused
    /// input frame never carries stale presence.
    channels: u64,
}

impl TrafficGenerator {
    pub fn new(cfg: &TrafficConfig) -> Self {
        let lanes: Vec<Lane> = cfg
            .lanes
            .iter()
            .enumerate()
            .map(|(i, l): (usize, &LaneTraffic)| Lane {
                detector: l.detector,
                head: l.head,
                arrivals: Arrivals::new(cfg.seed, i as u64, l.arrivals_per_hour),
                shown: None,
                shown_since: Instant::ZERO,
                movement: Movement::Stop,
                next_discharge: None,
                stopped_on_loop: None,
                pulse_until: Instant::ZERO,
            })
            .collect();
        let lane_stats = lanes
            .iter()
            .map(|l| LaneStats {
                detector: l.detector,
                head: l.head,
                arrived: 0,
                departed: 0,
                queue: 0,
                max_queue: 0,
                stops: 0,
                stopped_delay_vehicle_ms: 0,
            })
            .collect();
        let first_ped_stream = cfg.lanes.len() as u64;
        let peds: Vec<PedButton> = cfg
            .pedestrians
            .iter()
            .enumerate()
            .map(|(i, p): (usize, &PedTraffic)| PedButton {
                detector: p.detector,
                presses: Arrivals::new(cfg.seed, first_ped_stream + i as u64, p.per_hour),
                pulse_until: Instant::ZERO,
            })
            .collect();
        let ped_stats = peds.iter().map(|p| PedStats { detector: p.detector, presses: 0 }).collect();
        let channels = lanes
            .iter()
            .map(|l| l.detector)
            .chain(peds.iter().map(|p| p.detector))
            .fold(0u64, |m, ch| m | 1 << ch.index());
        TrafficGenerator { headway: cfg.saturation_headway, lanes, lane_stats, peds, ped_stats, channels }
    }

    /// Simulate the interval `(now - dt, now]` under `outputs` (what the heads
    /// showed over that interval) and write the detectors this generator
    /// drives into `input`: presence if occupied at any time in the interval,
    /// counts left at zero (see the module docs). Other channels are left
    /// untouched. Does not allocate.
    pub fn step(&mut self, now: Instant, dt: Span, outputs: &OutputFrame, input: &mut InputFrame) {
        let t0 = Instant::from_millis(now.as_millis().saturating_sub(dt.as_millis()));
        input.presence &= !self.channels;
        for (lane, stats) in self.lanes.iter_mut().zip(self.lane_stats.iter_mut()) {
            input.counts[lane.detector.index()] = 0;
            let ind = match lane.head {
                LaneHead::Phase(p) => outputs.phase(p),
                LaneHead::Overlap(o) => outputs.overlap(o),
            };
            if lane.advance(stats, t0, now, ind, self.headway) {
                input.set_presence(lane.detector, true);
            }
        }
        for (ped, stats) in self.peds.iter_mut().zip(self.ped_stats.iter_mut()) {
            input.counts[ped.detector.index()] = 0;
            let mut pressed = t0 < ped.pulse_until;
            while let Some(t) = ped.presses.due(t0).filter(|&t| t <= now) {
                ped.presses.take();
                stats.presses += 1;
                ped.pulse_until = t + PED_PRESS;
                pressed = true;
            }
            if pressed {
                input.set_presence(ped.detector, true);
            }
        }
    }

    /// Per-lane measures, in the order of the config's lanes.
    pub fn lane_stats(&self) -> &[LaneStats] {
        &self.lane_stats
    }

    /// Per-button measures, in the order of the config's pedestrians.
    pub fn ped_stats(&self) -> &[PedStats] {
        &self.ped_stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PhaseId;

    const TICK: Span = Span::from_millis(100);

    fn ch(n: u8) -> DetectorChannel {
        DetectorChannel::new(n).unwrap()
    }

    fn phase(n: u8) -> PhaseId {
        PhaseId::new(n).unwrap()
    }

    /// Lane on phase 2 over detector 1 and a push button on detector 10.
    fn config(seed: u64, vehicles_per_hour: f64, peds_per_hour: f64) -> TrafficConfig {
        TrafficConfig {
            seed,
            saturation_headway: Span::from_secs(2),
            lanes: vec![LaneTraffic {
                detector: ch(1),
                head: LaneHead::Phase(phase(2)),
                arrivals_per_hour: vehicles_per_hour,
            }],
            pedestrians: vec![PedTraffic { detector: ch(10), per_hour: peds_per_hour }],
        }
    }

    fn showing(ind: Indication) -> OutputFrame {
        let mut out = OutputFrame::default();
        out.vehicle[phase(2).index()] = ind;
        out
    }

    /// Drives a generator tick by tick from a start instant.
    struct Run {
        traffic: TrafficGenerator,
        now: Instant,
    }

    impl Run {
        fn new(cfg: &TrafficConfig) -> Self {
            let mut traffic = TrafficGenerator::new(cfg);
            let now = Instant::from_millis(1_000_000);
            traffic.step(now, Span::ZERO, &showing(Indication::Red), &mut InputFrame::default());
            Run { traffic, now }
        }

        /// Runs `secs` seconds under `ind`, calling `each` with every frame.
        fn hold(&mut self, ind: Indication, secs: u64, mut each: impl FnMut(&InputFrame, &LaneStats)) {
            let out = showing(ind);
            for _ in 0..secs * 1000 / TICK.as_millis() {
                self.now += TICK;
                let mut input = InputFrame::default();
                self.traffic.step(self.now, TICK, &out, &mut input);
                each(&input, &self.traffic.lane_stats()[0]);
            }
        }

        fn lane(&self) -> LaneStats {
            self.traffic.lane_stats()[0]
        }
    }

    /// Identical seeds and outputs give identical detector sequences; a
    /// different seed gives different traffic.
    #[test]
    fn same_seed_same_detector_sequence() {
        let trace = |seed| {
            let mut run = Run::new(&config(seed, 900.0, 60.0));
            let mut frames = Vec::new();
            for _ in 0..10 {
                run.hold(Indication::Green, 25, |f, _| frames.push(f.presence));
                run.hold(Indication::Yellow, 4, |f, _| frames.push(f.presence));
                run.hold(Indication::Red, 31, |f, _| frames.push(f.presence));
            }
            frames
        };
        assert_eq!(trace(7), trace(7));
        assert_ne!(trace(7), trace(8));
    }

    /// On red the queue only grows, nothing departs, and the loop stays
    /// occupied from the first arrival on.
    #[test]
    fn red_builds_a_queue_over_a_held_loop() {
        let mut run = Run::new(&config(1, 900.0, 0.0));
        let mut first_arrival_seen = false;
        run.hold(Indication::Red, 300, |f, s| {
            assert_eq!(s.departed, 0, "no departures on red");
            if s.arrived > 0 {
                first_arrival_seen = true;
            }
            assert_eq!(f.is_present(ch(1)), first_arrival_seen);
            assert_eq!(f.counts[0], 0);
        });
        let s = run.lane();
        assert!(s.arrived > 40, "expected ~75 arrivals in 5 min, got {}", s.arrived);
        assert_eq!(s.queue as u64, s.arrived);
        assert_eq!(s.max_queue, s.queue);
        assert_eq!(s.stops, s.arrived);
        assert!(s.stopped_delay_vehicle_secs() > 0.0);
    }

    /// A standing queue discharges at saturation headway: 10 vehicles in 20 s
    /// at 2 s, and the loop shows one pulse per departing vehicle.
    #[test]
    fn green_discharges_at_saturation_headway() {
        let mut run = Run::new(&config(3, 1200.0, 0.0));
        run.hold(Indication::Red, 120, |_, _| {});
        let before = run.lane();
        assert!(before.queue >= 12, "queue {} too short for the test", before.queue);

        let mut was_on = true;
        let mut edges = 0;
        run.hold(Indication::Green, 20, |f, _| {
            let on = f.is_present(ch(1));
            edges += (on && !was_on) as u32;
            was_on = on;
        });
        let after = run.lane();
        assert_eq!(after.departed - before.departed, 10);
        // The head was already standing on the loop: nine new edges.
        assert_eq!(edges, 9);
    }

    /// Over a long run of a fixed cycle, departures track arrivals and the
    /// loop's rising edges count the vehicles (what the controller counts).
    #[test]
    fn loop_edges_count_vehicles_over_cycles() {
        let mut run = Run::new(&config(5, 500.0, 0.0));
        let mut was_on = false;
        let mut edges = 0u64;
        let mut count = |f: &InputFrame, _: &LaneStats| {
            let on = f.is_present(ch(1));
            edges += (on && !was_on) as u64;
            was_on = on;
        };
        for _ in 0..120 {
            run.hold(Indication::Green, 26, &mut count);
            run.hold(Indication::Yellow, 4, &mut count);
            run.hold(Indication::Red, 30, &mut count);
        }
        let s = run.lane();
        assert!(s.arrived - s.departed <= s.queue as u64);
        let counted = edges as f64 / s.arrived as f64;
        assert!((0.95..=1.0).contains(&counted), "edges {edges} for {} arrivals", s.arrived);
        assert!(s.stops < s.arrived, "arrivals on green pass without stopping");
        assert!(s.mean_stopped_delay().unwrap() > Span::ZERO);
    }

    /// Only vehicles reaching the line in the first second of yellow go.
    #[test]
    fn yellow_lets_only_the_first_second_through() {
        // Departures during a 4 s yellow after `green_ticks` of green on a
        // long standing queue.
        let departures_in_yellow = |green_ticks: u64| {
            let mut run = Run::new(&config(4, 1500.0, 0.0));
            run.hold(Indication::Red, 60, |_, _| {});
            let out = showing(Indication::Green);
            for _ in 0..green_ticks {
                run.now += TICK;
                run.traffic.step(run.now, TICK, &out, &mut InputFrame::default());
            }
            let before = run.lane().departed;
            run.hold(Indication::Yellow, 4, |_, _| {});
            run.lane().departed - before
        };
        // Green 9 s: discharges at 2, 4, 6, 8 s; the next is due 1 s into
        // yellow, exactly at the cut-off, so it stops.
        assert_eq!(departures_in_yellow(90), 0);
        // Green 1.5 s: the first discharge is due 0.5 s into yellow and goes;
        // the one after (2.5 s in) stops.
        assert_eq!(departures_in_yellow(15), 1);
    }

    /// Flashing red is stop-and-go: one vehicle per four seconds.
    #[test]
    fn flashing_red_discharges_stop_and_go() {
        let mut run = Run::new(&config(6, 1200.0, 0.0));
        run.hold(Indication::Red, 120, |_, _| {});
        let before = run.lane();
        assert!(before.queue >= 12);
        run.hold(Indication::FlashingRed, 40, |_, _| {});
        // First after the 3 s wait, then every 4 s: 3, 7, ..., 39 s.
        assert_eq!(run.lane().departed - before.departed, 10);
    }

    /// Arrivals over ten hours match the configured rate within four
    /// standard deviations of the Poisson count (fixed seed, so not flaky).
    #[test]
    fn long_run_arrival_rate_matches_config() {
        let mut run = Run::new(&config(11, 720.0, 0.0));
        run.hold(Indication::Green, 36_000, |_, _| {});
        let expected = 7200.0;
        let got = run.lane().arrived as f64;
        assert!((got - expected).abs() < 4.0 * expected.sqrt(), "{got} arrivals, expected {expected}");
        // Free flow: nobody stops on a constant green at this volume... almost.
        assert!(run.lane().stops * 20 < run.lane().arrived);
    }

    /// Push-button presses appear as half-second presence pulses.
    #[test]
    fn pedestrian_presses_appear() {
        let mut run = Run::new(&config(9, 0.0, 60.0));
        let mut was_on = false;
        let (mut edges, mut on_ticks) = (0u64, 0u64);
        run.hold(Indication::Red, 3600, |f, _| {
            let on = f.is_present(ch(10));
            edges += (on && !was_on) as u64;
            on_ticks += on as u64;
            was_on = on;
            assert!(!f.is_present(ch(1)));
        });
        let presses = run.traffic.ped_stats()[0].presses;
        assert!((30..=90).contains(&presses), "{presses} presses in an hour at 60/h");
        assert!(edges <= presses && edges * 10 >= presses * 9);
        // 0.5 s each, seen over 5 to 6 ticks of 100 ms.
        assert!(on_ticks >= presses * 5 && on_ticks <= presses * 6);
    }

    /// Slicing time differently (100 ms vs 1 s steps) gives the same traffic.
    #[test]
    fn results_do_not_depend_on_the_step_size() {
        let cfg = config(12, 900.0, 30.0);
        let run = |step: Span| {
            let mut traffic = TrafficGenerator::new(&cfg);
            let mut now = Instant::from_millis(5_000);
            traffic.step(now, Span::ZERO, &showing(Indication::Red), &mut InputFrame::default());
            for cycle in 0..600_000 / step.as_millis() {
                let ind = if (cycle * step.as_millis() / 30_000).is_multiple_of(2) {
                    Indication::Green
                } else {
                    Indication::Red
                };
                now += step;
                traffic.step(now, step, &showing(ind), &mut InputFrame::default());
            }
            (traffic.lane_stats()[0], traffic.ped_stats()[0])
        };
        assert_eq!(run(TICK), run(Span::from_secs(1)));
    }
}
