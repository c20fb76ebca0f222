//! The emergency route green wave over gRPC (issue #18.2): a route armed
//! a lead time ahead of the vehicle on the control time, released behind
//! it, its progress reported; bad requests refused with every reason;
//! cancel; roles.

use std::time::Duration;

use greenwave::api::pb;
use greenwave::api::pb::control_client::ControlClient;
use greenwave::api::pb::watch_client::WatchClient;
use tonic::Code;
use tonic::transport::Channel;

use super::{ID, OPERATOR, VIEWER, authed, channel, daemon, grpc_config, wait_state};

fn stop(id: &str, input: u32, link_m: f64) -> pb::EmergencyStop {
    pb::EmergencyStop { intersection_id: id.into(), preempt_input: input, link_m, link_travel_s: 0.0 }
}

fn start(route_id: &str, distance_to_first_m: f64, speed_mps: f64) -> pb::StartEmergencyRouteRequest {
    pb::StartEmergencyRouteRequest {
        route_id: route_id.into(),
        stops: vec![stop(ID, 1, 0.0)],
        distance_to_first_m,
        speed_mps,
        lead_s: 20.0,
        ..Default::default()
    }
}

fn stop_state(r: &pb::EmergencyRouteReply) -> pb::EmergencyStopState {
    pb::EmergencyStopState::try_from(r.stops[0].state).expect("a known state")
}

/// Polls GetEmergencyRoute until `check` holds (bounded).
async fn wait_route(
    c: &mut ControlClient<Channel>,
    route_id: &str,
    what: &str,
    check: impl Fn(&pb::EmergencyRouteReply) -> bool,
) -> pb::EmergencyRouteReply {
    for _ in 0..300 {
        let get = pb::EmergencyRouteId { route_id: route_id.into() };
        let r = c.get_emergency_route(authed(get, VIEWER)).await.expect("get route").into_inner();
        if check(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn called(s: &pb::IntersectionState) -> bool {
    s.preemption.is_some_and(|p| p.input == 1 && p.called)
}

/// An ambulance 400 m short of Elm & Oak at 10 m/s, no report after the
/// start: the route waits (ETA 40 s), arms Elm's preempt on its own once
/// the ETA, run down on the control time (20× real time here), falls to
/// the 20 s lead, and the controller dwells on Elm. The vehicle is not
/// assumed past the stop line: it stays armed until reported 10 m past,
/// then it is released, the intersection leaves the preemption and the
/// route is finished. Every arm and release is in the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_arms_ahead_of_the_vehicle_and_releases_behind_it() {
    let h = daemon(grpc_config(), 100_000).await;
    let ch = channel(&h).await;
    let mut c = ControlClient::new(ch.clone());
    let mut w = WatchClient::new(ch);
    wait_state(&mut w, "run", |s| s.unit_state == pb::UnitState::Run as i32).await;

    let started = c.start_emergency_route(authed(start("amb-7", 400.0, 10.0), OPERATOR)).await.expect("start");
    let started = started.into_inner();
    assert_eq!((started.route_id.as_str(), started.position_m, started.finished), ("amb-7", -400.0, false));
    assert!(started.audit_seq > 0);
    assert_eq!(stop_state(&started), pb::EmergencyStopState::Waiting, "{started:?}");
    let eta = started.stops[0].eta_s.expect("an ETA");
    assert!(eta > 20.0 && eta <= 40.0, "40 s away at 10 m/s: {eta}");

    let armed = wait_route(&mut c, "amb-7", "armed", |r| stop_state(r) == pb::EmergencyStopState::Armed).await;
    let eta = armed.stops[0].eta_s.expect("an ETA");
    assert!(eta <= 20.0, "armed at the lead time: {eta}");
    wait_state(&mut w, "dwell on Elm", |s| {
        called(s) && s.preemption.is_some_and(|p| p.stage == pb::PreemptionStage::Dwell as i32)
    })
    .await;
    // Well past the ETA with no report: still armed, ETA zero.
    wait_route(&mut c, "amb-7", "at the stop line", |r| r.stops[0].eta_s == Some(0.0)).await;
    let r = wait_route(&mut c, "amb-7", "still armed", |_| true).await;
    assert_eq!(stop_state(&r), pb::EmergencyStopState::Armed);

    let past = pb::UpdateEmergencyVehicleRequest { route_id: "amb-7".into(), position_m: 15.0, speed_mps: 12.0 };
    let passed = c.update_emergency_vehicle(authed(past, OPERATOR)).await.expect("update").into_inner();
    assert_eq!(stop_state(&passed), pb::EmergencyStopState::Passed, "{passed:?}");
    assert!(passed.finished && passed.stops[0].eta_s.is_none());
    wait_state(&mut w, "preemption over", |s| s.preemption.is_none()).await;

    // The journal from its start: the start, the arm and the release.
    let from_start = pb::StreamEventsRequest { from_seq: 1, intersection_ids: vec![], exclude_audit: false };
    let mut events = w.stream_events(authed(from_start, VIEWER)).await.expect("events").into_inner();
    let mut details = Vec::new();
    while details.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(5), events.message()).await.expect("a record").expect("ok");
        if let Some(pb::stream_events_response::Item::Event(pb::EventRecord {
            kind: Some(pb::event_record::Kind::Audit(a)),
            ..
        })) = msg.expect("open").item
            && a.method.contains("EmergencyRoute")
        {
            details.push(a.detail);
        }
    }
    assert!(details[0].starts_with("route amb-7 started over elm-and-oak (preempt 1)"), "{details:?}");
    assert!(details[1].starts_with("route amb-7: preempt 1 called, vehicle expected in"), "{details:?}");
    assert_eq!(details[2], "route amb-7: preempt 1 released, the vehicle is past");
    h.stop().await;
}

/// A start with every fault at once is refused with each reason; a viewer
/// may watch a route but not start, update or cancel one; a route id in
/// use is refused; a cancel releases an armed preempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_routes_roles_and_cancel() {
    let h = daemon(grpc_config(), 100_000).await;
    let ch = channel(&h).await;
    let mut c = ControlClient::new(ch.clone());
    let mut w = WatchClient::new(ch);
    wait_state(&mut w, "run", |s| s.unit_state == pb::UnitState::Run as i32).await;

    let empty = pb::StartEmergencyRouteRequest { stops: vec![], speed_mps: 10.0, ..Default::default() };
    let err = c.start_emergency_route(authed(empty, OPERATOR)).await.expect_err("no stops");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("stops: list at least one intersection"), "{}", err.message());

    let bad = pb::StartEmergencyRouteRequest {
        stops: vec![stop(ID, 3, 0.0), stop("main-and-1st", 1, 250.0), stop(ID, 1, -5.0)],
        speed_mps: -2.0,
        ..start("", 300.0, 0.0)
    };
    let err = c.start_emergency_route(authed(bad, OPERATOR)).await.expect_err("bad route");
    assert_eq!(err.code(), Code::InvalidArgument);
    let message = err.message();
    for reason in [
        "stops[0].preempt_input: elm-and-oak defines no preempt 3 (its [[preempt]] inputs: 1)",
        "stops[1].intersection_id: no intersection \"main-and-1st\"",
        "stops[2].intersection_id: \"elm-and-oak\" is listed twice",
        "stops[2].link_m: -5 is not a distance in metres",
        "speed_mps: -2 is not a speed",
    ] {
        assert!(message.contains(reason), "{reason:?} in {message}");
    }

    let denied = c.start_emergency_route(authed(start("x", 300.0, 10.0), VIEWER)).await.expect_err("viewer");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // 50 m away at 10 m/s: armed at once.
    let r = c.start_emergency_route(authed(start("", 50.0, 10.0), OPERATOR)).await.expect("start").into_inner();
    assert_eq!((r.route_id.as_str(), stop_state(&r)), ("route-1", pb::EmergencyStopState::Armed));
    wait_state(&mut w, "called", called).await;
    let again = c.start_emergency_route(authed(start("route-1", 50.0, 10.0), OPERATOR)).await.expect_err("in use");
    assert_eq!(again.code(), Code::AlreadyExists);
    let holder = c.start_emergency_route(authed(start("other", 50.0, 10.0), OPERATOR)).await.expect_err("held");
    assert_eq!(holder.code(), Code::FailedPrecondition, "{}", holder.message());

    let id = || pb::EmergencyRouteId { route_id: "route-1".into() };
    let update = pb::UpdateEmergencyVehicleRequest { route_id: "route-1".into(), position_m: 0.0, speed_mps: 99.0 };
    let err = c.update_emergency_vehicle(authed(update, OPERATOR)).await.expect_err("too fast");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("speed_mps: 99 is not a speed"), "{}", err.message());
    assert_eq!(
        c.cancel_emergency_route(authed(id(), VIEWER)).await.expect_err("viewer").code(),
        Code::PermissionDenied
    );
    let cancelled = c.cancel_emergency_route(authed(id(), OPERATOR)).await.expect("cancel").into_inner();
    assert_eq!(stop_state(&cancelled), pb::EmergencyStopState::Released);
    assert!(cancelled.finished);
    wait_state(&mut w, "released", |s| !called(s)).await;
    let missing = pb::EmergencyRouteId { route_id: "nope".into() };
    assert_eq!(c.get_emergency_route(authed(missing, VIEWER)).await.expect_err("unknown").code(), Code::NotFound);
    h.stop().await;
}
