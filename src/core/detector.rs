//! Detector processing: raw presence in, phase calls and extensions out,
//! after NTCIP delay and extend (carry-over), with volume and occupancy
//! counts and diagnostics (no activity, max presence, erratic counts).
//!
//! A faulted detector is treated the fail-safe way: it places a constant
//! call and extension on its phases (the phase runs as if on max recall), so
//! a broken loop costs some green time but never strands a movement.
//!
//! Counts that cannot be true are not counted: a cabinet counter that steps
//! further than the lanes can pass ([`most_vehicles`]) or backwards arrives
//! flagged in [`InputFrame::counter_faults`], without its step, and faults
//! the detector. A push button counts no vehicles, whatever its channel's
//! counter says.

use super::event::{EventCode, EventQueue};
use super::ids::{MAX_DETECTORS, MAX_PHASES, PhaseSet};
use super::image::InputFrame;
use super::spec::{DetectorKind, DetectorSpec};
use super::time::{Instant, Span};

/// Why a detector is considered faulty. The Indiana code logged for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorFault {
    /// No actuation within `no_activity` (Indiana 85, watchdog fault).
    NoActivity,
    /// Continuous presence beyond `max_presence` (Indiana 87, a stuck or shorted loop).
    MaxPresence,
    /// More actuations in a minute than `erratic_per_minute` (Indiana 88, excessive change).
    Erratic,
    /// The channel's counter stepped further than the lanes can pass, or
    /// backwards (Indiana 88, excessive change); restored after
    /// [`COUNTER_FAULT_HOLD`] without another such step.
    ImplausibleCount,
}

impl DetectorFault {
    pub fn event_code(self) -> EventCode {
        match self {
            DetectorFault::NoActivity => EventCode::DetectorFaultWatchdog,
            DetectorFault::MaxPresence => EventCode::DetectorFaultShortedLoop,
            DetectorFault::Erratic | DetectorFault::ImplausibleCount => EventCode::DetectorFaultExcessiveChange,
        }
    }
}

/// The fastest one detector channel counts: a vehicle per this long. A lane
/// at saturation passes one every 1.8–2 s (1,800–2,000 veh/h) and a moving
/// platoon no closer than about 0.6 s apart; half a second also covers a
/// channel wired to the loops of two lanes.
pub const MIN_COUNT_HEADWAY: Span = Span::from_millis(500);

/// Vehicles a counter may show beyond the headway bound: the counter card
/// and the reads are not in step, so a vehicle counted just before a read
/// and one just after the previous read both land in one step.
pub const COUNT_SLACK: u32 = 2;

/// A counter fault lasts until the counter has stepped plausibly for this
/// long (as an erratic detector needs a calm minute).
pub const COUNTER_FAULT_HOLD: Span = MINUTE;

/// The most vehicles one channel's counter can plausibly step in `elapsed`
/// between two reads: `ceil(elapsed / MIN_COUNT_HEADWAY) + COUNT_SLACK`
/// (4 in one second). A 16-bit counter stepping backwards reads as a wrap
/// of nearly 65,536 and is far beyond it; a real wrap (65,535 → 3 is 4
/// vehicles) is not.
pub fn most_vehicles(elapsed: Span) -> u32 {
    let headways = elapsed.as_millis().div_ceil(MIN_COUNT_HEADWAY.as_millis());
    u32::try_from(headways).unwrap_or(u32::MAX).saturating_add(COUNT_SLACK)
}

/// Per-detector running state.
#[derive(Clone, Copy, Debug, Default)]
pub struct DetectorState {
    /// Raw presence as last read.
    pub raw: bool,
    /// When raw presence last changed.
    raw_since: Instant,
    /// Output after delay and extend: what calls and extends phases.
    pub output: bool,
    /// While `Some`, the extend (carry-over) timer holds the output on.
    extend_until: Option<Instant>,
    /// Last rising edge of raw presence (for no-activity diagnostics).
    last_actuation: Instant,
    /// Rising edges in the current diagnostic minute.
    edges_this_minute: u16,
    minute_start: Instant,
    pub fault: Option<DetectorFault>,
    /// When the cabinet last flagged this channel's counter (a step that
    /// cannot be true).
    counter_fault_at: Option<Instant>,
    /// Vehicles counted since start (wrapping), from edges or reported counts.
    pub volume: u32,
    /// Milliseconds of presence since start (wrapping), for occupancy.
    pub occupied_ms: u64,
    /// A counting channel's logged rising edge waits for the vehicle count
    /// it stands for ([`DetectorBank::process`]).
    edge_uncounted: bool,
    /// Counted vehicles still to be logged as pulses, at most
    /// [`PULSES_PER_TICK`] a tick.
    pulses_owed: u16,
}

/// Count pulses (detector-on and -off pairs) one detector logs per tick at
/// most; more wait for the next tick, so a burst of counts never fills the
/// event queue.
pub const PULSES_PER_TICK: u16 = 4;

/// What the detectors ask of the phases this tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorDemand {
    /// Phases with a vehicle call from a detector output (or a fault).
    pub calls: PhaseSet,
    /// Phases whose green an actuation extends this tick.
    pub extends: PhaseSet,
    /// Phases with a pedestrian call (a push-button press).
    pub ped_calls: PhaseSet,
    /// Phases whose pedestrians ask for extended clearance (a long press,
    /// an extension input).
    pub ped_extensions: PhaseSet,
    /// Per phase, vehicles its calling detectors counted this tick (for
    /// volume-density's added initial).
    pub vehicles: [u16; MAX_PHASES],
}

/// All detectors of one controller.
#[derive(Clone, Debug)]
pub struct DetectorBank {
    states: [DetectorState; MAX_DETECTORS],
    started: bool,
    last_tick: Instant,
}

impl Default for DetectorBank {
    fn default() -> Self {
        DetectorBank { states: [DetectorState::default(); MAX_DETECTORS], started: false, last_tick: Instant::ZERO }
    }
}

const MINUTE: Span = Span::from_secs(60);

impl DetectorBank {
    /// State of the detector at `slot` (its position in the spec's detector list).
    pub fn state(&self, slot: usize) -> &DetectorState {
        &self.states[slot]
    }

    /// Faulted detector slots as a bit mask (bit = slot).
    pub fn fault_mask(&self, count: usize) -> u64 {
        (0..count.min(MAX_DETECTORS)).filter(|&i| self.states[i].fault.is_some()).fold(0, |m, i| m | 1 << i)
    }

    /// Process one input frame. `green` are the phases now green: delay only
    /// applies to calls on phases that are not green (NTCIP).
    pub fn process(
        &mut self,
        now: Instant,
        specs: &[DetectorSpec],
        input: &InputFrame,
        green: PhaseSet,
        events: &mut EventQueue,
    ) -> DetectorDemand {
        if !self.started {
            self.started = true;
            self.last_tick = now;
            for s in &mut self.states {
                s.raw_since = now;
                s.last_actuation = now;
                s.minute_start = now;
            }
        }
        let dt = now.since(self.last_tick);
        self.last_tick = now;

        let mut demand = DetectorDemand::default();
        for (slot, spec) in specs.iter().enumerate().take(MAX_DETECTORS) {
            let st = &mut self.states[slot];
            let raw = input.is_present(spec.channel);
            let reported = input.counts[spec.channel.index()];

            // Volume and occupancy. A detector that reports counts (camera
            // zone, counter card) is trusted for volume; a loop is counted
            // from its rising edges. A channel the cabinet marks as counted
            // is never counted from edges, even in a frame with no count
            // (the vehicle behind the edge arrives in another frame's count).
            let rising = raw && !st.raw;
            if st.raw {
                st.occupied_ms = st.occupied_ms.wrapping_add(dt.as_millis());
            }
            let bit = 1 << spec.channel.index();
            let counted = input.counted & bit != 0;
            let vehicles = match spec.kind {
                // A push button counts presses, never vehicles; its
                // channel's counter is not used, so its faults are not the
                // push button's either.
                DetectorKind::Pedestrian => 0,
                DetectorKind::Vehicle if counted || reported > 0 => reported as u32,
                DetectorKind::Vehicle => rising as u32,
            };
            st.volume = st.volume.wrapping_add(vehicles);
            if vehicles > 0 {
                for p in spec.calls.iter() {
                    let n = &mut demand.vehicles[p.index()];
                    *n = n.saturating_add(u16::try_from(vehicles).unwrap_or(u16::MAX));
                }
            }
            if spec.kind == DetectorKind::Vehicle && input.counter_faults & bit != 0 {
                st.counter_fault_at = Some(now);
            }
            if raw != st.raw {
                st.raw = raw;
                st.raw_since = now;
            }
            // Actuations: the rising edge, or the cabinet's own count of
            // them where it latches and counts a loop (a detector chattering
            // faster than the tick shows one long presence and a count
            // above one each frame).
            let actuations = if counted { u16::from(rising) } else { u16::from(rising).max(reported) };
            if actuations > 0 {
                st.last_actuation = now;
                st.edges_this_minute = st.edges_this_minute.saturating_add(actuations);
            }

            diagnose(now, spec, st, events);

            // Delay then extend.
            let delay_applies = !spec.calls.intersects(green) && spec.kind == DetectorKind::Vehicle;
            let delayed_on = raw && (!delay_applies || now.since(st.raw_since) >= spec.delay);
            if delayed_on {
                st.extend_until = None;
            } else if st.output && st.extend_until.is_none() && !spec.extend.is_zero() {
                st.extend_until = Some(now + spec.extend);
            }
            let carried = st.extend_until.is_some_and(|t| now < t);
            if !carried {
                st.extend_until = None;
            }
            let output = delayed_on || carried;
            let rose = output && !st.output;
            if output != st.output {
                st.output = output;
                let code = match (spec.kind, output) {
                    (DetectorKind::Vehicle, true) => EventCode::DetectorOn,
                    (DetectorKind::Vehicle, false) => EventCode::DetectorOff,
                    (DetectorKind::Pedestrian, true) => EventCode::PedDetectorOn,
                    (DetectorKind::Pedestrian, false) => EventCode::PedDetectorOff,
                };
                events.push(now, code, spec.channel.number() as u16);
            }
            // A channel that counts its own vehicles (a camera zone, a
            // cabinet counter) logs every vehicle it counts as a
            // detector-on, as the pulses of an ATSPM count detector would:
            // a logged rising edge stands for the next vehicle counted (the
            // count may come a frame later), every other counted vehicle
            // is logged as a pulse of no length (on and off at this tick,
            // or off and on while the output stays on).
            if counted && spec.kind == DetectorKind::Vehicle {
                st.edge_uncounted |= rose;
                let mut uncounted = vehicles;
                if uncounted > 0 && st.edge_uncounted {
                    st.edge_uncounted = false;
                    uncounted -= 1;
                }
                st.pulses_owed = st.pulses_owed.saturating_add(uncounted.min(u32::from(u16::MAX)) as u16);
                let pulses = st.pulses_owed.min(PULSES_PER_TICK);
                st.pulses_owed -= pulses;
                let (first, then) = if st.output {
                    (EventCode::DetectorOff, EventCode::DetectorOn)
                } else {
                    (EventCode::DetectorOn, EventCode::DetectorOff)
                };
                for _ in 0..pulses {
                    events.push(now, first, spec.channel.number() as u16);
                    events.push(now, then, spec.channel.number() as u16);
                }
            }

            let active = st.output || st.fault.is_some();
            if !active {
                continue;
            }
            match spec.kind {
                DetectorKind::Vehicle => {
                    demand.calls = demand.calls.union(spec.calls);
                    demand.extends = demand.extends.union(spec.extends);
                }
                DetectorKind::Pedestrian => {
                    demand.ped_calls = demand.ped_calls.union(spec.calls);
                    demand.calls = demand.calls.union(spec.calls);
                    // Held long enough (raw presence: a faulted button
                    // asks for the longer clearance, the safe way).
                    let held = |hold| st.fault.is_some() || (st.raw && now.since(st.raw_since) >= hold);
                    if spec.ped_extension.is_some_and(held) {
                        demand.ped_extensions = demand.ped_extensions.union(spec.calls);
                    }
                }
            }
        }
        demand
    }
}

/// Run the NTCIP diagnostics on one detector; log fault begin and restore.
fn diagnose(now: Instant, spec: &DetectorSpec, st: &mut DetectorState, events: &mut EventQueue) {
    let d = &spec.diagnostics;
    let minute_over = now.since(st.minute_start) >= MINUTE;
    let erratic = d.erratic_per_minute.is_some_and(|limit| st.edges_this_minute > limit);
    let stuck_on = d.max_presence.is_some_and(|limit| st.raw && now.since(st.raw_since) >= limit);
    let silent = d.no_activity.is_some_and(|limit| now.since(st.last_actuation) >= limit);
    let miscounted = st.counter_fault_at.is_some_and(|at| now.since(at) < COUNTER_FAULT_HOLD);

    let detected = if stuck_on {
        Some(DetectorFault::MaxPresence)
    } else if erratic {
        Some(DetectorFault::Erratic)
    } else if miscounted {
        Some(DetectorFault::ImplausibleCount)
    } else if silent {
        Some(DetectorFault::NoActivity)
    } else {
        None
    };

    match (st.fault, detected) {
        (None, Some(f)) => {
            st.fault = Some(f);
            events.push(now, f.event_code(), spec.channel.number() as u16);
        }
        (Some(f), None) => {
            // An erratic detector is only restored after a calm full minute,
            // so it cannot flap with every new minute window.
            let restored = match f {
                DetectorFault::Erratic => minute_over,
                // The hold is in `miscounted` already.
                DetectorFault::MaxPresence | DetectorFault::NoActivity | DetectorFault::ImplausibleCount => true,
            };
            if restored {
                st.fault = None;
                events.push(now, EventCode::DetectorRestored, spec.channel.number() as u16);
            }
        }
        _ => {}
    }
    if minute_over {
        st.minute_start = now;
        st.edges_this_minute = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::{DetectorChannel, PhaseId};
    use crate::core::spec::{DetectorDiagnostics, DetectorPlacement};

    fn spec(delay: u64, extend: u64) -> DetectorSpec {
        let p2 = PhaseSet::single(PhaseId::new(2).unwrap());
        DetectorSpec {
            channel: DetectorChannel::new(1).unwrap(),
            kind: DetectorKind::Vehicle,
            placement: DetectorPlacement::StopBar,
            travel_time: Span::ZERO,
            calls: p2,
            extends: p2,
            delay: Span::from_millis(delay),
            extend: Span::from_millis(extend),
            ped_extension: None,
            diagnostics: DetectorDiagnostics {
                no_activity: None,
                max_presence: Some(Span::from_secs(60)),
                erratic_per_minute: None,
            },
        }
    }

    fn frame(on: bool) -> InputFrame {
        let mut f = InputFrame::default();
        f.set_presence(DetectorChannel::new(1).unwrap(), on);
        f
    }

    fn run(bank: &mut DetectorBank, specs: &[DetectorSpec], from_ms: u64, to_ms: u64, on: bool) -> DetectorDemand {
        let mut ev = EventQueue::default();
        let mut d = DetectorDemand::default();
        for t in (from_ms..=to_ms).step_by(100) {
            d = bank.process(Instant::from_millis(t), specs, &frame(on), PhaseSet::EMPTY, &mut ev);
        }
        d
    }

    /// A push button asks for extended clearance only when held its long
    /// press; a crossing's extension input (zero hold) on any press.
    #[test]
    fn long_presses_and_extension_inputs_ask_for_extended_clearance() {
        let button = |hold_ms| DetectorSpec {
            kind: DetectorKind::Pedestrian,
            extends: PhaseSet::EMPTY,
            ped_extension: Some(Span::from_millis(hold_ms)),
            ..spec(0, 0)
        };
        let p2 = PhaseSet::single(PhaseId::new(2).unwrap());
        let mut bank = DetectorBank::default();
        let accessible = [button(2000)];
        run(&mut bank, &accessible, 0, 900, false);
        let short = run(&mut bank, &accessible, 1000, 2500, true);
        assert_eq!((short.ped_calls, short.ped_extensions), (p2, PhaseSet::EMPTY));
        let long = run(&mut bank, &accessible, 2600, 3000, true);
        assert_eq!(long.ped_extensions, p2, "held 2 s");
        let mut bank = DetectorBank::default();
        let reader = [button(0)];
        run(&mut bank, &reader, 0, 900, false);
        assert_eq!(run(&mut bank, &reader, 1000, 1000, true).ped_extensions, p2);
    }

    /// A camera zone counting vehicles under a standing presence: the
    /// rising edge is the first counted vehicle, the others are pulses, so
    /// the log's detector-on events are the camera's count.
    #[test]
    fn a_counting_channel_logs_each_counted_vehicle_as_a_detector_on() {
        let specs = [spec(0, 0)];
        let mut bank = DetectorBank::default();
        let mut ev = EventQueue::default();
        let ch = DetectorChannel::new(1).unwrap();
        let mut tick = |ms: u64, on: bool, count: u16| {
            let mut f = frame(on);
            f.counted = 1;
            f.counts[ch.index()] = count;
            bank.process(Instant::from_millis(ms), &specs, &f, PhaseSet::EMPTY, &mut ev);
        };
        // The zone fills (its count comes a frame later), 3 more pass
        // under the standing presence, then 7 at once (4 a tick), then the
        // zone empties with its last count; then a count with no presence.
        tick(0, true, 0);
        tick(100, true, 1);
        tick(200, true, 3);
        tick(300, true, 7);
        tick(400, false, 1);
        tick(500, false, 1);
        tick(600, false, 0);
        let mut log = Vec::new();
        while let Some(e) = ev.pop() {
            log.push((e.at.as_millis(), e.code.code()));
        }
        let ons = log.iter().filter(|(_, c)| *c == 82).count();
        assert_eq!(ons, 13, "{log:?}");
        assert_eq!(log.iter().filter(|(_, c)| *c == 81).count(), ons, "every on has its off: {log:?}");
        assert_eq!(bank.state(0).volume, 13);
        // While the zone is occupied a pulse is an off then an on; after,
        // an on then an off.
        assert_eq!(&log[..3], &[(0, 82), (200, 81), (200, 82)], "{log:?}");
        let at = |ms| log.iter().filter(|(t, _)| *t == ms).map(|(_, c)| *c).collect::<Vec<_>>();
        assert_eq!(at(300).len(), 8, "4 pulses a tick at most: {log:?}");
        assert_eq!(at(400), [81, 82, 81, 82, 81, 82, 81, 82, 81], "the fall, then 3 owed and its own: {log:?}");
        assert_eq!(at(500), [82, 81], "{log:?}");
        assert_eq!(at(600), Vec::<u16>::new());
    }

    #[test]
    fn delay_holds_the_call_back_until_presence_lasts() {
        let specs = [spec(3000, 0)];
        let mut bank = DetectorBank::default();
        assert!(run(&mut bank, &specs, 0, 2900, true).calls.is_empty());
        assert!(!run(&mut bank, &specs, 3000, 3000, true).calls.is_empty());
    }

    #[test]
    fn extend_carries_the_output_after_presence_ends() {
        let specs = [spec(0, 2000)];
        let mut bank = DetectorBank::default();
        run(&mut bank, &specs, 0, 500, true);
        assert!(!run(&mut bank, &specs, 600, 2500, false).extends.is_empty());
        assert!(run(&mut bank, &specs, 2600, 2700, false).extends.is_empty());
    }

    #[test]
    fn stuck_detector_faults_calls_its_phase_and_recovers() {
        let specs = [spec(0, 0)];
        let mut bank = DetectorBank::default();
        run(&mut bank, &specs, 0, 61_000, true);
        assert_eq!(bank.state(0).fault, Some(DetectorFault::MaxPresence));
        // Faulted and now off: still calls (fail-safe) until restored.
        let mut ev = EventQueue::default();
        let d = bank.process(Instant::from_millis(61_100), &specs, &frame(false), PhaseSet::EMPTY, &mut ev);
        assert_eq!(bank.state(0).fault, None);
        assert!(d.calls.is_empty());
        assert_eq!(ev.pop().map(|e| e.code), Some(EventCode::DetectorRestored));
    }

    #[test]
    fn volume_counts_rising_edges() {
        let specs = [spec(0, 0)];
        let mut bank = DetectorBank::default();
        let mut ev = EventQueue::default();
        for i in 0..10u64 {
            bank.process(Instant::from_millis(i * 200), &specs, &frame(i % 2 == 1), PhaseSet::EMPTY, &mut ev);
        }
        assert_eq!(bank.state(0).volume, 5);
    }

    /// A counted channel takes the cabinet's counts only: an edge in a frame
    /// without a count adds nothing, so a vehicle is never counted twice.
    #[test]
    fn counted_channels_ignore_edges() {
        let specs = [spec(0, 0)];
        let mut bank = DetectorBank::default();
        let mut ev = EventQueue::default();
        for i in 0..10u64 {
            let mut f = frame(i % 2 == 1);
            f.counted = 1;
            // The counter reports the vehicle one frame after its edge.
            f.counts[0] = u16::from(i % 2 == 0 && i > 0);
            bank.process(Instant::from_millis(i * 200), &specs, &f, PhaseSet::EMPTY, &mut ev);
        }
        assert_eq!(bank.state(0).volume, 4);
    }

    /// The bound: four vehicles in a second, so a real wrap of the 16-bit
    /// counter (65,535 → 3) counts and a step backwards (40,000 → 39,990,
    /// a "wrap" of 65,526) cannot; a read at once still allows the slack.
    #[test]
    fn the_count_bound_takes_a_wrap_and_not_a_step_backwards() {
        let second = Span::from_secs(1);
        assert_eq!(most_vehicles(second), 4);
        assert!(u32::from(3u16.wrapping_sub(65_535)) <= most_vehicles(second), "a wrap of 4");
        assert!(u32::from(39_990u16.wrapping_sub(40_000)) > most_vehicles(second), "backwards");
        assert!(u32::from(65_531u16) > most_vehicles(Span::from_secs(3600)), "not even in an hour");
        assert_eq!(most_vehicles(Span::from_millis(100)), 3);
        assert_eq!(most_vehicles(Span::ZERO), COUNT_SLACK);
    }

    /// A counter the cabinet flags faults its vehicle detector (Indiana
    /// 88, fail-safe call) and nothing is counted for the step; a minute
    /// without another flag restores it.
    #[test]
    fn a_flagged_counter_faults_the_detector_until_a_calm_minute() {
        let specs = [spec(0, 0)];
        let mut bank = DetectorBank::default();
        let mut ev = EventQueue::default();
        let mut f = frame(false);
        f.counted = 1;
        f.counter_faults = 1;
        let d = bank.process(Instant::from_millis(1000), &specs, &f, PhaseSet::EMPTY, &mut ev);
        assert_eq!(bank.state(0).fault, Some(DetectorFault::ImplausibleCount));
        assert_eq!(bank.state(0).volume, 0);
        assert!(!d.calls.is_empty(), "fail-safe call while faulted");
        let e = ev.pop().expect("fault logged");
        assert_eq!((e.code, e.param), (EventCode::DetectorFaultExcessiveChange, 1));
        f.counter_faults = 0;
        f.counts[0] = 1;
        bank.process(Instant::from_millis(60_900), &specs, &f, PhaseSet::EMPTY, &mut ev);
        assert_eq!(bank.state(0).fault, Some(DetectorFault::ImplausibleCount), "held for a minute");
        assert_eq!(bank.state(0).volume, 1, "plausible steps count meanwhile");
        let pulse: Vec<EventCode> = std::iter::from_fn(|| ev.pop()).map(|e| e.code).collect();
        assert_eq!(pulse, [EventCode::DetectorOn, EventCode::DetectorOff], "and are logged as a count pulse");
        bank.process(Instant::from_millis(61_000), &specs, &f, PhaseSet::EMPTY, &mut ev);
        assert_eq!(bank.state(0).fault, None);
        assert_eq!(ev.pop().map(|e| e.code), Some(EventCode::DetectorRestored));
    }

    /// A push button's channel counts nothing: not the cabinet's counter,
    /// not its presses, and a fault of that counter is not the button's.
    #[test]
    fn push_buttons_count_no_vehicles() {
        let mut button = spec(0, 0);
        button.kind = DetectorKind::Pedestrian;
        let specs = [button];
        let mut bank = DetectorBank::default();
        let mut ev = EventQueue::default();
        for i in 0..10u64 {
            let mut f = frame(i % 2 == 1);
            f.counts[0] = 3;
            f.counted = if i < 5 { 1 } else { 0 };
            f.counter_faults = 1;
            bank.process(Instant::from_millis(i * 200), &specs, &f, PhaseSet::EMPTY, &mut ev);
        }
        assert_eq!(bank.state(0).volume, 0);
        assert_eq!(bank.state(0).fault, None);
    }
}
