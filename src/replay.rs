//! Replay and simulation at full speed, through the unchanged engine.
//!
//! `greenwave replay` runs a recorded detector log through a controller
//! (via [`crate::engine::Engine::tick`], exactly as in real time but with
//! simulated time) and writes the Indiana event log. `greenwave simulate`
//! does the same with the built-in traffic generator instead of a log, and
//! can record the detector log it produced, so a run can be replayed, pinned
//! as a golden trace, or re-run on a changed plan.
//!
//! # Detector log format
//! CSV, one presence change per line: `time_s,channel,presence`, where
//! `time_s` is seconds from the start of the log (tenths are the resolution
//! that matters), `channel` 1..=64, `presence` 0 or 1. `#` comments, a
//! byte-order mark and the header line `time_s,channel,presence` (those
//! columns, in that order) are allowed; a log with no change is an error.
//!
//! Presence reaches the controller as a cabinet that latches it gives it:
//! a pulse shorter than the tick is seen for one tick, and every rising
//! edge within a tick is counted ([`InputFrame::counts`]), so chatter
//! faster than the tick still reaches the detector logic. Changes on
//! channels the controller has no detector for are skipped and counted
//! ([`RunOutcome::skipped_changes`]).

use std::fmt::Write as _;
use std::path::Path;

use crate::config::IntersectionConfig;
use crate::core::{ControllerSpec, DetectorChannel, Event, InputFrame, Instant, MAX_DETECTORS, Span};
use crate::engine::{Engine, EngineConfig, EngineIo};
use crate::sim::SimCabinet;

/// Replays start at this instant (2026-01-05 00:00:00 UTC, a Monday) so
/// event timestamps, and therefore golden traces, do not depend on when the
/// replay ran.
pub const REPLAY_EPOCH: Instant = Instant::from_millis(1_767_571_200_000);

/// When simulated time starts, and the zone time-of-day schedules are
/// read in: the engine follows the schedule from this clock exactly as a
/// real-time daemon follows it from the wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimTime {
    pub start: Instant,
    pub time_zone: chrono_tz::Tz,
}

impl Default for SimTime {
    /// [`REPLAY_EPOCH`], in UTC.
    fn default() -> Self {
        SimTime { start: REPLAY_EPOCH, time_zone: chrono_tz::UTC }
    }
}

/// A detector log line the parser could not read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: {reason}")]
    Parse { line: usize, reason: String },
    #[error("line {line}: time {time_s} s goes backwards")]
    Backwards { line: usize, time_s: f64 },
    #[error("line {line}: header {got:?}: the columns must be time_s,channel,presence, in this order")]
    Header { line: usize, got: String },
    #[error("no detector change in the log (only comments, a header or nothing): nothing to replay")]
    Empty,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One presence change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorChange {
    /// From the start of the log.
    pub at: Span,
    pub channel: DetectorChannel,
    pub presence: bool,
}

/// A recorded detector log, sorted by time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectorLog {
    pub changes: Vec<DetectorChange>,
}

impl DetectorLog {
    /// Parse the CSV format described in the module docs.
    ///
    /// # Errors
    /// The first malformed line, with its number and what is wrong.
    pub fn parse(text: &str) -> Result<Self, ReplayError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut changes: Vec<DetectorChange> = Vec::new();
        let mut first = true;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            // A first line that is not data is the header, and only that one.
            if std::mem::take(&mut first) && fields.first().is_some_and(|f| f.parse::<f64>().is_err()) {
                if fields != ["time_s", "channel", "presence"] {
                    return Err(ReplayError::Header { line, got: l.to_owned() });
                }
                continue;
            }
            let [t, ch, p] = fields[..] else {
                return Err(ReplayError::Parse {
                    line,
                    reason: format!("expected time_s,channel,presence, got {l:?}"),
                });
            };
            let time_s: f64 = t.parse().map_err(|_| ReplayError::Parse { line, reason: format!("bad time {t:?}") })?;
            let at = Span::try_from_secs_f64(time_s)
                .ok_or_else(|| ReplayError::Parse { line, reason: format!("time {t:?} must be >= 0") })?;
            let channel = ch
                .parse::<u8>()
                .ok()
                .and_then(DetectorChannel::new)
                .ok_or_else(|| ReplayError::Parse { line, reason: format!("channel {ch:?} is not 1..=64") })?;
            let presence = match p {
                "1" => true,
                "0" => false,
                _ => return Err(ReplayError::Parse { line, reason: format!("presence {p:?} is not 0 or 1") }),
            };
            if changes.last().is_some_and(|c| c.at > at) {
                return Err(ReplayError::Backwards { line, time_s });
            }
            changes.push(DetectorChange { at, channel, presence });
        }
        if changes.is_empty() {
            return Err(ReplayError::Empty);
        }
        Ok(DetectorLog { changes })
    }

    pub fn load(path: &Path) -> Result<Self, ReplayError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    pub fn to_csv(&self) -> String {
        let mut out = String::from("time_s,channel,presence\n");
        for c in &self.changes {
            let _ = writeln!(out, "{:.1},{},{}", c.at.as_secs_f64(), c.channel, u8::from(c.presence));
        }
        out
    }

    /// Log end, or zero when empty.
    pub fn duration(&self) -> Span {
        self.changes.last().map(|c| c.at).unwrap_or_default()
    }
}

/// What a replay or simulation produced.
#[derive(Clone, Debug, Default)]
pub struct RunOutcome {
    pub ticks: u64,
    pub events: Vec<Event>,
    pub monitor_trips: u64,
    pub dropped_events: u64,
    /// Replay: changes on channels the controller has no detector for.
    pub skipped_changes: u64,
    /// Replay: those channels (bit `n - 1` for channel `n`).
    pub skipped_channels: u64,
}

fn drain(io: &EngineIo, out: &mut RunOutcome) {
    while let Ok((_, e)) = io.events.try_recv() {
        out.events.push(e);
    }
}

fn finish(io: &EngineIo, mut out: RunOutcome) -> RunOutcome {
    drain(io, &mut out);
    use std::sync::atomic::Ordering::Relaxed;
    out.monitor_trips = io.stats.monitor_trips.load(Relaxed);
    out.dropped_events = io.stats.dropped_events.load(Relaxed);
    out
}

/// Run `log` through a controller for `duration` (default: the log's end
/// plus a minute) at `tick`, as fast as possible, from `at.start` (the
/// log's time zero).
pub fn replay(spec: ControllerSpec, log: &DetectorLog, tick: Span, duration: Option<Span>, at: SimTime) -> RunOutcome {
    let cfg =
        EngineConfig { tick, input_timeout: Span::from_secs(3600), time_zone: at.time_zone, ..EngineConfig::default() };
    let known: u64 = spec.detectors.iter().fold(0, |m, d| m | 1 << d.channel.index());
    let (mut engine, io) = Engine::new(vec![spec], cfg, at.start);
    let end = at.start + duration.unwrap_or(log.duration() + Span::from_secs(60));
    let mut next = log.changes.iter().peekable();
    let mut out = RunOutcome::default();
    let mut now = at.start;
    // Presence after the last change applied.
    let mut presence = 0u64;
    while now <= end {
        // As a latching cabinet reads it: on if on at any time since the
        // last tick, and every rising edge counted.
        let mut input = InputFrame::default();
        let mut latched = 0u64;
        while let Some(c) = next.next_if(|c| at.start + c.at <= now) {
            let bit = 1u64 << c.channel.index();
            if known & bit == 0 {
                out.skipped_changes += 1;
                out.skipped_channels |= bit;
                continue;
            }
            if c.presence && presence & bit == 0 {
                latched |= bit;
                let n = &mut input.counts[c.channel.index()];
                *n = n.saturating_add(1);
            }
            presence = if c.presence { presence | bit } else { presence & !bit };
        }
        input.presence = presence | latched;
        let _ = io.inputs.try_send((0, input));
        engine.tick(now);
        while io.outputs[0].try_recv().is_ok() {}
        drain(&io, &mut out);
        out.ticks += 1;
        now += tick;
    }
    finish(&io, out)
}

/// Run an intersection on its simulated traffic for `duration` at `tick`,
/// as fast as possible; returns the outcome, the detector log the traffic
/// produced, and the simulated cabinet (for its traffic measures). Time
/// starts at `at.start`; the controller file's own `time_zone` wins over
/// `at.time_zone`.
pub fn simulate(
    cfg: &IntersectionConfig,
    tick: Span,
    duration: Span,
    at: SimTime,
) -> (RunOutcome, DetectorLog, SimCabinet) {
    let ecfg = EngineConfig { tick, time_zone: cfg.time_zone.unwrap_or(at.time_zone), ..EngineConfig::default() };
    let (mut engine, io) = Engine::new(vec![cfg.spec.clone()], ecfg, at.start);
    let mut cabinet = SimCabinet::new(&cfg.traffic);
    let mut log = DetectorLog::default();
    let mut frame = *engine.controller(0).output();
    let mut last = 0u64;
    let mut out = RunOutcome::default();
    let mut now = at.start;
    let end = at.start + duration;
    while now <= end {
        let input = cabinet.exchange(now, &frame);
        let changed = input.presence ^ last;
        for ch in (0..MAX_DETECTORS).filter(|b| changed & (1 << b) != 0) {
            log.changes.push(DetectorChange {
                at: now.since(at.start),
                channel: DetectorChannel::from_index(ch),
                presence: input.presence & (1 << ch) != 0,
            });
        }
        last = input.presence;
        let _ = io.inputs.try_send((0, input));
        engine.tick(now);
        while let Ok(msg) = io.outputs[0].try_recv() {
            frame = msg.frame;
        }
        drain(&io, &mut out);
        out.ticks += 1;
        now += tick;
    }
    (finish(&io, out), log, cabinet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EventCode;

    #[test]
    fn parses_and_round_trips_a_detector_log() {
        let text = "time_s,channel,presence\n# a comment\n0.0,4,1\n1.5,4,0\n2.0,12,1\n";
        let log = DetectorLog::parse(text).unwrap();
        assert_eq!(log.changes.len(), 3);
        assert_eq!(log.duration(), Span::from_millis(2000));
        assert_eq!(DetectorLog::parse(&log.to_csv()).unwrap(), log);
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        let err = DetectorLog::parse("0.0,4,1\n1.0,99,1\n").unwrap_err().to_string();
        assert!(err.starts_with("line 2:") && err.contains("99"), "{err}");
        let err = DetectorLog::parse("2.0,4,1\n1.0,4,0\n").unwrap_err().to_string();
        assert!(err.contains("backwards"), "{err}");
    }

    #[test]
    fn a_header_must_be_the_header_and_a_log_must_have_changes() {
        let ok = DetectorLog::parse("\u{feff}time_s,channel,presence\n0.0,4,1\n").unwrap();
        assert_eq!(ok.changes.len(), 1, "a byte-order mark is not part of the header");
        let err = DetectorLog::parse("channel,time_s,presence\n4,0.0,1\n").unwrap_err().to_string();
        assert!(err.starts_with("line 1: header") && err.contains("in this order"), "{err}");
        let err = DetectorLog::parse("0.0,4,1\ntime_s,channel,presence\n").unwrap_err().to_string();
        assert!(err.starts_with("line 2:") && err.contains("bad time"), "{err}");
        for empty in ["", "time_s,channel,presence\n", "# nothing\n\n"] {
            assert!(matches!(DetectorLog::parse(empty), Err(ReplayError::Empty)), "{empty:?}");
        }
    }

    fn elm_and_oak() -> IntersectionConfig {
        let text = include_str!("../controllers/elm-and-oak.toml");
        crate::config::load_intersection_str("elm-and-oak.toml", text).expect("shipped").0
    }

    fn change(at_ms: u64, channel: u8, presence: bool) -> DetectorChange {
        DetectorChange { at: Span::from_millis(at_ms), channel: DetectorChannel::new(channel).unwrap(), presence }
    }

    /// 10,000 pulses of 10 ms at 20 Hz, all shorter than the 100 ms tick:
    /// the detector sees them (as a latching cabinet reads them) and the
    /// chatter is faulted as erratic (Indiana 88). Changes on a channel the
    /// controller lacks are counted, not silently lost.
    #[test]
    fn pulses_shorter_than_the_tick_reach_the_detector_logic() {
        let cfg = elm_and_oak();
        let mut changes = Vec::new();
        for k in 0..10_000u64 {
            changes.push(change(k * 50, 1, true));
            changes.push(change(k * 50 + 10, 1, false));
        }
        changes.push(change(600_000, 40, true));
        let log = DetectorLog { changes };
        let out = replay(cfg.spec.clone(), &log, Span::from_millis(100), None, SimTime::default());
        let on = |code: EventCode| out.events.iter().filter(|e| e.code == code && e.param == 1).count();
        assert!(on(EventCode::DetectorOn) > 0, "the pulses never reached detector 1");
        assert!(on(EventCode::DetectorFaultExcessiveChange) > 0, "20 Hz chatter not faulted as erratic");
        assert_eq!((out.skipped_changes, out.skipped_channels), (1, 1 << 39));

        // One pulse inside a tick: on for that tick, off the next.
        let log = DetectorLog { changes: vec![change(1_020, 1, true), change(1_030, 1, false)] };
        let out = replay(cfg.spec, &log, Span::from_millis(100), Some(Span::from_secs(5)), SimTime::default());
        assert_eq!(on_off(&out.events, 1), [(EventCode::DetectorOn, 1_100), (EventCode::DetectorOff, 1_200)]);
    }

    fn on_off(events: &[Event], channel: u16) -> Vec<(EventCode, u64)> {
        events
            .iter()
            .filter(|e| matches!(e.code, EventCode::DetectorOn | EventCode::DetectorOff) && e.param == channel)
            .map(|e| (e.code, e.at.since(REPLAY_EPOCH).as_millis()))
            .collect()
    }

    /// `simulate` follows the time-of-day schedule from its own clock, in
    /// the zone given: elm-and-oak's weekday plan 2 from 07:00 Shanghai time
    /// (23:00 UTC the day before) starts at the first barrier after it.
    #[test]
    fn simulate_changes_plan_at_the_scheduled_local_time() {
        let text = include_str!("../controllers/elm-and-oak.toml");
        let (cfg, _) = crate::config::load_intersection_str("elm-and-oak.toml", text).expect("shipped");
        // Monday 2026-12-07 06:58 in Shanghai.
        let start = Instant::from_millis(1_796_597_880_000);
        let at = SimTime { start, time_zone: chrono_tz::Asia::Shanghai };
        let (out, _, _) = simulate(&cfg, Span::from_millis(100), Span::from_secs(300), at);
        let changes: Vec<(Instant, u16)> = out
            .events
            .iter()
            .filter(|e| e.code == crate::core::EventCode::CoordPatternChange)
            .map(|e| (e.at, e.param))
            .collect();
        let seven = start + Span::from_secs(120);
        assert_eq!(changes.first(), Some(&(start, 1)), "plan 1 (free) at start: {changes:?}");
        let to_2: Vec<_> = changes.iter().filter(|(_, p)| *p == 2).collect();
        assert_eq!(to_2.len(), 1, "{changes:?}");
        assert!(to_2[0].0 >= seven && to_2[0].0 < seven + Span::from_secs(60), "plan 2 from 07:00: {changes:?}");
        // In UTC the same minutes are 22:58-23:03, before 07:00: plan 1 throughout.
        let (utc, _, _) =
            simulate(&cfg, Span::from_millis(100), Span::from_secs(300), SimTime { start, ..SimTime::default() });
        assert!(!utc.events.iter().any(|e| e.code == crate::core::EventCode::CoordPatternChange && e.param == 2));
    }

    #[test]
    fn replay_is_deterministic() {
        let spec = crate::core::testing::eight_phase();
        let log = DetectorLog::parse("0.0,4,1\n0.5,4,0\n30.0,8,1\n30.2,8,0\n").unwrap();
        let a = replay(spec.clone(), &log, Span::from_millis(100), None, SimTime::default());
        let b = replay(spec, &log, Span::from_millis(100), None, SimTime::default());
        assert_eq!(a.events, b.events);
        assert!(a.events.iter().any(|e| e.code == crate::core::EventCode::PhaseBeginGreen && e.param == 4));
        assert_eq!(a.monitor_trips, 0);
    }
}
