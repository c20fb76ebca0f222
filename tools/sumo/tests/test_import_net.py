"""import_net on the shipped single junction: controller files, valid
phases, the rig's loops, and a user's detector file."""

from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ET

import pytest

import import_net
import netmodel
from conftest import SINGLE_NET


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("ctl")
    model = import_net.import_net(SINGLE_NET, out, base_port=17000)
    return out, model


def test_controller_files(imported):
    out, model = imported
    assert list(model) == ["C"]
    assert sorted(p.name for p in out.iterdir()) == ["C.toml", "detectors.add.xml", "sumo-map.json"]
    doc = tomllib.loads((out / "C.toml").read_text())
    assert doc["intersection"]["id"] == "C"
    assert doc["cabinet"] == {"kind": "modbus-tcp", "address": "127.0.0.1:17000", "unit_id": 1,
                              "request_timeout_s": 2.0, "link_timeout_s": 4.0}
    assert doc["sequence"]["rings"] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert doc["sequence"]["barriers"] == [[1, 2, 5, 6], [3, 4, 7, 8]]
    assert doc["startup"]["phases"] == [2, 6]
    assert [p["number"] for p in doc["phase"]] == list(range(1, 9))
    assert doc["plan"][0]["mode"] == "free" and doc["schedule"]["default_plan"] == 1


def test_phases_are_valid(imported):
    _, model = imported
    j = model["C"]
    for p, v in j["phases"].items():
        assert v["yellow_s"] >= 3.0, p
        assert v["red_clear_s"] >= 1.0, p
        assert 0 < v["min_green_s"] < v["max1_s"], p
        assert v["lanes"], p
    # every link is served by exactly one existing phase
    assert {l["phase"] for l in j["links"]} == set(j["phases"])
    # ring-barrier: 2 and 6 time together, 2 and 4 never; lefts 1 and 5 lead their barrier
    assert netmodel.compatible(j, 2, 6) and netmodel.compatible(j, 1, 5)
    assert not netmodel.compatible(j, 2, 4) and not netmodel.compatible(j, 1, 2)
    # no two foe links both protected green in any compatible phase pair
    ls = netmodel.LinkStates(j)
    for a in j["phases"]:
        for b in j["phases"]:
            if netmodel.compatible(j, a, b):
                s = ls.state(frozenset({a, b}))
                G = [i for i, c in enumerate(s) if c == "G"]
                assert not any(j["foes"][x][y] for x in G for y in G), (a, b, s)


def test_the_rigs_loops(imported):
    out, model = imported
    dets = model["C"]["detectors"]
    assert [d["channel"] for d in dets] == list(range(1, len(dets) + 1))
    stopbar = [d for d in dets if d["kind"] == "stopbar"]
    assert {d["lane"] for d in stopbar} == {l["from_lane"] for l in model["C"]["links"]}
    loops = ET.parse(out / "detectors.add.xml").getroot().findall("inductionLoop")
    assert sorted(el.get("id") for el in loops) == sorted(d["id"] for d in dets)
    doc = tomllib.loads((out / "C.toml").read_text())
    assert [d["channel"] for d in doc["detector"]] == [d["channel"] for d in dets]


def test_adaptive_import(tmp_path):
    import_net.import_net(SINGLE_NET, tmp_path, mode="adaptive", style="free", cameras=True)
    doc = tomllib.loads((tmp_path / "C.toml").read_text())
    plan = doc["plan"][0]
    assert plan["mode"] == "adaptive"
    assert sum(plan["splits_s"][str(p)] for p in (1, 2, 3, 4)) == pytest.approx(plan["cycle_s"])
    assert doc["adaptive"]["style"] == "free"
    assert len(doc["cabinet"]["camera_zone_channels"]) == doc["cabinet"]["registers"]["camera_queue_zones"]
    assert all(p["max2_s"] == pytest.approx(1.5 * p["max1_s"]) for p in doc["phase"])


def test_user_detectors(tmp_path, single_model):
    """A user's file with an e1 pair on one through lane and an e2 on one
    left pocket: those lanes use them, every other lane keeps the rig's
    loops, channels stay 1..n."""
    j = single_model["C"]
    through = next(d["lane"] for d in j["detectors"] if d["kind"] == "advance")
    left = j["phases"][5]["lanes"][0]
    (tmp_path / "loops.add.xml").write_text(f"""<additional>
    <inductionLoop id="near" lane="{through}" pos="-3" file="NUL"/>
    <inductionLoop id="far" lane="{through}" pos="5" file="NUL"/>
    <inductionLoop id="mid" lane="{through}" pos="20" file="NUL"/>
    <laneAreaDetector id="pocket" lane="{left}" pos="10" endPos="-1" file="NUL"/>
    <inductionLoop id="elsewhere" lane="C_W_0" pos="5" file="NUL"/>
</additional>
""")
    report = {}
    out = tmp_path / "ctl"
    model = import_net.import_net(SINGLE_NET, out, detectors=tmp_path / "loops.add.xml", detector_report=report)
    dets = model["C"]["detectors"]
    by_id = {d["id"]: d for d in dets}
    assert by_id["near"]["kind"] == "stopbar" and by_id["near"]["sumo"] == "e1"
    assert by_id["far"]["kind"] == "advance"
    assert by_id["pocket"]["kind"] == "stopbar" and by_id["pocket"]["sumo"] == "e2"
    assert "mid" not in by_id and "elsewhere" not in by_id
    assert sorted(report["ignored"]) == ["elsewhere", "mid"]
    assert sorted(report["used"]) == ["far", "near", "pocket"]
    assert len(dets) == len(j["detectors"])  # the same channels, two lanes from the user's file
    assert [d["channel"] for d in dets] == list(range(1, len(dets) + 1))
    # the rig's loops file holds only the loops it placed
    placed = {el.get("id") for el in ET.parse(out / "detectors.add.xml").getroot()}
    assert placed == {d["id"] for d in dets if not d.get("existing")}
    assert not placed & {"near", "far", "pocket"}
    assert through not in report["placed"] and left not in report["placed"]


def test_user_detector_on_an_unknown_lane(tmp_path):
    (tmp_path / "bad.add.xml").write_text('<additional><inductionLoop id="x" lane="nope_0" pos="1"/></additional>')
    with pytest.raises(ValueError, match="nope_0"):
        import_net.import_net(SINGLE_NET, tmp_path / "ctl", detectors=tmp_path / "bad.add.xml")


def test_controller_ids_are_sanitised():
    model = {"a#1": {}, "a:1": {}, "ok-1.x": {}}
    import_net.controller_ids(model)
    assert [j["id"] for j in model.values()] == ["a_1", "a_1_2", "ok-1.x"]


def test_cli(tmp_path, capsys):
    assert import_net.main([str(SINGLE_NET), "--out", str(tmp_path), "--mode", "adaptive"]) == 0
    assert "C: phases [1, 2, 3, 4, 5, 6, 7, 8]" in capsys.readouterr().out
    assert (tmp_path / "C.toml").exists()


def test_schedule(tmp_path):
    assert import_net.parse_schedule("7:00, 19:30") == ["07:00", "19:30"]
    assert import_net.parse_schedule(None) == [] and import_net.parse_schedule("") == []
    for bad in ("00:00", "19:00,07:00", "7", "24:00", "07:5"):
        with pytest.raises(ValueError):
            import_net.parse_schedule(bad)
    for mode in ("free", "adaptive"):
        import_net.import_net(SINGLE_NET, tmp_path / mode, mode=mode, schedule=["07:00", "19:30"])
        doc = tomllib.loads((tmp_path / mode / "C.toml").read_text())
        plans = doc["plan"]
        assert [p["number"] for p in plans] == [1, 2, 3]
        # the same timing under new numbers
        assert all({k: v for k, v in p.items() if k not in ("number", "name")}
                   == {k: v for k, v in plans[0].items() if k not in ("number", "name")} for p in plans)
        sched = doc["schedule"]
        assert sched["default_plan"] == 1 and sched["week"] == ["sil"] * 7
        assert sched["day_plan"] == [{"name": "sil", "events": [{"at": "00:00", "plan": 1}, {"at": "07:00", "plan": 2},
                                                                {"at": "19:30", "plan": 3}]}]
    import_net.import_net(SINGLE_NET, tmp_path / "none")
    assert "day_plan" not in tomllib.loads((tmp_path / "none" / "C.toml").read_text())["schedule"]


def sumo_example(path: str):
    """A network SUMO's wheel ships (tools/game/...), or skip."""
    import common

    p = common.Path(common.sumo_home()) / "tools" / "game" / path
    if not p.exists():
        pytest.skip(f"{p} not shipped with this SUMO")
    return p


def test_osm_network_with_crossings(tmp_path):
    """An OSM import (SUMO's A10KW example): pedestrian crossings take
    link indices no vehicle link has; the signal state still covers every
    index, with the crossings held red."""
    net = sumo_example("A10KW/osm.net.xml")
    model = import_net.import_net(net, tmp_path)
    assert len(model) == 2
    for j in model.values():
        have = {l["index"] for l in j["links"]}
        assert j["n_links"] > len(j["links"])
        ls = netmodel.LinkStates(j)
        s = ls.state(frozenset(j["phases"]))
        assert len(s) == j["n_links"]
        assert all(s[i] == "r" for i in range(j["n_links"]) if i not in have)
        assert (tmp_path / f"{j['id']}.toml").exists()


def test_unsupported_traffic_lights_are_left_out(tmp_path):
    """SUMO's DRT example: joined traffic lights and junctions with more
    than four approaches are reported, the others imported."""
    net = sumo_example("DRT/osm.net.xml")
    with pytest.raises(ValueError):
        netmodel.analyze(str(net))
    unsupported = []
    model = import_net.import_net(net, tmp_path, unsupported=unsupported)
    reasons = dict(unsupported)
    assert model and reasons
    assert not set(model) & set(reasons)
    assert any("one program for" in r for r in reasons.values())
    assert any("approaches (at most 4 supported)" in r for r in reasons.values())
    assert sorted(p.stem for p in tmp_path.glob("*.toml")) == sorted(j["id"] for j in model.values())
