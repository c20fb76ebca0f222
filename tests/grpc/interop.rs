//! Interop with an independent client: `tools/interop/grpc_client.py`
//! (Python grpcio, grpcio-reflection, grpcio-health-checking) against the
//! real `greenwave run` binary, configured with hashed tokens in
//! greenwave.toml and `--grpc-listen 127.0.0.1:0`, stopped and started
//! again on the same controllers directory to check that what the centre
//! applied outlasts the restart.
//!
//! The Python peer comes from `GW_TEST_PYTHON` (scripts/test.sh sets up
//! `.venv`). Without it the test prints a notice and passes, unless
//! `GW_TEST_REQUIRE_INTEROP=1`, when it fails.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use greenwave::api::auth::hash_token;

use super::{OPERATOR, VIEWER, test_controller};
use crate::daemon::Daemon;

fn python() -> Option<String> {
    peer_python(
        "import grpc, grpc_tools, grpc_health.v1, grpc_reflection.v1alpha",
        "grpcio, grpcio-tools, grpcio-health-checking and grpcio-reflection",
    )
}

/// `GW_TEST_PYTHON` if it can run `imports` (naming the packages as
/// `packages` for the message). Without it: `None` and a notice, or a
/// failure under `GW_TEST_REQUIRE_INTEROP=1`.
pub(crate) fn peer_python(imports: &str, packages: &str) -> Option<String> {
    let required = std::env::var("GW_TEST_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    let python = std::env::var("GW_TEST_PYTHON").ok();
    let usable =
        python.as_ref().is_some_and(|py| Command::new(py).args(["-c", imports]).status().is_ok_and(|s| s.success()));
    match (usable, required) {
        (true, _) => python,
        (false, true) => panic!(
            "GW_TEST_REQUIRE_INTEROP=1 but GW_TEST_PYTHON ({python:?}) cannot import {packages} \
             (scripts/test.sh installs them into .venv)"
        ),
        (false, false) => {
            eprintln!("notice: Python peer with {packages} not available (set GW_TEST_PYTHON); interop test skipped");
            None
        }
    }
}

/// Writes `controllers` (file name, TOML) and `greenwave.toml` into `dir`
/// for [`start_daemon`].
pub(crate) fn prepare(dir: &Path, controllers: &[(String, String)], config: &str) {
    std::fs::create_dir(dir.join("controllers")).expect("mkdir");
    for (name, text) in controllers {
        // A short start-up, so the test spends its time on the API.
        let text = text.replace("flash_s = 6.0", "flash_s = 2.0").replace("all_red_s = 4.0", "all_red_s = 2.0");
        std::fs::write(dir.join("controllers").join(name), text).expect("write controller");
    }
    std::fs::write(dir.join("greenwave.toml"), config).expect("write config");
}

/// `greenwave run` in `dir`, and the address it serves gRPC on.
fn start_daemon(dir: &Path) -> (Daemon, String) {
    let mut daemon = Daemon::start(dir, ["--config", "greenwave.toml"]);
    let line = daemon.expect_line("gRPC on ");
    let addr = line.split("gRPC on ").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("an address");
    (daemon, addr.to_owned())
}

/// A `[[grpc.token]]` entry.
pub(crate) fn token_entry(name: &str, role: &str, token: &str, extra: &str) -> String {
    format!("\n[[grpc.token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n{extra}", hash_token(token))
}

/// Runs `client` (a script in tools/interop) with `args` against the
/// daemon, stops the daemon with SIGTERM; the client and the daemon must
/// both succeed. Returns the client's output and the daemon's log.
fn run_client(python: &str, mut daemon: Daemon, client: &str, args: &[&OsStr]) -> (String, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python)
        .arg(root.join("tools/interop").join(client))
        .args(args)
        .arg("--proto-dir")
        .arg(root.join("proto"))
        .output()
        .expect("run the Python client");
    daemon.signal("-TERM");
    let status = daemon.wait();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    let seen = daemon.log().to_vec();
    assert!(
        output.status.success(),
        "{client} failed:\n{stdout}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        seen.join("\n")
    );
    assert!(status.success(), "daemon exit {status} ({client})");
    (stdout, seen)
}

#[test]
fn python_grpcio_client_interoperates() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "view = false\ntime_zone = \"UTC\"\n\n[grpc]\nanonymous = \"none\"\n{}{}",
        token_entry("wall", "viewer", VIEWER, ""),
        token_entry("tmc", "operator", OPERATOR, "")
    );
    prepare(tmp.path(), &[test_controller()], &config);
    let dir = tmp.path();
    let (log, controllers) = (dir.join("log"), dir.join("controllers"));
    // Every check, then what must outlast a restart is applied; the
    // daemon stops (SIGTERM) and starts again on the same directory, and
    // only the persistence checks run against it.
    let client = |step: &str| {
        let (daemon, addr) = start_daemon(dir);
        let mut args: Vec<&OsStr> =
            ["--addr", &addr, "--viewer-token", VIEWER, "--operator-token", OPERATOR, "--persist-step", step]
                .map(OsStr::new)
                .to_vec();
        args.extend([
            OsStr::new("--log-dir"),
            log.as_os_str(),
            OsStr::new("--controllers-dir"),
            controllers.as_os_str(),
        ]);
        run_client(&python, daemon, "grpc_client.py", &args)
    };
    let (stdout, seen) = client("apply");
    assert!(stdout.contains("9 passed, 0 failed"), "{stdout}");
    assert!(seen.iter().any(|l| l.contains("audit") && l.contains("PERMISSION_DENIED")), "audit logged");
    let (stdout, seen) = client("verify");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
    assert!(seen.iter().any(|l| l.contains("operator settings restored")), "restore logged");
}

/// `tools/interop/grpc_hostile.py`: a wrong-token flood, a malformed
/// message, 300 streams against a cap of 256, a silent watcher, a scoped
/// token, a token rotated by SIGHUP; two intersections, a history of 5,000
/// events (fewer than the flood's calls, so auditing each would evict the
/// real events).
#[test]
fn python_grpcio_hostile_callers_and_daily_operation() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    const NEW_OPERATOR: &str = "rotated-operator-token-0123456789abcdef0123456789";
    const SCOPED: &str = "scoped-operator-token-0123456789abcdef0123456789ab";
    let config = format!(
        "view = false\ntime_zone = \"UTC\"\n\n[grpc]\nanonymous = \"none\"\n{}{}{}\n\
         [grpc.groups]\nnorth = [\"elm-and-oak\"]\n\n\
         [grpc.limits]\nmax_streams = 256\nmax_streams_per_token = 256\nrequests_per_s = 10000\nburst = 10000\n\
         event_history = 5000\n",
        token_entry("wall", "viewer", VIEWER, ""),
        token_entry("tmc", "operator", OPERATOR, ""),
        token_entry("north-desk", "operator", SCOPED, "groups = [\"north\"]\n"),
    );
    let (a_name, a_text) = test_controller();
    let b_text = a_text.replace("id = \"elm-and-oak\"", "id = \"oak-and-pine\"");
    prepare(tmp.path(), &[(a_name, a_text), ("oak-and-pine.toml".into(), b_text)], &config);
    let (daemon, addr) = start_daemon(tmp.path());
    let (pid, config) = (daemon.pid().to_string(), tmp.path().join("greenwave.toml"));
    let mut args: Vec<&OsStr> = [
        "--addr",
        &addr,
        "--pid",
        &pid,
        "--viewer-token",
        VIEWER,
        "--operator-token",
        OPERATOR,
        "--new-operator-token",
        NEW_OPERATOR,
        "--scoped-token",
        SCOPED,
        "--config",
    ]
    .map(OsStr::new)
    .to_vec();
    args.push(config.as_os_str());
    let (stdout, seen) = run_client(&python, daemon, "grpc_hostile.py", &args);
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
    // Thousands of refused calls, a few log lines.
    let refused = seen.iter().filter(|l| l.contains("refused")).count();
    assert!(refused <= 20, "{refused} refusal lines:\n{}", seen.join("\n"));
    assert!(seen.iter().any(|l| l.contains("[grpc] access reloaded") && l.contains("token \"tmc\" replaced")));
}
