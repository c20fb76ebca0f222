//! The simulated cabinet's malfunction management unit (MMU): a hardware
//! conflict monitor and watchdog, separate from the controller.
//!
//! Written apart from `core::monitor` on purpose, as a real MMU is a
//! different box from a different vendor: it knows only its compatibility
//! card, built here from the controller file's rings, barriers, declared
//! conflicts and overlap parents, and the field outputs it sees. It checks:
//! - **conflict**: green or yellow on two channels that are not compatible;
//!   a flashing yellow arrow overlap's flashing yellow (and the steady
//!   yellow after it) is on too, checked against its own card row: the
//!   permissive left may show with its opposing through and whatever times
//!   with that through, unless the overlap lists it as a conflict (an MMU's
//!   FYA mode);
//! - **red fail**: a channel in use shows nothing (dark) while the
//!   controller is in control;
//! - **clearance**: green (or a flashing yellow arrow) straight to red, or a
//!   yellow shorter than [`MIN_YELLOW`] (the NEMA TS2 MMU minimum yellow
//!   change);
//! - **watchdog**: the heartbeat register has not changed for the watchdog
//!   time (1 s by default).
//!
//! Any fault puts the cabinet in flash (the heads show each channel's flash
//! pattern whatever is written) and raises the MMU fault input. Conflict,
//! red fail and clearance faults latch until reset (the technician's reset
//! button: a simulator register); a watchdog fault clears when the heartbeat
//! moves again, so a daemon that reconnects takes the cabinet back (and
//! restarts through its start-up sequence).
//!
//! Channels: phases 1..16 are channels 0..15, overlaps A..H 16..23.

use crate::core::spec::{ControllerSpec, FlashIndication};
use crate::core::{Indication, Instant, MAX_OVERLAPS, MAX_PHASES, OutputFrame, PedIndication, Span};

const CHANNELS: usize = MAX_PHASES + MAX_OVERLAPS;

/// NEMA TS2 MMU minimum yellow change interval.
pub const MIN_YELLOW: Span = Span::from_millis(2700);
/// Default watchdog time: heartbeat older than this → flash.
pub const DEFAULT_WATCHDOG: Span = Span::from_millis(1000);

/// Why the MMU put the cabinet in flash. Channels are 0-based (see module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuFault {
    Conflict { a: usize, b: usize },
    RedFail { channel: usize },
    Clearance { channel: usize, yellow: Span },
    Watchdog,
}

impl MmuFault {
    /// The code in the simulator's fault register.
    pub fn code(self) -> u16 {
        match self {
            MmuFault::Conflict { .. } => 1,
            MmuFault::Watchdog => 2,
            MmuFault::RedFail { .. } => 3,
            MmuFault::Clearance { .. } => 4,
        }
    }

    /// The channels involved, bit per channel.
    pub fn channels(self) -> u32 {
        match self {
            MmuFault::Conflict { a, b } => 1 << a | 1 << b,
            MmuFault::RedFail { channel } | MmuFault::Clearance { channel, .. } => 1 << channel,
            MmuFault::Watchdog => 0,
        }
    }

    pub fn latches(self) -> bool {
        !matches!(self, MmuFault::Watchdog)
    }
}

impl std::fmt::Display for MmuFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MmuFault::Conflict { a, b } => write!(f, "conflict: {} and {} permissive together", name(*a), name(*b)),
            MmuFault::RedFail { channel } => write!(f, "red fail: {} dark", name(*channel)),
            MmuFault::Clearance { channel, yellow } => {
                write!(f, "clearance: {} yellow {yellow} (minimum {MIN_YELLOW})", name(*channel))
            }
            MmuFault::Watchdog => write!(f, "watchdog: controller heartbeat stopped"),
        }
    }
}

fn name(ch: usize) -> String {
    if ch < MAX_PHASES {
        format!("phase {}", ch + 1)
    } else {
        format!("overlap {}", (b'A' + (ch - MAX_PHASES) as u8) as char)
    }
}

/// The MMU of one cabinet.
#[derive(Clone, Debug)]
pub struct Mmu {
    /// `compatible[a]` bit `b`: channels a and b may be green together.
    compatible: [u32; CHANNELS],
    /// For a flashing yellow arrow channel, the row of its permissive
    /// movement (the flashing and the yellow that ends it).
    arrow_compatible: [u32; CHANNELS],
    /// The flashing yellow arrow channels.
    arrows: u32,
    /// Channels whose yellow follows their flashing yellow arrow.
    yielding: u32,
    in_use: u32,
    flash: [Indication; CHANNELS],
    watchdog: Span,
    heartbeat: Option<u16>,
    heartbeat_at: Instant,
    /// The controller has written a fresh heartbeat and no fault holds.
    controlled: bool,
    fault: Option<MmuFault>,
    last: [Indication; CHANNELS],
    yellow_since: [Option<Instant>; CHANNELS],
}

impl Mmu {
    /// The compatibility card for `spec`, built from its structure.
    pub fn new(spec: &ControllerSpec, watchdog: Span) -> Self {
        let mut ring_of = [usize::MAX; MAX_PHASES];
        for (r, ring) in spec.rings.iter().enumerate() {
            for p in &ring.sequence {
                ring_of[p.index()] = r;
            }
        }
        let mut group_of = [usize::MAX; MAX_PHASES];
        for (g, group) in spec.barrier_groups.iter().enumerate() {
            for p in group.iter() {
                group_of[p.index()] = g;
            }
        }
        let mut compatible = [0u32; CHANNELS];
        let mut in_use = 0u32;
        let mut flash = [Indication::Dark; CHANNELS];
        for a in &spec.phases {
            let i = a.id.index();
            in_use |= 1 << i;
            flash[i] = match a.timing.flash {
                FlashIndication::Red => Indication::FlashingRed,
                FlashIndication::Yellow => Indication::FlashingYellow,
            };
            for b in &spec.phases {
                let j = b.id.index();
                let together = i != j
                    && ring_of[i] != ring_of[j]
                    && group_of[i] == group_of[j]
                    && group_of[i] != usize::MAX
                    && !spec.conflicts[i].contains(b.id);
                if together {
                    compatible[i] |= 1 << j;
                }
            }
        }
        let phases = compatible;
        let phase_ok = |p: usize, q: usize| p == q || phases[p] & (1 << q) != 0;
        for o in spec.overlaps.iter().take(MAX_OVERLAPS) {
            let oc = MAX_PHASES + o.id.index();
            in_use |= 1 << oc;
            flash[oc] = Indication::FlashingRed;
            for p in spec.phases.iter().map(|p| p.id) {
                let ok = !o.conflicts.contains(p) && o.parents.iter().any(|q| phase_ok(p.index(), q.index()));
                if ok {
                    compatible[oc] |= 1 << p.index();
                    compatible[p.index()] |= 1 << oc;
                }
            }
        }
        // The flashing arrow's movement is its opposing through's, less
        // what the overlap says it yields to nothing for.
        let (mut arrow_compatible, mut arrows) = ([0u32; CHANNELS], 0u32);
        for o in spec.overlaps.iter().take(MAX_OVERLAPS) {
            let Some(opposing) = o.permissive_phase() else { continue };
            let oc = MAX_PHASES + o.id.index();
            arrows |= 1 << oc;
            let yields_to = o.permissive_conflicts();
            for p in spec.phases.iter().map(|p| p.id) {
                if phase_ok(p.index(), opposing.index()) && !yields_to.contains(p) {
                    arrow_compatible[oc] |= 1 << p.index();
                }
            }
            for o2 in spec.overlaps.iter().take(MAX_OVERLAPS).filter(|o2| o2.id != o.id) {
                let mut movements = o2.parents;
                if let Some(q) = o2.permissive_phase() {
                    movements.insert(q);
                }
                if movements.iter().any(|q| phase_ok(opposing.index(), q.index())) {
                    arrow_compatible[oc] |= 1 << (MAX_PHASES + o2.id.index());
                }
            }
        }
        for o1 in spec.overlaps.iter().take(MAX_OVERLAPS) {
            for o2 in spec.overlaps.iter().take(MAX_OVERLAPS) {
                let (c1, c2) = (MAX_PHASES + o1.id.index(), MAX_PHASES + o2.id.index());
                let ok =
                    c1 != c2 && o1.parents.iter().any(|p| o2.parents.iter().any(|q| phase_ok(p.index(), q.index())));
                if ok {
                    compatible[c1] |= 1 << c2;
                }
            }
        }
        Mmu {
            compatible,
            arrow_compatible,
            arrows,
            yielding: 0,
            in_use,
            flash,
            watchdog,
            heartbeat: None,
            heartbeat_at: Instant::ZERO,
            controlled: false,
            fault: None,
            last: [Indication::Dark; CHANNELS],
            yellow_since: [None; CHANNELS],
        }
    }

    pub fn fault(&self) -> Option<MmuFault> {
        self.fault
    }

    /// The controller drives the heads (fresh heartbeat, no fault).
    pub fn in_control(&self) -> bool {
        self.controlled && self.fault.is_none()
    }

    /// The technician's reset: clears a latched fault. The controller takes
    /// over again with its next heartbeat.
    pub fn reset(&mut self) {
        self.fault = None;
        self.controlled = false;
        self.heartbeat = None;
        self.yellow_since = [None; CHANNELS];
        self.yielding = 0;
    }

    /// The controller wrote `frame` with `heartbeat` at `now`. Returns a
    /// fault found now (once; it then holds).
    pub fn observe(&mut self, now: Instant, frame: &OutputFrame, heartbeat: u16) -> Option<MmuFault> {
        let fresh = self.heartbeat != Some(heartbeat);
        if fresh {
            self.heartbeat = Some(heartbeat);
            self.heartbeat_at = now;
            if self.fault == Some(MmuFault::Watchdog) {
                self.fault = None;
            }
            if self.fault.is_none() {
                self.controlled = true;
            }
        }
        if !self.in_control() {
            return None;
        }
        let ch = channels(frame);
        let found = self.check(now, &ch);
        self.last = ch;
        if let Some(f) = found {
            self.trip(f);
        }
        found
    }

    /// Time passes: the watchdog. Returns a fault found now.
    pub fn check_watchdog(&mut self, now: Instant) -> Option<MmuFault> {
        if self.in_control() && now.since(self.heartbeat_at) > self.watchdog {
            self.trip(MmuFault::Watchdog);
            return Some(MmuFault::Watchdog);
        }
        None
    }

    fn trip(&mut self, f: MmuFault) {
        self.fault = Some(f);
        self.controlled = false;
        self.yellow_since = [None; CHANNELS];
        self.last = [Indication::Dark; CHANNELS];
        self.yielding = 0;
    }

    fn check(&mut self, now: Instant, ch: &[Indication; CHANNELS]) -> Option<MmuFault> {
        let mut found = None;
        // A flashing yellow arrow channel shows its permissive movement
        // while it flashes, and through the yellow that ends it.
        let mut yielding = 0u32;
        for (c, shown) in ch.iter().enumerate().filter(|(c, _)| self.arrows & (1 << c) != 0) {
            let ending = *shown == Indication::Yellow
                && (self.last[c] == Indication::FlashingYellow || self.yielding & (1 << c) != 0);
            if *shown == Indication::FlashingYellow || ending {
                yielding |= 1 << c;
            }
        }
        self.yielding = yielding;
        let on = |c: usize| ch[c].is_permissive() || yielding & (1 << c) != 0;
        for (a, &shown) in ch.iter().enumerate() {
            let in_use = self.in_use & (1 << a) != 0;
            if in_use && shown == Indication::Dark {
                found = found.or(Some(MmuFault::RedFail { channel: a }));
            }
            if on(a) {
                for b in (a + 1..CHANNELS).filter(|&b| on(b)) {
                    let compatible = match (yielding & (1 << a) != 0, yielding & (1 << b) != 0) {
                        (true, _) => self.arrow_compatible[a] & (1 << b) != 0,
                        (false, true) => self.arrow_compatible[b] & (1 << a) != 0,
                        (false, false) => self.compatible[a] & (1 << b) != 0,
                    };
                    if !compatible {
                        found = found.or(Some(MmuFault::Conflict { a, b }));
                    }
                }
            }
            let arrow = self.arrows & (1 << a) != 0;
            // Clearance: green (or a flashing arrow) → red with no yellow,
            // or a short yellow.
            match (self.last[a], shown) {
                (Indication::Green, Indication::Red) => {
                    found = found.or(Some(MmuFault::Clearance { channel: a, yellow: Span::ZERO }));
                }
                (Indication::FlashingYellow, Indication::Red) | (Indication::Green, Indication::FlashingYellow)
                    if arrow =>
                {
                    found = found.or(Some(MmuFault::Clearance { channel: a, yellow: Span::ZERO }));
                }
                (Indication::Yellow, Indication::Red) => {
                    if let Some(since) = self.yellow_since[a] {
                        let yellow = now.since(since);
                        if yellow < MIN_YELLOW {
                            found = found.or(Some(MmuFault::Clearance { channel: a, yellow }));
                        }
                    }
                }
                _ => {}
            }
            if shown == Indication::Yellow {
                if self.last[a] != Indication::Yellow {
                    // Only a yellow seen from its start is timed.
                    let moving =
                        self.last[a] == Indication::Green || (arrow && self.last[a] == Indication::FlashingYellow);
                    self.yellow_since[a] = moving.then_some(now);
                }
            } else {
                self.yellow_since[a] = None;
            }
        }
        found
    }

    /// What the heads show: the controller's frame while it is in control,
    /// else the cabinet's flash (each channel's flash colour, pedestrian
    /// heads dark).
    pub fn heads(&self, written: &OutputFrame) -> OutputFrame {
        if self.in_control() {
            return *written;
        }
        self.flash_frame()
    }

    pub fn flash_frame(&self) -> OutputFrame {
        let mut out = OutputFrame::default();
        for c in 0..CHANNELS {
            if c < MAX_PHASES {
                out.vehicle[c] = self.flash[c];
                out.ped[c] = PedIndication::Dark;
            } else {
                out.overlap[c - MAX_PHASES] = self.flash[c];
            }
        }
        out
    }
}

fn channels(frame: &OutputFrame) -> [Indication; CHANNELS] {
    let mut ch = [Indication::Dark; CHANNELS];
    ch[..MAX_PHASES].copy_from_slice(&frame.vehicle);
    ch[MAX_PHASES..].copy_from_slice(&frame.overlap);
    ch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::core::{Instant, PhaseId};
    use crate::engine::{Engine, EngineConfig};
    use crate::replay::REPLAY_EPOCH;
    use crate::sim::SimCabinet;

    fn shipped() -> Vec<config::IntersectionConfig> {
        config::load_dir(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/controllers")))
            .expect("shipped controllers are valid")
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    }

    /// An hour of every shipped controller on its simulated traffic: the
    /// MMU, built independently, never disagrees with the controller.
    #[test]
    fn shipped_controllers_never_trip_the_mmu() {
        for cfg in shipped() {
            let tick = Span::from_millis(100);
            let (mut engine, io) =
                Engine::new(vec![cfg.spec.clone()], EngineConfig { tick, ..Default::default() }, REPLAY_EPOCH);
            let mut cab = SimCabinet::new(&cfg.traffic);
            let mut mmu = Mmu::new(&cfg.spec, DEFAULT_WATCHDOG);
            let mut frame = *engine.controller(0).output();
            let mut now = REPLAY_EPOCH;
            let mut greens = 0;
            for hb in 0..36_000u32 {
                io.inputs.send((0, cab.exchange(now, &frame))).unwrap();
                engine.tick(now);
                while let Ok(m) = io.outputs[0].try_recv() {
                    frame = m.frame;
                }
                while io.events.try_recv().is_ok() {}
                while io.snapshots.try_recv().is_ok() {}
                assert_eq!(mmu.observe(now, &frame, hb as u16), None, "{}", cfg.spec.id);
                assert_eq!(mmu.check_watchdog(now), None);
                greens += frame.vehicle.iter().filter(|i| **i == Indication::Green).count();
                now += tick;
            }
            assert!(mmu.in_control() && greens > 1000, "{}: the controller ran", cfg.spec.id);
        }
    }

    #[test]
    fn conflicts_short_yellows_and_the_watchdog_trip() {
        let cfg = shipped().into_iter().find(|c| c.spec.id == "broadway-and-5th").expect("shipped");
        let mut mmu = Mmu::new(&cfg.spec, DEFAULT_WATCHDOG);
        let p = |n: u8| PhaseId::new(n).unwrap().index();
        let mut f = OutputFrame::default();
        for ph in &cfg.spec.phases {
            f.vehicle[ph.id.index()] = Indication::Red;
        }
        for ov in &cfg.spec.overlaps {
            f.overlap[ov.id.index()] = Indication::Red;
        }
        let t0 = Instant::from_millis(10_000);
        f.vehicle[p(2)] = Indication::Green;
        f.vehicle[p(6)] = Indication::Green;
        assert_eq!(mmu.observe(t0, &f, 1), None, "2 and 6 time together");
        f.vehicle[p(4)] = Indication::Green;
        let fault = mmu.observe(t0 + Span::from_millis(100), &f, 2);
        assert_eq!(fault, Some(MmuFault::Conflict { a: p(2), b: p(4) }));
        assert!(!mmu.in_control());
        assert!(matches!(mmu.heads(&f).vehicle[p(2)], Indication::FlashingRed | Indication::FlashingYellow));
        // Latched: a fresh heartbeat does not clear it; the reset does.
        f.vehicle[p(4)] = Indication::Red;
        assert_eq!(mmu.observe(t0 + Span::from_millis(200), &f, 3), None);
        assert!(mmu.fault().is_some());
        mmu.reset();
        assert_eq!(mmu.observe(t0 + Span::from_millis(300), &f, 4), None);
        assert!(mmu.in_control());
        // A 2 s yellow is too short.
        f.vehicle[p(2)] = Indication::Yellow;
        assert_eq!(mmu.observe(t0 + Span::from_millis(400), &f, 5), None);
        f.vehicle[p(2)] = Indication::Red;
        let fault = mmu.observe(t0 + Span::from_millis(2400), &f, 6);
        assert!(matches!(fault, Some(MmuFault::Clearance { .. })), "{fault:?}");
        mmu.reset();
        // Watchdog: no new heartbeat for over a second; clears when it moves.
        assert_eq!(mmu.observe(t0 + Span::from_secs(3), &f, 7), None);
        assert_eq!(mmu.check_watchdog(t0 + Span::from_millis(3900)), None);
        assert_eq!(mmu.check_watchdog(t0 + Span::from_millis(4100)), Some(MmuFault::Watchdog));
        assert_eq!(mmu.observe(t0 + Span::from_millis(4200), &f, 7), None);
        assert!(!mmu.in_control(), "the same heartbeat again is not a heartbeat");
        assert_eq!(mmu.observe(t0 + Span::from_millis(4300), &f, 8), None);
        assert!(mmu.in_control());
    }

    /// Broadway's overlap A: the SB left's flashing yellow arrow, yielding
    /// to the NB through 2.
    #[test]
    fn a_flashing_yellow_arrow_is_on_with_its_opposing_through_only() {
        let cfg = shipped().into_iter().find(|c| c.spec.id == "broadway-and-5th").expect("shipped");
        let p = |n: u8| PhaseId::new(n).unwrap().index();
        let a = MAX_PHASES;
        let start = |mmu: &mut Mmu| {
            let mut f = OutputFrame::default();
            for ph in &cfg.spec.phases {
                f.vehicle[ph.id.index()] = Indication::Red;
            }
            for ov in &cfg.spec.overlaps {
                f.overlap[ov.id.index()] = Indication::Red;
            }
            f.vehicle[p(2)] = Indication::Green;
            f.vehicle[p(6)] = Indication::Green;
            f.overlap[0] = Indication::FlashingYellow;
            assert_eq!(mmu.observe(Instant::from_millis(10_000), &f, 1), None, "2, 6 and A's flashing arrow");
            f
        };
        let t = |ms: u64| Instant::from_millis(10_000 + ms);
        // Ending with 2 through a full steady yellow arrow is clean.
        let mut mmu = Mmu::new(&cfg.spec, DEFAULT_WATCHDOG);
        let mut f = start(&mut mmu);
        f.vehicle[p(2)] = Indication::Yellow;
        f.overlap[0] = Indication::Yellow;
        assert_eq!(mmu.observe(t(100), &f, 2), None, "the yellow arrow ends A's movement with 2's yellow");
        f.vehicle[p(2)] = Indication::Red;
        f.overlap[0] = Indication::Red;
        assert_eq!(mmu.observe(t(4100), &f, 3), None);
        // The flashing arrow conflicts with 5th Ave (alone here: 4 would
        // conflict with 2 and 6 first).
        let mut mmu = Mmu::new(&cfg.spec, DEFAULT_WATCHDOG);
        let mut f = start(&mut mmu);
        f.vehicle[p(2)] = Indication::Red;
        f.vehicle[p(6)] = Indication::Red;
        let mut mmu = Mmu::new(&cfg.spec, DEFAULT_WATCHDOG);
        assert_eq!(mmu.observe(t(0), &f, 1), None);
        f.vehicle[p(4)] = Indication::Green;
        assert_eq!(mmu.observe(t(100), &f, 2), Some(MmuFault::Conflict { a: p(4), b: a }));
        // Flashing straight to red skips the yellow arrow.
        let mut mmu = Mmu::new(&cfg.spec, DEFAULT_WATCHDOG);
        let mut f = start(&mut mmu);
        f.overlap[0] = Indication::Red;
        assert_eq!(mmu.observe(t(100), &f, 2), Some(MmuFault::Clearance { channel: a, yellow: Span::ZERO }));
        // The green arrow (protected) does conflict with 2.
        let mut mmu = Mmu::new(&cfg.spec, DEFAULT_WATCHDOG);
        let mut f = start(&mut mmu);
        f.overlap[0] = Indication::Green;
        assert_eq!(mmu.observe(t(100), &f, 2), Some(MmuFault::Conflict { a: p(2), b: a }));
    }
}
