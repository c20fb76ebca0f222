//! The event log view (`docs/web.md`): the raw Indiana events of one
//! intersection in a window, filtered by code and parameter while the log
//! is read, newest first, bounded.
//!
//! - `/i/{id}/events`: the page (`events.html`, drawn by `log.js`).
//! - `/api/log/{id}?from=&to=&codes=&param=`: its rows.
//! - `/api/event-codes`: every code the controller logs, with its name and
//!   category, for the page's filters.
//!
//! Also serves `plots.js`, the intersection page's phase termination chart.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Serialize;

use super::{MAX_HOURS, Refused, Web, asset, json, page, query_value};
use crate::api::auth::Identity;
use crate::core::EventCode;

/// Rows one answer carries at most: a table a browser shows at once.
/// Beyond it the oldest are left out and the answer says `truncated`.
pub(super) const MAX_LOG_ROWS: usize = 5_000;
/// Values one filter (`codes`, `param`) may list.
const MAX_FILTER_VALUES: usize = 32;
/// The window when `from` is not given: the hour up to `to`.
const DEFAULT_WINDOW_MS: u64 = 3_600_000;

/// The event log view's routes.
pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/i/{id}/events", get(|| async { page(include_str!("events.html")) }))
        .route("/log.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("log.js")) }))
        .route("/plots.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("plots.js")) }))
        .route("/api/event-codes", get(codes))
        .route("/api/log/{id}", get(log))
}

/// Which events an answer holds: a window and, optionally, codes and
/// parameters (phase, detector channel, ... as the code defines).
#[derive(Debug, PartialEq, Eq)]
struct Filter {
    /// ms since the Unix epoch, inclusive.
    from: u64,
    to: u64,
    codes: Option<Vec<u16>>,
    params: Option<Vec<u16>>,
}

impl Filter {
    /// Reads `from`, `to` (ms since the Unix epoch; default: `now`, the
    /// engine's time, and the hour before `to`), `codes` and `param`
    /// (comma-separated; empty or absent: any).
    ///
    /// # Errors
    /// A value that is not a number or is out of bounds, with the reason.
    fn parse(query: Option<&str>, now: u64) -> Result<Filter, String> {
        let ms = |key: &str| -> Result<Option<u64>, String> {
            query_value(query, key)
                .map(|v| v.parse::<u64>().map_err(|_| format!("{key}: milliseconds since the Unix epoch")))
                .transpose()
        };
        let to = ms("to")?.unwrap_or(now);
        let from = ms("from")?.unwrap_or(to.saturating_sub(DEFAULT_WINDOW_MS));
        if from > to {
            return Err("from: not after to".to_owned());
        }
        if to - from > MAX_HOURS * 3_600_000 {
            return Err(format!("from..to: at most {MAX_HOURS} hours"));
        }
        let codes = list(query, "codes", 255)?;
        let params = list(query, "param", u16::MAX)?;
        Ok(Filter { from, to, codes, params })
    }

    fn admits(&self, code: u16, param: u16) -> bool {
        self.codes.as_ref().is_none_or(|c| c.contains(&code)) && self.params.as_ref().is_none_or(|p| p.contains(&param))
    }
}

/// A comma-separated list of numbers up to `max` (a browser's form may send
/// the comma as `%2C`); empty or absent: `None`.
fn list(query: Option<&str>, key: &str, max: u16) -> Result<Option<Vec<u16>>, String> {
    let Some(text) = query_value(query, key).filter(|v| !v.is_empty()) else { return Ok(None) };
    let reason = || format!("{key}: at most {MAX_FILTER_VALUES} whole numbers from 0 to {max}, comma-separated");
    let text = text.replace("%2C", ",").replace("%2c", ",");
    let values: Vec<u16> = text
        .split(',')
        .map(|v| v.parse::<u16>().ok().filter(|&v| v <= max))
        .collect::<Option<_>>()
        .ok_or_else(reason)?;
    if values.len() > MAX_FILTER_VALUES {
        return Err(reason());
    }
    Ok(Some(values))
}

/// One event as the view shows it.
#[derive(Debug, Serialize)]
struct Row {
    at_unix_ms: u64,
    /// The timestamp as the log file has it (the daemon's `time_zone`).
    time: String,
    code: u16,
    /// The Indiana name; empty for a code the controller does not know.
    name: &'static str,
    param: u16,
}

#[derive(Debug, Serialize)]
struct LogView {
    from_unix_ms: u64,
    to_unix_ms: u64,
    /// More rows matched than [`MAX_LOG_ROWS`]; the oldest are missing.
    truncated: bool,
    /// Newest first.
    rows: Vec<Row>,
}

/// `/api/log/{id}`: the events of one intersection that pass the filter,
/// newest first, the newest [`MAX_LOG_ROWS`] of them.
async fn log(
    State(web): State<Arc<Web>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let i = web.reach(&caller, &id)?;
    let filter = Filter::parse(query.as_deref(), web.now_ms(i)).map_err(Refused::Query)?;
    let window = (filter.from, filter.to);
    // The newest rows are kept: the window is read oldest first, so the
    // oldest kept row makes way when the buffer is full.
    let kept = (VecDeque::with_capacity(MAX_LOG_ROWS.min(1024)), false);
    let (kept, truncated) = web
        .read_log(vec![id], window, kept, move |(kept, truncated), line| {
            if filter.admits(line.code, line.param) {
                if kept.len() == MAX_LOG_ROWS {
                    kept.pop_front();
                    *truncated = true;
                }
                // ...,Timestamp,EventCode,EventParam: the id may hold commas, the rest cannot.
                let time = line.text.rsplit(',').nth(2).unwrap_or_default().to_owned();
                let name = EventCode::from_code(line.code).map_or("", EventCode::name);
                kept.push_back(Row { at_unix_ms: line.at.as_millis(), time, code: line.code, name, param: line.param });
            }
            ControlFlow::Continue(())
        })
        .await?;
    json(&LogView { from_unix_ms: window.0, to_unix_ms: window.1, truncated, rows: kept.into_iter().rev().collect() })
}

#[derive(Debug, Serialize)]
struct CodeName {
    code: u16,
    name: &'static str,
    category: &'static str,
}

/// `/api/event-codes`: every code the controller logs (the same for every
/// intersection, so any caller the gate lets in may read it).
async fn codes() -> Result<Response, Refused> {
    let codes: Vec<CodeName> = EventCode::ALL
        .iter()
        .map(|e| CodeName { code: e.code(), name: e.name(), category: category(e.code()) })
        .collect();
    json(&codes)
}

/// The group a code is filtered by on the page (the groups of
/// `docs/events.md`, coarser: barrier, holds and calls go with the phase).
fn category(code: u16) -> &'static str {
    match code {
        21..=24 | 45 | 89 | 90 => "pedestrian",
        0..=14 | 31 | 41..=44 => "phase",
        61..=65 => "overlap",
        81..=88 => "detector",
        19 | 20 | 102..=115 => "preemption and priority",
        131..=152 => "coordination",
        _ => "unit and alarms",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_filter_defaults_to_the_last_hour_of_any_event() {
        let f = Filter::parse(Some("token=abc"), NOW).unwrap();
        assert_eq!(f, Filter { from: NOW - DEFAULT_WINDOW_MS, to: NOW, codes: None, params: None });
        assert!(f.admits(173, 9));
        let f = Filter::parse(Some("codes=&param="), NOW).unwrap();
        assert_eq!((f.codes, f.params), (None, None), "empty means any");
    }

    #[test]
    fn a_filter_admits_only_its_codes_and_params() {
        let f = Filter::parse(Some("from=1000&to=2000&codes=1%2C8,10&param=2"), NOW).unwrap();
        assert_eq!((f.from, f.to), (1000, 2000));
        assert_eq!(f.codes.as_deref(), Some(&[1, 8, 10][..]));
        assert!(f.admits(8, 2));
        assert!(!f.admits(8, 4));
        assert!(!f.admits(82, 2));
    }

    #[test]
    fn a_bad_filter_says_why() {
        let reason = |q: &str| Filter::parse(Some(q), NOW).unwrap_err();
        assert_eq!(reason("from=yesterday"), "from: milliseconds since the Unix epoch");
        assert_eq!(reason("from=3000&to=2000"), "from: not after to");
        assert_eq!(reason(&format!("from=0&to={NOW}")), format!("from..to: at most {MAX_HOURS} hours"));
        assert!(reason("codes=1,300").starts_with("codes: at most 32 whole numbers from 0 to 255"));
        assert!(reason("codes=1,,2").starts_with("codes: "));
        assert!(reason("param=-1").starts_with("param: "));
        let many = vec!["1"; MAX_FILTER_VALUES + 1].join(",");
        assert!(reason(&format!("param={many}")).starts_with("param: "));
    }

    #[test]
    fn every_code_has_a_category() {
        assert_eq!(category(21), "pedestrian");
        assert_eq!(category(4), "phase");
        assert_eq!(category(82), "detector");
        assert_eq!(category(173), "unit and alarms");
        assert_eq!(category(151), "coordination");
    }
}
