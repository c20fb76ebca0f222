//! The web view (`src/http/web.rs`, `src/http/corridor.rs`): its JSON,
//! live feed and event log rows over a real socket, the map's locations,
//! corridors and their time-space rows by the token's scope, the
//! browser's token, and Debian's chromium (headless, driven by selenium:
//! `tools/interop/web_browser.py`) against the real `greenwave run` binary.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use greenwave::api::auth::hash_token;
use greenwave::config::grpc::{GrpcConfig, TokenEntry, parse_sha256};
use greenwave::config::{HttpConfig, Role};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon::Daemon;
use crate::grpc::harness::Harness;
use crate::grpc::interop::{peer_python, prepare, token_entry};
use crate::grpc::{CAMERA, VIEWER, test_controller, tokens};
use crate::http::{daemon, daemon_on, get, get_with};

const ID: &str = "elm-and-oak";

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON ({e}): {body}"))
}

/// GETs `path` until `check` holds on its JSON (bounded); returns it.
async fn json_until(addr: SocketAddr, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        let answer = get(addr, path, None).await;
        if answer.status == 200 {
            let v = json(&answer.body);
            if check(&v) {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what} at {path}");
}

/// The first `n` `state` events of `/live/{id}`, as JSON.
async fn live_states(addr: SocketAddr, id: &str, n: usize) -> Vec<Value> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /live/{id} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut raw = String::new();
    let mut buf = [0u8; 16 * 1024];
    let states = |raw: &str| -> Vec<Value> {
        raw.split("event: state\ndata: ").skip(1).filter_map(|rest| Some(json(rest.split_once('\n')?.0))).collect()
    };
    while states(&raw).len() < n {
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.expect("a state in time");
        let read = read.expect("read");
        assert!(read > 0, "the live feed closed: {raw}");
        raw.push_str(&String::from_utf8_lossy(&buf[..read]));
    }
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("content-type: text/event-stream"), "{raw}");
    states(&raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_reads_the_board_the_definitions_and_the_log() {
    let h = daemon(Some(Role::Viewer)).await;
    let addr = h.http_addr.expect("http on");
    let state = json_until(addr, &format!("/api/state/{ID}"), "the intersection running", |s| s["unit"] == "run").await;
    assert_eq!(state["id"], ID);
    assert!(state["rings"].as_array().is_some_and(|r| !r.is_empty()), "{state}");
    assert!(state["phases"].as_array().is_some_and(|p| p.iter().any(|p| p["vehicle"] == "green")), "{state}");

    let page = get(addr, "/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("content-type: text/html"), "{}", page.headers);
    assert!(page.body.contains("<script src=\"/web.js\">"), "assets are the daemon's own");
    assert_eq!(get(addr, "/web.js", None).await.status, 200);
    assert_eq!(get(addr, &format!("/i/{ID}"), None).await.status, 200);

    let list = json(&get(addr, "/api/intersections", None).await.body);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], ID);
    assert_eq!(list[0]["link_up"], true, "{list}");
    let layout = json(&get(addr, &format!("/api/intersection/{ID}"), None).await.body);
    assert!(layout["phases"].as_array().is_some_and(|p| p.iter().any(|p| p["number"] == 2)), "{layout}");
    assert!(layout["detectors"].as_array().is_some_and(|d| !d.is_empty()), "{layout}");
    assert_eq!(get(addr, "/api/state/no-such-corner", None).await.status, 404);

    // The live feed: the newest state, again and again, the engine's time moving.
    let states = live_states(addr, ID, 3).await;
    let at: Vec<u64> = states.iter().map(|s| s["at_unix_ms"].as_u64().expect("at")).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "states move on: {at:?}");

    // The event log: greens and detector actuations, oldest first.
    let rows = json_until(addr, &format!("/api/events/{ID}?hours=1"), "greens and actuations in the log", |v| {
        let events = v["events"].as_array().cloned().unwrap_or_default();
        let has = |code: u64| events.iter().any(|e| e[1] == code);
        has(1) && has(82) && has(10)
    })
    .await;
    let times: Vec<u64> = rows["events"].as_array().expect("rows").iter().map(|e| e[0].as_u64().expect("ms")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert_eq!(rows["truncated"], false);
    assert_eq!(get(addr, &format!("/api/events/{ID}?hours=99"), None).await.status, 400);
    h.stop().await;
}

/// A viewer token that reaches another intersection only.
const ELSEWHERE: &str = "elsewhere-token-0123456789abcdef0123456789abcdef";

/// [`daemon`] with anonymous viewers, plus a viewer token scoped to an
/// intersection this daemon does not run.
async fn daemon_with_a_scoped_token() -> Harness {
    let mut tokens = tokens();
    tokens.push(TokenEntry {
        name: "elsewhere".into(),
        role: Role::Viewer,
        sha256: parse_sha256(&hash_token(ELSEWHERE)).expect("hex"),
        intersections: Some(vec!["river-rd-and-mill-st".into()]),
    });
    let grpc = GrpcConfig { listen: "127.0.0.1:0".parse().expect("addr"), tokens, ..GrpcConfig::default() };
    let http = HttpConfig {
        enabled: true,
        listen: "127.0.0.1:0".parse().expect("addr"),
        anonymous: Some(Role::Viewer),
        ..HttpConfig::default()
    };
    daemon_on(grpc, http, None).await
}

/// The rows of an `/api/log` answer as `(at ms, code, param)`, checking
/// each row's shape on the way.
fn log_rows(v: &Value) -> Vec<(u64, u64, u64)> {
    let rows = v["rows"].as_array().unwrap_or_else(|| panic!("rows: {v}"));
    rows.iter()
        .map(|r| {
            assert!(r["time"].as_str().is_some_and(|t| t.len() >= 19), "the log's own timestamp: {r}");
            let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}"));
            (n("at_unix_ms"), n("code"), n("param"))
        })
        .collect()
}

/// `/api/log`: the server filters by code and parameter while it reads,
/// answers newest first within the window asked, says why it refuses a
/// query (400), and keeps a token to its intersections (403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_view_filters_while_it_reads() {
    let h = daemon_with_a_scoped_token().await;
    let addr = h.http_addr.expect("http on");
    // Greens of both phases logged, so a filter has something to leave out.
    let greens = json_until(addr, &format!("/api/log/{ID}?codes=1"), "greens of phases 2 and 4", |v| {
        let rows = v["rows"].as_array().cloned().unwrap_or_default();
        [2, 4].iter().all(|&p| rows.iter().any(|r| r["param"] == p))
    })
    .await;
    assert!(
        greens["rows"].as_array().expect("rows").iter().all(|r| r["code"] == 1 && r["name"] == "Phase Begin Green")
    );

    let all = json(&get(addr, &format!("/api/log/{ID}"), None).await.body);
    let all = log_rows(&all);
    assert!(all.iter().any(|r| r.1 == 82) && all.iter().any(|r| r.1 == 8), "unfiltered: every code");
    assert!(all.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");

    // A browser's form sends the comma as %2C.
    let answer = get(addr, &format!("/api/log/{ID}?codes=1%2C8&param=2"), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let filtered = json(&answer.body);
    assert_eq!(filtered["truncated"], false);
    let rows = log_rows(&filtered);
    assert!(rows.iter().any(|r| r.1 == 1) && rows.iter().any(|r| r.1 == 8), "{filtered}");
    assert!(rows.iter().all(|r| (r.1 == 1 || r.1 == 8) && r.2 == 2), "only those codes of phase 2: {filtered}");
    assert!(rows.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");

    // An explicit window: nothing outside it.
    let (newest, oldest) = (rows[0].0, rows[rows.len() - 1].0);
    let (from, to) = (oldest + 1, newest - 1);
    let window = json(&get(addr, &format!("/api/log/{ID}?from={from}&to={to}&param=2"), None).await.body);
    assert_eq!((window["from_unix_ms"].as_u64(), window["to_unix_ms"].as_u64()), (Some(from), Some(to)));
    assert!(log_rows(&window).iter().all(|r| (from..=to).contains(&r.0) && r.2 == 2), "{window}");

    for (query, reason) in [
        ("codes=1,999", "codes: at most 32 whole numbers from 0 to 255, comma-separated"),
        ("param=two", "param: at most 32 whole numbers from 0 to 65535, comma-separated"),
        ("from=2000&to=1000", "from: not after to"),
        ("from=0&to=86400001", "from..to: at most 24 hours"),
        ("to=soon", "to: milliseconds since the Unix epoch"),
    ] {
        let refused = get(addr, &format!("/api/log/{ID}?{query}"), None).await;
        assert_eq!((refused.status, refused.body.trim()), (400, reason), "{query}");
    }

    for path in [format!("/api/log/{ID}"), format!("/api/events/{ID}")] {
        let out = get(addr, &path, Some(ELSEWHERE)).await;
        assert_eq!(out.status, 403, "{path}: {}", out.body);
        assert!(out.body.contains("may not reach intersection \"elm-and-oak\""), "{}", out.body);
    }
    assert_eq!(get(addr, "/api/log/no-such-corner", None).await.status, 404);

    let codes = json(&get(addr, "/api/event-codes", None).await.body);
    let gap_out = codes.as_array().and_then(|c| c.iter().find(|c| c["code"] == 4)).expect("code 4");
    assert_eq!((gap_out["name"].as_str(), gap_out["category"].as_str()), (Some("Phase Gap Out"), Some("phase")));
    let page = get(addr, &format!("/i/{ID}/events"), None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<script src=\"/log.js\">"), "{}", page.body);
    for asset in ["/log.js", "/plots.js"] {
        assert_eq!(get(addr, asset, None).await.status, 200, "{asset}");
    }
    h.stop().await;
}

/// Where the located test intersections are.
const ELM_AT: (f64, f64) = (22.5367, 114.0602);
const OAK_AT: (f64, f64) = (22.5391, 114.0648);
/// A viewer token that reaches oak-and-pine only, and one that reaches
/// pine-and-ash only (no corridor member).
const OAK_VIEWER: &str = "oak-viewer-token-0123456789abcdef0123456789abcd";
const PINE_VIEWER: &str = "pine-viewer-token-0123456789abcdef0123456789abc";

/// A folder for `greenwave run`: three intersections (elm-and-oak and
/// oak-and-pine located, pine-and-ash not), the corridor "Oak Ave" from
/// elm-and-oak to oak-and-pine (25 s), lockstep at 20 times real time,
/// the web view on a free port, tokens [`VIEWER`] (everything),
/// [`OAK_VIEWER`] and [`PINE_VIEWER`], nothing anonymous.
fn corridor_daemon(dir: &std::path::Path) -> Daemon {
    let config = format!(
        "view = false\ntime_zone = \"UTC\"\nclock = \"cabinet\"\nlockstep_speed = 20.0\n\n\
         [grpc]\nanonymous = \"none\"\n{}{}{}\n[http]\nlisten = \"127.0.0.1:0\"\nanonymous = \"none\"\n\n\
         [[corridor]]\nname = \"Oak Ave\"\nmembers = [\"elm-and-oak\", \"oak-and-pine\"]\ntravel_s = [25.0]\n",
        token_entry("wall", "viewer", VIEWER, ""),
        token_entry("oak", "viewer", OAK_VIEWER, "intersections = [\"oak-and-pine\"]\n"),
        token_entry("pine", "viewer", PINE_VIEWER, "intersections = [\"pine-and-ash\"]\n"),
    );
    let (elm_name, elm) = test_controller();
    let line = format!("location = {{ lat = {}, lon = {} }}", ELM_AT.0, ELM_AT.1);
    assert!(elm.contains(&line), "the shipped elm-and-oak has a location");
    let oak = elm
        .replace("id = \"elm-and-oak\"", "id = \"oak-and-pine\"")
        .replace(&line, &format!("location = {{ lat = {}, lon = {} }}", OAK_AT.0, OAK_AT.1));
    let pine = elm.replace("id = \"elm-and-oak\"", "id = \"pine-and-ash\"").replace(&line, "");
    let files = [(elm_name, elm), ("oak-and-pine.toml".into(), oak), ("pine-and-ash.toml".into(), pine)];
    prepare(dir, &files, &config);
    Daemon::start(dir, ["--config", "greenwave.toml"])
}

/// The web view's URL from the daemon's log line.
fn web_url(daemon: &mut Daemon) -> String {
    let line = daemon.expect_line("web view on ");
    let url = line.split("web view on ").nth(1).and_then(|r| r.split_whitespace().next()).expect("a URL");
    url.trim_end_matches('/').to_owned()
}

/// GETs `path` with `token`: its status and, when 200, its JSON.
async fn json_as(addr: SocketAddr, path: &str, token: &str) -> (u16, Value) {
    let answer = get(addr, path, Some(token)).await;
    let value = if answer.status == 200 { json(&answer.body) } else { Value::Null };
    (answer.status, value)
}

fn ids(members: &Value) -> Vec<&str> {
    members.as_array().expect("members").iter().map(|m| m["id"].as_str().expect("id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_and_the_corridors_are_served_within_the_tokens_scope() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut daemon = corridor_daemon(tmp.path());
    let url = web_url(&mut daemon);
    let addr: SocketAddr = url.trim_start_matches("http://").parse().expect("an address");

    // The map's rows: a location where the controller file has one, else null.
    let (status, list) = json_as(addr, "/api/intersections", VIEWER).await;
    assert_eq!(status, 200);
    let row = |id: &str| list.as_array().expect("rows").iter().find(|r| r["id"] == id).cloned().expect("listed");
    assert_eq!(row("elm-and-oak")["location"], serde_json::json!({"lat": ELM_AT.0, "lon": ELM_AT.1}));
    assert_eq!(row("oak-and-pine")["location"], serde_json::json!({"lat": OAK_AT.0, "lon": OAK_AT.1}));
    assert_eq!(row("pine-and-ash")["location"], Value::Null, "{list}");

    // The corridor in full, then as each scoped token sees it.
    let (_, all) = json_as(addr, "/api/corridors", VIEWER).await;
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    let c = &all[0];
    assert_eq!((c["number"].as_u64(), c["name"].as_str()), (Some(1), Some("Oak Ave")), "{c}");
    assert_eq!(ids(&c["members"]), ["elm-and-oak", "oak-and-pine"]);
    assert_eq!(c["members"][1]["reach_s"], 25.0);
    assert_eq!((c["travel_s"].clone(), c["hidden"].as_u64()), (serde_json::json!([25.0]), Some(0)));
    let (_, oak) = json_as(addr, "/api/corridors", OAK_VIEWER).await;
    assert_eq!(ids(&oak[0]["members"]), ["oak-and-pine"], "{oak}");
    assert_eq!((oak[0]["members"][0]["reach_s"].as_f64(), oak[0]["hidden"].as_u64()), (Some(25.0), Some(1)));
    assert_eq!(oak[0]["travel_s"], serde_json::json!([]));
    assert_eq!(json_as(addr, "/api/corridors", PINE_VIEWER).await, (200, serde_json::json!([])));
    assert_eq!(json_as(addr, "/api/intersections", OAK_VIEWER).await.1.as_array().map(Vec::len), Some(1));

    // The time-space rows: both members' phase 2 greens, from the log.
    let mut rows = Value::Null;
    for _ in 0..300 {
        // 503 until the event log's first file is written.
        let (status, v) = json_as(addr, "/api/corridor/1/events?minutes=5", VIEWER).await;
        assert!(status == 200 || status == 503, "{status}");
        let greens = |m: usize| v["events"][m].as_array().is_some_and(|e| e.iter().any(|e| e[1] == 1 && e[2] == 2));
        if greens(0) && greens(1) {
            rows = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rows.is_object(), "no phase 2 greens at both members in time");
    assert_eq!(rows["to_unix_ms"].as_u64().unwrap() - rows["from_unix_ms"].as_u64().unwrap(), 5 * 60_000);
    assert_eq!(ids(&rows["members"]), ["elm-and-oak", "oak-and-pine"]);
    for member in rows["events"].as_array().expect("per member") {
        let events = member.as_array().expect("rows");
        let shown = |e: &Value| {
            [1, 8, 10, 11].contains(&e[1].as_u64().unwrap_or(0)) && [2, 6].contains(&e[2].as_u64().unwrap_or(0))
        };
        assert!(events.iter().all(shown), "{member}");
        let times: Vec<u64> = events.iter().map(|e| e[0].as_u64().expect("ms")).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    }
    let (status, by_name) = json_as(addr, "/api/corridor/Oak%20Ave/events", VIEWER).await;
    assert_eq!((status, by_name["number"].as_u64()), (200, Some(1)), "by its name");
    let (_, scoped) = json_as(addr, "/api/corridor/1/events", OAK_VIEWER).await;
    assert_eq!((ids(&scoped["members"]), scoped["hidden"].as_u64()), (vec!["oak-and-pine"], Some(1)));
    assert_eq!(scoped["events"].as_array().map(Vec::len), Some(1), "the hidden member's rows are not sent");
    assert_eq!(get(addr, "/api/corridor/1/events", Some(PINE_VIEWER)).await.status, 403);
    assert_eq!(get(addr, "/api/corridor/2/events", Some(VIEWER)).await.status, 404);
    assert_eq!(get(addr, "/api/corridor/1/events?minutes=0", Some(VIEWER)).await.status, 400);
    assert_eq!(get(addr, "/api/corridor/1/events?minutes=121", Some(VIEWER)).await.status, 400);

    // The pages and their scripts are the daemon's own.
    let page = get(addr, "/c/1", Some(VIEWER)).await;
    assert!(page.status == 200 && page.body.contains("<script src=\"/corridor.js\">"), "{}", page.body);
    assert!(get(addr, "/", Some(VIEWER)).await.body.contains("<script src=\"/map.js\">"));
    for asset in ["/map.js", "/corridor.js"] {
        let answer = get(addr, asset, Some(VIEWER)).await;
        assert!(answer.status == 200 && answer.headers.contains("content-type: text/javascript"), "{asset}");
    }
    daemon.signal("-TERM");
    assert!(daemon.wait().success(), "daemon exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_brings_its_token_in_the_query_then_in_a_cookie() {
    let h = daemon(None).await;
    let addr = h.http_addr.expect("http on");
    let refused = get(addr, "/api/intersections", None).await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    let first = get(addr, &format!("/?token={VIEWER}"), None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cookie = format!("set-cookie: greenwave_token={VIEWER}; path=/; httponly; samesite=strict");
    assert!(first.headers.contains(&cookie), "{}", first.headers);
    assert!(!first.headers.contains("; secure"), "plaintext: the cookie could not come back if Secure");

    let again =
        get_with(addr, "/api/intersections", &format!("Cookie: theme=dark; greenwave_token={VIEWER}\r\n")).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(!again.headers.contains("set-cookie"), "the cookie is set once, from the query");
    assert_eq!(get(addr, &format!("/api/intersections?token={CAMERA}"), None).await.status, 403);
    let wrong = get_with(addr, "/", "Cookie: greenwave_token=not-a-token-0123456789abcdef0123456789\r\n").await;
    assert_eq!(wrong.status, 401);
    h.stop().await;
}

/// chromium (headless) through selenium against `greenwave run`: the list
/// shows the three intersections and the map one marker per located one,
/// the intersection page sees a phase change arrive live, the
/// coordination diagram and split monitor draw points and the
/// termination chart marks from the event log, the corridor's time-space
/// diagram green bands and progression lines, and the event log page
/// shows rows that a filter narrows. The screenshots are kept in the
/// target directory.
#[test]
fn chromium_shows_the_intersections_live_and_their_plots() {
    let Some(python) = peer_python("import selenium", "selenium") else { return };
    let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(chromedriver) = chromedriver else {
        let required = std::env::var("GW_TEST_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "GW_TEST_REQUIRE_INTEROP=1 but Debian's chromium-driver is not installed (scripts/test.sh installs it)"
        );
        eprintln!("notice: chromium-driver not installed; browser test skipped");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    // At 20 times real time a coordination cycle takes a few seconds.
    let mut daemon = corridor_daemon(tmp.path());
    let url = web_url(&mut daemon);
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-view.png");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python)
        .arg(root.join("tools/interop/web_browser.py"))
        .args(["--url", &url, "--token", VIEWER, "--ids", "elm-and-oak,oak-and-pine,pine-and-ash"])
        .args(["--intersection", ID, "--chromedriver", chromedriver])
        .args(["--corridor", "1", "--corridor-members", "elm-and-oak,oak-and-pine"])
        .arg("--screenshot")
        .arg(&screenshot)
        .output()
        .expect("run the browser test");
    daemon.signal("-TERM");
    let status = daemon.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "web_browser.py failed:\n{stdout}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log().join("\n")
    );
    assert!(stdout.contains("8 passed, 0 failed"), "{stdout}");
    assert!(status.success(), "daemon exit {status}");
    assert!(!daemon.log().iter().any(|l| l.contains(VIEWER)), "the token is never logged");
    println!("screenshot: {}", screenshot.display());
}
