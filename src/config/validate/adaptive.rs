//! `[adaptive]`: the engineer's bounds on the adaptive optimizer.

use crate::core::Span;
use crate::core::spec::{AdaptiveSpec, AdaptiveStyle, MaxFloor};

use super::super::raw::{RawAdaptive, RawAdaptiveStyle, RawMaxFloor};
use super::{Validator, root, secs};

impl Validator<'_> {
    pub(super) fn adaptive(&mut self, raw: Option<&RawAdaptive>) -> AdaptiveSpec {
        let d = AdaptiveSpec::default();
        let Some(raw) = raw else { return d };
        let at = root().key("adaptive");
        let span = |v: &mut Self, value: Option<f64>, key: &str, default: Span| {
            value.and_then(|s| v.seconds(s, &at.key(key))).unwrap_or(default)
        };
        let min_cycle = span(self, raw.min_cycle_s, "min_cycle_s", d.min_cycle);
        let max_cycle = span(self, raw.max_cycle_s, "max_cycle_s", d.max_cycle);
        let max_step = span(self, raw.max_cycle_step_s, "max_cycle_step_s", d.max_step);
        let startup_lost = span(self, raw.startup_lost_s, "startup_lost_s", d.startup_lost);
        let horizon = span(self, raw.horizon_s, "horizon_s", d.horizon);
        if !(Span::from_secs(30)..=Span::from_secs(300)).contains(&horizon) {
            self.error(
                &at.key("horizon_s"),
                format!("{} is outside 30..=300 s: the schedule looks at least one cycle ahead", secs(horizon)),
            );
        }
        if max_cycle < min_cycle {
            self.error(&at.key("max_cycle_s"), format!("{} is below min_cycle_s {}", secs(max_cycle), secs(min_cycle)));
        }
        if max_step.is_zero() {
            self.error(&at.key("max_cycle_step_s"), "must be above zero, or the cycle could never adapt");
        }
        let saturation = raw.saturation_flow_vphpl.unwrap_or(f64::from(d.saturation_flow_vphpl));
        if !(600.0..=2400.0).contains(&saturation) {
            self.error(
                &at.key("saturation_flow_vphpl"),
                format!("{saturation} veh/h/lane is outside 600..=2400 (HCM base is 1900)"),
            );
        }
        let smoothing = raw.smoothing.unwrap_or(f64::from(d.smoothing));
        if !(smoothing > 0.0 && smoothing <= 1.0) {
            self.error(&at.key("smoothing"), format!("{smoothing} must be in (0, 1]: the weight of the newest cycle"));
        }
        let max_headroom = raw.max_headroom.unwrap_or(f64::from(d.max_headroom));
        if !(1.0..=2.0).contains(&max_headroom) {
            self.error(
                &at.key("max_headroom"),
                format!("{max_headroom} is outside 1.0..=2.0: the maximum green over the re-planned green"),
            );
        }
        let style = match raw.style {
            Some(RawAdaptiveStyle::Free) => AdaptiveStyle::Free,
            Some(RawAdaptiveStyle::Schedule) => AdaptiveStyle::Schedule,
            Some(RawAdaptiveStyle::Cycle) | None => AdaptiveStyle::Cycle,
        };
        let max_floor = match raw.max_floor {
            Some(RawMaxFloor::MinService) => MaxFloor::MinService,
            Some(RawMaxFloor::Max) | None => MaxFloor::EngineerMax,
        };
        AdaptiveSpec {
            style,
            max_floor,
            max_headroom: max_headroom as f32,
            min_cycle,
            max_cycle,
            max_step,
            saturation_flow_vphpl: saturation as f32,
            startup_lost,
            smoothing: smoothing as f32,
            horizon,
        }
    }
}
