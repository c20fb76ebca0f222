//! The Indiana hi-resolution event log on disk, in the CSV shape ATSPM tools
//! import (the `Controller_Event_Log` table):
//!
//! ```text
//! SignalID,Timestamp,EventCode,EventParam
//! main-and-5th,2026-03-14 15:09:26.5,82,3
//! ```
//!
//! - **Timestamp** is `YYYY-MM-DD HH:MM:SS.f`, tenths of a second as the
//!   Indiana logger records them (100 ms resolution), truncated, never
//!   rounded, so an event is never moved into the next second. The core's
//!   [`Instant`] is read as milliseconds since the Unix epoch, as the engine
//!   runs it in a real deployment.
//! - **Time zone**: UTC by default ([`LogTimeZone::Utc`]): unambiguous through
//!   daylight-saving changes, sortable, and independent of the host's zone
//!   setting (servers and containers often run in UTC whatever the
//!   intersection's zone). [`LogTimeZone::Zone`] writes local time in an
//!   IANA zone instead (the daemon's `time_zone`, the host's zone unless
//!   set), as field controllers do, for ATSPM databases that expect local
//!   time; the repeated hour when clocks go back is then ambiguous.
//! - **SignalID** is the intersection id, quoted per RFC 4180 only if it holds
//!   a comma or a quote.
//!
//! The rotating files on disk, and what a full disk does to them, are
//! `src/telemetry/log_writer.rs`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};

use crate::core::{Event, Instant};

/// The header line of every file (ATSPM `Controller_Event_Log` columns).
pub const HEADER: &str = "SignalID,Timestamp,EventCode,EventParam";

/// Which clock the timestamps are written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogTimeZone {
    /// Coordinated Universal Time (the default; see the module docs).
    #[default]
    Utc,
    /// Local time in this IANA zone.
    Zone(chrono_tz::Tz),
}

/// Where and how the event log is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLogConfig {
    /// Directory of the log files; created if missing.
    pub dir: PathBuf,
    /// A file rotates before a line would make it larger than this. A file
    /// always takes at least one event, so a tiny limit means one event per
    /// file, never a lost one.
    pub max_file_bytes: u64,
    /// Newest files kept; older ones are deleted at rotation. At least one
    /// (the file being written) is always kept.
    pub keep_files: usize,
    pub time_zone: LogTimeZone,
}

/// What can be wrong with an event or an event log file. Surfaced as the
/// inner error of an [`io::Error`] (`InvalidInput` when writing,
/// `InvalidData` when reading), as the public functions return `io::Result`.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("instant {0} ms since the Unix epoch is outside the calendar")]
    InstantOutOfRange(u64),
    #[error("signal id {0:?} contains a line break")]
    SignalIdLineBreak(String),
    #[error("{path}:{line}: {reason}")]
    Parse { path: String, line: usize, reason: ParseReason },
}

/// Why a line of an event log file did not parse.
#[derive(Debug, thiserror::Error)]
pub enum ParseReason {
    #[error("expected the four fields {HEADER}")]
    FieldCount,
    #[error("unterminated quoted SignalID")]
    UnterminatedQuote,
    #[error("timestamp {0:?} is not YYYY-MM-DD HH:MM:SS.f")]
    Timestamp(String),
    #[error("local time {0:?} does not exist (skipped by a daylight-saving change)")]
    NoSuchLocalTime(String),
    #[error("timestamp {0:?} is before 1970")]
    BeforeEpoch(String),
    #[error("event code {0:?} is not a number in 0..=65535")]
    Code(String),
    #[error("event parameter {0:?} is not a number in 0..=65535")]
    Param(String),
}

/// A civil timestamp with tenths, displayed as `YYYY-MM-DD HH:MM:SS.f`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timestamp {
    civil: NaiveDateTime,
    tenths: u64,
}

impl Timestamp {
    fn new(at: Instant, zone: LogTimeZone) -> Result<Self, EventLogError> {
        let ms = at.as_millis();
        let utc = i64::try_from(ms)
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .ok_or(EventLogError::InstantOutOfRange(ms))?;
        let civil = match zone {
            LogTimeZone::Utc => utc.naive_utc(),
            LogTimeZone::Zone(zone) => utc.with_timezone(&zone).naive_local(),
        };
        Ok(Timestamp { civil, tenths: ms % 1000 / 100 })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.civil;
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{}",
            c.year(),
            c.month(),
            c.day(),
            c.hour(),
            c.minute(),
            c.second(),
            self.tenths
        )
    }
}

/// A whole event file for `events` (header, then one line each), as the
/// rotating log writes them: for single files outside it (replay output).
///
/// # Errors
/// As [`append_line`].
pub fn event_file(signal_id: &str, events: &[Event], zone: LogTimeZone) -> Result<Vec<u8>, EventLogError> {
    let mut out = format!("{HEADER}\n").into_bytes();
    for e in events {
        append_line(&mut out, signal_id, e, zone)?;
    }
    Ok(out)
}

/// Appends one CSV line for `e`, newline included, to `out` as the log
/// files hold it (no allocation for ids that need no quoting).
///
/// # Errors
/// The instant is outside the calendar, or the signal id holds a line break.
pub fn append_line(out: &mut Vec<u8>, signal_id: &str, e: &Event, zone: LogTimeZone) -> Result<(), EventLogError> {
    if signal_id.contains(['\r', '\n']) {
        return Err(EventLogError::SignalIdLineBreak(signal_id.to_owned()));
    }
    let ts = Timestamp::new(e.at, zone)?;
    // Writing to a Vec cannot fail.
    let _ = if signal_id.contains([',', '"']) {
        write!(out, "\"{}\"", signal_id.replace('"', "\"\""))
    } else {
        out.write_all(signal_id.as_bytes())
    };
    let _ = writeln!(out, ",{ts},{},{}", e.code.code(), e.param);
    Ok(())
}

/// Reads an event log file written in UTC (the default), skipping header
/// lines, into `(SignalID, Timestamp, EventCode, EventParam)`. Instants come
/// back at the file's 100 ms resolution.
///
/// # Errors
/// The file cannot be read, or a line does not parse (`InvalidData`, with
/// the file and line number).
pub fn read_event_log(path: impl AsRef<Path>) -> io::Result<Vec<(String, Instant, u16, u16)>> {
    read_event_log_in(path, LogTimeZone::Utc)
}

/// [`read_event_log`] for a file whose timestamps are in `zone`. A local time
/// repeated when clocks go back is read as its first occurrence.
///
/// # Errors
/// As [`read_event_log`].
pub fn read_event_log_in(path: impl AsRef<Path>, zone: LogTimeZone) -> io::Result<Vec<(String, Instant, u16, u16)>> {
    let path = path.as_ref();
    let reader = BufReader::new(File::open(path)?);
    let mut events = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line?;
        if line.is_empty() || line == HEADER {
            continue;
        }
        let event = parse_line(&line, zone).map_err(|reason| {
            let err = EventLogError::Parse { path: path.display().to_string(), line: index + 1, reason };
            io::Error::new(io::ErrorKind::InvalidData, err)
        })?;
        events.push(event);
    }
    Ok(events)
}

/// One event line (not the header) of a file written in `zone`:
/// `(SignalID, Timestamp, EventCode, EventParam)`.
///
/// # Errors
/// The line is not an event in this layout.
pub fn parse_line(line: &str, zone: LogTimeZone) -> Result<(String, Instant, u16, u16), ParseReason> {
    let (signal_id, rest) = split_signal_id(line)?;
    let mut fields = rest.split(',');
    let (Some(ts), Some(code), Some(param), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(ParseReason::FieldCount);
    };
    let civil =
        NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f").map_err(|_| ParseReason::Timestamp(ts.to_owned()))?;
    let ms = match zone {
        LogTimeZone::Utc => civil.and_utc().timestamp_millis(),
        LogTimeZone::Zone(zone) => civil
            .and_local_timezone(zone)
            .earliest()
            .ok_or_else(|| ParseReason::NoSuchLocalTime(ts.to_owned()))?
            .timestamp_millis(),
    };
    let ms = u64::try_from(ms).map_err(|_| ParseReason::BeforeEpoch(ts.to_owned()))?;
    let code = code.parse().map_err(|_| ParseReason::Code(code.to_owned()))?;
    let param = param.parse().map_err(|_| ParseReason::Param(param.to_owned()))?;
    Ok((signal_id, Instant::from_millis(ms), code, param))
}

/// Splits off the first field, unquoting it if quoted (RFC 4180).
fn split_signal_id(line: &str) -> Result<(String, &str), ParseReason> {
    let Some(quoted) = line.strip_prefix('"') else {
        let (id, rest) = line.split_once(',').ok_or(ParseReason::FieldCount)?;
        return Ok((id.to_owned(), rest));
    };
    let mut id = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            id.push(c);
        } else if chars.next_if(|&(_, c)| c == '"').is_some() {
            id.push('"');
        } else {
            let rest = quoted[i + 1..].strip_prefix(',').ok_or(ParseReason::FieldCount)?;
            return Ok((id, rest));
        }
    }
    Err(ParseReason::UnterminatedQuote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EventCode;

    fn event(ms: u64, code: EventCode, param: u16) -> Event {
        Event { at: Instant::from_millis(ms), code, param }
    }

    /// 2026-03-14 15:09:26 UTC in Unix milliseconds.
    const PI_DAY_MS: u64 = 1_773_500_966_000;

    /// Timestamps are UTC with tenths, truncated (never rounded up into the
    /// next second).
    #[test]
    fn timestamp_is_indiana_tenths() {
        let ts = |ms| Timestamp::new(Instant::from_millis(ms), LogTimeZone::Utc).unwrap().to_string();
        assert_eq!(ts(0), "1970-01-01 00:00:00.0");
        assert_eq!(ts(PI_DAY_MS + 535), "2026-03-14 15:09:26.5");
        assert_eq!(ts(PI_DAY_MS + 999), "2026-03-14 15:09:26.9");
        let e = event(PI_DAY_MS + 100, EventCode::DetectorOn, 3);
        let line = |id| {
            let mut out = Vec::new();
            append_line(&mut out, id, &e, LogTimeZone::Utc).map(|()| out)
        };
        assert_eq!(line("main-and-5th").unwrap(), b"main-and-5th,2026-03-14 15:09:26.1,82,3\n");
        assert!(matches!(line("a\nb"), Err(EventLogError::SignalIdLineBreak(_))));
        assert!(matches!(
            Timestamp::new(Instant::from_millis(u64::MAX), LogTimeZone::Utc),
            Err(EventLogError::InstantOutOfRange(_))
        ));
    }

    /// Malformed lines are reported with file and line number.
    #[test]
    fn reader_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, format!("{HEADER}\nint-1,2026-03-14 15:09:26.0,82,3\nint-1,yesterday,82,3\n")).unwrap();
        let err = read_event_log(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let msg = err.to_string();
        assert!(msg.contains("bad.csv:3") && msg.contains("yesterday"), "{msg}");
        std::fs::write(&path, "\"unterminated,2026-03-14 15:09:26.0,82,3\n").unwrap();
        assert!(read_event_log(&path).unwrap_err().to_string().contains("unterminated"));
    }
}
