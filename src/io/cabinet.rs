//! The cabinet client: one tokio task per Modbus cabinet.
//!
//! # A tick, in real time
//! The engine ticks on whole multiples of the tick (see [`crate::engine`]).
//! For the tick due at `D` the task
//! 1. reads the inputs at `D - read_ahead` (one FC04 read for the default
//!    map), turns them into an [`InputFrame`] (volume counters diffed) and
//!    hands it to the engine with `try_send` (never blocking it);
//! 2. at `D + 1 ms` takes the engine's newest output frame with `try_recv`
//!    (if it is not out yet, waiting for the tick pulse: one task watches
//!    the engine's tick counter and wakes every waiting cabinet task) and
//!    writes it with the heartbeat, requested mode and flash reason (one
//!    FC16 write).
//!
//! The heartbeat only moves when the engine produced a new frame, so a
//! stuck control thread stops it and the cabinet's watchdog flashes. It is
//! one count for the life of the task (the process), +1 per frame the
//! cabinet accepts: a reconnection continues it, so a cabinet never sees it
//! jump back (which a watchdog may take for a controller restart).
//!
//! # One master
//! Just before each write the task reads the heartbeat register back
//! (FC03, one register) and writes only if it holds what this daemon last
//! wrote; otherwise another master writes the cabinet and the task stops
//! writing until that one stops ([`super::one_master`]). The engine hears
//! of it through the input frames (`CabinetStatus::second_master`: flash
//! and alarm); the task logs each episode's start and end. Real time only:
//! a lockstep simulator is paced by this daemon's acknowledgements.
//!
//! # Faults
//! Every call runs under `request_timeout` (tokio-modbus has none of its
//! own). A Modbus exception (the cabinet answered "no") is counted and
//! logged; the link stays up but the inputs are not refreshed, so a cabinet
//! that keeps refusing is flashed by the engine's staleness check after
//! `link_timeout`. A transport error or a garbled answer drops the
//! connection and the task reconnects with jittered exponential backoff;
//! so does a timeout on Modbus TCP (a late answer on a new connection
//! cannot be taken for the next request's). On RTU framing a new
//! connection does not keep the late answer out (a serial port reopened
//! still receives it), so a timeout keeps the line and drains it
//! ([`RtuLine`]: answers are matched to requests), and the line is only
//! dropped and re-made when nothing at all has answered for
//! `link_timeout`. While no inputs reach the engine, after `link_timeout`
//! the intersection flashes (cabinet link lost), and when inputs resume it
//! restarts through its start-up sequence. Volume counters are
//! re-baselined on every connection, so nothing is counted twice.
//!
//! # Lockstep (`clock = "cabinet"`)
//! The task reads the inputs with the simulated time `T`, hands them over,
//! publishes `T` to the engine's [`CabinetClock`](crate::engine::clock::CabinetClock),
//! waits for the engine's frame for `T` and writes it with the step
//! acknowledgement `T`; the simulator then advances.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio_modbus::Slave;
use tokio_modbus::client::{Client, Context, Reader, Writer};
use tracing::{debug, error, info, warn};

use super::error::{CabinetError, Request};
use super::one_master::{Look, OneMaster};
use super::registers::{
    CounterDiff, Fetched, ImplausibleStep, InputImage, OutputImage, apply_camera_queues, plan_reads, plan_writes,
};
use super::rtu::{MIN_GAP, RtuLine, inter_frame_gap};
use crate::config::registers::{Block, RegisterMap, SIM_TIME_LEN};
use crate::config::{ModbusCabinet, ModbusTransport, OneMasterCheck, Parity, VolumeSource};
use crate::core::detector::COUNTER_FAULT_HOLD;
use crate::core::{FrameAck, InputFrame, Instant, MAX_DETECTORS, PhaseSet, Span};
use crate::engine::OutputMsg;
use crate::engine::clock::{CabinetTime, Clock, SystemClock};
use crate::engine::latency::HistogramBounds;

/// Round-trip times, 1 µs to 10 s at 2 significant digits: about 17 KB per
/// cabinet (3 digits to 60 s took 130 KB, a third of the RSS at 1,000
/// cabinets).
pub const RTT_BOUNDS: HistogramBounds = HistogramBounds::new(1, 10_000_000, 2);

/// Live counters of one cabinet link (atomics: read them any time).
#[derive(Debug)]
pub struct CabinetStats {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub timeouts: AtomicU64,
    pub exceptions: AtomicU64,
    pub transport_errors: AtomicU64,
    /// RTU frames discarded, not taken for an answer: late answers, and
    /// frames that did not match the request waited on.
    pub discarded_answers: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Input frames the engine's channel had no room for.
    pub inputs_dropped: AtomicU64,
    /// Connections lost (transport error, timeout, garbled answer).
    pub links_lost: AtomicU64,
    /// Counter steps not counted because they cannot be true
    /// ([`CounterDiff`]).
    pub counter_faults: AtomicU64,
    /// Writes by another master seen in the heartbeat register, and the
    /// episodes they made (`super::one_master`).
    pub foreign_writes: AtomicU64,
    pub second_master_episodes: AtomicU64,
    /// Exchanges that ended after the next one was due, and ticks skipped
    /// because of them ([`SlowCabinet`]).
    pub late_exchanges: AtomicU64,
    pub skipped_ticks: AtomicU64,
    pub link_up: AtomicBool,
    /// Round-trip time of each successful request, µs.
    pub rtt_us: Mutex<Histogram<u64>>,
}

impl Default for CabinetStats {
    fn default() -> Self {
        CabinetStats {
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            exceptions: AtomicU64::new(0),
            transport_errors: AtomicU64::new(0),
            discarded_answers: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            inputs_dropped: AtomicU64::new(0),
            links_lost: AtomicU64::new(0),
            counter_faults: AtomicU64::new(0),
            foreign_writes: AtomicU64::new(0),
            second_master_episodes: AtomicU64::new(0),
            late_exchanges: AtomicU64::new(0),
            skipped_ticks: AtomicU64::new(0),
            link_up: AtomicBool::new(false),
            rtt_us: Mutex::new(RTT_BOUNDS.histogram()),
        }
    }
}

impl CabinetStats {
    fn rtt(&self, d: Duration) {
        if let Ok(mut h) = self.rtt_us.lock() {
            h.saturating_record((d.as_micros() as u64).max(1));
        }
    }
}

/// Everything one cabinet task needs.
#[derive(Debug)]
pub struct CabinetTask {
    /// Index of the intersection in the engine.
    pub intersection: usize,
    /// The intersection id, for logs.
    pub id: String,
    pub cabinet: ModbusCabinet,
    pub tick: Span,
    pub clock: SystemClock,
    pub inputs: Sender<(usize, InputFrame)>,
    pub outputs: Receiver<OutputMsg>,
    pub stats: Arc<CabinetStats>,
    /// Lockstep: the engine's clock and this cabinet's slot in it.
    pub lockstep: Option<(CabinetTime, usize)>,
    /// Set when the daemon stops: give up reconnecting.
    pub stop: watch::Receiver<bool>,
    /// Notified after each engine tick (see `CabinetPlan::spawn`).
    pub pulse: Arc<tokio::sync::Notify>,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The engine has stopped and its last frame was written (or could not be).
    Stopped,
    /// The link failed; reconnect.
    Lost(CabinetError),
}

/// Reconnect delays: exponential from `min` to `max`, each drawn uniformly
/// from the upper half of its step ("equal jitter"), so cabinets that lost
/// their link together do not all come back in the same millisecond.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: SmallRng,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Backoff { min, max: max.max(min), attempt: 0, rng: SmallRng::seed_from_u64(seed) }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay after a link that was up for `lived` ends. Only a link that
    /// held for `steady` starts the delays over: a cabinet that accepts the
    /// connection and drops it at once (a crashing gateway, a second master's
    /// fight) is retried ever more slowly, as one that refuses it is.
    pub fn after_link(&mut self, lived: Duration, steady: Duration) -> Duration {
        if lived >= steady {
            self.reset();
        }
        self.next_delay()
    }

    pub fn next_delay(&mut self) -> Duration {
        let step = self.min.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + Duration::from_nanos(self.rng.random_range(0..=half.as_nanos() as u64))
    }
}

fn dur(s: Span) -> Duration {
    Duration::from_millis(s.as_millis())
}

/// A connected cabinet: tokio-modbus's client on Modbus TCP, ours on RTU
/// framing (see [`RtuLine`] for why).
enum Link {
    /// `closed` is set when the cabinet closed the connection (see
    /// [`EofWatch`]).
    Tcp {
        ctx: Context,
        closed: Arc<AtomicBool>,
    },
    Rtu(RtuLine),
}

impl Link {
    async fn read_input_registers(&mut self, start: u16, count: u16) -> tokio_modbus::Result<Vec<u16>> {
        match self {
            Link::Tcp { ctx, closed } => said_closed(ctx.read_input_registers(start, count).await, closed),
            Link::Rtu(line) => line.read_input_registers(start, count).await,
        }
    }

    async fn read_holding_registers(&mut self, start: u16, count: u16) -> tokio_modbus::Result<Vec<u16>> {
        match self {
            Link::Tcp { ctx, closed } => said_closed(ctx.read_holding_registers(start, count).await, closed),
            Link::Rtu(line) => line.read_holding_registers(start, count).await,
        }
    }

    async fn write_multiple_registers(&mut self, start: u16, words: &[u16]) -> tokio_modbus::Result<()> {
        match self {
            Link::Tcp { ctx, closed } => said_closed(ctx.write_multiple_registers(start, words).await, closed),
            Link::Rtu(line) => line.write_multiple_registers(start, words).await,
        }
    }

    async fn disconnect(&mut self) {
        let _ = match self {
            Link::Tcp { ctx, .. } => ctx.disconnect().await,
            Link::Rtu(line) => line.shutdown().await,
        };
    }
}

/// A transport error after the cabinet closed the connection, said as
/// such: tokio-modbus reports a closed TCP stream as the thread's last OS
/// error, a stale one ("Operation now in progress" for a killed cabinet).
fn said_closed<T>(result: tokio_modbus::Result<T>, closed: &AtomicBool) -> tokio_modbus::Result<T> {
    match result {
        Err(tokio_modbus::Error::Transport(_)) if closed.load(Ordering::Relaxed) => {
            Err(tokio_modbus::Error::Transport(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the cabinet closed the connection",
            )))
        }
        other => other,
    }
}

/// A TCP stream that notes when the cabinet closed it (a read of 0 bytes).
#[derive(Debug)]
struct EofWatch {
    inner: tokio::net::TcpStream,
    closed: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for EofWatch {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, std::task::Poll::Ready(Ok(()))) && buf.filled().len() == before && buf.remaining() > 0 {
            self.closed.store(true, Ordering::Relaxed);
        }
        poll
    }
}

impl tokio::io::AsyncWrite for EofWatch {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connect (or open the serial port); an RTU line counts the frames it
/// discards in `stats`.
async fn connect(c: &ModbusCabinet, stats: &Arc<CabinetStats>) -> Result<Link, CabinetError> {
    let tcp = |address: String| async move {
        let stream =
            tokio::net::TcpStream::connect(&address).await.map_err(|error| CabinetError::Connect { address, error })?;
        // Requests are small and latency matters: no Nagle delay.
        let _ = stream.set_nodelay(true);
        Ok::<_, CabinetError>(stream)
    };
    let fut = async {
        match &c.transport {
            ModbusTransport::Tcp { address } => {
                let stream = tcp(address.clone()).await?;
                let closed = Arc::new(AtomicBool::new(false));
                let stream = EofWatch { inner: stream, closed: closed.clone() };
                Ok(Link::Tcp { ctx: tokio_modbus::client::tcp::attach_slave(stream, Slave(c.unit_id)), closed })
            }
            ModbusTransport::RtuOverTcp { address } => {
                let stream = tcp(address.clone()).await?;
                Ok(Link::Rtu(RtuLine::new(Box::new(stream), c.unit_id, MIN_GAP, stats.clone())))
            }
            ModbusTransport::Rtu { path, baud, parity, data_bits, stop_bits } => {
                use tokio_serial::SerialPortBuilderExt;
                let port = tokio_serial::new(path, *baud)
                    .parity(match parity {
                        Parity::None => tokio_serial::Parity::None,
                        Parity::Even => tokio_serial::Parity::Even,
                        Parity::Odd => tokio_serial::Parity::Odd,
                    })
                    .data_bits(match data_bits {
                        5 => tokio_serial::DataBits::Five,
                        6 => tokio_serial::DataBits::Six,
                        7 => tokio_serial::DataBits::Seven,
                        _ => tokio_serial::DataBits::Eight,
                    })
                    .stop_bits(if *stop_bits == 2 { tokio_serial::StopBits::Two } else { tokio_serial::StopBits::One })
                    .open_native_async()
                    .map_err(|error| CabinetError::OpenSerial { path: path.clone(), error })?;
                let gap = inter_frame_gap(*baud, *parity, *data_bits, *stop_bits);
                Ok(Link::Rtu(RtuLine::new(Box::new(port), c.unit_id, gap, stats.clone())))
            }
        }
    };
    match tokio::time::timeout(dur(c.connect_timeout), fut).await {
        Ok(r) => r,
        Err(_) => Err(CabinetError::ConnectTimeout { after: c.connect_timeout }),
    }
}

/// Where the cabinet is, for logs.
pub fn describe(t: &ModbusTransport) -> String {
    match t {
        ModbusTransport::Tcp { address } => format!("modbus-tcp {address}"),
        ModbusTransport::RtuOverTcp { address } => format!("modbus-rtu-over-tcp {address}"),
        ModbusTransport::Rtu { path, baud, .. } => format!("modbus-rtu {path} @ {baud}"),
    }
}

/// Counter fault episodes of one cabinet, per detector channel: when its
/// counter last stepped in a way that cannot be true. The task logs an
/// episode when it begins and when it ends (no such step for
/// [`COUNTER_FAULT_HOLD`], when the controller restores the detector), not
/// per read; every step is counted in [`CabinetStats::counter_faults`].
/// Kept across reconnects, so a flapping link does not log an episode again.
#[derive(Debug)]
struct CounterAlarms {
    last: [Option<Instant>; MAX_DETECTORS],
}

impl Default for CounterAlarms {
    fn default() -> Self {
        CounterAlarms { last: [None; MAX_DETECTORS] }
    }
}

impl CounterAlarms {
    /// The steps of a read at `at` that were not counted.
    fn note(&mut self, id: &str, at: Instant, steps: &[ImplausibleStep], stats: &CabinetStats) {
        for step in steps {
            stats.counter_faults.fetch_add(1, Ordering::Relaxed);
            let last = &mut self.last[step.channel];
            if last.is_none() {
                warn!(
                    intersection = %id,
                    "{step}: not counted, a counter fault (a vehicle detector on the channel reports Indiana 88 until its counter has been plausible for {COUNTER_FAULT_HOLD})"
                );
            }
            *last = Some(at);
        }
        for (ch, last) in self.last.iter_mut().enumerate() {
            if last.is_some_and(|t| at.since(t) >= COUNTER_FAULT_HOLD) {
                *last = None;
                info!(intersection = %id, channel = ch + 1, "counter plausible again for {COUNTER_FAULT_HOLD}: counter fault over");
            }
        }
    }
}

/// One connection's worth of state.
/// A cabinet too slow for the tick: an exchange (read, read-back, write)
/// that ends after the next tick's read is due, or a tick skipped because
/// of one. An episode runs from the first such exchange until
/// [`SLOW_CLEARS_AFTER`] on time in a row; it is logged once when it starts
/// (with how late) and once when it ends (with its counts), and raised as
/// alarm 200/201 with parameter 5 through [`crate::core::CabinetStatus::slow`].
/// Nothing is shortened meanwhile: the controller holds every interval
/// until the cabinet confirms it (`docs/modbus.md`).
#[derive(Debug, Default)]
struct SlowCabinet {
    episode: Option<SlowEpisode>,
}

#[derive(Debug)]
struct SlowEpisode {
    since: std::time::Instant,
    late: u64,
    skipped: u64,
    worst: Duration,
    on_time: u32,
}

/// On-time exchanges in a row that end a slow episode (10 s at 100 ms).
const SLOW_CLEARS_AFTER: u32 = 100;

impl SlowCabinet {
    fn active(&self) -> bool {
        self.episode.is_some()
    }

    /// One exchange ended `late` after the next was due (`None`: in time);
    /// `skipped` ticks were given up for it.
    fn exchanged(&mut self, id: &str, tick: Span, late: Option<Duration>, skipped: u64, stats: &CabinetStats) {
        if late.is_none() && skipped == 0 {
            if let Some(e) = &mut self.episode {
                e.on_time += 1;
                if e.on_time >= SLOW_CLEARS_AFTER {
                    info!(
                        intersection = %id,
                        late_exchanges = e.late,
                        skipped_ticks = e.skipped,
                        worst_ms = e.worst.as_millis() as u64,
                        "cabinet keeping time again after {:.1} s",
                        e.since.elapsed().as_secs_f64()
                    );
                    self.episode = None;
                }
            }
            return;
        }
        let late = late.unwrap_or_default();
        stats.late_exchanges.fetch_add(1, Ordering::Relaxed);
        stats.skipped_ticks.fetch_add(skipped, Ordering::Relaxed);
        match &mut self.episode {
            Some(e) => {
                e.late += 1;
                e.skipped += skipped;
                e.worst = e.worst.max(late);
                e.on_time = 0;
            }
            None => {
                warn!(
                    intersection = %id,
                    late_ms = late.as_millis() as u64,
                    skipped_ticks = skipped,
                    "cabinet too slow for the {tick} tick: an exchange ended after the next was due; \
                     intervals are held until it confirms them (alarm 200/5)"
                );
                self.episode =
                    Some(SlowEpisode { since: std::time::Instant::now(), late: 1, skipped, worst: late, on_time: 0 });
            }
        }
    }
}

struct Session<'a> {
    task: &'a mut CabinetTask,
    alarms: &'a mut CounterAlarms,
    slow: &'a mut SlowCabinet,
    /// The heartbeat of the last frame the cabinet accepted, and the
    /// one-master watch: both outlive the connection (see the module docs).
    heartbeat: &'a mut u16,
    master: &'a mut OneMaster,
    /// The one-master check reads the heartbeat back on this connection.
    read_back: bool,
    /// Consecutive read-backs the cabinet refused (logged on the first and
    /// on recovery; apart from `exceptions`: refusing it leaves the inputs
    /// fresh).
    read_back_refused: u64,
    link: Link,
    map: RegisterMap,
    reads: Vec<Block>,
    writes: Vec<Block>,
    zones: Vec<usize>,
    counters: CounterDiff,
    /// Sequence of the last frame written, and the newest frame received.
    written_seq: Option<u64>,
    latest: Option<OutputMsg>,
    /// The newest frame the cabinet accepted, and when (handed to the
    /// engine with every input frame: the controller times minimums from it).
    confirmed: Option<FrameAck>,
    /// Consecutive exceptions (logged on the first and on recovery).
    exceptions: u64,
    /// An RTU line's current run of timeouts (logged on the first and on
    /// recovery).
    silence: Option<Silence>,
    /// When the cabinet last answered (or the link was made).
    answered_at: std::time::Instant,
}

/// A run of timeouts on an RTU line.
#[derive(Clone, Copy, Debug)]
struct Silence {
    timeouts: u64,
    /// `discarded_answers` when it began.
    discarded_before: u64,
}

impl Session<'_> {
    /// One request under the request timeout. `Ok(None)`: no answer taken,
    /// but the link stays (the cabinet refused, or an RTU line timed out
    /// and was drained).
    async fn call<T, F>(&mut self, request: Request, f: F) -> Result<Option<T>, CabinetError>
    where
        F: AsyncFnOnce(&mut Link) -> tokio_modbus::Result<T>,
    {
        let started = std::time::Instant::now();
        let timeout = dur(self.task.cabinet.request_timeout);
        match tokio::time::timeout(timeout, f(&mut self.link)).await {
            Ok(Ok(Ok(v))) => {
                self.task.stats.rtt(started.elapsed());
                self.answered();
                let refused = std::mem::take(self.refusals(request));
                if refused > 0 {
                    info!(intersection = %self.task.id, exceptions = refused, "cabinet answering again ({request})");
                }
                Ok(Some(v))
            }
            Ok(Ok(Err(code))) => {
                self.task.stats.exceptions.fetch_add(1, Ordering::Relaxed);
                self.answered();
                let e = CabinetError::Exception { request, code };
                let run = self.refusals(request);
                *run += 1;
                if *run == 1 {
                    let meanwhile = match request {
                        Request::ReadHoldings(_) => {
                            "another master cannot be seen while it refuses; a cabinet that does not read its holding registers back needs one_master = \"off\""
                        }
                        Request::ReadInputs(_) | Request::WriteHoldings(_) => "inputs not refreshed while it refuses",
                    };
                    warn!(intersection = %self.task.id, "cabinet refused {e} ({meanwhile})");
                } else {
                    debug!(intersection = %self.task.id, "cabinet refused {request}: {code:?}");
                }
                Ok(None)
            }
            Ok(Err(error)) => {
                self.task.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                Err(CabinetError::Transport { request, error })
            }
            Err(_) => {
                self.task.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                let e = CabinetError::Timeout { request, after: self.task.cabinet.request_timeout };
                let Link::Rtu(line) = &mut self.link else { return Err(e) };
                if self.answered_at.elapsed() >= dur(self.task.cabinet.link_timeout) {
                    return Err(e);
                }
                let discarded_before = self.task.stats.discarded_answers.load(Ordering::Relaxed);
                // The late answer may still come: the next request must not
                // be sent before it (bounded by one more request timeout).
                let discarded = match line.drain(timeout).await {
                    Ok(n) => n,
                    Err(error) => {
                        self.task.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                        return Err(CabinetError::Transport { request, error: error.into() });
                    }
                };
                match &mut self.silence {
                    Some(s) => {
                        s.timeouts += 1;
                        debug!(intersection = %self.task.id, discarded, "{e}");
                    }
                    None => {
                        self.silence = Some(Silence { timeouts: 1, discarded_before });
                        warn!(
                            intersection = %self.task.id,
                            "cabinet silent: {e}; the line was drained before the next request ({discarded} late answers discarded); inputs are not refreshed until it answers"
                        );
                    }
                }
                Ok(None)
            }
        }
    }

    /// The run of refusals `request` belongs to: the heartbeat read-back's
    /// is its own (refusing it leaves the inputs fresh).
    fn refusals(&mut self, request: Request) -> &mut u64 {
        match request {
            Request::ReadHoldings(_) => &mut self.read_back_refused,
            Request::ReadInputs(_) | Request::WriteHoldings(_) => &mut self.exceptions,
        }
    }

    /// The cabinet answered (or refused): an RTU line's timeouts are over.
    fn answered(&mut self) {
        self.answered_at = std::time::Instant::now();
        if let Some(s) = self.silence.take() {
            let discarded = self.task.stats.discarded_answers.load(Ordering::Relaxed) - s.discarded_before;
            info!(intersection = %self.task.id, timeouts = s.timeouts, discarded, "cabinet answering again");
        }
    }

    /// Read the inputs. `Ok(None)` when the cabinet refused (exception) or
    /// did not answer on an RTU line.
    async fn read(&mut self) -> Result<Option<InputImage>, CabinetError> {
        let mut fetched = Vec::with_capacity(self.reads.len());
        for b in self.reads.clone() {
            let request = Request::ReadInputs(b);
            match self
                .call(request, async move |link: &mut Link| link.read_input_registers(b.start, b.len).await)
                .await?
            {
                Some(words) if words.len() == b.len as usize => fetched.push((b, words)),
                Some(words) => return Err(CabinetError::ShortAnswer { request, got: words.len() }),
                None => return Ok(None),
            }
        }
        self.task.stats.reads.fetch_add(1, Ordering::Relaxed);
        Ok(Some(InputImage::decode(&self.map, &Fetched { reads: &fetched })))
    }

    /// The engine's frame from the inputs read at `at` (the cabinet's
    /// simulated time in lockstep: its counters count in that time).
    fn frame(&mut self, img: &InputImage, at: Instant) -> InputFrame {
        let mut frame = InputFrame {
            presence: img.presence,
            cabinet: img.cabinet_status(),
            preempt: (img.preempt & 0xff) as u8,
            priority: PhaseSet::from_bits(img.priority),
            ack: self.confirmed,
            ..InputFrame::default()
        };
        frame.cabinet.second_master = self.master.episode().is_some();
        frame.cabinet.slow = self.slow.active();
        let counters = self.task.cabinet.volume == VolumeSource::Counters;
        let volume_channels = if counters { self.map.volume_channels } else { 0 };
        self.counters.apply(img, at, volume_channels, &self.zones, &mut frame);
        self.alarms.note(&self.task.id, at, self.counters.implausible(), &self.task.stats);
        let mut counted: u64 = if counters && volume_channels >= 64 {
            u64::MAX
        } else if counters {
            (1u64 << volume_channels) - 1
        } else {
            0
        };
        for &ch in &self.zones {
            counted |= 1 << ch;
        }
        frame.counted = counted;
        apply_camera_queues(img, self.map.camera_queue_zones, &self.zones, &mut frame);
        frame
    }

    /// Hand the frame to the engine. A full channel drops it, but not its
    /// vehicles: they are counted again in the next frame, so the
    /// optimizer's flows and the queue estimates lose none (presence and
    /// camera queues are levels: the next frame's are newer anyway).
    fn hand_over(&mut self, frame: InputFrame) {
        if self.task.inputs.try_send((self.task.intersection, frame)).is_err() {
            self.task.stats.inputs_dropped.fetch_add(1, Ordering::Relaxed);
            self.counters.undelivered();
        }
    }

    /// Take the newest frame from the engine. `Err` once the engine is gone
    /// and everything it sent has been taken.
    fn drain(&mut self) -> Result<(), ()> {
        loop {
            match self.task.outputs.try_recv() {
                Ok(m) => self.latest = Some(m),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(()),
            }
        }
    }

    fn fresh(&self) -> Option<OutputMsg> {
        self.latest.filter(|m| Some(m.seq) != self.written_seq)
    }

    /// Write `msg`; once the cabinet has accepted every block of it, it is
    /// confirmed as shown from `shown_at`. A refused block (an exception),
    /// or one an RTU line timed out on, leaves it unconfirmed: the
    /// controller then holds every interval that started in it until a
    /// later frame is accepted.
    async fn write(&mut self, msg: OutputMsg, ack: u64, shown_at: impl Fn() -> Instant) -> Result<(), CabinetError> {
        let beat = self.heartbeat.wrapping_add(1);
        let img = OutputImage::new(msg.frame, msg.flash, beat, ack);
        let mut accepted = true;
        let mut beat_answered = None;
        for b in self.writes.clone() {
            let words = img.words(&self.map, b);
            let answered = self
                .call(Request::WriteHoldings(b), async move |link: &mut Link| {
                    link.write_multiple_registers(b.start, &words).await
                })
                .await?
                .is_some();
            accepted &= answered;
            if b.contains(self.map.heartbeat) {
                beat_answered = Some(answered);
            }
        }
        // A refused write left the register as it was, so the next frame
        // carries this count again: the cabinet sees +1 per frame it
        // accepted. (One whose answer was lost, to a timeout or with the
        // connection, may have taken effect: then the cabinet sees this
        // count twice, never a step back, and the register holds either.)
        match beat_answered {
            Some(true) => {
                *self.heartbeat = beat;
                self.master.accepted(beat);
            }
            Some(false) => self.master.unsure(beat),
            None => {}
        }
        self.written_seq = Some(msg.seq);
        self.task.stats.writes.fetch_add(1, Ordering::Relaxed);
        if accepted {
            self.confirmed = Some(FrameAck { frame: msg.seq, at: shown_at() });
        }
        Ok(())
    }

    /// Whether this daemon may write the cabinet now (no other master).
    fn may_write(&self) -> bool {
        !self.read_back || self.master.may_write()
    }

    /// Read the heartbeat register back and tell the one-master watch
    /// what it holds; log an episode's start and end. No answer (refused,
    /// or an RTU line silent) is no evidence either way: a cabinet that
    /// does not read holding registers back is driven as without the check.
    async fn look_for_other_master(&mut self) -> Result<(), CabinetError> {
        let b = Block::new(self.map.heartbeat, 1);
        let request = Request::ReadHoldings(b);
        let read = self.call(request, async move |link: &mut Link| link.read_holding_registers(b.start, b.len).await);
        let value = match read.await? {
            Some(words) if words.len() == 1 => words[0],
            Some(words) => return Err(CabinetError::ShortAnswer { request, got: words.len() }),
            None => {
                self.master.unseen();
                return Ok(());
            }
        };
        let stats = &self.task.stats;
        match self.master.look(std::time::Instant::now(), value) {
            Look::Baseline | Look::Alone | Look::Continues { moved: false } => {}
            Look::Continues { moved: true } => {
                stats.foreign_writes.fetch_add(1, Ordering::Relaxed);
            }
            Look::Started { expected, found } => {
                stats.foreign_writes.fetch_add(1, Ordering::Relaxed);
                stats.second_master_episodes.fetch_add(1, Ordering::Relaxed);
                warn!(
                    intersection = %self.task.id,
                    "another master writes this cabinet: its heartbeat register went from {expected} to {found}, not written by this daemon; not writing it until the register has been still for {} or more (the intersection flashes, alarm 200/4)",
                    self.task.cabinet.link_timeout
                );
            }
            Look::Ended(e) => info!(
                intersection = %self.task.id,
                foreign_writes = e.foreign_writes,
                "the other master has stopped: {} foreign writes over {:.1} s; writing the cabinet again (the intersection restarts through its start-up sequence, alarm 201/4)",
                e.foreign_writes,
                e.started.elapsed().as_secs_f64()
            ),
        }
        Ok(())
    }

    /// Write the engine's final frame if it is not written yet, and no
    /// other master writes the cabinet.
    async fn finish(&mut self) -> End {
        if self.read_back
            && let Err(e) = self.look_for_other_master().await
        {
            warn!(intersection = %self.task.id, "final frame not written: {e}");
            return End::Stopped;
        }
        if !self.may_write() {
            warn!(intersection = %self.task.id, "final frame not written: another master writes this cabinet");
            return End::Stopped;
        }
        if let Some(m) = self.fresh() {
            let ack = m.at.as_millis();
            if let Err(e) = self.write(m, ack, || m.at).await {
                warn!(intersection = %self.task.id, "final frame not written: {e}");
            } else if m.flash.is_some() {
                info!(intersection = %self.task.id, "final frame written: cabinet in flash");
            }
        }
        End::Stopped
    }

    /// Real time: read before each engine deadline, write after it.
    async fn run_realtime(&mut self) -> End {
        let tick = self.task.tick;
        let tick_d = dur(tick);
        let poll_ticks = self.task.cabinet.poll.map_or(1, |p| (p.as_millis() / tick.as_millis().max(1)).max(1));
        let lead = dur(self.task.cabinet.read_ahead);
        let mut clock = self.task.clock;
        let next_deadline = |clock: &SystemClock| {
            let mut c = *clock;
            let soon = c.now() + Span::from_millis(lead.as_millis() as u64 + 1);
            let d = crate::engine::align_up(soon, tick);
            // Stay in phase with the poll period.
            let k = (d.as_millis() / tick.as_millis().max(1)).div_ceil(poll_ticks) * poll_ticks;
            Instant::from_millis(k * tick.as_millis())
        };
        let mut deadline = next_deadline(&clock);
        loop {
            let at = clock.to_std(deadline);
            tokio::time::sleep_until(tokio::time::Instant::from_std(at.checked_sub(lead).unwrap_or(at))).await;
            match self.read().await {
                Ok(Some(img)) => {
                    let frame = self.frame(&img, clock.now());
                    self.hand_over(frame);
                }
                Ok(None) => {}
                Err(e) => return End::Lost(e),
            }
            // Write the engine's frame for this deadline as soon as it is out.
            tokio::time::sleep_until(tokio::time::Instant::from_std(at + Duration::from_millis(1))).await;
            let give_up = at + tick_d.saturating_mul(poll_ticks as u32) - lead - Duration::from_millis(1);
            let pulse = self.task.pulse.clone();
            loop {
                // Registered before looking, so a tick ending in between
                // still wakes us.
                let notified = pulse.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.drain().is_err() {
                    return self.finish().await;
                }
                if self.latest.is_some_and(|m| m.at >= deadline) || std::time::Instant::now() >= give_up {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
            }
            // Read back right before writing, so a foreign write between
            // our two writes is seen unless it falls within one round trip.
            if self.read_back
                && let Err(e) = self.look_for_other_master().await
            {
                return End::Lost(e);
            }
            // Answered: the heads show it by now, at the latest.
            if let Some(m) = self.fresh()
                && self.may_write()
                && let Err(e) = self
                    .write(m, 0, || {
                        let mut c = clock;
                        c.now()
                    })
                    .await
            {
                return End::Lost(e);
            }
            let period = Span::from_millis(tick.as_millis() * poll_ticks);
            let next_read = clock.to_std(deadline + period).checked_sub(lead);
            let late = next_read.and_then(|due| std::time::Instant::now().checked_duration_since(due));
            deadline += period;
            let mut skipped = 0;
            if late.is_some() {
                // Fell behind (a slow cabinet): skip to the next deadline.
                let next = next_deadline(&clock);
                skipped = next.since(deadline).as_millis() / period.as_millis().max(1);
                deadline = next;
            }
            self.slow.exchanged(&self.task.id, tick, late.filter(|d| !d.is_zero()), skipped, &self.task.stats);
        }
    }

    /// Lockstep: one exchange per simulated step.
    async fn run_lockstep(&mut self, time: CabinetTime, slot: usize) -> End {
        let mut last_t: Option<u64> = None;
        let tick = self.task.tick.as_millis();
        loop {
            if time.is_released() {
                // Stopping: the engine no longer waits for simulated time.
                let _ = self.drain();
                return self.finish().await;
            }
            let img = match self.read().await {
                Ok(Some(img)) => img,
                Ok(None) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                Err(e) => return End::Lost(e),
            };
            if img.sim_time_ms == 0 {
                return End::Lost(CabinetError::NoSimTime);
            }
            if img.sim_step_ms as u64 != tick {
                return End::Lost(CabinetError::StepMismatch { sim_step_ms: img.sim_step_ms, tick_ms: tick });
            }
            let t = img.sim_time_ms;
            if last_t.is_some_and(|l| t <= l) {
                // The simulator waits for other cabinets' acknowledgements.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            last_t = Some(t);
            let frame = self.frame(&img, Instant::from_millis(t));
            self.hand_over(frame);
            time.publish(slot, Instant::from_millis(t));
            // The engine ticks at `t` once every cabinet has published it.
            let outputs = self.task.outputs.clone();
            let got = loop {
                if self.latest.is_some_and(|m| m.at.as_millis() >= t) {
                    break true;
                }
                if time.is_released() {
                    break false;
                }
                let r = tokio::task::block_in_place(|| outputs.recv_timeout(Duration::from_millis(100)));
                match r {
                    Ok(m) => self.latest = Some(m),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return self.finish().await,
                }
            };
            if !got {
                continue;
            }
            if self.drain().is_err() {
                return self.finish().await;
            }
            // Simulated heads show the frame from its own step on.
            if let Some(m) = self.fresh()
                && let Err(e) = self.write(m, t, || m.at).await
            {
                return End::Lost(e);
            }
        }
    }
}

impl CabinetTask {
    /// Run until the daemon stops: connect, exchange every tick, reconnect
    /// with backoff when the link fails.
    pub async fn run(mut self) {
        let where_ = describe(&self.cabinet.transport);
        let mut backoff = Backoff::new(
            dur(self.cabinet.backoff_min),
            dur(self.cabinet.backoff_max),
            self.intersection as u64 ^ 0x9E37_79B9_7F4A_7C15,
        );
        let mut failures = 0u64;
        let mut lost_at: Option<std::time::Instant> = None;
        let mut alarms = CounterAlarms::default();
        let mut slow = SlowCabinet::default();
        // Drawn per process: two daemons started together on one cabinet
        // write different heartbeats (equal ones would read back as their
        // own) and draw different quiet times.
        let mut rng = SmallRng::from_os_rng();
        let mut heartbeat: u16 = rng.random();
        let write_period = dur(self.cabinet.poll.unwrap_or(self.tick).max(self.tick));
        let mut master = OneMaster::new(2 * write_period, dur(self.cabinet.link_timeout), rng);
        loop {
            if *self.stop.borrow() {
                return;
            }
            match connect(&self.cabinet, &self.stats).await {
                Ok(link) => {
                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    self.stats.link_up.store(true, Ordering::Relaxed);
                    match lost_at.take() {
                        None => {
                            info!(intersection = %self.id, cabinet = %where_, unit = self.cabinet.unit_id, "cabinet link up")
                        }
                        Some(t) if t.elapsed() > dur(self.cabinet.link_timeout) => info!(
                            intersection = %self.id,
                            cabinet = %where_,
                            "cabinet link restored after {:.1} s: the intersection restarts through its start-up sequence",
                            t.elapsed().as_secs_f64()
                        ),
                        Some(t) => info!(
                            intersection = %self.id,
                            cabinet = %where_,
                            "cabinet link restored after {} ms (within the link timeout)",
                            t.elapsed().as_millis()
                        ),
                    }
                    failures = 0;
                    let up_at = std::time::Instant::now();
                    let lockstep = self.lockstep.clone();
                    let map = self.cabinet.registers;
                    master.connected();
                    let read_back = self.cabinet.one_master == OneMasterCheck::ReadBack && lockstep.is_none();
                    let mut s = Session {
                        reads: plan_reads(&map.input_items(lockstep.is_some())),
                        writes: plan_writes(&map.output_items(lockstep.is_some())),
                        zones: self.cabinet.camera_zone_channels.iter().map(|c| c.index()).collect(),
                        map,
                        link,
                        counters: CounterDiff::default(),
                        alarms: &mut alarms,
                        slow: &mut slow,
                        heartbeat: &mut heartbeat,
                        master: &mut master,
                        read_back,
                        read_back_refused: 0,
                        written_seq: None,
                        confirmed: None,
                        latest: None,
                        exceptions: 0,
                        silence: None,
                        answered_at: std::time::Instant::now(),
                        task: &mut self,
                    };
                    let end = match lockstep {
                        Some((time, slot)) => s.run_lockstep(time, slot).await,
                        None => s.run_realtime().await,
                    };
                    let mut link = s.link;
                    match end {
                        End::Stopped => {
                            let _ = tokio::time::timeout(Duration::from_millis(200), link.disconnect()).await;
                            return;
                        }
                        End::Lost(reason) => {
                            self.stats.link_up.store(false, Ordering::Relaxed);
                            self.stats.links_lost.fetch_add(1, Ordering::Relaxed);
                            drop(link);
                            lost_at = Some(std::time::Instant::now());
                            let delay = backoff.after_link(up_at.elapsed(), dur(self.cabinet.link_timeout));
                            warn!(
                                intersection = %self.id,
                                cabinet = %where_,
                                "cabinet link lost: {reason}; reconnecting in {} ms (the intersection flashes after {} without inputs)",
                                delay.as_millis(),
                                self.cabinet.link_timeout
                            );
                            if self.sleep_or_stop(delay).await {
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    let delay = backoff.next_delay();
                    if failures == 1 || failures.is_multiple_of(50) {
                        warn!(intersection = %self.id, cabinet = %where_, attempts = failures, "cabinet unreachable: {e}; retrying in {} ms", delay.as_millis());
                    } else {
                        debug!(intersection = %self.id, "cabinet unreachable: {e}");
                    }
                    if self.sleep_or_stop(delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleep for `d`; true if the daemon is stopping (or the engine gone).
    async fn sleep_or_stop(&mut self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.wait_for(|s| *s) => return true,
        }
        // The engine is gone (its output channel closed and drained).
        loop {
            match self.outputs.try_recv() {
                Ok(_) => {}
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }
}

/// Read the simulated time of a lockstep cabinet once (the engine's start
/// time with `clock = "cabinet"`), retrying until `patience` runs out; the
/// error is the last attempt's.
pub async fn probe_sim_time(cabinet: &ModbusCabinet, patience: Duration) -> Result<Instant, CabinetError> {
    let deadline = tokio::time::Instant::now() + patience;
    let map = cabinet.registers;
    let request = Request::ReadInputs(Block::new(map.sim_time, SIM_TIME_LEN));
    // Nobody reads the probe's counts.
    let stats = Arc::new(CabinetStats::default());
    loop {
        let failed = match connect(cabinet, &stats).await {
            Ok(mut link) => {
                let r = tokio::time::timeout(
                    dur(cabinet.request_timeout),
                    link.read_input_registers(map.sim_time, SIM_TIME_LEN),
                )
                .await;
                match r {
                    Ok(Ok(Ok(w))) if w.len() == SIM_TIME_LEN as usize => {
                        let t = w.iter().fold(0u64, |a, v| a << 16 | *v as u64);
                        if t == 0 {
                            return Err(CabinetError::NoSimTime);
                        }
                        return Ok(Instant::from_millis(t));
                    }
                    Ok(Ok(Ok(w))) => CabinetError::ShortAnswer { request, got: w.len() },
                    Ok(Ok(Err(code))) => CabinetError::Exception { request, code },
                    Ok(Err(error)) => CabinetError::Transport { request, error },
                    Err(_) => CabinetError::Timeout { request, after: cabinet.request_timeout },
                }
            }
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            error!("no simulated time from the cabinet: {failed}");
            return Err(failed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jittered_and_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 7);
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100), "{d:?}");
        assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800), "{d:?}");
        assert!(d[7] >= Duration::from_millis(500) && d[7] <= Duration::from_millis(1000), "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    /// A cabinet that closes the connection (killed, rebooted) is said to
    /// have closed it, not with a stale OS error.
    #[tokio::test]
    async fn a_closed_connection_is_said_as_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let cabinet = tokio::spawn(async move { drop(listener.accept().await.unwrap()) });
        let c = super::super::default_cabinet(ModbusTransport::Tcp { address });
        let mut link = connect(&c, &Arc::new(CabinetStats::default())).await.unwrap();
        cabinet.await.unwrap();
        let err = link.read_input_registers(0, 4).await.unwrap_err();
        assert_eq!(err.to_string(), "the cabinet closed the connection");
    }

    #[test]
    fn only_a_link_that_held_starts_the_backoff_over() {
        let (min, max, steady) = (Duration::from_millis(100), Duration::from_millis(1000), Duration::from_secs(2));
        let mut b = Backoff::new(min, max, 7);
        // Connected and dropped at once, again and again: the delays grow.
        let flapping: Vec<Duration> = (0..5).map(|_| b.after_link(Duration::from_millis(5), steady)).collect();
        assert!(flapping[4] >= Duration::from_millis(500), "{flapping:?}");
        // A link that held for the link timeout: back to the shortest delay.
        assert!(b.after_link(steady, steady) <= min);
    }

    /// A counter fault episode lasts from the first step that cannot be
    /// true until the counter has been plausible for the hold (what is
    /// logged once each way); every such step is counted.
    #[test]
    fn counter_fault_episodes_last_until_the_hold_is_over() {
        use super::super::registers::Counter;
        let stats = CabinetStats::default();
        let mut alarms = CounterAlarms::default();
        let t0 = Instant::from_millis(1_000_000);
        let backwards = ImplausibleStep {
            counter: Counter::Volume,
            channel: 4,
            before: 40_000,
            after: 39_990,
            elapsed: Span::ZERO,
        };
        alarms.note("x", t0, &[backwards], &stats);
        let again = t0 + Span::from_secs(1);
        alarms.note("x", again, &[backwards], &stats);
        assert_eq!(alarms.last[4], Some(again), "one episode, renewed");
        assert_eq!(stats.counter_faults.load(Ordering::Relaxed), 2);
        alarms.note("x", again + (COUNTER_FAULT_HOLD - Span::from_millis(100)), &[], &stats);
        assert_eq!(alarms.last[4], Some(again));
        alarms.note("x", again + COUNTER_FAULT_HOLD, &[], &stats);
        assert_eq!(alarms.last[4], None, "over");
    }
}
