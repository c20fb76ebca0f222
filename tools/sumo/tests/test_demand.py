"""Demand: the generated levels on the single junction, the start-time
conversion, and the design flows of a user's route files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import pytest

import common
import demand
from conftest import SINGLE_NET


def test_default_epoch_is_monday_midnight_utc():
    dt = datetime.fromtimestamp(common.EPOCH_MS / 1000, timezone.utc)
    assert (dt.year, dt.month, dt.day, dt.hour, dt.minute) == (2026, 1, 5, 0, 0)
    assert dt.weekday() == 0
    assert common.parse_start_time(None) == common.EPOCH_MS


@pytest.mark.parametrize("text, zone, ms", [
    ("2026-12-07T06:58:00+08:00", None, 1_796_597_880_000),
    ("2026-12-06T22:58:00Z", None, 1_796_597_880_000),
    ("2026-12-06T22:58:00.250+00:00", None, 1_796_597_880_250),
    ("2026-01-05T00:00:00Z", None, common.EPOCH_MS),
    ("2026-12-07T06:58:00", "Asia/Singapore", 1_796_597_880_000),
    # an offset wins over the zone
    ("2026-12-07T06:58:00+08:00", "America/New_York", 1_796_597_880_000),
    # naive time in a zone with daylight saving: 2026-07-01 08:00 EDT = 12:00Z
    ("2026-07-01T08:00:00", "America/New_York", 1_782_907_200_000),
])
def test_start_time_to_simulated_ms(text, zone, ms):
    assert common.parse_start_time(text, zone) == ms


def test_start_time_errors():
    with pytest.raises(ValueError, match="no UTC offset"):
        common.parse_start_time("2026-12-07T06:58:00")
    with pytest.raises(ValueError, match="ISO 8601"):
        common.parse_start_time("07/12/2026 06:58")
    with pytest.raises(ValueError, match="unknown time zone"):
        common.parse_start_time("2026-12-07T06:58:00", "Nowhere/Special")


def test_iso_ms_round_trip():
    ms = common.parse_start_time("2026-12-07T06:58:00+08:00")
    assert common.iso_ms(ms, "Asia/Singapore") == "2026-12-07T06:58:00.000+08:00"
    assert common.iso_ms(ms) == "2026-12-06T22:58:00.000+00:00"


@pytest.mark.parametrize("level", ["balanced", "unbalanced", "peak"])
def test_generated_demand(tmp_path, single_model, level):
    rou = tmp_path / f"{level}.rou.xml"
    info = demand.write_routes(str(SINGLE_NET), single_model, level, rou)
    root = ET.parse(rou).getroot()
    routes = root.findall("route")
    flows = root.findall("flow")
    assert routes and flows
    begins = [float(f.get("begin")) for f in flows]
    assert begins == sorted(begins)  # SUMO wants flows sorted by begin
    assert max(float(f.get("end")) for f in flows) == demand.LEVELS[level]["duration"]
    assert all(f.get("period").startswith("exp(") for f in flows)
    # every route follows the network's edges
    ids = {r.get("id") for r in routes}
    assert all(f.get("route") in ids for f in flows)
    assert info["duration"] == demand.LEVELS[level]["duration"]
    # calibrated: the critical flow ratio at the junction is the level's Y
    # (the peak design hour is the mean of the profile over a PHF of 0.95)
    j = single_model["C"]
    y = demand.flow_ratios(single_model, {"C": {int(p): q for p, q in info["phase_flows"]["C"].items()}})["C"]
    lv = demand.LEVELS[level]
    expect = lv["target_y"] * (sum(lv["profile"]) / len(lv["profile"]) / 0.95 if len(lv["profile"]) > 1 else 1)
    assert demand.critical_y(j, y) == pytest.approx(expect, rel=0.01)
    if level == "unbalanced":
        main = info["phase_flows"]["C"]["2"] + info["phase_flows"]["C"]["6"]
        side = info["phase_flows"]["C"]["4"] + info["phase_flows"]["C"]["8"]
        assert main > 2 * side


def test_design_from_generated_routes_matches_the_generator(tmp_path, single_model):
    rou = tmp_path / "balanced.rou.xml"
    info = demand.write_routes(str(SINGLE_NET), single_model, "balanced", rou)
    assert demand.routes_end([rou]) == 1800
    design = demand.design_from_routes(str(SINGLE_NET), single_model, [rou], 1800)
    assert design["unrouted"] == 0
    for p, q in info["phase_flows"]["C"].items():
        assert design["phase_flows"]["C"][p] == pytest.approx(q, abs=0.2), p


def test_design_from_hand_written_routes(tmp_path, single_model):
    """Vehicles, trips (routed here), flows by rate, period or number, a
    route distribution, over a 600 s demand."""
    (tmp_path / "a.rou.xml").write_text("""<routes>
    <vType id="t"/>
    <route id="wb" edges="E_C E_C_P C_W"/>
    <routeDistribution id="mix">
        <route id="m1" edges="W_C W_C_P C_E" probability="3"/>
        <route id="m2" edges="W_C W_C_P C_N" probability="1"/>
    </routeDistribution>
    <vehicle id="v0" depart="0" route="wb"/>
    <vehicle id="v1" depart="10"><route edges="N_C N_C_P C_S"/></vehicle>
    <trip id="t0" depart="20" from="S_C" to="C_N"/>
    <flow id="f0" route="wb" begin="0" end="600" vehsPerHour="300"/>
    <flow id="f1" route="mix" begin="0" end="600" period="exp(0.1)"/>
    <flow id="f2" route="wb" begin="300" number="30" period="10"/>
    <flow id="f3" from="nowhere" to="C_W" begin="0" end="60" period="1"/>
    <trip id="t1" depart="30" fromJunction="E" toJunction="W"/>
</routes>
""")
    files = [tmp_path / "a.rou.xml"]
    assert demand.routes_end(files) == 600  # f2 ends at 300 + 30 x 10
    flows, skipped = demand.route_flows(str(SINGLE_NET), files, 600)
    assert skipped == 2  # the unknown edge, the junction trip
    d = demand.design_from_routes(str(SINGLE_NET), single_model, files, 600)
    pf = d["phase_flows"]["C"]
    # westbound through: v0 (1 in 600 s = 6 veh/h) + f0 300 + f2 30 in 600 s (180)
    assert pf["6"] == pytest.approx(6 + 300 + 180, abs=0.2)
    # eastbound through: 3/4 of f1's 360 veh/h
    assert pf["2"] == pytest.approx(270, abs=0.2)
    # the trip S->N was routed (6 veh/h) and v1 N->S (6 veh/h)
    assert pf["4"] + pf["8"] == pytest.approx(12, abs=0.2)


def test_open_ended_flow_has_no_end(tmp_path):
    (tmp_path / "b.rou.xml").write_text('<routes><route id="r" edges="E_C E_C_P C_W"/>'
                                        '<flow id="f" route="r" begin="0" vehsPerHour="100"/></routes>')
    assert demand.routes_end([tmp_path / "b.rou.xml"]) is None
