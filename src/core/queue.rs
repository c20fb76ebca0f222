//! Queue estimates per phase, by input–output counting: a vehicle that
//! crossed one of the phase's advance loops and not yet one of its stop-bar
//! loops is queued (or about to be) between them.
//!
//! Counts drift: a loop held occupied by two close vehicles counts one, a
//! lane without an advance loop only departs. The estimate is clamped at
//! zero and at [`QUEUE_CAP`], and set to zero whenever the phase gaps out,
//! which is the controller seeing the queue cleared. Phases without an
//! advance loop have no estimate (`None`): nothing counts their arrivals.
//!
//! Allocation-free, fixed arrays; updated once per tick from the detector
//! bank's wrapping volume counters.

use super::detector::DetectorBank;
use super::ids::{MAX_DETECTORS, MAX_PHASES, PhaseId, PhaseSet};
use super::spec::{ControllerSpec, DetectorKind, DetectorPlacement};

/// The most vehicles an estimate holds: past this the advance loop is in
/// the queue itself, and counting more would only be drift.
pub const QUEUE_CAP: u16 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Arrivals,
    Departures,
}

#[derive(Clone, Copy, Debug)]
pub struct QueueEstimator {
    /// Per detector slot: the phase (index) it counts for, and how.
    role: [Option<(u8, Role)>; MAX_DETECTORS],
    /// Phases with at least one advance loop.
    estimated: PhaseSet,
    last_volume: [u32; MAX_DETECTORS],
    queue: [u16; MAX_PHASES],
    /// The first update only takes the counters' baseline.
    started: bool,
}

impl QueueEstimator {
    pub fn new(spec: &ControllerSpec) -> Self {
        let mut role = [None; MAX_DETECTORS];
        let mut estimated = PhaseSet::EMPTY;
        for (slot, d) in spec.detectors.iter().enumerate().take(MAX_DETECTORS) {
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
        QueueEstimator { role, estimated, last_volume: [0; MAX_DETECTORS], queue: [0; MAX_PHASES], started: false }
    }

    /// Take the counts since the last update. The first update after
    /// [`QueueEstimator::new`] only sets the baseline.
    pub fn update(&mut self, detectors: &DetectorBank) {
        let baseline = !std::mem::replace(&mut self.started, true);
        for (slot, role) in self.role.iter().enumerate() {
            let volume = detectors.state(slot).volume;
            let counted = volume.wrapping_sub(self.last_volume[slot]).min(u32::from(QUEUE_CAP)) as u16;
            self.last_volume[slot] = volume;
            let Some((i, how)) = *role else { continue };
            if baseline || !self.estimated.contains(PhaseId::from_index(i as usize)) {
                continue;
            }
            let q = &mut self.queue[i as usize];
            *q = match how {
                Role::Arrivals => q.saturating_add(counted).min(QUEUE_CAP),
                Role::Departures => q.saturating_sub(counted),
            };
        }
    }

    /// The phase gapped out: its queue is served.
    pub fn cleared(&mut self, p: PhaseId) {
        self.queue[p.index()] = 0;
    }

    /// Vehicles estimated queued for `p`; `None` without an advance loop.
    pub fn queue(&self, p: PhaseId) -> Option<u16> {
        self.estimated.contains(p).then(|| self.queue[p.index()])
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

    fn counts(bank: &mut DetectorBank, spec: &ControllerSpec, at: u64, stop_bar: u16, advance: u16) {
        let mut f = InputFrame { counted: u64::MAX, ..InputFrame::default() };
        f.counts[1] = stop_bar;
        f.counts[19] = advance;
        let mut events = EventQueue::default();
        bank.process(Instant::from_millis(at), &spec.detectors, &f, PhaseSet::EMPTY, &mut events);
    }

    #[test]
    fn arrivals_minus_departures_clamped_and_cleared() {
        let spec = with_advance();
        let mut bank = DetectorBank::default();
        let mut q = QueueEstimator::new(&spec);
        counts(&mut bank, &spec, 0, 0, 0);
        q.update(&bank);
        assert_eq!(q.queue(p(2)), Some(0));
        assert_eq!(q.queue(p(4)), None, "no advance loop, no estimate");
        counts(&mut bank, &spec, 100, 0, 7);
        q.update(&bank);
        assert_eq!(q.queue(p(2)), Some(7));
        counts(&mut bank, &spec, 200, 3, 0);
        q.update(&bank);
        assert_eq!(q.queue(p(2)), Some(4));
        counts(&mut bank, &spec, 300, 9, 0);
        q.update(&bank);
        assert_eq!(q.queue(p(2)), Some(0), "never below zero");
        for t in 0..10 {
            counts(&mut bank, &spec, 400 + t * 100, 0, 20);
            q.update(&bank);
        }
        assert_eq!(q.queue(p(2)), Some(QUEUE_CAP));
        q.cleared(p(2));
        assert_eq!(q.longest(spec.phase_set()), 0);
    }
}
