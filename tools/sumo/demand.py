"""Demand per scenario, level and seed: routes, Poisson flows, and the
expected movement flows each controller design may use (Webster).

Levels:
- balanced:  the same flow per lane on every entry; critical flow ratio
             Y = 0.45 at the busiest junction (moderate).
- unbalanced: main-street entries carry 3x the approach volume of side
             entries (3:1); Y = 0.50 at the busiest junction.
- nearsat:   balanced mix scaled to Y = 0.72 at the busiest junction,
             about v/c 0.9 on its critical movements at a 100-120 s cycle.
- peak:      one hour, four 15-minute periods at 0.60, 0.85, 1.05 and 0.70
             of the near-saturated flows (v/c about 1 in the third).

Origins and destinations are the boundary edges; each origin's flow is
split over destinations by road class (main 3, side 1) and by how many
turns the route takes (x0.25 per turn), so most traffic goes straight.
Arrivals are Poisson (SUMO period="exp(rate)"), drawn with SUMO's --seed.
"""

from __future__ import annotations

from pathlib import Path

from common import ensure_env

ensure_env()
import sumolib  # noqa: E402

LEVELS = {
    "balanced": {"target_y": 0.45, "mix": "balanced", "duration": 1800, "profile": [1.0]},
    "unbalanced": {"target_y": 0.50, "mix": "unbalanced", "duration": 1800, "profile": [1.0]},
    "nearsat": {"target_y": 0.72, "mix": "balanced", "duration": 1800, "profile": [1.0]},
    "peak": {"target_y": 0.72, "mix": "balanced", "duration": 3600, "profile": [0.60, 0.85, 1.05, 0.70]},
}
SAT_THROUGH = 1800.0
SAT_LEFT = 1700.0
PERMISSIVE_LEFT_EQUIV = 1.6


def boundary(net):
    """(entry edge, exit edge, main?) per boundary node."""
    out = []
    for node in net.getNodes():
        if node.getType() == "traffic_light" or node.getID().endswith("_p"):
            continue
        inc, outg = node.getIncoming(), node.getOutgoing()
        if len(inc) == 1 and len(outg) == 1:
            out.append((outg[0], inc[0], outg[0].getPriority() >= 3))
    return sorted(out, key=lambda t: t[0].getID())


def _turns(path, net) -> int:
    n = 0
    for a, b in zip(path, path[1:]):
        if a.getToNode().getType() != "traffic_light":
            continue
        cs = a.getOutgoing().get(b, [])
        if cs and cs[0].getDirection().lower() in ("l", "r"):
            n += 1
    return n


def od_table(net_path: str, model: dict, mix: str):
    """[(entry, exit, edges, share of entry flow)], entry volumes per unit
    scale (veh/h), keyed by entry id."""
    net = sumolib.net.readNet(str(net_path))
    bd = boundary(net)
    routes = []
    entry_vol = {}
    for ent, _, main in bd:
        lanes = ent.getLaneNumber()
        if mix == "balanced":
            vol = 100.0 * lanes
        else:  # 3:1 approach volumes, main : side
            vol = 300.0 if main else 100.0
        entry_vol[ent.getID()] = vol
        cands = []
        for _, ext, xmain in bd:
            if ext.getToNode() == ent.getFromNode():
                continue
            path, _ = net.getShortestPath(ent, ext)
            if not path:
                continue
            w = (3.0 if xmain else 1.0) * 0.25 ** _turns(path, net)
            cands.append((ext, path, w))
        tot = sum(c[2] for c in cands)
        for ext, path, w in cands:
            routes.append((ent.getID(), ext.getID(), [e.getID() for e in path], w / tot))
    return routes, entry_vol


def phase_flows(model: dict, routes, entry_vol, scale: float) -> dict:
    """Expected flow (veh/h) on each junction phase, by lane group."""
    link_of = {}
    for tid, j in model.items():
        for l in j["links"]:
            fe = l["from_lane"].rsplit("_", 1)[0]
            link_of.setdefault((fe, l["to_edge"]), []).append((tid, l))
    flows = {tid: {p: 0.0 for p in j["phases"]} for tid, j in model.items()}
    for ent, _, edges, share in routes:
        q = entry_vol[ent] * share * scale
        for a, b in zip(edges, edges[1:]):
            ls = link_of.get((a, b))
            if not ls:
                continue
            tid, l = ls[0]
            f = PERMISSIVE_LEFT_EQUIV if (l["dir"] == "l" and not l["protected"]) else 1.0
            flows[tid][l["phase"]] += q * f
    return flows


def flow_ratios(model: dict, flows: dict) -> dict:
    ys = {}
    for tid, j in model.items():
        ys[tid] = {}
        for p, v in j["phases"].items():
            sat = (SAT_LEFT if p % 2 == 1 else SAT_THROUGH) * len(v["lanes"])
            ys[tid][p] = flows[tid][p] / sat
    return ys


def critical_y(j: dict, y: dict) -> float:
    tot = 0.0
    for group in j["barriers"]:
        tot += max(sum(y[p] for p in ring if p in group) for ring in j["rings"])
    return tot


def calibrate(model, routes, entry_vol, target_y: float) -> float:
    base = flow_ratios(model, phase_flows(model, routes, entry_vol, 1.0))
    worst = max(critical_y(j, {int(k): v for k, v in base[t].items()}) for t, j in model.items())
    return target_y / worst


def write_routes(net_path: str, model: dict, level: str, out: Path) -> dict:
    """Write the route file for `level`; return the design info (scale,
    expected phase flows at the design hour)."""
    lv = LEVELS[level]
    routes, entry_vol = od_table(net_path, model, lv["mix"])
    scale = calibrate(model, routes, entry_vol, lv["target_y"])
    prof = lv["profile"]
    seg = lv["duration"] / len(prof)
    L = ['<routes>',
         '    <vType id="car" accel="2.6" decel="4.5" sigma="0.5" length="5" minGap="2.5" tau="1.0" '
         'speedDev="0.1" maxSpeed="55"/>']
    for k, (ent, ext, edges, share) in enumerate(routes):
        L.append(f'    <route id="r{k}" edges="{" ".join(edges)}"/>')
    for k, (ent, ext, edges, share) in enumerate(routes):
        for s, f in enumerate(prof):
            vph = entry_vol[ent] * share * scale * f
            if vph < 0.5:
                continue
            L.append(f'    <flow id="f{k}_{s}" type="car" route="r{k}" begin="{seg * s:.0f}" end="{seg * (s + 1):.0f}" '
                     f'period="exp({vph / 3600:.6f})" departLane="best" departSpeed="max"/>')
    # flows must be sorted by begin time
    head, flows = L[:2 + len(routes)], L[2 + len(routes):]
    flows.sort(key=lambda x: float(x.split('begin="')[1].split('"')[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(head + flows + ["</routes>"]) + "\n")
    design_factor = sum(prof) / len(prof) / 0.95 if len(prof) > 1 else 1.0
    flows = phase_flows(model, routes, entry_vol, scale * design_factor)
    return {
        "level": level,
        "scale": scale,
        "duration": lv["duration"],
        "vehicles_per_hour": sum(entry_vol.values()) * scale * sum(prof) / len(prof),
        "phase_flows": {t: {str(p): round(q, 1) for p, q in f.items()} for t, f in flows.items()},
    }


def expected_vehicles(info: dict) -> float:
    return info["vehicles_per_hour"] * info["duration"] / 3600.0
