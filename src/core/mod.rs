//! The control core: pure, deterministic, clock-injected.
//!
//! Nothing in here reads a clock, touches a socket or a file, takes a lock or
//! allocates per tick. It imports nothing from tokio, tonic, tokio-modbus or
//! config (`.ci/run` greps for that). The engine calls
//! [`Controller::handle_tick`] with `now` and the cabinet's [`InputFrame`],
//! then reads [`Controller::output`] and drains [`Controller::poll_event`].
//! The [`monitor::Monitor`] is separate code that checks every output frame,
//! as a cabinet's MMU does.

pub mod adaptive;
pub mod controller;
pub mod coord;
pub mod detector;
pub mod event;
pub mod ids;
pub mod image;
pub mod monitor;
pub mod preempt;
pub mod queue;
pub mod schedule;
pub mod snapshot;
pub mod spec;
pub mod state;
#[cfg(test)]
pub(crate) mod testing;
pub mod time;

pub use controller::{Command, CommandError, Controller};
pub use event::{
    ALARM_DOOR_OPEN, ALARM_POWER_FAIL, ALARM_SECOND_MASTER, ALARM_SLOW_CABINET, Event, EventCode, EventQueue,
};
pub use ids::{DetectorChannel, MAX_DETECTORS, MAX_OVERLAPS, MAX_PHASES, MAX_RINGS, OverlapId, PhaseId, PhaseSet};
pub use image::{CabinetStatus, Countdown, FrameAck, Indication, InputFrame, OutputFrame, PedIndication};

pub use monitor::{Fault, Monitor, Trip};
pub use snapshot::Snapshot;
pub use spec::ControllerSpec;
pub use state::{Coordination, FlashReason, Interval, OperatingMode, PreemptStage, UnitState};
pub use time::{Instant, Span};
