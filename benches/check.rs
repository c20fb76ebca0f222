//! How `greenwave check` (and the daemon's validation on start and SIGHUP)
//! scales with the size of a controller file (issue #19): a file with N
//! `[[phase]]` tables, N `[[detector]]` tables and one ring and barrier
//! group listing every phase, N from 16 to 10,000, validated as `check`
//! does. Most such files are invalid (16 phases at most): the point is that
//! a huge or hostile file is refused in bounded time, with its errors.
//!
//! A last row is the worst a file within the limits can do: 16 phases and
//! 64 detectors with five mistyped values each (each invalid value costs a
//! pass over the file; `check` stops after 100).
//!
//! Run: `cargo bench --bench check`. Prints the file, the errors reported
//! and the time of one validation (best of three).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use greenwave::config;

fn controller(n: usize) -> String {
    let numbers: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let all = numbers.join(", ");
    let mut t = format!(
        "[intersection]\nid = \"big\"\n[cabinet]\nkind = \"simulated\"\n[startup]\nflash_s = 6\nall_red_s = 4\nphases = [1]\n[sequence]\nrings = [[{all}]]\nbarriers = [[{all}]]\n"
    );
    for i in 1..=n {
        let _ = write!(
            t,
            "[[phase]]\nnumber = {i}\nmin_green_s = 6\npassage_s = 2\nmax1_s = 40\nyellow_s = 4\nred_clear_s = 2\nrecall = \"min\"\napproach_speed_kmh = 50\ncrossing_width_m = 15\n[[detector]]\nchannel = {i}\ncalls = [{i}]\n"
        );
    }
    t.push_str("[[plan]]\nnumber = 1\nmode = \"free\"\n[schedule]\ndefault_plan = 1\n");
    t
}

/// 16 phases, 64 detectors, each detector with five values of the wrong type.
fn mistyped() -> String {
    let mut t = controller(16);
    for ch in 1..=64 {
        let table = format!("[[detector]]\nchannel = {ch}\n");
        let bad = format!(
            "{table}delay_s = \"x\"\nextend_s = \"x\"\nno_activity_s = []\nmax_presence_s = \"x\"\nerratic_per_minute = 0.5\n"
        );
        if t.contains(&table) {
            t = t.replacen(&table, &bad, 1);
        } else {
            t.push_str(&bad);
            t.push_str("calls = [1]\n");
        }
    }
    t
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("check benchmark: run with `cargo bench --bench check`");
        return;
    }
    println!("| file | KiB | errors reported | validation, ms (best of 3) |");
    println!("|---|---|---|---|");
    let files = [16, 100, 1_000, 4_000, 10_000]
        .map(|n| (format!("{n} phases and detectors"), controller(n)))
        .into_iter()
        .chain([("16 phases, 64 detectors with 5 mistyped values each".to_owned(), mistyped())]);
    for (what, text) in files {
        let mut best = Duration::MAX;
        let mut errors = 0;
        for _ in 0..3 {
            let started = Instant::now();
            let result = config::load_intersection_str("big.toml", &text);
            best = best.min(started.elapsed());
            errors = result.err().map_or(0, |e| e.len());
        }
        println!("| {what} | {} | {errors} | {:.1} |", text.len() / 1024, best.as_secs_f64() * 1e3);
    }
}
