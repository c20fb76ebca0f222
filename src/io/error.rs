//! Why a cabinet link failed, typed so the client can tell a cabinet that
//! refused (a Modbus exception: it is there, the link stays up) from one
//! that did not answer, answered garbage or broke the connection (the link
//! is dropped and re-made), and count each kind apart.
//!
//! Each message carries its cause's text, because the cabinet task logs
//! these with `{}`; the cause is therefore not also returned by `source()`,
//! which would print it twice under `{:#}`.

use std::fmt;

use tokio_modbus::ExceptionCode;

use crate::config::registers::Block;
use crate::core::Span;

/// One request of the cabinet client, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// FC04 over these input registers.
    ReadInputs(Block),
    /// FC16 over these holding registers.
    WriteHoldings(Block),
    /// FC03 over these holding registers (the heartbeat read back).
    ReadHoldings(Block),
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::ReadInputs(b) => write!(f, "reading input registers {}..{}", b.start, b.end()),
            Request::WriteHoldings(b) => write!(f, "writing holding registers {}..{}", b.start, b.end()),
            Request::ReadHoldings(b) => write!(f, "reading holding registers {}..{}", b.start, b.end()),
        }
    }
}

/// A cabinet link failure.
#[derive(Debug, thiserror::Error)]
pub enum CabinetError {
    /// The TCP connection was refused or failed.
    #[error("connecting {address}: {error}")]
    Connect { address: String, error: std::io::Error },
    /// The serial port could not be opened.
    #[error("opening {path}: {error}")]
    OpenSerial { path: String, error: tokio_serial::Error },
    /// Connecting (or opening the port) took longer than `connect_timeout`.
    #[error("no connection within {after}")]
    ConnectTimeout { after: Span },
    /// The cabinet answered with a Modbus exception: it is there and refuses.
    #[error("{request}: Modbus exception {code:?} (0x{:02X})", u8::from(*code))]
    Exception { request: Request, code: ExceptionCode },
    /// No answer within `request_timeout`.
    #[error("{request}: no answer within the request timeout ({after})")]
    Timeout { request: Request, after: Span },
    /// The connection failed under the request, or the answer did not
    /// belong to it.
    #[error("{request}: {error}")]
    Transport { request: Request, error: tokio_modbus::Error },
    /// The answer held another number of registers than asked for.
    #[error("{request}: {got} registers in the answer")]
    ShortAnswer { request: Request, got: usize },
    /// `clock = "cabinet"`, but the cabinet's simulated time is 0.
    #[error(
        "the cabinet publishes no simulated time (clock = \"cabinet\" needs a lockstep simulator, e.g. `greenwave sim-cabinet --lockstep`)"
    )]
    NoSimTime,
    /// A lockstep simulator whose step is not the daemon's tick.
    #[error("the simulator steps {sim_step_ms} ms but the daemon ticks {tick_ms} ms: they must be equal")]
    StepMismatch { sim_step_ms: u16, tick_ms: u64 },
}
