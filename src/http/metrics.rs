//! `/metrics`: what the daemon already publishes, gathered at scrape time.
//!
//! Nothing here is updated on a hot path. The control thread keeps its
//! atomics, histograms and snapshots as it always has; a scrape reads
//! [`EngineStats`], the [`LatencyReader`]'s latest copy, each cabinet's
//! [`CabinetStats`], the [`SnapshotBoard`], the API's measures and
//! refusal counts and the event log's health, and writes them out as
//! OpenMetrics text (`docs/metrics.md` lists every family).
//!
//! # Cardinality
//! Labels only take values from bounded sets: `intersection` (the
//! configured ids), `phase` (1..=16, those present), `reason` (10 flash
//! reasons), `fault` (4 detector fault kinds), `code` (17 refusal
//! results), `method` (25 API methods), `channel`, `request`, `cause` (a few
//! words each). Per intersection that is at most 92 series (8 phases:
//! 60); 1,000 intersections stay under 100,000 (`docs/metrics.md`). Detectors are counted by
//! fault kind, never per channel.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::api::CallCounts;
use crate::api::measures::{IntersectionMeasures, Measures, PhaseMeasures};
use crate::api::refusals::Refusals;
use crate::core::detector::DetectorFault;
use crate::core::{FlashReason, UnitState};
use crate::daemon::nats::NatsStats;
use crate::daemon::neighbours::NeighbourStats;
use crate::engine::EngineStats;
use crate::engine::board::SnapshotBoard;
use crate::engine::latency::LatencyReader;
use crate::io::cabinet::CabinetStats;
use crate::telemetry::EventLogHealth;

/// Tick latency bucket bounds, seconds: the budget is 10 µs at p99.9.
const TICK_BUCKETS: [f64; 14] = [1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 1e-1];
/// Deadline jitter bucket bounds, seconds: from scheduler noise to a
/// missed tick (100 ms) and beyond.
const JITTER_BUCKETS: [f64; 12] = [1e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 1e-1, 1.0];
/// Cabinet round-trip bucket bounds, seconds: loopback to a slow RTU
/// line. Few buckets: this histogram is per intersection.
const RTT_BUCKETS: [f64; 8] = [1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1, 1.0];

/// The label set of a family with one sample.
const UNLABELLED: [(&str, &str); 0] = [];

/// The detector fault kinds, as the `fault` label names them.
pub(super) const FAULTS: [(DetectorFault, &str); 4] = [
    (DetectorFault::NoActivity, "no_activity"),
    (DetectorFault::MaxPresence, "max_presence"),
    (DetectorFault::Erratic, "erratic"),
    (DetectorFault::ImplausibleCount, "implausible_count"),
];

/// Everything a scrape reads, shared with the daemon.
#[derive(Debug)]
pub struct Sources {
    /// Intersection ids, in the engine's order.
    pub ids: Vec<String>,
    pub engine: Arc<EngineStats>,
    pub latency: Arc<LatencyReader>,
    pub board: Arc<SnapshotBoard>,
    /// Each intersection's cabinet link (named by intersection id).
    pub cabinets: Vec<(String, Arc<CabinetStats>)>,
    pub measures: Arc<Measures>,
    pub refusals: Arc<Refusals>,
    pub calls: Arc<CallCounts>,
    pub event_log: Arc<EventLogHealth>,
    /// The NATS publisher's counters, when `[nats]` is on.
    pub nats: Option<Arc<NatsStats>>,
    /// The corridor neighbour exchange's counters, when a corridor has
    /// remote members.
    pub neighbours: Option<Arc<NeighbourStats>>,
}

/// A registry holding only the daemon's collector.
pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Daemon(sources)));
    registry
}

#[derive(Debug)]
struct Daemon(Sources);

impl Collector for Daemon {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut out = Out(encoder);
        let s = &self.0;
        engine(&mut out, s)?;
        cabinets(&mut out, &s.cabinets)?;
        intersections(&mut out, s)?;
        phases(&mut out, s)?;
        api(&mut out, s)?;
        event_log(&mut out, &s.event_log)?;
        if let Some(n) = &s.nats {
            nats(&mut out, n)?;
        }
        match &s.neighbours {
            Some(n) => neighbours(&mut out, n, &s.engine),
            None => Ok(()),
        }
    }
}

fn engine(out: &mut Out<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    let e = &s.engine;
    out.counter("greenwave_ticks", "Control loop iterations.", [(UNLABELLED, e.ticks.load(Relaxed))])?;
    out.counter(
        "greenwave_tick_overruns",
        "Loop iterations that ended after the next deadline.",
        [(UNLABELLED, e.overruns.load(Relaxed))],
    )?;
    let latency = s.latency.latest_histograms();
    out.histogram(
        "greenwave_tick_duration",
        "Time one intersection's tick took (controller, monitor, publish).",
        &TICK_BUCKETS,
        [(UNLABELLED, &latency.tick_ns, 1e-9)],
    )?;
    out.histogram(
        "greenwave_tick_deadline_jitter",
        "How late each loop iteration started against its absolute deadline.",
        &JITTER_BUCKETS,
        [(UNLABELLED, &latency.jitter_ns, 1e-9)],
    )?;
    out.counter(
        "greenwave_flashes",
        "Flashes entered, by reason (from the controllers' 173 events).",
        FlashReason::ALL.map(|r| ([("reason", flash_reason(r))], e.flashes[r.index()].load(Relaxed))),
    )?;
    out.counter(
        "greenwave_monitor_trips",
        "Safety monitor trips (each latches flash until reset).",
        [(UNLABELLED, e.monitor_trips.load(Relaxed))],
    )?;
    out.counter(
        "greenwave_engine_dropped",
        "Messages the control thread could not hand on (its bounded channels were full).",
        [
            ([("channel", "outputs")], e.dropped_outputs.load(Relaxed)),
            ([("channel", "events")], e.dropped_events.load(Relaxed)),
            ([("channel", "snapshots")], e.dropped_snapshots.load(Relaxed)),
            ([("channel", "outcomes")], e.dropped_outcomes.load(Relaxed)),
        ],
    )?;
    out.counter(
        "greenwave_wall_clock_steps",
        "Wall-clock steps the time of day was re-anchored on.",
        [(UNLABELLED, e.wall_steps.load(Relaxed))],
    )
}

fn cabinets(out: &mut Out<'_>, cabinets: &[(String, Arc<CabinetStats>)]) -> Result<(), std::fmt::Error> {
    let each = |f: fn(&CabinetStats) -> u64| cabinets.iter().map(move |(id, c)| ([("intersection", id)], f(c)));
    out.gauge(
        "greenwave_cabinet_link_up",
        "1 while the cabinet link is up.",
        each(|c| u64::from(c.link_up.load(Relaxed))),
    )?;
    out.counter(
        "greenwave_cabinet_requests",
        "Modbus requests sent, by kind.",
        cabinets.iter().flat_map(|(id, c)| {
            [
                ([("intersection", id.as_str()), ("request", "read")], c.reads.load(Relaxed)),
                ([("intersection", id.as_str()), ("request", "write")], c.writes.load(Relaxed)),
            ]
        }),
    )?;
    // Locked only to read the counts; the cabinet task holds the same lock
    // to record one value.
    let rtt: Vec<_> = cabinets
        .iter()
        .map(|(id, c)| (id, c.rtt_us.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()))
        .collect();
    out.histogram(
        "greenwave_cabinet_round_trip",
        "Round-trip time of each successful Modbus request.",
        &RTT_BUCKETS,
        rtt.iter().map(|(id, h)| ([("intersection", id.as_str())], h, 1e-6)),
    )?;
    out.counter(
        "greenwave_cabinet_timeouts",
        "Requests without an answer in time.",
        each(|c| c.timeouts.load(Relaxed)),
    )?;
    out.counter(
        "greenwave_cabinet_refused",
        "Requests (writes of the signal states among them) the cabinet refused with a Modbus exception.",
        each(|c| c.exceptions.load(Relaxed)),
    )?;
    out.counter(
        "greenwave_cabinet_transport_errors",
        "Requests that failed on the connection.",
        each(|c| c.transport_errors.load(Relaxed)),
    )?;
    out.counter("greenwave_cabinet_links_lost", "Cabinet connections lost.", each(|c| c.links_lost.load(Relaxed)))?;
    out.counter(
        "greenwave_cabinet_inputs_dropped",
        "Input frames the control thread's channel had no room for.",
        each(|c| c.inputs_dropped.load(Relaxed)),
    )?;
    out.counter(
        "greenwave_cabinet_counter_faults",
        "Volume counter steps not counted because they cannot be true.",
        each(|c| c.counter_faults.load(Relaxed)),
    )?;
    out.counter(
        "greenwave_cabinet_foreign_writes",
        "Writes by another Modbus master seen in the heartbeat register.",
        each(|c| c.foreign_writes.load(Relaxed)),
    )?;
    out.counter(
        "greenwave_cabinet_skipped_ticks",
        "Ticks whose exchange was skipped because the previous one ran late.",
        each(|c| c.skipped_ticks.load(Relaxed)),
    )
}

fn intersections(out: &mut Out<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    let snapshots: Vec<_> = (0..s.ids.len()).map(|i| (&s.ids[i], s.board.get(i))).collect();
    out.gauge(
        "greenwave_intersection_flashing",
        "1 while the intersection is in flash (start-up included).",
        snapshots.iter().filter_map(|(id, snap)| {
            let flashing = matches!(snap.as_ref()?.unit, UnitState::Flash { .. });
            Some(([("intersection", id.as_str())], u64::from(flashing)))
        }),
    )?;
    out.gauge(
        "greenwave_detector_faults",
        "Detectors faulted now, by fault kind.",
        snapshots.iter().filter_map(|(id, snap)| snap.as_ref().map(|snap| (id, snap))).flat_map(|(id, snap)| {
            let detectors = &snap.detectors[..usize::from(snap.detector_count)];
            FAULTS.map(|(fault, name)| {
                let n = detectors.iter().filter(|d| d.fault == Some(fault)).count() as u64;
                ([("intersection", id.as_str()), ("fault", name)], n)
            })
        }),
    )?;
    out.counter(
        "greenwave_intersection_events_dropped",
        "Events the controller could not queue.",
        snapshots
            .iter()
            .filter_map(|(id, snap)| Some(([("intersection", id.as_str())], snap.as_ref()?.events_dropped))),
    )
}

fn phases(out: &mut Out<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    // One copy of each intersection's measures, then one pass per family.
    let reports: Vec<_> = (0..s.ids.len()).filter_map(|i| Some((s.ids[i].as_str(), s.measures.report(i)?))).collect();
    out.counter(
        "greenwave_phase_volume",
        "Vehicles counted at the phase's stop bars (stop-bar detector-on events; advance loops not).",
        per_phase(&reports, |p| p.counts.volume),
    )?;
    out.gauge(
        "greenwave_phase_occupancy_ratio",
        "Share of time the phase's stop-bar detectors were occupied, since start.",
        per_phase(&reports, |p| p.occupancy),
    )?;
    out.counter("greenwave_phase_greens", "Greens served.", per_phase(&reports, |p| p.counts.greens))?;
    out.counter(
        "greenwave_phase_split_failures",
        "Greens that failed to clear the queue (ATSPM GOR and ROR5 above 0.79).",
        per_phase(&reports, |p| p.counts.split_failures),
    )
}

type PhaseLabels<'a> = ([(&'static str, &'a str); 1], [(&'static str, u8); 1]);

/// `f` of every phase of every intersection, labelled with both.
fn per_phase<'a, V>(
    reports: &'a [(&'a str, IntersectionMeasures)],
    f: impl Fn(&PhaseMeasures) -> V + Copy + 'a,
) -> impl Iterator<Item = (PhaseLabels<'a>, V)> + 'a {
    reports.iter().flat_map(move |(id, r)| {
        r.phases.iter().map(move |p| (([("intersection", *id)], [("phase", p.phase.number())]), f(p)))
    })
}

fn api(out: &mut Out<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    out.counter(
        "greenwave_api_requests",
        "gRPC calls that reached the API's gate, by method (refused ones included).",
        s.calls.by_method().map(|(m, n)| ([("method", m)], n)),
    )?;
    out.counter(
        "greenwave_api_refusals",
        "Refused gRPC calls, TLS handshakes and scrapes, by status code.",
        s.refusals.by_result().map(|(code, n)| ([("code", code)], n)),
    )
}

fn event_log(out: &mut Out<'_>, h: &EventLogHealth) -> Result<(), std::fmt::Error> {
    out.counter(
        "greenwave_event_log_written",
        "Events written to the Indiana event log.",
        [(UNLABELLED, h.written.load(Relaxed))],
    )?;
    out.counter(
        "greenwave_event_log_lost",
        "Events that never reached the log, by cause.",
        [
            ([("cause", "writer_dropped")], h.dropped.load(Relaxed)),
            ([("cause", "fanout_behind")], h.behind.load(Relaxed)),
        ],
    )?;
    out.gauge(
        "greenwave_event_log_held",
        "Events held in memory, not yet on disk.",
        [(UNLABELLED, h.held.load(Relaxed))],
    )?;
    out.gauge(
        "greenwave_event_log_unwritable",
        "1 while the event log cannot be written.",
        [(UNLABELLED, u64::from(h.unwritable.load(Relaxed)))],
    )
}

fn nats(out: &mut Out<'_>, n: &NatsStats) -> Result<(), std::fmt::Error> {
    out.counter(
        "greenwave_nats_acked",
        "Messages the NATS broker's JetStream stream acked, by subject kind.",
        [
            ([("subject", "events")], n.events_acked.load(Relaxed)),
            ([("subject", "alarms")], n.alarms_acked.load(Relaxed)),
            ([("subject", "measures")], n.measures_acked.load(Relaxed)),
        ],
    )?;
    out.counter(
        "greenwave_nats_duplicates",
        "Acks that said the stream already held the message (a retry after a lost ack).",
        [(UNLABELLED, n.duplicates.load(Relaxed))],
    )?;
    out.counter(
        "greenwave_nats_states",
        "State snapshots sent on core NATS.",
        [(UNLABELLED, n.states_sent.load(Relaxed))],
    )?;
    out.counter(
        "greenwave_nats_dropped",
        "Messages dropped from the full store-and-forward queue (the oldest).",
        [(UNLABELLED, n.dropped.load(Relaxed))],
    )?;
    out.counter(
        "greenwave_nats_retries",
        "Publishes that failed or were not acked in time, then retried.",
        [(UNLABELLED, n.retries.load(Relaxed))],
    )?;
    out.gauge(
        "greenwave_nats_queued",
        "Messages waiting for the broker (queued and in flight).",
        [(UNLABELLED, n.queued.load(Relaxed))],
    )?;
    out.gauge(
        "greenwave_nats_connected",
        "1 while connected to the NATS broker.",
        [(UNLABELLED, u64::from(n.connected.load(Relaxed)))],
    )
}

fn neighbours(out: &mut Out<'_>, n: &NeighbourStats, e: &EngineStats) -> Result<(), std::fmt::Error> {
    out.counter(
        "greenwave_neighbour_projections_late",
        "Projections from other daemons that reached the control thread after their delivery time \
         (sent + 1 s of control time) and were used on arrival: a lockstep run with any is not reproducible.",
        [(UNLABELLED, e.late_projections.load(Relaxed))],
    )?;
    out.counter(
        "greenwave_neighbour_outflows",
        "Projected outflows exchanged with other daemons' corridor members: published for them, \
         received from them and handed to the control thread, or ignored (unreadable, or a phase not used).",
        [
            ([("direction", "published")], n.published.load(Relaxed)),
            ([("direction", "received")], n.received.load(Relaxed)),
            ([("direction", "ignored")], n.ignored.load(Relaxed)),
        ],
    )
}

/// The label value of a flash reason (`startup`, `cabinet_link_lost`).
pub(super) fn flash_reason(r: FlashReason) -> &'static str {
    match r {
        FlashReason::Startup => "startup",
        FlashReason::Operator => "operator",
        FlashReason::MonitorTrip => "monitor_trip",
        FlashReason::ManualSwitch => "manual_switch",
        FlashReason::CabinetMonitor => "cabinet_monitor",
        FlashReason::CabinetLinkLost => "cabinet_link_lost",
        FlashReason::Overrun => "overrun",
        FlashReason::ConfigInvalid => "config_invalid",
        FlashReason::Shutdown => "shutdown",
        FlashReason::SecondMaster => "second_master",
    }
}

/// One family per call: a descriptor, then each labelled sample.
struct Out<'a>(DescriptorEncoder<'a>);

impl Out<'_> {
    fn counter<L, V>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> Result<(), std::fmt::Error>
    where
        L: prometheus_client::encoding::EncodeLabelSet,
        V: prometheus_client::encoding::EncodeCounterValue,
    {
        let mut family = self.0.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in samples {
            family.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }

    fn gauge<L, V>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> Result<(), std::fmt::Error>
    where
        L: prometheus_client::encoding::EncodeLabelSet,
        V: prometheus_client::encoding::EncodeGaugeValue,
    {
        let mut family = self.0.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in samples {
            family.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    /// Histograms in seconds from HdrHistograms recorded in units of
    /// `scale` seconds (ns: 1e-9), cumulative over the daemon's life as
    /// the sources are.
    fn histogram<'h, L>(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        samples: impl IntoIterator<Item = (L, &'h Histogram<u64>, f64)>,
    ) -> Result<(), std::fmt::Error>
    where
        L: prometheus_client::encoding::EncodeLabelSet,
    {
        let mut family = self.0.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
        for (labels, h, scale) in samples {
            let buckets = buckets(h, bounds, scale);
            let sum = h.mean() * h.len() as f64 * scale;
            family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(sum, h.len(), &buckets, None)?;
        }
        Ok(())
    }
}

/// `(upper bound, count in that bucket)` for each bound and `+Inf`: the
/// encoder makes them cumulative.
fn buckets(h: &Histogram<u64>, bounds: &[f64], scale: f64) -> Vec<(f64, u64)> {
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut below = 0;
    for &bound in bounds {
        let upto = h.count_between(0, (bound / scale) as u64);
        out.push((bound, upto - below));
        below = upto;
    }
    out.push((f64::INFINITY, h.len() - below));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_the_histogram_at_each_bound() {
        let mut h = crate::engine::latency::LatencyHistograms::new().tick_ns;
        for ns in [500, 1_500, 1_500, 40_000, 2_000_000_000] {
            h.record(ns).expect("in bounds");
        }
        let b = buckets(&h, &[1e-6, 2e-6, 1e-4], 1e-9);
        assert_eq!(b.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 2, 1, 1]);
        assert!(b[3].0.is_infinite());
    }

    #[test]
    fn every_flash_reason_has_its_own_label() {
        let mut names: Vec<_> = FlashReason::ALL.iter().map(|&r| flash_reason(r)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FlashReason::ALL.len());
    }
}
