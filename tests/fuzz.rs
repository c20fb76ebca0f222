//! Fuzzing the four doors untrusted bytes come in by (issue #19), as
//! property tests that run in the test command: controller files (the
//! loader and validator), detector logs (replay's reader), the cabinet's
//! Modbus input registers (the decoder and the counter diff), and gRPC
//! timing plans (the conversion to a controller file's `[[plan]]`).
//!
//! None may panic. Whatever is accepted must be sound: a controller file
//! (or a plan) that validates runs for 5 minutes of random traffic with its
//! monitor never tripping; a decoded input frame counts no vehicle the lanes
//! could not pass.
//!
//! The test command runs `FUZZ_CASES` (2,000) inputs per door. A longer
//! campaign, documented in docs/safety.md:
//! `PROPTEST_CASES=200000 cargo test --release --test integration fuzz::`.
//! A failing input is shrunk by proptest and printed; it becomes a
//! regression test in the module of the code it broke.

use greenwave::api::convert::plan_table;
use greenwave::api::pb;
use greenwave::config::{self, IntersectionConfig, RegisterMap};
use greenwave::core::detector::most_vehicles;
use greenwave::core::{Controller, InputFrame, Instant, MAX_DETECTORS, Monitor, Span};
use greenwave::io::registers::{CounterDiff, Fetched, InputImage, plan_reads};
use greenwave::replay::DetectorLog;
use proptest::prelude::*;

const FUZZ_CASES: u32 = 2_000;
const TICK: Span = Span::from_millis(100);
const START: Instant = Instant::from_millis(1_767_571_200_000);

fn cases() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(FUZZ_CASES);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const SHIPPED: [&str; 3] = [
    include_str!("../controllers/broadway-and-5th.toml"),
    include_str!("../controllers/elm-and-oak.toml"),
    include_str!("../controllers/river-rd-and-mill-st.toml"),
];

/// Lines an engineer (or an attacker) might add to a controller file.
const LINES: [&str; 26] = [
    "[[phase]]",
    "number = 9",
    "number = 0",
    "flash = \"yellow\"",
    "min_green_s = 0.1",
    "yellow_s = 2.9",
    "red_clear_s = 0",
    "walk_s = 4",
    "ped_clear_s = 2",
    "recall = \"max\"",
    "[[detector]]",
    "channel = 64",
    "calls = [1, 2, 3, 4, 5, 6, 7, 8]",
    "[[plan]]",
    "mode = \"fixed\"",
    "cycle_s = 1",
    "splits_s = { 2 = 1e9 }",
    "[cabinet]",
    "kind = \"modbus-tcp\"",
    "[sequence]",
    "rings = [[1, 2], [2, 1]]",
    "barriers = [[]]",
    "[[overlap]]",
    "conflicts = [[2, 6]]",
    "kind = \"fya\"",
    "permissive_phase = 6",
];

/// Values put in place of a number.
const NUMBERS: [&str; 12] = ["0", "-1", "0.01", "1e9", "65536", "nan", "inf", "3.0", "255", "17", "\"4\"", "[]"];

/// One edit of a controller file.
#[derive(Clone, Debug)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertLine(usize, usize),
    ReplaceNumber(usize, usize),
    Truncate(usize),
    Byte(usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), 0..LINES.len()).prop_map(|(at, l)| Edit::InsertLine(at, l)),
        (any::<usize>(), 0..NUMBERS.len()).prop_map(|(at, n)| Edit::ReplaceNumber(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Byte(at, b)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        let n = lines.len().max(1);
        match *e {
            Edit::DeleteLine(at) if !lines.is_empty() => {
                lines.remove(at % n);
            }
            Edit::DuplicateLine(at) if !lines.is_empty() => {
                let l = lines[at % n].clone();
                lines.insert(at % n, l);
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::InsertLine(at, l) => lines.insert(at % (lines.len() + 1), LINES[l].to_owned()),
            Edit::ReplaceNumber(at, v) if !lines.is_empty() => {
                let l = &mut lines[at % n];
                if let Some(eq) = l.find(" = ") {
                    let value = &l[eq + 3..];
                    if value.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                        *l = format!("{}{}", &l[..eq + 3], NUMBERS[v]);
                    }
                }
            }
            Edit::Truncate(at) => lines.truncate(at % n),
            Edit::Byte(at, b) if !lines.is_empty() => {
                let l = &mut lines[at % n];
                let mut bytes = std::mem::take(l).into_bytes();
                let i = at % (bytes.len() + 1);
                bytes.insert(i, b);
                *l = String::from_utf8_lossy(&bytes).into_owned();
            }
            _ => {}
        }
    }
    lines.join("\n")
}

/// Five minutes of random presence on every detector, with the monitor
/// checking each output frame.
fn runs_safely(cfg: &IntersectionConfig, seed: u64) -> Result<(), TestCaseError> {
    let mut controller = Controller::new(cfg.spec.clone(), START);
    let mut monitor = Monitor::new(&cfg.spec);
    let mut input = InputFrame::default();
    let mut rng = seed | 1;
    let mut now = START;
    for tick in 0..3_000 {
        now += TICK;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        for d in &cfg.spec.detectors {
            if (rng >> (d.channel.index() % 48)) & 0x3f == 0 {
                input.set_presence(d.channel, !input.is_present(d.channel));
            }
        }
        controller.handle_tick(now, &input);
        if let Err(fault) = monitor.check(now, controller.output()) {
            return Err(TestCaseError::fail(format!("accepted file tripped the monitor at tick {tick}: {fault}")));
        }
        while controller.poll_event().is_some() {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases())]

    /// Mutated shipped controller files: refused with errors, or run safely.
    #[test]
    fn controller_files(file in 0..SHIPPED.len(), edits in prop::collection::vec(edit(), 1..6), seed in any::<u64>()) {
        let text = apply(SHIPPED[file], &edits);
        match config::load_intersection_str("fuzz.toml", &text) {
            Ok((cfg, _)) => runs_safely(&cfg, seed)?,
            Err(errors) => prop_assert!(!errors.is_empty()),
        }
    }

    /// Detector logs: any text parses or is refused with a line number.
    #[test]
    fn detector_logs(lines in prop::collection::vec(
        prop_oneof![
            "[0-9]{1,4}(\\.[0-9])?,[0-9]{1,3},[01]",
            "[ -~]{0,24}",
            Just("time_s,channel,presence".to_owned()),
            Just("\u{feff}".to_owned()),
        ],
        0..40,
    )) {
        let text = lines.join("\n");
        if let Err(e) = DetectorLog::parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Input registers from a cabinet: any words decode, and the counter
    /// diff never counts more than the lanes can pass.
    #[test]
    fn modbus_input_registers(words in prop::collection::vec(any::<u16>(), 2..6), steps in prop::collection::vec(1u64..3_000, 2..6)) {
        let map = RegisterMap::default();
        let blocks = plan_reads(&map.input_items(false));
        let mut diff = CounterDiff::default();
        let mut at = START;
        for (round, step) in steps.iter().enumerate() {
            at += Span::from_millis(*step);
            // Every register of every block from the words, shifted by round.
            let reads: Vec<_> = blocks
                .iter()
                .map(|b| (*b, (0..b.len).map(|k| words[(k as usize + round) % words.len()].wrapping_mul(round as u16 + 1)).collect()))
                .collect();
            let img = InputImage::decode(&map, &Fetched { reads: &reads });
            let mut frame = InputFrame::default();
            diff.apply(&img, at, map.volume_channels, &[], &mut frame);
            let most = most_vehicles(Span::from_millis(*step));
            for ch in 0..MAX_DETECTORS {
                prop_assert!(u32::from(frame.counts[ch]) <= most, "channel {ch}: {} vehicles in {step} ms", frame.counts[ch]);
            }
        }
    }

    /// Timing plans over gRPC: converted and validated, or refused; an
    /// accepted one runs safely.
    #[test]
    fn grpc_timing_plans(
        number in prop_oneof![Just(0u32), 1u32..4, any::<u32>()],
        mode in -1i32..5,
        cycle in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -10.0..400.0f64],
        offset in prop_oneof![Just(f64::NAN), -10.0..200.0f64],
        splits in prop::collection::vec((prop_oneof![1u32..=4, any::<u32>()], prop_oneof![Just(f64::NAN), -5.0..120.0f64]), 0..6),
        coordinated in prop::collection::vec(prop_oneof![1u32..=4, any::<u32>()], 0..3),
        max2 in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let plan = pb::TimingPlan {
            number,
            name: String::new(),
            mode,
            cycle_s: cycle,
            offset_s: offset,
            splits_s: splits.into_iter().map(|(phase, split_s)| pb::PhaseSplit { phase, split_s }).collect(),
            coordinated,
            max2,
        };
        let Ok(table) = plan_table(&plan) else { return Ok(()) };
        let mut doc = toml::Table::new();
        doc.insert("plan".into(), toml::Value::Array(vec![toml::Value::Table(table)]));
        let text = format!("{}\n{}", SHIPPED[1], toml::to_string(&doc).expect("a table serializes"));
        if let Ok((cfg, _)) = config::load_intersection_str("fuzz.toml", &text) {
            runs_safely(&cfg, seed)?;
        }
    }
}
