//! The stage view: GB/T 20999-2017 plans are chains of phase stages (sets
//! of phases green together), Greenwave's core runs rings and barriers.
//! This file derives stages from the ring-barrier sequence and translates
//! a centre's stage chain and stage times into per-phase splits, or says
//! why it cannot be run safely.
//!
//! # The derivation
//! Barrier group by barrier group, in sequence order: stage k of a group
//! holds, from every ring with phases in the group, its k-th phase there
//! (a ring with fewer phases holds its last one). A dual-ring group with
//! 1, 2 in ring 1 and 5, 6 in ring 2 gives stages {1, 5} and {2, 6}; with
//! only 2 in ring 1, stages {2, 5} and {2, 6}. Stages are numbered from 1
//! across the groups. In fixed-time operation with splits from
//! [`StageView::splits`] the phases change exactly at the stage
//! boundaries; under actuation a ring may gap out early, so the running
//! stage is the one whose phases match best ([`StageView::current`]).
//!
//! # Stage times to splits
//! A stage's time counts its green and the clearance (yellow, red) that
//! ends it, as a split does: a phase's split is the sum of the times of
//! the stages it is in. Every ring then covers every stage of a group
//! once, so the rings of a group reach the barrier together.

use crate::core::spec::ControllerSpec;
use crate::core::{PhaseSet, Span};

/// Stages at most (the standard's stage bitmaps cover 64 phases; a
/// 16-phase, four-group controller has far fewer stages).
pub const MAX_STAGES: usize = 64;

/// The stages of one controller definition, in sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageView {
    stages: Vec<PhaseSet>,
}

/// Why a centre's stage plan cannot run as splits.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StagePlanError {
    #[error("stage chain is empty")]
    Empty,
    #[error("stage {0} does not exist (this controller has stages 1..={1})")]
    NoStage(u8, usize),
    #[error("{chain} stages in the chain, {times} stage times")]
    TimesMismatch { chain: usize, times: usize },
    #[error("stage {0} has no time: a stage runs at least its clearance")]
    ZeroTime(u8),
    #[error(
        "stage chain {chain:?} is not the ring-barrier sequence {sequence:?} (from any stage): stages cannot be \
         skipped, repeated or reordered across barriers"
    )]
    Order { chain: Vec<u8>, sequence: Vec<u8> },
    #[error("the stage times add up to {sum_s} s, the cycle is {cycle_s} s")]
    Cycle { sum_s: f64, cycle_s: f64 },
}

impl StageView {
    /// The stage view of `spec` (see the module docs).
    pub fn derive(spec: &ControllerSpec) -> StageView {
        let mut stages = Vec::new();
        for &group in &spec.barrier_groups {
            let per_ring: Vec<Vec<_>> = spec
                .rings
                .iter()
                .map(|ring| ring.sequence.iter().copied().filter(|&p| group.contains(p)).collect::<Vec<_>>())
                .filter(|phases| !phases.is_empty())
                .collect();
            let depth = per_ring.iter().map(Vec::len).max().unwrap_or(0);
            for k in 0..depth {
                let mut stage = PhaseSet::EMPTY;
                for phases in &per_ring {
                    if let Some(&p) = phases.get(k).or(phases.last()) {
                        stage.insert(p);
                    }
                }
                if stages.len() < MAX_STAGES {
                    stages.push(stage);
                }
            }
        }
        StageView { stages }
    }

    /// The stages, stage 1 first.
    pub fn stages(&self) -> &[PhaseSet] {
        &self.stages
    }

    /// Stage `number`'s phases (stages count from 1).
    pub fn stage(&self, number: u8) -> Option<PhaseSet> {
        self.stages.get(usize::from(number).checked_sub(1)?).copied()
    }

    /// The stage running when `timing` are the phases the rings are
    /// timing: the one holding all of them, else the one holding most
    /// (actuation can pair phases the view does not), or none when
    /// nothing times.
    pub fn current(&self, timing: PhaseSet) -> Option<u8> {
        if timing.is_empty() {
            return None;
        }
        let best = self
            .stages
            .iter()
            .enumerate()
            .max_by_key(|(k, s)| (s.intersection(timing).len(), std::cmp::Reverse(*k)))?;
        // Fewer than 64 stages, so the number fits.
        (!best.1.intersection(timing).is_empty()).then_some(best.0 as u8 + 1)
    }

    /// Per-phase splits (index = phase index) for a centre's stage chain
    /// and its stage times, with the cycle they must add up to, if given.
    ///
    /// # Errors
    /// A chain the ring-barrier sequence cannot run as given, as a
    /// [`StagePlanError`].
    pub fn splits(
        &self,
        chain: &[u8],
        times: &[Span],
        cycle: Option<Span>,
    ) -> Result<[Span; crate::core::MAX_PHASES], StagePlanError> {
        if chain.is_empty() {
            return Err(StagePlanError::Empty);
        }
        if chain.len() != times.len() {
            return Err(StagePlanError::TimesMismatch { chain: chain.len(), times: times.len() });
        }
        for &n in chain {
            if self.stage(n).is_none() {
                return Err(StagePlanError::NoStage(n, self.stages.len()));
            }
        }
        let n = self.stages.len();
        let start = usize::from(chain[0]) - 1;
        let in_order =
            chain.len() == n && chain.iter().enumerate().all(|(k, &s)| usize::from(s) - 1 == (start + k) % n);
        if !in_order {
            // At most MAX_STAGES, so each number fits a byte.
            let sequence = (1..=n).map(|k| k as u8).collect();
            return Err(StagePlanError::Order { chain: chain.to_vec(), sequence });
        }
        if let Some((&s, _)) = chain.iter().zip(times).find(|(_, t)| t.is_zero()) {
            return Err(StagePlanError::ZeroTime(s));
        }
        let sum = times.iter().fold(Span::ZERO, |a, &t| Span::from_millis(a.as_millis() + t.as_millis()));
        if let Some(cycle) = cycle
            && cycle != sum
        {
            return Err(StagePlanError::Cycle { sum_s: sum.as_secs_f64(), cycle_s: cycle.as_secs_f64() });
        }
        let mut splits = [Span::ZERO; crate::core::MAX_PHASES];
        for (&s, &t) in chain.iter().zip(times) {
            for p in self.stage(s).unwrap_or(PhaseSet::EMPTY).iter() {
                splits[p.index()] = Span::from_millis(splits[p.index()].as_millis() + t.as_millis());
            }
        }
        Ok(splits)
    }

    /// Stage times of a plan's splits, the inverse of [`StageView::splits`]:
    /// each stage lasts until the first of its phases has used its split.
    /// Where the rings of a group change phase at different times (splits
    /// no stage chain gives) this is the view's nearest reading.
    pub fn times(&self, splits: &[Span; crate::core::MAX_PHASES]) -> Vec<Span> {
        let mut left = *splits;
        self.stages
            .iter()
            .map(|stage| {
                let t = stage.iter().map(|p| left[p.index()]).min().unwrap_or(Span::ZERO);
                for p in stage.iter() {
                    left[p.index()] = left[p.index()].saturating_sub(t);
                }
                t
            })
            .collect()
    }
}

/// Phases as the standard's 64-bit stage bitmap: bit 0 is phase 1, sent
/// big-endian in 8 bytes.
pub fn phase_bitmap(set: PhaseSet) -> [u8; 8] {
    u64::from(set.bits()).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PhaseId;
    use crate::core::testing::eight_phase;

    fn set(numbers: &[u8]) -> PhaseSet {
        let mut s = PhaseSet::EMPTY;
        for &n in numbers {
            s.insert(PhaseId::new(n).expect("phase"));
        }
        s
    }

    #[test]
    fn the_dual_ring_eight_phase_controller_has_four_stages() {
        let view = StageView::derive(&eight_phase());
        assert_eq!(view.stages(), &[set(&[1, 5]), set(&[2, 6]), set(&[3, 7]), set(&[4, 8])]);
        assert_eq!(view.current(set(&[2, 6])), Some(2));
        assert_eq!(view.current(set(&[2, 5])), Some(1), "actuation paired 2 with 5: the first best match");
        assert_eq!(view.current(PhaseSet::EMPTY), None);
        assert_eq!(phase_bitmap(set(&[1, 5])), [0, 0, 0, 0, 0, 0, 0, 0x11]);
    }

    #[test]
    fn stage_times_become_splits_that_meet_at_every_barrier() {
        let view = StageView::derive(&eight_phase());
        let s = Span::from_secs;
        let splits = view.splits(&[1, 2, 3, 4], &[s(15), s(35), s(15), s(25)], Some(s(90))).expect("runs");
        let split = |n: u8| splits[PhaseId::new(n).expect("phase").index()];
        assert_eq!([split(1), split(2), split(5), split(6)], [s(15), s(35), s(15), s(35)]);
        assert_eq!(split(1).as_millis() + split(2).as_millis(), split(5).as_millis() + split(6).as_millis());
        // A rotation is the same cycle started elsewhere.
        let rotated = view.splits(&[3, 4, 1, 2], &[s(15), s(25), s(15), s(35)], None).expect("runs");
        assert_eq!(rotated, splits);
        assert_eq!(view.times(&splits), vec![s(15), s(35), s(15), s(25)], "and back");
    }

    #[test]
    fn a_ring_with_one_phase_in_a_group_is_in_every_stage_of_it() {
        let mut spec = eight_phase();
        spec.rings[0].sequence.retain(|p| p.number() != 1);
        spec.barrier_groups[0].remove(PhaseId::new(1).expect("phase"));
        let view = StageView::derive(&spec);
        assert_eq!(view.stage(1), Some(set(&[2, 5])));
        assert_eq!(view.stage(2), Some(set(&[2, 6])));
        let s = Span::from_secs;
        let splits = view.splits(&[1, 2, 3, 4], &[s(10), s(30), s(15), s(25)], None).expect("runs");
        assert_eq!(splits[PhaseId::new(2).expect("phase").index()], s(40));
        assert_eq!(view.times(&splits), vec![s(10), s(30), s(15), s(25)]);
    }

    #[test]
    fn chains_the_ring_barrier_sequence_cannot_run_are_refused_with_the_reason() {
        let view = StageView::derive(&eight_phase());
        let s = Span::from_secs;
        let t4 = [s(20); 4];
        assert!(matches!(view.splits(&[1, 3, 2, 4], &t4, None), Err(StagePlanError::Order { .. })));
        assert!(matches!(view.splits(&[1, 2, 3], &t4[..3], None), Err(StagePlanError::Order { .. })));
        assert_eq!(view.splits(&[1, 2, 3, 9], &t4, None), Err(StagePlanError::NoStage(9, 4)));
        assert_eq!(view.splits(&[], &[], None), Err(StagePlanError::Empty));
        assert_eq!(
            view.splits(&[1, 2, 3, 4], &t4[..2], None),
            Err(StagePlanError::TimesMismatch { chain: 4, times: 2 })
        );
        assert_eq!(view.splits(&[1, 2, 3, 4], &[s(20), s(0), s(20), s(20)], None), Err(StagePlanError::ZeroTime(2)));
        assert_eq!(
            view.splits(&[1, 2, 3, 4], &t4, Some(s(90))),
            Err(StagePlanError::Cycle { sum_s: 80.0, cycle_s: 90.0 })
        );
    }
}
