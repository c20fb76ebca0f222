"""SUMO <-> Greenwave bridge: every signalised junction is a simulated
cabinet on Modbus TCP (pymodbus server, one port per junction, unit 1),
with the register map of docs/modbus.md / src/config/registers.rs:

input registers (FC04)
  0..3   detector presence, channel n = bit (n-1)%16 of register (n-1)/16
  4      cabinet status bits (0: nothing to report)
  5..8   simulated time, u64 ms, most significant word first
  9      simulated step in ms (= the daemon's tick)
  10..73 16-bit wrapping volume counter per detector channel
  74..89 camera zone counters (unused, 0)
  90..105 camera zone queues: vehicles standing on each stop-bar lane
         (netmodel.camera_zones), read when the controller maps the zones
holding registers (FC03/FC16)
  0..15  phase 1..16 vehicle indication (0 dark, 1 red, 2 yellow, 3 green,
         4 flashing red, 5 flashing yellow)
  16..31 pedestrian indications, 32..39 overlap A..H indications
  40 heartbeat, 41 requested mode (1 normal, 2 flash), 42 flash reason
  43..46 step acknowledgement, u64 ms (the simulated time of the frame)

The simulated time starts at `start_ms` (run.py --start-time; default
common.EPOCH_MS) at SUMO time 0 and advances one step per SUMO step.

Lockstep: SUMO is advanced one step only when every junction has
acknowledged the current simulated time; the outputs acknowledged for
time T are applied to SUMO's links for the step T -> T + step, then the
detectors are read and T + step is published. The daemon runs unmodified
with clock = "cabinet".

The bridge has its own safety monitor over the outputs it sees (it does not
trust the daemon's): conflicting phases showing green or yellow together
(ring-barrier), a green ended without yellow, a yellow shorter than
yellow_s, a conflicting green started before the red clearance ended, a
green shorter than its minimum, and any flash after start-up. Each is a
trip; the run reports them all.
"""

from __future__ import annotations

import asyncio
import logging

from common import EPOCH_MS
from netmodel import CAMERA_QUEUE_REG, LinkStates, camera_zones, compatible

DARK, RED, YELLOW, GREEN, FRED, FYELLOW = 0, 1, 2, 3, 4, 5
MODE_FLASH = 2
IR_SIZE = 128
HR_SIZE = 128
TOL = 0.051  # s: one tick of slack for rounding


class Monitor:
    """Independent conflict and clearance monitor for one junction."""

    def __init__(self, j: dict):
        self.j = j
        self.ph = j["phases"]
        self.prev = {p: RED for p in self.ph}
        self.since = {p: 0.0 for p in self.ph}
        self.yellow_end = {p: -1e9 for p in self.ph}
        self.started = False  # first steady green seen (start-up over)
        self.trips: list[str] = []
        self.flashes = 0
        self.in_flash = False

    def trip(self, t: float, msg: str):
        if len(self.trips) < 50:
            self.trips.append(f"{self.j['tls']} t={t:.1f}s: {msg}")
        else:
            self.trips.append("...")

    def observe(self, t: float, ind: dict, flash: bool):
        if flash:
            if self.started and not self.in_flash:
                self.flashes += 1
                self.trip(t, "controller went to flash")
            self.in_flash = True
            for p in self.ph:
                self.prev[p] = ind[p]
                self.since[p] = t
            return
        self.in_flash = False
        live = [p for p in self.ph if ind[p] in (GREEN, YELLOW)]
        for a in range(len(live)):
            for b in range(a + 1, len(live)):
                if not compatible(self.j, live[a], live[b]):
                    self.trip(t, f"conflicting phases {live[a]} and {live[b]} both green/yellow")
        for p, v in self.ph.items():
            old, new = self.prev[p], ind[p]
            if old == new:
                continue
            dur = t - self.since[p]
            if old == GREEN and new != YELLOW:
                self.trip(t, f"phase {p} green ended without yellow ({old}->{new})")
            if old == GREEN and new == YELLOW and self.started and dur < v["min_green_s"] - TOL:
                self.trip(t, f"phase {p} green {dur:.1f}s shorter than min {v['min_green_s']}s")
            if old == YELLOW and dur < v["yellow_s"] - TOL:
                self.trip(t, f"phase {p} yellow {dur:.1f}s shorter than {v['yellow_s']}s")
            if old == YELLOW:
                self.yellow_end[p] = t
            if new == GREEN:
                self.started = True
                for q, w in self.ph.items():
                    if q != p and not compatible(self.j, p, q):
                        gap = t - self.yellow_end[q]
                        if gap < w["red_clear_s"] - TOL:
                            self.trip(t, f"phase {p} green {gap:.1f}s after phase {q}'s yellow, red clearance {w['red_clear_s']}s")
            self.prev[p] = new
            self.since[p] = t


class Junction:
    def __init__(self, j: dict, api, step_ms: int):
        self.j = j
        self.api = api
        self.tls = j["tls"]
        self.port = j["port"]
        self.ir = [0] * IR_SIZE
        self.hr = [0] * HR_SIZE
        self.ir[9] = step_ms
        self.ls = LinkStates(j)
        self.phase_of = self.ls.phase_of
        self.monitor = Monitor(j)
        # (channel, SUMO detector id, its TraCI domain): the rig's own and
        # a user's induction loops (e1), or a user's lane area detectors (e2)
        self.dets = [(d["channel"], d["id"], api.lanearea if d.get("sumo") == "e2" else api.inductionloop)
                     for d in j["detectors"]]
        self.prev_ids = {d: set() for _, d, _ in self.dets}
        self.volume = {c: 0 for c, _, _ in self.dets}
        self.camera_lanes = [d["lane"] for d in camera_zones(j)]
        self.acked = False
        self.last_state = None
        self.writes = 0
        self.reads = 0

    def indications(self) -> tuple[dict, bool]:
        ind = {p: self.hr[p - 1] for p in self.j["phases"]}
        flash = self.hr[41] == MODE_FLASH or any(v in (FRED, FYELLOW) for v in ind.values())
        return ind, flash

    def apply(self, t: float):
        ind, flash = self.indications()
        self.monitor.observe(t, ind, flash)
        green = frozenset(p for p, v in ind.items() if v == GREEN)
        yellow = frozenset(p for p, v in ind.items() if v == YELLOW)
        state = list(self.ls.state(green, yellow))
        for i, p in enumerate(self.phase_of):
            if p is None:
                continue  # no vehicle link (a pedestrian crossing): red
            v = ind[p]
            if v == FRED:
                state[i] = "s"
            elif v == FYELLOW:
                state[i] = "o"
            elif v == DARK:
                state[i] = "O" if self.hr[41] != 0 else "r"  # nothing written yet: hold red
        s = "".join(state)
        if s != self.last_state:
            self.api.trafficlight.setRedYellowGreenState(self.tls, s)
            self.last_state = s

    def sense(self, t_ms: int):
        pres = [0, 0, 0, 0]
        for ch, did, domain in self.dets:
            ids = domain.getLastStepVehicleIDs(did)
            if ids:
                pres[(ch - 1) // 16] |= 1 << ((ch - 1) % 16)
                s = set(ids)
                new = len(s - self.prev_ids[did])
                if new:
                    self.volume[ch] = (self.volume[ch] + new) & 0xFFFF
                    self.ir[10 + ch - 1] = self.volume[ch]
                self.prev_ids[did] = s
            elif self.prev_ids[did]:
                self.prev_ids[did] = set()
        self.ir[0:4] = pres
        for k, lane in enumerate(self.camera_lanes):
            self.ir[CAMERA_QUEUE_REG + k] = self.api.lane.getLastStepHaltingNumber(lane)
        self.ir[5] = (t_ms >> 48) & 0xFFFF
        self.ir[6] = (t_ms >> 32) & 0xFFFF
        self.ir[7] = (t_ms >> 16) & 0xFFFF
        self.ir[8] = t_ms & 0xFFFF


class Bridge:
    """Serve the junctions, step SUMO in lockstep with the daemon.

    `step_fn(t)` is called after each SUMO step (metrics, end check) and
    returns True to stop."""

    def __init__(self, model: dict, api, step_s: float, step_fn, host="127.0.0.1", start_ms: int = EPOCH_MS):
        self.api = api
        self.step_ms = int(round(step_s * 1000))
        self.step_s = step_s
        self.host = host
        self.juncs = [Junction(j, api, self.step_ms) for j in model.values()]
        self.t_ms = start_ms
        self.sim_t = 0.0
        self.step_fn = step_fn
        self.remaining = len(self.juncs)
        self.done = asyncio.Event()
        self.servers = []
        self.steps = 0
        self.stopping = False
        for jn in self.juncs:
            jn.sense(self.t_ms)

    def _advance(self):
        for jn in self.juncs:
            jn.apply(self.sim_t)
            jn.acked = False
        self.api.simulationStep()
        self.steps += 1
        self.sim_t += self.step_s
        self.t_ms += self.step_ms
        for jn in self.juncs:
            jn.sense(self.t_ms)
        self.remaining = len(self.juncs)
        if self.step_fn(self.sim_t):
            self.stopping = True
            self.done.set()

    def _on_write(self, jn: Junction, address: int, values):
        jn.hr[address:address + len(values)] = list(values)
        jn.writes += 1
        ack = (jn.hr[43] << 48) | (jn.hr[44] << 32) | (jn.hr[45] << 16) | jn.hr[46]
        if not self.stopping and ack >= self.t_ms and not jn.acked:
            jn.acked = True
            self.remaining -= 1
            if self.remaining == 0:
                self._advance()

    def _action(self, jn: Junction):
        async def action(function_code, start_address, address, count, registers, set_values):
            if function_code == 4:
                jn.reads += 1
                off = address - start_address
                registers[off:off + count] = jn.ir[address:address + count]
            elif function_code in (6, 16) and set_values is not None:
                vals = set_values if isinstance(set_values, list) else [set_values]
                self._on_write(jn, address, vals)
            return None
        return action

    async def start(self):
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        logging.getLogger("pymodbus").setLevel(logging.ERROR)
        for jn in self.juncs:
            dev = SimDevice(
                id=1,
                simdata=(
                    [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                    [SimData(0, count=64, values=False, datatype=DataType.BITS)],
                    [SimData(0, count=HR_SIZE, values=0, datatype=DataType.REGISTERS)],
                    [SimData(0, count=IR_SIZE, values=0, datatype=DataType.REGISTERS)],
                ),
                action=self._action(jn),
            )
            srv = ModbusTcpServer(dev, address=(self.host, jn.port))
            await srv.serve_forever(background=True)
            self.servers.append(srv)

    async def stop(self):
        for s in self.servers:
            try:
                await asyncio.wait_for(s.shutdown(), 2.0)
            except Exception:  # noqa: BLE001
                pass

    def trips(self) -> list[str]:
        return [t for jn in self.juncs for t in jn.monitor.trips]

    def flashes(self) -> int:
        return sum(jn.monitor.flashes for jn in self.juncs)
