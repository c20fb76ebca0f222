//! Writing the event log to disk: rotating files, and a thread that never
//! loses what it wrote and always says what it dropped.
//!
//! Files are `greenwave-events-000001.csv`, `-000002.csv`, ... in the log
//! directory, each with its own header (`src/telemetry/eventlog.rs` gives
//! the line format), so every file imports on its own. A new file takes the
//! number after the highest present and never overwrites one. A file
//! rotates before a line would take it past the size limit; the line goes
//! into the next file. Only the newest `keep_files` files *with events* are
//! kept.
//!
//! What a full disk (or any failed write) does, and why:
//! - **Only whole lines reach a file.** A write that fails part-way is cut
//!   back to the last whole line (`set_len`, which a full disk allows: it
//!   frees space), so a reader never meets half a record.
//! - **Lines not yet on disk are held**, in order, up to [`HOLD_BYTES`], and
//!   written when the disk takes them again: an outage shorter than that
//!   loses nothing. Beyond it new events are dropped and counted.
//! - **A file is created only with lines to put in it** (header and lines in
//!   one write; a file whose first write failed is removed), so an outage
//!   leaves no empty files for rotation to count, and the file written
//!   before it is never pruned in their place.
//! - **Said once each way**: one error line when writing stops, one line
//!   when it resumes with the events held and dropped, and alarm 200/6 on and
//!   201/6 off ([`ALARM_EVENT_LOG`]) for every intersection, in the log and in
//!   the event history gRPC streams. The counts are in [`EventLogHealth`] for
//!   the status line.
//!
//! The log is telemetry, not control: nothing here ever stops the daemon.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant as WallInstant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::eventlog::{EventLogConfig, HEADER, append_line};
use super::journal::{Journal, Record, RecordKind};
use crate::core::{Event, EventCode, Instant};

const FILE_PREFIX: &str = "greenwave-events-";
const FILE_SUFFIX: &str = ".csv";

/// Lines are batched in memory up to this size before a write to the file,
/// so a burst of events costs one system call, not one each.
const BUFFER_BYTES: usize = 64 * 1024;

/// Lines held in memory while the log cannot be written: at about 40 bytes
/// a line, 800,000 events (a 1,000-intersection daemon's few minutes).
pub const HOLD_BYTES: usize = 32 << 20;

/// The writer thread hands buffered lines to the OS at least this often, so
/// a reader (or a crash) sees at most this much missing.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// While the log cannot be written, the thread tries again this often.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Alarm parameter (events 200 on / 201 off, every intersection): the event
/// log could not be written. Off says writing resumed; the daemon's log line
/// then gives the events held and dropped.
pub const ALARM_EVENT_LOG: u16 = 6;

/// Counters of an event log writer (or of the writer thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventLogStats {
    /// Events whose whole line is on disk (handed to the OS).
    pub events_written: u64,
    /// Events lost: not loggable, beyond [`HOLD_BYTES`] while the disk was
    /// full, or still held at shutdown.
    pub events_dropped: u64,
    /// Log files created.
    pub files_opened: u64,
    /// Failed file operations (create, write).
    pub io_errors: u64,
}

/// The event log's counters, live, for the status line.
#[derive(Debug, Default)]
pub struct EventLogHealth {
    /// Events on disk.
    pub written: AtomicU64,
    /// Events the writer dropped (see [`EventLogStats::events_dropped`]).
    pub dropped: AtomicU64,
    /// Events the fan-out could not hand to the writer (it was behind).
    pub behind: AtomicU64,
    /// Events held in memory, not yet on disk.
    pub held: AtomicU64,
    /// Episodes of the log not being writable.
    pub outages: AtomicU64,
    pub unwritable: AtomicBool,
}

impl EventLogHealth {
    /// Every event lost so far, wherever.
    pub fn lost(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) + self.behind.load(Ordering::Relaxed)
    }
}

/// A log file being written.
#[derive(Debug)]
struct LogFile {
    file: File,
    path: PathBuf,
    /// Bytes of whole lines on disk, the header included.
    bytes: u64,
}

/// Writes events to rotating CSV files. [`write`](Self::write) only buffers;
/// [`flush`](Self::flush) hands the lines to the OS and, when that fails,
/// keeps them for the next flush. Not for the real-time thread: it does file
/// I/O.
#[derive(Debug)]
pub struct EventLogWriter {
    cfg: EventLogConfig,
    /// `None` until there are lines to write, and after a rotation.
    current: Option<LogFile>,
    /// Whole lines not yet on disk, oldest first.
    held: Vec<u8>,
    /// One formatted line, reused so steady-state writing does not allocate.
    line: Vec<u8>,
    stats: EventLogStats,
}

impl EventLogWriter {
    /// A writer for `cfg`; nothing touches the disk before the first flush
    /// with lines to write.
    pub fn new(cfg: EventLogConfig) -> Self {
        EventLogWriter {
            cfg,
            current: None,
            held: Vec::with_capacity(BUFFER_BYTES),
            line: Vec::with_capacity(128),
            stats: EventLogStats::default(),
        }
    }

    /// Buffers one event of intersection `signal_id`. An event that cannot
    /// be written (an instant outside the calendar, a signal id with a line
    /// break) is refused with `InvalidInput`; one that finds [`HOLD_BYTES`]
    /// already held is dropped. Both are counted.
    ///
    /// # Errors
    /// The event cannot be written (`InvalidInput`).
    pub fn write(&mut self, signal_id: &str, e: &Event) -> io::Result<()> {
        self.line.clear();
        if let Err(err) = append_line(&mut self.line, signal_id, e, self.cfg.time_zone) {
            self.stats.events_dropped += 1;
            return Err(io::Error::new(io::ErrorKind::InvalidInput, err));
        }
        if self.held.len() + self.line.len() > HOLD_BYTES {
            self.stats.events_dropped += 1;
        } else {
            self.held.extend_from_slice(&self.line);
        }
        Ok(())
    }

    /// Bytes of lines not yet on disk.
    pub fn held_bytes(&self) -> usize {
        self.held.len()
    }

    /// Events not yet on disk.
    pub fn held_events(&self) -> u64 {
        lines_in(&self.held)
    }

    /// Hands every held line to the OS (not an fsync: a power loss can still
    /// lose what the OS had not yet written), rotating as the size limit
    /// asks.
    ///
    /// # Errors
    /// A create or write failed: the lines not written stay held, the file
    /// holds only whole lines, and the next flush starts where this one
    /// stopped.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.held.is_empty() {
            let header = HEADER.len() as u64 + 1;
            let (room, fresh) = match &self.current {
                Some(f) => (self.cfg.max_file_bytes.saturating_sub(f.bytes), false),
                None => (self.cfg.max_file_bytes.saturating_sub(header), true),
            };
            // A fresh file takes at least one line, so a tiny limit means
            // one event per file, never a lost one.
            let take = whole_lines_within(&self.held, room, fresh);
            if take == 0 {
                self.current = None; // rotate
                continue;
            }
            let result = match self.current.as_mut() {
                Some(f) => append(f, &self.held[..take]),
                None => self.create(take),
            };
            if let Err(err) = result {
                self.stats.io_errors += 1;
                return Err(err);
            }
            self.stats.events_written += lines_in(&self.held[..take]);
            self.held.drain(..take);
        }
        Ok(())
    }

    /// The file being written, if one is open.
    pub fn path(&self) -> Option<&Path> {
        self.current.as_ref().map(|f| f.path.as_path())
    }

    pub fn stats(&self) -> EventLogStats {
        self.stats
    }

    /// Creates the next file with its header and the first `take` held
    /// bytes in one write, then prunes. A file whose first write failed is
    /// removed: no header-only files.
    fn create(&mut self, take: usize) -> io::Result<()> {
        fs::create_dir_all(&self.cfg.dir)?;
        let last = log_files(&self.cfg.dir)?.last().map_or(0, |f| f.seq);
        let path = self.cfg.dir.join(format!("{FILE_PREFIX}{:06}{FILE_SUFFIX}", last + 1));
        let mut file = OpenOptions::new().append(true).create_new(true).open(&path)?;
        let mut first = Vec::with_capacity(HEADER.len() + 1 + take);
        first.extend_from_slice(HEADER.as_bytes());
        first.push(b'\n');
        first.extend_from_slice(&self.held[..take]);
        if let Err(err) = file.write_all(&first) {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(err);
        }
        self.stats.files_opened += 1;
        self.current = Some(LogFile { file, path, bytes: first.len() as u64 });
        self.prune();
        Ok(())
    }

    /// Deletes all but the newest `keep_files` files with events, and every
    /// file with none that is not being written (left by an older version
    /// or a crash). Failing to delete is only a warning: it costs disk, not
    /// events.
    fn prune(&mut self) {
        let files = match log_files(&self.cfg.dir) {
            Ok(files) => files,
            Err(err) => {
                tracing::warn!(dir = %self.cfg.dir.display(), error = %err, "cannot list event log files to prune");
                return;
            }
        };
        let current = self.current.as_ref().map(|f| f.path.as_path());
        let header = HEADER.len() as u64 + 1;
        let (with_events, empty): (Vec<_>, Vec<_>) =
            files.into_iter().filter(|f| Some(f.path.as_path()) != current).partition(|f| f.bytes > header);
        // The current file is one of the kept.
        let excess = (with_events.len() + 1).saturating_sub(self.cfg.keep_files.max(1));
        for f in with_events.into_iter().take(excess).chain(empty) {
            if let Err(err) = fs::remove_file(&f.path) {
                tracing::warn!(path = %f.path.display(), error = %err, "cannot delete old event log file");
            }
        }
    }
}

impl Drop for EventLogWriter {
    fn drop(&mut self) {
        if self.flush().is_err() {
            let lost = self.held_events();
            tracing::error!(dir = %self.cfg.dir.display(), lost, "event log lost held events on close");
        }
    }
}

/// Appends whole lines; a write that fails part-way is cut back, so the
/// file ends with a whole line.
fn append(f: &mut LogFile, lines: &[u8]) -> io::Result<()> {
    match f.file.write_all(lines) {
        Ok(()) => {
            f.bytes += lines.len() as u64;
            Ok(())
        }
        Err(err) => {
            if let Err(cut) = f.file.set_len(f.bytes) {
                tracing::error!(path = %f.path.display(), error = %cut, "cannot cut a partly written event log line");
            }
            Err(err)
        }
    }
}

/// The longest prefix of `buf` made of whole lines and at most `room` bytes
/// long; with `at_least_one`, the first line even if it is longer.
fn whole_lines_within(buf: &[u8], room: u64, at_least_one: bool) -> usize {
    let within = usize::try_from(room).unwrap_or(usize::MAX).min(buf.len());
    match buf[..within].iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if at_least_one => buf.iter().position(|&b| b == b'\n').map_or(buf.len(), |i| i + 1),
        None => 0,
    }
}

/// Lines in `buf` (each event is one line: signal ids with line breaks are
/// refused).
fn lines_in(buf: &[u8]) -> u64 {
    buf.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The log files in `dir`, oldest first.
///
/// # Errors
/// `dir` cannot be listed.
pub fn log_file_paths(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(log_files(dir)?.into_iter().map(|f| f.path).collect())
}

/// One line of the event log, as [`scan_log`] hands it on.
#[derive(Debug)]
pub struct LogLine<'a> {
    /// The line as it is on disk (no newline).
    pub text: &'a str,
    pub at: Instant,
    pub code: u16,
    pub param: u16,
}

/// Reads the log files in `cfg.dir`, oldest first, and hands `each` every
/// line of an intersection in `ids` with a timestamp in `from..to` (ms since
/// the Unix epoch), until `each` breaks. Blocking file I/O. A file pruned
/// while it is read is skipped (the rotation kept newer ones). Returns the
/// lines it could not read or parse, which callers report.
///
/// # Errors
/// The directory cannot be listed.
pub fn scan_log(
    cfg: &super::EventLogConfig,
    ids: &[String],
    (from, to): (u64, u64),
    mut each: impl FnMut(&LogLine<'_>) -> std::ops::ControlFlow<()>,
) -> io::Result<u64> {
    use std::io::BufRead;

    use super::eventlog::{HEADER, parse_line};
    let mut unreadable = 0;
    for path in log_file_paths(&cfg.dir)? {
        let Ok(file) = fs::File::open(&path) else { continue };
        for line in io::BufReader::new(file).lines() {
            let Ok(line) = line else {
                unreadable += 1;
                break;
            };
            if line.is_empty() || line == HEADER {
                continue;
            }
            let Ok((signal, at, code, param)) = parse_line(&line, cfg.time_zone) else {
                unreadable += 1;
                continue;
            };
            if !ids.contains(&signal) || !(from..to).contains(&at.as_millis()) {
                continue;
            }
            if each(&LogLine { text: &line, at, code, param }).is_break() {
                return Ok(unreadable);
            }
        }
    }
    Ok(unreadable)
}

/// A log file in the directory.
#[derive(Debug)]
struct FileEntry {
    seq: u64,
    path: PathBuf,
    bytes: u64,
}

/// Log files in `dir`, oldest first.
fn log_files(dir: &Path) -> io::Result<Vec<FileEntry>> {
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
        let bytes = entry.metadata().map_or(0, |m| m.len());
        files.push(FileEntry { seq, path: entry.path(), bytes });
    }
    files.sort_unstable_by_key(|f| f.seq);
    Ok(files)
}

/// How often the writer thread flushes and retries; shortened in tests.
#[derive(Clone, Copy, Debug)]
struct Cadence {
    flush: Duration,
    retry: Duration,
}

/// Starts the `event-log` thread: it writes every `(intersection index,
/// event)` received, naming the intersection by `signal_ids[index]`, flushes
/// at least every [`FLUSH_INTERVAL`], and returns its counters once every
/// sender is gone and the last lines are flushed (or found unwritable).
/// Alarm 200/6 and 201/6 also go to `journal`, for gRPC watchers.
///
/// The thread never panics on I/O (see the module docs). Events for an
/// index without a signal id are dropped and counted (a wiring bug, logged
/// once).
///
/// # Errors
/// The OS refused to start a thread.
pub fn spawn_event_log_thread(
    rx: Receiver<(usize, Event)>,
    signal_ids: Vec<String>,
    cfg: EventLogConfig,
    journal: Option<Arc<Journal>>,
    health: Arc<EventLogHealth>,
) -> io::Result<JoinHandle<EventLogStats>> {
    let cadence = Cadence { flush: FLUSH_INTERVAL, retry: RETRY_INTERVAL };
    std::thread::Builder::new()
        .name("event-log".into())
        .spawn(move || EventLogTask::new(signal_ids, cfg, cadence, journal, health).run(rx))
}

/// An episode of the log not being writable.
#[derive(Debug)]
struct Outage {
    since: WallInstant,
    /// Dropped before it began, so its own count can be told.
    dropped_before: u64,
}

/// The state of the writer thread.
#[derive(Debug)]
struct EventLogTask {
    signal_ids: Vec<String>,
    writer: EventLogWriter,
    cadence: Cadence,
    journal: Option<Arc<Journal>>,
    health: Arc<EventLogHealth>,
    outage: Option<Outage>,
    /// While in an outage: when to try again.
    next_retry: WallInstant,
    /// Engine time of the newest event: when the alarms are stamped.
    last_at: Instant,
    /// Events of unknown intersections (dropped).
    unknown: u64,
}

impl EventLogTask {
    fn new(
        signal_ids: Vec<String>,
        cfg: EventLogConfig,
        cadence: Cadence,
        journal: Option<Arc<Journal>>,
        health: Arc<EventLogHealth>,
    ) -> Self {
        EventLogTask {
            signal_ids,
            writer: EventLogWriter::new(cfg),
            cadence,
            journal,
            health,
            outage: None,
            next_retry: WallInstant::now(),
            last_at: Instant::ZERO,
            unknown: 0,
        }
    }

    fn run(mut self, rx: Receiver<(usize, Event)>) -> EventLogStats {
        let mut next_flush = WallInstant::now() + self.cadence.flush;
        loop {
            match rx.recv_timeout(next_flush.saturating_duration_since(WallInstant::now())) {
                Ok((index, event)) => {
                    self.record(index, &event);
                    if self.outage.is_none() && self.writer.held_bytes() >= BUFFER_BYTES {
                        self.flush();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = WallInstant::now();
            if now >= next_flush {
                if self.outage.is_none() || now >= self.next_retry {
                    self.flush();
                }
                next_flush = now + self.cadence.flush;
            }
        }
        self.flush();
        let mut stats = self.writer.stats();
        stats.events_dropped += self.unknown;
        let lost = self.writer.held_events();
        if lost > 0 {
            tracing::error!(lost, ?stats, "event log could not be written at shutdown: held events lost");
            stats.events_dropped += lost;
            self.health.dropped.store(stats.events_dropped, Ordering::Relaxed);
        }
        stats
    }

    fn record(&mut self, index: usize, event: &Event) {
        self.last_at = self.last_at.max(event.at);
        let Some(signal_id) = self.signal_ids.get(index) else {
            self.unknown += 1;
            if self.unknown == 1 {
                tracing::error!(
                    index,
                    known = self.signal_ids.len(),
                    "event from an unknown intersection index dropped"
                );
            }
            return;
        };
        if let Err(err) = self.writer.write(signal_id, event) {
            tracing::warn!(error = %err, "event not loggable; dropped");
        }
    }

    /// Flushes; starts an outage when that fails, ends one when it works.
    fn flush(&mut self) {
        let held = if self.outage.is_some() { self.writer.held_events() } else { 0 };
        match self.writer.flush() {
            Ok(()) => {
                if let Some(outage) = self.outage.take() {
                    let dropped = self.writer.stats().events_dropped - outage.dropped_before;
                    tracing::warn!(
                        after_s = format_args!("{:.1}", outage.since.elapsed().as_secs_f64()),
                        written_late = held,
                        dropped,
                        path = %self.writer.path().map_or_else(String::new, |p| p.display().to_string()),
                        "event log writable again: every held event written, {dropped} dropped (beyond the {} MiB held); alarm 201/{ALARM_EVENT_LOG}",
                        HOLD_BYTES >> 20
                    );
                    self.alarm(EventCode::AlarmOff);
                    // The alarm lines themselves; a failure here is the next outage.
                    return self.flush();
                }
            }
            Err(err) => {
                if self.outage.is_none() {
                    self.outage =
                        Some(Outage { since: WallInstant::now(), dropped_before: self.writer.stats().events_dropped });
                    self.health.outages.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        dir = %self.writer.cfg.dir.display(),
                        error = %err,
                        retry_s = self.cadence.retry.as_secs_f64(),
                        "event log cannot be written: holding events in memory (up to {} MiB) until it can, alarm 200/{ALARM_EVENT_LOG}",
                        HOLD_BYTES >> 20
                    );
                    self.alarm(EventCode::AlarmOn);
                }
                self.next_retry = WallInstant::now() + self.cadence.retry;
            }
        }
        self.publish();
    }

    /// Alarm 200/6 or 201/6 for every intersection: in the log (held, so it
    /// lands in order) and in the journal.
    fn alarm(&mut self, code: EventCode) {
        let e = Event { at: self.last_at, code, param: ALARM_EVENT_LOG };
        for id in &self.signal_ids {
            let _ = self.writer.write(id, &e);
        }
        if let Some(journal) = &self.journal {
            journal.append_with(self.signal_ids.len(), |intersection, seq| Record {
                seq,
                intersection,
                at_unix_ms: e.at.as_millis(),
                kind: RecordKind::Indiana(e),
            });
        }
    }

    fn publish(&self) {
        let s = self.writer.stats();
        let h = &self.health;
        h.written.store(s.events_written, Ordering::Relaxed);
        h.dropped.store(s.events_dropped + self.unknown, Ordering::Relaxed);
        h.held.store(self.writer.held_events(), Ordering::Relaxed);
        h.unwritable.store(self.outage.is_some(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::eventlog::{LogTimeZone, read_event_log, read_event_log_in};

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

    fn seqs(dir: &Path) -> Vec<u64> {
        log_files(dir).unwrap().iter().map(|f| f.seq).collect()
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
            let mut w = EventLogWriter::new(EventLogConfig { time_zone: zone, ..config(dir.path(), 1 << 20, 4) });
            for (id, e) in &events {
                w.write(id, e).unwrap();
            }
            w.flush().unwrap();
            let path = w.path().unwrap().to_owned();
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
            let mut w = EventLogWriter::new(config(dir.path(), max, keep));
            for i in 0..count {
                w.write("int-1", &event(PI_DAY_MS, EventCode::DetectorOn, 10 + i)).unwrap();
            }
            w.flush().unwrap();
            w.stats()
        };
        let stats = write_all(1000, 80);
        assert_eq!((stats.events_written, stats.files_opened), (80, 27));
        let files = log_files(dir.path()).unwrap();
        assert_eq!(files.len(), 27);
        let mut params = Vec::new();
        for f in &files {
            assert_eq!(file_lines(&f.path)[0], HEADER);
            assert!(f.bytes <= max);
            params.extend(read_event_log(&f.path).unwrap().into_iter().map(|(_, _, _, p)| p));
        }
        assert_eq!(params, (10..90).collect::<Vec<u16>>());

        // A second writer continues the numbering and prunes to the newest 3.
        write_all(3, 9);
        assert_eq!(seqs(dir.path()), [28, 29, 30]);
        let params: Vec<u16> = log_files(dir.path())
            .unwrap()
            .iter()
            .flat_map(|f| read_event_log(&f.path).unwrap())
            .map(|(_, _, _, p)| p)
            .collect();
        assert_eq!(params, (10..19).collect::<Vec<u16>>());
    }

    /// A limit smaller than one line still writes every event, one per file.
    #[test]
    fn tiny_limit_still_writes_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventLogWriter::new(config(dir.path(), 1, 100));
        for i in 0..5 {
            w.write("x", &event(PI_DAY_MS, EventCode::PhaseGapOut, i)).unwrap();
        }
        drop(w);
        let files = log_files(dir.path()).unwrap();
        assert_eq!(files.len(), 5);
        assert!(files.iter().all(|f| read_event_log(&f.path).unwrap().len() == 1));
    }

    /// A writer with nothing to write creates no file, and files without
    /// events (an older version's, or a crash's) neither count toward
    /// `keep_files` nor survive the next rotation: the file with the events
    /// stays.
    #[test]
    fn files_without_events_are_never_kept_in_place_of_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventLogWriter::new(config(dir.path(), 1 << 20, 1));
        w.flush().unwrap();
        drop(w);
        assert!(seqs(dir.path()).is_empty(), "a file with nothing in it");

        let mut w = EventLogWriter::new(config(dir.path(), 1 << 20, 2));
        w.write("a", &event(PI_DAY_MS, EventCode::DetectorOn, 1)).unwrap();
        w.flush().unwrap();
        drop(w);
        for seq in 2..=4 {
            fs::write(dir.path().join(format!("{FILE_PREFIX}{seq:06}{FILE_SUFFIX}")), format!("{HEADER}\n")).unwrap();
        }
        let mut w = EventLogWriter::new(config(dir.path(), 1 << 20, 2));
        w.write("a", &event(PI_DAY_MS, EventCode::DetectorOn, 2)).unwrap();
        w.flush().unwrap();
        assert_eq!(seqs(dir.path()), [1, 5]);
        assert_eq!(read_event_log(dir.path().join("greenwave-events-000001.csv")).unwrap()[0].3, 1);
    }

    /// Only whole lines are taken for a file, and a fresh file takes at
    /// least one.
    #[test]
    fn chunks_end_at_a_line() {
        let buf = b"aa\nbbbb\ncc\n";
        assert_eq!(whole_lines_within(buf, 2, false), 0);
        assert_eq!(whole_lines_within(buf, 2, true), 3);
        assert_eq!(whole_lines_within(buf, 9, false), 8);
        assert_eq!(whole_lines_within(buf, 1 << 40, false), 11);
        assert_eq!(lines_in(buf), 3);
    }

    fn fast() -> Cadence {
        Cadence { flush: Duration::from_millis(10), retry: Duration::from_millis(20) }
    }

    fn spawn(
        dir: &Path,
        ids: &[&str],
        journal: Option<Arc<Journal>>,
        first: &[(usize, Event)],
    ) -> (crossbeam_channel::Sender<(usize, Event)>, JoinHandle<EventLogStats>, Arc<EventLogHealth>) {
        let (tx, rx) = crossbeam_channel::bounded(1024);
        // Queued before the thread starts, so its first flush has them all.
        for &e in first {
            tx.send(e).unwrap();
        }
        let ids = ids.iter().map(|s| s.to_string()).collect();
        let cfg = config(dir, 1 << 20, 4);
        let health = Arc::new(EventLogHealth::default());
        let h = health.clone();
        let handle = std::thread::spawn(move || EventLogTask::new(ids, cfg, fast(), journal, h).run(rx));
        (tx, handle, health)
    }

    /// The thread names intersections by index, flushes on its own while the
    /// channel is open, and returns its counters when the channel closes.
    #[test]
    fn thread_writes_flushes_and_drains() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, handle, health) =
            spawn(dir.path(), &["a", "b"], None, &[(1, event(PI_DAY_MS, EventCode::PhaseBeginGreen, 2))]);
        let path = dir.path().join("greenwave-events-000001.csv");
        let deadline = WallInstant::now() + Duration::from_secs(5);
        while read_event_log(&path).map_or(true, |e| e.is_empty()) {
            assert!(WallInstant::now() < deadline, "not flushed while the channel is open");
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.send((0, event(PI_DAY_MS + 100, EventCode::PhaseGapOut, 2))).unwrap();
        tx.send((7, event(PI_DAY_MS + 100, EventCode::PhaseGapOut, 2))).unwrap();
        drop(tx);
        let stats = handle.join().unwrap();
        assert_eq!((stats.events_written, stats.events_dropped), (2, 1));
        let ids: Vec<_> = read_event_log(&path).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!((health.written.load(Ordering::Relaxed), health.lost()), (2, 1));
    }

    /// While the log directory cannot be written the events are held, the
    /// outage is alarmed in the log and the journal, and when it can be
    /// written again every event lands in order: nothing lost.
    #[test]
    fn an_unwritable_directory_holds_events_and_alarms_until_it_recovers() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("log");
        fs::write(&dir, "a file where the directory should be").unwrap();
        let journal = Arc::new(Journal::new(64));
        let first: Vec<_> =
            (0..3).map(|i| (0, event(PI_DAY_MS + u64::from(i) * 100, EventCode::DetectorOn, i))).collect();
        let (tx, handle, health) = spawn(&dir, &["a", "b"], Some(journal.clone()), &first);
        let deadline = WallInstant::now() + Duration::from_secs(5);
        while !health.unwritable.load(Ordering::Relaxed) {
            assert!(WallInstant::now() < deadline, "the outage was never noticed");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(health.outages.load(Ordering::Relaxed), 1);
        fs::remove_file(&dir).unwrap();
        while health.unwritable.load(Ordering::Relaxed) {
            assert!(WallInstant::now() < deadline, "the log never recovered");
            std::thread::sleep(Duration::from_millis(2));
        }
        tx.send((1, event(PI_DAY_MS + 900, EventCode::DetectorOff, 9))).unwrap();
        drop(tx);
        let stats = handle.join().unwrap();
        assert_eq!(stats.events_dropped, 0);
        let lines: Vec<(String, u16, u16)> = read_event_log(dir.join("greenwave-events-000001.csv"))
            .unwrap()
            .into_iter()
            .map(|(id, _, code, param)| (id, code, param))
            .collect();
        let on = |id: &str| (id.to_owned(), 200, ALARM_EVENT_LOG);
        let off = |id: &str| (id.to_owned(), 201, ALARM_EVENT_LOG);
        let detector = |p| ("a".to_owned(), 82, p);
        assert_eq!(
            lines,
            [detector(0), detector(1), detector(2), on("a"), on("b"), off("a"), off("b"), ("b".into(), 81, 9)]
        );
        assert_eq!(stats.events_written, 8);
        let mut records = Vec::new();
        journal.read(1, 100, &mut records);
        let alarms: Vec<(usize, RecordKind)> = records.into_iter().map(|r| (r.intersection, r.kind)).collect();
        let alarm = |code| RecordKind::Indiana(Event { at: Instant::from_millis(PI_DAY_MS + 200), code, param: 6 });
        assert_eq!(
            alarms,
            [
                (0, alarm(EventCode::AlarmOn)),
                (1, alarm(EventCode::AlarmOn)),
                (0, alarm(EventCode::AlarmOff)),
                (1, alarm(EventCode::AlarmOff))
            ]
        );
    }
}
