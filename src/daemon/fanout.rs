//! The event fan-out: one thread between the engine and everything that
//! reads its events.
//!
//! ```text
//! engine ──(usize, Event)──► fan-out thread ──► event log writer (bounded, try_send)
//!                               │
//!                               ├──► performance measures
//!                               ▼
//!                  journal: last N records, global seq ◄── audit records (control RPCs)
//!                               │ (watch channel: newest seq)
//!                               ▼
//!                 one task per StreamEvents client, reading at its own pace
//! ```
//!
//! With `[nats]`, each batch also goes (numbered, after the journal) into
//! the NATS publisher's bounded store-and-forward queue
//! ([`super::nats::Outbox`]), which never waits for the broker. Once the
//! events pass a quarter hour's end (control time), each intersection's
//! just-closed 15-minute bin of measures follows them into that queue.
//!
//! The engine never sees any of this: it only `try_send`s into its own
//! bounded event channel.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use super::nats::Outbox;
use crate::api::measures::{BIN, Measures, bin_start};
use crate::core::{Event, Instant};
use crate::telemetry::EventLogHealth;
use crate::telemetry::journal::{Journal, Record, RecordKind};

/// `(intersection, event)` as the engine publishes them.
pub type EventFeed = Receiver<(usize, Event)>;

/// Events forwarded to the event log writer before it counts as stuck: the
/// writer takes a whole second of a busy daemon's events between flushes.
const LOG_BUFFER: usize = 65_536;
/// Events the hub takes from the engine per journal lock.
const BATCH: usize = 1024;

/// Starts the fan-out thread. It reads the engine's events until the engine
/// drops its sender, and returns the receiver the event log writer must
/// read from instead of the engine's.
///
/// # Errors
/// The OS refused to start a thread.
pub fn spawn(
    events: Receiver<(usize, Event)>,
    journal: Arc<Journal>,
    measures: Arc<Measures>,
    log_health: Arc<EventLogHealth>,
    nats: Option<Arc<Outbox>>,
) -> io::Result<(EventFeed, JoinHandle<()>)> {
    let (log_tx, log_rx) = bounded(LOG_BUFFER);
    let handle = std::thread::Builder::new()
        .name("greenwave-fanout".into())
        .spawn(move || run(&events, &journal, &measures, &log_tx, &log_health, nats.as_deref()))?;
    Ok((log_rx, handle))
}

fn run(
    events: &Receiver<(usize, Event)>,
    journal: &Journal,
    measures: &Measures,
    log: &Sender<(usize, Event)>,
    log_health: &EventLogHealth,
    nats: Option<&Outbox>,
) {
    let mut batch: Vec<(usize, Event)> = Vec::with_capacity(BATCH);
    let mut log_open = true;
    // Control time at which the current 15-minute bin closes.
    let mut bin_end = Instant::ZERO;
    let mut closed = Vec::new();
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
                        let log_dropped = log_health.behind.fetch_add(1, Ordering::Relaxed) + 1;
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
        let last = journal.append_with(batch.len(), |k, seq| {
            let (intersection, e) = batch[k];
            Record { seq, intersection, at_unix_ms: e.at.as_millis(), kind: RecordKind::Indiana(e) }
        });
        if let Some(outbox) = nats {
            // One append, one lock: the batch's numbers are consecutive.
            outbox.push_batch(&batch, last + 1 - batch.len() as u64);
            // The engine sends in time order: an event at or past the bin's
            // end means every event of the bin has been recorded.
            let now = batch.iter().map(|(_, e)| e.at).max().unwrap_or(Instant::ZERO);
            if now >= bin_end {
                measures.close_bins(now, &mut closed);
                outbox.push_measures(closed.drain(..));
                bin_end = bin_start(now) + BIN;
            }
        }
    }
}
