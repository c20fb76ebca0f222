//! Regressions, each named after the issue that found it.

use std::path::Path;

use greenwave::config;
use greenwave::core::{
    Command, Controller, EventCode, InputFrame, Instant, Monitor, PhaseId, PhaseSet, PreemptStage, Span,
};

const TICK: Span = Span::from_millis(100);

/// One shipped controller ticking with every detector on, its frames
/// checked by the monitor, the greens it begins logged.
struct Drive {
    controller: Controller,
    monitor: Monitor,
    input: InputFrame,
    now: Instant,
    greens: Vec<(Instant, PhaseId)>,
}

impl Drive {
    fn step(&mut self) {
        self.now += TICK;
        self.controller.handle_tick(self.now, &self.input);
        if let Err(fault) = self.monitor.check(self.now, self.controller.output()) {
            panic!("monitor tripped at {}: {fault}\n{:#?}", self.now, self.controller.snapshot());
        }
        while let Some(e) = self.controller.poll_event() {
            if e.code == EventCode::PhaseBeginGreen {
                self.greens.push((e.at, PhaseId::new(e.param as u8).expect("a phase")));
            }
        }
    }

    fn run(&mut self, secs: u64) {
        for _ in 0..secs * 10 {
            self.step();
        }
    }

    fn stage(&self) -> Option<PreemptStage> {
        self.controller.snapshot().preempt.map(|p| p.stage)
    }
}

// See: issue 15 ("after a preemption on a coordinated plan the exit phases
// went green 85 s after release; the shipped file says 'serve it first'").
/// On every shipped controller, plan and preemption input, with every
/// phase called: the exit phases that are not dwell phases are the first
/// greens after the release, within the longest clearance of any head
/// there (the dwell greens' yellow and red clearance, or that of an
/// overlap they carry) plus two ticks: the release is acted on at the
/// next tick, and overlaps are timed after the rings within a tick, so
/// the barrier sees an overlap's clearance end one tick later. Exit
/// phases that are dwell phases are green at the release already, and
/// the preemption ends there.
#[test]
fn r15_exit_phases_are_served_first_after_a_preemption_on_every_plan() {
    let shipped = config::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/controllers")))
        .expect("shipped controllers are valid");
    for (x, _) in shipped {
        let spec = &x.spec;
        // An overlap clears as long as its parents' longest yellow and
        // longest red clearance (which may come from different parents).
        let overlap_clearance = spec.overlaps.iter().map(|o| {
            let timing = || o.parents.iter().filter_map(|p| spec.phase(p)).map(|p| p.timing);
            timing().map(|t| t.yellow).max().unwrap_or_default()
                + timing().map(|t| t.red_clear).max().unwrap_or_default()
        });
        let longest =
            spec.phases.iter().map(|p| p.timing.clearance()).chain(overlap_clearance).max().unwrap_or_default();
        let bound = TICK + longest + TICK;
        for preempt in &spec.preempts {
            for plan in &spec.plans {
                let what = format!("{} plan {} preempt {}", spec.id, plan.number, preempt.input);
                let mut d = Drive {
                    controller: Controller::new(spec.clone(), Instant::ZERO),
                    monitor: Monitor::new(spec),
                    input: InputFrame::default(),
                    now: Instant::ZERO,
                    greens: Vec::new(),
                };
                d.controller.handle_command(d.now, Command::SelectPlan(plan.number)).expect(&what);
                for det in &spec.detectors {
                    d.input.set_presence(det.channel, true);
                }
                d.run(150);
                let call = |active| Command::Preempt { input: preempt.input, active };
                d.controller.handle_command(d.now, call(true)).expect(&what);
                for _ in 0..1200 {
                    if d.stage() == Some(PreemptStage::Dwell) {
                        break;
                    }
                    d.step();
                }
                assert_eq!(d.stage(), Some(PreemptStage::Dwell), "{what}: dwell reached within 120 s");
                d.run(60);
                d.controller.handle_command(d.now, call(false)).expect(&what);
                let released = d.now;
                let owed = preempt.exit.difference(preempt.dwell);
                d.step();
                if owed.is_empty() {
                    assert_eq!(d.stage(), None, "{what}: the exit phases were green at the release");
                    continue;
                }
                d.run(200);
                let first: Vec<_> =
                    d.greens.iter().filter(|(at, _)| *at > released).take(owed.len() as usize).collect();
                let served: PhaseSet = first.iter().map(|(_, p)| *p).collect();
                assert_eq!(served, owed, "{what}: first greens after the release {first:?}");
                for (at, p) in first {
                    assert!(
                        at.since(released) <= bound,
                        "{what}: phase {p} green {} after the release",
                        at.since(released)
                    );
                }
            }
        }
    }
}
