//! The built-in simulated cabinet, all of it: what the daemon talks to when
//! an intersection has no hardware (`CabinetConfig::Simulated`, the embedded
//! default) and what `greenwave sim-cabinet` serves.
//!
//! # Layout
//! - this module: [`SimCabinet`], transport-free: it takes the heads the
//!   controller commands and returns the inputs a cabinet would report, with
//!   simulated time passed in (`greenwave simulate` and the tests call it
//!   in-process; [`server`] wraps it).
//! - [`traffic`]: the traffic generator behind it (arrivals, queues,
//!   discharge, pedestrians).
//! - [`server`]: the same cabinet as a Modbus server behind the register
//!   map, real-time or lockstep; the embedded default of `greenwave run`
//!   talks to it over loopback through the real cabinet client.
//! - [`mmu`]: the simulated cabinet's independent conflict monitor and
//!   watchdog.
//! - [`serve`]: `greenwave sim-cabinet` ([`serve_sim_cabinets`]) and the
//!   controller files it writes ([`controller_for`]).

pub mod mmu;
pub mod serve;
pub mod server;
pub mod traffic;

pub use serve::{SimCabinetOptions, controller_for, serve_sim_cabinets};
pub use traffic::{LaneStats, PedStats, TrafficGenerator};

use crate::config::TrafficConfig;
use crate::core::{CabinetStatus, InputFrame, Instant, OutputFrame, Span};

/// A simulated cabinet: a traffic generator behind the same input/output
/// exchange a real cabinet offers. No allocation per exchange.
#[derive(Debug)]
pub struct SimCabinet {
    generator: TrafficGenerator,
    /// Time of the previous exchange; the traffic advances by the time since
    /// then. `None` until the first exchange, which therefore advances by zero.
    last_exchange: Option<Instant>,
    /// The cabinet's status inputs (technician switches, MMU): all clear
    /// unless a test or an operator tool sets them.
    cabinet: CabinetStatus,
}

impl SimCabinet {
    pub fn new(cfg: &TrafficConfig) -> Self {
        SimCabinet { generator: TrafficGenerator::new(cfg), last_exchange: None, cabinet: CabinetStatus::default() }
    }

    /// Writes `outputs` to the simulated heads and reads the inputs back.
    ///
    /// `outputs` is what the heads have shown since the previous exchange
    /// (the controller's latest frame); the traffic advances from the previous
    /// exchange to `now` under it. A `now` earlier than the previous exchange
    /// advances nothing.
    pub fn exchange(&mut self, now: Instant, outputs: &OutputFrame) -> InputFrame {
        // Simulated time never runs backwards: an earlier `now` is held at
        // the previous exchange.
        let now = self.last_exchange.map_or(now, |last| last.max(now));
        let dt = self.last_exchange.map_or(Span::ZERO, |last| now.since(last));
        self.last_exchange = Some(now);
        let mut input = InputFrame { cabinet: self.cabinet, ..InputFrame::default() };
        self.generator.step(now, dt, outputs, &mut input);
        input
    }

    /// Sets the cabinet status inputs reported from the next exchange on
    /// (manual flash switch, MMU trip, door, power).
    pub fn set_cabinet_status(&mut self, status: CabinetStatus) {
        self.cabinet = status;
    }

    /// The traffic behind the cabinet, for its measures.
    pub fn generator(&self) -> &TrafficGenerator {
        &self.generator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LaneHead, LaneTraffic, PedTraffic};
    use crate::core::{DetectorChannel, Indication, PhaseId};

    fn config() -> TrafficConfig {
        let ch = |n| DetectorChannel::new(n).unwrap();
        TrafficConfig {
            seed: 42,
            saturation_headway: Span::from_secs(2),
            lanes: vec![LaneTraffic {
                detector: ch(3),
                head: LaneHead::Phase(PhaseId::new(4).unwrap()),
                arrivals_per_hour: 3600.0,
            }],
            pedestrians: vec![PedTraffic { detector: ch(12), per_hour: 600.0 }],
        }
    }

    /// The first exchange advances no time: no traffic yet, whatever `now`.
    #[test]
    fn first_exchange_advances_nothing() {
        let mut cab = SimCabinet::new(&config());
        let input = cab.exchange(Instant::from_millis(1_700_000_000_000), &OutputFrame::default());
        assert_eq!(input.presence, 0);
        assert_eq!(cab.generator().lane_stats()[0].arrived, 0);
    }

    /// Exchanges step the traffic by the time between them, so a cabinet
    /// polled every 100 ms and one polled every second see the same traffic.
    #[test]
    fn exchanges_step_by_elapsed_time() {
        let run = |period_ms: u64| {
            let mut cab = SimCabinet::new(&config());
            let red = OutputFrame { vehicle: [Indication::Red; 16], ..OutputFrame::default() };
            let mut now = Instant::from_millis(10_000);
            let mut present = 0;
            for _ in 0..=(120_000 / period_ms) {
                present += cab.exchange(now, &red).presence.count_ones();
                now += Span::from_millis(period_ms);
            }
            (cab.generator().lane_stats()[0], cab.generator().ped_stats()[0].presses, present > 0)
        };
        let (fast, slow) = (run(100), run(1000));
        assert_eq!(fast, slow);
        assert!(fast.0.queue > 60, "about 120 vehicles queue on 2 min of red");
        assert!(fast.1 > 5, "about 20 presses in 2 min");
    }

    /// Status inputs set on the cabinet are reported with every frame.
    #[test]
    fn cabinet_status_is_reported() {
        let mut cab = SimCabinet::new(&config());
        cab.set_cabinet_status(CabinetStatus { manual_flash: true, ..CabinetStatus::default() });
        assert!(cab.exchange(Instant::from_millis(0), &OutputFrame::default()).cabinet.manual_flash);
    }
}
