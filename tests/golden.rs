//! Golden traces: each shipped controller replays a recorded detector log
//! and must produce exactly the pinned Indiana event log.
//!
//! The detector logs (`tests/fixtures/detectors/<id>.csv`) were recorded
//! from the built-in traffic (`greenwave simulate --record-detectors`); the
//! event logs (`tests/golden/<id>.csv`) are what the controller did with
//! them. A change in behaviour shows as the first differing event. If the
//! change is intended, re-create them with
//! `GW_TEST_BLESS=1 cargo test --test integration golden` and review the
//! diff like code.

use std::path::{Path, PathBuf};

use greenwave::config;
use greenwave::core::Span;
use greenwave::replay::{self, DetectorLog};
use greenwave::telemetry::eventlog::{LogTimeZone, event_file};

/// Fifteen simulated minutes: startup, several cycles, plan behaviour.
const TRACE: Span = Span::from_secs(900);
const TICK: Span = Span::from_millis(100);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bless() -> bool {
    std::env::var_os("GW_TEST_BLESS").is_some()
}

fn render(id: &str, events: &[greenwave::core::Event]) -> String {
    let out = event_file(id, events, LogTimeZone::Utc).expect("replay instants format");
    String::from_utf8(out).expect("event lines are UTF-8")
}

fn first_difference(expected: &str, got: &str) -> String {
    for (n, (e, g)) in expected.lines().zip(got.lines()).enumerate() {
        if e != g {
            return format!("line {}: expected `{e}`, got `{g}`", n + 1);
        }
    }
    format!("lengths differ: expected {} lines, got {}", expected.lines().count(), got.lines().count())
}

#[test]
fn shipped_controllers_match_their_golden_traces() {
    let configs = config::load_dir(&root().join("controllers")).expect("shipped controllers are valid");
    let mut failures = Vec::new();
    for (cfg, _) in configs {
        let id = cfg.spec.id.clone();
        let detectors = root().join(format!("tests/fixtures/detectors/{id}.csv"));
        let golden = root().join(format!("tests/golden/{id}.csv"));
        if bless() && !detectors.exists() {
            let (_, log, _) = replay::simulate(&cfg, TICK, TRACE, replay::SimTime::default());
            write(&detectors, &log.to_csv());
        }
        let log = DetectorLog::load(&detectors).unwrap_or_else(|e| panic!("{}: {e}", detectors.display()));
        let out = replay::replay(cfg.spec.clone(), &log, TICK, Some(TRACE), replay::SimTime::default());
        assert_eq!(out.monitor_trips, 0, "{id}: monitor tripped in replay");
        let got = render(&id, &out.events);
        if bless() {
            write(&golden, &got);
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        if expected != got {
            failures.push(format!("{id}: {}", first_difference(&expected, &got)));
        }
    }
    assert!(failures.is_empty(), "golden traces differ (bless if intended):\n{}", failures.join("\n"));
}

#[test]
fn replay_is_repeatable() {
    let (cfg, _) = config::load_intersection(&root().join("controllers/broadway-and-5th.toml")).expect("valid");
    let log = DetectorLog::load(&root().join("tests/fixtures/detectors/broadway-and-5th.csv")).expect("fixture");
    let a = replay::replay(cfg.spec.clone(), &log, TICK, Some(Span::from_secs(300)), replay::SimTime::default());
    let b = replay::replay(cfg.spec, &log, TICK, Some(Span::from_secs(300)), replay::SimTime::default());
    assert!(!a.events.is_empty());
    assert_eq!(a.events, b.events);
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("fixture paths have a parent")).expect("create fixture dir");
    std::fs::write(path, text).expect("write fixture");
}
