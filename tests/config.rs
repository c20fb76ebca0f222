//! The config layer through its public API: the shipped controller files,
//! the broken fixture, `greenwave check`, daemon settings with environment
//! overrides, and a reload that must keep the old configuration on error.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use greenwave::config::{
    self, CabinetConfig, ConfigError, DaemonConfig, Env, IntersectionConfig, LaneHead, check_report, load_dir,
    load_intersection, load_intersection_str,
};
use greenwave::core::spec::PlanMode;
use greenwave::core::{OverlapId, PhaseId, PhaseSet, Span};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn phases(numbers: &[u8]) -> PhaseSet {
    numbers.iter().map(|&n| PhaseId::new(n).expect("phase number")).collect()
}

fn phase(n: u8) -> PhaseId {
    PhaseId::new(n).expect("phase number")
}

fn load_ok(path: &Path) -> IntersectionConfig {
    match load_intersection(path) {
        Ok((config, _)) => config,
        Err(errors) => panic!("{} should load:\n{}", path.display(), lines(&errors)),
    }
}

fn lines(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("  {e}\n")).collect()
}

/// `errors` are exactly the `(key, reason fragment)` pairs expected.
fn assert_exactly(errors: &[ConfigError], expected: &[(&str, &str)]) {
    for (key, reason) in expected {
        assert!(
            errors.iter().any(|e| e.key == *key && e.reason.contains(reason)),
            "missing error {key}: {reason}\ngot:\n{}",
            lines(errors)
        );
    }
    assert_eq!(errors.len(), expected.len(), "unexpected extra errors:\n{}", lines(errors));
}

// ---- shipped controllers --------------------------------------------------

#[test]
fn every_shipped_controller_validates_with_zero_errors() {
    let loaded = match load_dir(&repo("controllers")) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("controllers/ should load:\n{}", lines(&errors)),
    };
    let ids: Vec<&str> = loaded.iter().map(|(c, _)| c.spec.id.as_str()).collect();
    assert_eq!(ids, ["broadway-and-5th", "elm-and-oak", "river-rd-and-mill-st"]);
    for (config, warnings) in &loaded {
        assert!(warnings.is_empty(), "{} warns: {warnings:?}", config.spec.id);
        assert_eq!(config.cabinet, CabinetConfig::Simulated);
    }
}

#[test]
fn broadway_builds_the_full_dual_ring_spec() {
    let c = load_ok(&repo("controllers/broadway-and-5th.toml"));
    let spec = &c.spec;
    assert_eq!(c.name, "Broadway & 5th Ave");
    assert_eq!(spec.phase_set(), phases(&[1, 2, 3, 4, 5, 6, 7, 8]));
    assert_eq!(spec.barrier_groups, vec![phases(&[1, 2, 5, 6]), phases(&[3, 4, 7, 8])]);
    let p2 = spec.phase(phase(2)).expect("phase 2");
    assert_eq!((p2.ring, p2.group), (0, 0));
    assert_eq!(p2.timing.yellow, Span::from_millis(4000));
    assert!(p2.timing.has_ped());
    // Same ring or across the barrier conflict; 2 and 6 time together.
    assert_eq!(spec.conflicts[phase(2).index()], phases(&[1, 3, 4, 7, 8]));
    assert_eq!(spec.detectors.len(), 16);
    assert!(spec.detectors.windows(2).all(|w| w[0].channel < w[1].channel));
    let am = spec.plan(2).expect("plan 2");
    assert_eq!((am.mode, am.cycle, am.offset), (PlanMode::Coordinated, Span::from_secs(100), Span::from_secs(20)));
    assert_eq!(am.coordinated, phases(&[2, 6]));
    assert_eq!(am.splits[phase(4).index()], Span::from_secs(32));
    assert_eq!(spec.default_plan, 1);
    assert_eq!(spec.startup.phases, phases(&[2, 6]));
    assert_eq!(spec.schedule.weekdays[0], Some(0));
    assert_eq!(spec.schedule.weekdays[6], Some(1));
    assert_eq!(c.traffic.lanes.len(), 12);
    assert_eq!(c.traffic.pedestrians.len(), 4);
}

#[test]
fn river_road_overlap_conflicts_default_to_what_conflicts_with_every_parent() {
    let c = load_ok(&repo("controllers/river-rd-and-mill-st.toml"));
    let a = &c.spec.overlaps[0];
    assert_eq!(a.id, OverlapId::from_letter('A').expect("A"));
    assert_eq!(a.parents, phases(&[1, 4]));
    assert_eq!(a.conflicts, phases(&[2]));
    // Ring 2 has only phase 6 and waits through Mill St's group.
    assert_eq!(c.spec.rings[1].sequence, vec![phase(6)]);
    assert!(c.traffic.lanes.iter().any(|l| l.head == LaneHead::Overlap(a.id)));
}

#[test]
fn embedded_text_loads_like_the_file() {
    let path = repo("controllers/elm-and-oak.toml");
    let text = fs::read_to_string(&path).expect("read");
    let (from_text, _) = load_intersection_str("elm-and-oak.toml", &text).expect("valid");
    let from_file = load_ok(&path);
    assert_eq!(from_text.spec, from_file.spec);
    assert_eq!(from_text.source, PathBuf::from("elm-and-oak.toml"));
}

// ---- the broken fixture ---------------------------------------------------

#[test]
fn broken_fixture_reports_every_error_with_its_key() {
    let errors = load_intersection(&repo("tests/fixtures/broken.toml")).expect_err("broken.toml must not load");
    let expected: [(&str, &str); 20] = [
        ("phase 2 (number 2).recall", "\"minimum\" is not one of none | min | max | ped | soft"),
        ("phase 3 (number 3).colour", "unknown key"),
        ("phase 2 (number 2).ped_clear_s", "walk_s is set"),
        ("phase 4 (number 4).yellow_s", "3.0 s is below the ITE minimum 4.0 s for 60 km/h on a -3.0% grade"),
        ("phase 4 (number 4).red_clear_s", "1.0 s is below the ITE minimum 1.7 s"),
        ("phase 7 (number 7).max1_s", "4.0 s is below min_green_s 5.0 s"),
        ("sequence.conflicts[1]", "phases 2 and 5 conflict but are timed together (same barrier group, rings 1 and 2)"),
        ("startup.phases", "phases 2 and 8 cannot start together"),
        ("detector 1 (channel 1).calls", "phase 9 is not defined by any [[phase]]"),
        ("detector 2 (channel 1).channel", "channel 1 is already used by detector 1 (channel 1)"),
        ("detector 3 (channel 70).channel", "70 is outside the cabinet's channels 1..=64"),
        (
            "plan 2 (number 2).splits_s.3",
            "8.0 s is shorter than min green 5.0 s + yellow 3.5 s + red clearance 3.0 s = 11.5 s",
        ),
        ("plan 2 (number 2).splits_s.7", "8.0 s is shorter than min green"),
        ("plan 2 (number 2).splits_s", "ring 1 splits sum to 105.0 s, but the cycle is 100.0 s"),
        ("plan 2 (number 2).splits_s", "ring 2 splits sum to 105.0 s, but the cycle is 100.0 s"),
        ("plan 3 (number 3).splits_s", "barrier misaligned: ring 1 gives 46.0 s to group 1, ring 2 gives 42.0 s"),
        ("plan 3 (number 3).splits_s", "barrier misaligned: ring 1 gives 44.0 s to group 2, ring 2 gives 48.0 s"),
        ("schedule.day_plan 1 (name weekday).events 2 (at 06:00).at", "06:00 does not come after 07:00"),
        ("schedule.day_plan 2 (name weekend).events 1 (at 00:00).plan", "plan 9 is not defined by any [[plan]]"),
        ("schedule.week", "has 6 entries; it needs 7"),
    ];
    assert_exactly(&errors, &expected);
    assert!(errors.iter().all(|e| e.file == repo("tests/fixtures/broken.toml")));
}

/// Each edit in `unsafe.toml` was once accepted without a word (issue #19).
#[test]
fn unsafe_fixture_is_refused_or_warned_key_by_key() {
    let path = repo("tests/fixtures/unsafe.toml");
    let errors = load_intersection(&path).expect_err("unsafe.toml must not load");
    let expected = [
        ("phase 1 (number 2).min_green_s", "0.01 s is below 1 s"),
        ("phase 1 (number 2).ped_clear_s", "1.0 s is below 3.0 s"),
        ("startup.all_red_s", "0.0 s is below 2.0 s"),
        ("plan 2 (number 2).splits_s.2", "\"02\" and \"2\" both give phase 2's split"),
    ];
    assert_exactly(&errors, &expected);
    let report = check_report(&[path]).render();
    for warning in ["phase 2 (number 4).min_green_s: 3.0 s is below 4 s", "startup.flash_s: 0 s: no start-up flash"] {
        assert!(report.contains(&format!("warning: {warning}")), "{report}");
    }
}

/// Issue #18.1: `greenwave check` names the file, the key and the reason
/// for every misuse of the preemption keys and the preemption/priority
/// input registers (`tests/fixtures/preempt.toml`; and #18.3's
/// accessible signal registers moved onto the countdowns), and the shipped rail
/// crossing loads with them.
#[test]
fn preemption_keys_misused_are_refused_key_by_key() {
    let path = repo("tests/fixtures/preempt.toml");
    let errors = load_intersection(&path).expect_err("preempt.toml must not load");
    let expected = [
        ("preempt 1 (input 2).priority", "0 is not a rank 1 (served first) ..= 8"),
        ("preempt 1 (input 2).debounce_s", "10.0s is longer than 5.0s"),
        ("preempt 1 (input 2).track_clearance_s", "a track clearance needs a green time above 0"),
        ("preempt 1 (input 2).track_clearance_phases", "phases 1 and 2 cannot clear the track together"),
        ("preempt 2 (input 1).max_presence_s", "2.0s is not longer than delay_s (5.0s)"),
        ("preempt 2 (input 1).track_clearance_phases", "missing: which phases clear the track"),
        ("preempt 3 (input 3).truncated_walk_s", "3.0s is below the legal minimum walk of 4.0s"),
        ("preempt 4 (input 4).truncated_walk_s", "set ped_truncation = true"),
        ("cabinet.registers", "status (input registers 4..5) and priority (4..5) overlap"),
        ("cabinet.registers", "ped_countdown (holding registers 47..63) and aps (55..58) overlap"),
    ];
    assert_exactly(&errors, &expected);
    let report = check_report(std::slice::from_ref(&path)).render();
    let line = format!("{}: error: preempt 3 (input 3).truncated_walk_s: 3.0s is below", path.display());
    assert!(report.contains(&line), "{report}");

    let river = load_ok(&repo("controllers/river-rd-and-mill-st.toml"));
    let rail = river.spec.preempt(2).expect("rail crossing");
    assert_eq!(rail.priority, 1);
    assert_eq!(rail.track_clearance.map(|t| (t.phases, t.green)), Some((phases(&[4]), Span::from_secs(15))));
    assert_eq!((rail.max_presence, rail.truncated_walk), (Some(Span::from_secs(300)), Some(Span::from_secs(4))));
    assert_eq!(river.spec.preempt(1).map(|p| (p.priority, p.debounce)), Some((2, Span::from_millis(250))));
}

/// A hidden copy beside the controllers (an editor's, a deploy tool's
/// half-written file) is never loaded.
#[test]
fn hidden_files_are_not_controllers() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("controllers/elm-and-oak.toml")).unwrap();
    std::fs::write(dir.path().join("elm-and-oak.toml"), &text).unwrap();
    std::fs::write(dir.path().join(".elm-and-oak.toml"), &text).unwrap();
    let files = greenwave::config::controller_files(dir.path()).unwrap();
    assert_eq!(files, [dir.path().join("elm-and-oak.toml")]);
    assert_eq!(greenwave::config::load_dir(dir.path()).expect("one controller").len(), 1);
}

#[test]
fn check_report_renders_errors_ok_lines_and_totals() {
    let report = check_report(&[repo("controllers"), repo("tests/fixtures/broken.toml")]);
    assert!(report.has_errors());
    let text = report.render();
    let broadway = format!(
        "{}: ok (8 phases, 16 detectors, 5 plans, at 22.5406, 114.0553)",
        repo("controllers/broadway-and-5th.toml").display()
    );
    assert!(text.contains(&broadway), "{text}");
    let broken = repo("tests/fixtures/broken.toml");
    let yellow = format!("{}: error: phase 4 (number 4).yellow_s: 3.0 s is below the ITE minimum", broken.display());
    assert!(text.contains(&yellow), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(last.starts_with("4 files checked, 1 with errors (20 errors, "), "{last}");
    assert!(!check_report(&[repo("controllers")]).has_errors());
}

#[test]
fn duplicate_ids_and_syntax_errors_are_reported_per_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = fs::read_to_string(repo("controllers/elm-and-oak.toml")).expect("read");
    fs::write(dir.path().join("elm-and-oak.toml"), &text).expect("write");
    fs::write(dir.path().join("elm-copy.toml"), &text).expect("write");
    fs::write(dir.path().join("typo.toml"), "[intersection\nid = \"x\"\n").expect("write");
    let errors = load_dir(dir.path()).expect_err("duplicate id and bad TOML");
    assert_eq!(errors.len(), 2, "{}", lines(&errors));
    assert_eq!(errors[0].file, dir.path().join("elm-copy.toml"));
    assert_eq!(errors[0].key, "intersection.id");
    assert!(errors[0].reason.contains("also the id of"), "{}", errors[0]);
    assert_eq!(errors[1].file, dir.path().join("typo.toml"));
    assert!(errors[1].reason.starts_with("not valid TOML"), "{}", errors[1]);
    assert!(errors[1].reason.contains("line 1"), "{}", errors[1]);
}

// ---- case sensitivity -----------------------------------------------------

#[test]
fn controller_keys_are_case_sensitive_like_config_rs() {
    // config 0.15 keeps file keys as written, so `Yellow_S` is not
    // `yellow_s`: it is an unknown key, and yellow_s is then missing.
    let path = repo("controllers/elm-and-oak.toml");
    let text = fs::read_to_string(&path).expect("read").replacen("yellow_s = 3.5", "Yellow_S = 3.5", 1);
    let errors = load_intersection_str("elm.toml", &text).expect_err("mixed-case key");
    let keys: Vec<(&str, &str)> = errors.iter().map(|e| (e.key.as_str(), e.reason.as_str())).collect();
    assert_eq!(
        keys,
        [
            ("phase 1 (number 2).Yellow_S", "unknown key (keys are case-sensitive: did you mean yellow_s?)"),
            ("phase 1 (number 2).yellow_s", "missing (required)"),
        ]
    );
}

#[test]
fn a_location_is_read_in_degrees_and_checked_on_the_earth() {
    let shipped = load_ok(&repo("controllers/elm-and-oak.toml"));
    let at = shipped.location.expect("the shipped files have a location");
    assert_eq!((at.lat, at.lon), (22.5367, 114.0602));

    let text = fs::read_to_string(repo("controllers/elm-and-oak.toml")).expect("read");
    let line = "location = { lat = 22.5367, lon = 114.0602 }";
    assert!(text.contains(line), "the shipped line moved");
    let (none, _) = load_intersection_str("elm.toml", &text.replace(line, "")).expect("location is optional");
    assert_eq!(none.location, None);

    let bad = text.replace(line, "location = { lat = 95.0, lon = -181 }");
    let errors = load_intersection_str("elm.toml", &bad).expect_err("off the earth");
    assert_exactly(
        &errors,
        &[
            ("intersection.location.lat", "95 is not a latitude in degrees (-90 to 90)"),
            ("intersection.location.lon", "-181 is not a longitude in degrees (-180 to 180)"),
        ],
    );
    assert!(errors[0].to_string().starts_with("elm.toml: intersection.location.lat: 95"), "{}", errors[0]);

    let half = text.replace(line, "location = { lat = 22.5 }");
    let errors = load_intersection_str("elm.toml", &half).expect_err("lon missing");
    assert_exactly(&errors, &[("intersection.location.lon", "missing (required)")]);
    let typo = text.replace(line, "location = { lat = 22.5, lng = 114.0 }");
    let errors = load_intersection_str("elm.toml", &typo).expect_err("unknown key");
    assert!(errors.iter().any(|e| e.key == "intersection.location.lng"), "{}", lines(&errors));
}

// ---- daemon settings ------------------------------------------------------

fn env(vars: &[(&str, &str)]) -> Env {
    Env::Vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
}

#[test]
fn daemon_defaults_apply_without_file_or_environment() {
    assert_eq!(DaemonConfig::load_with_env(None, env(&[])), Ok(DaemonConfig::default()));
    let d = DaemonConfig::default();
    assert_eq!((d.controllers.as_path(), d.tick_ms, d.view), (Path::new("controllers"), 100, true));
    assert_eq!((d.event_log.dir.as_path(), d.event_log.keep_files), (Path::new("log"), 10));
}

#[test]
fn environment_overrides_tick_ms_and_nested_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("greenwave.toml");
    fs::write(&file, "tick_ms = 50\nview = false\n[event_log]\ndir = \"/var/log/greenwave\"\nkeep_files = 3\n")
        .expect("write");
    let d = DaemonConfig::load_with_env(
        Some(&file),
        env(&[("GREENWAVE_TICK_MS", "250"), ("GREENWAVE_EVENT_LOG__MAX_FILE_BYTES", "1048576"), ("PATH", "/usr/bin")]),
    )
    .expect("valid");
    assert_eq!(d.tick_ms, 250, "the environment wins over the file");
    assert!(!d.view);
    assert_eq!(d.event_log.dir, PathBuf::from("/var/log/greenwave"));
    assert_eq!((d.event_log.max_file_bytes, d.event_log.keep_files), (1_048_576, 3));
}

#[test]
fn environment_variable_names_are_case_insensitive() {
    let d = DaemonConfig::load_with_env(None, env(&[("greenwave_tick_ms", "40")])).expect("valid");
    assert_eq!(d.tick_ms, 40);
}

#[test]
fn daemon_problems_name_their_variable_or_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("greenwave.toml");
    fs::write(&file, "Tick_MS = 200\n[event_log]\nkeep_files = 0\n").expect("write");
    let errors = DaemonConfig::load_with_env(
        Some(&file),
        env(&[("GREENWAVE_TICK_MS", "5"), ("GREENWAVE_VEIW", "false"), ("GREENWAVE_VIEW", "sometimes")]),
    )
    .expect_err("invalid settings");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let file = file.display();
    assert_eq!(
        got,
        [
            "environment: view: expected true or false, found \"sometimes\" (GREENWAVE_VIEW)".to_string(),
            format!("{file}: Tick_MS: unknown key (keys are case-sensitive: did you mean tick_ms?)"),
            "environment: veiw: unknown key (did you mean view?) (GREENWAVE_VEIW)".to_string(),
            "environment: tick_ms: 5 ms is outside 10..=1000 ms (GREENWAVE_TICK_MS)".to_string(),
            format!("{file}: event_log.keep_files: 0 is outside 1..=100000 (at least the file being written)"),
        ]
    );
}

#[test]
fn the_nats_section_is_checked_like_the_others_and_the_token_can_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("greenwave.toml");
    fs::write(&file, "[nats]\nurl = \"nats://broker.city:4222\"\nstate_interval_ms = 500\n").expect("write");
    let d = DaemonConfig::load_with_env(
        Some(&file),
        env(&[("GREENWAVE_NATS__TOKEN", "s3cret"), ("GREENWAVE_NATS__BUFFER_EVENTS", "2000")]),
    )
    .expect("valid");
    assert!(d.nats.enabled, "a written section turns it on");
    assert_eq!((d.nats.url.as_str(), d.nats.state_interval.as_millis()), ("nats://broker.city:4222", 500));
    assert_eq!((d.nats.buffer_events, d.nats.subject_prefix.as_str()), (2000, "greenwave"));
    assert_eq!(d.nats.auth, greenwave::config::NatsAuth::Token("s3cret".into()));
    assert!(!DaemonConfig::load_with_env(None, env(&[])).expect("valid").nats.enabled, "off by default");

    fs::write(&file, "[nats]\nurl = \"localhost\"\nbuffer_events = 0\nsubjects = \"x\"\n").expect("write");
    let errors = DaemonConfig::load_with_env(Some(&file), env(&[])).expect_err("invalid");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let file = file.display();
    assert_eq!(
        got,
        [
            format!(
                "{file}: nats.subjects: unknown key (expected one of: enabled, url, subject_prefix, stream, \
                 state_interval_ms, buffer_events, flush_timeout_ms, token, user, password, credentials)"
            ),
            format!(
                "{file}: nats.url: \"localhost\" must start with nats:// or tls:// (like \"nats://127.0.0.1:4222\")"
            ),
            format!("{file}: nats.buffer_events: 0 is outside 1..=10000000"),
        ]
    );
}

#[test]
fn a_missing_daemon_file_is_an_error_when_named() {
    let errors =
        DaemonConfig::load_with_env(Some(Path::new("/nonexistent/greenwave.toml")), env(&[])).expect_err("missing");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].reason.contains("not found"), "{}", errors[0]);
}

#[test]
fn corridor_problems_name_the_file_and_key_and_unknown_members_are_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("greenwave.toml");
    fs::write(
        &file,
        "[[corridor]]\nname = \"Elm\"\nmembers = [\"elm-and-oak\"]\n\n\
         [[corridor]]\nmembers = [\"a\", \"b\"]\ntravel_s = [0]\n",
    )
    .expect("write");
    let errors = DaemonConfig::load_with_env(Some(&file), env(&[])).expect_err("invalid corridors");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let f = file.display();
    assert_eq!(
        got,
        [
            format!("{f}: corridor 1 (name Elm).members: 1 intersections: a corridor needs at least 2"),
            format!("{f}: corridor 2.travel_s[1]: 0 s: a travel time must be in (0, 600] s"),
        ]
    );

    fs::write(
        &file,
        "[[corridor]]\nname = \"Broadway\"\nmembers = [\"broadway-and-5th\", \"nowhere\"]\ntravel_s = [30, 12.5]\n",
    )
    .expect("write");
    let errors = DaemonConfig::load_with_env(Some(&file), env(&[])).expect_err("travel count");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].to_string().ends_with("travel_s: 2 travel times for 2 members: one per pair of neighbours (1)"));

    fs::write(
        &file,
        "[[corridor]]\nname = \"Broadway\"\nmembers = [\"broadway-and-5th\", \"nowhere\"]\ntravel_s = [30]\n",
    )
    .expect("write");
    let d = DaemonConfig::load_with_env(Some(&file), env(&[])).expect("valid on its own");
    assert_eq!(d.corridors[0].travel, vec![greenwave::core::Span::from_secs(30)]);
    let ids: Vec<String> = ["broadway-and-5th", "elm-and-oak"].iter().map(|s| s.to_string()).collect();
    let errors = greenwave::config::corridor::resolve(&d.corridors, &ids, &file).expect_err("unknown member");
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!(
            "{f}: corridor 1 (name Broadway).members[2]: \"nowhere\" is not a configured intersection (known: \
             broadway-and-5th, elm-and-oak); one another daemon runs goes in `remote`"
        )]
    );
}

// ---- reload ---------------------------------------------------------------

/// What the daemon does on SIGHUP: load the file again; on error keep the
/// running configuration and report why.
fn reload(current: &mut IntersectionConfig, path: &Path) -> Result<(), Vec<ConfigError>> {
    let (fresh, _warnings) = load_intersection(path)?;
    *current = fresh;
    Ok(())
}

#[test]
fn a_rejected_reload_keeps_the_running_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("elm-and-oak.toml");
    let good = fs::read_to_string(repo("controllers/elm-and-oak.toml")).expect("read");
    fs::write(&path, &good).expect("write");
    let mut running = load_ok(&path);
    let before = running.spec.clone();

    // An engineer shortens the Elm yellow below the ITE minimum.
    fs::write(&path, good.replacen("yellow_s = 3.5", "yellow_s = 2.5", 1)).expect("write");
    let errors = reload(&mut running, &path).expect_err("yellow below minimum");
    assert_eq!(errors.len(), 1, "{}", lines(&errors));
    assert_eq!(errors[0].key, "phase 1 (number 2).yellow_s");
    assert_eq!(running.spec, before, "the old configuration stays in force");

    // The fix is picked up by the next reload.
    fs::write(&path, good.replacen("yellow_s = 3.5", "yellow_s = 4.0", 1)).expect("write");
    reload(&mut running, &path).expect("valid again");
    assert_eq!(running.spec.phase(phase(2)).expect("phase 2").timing.yellow, Span::from_millis(4000));
}

#[test]
fn defaults_are_exported_for_callers() {
    assert_eq!(config::DEFAULT_SATURATION_HEADWAY, Span::from_secs(2));
    assert_eq!(config::DEFAULT_SIM_SEED, 1);
}

/// broadway-and-5th.toml with `line` first in its `[adaptive]` table.
fn broadway_with_adaptive(line: &str) -> String {
    let text = fs::read_to_string(repo("controllers/broadway-and-5th.toml")).expect("read");
    text.replacen("[adaptive]\n", &format!("[adaptive]\n{line}\n"), 1)
}

#[test]
fn adaptive_max_floor_is_read_and_a_wrong_value_names_its_key() {
    let with = |value: &str| broadway_with_adaptive(&format!("max_floor = {value}"));
    let (ok, _) = load_intersection_str("broadway.toml", &with("\"min_service\"")).expect("min_service loads");
    assert_eq!(ok.spec.adaptive.max_floor, greenwave::core::spec::MaxFloor::MinService);
    let errors = load_intersection_str("broadway.toml", &with("\"min\"")).expect_err("not a floor");
    assert!(
        errors
            .iter()
            .any(|e| e.key == "adaptive.max_floor" && e.reason.contains("\"min\" is not one of max | min_service")),
        "{}",
        lines(&errors)
    );
}

#[test]
fn adaptive_max_headroom_is_read_and_bounded() {
    let with = |value: &str| broadway_with_adaptive(&format!("max_headroom = {value}"));
    let (ok, _) = load_intersection_str("broadway.toml", &with("1.25")).expect("1.25 loads");
    assert_eq!(ok.spec.adaptive.max_headroom, 1.25);
    let shipped = fs::read_to_string(repo("controllers/broadway-and-5th.toml")).expect("read");
    let (default, _) = load_intersection_str("broadway.toml", &shipped).expect("shipped");
    assert_eq!(default.spec.adaptive.max_headroom, 1.0, "no headroom unless asked");
    for bad in ["0.8", "2.5"] {
        let errors = load_intersection_str("broadway.toml", &with(bad)).expect_err("out of range");
        assert!(
            errors.iter().any(|e| e.key == "adaptive.max_headroom" && e.reason.contains("outside 1.0..=2.0")),
            "{}",
            lines(&errors)
        );
    }
}

#[test]
fn schedule_style_and_its_horizon_are_read_and_bounded() {
    let with = |keys: &str| broadway_with_adaptive(keys);
    let (ok, _) =
        load_intersection_str("broadway.toml", &with("style = \"schedule\"\nhorizon_s = 120")).expect("loads");
    assert_eq!(ok.spec.adaptive.style, greenwave::core::spec::AdaptiveStyle::Schedule);
    assert_eq!(ok.spec.adaptive.horizon, greenwave::core::Span::from_secs(120));
    for bad in ["10", "600"] {
        let errors = load_intersection_str("broadway.toml", &with(&format!("horizon_s = {bad}"))).expect_err("range");
        assert!(
            errors.iter().any(|e| e.key == "adaptive.horizon_s" && e.reason.contains("outside 30..=300 s")),
            "{}",
            lines(&errors)
        );
    }
    let errors = load_intersection_str("broadway.toml", &with("style = \"schedul\"")).expect_err("not a style");
    assert!(
        errors.iter().any(|e| e.key == "adaptive.style" && e.reason.contains("cycle | free | schedule")),
        "{}",
        lines(&errors)
    );
}

/// A file past what a controller can use is refused at once, with the key
/// and the limit; one with thousands of invalid values stops after 100:
/// `check` stays fast on generated or hostile files (`benches/check.rs`).
#[test]
fn oversized_and_hopeless_files_are_refused_in_bounded_time() {
    let phases: String = (1..=17).map(|n| format!("[[phase]]\nnumber = {n}\n")).collect();
    let errors = load_intersection_str("big.toml", &phases).expect_err("17 phases");
    assert_eq!(lines(&errors), "  big.toml: phase: 17 [[phase]] tables: a controller has at most 16\n");
    let long = format!("[sequence]\nrings = [[{}]]\n", vec!["1"; 1025].join(", "));
    let errors = load_intersection_str("long.toml", &long).expect_err("a 1,025-entry list");
    assert_eq!(lines(&errors), "  long.toml: sequence.rings[1]: 1025 entries: a list holds at most 1024\n");
    let mistyped: String =
        (1..=64).map(|ch| format!("[[detector]]\nchannel = {ch}\ndelay_s = \"x\"\nextend_s = \"x\"\n")).collect();
    let errors = load_intersection_str("mistyped.toml", &mistyped).expect_err("128 mistyped values");
    assert_eq!(errors.len(), 101);
    assert!(errors[100].reason.contains("more than 100 invalid values: stopped here"), "{}", errors[100]);
}

/// Broadway & 5th with every feature of issue #18 misused at once:
/// preemption inputs, ranks and rail track clearance, the accessible
/// crossings (leading walk, extended clearance, design walking speed, rest
/// in walk and recycle), flashing yellow arrows, omit and conditional
/// service. `greenwave check` names the file, the key and the reason of
/// each, and nothing else (docs/configuration.md quotes the output).
#[test]
fn check_reports_each_misused_issue_18_feature() {
    let shipped = fs::read_to_string(repo("controllers/broadway-and-5th.toml")).expect("read");
    let phase = |n: u8| format!("[[phase]]\nnumber = {n}\n");
    let edits = [
        // 2: a leading walk as long as the walk.
        ("leading_walk_s = 3.0\n".to_owned(), "leading_walk_s = 7.0\n".to_owned()),
        // 2 again: a design speed faster than MUTCD allows.
        ("walking_speed_fps = 3.0\n".to_owned(), "walking_speed_fps = 4.0\n".to_owned()),
        // 1: a leading walk on a phase without pedestrians.
        (phase(1), format!("{}leading_walk_s = 3.0\n", phase(1))),
        // 4: the crossing in both units.
        (phase(4), format!("{}ped_crossing_ft = 60.0\n", phase(4))),
        // 3: rest in walk and recycle on a left turn without pedestrians.
        (phase(3), format!("{}rest_in_walk = true\nped_recycle = true\n", phase(3))),
        // 8: designed for elderly walkers, but its clearance is not.
        (phase(8), format!("{}walking_speed_fps = 3.0\n", phase(8))),
        // 2: an "extension" shorter than the clearance it extends.
        ("extended_ped_clear_s = 21.0".to_owned(), "extended_ped_clear_s = 12.0".to_owned()),
        // 6: longer than its green may run.
        ("extended_ped_clear_s = 21.0".to_owned(), "extended_ped_clear_s = 45.0".to_owned()),
        // Channel 25: a long press too short to tell from a press; channel
        // 1: one on a loop; 26: an extension input on a crossing with
        // nothing to grant.
        ("long_press_s = 2.0".to_owned(), "long_press_s = 0.5".to_owned()),
        ("calls = [1]".to_owned(), "calls = [1]\nlong_press_s = 2.0".to_owned()),
        (
            "calls = [4]                  # crossing Broadway, north side".to_owned(),
            "calls = [4]\nextension_input = true".to_owned(),
        ),
        // A rail preemption out of rank, faulting before its entry, its
        // track cleared by two phases of one ring for no time, and a walk
        // cut without leave to truncate.
        (
            "# Bus route 5".to_owned(),
            "[[preempt]]\ninput = 2\nname = \"rail\"\npriority = 0\ndelay_s = 5.0\nmax_presence_s = 4.0\n\
             dwell_phases = [4, 8]\ntrack_clearance_phases = [1, 2]\ntrack_clearance_s = 0.0\ntruncated_walk_s = 5.0\n\n\
             # Bus route 5"
                .to_owned(),
        ),
        // Flashing yellow arrows: A yielding to a phase across the barrier,
        // B with two parents.
        ("permissive_phase = 2".to_owned(), "permissive_phase = 4".to_owned()),
        ("parents = [5]".to_owned(), "parents = [5, 1]".to_owned()),
        // Plan 2 omits its coordinated phase.
        ("coordinated = [2, 6]\n".to_owned(), "coordinated = [2, 6]\nomit = [2]\n".to_owned()),
        // Conditional service on 2, the last of its ring before the
        // barrier; 1's minimum below its min green and clearance.
        (
            "recall = \"min\"               # main street always returns to green".to_owned(),
            "conditional_service = true\nrecall = \"min\"".to_owned(),
        ),
        ("conditional_service_min_s = 15.0\napproach_speed_kmh = 50\n".to_owned(), "conditional_service_min_s = 8.0\napproach_speed_kmh = 50\n".to_owned()),
    ];
    let mut text = shipped;
    for (from, to) in &edits {
        assert!(text.contains(from), "broadway has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("broadway-and-5th.toml");
    fs::write(&file, text).expect("write");
    let report = check_report(std::slice::from_ref(&file));
    assert!(report.has_errors());
    let rendered = report.render();
    // `--nocapture` shows the report docs/configuration.md quotes.
    println!("{rendered}");
    let expected = [
        "phase 2 (number 2).leading_walk_s: 7.0 s is not shorter than walk_s 7.0 s",
        "phase 2 (number 2).walking_speed_fps: 4 ft/s is faster than the 3.5 ft/s MUTCD 4E.06 allows",
        "phase 1 (number 1).leading_walk_s: needs a pedestrian movement",
        "phase 6 (number 4).ped_crossing_ft: give the crossing in ped_crossing_m or ped_crossing_ft, not both",
        "phase 5 (number 3).rest_in_walk: needs a pedestrian movement",
        "phase 5 (number 3).ped_recycle: needs a pedestrian movement",
        "phase 8 (number 8).ped_clear_s: 18.0 s is below 20.2 s needed to cross 18.5 m at 3 ft/s",
        "phase 2 (number 2).extended_ped_clear_s: 12.0 s is not longer than ped_clear_s 17.0 s",
        "phase 4 (number 6).extended_ped_clear_s: walk 7.0 s + extended clearance 45.0 s exceed max2_s 50.0 s",
        "detector 13 (channel 25).long_press_s: 0.5 s is shorter than 1 s: ordinary presses would ask for it",
        "detector 1 (channel 1).long_press_s: only a push button (kind = \"pedestrian\") asks for extended",
        "detector 14 (channel 26).extension_input: phase 4 has no extended_ped_clear_s to grant",
        "preempt 2 (input 2).priority: 0 is not a rank 1 (served first) ..= 8",
        "preempt 2 (input 2).max_presence_s: 4.0s is not longer than delay_s (5.0s): every call would fault before its entry",
        "preempt 2 (input 2).track_clearance_s: a track clearance needs a green time above 0",
        "preempt 2 (input 2).track_clearance_phases: phases 1 and 2 cannot clear the track together: both are in ring 1",
        "preempt 2 (input 2).truncated_walk_s: set ped_truncation = true to let entry cut walks, or remove this key",
        "overlap 1 (id A).permissive_phase: phase 4 must be the opposing through of protected left 1",
        "overlap 2 (id B).parents: a flashing yellow arrow overlap has exactly one parent: its protected left phase",
        "plan 2 (number 2).omit: phase 2 is coordinated in this plan: it cannot be omitted",
        "phase 2 (number 2).conditional_service: phase 2 has no later phase in ring 1 before the barrier (barrier group 1)",
        "phase 1 (number 1).conditional_service_min_s: 8.0 s is below min_green_s + yellow_s + red_clear_s 11.0 s",
    ];
    for reason in expected {
        let line = format!("{}: error: {reason}", file.display());
        assert!(rendered.contains(&line), "no {line:?} in\n{rendered}");
    }
    let last = rendered.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("1 file checked, 1 with errors ({} errors", expected.len())), "{rendered}");
}
