//! What the centre sends, lasts (issue #15, item 5): a daemon running a
//! controllers directory saves every accepted change to the controller file
//! and its versions before staging it, runs it again after a restart or
//! SIGHUP, lists and rolls back versions, and refuses a change it cannot
//! save without applying it (a write error: UNAVAILABLE; a full disk, the
//! real binary on a full tmpfs: RESOURCE_EXHAUSTED).

use std::path::Path;

use greenwave::api::pb;
use greenwave::api::pb::control_client::ControlClient;
use greenwave::api::pb::watch_client::WatchClient;
use tonic::Code;
use tonic::transport::Channel;

use super::harness::{self, Harness, Options};
use super::{ID, OPERATOR, VIEWER, authed, channel, grpc_config, options, wait_state};

async fn in_dir(dir: &Path) -> Harness {
    harness::start(Options { dir: Some(dir.to_path_buf()), ..options(grpc_config(), 10_000) }).await
}

async fn clients(h: &Harness) -> (ControlClient<Channel>, WatchClient<Channel>) {
    let ch = channel(h).await;
    (ControlClient::new(ch.clone()), WatchClient::new(ch))
}

/// Plan 2 retimed to an 80 s cycle, and run.
fn plan_2_at_80_s() -> pb::ApplyTimingPlanRequest {
    pb::ApplyTimingPlanRequest {
        intersection_id: ID.into(),
        source: Some(pb::apply_timing_plan_request::Source::Plan(pb::TimingPlan {
            number: 2,
            name: "day, retimed".into(),
            mode: pb::PlanMode::Coordinated as i32,
            cycle_s: 80.0,
            offset_s: 10.0,
            splits_s: vec![pb::PhaseSplit { phase: 2, split_s: 50.0 }, pb::PhaseSplit { phase: 4, split_s: 30.0 }],
            coordinated: vec![2],
            max2: false,
        })),
        activate: true,
        expected_version: 0,
    }
}

fn set_mode(mode: pb::Mode) -> pb::SetModeRequest {
    pb::SetModeRequest { intersection_id: ID.into(), mode: mode as i32 }
}

fn fixed_at(cycle_ms: u64) -> impl Fn(&pb::IntersectionState) -> bool {
    move |s| {
        s.plan_number == 2
            && s.cycle_ms == cycle_ms
            && s.mode == pb::Mode::Fixed as i32
            && s.plan_mode == pb::PlanMode::Fixed as i32
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_centre_applies_outlasts_a_restart_and_a_reload_and_rolls_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("elm-and-oak.toml");
    let h = in_dir(tmp.path()).await;
    let engineers = std::fs::read_to_string(&file).expect("the engineer's file");
    let (mut c, mut w) = clients(&h).await;
    let applied = c.apply_timing_plan(authed(plan_2_at_80_s(), OPERATOR)).await.expect("applied").into_inner();
    assert_eq!(applied.saved_version, 2, "version 1 keeps the engineer's file");
    c.set_mode(authed(set_mode(pb::Mode::Fixed), OPERATOR)).await.expect("fixed");
    wait_state(&mut w, "plan 2 at 80 s, fixed time", fixed_at(80_000)).await;

    // What runs is the controller file, readable and checkable.
    let saved = std::fs::read_to_string(&file).expect("controller file");
    assert!(saved.starts_with("# greenwave-version: 2\n# saved-at: "), "{saved}");
    assert!(saved.contains("# saved-by: tmc (operator)\n# method: greenwave.v1.Control/ApplyTimingPlan\n"), "{saved}");
    let (checked, _) = greenwave::config::load_intersection(&file).expect("greenwave check accepts it");
    assert_eq!(checked.spec.plan(2).map(|p| p.cycle.as_millis()), Some(80_000));
    h.stop().await;

    // A restart runs what was applied: the plan, its selection and the mode.
    let h = in_dir(tmp.path()).await;
    let (mut c, mut w) = clients(&h).await;
    wait_state(&mut w, "plan 2 at 80 s, fixed time, after the restart", fixed_at(80_000)).await;
    // So does a reload (SIGHUP) of the directory.
    h.reloader.reload();
    wait_state(&mut w, "the reload in force", |s| s.config_version_in_force == 2 && fixed_at(80_000)(s)).await;

    let listed = c
        .list_versions(authed(pb::ListVersionsRequest { intersection_id: ID.into() }, OPERATOR))
        .await
        .expect("list")
        .into_inner();
    let rows: Vec<(u64, &str, &str, bool)> =
        listed.versions.iter().map(|v| (v.number, v.saved_by.as_str(), v.method.as_str(), v.current)).collect();
    assert_eq!(rows, [(1, "file", "file", false), (2, "tmc (operator)", "greenwave.v1.Control/ApplyTimingPlan", true)]);
    assert!(listed.versions[0].what.ends_with("elm-and-oak.toml as found on disk"), "{:?}", listed.versions[0]);
    assert_eq!(listed.versions[1].what, "plan 2 (activate)");
    let viewer = c.list_versions(authed(pb::ListVersionsRequest { intersection_id: ID.into() }, VIEWER)).await;
    assert_eq!(viewer.unwrap_err().code(), Code::PermissionDenied, "operators only");

    // Back to the engineer's file: a new version, the engineer's text.
    let rollback = |number| pb::RollbackVersionRequest { intersection_id: ID.into(), number, expected_version: 0 };
    let back = c.rollback_version(authed(rollback(1), OPERATOR)).await.expect("rollback").into_inner();
    assert_eq!((back.saved_version, back.plan_number), (3, 2));
    wait_state(&mut w, "plan 2 at its own 70 s", fixed_at(70_000)).await;
    let now = std::fs::read_to_string(&file).expect("controller file");
    assert!(now.ends_with(&engineers) && now.contains("# what: rollback to version 1\n"), "{now}");
    let gone = c.rollback_version(authed(rollback(9), OPERATOR)).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{}", gone.message());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_be_saved_is_refused_and_not_applied() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let h = in_dir(tmp.path()).await;
    let (mut c, mut w) = clients(&h).await;
    wait_state(&mut w, "run", |s| s.unit_state == pb::UnitState::Run as i32).await;
    let file = tmp.path().join("elm-and-oak.toml");
    let engineers = std::fs::read_to_string(&file).expect("the engineer's file");
    // A file where the versions directory goes: nothing can be saved.
    std::fs::write(tmp.path().join("versions"), "").expect("block the versions directory");

    let refused = c.apply_timing_plan(authed(plan_2_at_80_s(), OPERATOR)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().starts_with("not applied: the change could not be saved (creating "),
        "{}",
        refused.message()
    );
    let refused = c.set_mode(authed(set_mode(pb::Mode::Flash), OPERATOR)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());

    // What runs is unchanged, and so is the file.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let s = wait_state(&mut w, "the state", |_| true).await;
    assert_eq!((s.config_version, s.plan_number, s.mode), (1, 1, pb::Mode::Scheduled as i32), "{s:?}");
    assert_eq!(s.unit_state, pb::UnitState::Run as i32);
    assert_eq!(std::fs::read_to_string(&file).expect("controller file"), engineers);
    h.stop().await;
}

/// Run inside a user and mount namespace (no root needed): the controllers
/// directory is a tmpfs filled to the last byte before the daemon starts.
/// The daemon runs long enough for the test's calls on a busy machine.
const FULL_DISK: &str = r#"
set -u
cd "$DIR"
mount -t tmpfs -o size=64k greenwave-full-controllers controllers || exit 90
cp elm-and-oak.toml controllers/
dd if=/dev/zero of=controllers/filler bs=1k 2>/dev/null
RUST_LOG=info NO_COLOR=1 "$GW" run --no-view --grpc-listen 127.0.0.1:0 --config greenwave.toml \
    --controllers controllers --duration-s 25 >/dev/null 2>daemon.err
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_the_change_with_resource_exhausted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::create_dir(dir.join("controllers")).expect("mkdir");
    let (_, text) = super::test_controller();
    std::fs::write(dir.join("elm-and-oak.toml"), text).expect("controller");
    let config = format!(
        "view = false\ntime_zone = \"UTC\"\n\n[grpc]\nanonymous = \"none\"\n\n\
         [[grpc.token]]\nname = \"wall\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\n\
         [[grpc.token]]\nname = \"tmc\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
        greenwave::api::auth::hash_token(VIEWER),
        greenwave::api::auth::hash_token(OPERATOR)
    );
    std::fs::write(dir.join("greenwave.toml"), config).expect("config");
    let mut namespace = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--fork", "sh", "-c", FULL_DISK])
        .env("DIR", dir)
        .env("GW", env!("CARGO_BIN_EXE_greenwave"))
        .spawn()
        .expect("unshare (util-linux) runs");
    let log = || std::fs::read_to_string(dir.join("daemon.err")).unwrap_or_default();
    let mut addr = None;
    for _ in 0..100 {
        addr = log().lines().find_map(|l| l.split("gRPC on ").nth(1)?.split_whitespace().next().map(str::to_owned));
        if addr.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let addr =
        addr.unwrap_or_else(|| panic!("no gRPC address (exit 90: no tmpfs in a user namespace); log:\n{}", log()));
    let ch = Channel::from_shared(format!("http://{addr}")).expect("url").connect().await.expect("connect");
    let (mut c, mut w) = (ControlClient::new(ch.clone()), WatchClient::new(ch));

    let refused = c.apply_timing_plan(authed(plan_2_at_80_s(), OPERATOR)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{}", refused.message());
    assert!(refused.message().starts_with("not applied: the change could not be saved"), "{}", refused.message());
    // The first state may come after the refusal on a busy machine.
    let state = wait_state(&mut w, "a state", |_| true).await;
    assert_eq!((state.config_version, state.plan_number), (1, 1), "nothing applied");
    let status = namespace.wait().expect("the namespace ends with the daemon");
    assert!(status.success(), "{status}; log:\n{}", log());
}
