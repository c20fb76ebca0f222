//! Queue estimates per phase, fused from two sources:
//! - **camera queues**: a video zone that measures the vehicles standing in
//!   it ([`InputFrame::queue`]) gives its phase's queue directly (summed
//!   over the phase's zones). It is used whenever the frame carries it;
//! - **input–output counting** otherwise: a vehicle that crossed one of the
//!   phase's advance loops and not yet one of its stop-bar loops is queued
//!   (or about to be) between them.
//!
//! Loops keep giving presence (calls, extensions) either way; the camera
//! only replaces the count arithmetic, which drifts.
//!
//! Counts drift: a loop held occupied by two close vehicles counts one, a
//! lane without an advance loop only departs. The estimate is clamped at
//! zero and at [`QUEUE_CAP`], and set to zero whenever the phase gaps out,
//! which is the controller seeing the queue cleared. Phases with neither a
//! camera queue nor an advance loop have no estimate (`None`): nothing
//! counts their arrivals.
//!
//! Allocation-free, fixed arrays; updated once per tick from the detector
//! bank's wrapping volume counters.

use super::detector::DetectorBank;
use super::ids::{MAX_DETECTORS, MAX_PHASES, PhaseId, PhaseSet};
use super::image::InputFrame;
use super::spec::{ControllerSpec, DetectorKind, DetectorPlacement};
use super::time::{Instant, Span};

/// The most vehicles an estimate holds: past this the advance loop is in
/// the queue itself, and counting more would only be drift.
pub const QUEUE_CAP: u16 = 60;

/// The most vehicles a camera may report standing in one zone: past this a
/// measurement is not plausible (a 500 m lane holds about 80).
pub const QUEUE_MEASURED_MAX: u16 = 500;

/// A phase with no vehicle across its stop bars for this long is not
/// discharging: at saturation flow one crosses every ~2 s per lane. A queue
/// behind a blocked lane (a permissive left waiting for a gap, spillback)
/// is long but does not move, and green given to it is lost.
pub const DISCHARGE_GAP: Span = Span::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Arrivals,
    Departures,
}

#[derive(Clone, Copy, Debug)]
pub struct QueueEstimator {
    /// Per detector slot: the phase (index) it counts for, and how.
    role: [Option<(u8, Role)>; MAX_DETECTORS],
    /// Per detector slot: its channel (0-based index into the input frame).
    channel: [u8; MAX_DETECTORS],
    /// Phases with at least one advance loop.
    estimated: PhaseSet,
    last_volume: [u32; MAX_DETECTORS],
    /// Input–output estimate per phase.
    queue: [u16; MAX_PHASES],
    /// Phases a camera measured in the latest frame, and their queues.
    measured: PhaseSet,
    camera: [u16; MAX_PHASES],
    /// When a vehicle last crossed one of each phase's stop-bar loops.
    departed: [Instant; MAX_PHASES],
    /// Vehicles each phase's advance loops counted in the latest update.
    arrived: [u16; MAX_PHASES],
    /// The first update only takes the counters' baseline.
    started: bool,
}

impl QueueEstimator {
    pub fn new(spec: &ControllerSpec) -> Self {
        let mut role = [None; MAX_DETECTORS];
        let mut channel = [0; MAX_DETECTORS];
        let mut estimated = PhaseSet::EMPTY;
        for (slot, d) in spec.detectors.iter().enumerate().take(MAX_DETECTORS) {
            channel[slot] = d.channel.index() as u8;
            // An advance loop extends the phase its vehicles are heading
            // for; a stop-bar loop calls the phase that serves them.
            let (phase, how) = match (d.kind, d.placement) {
                (DetectorKind::Pedestrian, _) => continue,
                (DetectorKind::Vehicle, DetectorPlacement::Advance) => {
                    (d.extends.iter().next().or(d.calls.iter().next()), Role::Arrivals)
                }
                (DetectorKind::Vehicle, DetectorPlacement::StopBar) => (d.calls.iter().next(), Role::Departures),
            };
            let Some(p) = phase else { continue };
            if how == Role::Arrivals {
                estimated.insert(p);
            }
            role[slot] = Some((p.index() as u8, how));
        }
        QueueEstimator {
            role,
            channel,
            estimated,
            last_volume: [0; MAX_DETECTORS],
            queue: [0; MAX_PHASES],
            measured: PhaseSet::EMPTY,
            camera: [0; MAX_PHASES],
            departed: [Instant::ZERO; MAX_PHASES],
            arrived: [0; MAX_PHASES],
            started: false,
        }
    }

    /// Take this tick's camera queues from `input` and the loop counts since
    /// the last update. The first update after [`QueueEstimator::new`] only
    /// sets the counters' baseline.
    pub fn update(&mut self, now: Instant, detectors: &DetectorBank, input: &InputFrame) {
        self.measured = PhaseSet::EMPTY;
        self.camera = [0; MAX_PHASES];
        self.arrived = [0; MAX_PHASES];
        let baseline = !std::mem::replace(&mut self.started, true);
        for (slot, role) in self.role.iter().enumerate() {
            let volume = detectors.state(slot).volume;
            let counted = volume.wrapping_sub(self.last_volume[slot]).min(u32::from(QUEUE_CAP)) as u16;
            self.last_volume[slot] = volume;
            let Some((i, how)) = *role else { continue };
            let (i, ch) = (i as usize, usize::from(self.channel[slot]));
            if input.queued & (1 << ch) != 0 {
                self.measured.insert(PhaseId::from_index(i));
                self.camera[i] = self.camera[i].saturating_add(input.queue[ch]);
            }
            if baseline {
                continue;
            }
            if how == Role::Departures && counted > 0 {
                self.departed[i] = now;
            }
            if how == Role::Arrivals {
                self.arrived[i] = self.arrived[i].saturating_add(counted);
            }
            if !self.estimated.contains(PhaseId::from_index(i)) {
                continue;
            }
            let q = &mut self.queue[i];
            *q = match how {
                Role::Arrivals => q.saturating_add(counted).min(QUEUE_CAP),
                Role::Departures => q.saturating_sub(counted),
            };
        }
    }

    /// The phase gapped out: its queue is served.
    /// Vehicles phase `p`'s advance loops counted in the latest update.
    pub fn arrived(&self, p: PhaseId) -> u16 {
        self.arrived[p.index()]
    }

    pub fn cleared(&mut self, p: PhaseId) {
        self.queue[p.index()] = 0;
    }

    /// Vehicles queued for `p`: the camera's measurement when this tick has
    /// one, else the input–output estimate; `None` with neither.
    pub fn queue(&self, p: PhaseId) -> Option<u16> {
        if self.measured.contains(p) {
            return Some(self.camera[p.index()]);
        }
        self.estimated.contains(p).then(|| self.queue[p.index()])
    }

    /// Whether `p`'s queue is moving: a vehicle crossed one of its stop-bar
    /// loops within [`DISCHARGE_GAP`] of `now`.
    pub fn discharging(&self, p: PhaseId, now: Instant) -> bool {
        now.since(self.departed[p.index()]) <= DISCHARGE_GAP
    }

    /// The longest estimated queue among `phases`.
    pub fn longest(&self, phases: PhaseSet) -> u16 {
        phases.iter().filter_map(|p| self.queue(p)).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::image::InputFrame;
    use crate::core::testing::eight_phase;
    use crate::core::time::Instant;
    use crate::core::{DetectorChannel, EventQueue};

    fn p(n: u8) -> PhaseId {
        PhaseId::new(n).unwrap()
    }

    /// The eight-phase test spec with an advance loop for phase 2 on channel 20.
    fn with_advance() -> ControllerSpec {
        let mut spec = eight_phase();
        let mut advance = spec.detectors[1].clone();
        advance.channel = DetectorChannel::new(20).unwrap();
        advance.placement = DetectorPlacement::Advance;
        spec.detectors.push(advance);
        spec
    }

    fn counts(bank: &mut DetectorBank, spec: &ControllerSpec, at: u64, stop_bar: u16, advance: u16) -> InputFrame {
        let mut f = InputFrame { counted: u64::MAX, ..InputFrame::default() };
        f.counts[1] = stop_bar;
        f.counts[19] = advance;
        let mut events = EventQueue::default();
        bank.process(Instant::from_millis(at), &spec.detectors, &f, PhaseSet::EMPTY, &mut events);
        f
    }

    #[test]
    fn arrivals_minus_departures_clamped_and_cleared() {
        let spec = with_advance();
        let mut bank = DetectorBank::default();
        let mut q = QueueEstimator::new(&spec);
        let f = counts(&mut bank, &spec, 0, 0, 0);
        q.update(Instant::ZERO, &bank, &f);
        assert_eq!(q.queue(p(2)), Some(0));
        assert_eq!(q.queue(p(4)), None, "no advance loop, no estimate");
        let f = counts(&mut bank, &spec, 100, 0, 7);
        q.update(Instant::ZERO, &bank, &f);
        assert_eq!(q.queue(p(2)), Some(7));
        let f = counts(&mut bank, &spec, 200, 3, 0);
        q.update(Instant::ZERO, &bank, &f);
        assert_eq!(q.queue(p(2)), Some(4));
        let f = counts(&mut bank, &spec, 300, 9, 0);
        q.update(Instant::ZERO, &bank, &f);
        assert_eq!(q.queue(p(2)), Some(0), "never below zero");
        for t in 0..10 {
            let f = counts(&mut bank, &spec, 400 + t * 100, 0, 20);
            q.update(Instant::ZERO, &bank, &f);
        }
        assert_eq!(q.queue(p(2)), Some(QUEUE_CAP));
        q.cleared(p(2));
        assert_eq!(q.longest(spec.phase_set()), 0);
    }

    #[test]
    fn a_camera_queue_replaces_the_estimate_while_it_is_reported() {
        let spec = with_advance();
        let mut bank = DetectorBank::default();
        let mut q = QueueEstimator::new(&spec);
        let f = counts(&mut bank, &spec, 0, 0, 0);
        q.update(Instant::ZERO, &bank, &f);
        // Loops alone: 5 in, none out.
        let f = counts(&mut bank, &spec, 100, 0, 5);
        q.update(Instant::ZERO, &bank, &f);
        assert_eq!(q.queue(p(2)), Some(5));
        // A camera on phase 2's stop-bar channel (2) and on phase 4's (4),
        // which has no advance loop: both measured.
        let mut f = counts(&mut bank, &spec, 200, 0, 0);
        f.queue[1] = 9;
        f.queue[3] = 3;
        f.queued = 0b1010;
        q.update(Instant::ZERO, &bank, &f);
        assert_eq!(q.queue(p(2)), Some(9), "the camera's queue, not the loops' 5");
        assert_eq!(q.queue(p(4)), Some(3), "a camera gives a phase without advance loops a queue");
        assert_eq!(q.longest(spec.phase_set()), 9);
        // The camera drops out: back to the loop estimate, none for phase 4.
        let f = counts(&mut bank, &spec, 300, 0, 0);
        q.update(Instant::ZERO, &bank, &f);
        assert_eq!(q.queue(p(2)), Some(5));
        assert_eq!(q.queue(p(4)), None);
    }

    #[test]
    fn a_phase_discharges_while_its_stop_bars_count() {
        let spec = eight_phase();
        let mut bank = DetectorBank::default();
        let mut q = QueueEstimator::new(&spec);
        let at = |ms| Instant::from_millis(ms);
        let f = counts(&mut bank, &spec, 0, 0, 0);
        q.update(at(0), &bank, &f);
        let f = counts(&mut bank, &spec, 10_000, 1, 0);
        q.update(at(10_000), &bank, &f);
        assert!(q.discharging(p(2), at(10_000) + DISCHARGE_GAP), "a vehicle crossed 3 s ago");
        assert!(!q.discharging(p(2), at(10_100) + DISCHARGE_GAP), "none since");
        assert!(!q.discharging(p(4), at(10_000)), "phase 4's stop bar never counted");
    }
}
