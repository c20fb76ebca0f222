//! The Ingest service: camera detections into the engine.
//!
//! Each frame's zones are mapped to detector channels through the
//! intersection's `[[camera_zone]]` table and sent to the engine's bounded
//! camera channel with `try_send` (a full channel drops the frame and
//! counts it; the engine never waits). When the stream ends, for whatever
//! reason, the presence it placed is withdrawn, so a camera that goes away
//! never leaves a call standing (the engine also drops presence not
//! refreshed for 2 s).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use crossbeam_channel::TrySendError;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::engine::CameraFrame;

use super::auth::{Identity, Need, authorize};
use super::{Shared, convert, pb};

const PUSH: &str = "greenwave.v1.Ingest/PushDetections";

/// Vehicles one zone may count in one frame: a lane discharges about one
/// vehicle every two seconds, so even a frame a minute late counts a few
/// dozen; more is a faulty or hostile processor, not traffic.
const MAX_COUNT_PER_FRAME: u32 = 100;

#[derive(Debug)]
pub(super) struct IngestService {
    shared: Arc<Shared>,
}

impl IngestService {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        IngestService { shared }
    }

    /// One frame as the engine takes it.
    fn frame(&self, caller: &Identity, f: &pb::DetectionFrame) -> Result<(usize, CameraFrame), Status> {
        let core = &self.shared.core;
        let i = core.reach(caller, &f.intersection_id, "intersection_id")?;
        let current = core.docs.current(i);
        let mut frame = CameraFrame::default();
        let zones = &current.config.camera_zones;
        let mut seen = vec![false; zones.len()];
        for (k, z) in f.zones.iter().enumerate() {
            let at = zones.iter().position(|c| c.id == z.zone_id).ok_or_else(|| {
                convert::invalid(
                    &format!("zones[{k}].zone_id"),
                    format!(
                        "no camera zone \"{}\" at {} (see [[camera_zone]] in its controller file)",
                        convert::echo(&z.zone_id),
                        f.intersection_id
                    ),
                )
            })?;
            // A zone reported twice in one frame would count its vehicles twice.
            if std::mem::replace(&mut seen[at], true) {
                return Err(convert::invalid(
                    &format!("zones[{k}].zone_id"),
                    format!("zone \"{}\" is reported twice in one frame", convert::echo(&z.zone_id)),
                ));
            }
            let zone = &zones[at];
            let bit = 1u64 << zone.channel.index();
            frame.channels |= bit;
            if z.presence {
                frame.presence |= bit;
            }
            if let Some(count) = z.count {
                if count > MAX_COUNT_PER_FRAME {
                    return Err(convert::invalid(
                        &format!("zones[{k}].count"),
                        format!("{count} vehicles in one frame is not plausible (at most {MAX_COUNT_PER_FRAME})"),
                    ));
                }
                let count = count as u16;
                frame.counted |= bit;
                let slot = &mut frame.counts[zone.channel.index()];
                *slot = slot.saturating_add(count);
            }
            if let Some(queue) = z.queue {
                // A queue the length of a long approach is a few hundred.
                if queue > u32::from(crate::core::queue::QUEUE_MEASURED_MAX) {
                    return Err(convert::invalid(
                        &format!("zones[{k}].queue"),
                        format!(
                            "{queue} vehicles queued in one zone is not plausible (at most {})",
                            crate::core::queue::QUEUE_MEASURED_MAX
                        ),
                    ));
                }
                frame.queued |= bit;
                frame.queue[zone.channel.index()] = queue as u16;
            }
        }
        Ok((i, frame))
    }
}

#[tonic::async_trait]
impl pb::ingest_server::Ingest for IngestService {
    async fn push_detections(
        &self,
        req: Request<Streaming<pb::DetectionFrame>>,
    ) -> Result<Response<pb::PushDetectionsSummary>, Status> {
        let caller = authorize(&req, Need::Ingest, PUSH)?;
        let _permit = self.shared.stream_permit(&caller)?;
        let mut stream = req.into_inner();
        let mut rate = FrameRate::new(self.shared.limits.camera_frames_per_s);
        let mut summary = pb::PushDetectionsSummary::default();
        // Channels this stream placed presence on, per intersection.
        let mut touched: BTreeMap<usize, u64> = BTreeMap::new();
        let mut stopping = self.shared.stopping.clone();
        let result = loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = stopping.wait_for(|&s| s) => break Err(Status::unavailable("the daemon is stopping")),
            };
            let frame = match next {
                None => break Ok(()),
                Some(Err(status)) => break Err(status),
                Some(Ok(f)) => f,
            };
            if !rate.allow(WallInstant::now()) {
                break Err(Status::resource_exhausted(format!(
                    "more than {} frames/s on one stream (grpc.limits.camera_frames_per_s)",
                    self.shared.limits.camera_frames_per_s
                )));
            }
            let (i, f) = match self.frame(&caller, &frame) {
                Ok(x) => x,
                Err(status) => break Err(status),
            };
            *touched.entry(i).or_default() |= f.channels;
            match self.shared.engine.camera.try_send((i, f)) {
                Ok(()) => summary.frames += 1,
                Err(TrySendError::Full(_)) => summary.frames_dropped += 1,
                Err(TrySendError::Disconnected(_)) => break Err(Status::unavailable("the control thread has stopped")),
            }
        };
        for (i, channels) in touched {
            let clear = CameraFrame { channels, ..CameraFrame::default() };
            let _ = self.shared.engine.camera.try_send((i, clear));
        }
        tracing::info!(principal = %caller.principal, peer = %caller.peer_text(), frames = summary.frames,
            dropped = summary.frames_dropped, "camera stream ended");
        result.map(|()| Response::new(summary))
    }
}

/// Frames per second on one stream, with a one-second burst.
#[derive(Debug)]
struct FrameRate {
    per_s: f64,
    tokens: f64,
    at: Option<WallInstant>,
}

impl FrameRate {
    fn new(per_s: u32) -> Self {
        let per_s = f64::from(per_s.max(1));
        FrameRate { per_s, tokens: per_s, at: None }
    }

    fn allow(&mut self, now: WallInstant) -> bool {
        let elapsed = self.at.map_or(Duration::ZERO, |t| now.duration_since(t));
        self.at = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_s).min(self.per_s);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
