//! Commands into the engine, and what became of them.
//!
//! A caller that wants an answer (the gRPC API) submits a command with a
//! fresh [`Ticket`]; the control thread handles it in its next tick and
//! `try_send`s the [`Outcome`] on a bounded channel; a router thread here
//! hands it to the waiting caller. The control thread never waits and never
//! allocates for this: the ticket is a number, the outcome a `Copy` value in
//! a preallocated channel. The controller's own checks decide the outcome,
//! so callers do not repeat them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::{EngineCommand, Outcome, Refusal, Ticket};
use crate::core::Command;

/// How long a caller waits for the control thread's answer: many ticks,
/// even at the slowest tick period (1 s) or in a paced simulation.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Why a submitted command did not take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the control thread's command queue is full; retry shortly")]
    Full,
    #[error("the control thread has stopped")]
    Stopped,
    #[error("the control thread did not answer within {} s", ANSWER_WITHIN.as_secs())]
    NoAnswer,
    #[error(transparent)]
    Refused(#[from] Refusal),
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<(), Refusal>>>>>;

/// The way into the engine for everyone but the control thread.
#[derive(Clone, Debug)]
pub struct CommandPort {
    commands: Sender<EngineCommand>,
    next: Arc<AtomicU64>,
    waiting: Waiting,
}

impl CommandPort {
    /// A port on the engine's command and outcome channels, with the
    /// thread that routes outcomes to their callers (it ends when the
    /// engine drops its end).
    ///
    /// # Errors
    /// The OS refused to start the thread.
    pub fn new(commands: Sender<EngineCommand>, outcomes: Receiver<Outcome>) -> std::io::Result<CommandPort> {
        let waiting: Waiting = Arc::default();
        let routes = waiting.clone();
        std::thread::Builder::new().name("greenwave-outcomes".into()).spawn(move || {
            for outcome in outcomes.iter() {
                let waiter = lock(&routes).remove(&outcome.ticket.0);
                if let Some(tx) = waiter {
                    let _ = tx.send(outcome.result);
                }
            }
        })?;
        Ok(CommandPort { commands, next: Arc::new(AtomicU64::new(1)), waiting })
    }

    /// Hands `command` to the engine without asking for its outcome
    /// (shutdown, the reload of a file already validated).
    ///
    /// # Errors
    /// The queue is full or the control thread has stopped.
    pub fn send(&self, command: EngineCommand) -> Result<(), SubmitError> {
        self.commands.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Stopped,
        })
    }

    /// Runs `command` on intersection `intersection` and waits (bounded)
    /// for the controller's answer.
    ///
    /// # Errors
    /// The controller refused it (with its reason), or the engine could not
    /// take it or did not answer.
    pub async fn submit(&self, intersection: usize, command: Command) -> Result<(), SubmitError> {
        self.ticketed(|ticket| EngineCommand::Controller { intersection, command, ticket }).await
    }

    /// Resets a latched monitor trip, and waits for the answer.
    ///
    /// # Errors
    /// No trip was latched, or the engine could not take it.
    pub async fn reset_monitor(&self, intersection: usize) -> Result<(), SubmitError> {
        self.ticketed(|ticket| EngineCommand::ResetMonitor { intersection, ticket }).await
    }

    /// Hands the intersection back to its time-of-day schedule (see
    /// [`EngineCommand::FollowSchedule`]), and waits for the answer.
    ///
    /// # Errors
    /// The engine could not take it.
    pub async fn follow_schedule(&self, intersection: usize) -> Result<(), SubmitError> {
        self.ticketed(|ticket| EngineCommand::FollowSchedule { intersection, ticket }).await
    }

    async fn ticketed(&self, make: impl FnOnce(Ticket) -> EngineCommand) -> Result<(), SubmitError> {
        let ticket = Ticket(self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(ticket.0, tx);
        if let Err(e) = self.send(make(ticket)) {
            lock(&self.waiting).remove(&ticket.0);
            return Err(e);
        }
        match tokio::time::timeout(ANSWER_WITHIN, rx).await {
            Ok(Ok(result)) => Ok(result?),
            // The router ended: the engine is gone.
            Ok(Err(_)) => Err(SubmitError::Stopped),
            Err(_) => {
                lock(&self.waiting).remove(&ticket.0);
                Err(SubmitError::NoAnswer)
            }
        }
    }
}

fn lock(w: &Waiting) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<(), Refusal>>>> {
    // Every mutation is a single insert or remove: a poisoned map is whole.
    w.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::eight_phase;
    use crate::core::{CommandError, Instant, Span};
    use crate::engine::{Engine, EngineConfig};

    /// The controller's own refusal comes back to the caller; an accepted
    /// command comes back Ok; both in the tick that handles them.
    #[tokio::test]
    async fn outcomes_come_back_to_their_callers() {
        let t0 = Instant::from_millis(1_000_000);
        let (mut engine, io) = Engine::new(vec![eight_phase()], EngineConfig::default(), t0);
        let port = CommandPort::new(io.commands.clone(), io.outcomes).expect("router");
        let ticker = std::thread::spawn(move || {
            for k in 1..=50 {
                engine.tick(t0 + Span::from_millis(100 * k));
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let refused = port.submit(0, Command::SelectPlan(99)).await;
        assert_eq!(refused, Err(SubmitError::Refused(Refusal::Controller(CommandError::UnknownPlan(99)))));
        assert_eq!(port.submit(7, Command::Restart).await, Err(SubmitError::Refused(Refusal::UnknownIntersection(7))));
        assert_eq!(port.reset_monitor(0).await, Err(SubmitError::Refused(Refusal::NoMonitorTrip)));
        let plan = eight_phase().plans[0].number;
        assert_eq!(port.submit(0, Command::SelectPlan(plan)).await, Ok(()));
        ticker.join().expect("ticks");
    }
}
