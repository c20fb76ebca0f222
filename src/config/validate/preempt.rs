//! `[[preempt]]` inputs and `[transit_priority]` bounds.

use std::collections::BTreeMap;

use crate::core::Span;
use crate::core::spec::{PreemptSpec, PrioritySpec};

use super::super::raw::{RawPreempt, RawTransitPriority};
use super::{Validator, root};

/// Default bound on a transit-priority green extension.
pub const DEFAULT_PRIORITY_EXTENSION: Span = Span::from_secs(10);
/// Highest preemption input number (NTCIP controllers have 6 to 10).
const MAX_PREEMPT_INPUT: u8 = 8;

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
            let (Some(input), Some(delay), Some(min_duration), Some(dwell)) = (input, delay, min_duration, dwell)
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
            };
            by_input.insert(input, spec);
        }
        by_input.into_values().collect()
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
