//! The states a controller is in, as its [`Snapshot`](super::Snapshot)
//! shows them and its [`Controller`](super::Controller) times them: the
//! unit (flash, all red, run), the operating mode, each ring's interval and
//! the preemption stage.
//!
//! Plain `Copy` enums in a file of their own: `controller` builds
//! snapshots, so `snapshot` taking these from `controller` made the two
//! files import each other.

use super::time::Instant;

/// Why the intersection is in flash. The discriminant is the parameter of
/// the Indiana "unit flash status change" (173) event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlashReason {
    /// Start-up flash, before all red and run.
    Startup = 1,
    /// An operator (or the schedule) asked for flash.
    Operator = 2,
    /// The software conflict monitor tripped; latched until reset.
    MonitorTrip = 3,
    /// The cabinet's manual flash switch is on.
    ManualSwitch = 4,
    /// The cabinet's hardware MMU reports a fault.
    CabinetMonitor = 5,
    /// Cabinet I/O lost: outputs can no longer be trusted to reach the heads.
    CabinetLinkLost = 6,
    /// The control thread overran its budget.
    Overrun = 7,
    /// No valid configuration to run.
    ConfigInvalid = 8,
    /// The daemon is stopping.
    Shutdown = 9,
    /// Another master writes the cabinet: this controller has stopped
    /// writing it until the other stops.
    SecondMaster = 10,
}

impl FlashReason {
    /// Every reason, in the order of their parameters (1..=10).
    pub const ALL: [FlashReason; 10] = [
        FlashReason::Startup,
        FlashReason::Operator,
        FlashReason::MonitorTrip,
        FlashReason::ManualSwitch,
        FlashReason::CabinetMonitor,
        FlashReason::CabinetLinkLost,
        FlashReason::Overrun,
        FlashReason::ConfigInvalid,
        FlashReason::Shutdown,
        FlashReason::SecondMaster,
    ];

    /// Position in [`FlashReason::ALL`], for per-reason counters.
    pub const fn index(self) -> usize {
        self as usize - 1
    }

    /// The reason a "unit flash status change" (173) parameter names;
    /// `None` for 0 (flash left) and for values no reason has.
    pub fn from_param(param: u16) -> Option<FlashReason> {
        FlashReason::ALL.into_iter().find(|r| *r as u16 == param)
    }

    /// Precedence when causes overlap: a flash is never relabelled by a
    /// lesser cause, so the reason shown (and the way out of it) stays the
    /// weightiest. Shutdown is final; a monitor trip stays latched until an
    /// operator resets it; the cabinet's own MMU and manual switch hold
    /// until the cabinet releases them, another master until it stops
    /// writing (this daemon's writes are not confirmed meanwhile: the lost
    /// link that follows must not relabel it); a lost link or an overrun
    /// end by themselves; an operator's flash and the start-up flash are
    /// routine.
    pub const fn precedence(self) -> u8 {
        match self {
            FlashReason::Startup => 0,
            FlashReason::Operator => 1,
            FlashReason::Overrun => 2,
            FlashReason::CabinetLinkLost => 3,
            FlashReason::ConfigInvalid => 4,
            FlashReason::SecondMaster => 5,
            FlashReason::ManualSwitch => 6,
            FlashReason::CabinetMonitor => 7,
            FlashReason::MonitorTrip => 8,
            FlashReason::Shutdown => 9,
        }
    }

    /// Held by the cabinet side (its MMU, its manual switch, another master
    /// on it): ends when the cabinet releases it, through start-up.
    pub const fn held_by_cabinet(self) -> bool {
        matches!(self, FlashReason::ManualSwitch | FlashReason::CabinetMonitor | FlashReason::SecondMaster)
    }

    pub fn describe(self) -> &'static str {
        match self {
            FlashReason::Startup => "start-up flash",
            FlashReason::Operator => "operator requested flash",
            FlashReason::MonitorTrip => "safety monitor tripped",
            FlashReason::ManualSwitch => "cabinet manual flash switch on",
            FlashReason::CabinetMonitor => "cabinet MMU fault",
            FlashReason::CabinetLinkLost => "cabinet link lost",
            FlashReason::Overrun => "control loop overran its budget",
            FlashReason::ConfigInvalid => "no valid configuration",
            FlashReason::Shutdown => "daemon shutting down",
            FlashReason::SecondMaster => "another master writes the cabinet",
        }
    }
}

/// Operating mode as an operator sets it. `Scheduled` follows the active
/// plan's own mode (the time-of-day schedule picks the plan).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OperatingMode {
    #[default]
    Scheduled = 1,
    /// Free actuated, whatever the plan says.
    Actuated = 2,
    /// The plan's cycle, offset and splits as coordinated actuated.
    Coordinated = 3,
    /// The plan's splits as fixed time.
    Fixed = 4,
    /// Orderly flash: through clearance, then flash until another mode.
    Flash = 5,
    /// The plan's cycle and splits re-planned every cycle from measured
    /// flows (see [`super::adaptive`]).
    Adaptive = 6,
}

/// The unit-level state (NTCIP `unitControlStatus`, simplified).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitState {
    Flash {
        reason: FlashReason,
        since: Instant,
    },
    /// All red before running (start-up or leaving flash).
    AllRed {
        since: Instant,
    },
    Run,
}

/// The interval a ring is timing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interval {
    /// No phase timing: resting in red or waiting at the barrier.
    #[default]
    Idle,
    Green,
    Yellow,
    RedClear,
}

/// Where a preemption is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreemptStage {
    /// Call received, waiting out the input's delay.
    Delay,
    /// Ending other greens (through their minimums and clearances) to
    /// reach the dwell phases, or a rail preemption's track clearance
    /// phases.
    Entry,
    /// Rail: the track clearance phases are green, for their configured
    /// time; then their greens end (through full clearances) for the
    /// dwell phases, and the stage lasts until those are green.
    TrackClearance,
    /// Dwell phases held green.
    Dwell,
    /// The input let go after the minimum dwell: the dwell greens end
    /// through their full clearances and the exit phases are served before
    /// anything else. Ends (normal operation resumes) as the last exit
    /// phase turns green.
    Exit,
}

/// Whether a cycle plan runs its phases in their own splits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Coordination {
    /// No cycle: free actuated (or free-style adaptive).
    #[default]
    Free,
    /// A green has ended (or a coordinated green reached its yield point)
    /// where the cycle puts it, and nothing has disturbed the cycle since.
    InStep,
    /// Since run began, a preemption, or a change of cycle, offset or
    /// splits, no green has yet ended where the cycle puts it; or an
    /// adaptive plan's cycle origin is still walking onto its corridor's
    /// grid.
    Transitioning,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-reason counters index by `index()`: `ALL` must hold each reason
    /// once, at its place, and every parameter must name its reason back.
    #[test]
    fn every_flash_reason_is_in_all_at_its_index() {
        for (i, r) in FlashReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert_eq!(FlashReason::from_param(r as u16), Some(r));
        }
        assert_eq!(FlashReason::from_param(0), None, "0 is flash left");
        assert_eq!(FlashReason::from_param(FlashReason::ALL.len() as u16 + 1), None);
    }
}
