//! Hand-built controller definitions for the core's own unit tests (the
//! integration tests use the shipped files through `config`).

use super::ids::{DetectorChannel, MAX_PHASES, PhaseId, PhaseSet};
use super::spec::*;
use super::time::Span;

fn s(secs: f64) -> Span {
    Span::try_from_secs_f64(secs).expect("test timings are valid")
}

fn p(n: u8) -> PhaseId {
    PhaseId::new(n).expect("test phase in range")
}

/// A textbook 8-phase dual ring: lefts 1/3/5/7 lead throughs 2/4/6/8,
/// pedestrians on the throughs, one stop-bar detector per phase (channel =
/// phase) and accessible push buttons on channels 12/14/16/18 for 2/4/6/8
/// (a 2 s press extends the 12 s clearance to 18 s). Plan 1 free,
/// plan 2 coordinated on 2+6 at 100 s, plan 3 fixed at 90 s, plan 4 plan 2
/// run adaptively.
pub fn eight_phase() -> ControllerSpec {
    let mut phases = Vec::new();
    for n in 1..=8u8 {
        let through = n % 2 == 0;
        let timing = PhaseTiming {
            min_green: s(if through { 8.0 } else { 4.0 }),
            passage: s(if through { 3.0 } else { 2.0 }),
            density: VolumeDensity::default(),
            max1: s(if through { 40.0 } else { 20.0 }),
            max2: s(if through { 55.0 } else { 25.0 }),
            yellow: s(if through { 4.0 } else { 3.5 }),
            red_clear: s(1.5),
            walk: s(if through { 7.0 } else { 0.0 }),
            ped_clear: s(if through { 12.0 } else { 0.0 }),
            leading_walk: Span::ZERO,
            extended_ped_clear: s(if through { 18.0 } else { 0.0 }),
            recall: if n == 2 || n == 6 { Recall::Min } else { Recall::None },
            rest_in_walk: false,
            ped_recycle: false,
            dual_entry: through,
            conditional_service: None,
            flash: if n == 2 || n == 6 { FlashIndication::Yellow } else { FlashIndication::Red },
        };
        phases.push(PhaseSpec {
            id: p(n),
            name: format!("phase {n}"),
            ring: if n <= 4 { 0 } else { 1 },
            group: if matches!(n, 1 | 2 | 5 | 6) { 0 } else { 1 },
            timing,
        });
    }
    let mut phase_slot = [None; MAX_PHASES];
    for (i, ph) in phases.iter().enumerate() {
        phase_slot[ph.id.index()] = Some(i as u8);
    }
    let set = |ns: &[u8]| ns.iter().map(|&n| p(n)).collect::<PhaseSet>();
    let mut detectors: Vec<DetectorSpec> = (1..=8u8)
        .map(|n| DetectorSpec {
            channel: DetectorChannel::new(n).unwrap(),
            kind: DetectorKind::Vehicle,
            placement: DetectorPlacement::StopBar,
            travel_time: Span::ZERO,
            calls: set(&[n]),
            extends: set(&[n]),
            delay: Span::ZERO,
            extend: Span::ZERO,
            ped_extension: None,
            diagnostics: DetectorDiagnostics::default(),
        })
        .collect();
    for n in [2u8, 4, 6, 8] {
        detectors.push(DetectorSpec {
            channel: DetectorChannel::new(10 + n).unwrap(),
            kind: DetectorKind::Pedestrian,
            placement: DetectorPlacement::StopBar,
            travel_time: Span::ZERO,
            calls: set(&[n]),
            extends: PhaseSet::EMPTY,
            delay: Span::ZERO,
            extend: Span::ZERO,
            // Accessible push buttons: a 2 s press extends the clearance.
            ped_extension: Some(Span::from_secs(2)),
            diagnostics: DetectorDiagnostics::default(),
        });
    }
    let mut free = PlanSpec {
        number: 1,
        name: "free".into(),
        mode: PlanMode::Free,
        cycle: Span::ZERO,
        offset: Span::ZERO,
        splits: [Span::ZERO; MAX_PHASES],
        coordinated: PhaseSet::EMPTY,
        max_select: MaxSelect::Max1,
        adaptive: false,
        omit: PhaseSet::EMPTY,
    };
    let mut coordinated = free.clone();
    coordinated.number = 2;
    coordinated.name = "coordinated".into();
    coordinated.mode = PlanMode::Coordinated;
    coordinated.cycle = s(100.0);
    coordinated.offset = s(10.0);
    coordinated.coordinated = set(&[2, 6]);
    for (n, split) in [(1, 15.0), (2, 40.0), (3, 15.0), (4, 30.0), (5, 15.0), (6, 40.0), (7, 15.0), (8, 30.0)] {
        coordinated.splits[p(n).index()] = s(split);
    }
    let mut adaptive = coordinated.clone();
    adaptive.number = 4;
    adaptive.name = "adaptive".into();
    adaptive.adaptive = true;
    let mut fixed = coordinated.clone();
    fixed.number = 3;
    fixed.name = "fixed".into();
    fixed.mode = PlanMode::Fixed;
    fixed.cycle = s(90.0);
    fixed.coordinated = PhaseSet::EMPTY;
    for (n, split) in [(1, 12.0), (2, 38.0), (3, 12.0), (4, 28.0), (5, 12.0), (6, 38.0), (7, 12.0), (8, 28.0)] {
        fixed.splits[p(n).index()] = s(split);
    }
    free.max_select = MaxSelect::Max1;
    let conflicts = ControllerSpec::structural_conflicts(&phases);
    ControllerSpec {
        id: "test-8".into(),
        version: 1,
        phases,
        phase_slot,
        rings: vec![
            RingSpec { sequence: vec![p(1), p(2), p(3), p(4)] },
            RingSpec { sequence: vec![p(5), p(6), p(7), p(8)] },
        ],
        barrier_groups: vec![set(&[1, 2, 5, 6]), set(&[3, 4, 7, 8])],
        conflicts,
        detectors,
        overlaps: Vec::new(),
        plans: vec![free, coordinated, fixed, adaptive],
        default_plan: 1,
        schedule: Schedule::default(),
        startup: StartupSpec { flash: s(4.0), all_red: s(2.0), phases: set(&[2, 6]) },
        preempts: vec![PreemptSpec {
            input: 1,
            name: "fire station".into(),
            delay: Span::ZERO,
            min_duration: s(10.0),
            dwell: set(&[4, 8]),
            exit: set(&[2, 6]),
            priority: 1,
            debounce: Span::ZERO,
            max_presence: None,
            track_clearance: None,
            truncated_walk: None,
        }],
        priority: PrioritySpec { max_extension: s(10.0) },
        adaptive: AdaptiveSpec::default(),
    }
}

/// `spec` (eight-phase numbering) with flashing yellow arrow heads for its
/// main-street lefts, as an engineer would add them: overlap C on the SB
/// left 1 yielding to the NB through 2, overlap D on the NB left 5 yielding
/// to the SB through 6; each conflicts with what conflicts with its left.
pub fn with_flashing_yellow_arrows(mut spec: ControllerSpec) -> ControllerSpec {
    for (letter, left, through) in [('C', 1, 2), ('D', 5, 6)] {
        spec.overlaps.push(OverlapSpec {
            id: super::ids::OverlapId::from_letter(letter).expect("test overlap letter"),
            parents: PhaseSet::single(p(left)),
            conflicts: spec.conflicts[p(left).index()],
            kind: OverlapKind::FlashingYellowArrow { permissive: p(through) },
        });
    }
    spec
}
