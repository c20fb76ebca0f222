//! What a control centre reads in IntersectionState during daily
//! operation (issue #15.4): coordination status, preemption stages with
//! the exit phases served first, transit priority requests, and flash
//! shown as flash.

use std::time::Duration;

use greenwave::api::pb;
use greenwave::api::pb::control_client::ControlClient;
use greenwave::api::pb::watch_client::WatchClient;
use tonic::transport::Channel;

use super::harness::{self, Options};
use super::{ID, OPERATOR, VIEWER, authed, channel, grpc_config, options, test_controller, wait_state};

fn coordination(s: &pb::IntersectionState) -> pb::CoordinationStatus {
    s.coordination.expect("every state carries its coordination status")
}

fn in_step(s: &pb::IntersectionState) -> bool {
    coordination(s).state == pb::CoordinationState::InStep as i32
}

fn shows(s: &pb::IntersectionState, phase: u32, indication: pb::Indication) -> bool {
    s.phases.iter().any(|p| p.number == phase && p.vehicle == indication as i32)
}

async fn state(w: &mut WatchClient<Channel>) -> pb::IntersectionState {
    w.get_state(authed(pb::GetStateRequest { intersection_id: ID.into() }, VIEWER)).await.expect("state").into_inner()
}

/// elm-and-oak coordinated on Elm (phase 2), its ambulance preemption
/// dwelling on Elm and exiting to Oak (phase 4), as Broadway's fire
/// station exits to its side street: the state shows the plan in step,
/// the preemption's stages (exit included, with the input off), Oak green
/// as the first green after it, the plan back in step, a priority request
/// waiting then granted then served, and an operator flash as mode FLASH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_shows_coordination_preemption_priority_and_flash() {
    let (name, text) = test_controller();
    let text = text.replace("dwell_phases = [2]", "dwell_phases = [2]\nexit_phases = [4]");
    let h = harness::start(Options { controllers: vec![(name, text)], ..options(grpc_config(), 100_000) }).await;
    let ch = channel(&h).await;
    let mut c = ControlClient::new(ch.clone());
    let mut w = WatchClient::new(ch);
    let running = wait_state(&mut w, "run", |s| s.unit_state == pb::UnitState::Run as i32).await;
    assert_ne!(running.mode, pb::Mode::Flash as i32, "running is not flash");
    assert!(running.preemption.is_none() && running.priority_requests.is_empty(), "{running:?}");

    // Coordination: plan 2 at a 70 s cycle, offset 30 s.
    let coord = pb::SetCoordinationRequest {
        intersection_id: ID.into(),
        plan_number: 2,
        cycle_s: 70.0,
        offset_s: 30.0,
        splits_s: vec![],
        reference_unix_ms: 0,
        activate: true,
        expected_version: 0,
    };
    let version = c.set_coordination(authed(coord, OPERATOR)).await.expect("coordination").into_inner().config_version;
    let s = wait_state(&mut w, "plan 2 in step", |s| {
        s.config_version_in_force == version && s.plan_number == 2 && in_step(s)
    })
    .await;
    let status = coordination(&s);
    assert_eq!((status.cycle_s, status.offset_s), (70.0, 30.0), "{status:?}");
    assert!((0.0..70.0).contains(&status.local_cycle_position_s), "{status:?}");
    assert_eq!(Some((status.local_cycle_position_s * 1000.0).round() as u64), s.cycle_position_ms);

    // Preemption: entry, then dwell on Elm; the cycle is not kept meanwhile.
    let preempt = |active| pb::PreemptionRequest { intersection_id: ID.into(), input: 1, active };
    c.request_preemption(authed(preempt(true), OPERATOR)).await.expect("preempt");
    let dwell =
        wait_state(&mut w, "dwell", |s| s.preemption.is_some_and(|p| p.stage == pb::PreemptionStage::Dwell as i32))
            .await;
    let p = dwell.preemption.expect("preempted");
    assert!(p.input == 1 && p.called && p.called_at_unix_ms <= dwell.at_unix_ms, "{p:?}");
    assert!(shows(&dwell, 2, pb::Indication::Green), "dwell on Elm: {dwell:?}");
    assert_eq!(coordination(&dwell).state, pb::CoordinationState::Transitioning as i32);

    // Release: the exit stage (input off) while Elm clears (5.5 s, about
    // 0.3 s of real time at 20×: read every 10 ms), then Oak first.
    c.request_preemption(authed(preempt(false), OPERATOR)).await.expect("release");
    let mut exit_seen = false;
    let after = loop {
        let s = state(&mut w).await;
        match s.preemption {
            Some(p) if p.stage == pb::PreemptionStage::Exit as i32 => {
                assert!(!p.called, "{p:?}");
                exit_seen = true;
            }
            Some(_) => {}
            None => break s,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(exit_seen, "the exit stage shows");
    assert!(shows(&after, 4, pb::Indication::Green), "Oak is served first after the preemption: {after:?}");
    wait_state(&mut w, "back in step", in_step).await;

    // Priority for Oak: waiting while Elm is green, granted as Oak turns
    // green, served (checked out) as Oak's green ends.
    let priority = pb::PriorityRequest { intersection_id: ID.into(), phase: 4, active: true };
    c.request_priority(authed(priority, OPERATOR)).await.expect("check in");
    let requests = |s: &pb::IntersectionState| -> Vec<(u32, bool)> {
        s.priority_requests.iter().map(|r| (r.phase, r.granted)).collect()
    };
    let checked_in = requests(&wait_state(&mut w, "checked in", |s| !s.priority_requests.is_empty()).await);
    assert!(checked_in == [(4, false)] || checked_in == [(4, true)], "{checked_in:?}");
    wait_state(&mut w, "granted on green", |s| requests(s) == [(4, true)]).await;
    wait_state(&mut w, "served", |s| s.priority_requests.is_empty()).await;

    // Flash: the operator's, shown as mode FLASH with its reason.
    let flash = pb::SetModeRequest { intersection_id: ID.into(), mode: pb::Mode::Flash as i32 };
    c.set_mode(authed(flash, OPERATOR)).await.expect("flash");
    let s = wait_state(&mut w, "flash", |s| s.unit_state == pb::UnitState::Flash as i32).await;
    assert_eq!((s.mode, s.flash_reason), (pb::Mode::Flash as i32, pb::FlashReason::Operator as i32));
    h.stop().await;
}
