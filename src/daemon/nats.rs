//! The city feed: events, alarms, measures and state to a NATS broker
//! (`[nats]`, `docs/nats.md`).
//!
//! ```text
//! fan-out thread ──push (short lock, no I/O)──► Outbox: bounded store-and-forward queue
//!                                                 │   full: the oldest not in flight dropped, counted
//!                                                 ▼
//!                      greenwave-nats thread (its own tokio runtime)
//!                      ├─ sender: windows of JetStream publishes, each with a message id;
//!                      │  an item leaves the queue only when the broker acked it
//!                      └─ state: every state_interval, each intersection's snapshot from
//!                         the board on core NATS (latest wins, skipped while disconnected)
//! ```
//!
//! The control thread never sees any of this: the fan-out pushes what the
//! engine already gave it. Every event gets a per-intersection sequence
//! number as it is pushed, so a consumer sees anything dropped as a gap,
//! and a message id `<intersection>:<run>:<seq>` (`:alarm` appended on the
//! alarm subject) so that a publish retried after a lost ack is stored
//! once (the stream's duplicate window). `run` is the wall-clock start of
//! this daemon process in ms, so a restarted daemon's numbering never
//! collides with its previous run's. Each closed 15-minute bin of
//! measures is queued (by the fan-out, behind its events) with the id
//! `<intersection>:<run>:measures:<bin_start_unix_ms>`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::api::measures::{BIN, BinMeasures, ClosedBin};
use crate::config::nats::is_subject_token;
use crate::config::{NatsAuth, NatsConfig};
use crate::core::spec::PlanMode;
use crate::core::{Event, EventCode, Interval, OperatingMode, PhaseSet, Snapshot, UnitState};
use crate::engine::board::SnapshotBoard;

/// Publishes in flight at once (each awaits its ack).
const WINDOW: usize = 256;
/// How long a JetStream publish waits for its ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// The stream's duplicate window: a publish retried within it after its
/// ack was lost is stored once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// Retry backoff while the broker is away or not acking.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Indiana codes also published on the alarm subject: detector restored
/// (83) and faults (84–88), unit flash status (173), unit alarm status
/// (174), alarm on and off (200, 201).
pub const ALARM_CODES: [u16; 10] = [83, 84, 85, 86, 87, 88, 173, 174, 200, 201];

/// The event is also an alarm ([`ALARM_CODES`]).
pub fn is_alarm(code: EventCode) -> bool {
    is_alarm_code(code.code())
}

pub fn is_alarm_code(code: u16) -> bool {
    ALARM_CODES.contains(&code)
}

/// The publisher's counters, live (status line, `/metrics`, tests).
#[derive(Debug, Default)]
pub struct NatsStats {
    /// Events the broker acked on `<prefix>.<id>.events` (duplicates included).
    pub events_acked: AtomicU64,
    /// Alarms the broker acked on `<prefix>.<id>.alarms`.
    pub alarms_acked: AtomicU64,
    /// Closed 15-minute bins the broker acked on `<prefix>.<id>.measures`.
    pub measures_acked: AtomicU64,
    /// Acks that said the stream already held the message (a retry).
    pub duplicates: AtomicU64,
    /// State snapshots handed to the client (core NATS: no ack).
    pub states_sent: AtomicU64,
    /// Messages dropped from a full store-and-forward queue (the oldest).
    pub dropped: AtomicU64,
    /// Messages waiting for the broker (queued and in flight).
    pub queued: AtomicU64,
    /// Publishes that failed or were not acked in time (then retried).
    pub retries: AtomicU64,
    /// The client is connected to a broker.
    pub connected: AtomicBool,
    /// Messages still queued when the publisher stopped.
    pub left_at_shutdown: AtomicU64,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Event(Event),
    Alarm(Event),
    /// A closed bin's measures (shared, so a window copies a pointer).
    Measures(Arc<ClosedBin>),
}

/// One message waiting for the broker.
#[derive(Clone, Debug)]
struct Item {
    intersection: usize,
    /// Per intersection, from 1, in this run (events and alarms; 0 for
    /// measures, numbered by their bin).
    seq: u64,
    /// The journal's sequence number (what gRPC StreamEvents numbers it).
    journal_seq: u64,
    kind: Kind,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Item>,
    bound: usize,
    /// The first `in_flight` items are being published: drops skip them.
    in_flight: usize,
    /// Next sequence number per intersection.
    next_seq: Vec<u64>,
    /// Dropped in the current overflow episode (`Some` while it lasts).
    episode: Option<u64>,
}

/// The bounded store-and-forward queue between the fan-out and the sender.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    wake: Notify,
    stats: Arc<NatsStats>,
}

impl Outbox {
    pub fn new(intersections: usize, bound: usize, stats: Arc<NatsStats>) -> Outbox {
        let bound = bound.max(1);
        Outbox {
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(bound.min(65_536)),
                bound,
                in_flight: 0,
                next_seq: vec![1; intersections],
                episode: None,
            }),
            wake: Notify::new(),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every mutation keeps the queue consistent, so a poisoned lock is usable.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers and queues a batch of events (the fan-out's): `first_journal_seq`
    /// is the journal's number of the batch's first event. Never waits for
    /// the broker; a full queue drops its oldest messages not in flight.
    pub fn push_batch(&self, batch: &[(usize, Event)], first_journal_seq: u64) {
        if batch.is_empty() {
            return;
        }
        {
            let mut q = self.lock();
            for (k, &(intersection, event)) in batch.iter().enumerate() {
                let Some(next) = q.next_seq.get_mut(intersection) else { continue };
                let seq = *next;
                *next += 1;
                let journal_seq = first_journal_seq + k as u64;
                self.enqueue(&mut q, Item { intersection, seq, journal_seq, kind: Kind::Event(event) });
                if is_alarm(event.code) {
                    self.enqueue(&mut q, Item { intersection, seq, journal_seq, kind: Kind::Alarm(event) });
                }
            }
            self.stats.queued.store(q.items.len() as u64, Ordering::Relaxed);
        }
        self.wake.notify_one();
    }

    /// Queues closed bins' measures behind the events before them (the
    /// fan-out's, once a quarter hour); the same bound applies.
    pub fn push_measures(&self, bins: impl IntoIterator<Item = ClosedBin>) {
        {
            let mut q = self.lock();
            for bin in bins {
                if bin.intersection >= q.next_seq.len() {
                    continue;
                }
                let item = Item {
                    intersection: bin.intersection,
                    seq: 0,
                    journal_seq: 0,
                    kind: Kind::Measures(Arc::new(bin)),
                };
                self.enqueue(&mut q, item);
            }
            self.stats.queued.store(q.items.len() as u64, Ordering::Relaxed);
        }
        self.wake.notify_one();
    }

    fn enqueue(&self, q: &mut Queue, item: Item) {
        // The bound is on what waits: the window on its way to the broker
        // (at most WINDOW) is not dropped, or a publish acked after all
        // would leave a gap in the middle.
        if q.items.len() - q.in_flight >= q.bound {
            // The oldest not already on its way (bound >= 1: there is one).
            let at = q.in_flight;
            q.items.remove(at);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            match &mut q.episode {
                Some(n) => *n += 1,
                None => {
                    q.episode = Some(1);
                    warn!(
                        buffer_events = q.bound,
                        "NATS store-and-forward queue full ({} messages): dropping the oldest until the broker \
                         takes them again (counted in greenwave_nats_dropped)",
                        q.bound
                    );
                }
            }
        }
        q.items.push_back(item);
    }

    /// Messages waiting (queued and in flight).
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the first `n` items in flight and copies them out.
    fn take_window(&self, n: usize, out: &mut Vec<Item>) {
        let mut q = self.lock();
        let n = n.min(q.items.len());
        q.in_flight = n;
        out.clear();
        out.extend(q.items.iter().take(n).cloned());
    }

    /// Ends the window: the items whose `acked` is true leave the queue,
    /// the others stay at its front, in order.
    fn finish_window(&self, acked: &[bool]) {
        let mut q = self.lock();
        for (i, _) in acked.iter().enumerate().rev().filter(|(_, a)| **a) {
            q.items.remove(i);
        }
        q.in_flight = 0;
        self.stats.queued.store(q.items.len() as u64, Ordering::Relaxed);
        if q.items.len() < q.bound
            && let Some(n) = q.episode.take()
        {
            info!(dropped = n, "NATS store-and-forward queue has room again: {n} oldest messages were dropped");
        }
    }
}

/// The running publisher: its thread, and the way to stop it.
#[derive(Debug)]
pub struct Publisher {
    thread: JoinHandle<u64>,
    /// The flush deadline, once stopping.
    stop: watch::Sender<Option<tokio::time::Instant>>,
    pub outbox: Arc<Outbox>,
    pub stats: Arc<NatsStats>,
}

/// The subjects of one intersection.
#[derive(Clone, Debug)]
struct Subjects {
    id: String,
    events: String,
    alarms: String,
    measures: String,
    state: String,
}

/// Starts the publisher thread. Returns at once: the broker may be away,
/// and the client connects (and reconnects) in the background.
///
/// # Errors
/// The runtime or thread could not start, or the credentials file could
/// not be read.
pub fn spawn(cfg: &NatsConfig, ids: &[String], board: Arc<SnapshotBoard>) -> anyhow::Result<Publisher> {
    let stats = Arc::new(NatsStats::default());
    let outbox = Arc::new(Outbox::new(ids.len(), cfg.buffer_events, stats.clone()));
    let subjects = subjects(&cfg.subject_prefix, ids);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("greenwave-nats")
        .build()
        .context("starting the NATS runtime")?;
    let options = rt.block_on(connect_options(cfg, stats.clone()))?;
    let (stop, stopping) = watch::channel(None);
    let run = Run {
        cfg: cfg.clone(),
        subjects,
        board,
        outbox: outbox.clone(),
        stats: stats.clone(),
        run_id: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
    };
    let thread = std::thread::Builder::new()
        .name("greenwave-nats".into())
        .spawn(move || rt.block_on(run.serve(options, stopping)))
        .context("starting the NATS thread")?;
    info!(
        url = %cfg.url,
        prefix = %cfg.subject_prefix,
        stream = %cfg.stream,
        state_interval_ms = cfg.state_interval.as_millis() as u64,
        buffer_events = cfg.buffer_events,
        "NATS city feed: events and alarms through JetStream, state on core NATS"
    );
    Ok(Publisher { thread, stop, outbox, stats })
}

impl Publisher {
    /// Stops the publisher: it goes on delivering what is queued for at
    /// most `flush` (the fan-out has already stopped), then ends. Returns
    /// how many messages were left undelivered, and says so.
    pub fn finish(self, flush: Duration) -> u64 {
        let _ = self.stop.send(Some(tokio::time::Instant::now() + flush));
        let left = self.thread.join().unwrap_or_else(|_| {
            tracing::error!("NATS publisher thread panicked");
            self.outbox.len() as u64
        });
        self.stats.left_at_shutdown.store(left, Ordering::Relaxed);
        let s = &self.stats;
        let (events, alarms) = (s.events_acked.load(Ordering::Relaxed), s.alarms_acked.load(Ordering::Relaxed));
        let dropped = s.dropped.load(Ordering::Relaxed);
        if left == 0 {
            info!(events, alarms, dropped, "NATS publisher stopped: everything queued was delivered");
        } else {
            warn!(
                left,
                events,
                alarms,
                dropped,
                flush_ms = flush.as_millis() as u64,
                "NATS publisher stopped: {left} messages left undelivered after the flush timeout"
            );
        }
        left
    }
}

fn subjects(prefix: &str, ids: &[String]) -> Vec<Subjects> {
    let mut seen = std::collections::HashMap::new();
    ids.iter()
        .map(|id| {
            let token = subject_token(id);
            if let Some(other) = seen.insert(token.clone(), id.clone()) {
                warn!(a = %other, b = %id, %token, "two intersections share a NATS subject token: tell them apart by the body's intersection");
            }
            Subjects {
                id: id.clone(),
                events: format!("{prefix}.{token}.events"),
                alarms: format!("{prefix}.{token}.alarms"),
                measures: format!("{prefix}.{token}.measures"),
                state: format!("{prefix}.{token}.state"),
            }
        })
        .collect()
}

/// An intersection id as one subject token: ids may hold '.', which
/// separates NATS tokens, so it becomes '_'.
pub fn subject_token(id: &str) -> String {
    let token = id.replace('.', "_");
    debug_assert!(is_subject_token(&token) || token.is_empty());
    token
}

/// Hands emergency routes over between daemons (`docs/emergency.md`):
/// `routes` publishes its routes' other stops through a client of its own
/// on `<prefix>.emergency.<route_id>.{start,vehicle,cancel}`, and a task on
/// the current runtime (the API's) passes every other daemon's messages
/// to it. Core NATS: a vehicle report lost is superseded by the next.
///
/// # Errors
/// The credentials file is unreadable.
pub async fn emergency_handover(cfg: &NatsConfig, routes: Arc<crate::api::emergency::Routes>) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;

    use crate::api::emergency::{Handover, HandoverMessage};

    static DAEMONS: AtomicU64 = AtomicU64::new(0);
    let run = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    // Daemons in one process (tests) differ by their number.
    let origin = format!("{}-{run}-{}", std::process::id(), DAEMONS.fetch_add(1, Ordering::Relaxed));
    let client = client_options(cfg)
        .await?
        .name("greenwave-emergency")
        .connect(cfg.url.as_str())
        .await
        .with_context(|| format!("connecting to {} for emergency routes", cfg.url))?;
    let subject = format!("{}.emergency.*.*", cfg.subject_prefix);
    let mut messages = client.subscribe(subject.clone()).await.with_context(|| format!("subscribing to {subject}"))?;
    routes.hand_over_through(Handover { client, prefix: cfg.subject_prefix.clone(), origin: origin.clone() });
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match serde_json::from_slice::<HandoverMessage>(&message.payload) {
                Ok(m) if m.origin() == origin => {}
                Ok(m) => routes.handed_over(m).await,
                Err(e) => warn!(subject = %message.subject, error = %e, "emergency route handover unreadable"),
            }
        }
    });
    info!(%subject, "emergency routes handed over through NATS");
    Ok(())
}

async fn connect_options(cfg: &NatsConfig, stats: Arc<NatsStats>) -> anyhow::Result<async_nats::ConnectOptions> {
    Ok(client_options(cfg).await?.name("greenwave").event_callback(move |event| {
        let stats = stats.clone();
        async move {
            match event {
                async_nats::Event::Connected => {
                    stats.connected.store(true, Ordering::Relaxed);
                    info!("NATS broker connected");
                }
                async_nats::Event::Disconnected => {
                    stats.connected.store(false, Ordering::Relaxed);
                    warn!("NATS broker disconnected: events wait in the store-and-forward queue");
                }
                // Each failed reconnect attempt is one (the loss itself is said above).
                async_nats::Event::ClientError(e) => tracing::debug!(error = %e, "NATS client"),
                other => info!(event = %other, "NATS client"),
            }
        }
    }))
}

/// Authentication, reconnection and keep-alive, as every connection of
/// this daemon to the broker uses them.
pub(super) async fn client_options(cfg: &NatsConfig) -> anyhow::Result<async_nats::ConnectOptions> {
    let options = match &cfg.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
        NatsAuth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        NatsAuth::Credentials(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("reading the NATS credentials {}", path.display()))?,
    };
    Ok(options
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(Duration::from_secs(10))
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(backoff))
}

/// Exponential from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], with up to 25%
/// jitter so many daemons do not reconnect in step.
fn backoff(attempts: usize) -> Duration {
    let base = BACKOFF_MIN.saturating_mul(1 << attempts.min(10)).min(BACKOFF_MAX);
    let jitter = SmallRng::from_os_rng().random_range(0..=base.as_millis() as u64 / 4);
    base + Duration::from_millis(jitter)
}

struct Run {
    cfg: NatsConfig,
    subjects: Vec<Subjects>,
    board: Arc<SnapshotBoard>,
    outbox: Arc<Outbox>,
    stats: Arc<NatsStats>,
    run_id: u64,
}

impl Run {
    /// Connects, then publishes until stopped and flushed (or the flush
    /// deadline passes); returns the messages left.
    async fn serve(
        self,
        options: async_nats::ConnectOptions,
        mut stopping: watch::Receiver<Option<tokio::time::Instant>>,
    ) -> u64 {
        let client = match options.connect(&self.cfg.url).await {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, url = %self.cfg.url, "NATS client could not start: the city feed is off");
                let _ = stopping.wait_for(Option::is_some).await;
                return self.outbox.len() as u64;
            }
        };
        let js = jetstream::context::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .ack_timeout(ACK_TIMEOUT)
            .max_ack_inflight(WINDOW * 2)
            .build(client.clone());
        let this = Arc::new(self);
        let state = tokio::spawn(this.clone().states(client.clone(), stopping.clone()));
        let sender = this.clone().send(client.clone(), js, stopping.clone());
        tokio::pin!(sender);
        let deadline = async {
            let _ = stopping.wait_for(Option::is_some).await;
            let at = stopping.borrow().unwrap_or_else(tokio::time::Instant::now);
            tokio::time::sleep_until(at).await;
        };
        tokio::select! {
            () = &mut sender => {}
            () = deadline => {}
        }
        state.abort();
        // Hand what the client still buffers to the socket (bounded).
        let _ = tokio::time::timeout(Duration::from_millis(500), client.flush()).await;
        this.outbox.len() as u64
    }

    /// Delivers the queue in windows until stopping and empty.
    async fn send(
        self: Arc<Self>,
        client: async_nats::Client,
        js: jetstream::Context,
        stopping: watch::Receiver<Option<tokio::time::Instant>>,
    ) {
        let mut window = Vec::with_capacity(WINDOW);
        let mut acked = Vec::with_capacity(WINDOW);
        let mut stream_ready = false;
        let mut attempts = 0usize;
        // What is wrong, said once each time it changes (and once when it ends).
        let mut outage: Option<&'static str> = None;
        let mut away_since = None;
        loop {
            if self.outbox.is_empty() {
                if stopping.borrow().is_some() {
                    return;
                }
                // Woken by the fan-out; the timeout also notices a stop.
                let _ = tokio::time::timeout(Duration::from_millis(200), self.outbox.wake.notified()).await;
                continue;
            }
            // While the client reconnects (with its own backoff) nothing is
            // handed to it: the queue here is the one that is bounded and counted.
            if client.connection_state() != async_nats::connection::State::Connected {
                // Said once it lasts a second (not for the first connection's
                // few milliseconds at start, nor a blip).
                let since = *away_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= Duration::from_secs(1) && outage != Some("reconnect") {
                    warn!(queued = self.outbox.len(), "NATS broker away: events wait in the store-and-forward queue");
                    outage = Some("reconnect");
                }
                tokio::time::sleep(BACKOFF_MIN).await;
                continue;
            }
            away_since = None;
            if !stream_ready {
                match self.ensure_stream(&js).await {
                    Ok(()) => stream_ready = true,
                    Err(e) => {
                        if outage != Some("stream") {
                            warn!(error = %e, queued = self.outbox.len(), "NATS: JetStream stream not available: events wait in the store-and-forward queue");
                            outage = Some("stream");
                        }
                        attempts += 1;
                        tokio::time::sleep(backoff(attempts)).await;
                        continue;
                    }
                }
            }
            self.outbox.take_window(WINDOW, &mut window);
            let (ok, stream_missing, first_error) = self.publish_window(&js, &window, &mut acked).await;
            self.outbox.finish_window(&acked);
            if ok == window.len() {
                if let Some(what) = outage.take() {
                    info!(
                        after = what,
                        queued = self.outbox.len(),
                        "NATS broker acking again: delivering the queued events"
                    );
                }
                attempts = 0;
                continue;
            }
            self.stats.retries.fetch_add((window.len() - ok) as u64, Ordering::Relaxed);
            if stream_missing {
                stream_ready = false;
            }
            if outage != Some("publish") {
                warn!(
                    error = first_error.as_deref().unwrap_or("no ack"),
                    queued = self.outbox.len(),
                    "NATS broker not acking: events wait in the store-and-forward queue (retried with backoff)"
                );
                outage = Some("publish");
            }
            attempts += 1;
            tokio::time::sleep(backoff(attempts)).await;
        }
    }

    /// Publishes `window` and waits for every ack; `acked[i]` says whether
    /// item i was stored. Returns how many were, whether the stream was
    /// missing, and the first error.
    async fn publish_window(
        &self,
        js: &jetstream::Context,
        window: &[Item],
        acked: &mut Vec<bool>,
    ) -> (usize, bool, Option<String>) {
        acked.clear();
        acked.resize(window.len(), false);
        let mut first_error = None;
        let mut stream_missing = false;
        let mut pending = Vec::with_capacity(window.len());
        for (i, item) in window.iter().enumerate() {
            let (subject, id, body) = self.message(item);
            let publish = jetstream::message::PublishMessage::build().payload(body.into()).message_id(id);
            match js.send_publish(subject.to_owned(), publish).await {
                Ok(ack) => pending.push((i, ack)),
                Err(e) => {
                    first_error.get_or_insert_with(|| e.to_string());
                    break;
                }
            }
        }
        let mut ok = 0;
        for (i, ack) in pending {
            match ack.await {
                Ok(ack) => {
                    acked[i] = true;
                    ok += 1;
                    let counter = match window[i].kind {
                        Kind::Event(_) => &self.stats.events_acked,
                        Kind::Alarm(_) => &self.stats.alarms_acked,
                        Kind::Measures(_) => &self.stats.measures_acked,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if ack.duplicate {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    stream_missing |= e.kind() == PublishErrorKind::StreamNotFound;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        (ok, stream_missing, first_error)
    }

    /// The subject, message id and JSON body of an item.
    fn message(&self, item: &Item) -> (&str, String, Vec<u8>) {
        let s = &self.subjects[item.intersection];
        let e = match &item.kind {
            Kind::Event(e) | Kind::Alarm(e) => *e,
            Kind::Measures(closed) => {
                let body = serde_json::to_vec(&measures_body(&s.id, self.run_id, closed)).unwrap_or_default();
                let id = format!("{}:{}:measures:{}", s.id, self.run_id, closed.bin.start.as_millis());
                return (&s.measures, id, body);
            }
        };
        let body = json!({
            "intersection": s.id,
            "seq": item.seq,
            "journal_seq": item.journal_seq,
            "run": self.run_id,
            "at_unix_ms": e.at.as_millis(),
            "code": e.code.code(),
            "param": e.param,
            "event": format!("{:?}", e.code),
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        if matches!(item.kind, Kind::Alarm(_)) {
            (&s.alarms, format!("{}:{}:{}:alarm", s.id, self.run_id, item.seq), body)
        } else {
            (&s.events, format!("{}:{}:{}", s.id, self.run_id, item.seq), body)
        }
    }

    /// The stream, created when absent (an existing one is used as it is).
    async fn ensure_stream(&self, js: &jetstream::Context) -> Result<(), String> {
        let prefix = &self.cfg.subject_prefix;
        let ours = [format!("{prefix}.*.events"), format!("{prefix}.*.alarms"), format!("{prefix}.*.measures")];
        let config = stream::Config {
            name: self.cfg.stream.clone(),
            subjects: ours.to_vec(),
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        let existing = js.get_or_create_stream(config).await.map_err(|e| e.to_string())?;
        // A stream made before measures were published (or by hand) gains
        // the subjects it lacks; everything else about it stays.
        let mut config = existing.cached_info().config.clone();
        let covered =
            |s: &String| config.subjects.iter().any(|have| have == s || *have == ">" || *have == format!("{prefix}.>"));
        let missing: Vec<String> = ours.iter().filter(|s| !covered(s)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        info!(stream = %config.name, subjects = ?missing, "NATS: adding the city feed's subjects to the existing stream");
        config.subjects.extend(missing);
        js.update_stream(config).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Every `state_interval`, each intersection's snapshot on core NATS.
    async fn states(
        self: Arc<Self>,
        client: async_nats::Client,
        stopping: watch::Receiver<Option<tokio::time::Instant>>,
    ) {
        let mut every = tokio::time::interval(self.cfg.state_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            if stopping.borrow().is_some() {
                return;
            }
            // Latest wins: nothing is buffered for a broker that is away.
            if client.connection_state() != async_nats::connection::State::Connected {
                continue;
            }
            for (i, s) in self.subjects.iter().enumerate() {
                let Some(snap) = self.board.get(i) else { continue };
                let body = serde_json::to_vec(&state_body(&s.id, &snap)).unwrap_or_default();
                if client.publish(s.state.clone(), body.into()).await.is_ok() {
                    self.stats.states_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The JSON body of a measures message (`docs/nats.md`): one closed
/// 15-minute bin of one intersection.
fn measures_body(id: &str, run: u64, closed: &ClosedBin) -> serde_json::Value {
    let b: &BinMeasures = &closed.bin;
    let phases: Vec<_> = b
        .phases
        .iter()
        .map(|(p, c)| {
            json!({
                "phase": p.number(),
                "volume": c.volume,
                "arrivals": c.arrivals,
                "arrivals_on_green": c.arrivals_on_green,
                "greens": c.greens,
                "split_failures": c.split_failures,
                "gap_outs": c.gap_outs,
                "max_outs": c.max_outs,
                "force_offs": c.force_offs,
                "ped_actuations": c.ped_actuations,
                "ped_walks": c.ped_walks,
                "ped_waits": c.ped_waits,
                "ped_delay_ms": c.ped_delay_ms,
                "arrivals_on_red": c.arrivals_on_red,
                "approach_delay_ms": c.approach_delay_ms,
                "priority_requests": c.priority_requests,
                "priority_services": c.priority_services,
            })
        })
        .collect();
    let lanes: Vec<_> = b.lanes.iter().map(|l| json!({"detector": l.detector.number(), "volume": l.volume})).collect();
    let preempts: Vec<_> = b
        .preempts
        .iter()
        .map(|(input, c)| {
            json!({
                "input": input,
                "requests": c.requests,
                "services": c.services,
                "input_on_ms": c.input_on_ms,
                "dwells": c.dwells,
                "dwell_ms": c.dwell_ms,
            })
        })
        .collect();
    json!({
        "intersection": id,
        "run": run,
        "bin_start_unix_ms": b.start.as_millis(),
        "bin_end_unix_ms": b.start.as_millis() + BIN.as_millis(),
        "counted_from_unix_ms": closed.counted_from.as_millis(),
        "phases": phases,
        "lanes": lanes,
        "preempts": preempts,
    })
}

/// The JSON body of a state message (`docs/nats.md`).
pub fn state_body(id: &str, s: &Snapshot) -> serde_json::Value {
    let (unit, flash_reason) = match s.unit {
        UnitState::Run => ("run", None),
        UnitState::AllRed { .. } => ("all_red", None),
        UnitState::Flash { reason, .. } => ("flash", Some(snake(&format!("{reason:?}")))),
    };
    let rings: Vec<_> = s.rings[..usize::from(s.ring_count)]
        .iter()
        .map(|r| {
            json!({
                "phase": r.phase.map(|p| p.number()),
                "interval": interval_word(r.interval),
                "elapsed_ms": r.elapsed.as_millis(),
                "next": r.next.map(|p| p.number()),
            })
        })
        .collect();
    let detectors = &s.detectors[..usize::from(s.detector_count)];
    let phases = |set: PhaseSet| set.iter().map(|p| p.number()).collect::<Vec<_>>();
    json!({
        "intersection": id,
        "at_unix_ms": s.at.as_millis(),
        "unit": unit,
        "flash_reason": flash_reason,
        "mode": mode_word(s.mode),
        "plan": s.plan,
        "plan_mode": plan_mode_word(s.plan_mode),
        "cycle_ms": s.cycle.as_millis(),
        "cycle_time_ms": s.cycle_time.map(|t| t.as_millis()),
        "offset_ms": s.offset.as_millis(),
        "rings": rings,
        "vehicle_calls": phases(s.vehicle_calls),
        "ped_calls": phases(s.ped_calls),
        "holds": phases(s.holds),
        "detectors_occupied": detectors.iter().filter(|d| d.presence).map(|d| d.channel).collect::<Vec<_>>(),
        "detectors_faulted": detectors.iter().filter(|d| d.fault.is_some()).map(|d| d.channel).collect::<Vec<_>>(),
        "preempt_input": s.preempt.map(|p| p.input),
        "config_version": s.config_version,
    })
}

fn interval_word(i: Interval) -> &'static str {
    match i {
        Interval::Idle => "idle",
        Interval::Green => "green",
        Interval::Yellow => "yellow",
        Interval::RedClear => "red_clear",
    }
}

fn mode_word(m: OperatingMode) -> &'static str {
    crate::api::versions::mode_word(m)
}

fn plan_mode_word(m: PlanMode) -> String {
    snake(&format!("{m:?}"))
}

/// `CabinetLinkLost` → `cabinet_link_lost`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Instant;

    fn ev(ms: u64, code: EventCode) -> Event {
        Event { at: Instant::from_millis(ms), code, param: 2 }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_not_in_flight_and_counts_them() {
        let stats = Arc::new(NatsStats::default());
        let out = Outbox::new(2, 2, stats.clone());
        let g = |k: u64| ev(k, EventCode::PhaseBeginGreen);
        out.push_batch(&[(0, g(1)), (1, g(2))], 10);
        let mut window = Vec::new();
        out.take_window(2, &mut window);
        assert_eq!(
            window.iter().map(|i| (i.intersection, i.seq, i.journal_seq)).collect::<Vec<_>>(),
            [(0, 1, 10), (1, 1, 11)]
        );
        // Three more while both are in flight: two wait, the third pushes
        // out the oldest waiting one (intersection 0, seq 2).
        out.push_batch(&[(0, g(3)), (0, g(4)), (0, g(5))], 12);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(out.len(), 4);
        // The first of the window acked, the second not: it stays first.
        out.finish_window(&[true, false]);
        out.take_window(10, &mut window);
        assert_eq!(window.iter().map(|i| (i.intersection, i.seq)).collect::<Vec<_>>(), [(1, 1), (0, 3), (0, 4)]);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 3);
        assert_eq!(snake("CabinetLinkLost"), "cabinet_link_lost");
    }

    #[test]
    fn alarms_are_queued_twice_with_the_same_number() {
        let stats = Arc::new(NatsStats::default());
        let out = Outbox::new(1, 10, stats);
        out.push_batch(&[(0, ev(1, EventCode::AlarmOn)), (0, ev(2, EventCode::DetectorOn))], 1);
        let mut window = Vec::new();
        out.take_window(10, &mut window);
        let (on, det) = (ev(1, EventCode::AlarmOn), ev(2, EventCode::DetectorOn));
        assert_eq!(
            window.iter().map(|i| (i.seq, i.kind.clone())).collect::<Vec<_>>(),
            [(1, Kind::Event(on)), (1, Kind::Alarm(on)), (2, Kind::Event(det))]
        );
    }

    /// A closed bin is queued behind the events before it, under the same
    /// bound, and published on the measures subject with its bin in the id.
    #[test]
    fn measures_queue_behind_events_under_the_same_bound() {
        use crate::api::measures::Measures;
        let spec = crate::config::load_intersection_str("t.toml", include_str!("../../controllers/elm-and-oak.toml"))
            .expect("shipped file is valid")
            .0
            .spec;
        let m = Measures::new([&spec]);
        let q = BIN.as_millis();
        m.record(&[(0, ev(q + 100, EventCode::DetectorOn)), (0, ev(2 * q, EventCode::DetectorOff))]);
        let mut closed = Vec::new();
        m.close_bins(Instant::from_millis(2 * q), &mut closed);
        let stats = Arc::new(NatsStats::default());
        let out = Outbox::new(1, 2, stats.clone());
        out.push_batch(&[(0, ev(1, EventCode::DetectorOn)), (0, ev(2, EventCode::DetectorOff))], 1);
        out.push_measures(closed);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1, "the bound holds for measures too");
        let mut window = Vec::new();
        out.take_window(10, &mut window);
        let Kind::Measures(bin) = &window[1].kind else { panic!("measures last: {window:?}") };
        let run = Run {
            cfg: NatsConfig::default(),
            subjects: subjects("gw", &["a.b".into()]),
            board: SnapshotBoard::new(1),
            outbox: out.into(),
            stats,
            run_id: 7,
        };
        let (subject, id, body) = run.message(&window[1]);
        assert_eq!((subject, id.as_str()), ("gw.a_b.measures", format!("a.b:7:measures:{q}").as_str()));
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["bin_start_unix_ms"], q);
        assert_eq!(body["bin_end_unix_ms"], 2 * q);
        assert_eq!(body["counted_from_unix_ms"], q + 100);
        assert_eq!(body["lanes"][1], json!({"detector": 2, "volume": 1}));
        assert_eq!(body["phases"][0]["phase"], 2);
        assert_eq!(body["phases"][0]["volume"], 1);
        assert_eq!(bin.bin.start.as_millis(), q);
    }

    #[test]
    fn the_alarm_codes_are_the_alarm_events() {
        for code in [
            EventCode::DetectorRestored,
            EventCode::DetectorFaultOther,
            EventCode::DetectorFaultWatchdog,
            EventCode::DetectorFaultOpenLoop,
            EventCode::DetectorFaultShortedLoop,
            EventCode::DetectorFaultExcessiveChange,
            EventCode::UnitFlashStatusChange,
            EventCode::UnitAlarmStatusChange,
            EventCode::AlarmOn,
            EventCode::AlarmOff,
        ] {
            assert!(is_alarm(code), "{code:?}");
        }
        assert!(!is_alarm(EventCode::DetectorOn));
        assert!(!is_alarm(EventCode::PhaseBeginGreen));
    }

    #[test]
    fn ids_with_dots_become_one_subject_token() {
        assert_eq!(subject_token("elm-and-oak"), "elm-and-oak");
        assert_eq!(subject_token("route.9_a"), "route_9_a");
        let s = subjects("city.gw", &["a.b".into()]);
        assert_eq!(s[0].events, "city.gw.a_b.events");
        assert_eq!(s[0].state, "city.gw.a_b.state");
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        assert!(backoff(0) >= BACKOFF_MIN && backoff(0) <= BACKOFF_MIN * 5 / 4);
        assert!(backoff(30) >= BACKOFF_MAX && backoff(30) <= BACKOFF_MAX * 5 / 4);
    }
}
