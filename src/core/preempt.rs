//! Preemption calls: the cabinet's preemption inputs and the operator's
//! commands ([`super::Command::Preempt`]) turned into one call per input,
//! with the input's debounce and its stuck-input fault.
//!
//! A wired input counts only once it has stood, on or off, for the
//! preempt's `debounce`. The call is on while the wired input or the
//! command is; each change is logged (102 on, 104 off). A call standing
//! longer than `max_presence` is a stuck input (an emitter jammed on, a
//! shorted gate contact): its preemption is released and the input is
//! faulted, logged once per episode with Indiana 110, as a detector's
//! maximum presence is ([`super::detector`]); the episode ends when the
//! call goes off. Which call is served, and how, is the controller's
//! (`src/core/controller.rs`, "preemption").

use super::event::{EventCode, EventQueue};
use super::spec::PreemptSpec;
use super::time::Instant;

/// Preemption inputs, 1..=8 (NTCIP controllers have 6 to 10).
pub const MAX_PREEMPT_INPUTS: usize = 8;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct InputState {
    /// The cabinet input as last read, and since when it reads so.
    wired_raw: bool,
    wired_raw_since: Instant,
    /// The cabinet input once debounced.
    wired: bool,
    /// The operator's (or central's) command.
    commanded: bool,
    /// `wired || commanded`, as logged.
    on: bool,
    on_since: Instant,
    /// On past its maximum presence: no call until it goes off.
    stuck: bool,
}

/// Every preemption input's call. Fixed size, no allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreemptInputs {
    inputs: [InputState; MAX_PREEMPT_INPUTS],
}

/// Bit of preemption input `input` (1..=8) in a mask, 0 for another number.
pub fn input_bit(input: u8) -> u8 {
    match input {
        1..=8 => 1 << (input - 1),
        _ => 0,
    }
}

impl PreemptInputs {
    /// This tick's cabinet inputs (`wired`: bit `n - 1` for input `n`), for
    /// the inputs `preempts` defines; also times every call's maximum
    /// presence.
    pub fn sample(&mut self, now: Instant, wired: u8, preempts: &[PreemptSpec], events: &mut EventQueue) {
        for spec in preempts {
            let bit = input_bit(spec.input);
            let Some(st) = self.state(spec.input) else { continue };
            let raw = wired & bit != 0;
            if raw != st.wired_raw {
                st.wired_raw = raw;
                st.wired_raw_since = now;
            }
            if st.wired != raw && now.since(st.wired_raw_since) >= spec.debounce {
                st.wired = raw;
            }
            self.settle(now, spec, events);
        }
    }

    /// The operator's call on `spec`'s input turned on or off.
    pub fn command(&mut self, now: Instant, spec: &PreemptSpec, active: bool, events: &mut EventQueue) {
        if let Some(st) = self.state(spec.input) {
            st.commanded = active;
        }
        self.settle(now, spec, events);
    }

    /// Inputs calling for service (bit `n - 1` for input `n`): on, and not
    /// stuck.
    pub fn calls(&self) -> u8 {
        (0..MAX_PREEMPT_INPUTS).filter(|&i| self.inputs[i].on && !self.inputs[i].stuck).fold(0, |m, i| m | 1 << i)
    }

    /// When `input`'s call turned on.
    pub fn on_since(&self, input: u8) -> Instant {
        (input as usize).checked_sub(1).and_then(|i| self.inputs.get(i)).map_or(Instant::ZERO, |st| st.on_since)
    }

    /// Inputs faulted as stuck (bit `n - 1` for input `n`).
    pub fn stuck(&self) -> u8 {
        (0..MAX_PREEMPT_INPUTS).filter(|&i| self.inputs[i].stuck).fold(0, |m, i| m | 1 << i)
    }

    fn state(&mut self, input: u8) -> Option<&mut InputState> {
        (input as usize).checked_sub(1).and_then(|i| self.inputs.get_mut(i))
    }

    /// Log a change of the call, and a call on past its maximum presence.
    fn settle(&mut self, now: Instant, spec: &PreemptSpec, events: &mut EventQueue) {
        let Some(st) = self.state(spec.input) else { return };
        let param = spec.input as u16;
        let on = st.wired || st.commanded;
        if on != st.on {
            st.on = on;
            st.on_since = now;
            st.stuck = false;
            let code = if on { EventCode::PreemptCallInputOn } else { EventCode::PreemptCallInputOff };
            events.push(now, code, param);
        }
        if on && !st.stuck && spec.max_presence.is_some_and(|limit| now.since(st.on_since) >= limit) {
            st.stuck = true;
            events.push(now, EventCode::PreemptMaxPresenceExceeded, param);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::Span;

    fn spec() -> PreemptSpec {
        let mut s = crate::core::testing::eight_phase().preempts[0].clone();
        s.debounce = Span::from_millis(300);
        s.max_presence = Some(Span::from_secs(60));
        s
    }

    fn drain(ev: &mut EventQueue) -> Vec<(u64, EventCode)> {
        std::iter::from_fn(|| ev.pop()).map(|e| (e.at.as_millis(), e.code)).collect()
    }

    /// A wired input must stand for its debounce: a 200 ms flicker is no
    /// call, a 300 ms one is, and so is its release.
    #[test]
    fn wired_inputs_are_debounced() {
        let (spec, mut ev, mut inputs) = (spec(), EventQueue::default(), PreemptInputs::default());
        let script = [(0, 1), (100, 1), (200, 0), (300, 0), (1000, 1), (1200, 1), (1300, 1), (2000, 0), (2300, 0)];
        for (ms, wired) in script {
            inputs.sample(Instant::from_millis(ms), wired, std::slice::from_ref(&spec), &mut ev);
        }
        let logged = drain(&mut ev);
        assert_eq!(logged, [(1300, EventCode::PreemptCallInputOn), (2300, EventCode::PreemptCallInputOff)]);
        assert_eq!(inputs.on_since(1), Instant::from_millis(2300));
    }

    /// A call on past its maximum presence is released and faulted once;
    /// the operator's command cannot keep it; the fault ends when the call
    /// goes off, and a new call is served.
    #[test]
    fn a_stuck_input_is_released_and_faulted_once_per_episode() {
        let (spec, mut ev, mut inputs) = (spec(), EventQueue::default(), PreemptInputs::default());
        let specs = std::slice::from_ref(&spec);
        inputs.sample(Instant::ZERO, 1, specs, &mut ev);
        inputs.sample(Instant::from_millis(300), 1, specs, &mut ev);
        assert_eq!(inputs.calls(), 1);
        inputs.command(Instant::from_millis(10 * 1000), &spec, true, &mut ev);
        for s in 60..=200 {
            inputs.sample(Instant::from_millis(s * 1000), 1, specs, &mut ev);
        }
        assert_eq!((inputs.calls(), inputs.stuck()), (0, 1));
        inputs.command(Instant::from_millis(201 * 1000), &spec, false, &mut ev);
        inputs.sample(Instant::from_millis(202 * 1000), 0, specs, &mut ev);
        inputs.sample(Instant::from_millis(202_300), 0, specs, &mut ev);
        assert_eq!(inputs.stuck(), 0);
        inputs.command(Instant::from_millis(203 * 1000), &spec, true, &mut ev);
        assert_eq!(inputs.calls(), 1);
        let codes: Vec<_> = drain(&mut ev).into_iter().map(|(t, c)| (t / 1000, c)).collect();
        assert_eq!(
            codes,
            [
                (0, EventCode::PreemptCallInputOn),
                (61, EventCode::PreemptMaxPresenceExceeded),
                (202, EventCode::PreemptCallInputOff),
                (203, EventCode::PreemptCallInputOn),
            ]
        );
    }
}
