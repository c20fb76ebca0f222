//! Clocks the engine can run on. The core never reads a clock; the engine
//! reads one of these and passes `now` in.

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
}

/// Real time: monotonic, expressed as milliseconds since the Unix epoch so
/// event-log timestamps are wall-clock times and controllers with synced
/// clocks share coordination cycles. The epoch is read once at start; from
/// then on only the monotonic clock advances it, so a wall-clock step never
/// makes the core's time jump or run backwards.
#[derive(Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
    origin_unix_ms: u64,
}

impl SystemClock {
    pub fn new() -> Self {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        SystemClock { origin: std::time::Instant::now(), origin_unix_ms: unix.as_millis() as u64 }
    }

    fn to_std(&self, t: Instant) -> std::time::Instant {
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

/// Convert a span to a std duration (for sleeping and channel timeouts).
pub fn to_duration(s: Span) -> Duration {
    Duration::from_millis(s.as_millis())
}
