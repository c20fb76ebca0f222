#!/usr/bin/env python3
"""Build the SIL scenario networks reproducibly (plain XML -> netconvert).

    .venv/bin/python tools/sumo/make_scenarios.py            # all
    .venv/bin/python tools/sumo/make_scenarios.py single grid

Writes tools/sumo/scenarios/<name>/<name>.{nod,edg,con}.xml (the sources)
and <name>.net.xml. Demand is generated per level and seed at run time by
demand.py.

Scenarios (right-hand traffic, north up):
- single:   one four-leg intersection. Main street east-west, 2 lanes each
            way at 50 km/h; side street north-south, 1 lane at 40 km/h; a
            left-turn pocket on every approach (protected lefts 1/5/3/7).
- arterial: five intersections on a 50 km/h east-west arterial (2 lanes
            plus a left pocket at each), uneven spacing 280-400 m; cross
            streets of one lane, with pockets at three of them and shared
            lanes (permissive lefts) at two.
- grid:     3x3 grid, 300 m blocks. East-west avenues 2 lanes + pockets at
            50 km/h, north-south streets 1 lane + pockets at 40 km/h.
- tnet:     an irregular corridor: a T-junction (side road from the north),
            a four-leg intersection with no pockets (every left permissive),
            a T-junction (side road from the south, a protected left into
            it from the main road) and a skewed four-leg intersection whose
            side road meets at about 60 degrees. Main road 60 km/h 2 lanes,
            side roads 30-40 km/h 1 lane.
- city:     4x4 grid, 16 signals, unequal blocks: 230, 350 and 160 m
            east-west, 300, 170 and 250 m north-south. East-west avenues
            2 lanes + left-turn bays at 50 km/h, the bay about a quarter of
            its link (40-90 m); north-south streets 1 lane at 40 km/h with
            bays of 40-60 m, except the second street (x = 230), whose lefts
            share the lane (permissive). Run as one daemon or split into
            several joined through NATS (run.py --greenwave-daemons).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SCENARIOS, fmt, run, sumo_bin  # noqa: E402

POCKET_M = 60.0


@dataclass
class Road:
    a: str
    b: str
    lanes: int
    kmh: float
    prio: int
    # signalised ends whose approach along this road has a left pocket
    pockets: set = field(default_factory=set)
    # the pocket's (turning bay's) length
    pocket_m: float = POCKET_M


@dataclass
class Scenario:
    name: str
    nodes: dict  # id -> (x, y, signalised)
    roads: list


def single() -> Scenario:
    n = {"C": (0, 0, True), "W": (-400, 0, False), "E": (400, 0, False), "S": (0, -350, False), "N": (0, 350, False)}
    roads = [
        Road("W", "C", 2, 50, 3, {"C"}),
        Road("C", "E", 2, 50, 3, {"C"}),
        Road("S", "C", 1, 40, 2, {"C"}),
        Road("C", "N", 1, 40, 2, {"C"}),
    ]
    return Scenario("single", n, roads)


def arterial() -> Scenario:
    xs = [0, 280, 640, 900, 1300]
    pocket_side = [True, False, True, False, True]
    n = {"W": (-350, 0, False), "E": (xs[-1] + 350, 0, False)}
    roads = []
    prev = "W"
    for i, x in enumerate(xs):
        j = f"A{i + 1}"
        n[j] = (x, 0, True)
        roads.append(Road(prev, j, 2, 50, 3, {j} | ({prev} if prev != "W" else set())))
        prev = j
        n[f"{j}S"] = (x, -250, False)
        n[f"{j}N"] = (x, 250, False)
        p = {j} if pocket_side[i] else set()
        roads.append(Road(f"{j}S", j, 1, 40, 2, p))
        roads.append(Road(j, f"{j}N", 1, 40, 2, p))
    roads.append(Road(prev, "E", 2, 50, 3, {prev}))
    return Scenario("arterial", n, roads)


def grid() -> Scenario:
    n = {}
    roads = []
    sp = 300
    for r in range(3):
        for c in range(3):
            n[f"G{r}{c}"] = (c * sp, r * sp, True)
    for r in range(3):
        n[f"W{r}"] = (-250, r * sp, False)
        n[f"E{r}"] = (2 * sp + 250, r * sp, False)
        row = [f"W{r}"] + [f"G{r}{c}" for c in range(3)] + [f"E{r}"]
        for a, b in zip(row, row[1:]):
            roads.append(Road(a, b, 2, 50, 3, {x for x in (a, b) if x.startswith("G")}))
    for c in range(3):
        n[f"S{c}"] = (c * sp, -250, False)
        n[f"N{c}"] = (c * sp, 2 * sp + 250, False)
        col = [f"S{c}"] + [f"G{r}{c}" for r in range(3)] + [f"N{c}"]
        for a, b in zip(col, col[1:]):
            roads.append(Road(a, b, 1, 40, 2, {x for x in (a, b) if x.startswith("G")}))
    return Scenario("grid", n, roads)


def tnet() -> Scenario:
    n = {
        "W": (-350, 0, False),
        "T1": (0, 0, True),  # T, side road from the north
        "T1N": (0, 260, False),
        "X2": (220, 0, True),  # four-leg, no pockets: permissive lefts
        "X2N": (220, 240, False),
        "X2S": (220, -260, False),
        "T3": (600, 0, True),  # T, side road from the south
        "T3S": (600, -280, False),
        "X4": (900, 0, True),  # skewed four-leg
        "X4N": (900 + 150, 260, False),  # about 60 degrees
        "X4S": (900 - 150, -260, False),
        "E": (1250, 0, False),
    }
    roads = [
        Road("W", "T1", 2, 60, 3, set()),
        Road("T1", "X2", 2, 60, 3, set()),
        Road("X2", "T3", 2, 60, 3, set()),
        Road("T3", "X4", 2, 60, 3, {"T3", "X4"}),
        Road("X4", "E", 2, 60, 3, {"X4"}),
        Road("T1N", "T1", 1, 30, 2, set()),
        Road("X2N", "X2", 1, 40, 2, set()),
        Road("X2", "X2S", 1, 40, 2, set()),
        Road("T3S", "T3", 1, 40, 2, set()),
        Road("X4N", "X4", 1, 40, 2, set()),
        Road("X4", "X4S", 1, 40, 2, set()),
    ]
    return Scenario("tnet", n, roads)


def city() -> Scenario:
    xs = [0, 230, 580, 740]
    ys = [0, 300, 470, 720]
    stub = 250
    shared_lefts = {1}  # street columns whose lefts share the through lane

    def bay(length, share, lo, hi):
        # a turning bay about `share` of its link, within what a block allows
        return min(hi, max(lo, round(share * length / 5) * 5))

    n = {}
    roads = []
    for r, y in enumerate(ys):
        for c, x in enumerate(xs):
            n[f"C{r}{c}"] = (x, y, True)
    for r, y in enumerate(ys):
        n[f"W{r}"] = (-stub, y, False)
        n[f"E{r}"] = (xs[-1] + stub, y, False)
        row = [f"W{r}"] + [f"C{r}{c}" for c in range(len(xs))] + [f"E{r}"]
        for a, b in zip(row, row[1:]):
            length = abs(n[b][0] - n[a][0])
            roads.append(Road(a, b, 2, 50, 3, {x for x in (a, b) if x.startswith("C")}, bay(length, 0.25, 40, 90)))
    for c, x in enumerate(xs):
        n[f"S{c}"] = (x, -stub, False)
        n[f"N{c}"] = (x, ys[-1] + stub, False)
        col = [f"S{c}"] + [f"C{r}{c}" for r in range(len(ys))] + [f"N{c}"]
        for a, b in zip(col, col[1:]):
            length = abs(n[b][1] - n[a][1])
            p = set() if c in shared_lefts else {x for x in (a, b) if x.startswith("C")}
            roads.append(Road(a, b, 1, 40, 2, p, bay(length, 0.25, 30, 60)))
    return Scenario("city", n, roads)


ALL = {"single": single, "arterial": arterial, "grid": grid, "tnet": tnet, "city": city}


def turn(u, v, w) -> str:
    """'s', 'l' or 'r' for u -> v -> w (y up, right-hand traffic)."""
    hx, hy = v[0] - u[0], v[1] - u[1]
    ox, oy = w[0] - v[0], w[1] - v[1]
    ang = math.degrees(math.atan2(hx * oy - hy * ox, hx * ox + hy * oy))
    if ang > 35:
        return "l"
    if ang < -35:
        return "r"
    return "s"


def build(sc: Scenario, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    nodes = dict(sc.nodes)
    pnodes = {}
    edges = []  # (id, from, to, lanes, speed m/s, prio)
    last_edge = {}  # (u, v) -> (edge id, lanes incl. pocket, pocket?)
    first_edge = {}  # (u, v) -> edge id leaving u
    for r in sc.roads:
        for u, v in ((r.a, r.b), (r.b, r.a)):
            eid = f"{u}_{v}"
            ux, uy, _ = nodes[u]
            vx, vy, sig = nodes[v]
            length = math.hypot(vx - ux, vy - uy)
            speed = r.kmh / 3.6
            if sig and v in r.pockets:
                f = (length - r.pocket_m) / length
                pid = f"{u}_{v}_p"
                pnodes[pid] = (ux + (vx - ux) * f, uy + (vy - uy) * f)
                edges.append((eid, u, pid, r.lanes, speed, r.prio))
                edges.append((eid + "_P", pid, v, r.lanes + 1, speed, r.prio))
                last_edge[(u, v)] = (eid + "_P", r.lanes + 1, True, eid)
            else:
                edges.append((eid, u, v, r.lanes, speed, r.prio))
                last_edge[(u, v)] = (eid, r.lanes, False, eid)
            first_edge[(u, v)] = (eid, r.lanes)
    nod = ['<nodes>']
    for k, (x, y, sig) in nodes.items():
        t = "traffic_light" if sig else "priority"
        nod.append(f'  <node id="{k}" x="{fmt(x)}" y="{fmt(y)}" type="{t}"/>')
    for k, (x, y) in pnodes.items():
        nod.append(f'  <node id="{k}" x="{fmt(x)}" y="{fmt(y)}" type="priority"/>')
    nod.append('</nodes>')
    edg = ['<edges>']
    for eid, a, b, lanes, speed, prio in edges:
        edg.append(f'  <edge id="{eid}" from="{a}" to="{b}" numLanes="{lanes}" speed="{speed:.2f}" priority="{prio}"/>')
    edg.append('</edges>')
    con = ['<connections>']
    # Pocket widening: lane i -> i, and the leftmost lane also feeds the pocket.
    for (u, v), (eid, lanes, pocket, up) in last_edge.items():
        if pocket:
            n0 = lanes - 1
            for i in range(n0):
                con.append(f'  <connection from="{up}" to="{eid}" fromLane="{i}" toLane="{i}"/>')
            con.append(f'  <connection from="{up}" to="{eid}" fromLane="{n0 - 1}" toLane="{n0}"/>')
    # Turning connections at every junction with more than 2 legs.
    nbrs = {}
    for r in sc.roads:
        nbrs.setdefault(r.a, []).append(r.b)
        nbrs.setdefault(r.b, []).append(r.a)
    for v, ns in nbrs.items():
        if len(ns) < 3:
            continue
        for u in ns:
            eid, lanes, pocket, _ = last_edge[(u, v)]
            nthru = lanes - 1 if pocket else lanes
            for w in ns:
                if w == u:
                    continue
                oid, olanes = first_edge[(v, w)]
                d = turn(nodes[u], nodes[v], nodes[w])
                if d == "r":
                    con.append(f'  <connection from="{eid}" to="{oid}" fromLane="0" toLane="0"/>')
                elif d == "l":
                    fl = lanes - 1 if pocket else nthru - 1
                    con.append(f'  <connection from="{eid}" to="{oid}" fromLane="{fl}" toLane="{olanes - 1}"/>')
                else:
                    for i in range(nthru):
                        con.append(f'  <connection from="{eid}" to="{oid}" fromLane="{i}" toLane="{min(i, olanes - 1)}"/>')
    con.append('</connections>')
    base = out / sc.name
    Path(f"{base}.nod.xml").write_text("\n".join(nod) + "\n")
    Path(f"{base}.edg.xml").write_text("\n".join(edg) + "\n")
    Path(f"{base}.con.xml").write_text("\n".join(con) + "\n")
    net = Path(f"{base}.net.xml")
    run([
        sumo_bin("netconvert"),
        "--node-files", f"{base}.nod.xml",
        "--edge-files", f"{base}.edg.xml",
        "--connection-files", f"{base}.con.xml",
        "--output-file", str(net),
        "--no-turnarounds", "true",
        "--tls.default-type", "static",
        "--junctions.corner-detail", "5",
        "--no-warnings", "true",
        "--output.street-names", "false",
    ])
    return net


def main(argv: list[str]) -> None:
    names = argv or list(ALL)
    for name in names:
        sc = ALL[name]()
        net = build(sc, SCENARIOS / name)
        print(f"{name}: {net.relative_to(SCENARIOS.parent.parent.parent)}")


if __name__ == "__main__":
    main(sys.argv[1:])
