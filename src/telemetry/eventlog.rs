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
//! Files are `greenwave-events-000001.csv`, `-000002.csv`, ... in the log
//! directory, each with its own header, so every file imports on its own. A
//! new writer continues after the highest number present and never
//! overwrites an old file. A file rotates before a line would take it past
//! the size limit; the line goes into the next file, so rotation loses
//! nothing. Only the newest `keep_files` files are kept.
//!
//! [`spawn_event_log_thread`] runs the writer on its own thread behind a
//! channel. The log is telemetry, not control: a full disk or an unwritable
//! directory is logged and counted, and never stops the daemon.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant as WallInstant};

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::core::{Event, Instant};

/// The header line of every file (ATSPM `Controller_Event_Log` columns).
pub const HEADER: &str = "SignalID,Timestamp,EventCode,EventParam";

const FILE_PREFIX: &str = "greenwave-events-";
const FILE_SUFFIX: &str = ".csv";

/// Lines are batched in memory up to this size before a write to the file,
/// so a burst of events costs one system call, not one each.
const BUFFER_BYTES: usize = 64 * 1024;

/// The writer thread hands buffered lines to the OS at least this often, so
/// a reader (or a crash) sees at most this much missing.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// After a failure, the writer thread tries to reopen the log this often.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(5);

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

/// Counters of an event log writer (or of the writer thread, summed over
/// every writer it opened).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventLogStats {
    /// Events handed to the OS.
    pub events_written: u64,
    /// Events lost: failed writes, or received while the log was unwritable.
    pub events_dropped: u64,
    /// Log files created.
    pub files_opened: u64,
    /// Failed file operations (open, write).
    pub io_errors: u64,
}

impl EventLogStats {
    fn add(&mut self, other: EventLogStats) {
        self.events_written += other.events_written;
        self.events_dropped += other.events_dropped;
        self.files_opened += other.files_opened;
        self.io_errors += other.io_errors;
    }
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

/// Log files in `dir` with their sequence numbers, oldest first.
fn log_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix(FILE_PREFIX))
            .and_then(|n| n.strip_suffix(FILE_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        files.push((seq, entry.path()));
    }
    files.sort_unstable();
    Ok(files)
}

/// Creates log file number `seq` with its header; fails rather than
/// overwrite an existing file.
fn create_log_file(dir: &Path, seq: u64) -> io::Result<(File, PathBuf)> {
    let path = dir.join(format!("{FILE_PREFIX}{seq:06}{FILE_SUFFIX}"));
    let mut file = OpenOptions::new().write(true).create_new(true).open(&path)?;
    writeln!(file, "{HEADER}")?;
    Ok((file, path))
}

/// Writes events to rotating CSV files. Lines are buffered; call
/// [`flush`](Self::flush) to hand them to the OS (dropping the writer flushes
/// too). Not for the real-time thread: it does file I/O.
///
/// # Errors
/// A failed write discards the buffered lines (they may be partly on disk)
/// and counts them in [`EventLogStats::events_dropped`]; retrying on the same
/// file could duplicate or interleave partial lines, so after an error open a
/// new writer, which starts a new file.
#[derive(Debug)]
pub struct EventLogWriter {
    cfg: EventLogConfig,
    file: File,
    path: PathBuf,
    /// Sequence number of `file`.
    sequence: u64,
    /// Size of `file` once the buffer is written: decides rotation.
    file_bytes: u64,
    /// Lines not yet written to `file`.
    buf: Vec<u8>,
    /// Events in `buf`, so a failed write knows how many were lost.
    buffered_events: u64,
    /// One formatted line, reused so steady-state writing does not allocate.
    line: Vec<u8>,
    stats: EventLogStats,
}

impl EventLogWriter {
    /// Creates the directory if needed and opens the file after the
    /// highest-numbered one present.
    ///
    /// # Errors
    /// The directory cannot be created or listed, or the file cannot be created.
    pub fn new(cfg: EventLogConfig) -> io::Result<Self> {
        fs::create_dir_all(&cfg.dir)?;
        let last = log_files(&cfg.dir)?.last().map_or(0, |&(seq, _)| seq);
        let (file, path) = create_log_file(&cfg.dir, last + 1)?;
        let mut writer = EventLogWriter {
            cfg,
            file,
            path,
            sequence: last + 1,
            file_bytes: HEADER.len() as u64 + 1,
            buf: Vec::with_capacity(BUFFER_BYTES),
            buffered_events: 0,
            line: Vec::with_capacity(128),
            stats: EventLogStats { files_opened: 1, ..EventLogStats::default() },
        };
        writer.prune();
        Ok(writer)
    }

    /// Buffers one event of intersection `signal_id`, rotating first if the
    /// line would take the current file past its size limit.
    ///
    /// # Errors
    /// `InvalidInput` for an event that cannot be written (an instant outside
    /// the calendar, a signal id with a line break); an I/O error if a
    /// rotation or a full buffer's write failed. The event is then dropped
    /// and counted, with any buffered lines lost with it.
    pub fn write(&mut self, signal_id: &str, e: &Event) -> io::Result<()> {
        self.line.clear();
        if let Err(err) = append_line(&mut self.line, signal_id, e, self.cfg.time_zone) {
            self.stats.events_dropped += 1;
            return Err(io::Error::new(io::ErrorKind::InvalidInput, err));
        }
        let len = self.line.len() as u64;
        let has_events = self.file_bytes > HEADER.len() as u64 + 1;
        if has_events
            && self.file_bytes + len > self.cfg.max_file_bytes
            && let Err(err) = self.rotate()
        {
            self.stats.events_dropped += 1;
            return Err(err);
        }
        self.buf.extend_from_slice(&self.line);
        self.file_bytes += len;
        self.buffered_events += 1;
        if self.buf.len() >= BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands buffered lines to the OS (not an fsync: a power loss can still
    /// lose what the OS had not yet written).
    ///
    /// # Errors
    /// The write failed; the buffered events are dropped and counted.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.buf);
        self.buf.clear();
        let events = std::mem::take(&mut self.buffered_events);
        match result {
            Ok(()) => {
                self.stats.events_written += events;
                Ok(())
            }
            Err(err) => {
                self.stats.events_dropped += events;
                self.stats.io_errors += 1;
                Err(err)
            }
        }
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> EventLogStats {
        self.stats
    }

    /// Finishes the current file and starts the next one.
    fn rotate(&mut self) -> io::Result<()> {
        self.flush()?;
        let (file, path) = create_log_file(&self.cfg.dir, self.sequence + 1).inspect_err(|_| {
            self.stats.io_errors += 1;
        })?;
        self.file = file;
        self.path = path;
        self.sequence += 1;
        self.file_bytes = HEADER.len() as u64 + 1;
        self.stats.files_opened += 1;
        self.prune();
        Ok(())
    }

    /// Deletes all but the newest `keep_files` files. Failing to delete is
    /// only a warning: it costs disk, not events.
    fn prune(&mut self) {
        let keep = self.cfg.keep_files.max(1);
        let files = match log_files(&self.cfg.dir) {
            Ok(files) => files,
            Err(err) => {
                tracing::warn!(dir = %self.cfg.dir.display(), error = %err, "cannot list event log files to prune");
                return;
            }
        };
        let excess = files.len().saturating_sub(keep);
        for (_, path) in files.into_iter().take(excess) {
            if let Err(err) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %err, "cannot delete old event log file");
            }
        }
    }
}

impl Drop for EventLogWriter {
    fn drop(&mut self) {
        if let Err(err) = self.flush() {
            tracing::error!(path = %self.path.display(), error = %err, "event log lost buffered events on close");
        }
    }
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

fn parse_line(line: &str, zone: LogTimeZone) -> Result<(String, Instant, u16, u16), ParseReason> {
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

/// How often the writer thread flushes and retries; shortened in tests.
#[derive(Clone, Copy, Debug)]
struct Cadence {
    flush: Duration,
    reopen: Duration,
}

/// Starts the `event-log` thread: it writes every `(intersection index,
/// event)` received, naming the intersection by `signal_ids[index]`, flushes
/// at least every [`FLUSH_INTERVAL`], and returns its counters once every
/// sender is gone and the last lines are flushed.
///
/// The thread never panics on I/O: when the log cannot be written it logs an
/// error, counts the events it drops, and tries a fresh file every
/// [`REOPEN_INTERVAL`]. Events for an index without a signal id are dropped
/// and counted (a wiring bug, logged once).
///
/// The join handle's result is an error only if the final flush failed.
///
/// # Errors
/// The OS refused to start a thread.
pub fn spawn_event_log_thread(
    rx: Receiver<(usize, Event)>,
    signal_ids: Vec<String>,
    cfg: EventLogConfig,
) -> io::Result<JoinHandle<io::Result<EventLogStats>>> {
    let cadence = Cadence { flush: FLUSH_INTERVAL, reopen: REOPEN_INTERVAL };
    std::thread::Builder::new()
        .name("event-log".into())
        .spawn(move || EventLogTask::new(signal_ids, cfg, cadence).run(rx))
}

/// The state of the writer thread.
#[derive(Debug)]
struct EventLogTask {
    signal_ids: Vec<String>,
    cfg: EventLogConfig,
    cadence: Cadence,
    /// `None` while the log is unwritable.
    writer: Option<EventLogWriter>,
    /// Earliest time to try opening a writer again.
    next_reopen: WallInstant,
    /// Counters of retired writers, plus events dropped while none was open.
    retired: EventLogStats,
    /// Whether the log is writable, so an outage is logged once as an error
    /// (an operator must act), not at every retry.
    healthy: bool,
    unknown_index_reported: bool,
}

impl EventLogTask {
    fn new(signal_ids: Vec<String>, cfg: EventLogConfig, cadence: Cadence) -> Self {
        EventLogTask {
            signal_ids,
            cfg,
            cadence,
            writer: None,
            next_reopen: WallInstant::now(),
            retired: EventLogStats::default(),
            healthy: true,
            unknown_index_reported: false,
        }
    }

    fn run(mut self, rx: Receiver<(usize, Event)>) -> io::Result<EventLogStats> {
        self.reopen_if_due();
        let mut next_flush = WallInstant::now() + self.cadence.flush;
        loop {
            match rx.recv_timeout(next_flush.saturating_duration_since(WallInstant::now())) {
                Ok((index, event)) => self.record(index, &event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = WallInstant::now();
            if now >= next_flush {
                self.reopen_if_due();
                self.flush();
                next_flush = now + self.cadence.flush;
            }
        }
        self.finish()
    }

    fn record(&mut self, index: usize, event: &Event) {
        self.reopen_if_due();
        let Some(signal_id) = self.signal_ids.get(index) else {
            self.retired.events_dropped += 1;
            if !self.unknown_index_reported {
                self.unknown_index_reported = true;
                tracing::error!(
                    index,
                    known = self.signal_ids.len(),
                    "event from an unknown intersection index dropped"
                );
            }
            return;
        };
        let Some(writer) = self.writer.as_mut() else {
            self.retired.events_dropped += 1;
            return;
        };
        if let Err(err) = writer.write(signal_id, event) {
            if err.kind() == io::ErrorKind::InvalidInput {
                // A bad event, not a bad file: keep the writer.
                tracing::warn!(error = %err, "event not loggable; dropped");
            } else {
                self.fail(&err);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(Err(err)) = self.writer.as_mut().map(EventLogWriter::flush) {
            self.fail(&err);
        }
    }

    /// Retires the writer after an I/O error and schedules a fresh file.
    fn fail(&mut self, err: &io::Error) {
        if let Some(writer) = self.writer.take() {
            if self.healthy {
                tracing::error!(
                    path = %writer.path().display(),
                    error = %err,
                    retry_s = self.cadence.reopen.as_secs_f64(),
                    "event log write failed; dropping events until a new file opens"
                );
            }
            self.retired.add(writer.stats());
        }
        self.healthy = false;
        self.next_reopen = WallInstant::now() + self.cadence.reopen;
    }

    fn reopen_if_due(&mut self) {
        let now = WallInstant::now();
        if self.writer.is_some() || now < self.next_reopen {
            return;
        }
        match EventLogWriter::new(self.cfg.clone()) {
            Ok(writer) => {
                if self.healthy {
                    tracing::info!(path = %writer.path().display(), "event log open");
                } else {
                    tracing::info!(
                        path = %writer.path().display(),
                        dropped_so_far = self.retired.events_dropped,
                        "event log writable again"
                    );
                }
                self.healthy = true;
                self.writer = Some(writer);
            }
            Err(err) => {
                self.retired.io_errors += 1;
                if self.healthy {
                    tracing::error!(
                        dir = %self.cfg.dir.display(),
                        error = %err,
                        retry_s = self.cadence.reopen.as_secs_f64(),
                        "cannot open the event log; dropping events until it opens"
                    );
                } else {
                    tracing::debug!(dir = %self.cfg.dir.display(), error = %err, "event log still unwritable");
                }
                self.healthy = false;
                self.next_reopen = now + self.cadence.reopen;
            }
        }
    }

    fn finish(mut self) -> io::Result<EventLogStats> {
        let mut stats = self.retired;
        let Some(mut writer) = self.writer.take() else { return Ok(stats) };
        let flushed = writer.flush();
        stats.add(writer.stats());
        match flushed {
            Ok(()) => Ok(stats),
            Err(err) => {
                tracing::error!(error = %err, ?stats, "event log lost events at shutdown");
                Err(err)
            }
        }
    }
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

    fn config(dir: &Path, max_file_bytes: u64, keep_files: usize) -> EventLogConfig {
        EventLogConfig { dir: dir.to_owned(), max_file_bytes, keep_files, time_zone: LogTimeZone::Utc }
    }

    fn file_lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
    }

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

    /// What is written reads back identically, including quoted ids, in UTC
    /// and in local time.
    #[test]
    fn write_then_read_round_trips() {
        for zone in [LogTimeZone::Utc, LogTimeZone::Zone(chrono_tz::Asia::Shanghai)] {
            let dir = tempfile::tempdir().unwrap();
            let ids = ["main-and-5th", "Elm St, \"north\""];
            let events: Vec<_> = (0..50u64)
                .map(|i| (ids[i as usize % 2], event(PI_DAY_MS + i * 1_300, EventCode::PhaseBeginGreen, i as u16)))
                .collect();
            let path = {
                let mut w =
                    EventLogWriter::new(EventLogConfig { time_zone: zone, ..config(dir.path(), 1 << 20, 4) }).unwrap();
                for (id, e) in &events {
                    w.write(id, e).unwrap();
                }
                w.path().to_owned()
            }; // dropped: flushed
            let read = read_event_log_in(&path, zone).unwrap();
            let expected: Vec<_> =
                events.iter().map(|(id, e)| (id.to_string(), e.at, e.code.code(), e.param)).collect();
            assert_eq!(read, expected, "{zone:?}");
            assert_eq!(file_lines(&path)[0], HEADER);
        }
    }

    /// Rotation keeps the newest N files, each with its header and within the
    /// size limit, and no line is lost or duplicated across a rotation.
    #[test]
    fn rotation_keeps_newest_files_without_losing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = "int-1,2026-03-14 15:09:26.0,82,10\n".len() as u64;
        let max = HEADER.len() as u64 + 1 + 3 * line_len; // three events a file
        let write_all = |keep: usize, count: u16| {
            let mut w = EventLogWriter::new(config(dir.path(), max, keep)).unwrap();
            for i in 0..count {
                w.write("int-1", &event(PI_DAY_MS, EventCode::DetectorOn, 10 + i)).unwrap();
            }
            w.flush().unwrap();
            w.stats()
        };
        let stats = write_all(1000, 80);
        assert_eq!(stats.events_written, 80);
        let files = log_files(dir.path()).unwrap();
        assert_eq!(files.len(), 27);
        let mut params = Vec::new();
        for (_, path) in &files {
            assert_eq!(file_lines(path)[0], HEADER);
            assert!(fs::metadata(path).unwrap().len() <= max);
            params.extend(read_event_log(path).unwrap().into_iter().map(|(_, _, _, p)| p));
        }
        assert_eq!(params, (10..90).collect::<Vec<u16>>());

        // A second writer continues the numbering and prunes to the newest 3.
        write_all(3, 9);
        let files = log_files(dir.path()).unwrap();
        assert_eq!(files.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![28, 29, 30]);
        let params: Vec<u16> =
            files.iter().flat_map(|(_, p)| read_event_log(p).unwrap()).map(|(_, _, _, p)| p).collect();
        assert_eq!(params, (10..19).collect::<Vec<u16>>());
    }

    /// A limit smaller than one line still writes every event, one per file.
    #[test]
    fn tiny_limit_still_writes_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventLogWriter::new(config(dir.path(), 1, 100)).unwrap();
        for i in 0..5 {
            w.write("x", &event(PI_DAY_MS, EventCode::PhaseGapOut, i)).unwrap();
        }
        drop(w);
        let files = log_files(dir.path()).unwrap();
        assert_eq!(files.len(), 5);
        assert!(files.iter().all(|(_, p)| read_event_log(p).unwrap().len() == 1));
    }

    /// Malformed lines are reported with file and line number.
    #[test]
    fn reader_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        fs::write(&path, format!("{HEADER}\nint-1,2026-03-14 15:09:26.0,82,3\nint-1,yesterday,82,3\n")).unwrap();
        let err = read_event_log(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let msg = err.to_string();
        assert!(msg.contains("bad.csv:3") && msg.contains("yesterday"), "{msg}");
        fs::write(&path, "\"unterminated,2026-03-14 15:09:26.0,82,3\n").unwrap();
        assert!(read_event_log(&path).unwrap_err().to_string().contains("unterminated"));
    }

    fn fast() -> Cadence {
        Cadence { flush: Duration::from_millis(10), reopen: Duration::from_millis(20) }
    }

    fn spawn(
        dir: &Path,
        ids: &[&str],
    ) -> (crossbeam_channel::Sender<(usize, Event)>, JoinHandle<io::Result<EventLogStats>>) {
        let (tx, rx) = crossbeam_channel::bounded(1024);
        let ids = ids.iter().map(|s| s.to_string()).collect();
        let cfg = config(dir, 1 << 20, 4);
        let handle = std::thread::spawn(move || EventLogTask::new(ids, cfg, fast()).run(rx));
        (tx, handle)
    }

    /// The thread names intersections by index, flushes on its own while the
    /// channel is open, and returns its counters when the channel closes.
    #[test]
    fn thread_writes_flushes_and_drains() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, handle) = spawn(dir.path(), &["a", "b"]);
        tx.send((1, event(PI_DAY_MS, EventCode::PhaseBeginGreen, 2))).unwrap();
        let path = dir.path().join("greenwave-events-000001.csv");
        let deadline = WallInstant::now() + Duration::from_secs(5);
        while read_event_log(&path).map_or(true, |e| e.is_empty()) {
            assert!(WallInstant::now() < deadline, "not flushed while the channel is open");
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.send((0, event(PI_DAY_MS + 100, EventCode::PhaseGapOut, 2))).unwrap();
        tx.send((7, event(PI_DAY_MS + 100, EventCode::PhaseGapOut, 2))).unwrap();
        drop(tx);
        let stats = handle.join().unwrap().unwrap();
        assert_eq!((stats.events_written, stats.events_dropped), (2, 1));
        let ids: Vec<_> = read_event_log(&path).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(ids, ["b", "a"]);
    }

    /// An unwritable log directory drops and counts events without taking
    /// the thread down, and logging resumes once the directory is usable.
    #[test]
    fn unwritable_directory_drops_then_recovers() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("log");
        fs::write(&dir, "a file where the directory should be").unwrap();
        let (tx, handle) = spawn(&dir, &["a"]);
        for i in 0..3 {
            tx.send((0, event(PI_DAY_MS, EventCode::DetectorOn, i))).unwrap();
        }
        // Let the thread take them while the directory is still blocked.
        while !tx.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        fs::remove_file(&dir).unwrap();
        let path = dir.join("greenwave-events-000001.csv");
        let deadline = WallInstant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(WallInstant::now() < deadline, "log never reopened");
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.send((0, event(PI_DAY_MS, EventCode::DetectorOff, 9))).unwrap();
        drop(tx);
        let stats = handle.join().unwrap().unwrap();
        assert_eq!((stats.events_written, stats.events_dropped), (1, 3));
        assert!(stats.io_errors >= 1);
        assert_eq!(read_event_log(&path).unwrap()[0].3, 9);
    }
}
