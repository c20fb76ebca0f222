//! The built-in simulated cabinet as a Modbus server: `greenwave
//! sim-cabinet`, and the embedded default of `greenwave run`, which talks
//! to it over loopback through the real cabinet client.
//!
//! Each cabinet is a [`SimCabinet`] (the traffic generator) behind the
//! register map ([`RegisterMap`], encoded by [`crate::io::registers`]), with its own [`Mmu`] watching the
//! outputs written and the heartbeat, and listens on its own TCP port
//! (unit id 1 unless told otherwise; other unit ids get exception 0x0B,
//! "gateway target device failed to respond"). Modbus TCP framing by
//! default, RTU framing over TCP with `--rtu-over-tcp`. Besides the default
//! map it mirrors presence as discrete inputs (FC02) 0..64 and serves a few
//! simulator-only registers ([`SIM_MMU_FAULT`] and after) that the daemon
//! never uses.
//!
//! # Time
//! - **Real time** (default): every `step` (10 ms) each cabinet's traffic
//!   advances to now under what its heads show (the outputs written while
//!   the MMU lets the controller drive them, else the cabinet's flash), its
//!   volume counters count the rising edges of the presence it reports, and
//!   its MMU's watchdog is checked.
//! - **Lockstep** (`--lockstep`): simulated time starts at `start` and is
//!   published in the simulated-time registers with the step length. It
//!   advances by one step only once every cabinet of the server has
//!   acknowledged the current time (the step-ack registers, written with
//!   the outputs). The unchanged daemon with `clock = "cabinet"` then runs
//!   as fast as the round trips allow, and gets exactly the exchanges of
//!   the in-process `greenwave simulate`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use super::SimCabinet;
use super::mmu::{DEFAULT_WATCHDOG, Mmu};
use crate::config::{RegisterMap, TrafficConfig};
use crate::core::{ControllerSpec, FlashReason, Instant, MAX_DETECTORS, MAX_PHASES, OutputFrame, Span};
use crate::engine::clock::{Clock, SystemClock};
use crate::engine::latency::{HistogramBounds, Percentiles};
use crate::io::registers::{self, InputImage, MAX_READ, OutputImage, STATUS_CABINET_FLASH, STATUS_MMU_FAULT};
use crate::replay::REPLAY_EPOCH;

// ---- simulator-only registers (outside the default map's items; the
// daemon's read spans the input ones but never uses them) -----------------

/// Input register: MMU fault kind ([`MmuFault::code`](super::mmu::MmuFault::code)),
/// 0 when none.
pub const SIM_MMU_FAULT: u16 = 100;
/// Input register: channels in the MMU fault, bit per channel (phases
/// 1..16 in bits 0..15).
pub const SIM_MMU_CHANNELS: u16 = 101;
/// Input register: overlap channels in the MMU fault (A..H in bits 0..7).
pub const SIM_MMU_OVERLAPS: u16 = 102;
/// Holding register: write non-zero to reset a latched MMU fault (as a
/// technician presses the MMU's reset button).
pub const SIM_MMU_RESET: u16 = 100;
/// Holding register: cabinet switches the simulator reports in the status
/// register (door, manual flash, power fail bits as in
/// [`STATUS_DOOR_OPEN`](registers::STATUS_DOOR_OPEN) and after), for tests
/// and demos.
pub const SIM_SWITCHES: u16 = 101;
/// Holding register: the preemption inputs the simulator reports in the
/// `preempt` input register (bit `n - 1` for input `n`), as an emitter
/// receiver or a rail gate would raise them, for tests and demos.
pub const SIM_PREEMPT: u16 = 102;
/// Holding register: the transit priority inputs reported in the
/// `priority` input register (bit `n - 1` for phase `n`).
pub const SIM_PRIORITY: u16 = 103;

/// Input registers the simulator serves (the map plus its own registers).
const INPUT_SPACE: usize = registers_end(SIM_MMU_OVERLAPS, crate::config::registers::PRIORITY);
/// Holding registers the simulator serves.
const HOLDING_SPACE: usize = SIM_PRIORITY as usize + 1;

/// One past the higher of two register addresses.
const fn registers_end(a: u16, b: u16) -> usize {
    (if a > b { a } else { b }) as usize + 1
}
/// Discrete inputs: presence per channel.
const DISCRETE_SPACE: usize = MAX_DETECTORS;

/// How a simulated cabinet server runs.
#[derive(Clone, Debug)]
pub struct SimServerConfig {
    /// Unit id the cabinets answer to.
    pub unit_id: u8,
    /// RTU framing over TCP instead of Modbus TCP.
    pub rtu_over_tcp: bool,
    /// Real-time step of the traffic and the watchdog check.
    pub step: Span,
    /// Lockstep simulation: simulated time advances one step per
    /// acknowledgement round, from `start`.
    pub lockstep: Option<Lockstep>,
    /// Heartbeat older than this → MMU watchdog fault (flash).
    pub watchdog: Span,
    /// Where every volume counter starts (tests start near the wrap).
    pub counter_start: u16,
}

#[derive(Clone, Copy, Debug)]
pub struct Lockstep {
    pub step: Span,
    pub start: Instant,
}

impl Default for SimServerConfig {
    fn default() -> Self {
        SimServerConfig {
            unit_id: 1,
            rtu_over_tcp: false,
            step: Span::from_millis(10),
            lockstep: None,
            watchdog: DEFAULT_WATCHDOG,
            counter_start: 0,
        }
    }
}

impl Lockstep {
    /// Steps of `tick`, from the replay epoch (as `greenwave simulate`).
    pub fn new(tick: Span) -> Self {
        Lockstep { step: tick, start: REPLAY_EPOCH }
    }
}

/// Why a simulated cabinet server did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimServerError {
    #[error("{count} cabinets from port {first} run past port 65535")]
    PortRange { first: u16, count: usize },
    #[error("binding {addr}: {error}")]
    Bind { addr: SocketAddr, error: std::io::Error },
    #[error("reading a bound listener's address: {0}")]
    LocalAddr(std::io::Error),
}

/// One simulated cabinet to serve.
#[derive(Clone, Debug)]
pub struct SimCabinetSpec {
    pub id: String,
    pub spec: ControllerSpec,
    pub traffic: TrafficConfig,
}

/// One cabinet's state, shared by its connections and the stepper.
#[derive(Debug)]
pub struct SimUnit {
    pub id: String,
    cabinet: SimCabinet,
    pub mmu: Mmu,
    map: RegisterMap,
    input: Vec<u16>,
    holding: Vec<u16>,
    /// The last valid output image written.
    written: OutputImage,
    image: InputImage,
    /// Presence reported by the previous step (for counting edges).
    last_presence: u64,
    /// Cabinet switches (door, manual flash, power) set by a tester.
    switches: u16,
    pub writes: u64,
    pub reads: u64,
    /// When the previous valid write arrived (real time), for the write gaps.
    last_write: Option<std::time::Instant>,
    /// Times the written flash reason became each value (index = reason,
    /// `docs/modbus.md`; 0 = back to normal).
    pub flashes: [u64; FLASH_REASONS],
    /// Faults the MMU raised, by fault code ([`MmuFault::code`](super::mmu::MmuFault::code)).
    pub mmu_faults: [u64; MMU_FAULT_CODES],
}

impl SimUnit {
    fn new(c: &SimCabinetSpec, cfg: &SimServerConfig) -> Self {
        let image = InputImage { volume: [cfg.counter_start; MAX_DETECTORS], ..InputImage::default() };
        let mut u = SimUnit {
            id: c.id.clone(),
            cabinet: SimCabinet::new(&c.traffic),
            mmu: Mmu::new(&c.spec, cfg.watchdog),
            // It has every output a cabinet may have: the pedestrian
            // countdowns and accessible signals are decoded whether or not
            // the controller writes them (zeros, blank, when it does not).
            map: RegisterMap { ped_outputs: true, ..RegisterMap::default() },
            input: vec![0; INPUT_SPACE],
            holding: vec![0; HOLDING_SPACE],
            written: OutputImage::default(),
            image,
            last_presence: 0,
            switches: 0,
            writes: 0,
            reads: 0,
            last_write: None,
            flashes: [0; FLASH_REASONS],
            mmu_faults: [0; MMU_FAULT_CODES],
        };
        u.refresh();
        u
    }

    /// What the heads show now, the pedestrian countdown displays and
    /// accessible signals included (dark in flash).
    pub fn heads(&self) -> OutputFrame {
        self.mmu.heads(&self.written.frame)
    }

    /// The last output image written (valid ones only).
    pub fn written(&self) -> &OutputImage {
        &self.written
    }

    pub fn presence(&self) -> u64 {
        self.image.presence
    }

    pub fn volume(&self, channel_index: usize) -> u16 {
        self.image.volume[channel_index]
    }

    /// Set a volume counter, as a glitching counter card does: a value
    /// behind the last one read is a step backwards, which the client must
    /// take for a counter fault, not traffic (tests and demos).
    pub fn set_volume(&mut self, channel_index: usize, value: u16) {
        self.image.volume[channel_index] = value;
        self.refresh();
    }

    /// The traffic generator's measures.
    pub fn cabinet(&self) -> &SimCabinet {
        &self.cabinet
    }

    /// Set the cabinet switches (status bits as in the register map). The
    /// switches' holding register follows, or the daemon's next write
    /// (which compares against it) would turn them back off before any read
    /// saw them.
    pub fn set_switches(&mut self, bits: u16) {
        self.switches =
            bits & (registers::STATUS_DOOR_OPEN | registers::STATUS_MANUAL_FLASH | registers::STATUS_POWER_FAIL);
        self.holding[SIM_SWITCHES as usize] = self.switches;
        self.refresh();
    }

    /// Set the preemption inputs (bit `n - 1` for input `n`) and transit
    /// priority inputs (bit `n - 1` for phase `n`) the cabinet reports; the
    /// holding registers follow, as for [`Self::set_switches`].
    pub fn set_preempt_inputs(&mut self, preempt: u16, priority: u16) {
        self.image.preempt = preempt;
        self.image.priority = priority;
        self.holding[SIM_PREEMPT as usize] = preempt;
        self.holding[SIM_PRIORITY as usize] = priority;
        self.refresh();
    }

    /// Advance the traffic to `now` under the heads.
    fn step(&mut self, now: Instant, sim_time: Option<(Instant, Span)>) {
        if let Some(f) = self.mmu.check_watchdog(now) {
            self.mmu_faults[f.code() as usize] += 1;
            tracing::warn!(cabinet = %self.id, "MMU {f}: cabinet in flash");
        }
        let mut heads = self.heads();
        if self.switches & registers::STATUS_MANUAL_FLASH != 0 {
            heads = self.mmu.flash_frame();
        }
        let input = self.cabinet.exchange(now, &heads);
        let rising = input.presence & !self.last_presence;
        self.last_presence = input.presence;
        for ch in 0..MAX_DETECTORS {
            if rising & (1 << ch) != 0 {
                self.image.volume[ch] = self.image.volume[ch].wrapping_add(1);
            }
        }
        self.image.presence = input.presence;
        if let Some((t, step)) = sim_time {
            self.image.sim_time_ms = t.as_millis();
            self.image.sim_step_ms = step.as_millis() as u16;
        }
        self.refresh();
    }

    fn refresh(&mut self) {
        let mut status = self.switches;
        if self.mmu.fault().is_some() {
            status |= STATUS_MMU_FAULT;
        }
        if !self.mmu.in_control() || self.switches & registers::STATUS_MANUAL_FLASH != 0 {
            status |= STATUS_CABINET_FLASH;
        }
        self.image.status = status;
        self.image.encode(&self.map, &mut self.input);
        let (code, channels) = self.mmu.fault().map_or((0, 0), |f| (f.code(), f.channels()));
        self.input[SIM_MMU_FAULT as usize] = code;
        self.input[SIM_MMU_CHANNELS as usize] = channels as u16;
        self.input[SIM_MMU_OVERLAPS as usize] = (channels >> MAX_PHASES) as u16;
    }

    /// Apply a write of `words` at `addr` (already range-checked), which
    /// arrived at `arrived`. Returns the step acknowledgement carried and
    /// the time since the previous write, if the write is valid.
    fn write(
        &mut self,
        now: Instant,
        arrived: std::time::Instant,
        addr: u16,
        words: &[u16],
    ) -> Result<(u64, Option<Duration>), ExceptionCode> {
        let mut next = self.holding.clone();
        next[addr as usize..addr as usize + words.len()].copy_from_slice(words);
        let image = OutputImage::decode(&self.map, &next).map_err(|_| ExceptionCode::IllegalDataValue)?;
        self.holding = next;
        self.writes += 1;
        let gap = self.last_write.replace(arrived).map(|t| arrived.saturating_duration_since(t));
        if image.flash_reason != self.written.flash_reason
            && let Some(n) = self.flashes.get_mut(image.flash_reason as usize)
        {
            *n += 1;
        }
        if self.holding[SIM_MMU_RESET as usize] != 0 {
            self.holding[SIM_MMU_RESET as usize] = 0;
            tracing::info!(cabinet = %self.id, "MMU reset");
            self.mmu.reset();
        }
        let switches = self.holding[SIM_SWITCHES as usize];
        if switches != self.switches {
            self.set_switches(switches);
        }
        let (preempt, priority) = (self.holding[SIM_PREEMPT as usize], self.holding[SIM_PRIORITY as usize]);
        if (preempt, priority) != (self.image.preempt, self.image.priority) {
            self.set_preempt_inputs(preempt, priority);
        }
        self.written = image;
        if let Some(f) = self.mmu.observe(now, &image.frame, image.heartbeat) {
            self.mmu_faults[f.code() as usize] += 1;
            tracing::warn!(cabinet = %self.id, "MMU {f}: cabinet in flash until reset");
        }
        self.refresh();
        Ok((image.step_ack_ms, gap))
    }
}

/// Simulated time shared by the cabinets of a lockstep server.
#[derive(Debug)]
struct LockstepState {
    time: Instant,
    step: Span,
    acked: Vec<bool>,
    remaining: usize,
}

/// State shared by a server's connections and its stepper.
#[derive(Debug)]
pub struct Shared {
    pub units: Vec<Mutex<SimUnit>>,
    lockstep: Option<Mutex<LockstepState>>,
    clock: SystemClock,
    unit_id: u8,
    pub requests: AtomicU64,
    /// Time between two valid writes to the same cabinet, as they arrive
    /// (ns): the cabinet's own view of how steadily the daemon writes.
    write_gaps: Mutex<Histogram<u64>>,
}

/// Flash reasons 0 (none) and every [`FlashReason`] (`docs/modbus.md`,
/// `flash_reason`).
const FLASH_REASONS: usize = FlashReason::ALL.len() + 1;
/// MMU fault codes 0 (none) to 4.
const MMU_FAULT_CODES: usize = 5;
/// Write gaps: 1 µs to 60 s, 3 significant digits (one histogram per server).
const WRITE_GAP_BOUNDS: HistogramBounds = HistogramBounds::new(1_000, 60_000_000_000, 3);

/// What a server's cabinets saw, totalled (`greenwave sim-cabinet --stats-json`).
#[derive(Clone, Debug)]
pub struct SimStats {
    pub cabinets: usize,
    pub writes: u64,
    pub write_gaps: Percentiles,
    /// Writes that changed the flash reason to each value, over all cabinets.
    pub flashes: [u64; FLASH_REASONS],
    pub mmu_faults: [u64; MMU_FAULT_CODES],
}

impl SimStats {
    /// One JSON object; `flashes` and `mmu_faults` keyed by reason and code,
    /// zeros left out.
    pub fn to_json(&self) -> String {
        let keyed = |counts: &[u64]| {
            let items: Vec<String> = counts
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("\"{k}\":{n}"))
                .collect();
            format!("{{{}}}", items.join(","))
        };
        let g = self.write_gaps;
        format!(
            "{{\"cabinets\":{},\"writes\":{},\"write_gap\":{{\"count\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}},\"flashes\":{},\"mmu_faults\":{}}}\n",
            self.cabinets,
            self.writes,
            g.count,
            g.p50_us,
            g.p99_us,
            g.p999_us,
            g.max_us,
            keyed(&self.flashes),
            keyed(&self.mmu_faults)
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn now(&self) -> Instant {
        match &self.lockstep {
            Some(ls) => lock(ls).time,
            None => {
                let mut c = self.clock;
                c.now()
            }
        }
    }

    /// Lock cabinet `i` (tests and tools look inside).
    pub fn unit(&self, i: usize) -> MutexGuard<'_, SimUnit> {
        lock(&self.units[i])
    }

    /// Lockstep: simulated time now.
    pub fn sim_time(&self) -> Option<Instant> {
        self.lockstep.as_ref().map(|ls| lock(ls).time)
    }

    /// Totals over every cabinet of the server.
    pub fn stats(&self) -> SimStats {
        let mut st = SimStats {
            cabinets: self.units.len(),
            writes: 0,
            write_gaps: Percentiles::of(&lock(&self.write_gaps)),
            flashes: [0; FLASH_REASONS],
            mmu_faults: [0; MMU_FAULT_CODES],
        };
        for u in &self.units {
            let u = lock(u);
            st.writes += u.writes;
            st.flashes.iter_mut().zip(u.flashes).for_each(|(a, b)| *a += b);
            st.mmu_faults.iter_mut().zip(u.mmu_faults).for_each(|(a, b)| *a += b);
        }
        st
    }

    fn record_gap(&self, gap: Option<Duration>) {
        if let Some(g) = gap {
            lock(&self.write_gaps).saturating_record((g.as_nanos() as u64).max(1_000));
        }
    }

    fn step_all(&self, now: Instant, sim: Option<(Instant, Span)>) {
        for u in &self.units {
            lock(u).step(now, sim);
        }
    }

    fn ack(&self, unit: usize, ack_ms: u64) {
        let Some(ls) = &self.lockstep else { return };
        let mut ls = lock(ls);
        if ack_ms >= ls.time.as_millis() && !ls.acked[unit] {
            ls.acked[unit] = true;
            ls.remaining -= 1;
        }
        if ls.remaining == 0 {
            let step = ls.step;
            ls.time += step;
            ls.acked.iter_mut().for_each(|a| *a = false);
            ls.remaining = ls.acked.len();
            let (time, step) = (ls.time, ls.step);
            // Lock order: lockstep state, then units (the write path
            // releases its unit before acknowledging).
            self.step_all(time, Some((time, step)));
        }
    }

    fn handle(&self, unit: usize, req: SlaveRequest<'static>) -> Result<Response, ExceptionCode> {
        let arrived = std::time::Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        if req.slave != self.unit_id {
            return Err(ExceptionCode::GatewayTargetDevice);
        }
        let range = |addr: u16, cnt: usize, space: usize, max: usize| {
            if cnt == 0 || cnt > max {
                Err(ExceptionCode::IllegalDataValue)
            } else if addr as usize + cnt > space {
                Err(ExceptionCode::IllegalDataAddress)
            } else {
                Ok(addr as usize..addr as usize + cnt)
            }
        };
        let now = self.now();
        match req.request {
            Request::ReadInputRegisters(addr, cnt) => {
                let r = range(addr, cnt as usize, INPUT_SPACE, MAX_READ as usize)?;
                let mut u = self.unit(unit);
                u.reads += 1;
                Ok(Response::ReadInputRegisters(u.input[r].to_vec()))
            }
            Request::ReadHoldingRegisters(addr, cnt) => {
                let r = range(addr, cnt as usize, HOLDING_SPACE, MAX_READ as usize)?;
                Ok(Response::ReadHoldingRegisters(self.unit(unit).holding[r].to_vec()))
            }
            Request::ReadDiscreteInputs(addr, cnt) => {
                let r = range(addr, cnt as usize, DISCRETE_SPACE, 2000)?;
                let p = self.unit(unit).presence();
                Ok(Response::ReadDiscreteInputs(r.map(|b| p & (1 << b) != 0).collect()))
            }
            Request::WriteMultipleRegisters(addr, words) => {
                range(addr, words.len(), HOLDING_SPACE, registers::MAX_WRITE as usize)?;
                let (ack, gap) = self.unit(unit).write(now, arrived, addr, &words)?;
                self.record_gap(gap);
                self.ack(unit, ack);
                Ok(Response::WriteMultipleRegisters(addr, words.len() as u16))
            }
            Request::WriteSingleRegister(addr, word) => {
                range(addr, 1, HOLDING_SPACE, 1)?;
                let (ack, gap) = self.unit(unit).write(now, arrived, addr, &[word])?;
                self.record_gap(gap);
                self.ack(unit, ack);
                Ok(Response::WriteSingleRegister(addr, word))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

/// The Modbus service of one cabinet (one per connection).
#[derive(Clone, Debug)]
struct UnitService {
    shared: Arc<Shared>,
    unit: usize,
}

impl Service for UnitService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        std::future::ready(self.shared.handle(self.unit, req))
    }
}

/// A running simulated cabinet server.
#[derive(Debug)]
pub struct SimServer {
    /// Where each cabinet listens, in the order given.
    pub addrs: Vec<SocketAddr>,
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stopped: Arc<AtomicBool>,
}

impl SimServer {
    /// Bind one listener per cabinet on `ip` (ports from `base_port` up, or
    /// ephemeral ports when it is 0) and start serving on the current tokio
    /// runtime. Every listener is bound before anything is spawned, so a
    /// port in use is an error here, not a silent half-started server.
    pub async fn start(
        cabinets: &[SimCabinetSpec],
        listen: SocketAddr,
        cfg: SimServerConfig,
    ) -> Result<SimServer, SimServerError> {
        let mut listeners = Vec::with_capacity(cabinets.len());
        for i in 0..cabinets.len() {
            let port = if listen.port() == 0 {
                0
            } else {
                u16::try_from(listen.port() as usize + i)
                    .map_err(|_| SimServerError::PortRange { first: listen.port(), count: cabinets.len() })?
            };
            let addr = SocketAddr::new(listen.ip(), port);
            let l = TcpListener::bind(addr).await.map_err(|error| SimServerError::Bind { addr, error })?;
            listeners.push(l);
        }
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(SimServerError::LocalAddr)?;
        let lockstep = cfg.lockstep.map(|l| {
            Mutex::new(LockstepState {
                time: l.start,
                step: l.step,
                acked: vec![false; cabinets.len()],
                remaining: cabinets.len(),
            })
        });
        let shared = Arc::new(Shared {
            units: cabinets.iter().map(|c| Mutex::new(SimUnit::new(c, &cfg))).collect(),
            lockstep,
            clock: SystemClock::new(),
            unit_id: cfg.unit_id,
            requests: AtomicU64::new(0),
            write_gaps: Mutex::new(WRITE_GAP_BOUNDS.histogram()),
        });
        // The first exchange: inputs at the start time.
        match cfg.lockstep {
            Some(l) => shared.step_all(l.start, Some((l.start, l.step))),
            None => shared.step_all(shared.now(), None),
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (unit, listener) in listeners.into_iter().enumerate() {
            let svc = UnitService { shared: shared.clone(), unit };
            let rtu = cfg.rtu_over_tcp;
            let mut stop_rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let abort = async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                };
                let on_error = |e: std::io::Error| tracing::debug!(error = %e, "simulated cabinet connection ended");
                let on_connected = |stream: tokio::net::TcpStream, _addr: std::net::SocketAddr| {
                    let svc = svc.clone();
                    async move {
                        let _ = stream.set_nodelay(true);
                        Ok(Some((svc, stream)))
                    }
                };
                let result = if rtu {
                    let server = tokio_modbus::server::rtu_over_tcp::Server::new(listener);
                    server.serve_until(&on_connected, on_error, abort).await
                } else {
                    let server = tokio_modbus::server::tcp::Server::new(listener);
                    server.serve_until(&on_connected, on_error, abort).await
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "simulated cabinet server stopped");
                }
            }));
        }
        let stopped = Arc::new(AtomicBool::new(false));
        if cfg.lockstep.is_none() {
            let shared = shared.clone();
            let stopped = stopped.clone();
            let step = Duration::from_millis(cfg.step.as_millis().max(1));
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(step);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                while !stopped.load(Ordering::Relaxed) {
                    every.tick().await;
                    let now = shared.now();
                    shared.step_all(now, None);
                }
            }));
        }
        Ok(SimServer { addrs, shared, stop, tasks, stopped })
    }

    /// Stop listening and drop every connection (as a cabinet that is
    /// switched off).
    pub async fn stop(self) {
        self.stopped.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
