//! The validator rule by rule, on a minimal controller edited per test.

use crate::config::{CabinetConfig, OneMasterCheck, load_intersection_str};
use crate::core::Span;

use super::secs;

/// A minimal valid dual-ring controller: no errors, no warnings.
const BASE: &str = r#"
[intersection]
id = "t"
[cabinet]
kind = "simulated"
[startup]
flash_s = 6
all_red_s = 4
phases = [2, 6]
[sequence]
rings = [[2, 4], [6, 8]]
barriers = [[2, 6], [4, 8]]
[[phase]]
number = 2
min_green_s = 10
passage_s = 3
max1_s = 40
yellow_s = 4
red_clear_s = 2
recall = "min"
approach_speed_kmh = 50
crossing_width_m = 15
[[phase]]
number = 4
min_green_s = 7
passage_s = 3
max1_s = 30
yellow_s = 3.5
red_clear_s = 2.5
recall = "min"
approach_speed_kmh = 40
crossing_width_m = 15
[[phase]]
number = 6
min_green_s = 10
passage_s = 3
max1_s = 40
yellow_s = 4
red_clear_s = 2
recall = "min"
approach_speed_kmh = 50
crossing_width_m = 15
[[phase]]
number = 8
min_green_s = 7
passage_s = 3
max1_s = 30
yellow_s = 3.5
red_clear_s = 2.5
recall = "min"
approach_speed_kmh = 40
crossing_width_m = 15
[[plan]]
number = 1
mode = "free"
[schedule]
default_plan = 1
[simulation]
"#;

/// Problems of `BASE` after replacing each `(from, to)` once and
/// appending `extra`, as "key: reason" lines.
fn check(edits: &[(&str, &str)], extra: &str) -> (Vec<String>, Vec<String>) {
    let mut text = BASE.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "BASE has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text.push_str(extra);
    let show = |key: &str, reason: &str| format!("{key}: {reason}");
    match load_intersection_str("t.toml", &text) {
        Ok((_, w)) => (Vec::new(), w.iter().map(|w| show(&w.key, &w.reason)).collect()),
        Err(e) => (e.iter().map(|e| show(&e.key, &e.reason)).collect(), Vec::new()),
    }
}

fn errors(edits: &[(&str, &str)], extra: &str) -> Vec<String> {
    check(edits, extra).0
}

fn assert_has(problems: &[String], expected: &str) {
    assert!(problems.iter().any(|p| p.contains(expected)), "no {expected:?} in {problems:#?}");
}

#[test]
fn the_base_controller_is_clean() {
    assert_eq!(check(&[], ""), (vec![], vec![]));
}

#[test]
fn rings_must_cross_barriers_in_order() {
    let e = errors(&[("barriers = [[2, 6], [4, 8]]", "barriers = [[4, 6], [2, 8]]")], "");
    assert_has(&e, "sequence.rings[1]: ring 1 runs phase 4 (barrier group 1) after phase 2 (group 2)");
}

#[test]
fn every_phase_is_in_exactly_one_ring_and_group() {
    let e = errors(
        &[("rings = [[2, 4], [6, 8]]", "rings = [[2, 4], [6, 8, 4]]"), ("[[2, 6], [4, 8]]", "[[2, 6], [4]]")],
        "",
    );
    assert_has(&e, "sequence.rings[2]: phase 4 is in ring 1 and ring 2");
    assert_has(&e, "phase 4 (number 8): phase 8 is in no barrier group of sequence.barriers");
    let e = errors(&[("rings = [[2, 4], [6, 8]]", "rings = [[2, 4], [6, 8], [9]]")], "");
    assert_has(&e, "sequence.rings[3]: phase 9 is not defined by any [[phase]]");
}

#[test]
fn yellow_below_three_seconds_cites_mutcd_when_ite_asks_less() {
    let e = errors(&[("yellow_s = 3.5", "yellow_s = 2.9")], "");
    assert_eq!(
        e,
        [
            "phase 2 (number 4).yellow_s: 2.9 s is below the MUTCD 4D.26 minimum 3.0 s (the ITE minimum for 40 km/h is 2.8 s)"
        ]
    );
    let (_, w) = check(&[("yellow_s = 4\n", "yellow_s = 6.5\n")], "");
    assert_has(&w, "phase 1 (number 2).yellow_s: 6.5 s is above the 6 s");
}

#[test]
fn speed_is_given_exactly_once() {
    let e = errors(&[("approach_speed_kmh = 50\n", "approach_speed_kmh = 50\napproach_speed_mph = 30\n")], "");
    assert_has(&e, "phase 1 (number 2).approach_speed_mph: give approach_speed_kmh or approach_speed_mph, not both");
    let e = errors(&[("approach_speed_kmh = 50\n", "")], "");
    assert_has(&e, "phase 1 (number 2).approach_speed_kmh: missing");
    // 30 mph: ITE yellow 3.2 s.
    let e = errors(&[("approach_speed_kmh = 50\n", "approach_speed_mph = 45\n")], "");
    assert_has(&e, "4.0 s is below the ITE minimum 4.3 s for 45 mph on a level approach");
}

#[test]
fn pedestrian_intervals_follow_the_crosswalk() {
    let ped = "recall = \"min\"\nwalk_s = 7\nped_clear_s = 12\nped_crossing_m = 15\n";
    let e = errors(&[("recall = \"min\"\n", ped)], "");
    assert_eq!(
        e,
        [
            "phase 1 (number 2).ped_clear_s: 12.0 s is below 14.1 s needed to cross 15 m at 3.5 ft/s (design walking speed, walking_speed_fps; MUTCD 4E.06: 3.5 ft/s at most)"
        ]
    );
    let e = errors(&[("recall = \"min\"\n", "recall = \"ped\"\n")], "");
    assert_has(&e, "phase 1 (number 2).recall: \"ped\" needs a pedestrian movement");
    let long = "walk_s = 7\nped_clear_s = 25\napproach_speed_kmh = 40";
    let button = "[[detector]]\nchannel = 9\nkind = \"pedestrian\"\ncalls = [4]\n";
    let (e, w) = check(&[("approach_speed_kmh = 40", long)], button);
    assert!(e.is_empty(), "{e:?}");
    assert_has(&w, "phase 2 (number 4).max1_s: 30.0 s is shorter than walk 7.0 s + ped clearance 25.0 s");
}

#[test]
fn a_design_walking_speed_sets_the_crossing_minimums() {
    let crossing = |keys: &str| {
        let ped = format!("recall = \"ped\"\nwalk_s = 7\nped_clear_s = 15\n{keys}");
        check(&[("recall = \"min\"\n", ped.as_str())], "")
    };
    // 15 m at the MUTCD 3.5 ft/s takes 14.1 s, at an elderly 3.0 ft/s 16.4 s.
    let (e, w) = crossing("ped_crossing_m = 15\n");
    assert!(e.is_empty() && w.is_empty(), "{e:?} {w:?}");
    let (e, _) = crossing("ped_crossing_m = 15\nwalking_speed_fps = 3.0\n");
    assert_eq!(
        e,
        [
            "phase 1 (number 2).ped_clear_s: 15.0 s is below 16.4 s needed to cross 15 m at 3 ft/s (design walking speed, walking_speed_fps; MUTCD 4E.06: 3.5 ft/s at most)"
        ]
    );
    // The same crossing in feet.
    let (e, _) = crossing("ped_crossing_ft = 49.2\nwalking_speed_fps = 3.0\n");
    assert_has(&e, "phase 1 (number 2).ped_clear_s: 15.0 s is below 16.4 s needed to cross 49.2 ft at 3 ft/s");
    let (e, _) = crossing("ped_crossing_m = 15\nwalking_speed_fps = 4\n");
    assert_eq!(
        e,
        [
            "phase 1 (number 2).walking_speed_fps: 4 ft/s is faster than the 3.5 ft/s MUTCD 4E.06 allows for pedestrian clearance"
        ]
    );
    let (e, _) = crossing("ped_crossing_m = 15\nwalking_speed_fps = 0\n");
    assert_eq!(e, ["phase 1 (number 2).walking_speed_fps: 0 ft/s: must be greater than 0"]);
    let (e, _) = crossing("ped_crossing_m = 15\nped_crossing_ft = 49.2\n");
    assert_eq!(
        e,
        ["phase 1 (number 2).ped_crossing_ft: give the crossing in ped_crossing_m or ped_crossing_ft, not both"]
    );
    let (e, w) = crossing("walking_speed_fps = 3.0\n");
    assert!(e.is_empty(), "{e:?}");
    assert_has(&w, "phase 1 (number 2).walking_speed_fps: ignored: no ped_crossing_m or ped_crossing_ft");
}

#[test]
fn push_buttons_need_a_walk_and_never_extend() {
    let e = errors(&[], "[[detector]]\nchannel = 9\nkind = \"pedestrian\"\ncalls = [2]\nextends = [2]\n");
    assert_has(&e, "detector 1 (channel 9).calls: phase 2 has no pedestrian movement");
    assert_has(&e, "detector 1 (channel 9).extends: push buttons do not extend green");
    let e = errors(&[], "[[detector]]\nchannel = 9\nkind = \"pedestrian\"\nplacement = \"advance\"\ncalls = [2]\n");
    assert_has(&e, "detector 1 (channel 9).placement: a push button has no advance placement");
    let e = errors(&[], "[[detector]]\nchannel = 9\nplacement = \"upstream\"\ncalls = [2]\n");
    assert!(e.iter().any(|m| m.contains("placement") && m.contains("advance")), "{e:?}");
}

#[test]
fn advance_loops_are_placed_by_distance_or_travel_time() {
    let advance = |keys: &str| format!("[[detector]]\nchannel = 17\nplacement = \"advance\"\n{keys}calls = [2]\n");
    let travel_time = |keys: &str| {
        let text = format!("{BASE}{}", advance(keys));
        let (cfg, _) = load_intersection_str("t.toml", &text).expect("valid");
        cfg.spec.detectors.iter().find(|d| d.channel.number() == 17).expect("detector 17").travel_time
    };
    // 90 m at phase 2's 50 km/h.
    assert_eq!(travel_time("distance_m = 90\n"), Span::from_millis(6480));
    assert_eq!(travel_time("travel_time_s = 4.5\n"), Span::from_millis(4500));

    let (e, w) = check(&[], &advance(""));
    assert!(e.is_empty(), "{e:?}");
    assert_has(&w, "detector 1 (channel 17): an advance loop without distance_m or travel_time_s");
    let e = errors(&[], &advance("distance_m = 90\ntravel_time_s = 4\n"));
    assert_has(&e, "detector 1 (channel 17).travel_time_s: give distance_m or travel_time_s, not both");
    let e = errors(&[], &advance("distance_m = 0\n"));
    assert_has(&e, "detector 1 (channel 17).distance_m: 0 m: must be greater than 0");
    let e = errors(&[], "[[detector]]\nchannel = 9\ndistance_m = 60\ncalls = [2]\n");
    assert_has(&e, "detector 1 (channel 9).distance_m: only an advance loop");
}

#[test]
fn crossing_streets_cannot_both_flash_yellow() {
    let e = errors(
        &[
            (
                "recall = \"min\"\napproach_speed_kmh = 50",
                "recall = \"min\"\nflash = \"yellow\"\napproach_speed_kmh = 50",
            ),
            (
                "recall = \"min\"\napproach_speed_kmh = 40",
                "recall = \"min\"\nflash = \"yellow\"\napproach_speed_kmh = 40",
            ),
        ],
        "",
    );
    assert_eq!(
        e,
        [
            "phase 2 (number 4).flash: phases 2 and 4 would both flash yellow but cross each other (barrier groups 1 and 2): flash one of them red"
        ]
    );
}

#[test]
fn overlap_conflicts_must_not_time_with_a_parent() {
    let e = errors(&[], "[[overlap]]\nid = \"B\"\nparents = [2]\nconflicts = [6, 2]\n");
    assert_has(&e, "overlap 1 (id B).conflicts: phase 2 is a parent of the overlap");
    assert_has(
        &e,
        "overlap 1 (id B).conflicts: phase 6 times together with parent 2 (same barrier group, rings 2 and 1)",
    );
    let e = errors(&[], "[[overlap]]\nid = \"Q\"\nparents = [2]\n");
    assert_eq!(e, ["overlap 1 (id Q).id: \"Q\" is not an overlap letter A..=H"]);
}

#[test]
fn coordination_needs_one_coordinated_phase_per_ring_in_one_group() {
    let plan = |coordinated: &str| {
        format!(
            "[[plan]]\nnumber = 2\nmode = \"coordinated\"\ncycle_s = 80\noffset_s = 80\nsplits_s = {{ 2 = 45, 4 = 35, 6 = 45, 8 = 35 }}\ncoordinated = {coordinated}\n"
        )
    };
    let e = errors(&[], &plan("[2]"));
    assert_has(&e, "plan 2 (number 2).offset_s: 80.0 s must be less than the cycle (80.0 s)");
    assert_has(
        &e,
        "plan 2 (number 2).coordinated: ring 2 has phases 6 in the coordinated barrier group 1 but none is coordinated",
    );
    let e = errors(&[], &plan("[2, 8]"));
    assert_has(&e, "phases 2 and 8 are in barrier groups 1 and 2");
    let e = errors(&[], &plan("[]"));
    assert_has(&e, "a coordinated plan needs its coordinated phases");
}

#[test]
fn a_ring_without_phases_in_a_group_waits_through_it() {
    // Ring 2 has only phase 6; it waits through group 2 (phase 4's 35 s).
    let edits = [
        ("rings = [[2, 4], [6, 8]]", "rings = [[2, 4], [6]]"),
        ("barriers = [[2, 6], [4, 8]]", "barriers = [[2, 6], [4]]"),
    ];
    let text_plan =
        "[[plan]]\nnumber = 2\nmode = \"fixed\"\ncycle_s = 80\nsplits_s = { 2 = 45, 4 = 30, 6 = 45, 8 = 35 }\n";
    let e = errors(&edits, text_plan);
    assert_has(
        &e,
        "ring 2 splits sum to 45.0 s plus 30.0 s for barrier group 2 it has no phase in, 75.0 s, but the cycle is 80.0 s",
    );
}

#[test]
fn free_plans_ignore_cycle_keys_with_a_warning() {
    let (e, w) = check(&[("mode = \"free\"", "mode = \"free\"\ncycle_s = 90")], "");
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(w, ["plan 1 (number 1): a free plan has no cycle: cycle_s ignored"]);
}

#[test]
fn simulation_lanes_point_at_the_right_detectors() {
    let extra = "lanes = [{ detector = 9, phase = 2, arrivals_per_hour = 100 }, { detector = 3, phase = 2, overlap = \"A\", arrivals_per_hour = 5000 }]\n\
                 [[detector]]\nchannel = 9\nkind = \"pedestrian\"\ncalls = []\n[[detector]]\nchannel = 3\ncalls = [2]\n";
    let e = errors(&[], extra);
    assert_has(
        &e,
        "simulation.lanes 1 (detector 9).detector: detector 9 is the wrong kind: lanes need a vehicle detector",
    );
    assert_has(&e, "simulation.lanes 2 (detector 3): give phase or overlap, not both");
}

#[test]
fn schedule_dates_and_names_are_checked() {
    let extra = "week = [\"d\", \"d\", \"d\", \"d\", \"d\", \"d\", \"x\"]\n\
                 [[schedule.day_plan]]\nname = \"d\"\nevents = [{ at = \"24:00\", plan = 1 }]\n\
                 [[schedule.holiday]]\ndate = \"2026-02-29\"\nday_plan = \"d\"\n";
    let e = errors(&[("[schedule]\ndefault_plan = 1\n", &format!("[schedule]\ndefault_plan = 1\n{extra}"))], "");
    assert_has(&e, "schedule.week[7]: no [[schedule.day_plan]] is named \"x\"");
    assert_has(&e, "schedule.day_plan 1 (name d).events 1 (at 24:00).at: \"24:00\" is not a time of day");
    assert_has(&e, "schedule.holiday 1 (date 2026-02-29).date: \"2026-02-29\" has no such day in that month");
}

#[test]
fn modbus_cabinets_need_host_and_port() {
    let e = errors(&[("kind = \"simulated\"", "kind = \"modbus-tcp\"\naddress = \"10.0.0.5\"")], "");
    assert_eq!(e, ["cabinet.address: \"10.0.0.5\" is not host:port (e.g. \"10.20.30.40:502\")"]);
}

/// 9600 8E1 needs about 0.40 s on the wire for the default map's read and
/// write (0.42 s with the heartbeat read back): it cannot keep a 100 ms
/// tick, 115200 can (about 35 ms).
#[test]
fn an_rtu_line_too_slow_for_the_tick_is_warned() {
    let rtu = |baud: u32| format!("kind = \"modbus-rtu\"\npath = \"/dev/ttyS0\"\nbaud = {baud}\nparity = \"even\"");
    let (e, w) = check(&[("kind = \"simulated\"", &rtu(9600))], "");
    assert_eq!(e, Vec::<String>::new());
    assert_has(
        &w,
        "cabinet.baud: 9600 baud carries one tick's read, heartbeat read-back and write of this register map in 0.422 s",
    );
    let unchecked = format!("{}\none_master = \"off\"", rtu(9600));
    let (_, w) = check(&[("kind = \"simulated\"", &unchecked)], "");
    assert_has(&w, "cabinet.baud: 9600 baud carries one tick's read and write of this register map in 0.397 s");
    let (e, w) = check(&[("kind = \"simulated\"", &rtu(115_200))], "");
    assert_eq!((e, w), (Vec::<String>::new(), Vec::<String>::new()));
    let slow_poll = format!("{}\npoll_s = 0.5\nlink_timeout_s = 2", rtu(9600));
    assert_eq!(check(&[("kind = \"simulated\"", &slow_poll)], "").1, Vec::<String>::new());
}

#[test]
fn modbus_cabinet_keys_are_checked() {
    let rtu = "kind = \"modbus-rtu\"\npath = \"/dev/ttyS0\"\nbaud = 5\nstop_bits = 3\nrequest_timeout_s = 0\n\
               backoff_min_s = 2\nbackoff_max_s = 1\ncamera_zone_channels = [33, 33, 70]\n\
               address = \"x:1\"\n[cabinet.registers]\nstatus = 2\nvolume_channels = 70\nheartbeat = 1\nvehicle_x = 1";
    let e = errors(&[("kind = \"simulated\"", rtu)], "");
    assert_has(&e, "cabinet.baud: 5 is not a serial speed");
    assert_has(&e, "cabinet.stop_bits: 3: must be 1 or 2");
    assert_has(&e, "cabinet.request_timeout_s: must be greater than 0");
    assert_has(&e, "cabinet.backoff_max_s: 1.0 s is below backoff_min_s 2.0 s");
    assert_has(&e, "cabinet.camera_zone_channels[2]: channel 33 is given to two zones");
    assert_has(&e, "cabinet.camera_zone_channels[3]: 70 is outside the cabinet's channels 1..=64");
    assert_has(&e, "cabinet.registers: presence (input registers 0..4) and status (2..3) overlap");
    assert_has(&e, "cabinet.registers: volume_channels 70 is more than 64");
    assert_has(&e, "cabinet.registers: vehicle (holding registers 0..16) and heartbeat (1..2) overlap");
    assert_has(&e, "cabinet.registers.vehicle_x: unknown key (did you mean vehicle?)");
    let ok = "kind = \"modbus-tcp\"\naddress = \"127.0.0.1:502\"\npath = \"/dev/x\"\n[cabinet.registers]\ncamera = 300";
    let (e, w) = check(&[("kind = \"simulated\"", ok)], "");
    assert_eq!(e, Vec::<String>::new());
    assert_has(&w, "cabinet.path: ignored: only for kind = \"modbus-rtu\"");
    let simulated = "kind = \"simulated\"\nrequest_timeout_s = 1";
    assert_has(
        &check(&[("kind = \"simulated\"", simulated)], "").1,
        "cabinet.request_timeout_s: ignored: the cabinet is simulated",
    );
}

#[test]
fn the_one_master_check_reads_back_unless_turned_off() {
    let tcp = "kind = \"modbus-tcp\"\naddress = \"127.0.0.1:502\"";
    for (key, want) in [("", OneMasterCheck::ReadBack), ("\none_master = \"off\"", OneMasterCheck::Off)] {
        let (cfg, _) = load_intersection_str("t.toml", &BASE.replace("kind = \"simulated\"", &format!("{tcp}{key}")))
            .expect("valid");
        let CabinetConfig::Modbus(m) = cfg.cabinet else { panic!("a modbus cabinet") };
        assert_eq!(m.one_master, want, "{key:?}");
    }
    let e = errors(&[("kind = \"simulated\"", &format!("{tcp}\none_master = \"echo\""))], "");
    assert_has(&e, "cabinet.one_master");
}

#[test]
fn seconds_print_like_engineers_write_them() {
    assert_eq!(secs(Span::from_millis(4000)), "4.0 s");
    assert_eq!(secs(Span::from_millis(3250)), "3.25 s");
}

#[test]
fn preemption_dwell_and_exit_phases_must_time_together_and_inputs_be_unique() {
    let preempts = r#"
[[preempt]]
input = 1
dwell_phases = [2, 4]
[[preempt]]
input = 1
dwell_phases = [2]
[[preempt]]
input = 12
dwell_phases = [9]
[[preempt]]
input = 3
dwell_phases = [2]
exit_phases = [2, 4]
"#;
    let e = errors(&[], preempts);
    assert_has(&e, "preempt 1 (input 1).dwell_phases: phases 2 and 4 cannot dwell together: both are in ring 1");
    assert_has(&e, "preempt 4 (input 3).exit_phases: phases 2 and 4 cannot exit together: both are in ring 1");
    assert_has(&e, "preempt 2 (input 1).input: preemption input 1 is defined twice");
    assert_has(&e, "preempt 3 (input 12).input: 12 is outside the preemption inputs 1..=8");
}

#[test]
fn transit_priority_defaults_to_a_ten_second_extension() {
    let (cfg, _) = load_intersection_str("t.toml", BASE).expect("base is valid");
    assert_eq!(cfg.spec.priority.max_extension, Span::from_secs(10));
    assert!(cfg.spec.preempts.is_empty());
}

#[test]
fn an_adaptive_cycle_must_hold_the_minimum_splits() {
    // Ring 1's minimums: (10 + 4 + 2) + (7 + 3.5 + 2.5) = 29 s.
    let e = errors(&[], "[adaptive]\nmin_cycle_s = 20\nmax_cycle_s = 25\n");
    assert_eq!(
        e,
        [
            "adaptive.max_cycle_s: 25.0 s is below 29.0 s, the shortest cycle that holds every phase's minimum split (min green or pedestrian service, plus clearances): the optimizer could never fit them"
        ]
    );
    assert!(errors(&[], "[adaptive]\nmin_cycle_s = 20\nmax_cycle_s = 29\n").is_empty());
}

#[test]
fn start_up_minimum_green_and_splits_are_checked() {
    let (e, w) = check(&[("flash_s = 6", "flash_s = 0"), ("min_green_s = 7", "min_green_s = 3")], "");
    assert!(e.is_empty(), "{e:?}");
    assert_has(&w, "startup.flash_s: 0 s: no start-up flash");
    assert_has(&w, "phase 2 (number 4).min_green_s: 3.0 s is below 4 s");
    let e = errors(&[("all_red_s = 4", "all_red_s = 0"), ("min_green_s = 10", "min_green_s = 0.01")], "");
    assert_has(&e, "startup.all_red_s: 0.0 s is below 2.0 s");
    assert_has(&e, "phase 1 (number 2).min_green_s: 0.01 s is below 1 s");
}

#[test]
fn volume_density_keys_bend_the_timing_within_its_limits() {
    let dense = "passage_s = 3\nadded_initial_s = 1.5\nmax_initial_s = 20\nmin_gap_s = 1\ntime_before_reduction_s = 10\ntime_to_reduce_s = 15\n";
    let (e, w) = check(&[("passage_s = 3\n", dense)], "");
    assert!(e.is_empty() && w.is_empty(), "{e:?} {w:?}");

    let e = errors(&[("passage_s = 3\n", "passage_s = 3\nadded_initial_s = 1.5\n")], "");
    assert_has(&e, "phase 1 (number 2).max_initial_s: missing: added_initial_s needs max_initial_s");
    let e = errors(&[("passage_s = 3\n", "passage_s = 3\nadded_initial_s = 1.5\nmax_initial_s = 8\n")], "");
    assert_has(&e, "phase 1 (number 2).max_initial_s: 8.0 s is below min_green_s 10.0 s");
    let e = errors(&[("passage_s = 3\n", "passage_s = 3\nadded_initial_s = 1.5\nmax_initial_s = 45\n")], "");
    assert_has(&e, "phase 1 (number 2).max_initial_s: 45.0 s is above max1_s 40.0 s");
    let e = errors(&[("passage_s = 3\n", "passage_s = 3\nmin_gap_s = 4\n")], "");
    assert_has(&e, "phase 1 (number 2).min_gap_s: 4.0 s is longer than passage_s 3.0 s");
    let e = errors(&[("passage_s = 3\n", "passage_s = 3\nmin_gap_s = 1\n")], "");
    assert_has(&e, "phase 1 (number 2).time_to_reduce_s: missing or 0: min_gap_s below passage_s needs");
    let e = errors(&[("passage_s = 3\n", "passage_s = 3\nmin_gap_s = -1\n")], "");
    assert_has(&e, "phase 1 (number 2).min_gap_s: -1 is not a duration");

    let (_, w) = check(&[("passage_s = 3\n", "passage_s = 3\nmax_initial_s = 20\ntime_to_reduce_s = 5\n")], "");
    assert_has(&w, "phase 1 (number 2).max_initial_s: has no effect without added_initial_s");
    assert_has(&w, "phase 1 (number 2).time_to_reduce_s: has no effect without a min_gap_s below passage_s");
}

#[test]
fn a_flashing_yellow_arrow_yields_to_the_opposing_through_of_its_one_left() {
    // A protected left 1 before 2 in ring 1, opposed by 2.
    let lead = [("rings = [[2, 4]", "rings = [[1, 2, 4]"), ("barriers = [[2, 6]", "barriers = [[1, 2, 6]")];
    let left = "[[phase]]\nnumber = 1\nmin_green_s = 5\npassage_s = 2\nmax1_s = 20\nyellow_s = 4\nred_clear_s = 2\n\
                recall = \"min\"\napproach_speed_kmh = 50\ncrossing_width_m = 18\n";
    let overlap = |body: &str| format!("{left}[[overlap]]\nid = \"A\"\n{body}");
    let ok = check(&lead, &overlap("kind = \"fya\"\nparents = [1]\npermissive_phase = 2\n"));
    assert_eq!(ok, (vec![], vec![]));
    let e = errors(&lead, &overlap("kind = \"fya\"\nparents = [1]\n"));
    assert_eq!(e, ["overlap 1 (id A).permissive_phase: missing (required)"]);
    let e = errors(&lead, &overlap("kind = \"fya\"\nparents = [1]\npermissive_phase = 6\n"));
    assert_has(&e, "permissive_phase: phase 6 must be the opposing through of protected left 1");
    let e = errors(&lead, &overlap("kind = \"fya\"\nparents = [1, 6]\npermissive_phase = 2\n"));
    assert_has(&e, "parents: a flashing yellow arrow overlap has exactly one parent");
    let e = errors(&lead, &overlap("parents = [1]\npermissive_phase = 2\n"));
    assert_has(&e, "permissive_phase: only a flashing yellow arrow overlap (kind = \"fya\") has a permissive phase");
    let e = errors(&lead, &overlap("kind = \"fya\"\nparents = [1]\npermissive_phase = 2\nconflicts = [4, 8]\n"));
    assert_eq!(
        e,
        ["overlap 1 (id A).conflicts: the protected arrow conflicts with its opposing through: list phase 2"]
    );
    let e = errors(&lead, &overlap("kind = \"green\"\nparents = [1]\n"));
    assert_has(&e, "overlap 1 (id A).kind");
}

#[test]
fn a_plan_omits_neither_a_coordinated_phase_nor_a_whole_ring() {
    let coordinated = "[[plan]]\nnumber = 2\nmode = \"coordinated\"\ncycle_s = 80\nsplits_s = { 2 = 40, 4 = 40, 6 = 40, 8 = 40 }\ncoordinated = [2, 6]\n";
    assert_eq!(check(&[], &format!("{coordinated}omit = [4]\n")), (vec![], vec![]));
    let e = errors(&[], &format!("{coordinated}omit = [2, 8, 9]\n"));
    assert_has(&e, "plan 2 (number 2).omit: phase 2 is coordinated in this plan: it cannot be omitted");
    assert_has(&e, "plan 2 (number 2).omit: phase 9 is not defined by any [[phase]]");
    let e = errors(&[("mode = \"free\"", "mode = \"free\"\nomit = [8, 6]")], "");
    assert_eq!(e, ["plan 1 (number 1).omit: omits every phase of ring 2 (6, 8): leave at least one"]);
}

#[test]
fn conditional_service_needs_a_later_phase_and_a_concurrent_ring_and_room_for_its_minimums() {
    let on = (
        "recall = \"min\"\napproach_speed_kmh = 50",
        "recall = \"min\"\nconditional_service = true\napproach_speed_kmh = 50",
    );
    let one_group = ("barriers = [[2, 6], [4, 8]]", "barriers = [[2, 4, 6, 8]]");
    assert_eq!(errors(&[one_group, on], ""), Vec::<String>::new(), "2 before 4, beside 6 and 8");
    assert_eq!(
        errors(&[on], ""),
        [
            "phase 1 (number 2).conditional_service: phase 2 has no later phase in ring 1 before the barrier (barrier group 1): no phase ends after it for it to be served again"
        ]
    );
    let e = errors(&[("barriers = [[2, 6], [4, 8]]", "barriers = [[2, 4], [6, 8]]"), on], "");
    assert_has(
        &e,
        "phase 1 (number 2).conditional_service: no other ring has a phase in barrier group 1: no concurrent green keeps the group open for phase 2 to be served again",
    );
    let short = (
        "recall = \"min\"\napproach_speed_kmh = 50",
        "recall = \"min\"\nconditional_service = true\nconditional_service_min_s = 15\napproach_speed_kmh = 50",
    );
    assert_eq!(
        errors(&[one_group, short], ""),
        [
            "phase 1 (number 2).conditional_service_min_s: 15.0 s is below min_green_s + yellow_s + red_clear_s 16.0 s: the re-served phase needs at least that"
        ]
    );
    let alone = (
        "recall = \"min\"\napproach_speed_kmh = 50",
        "recall = \"min\"\nconditional_service_min_s = 20\napproach_speed_kmh = 50",
    );
    assert_eq!(
        check(&[alone], ""),
        (
            vec![],
            vec![
                "phase 1 (number 2).conditional_service_min_s: has no effect without conditional_service = true"
                    .to_owned()
            ]
        )
    );
}
