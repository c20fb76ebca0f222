//! Clocks the engine can run on. The core never reads a clock; the engine
//! reads one of these and passes `now` in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::{Instant, Span};

/// Where `now` comes from and how to wait for a deadline.
pub trait Clock: Send {
    fn now(&mut self) -> Instant;
    /// Block until `deadline` (returns at once if it has passed).
    fn wait_until(&mut self, deadline: Instant);
    /// How far past `deadline` the clock is, in nanoseconds (jitter; finer
    /// than the millisecond `Instant`).
    fn nanos_past(&mut self, deadline: Instant) -> u64;
    /// The wall clock's new offset from this clock (wall minus `now`, ms)
    /// when it has stepped since the last call (an NTP or GPS correction);
    /// `None` when it has not, and always for simulated clocks.
    fn wall_step(&mut self) -> Option<i64> {
        None
    }
}

/// A wall-clock step at least this large is a correction to re-anchor on;
/// smaller differences are the two clocks' drift (NTP slews those).
pub const WALL_STEP_MS: i64 = 1000;

/// Real time: monotonic, expressed as milliseconds since the Unix epoch so
/// event-log timestamps are wall-clock times and controllers with synced
/// clocks share coordination cycles. The epoch is read once at start; from
/// then on only the monotonic clock advances it, so a wall-clock step never
/// makes the core's time jump or run backwards. A step is noticed by
/// [`Clock::wall_step`], and the engine re-anchors the time of day on it.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
    origin_unix_ms: u64,
    /// Wall clock minus this clock, ms, as of the last step noticed.
    wall_offset_ms: i64,
}

impl SystemClock {
    pub fn new() -> Self {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        SystemClock { origin: std::time::Instant::now(), origin_unix_ms: unix.as_millis() as u64, wall_offset_ms: 0 }
    }

    /// The monotonic instant at which this clock reads `t` (cabinet tasks
    /// schedule their I/O around the engine's deadlines with it).
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        self.origin + Duration::from_millis(t.as_millis().saturating_sub(self.origin_unix_ms))
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&mut self) -> Instant {
        Instant::from_millis(self.origin_unix_ms + self.origin.elapsed().as_millis() as u64)
    }

    fn nanos_past(&mut self, deadline: Instant) -> u64 {
        std::time::Instant::now().saturating_duration_since(self.to_std(deadline)).as_nanos() as u64
    }

    fn wall_step(&mut self) -> Option<i64> {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        let offset = wall - self.now().as_millis() as i64;
        if (offset - self.wall_offset_ms).abs() < WALL_STEP_MS {
            return None;
        }
        self.wall_offset_ms = offset;
        Some(offset)
    }

    fn wait_until(&mut self, deadline: Instant) {
        let target = self.to_std(deadline);
        let now = std::time::Instant::now();
        if target > now {
            std::thread::sleep(target - now);
        }
    }
}

/// Simulated time that jumps straight to each deadline: runs the unchanged
/// engine as fast as the CPU allows (replay, tests, faster-than-real-time
/// simulation). `speed` > 0 instead paces it at that multiple of real time.
#[derive(Debug)]
pub struct SimulatedClock {
    now: Instant,
    speed: Option<f64>,
    started: std::time::Instant,
    start_at: Instant,
}

impl SimulatedClock {
    /// As fast as possible, from `start`.
    pub fn new(start: Instant) -> Self {
        SimulatedClock { now: start, speed: None, started: std::time::Instant::now(), start_at: start }
    }

    /// Paced at `speed` times real time (2.0 = twice as fast).
    pub fn paced(start: Instant, speed: f64) -> Self {
        SimulatedClock { speed: Some(speed), ..Self::new(start) }
    }
}

impl Clock for SimulatedClock {
    fn now(&mut self) -> Instant {
        self.now
    }

    fn nanos_past(&mut self, deadline: Instant) -> u64 {
        self.now.since(deadline).as_millis() * 1_000_000
    }

    fn wait_until(&mut self, deadline: Instant) {
        if let Some(speed) = self.speed.filter(|s| *s > 0.0) {
            let sim_elapsed = deadline.since(self.start_at);
            let real = Duration::from_secs_f64(sim_elapsed.as_secs_f64() / speed);
            let elapsed = self.started.elapsed();
            if real > elapsed {
                std::thread::sleep(real - elapsed);
            }
        }
        self.now = self.now.max(deadline);
    }
}

/// Simulated time published by the cabinets (lockstep simulation,
/// `clock = "cabinet"`): each lockstep cabinet's I/O task stores the
/// simulated time it last read, after handing that step's inputs to the
/// engine, and the engine's `now` is the earliest of them, so it never ticks
/// a step before every cabinet's inputs for it are in.
///
/// `wait_until` polls the published times (sleeping 50 µs between looks:
/// no lock, no allocation); [`CabinetTime::release`] lets it return at once
/// so a stopping daemon is never stuck waiting for a simulator that left.
#[derive(Debug)]
pub struct CabinetClock {
    time: CabinetTime,
    /// At most this many simulated seconds per real second, counted from
    /// the first wait; `None`: as fast as the cabinets step.
    pace: Option<(f64, Option<(std::time::Instant, Instant)>)>,
}

impl CabinetClock {
    /// Paced at `speed` times real time at most (a watched simulation).
    pub fn paced(self, speed: f64) -> Self {
        CabinetClock { pace: (speed > 0.0).then_some((speed, None)), ..self }
    }
}

/// The cabinet side of a [`CabinetClock`]: one slot per lockstep cabinet.
#[derive(Clone, Debug)]
pub struct CabinetTime {
    slots: Arc<[AtomicU64]>,
    released: Arc<AtomicBool>,
}

impl CabinetTime {
    /// Slots for `cabinets`, starting just before `start`: the engine's
    /// first deadline is then `start` (aligned), and it waits there until
    /// every cabinet has published it.
    pub fn new(cabinets: usize, start: Instant) -> Self {
        let before = start.as_millis().saturating_sub(1);
        CabinetTime {
            slots: (0..cabinets.max(1)).map(|_| AtomicU64::new(before)).collect(),
            released: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Cabinet `slot` has handed the engine its inputs for simulated time `t`.
    pub fn publish(&self, slot: usize, t: Instant) {
        if let Some(s) = self.slots.get(slot) {
            s.fetch_max(t.as_millis(), Ordering::Release);
        }
    }

    /// The engine's `now`: the earliest time every cabinet has reached.
    pub fn now(&self) -> Instant {
        Instant::from_millis(self.slots.iter().map(|s| s.load(Ordering::Acquire)).min().unwrap_or(0))
    }

    /// Stop waiting for simulated time (shutdown): `wait_until` returns at once.
    pub fn release(&self) {
        self.released.store(true, Ordering::Release);
    }

    pub fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    pub fn clock(&self) -> CabinetClock {
        CabinetClock { time: self.clone(), pace: None }
    }
}

impl Clock for CabinetClock {
    fn now(&mut self) -> Instant {
        self.time.now()
    }

    fn nanos_past(&mut self, deadline: Instant) -> u64 {
        self.time.now().since(deadline).as_millis() * 1_000_000
    }

    fn wait_until(&mut self, deadline: Instant) {
        if let Some((speed, start)) = &mut self.pace {
            let (real0, sim0) = *start.get_or_insert((std::time::Instant::now(), deadline));
            let due = real0 + Duration::from_secs_f64(deadline.since(sim0).as_secs_f64() / *speed);
            let now = std::time::Instant::now();
            if due > now && !self.time.is_released() {
                std::thread::sleep(due - now);
            }
        }
        while self.time.now() < deadline && !self.time.is_released() {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Convert a span to a std duration (for sleeping and channel timeouts).
pub fn to_duration(s: Span) -> Duration {
    Duration::from_millis(s.as_millis())
}
