//! The event hub: one thread between the engine and everything that reads
//! its events.
//!
//! ```text
//! engine ──(usize, Event)──► hub thread ──► event log writer (bounded, try_send)
//!                               │
//!                               ├──► performance measures
//!                               ▼
//!                  journal: last N records, global seq ◄── audit records (control RPCs)
//!                               │ (watch channel: newest seq)
//!                               ▼
//!                 one task per StreamEvents client, reading at its own pace
//! ```
//!
//! Every record gets a global sequence number (from 1, across intersections
//! and audit records). The journal is a bounded ring: appending never waits
//! for a reader. Each streaming client keeps its own cursor and copies
//! batches out under a short lock; a client that falls behind the ring's
//! oldest record is told which sequence numbers it lost ([`Read::Gap`]) and
//! goes on from the oldest one held. The engine never sees any of this: it
//! only `try_send`s into its own bounded event channel, as before.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use tokio::sync::watch;

use crate::core::Event;

use super::audit::AuditEntry;
use super::measures::Measures;

/// What a journal record holds.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordKind {
    /// A controller event (Indiana code).
    Indiana(Event),
    /// A control command and its outcome.
    Audit(Arc<AuditEntry>),
}

/// One record of the journal.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub seq: u64,
    /// Intersection index (the daemon's order).
    pub intersection: usize,
    /// ms since the Unix epoch.
    pub at_unix_ms: u64,
    pub kind: RecordKind,
}

/// What a reader gets from [`Journal::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// Records from the cursor on were copied (possibly none yet).
    Records,
    /// Records `first_missed..resume` are gone; read again from `resume`.
    Gap { first_missed: u64, resume: u64 },
    /// The cursor is past the newest record plus one (a client resuming
    /// against a restarted daemon).
    Ahead { next: u64 },
}

#[derive(Debug)]
struct Ring {
    records: VecDeque<Record>,
    capacity: usize,
    next_seq: u64,
}

impl Ring {
    /// Pushes the record `make(seq)` under the next sequence number,
    /// dropping the oldest when full; returns that number.
    fn push(&mut self, make: impl FnOnce(u64) -> Record) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(make(seq));
        seq
    }
}

/// The bounded, sequenced history of events and audit records.
#[derive(Debug)]
pub struct Journal {
    ring: Mutex<Ring>,
    /// The newest sequence number, for readers to wait on.
    newest: watch::Sender<u64>,
}

impl Journal {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Journal {
            ring: Mutex::new(Ring { records: VecDeque::with_capacity(capacity), capacity, next_seq: 1 }),
            newest: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves the ring consistent (every
        // mutation is a single push/pop), so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends records built by `make(seq)`, in order, and wakes readers.
    /// Returns the last sequence number used.
    pub fn append_with(&self, count: usize, mut make: impl FnMut(usize, u64) -> Record) -> u64 {
        let last = {
            let mut ring = self.lock();
            for i in 0..count {
                ring.push(|seq| make(i, seq));
            }
            ring.next_seq - 1
        };
        self.newest.send_replace(last);
        last
    }

    /// Appends one record; returns its sequence number.
    pub fn append(&self, intersection: usize, at_unix_ms: u64, kind: RecordKind) -> u64 {
        let seq = self.lock().push(|seq| Record { seq, intersection, at_unix_ms, kind });
        self.newest.send_replace(seq);
        seq
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Copies up to `max` records with `seq >= from` into `out`.
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<Record>) -> Read {
        let ring = self.lock();
        if from > ring.next_seq {
            return Read::Ahead { next: ring.next_seq };
        }
        let oldest = ring.records.front().map_or(ring.next_seq, |r| r.seq);
        if from < oldest {
            return Read::Gap { first_missed: from, resume: oldest };
        }
        let skip = (from - oldest) as usize;
        out.extend(ring.records.iter().skip(skip).take(max).cloned());
        Read::Records
    }

    /// Wakes on every append.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }
}

/// `(intersection, event)` as the engine publishes them.
pub type EventFeed = Receiver<(usize, Event)>;

/// Events forwarded to the event log writer before it counts as stuck: the
/// writer takes a whole second of a busy daemon's events between flushes.
const LOG_BUFFER: usize = 65_536;
/// Events the hub takes from the engine per journal lock.
const BATCH: usize = 1024;

/// Starts the hub thread. It reads the engine's events until the engine
/// drops its sender, and returns the receiver the event log writer must
/// read from instead of the engine's.
///
/// # Errors
/// The OS refused to start a thread.
pub fn spawn_hub(
    events: Receiver<(usize, Event)>,
    journal: Arc<Journal>,
    measures: Arc<Measures>,
) -> io::Result<(EventFeed, JoinHandle<()>)> {
    let (log_tx, log_rx) = bounded(LOG_BUFFER);
    let handle = std::thread::Builder::new()
        .name("greenwave-hub".into())
        .spawn(move || run_hub(&events, &journal, &measures, &log_tx))?;
    Ok((log_rx, handle))
}

fn run_hub(events: &Receiver<(usize, Event)>, journal: &Journal, measures: &Measures, log: &Sender<(usize, Event)>) {
    let mut batch: Vec<(usize, Event)> = Vec::with_capacity(BATCH);
    let mut log_dropped = 0u64;
    let mut log_open = true;
    while let Ok(first) = events.recv() {
        batch.clear();
        batch.push(first);
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        for &(i, e) in &batch {
            if log_open {
                match log.try_send((i, e)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        log_dropped += 1;
                        if log_dropped.is_power_of_two() {
                            tracing::error!(dropped = log_dropped, "event log writer is behind: events dropped");
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        tracing::error!("event log writer stopped; events go only to gRPC");
                        log_open = false;
                    }
                }
            }
        }
        measures.record(&batch);
        journal.append_with(batch.len(), |k, seq| {
            let (intersection, e) = batch[k];
            Record { seq, intersection, at_unix_ms: e.at.as_millis(), kind: RecordKind::Indiana(e) }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{EventCode, Instant};

    fn ev(ms: u64) -> RecordKind {
        RecordKind::Indiana(Event { at: Instant::from_millis(ms), code: EventCode::PhaseBeginGreen, param: 2 })
    }

    #[test]
    fn readers_resume_from_a_sequence_number_and_hear_of_gaps() {
        let j = Journal::new(3);
        for ms in 0..5 {
            j.append(0, ms, ev(ms));
        }
        // seq 1..=5 appended, 3..=5 held.
        let mut out = Vec::new();
        assert_eq!(j.read(4, 10, &mut out), Read::Records);
        assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4, 5]);
        out.clear();
        assert_eq!(j.read(1, 10, &mut out), Read::Gap { first_missed: 1, resume: 3 });
        assert!(out.is_empty());
        assert_eq!(j.read(6, 10, &mut out), Read::Records, "the next one: wait for it");
        assert!(out.is_empty());
        assert_eq!(j.read(9, 10, &mut out), Read::Ahead { next: 6 });
    }
}
