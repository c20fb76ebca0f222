//! Control calls turned away before their handler (no or unknown token,
//! past the rate limit) are audited like the ones the handlers refuse: in
//! the event stream, with who, what and why; a refusal repeated is counted
//! in its first record's burst (src/api/refusals.rs), not recorded again.

use std::time::Duration;

use greenwave::api::pb;
use greenwave::api::pb::control_client::ControlClient;
use greenwave::api::pb::watch_client::WatchClient;
use greenwave::config::grpc::{GrpcConfig, GrpcLimits};
use tonic::Code;

use super::{ID, OPERATOR, VIEWER, authed, channel, daemon, grpc_config};

const SET_MODE: &str = "greenwave.v1.Control/SetMode";
const RESET_MONITOR: &str = "greenwave.v1.Control/ResetMonitor";

/// Reads the event stream until `done` holds for the audit records seen
/// (bounded), and returns them in order.
async fn audits_until(
    events: &mut tonic::Streaming<pb::StreamEventsResponse>,
    done: impl Fn(&[(String, pb::AuditRecord)]) -> bool,
) -> Vec<(String, pb::AuditRecord)> {
    let mut audits = Vec::new();
    while !done(&audits) {
        let msg = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .unwrap_or_else(|_| panic!("more events; audit records so far: {audits:#?}"))
            .expect("ok")
            .expect("open");
        if let Some(pb::stream_events_response::Item::Event(pb::EventRecord {
            intersection_id,
            kind: Some(pb::event_record::Kind::Audit(a)),
            ..
        })) = msg.item
        {
            audits.push((intersection_id, a));
        }
    }
    audits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_calls_rejected_before_the_handler_are_audited_with_their_reason() {
    // One request a second, three at once, per token: the operator runs
    // out within the test, the viewer (two calls) does not.
    let limits = GrpcLimits { requests_per_s: 1, burst: 3, ..GrpcLimits::default() };
    let h = daemon(GrpcConfig { limits, ..grpc_config() }, 100_000).await;
    let ch = channel(&h).await;
    let mut c = ControlClient::new(ch.clone());
    let mut w = WatchClient::new(ch);
    let set_flash = pb::SetModeRequest { intersection_id: ID.into(), mode: pb::Mode::Flash as i32 };

    // Refused by the handler: audited there, as before.
    let denied = c.set_mode(authed(set_flash.clone(), VIEWER)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // Refused before any handler: no token, an unknown token.
    let none = c.set_mode(set_flash.clone()).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    assert!(none.message().contains("missing bearer token"), "{}", none.message());
    let unknown = c.set_mode(authed(set_flash, "not-a-token")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    // Watch rejections still work, and are not audited.
    let watch = w.list_intersections(pb::ListIntersectionsRequest {}).await.unwrap_err();
    assert_eq!(watch.code(), Code::Unauthenticated);
    // The operator asks until the rate limit says no. Each admitted call is
    // refused by the handler (no monitor trip to reset), so changes nothing.
    let reset = || authed(pb::ResetMonitorRequest { intersection_id: ID.into() }, OPERATOR);
    let mut admitted = 0;
    let limited = loop {
        match c.reset_monitor(reset()).await {
            Err(e) if e.code() == Code::FailedPrecondition => admitted += 1,
            Err(e) if e.code() == Code::ResourceExhausted => break e,
            other => panic!("reset monitor: {other:?}"),
        }
        assert!(admitted < 20, "the rate limit never refused a call");
    };
    assert!(limited.message().contains("rate limit"), "{}", limited.message());

    let mut events = w
        .stream_events(authed(
            pb::StreamEventsRequest { from_seq: 1, intersection_ids: vec![ID.into()], exclude_audit: false },
            VIEWER,
        ))
        .await
        .expect("events")
        .into_inner();
    // The calls were made one after another, so the rate-limited one is
    // the last of their records.
    let audits = audits_until(&mut events, |seen| seen.iter().any(|(_, a)| a.result == "RESOURCE_EXHAUSTED")).await;
    let records: Vec<&pb::AuditRecord> = audits.iter().map(|(_, a)| a).collect();
    assert!(audits.iter().all(|(id, _)| id == ID), "{audits:#?}");
    assert!(records.iter().all(|a| a.method.starts_with("greenwave.v1.Control/")), "no Watch records: {records:#?}");

    // In call order: the handler's refusal, the two unauthenticated calls
    // (for different reasons), the first of the operator's admitted calls
    // (the repeats are counted in its burst), the rate limit.
    assert!(admitted > 1, "the operator repeated its refused call");
    assert_eq!(records.len(), 3 + 1 + 1, "{records:#?}");
    assert!(records.iter().all(|a| a.calls == 1), "each the first of its kind: {records:#?}");
    let viewer = records[0];
    assert_eq!(
        (viewer.principal.as_str(), viewer.role.as_str(), viewer.method.as_str(), viewer.result.as_str()),
        ("wall", "viewer", SET_MODE, "PERMISSION_DENIED")
    );
    for (a, reason) in [(records[1], "missing bearer token"), (records[2], "unknown bearer token")] {
        assert_eq!(
            (a.principal.as_str(), a.role.as_str(), a.method.as_str(), a.result.as_str()),
            ("unauthenticated", "none", SET_MODE, "UNAUTHENTICATED"),
            "{a:#?}"
        );
        assert!(a.detail.contains(reason), "{a:#?}");
        assert!(a.peer.starts_with("127.0.0.1:"), "the peer address: {a:#?}");
        assert!(a.request.contains(ID), "the intersection named: {a:#?}");
    }
    let first = records[3];
    assert_eq!(
        (first.principal.as_str(), first.method.as_str(), first.result.as_str()),
        ("tmc", RESET_MONITOR, "FAILED_PRECONDITION")
    );
    let last = records[4];
    assert_eq!(
        (last.principal.as_str(), last.role.as_str(), last.method.as_str(), last.result.as_str()),
        ("tmc", "operator", RESET_MONITOR, "RESOURCE_EXHAUSTED")
    );
    assert!(last.detail.contains("rate limit"), "{last:#?}");
    assert!(last.peer.starts_with("127.0.0.1:"), "{last:#?}");
    h.stop().await;
}
