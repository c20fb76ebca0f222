//! `[[preempt]]` inputs and `[transit_priority]` bounds.

use std::collections::BTreeMap;

use crate::core::Span;
use crate::core::preempt::MAX_PREEMPT_INPUTS;
use crate::core::spec::{PreemptSpec, PrioritySpec, TrackClearance};

use super::super::key::KeyPath;
use super::super::raw::{RawPreempt, RawTransitPriority};
use super::{Validator, root};

/// Default bound on a transit-priority green extension.
pub const DEFAULT_PRIORITY_EXTENSION: Span = Span::from_secs(10);
/// Highest preemption input number (NTCIP controllers have 6 to 10).
const MAX_PREEMPT_INPUT: u8 = MAX_PREEMPT_INPUTS as u8;
/// Default debounce of a wired preemption input.
pub const DEFAULT_PREEMPT_DEBOUNCE: Span = Span::from_millis(250);
/// Longest debounce accepted: every preemption waits that much longer.
const MAX_PREEMPT_DEBOUNCE: Span = Span::from_secs(5);
/// Default walk a preemption with `ped_truncation` may cut a walk to.
pub const DEFAULT_TRUNCATED_WALK: Span = Span::from_secs(7);
/// The shortest walk the reference allows (`controllers/README.md`,
/// `[[preempt]]`: the MUTCD's minimum walk).
pub const LEGAL_MIN_WALK: Span = Span::from_secs(4);

impl Validator<'_> {
    pub(super) fn preempts(&mut self, raw: &[RawPreempt]) -> Vec<PreemptSpec> {
        let table = root().key("preempt");
        let mut by_input = BTreeMap::new();
        for (i, r) in raw.iter().enumerate() {
            let at = table.index(i);
            let input_at = at.key("input");
            let input = self.required(r.input, &input_at);
            if let Some(n) = input
                && !(1..=MAX_PREEMPT_INPUT).contains(&n)
            {
                self.error(&input_at, format!("{n} is outside the preemption inputs 1..={MAX_PREEMPT_INPUT}"));
                continue;
            }
            let delay = self.seconds(r.delay_s.unwrap_or(0.0), &at.key("delay_s"));
            let min_duration = self.seconds(r.min_duration_s.unwrap_or(0.0), &at.key("min_duration_s"));
            let dwell_at = at.key("dwell_phases");
            let dwell = self.required(r.dwell_phases.as_ref(), &dwell_at).map(|d| self.phase_set(d, &dwell_at));
            if let Some(d) = dwell {
                if d.is_empty() {
                    self.error(&dwell_at, "name the phases to hold green while preempted");
                }
                self.check_together(d, &dwell_at, "dwell");
            }
            let exit_at = at.key("exit_phases");
            let exit = r.exit_phases.as_ref().map(|e| self.phase_set(e, &exit_at));
            if let Some(e) = exit {
                // Exit phases are served first, together, as one barrier
                // group's greens after the dwell clears.
                self.check_together(e, &exit_at, "exit");
            }
            let priority = r.priority.unwrap_or(input.unwrap_or(MAX_PREEMPT_INPUT));
            if !(1..=MAX_PREEMPT_INPUT).contains(&priority) {
                self.error(
                    &at.key("priority"),
                    format!("{priority} is not a rank 1 (served first) ..= {MAX_PREEMPT_INPUT}"),
                );
            }
            let debounce_at = at.key("debounce_s");
            let debounce = r.debounce_s.map_or(Some(DEFAULT_PREEMPT_DEBOUNCE), |s| self.seconds(s, &debounce_at));
            if let Some(d) = debounce.filter(|&d| d > MAX_PREEMPT_DEBOUNCE) {
                self.error(
                    &debounce_at,
                    format!("{d} is longer than {MAX_PREEMPT_DEBOUNCE}: every call would wait it"),
                );
            }
            let max_presence_at = at.key("max_presence_s");
            let max_presence = r.max_presence_s.and_then(|s| self.seconds(s, &max_presence_at));
            if let (Some(m), Some(d)) = (max_presence, delay)
                && m <= d
            {
                self.error(
                    &max_presence_at,
                    format!("{m} is not longer than delay_s ({d}): every call would fault before its entry"),
                );
            }
            let track_clearance = self.track_clearance(r, &at);
            let truncated_walk = self.truncated_walk(r, &at);
            let (Some(input), Some(delay), Some(min_duration), Some(dwell), Some(debounce)) =
                (input, delay, min_duration, dwell, debounce)
            else {
                continue;
            };
            if by_input.contains_key(&input) {
                self.error(&input_at, format!("preemption input {input} is defined twice"));
                continue;
            }
            let spec = PreemptSpec {
                input,
                name: r.name.clone().unwrap_or_else(|| format!("preempt {input}")),
                delay,
                min_duration,
                dwell,
                exit: exit.unwrap_or(dwell),
                priority,
                debounce,
                max_presence,
                track_clearance,
                truncated_walk,
            };
            by_input.insert(input, spec);
        }
        by_input.into_values().collect()
    }

    /// `track_clearance_phases` and `track_clearance_s`, both or neither.
    fn track_clearance(&mut self, r: &RawPreempt, at: &KeyPath) -> Option<TrackClearance> {
        let (phases_at, green_at) = (at.key("track_clearance_phases"), at.key("track_clearance_s"));
        let phases = r.track_clearance_phases.as_ref().map(|p| self.phase_set(p, &phases_at));
        let green = r.track_clearance_s.and_then(|s| self.seconds(s, &green_at));
        match (phases, green) {
            (Some(phases), Some(green)) => {
                if phases.is_empty() {
                    self.error(&phases_at, "name the phases that clear the track (or remove track_clearance_s)");
                }
                if green.is_zero() {
                    self.error(&green_at, "a track clearance needs a green time above 0");
                }
                self.check_together(phases, &phases_at, "clear the track");
                Some(TrackClearance { phases, green })
            }
            (Some(_), None) if r.track_clearance_s.is_none() => {
                self.error(&green_at, "missing: how long the track clearance phases stay green");
                None
            }
            (None, Some(_)) => {
                self.error(&phases_at, "missing: which phases clear the track for track_clearance_s");
                None
            }
            _ => None,
        }
    }

    /// `ped_truncation` and the walk it may cut to (never below
    /// [`LEGAL_MIN_WALK`]).
    fn truncated_walk(&mut self, r: &RawPreempt, at: &KeyPath) -> Option<Span> {
        let walk_at = at.key("truncated_walk_s");
        let walk = r.truncated_walk_s.and_then(|s| self.seconds(s, &walk_at));
        if !r.ped_truncation.unwrap_or(false) {
            if r.truncated_walk_s.is_some() {
                self.error(&walk_at, "set ped_truncation = true to let entry cut walks, or remove this key");
            }
            return None;
        }
        let walk = walk.or(r.truncated_walk_s.is_none().then_some(DEFAULT_TRUNCATED_WALK))?;
        if walk < LEGAL_MIN_WALK {
            self.error(&walk_at, format!("{walk} is below the legal minimum walk of {LEGAL_MIN_WALK}"));
            return None;
        }
        Some(walk)
    }

    pub(super) fn transit_priority(&mut self, raw: Option<&RawTransitPriority>) -> PrioritySpec {
        let at = root().key("transit_priority").key("max_extension_s");
        let max_extension = raw
            .and_then(|r| r.max_extension_s)
            .and_then(|s| self.seconds(s, &at))
            .unwrap_or(DEFAULT_PRIORITY_EXTENSION);
        if max_extension > Span::from_secs(30) {
            self.warn(
                &at,
                format!("{max_extension} is a long extension: every conflicting movement waits that much longer"),
            );
        }
        PrioritySpec { max_extension }
    }
}
