//! The Watch service: intersections, state, events, measures.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::core::{Instant, Snapshot};

use super::auth::{Need, authorize};
use super::{Shared, convert, pb};
use crate::telemetry::journal::{Read, Record, RecordKind};

/// Slowest and fastest WatchState rates a client may choose, ms.
const MIN_STATE_INTERVAL_MS: u32 = 100;
const MAX_STATE_INTERVAL_MS: u32 = 60_000;
const EVENT_BUFFER: usize = 256;
/// Records copied out of the journal per lock.
const EVENT_BATCH: usize = 256;

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Debug)]
pub(super) struct WatchService {
    shared: Arc<Shared>,
}

impl WatchService {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        WatchService { shared }
    }
}

const LIST: &str = "greenwave.v1.Watch/ListIntersections";
const GET_STATE: &str = "greenwave.v1.Watch/GetState";
const WATCH_STATE: &str = "greenwave.v1.Watch/WatchState";
const STREAM_EVENTS: &str = "greenwave.v1.Watch/StreamEvents";
const GET_PERFORMANCE: &str = "greenwave.v1.Watch/GetPerformance";
const READ_EVENT_LOG: &str = "greenwave.v1.Watch/ReadEventLog";
/// Events per ReadEventLog chunk.
const LOG_CHUNK_EVENTS: usize = 1000;

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    async fn list_intersections(
        &self,
        req: Request<pb::ListIntersectionsRequest>,
    ) -> Result<Response<pb::ListIntersectionsResponse>, Status> {
        let caller = authorize(&req, Need::Any, LIST)?;
        let core = &self.shared.core;
        let intersections =
            core.select(&caller, &[], "")?.into_iter().map(|i| convert::info(&core.docs.current(i))).collect();
        Ok(Response::new(pb::ListIntersectionsResponse { intersections }))
    }

    async fn get_state(&self, req: Request<pb::GetStateRequest>) -> Result<Response<pb::IntersectionState>, Status> {
        let caller = authorize(&req, Need::View, GET_STATE)?;
        let i = self.shared.core.reach(&caller, &req.get_ref().intersection_id, "intersection_id")?;
        let snapshot = self.shared.engine.board.get(i).ok_or_else(not_yet)?;
        let link = self.shared.engine.cabinet_links.get(i).map(|l| &**l);
        Ok(Response::new(convert::state(&snapshot, &self.shared.core.docs.current(i), link)))
    }

    type WatchStateStream = Stream_<pb::StateUpdate>;

    async fn watch_state(
        &self,
        req: Request<pb::WatchStateRequest>,
    ) -> Result<Response<Self::WatchStateStream>, Status> {
        let caller = authorize(&req, Need::View, WATCH_STATE)?;
        let r = req.get_ref();
        let selected = self.shared.core.select(&caller, &r.intersection_ids, "intersection_ids")?;
        let interval_ms = match r.min_interval_ms {
            0 => MIN_STATE_INTERVAL_MS,
            ms if (MIN_STATE_INTERVAL_MS..=MAX_STATE_INTERVAL_MS).contains(&ms) => ms,
            ms => {
                return Err(convert::invalid(
                    "min_interval_ms",
                    format!("{ms} is outside {MIN_STATE_INTERVAL_MS}..={MAX_STATE_INTERVAL_MS} ms (0 for the fastest)"),
                ));
            }
        };
        let permit = self.shared.stream_permit(&caller)?;
        let changes = Arc::new(Changes::new(selected.len()));
        let (shared, watched) = (self.shared.clone(), selected.clone());
        let seen = Arc::downgrade(&changes);
        let interval = Duration::from_millis(interval_ms.into());
        // The permit goes with the task, which ends within an interval of
        // the stream's end.
        tokio::spawn(async move {
            let _permit = permit;
            look_for_changes(&shared, &watched, interval, &seen).await;
        });
        Ok(Response::new(Box::pin(state_stream(self.shared.clone(), selected, changes))))
    }

    type StreamEventsStream = Stream_<pb::StreamEventsResponse>;

    async fn stream_events(
        &self,
        req: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let caller = authorize(&req, Need::View, STREAM_EVENTS)?;
        let r = req.into_inner();
        let core = &self.shared.core;
        let selected = core.select(&caller, &r.intersection_ids, "intersection_ids")?;
        let mut wanted = vec![false; core.ids.len()];
        for i in selected {
            wanted[i] = true;
        }
        let from = if r.from_seq == 0 { core.journal.next_seq() } else { r.from_seq };
        let next = core.journal.next_seq();
        if from > next {
            return Err(Status::out_of_range(format!(
                "from_seq: {from} is ahead of the next event ({next}); the daemon restarted since? Resume with \
                 from_seq = 1 (everything held) or 0 (from now)"
            )));
        }
        let permit = self.shared.stream_permit(&caller)?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            event_records(&shared, from, &wanted, !r.exclude_audit, tx).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ReadEventLogStream = Stream_<pb::EventLogChunk>;

    async fn read_event_log(
        &self,
        req: Request<pb::ReadEventLogRequest>,
    ) -> Result<Response<Self::ReadEventLogStream>, Status> {
        let caller = authorize(&req, Need::View, READ_EVENT_LOG)?;
        let r = req.into_inner();
        let core = &self.shared.core;
        // The files' lines of the intersections asked for (all the caller
        // may reach when none is named).
        let ids: Vec<String> = match r.intersection_id.as_str() {
            "" => core.select(&caller, &[], "")?.into_iter().map(|i| core.ids[i].clone()).collect(),
            id => vec![core.ids[core.reach(&caller, id, "intersection_id")?].clone()],
        };
        let to = if r.to_unix_ms == 0 { u64::MAX } else { r.to_unix_ms };
        if to <= r.from_unix_ms {
            return Err(convert::invalid(
                "to_unix_ms",
                format!("{} is not after from_unix_ms {}", r.to_unix_ms, r.from_unix_ms),
            ));
        }
        let permit = self.shared.stream_permit(&caller)?;
        let (tx, rx) = mpsc::channel(4);
        let cfg = self.shared.event_log.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            send_log_lines(&cfg, &ids, (r.from_unix_ms, to), &tx);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_performance(
        &self,
        req: Request<pb::GetPerformanceRequest>,
    ) -> Result<Response<pb::PerformanceMeasures>, Status> {
        let caller = authorize(&req, Need::View, GET_PERFORMANCE)?;
        let core = &self.shared.core;
        let i = core.reach(&caller, &req.get_ref().intersection_id, "intersection_id")?;
        let m = core.measures.report(i).ok_or_else(not_yet)?;
        let (tick, jitter) = self.shared.engine.latency.latest();
        Ok(Response::new(convert::performance(&core.ids[i], &m, &tick, &jitter)))
    }
}

/// Streams the event log files' lines of the intersections `ids` with a
/// timestamp in `from..to` (ms since the Unix epoch), header first, as they
/// are on disk. Blocking file I/O: runs on a blocking thread. A line that
/// does not parse is skipped and counted in a warning.
fn send_log_lines(
    cfg: &crate::telemetry::EventLogConfig,
    ids: &[String],
    range: (u64, u64),
    tx: &mpsc::Sender<Result<pb::EventLogChunk, Status>>,
) {
    use std::ops::ControlFlow;

    use crate::telemetry::eventlog::HEADER;
    let mut chunk = format!("{HEADER}\n");
    let mut events = 0;
    let scanned = crate::telemetry::log_writer::scan_log(cfg, ids, range, |line| {
        chunk.push_str(line.text);
        chunk.push('\n');
        events += 1;
        if events == LOG_CHUNK_EVENTS {
            events = 0;
            if tx.blocking_send(Ok(pb::EventLogChunk { csv: std::mem::take(&mut chunk) })).is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    match scanned {
        Err(e) => {
            let _ = tx.blocking_send(Err(Status::unavailable(format!(
                "the event log directory {} cannot be read: {e}",
                cfg.dir.display()
            ))));
            return;
        }
        Ok(0) => {}
        Ok(unreadable) => {
            tracing::warn!(unreadable, dir = %cfg.dir.display(), "ReadEventLog skipped event log lines it could not read");
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(pb::EventLogChunk { csv: chunk }));
    }
}

fn not_yet() -> Status {
    Status::unavailable("the control thread has not published this intersection yet; retry")
}

/// What one WatchState client has not been sent yet: per selected
/// intersection, the newest state seen and how many changes were seen
/// since the last one sent.
///
/// A watcher is sent only the newest state: the message is built when the
/// HTTP/2 stream has room for it (the stream is polled; see
/// `super::server::SEND_BUFFER_BYTES`), so a client that stops reading
/// holds at most what its flow-control window took, and resumes with the
/// newest state and the count of the changes it missed.
#[derive(Debug)]
struct Changes {
    pending: std::sync::Mutex<Vec<Pending>>,
    arrived: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Pending {
    newest: Option<Arc<Snapshot>>,
    /// Changes seen (at the watch interval) and not sent.
    unsent: u64,
}

impl Changes {
    fn new(n: usize) -> Self {
        Changes {
            pending: std::sync::Mutex::new((0..n).map(|_| Pending::default()).collect()),
            arrived: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next intersection (after `from`, round the list) with a change
    /// not sent: its place, newest state, and the changes skipped.
    fn take(&self, from: usize) -> Option<(usize, Arc<Snapshot>, u64)> {
        let mut pending = self.lock();
        let n = pending.len();
        (0..n).map(|d| (from + d) % n).find_map(|k| {
            let p = &mut pending[k];
            if p.unsent == 0 {
                return None;
            }
            let skipped = std::mem::take(&mut p.unsent) - 1;
            p.newest.clone().map(|s| (k, s, skipped))
        })
    }
}

/// Every `interval`, notes each selected intersection whose state changed
/// since the last look; ends when the client's stream is gone or the API
/// stops.
async fn look_for_changes(shared: &Shared, selected: &[usize], interval: Duration, changes: &std::sync::Weak<Changes>) {
    let mut last: Vec<Option<Arc<Snapshot>>> = vec![None; selected.len()];
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stopping = shared.stopping.clone();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopping.wait_for(|&s| s) => return,
        }
        let Some(changes) = changes.upgrade() else { return };
        let mut any = false;
        for (k, &i) in selected.iter().enumerate() {
            let Some(snapshot) = shared.engine.board.get(i) else { continue };
            if last[k].as_deref().is_some_and(|prev| same_state(prev, &snapshot)) {
                continue;
            }
            last[k] = Some(snapshot.clone());
            let mut pending = changes.lock();
            pending[k].newest = Some(snapshot);
            pending[k].unsent += 1;
            any = true;
        }
        if any {
            changes.arrived.notify_one();
        }
    }
}

/// The messages of one WatchState client, built as the stream has room.
fn state_stream(
    shared: Arc<Shared>,
    selected: Vec<usize>,
    changes: Arc<Changes>,
) -> impl Stream<Item = Result<pb::StateUpdate, Status>> {
    let stopping = shared.stopping.clone();
    let start = (shared, selected, changes, stopping, 0usize);
    futures_util::stream::unfold(start, |(shared, selected, changes, mut stopping, from)| async move {
        loop {
            // Registered before looking, so a change noted in between
            // still wakes this stream.
            let arrived = changes.arrived.notified();
            if let Some((k, snapshot, skipped)) = changes.take(from) {
                let i = selected[k];
                let link = shared.engine.cabinet_links.get(i).map(|l| &**l);
                let state = convert::state(&snapshot, &shared.core.docs.current(i), link);
                let update = pb::StateUpdate { state: Some(state), skipped_updates: skipped };
                drop(arrived);
                return Some((Ok(update), (shared, selected, changes, stopping, k + 1)));
            }
            tokio::select! {
                () = arrived => {}
                _ = stopping.wait_for(|&s| s) => return None,
            }
        }
    })
}

/// Equal but for the time it was taken.
fn same_state(a: &Snapshot, b: &Snapshot) -> bool {
    Snapshot { at: Instant::ZERO, ..*a } == Snapshot { at: Instant::ZERO, ..*b }
}

/// Feeds one StreamEvents client from the journal at its own pace, from
/// sequence number `from`; a gap (records evicted before the client read
/// them) becomes a `lagged` message.
async fn event_records(
    shared: &Shared,
    mut from: u64,
    wanted: &[bool],
    audit: bool,
    tx: mpsc::Sender<Result<pb::StreamEventsResponse, Status>>,
) {
    use pb::stream_events_response::Item;
    let journal = &shared.core.journal;
    let mut newest = journal.subscribe();
    let mut stopping = shared.stopping.clone();
    let mut batch: Vec<Record> = Vec::with_capacity(EVENT_BATCH);
    loop {
        batch.clear();
        // Mark the version seen before reading, so an append right after
        // the read still wakes us.
        newest.borrow_and_update();
        match journal.read(from, EVENT_BATCH, &mut batch) {
            Read::Records => {}
            Read::Gap { first_missed, resume } => {
                let lagged = pb::Lagged { first_missed_seq: first_missed, resume_seq: resume };
                if tx.send(Ok(pb::StreamEventsResponse { item: Some(Item::Lagged(lagged)) })).await.is_err() {
                    return;
                }
                from = resume;
                continue;
            }
            Read::Ahead { .. } => return,
        }
        if batch.is_empty() {
            tokio::select! {
                changed = newest.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
                _ = stopping.wait_for(|&s| s) => return,
            }
            continue;
        }
        for r in &batch {
            from = r.seq + 1;
            let keep = wanted.get(r.intersection).copied().unwrap_or(false)
                && (audit || !matches!(r.kind, RecordKind::Audit(_)));
            if !keep {
                continue;
            }
            let event = convert::record(r, &shared.core.ids[r.intersection]);
            let message = pb::StreamEventsResponse { item: Some(Item::Event(event)) };
            // Waiting here only holds this client's task: the journal moves
            // on, and a client that falls behind it hears of the gap.
            tokio::select! {
                sent = tx.send(Ok(message)) => if sent.is_err() { return },
                _ = stopping.wait_for(|&s| s) => return,
            }
        }
    }
}
