//! The journal: the bounded, numbered history of controller events and
//! audited control commands that gRPC StreamEvents reads.
//!
//! Every record gets a global sequence number (from 1, across intersections
//! and audit records). The journal is a bounded ring: appending never waits
//! for a reader. Each streaming client keeps its own cursor and copies
//! batches out under a short lock; a client that falls behind the ring's
//! oldest record is told which sequence numbers it lost ([`Read::Gap`]) and
//! goes on from the oldest one held. The daemon's event fan-out
//! (`src/daemon/fanout.rs`) appends the engine's events; the API's audit
//! appends control commands.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::core::Event;

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

/// One audited control command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// The token's name, or `anonymous`.
    pub principal: String,
    pub role: &'static str,
    pub peer: String,
    /// Full gRPC method, e.g. `greenwave.v1.Control/SetMode`.
    pub method: &'static str,
    /// The request in words.
    pub request: String,
    /// `ok` or the status code name.
    pub result: String,
    /// What was done, or why not.
    pub detail: String,
    /// The calls this record stands for: 1, or for refusals counted in a
    /// burst, how many since the burst's previous record.
    pub calls: u64,
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
