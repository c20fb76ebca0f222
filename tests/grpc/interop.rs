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

use std::path::Path;
use std::process::Command;

use greenwave::api::auth::hash_token;

use super::{OPERATOR, VIEWER, test_controller};
use crate::daemon::Daemon;

fn python() -> Option<String> {
    let required = std::env::var("GW_TEST_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    let python = std::env::var("GW_TEST_PYTHON").ok();
    let usable = python.as_ref().is_some_and(|py| {
        Command::new(py)
            .args(["-c", "import grpc, grpc_tools, grpc_health.v1, grpc_reflection.v1alpha"])
            .status()
            .is_ok_and(|s| s.success())
    });
    match (usable, required) {
        (true, _) => python,
        (false, true) => panic!(
            "GW_TEST_REQUIRE_INTEROP=1 but GW_TEST_PYTHON ({python:?}) cannot import grpcio, grpcio-tools, \
             grpcio-health-checking and grpcio-reflection (scripts/test.sh installs them into .venv)"
        ),
        (false, false) => {
            eprintln!("notice: Python gRPC peer not available (set GW_TEST_PYTHON); interop test skipped");
            None
        }
    }
}

#[test]
fn python_grpcio_client_interoperates() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(tmp.path().join("controllers")).expect("mkdir");
    let (name, text) = test_controller();
    // A short start-up, so the test spends its time on the API.
    let text = text.replace("flash_s = 6.0", "flash_s = 2.0").replace("all_red_s = 4.0", "all_red_s = 2.0");
    std::fs::write(tmp.path().join("controllers").join(name), text).expect("write controller");
    let config = format!(
        "view = false\ntime_zone = \"UTC\"\n\n[grpc]\nanonymous = \"none\"\n\n\
         [[grpc.token]]\nname = \"wall\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\n\
         [[grpc.token]]\nname = \"tmc\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
        hash_token(VIEWER),
        hash_token(OPERATOR)
    );
    std::fs::write(tmp.path().join("greenwave.toml"), config).expect("write config");

    // Every check, then what must outlast a restart is applied; the
    // daemon stops (SIGTERM) and starts again on the same directory, and
    // only the persistence checks run against it.
    let (stdout, seen) = client_against_daemon(&python, tmp.path(), "apply");
    assert!(stdout.contains("9 passed, 0 failed"), "{stdout}");
    assert!(seen.iter().any(|l| l.contains("control command") && l.contains("PERMISSION_DENIED")), "audit logged");
    let (stdout, seen) = client_against_daemon(&python, tmp.path(), "verify");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
    assert!(seen.iter().any(|l| l.contains("operator settings restored")), "restore logged");
}

/// Starts `greenwave run` in `dir`, runs the Python client with
/// `--persist-step step` against it, stops it with SIGTERM; the client
/// and the daemon must both succeed. Returns the client's output and the
/// daemon's log.
fn client_against_daemon(python: &str, dir: &Path, step: &str) -> (String, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut daemon = Daemon::start(dir, ["--config", "greenwave.toml"]);
    let line = daemon.expect_line("gRPC on ");
    let addr = line.split("gRPC on ").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("an address");

    let output = Command::new(python)
        .arg(root.join("tools/interop/grpc_client.py"))
        .args(["--addr", addr, "--viewer-token", VIEWER, "--operator-token", OPERATOR])
        .arg("--proto-dir")
        .arg(root.join("proto"))
        .arg("--log-dir")
        .arg(dir.join("log"))
        .args(["--persist-step", step])
        .arg("--controllers-dir")
        .arg(dir.join("controllers"))
        .output()
        .expect("run the Python client");
    daemon.signal("-TERM");
    let status = daemon.wait();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    let seen = daemon.log().to_vec();
    assert!(
        output.status.success(),
        "Python client failed ({step}):\n{stdout}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        seen.join("\n")
    );
    assert!(status.success(), "daemon exit {status} ({step})");
    (stdout, seen)
}
