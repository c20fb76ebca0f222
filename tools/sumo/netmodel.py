"""A SUMO network's signalised junctions as NEMA ring-barrier controllers.

`analyze(net)` returns, per traffic light, everything the importer, the
bridge and the baselines share: approaches, the phase of every SUMO link,
rings and barriers, ITE clearances, detectors, and the foe relation used to
compute link states and to check safety.

Phase numbering (NEMA): the main street is the pair of opposite approaches
with the highest road priority (then speed, then lanes). Approach A (the
eastbound or northbound one) runs phase 2, B (opposite) phase 6; a left
pocket on A makes its left protected phase 5, on B phase 1. Side street:
C (A turned left by 90 degrees) phase 4, D phase 8, protected lefts 7 (C)
and 3 (D). A left without a pocket is permissive: it runs with its own
through phase and yields ('g'). A T-junction's lone side approach is C.
"""

from __future__ import annotations

import math

from common import ensure_env

ensure_env()
import sumolib  # noqa: E402

THROUGH_PHASE = {"A": 2, "B": 6, "C": 4, "D": 8}
LEFT_PHASE = {"A": 5, "B": 1, "C": 7, "D": 3}
RING1 = [1, 2, 3, 4]
RING2 = [5, 6, 7, 8]
BARRIER1 = {1, 2, 5, 6}
RANK = {"s": 3, "r": 2, "l": 1}

# ITE kinematic yellow and red clearance (controllers/README.md).
ITE_T = 1.0
ITE_A = 10.0  # ft/s^2
VEH_L = 6.1  # m


def ceil1(x: float) -> float:
    return math.ceil(x * 10 - 1e-6) / 10


def ite_yellow(kmh: float) -> float:
    v = kmh / 3.6 / 0.3048
    return max(3.0, ceil1(ITE_T + v / (2 * ITE_A)))


def ite_red(kmh: float, width_m: float) -> float:
    return max(1.0, ceil1((width_m + VEH_L) / (kmh / 3.6)))


CAMERA_QUEUE_REG = 90  # input registers: camera zone queues (src/config/registers.rs CAMERA_QUEUE)
CAMERA_ZONES = 16


def camera_zones(j: dict) -> list[dict]:
    """The simulated video zones of a junction: one per stop-bar lane (at
    most 16, in channel order), each reporting the vehicles standing on
    that lane as its queue, on the stop-bar loop's channel."""
    return sorted((d for d in j["detectors"] if d["kind"] == "stopbar"), key=lambda d: d["channel"])[:CAMERA_ZONES]


def heading(edge) -> float:
    shp = edge.getShape()
    (x0, y0), (x1, y1) = shp[-2][:2], shp[-1][:2]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def angdiff(a: float, b: float) -> float:
    d = (a - b) % 360
    return d - 360 if d > 180 else d


def _internal_length(net, conn) -> float:
    via = conn.getViaLaneID()
    total = 0.0
    seen = 0
    while via and seen < 4:
        lane = net.getLane(via)
        total += lane.getLength()
        seen += 1
        nxt = [c for c in lane.getOutgoing()]
        via = nxt[0].getViaLaneID() if nxt and nxt[0].getViaLaneID() else None
        if nxt and not via:
            break
    return total


def analyze(net_path: str, unsupported: list | None = None) -> dict:
    """The network's traffic lights as controllers. A traffic light the
    model cannot map (more than four approaches, several junctions under
    one program, more than 64 detectors) raises ValueError, or, when
    `unsupported` is a list, is left out and reported there as (id,
    reason): SUMO's own program keeps running it."""
    net = sumolib.net.readNet(str(net_path), withInternal=True, withPrograms=True)
    out = {}
    for tls in sorted(net.getTrafficLights(), key=lambda t: t.getID()):
        try:
            out[tls.getID()] = _junction(net, tls)
        except ValueError as e:
            if unsupported is None:
                raise
            unsupported.append((tls.getID(), str(e).split(": ", 1)[-1]))
    return out


def _junction(net, tls) -> dict:
    conns = {}
    for in_lane, out_lane, idx in tls.getConnections():
        c = [c for c in in_lane.getOutgoing() if c.getToLane() == out_lane]
        conns[idx] = c[0]
    if not conns:
        raise ValueError(f"{tls.getID()}: controls no links")
    nodes = {c.getFrom().getToNode().getID() for c in conns.values()}
    if len(nodes) != 1:
        raise ValueError(f"{tls.getID()}: one program for {len(nodes)} junctions ({', '.join(sorted(nodes))}); "
                         "one controller per junction is supported")
    node = net.getNode(nodes.pop())
    in_edges = sorted({c.getFrom() for c in conns.values()}, key=lambda e: e.getID())
    hd = {e.getID(): heading(e) for e in in_edges}

    def score(e):
        return (e.getPriority(), e.getSpeed(), e.getLaneNumber())

    pairs = []
    for i, a in enumerate(in_edges):
        for b in in_edges[i + 1:]:
            if abs(abs(angdiff(hd[a.getID()], hd[b.getID()])) - 180) < 50:
                pairs.append((a, b))
    if len(in_edges) > 4:
        raise ValueError(f"{tls.getID()}: {len(in_edges)} approaches (at most 4 supported)")
    if pairs:
        main = max(pairs, key=lambda p: max(score(p[0]), score(p[1])))
    else:
        main = (max(in_edges, key=score),)
    horiz = abs(math.cos(math.radians(hd[main[0].getID()]))) >= 0.5
    ref = 0.0 if horiz else 90.0
    main = sorted(main, key=lambda e: abs(angdiff(hd[e.getID()], ref)))
    label = {main[0].getID(): "A"}
    if len(main) > 1:
        label[main[1].getID()] = "B"
    side = [e for e in in_edges if e.getID() not in label]
    a_hd = hd[main[0].getID()]
    side.sort(key=lambda e: abs(angdiff(hd[e.getID()], a_hd + 90)))
    for e, lab in zip(side, "CD"):
        label[e.getID()] = lab
    if len(label) < len(in_edges):
        raise ValueError(f"{tls.getID()}: {len(in_edges)} approaches, no two of them opposite")

    # Pockets: a lane whose every connection turns left, beside lanes that don't.
    approaches = {}
    for e in in_edges:
        lanes = {}
        for idx, c in conns.items():
            if c.getFrom() == e:
                lanes.setdefault(c.getFromLane().getIndex(), set()).add(_dir(c))
        left_only = [i for i, ds in lanes.items() if ds == {"l"}]
        others = [i for i, ds in lanes.items() if ds != {"l"}]
        pocket = bool(left_only) and bool(others)
        approaches[e.getID()] = {
            "label": label[e.getID()],
            "edge": e.getID(),
            "heading_deg": round(hd[e.getID()], 1),
            "speed_kmh": round(e.getSpeed() * 3.6, 1),
            "priority": e.getPriority(),
            "lanes": e.getLaneNumber(),
            "pocket": pocket,
        }

    links = []
    for idx in sorted(conns):
        c = conns[idx]
        ap = approaches[c.getFrom().getID()]
        d = _dir(c)
        lab = ap["label"]
        lone_side = lab == "C" and "D" not in label.values() and "B" in label.values()
        if d == "l" and ap["pocket"]:
            phase, protected = LEFT_PHASE[lab], True
        else:
            phase, protected = THROUGH_PHASE[lab], d != "l" or lone_side
        links.append({
            "index": idx,
            "junction_index": node.getLinkIndex(c),
            "from_lane": c.getFromLane().getID(),
            "to_lane": c.getToLane().getID(),
            "to_edge": c.getTo().getID(),
            "dir": d,
            "approach": lab,
            "phase": phase,
            "protected": protected,
            "width_m": round(_internal_length(net, c), 1),
        })
    # SUMO's signal state has one character per link index. Indices no
    # vehicle link has (pedestrian crossings) are held red; connections that
    # share an index are one link here (the first of them).
    n = max([max(conns) + 1] + [len(ph.state) for prog in tls.getPrograms().values() for ph in prog.getPhases()])
    foes = [[False] * n for _ in range(n)]
    for a in links:
        for b in links:
            if a["index"] != b["index"] and a["junction_index"] >= 0 and b["junction_index"] >= 0:
                f = node.areFoes(a["junction_index"], b["junction_index"]) or node.areFoes(
                    b["junction_index"], a["junction_index"])
                foes[a["index"]][b["index"]] = bool(f)
    # Two links merging into the same lane also conflict.
    for a in links:
        for b in links:
            if a["index"] != b["index"] and a["to_lane"] == b["to_lane"]:
                foes[a["index"]][b["index"]] = True

    phases = sorted({l["phase"] for l in links})
    ring1 = [p for p in RING1 if p in phases]
    ring2 = [p for p in RING2 if p in phases]
    barriers = [sorted(p for p in phases if p in BARRIER1), sorted(p for p in phases if p not in BARRIER1)]
    barriers = [b for b in barriers if b]

    ph = {}
    main_kmh = max(a["speed_kmh"] for a in approaches.values() if a["label"] in "AB")
    for p in phases:
        ls = [l for l in links if l["phase"] == p]
        aps = {approaches[net.getLane(l["from_lane"]).getEdge().getID()]["edge"] for l in ls}
        kmh = max(approaches[e]["speed_kmh"] for e in aps)
        width = max(l["width_m"] for l in ls)
        is_left = p % 2 == 1
        is_main = p in (2, 6)
        lanes = sorted({l["from_lane"] for l in ls})
        ph[p] = {
            "number": p,
            "name": _phase_name(p, ls, approaches),
            "lanes": lanes,
            "approach_speed_kmh": kmh,
            "crossing_width_m": max(width, 8.0),
            "yellow_s": ite_yellow(kmh),
            "red_clear_s": ite_red(kmh, max(width, 8.0)),
            "min_green_s": 5.0 if is_left else (10.0 if is_main else 7.0),
            "passage_s": 2.0,
            "max1_s": 20.0 if is_left else (45.0 if is_main else 30.0),
        }
    # Detectors: a stop-bar loop on every approach lane, an advance loop on
    # through lanes (about 3 s upstream at the approach speed).
    dets = []
    ch = 1
    for p in phases:
        for lane_id in ph[p]["lanes"]:
            if any(d["lane"] == lane_id for d in dets):
                # a shared lane (permissive left + through) already has loops
                for d in dets:
                    if d["lane"] == lane_id and p not in d["calls"]:
                        d["calls"].append(p)
                continue
            lane = net.getLane(lane_id)
            L = lane.getLength()
            dets.append({"channel": ch, "kind": "stopbar", "lane": lane_id, "pos": round(max(0.1, L - 6.5), 2),
                         "length": 6.0, "calls": [p]})
            ch += 1
    for p in phases:
        if p % 2 == 1:
            continue
        for lane_id in ph[p]["lanes"]:
            lane = net.getLane(lane_id)
            L = lane.getLength()
            dist = round(ph[p]["approach_speed_kmh"] / 3.6 * 3.0)
            if L - dist < 5 or any(d["lane"] == lane_id and d["kind"] == "advance" for d in dets):
                continue
            owner = next(d for d in dets if d["lane"] == lane_id and d["kind"] == "stopbar")
            dets.append({"channel": ch, "kind": "advance", "lane": lane_id, "pos": round(L - dist, 2),
                         "length": 2.0, "calls": list(owner["calls"])})
            ch += 1
    if ch - 1 > 64:
        raise ValueError(f"{tls.getID()}: {ch - 1} detectors (at most 64 channels)")
    for d in dets:
        d["id"] = f"gw_{tls.getID()}_{d['channel']}"
    return {
        "tls": tls.getID(),
        "approaches": approaches,
        "links": links,
        "foes": foes,
        "phases": ph,
        "rings": [r for r in (ring1, ring2) if r],
        "barriers": barriers,
        "detectors": dets,
        "main_speed_kmh": main_kmh,
        "n_links": n,
    }


def _dir(c) -> str:
    d = c.getDirection().lower()
    return {"s": "s", "l": "l", "r": "r", "t": "l"}.get(d, "s")


def _phase_name(p, ls, approaches) -> str:
    def compass(h):
        return ["EB", "NB", "WB", "SB"][int(((h + 45) % 360) // 90)]

    hs = {compass(next(a["heading_deg"] for a in approaches.values() if a["label"] == l["approach"])) for l in ls}
    kind = "left" if p % 2 == 1 else "through"
    return f"{'/'.join(sorted(hs))} {kind}"


def shared_permissive_lefts(j: dict) -> list[str]:
    """Approach lanes where a permissive left shares the lane with other
    movements: a left-turner waiting for a gap holds up the vehicles behind it."""
    lanes = {}
    for link in j["links"]:
        lanes.setdefault(link["from_lane"], []).append(link)
    return sorted(lane for lane, ls in lanes.items()
                  if any(l["dir"] == "l" and not l["protected"] for l in ls) and any(l["dir"] != "l" for l in ls))


def compatible(j: dict, p: int, q: int) -> bool:
    """Phases p and q may time together: same phase, or different rings in
    the same barrier group."""
    if p == q:
        return True
    r = [i for i, ring in enumerate(j["rings"]) if p in ring], [i for i, ring in enumerate(j["rings"]) if q in ring]
    b = [i for i, g in enumerate(j["barriers"]) if p in g], [i for i, g in enumerate(j["barriers"]) if q in g]
    return r[0] != r[1] and b[0] == b[1]


class LinkStates:
    """SUMO link states from phase indications, with 'G' / 'g' chosen by the
    foe relation: of two foe links green together (a permissive left and
    the opposing through), the lower-ranked one (left < right < through)
    yields."""

    def __init__(self, j: dict):
        self.j = j
        # by SUMO link index; an index without a vehicle link (a pedestrian
        # crossing) has no phase and stays red
        self.n = j.get("n_links", len(j["links"]))
        self.phase_of = [None] * self.n
        self.rank = [0] * self.n
        for l in j["links"]:
            self.phase_of[l["index"]] = l["phase"]
            self.rank[l["index"]] = RANK[l["dir"]]
        self.foes = j["foes"]
        self._cache = {}

    def state(self, green: frozenset, yellow: frozenset = frozenset(), flash: str | None = None) -> str:
        key = (green, yellow, flash)
        s = self._cache.get(key)
        if s is None:
            s = self._compute(green, yellow, flash)
            self._cache[key] = s
        return s

    def _compute(self, green, yellow, flash) -> str:
        out = []
        for i in range(self.n):
            p = self.phase_of[i]
            if flash:
                out.append(flash)
            elif p is None:
                out.append("r")
            elif p in green:
                minor = False
                for k in range(self.n):
                    if k != i and self.foes[i][k] and self.phase_of[k] in green:
                        if self.rank[k] > self.rank[i] or (self.rank[k] == self.rank[i] and k < i):
                            minor = True
                            break
                out.append("g" if minor else "G")
            elif p in yellow:
                out.append("y")
            else:
                out.append("r")
        return "".join(out)

    def phase_state(self, p: int) -> str:
        """The state of phase p alone, with every link that could ever have
        to yield while p is green marked 'g' (for SUMO's NEMA controller,
        which merges one state string per ring)."""
        conc = frozenset(q for q in self.j["phases"] if compatible(self.j, p, q))
        full = self.state(conc)
        return "".join(full[i] if self.phase_of[i] == p else "r" for i in range(self.n))
