"""run.py's command line: a user's network and routes, paths relative to
the caller's working directory, and the daemon's greenwave.toml."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

import run
from common import EPOCH_MS
from conftest import SINGLE_NET


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A working directory elsewhere with a copy of the single network and
    a route file in a subdirectory, as a user would have."""
    shutil.copy(SINGLE_NET, tmp_path / "my.net.xml")
    (tmp_path / "demand").mkdir()
    (tmp_path / "demand" / "am.rou.xml").write_text("<routes/>\n")
    (tmp_path / "demand" / "pm.rou.xml").write_text("<routes/>\n")
    (tmp_path / "loops.add.xml").write_text("<additional/>\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_user_paths_resolve_against_the_working_directory(user_dir):
    a = run.parse_args(["--net", "my.net.xml", "--routes", "demand/am.rou.xml", "demand/pm.rou.xml",
                        "--detectors", "loops.add.xml"])
    assert a.user
    assert a.net == user_dir / "my.net.xml"
    assert a.routes == [user_dir / "demand" / "am.rou.xml", user_dir / "demand" / "pm.rou.xml"]
    assert a.detectors == user_dir / "loops.add.xml"
    assert a.out == user_dir / run.DEFAULT_OUT  # not the repository
    assert a.name == "my" and a.demand_label == "am+pm"
    assert a.start_ms == EPOCH_MS


def test_routes_may_repeat_and_out_is_relative_too(user_dir):
    a = run.parse_args(["--net", "my.net.xml", "--routes", "demand/am.rou.xml", "--routes", "demand/pm.rou.xml",
                        "--out", "res", "--keep-events", "ev", "--name", "downtown"])
    assert len(a.routes) == 2
    assert a.out == user_dir / "res" and a.keep_events == user_dir / "ev"
    assert a.name == "downtown"


def test_shipped_defaults_stay_in_the_repository(user_dir):
    a = run.parse_args([])
    assert not a.user and a.out is None and a.detectors is None
    assert run.net_path("single") == SINGLE_NET


@pytest.mark.parametrize("argv, message", [
    (["--net", "my.net.xml"], "--net needs --routes"),
    (["--net", "missing.net.xml", "--routes", "demand/am.rou.xml"], "missing.net.xml: no such file"),
    (["--net", "my.net.xml", "--routes", "demand/none.rou.xml"], "none.rou.xml: no such file"),
    (["--routes", "demand/am.rou.xml"], "go with --net"),
    (["--net", "my.net.xml", "--routes", "demand/am.rou.xml", "--scenario", "grid"], "--scenario"),
    (["--net", "my.net.xml", "--routes", "demand/am.rou.xml", "--smoke"], "--smoke"),
    (["--start-time", "2026-12-07T06:58:00"], "no UTC offset"),
    (["--start-time", "tomorrow"], "not an ISO 8601"),
    (["--time-zone", "Mars/Olympus_Mons"], "unknown time zone"),
    (["--greenwave-schedule", "19:00,07:00"], "must increase"),
])
def test_bad_command_lines_are_refused(user_dir, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        run.parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_start_time_and_time_zone(user_dir):
    a = run.parse_args(["--start-time", "2026-12-07T06:58:00+08:00", "--time-zone", "Asia/Singapore"])
    assert a.start_ms == 1_796_597_880_000  # 2026-12-06T22:58:00Z
    assert a.time_zone == "Asia/Singapore"
    # without an offset, in the given zone
    a = run.parse_args(["--start-time", "2026-12-07T06:58:00", "--time-zone", "Asia/Singapore",
                        "--greenwave-schedule", "7:00"])
    assert a.start_ms == 1_796_597_880_000
    assert a.greenwave_schedule == ["07:00"]


def test_greenwave_bin_option_is_resolved(user_dir):
    (user_dir / "bin").mkdir()
    (user_dir / "bin" / "greenwave").write_text("#!/bin/sh\n")
    a = run.parse_args(["--greenwave-bin", "bin/greenwave"])
    assert a.greenwave_bin == user_dir / "bin" / "greenwave"


def test_greenwave_bin_env(user_dir, monkeypatch):
    import common

    exe = user_dir / "gw"
    exe.write_text("#!/bin/sh\n")
    monkeypatch.setenv("SIL_GREENWAVE_BIN", "gw")  # relative: to the working directory
    assert common.greenwave_bin() == str(exe)
    monkeypatch.setenv("SIL_GREENWAVE_BIN", str(user_dir / "nothing"))
    with pytest.raises(SystemExit):
        common.greenwave_bin()


def test_greenwave_toml_writes_time_zone_only_when_given(tmp_path):
    plain = tomllib.loads(run.greenwave_toml(tmp_path / "ctl", tmp_path / "log"))
    assert "time_zone" not in plain
    assert plain["controllers"] == str(tmp_path / "ctl")
    assert plain["clock"] == "cabinet" and plain["tick_ms"] == 100
    assert plain["event_log"]["dir"] == str(tmp_path / "log")
    assert plain["grpc"]["enabled"] is False
    zoned = tomllib.loads(run.greenwave_toml(tmp_path / "c\"tl", tmp_path / "log", time_zone="Asia/Singapore",
                                             corridors='[[corridor]]\nmembers = ["a", "b"]\ntravel_s = [20.0]\n'))
    assert zoned["time_zone"] == "Asia/Singapore"
    assert zoned["controllers"] == str(tmp_path / "c\"tl")
    assert zoned["corridor"][0]["members"] == ["a", "b"]


def test_plan_changes_are_read_from_the_event_log(tmp_path):
    (tmp_path / "greenwave-events-000001.csv").write_text(
        "SignalID,Timestamp,EventCode,EventParam\n"
        "C,2026-12-07 06:59:59.900,1,2\n"
        "C,2026-12-07 07:00:00.000,131,2\n"
        "C,2026-12-07 07:00:00.000,132,120\n")
    assert run.plan_changes(tmp_path) == [["C", "2026-12-07 07:00:00.000", "2"]]
    assert run.plan_changes(tmp_path / "missing") == []


def test_no_repository_paths_in_user_inputs(user_dir, capsys):
    """The user's inputs and everything made for them live where the user
    said, not under tools/sumo."""
    # a route file with demand, so the import and the design run
    (user_dir / "demand" / "am.rou.xml").write_text(
        '<routes><route id="r" edges="E_C E_C_P C_W"/>'
        '<flow id="f" route="r" begin="0" end="600" vehsPerHour="360"/></routes>\n')
    a = run.parse_args(["--net", "my.net.xml", "--routes", "demand/am.rou.xml"])
    src = run.user_inputs(a, a.out)
    for key in ("net", "design", "ctl"):
        assert Path(src[key]).is_relative_to(user_dir), key
    assert src["routes"] == [str(user_dir / "demand" / "am.rou.xml")]
    assert (a.out / "ctl" / "C.toml").exists() and (a.out / "ctl" / "detectors.add.xml").exists()
    design = run.read_json(src["design"])
    assert design["duration"] == 600  # the end of the demand
    assert design["phase_flows"]["C"]["6"] == pytest.approx(360.0)  # westbound through
    assert "1 traffic lights" in capsys.readouterr().out
    assert not Path(src["ctl"]).is_relative_to(run.HERE)


def test_names_from_compressed_files(user_dir):
    shutil.copy(user_dir / "my.net.xml", user_dir / "city.net.xml.gz")
    a = run.parse_args(["--net", "city.net.xml.gz", "--routes", "demand/am.rou.xml"])
    assert a.name == "city"
