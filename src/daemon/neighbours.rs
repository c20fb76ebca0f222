//! Corridor neighbours in other daemons: schedule-style projected outflows
//! over the broker (`[[corridor]] remote`, `docs/nats.md#neighbours`).
//!
//! ```text
//! control thread ──Outflow (bounded channel, try_send)──► greenwave-neighbours thread
//!                                                            ├─ publish <prefix>.<id>.outflow (core NATS)
//!                                                            └─ subscribe to the remote members' outflow
//!                                                                 │ moved by the travel time
//! control thread ◄──EngineCommand::Arrivals (try_send)────────────┘
//! ```
//!
//! Core NATS, not JetStream: a projection is replaced by the next one a
//! second later, so one lost or late is worth nothing to store. Each
//! message carries the control time it was planned at (`made_ms`), sent
//! at (`sent_ms`) and where its bins start (`from_ms`); the receiver keeps
//! those times, so a lockstep simulation stays on its own clock. The
//! control thread hands a projection to the planner a fixed control-time
//! delay after `sent_ms`, as it does for a neighbour in the same daemon
//! (`src/engine/corridor.rs`), and the planner drops one planned more than
//! 3 s of control time ago (`src/core/schedule.rs`): with the broker or the
//! neighbour gone, the member plans from its own detectors again.
//! Outflows are published as the control thread hands them over, not on a
//! wall-clock timer, so a fast lockstep run still meets the delay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::nats::{client_options, subject_token};
use crate::config::NatsConfig;
use crate::config::corridor::{Member, ResolvedCorridor};
use crate::core::schedule::{BINS, Projection};
use crate::core::{Instant, PhaseId, Span};
use crate::engine::corridor::{BACKWARD_PHASE, FORWARD_PHASE};
use crate::engine::{EngineCommand, Outflow};

/// A remote member's outflow that feeds one of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// The remote intersection's id.
    pub from: String,
    pub phase: PhaseId,
    /// Our member's engine index.
    pub to: usize,
    pub travel: Span,
}

/// Our members' inbound links from remote ones: phase 2 from a remote
/// member just before one of ours, phase 6 from one just after.
pub fn inbound(corridors: &[ResolvedCorridor]) -> Vec<Inbound> {
    let mut out = Vec::new();
    for c in corridors {
        for (k, pair) in c.members.windows(2).enumerate() {
            let travel = c.travel[k];
            match pair {
                [Member::Remote(from), Member::Local(to)] => {
                    out.push(Inbound { from: from.clone(), phase: FORWARD_PHASE, to: *to, travel });
                }
                [Member::Local(to), Member::Remote(from)] => {
                    out.push(Inbound { from: from.clone(), phase: BACKWARD_PHASE, to: *to, travel });
                }
                _ => {}
            }
        }
    }
    out
}

/// The exchange's counters (`/metrics`, tests).
#[derive(Debug, Default)]
pub struct NeighbourStats {
    /// Projections published for remote members.
    pub published: AtomicU64,
    /// Remote projections handed to the control thread.
    pub received: AtomicU64,
    /// Messages on a subscribed subject that were not a projection we use
    /// (unreadable, or another phase).
    pub ignored: AtomicU64,
}

/// The body on `<prefix>.<id>.outflow` (`docs/nats.md#neighbours`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Body {
    intersection: String,
    phase: u8,
    made_ms: u64,
    sent_ms: u64,
    from_ms: u64,
    bin_ms: u64,
    vehicles: Vec<f32>,
}

impl Body {
    fn new(id: &str, o: &Outflow) -> Body {
        let p = &o.projection;
        Body {
            intersection: id.to_owned(),
            phase: o.phase.number(),
            made_ms: p.made.as_millis(),
            sent_ms: o.sent.as_millis(),
            from_ms: p.from.as_millis(),
            bin_ms: p.bin.as_millis(),
            vehicles: p.vehicles.to_vec(),
        }
    }

    fn projection(&self) -> Option<Projection> {
        let vehicles: [f32; BINS] = self.vehicles.as_slice().try_into().ok()?;
        let ok = self.bin_ms > 0 && vehicles.iter().all(|v| v.is_finite() && *v >= 0.0);
        ok.then(|| Projection {
            made: Instant::from_millis(self.made_ms),
            from: Instant::from_millis(self.from_ms),
            bin: Span::from_millis(self.bin_ms),
            vehicles,
        })
    }
}

/// Starts the exchange thread (with its own broker connection). Returns at
/// once; the client connects and reconnects in the background.
///
/// # Errors
/// The runtime or thread could not start, or the credentials file could
/// not be read.
pub fn spawn(
    cfg: &NatsConfig,
    ids: Vec<String>,
    inbound: Vec<Inbound>,
    outflows: Receiver<Outflow>,
    commands: Sender<EngineCommand>,
) -> anyhow::Result<Arc<NeighbourStats>> {
    let stats = Arc::new(NeighbourStats::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("greenwave-neighbours")
        .build()
        .context("starting the neighbour exchange's runtime")?;
    let options = rt.block_on(client_options(cfg))?.name("greenwave-neighbours").event_callback(|event| async move {
        match event {
            async_nats::Event::Connected => info!("corridor neighbours: NATS broker connected"),
            async_nats::Event::Disconnected => {
                warn!("corridor neighbours: NATS broker disconnected: remote members' projections go stale in 3 s, and ours are not sent")
            }
            async_nats::Event::ClientError(e) => tracing::debug!(error = %e, "NATS client (neighbours)"),
            other => info!(event = %other, "NATS client (neighbours)"),
        }
    });
    let (url, prefix, thread_stats) = (cfg.url.clone(), cfg.subject_prefix.clone(), stats.clone());
    info!(links = inbound.len(), "corridor neighbours in other daemons: projected outflows over NATS");
    std::thread::Builder::new()
        .name("greenwave-neighbours".into())
        .spawn(move || {
            rt.block_on(async move {
                let client = match options.connect(&url).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, %url, "NATS client could not start: corridor neighbours in other daemons are not heard");
                        return;
                    }
                };
                let exchange = Exchange { prefix, ids, inbound, commands, stats: thread_stats };
                // Until the control thread stops (its outflow channel
                // closes). Receiving may end first (no subscription
                // taken): publishing goes on regardless.
                let receive = async {
                    exchange.receive(&client).await;
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    () = exchange.publish(&client, outflows) => {}
                    () = receive => {}
                }
            });
        })
        .context("starting the neighbour exchange thread")?;
    Ok(stats)
}

struct Exchange {
    prefix: String,
    /// Our intersections' ids, by engine index.
    ids: Vec<String>,
    inbound: Vec<Inbound>,
    commands: Sender<EngineCommand>,
    stats: Arc<NeighbourStats>,
}

impl Exchange {
    fn subject(&self, id: &str) -> String {
        format!("{}.{}.outflow", self.prefix, subject_token(id))
    }

    /// Publishes what the control thread projects, until the engine stops.
    async fn publish(&self, client: &async_nats::Client, outflows: Receiver<Outflow>) {
        loop {
            // The channel is the control thread's (crossbeam: no allocation
            // there); its blocking receive waits on the runtime's blocking
            // pool, so each outflow goes out as soon as it is handed over.
            let next = outflows.clone();
            let Ok(Ok(o)) = tokio::task::spawn_blocking(move || next.recv()).await else { return };
            // Latest wins: nothing is kept for a broker that is away.
            if client.connection_state() != async_nats::connection::State::Connected {
                continue;
            }
            let Some(id) = self.ids.get(o.intersection) else { continue };
            let body = serde_json::to_vec(&Body::new(id, &o)).unwrap_or_default();
            if client.publish(self.subject(id), body.into()).await.is_ok() {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands the remote members' projections to the control thread, moved
    /// by the travel time to our member.
    async fn receive(&self, client: &async_nats::Client) {
        let mut subjects: Vec<String> = self.inbound.iter().map(|l| self.subject(&l.from)).collect();
        subjects.sort();
        subjects.dedup();
        let mut streams = Vec::with_capacity(subjects.len());
        for s in subjects {
            match client.subscribe(s.clone()).await {
                Ok(sub) => streams.push(sub),
                Err(e) => warn!(subject = %s, error = %e, "NATS: cannot subscribe to a corridor neighbour's outflow"),
            }
        }
        let mut all = futures_util::stream::select_all(streams);
        while let Some(message) = all.next().await {
            let body: Option<Body> = serde_json::from_slice(&message.payload).ok();
            let mut used = false;
            if let Some((body, projection)) = body.as_ref().and_then(|b| Some((b, b.projection()?))) {
                for l in self.inbound.iter().filter(|l| l.from == body.intersection && l.phase.number() == body.phase) {
                    let command = EngineCommand::Arrivals {
                        intersection: l.to,
                        phase: l.phase,
                        projection: projection.after(l.travel),
                        sent: Instant::from_millis(body.sent_ms),
                    };
                    if self.commands.try_send(command).is_ok() {
                        self.stats.received.fetch_add(1, Ordering::Relaxed);
                    }
                    used = true;
                }
            }
            if !used {
                self.stats.ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_run_from_remote_members_into_ours_along_the_wave() {
        let s = Span::from_secs;
        let c = ResolvedCorridor {
            members: vec![Member::Remote("a".into()), Member::Local(0), Member::Local(1), Member::Remote("d".into())],
            travel: vec![s(20), s(25), s(30)],
        };
        assert_eq!(
            inbound(&[c]),
            vec![
                Inbound { from: "a".into(), phase: FORWARD_PHASE, to: 0, travel: s(20) },
                Inbound { from: "d".into(), phase: BACKWARD_PHASE, to: 1, travel: s(30) },
            ]
        );
    }

    #[test]
    fn a_body_round_trips_and_a_bad_one_is_no_projection() {
        let projection = Projection {
            made: Instant::from_millis(5_000),
            from: Instant::from_millis(5_000),
            bin: Span::from_millis(7_500),
            vehicles: [1.5; BINS],
        };
        let sent = Instant::from_millis(5_600);
        let body = Body::new("elm.oak", &Outflow { intersection: 0, phase: FORWARD_PHASE, projection, sent });
        let back: Body = serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(back.projection(), Some(projection));
        assert_eq!(back.sent_ms, 5_600);
        assert_eq!(Body { vehicles: vec![1.0; 3], ..back }.projection(), None, "12 bins or nothing");
        let negative = Body::new("x", &Outflow { intersection: 0, phase: FORWARD_PHASE, projection, sent });
        assert_eq!(Body { vehicles: vec![-1.0; BINS], ..negative }.projection(), None);
    }
}
