//! The GB/T 20999-2017 adapter against an independent centre:
//! `tools/interop/gbt20999_client.py` (standard-library Python, written
//! from the survey's framing facts, not from Greenwave's codec) drives the
//! real `greenwave run` binary on `controllers/elm-and-oak.toml`: a read of
//! every implemented data class, a stage-based plan set and centre control
//! that take effect at a barrier, invalid sets refused with the standard's
//! bad-value code, a heartbeat loss that runs the configured fault action,
//! day plan and schedule sets read back, and a heartbeat and a read over
//! the UDP listener. An in-process test checks a viewer centre's sets are
//! refused.
//!
//! The Python peer comes from `GW_TEST_PYTHON`. Without it the test prints
//! a notice and passes, unless `GW_TEST_REQUIRE_INTEROP=1`, when it fails.

use std::path::Path;
use std::process::Command;

use greenwave::config::GrpcConfig;
use greenwave::config::gbt20999::Gbt20999Config;
use greenwave::standards::gbt20999::{Address, DataValue, Deframer, ErrorCode, Escaping, Frame, FrameType, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon::Daemon;
use crate::grpc::harness::{self, Options};
use crate::grpc::interop::{peer_python, prepare};
use crate::grpc::test_controller;

#[test]
fn python_centre_reads_sets_is_refused_and_loses_its_link() {
    let Some(python) = peer_python("import socket, struct", "the standard library (Python 3)") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = "view = false\ntime_zone = \"UTC\"\n\n[gbt20999]\nlisten = \"127.0.0.1:0\"\nlisten_udp = \"127.0.0.1:0\"\n\
                  controller_id = 829692\n\
                  role = \"operator\"\nprincipal = \"test-centre\"\nheartbeat_timeout_s = 2\n\
                  link_loss_action = \"local_actuated\"\nreport_interval_ms = 1000\n";
    prepare(tmp.path(), &[test_controller()], config);
    let mut daemon = Daemon::start(tmp.path(), ["--config", "greenwave.toml"]);
    let line = daemon.expect_line("GB/T 20999 adapter on ");
    // "GB/T 20999 adapter on <tcp>, udp <udp> (role …)".
    let after = |marker: &str| {
        line.split(marker)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|a| a.trim_end_matches(',').to_owned())
            .expect("an address")
    };
    let (addr, udp) = (after("GB/T 20999 adapter on "), after(", udp "));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(&python)
        .arg(root.join("tools/interop/gbt20999_client.py"))
        .args(["--addr", &addr, "--udp", &udp, "--controller-id", "829692", "--heartbeat-timeout-s", "2"])
        .output()
        .expect("run the Python centre");
    daemon.signal("-TERM");
    let status = daemon.wait();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    let log = daemon.log().join("\n");
    assert!(
        output.status.success(),
        "the centre failed:\n{stdout}\n{}\ndaemon log:\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("46 passed, 0 failed"), "{stdout}");
    assert!(status.success(), "daemon exit {status}");
    // The sets are audited as gRPC's are, under the centre's name; the
    // refused plan with the validator's reason.
    let audited = |needle: &str| log.lines().any(|l| l.contains("test-centre") && l.contains(needle));
    assert!(audited("ApplyTimingPlan"), "plan set audited:\n{log}");
    assert!(audited("gbt20999/CentreControl.plan"), "plan selection audited:\n{log}");
    assert!(audited("SetMode"), "mode audited:\n{log}");
    assert!(log.contains("GB/T 20999: plan set refused"), "refusal logged:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("centre link lost") && l.contains("elm-and-oak")),
        "fault action logged:\n{log}"
    );
    assert!(audited("(link lost)"), "fault action audited:\n{log}");
    // The centre's plan selection is saved as what operators set, as
    // NTCIP's is (docs/standards.md, "A centre's plan across a restart"):
    // plan 2, with the mode the link loss set after it.
    let operator = std::fs::read_to_string(tmp.path().join("controllers/versions/elm-and-oak/operator.toml"))
        .expect("operator settings saved");
    assert!(operator.contains("plan = 2") && operator.contains("mode = \"actuated\""), "{operator}");
}

/// One frame to the adapter and its reply, over `stream`.
async fn exchange(stream: &mut tokio::net::TcpStream, frame: Frame) -> Frame {
    stream.write_all(&frame.encode(Escaping::Escaped).expect("encodes")).await.expect("send");
    let mut deframer = Deframer::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the adapter closed the connection");
        if let Some(reply) = buf[..n].iter().find_map(|&b| deframer.push(b)) {
            return reply.expect("a valid reply");
        }
    }
}

/// The default role is viewer: a centre reads, and its sets are refused
/// as read-only (0x20) by the Control service's role check, which audits
/// them; a frame for another controller id is not present (0x30).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_centre_reads_and_its_sets_are_read_only() {
    let gbt20999 = Gbt20999Config {
        enabled: true,
        listen: "127.0.0.1:0".parse().expect("addr"),
        principal: "wall".into(),
        ..Gbt20999Config::default()
    };
    let h = harness::start(Options {
        grpc: GrpcConfig { listen: "127.0.0.1:0".parse().expect("addr"), ..GrpcConfig::default() },
        controllers: vec![test_controller()],
        speed: Some(20.0),
        event_history: 1000,
        tick_ms: 100,
        config_file: None,
        dir: None,
        http: None,
        ntcip: None,
        gbt20999: Some(gbt20999),
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(h.gbt20999_addr.expect("adapter on")).await.expect("connect");
    let frame = |controller, kind, sequence, address, value: &[u8]| Frame {
        header: Header { version: 0x0100, centre: 1, controller, intersection: 1, sequence, kind },
        values: vec![DataValue { index: 1, address, value: value.to_vec() }],
    };
    let phases = Address::new(0x04, 1, 0, 0);
    let reply = exchange(&mut stream, frame(1, FrameType::Query, 1, phases, &[])).await;
    assert_eq!((reply.header.kind, reply.header.sequence), (FrameType::QueryReply, 1));
    assert_eq!(reply.values[0].value, vec![2], "elm-and-oak has two phases");
    let mode = Address::new(0x11, 1, 4, 1);
    let reply = exchange(&mut stream, frame(1, FrameType::Set, 2, mode, &[0x31])).await;
    assert_eq!(reply.header.kind, FrameType::SetError);
    assert_eq!(reply.values[0].value, vec![ErrorCode::ReadOnly.byte()]);
    let reply = exchange(&mut stream, frame(99, FrameType::Query, 3, phases, &[])).await;
    assert_eq!(reply.header.kind, FrameType::QueryError);
    assert_eq!(reply.values[0].value, vec![ErrorCode::NotPresent.byte()]);
    h.stop().await;
}
