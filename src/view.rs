//! The live terminal view: each intersection's unit state, plan, rings,
//! phase indications, calls and timers, redrawn from the snapshot board.
//! Reads snapshots only; it cannot slow the control thread.

use std::fmt::Write as _;

use crate::core::{Indication, Interval, PedIndication, Snapshot, UnitState};
use crate::engine::board::SnapshotBoard;
use crate::engine::latency::Percentiles;

/// Static facts the view shows next to the live state.
#[derive(Clone, Debug)]
pub struct ViewIntersection {
    pub id: String,
    /// Phase names by phase index, where present.
    pub phase_names: Vec<(u8, String)>,
}

fn paint(ind: Indication) -> &'static str {
    match ind {
        Indication::Green => "\x1b[42;30m G \x1b[0m",
        Indication::Yellow => "\x1b[43;30m Y \x1b[0m",
        Indication::Red => "\x1b[41;37m R \x1b[0m",
        Indication::FlashingRed => "\x1b[5;41;37m r \x1b[0m",
        Indication::FlashingYellow => "\x1b[5;43;30m y \x1b[0m",
        Indication::Dark => " . ",
    }
}

fn ped(ind: PedIndication) -> &'static str {
    match ind {
        PedIndication::Walk => "WALK",
        PedIndication::FlashingDontWalk => "FDW ",
        PedIndication::DontWalk => "DW  ",
        PedIndication::Dark => "    ",
    }
}

fn unit(s: &Snapshot) -> String {
    match s.unit {
        UnitState::Run => "RUN".into(),
        UnitState::AllRed { .. } => "ALL RED".into(),
        UnitState::Flash { reason, .. } => format!("FLASH ({})", reason.describe()),
    }
}

/// Render one screen (plain text with ANSI colours).
pub fn render(
    intersections: &[ViewIntersection],
    board: &SnapshotBoard,
    latency: (Percentiles, Percentiles),
) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("\x1b[H\x1b[2J");
    let _ = writeln!(out, "Greenwave — live view (Ctrl-C drives the signals to flash and exits)");
    let _ = writeln!(out, "tick latency: {}\nloop jitter:  {}\n", latency.0, latency.1);
    for (i, x) in intersections.iter().enumerate() {
        let Some(s) = board.get(i) else {
            let _ = writeln!(out, "{}: waiting for the first tick", x.id);
            continue;
        };
        let cycle = match s.cycle_time {
            Some(c) => format!("cycle {:.0}/{:.0}s", c.as_secs_f64(), s.cycle.as_secs_f64()),
            None => "free".into(),
        };
        let _ = writeln!(
            out,
            "\x1b[1m{}\x1b[0m  {}  plan {} ({:?}, {:?})  {}",
            x.id,
            unit(&s),
            s.plan,
            s.plan_mode,
            s.mode,
            cycle
        );
        for (r, ring) in s.rings.iter().take(s.ring_count as usize).enumerate() {
            let phase = ring.phase.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            let what = match ring.interval {
                Interval::Idle => "idle".to_string(),
                Interval::Green => format!("green {:.1}s", ring.elapsed.as_secs_f64()),
                Interval::Yellow => format!("yellow {:.1}s", ring.elapsed.as_secs_f64()),
                Interval::RedClear => format!("red clear {:.1}s", ring.elapsed.as_secs_f64()),
            };
            let max = ring.max_elapsed.map(|m| format!("  max timer {:.1}s", m.as_secs_f64())).unwrap_or_default();
            let next = ring.next.map(|n| format!("  next {n}")).unwrap_or_default();
            let _ = writeln!(out, "  ring {}: phase {phase:>2} {what}{max}{next}", r + 1);
        }
        for (n, name) in &x.phase_names {
            let Some(p) = crate::core::PhaseId::new(*n) else { continue };
            let call = if s.vehicle_calls.contains(p) { "call" } else { "    " };
            let pcall = if s.ped_calls.contains(p) { "ped call" } else { "        " };
            let hold = if s.holds.contains(p) { "HOLD" } else { "" };
            let _ = writeln!(
                out,
                "   {:>2} {:<18} {} {} {call} {pcall} {hold}",
                n,
                name,
                paint(s.output.phase(p)),
                ped(s.output.ped(p))
            );
        }
        let mut dets = String::new();
        for d in s.detectors.iter().take(s.detector_count as usize) {
            let mark = match (d.fault, d.presence) {
                (Some(_), _) => '!',
                (None, true) => '#',
                (None, false) => '.',
            };
            dets.push(mark);
        }
        let _ = writeln!(out, "   detectors [{dets}]  (# occupied, ! faulted)\n");
    }
    out
}
