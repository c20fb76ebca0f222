//! `[simulation]`: demand for the built-in simulated cabinet.

use std::collections::BTreeSet;

use crate::core::spec::DetectorKind;
use crate::core::{DetectorChannel, OverlapId, PhaseSet};

use super::super::key::KeyPath;
use super::super::raw::RawSimulation;
use super::super::{CabinetConfig, LaneHead, LaneTraffic, PedTraffic, TrafficConfig};
use super::{DEFAULT_SATURATION_HEADWAY, DEFAULT_SIM_SEED, Validator, root};

impl Validator<'_> {
    pub(super) fn simulation(&mut self, raw: Option<&RawSimulation>, cabinet: Option<&CabinetConfig>) -> TrafficConfig {
        let at = root().key("simulation");
        let simulated = cabinet == Some(&CabinetConfig::Simulated);
        let headway_at = at.key("saturation_headway_s");
        let mut traffic = TrafficConfig {
            seed: DEFAULT_SIM_SEED,
            saturation_headway: DEFAULT_SATURATION_HEADWAY,
            lanes: Vec::new(),
            pedestrians: Vec::new(),
        };
        let Some(raw) = raw else {
            if simulated && !self.invalid.contains(&at) {
                self.warn(
                    &at,
                    "the cabinet is simulated but there is no [simulation]: no vehicle or pedestrian will arrive",
                );
            }
            return traffic;
        };
        traffic.seed = raw.seed.unwrap_or(DEFAULT_SIM_SEED);
        if let Some(h) = raw.saturation_headway_s {
            match self.seconds(h, &headway_at) {
                Some(s) if !s.is_zero() => traffic.saturation_headway = s,
                Some(_) => self.error(&headway_at, "must be greater than 0"),
                None => {}
            }
        }
        let capacity_per_hour = 3_600_000.0 / traffic.saturation_headway.as_millis() as f64;

        let mut lane_detectors = BTreeSet::new();
        for (i, lane) in raw.lanes.iter().enumerate() {
            let l_at = at.key("lanes").index(i);
            let detector = self.sim_detector(lane.detector, &l_at.key("detector"), DetectorKind::Vehicle);
            let head = match (lane.phase, lane.overlap.as_deref()) {
                (Some(n), None) => self.phase_ref(n, &l_at.key("phase")).map(LaneHead::Phase),
                (None, Some(letter)) => self.overlap_ref(letter, &l_at.key("overlap")).map(LaneHead::Overlap),
                (Some(_), Some(_)) => {
                    self.error(&l_at, "give phase or overlap, not both: the signal head this lane obeys");
                    None
                }
                (None, None) => {
                    if !self.invalid.contains(&l_at.key("phase")) && !self.invalid.contains(&l_at.key("overlap")) {
                        self.error(
                            &l_at.key("phase"),
                            "missing (required: phase or overlap, the signal head this lane obeys)",
                        );
                    }
                    None
                }
            };
            let rate = self.rate(lane.arrivals_per_hour, &l_at.key("arrivals_per_hour"));
            if let Some(r) = rate.filter(|&r| r > capacity_per_hour) {
                self.warn(
                    &l_at.key("arrivals_per_hour"),
                    format!("{r} veh/h is more than one lane discharges even on constant green ({capacity_per_hour:.0} veh/h)"),
                );
            }
            if let (Some(ch), Some(head)) = (detector, head) {
                self.check_lane_detector_calls(ch, head, &l_at);
                lane_detectors.insert(ch);
            }
            if let (Some(detector), Some(head), Some(arrivals_per_hour)) = (detector, head, rate) {
                traffic.lanes.push(LaneTraffic { detector, head, arrivals_per_hour });
            }
        }
        for (i, ped) in raw.pedestrians.iter().enumerate() {
            let p_at = at.key("pedestrians").index(i);
            let detector = self.sim_detector(ped.detector, &p_at.key("detector"), DetectorKind::Pedestrian);
            let rate = self.rate(ped.per_hour, &p_at.key("per_hour"));
            if let (Some(detector), Some(per_hour)) = (detector, rate) {
                traffic.pedestrians.push(PedTraffic { detector, per_hour });
            }
        }
        if simulated {
            let quiet: Vec<(KeyPath, DetectorChannel)> = self
                .detectors
                .values()
                .filter(|(_, d)| {
                    d.kind == DetectorKind::Vehicle
                        && d.diagnostics.no_activity.is_some()
                        && !lane_detectors.contains(&d.channel)
                })
                .map(|(at, d)| (at.clone(), d.channel))
                .collect();
            for (d_at, ch) in quiet {
                self.warn(&d_at, format!("no simulated lane crosses detector {ch}, so its no-activity diagnostic will fault in simulation"));
            }
        }
        traffic
    }

    fn sim_detector(&mut self, n: Option<u8>, at: &KeyPath, kind: DetectorKind) -> Option<DetectorChannel> {
        let n = self.required(n, at)?;
        let Some((_, spec)) = DetectorChannel::new(n).and_then(|ch| self.detectors.get(&ch)) else {
            self.error(at, format!("detector {n} is not defined by any [[detector]]"));
            return None;
        };
        if spec.kind != kind {
            let want = if kind == DetectorKind::Vehicle {
                "lanes need a vehicle detector"
            } else {
                "pedestrians need a push button (kind = \"pedestrian\")"
            };
            self.error(at, format!("detector {n} is the wrong kind: {want}"));
            return None;
        }
        Some(spec.channel)
    }

    fn overlap_ref(&mut self, letter: &str, at: &KeyPath) -> Option<OverlapId> {
        let mut chars = letter.chars();
        let id = match (chars.next(), chars.next()) {
            (Some(c), None) => OverlapId::from_letter(c),
            _ => None,
        };
        match id.filter(|id| self.overlaps.contains_key(id)) {
            Some(id) => Some(id),
            None => {
                self.error(at, format!("overlap \"{letter}\" is not defined by any [[overlap]]"));
                None
            }
        }
    }

    fn rate(&mut self, v: Option<f64>, at: &KeyPath) -> Option<f64> {
        let v = self.required(v, at)?;
        if !(v.is_finite() && v >= 0.0) {
            self.error(at, format!("{v}: must be 0 or more per hour"));
            return None;
        }
        Some(v)
    }

    fn check_lane_detector_calls(&mut self, ch: DetectorChannel, head: LaneHead, at: &KeyPath) {
        let Some((_, d)) = self.detectors.get(&ch) else { return };
        let (served, what) = match head {
            LaneHead::Phase(p) => (PhaseSet::single(p), format!("phase {p}")),
            LaneHead::Overlap(o) => {
                (self.overlaps.get(&o).map(|(_, s)| s.parents).unwrap_or_default(), format!("a parent of overlap {o}"))
            }
        };
        if !d.calls.intersects(served) {
            self.warn(
                &at.key("detector"),
                format!(
                    "detector {ch} does not call {what}, which this lane obeys: its queue is never served on demand"
                ),
            );
        }
    }
}
