"""tools/sumo/emergency.py without SUMO running: the ambulance's route over
the arterial's five signals, the preempt and API each junction gets, and
the trip metrics."""

from __future__ import annotations

import tomllib

import emergency
import netmodel
import run
from conftest import SUMO_DIR

ARTERIAL_NET = SUMO_DIR / "scenarios" / "arterial" / "arterial.net.xml"


def test_the_route_crosses_the_five_signals_in_order(tmp_path):
    model = netmodel.analyze(str(ARTERIAL_NET))
    rou, edges = emergency.ev_routes(ARTERIAL_NET, tmp_path / "ev.rou.xml", 300)
    assert edges[0] == emergency.FROM_EDGE and edges[-1] == emergency.TO_EDGE
    assert 'vClass="emergency"' in rou.read_text()
    stops = emergency.stops(ARTERIAL_NET, model, edges)
    assert [s["id"] for s in stops] == ["A1", "A2", "A3", "A4", "A5"]
    assert stops[0]["link_m"] == 0.0
    # the nodes are 280, 360, 260, 400 m apart; the stop lines about so
    for s, spacing in zip(stops[1:], [280, 360, 260, 400]):
        assert abs(s["link_m"] - spacing) < 40, s


def test_every_junction_gets_a_preempt_on_the_main_street_and_an_operator_token():
    model = netmodel.analyze(str(ARTERIAL_NET))
    for j in model.values():
        p = tomllib.loads(emergency.preempt_toml(j))["preempt"][0]
        assert p["input"] == emergency.PREEMPT_INPUT and p["dwell_phases"] == [2, 6]
    grpc = tomllib.loads(emergency.grpc_toml(17140))["grpc"]
    assert grpc["listen"] == "127.0.0.1:17140" and grpc["token"][0]["role"] == "operator"
    cfg = tomllib.loads(run.greenwave_toml(SUMO_DIR, SUMO_DIR, grpc=emergency.grpc_toml(17140)))
    assert cfg["grpc"]["listen"] == "127.0.0.1:17140"
    assert tomllib.loads(run.greenwave_toml(SUMO_DIR, SUMO_DIR))["grpc"] == {"enabled": False}


def test_metrics_take_the_others_overlapping_the_window(tmp_path):
    ti = tmp_path / "tripinfo.xml"
    ti.write_text(
        "<tripinfos>\n"
        '<tripinfo id="early" depart="0" arrival="90" duration="90" timeLoss="5"/>\n'
        '<tripinfo id="ambulance" depart="100" arrival="200" duration="100" timeLoss="12"/>\n'
        '<tripinfo id="during" depart="150" arrival="260" duration="110" timeLoss="20"/>\n'
        '<tripinfo id="after" depart="300" arrival="400" duration="100" timeLoss="30"/>\n'
        '<tripinfo id="stuck" depart="350" arrival="-1" duration="50" timeLoss="40"/>\n'
        '<tripinfo id="late" depart="401" arrival="500" duration="99" timeLoss="99"/>\n'
        '<tripinfo id="never" depart="-1" arrival="-1" duration="-1" timeLoss="0"/>\n'
        "</tripinfos>\n")
    m = emergency.ev_metrics(ti, window_s=300)
    assert m == {"ev_travel_s": 100.0, "ev_time_loss_s": 12.0, "others_n": 3, "others_mean_time_loss_s": 30.0}
