//! The gRPC API over a real socket (port 0): every service, auth and
//! roles, field errors, event resume and lag, camera ingest, TLS with and
//! without client certificates, the audit of rejected control calls; then
//! the Python interop client.

mod audit;
mod emergency;
pub mod harness;
pub(crate) mod interop;
mod operations;
mod persist;

use std::time::Duration;

use greenwave::api::auth::hash_token;
use greenwave::api::pb;
use greenwave::api::pb::control_client::ControlClient;
use greenwave::api::pb::ingest_client::IngestClient;
use greenwave::api::pb::watch_client::WatchClient;
use greenwave::config::Role;
use greenwave::config::grpc::{GrpcConfig, TokenEntry, parse_sha256};
use tonic::transport::Channel;
use tonic::{Code, Request};

use harness::{Harness, Options};

pub const VIEWER: &str = "viewer-token-0123456789abcdef0123456789abcdef";
pub const OPERATOR: &str = "operator-token-0123456789abcdef0123456789abcdef";
pub const CAMERA: &str = "camera-token-0123456789abcdef0123456789abcdef";

/// elm-and-oak with a camera zone on detector 3 (Oak EB), and quick
/// greens so plans reach the barrier soon.
pub fn test_controller() -> (String, String) {
    let text = include_str!("../../controllers/elm-and-oak.toml")
        .replace("max1_s = 30.0", "max1_s = 12.0")
        .replace("max1_s = 25.0", "max1_s = 22.0");
    let text = format!("{text}\n[[camera_zone]]\nid = \"oak-eb\"\ndetector = 3\n");
    ("elm-and-oak.toml".into(), text)
}

pub fn tokens() -> Vec<TokenEntry> {
    let t = |name: &str, role, secret: &str| TokenEntry {
        name: name.into(),
        role,
        sha256: parse_sha256(&hash_token(secret)).expect("hex"),
        intersections: None,
    };
    vec![t("wall", Role::Viewer, VIEWER), t("tmc", Role::Operator, OPERATOR), t("cam-1", Role::Camera, CAMERA)]
}

fn grpc_config() -> GrpcConfig {
    GrpcConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tokens: tokens(),
        anonymous: None,
        ..GrpcConfig::default()
    }
}

/// The test controller in lockstep at 20 times real time.
fn options(grpc: GrpcConfig, event_history: usize) -> Options {
    Options {
        grpc,
        controllers: vec![test_controller()],
        speed: Some(20.0),
        event_history,
        tick_ms: 100,
        dir: None,
        config_file: None,
        http: None,
        ntcip: None,
        gbt20999: None,
    }
}

async fn daemon(grpc: GrpcConfig, event_history: usize) -> Harness {
    harness::start(options(grpc, event_history)).await
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    r
}

async fn channel(h: &Harness) -> Channel {
    Channel::from_shared(h.url()).expect("url").connect().await.expect("connect")
}

const ID: &str = "elm-and-oak";

/// Polls GetState until `check` holds (bounded).
async fn wait_state(
    w: &mut WatchClient<Channel>,
    what: &str,
    check: impl Fn(&pb::IntersectionState) -> bool,
) -> pb::IntersectionState {
    let mut last = None;
    for _ in 0..300 {
        if let Ok(s) = w.get_state(authed(pb::GetStateRequest { intersection_id: ID.into() }, VIEWER)).await {
            let s = s.into_inner();
            if check(&s) {
                return s;
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}; the last state read: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_lists_gets_and_streams_state_and_measures() {
    let h = daemon(grpc_config(), 100_000).await;
    let mut w = WatchClient::new(channel(&h).await);
    let list = w.list_intersections(authed(pb::ListIntersectionsRequest {}, VIEWER)).await.expect("list").into_inner();
    assert_eq!(list.intersections.len(), 1);
    let info = &list.intersections[0];
    assert_eq!(info.id, ID);
    assert_eq!(info.phases.iter().map(|p| p.number).collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(info.camera_zones[0].zone_id, "oak-eb");
    assert_eq!(info.config_version, 1);

    let running = wait_state(&mut w, "run", |s| s.unit_state == pb::UnitState::Run as i32).await;
    assert_eq!(running.phases.len(), 2);
    assert_eq!(running.rings.len(), 1);
    assert!(running.detectors.iter().all(|d| d.fault == pb::DetectorFault::None as i32 || d.fault != 0));
    // Running means its cabinet answers: the state says the link is up.
    let link = running.cabinet_link.expect("the cabinet link");
    assert!(link.up && link.links_lost == 0, "{link:?}");

    let mut stream = w
        .watch_state(authed(pb::WatchStateRequest { intersection_ids: vec![], min_interval_ms: 100 }, VIEWER))
        .await
        .expect("watch")
        .into_inner();
    let mut seen = 0;
    while seen < 3 {
        let update =
            tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("an update").expect("ok");
        assert_eq!(update.expect("open").state.expect("state").intersection_id, ID);
        seen += 1;
    }

    let bad = w
        .watch_state(authed(pb::WatchStateRequest { intersection_ids: vec![], min_interval_ms: 5 }, VIEWER))
        .await
        .expect_err("5 ms is too fast");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("min_interval_ms"), "{}", bad.message());
    let missing =
        w.get_state(authed(pb::GetStateRequest { intersection_id: "nowhere".into() }, VIEWER)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let empty = w.get_state(authed(pb::GetStateRequest { intersection_id: String::new() }, VIEWER)).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().starts_with("intersection_id"), "{}", empty.message());

    let perf = w
        .get_performance(authed(pb::GetPerformanceRequest { intersection_id: ID.into() }, VIEWER))
        .await
        .expect("perf")
        .into_inner();
    assert_eq!(perf.phases.len(), 2);
    assert!(perf.phases.iter().any(|p| p.greens > 0), "{perf:?}");
    assert!(perf.tick_latency.expect("latency").count > 0);
    assert!(h.latency.latest().0.count > 0, "the harness reads the same figures");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_are_enforced_with_reasons() {
    let h = daemon(grpc_config(), 100_000).await;
    let ch = channel(&h).await;
    let mut w = WatchClient::new(ch.clone());
    let mut c = ControlClient::new(ch.clone());
    let none = w.list_intersections(pb::ListIntersectionsRequest {}).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    assert!(none.message().contains("missing bearer token"), "{}", none.message());
    let wrong = w.list_intersections(authed(pb::ListIntersectionsRequest {}, "not-a-token")).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);

    let set_flash = pb::SetModeRequest { intersection_id: ID.into(), mode: pb::Mode::Flash as i32 };
    let denied = c.set_mode(authed(set_flash.clone(), VIEWER)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("role viewer") && denied.message().contains("needs operator"),
        "{}",
        denied.message()
    );
    let camera = w.get_state(authed(pb::GetStateRequest { intersection_id: ID.into() }, CAMERA)).await.unwrap_err();
    assert_eq!(camera.code(), Code::PermissionDenied);

    let unknown_mode = c.set_mode(authed(pb::SetModeRequest { intersection_id: ID.into(), mode: 99 }, OPERATOR));
    assert_eq!(unknown_mode.await.unwrap_err().code(), Code::InvalidArgument);
    let unset =
        c.set_mode(authed(pb::SetModeRequest { intersection_id: ID.into(), mode: 0 }, OPERATOR)).await.unwrap_err();
    assert_eq!(unset.code(), Code::InvalidArgument);
    assert!(unset.message().starts_with("mode:"), "{}", unset.message());

    let hold = c
        .hold_phases(authed(pb::PhasesRequest { intersection_id: ID.into(), phases: vec![2, 9] }, OPERATOR))
        .await
        .unwrap_err();
    assert_eq!(hold.code(), Code::InvalidArgument);
    // The controller's own check, as its outcome: phase 9 is not there.
    assert!(hold.message().starts_with("phases: phases 9 "), "{}", hold.message());
    let ok = c
        .hold_phases(authed(pb::PhasesRequest { intersection_id: ID.into(), phases: vec![2] }, OPERATOR))
        .await
        .expect("hold");
    assert!(ok.get_ref().audit_seq > 0);
    let reset =
        c.reset_monitor(authed(pb::ResetMonitorRequest { intersection_id: ID.into() }, OPERATOR)).await.unwrap_err();
    assert_eq!(reset.code(), Code::FailedPrecondition);

    let flash = c.set_mode(authed(set_flash, OPERATOR)).await.expect("operator may").into_inner();
    assert!(flash.detail.contains("flash"), "{}", flash.detail);
    let mut w2 = WatchClient::new(ch);
    wait_state(&mut w2, "operator flash", |s| s.flash_reason == pb::FlashReason::Operator as i32).await;

    // The denial and the commands are in the event stream as audit records.
    let mut events = w
        .stream_events(authed(
            pb::StreamEventsRequest { from_seq: 1, intersection_ids: vec![], exclude_audit: false },
            VIEWER,
        ))
        .await
        .expect("events")
        .into_inner();
    let mut audits: Vec<pb::AuditRecord> = Vec::new();
    while !audits.iter().any(|a| a.request.contains("hold") && a.result == "ok") {
        let msg = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .expect("more events")
            .expect("ok")
            .expect("open");
        if let Some(pb::stream_events_response::Item::Event(pb::EventRecord {
            kind: Some(pb::event_record::Kind::Audit(a)),
            ..
        })) = msg.item
        {
            audits.push(a);
        }
    }
    assert_eq!((audits[0].principal.as_str(), audits[0].result.as_str()), ("wall", "PERMISSION_DENIED"));
    assert!(
        audits.iter().any(|a| a.principal == "tmc" && a.result == "ok" && a.request.contains("hold")),
        "{audits:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_omits_phases_and_clears_the_omits() {
    let h = daemon(grpc_config(), 100_000).await;
    let ch = channel(&h).await;
    let mut c = ControlClient::new(ch.clone());
    let mut w = WatchClient::new(ch);
    let omit = |phases: Vec<u32>, token| authed(pb::OmitPhasesRequest { intersection_id: ID.into(), phases }, token);

    let denied = c.omit_phases(omit(vec![4], VIEWER)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let absent = c.omit_phases(omit(vec![4, 9], OPERATOR)).await.unwrap_err();
    assert_eq!(absent.code(), Code::InvalidArgument);
    assert!(absent.message().starts_with("phases: phases 9 "), "{}", absent.message());

    let ok = c.omit_phases(omit(vec![4], OPERATOR)).await.expect("omit").into_inner();
    assert!(ok.detail.contains("phases 4 omitted"), "{}", ok.detail);
    let phase = |s: &pb::IntersectionState, n: u32| s.phases.iter().find(|p| p.number == n).cloned().expect("phase");
    let s = wait_state(&mut w, "phase 4 omitted", |s| phase(s, 4).omitted).await;
    assert!(!phase(&s, 2).omitted);
    // Omitted, phase 4's calls are dropped: once it is red, the side
    // street is not served again (20 reads over 40 s of simulated traffic).
    let red = pb::Indication::Red as i32;
    wait_state(&mut w, "phase 4 red", |s| phase(s, 4).vehicle == red).await;
    for _ in 0..20 {
        let s = w.get_state(authed(pb::GetStateRequest { intersection_id: ID.into() }, VIEWER)).await;
        let s = s.expect("state").into_inner();
        assert_eq!((phase(&s, 4).vehicle, phase(&s, 4).vehicle_call), (red, false), "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cleared = c.omit_phases(omit(vec![], OPERATOR)).await.expect("clear").into_inner();
    assert_eq!(cleared.detail, "operator omits cleared");
    wait_state(&mut w, "phase 4 back", |s| !phase(s, 4).omitted).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_plans_are_checked_like_greenwave_check_and_staged() {
    let h = daemon(grpc_config(), 100_000).await;
    let ch = channel(&h).await;
    let mut c = ControlClient::new(ch.clone());
    let mut w = WatchClient::new(ch);
    let plan = |cycle_s: f64, splits: [f64; 2]| pb::TimingPlan {
        number: 2,
        name: "day, retimed".into(),
        mode: pb::PlanMode::Coordinated as i32,
        cycle_s,
        offset_s: 10.0,
        splits_s: vec![
            pb::PhaseSplit { phase: 2, split_s: splits[0] },
            pb::PhaseSplit { phase: 4, split_s: splits[1] },
        ],
        coordinated: vec![2],
        max2: false,
    };
    let apply = |p: pb::TimingPlan| pb::ApplyTimingPlanRequest {
        intersection_id: ID.into(),
        source: Some(pb::apply_timing_plan_request::Source::Plan(p)),
        activate: true,
        expected_version: 0,
    };
    // Splits that do not add up to the cycle, and a split too short for
    // the phase's pedestrian service: both reported.
    // Every violation comes back at once, each under the request's own
    // field path (the proto's names).
    let fields = |status: &tonic::Status| -> Vec<String> {
        use tonic_types::StatusExt;
        let bad = status.get_details_bad_request().expect("a BadRequest detail");
        bad.field_violations.into_iter().map(|v| v.field).collect()
    };
    let bad = c.apply_timing_plan(authed(apply(plan(80.0, [62.0, 10.0])), OPERATOR)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("errors"), "more than one error: {}", bad.message());
    let f = fields(&bad);
    assert!(f.iter().all(|f| f.starts_with("plan.splits_s")), "{f:?}: {}", bad.message());
    assert!(f.contains(&"plan.splits_s[1].split_s".to_owned()), "phase 4's split, second in the request: {f:?}");
    let five = pb::TimingPlan {
        number: 300,
        mode: pb::PlanMode::Unspecified as i32,
        name: "x".repeat(65),
        splits_s: vec![pb::PhaseSplit { phase: 2, split_s: 40.0 }, pb::PhaseSplit { phase: 99, split_s: 40.0 }],
        coordinated: vec![2, 2],
        ..plan(80.0, [50.0, 30.0])
    };
    let bad = c.apply_timing_plan(authed(apply(five), OPERATOR)).await.unwrap_err();
    assert_eq!(
        fields(&bad),
        ["plan.number", "plan.mode", "plan.name", "plan.splits_s[1].phase", "plan.coordinated[1]"],
        "{}",
        bad.message()
    );
    assert!(bad.message().starts_with("timing plan rejected (5 errors): plan.number:"), "{}", bad.message());

    let ok =
        c.apply_timing_plan(authed(apply(plan(80.0, [50.0, 30.0])), OPERATOR)).await.expect("valid plan").into_inner();
    assert_eq!((ok.config_version, ok.plan_number), (2, 2));
    assert_eq!(ok.saved_version, 0, "no controllers directory: changes live in memory");
    let listed = c.list_versions(authed(pb::ListVersionsRequest { intersection_id: ID.into() }, OPERATOR)).await;
    assert_eq!(listed.unwrap_err().code(), Code::FailedPrecondition, "nothing saved, nothing to list");
    let stale = pb::ApplyTimingPlanRequest { expected_version: 1, ..apply(plan(80.0, [50.0, 30.0])) };
    assert_eq!(c.apply_timing_plan(authed(stale, OPERATOR)).await.unwrap_err().code(), Code::FailedPrecondition);
    let s = wait_state(&mut w, "plan 2 at 80 s in force", |s| s.plan_number == 2 && s.cycle_ms == 80_000).await;
    assert_eq!((s.config_version, s.config_version_in_force), (2, 2), "version 2 staged and now in force");

    // Coordination: a new cycle with the splits scaled, and a reference.
    let coord = pb::SetCoordinationRequest {
        intersection_id: ID.into(),
        plan_number: 0,
        cycle_s: 90.0,
        offset_s: 20.0,
        splits_s: vec![],
        reference_unix_ms: 1_767_225_600_000,
        activate: false,
        expected_version: 0,
    };
    let bad_offset =
        c.set_coordination(authed(pb::SetCoordinationRequest { offset_s: 95.0, ..coord.clone() }, OPERATOR));
    assert_eq!(fields(&bad_offset.await.unwrap_err()), ["offset_s"]);
    let far = c.set_coordination(authed(
        pb::SetCoordinationRequest { reference_unix_ms: u64::MAX, ..coord.clone() },
        OPERATOR,
    ));
    assert_eq!(fields(&far.await.unwrap_err()), ["reference_unix_ms"]);
    // Every fault at once.
    let all = c.set_coordination(authed(
        pb::SetCoordinationRequest { reference_unix_ms: u64::MAX, offset_s: 95.0, ..coord.clone() },
        OPERATOR,
    ));
    assert_eq!(fields(&all.await.unwrap_err()), ["reference_unix_ms", "offset_s"]);
    let done = c.set_coordination(authed(coord, OPERATOR)).await.expect("coordination").into_inner();
    assert_eq!(done.config_version, 3);
    let s = wait_state(&mut w, "90 s cycle", |s| s.cycle_ms == 90_000).await;
    assert_eq!(s.config_version_in_force, 3, "the 90 s cycle is version 3");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_from_a_sequence_number_and_lag_is_reported() {
    // The smallest history, so it wraps within the test.
    let h = daemon(grpc_config(), 1000).await;
    let mut w = WatchClient::new(channel(&h).await);
    let request = |from_seq| {
        authed(pb::StreamEventsRequest { from_seq, intersection_ids: vec![ID.into()], exclude_audit: true }, VIEWER)
    };
    let mut stream = w.stream_events(request(1)).await.expect("events").into_inner();
    let mut last = 0;
    for _ in 0..20 {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("event")
            .expect("ok")
            .expect("open");
        let Some(pb::stream_events_response::Item::Event(e)) = msg.item else { panic!("no lag yet") };
        assert!(e.seq > last, "increasing");
        last = e.seq;
        assert!(matches!(e.kind, Some(pb::event_record::Kind::Indiana(_))));
    }
    drop(stream);
    // Resume exactly after the last one received.
    let mut resumed = w.stream_events(request(last + 1)).await.expect("resume").into_inner();
    let msg = resumed.message().await.expect("ok").expect("open");
    let Some(pb::stream_events_response::Item::Event(e)) = msg.item else { panic!("an event") };
    assert_eq!(e.seq, last + 1);
    drop(resumed);

    // Wait until seq 1 is evicted, then ask for it: told what was lost.
    for _ in 0..600 {
        let probe = w.stream_events(request(0)).await.expect("from now").into_inner();
        drop(probe);
        let mut s = w.stream_events(request(1)).await.expect("from 1").into_inner();
        let first = s.message().await.expect("ok").expect("open");
        if let Some(pb::stream_events_response::Item::Lagged(l)) = first.item {
            assert_eq!(l.first_missed_seq, 1);
            assert!(l.resume_seq > 1);
            let next = s.message().await.expect("ok").expect("open");
            let Some(pb::stream_events_response::Item::Event(e)) = next.item else { panic!("events go on") };
            assert!(e.seq >= l.resume_seq);
            let ahead = w.stream_events(request(u64::MAX / 2)).await.unwrap_err();
            assert_eq!(ahead.code(), Code::OutOfRange);
            h.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the journal never wrapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_presence_reaches_the_detector() {
    let h = daemon(grpc_config(), 100_000).await;
    let ch = channel(&h).await;
    let mut w = WatchClient::new(ch.clone());
    let mut i = IngestClient::new(ch);
    let frame = |presence| pb::DetectionFrame {
        intersection_id: ID.into(),
        zones: vec![pb::ZoneDetection { zone_id: "oak-eb".into(), presence, count: Some(1), queue: Some(4) }],
    };
    // A viewer may not push.
    let denied = i.push_detections(authed(tokio_stream::iter(vec![frame(true)]), VIEWER)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // An unknown zone is named.
    let unknown = pb::DetectionFrame {
        intersection_id: ID.into(),
        zones: vec![pb::ZoneDetection { zone_id: "nope".into(), presence: true, count: None, queue: None }],
    };
    let bad = i.push_detections(authed(tokio_stream::iter(vec![unknown]), CAMERA)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("zones[0].zone_id"), "{}", bad.message());
    // So is an implausible queue.
    let huge = pb::DetectionFrame {
        intersection_id: ID.into(),
        zones: vec![pb::ZoneDetection { zone_id: "oak-eb".into(), presence: true, count: None, queue: Some(70_000) }],
    };
    let bad = i.push_detections(authed(tokio_stream::iter(vec![huge]), CAMERA)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("zones[0].queue"), "{}", bad.message());
    // And an implausible count.
    let flood = pb::DetectionFrame {
        intersection_id: ID.into(),
        zones: vec![pb::ZoneDetection { zone_id: "oak-eb".into(), presence: true, count: Some(101), queue: None }],
    };
    let bad = i.push_detections(authed(tokio_stream::iter(vec![flood]), CAMERA)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("zones[0].count"), "{}", bad.message());
    // And a zone reported twice in one frame (its vehicles would count twice).
    let twice = pb::DetectionFrame { zones: [frame(true).zones, frame(true).zones].concat(), ..frame(true) };
    let bad = i.push_detections(authed(tokio_stream::iter(vec![twice]), CAMERA)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("zones[1].zone_id: zone \"oak-eb\" is reported twice"), "{}", bad.message());
    // Caller-chosen text is echoed 64 characters at most.
    let long = pb::DetectionFrame {
        intersection_id: ID.into(),
        zones: vec![pb::ZoneDetection { zone_id: "z".repeat(100_000), presence: true, count: None, queue: None }],
    };
    let bad = i.push_detections(authed(tokio_stream::iter(vec![long]), CAMERA)).await.unwrap_err();
    assert!(bad.message().len() < 200, "{} characters echoed", bad.message().len());
    let missing = w.get_state(authed(pb::GetStateRequest { intersection_id: "x".repeat(100_000) }, VIEWER)).await;
    let missing = missing.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().len() < 200, "{} characters echoed", missing.message().len());
    // An intersection listed twice would get every update twice.
    let twice = pb::WatchStateRequest { intersection_ids: vec![ID.into(), ID.into()], min_interval_ms: 0 };
    let bad = w.watch_state(authed(twice, VIEWER)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("intersection_ids[1]"), "{}", bad.message());

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut push = i.clone();
    let call = tokio::spawn(async move {
        push.push_detections(authed(tokio_stream::wrappers::ReceiverStream::new(rx), CAMERA)).await
    });
    // A camera reports every 50 ms while the vehicle is there (the daemon
    // drops a zone not reported for 2 simulated seconds: 0.1 s at the
    // harness's 20 times real time).
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let feeder = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !*stopped.borrow_and_update() {
                tx.send(frame(true)).await.expect("send");
                sent += 1;
                let _ = tokio::time::timeout(std::time::Duration::from_millis(50), stopped.changed()).await;
            }
            sent
        })
    };
    let seen = wait_state(&mut w, "camera presence on channel 3", |s| {
        s.detectors.iter().any(|d| d.channel == 3 && d.presence)
    })
    .await;
    assert!(seen.detectors.iter().any(|d| d.channel == 3 && d.volume >= 1));
    // The zone's queue is its detector's phase's queue.
    let phase = 4; // detector 3 calls phase 4 (Oak EB)
    wait_state(&mut w, "camera queue on the phase", |s| {
        s.phases.iter().any(|p| p.number == phase && p.queue == Some(4))
    })
    .await;
    stop.send(true).expect("feeder running");
    let present_frames = feeder.await.expect("feeder");
    tx.send(frame(false)).await.expect("send");
    drop(tx);
    let summary = call.await.expect("task").expect("stream ok").into_inner();
    assert_eq!(summary.frames, present_frames + 1);
    wait_state(&mut w, "camera presence cleared", |s| s.detectors.iter().any(|d| d.channel == 3 && !d.presence)).await;
    h.stop().await;
}

/// A CA, a server certificate for localhost and a client certificate.
/// A test CA, a server certificate for `localhost` and a client's.
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    client_cert: String,
    client_key: String,
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names).expect("params").signed_by(&key, &ca).expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["tmc-client".into()]);
    Pki { ca: ca.pem(), server_cert, server_key, client_cert, client_key }
}

async fn tls_channel(h: &Harness, pki: &Pki, client_cert: bool) -> Result<Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca)).domain_name("localhost");
    if client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    Channel::from_shared(format!("https://localhost:{}", h.addr.port())).expect("url").tls_config(tls)?.connect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_optional_and_required_client_certificates() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write pem");
        p
    };
    for require in [false, true] {
        let files = greenwave::config::grpc::TlsFiles {
            cert: write("server.pem", &pki.server_cert),
            key: write("server.key", &pki.server_key),
            client_ca: Some(write("ca.pem", &pki.ca)),
            require_client_cert: require,
        };
        let h = daemon(GrpcConfig { tls: Some(files), ..grpc_config() }, 100_000).await;
        // With a client certificate: always in.
        let mut w = WatchClient::new(tls_channel(&h, &pki, true).await.expect("mutual TLS"));
        let list = w.list_intersections(authed(pb::ListIntersectionsRequest {}, VIEWER)).await.expect("list");
        assert_eq!(list.into_inner().intersections.len(), 1);
        // Without: in only when client certificates are optional.
        let without = match tls_channel(&h, &pki, false).await {
            Ok(ch) => {
                WatchClient::new(ch).list_intersections(authed(pb::ListIntersectionsRequest {}, VIEWER)).await.is_ok()
            }
            Err(_) => false,
        };
        assert_eq!(without, !require, "require_client_cert = {require}");
        // Plaintext against a TLS port fails.
        let plain = Channel::from_shared(h.url()).expect("url").connect().await;
        if let Ok(ch) = plain {
            assert!(
                WatchClient::new(ch).list_intersections(authed(pb::ListIntersectionsRequest {}, VIEWER)).await.is_err()
            );
        }
        h.stop().await;
    }
}

/// `[[grpc.client_cert]]`: calls over a connection that presented a
/// scoped certificate reach only its intersections, whatever the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_narrows_what_its_calls_reach() {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write pem");
        p
    };
    let der = CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).expect("client certificate");
    let sha256: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &der).as_ref().try_into().expect("32 bytes");
    let files = greenwave::config::grpc::TlsFiles {
        cert: write("server.pem", &pki.server_cert),
        key: write("server.key", &pki.server_key),
        client_ca: Some(write("ca.pem", &pki.ca)),
        require_client_cert: false,
    };
    let scoped = greenwave::config::grpc::ClientCertEntry {
        name: "east-tmc".into(),
        sha256,
        intersections: vec!["river-rd-and-mill-st".into()],
    };
    let h = daemon(GrpcConfig { tls: Some(files), client_certs: vec![scoped], ..grpc_config() }, 100_000).await;
    let state = |ch: Channel| async move {
        WatchClient::new(ch).get_state(authed(pb::GetStateRequest { intersection_id: ID.into() }, OPERATOR)).await
    };
    let with_cert = tls_channel(&h, &pki, true).await.expect("mutual TLS");
    let denied = state(with_cert.clone()).await.expect_err("out of the certificate's scope");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let listed = WatchClient::new(with_cert)
        .list_intersections(authed(pb::ListIntersectionsRequest {}, OPERATOR))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.intersections.is_empty(), "lists only what it reaches: {listed:?}");
    // The same token without the certificate reaches everything.
    assert!(state(tls_channel(&h, &pki, false).await.expect("TLS")).await.is_ok());
    h.stop().await;
}

/// Certificates renewed in place reach new connections on a reload
/// (SIGHUP), while a connection made before goes on: nothing restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_material_is_replaced_on_reload_without_closing_connections() {
    let (old, new) = (pki(), pki());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("server.pem"), &old.server_cert).expect("write");
    std::fs::write(path("server.key"), &old.server_key).expect("write");
    let tokens: String = [("wall", "viewer", VIEWER), ("tmc", "operator", OPERATOR), ("cam-1", "camera", CAMERA)]
        .iter()
        .map(|(name, role, token)| {
            format!("[[grpc.token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n", hash_token(token))
        })
        .collect();
    let file = format!(
        "[grpc]\nlisten = \"127.0.0.1:0\"\n[grpc.tls]\ncert = {:?}\nkey = {:?}\n{tokens}",
        path("server.pem"),
        path("server.key")
    );
    std::fs::write(path("greenwave.toml"), file).expect("write");
    let files = greenwave::config::grpc::TlsFiles {
        cert: path("server.pem"),
        key: path("server.key"),
        client_ca: None,
        require_client_cert: false,
    };
    let h = harness::start(Options {
        config_file: Some(path("greenwave.toml")),
        ..options(GrpcConfig { tls: Some(files), ..grpc_config() }, 100_000)
    })
    .await;
    let list = |ch: Channel| async move {
        WatchClient::new(ch).list_intersections(authed(pb::ListIntersectionsRequest {}, VIEWER)).await.is_ok()
    };
    let before = tls_channel(&h, &old, false).await.expect("the old certificate");
    assert!(list(before.clone()).await);

    std::fs::write(path("server.pem"), &new.server_cert).expect("write");
    std::fs::write(path("server.key"), &new.server_key).expect("write");
    let reloader = h.reloader.clone();
    tokio::task::spawn_blocking(move || reloader.reload()).await.expect("reload");

    assert!(list(tls_channel(&h, &new, false).await.expect("the new certificate")).await, "new connections: new CA");
    let stale = match tls_channel(&h, &old, false).await {
        Ok(ch) => list(ch).await,
        Err(_) => false,
    };
    assert!(!stale, "a client trusting only the old CA cannot connect any more");
    assert!(list(before).await, "the connection made before the reload goes on");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    let h = daemon(grpc_config(), 100_000).await;
    let ch = channel(&h).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "greenwave.v1.Control".into() })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(status.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    h.stop().await;
}

/// One token cannot take every stream: past its `max_streams_per_token` it
/// is told so, another token still gets one, and closing a stream frees its
/// place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_cannot_take_every_stream() {
    let mut grpc = grpc_config();
    grpc.limits.max_streams_per_token = 2;
    let h = daemon(grpc, 100_000).await;
    let mut w = WatchClient::new(channel(&h).await);
    let watch = || pb::WatchStateRequest { intersection_ids: vec![], min_interval_ms: 0 };
    let first = w.watch_state(authed(watch(), VIEWER)).await.expect("1st");
    let _second = w.watch_state(authed(watch(), VIEWER)).await.expect("2nd");
    let third = w.watch_state(authed(watch(), VIEWER)).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert!(third.message().contains("max_streams_per_token = 2"), "{}", third.message());
    let _other = w.watch_state(authed(watch(), OPERATOR)).await.expect("another token's stream");
    drop(first);
    // The server sees the first stream close (its task ends) shortly after.
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = w.watch_state(authed(watch(), VIEWER)).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a closed stream's place was never given back");
    h.stop().await;
}
