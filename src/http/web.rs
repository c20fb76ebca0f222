//! The web view: pages, their JSON and a live feed, on the metrics
//! listener and behind its gate (`docs/web.md`).
//!
//! Everything is read the way `/metrics` and the gRPC Watch service read
//! it: the [`SnapshotBoard`] (a wait-free load of each intersection's
//! latest snapshot), the controller definitions in force ([`Docs`]) for
//! names and the ring-barrier layout, each cabinet link's counters, and
//! the event log files on disk. Nothing here reaches the control thread.
//!
//! # Bounds
//! - Live feed (`/live/{id}`): one task per client sending the latest
//!   state at [`LIVE_PERIOD`], never a backlog (a client that reads slowly
//!   is sent the newest state when it next can), at most [`MAX_LIVE`]
//!   clients at once.
//! - Event log (`/api/events/{id}`): the last [`MAX_HOURS`] hours at most,
//!   [`MAX_EVENT_ROWS`] rows, the plot codes only, [`MAX_LOG_READS`] reads
//!   at once, each on a blocking thread.
//! - The list (`/api/intersections`) is one small row per intersection.
//! - The event log view (`/api/log/{id}`, [`log`]): a window of at most
//!   [`MAX_HOURS`] hours, filtered while it is read, the newest
//!   [`log::MAX_LOG_ROWS`] rows, under the same [`MAX_LOG_READS`].
//!
//! The pages (`web/*.html`, `web/web.js`, `web/web.css`) are compiled
//! into the binary: no CDN, no library, plain JS drawing SVG.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Serialize;

use crate::api::auth::Identity;
use crate::api::docs::Docs;
use crate::config::{CorridorConfig, Location};
use crate::core::detector::DetectorFault;
use crate::core::spec::{DetectorKind, DetectorPlacement};
use crate::core::{FlashReason, Indication, Interval, OperatingMode, PedIndication, Snapshot, UnitState};
use crate::engine::board::SnapshotBoard;
use crate::io::cabinet::CabinetStats;
use crate::telemetry::EventLogConfig;
use crate::telemetry::log_writer::{LogLine, scan_log};

mod log;

/// How often a live client is sent its intersection's state: fast enough
/// to follow a 100 ms tick's timers by eye, slow enough that 64 clients
/// cost nothing.
const LIVE_PERIOD: Duration = Duration::from_millis(250);
/// Live clients at once; past it a new one is answered 503.
const MAX_LIVE: usize = 64;
/// The longest history the plots may ask for, and what they get unasked.
const MAX_HOURS: u64 = 24;
const DEFAULT_HOURS: u64 = 2;
/// Rows one event log answer carries at most (about 25 bytes each in
/// JSON): a busy intersection logs some 20,000 plot events an hour.
const MAX_EVENT_ROWS: usize = 200_000;
/// Event log reads at once; past it a request is answered 503.
const MAX_LOG_READS: usize = 2;
/// The event codes the plots draw: phase green, termination (gap-out,
/// max-out, force-off), yellow, red clearance begin and end, pedestrian
/// walk (the termination chart's pedestrian marks), detector off and on.
const PLOT_CODES: [u16; 10] = [1, 4, 5, 6, 8, 10, 11, 21, 81, 82];

/// What the pages read, shared with the daemon.
#[derive(Debug)]
pub struct Feeds {
    /// Intersection ids, in the engine's order.
    pub ids: Vec<String>,
    pub board: Arc<SnapshotBoard>,
    /// Each intersection's cabinet link, in the engine's order.
    pub cabinets: Vec<Arc<CabinetStats>>,
    pub docs: Arc<Docs>,
    pub event_log: EventLogConfig,
    /// `[[corridor]]`, as loaded (the time-space pages, `super::corridor`).
    pub corridors: Vec<CorridorConfig>,
}

#[derive(Debug)]
pub(super) struct Web {
    pub(super) feeds: Feeds,
    live: AtomicUsize,
    pub(super) log_reads: tokio::sync::Semaphore,
}

/// The web view's routes, ready to merge behind the listener's gate
/// (which puts the caller's [`Identity`] in each request).
pub fn router(feeds: Feeds) -> Router {
    let web = Arc::new(Web { feeds, live: AtomicUsize::new(0), log_reads: tokio::sync::Semaphore::new(MAX_LOG_READS) });
    Router::new()
        .route("/", get(|| async { page(include_str!("web/list.html")) }))
        .route("/i/{id}", get(|| async { page(include_str!("web/intersection.html")) }))
        .route("/web.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("web/web.js")) }))
        .route("/web.css", get(|| async { asset("text/css; charset=utf-8", include_str!("web/web.css")) }))
        .route("/api/intersections", get(list))
        .route("/api/intersection/{id}", get(layout))
        .route("/api/state/{id}", get(state))
        .route("/api/events/{id}", get(events))
        .route("/live/{id}", get(live))
        .merge(log::routes())
        .with_state(web.clone())
        .merge(super::corridor::router(web))
}

fn page(html: &'static str) -> Response {
    asset("text/html; charset=utf-8", html)
}

pub(super) fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

pub(super) fn json(value: &impl Serialize) -> Result<Response, Refused> {
    let text = serde_json::to_string(value).map_err(|_| Refused::Encoding)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

/// Why a web view request gets no answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error("no intersection \"{0}\"")]
    NoSuchIntersection(String),
    #[error("this token may not reach intersection \"{0}\"")]
    OutOfScope(String),
    #[error("no corridor \"{0}\" (a [[corridor]] name, or its number from 1)")]
    NoSuchCorridor(String),
    #[error("this token reaches no member of corridor \"{0}\"")]
    CorridorOutOfScope(String),
    #[error("the control thread has not published this intersection yet")]
    NotYet,
    #[error("hours: a whole number from 1 to {MAX_HOURS}")]
    Hours,
    /// A query value out of bounds; the text says which and why.
    #[error("{0}")]
    Query(String),
    #[error("{MAX_LIVE} live views open; try again later")]
    LiveViewsFull,
    #[error("{MAX_LOG_READS} event log reads under way; try again")]
    LogReadsBusy,
    #[error("the event log cannot be read: {0}")]
    LogUnreadable(std::io::Error),
    #[error("the event log read did not finish")]
    LogReadFailed,
    #[error("the answer could not be encoded")]
    Encoding,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let code = match self {
            Refused::NoSuchIntersection(_) | Refused::NoSuchCorridor(_) => StatusCode::NOT_FOUND,
            Refused::OutOfScope(_) | Refused::CorridorOutOfScope(_) => StatusCode::FORBIDDEN,
            Refused::Hours | Refused::Query(_) => StatusCode::BAD_REQUEST,
            Refused::NotYet | Refused::LiveViewsFull | Refused::LogReadsBusy | Refused::LogUnreadable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refused::LogReadFailed | Refused::Encoding => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (code, format!("{self}\n")).into_response()
    }
}

impl Web {
    /// The index of intersection `id`, if the caller's token reaches it.
    fn reach(&self, caller: &Identity, id: &str) -> Result<usize, Refused> {
        let echoed = || crate::api::convert::echo(id).to_owned();
        let i = self.feeds.ids.iter().position(|x| x == id).ok_or_else(|| Refused::NoSuchIntersection(echoed()))?;
        if caller.reaches(id) { Ok(i) } else { Err(Refused::OutOfScope(echoed())) }
    }

    /// Now in the engine's time, which is the log's (a lockstep simulation
    /// runs ahead of the wall clock): the latest snapshot's instant.
    fn now_ms(&self, i: usize) -> u64 {
        match self.feeds.board.get(i) {
            Some(s) => s.at.as_millis(),
            None => u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0),
        }
    }

    fn link_up(&self, i: usize) -> Option<bool> {
        self.feeds.cabinets.get(i).map(|c| c.link_up.load(Ordering::Relaxed))
    }

    fn summary(&self, i: usize, snap: Option<&Snapshot>) -> Summary {
        let id = self.feeds.ids[i].clone();
        let (name, location) = {
            let current = self.feeds.docs.current(i);
            (current.config.name.clone(), current.config.location)
        };
        let link_up = self.link_up(i);
        let Some(s) = snap else {
            return Summary { id, name, location, unit: "starting", mode: "", plan: 0, link_up, alarms: Vec::new() };
        };
        let mut alarms = Vec::new();
        if link_up == Some(false) {
            alarms.push("cabinet link down".to_owned());
        }
        let flash = match s.unit {
            UnitState::Flash { reason, .. } => Some(reason),
            _ => None,
        };
        match flash {
            Some(FlashReason::MonitorTrip) => alarms.push("monitor trip: flash until reset".to_owned()),
            // Start-up flash is how every intersection begins, not an alarm.
            Some(FlashReason::Startup) | None => {}
            Some(reason) => alarms.push(format!("flash: {}", super::metrics::flash_reason(reason).replace('_', " "))),
        }
        let faulted = s.detectors[..usize::from(s.detector_count)].iter().filter(|d| d.fault.is_some()).count();
        if faulted > 0 {
            alarms.push(format!("{faulted} detector(s) faulted"));
        }
        let unit = match s.unit {
            UnitState::Run => "run",
            UnitState::AllRed { .. } => "all red",
            UnitState::Flash { .. } => "flash",
        };
        // A flashing intersection is in flash whatever the operator's mode
        // (as the gRPC state says).
        let mode = if flash.is_some() { "flash" } else { mode_name(s.mode) };
        Summary { id, name, location, unit, mode, plan: s.plan, link_up, alarms }
    }
}

/// One intersection at a glance: the list's row, the top of its page.
#[derive(Debug, Serialize)]
struct Summary {
    id: String,
    name: String,
    /// `[intersection] location` (`{lat, lon}`), for the map; `null` if
    /// the controller file has none.
    location: Option<Location>,
    /// `starting` (nothing published yet), `run`, `all red` or `flash`.
    unit: &'static str,
    mode: &'static str,
    plan: u8,
    /// `None` without a cabinet link (the daemon has none for it).
    link_up: Option<bool>,
    alarms: Vec<String>,
}

/// `/api/intersections`: every intersection the caller reaches.
async fn list(State(web): State<Arc<Web>>, Extension(caller): Extension<Identity>) -> Result<Response, Refused> {
    let rows: Vec<Summary> = (0..web.feeds.ids.len())
        .filter(|&i| caller.reaches(&web.feeds.ids[i]))
        .map(|i| web.summary(i, web.feeds.board.get(i).as_deref()))
        .collect();
    json(&rows)
}

/// The ring-barrier layout and detectors of one intersection, as its
/// definition in force says.
#[derive(Debug, Serialize)]
struct Layout {
    id: String,
    name: String,
    /// Phase numbers of each ring, in its sequence.
    rings: Vec<Vec<u8>>,
    /// Phase numbers of each barrier group, in sequence order.
    barrier_groups: Vec<Vec<u8>>,
    phases: Vec<PhaseLayout>,
    detectors: Vec<DetectorLayout>,
}

#[derive(Debug, Serialize)]
struct PhaseLayout {
    number: u8,
    name: String,
    has_ped: bool,
}

#[derive(Debug, Serialize)]
struct DetectorLayout {
    channel: u8,
    /// `stop bar`, `advance` or `pedestrian`.
    kind: &'static str,
    /// Phases it calls.
    calls: Vec<u8>,
    /// Advance loops: seconds to the stop bar at the approach speed.
    travel_time_s: f64,
}

async fn layout(
    State(web): State<Arc<Web>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, Refused> {
    let i = web.reach(&caller, &id)?;
    let current = web.feeds.docs.current(i);
    let spec = &current.config.spec;
    let numbers = |set: crate::core::PhaseSet| set.iter().map(|p| p.number()).collect();
    json(&Layout {
        id,
        name: current.config.name.clone(),
        rings: spec.rings.iter().map(|r| r.sequence.iter().map(|p| p.number()).collect()).collect(),
        barrier_groups: spec.barrier_groups.iter().map(|&g| numbers(g)).collect(),
        phases: spec
            .phases
            .iter()
            .map(|p| PhaseLayout { number: p.id.number(), name: p.name.clone(), has_ped: p.timing.has_ped() })
            .collect(),
        detectors: spec
            .detectors
            .iter()
            .map(|d| DetectorLayout {
                channel: d.channel.number(),
                kind: match (d.kind, d.placement) {
                    (DetectorKind::Pedestrian, _) => "pedestrian",
                    (DetectorKind::Vehicle, DetectorPlacement::StopBar) => "stop bar",
                    (DetectorKind::Vehicle, DetectorPlacement::Advance) => "advance",
                },
                calls: numbers(d.calls),
                travel_time_s: d.travel_time.as_secs_f64(),
            })
            .collect(),
    })
}

/// The live state of one intersection: what `/api/state` answers and
/// `/live` sends.
#[derive(Debug, Serialize)]
struct LiveState {
    #[serde(flatten)]
    summary: Summary,
    at_unix_ms: u64,
    cycle_s: f64,
    /// Position in the coordination cycle, when coordinated or fixed.
    cycle_position_s: Option<f64>,
    rings: Vec<RingState>,
    phases: Vec<PhaseState>,
    detectors: Vec<DetectorState>,
}

#[derive(Debug, Serialize)]
struct RingState {
    phase: Option<u8>,
    /// `green`, `yellow`, `red clearance` or `idle`.
    interval: &'static str,
    /// Time in the interval.
    elapsed_s: f64,
    /// The max timer, while green with a conflicting call.
    max_elapsed_s: Option<f64>,
    next: Option<u8>,
}

#[derive(Debug, Serialize)]
struct PhaseState {
    number: u8,
    /// The vehicle head: `green`, `yellow`, `red`, `flashing red`, ...
    vehicle: &'static str,
    /// The pedestrian head: `walk`, `flashing don't walk`, `don't walk`, `dark`.
    ped: &'static str,
    /// The pedestrian countdown, seconds of clearance left; `null` while
    /// none shows.
    ped_countdown_s: Option<u16>,
    /// The accessible pedestrian signal gives its walk message.
    accessible_walk: bool,
    vehicle_call: bool,
    ped_call: bool,
    held: bool,
}

#[derive(Debug, Serialize)]
struct DetectorState {
    channel: u8,
    presence: bool,
    fault: Option<&'static str>,
}

impl Web {
    fn live_state(&self, i: usize, s: &Snapshot) -> LiveState {
        LiveState {
            summary: self.summary(i, Some(s)),
            at_unix_ms: s.at.as_millis(),
            cycle_s: s.cycle.as_secs_f64(),
            cycle_position_s: s.cycle_time.map(|c| c.as_secs_f64()),
            rings: s.rings[..usize::from(s.ring_count).min(s.rings.len())]
                .iter()
                .map(|r| RingState {
                    phase: r.phase.map(|p| p.number()),
                    interval: interval_name(r.interval),
                    elapsed_s: r.elapsed.as_secs_f64(),
                    max_elapsed_s: r.max_elapsed.map(|m| m.as_secs_f64()),
                    next: r.next.map(|p| p.number()),
                })
                .collect(),
            phases: s
                .present
                .iter()
                .map(|p| PhaseState {
                    number: p.number(),
                    vehicle: indication_name(s.output.phase(p)),
                    ped: ped_name(s.output.ped(p)),
                    ped_countdown_s: Some(s.output.countdown(p)).filter(|c| !c.is_blank()).map(|c| c.secs()),
                    accessible_walk: s.output.accessible_walk.contains(p),
                    vehicle_call: s.vehicle_calls.contains(p),
                    ped_call: s.ped_calls.contains(p),
                    held: s.holds.contains(p),
                })
                .collect(),
            detectors: s.detectors[..usize::from(s.detector_count).min(s.detectors.len())]
                .iter()
                .map(|d| DetectorState { channel: d.channel, presence: d.presence, fault: d.fault.map(fault_name) })
                .collect(),
        }
    }
}

async fn state(
    State(web): State<Arc<Web>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, Refused> {
    let i = web.reach(&caller, &id)?;
    let s = web.feeds.board.get(i).ok_or(Refused::NotYet)?;
    json(&web.live_state(i, &s))
}

/// Takes a live client's place; gives it back when the feed ends.
#[derive(Debug)]
struct LiveSeat(Arc<Web>);

impl Drop for LiveSeat {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `/live/{id}`: server-sent events, one `state` event per
/// [`LIVE_PERIOD`] with the newest snapshot. The stream is pulled by the
/// connection, so a slow reader skips states instead of queueing them.
async fn live(
    State(web): State<Arc<Web>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, Refused> {
    let i = web.reach(&caller, &id)?;
    if web.live.fetch_add(1, Ordering::Relaxed) >= MAX_LIVE {
        web.live.fetch_sub(1, Ordering::Relaxed);
        return Err(Refused::LiveViewsFull);
    }
    let seat = LiveSeat(web);
    let mut ticks = tokio::time::interval(LIVE_PERIOD);
    // A late tick is not made up: the next state is the newest anyway.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((seat, ticks), move |(seat, mut ticks)| async move {
        loop {
            ticks.tick().await;
            let Some(s) = seat.0.feeds.board.get(i) else { continue };
            let Ok(data) = serde_json::to_string(&seat.0.live_state(i, &s)) else { continue };
            let event = Event::default().event("state").data(data);
            return Some((Ok::<_, Infallible>(event), (seat, ticks)));
        }
    });
    // No keep-alive comments: a state goes out every period anyway.
    Ok(Sse::new(stream).into_response())
}

/// The plot events of one intersection from the event log.
#[derive(Debug, Serialize)]
struct LogRows {
    from_unix_ms: u64,
    to_unix_ms: u64,
    /// More rows matched than [`MAX_EVENT_ROWS`]; the newest are missing.
    truncated: bool,
    /// `[unix ms, code, param]`, oldest first.
    events: Vec<(u64, u16, u16)>,
}

/// `/api/events/{id}?hours=H`: the last `H` hours (1..=24, default 2) up
/// to the intersection's latest snapshot, of the codes the coordination
/// diagram and split monitor draw.
async fn events(
    State(web): State<Arc<Web>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let i = web.reach(&caller, &id)?;
    let hours = match query_value(query.as_deref(), "hours").map(str::parse::<u64>) {
        None => DEFAULT_HOURS,
        Some(Ok(h)) if (1..=MAX_HOURS).contains(&h) => h,
        Some(_) => return Err(Refused::Hours),
    };
    let to = web.now_ms(i);
    let from = to.saturating_sub(hours * 3_600_000);
    let rows = LogRows { from_unix_ms: from, to_unix_ms: to, truncated: false, events: Vec::new() };
    let rows = web
        .read_log(vec![id], (from, to), rows, |rows, line| {
            if !PLOT_CODES.contains(&line.code) {
                return ControlFlow::Continue(());
            }
            if rows.events.len() == MAX_EVENT_ROWS {
                rows.truncated = true;
                return ControlFlow::Break(());
            }
            rows.events.push((line.at.as_millis(), line.code, line.param));
            ControlFlow::Continue(())
        })
        .await?;
    json(&rows)
}

impl Web {
    /// Folds the log lines of intersections `ids` from `from` to `to` (ms,
    /// inclusive), oldest first, into `acc` with `each` until it breaks, on
    /// a blocking thread; at most [`MAX_LOG_READS`] at once.
    pub(super) async fn read_log<T: Send + 'static>(
        &self,
        ids: Vec<String>,
        (from, to): (u64, u64),
        mut acc: T,
        mut each: impl FnMut(&mut T, &LogLine<'_>) -> ControlFlow<()> + Send + 'static,
    ) -> Result<T, Refused> {
        let _permit = self.log_reads.try_acquire().map_err(|_| Refused::LogReadsBusy)?;
        let cfg = self.feeds.event_log.clone();
        let read = tokio::task::spawn_blocking(move || {
            let unreadable = scan_log(&cfg, &ids, (from, to.saturating_add(1)), |line| each(&mut acc, line))?;
            if unreadable > 0 {
                tracing::warn!(unreadable, "web view skipped event log lines it could not read");
            }
            Ok(acc)
        })
        .await;
        read.map_err(|_| Refused::LogReadFailed)?.map_err(Refused::LogUnreadable)
    }
}

/// The value of `key` in a URL query (`a=1&b=2`), as written: the values
/// the view takes (numbers, tokens) need no decoding.
pub(super) fn query_value<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

fn mode_name(m: OperatingMode) -> &'static str {
    match m {
        OperatingMode::Scheduled => "scheduled",
        OperatingMode::Actuated => "actuated",
        OperatingMode::Coordinated => "coordinated",
        OperatingMode::Fixed => "fixed",
        OperatingMode::Flash => "flash",
        OperatingMode::Adaptive => "adaptive",
    }
}

fn interval_name(i: Interval) -> &'static str {
    match i {
        Interval::Idle => "idle",
        Interval::Green => "green",
        Interval::Yellow => "yellow",
        Interval::RedClear => "red clearance",
    }
}

fn indication_name(i: Indication) -> &'static str {
    match i {
        Indication::Dark => "dark",
        Indication::Red => "red",
        Indication::Yellow => "yellow",
        Indication::Green => "green",
        Indication::FlashingRed => "flashing red",
        Indication::FlashingYellow => "flashing yellow",
    }
}

fn ped_name(i: PedIndication) -> &'static str {
    match i {
        PedIndication::Dark => "dark",
        PedIndication::DontWalk => "don't walk",
        PedIndication::FlashingDontWalk => "flashing don't walk",
        PedIndication::Walk => "walk",
    }
}

/// The fault's name as the metrics' `fault` label gives it.
fn fault_name(f: DetectorFault) -> &'static str {
    super::metrics::FAULTS.iter().find(|(fault, _)| *fault == f).map_or("fault", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_found_by_whole_key() {
        assert_eq!(query_value(Some("hours=3&token=ab"), "token"), Some("ab"));
        assert_eq!(query_value(Some("xtoken=ab"), "token"), None);
        assert_eq!(query_value(Some("hours=3"), "token"), None);
        assert_eq!(query_value(None, "hours"), None);
    }
}
