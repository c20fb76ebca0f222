"""The city network and a run split over several daemons (run.py
--greenwave-daemons): the split, each daemon's greenwave.toml (its remote
corridor members, the broker's url), and the broker the rig starts."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest

import broker
import import_net
import run
from conftest import SUMO_DIR

CITY_NET = SUMO_DIR / "scenarios" / "city" / "city.net.xml"


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    out = tmp_path_factory.mktemp("city")
    model = import_net.import_net(CITY_NET, out, base_port=17100, mode="adaptive", style="schedule")
    return model, import_net.corridors(CITY_NET, model)


def test_city_has_16_signals_unequal_blocks_and_turning_bays(city):
    model, corridors = city
    assert len(model) == 16
    # the four avenues are corridors of four, east-west, with unequal travel times
    assert [c["members"] for c in corridors] == [[f"C{r}{c}" for c in range(4)] for r in range(4)]
    assert len(set(corridors[0]["travel_s"])) == 3
    # protected lefts from bays on the avenues everywhere; the second street shares its lane
    for tid, j in model.items():
        assert {1, 5} <= set(j["phases"]), tid
        assert ({3, 7} <= set(j["phases"])) == (tid[2] != "1"), tid


def test_two_daemons_split_the_avenues_in_halves(city):
    model, _ = city
    west, east = import_net.split_daemons(CITY_NET, model, 2)
    assert sorted(west + east) == sorted(model)
    assert sorted(west) == [f"C{r}{c}" for r in range(4) for c in (0, 1)]
    assert sorted(east) == [f"C{r}{c}" for r in range(4) for c in (2, 3)]
    assert [len(g) for g in import_net.split_daemons(CITY_NET, model, 3)] == [6, 5, 5]
    assert import_net.split_daemons(CITY_NET, model, 1) == [sorted(model, key=lambda t: (t[2], t))]
    for n in (0, 17):
        with pytest.raises(ValueError, match="give 1 to 16"):
            import_net.split_daemons(CITY_NET, model, n)


def test_each_daemon_lists_the_others_members_as_remote(city, tmp_path):
    model, corridors = city
    west, east = import_net.split_daemons(CITY_NET, model, 2)
    text = run.greenwave_toml(tmp_path / "ctl", tmp_path / "log",
                              corridors=import_net.corridor_toml(corridors, set(west)),
                              nats_url="nats://127.0.0.1:23048")
    doc = tomllib.loads(text)
    assert doc["nats"] == {"url": "nats://127.0.0.1:23048"}
    assert doc["clock"] == "cabinet"
    assert [c["remote"] for c in doc["corridor"]] == [[f"C{r}2", f"C{r}3"] for r in range(4)]
    assert all(c["members"] == [f"C{r}{k}" for k in range(4)] for r, c in enumerate(doc["corridor"]))
    # the west daemon hears the first east member of each avenue, and the other way round
    assert import_net.remote_neighbours(corridors, set(west)) == {f"C{r}2" for r in range(4)}
    assert import_net.remote_neighbours(corridors, set(east)) == {f"C{r}1" for r in range(4)}
    # one daemon: no remote members, no broker
    one = tomllib.loads(run.greenwave_toml(tmp_path / "ctl", tmp_path / "log",
                                           corridors=import_net.corridor_toml(corridors)))
    assert "nats" not in one and all("remote" not in c for c in one["corridor"])


def test_a_corridor_with_no_member_here_is_left_out():
    cs = [{"members": ["a", "b"], "travel_s": [10.0]}, {"members": ["c", "d"], "travel_s": [12.0]}]
    doc = tomllib.loads(import_net.corridor_toml(cs, {"a"}))
    assert doc["corridor"] == [{"members": ["a", "b"], "travel_s": [10.0], "remote": ["b"]}]


def test_daemons_on_the_command_line():
    a = run.parse_args(["--scenario", "city", "--greenwave-daemons", "2"])
    assert a.greenwave_daemons == 2
    assert run.parse_args(["--scenario", "city"]).greenwave_daemons == 1
    with pytest.raises(SystemExit):
        run.parse_args(["--scenario", "city", "--greenwave-daemons", "0"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_broker_starts_reports_and_stops(tmp_path: Path):
    b = broker.Broker(free_port(), tmp_path / "nats")
    b.start()
    try:
        with socket.create_connection(("127.0.0.1", b.port), timeout=2) as s:
            assert s.recv(4096).startswith(b"INFO ")  # a NATS server greets every client
        # no daemon connected: nothing counted for either
        assert b.neighbour_traffic([{"C02"}, {"C01"}]) == [
            {"daemon": 1, "subscribed": ["C02"], "published": None, "received": None},
            {"daemon": 2, "subscribed": ["C01"], "published": None, "received": None},
        ]
    finally:
        b.stop()
    assert b.proc.returncode is not None
