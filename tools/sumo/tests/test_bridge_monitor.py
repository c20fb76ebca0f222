"""The bridge's own safety monitor (bridge.Monitor) on synthetic
indication sequences, and the simulated time the bridge publishes."""

from __future__ import annotations

import copy

import pytest

from bridge import GREEN, RED, YELLOW, FRED, Bridge, Monitor
from common import EPOCH_MS

# A dual-ring junction: 2+6 in one barrier, 4+8 in the other.
J = {
    "tls": "J",
    "rings": [[2, 4], [6, 8]],
    "barriers": [[2, 6], [4, 8]],
    "phases": {p: {"yellow_s": 3.0, "red_clear_s": 2.0, "min_green_s": 5.0} for p in (2, 4, 6, 8)},
    "detectors": [],
    "links": [],
}


def play(changes, end=60.0, step=0.1):
    """Feed the monitor every 0.1 s; `changes` is [(t, {phase: indication})]
    applied from t on (phases not named keep theirs, all start red)."""
    m = Monitor(J)
    ind = {p: RED for p in J["phases"]}
    pending = sorted(changes, key=lambda c: c[0])
    k = 0
    t = 0.0
    while t <= end + 1e-9:
        while k < len(pending) and pending[k][0] <= t + 1e-9:
            ind.update(pending[k][1])
            k += 1
        m.observe(round(t, 1), dict(ind), False)
        t += step
    return m


def good_cycle(t0=0.0, green=10.0):
    """2+6 green, yellow 3, red 2, then 4+8."""
    g_end = t0 + green
    return [
        (t0, {2: GREEN, 6: GREEN}),
        (g_end, {2: YELLOW, 6: YELLOW}),
        (g_end + 3, {2: RED, 6: RED}),
        (g_end + 5, {4: GREEN, 8: GREEN}),
        (g_end + 5 + green, {4: YELLOW, 8: YELLOW}),
        (g_end + 8 + green, {4: RED, 8: RED}),
    ]


def test_a_good_sequence_passes():
    m = play(good_cycle() + good_cycle(t0=30.0))
    assert m.trips == [] and m.started and m.flashes == 0


def test_short_yellow_is_flagged():
    seq = [(0, {2: GREEN, 6: GREEN}), (10, {2: YELLOW, 6: YELLOW}), (12, {2: RED, 6: RED}),
           (17, {4: GREEN, 8: GREEN})]
    m = play(seq, end=20)
    assert any("yellow 2.0s shorter than 3.0s" in t for t in m.trips), m.trips


def test_conflicting_green_is_flagged():
    seq = [(0, {2: GREEN, 6: GREEN}), (10, {4: GREEN})]
    m = play(seq, end=12)
    assert any("conflicting phases 2 and 4 both green/yellow" in t for t in m.trips), m.trips
    # a conflicting yellow counts too
    m = play([(0, {2: GREEN, 6: GREEN}), (10, {2: YELLOW, 6: YELLOW}), (11, {8: YELLOW})], end=12)
    assert any("conflicting phases 2 and 8" in t for t in m.trips), m.trips


def test_green_inside_red_clearance_is_flagged():
    seq = [(0, {2: GREEN, 6: GREEN}), (10, {2: YELLOW, 6: YELLOW}), (13, {2: RED, 6: RED}),
           (14, {4: GREEN, 8: GREEN})]
    m = play(seq, end=16)
    assert any("red clearance 2.0s" in t for t in m.trips), m.trips


def test_green_without_yellow_and_short_green_are_flagged():
    seq = [(0, {2: GREEN, 6: GREEN}), (10, {2: RED, 6: YELLOW}), (13, {6: RED}),
           (15, {4: GREEN, 8: GREEN}), (17, {4: YELLOW, 8: YELLOW})]
    m = play(seq, end=22)
    assert any("phase 2 green ended without yellow" in t for t in m.trips), m.trips
    assert any("phase 4 green 2.0s shorter than min 5.0s" in t for t in m.trips), m.trips


def test_flash_after_start_is_a_trip():
    m = Monitor(J)
    m.observe(0.0, {2: GREEN, 4: RED, 6: GREEN, 8: RED}, False)
    m.observe(0.1, {p: FRED for p in J["phases"]}, True)
    assert m.flashes == 1 and any("flash" in t for t in m.trips)


class FakeApi:
    """Just enough of libsumo for Bridge's constructor and one step."""

    class _Domain:
        def getLastStepVehicleIDs(self, _):
            return ()

        def getLastStepHaltingNumber(self, _):
            return 0

        def setRedYellowGreenState(self, *_):
            pass

    def __init__(self):
        self.inductionloop = self.lanearea = self.lane = self.trafficlight = self._Domain()
        self.steps = 0

    def simulationStep(self):
        self.steps += 1


def published_ms(jn) -> int:
    return (jn.ir[5] << 48) | (jn.ir[6] << 32) | (jn.ir[7] << 16) | jn.ir[8]


@pytest.mark.parametrize("start_ms", [None, 1_796_597_880_000])
def test_the_bridge_publishes_the_start_time(single_model, start_ms):
    j = dict(copy.deepcopy(single_model["C"]), port=0)
    kw = {} if start_ms is None else {"start_ms": start_ms}
    api = FakeApi()
    br = Bridge({"C": j}, api, 0.1, lambda t: False, **kw)
    jn = br.juncs[0]
    t0 = EPOCH_MS if start_ms is None else start_ms
    assert published_ms(jn) == t0
    assert jn.ir[9] == 100
    br._advance()
    assert api.steps == 1 and published_ms(jn) == t0 + 100
