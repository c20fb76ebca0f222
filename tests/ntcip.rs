//! The NTCIP 1202 agent against managers that are not Greenwave's code:
//! Debian's net-snmp tools (`snmpwalk`, `snmpget`, `snmpset`) and pysnmp
//! (`tools/interop/ntcip_v3_get.py`), on the in-process daemon running
//! elm-and-oak in lockstep at 20 times real time.
//!
//! - a v2c walk of the phase table (GETNEXT) and the detector table
//!   (GETBULK) matches the controller file;
//! - a v2c SET of `systemPatternControl` by an operator community runs the
//!   pattern (from the next barrier); a viewer community's SET and a wrong
//!   community are refused; `unitBackupTime` running out puts the
//!   intersection back on its schedule (backup mode);
//! - a v3 authPriv GET (SHA-256, AES-128) by both peers, and v3 without
//!   privacy or with a wrong passphrase refused;
//! - a walk of the NTCIP 1201 time base (schedule rows, day plan events)
//!   matches the controller file's `[schedule]`;
//! - `snmpset` of phase times and of a split table goes through the
//!   controller file validator and staging: a value past the MIB's range
//!   is wrongValue, one the validator refuses inconsistentValue (phase
//!   times) or commitFailed (a split table that no longer adds up), and
//!   nothing changes; accepted ones read back.
//!
//! A missing peer fails the test when `GW_TEST_REQUIRE_INTEROP=1`
//! (scripts/test.sh installs `snmp` and pysnmp), else it is skipped with a
//! notice. Every wait polls a condition under a deadline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant as Wall};

use greenwave::config::grpc::GrpcConfig;
use greenwave::config::ntcip::{AuthProtocol, Community, NtcipConfig, PrivacyProtocol, UsmUser};
use greenwave::config::{self, Role};

use crate::grpc::harness::{self, Harness, Options};
use crate::grpc::test_controller;
use crate::modbus::{missing, python_with};

/// `asc` (NTCIP 1202 v02 MIB).
const ASC: &str = "1.3.6.1.4.1.1206.4.2.1";
/// `global.globalTimeManagement.timebase` (NTCIP 1201 v02 MIB).
const TIMEBASE: &str = "1.3.6.1.4.1.1206.4.2.6.3.3";
const VIEWER: &str = "gw-view";
const OPERATOR: &str = "gw-ops";
const USER: &str = "tmc";
const AUTH: &str = "authpass-1";
const PRIV: &str = "privpass-1";
const INTERSECTION: &str = "elm-and-oak";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn agent_config() -> NtcipConfig {
    let community =
        |community: &str, role| Community { community: community.into(), intersection: INTERSECTION.into(), role };
    NtcipConfig {
        enabled: true,
        listen: "127.0.0.1:0".parse().expect("addr"),
        communities: vec![community(VIEWER, Role::Viewer), community(OPERATOR, Role::Operator)],
        users: vec![UsmUser {
            name: USER.into(),
            role: Role::Operator,
            auth: AuthProtocol::Sha256,
            auth_passphrase: AUTH.into(),
            privacy: Some((PrivacyProtocol::Aes128, PRIV.into())),
            intersections: None,
        }],
        engine_file: None,
    }
}

async fn daemon() -> Harness {
    harness::start(Options {
        grpc: GrpcConfig { listen: "127.0.0.1:0".parse().expect("addr"), ..GrpcConfig::default() },
        controllers: vec![test_controller()],
        speed: Some(20.0),
        event_history: 10_000,
        tick_ms: 100,
        config_file: None,
        dir: None,
        http: None,
        ntcip: Some(agent_config()),
        gbt20999: None,
    })
    .await
}

/// Whether net-snmp's tools are here (else skipped, or failed under
/// `GW_TEST_REQUIRE_INTEROP=1`).
fn net_snmp() -> Option<()> {
    let ok = Command::new("snmpget").arg("--version").output().is_ok_and(|o| o.status.success());
    if ok { Some(()) } else { missing("net-snmp's snmpget (Debian package snmp)") }
}

/// Runs a net-snmp tool against the agent with numeric OIDs and bare
/// values (`-On -Oqv` style: `.1.3... 5`), one retry, half a second each.
fn tool(program: &str, agent: SocketAddr, args: &[&str]) -> Output {
    let mut all = vec!["-On", "-Oq", "-t", "1", "-r", "1"];
    all.extend_from_slice(args);
    let target = format!("udp:{agent}");
    // The target goes after the options and before the OIDs.
    let split = all.iter().position(|a| a.starts_with("OID:")).unwrap_or(all.len());
    let mut cmd = Command::new(program);
    cmd.args(&all[..split]).arg(&target);
    cmd.args(all[split..].iter().map(|a| a.trim_start_matches("OID:")));
    cmd.output().expect("run a net-snmp tool")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `(oid below asc, value)` per line of `-On -Oq` output.
fn values(out: &Output) -> Vec<(String, i64)> {
    let prefix = format!(".{ASC}.");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (oid, value) = l.split_once(' ')?;
            Some((oid.strip_prefix(&prefix)?.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn v2c_get(agent: SocketAddr, community: &str, oid: &str) -> Option<i64> {
    let out = tool("snmpget", agent, &["-v2c", "-c", community, &format!("OID:{ASC}.{oid}")]);
    values(&out).first().map(|(_, v)| *v)
}

/// `program -v2c` (`snmpwalk`: GETNEXT, `snmpbulkwalk`: GETBULK) of
/// `asc.<subtree>` with the viewer community.
fn walk(program: &str, agent: SocketAddr, subtree: &str) -> Vec<(String, i64)> {
    let out = tool(program, agent, &["-v2c", "-c", VIEWER, &format!("OID:{ASC}.{subtree}")]);
    assert!(out.status.success(), "{}", text(&out));
    values(&out)
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Wall::now() + within;
    while !ok() {
        assert!(Wall::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spec() -> greenwave::core::ControllerSpec {
    let (_, text) = test_controller();
    config::load_intersection_str("elm-and-oak.toml", &text).expect("test controller").0.spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpwalk_reads_the_phase_and_detector_tables_as_the_controller_file_says() {
    let Some(()) = net_snmp() else { return };
    let h = daemon().await;
    let agent = h.ntcip_addr.expect("agent on");
    let spec = spec();
    let phases = tokio::task::spawn_blocking(move || walk("snmpwalk", agent, "1.2")).await.expect("walk");
    let max = spec.phases.iter().map(|p| p.id.number()).max().expect("phases");
    // phaseNumber, then every column, a row per phase 1..=maxPhases.
    let column = |c: u32| -> Vec<(u8, i64)> {
        let head = format!("1.2.1.{c}.");
        phases.iter().filter_map(|(oid, v)| Some((oid.strip_prefix(&head)?.parse().ok()?, *v))).collect()
    };
    assert_eq!(column(1), (1..=max).map(|n| (n, i64::from(n))).collect::<Vec<_>>(), "{phases:?}");
    for p in &spec.phases {
        let n = p.id.number();
        let at = |c| column(c).into_iter().find(|(k, _)| *k == n).map(|(_, v)| v);
        assert_eq!(at(4), Some((p.timing.min_green.as_millis() / 1000) as i64), "phaseMinimumGreen.{n}");
        assert_eq!(at(8), Some((p.timing.yellow.as_millis() / 100) as i64), "phaseYellowChange.{n}");
        assert_eq!(at(9), Some((p.timing.red_clear.as_millis() / 100) as i64), "phaseRedClear.{n}");
        assert_eq!(at(22), Some(p.ring as i64 + 1), "phaseRing.{n}");
    }
    let detectors = tokio::task::spawn_blocking(move || walk("snmpbulkwalk", agent, "2.2")).await.expect("walk");
    for d in &spec.detectors {
        let oid = format!("2.2.1.4.{}", d.channel.number());
        let call = detectors.iter().find(|(o, _)| *o == oid).map(|(_, v)| *v);
        let want = d.calls.iter().next().map_or(0, |p| i64::from(p.number()));
        assert_eq!(call, Some(want), "vehicleDetectorCallPhase of channel {}: {detectors:?}", d.channel.number());
    }
    eprintln!("snmpwalk: {} phase-table values; snmpbulkwalk: {} detector-table values", phases.len(), detectors.len());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpset_of_a_pattern_runs_it_and_the_backup_timer_hands_back_to_the_schedule() {
    let Some(()) = net_snmp() else { return };
    let h = daemon().await;
    let agent = h.ntcip_addr.expect("agent on");
    tokio::task::spawn_blocking(move || {
        // coordPatternStatus: the running pattern, 254 free (plan 1 runs
        // free), 255 flash (start-up).
        let status = || v2c_get(agent, VIEWER, "4.10.0");
        wait_for("running after start-up", Duration::from_secs(20), || {
            status().is_some_and(|s| (1..=254).contains(&s))
        });
        let scheduled = status();
        let (set, expect) = if scheduled == Some(254) { (2, 2) } else { (1, 254) };
        let set_pattern = |community: &str, n: &str| {
            tool("snmpset", agent, &["-v2c", "-c", community, &format!("OID:{ASC}.4.14.0"), "i", n])
        };

        let refused = set_pattern(VIEWER, &set.to_string());
        assert!(!refused.status.success(), "a viewer community may not set: {}", text(&refused));
        let wrong = tool("snmpget", agent, &["-v2c", "-c", "not-a-community", &format!("OID:{ASC}.1.1.0")]);
        assert!(!wrong.status.success() && text(&wrong).contains("Timeout"), "{}", text(&wrong));
        let undefined = set_pattern(OPERATOR, "9");
        assert!(text(&undefined).contains("wrongValue"), "pattern 9 is not defined: {}", text(&undefined));

        let out = set_pattern(OPERATOR, &set.to_string());
        assert!(out.status.success(), "{}", text(&out));
        eprintln!("snmpset systemPatternControl = {set}: {}", text(&out).trim());
        assert_eq!(v2c_get(agent, VIEWER, "4.14.0"), Some(set), "systemPatternControl reads what was set");
        assert_eq!(v2c_get(agent, VIEWER, "3.5.0"), Some(2), "unitControlStatus: systemControl");
        wait_for("the pattern in force (at the barrier)", Duration::from_secs(20), || status() == Some(expect));
        eprintln!("coordPatternStatus = {expect} after the barrier");

        // unitBackupTime 2 s, then the centre goes silent: the schedule is back.
        let backup = tool("snmpset", agent, &["-v2c", "-c", OPERATOR, &format!("OID:{ASC}.3.3.0"), "i", "2"]);
        assert!(backup.status.success(), "{}", text(&backup));
        wait_for("backup mode", Duration::from_secs(10), || v2c_get(agent, VIEWER, "3.5.0") == Some(4));
        assert_eq!(v2c_get(agent, VIEWER, "4.14.0"), Some(0), "the centre's pattern dropped");
        wait_for("the schedule's pattern again", Duration::from_secs(20), || status() == scheduled);
        eprintln!(
            "unitBackupTime ran out: unitControlStatus = backupMode(4), coordPatternStatus = {scheduled:?} again"
        );
    })
    .await
    .expect("peer thread");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpv3_auth_priv_get_from_net_snmp_and_pysnmp_and_weaker_requests_refused() {
    let Some(()) = net_snmp() else { return };
    let python = python_with("pysnmp", "import pysnmp.hlapi.v3arch.asyncio");
    let h = daemon().await;
    let agent = h.ntcip_addr.expect("agent on");
    let max_phases = i64::from(spec().phases.iter().map(|p| p.id.number()).max().expect("phases"));
    tokio::task::spawn_blocking(move || {
        let v3 = |level: &str, auth: &str| {
            tool(
                "snmpget",
                agent,
                &[
                    "-v3",
                    "-l",
                    level,
                    "-u",
                    USER,
                    "-a",
                    "SHA-256",
                    "-A",
                    auth,
                    "-x",
                    "AES",
                    "-X",
                    PRIV,
                    "-n",
                    INTERSECTION,
                    &format!("OID:{ASC}.1.1.0"),
                ],
            )
        };
        let out = v3("authPriv", AUTH);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(values(&out), [("1.1.0".to_owned(), max_phases)], "{}", text(&out));
        eprintln!("snmpget -v3 authPriv: maxPhases = {max_phases}");
        let wrong = v3("authPriv", "not-the-passphrase");
        assert!(!wrong.status.success(), "wrong passphrase taken: {}", text(&wrong));
        let weaker = v3("authNoPriv", AUTH);
        assert!(!weaker.status.success(), "a user configured with privacy must use it: {}", text(&weaker));
        if let Some(python) = python {
            let out = Command::new(python)
                .arg(root().join("tools/interop/ntcip_v3_get.py"))
                .args([&agent.port().to_string(), USER, AUTH, PRIV, INTERSECTION, &format!("{ASC}.1.1.0")])
                .output()
                .expect("run pysnmp");
            assert!(out.status.success(), "{}", text(&out));
            let line = String::from_utf8_lossy(&out.stdout);
            assert!(line.trim().ends_with(&format!(" {max_phases}")), "{line}");
            eprintln!("pysnmp v3 authPriv: {}", line.trim());
        }
    })
    .await
    .expect("peer thread");
    h.stop().await;
}

/// `(oid below timebase, value as printed)` per line of a `-On -Oq` walk.
fn timebase_walk(agent: SocketAddr) -> Vec<(String, String)> {
    let out = tool("snmpwalk", agent, &["-v2c", "-c", VIEWER, &format!("OID:{TIMEBASE}")]);
    assert!(out.status.success(), "{}", text(&out));
    let prefix = format!(".{TIMEBASE}.");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (oid, value) = l.split_once(' ')?;
            Some((oid.strip_prefix(&prefix)?.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpwalk_reads_the_time_base_schedule_and_day_plans_as_the_controller_file_says() {
    let Some(()) = net_snmp() else { return };
    let h = daemon().await;
    let agent = h.ntcip_addr.expect("agent on");
    let rows = tokio::task::spawn_blocking(move || timebase_walk(agent)).await.expect("walk");
    let at = |oid: &str| rows.iter().find(|(o, _)| o == oid).map(|(_, v)| v.as_str());
    // elm-and-oak: week rows "weekday" (Mon–Fri) and "weekend" (Sat, Sun),
    // then the holidays 01-01 and 12-25 on the weekend day plan.
    assert_eq!(at("1.0"), Some("4"), "maxTimeBaseScheduleEntries: {rows:?}");
    assert_eq!(at("2.1.3.1"), Some("124"), "timeBaseScheduleDay.1: Monday (bit 2) … Friday (bit 6)");
    assert_eq!(at("2.1.3.2"), Some("130"), "timeBaseScheduleDay.2: Saturday (bit 7), Sunday (bit 1)");
    assert_eq!(at("2.1.2.4"), Some(&*(1u32 << 12).to_string()), "timeBaseScheduleMonth.4: December");
    assert_eq!(at("2.1.4.4"), Some(&*(1u32 << 25).to_string()), "timeBaseScheduleDate.4: the 25th");
    assert_eq!(at("2.1.4.1"), Some("4294967294"), "timeBaseScheduleDate.1: every date (Gauge32)");
    assert_eq!(at("2.1.5.4"), Some("2"), "timeBaseScheduleDayPlan.4: the weekend day plan");
    // Day plan 1 (weekday): 00:00 plan 1, 07:00 plan 2, 19:00 plan 1.
    assert_eq!((at("3.0"), at("4.0")), (Some("2"), Some("3")), "maxDayPlans, maxDayPlanEvents");
    assert_eq!((at("5.1.3.1.2"), at("5.1.4.1.2")), (Some("7"), Some("0")), "dayPlanHour/Minute.1.2");
    let action = format!(".{ASC}.5.3.1.1.2");
    assert_eq!(at("5.1.5.1.2"), Some(action.as_str()), "dayPlanActionNumberOID.1.2: time-base action 2");
    assert_eq!(at("5.1.3.1.3"), Some("19"));
    eprintln!("snmpwalk of the time base: {} values, day plan 1 event 2 at 07:00 runs {action}", rows.len());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpset_of_phase_times_and_splits_goes_through_the_controller_file_validator() {
    let Some(()) = net_snmp() else { return };
    let h = daemon().await;
    let agent = h.ntcip_addr.expect("agent on");
    tokio::task::spawn_blocking(move || {
        let set = |pairs: &[(&str, &str)]| {
            let mut args = vec!["-v2c".to_owned(), "-c".to_owned(), OPERATOR.to_owned()];
            for (oid, value) in pairs {
                args.extend([format!("OID:{ASC}.{oid}"), "i".to_owned(), (*value).to_owned()]);
            }
            tool("snmpset", agent, &args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let get = |oid: &str| v2c_get(agent, VIEWER, oid);
        // phaseMinimumGreen.2: 8 s in the file; max1 of phase 2 is 12 s here.
        let out = set(&[("1.2.1.4.2", "9")]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(get("1.2.1.4.2"), Some(9), "phaseMinimumGreen.2 staged");
        eprintln!("snmpset phaseMinimumGreen.2 = 9: {}", text(&out).trim());
        // Two phase times in one request, yellow in tenths.
        let out = set(&[("1.2.1.8.4", "36"), ("1.2.1.5.4", "20")]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!((get("1.2.1.8.4"), get("1.2.1.5.4")), (Some(36), Some(20)), "yellow 3.6 s, passage 2.0 s");

        let refused = set(&[("1.2.1.4.2", "200")]);
        assert!(text(&refused).contains("inconsistentValue"), "min green past max1: {}", text(&refused));
        let refused = set(&[("1.2.1.8.2", "300")]);
        assert!(text(&refused).contains("wrongValue"), "past the MIB's 0..255: {}", text(&refused));
        let refused = set(&[("1.2.1.6.3", "20")]);
        assert!(text(&refused).contains("noCreation"), "phase 3 is not defined: {}", text(&refused));
        // A valid time with an invalid one: neither is taken.
        let refused = set(&[("1.2.1.6.2", "20"), ("1.2.1.4.4", "200")]);
        assert!(text(&refused).contains("inconsistentValue"), "{}", text(&refused));
        assert_eq!((get("1.2.1.4.2"), get("1.2.1.6.2")), (Some(9), Some(12)), "nothing changed");
        eprintln!("refused: min green 200 s inconsistentValue, yellow 30 s wrongValue, phase 3 noCreation");

        // Plan 2's split table (70 s cycle: 42 + 28) as a whole, then one
        // split alone, which no longer adds up to the cycle.
        let out = set(&[("4.9.1.3.2.2", "40"), ("4.9.1.3.2.4", "30")]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!((get("4.9.1.3.2.2"), get("4.9.1.3.2.4")), (Some(40), Some(30)));
        let refused = set(&[("4.9.1.3.2.2", "41")]);
        assert!(text(&refused).contains("commitFailed"), "splits 41 + 30 on a 70 s cycle: {}", text(&refused));
        assert_eq!(get("4.9.1.3.2.2"), Some(40), "nothing changed");
        eprintln!("snmpset splitTime.2.2 = 40, splitTime.2.4 = 30 taken; 41 alone commitFailed");
    })
    .await
    .expect("peer thread");
    h.stop().await;
}
