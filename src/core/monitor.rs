//! The independent safety monitor: a software MMU.
//!
//! It shares no code with the phase machine. It sees only the output frames
//! and the controller definition, derives its own permissive matrix from the
//! ring-barrier structure and the configured conflicts, and checks every
//! frame: no conflicting greens or yellows, green always ends through a full
//! yellow, a conflicting movement only gets green after the red clearance,
//! min green, walk and pedestrian clearance served, no yellow-to-green, no
//! dark head while running. A walk counts as its phase's movement: during a
//! leading pedestrian interval (walk on a red vehicle head) it conflicts
//! as the green would, and the vehicle head stays red for the whole
//! leading interval. A pedestrian countdown shows only in a clearance and
//! never reads less than the clearance still runs: each number promises
//! the clearance is over by the time it counts down to (a clearance
//! extended while it runs starts a new promise). A flashing yellow arrow
//! overlap is a second movement
//! on its head: while it flashes (and through the steady yellow arrow that
//! ends it) it may show with its opposing through but nothing else the
//! protected arrow conflicts with, it flashes only while that opposing
//! through is green (no yellow trap), and it ends through a full steady
//! yellow. The first fault latches: from then on
//! [`Monitor::guard`] replaces every frame with flash until an operator calls
//! [`Monitor::reset`], as a cabinet's MMU holds flash until its reset button.

use std::fmt;

use super::ids::{MAX_OVERLAPS, MAX_PHASES, OverlapId, PhaseId};
use super::image::{Indication, OutputFrame, PedIndication};
use super::spec::ControllerSpec;
use super::time::{Instant, Span};

/// A signal channel as the monitor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Phase(PhaseId),
    Overlap(OverlapId),
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Phase(p) => write!(f, "phase {p}"),
            Channel::Overlap(o) => write!(f, "overlap {o}"),
        }
    }
}

/// A safety violation. Each one trips the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("conflict: {a} and {b} both green or yellow")]
    Conflict { a: Channel, b: Channel },
    #[error("{channel} went from green to {to:?} without yellow")]
    SkippedYellow { channel: Channel, to: Indication },
    #[error("{channel} went from {from:?} to {to:?}")]
    BadTransition { channel: Channel, from: Indication, to: Indication },
    #[error("{channel} yellow lasted {shown}, needs {required}")]
    ShortYellow { channel: Channel, shown: Span, required: Span },
    #[error("{channel} turned green {shown} after conflicting {after} cleared, red clearance is {required}")]
    ShortRedClear { channel: Channel, after: Channel, shown: Span, required: Span },
    #[error("phase {phase} green lasted {shown}, min green is {required}")]
    ShortMinGreen { phase: PhaseId, shown: Span, required: Span },
    #[error("phase {phase} walk lasted {shown}, needs {required}")]
    ShortWalk { phase: PhaseId, shown: Span, required: Span },
    #[error("phase {phase} pedestrian clearance lasted {shown}, needs {required}")]
    ShortPedClear { phase: PhaseId, shown: Span, required: Span },
    #[error("phase {phase} shows {ped:?} while its vehicles are not green")]
    PedWithoutGreen { phase: PhaseId, ped: PedIndication },
    #[error("phase {phase} turned green {shown} into its walk, the leading pedestrian interval is {required}")]
    ShortLeadingWalk { phase: PhaseId, shown: Span, required: Span },
    #[error("phase {phase} walk went to {to:?} without pedestrian clearance")]
    SkippedPedClear { phase: PhaseId, to: PedIndication },
    #[error("phase {phase} pedestrian clearance still shows {past} after its countdown ran out")]
    CountdownUnderRead { phase: PhaseId, past: Span },
    #[error("phase {phase} shows a countdown of {secs} s outside its pedestrian clearance")]
    CountdownOutsideClearance { phase: PhaseId, secs: u16 },
    #[error("{channel} is dark while the intersection runs")]
    Dark { channel: Channel },
    #[error("overlap {overlap} flashes its yellow arrow while its opposing phase {opposing} shows {shown:?}")]
    YellowTrap { overlap: OverlapId, opposing: PhaseId, shown: Indication },
}

/// The latched trip: when, why, and the frame that tripped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trip {
    pub at: Instant,
    pub fault: Fault,
    pub frame: OutputFrame,
}

#[derive(Clone, Copy, Debug, Default)]
struct Timing {
    yellow: Span,
    red_clear: Span,
    min_green: Span,
    walk: Span,
    ped_clear: Span,
    extended_ped_clear: Span,
    leading_walk: Span,
}

#[derive(Clone, Copy, Debug, Default)]
struct Track {
    shown: Indication,
    since: Instant,
    /// When it last finished yellow (red clearance starts here).
    cleared_at: Option<Instant>,
    /// A flashing yellow arrow overlap in its permissive movement: the
    /// flashing arrow, and the steady yellow arrow that ends it.
    yielding: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct PedTrack {
    shown: PedIndication,
    since: Instant,
    /// The walk began on a red vehicle head: a leading pedestrian interval.
    leading: bool,
    /// The frames granted this walk's crossing its extended clearance.
    extended: bool,
    /// In a clearance: the earliest end its countdowns promised (none
    /// while they were blank).
    countdown_end: Option<Instant>,
}

const CHANNELS: usize = MAX_PHASES + MAX_OVERLAPS;

/// The software MMU for one intersection. Fixed-size: checking never allocates.
#[derive(Clone, Debug)]
pub struct Monitor {
    /// `permissive[a]` has bit `b` set when channels a and b may show green
    /// or yellow together (channel index: phases 0..16, then overlaps).
    permissive: [u32; CHANNELS],
    /// For a flashing yellow arrow overlap, the channels its permissive
    /// movement may show with (its opposing through among them).
    yielding: [u32; CHANNELS],
    /// A flashing yellow arrow overlap's opposing through.
    opposing: [Option<PhaseId>; MAX_OVERLAPS],
    present: u32,
    timing: [Timing; CHANNELS],
    tracks: [Track; CHANNELS],
    peds: [PedTrack; MAX_PHASES],
    started: bool,
    tripped: Option<Trip>,
}

fn phase_channel(p: PhaseId) -> usize {
    p.index()
}

fn overlap_channel(o: OverlapId) -> usize {
    MAX_PHASES + o.index()
}

fn channel_of(i: usize) -> Channel {
    if i < MAX_PHASES {
        Channel::Phase(PhaseId::from_index(i))
    } else {
        Channel::Overlap(OverlapId::from_index(i - MAX_PHASES))
    }
}

impl Monitor {
    pub fn new(spec: &ControllerSpec) -> Self {
        let mut m = Monitor {
            permissive: [0; CHANNELS],
            yielding: [0; CHANNELS],
            opposing: [None; MAX_OVERLAPS],
            present: 0,
            timing: [Timing::default(); CHANNELS],
            tracks: [Track::default(); CHANNELS],
            peds: [PedTrack::default(); MAX_PHASES],
            started: false,
            tripped: None,
        };
        m.configure(spec);
        m
    }

    /// Take a (reloaded) definition. Keeps the latch and the tracks.
    pub fn configure(&mut self, spec: &ControllerSpec) {
        self.permissive = [0; CHANNELS];
        self.yielding = [0; CHANNELS];
        self.opposing = [None; MAX_OVERLAPS];
        self.present = 0;
        self.timing = [Timing::default(); CHANNELS];
        // A preemption allowed to cut walks (`truncated_walk`) may cut any
        // walk to its truncated walk, never below: the monitor holds every
        // walk to the shortest such, and every pedestrian clearance whole.
        let cut = spec.preempts.iter().filter_map(|p| p.truncated_walk).min();
        // Phases may time together only in different rings of the same
        // barrier group, and only if not configured as conflicting.
        for a in &spec.phases {
            let ia = phase_channel(a.id);
            self.present |= 1 << ia;
            self.timing[ia] = Timing {
                yellow: a.timing.yellow,
                red_clear: a.timing.red_clear,
                min_green: a.timing.min_green,
                walk: cut.map_or(a.timing.walk, |c| a.timing.walk.min(c)),
                ped_clear: a.timing.ped_clear,
                extended_ped_clear: a.timing.extended_ped_clear,
                leading_walk: a.timing.leading_walk,
            };
            for b in &spec.phases {
                let compatible = a.ring != b.ring && a.group == b.group && !spec.conflicts[a.id.index()].contains(b.id);
                if compatible || a.id == b.id {
                    self.permissive[ia] |= 1 << phase_channel(b.id);
                }
            }
        }
        for ov in spec.overlaps.iter().take(MAX_OVERLAPS) {
            let io = overlap_channel(ov.id);
            self.present |= 1 << io;
            // The overlap's clearance must be at least its shortest
            // parent's (or opposing through's: a flashing arrow's yellow
            // ends that movement).
            let opposing = ov.permissive_phase();
            let movements = spec.phases.iter().filter(|p| ov.parents.contains(p.id) || opposing == Some(p.id));
            let yellow = movements.clone().map(|p| p.timing.yellow).min().unwrap_or_default();
            let red_clear = movements.map(|p| p.timing.red_clear).min().unwrap_or_default();
            self.timing[io] = Timing { yellow, red_clear, ..Timing::default() };
            self.permissive[io] |= !0; // overlaps among themselves are not checked
            self.yielding[io] |= !0;
            self.opposing[ov.id.index()] = opposing;
            let yields_to = ov.permissive_conflicts();
            for p in &spec.phases {
                if ov.conflicts.contains(p.id) {
                    self.permissive[io] &= !(1 << phase_channel(p.id));
                } else {
                    self.permissive[phase_channel(p.id)] |= 1 << io;
                }
                if yields_to.contains(p.id) {
                    self.yielding[io] &= !(1 << phase_channel(p.id));
                }
            }
            for other in spec.overlaps.iter().take(MAX_OVERLAPS) {
                self.permissive[io] |= 1 << overlap_channel(other.id);
            }
        }
    }

    pub fn tripped(&self) -> Option<&Trip> {
        self.tripped.as_ref()
    }

    /// Operator reset of a latched trip. The controller must restart
    /// through its start-up sequence afterwards.
    pub fn reset(&mut self) {
        self.tripped = None;
        self.started = false;
    }

    /// What the heads may show: `frame`, or all flashing red once tripped.
    pub fn guard(&self, frame: &OutputFrame) -> OutputFrame {
        if self.tripped.is_none() {
            return *frame;
        }
        let mut out = OutputFrame::default();
        for i in 0..CHANNELS {
            if self.present & (1 << i) == 0 {
                continue;
            }
            if i < MAX_PHASES {
                out.vehicle[i] = Indication::FlashingRed;
            } else {
                out.overlap[i - MAX_PHASES] = Indication::FlashingRed;
            }
        }
        out
    }

    /// Check one frame shown at `now`. The first fault latches the trip.
    ///
    /// # Errors
    /// The fault found, also when already tripped (the latched one).
    pub fn check(&mut self, now: Instant, frame: &OutputFrame) -> Result<(), Fault> {
        if let Some(trip) = &self.tripped {
            return Err(trip.fault);
        }
        match self.inspect(now, frame) {
            Ok(()) => Ok(()),
            Err(fault) => {
                self.tripped = Some(Trip { at: now, fault, frame: *frame });
                Err(fault)
            }
        }
    }

    fn shown(frame: &OutputFrame, i: usize) -> Indication {
        if i < MAX_PHASES { frame.vehicle[i] } else { frame.overlap[i - MAX_PHASES] }
    }

    fn inspect(&mut self, now: Instant, frame: &OutputFrame) -> Result<(), Fault> {
        if !self.started {
            self.started = true;
            for i in 0..CHANNELS {
                let shown = Self::shown(frame, i);
                let yielding = self.is_arrow(i) && shown == Indication::FlashingYellow;
                self.tracks[i] = Track { shown, since: now, cleared_at: None, yielding };
            }
            for i in 0..MAX_PHASES {
                self.peds[i] = PedTrack { shown: frame.ped[i], since: now, ..PedTrack::default() };
            }
        }
        // A flashing yellow arrow is a movement, not the intersection's flash.
        let flashing = (0..CHANNELS).any(|i| match Self::shown(frame, i) {
            Indication::FlashingRed => true,
            Indication::FlashingYellow => !self.is_arrow(i),
            _ => false,
        });

        // Conflicts, on the frame as a whole. A walk or pedestrian
        // clearance is its phase's movement too, whatever the vehicle head;
        // so is a flashing yellow arrow, and the steady yellow ending it.
        let (mut lit, mut yielding) = (0u32, 0u32);
        for i in 0..CHANNELS {
            let shown = Self::shown(frame, i);
            let walking =
                i < MAX_PHASES && matches!(frame.ped[i], PedIndication::Walk | PedIndication::FlashingDontWalk);
            let arrow = self.is_arrow(i)
                && (shown == Indication::FlashingYellow || (shown == Indication::Yellow && self.tracks[i].yielding));
            if shown.is_permissive() || walking || arrow {
                lit |= 1 << i;
            }
            if arrow {
                yielding |= 1 << i;
            }
        }
        for a in 0..CHANNELS {
            if lit & (1 << a) != 0 {
                let clash = lit & !self.allowed_with(a, yielding);
                if clash != 0 {
                    let b = clash.trailing_zeros() as usize;
                    return Err(Fault::Conflict { a: channel_of(a), b: channel_of(b) });
                }
            }
        }
        self.check_yellow_traps(frame)?;

        // Transitions and interval lengths, channel by channel.
        for i in 0..CHANNELS {
            let present = self.present & (1 << i) != 0;
            let to = Self::shown(frame, i);
            if present && !flashing && to == Indication::Dark {
                return Err(Fault::Dark { channel: channel_of(i) });
            }
            let track = self.tracks[i];
            if to == track.shown {
                continue;
            }
            let held = now.since(track.since);
            let t = self.timing[i];
            let channel = channel_of(i);
            use Indication::*;
            let arrow = self.is_arrow(i);
            match (track.shown, to) {
                (Green, Yellow) if i < MAX_PHASES && held < t.min_green => {
                    let phase = PhaseId::from_index(i);
                    return Err(Fault::ShortMinGreen { phase, shown: held, required: t.min_green });
                }
                (Green, Red | Dark) => return Err(Fault::SkippedYellow { channel, to }),
                // A flashing yellow arrow is a green of its own movement.
                (Green, FlashingYellow) | (FlashingYellow, Red | Dark) if arrow => {
                    return Err(Fault::SkippedYellow { channel, to });
                }
                // The steady yellow arrow between the protected green
                // arrow and the flashing one (MUTCD 4D.20) ends the
                // protected movement: its red clearance starts here.
                (Yellow, Red) | (Yellow, FlashingYellow) if to == Red || arrow => {
                    if held < t.yellow {
                        return Err(Fault::ShortYellow { channel, shown: held, required: t.yellow });
                    }
                    self.tracks[i].cleared_at = Some(now);
                    if arrow && to == FlashingYellow {
                        self.check_red_clearance(now, i, self.yielding[i])?;
                    }
                }
                (FlashingYellow, Yellow) if arrow => {}
                (Red | Dark, FlashingYellow) if arrow => {
                    self.check_red_clearance(now, i, self.yielding[i])?;
                }
                (Yellow, Green) | (Red, Yellow) | (Dark, Yellow) => {
                    return Err(Fault::BadTransition { channel, from: track.shown, to });
                }
                (FlashingRed | FlashingYellow, Green | Yellow) => {
                    return Err(Fault::BadTransition { channel, from: track.shown, to });
                }
                (FlashingRed, FlashingYellow) if arrow => {
                    return Err(Fault::BadTransition { channel, from: track.shown, to });
                }
                (Red | Dark, Green) => {
                    self.check_red_clearance(now, i, self.permissive[i])?;
                    if i < MAX_PHASES {
                        self.check_leading_walk(now, i, frame)?;
                    }
                }
                // Into or out of flash, and red/dark changes, are always safe.
                _ => {}
            }
            if to == FlashingRed || (to == FlashingYellow && !arrow) {
                self.tracks[i].cleared_at = None;
            }
            // The yellow after a flashing arrow still ends the permissive move.
            self.tracks[i].yielding =
                arrow && (to == FlashingYellow || (to == Yellow && track.shown == FlashingYellow));
            self.tracks[i].shown = to;
            self.tracks[i].since = now;
        }
        self.check_peds(now, frame)
    }

    /// A flashing yellow arrow overlap (channel `i`).
    fn is_arrow(&self, i: usize) -> bool {
        i >= MAX_PHASES && self.opposing[i - MAX_PHASES].is_some()
    }

    /// The channels that may show with channel `a` in this frame, where the
    /// channels in `yielding` show a flashing yellow arrow's movement: each
    /// of those pairs is judged by the arrow's own set.
    fn allowed_with(&self, a: usize, yielding: u32) -> u32 {
        if yielding & (1 << a) != 0 {
            return self.yielding[a];
        }
        let mut allowed = self.permissive[a];
        for b in (0..CHANNELS).filter(|b| yielding & (1 << b) != 0) {
            if self.yielding[b] & (1 << a) != 0 {
                allowed |= 1 << b;
            } else {
                allowed &= !(1 << b);
            }
        }
        allowed
    }

    /// A flashing yellow arrow flashes only while its opposing through is
    /// green: once that through shows yellow the arrow must have ended, or
    /// the left turner would take the through's yellow for their own.
    fn check_yellow_traps(&self, frame: &OutputFrame) -> Result<(), Fault> {
        for (k, opposing) in self.opposing.iter().enumerate() {
            let Some(opposing) = *opposing else { continue };
            let shown = frame.vehicle[opposing.index()];
            if frame.overlap[k] == Indication::FlashingYellow && shown != Indication::Green {
                return Err(Fault::YellowTrap { overlap: OverlapId::from_index(k), opposing, shown });
            }
        }
        Ok(())
    }

    /// A channel turning green (or starting a flashing yellow arrow's
    /// movement): every channel not in `allowed` that recently finished its
    /// yellow must have had its full red clearance.
    fn check_red_clearance(&self, now: Instant, i: usize, allowed: u32) -> Result<(), Fault> {
        for j in 0..CHANNELS {
            if allowed & (1 << j) != 0 || self.present & (1 << j) == 0 {
                continue;
            }
            if let Some(cleared) = self.tracks[j].cleared_at {
                let shown = now.since(cleared);
                let required = self.timing[j].red_clear;
                if shown < required {
                    return Err(Fault::ShortRedClear { channel: channel_of(i), after: channel_of(j), shown, required });
                }
            }
        }
        Ok(())
    }

    /// A phase with a leading pedestrian interval turning green while its
    /// walk shows: the walk has led for the whole interval (`peds` still
    /// holds the previous frame's pedestrian heads).
    fn check_leading_walk(&self, now: Instant, i: usize, frame: &OutputFrame) -> Result<(), Fault> {
        let required = self.timing[i].leading_walk;
        if required.is_zero() || frame.ped[i] != PedIndication::Walk {
            return Ok(());
        }
        let track = self.peds[i];
        let shown = if track.shown == PedIndication::Walk { now.since(track.since) } else { Span::ZERO };
        if shown < required {
            return Err(Fault::ShortLeadingWalk { phase: PhaseId::from_index(i), shown, required });
        }
        Ok(())
    }

    fn check_peds(&mut self, now: Instant, frame: &OutputFrame) -> Result<(), Fault> {
        use PedIndication::*;
        for i in 0..MAX_PHASES {
            let phase = PhaseId::from_index(i);
            let to = frame.ped[i];
            let track = self.peds[i];
            let vehicle = frame.vehicle[i];
            // A leading walk: configured, begun on the red head, still walk.
            let leading = to == Walk
                && vehicle == Indication::Red
                && !self.timing[i].leading_walk.is_zero()
                && (track.shown != Walk || track.leading);
            if matches!(to, Walk | FlashingDontWalk) && vehicle != Indication::Green && !leading {
                return Err(Fault::PedWithoutGreen { phase, ped: to });
            }
            // Once granted, the extension holds until the clearance ends.
            let extended = frame.ped_extended.contains(phase) || (track.extended && track.shown != DontWalk);
            self.peds[i].extended = extended;
            self.check_countdown(now, i, frame, track)?;
            if to == track.shown {
                continue;
            }
            if leading {
                // The walk starts the movement: conflicting channels must
                // have had their red clearance, as for a green.
                self.check_red_clearance(now, i, self.permissive[i])?;
            }
            let held = now.since(track.since);
            let t = self.timing[i];
            match (track.shown, to) {
                (Walk, FlashingDontWalk) if held < t.walk => {
                    return Err(Fault::ShortWalk { phase, shown: held, required: t.walk });
                }
                (FlashingDontWalk, DontWalk) => {
                    let required = if track.extended { t.extended_ped_clear } else { t.ped_clear };
                    if held < required {
                        return Err(Fault::ShortPedClear { phase, shown: held, required });
                    }
                }
                (Walk, DontWalk) => return Err(Fault::SkippedPedClear { phase, to }),
                _ => {}
            }
            self.peds[i] = PedTrack { shown: to, since: now, leading, extended, ..self.peds[i] };
        }
        Ok(())
    }

    /// Crossing `i`'s countdown in `frame` (`track`: the crossing as the
    /// previous frame left it). A number shows only in a clearance, and
    /// the clearance must be over by the time every number shown in it
    /// counted down to; a frame that grants the extended clearance starts
    /// the promises anew (the countdown jumps up with it).
    fn check_countdown(&mut self, now: Instant, i: usize, frame: &OutputFrame, track: PedTrack) -> Result<(), Fault> {
        let phase = PhaseId::from_index(i);
        let countdown = frame.ped_countdown[i];
        if frame.ped[i] != PedIndication::FlashingDontWalk {
            if !countdown.is_blank() {
                return Err(Fault::CountdownOutsideClearance { phase, secs: countdown.secs() });
            }
            self.peds[i].countdown_end = None;
            return Ok(());
        }
        let granted = frame.ped_extended.contains(phase) && !track.extended;
        let end = if track.shown == PedIndication::FlashingDontWalk && !granted { track.countdown_end } else { None };
        if let Some(end) = end
            && now >= end
        {
            return Err(Fault::CountdownUnderRead { phase, past: now.since(end) });
        }
        let promised = (!countdown.is_blank()).then(|| now + countdown.span());
        self.peds[i].countdown_end = match (end, promised) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::image::Countdown;
    use crate::core::testing::{eight_phase, with_flashing_yellow_arrows};

    fn p(n: u8) -> PhaseId {
        PhaseId::new(n).unwrap()
    }

    /// Every phase red with don't walk, then `frames` one second apart:
    /// the first fault.
    fn replay(spec: &ControllerSpec, frames: &[&dyn Fn(&mut OutputFrame)]) -> Result<(), Fault> {
        let mut m = Monitor::new(spec);
        let mut frame = OutputFrame::default();
        for ph in &spec.phases {
            frame.vehicle[ph.id.index()] = Indication::Red;
            if ph.timing.has_ped() {
                frame.ped[ph.id.index()] = PedIndication::DontWalk;
            }
        }
        for ov in &spec.overlaps {
            frame.overlap[ov.id.index()] = Indication::Red;
        }
        m.check(Instant::ZERO, &frame)?;
        for (k, edit) in frames.iter().enumerate() {
            edit(&mut frame);
            m.check(Instant::from_millis(10_000 + 1000 * k as u64), &frame)?;
        }
        Ok(())
    }

    fn with_leading_walk_on_4() -> ControllerSpec {
        let mut spec = eight_phase();
        let slot = spec.phase_slot[p(4).index()].unwrap() as usize;
        spec.phases[slot].timing.leading_walk = Span::from_secs(3);
        spec
    }

    #[test]
    fn a_leading_walk_keeps_its_vehicles_red_for_the_whole_interval() {
        let spec = with_leading_walk_on_4();
        let walk: &dyn Fn(&mut OutputFrame) = &|f| f.ped[p(4).index()] = PedIndication::Walk;
        let hold: &dyn Fn(&mut OutputFrame) = &|_| {};
        let green: &dyn Fn(&mut OutputFrame) = &|f| f.vehicle[p(4).index()] = Indication::Green;
        assert_eq!(replay(&spec, &[walk, hold, hold, green]), Ok(()));
        assert_eq!(
            replay(&spec, &[walk, green]),
            Err(Fault::ShortLeadingWalk { phase: p(4), shown: Span::from_secs(1), required: Span::from_secs(3) })
        );
        // Walk and green together skip the leading interval altogether.
        let both: &dyn Fn(&mut OutputFrame) = &|f| {
            f.ped[p(4).index()] = PedIndication::Walk;
            f.vehicle[p(4).index()] = Indication::Green;
        };
        assert_eq!(
            replay(&spec, &[both]),
            Err(Fault::ShortLeadingWalk { phase: p(4), shown: Span::ZERO, required: Span::from_secs(3) })
        );
    }

    #[test]
    fn a_granted_extension_is_the_clearance_the_monitor_asks_for() {
        let spec = eight_phase();
        let hold: &dyn Fn(&mut OutputFrame) = &|_| {};
        let start: &dyn Fn(&mut OutputFrame) = &|f| {
            f.vehicle[p(4).index()] = Indication::Green;
            f.ped[p(4).index()] = PedIndication::Walk;
        };
        let extend: &dyn Fn(&mut OutputFrame) = &|f| f.ped_extended.insert(p(4));
        let clear: &dyn Fn(&mut OutputFrame) = &|f| f.ped[p(4).index()] = PedIndication::FlashingDontWalk;
        let done: &dyn Fn(&mut OutputFrame) = &|f| {
            f.ped[p(4).index()] = PedIndication::DontWalk;
            f.ped_extended.remove(p(4));
        };
        // 7 s walk (extension granted in it), then 12 s of clearance.
        let mut frames = vec![start, extend];
        frames.extend([hold; 5]);
        frames.push(clear);
        frames.extend([hold; 11]);
        frames.push(done);
        assert_eq!(
            replay(&spec, &frames),
            Err(Fault::ShortPedClear { phase: p(4), shown: Span::from_secs(12), required: Span::from_secs(18) })
        );
        // Without the grant, 12 s is the clearance.
        frames[1] = hold;
        assert_eq!(replay(&spec, &frames), Ok(()));
    }

    /// A change from one frame to the next, owned.
    type Edit = Box<dyn Fn(&mut OutputFrame)>;

    /// Phase 4 green with its walk for 7 s, then `clearance`: one frame a
    /// second, each showing flashing don't walk with the countdown given
    /// (`None`: don't walk from there), then don't walk.
    fn clearance_frames(clearance: &[Option<u16>]) -> Vec<Edit> {
        let mut frames: Vec<Edit> = vec![Box::new(|f| {
            f.vehicle[p(4).index()] = Indication::Green;
            f.ped[p(4).index()] = PedIndication::Walk;
        })];
        frames.extend((0..6).map(|_| Box::new(|_: &mut OutputFrame| {}) as Edit));
        for c in clearance.iter().copied().chain([None]) {
            frames.push(Box::new(move |f| {
                let i = p(4).index();
                f.ped[i] = if c.is_some() { PedIndication::FlashingDontWalk } else { PedIndication::DontWalk };
                f.ped_countdown[i] = Countdown::from_secs(c.unwrap_or(0));
            }));
        }
        frames
    }

    fn replay_boxed(frames: &[Edit]) -> Result<(), Fault> {
        let refs: Vec<&dyn Fn(&mut OutputFrame)> = frames.iter().map(|f| f.as_ref()).collect();
        replay(&eight_phase(), &refs)
    }

    #[test]
    fn a_countdown_may_read_more_than_the_clearance_left_but_never_less() {
        // 12 s of clearance (eight_phase's ped_clear), the first second
        // blank (not yet confirmed at the heads), then counting down.
        let mut exact = vec![Some(0)];
        exact.extend((1..12).rev().map(Some));
        assert_eq!(replay_boxed(&clearance_frames(&exact)), Ok(()));
        // Reading more (a late confirmation, or rounding up) is allowed.
        let mut more = vec![Some(14)];
        more.extend((1..12).rev().map(|s| Some(s + 1)));
        assert_eq!(replay_boxed(&clearance_frames(&more)), Ok(()));
        // A 3 that still flashes 3 s later under-reads.
        let mut under = exact.clone();
        under[5] = Some(3);
        assert_eq!(
            replay_boxed(&clearance_frames(&under)),
            Err(Fault::CountdownUnderRead { phase: p(4), past: Span::ZERO })
        );
    }

    #[test]
    fn a_countdown_shows_only_in_the_clearance_and_an_extension_starts_it_anew() {
        let mut frames = clearance_frames(&[Some(12); 12]);
        frames[2] = Box::new(|f| f.ped_countdown[p(4).index()] = Countdown::from_secs(5));
        assert_eq!(replay_boxed(&frames), Err(Fault::CountdownOutsideClearance { phase: p(4), secs: 5 }));
        // 12 s of countdown from 4 s, then a grant of the 18 s clearance.
        let mut counts: Vec<Option<u16>> = (9..=12).rev().map(Some).collect();
        counts.extend((1..=14).rev().map(Some));
        let mut frames = clearance_frames(&counts);
        let at_grant = 7 + 4;
        assert_eq!(replay_boxed(&frames), Err(Fault::CountdownUnderRead { phase: p(4), past: Span::ZERO }));
        frames[at_grant] = Box::new(|f| {
            f.ped_extended.insert(p(4));
            f.ped_countdown[p(4).index()] = Countdown::from_secs(14);
        });
        assert_eq!(replay_boxed(&frames), Ok(()));
    }

    #[test]
    fn a_walk_on_red_is_a_movement_that_conflicts_and_needs_a_leading_interval() {
        let walk: &dyn Fn(&mut OutputFrame) = &|f| f.ped[p(4).index()] = PedIndication::Walk;
        assert_eq!(
            replay(&eight_phase(), &[walk]),
            Err(Fault::PedWithoutGreen { phase: p(4), ped: PedIndication::Walk })
        );
        let spec = with_leading_walk_on_4();
        let two_green: &dyn Fn(&mut OutputFrame) = &|f| f.vehicle[p(2).index()] = Indication::Green;
        let conflict = replay(&spec, &[two_green, walk]).unwrap_err();
        assert!(matches!(conflict, Fault::Conflict { .. }), "{conflict:?}");
        // The leading walk may not start inside 2's red clearance either:
        // 2 green for its 8 s minimum, 4 s of yellow, then walk 1 s into
        // its 1.5 s red clearance.
        let hold: &dyn Fn(&mut OutputFrame) = &|_| {};
        let two_yellow: &dyn Fn(&mut OutputFrame) = &|f| f.vehicle[p(2).index()] = Indication::Yellow;
        let two_red: &dyn Fn(&mut OutputFrame) = &|f| f.vehicle[p(2).index()] = Indication::Red;
        let mut frames = vec![two_green];
        frames.extend([hold; 8]);
        frames.push(two_yellow);
        frames.extend([hold; 3]);
        frames.extend([two_red, walk]);
        assert_eq!(
            replay(&spec, &frames),
            Err(Fault::ShortRedClear {
                channel: Channel::Phase(p(4)),
                after: Channel::Phase(p(2)),
                shown: Span::from_secs(1),
                required: Span::from_millis(1500)
            })
        );
    }

    #[test]
    fn a_flashing_yellow_arrow_yields_to_its_opposing_through_only_and_never_traps() {
        let spec = with_flashing_yellow_arrows(eight_phase());
        let c = OverlapId::from_letter('C').unwrap();
        let arrow = move |i: Indication| move |f: &mut OutputFrame| f.overlap[c.index()] = i;
        let phase = |n: u8, i: Indication| move |f: &mut OutputFrame| f.vehicle[p(n).index()] = i;
        let (two_green, two_yellow, two_red) =
            (phase(2, Indication::Green), phase(2, Indication::Yellow), phase(2, Indication::Red));
        let (flashing, steady, red) =
            (arrow(Indication::FlashingYellow), arrow(Indication::Yellow), arrow(Indication::Red));
        let hold: &dyn Fn(&mut OutputFrame) = &|_| {};
        // With 2 (and 6, which times with 2) green the arrow flashes; it
        // ends through 4 s of steady yellow with 2.
        let start = |f: &mut OutputFrame| {
            two_green(f);
            phase(6, Indication::Green)(f);
            flashing(f);
        };
        let end = |f: &mut OutputFrame| {
            two_yellow(f);
            steady(f);
        };
        let clear = |f: &mut OutputFrame| {
            two_red(f);
            red(f);
        };
        let mut frames: Vec<&dyn Fn(&mut OutputFrame)> = vec![&start];
        frames.extend([hold; 8]);
        frames.push(&end);
        frames.extend([hold; 3]);
        frames.push(&clear);
        assert_eq!(replay(&spec, &frames), Ok(()));
        // 2 yellow while the arrow still flashes: the yellow trap.
        let trap: Vec<&dyn Fn(&mut OutputFrame)> = vec![&two_green, &flashing, hold, &two_yellow];
        assert_eq!(
            replay(&spec, &trap),
            Err(Fault::YellowTrap { overlap: c, opposing: p(2), shown: Indication::Yellow })
        );
        // Flashing with nothing opposing green is a trap as well.
        assert!(matches!(replay(&spec, &[&flashing]), Err(Fault::YellowTrap { .. })));
        // Straight from flashing to red skips the steady yellow.
        let skipped: Vec<&dyn Fn(&mut OutputFrame)> = vec![&two_green, &flashing, &red];
        assert_eq!(
            replay(&spec, &skipped),
            Err(Fault::SkippedYellow { channel: Channel::Overlap(c), to: Indication::Red })
        );
        // The flashing arrow conflicts with 5th Ave (4), the green arrow with 2.
        let four_green = phase(4, Indication::Green);
        let cross: Vec<&dyn Fn(&mut OutputFrame)> = vec![&two_green, &flashing, &four_green];
        assert!(matches!(replay(&spec, &cross), Err(Fault::Conflict { .. })));
        let protected = arrow(Indication::Green);
        let against: Vec<&dyn Fn(&mut OutputFrame)> = vec![&two_green, &protected];
        assert_eq!(replay(&spec, &against), Err(Fault::Conflict { a: Channel::Phase(p(2)), b: Channel::Overlap(c) }));
    }
}
