//! Tick latency and deadline jitter in preallocated HdrHistograms, readable
//! while the engine runs.
//!
//! The engine records into histograms it owns, built with fixed bounds so
//! recording never resizes (HdrHistogram's auto-resize and its `sync`
//! recorder both allocate). To publish, it copies its histograms into a
//! spare pair it got back from the reader and sends them over a bounded
//! channel; the reader returns the previous pair as the next spare. No lock,
//! no allocation on the engine side, and a slow reader only means older
//! figures.

use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender, bounded};
use hdrhistogram::Histogram;

/// Highest latency tracked, in nanoseconds (10 s); larger values saturate.
const MAX_NS: u64 = 10_000_000_000;
/// Tick latency and jitter: 1 ns to 10 s at 3 significant digits.
const LATENCY_BOUNDS: HistogramBounds = HistogramBounds::new(1, MAX_NS, 3);

/// Fixed bounds for a histogram, checked when the constant is compiled
/// against the rules `Histogram::new_with_bounds` enforces, so building
/// one cannot fail.
#[derive(Clone, Copy, Debug)]
pub struct HistogramBounds {
    low: u64,
    high: u64,
    sigfig: u8,
}

impl HistogramBounds {
    /// Panics (at compile time, in a `const`) unless `1 <= low`,
    /// `2 * low <= high` and `sigfig <= 5`.
    pub const fn new(low: u64, high: u64, sigfig: u8) -> Self {
        assert!(low >= 1 && high / 2 >= low && sigfig <= 5, "hdrhistogram bounds");
        HistogramBounds { low, high, sigfig }
    }

    pub fn histogram(self) -> Histogram<u64> {
        Histogram::new_with_bounds(self.low, self.high, self.sigfig).expect("bounds checked in HistogramBounds::new")
    }
}

/// The two histograms the engine keeps.
#[derive(Clone, Debug)]
pub struct LatencyHistograms {
    /// Time one intersection's tick takes (controller + monitor + publish), ns.
    pub tick_ns: Histogram<u64>,
    /// How late each loop iteration started against its deadline, ns.
    pub jitter_ns: Histogram<u64>,
}

impl LatencyHistograms {
    pub fn new() -> Self {
        LatencyHistograms { tick_ns: LATENCY_BOUNDS.histogram(), jitter_ns: LATENCY_BOUNDS.histogram() }
    }

    fn copy_from(&mut self, other: &LatencyHistograms) {
        self.tick_ns.reset();
        self.jitter_ns.reset();
        // Same bounds on both sides, so `add` never resizes.
        let _ = self.tick_ns.add(&other.tick_ns);
        let _ = self.jitter_ns.add(&other.jitter_ns);
    }
}

impl Default for LatencyHistograms {
    fn default() -> Self {
        Self::new()
    }
}

/// Percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.1}µs p99={:.1}µs p99.9={:.1}µs max={:.1}µs",
            self.count, self.p50_us, self.p99_us, self.p999_us, self.max_us
        )
    }
}

/// Engine side: records, and publishes copies now and then.
#[derive(Debug)]
pub struct LatencyRecorder {
    live: LatencyHistograms,
    spare: Receiver<Box<LatencyHistograms>>,
    filled: Sender<Box<LatencyHistograms>>,
}

/// Reader side: the latest published copy.
#[derive(Debug)]
pub struct LatencyReader {
    filled: Receiver<Box<LatencyHistograms>>,
    spare: Sender<Box<LatencyHistograms>>,
    latest: Mutex<Box<LatencyHistograms>>,
}

/// A recorder and its reader, with one spare pair in circulation.
pub fn latency_pair() -> (LatencyRecorder, LatencyReader) {
    let (spare_tx, spare_rx) = bounded(2);
    let (filled_tx, filled_rx) = bounded(2);
    spare_tx.send(Box::new(LatencyHistograms::new())).expect("fresh channel has room");
    (
        LatencyRecorder { live: LatencyHistograms::new(), spare: spare_rx, filled: filled_tx },
        LatencyReader { filled: filled_rx, spare: spare_tx, latest: Mutex::new(Box::new(LatencyHistograms::new())) },
    )
}

impl LatencyRecorder {
    pub fn record_tick(&mut self, ns: u64) {
        self.live.tick_ns.saturating_record(ns.clamp(1, MAX_NS));
    }

    pub fn record_jitter(&mut self, ns: u64) {
        self.live.jitter_ns.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Publish a copy if a spare is available (no allocation either way).
    pub fn publish(&mut self) {
        if let Ok(mut spare) = self.spare.try_recv() {
            spare.copy_from(&self.live);
            // Only two buffers circulate besides `live`, so `filled` (room
            // for two) is never full; it fails only once the reader is gone.
            let _ = self.filled.try_send(spare);
        }
    }

    pub fn histograms(&self) -> &LatencyHistograms {
        &self.live
    }
}

impl LatencyReader {
    /// The latest figures the engine published (not blocking it).
    pub fn latest(&self) -> (Percentiles, Percentiles) {
        let latest = self.refreshed();
        (Percentiles::of(&latest.tick_ns), Percentiles::of(&latest.jitter_ns))
    }

    /// A copy of the latest histograms the engine published (for
    /// differences between two moments, e.g. after a warm-up).
    pub fn latest_histograms(&self) -> LatencyHistograms {
        (**self.refreshed()).clone()
    }

    fn refreshed(&self) -> std::sync::MutexGuard<'_, Box<LatencyHistograms>> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        while let Ok(fresh) = self.filled.try_recv() {
            let old = std::mem::replace(&mut *latest, fresh);
            let _ = self.spare.try_send(old);
        }
        latest
    }
}
