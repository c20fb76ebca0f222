"""Cabinets played by pymodbus that time what the heads show, independently
of greenwave's own code: the head-side measurement of benches/busy_host.sh.

It serves greenwave's default register map (docs/modbus.md) for N cabinets
as unit ids 1.. on one loopback port per process (at most 247 a port, the
Modbus unit ids; --processes spreads them),
writes one controller file per cabinet pointing greenwave at it (the
shipped intersections in turn, with their [cabinet] table replaced), and
places random detector and pedestrian calls on the channels each file
declares, so every phase and crossing gets served.

For every write (FC16 of holding registers 0..43) it takes the arrival
time, and from the indications it derives, per intersection, what the heads
showed:
- yellow: a vehicle head's yellow, from the write showing it to the write
  showing red;
- red clearance: from that red to the next green of a phase in the same
  ring (at a barrier that includes waiting for the other ring, so it can
  only be longer than the phase's red clearance);
- pedestrian clearance: flashing don't walk, to don't walk;
- minimum green: a green, to its yellow;
each against the value in the controller file; an interval is "short" when
it is shorter than that by more than --tolerance-ms (the arrival times are
this process's, taken as pymodbus decodes each request). Intervals that
begin or end in flash, or span one, are not counted. Also: the flashes
seen (requested mode 2, by flash reason, counted when the reason changes)
and the write period (time between two writes to one cabinet) p50/p99/max.

Run it at real-time priority (benches/busy_host.sh uses chrt) when the
host is loaded: a real cabinet is its own hardware, and this process must
not be the one that is late.

Prints `PORT <n> ...` once serving (one port per --processes), then
`ready`; on SIGTERM or SIGINT it writes the report (--stats-json) and
prints a summary.
"""

import argparse
import asyncio
import json
import multiprocessing
import random
import signal
import sys
import time
import tomllib
from pathlib import Path

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.pdu.register_message import WriteMultipleRegistersRequest
from pymodbus.server import ModbusTcpServer

RED, YELLOW, GREEN = 1, 2, 3
PED_DONT_WALK, PED_CLEAR = 1, 2
MODE_NORMAL, MODE_FLASH = 1, 2
KINDS = ("yellow", "red_clear", "ped_clear", "min_green")


def with_cabinet(text, new_id, address, unit):
    """The controller file `text` with its id set and its [cabinet] table
    pointing at this process (line by line, to keep every other key)."""
    out, section, skipping = [], None, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
            skipping = stripped == "[cabinet]" or stripped.startswith("[cabinet.")
            if stripped == "[cabinet]":
                out += ["[cabinet]", 'kind = "modbus-tcp"', f'address = "{address}"', f"unit_id = {unit}"]
                continue
        if skipping:
            continue
        if section == "[intersection]" and (stripped.startswith("id ") or stripped.startswith("id=")):
            line = f'id = "{new_id}"'
        out.append(line)
    result = "\n".join(out) + "\n"
    parsed = tomllib.loads(result)
    assert parsed["intersection"]["id"] == new_id and parsed["cabinet"]["unit_id"] == unit, new_id
    return result


class Interval:
    """The shortest interval of one kind seen, and how many were short."""

    def __init__(self):
        self.count = 0
        self.short = 0
        self.shortest = None  # (measured, configured)
        self.worst_margin = None  # measured - configured, s

    def add(self, measured, configured, tolerance):
        self.count += 1
        margin = measured - configured
        if self.worst_margin is None or margin < self.worst_margin:
            self.worst_margin = margin
        if self.shortest is None or measured < self.shortest[0]:
            self.shortest = (measured, configured)
        if margin < -tolerance:
            self.short += 1

    def merge(self, other):
        for m, c in ([other.shortest] if other.shortest else []):
            if self.shortest is None or m < self.shortest[0]:
                self.shortest = (m, c)
        if other.worst_margin is not None and (self.worst_margin is None or other.worst_margin < self.worst_margin):
            self.worst_margin = other.worst_margin
        self.count += other.count
        self.short += other.short

    def report(self):
        return {
            "count": self.count,
            "short": self.short,
            "shortest_s": round(self.shortest[0], 4) if self.shortest else None,
            "configured_s": self.shortest[1] if self.shortest else None,
            "worst_margin_ms": round(self.worst_margin * 1000, 1) if self.worst_margin is not None else None,
        }


class Unit:
    """One cabinet: its controller's timings and what its heads showed."""

    def __init__(self, cid, intersection, cfg, tolerance):
        self.id = cid
        self.intersection = intersection
        self.tolerance = tolerance
        self.phases = {p["number"]: p for p in cfg["phase"]}
        self.ring_of = {}
        for r, ring in enumerate(cfg["sequence"]["rings"]):
            for p in ring:
                self.ring_of[p] = r
        dets = cfg.get("detector", [])
        self.vehicle_channels = [d["channel"] for d in dets if d.get("kind", "vehicle") != "pedestrian"]
        self.ped_channels = [d["channel"] for d in dets if d.get("kind") == "pedestrian"]
        self.presence = 0
        self.last_t = None
        self.gaps = []
        self.writes = 0
        self.mode = 0
        self.reason = 0
        self.flashes = {}
        self.vehicle = {}  # phase -> (indication, since or None when it began outside normal mode)
        self.ped = {}
        self.red_since = {}  # phase -> time its red clearance began
        self.intervals = {k: Interval() for k in KINDS}

    def write(self, t, regs):
        self.writes += 1
        if self.last_t is not None:
            self.gaps.append(t - self.last_t)
        self.last_t = t
        mode, reason = regs[41], regs[42]
        if mode == MODE_FLASH and (self.mode != MODE_FLASH or reason != self.reason):
            self.flashes[reason] = self.flashes.get(reason, 0) + 1
        self.mode, self.reason = mode, reason
        normal = mode == MODE_NORMAL
        if not normal:
            # Nothing that spans a flash is an interval the controller timed.
            self.red_since.clear()
        for p, ph in self.phases.items():
            self.vehicle_head(p, ph, regs[p - 1], t, normal)
            if "ped_clear_s" in ph:
                self.ped_head(ph, regs[16 + p - 1], p, t, normal)

    def vehicle_head(self, p, ph, v, t, normal):
        prev, since = self.vehicle.get(p, (None, None))
        if v == prev:
            if not normal:
                self.vehicle[p] = (v, None)
            return
        self.vehicle[p] = (v, t if normal else None)
        if not normal or since is None:
            return
        if prev == YELLOW and v == RED:
            self.intervals["yellow"].add(t - since, ph["yellow_s"], self.tolerance)
            self.red_since[p] = t
        elif prev == GREEN and v == YELLOW:
            self.intervals["min_green"].add(t - since, ph["min_green_s"], self.tolerance)
        if v == GREEN:
            ring = self.ring_of.get(p)
            for q in [q for q in self.red_since if self.ring_of.get(q) == ring]:
                self.intervals["red_clear"].add(t - self.red_since.pop(q), self.phases[q]["red_clear_s"], self.tolerance)

    def ped_head(self, ph, v, p, t, normal):
        prev, since = self.ped.get(p, (None, None))
        if v == prev:
            if not normal:
                self.ped[p] = (v, None)
            return
        self.ped[p] = (v, t if normal else None)
        if normal and since is not None and prev == PED_CLEAR and v == PED_DONT_WALK:
            self.intervals["ped_clear"].add(t - since, ph["ped_clear_s"], self.tolerance)

    def stimulate(self, rng):
        """Detectors come and go; pedestrians press now and then."""
        for ch in self.vehicle_channels:
            if rng.random() < 0.15:
                self.presence ^= 1 << (ch - 1)
        for ch in self.ped_channels:
            bit = 1 << (ch - 1)
            if self.presence & bit or rng.random() < 0.05:
                self.presence ^= bit
        return [(self.presence >> (16 * i)) & 0xFFFF for i in range(4)]


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def report(units):
    by_intersection = {}
    for u in units.values():
        r = by_intersection.setdefault(
            u.intersection, {"cabinets": 0, "writes": 0, "flashes": {}, "intervals": {k: Interval() for k in KINDS}}
        )
        r["cabinets"] += 1
        r["writes"] += u.writes
        for reason, n in u.flashes.items():
            r["flashes"][str(reason)] = r["flashes"].get(str(reason), 0) + n
        for k in KINDS:
            r["intervals"][k].merge(u.intervals[k])
    gaps = sorted(g for u in units.values() for g in u.gaps)
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    out = {
        "cabinets": len(units),
        "writes": sum(u.writes for u in units.values()),
        "write_period_ms": {
            "count": len(gaps),
            "p50": ms(percentile(gaps, 0.5)),
            "p99": ms(percentile(gaps, 0.99)),
            "max": ms(gaps[-1] if gaps else None),
        },
        "flashes": {},
        "intervals": {},
        "intersections": {},
    }
    total = {k: Interval() for k in KINDS}
    for name, r in sorted(by_intersection.items()):
        for k in KINDS:
            total[k].merge(r["intervals"][k])
        for reason, n in r["flashes"].items():
            out["flashes"][reason] = out["flashes"].get(reason, 0) + n
        out["intersections"][name] = {
            "cabinets": r["cabinets"],
            "writes": r["writes"],
            "flashes": r["flashes"],
            **{k: r["intervals"][k].report() for k in KINDS},
        }
    out["intervals"] = {k: total[k].report() for k in KINDS}
    return out


async def serve(k, shard, files, args, events):
    """Serve the cabinets `shard` (global numbers) on one port: this
    process's share. Puts ("ready", k) once its controller files are
    written, and its units on `events` once told to stop."""
    devices = {
        unit: ModbusDeviceContext(ir=ModbusSequentialDataBlock(1, [0] * 110), hr=ModbusSequentialDataBlock(1, [0] * 100))
        for unit in range(1, len(shard) + 1)
    }
    units = {}

    def trace_pdu(sending, pdu):
        if not sending and isinstance(pdu, WriteMultipleRegistersRequest):
            u = units.get(pdu.dev_id)
            if u is not None and pdu.address == 0:
                u.write(time.monotonic(), pdu.registers)
        return pdu

    server = ModbusTcpServer(ModbusServerContext(devices=devices, single=False), address=("127.0.0.1", 0), trace_pdu=trace_pdu)
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]

    tolerance = args.tolerance_ms / 1000
    for unit, number in enumerate(shard, start=1):
        text = files[(number - 1) % len(files)].read_text()
        cfg = tomllib.loads(text)
        base = cfg["intersection"]["id"]
        cid = base if args.count is None else f"{base}-{number:04}"
        (args.write_controllers / f"{cid}.toml").write_text(with_cabinet(text, cid, f"127.0.0.1:{port}", unit))
        units[unit] = Unit(cid, base, tomllib.loads(text), tolerance)
    events.put(("ready", k, port))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rng = random.Random(args.seed + k)
    while not stop.is_set():
        for unit, u in units.items():
            await server.async_setValues(unit, 4, 0, u.stimulate(rng))
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    await server.shutdown()
    events.put(("units", k, list(units.values())))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--controllers", type=Path, required=True, help="controller files to play (the shipped ones)")
    ap.add_argument("--count", type=int, help="cabinets (default: one per file, ids kept)")
    ap.add_argument("--processes", type=int, default=1,
                    help="serve the cabinets from this many processes, one port each (one Python process answers "
                         "a few thousand requests a second: past that the instrument, not the daemon, is late)")
    ap.add_argument("--write-controllers", type=Path, required=True, help="write one controller file per cabinet here")
    ap.add_argument("--stats-json", type=Path, help="write the report here on exit")
    ap.add_argument("--tolerance-ms", type=float, default=1.0, help="an interval this much under its value is not short")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()

    files = sorted(args.controllers.glob("*.toml"))
    count = args.count or len(files)
    processes = max(1, min(args.processes, count))
    if not 1 <= count <= 247 * processes:
        sys.exit(f"--count: 1 to {247 * processes} cabinets (Modbus unit ids: 247 a process)")
    args.write_controllers.mkdir(parents=True, exist_ok=True)
    # Forked before any event loop runs; each child inherits this
    # process's scheduling (chrt) and serves every processes-th cabinet.
    ctx = multiprocessing.get_context("fork")
    events = ctx.Queue()
    shards = [list(range(k + 1, count + 1, processes)) for k in range(processes)]
    children = [ctx.Process(target=lambda k=k: asyncio.run(serve(k, shards[k], files, args, events))) for k in range(processes)]
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    for c in children:
        c.start()
    ports = []
    while len(ports) < processes:
        kind, _, port = events.get()
        if kind == "ready":
            ports.append(port)
    print("PORT " + " ".join(map(str, sorted(ports))), flush=True)
    print("ready", flush=True)
    while not stopping:
        time.sleep(0.2)
    for c in children:
        c.terminate()  # SIGTERM: each child stops serving and sends its units
    units, done = {}, 0
    while done < processes:
        kind, k, payload = events.get()
        if kind == "units":
            done += 1
            for n, u in enumerate(payload):
                units[(k, n)] = u
    for c in children:
        c.join()
    out = report(units)
    out["processes"] = processes
    if args.stats_json:
        args.stats_json.write_text(json.dumps(out, indent=1) + "\n")
    iv = out["intervals"]
    print(
        f"{out['cabinets']} cabinets ({processes} processes), {out['writes']} writes; flashes {out['flashes']}; "
        + ", ".join(f"{k} shortest {iv[k]['shortest_s']} s ({iv[k]['short']} short of {iv[k]['count']})" for k in KINDS)
        + f"; write period p50 {out['write_period_ms']['p50']} p99 {out['write_period_ms']['p99']} max {out['write_period_ms']['max']} ms",
        flush=True,
    )


if __name__ == "__main__":
    main()
