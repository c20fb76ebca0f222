//! The web view's corridors (`[[corridor]]`, `docs/web.md`): their list,
//! for the map on the list page and its links, and the event rows of a
//! corridor's time-space diagram (`/c/{corridor}`, drawn by
//! `web/corridor.js`). The map itself (`web/map.js`) draws from
//! `/api/intersections` (each row's `location`) and `/api/corridors`.
//!
//! A corridor is named in a path by its name or by its number (1 for the
//! first `[[corridor]]` in `greenwave.toml`). The token's scope applies
//! member by member: members it does not reach are left out, and the
//! answer says how many (`hidden`); a corridor none of whose members it
//! reaches is not listed, and its rows are refused (403).
//!
//! # Bounds
//! The rows are read from the event log files like `/api/events` (the same
//! reader, on a blocking thread, sharing its [`MAX_LOG_READS`] reads at
//! once): the last [`MAX_MINUTES`] minutes at most, phase 2 and phase 6's
//! green, yellow and red clearance begin and end only, [`MAX_ROWS`] rows.
//!
//! [`MAX_LOG_READS`]: super::web

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Serialize;

use super::web::{Refused, Web, asset, json, query_value};
use crate::api::auth::Identity;
use crate::config::CorridorConfig;
use crate::engine::corridor::{BACKWARD_PHASE, FORWARD_PHASE};

/// The window a time-space diagram shows unasked, and the longest.
const DEFAULT_MINUTES: u64 = 10;
const MAX_MINUTES: u64 = 120;
/// Rows one answer carries at most: 10 members' two phases at 4 events a
/// cycle for 2 hours is some 10,000.
const MAX_ROWS: usize = 50_000;
/// Green begins, yellow begins, red clearance begins and ends.
const CODES: [u16; 4] = [1, 8, 10, 11];
/// The two through movements: phase 2 from the first member towards the
/// last, phase 6 back.
const PHASES: [u16; 2] = [FORWARD_PHASE.number() as u16, BACKWARD_PHASE.number() as u16];

/// The corridor routes, with the web view's state (scope, feeds, the
/// event log read permits).
pub(super) fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/c/{corridor}", get(|| async { asset("text/html; charset=utf-8", include_str!("web/corridor.html")) }))
        .route(
            "/corridor.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("web/corridor.js")) }),
        )
        .route("/map.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("web/map.js")) }))
        .route("/api/corridors", get(list))
        .route("/api/corridor/{corridor}/events", get(events))
        .with_state(web)
}

/// A corridor as one caller may see it.
#[derive(Debug, Serialize)]
struct Corridor {
    /// Its place in `greenwave.toml`, from 1: `/c/{number}`.
    number: usize,
    /// `name`, or the member ids joined (as the daemon logs it).
    name: String,
    /// The members the caller reaches, in the order phase 2 travels.
    members: Vec<Member>,
    /// Travel time between consecutive members shown, in seconds.
    travel_s: Vec<f64>,
    /// Members left out: out of the caller's scope.
    hidden: usize,
}

#[derive(Debug, Serialize)]
struct Member {
    id: String,
    name: String,
    /// Travel time from the corridor's first member (shown or not), in
    /// seconds: the member's place on the distance axis.
    reach_s: f64,
    /// Engine index, for the board and the log.
    #[serde(skip)]
    index: usize,
}

impl Corridor {
    /// Corridor `k` of the configuration as `caller` may see it.
    fn of(web: &Web, k: usize, c: &CorridorConfig, caller: &Identity) -> Self {
        let mut members = Vec::new();
        let mut reach = 0.0;
        for (m, id) in c.members.iter().enumerate() {
            if m > 0 {
                reach += c.travel.get(m - 1).map_or(0.0, |t| t.as_secs_f64());
            }
            // Resolved against the intersections at start: a member that
            // is not one is another daemon's (`remote`), not drawn here.
            let Some(index) = web.feeds.ids.iter().position(|x| x == id) else { continue };
            if caller.reaches(id) {
                let name = web.feeds.docs.current(index).config.name.clone();
                members.push(Member { id: id.clone(), name, reach_s: reach, index });
            }
        }
        let travel_s = members.windows(2).map(|w| w[1].reach_s - w[0].reach_s).collect();
        Corridor {
            number: k + 1,
            name: c.name.clone().unwrap_or_else(|| c.members.join(" – ")),
            hidden: c.members.len() - members.len(),
            members,
            travel_s,
        }
    }

    /// The corridor `key` names (its name, else its number), as the
    /// caller may see it: at least one member.
    fn find(web: &Web, key: &str, caller: &Identity) -> Result<Self, Refused> {
        let corridors = &web.feeds.corridors;
        let by_name = corridors.iter().position(|c| c.name.as_deref() == Some(key));
        let by_number = || key.parse::<usize>().ok().filter(|n| (1..=corridors.len()).contains(n)).map(|n| n - 1);
        let echoed = || crate::api::convert::echo(key).to_owned();
        let k = by_name.or_else(by_number).ok_or_else(|| Refused::NoSuchCorridor(echoed()))?;
        let corridor = Corridor::of(web, k, &corridors[k], caller);
        if corridor.members.is_empty() { Err(Refused::CorridorOutOfScope(echoed())) } else { Ok(corridor) }
    }
}

/// `/api/corridors`: every corridor with a member the caller reaches.
async fn list(State(web): State<Arc<Web>>, Extension(caller): Extension<Identity>) -> Result<Response, Refused> {
    let rows: Vec<Corridor> = (web.feeds.corridors.iter().enumerate())
        .map(|(k, c)| Corridor::of(&web, k, c, &caller))
        .filter(|c| !c.members.is_empty())
        .collect();
    json(&rows)
}

/// A time-space diagram's rows: each member's phase 2 and 6 intervals.
#[derive(Debug, Serialize)]
struct Rows {
    #[serde(flatten)]
    corridor: Corridor,
    from_unix_ms: u64,
    to_unix_ms: u64,
    /// More rows matched than [`MAX_ROWS`]; the newest are missing.
    truncated: bool,
    /// Per member shown, in order: `[unix ms, code, phase]`, oldest first.
    events: Vec<Vec<(u64, u16, u16)>>,
}

/// `/api/corridor/{corridor}/events?minutes=M`: the last `M` minutes
/// (1..=120, default 10) up to the members' latest snapshot.
async fn events(
    State(web): State<Arc<Web>>,
    Extension(caller): Extension<Identity>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let corridor = Corridor::find(&web, &key, &caller)?;
    let minutes = match query_value(query.as_deref(), "minutes").map(str::parse::<u64>) {
        None => DEFAULT_MINUTES,
        Some(Ok(m)) if (1..=MAX_MINUTES).contains(&m) => m,
        Some(_) => return Err(Refused::Query(format!("minutes: a whole number from 1 to {MAX_MINUTES}"))),
    };
    // The engine's time, which is the log's (one engine runs them all).
    let to = corridor.members.iter().filter_map(|m| web.feeds.board.get(m.index)).map(|s| s.at.as_millis()).max();
    let to = to.unwrap_or_else(|| u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0));
    let from = to.saturating_sub(minutes * 60_000);
    let ids: Vec<String> = corridor.members.iter().map(|m| m.id.clone()).collect();
    let members = ids.clone();
    let (events, _, truncated) = web
        .read_log(
            ids,
            (from, to),
            (vec![Vec::new(); members.len()], 0, false),
            move |(events, rows, truncated), line| {
                if !CODES.contains(&line.code) || !PHASES.contains(&line.param) {
                    return ControlFlow::Continue(());
                }
                // The signal id is the line's first field; ids are letters,
                // digits, '-', '_' and '.', so never quoted.
                let signal = line.text.split(',').next().unwrap_or_default();
                let Some(m) = members.iter().position(|id| id == signal) else { return ControlFlow::Continue(()) };
                if *rows == MAX_ROWS {
                    *truncated = true;
                    return ControlFlow::Break(());
                }
                *rows += 1;
                events[m].push((line.at.as_millis(), line.code, line.param));
                ControlFlow::Continue(())
            },
        )
        .await?;
    json(&Rows { corridor, from_unix_ms: from, to_unix_ms: to, truncated, events })
}
