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
    return phase_flows_of(model, [(edges, entry_vol[ent] * share * scale) for ent, _, edges, share in routes])


def phase_flows_of(model: dict, route_flows) -> dict:
    """Expected flow (veh/h) on each junction phase from [(edges, veh/h)]:
    a permissive left counts PERMISSIVE_LEFT_EQUIV times."""
    link_of = {}
    for tid, j in model.items():
        for l in j["links"]:
            fe = l["from_lane"].rsplit("_", 1)[0]
            link_of.setdefault((fe, l["to_edge"]), []).append((tid, l))
    flows = {tid: {p: 0.0 for p in j["phases"]} for tid, j in model.items()}
    for edges, q in route_flows:
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


# ---- a user's route files (run.py --net/--routes) ----------------------

FLOW_TAGS = ("flow",)
VEHICLE_TAGS = ("vehicle", "trip")


def _flow_rate(el) -> float | None:
    """Vehicles per second of a <flow>, or None when it has no rate."""
    if el.get("vehsPerHour") is not None:
        return float(el.get("vehsPerHour")) / 3600.0
    if el.get("perHour") is not None:
        return float(el.get("perHour")) / 3600.0
    per = el.get("period")
    if per is not None:
        per = per.strip()
        if per.startswith("exp(") and per.endswith(")"):
            return float(per[4:-1])  # Poisson: the rate itself
        return 1.0 / float(per) if float(per) > 0 else None
    if el.get("probability") is not None:
        return float(el.get("probability"))  # per second (per 1 s step)
    return None


def _flow_window(el) -> tuple[float, float | None]:
    """[begin, end) of a <flow>; end None when it never ends."""
    begin = _time(el.get("begin")) or 0.0
    end = _time(el.get("end"))
    if end is None and el.get("number") is not None:
        rate = _flow_rate(el)
        if rate:
            end = begin + float(el.get("number")) / rate
    return begin, end


def _time(v) -> float | None:
    """A SUMO time attribute in s (seconds or h:m:s), None when absent or
    not a time (e.g. depart="triggered")."""
    if v is None:
        return None
    try:
        return float(v)
    except ValueError:
        parts = v.split(":")
        try:
            return sum(float(x) * f for x, f in zip(reversed(parts), (1, 60, 3600, 86400)))
        except ValueError:
            return None


def routes_end(route_files) -> float | None:
    """When the demand of the route files ends: the last vehicle or trip
    departure, or the end of the last flow. None when a flow has no end (no
    `end`, no `number`) or the files have no demand."""
    import xml.etree.ElementTree as ET

    end = None
    for f in route_files:
        for el in ET.parse(f).getroot():
            if el.tag in VEHICLE_TAGS:
                t = _time(el.get("depart"))
            elif el.tag in FLOW_TAGS:
                t = _flow_window(el)[1]
                if t is None:
                    return None
            else:
                continue
            if t is not None:
                end = t if end is None else max(end, t)
    return end


def route_flows(net_path: str, route_files, duration: float) -> tuple[list, int]:
    """[(edges, mean veh/h over [0, duration))] of the vehicles, trips and
    flows in the route files, and how many of them were left out (no route
    that could be resolved: taz, junctions, unknown ids). A vehicle's route
    is its `route` (a route or a routeDistribution, by probability), its
    child <route> or the shortest path from `from` via `via` to `to`."""
    import xml.etree.ElementTree as ET

    net = None
    routes: dict[str, list] = {}  # id -> [(edges, weight)]
    items = []
    for f in route_files:
        for el in ET.parse(f).getroot():
            if el.tag == "route" and el.get("id"):
                routes[el.get("id")] = [(el.get("edges", "").split(), 1.0)]
            elif el.tag == "routeDistribution" and el.get("id"):
                dist = []
                for r in el:
                    if r.tag != "route":
                        continue
                    edges = r.get("edges", "").split() or (routes.get(r.get("refId"), [([], 0)])[0][0])
                    dist.append((edges, float(r.get("probability", 1.0))))
                routes[el.get("id")] = dist
            elif el.tag in VEHICLE_TAGS + FLOW_TAGS:
                items.append(el)
    skipped = 0
    out = []
    for el in items:
        if el.tag in FLOW_TAGS:
            begin, end = _flow_window(el)
            rate = _flow_rate(el)
            if rate is None and el.get("number") is not None and end is not None and end > begin:
                rate = float(el.get("number")) / (end - begin)
            if rate is None:
                skipped += 1
                continue
            lo, hi = max(begin, 0.0), min(end if end is not None else duration, duration)
            n = rate * max(0.0, hi - lo)
        else:
            t = _time(el.get("depart"))
            n = 1.0 if t is None or t < duration else 0.0
        if n <= 0:
            continue
        child = next((r for r in el if r.tag == "route"), None)
        if child is not None:
            paths = [(child.get("edges", "").split(), 1.0)]
        elif el.get("route") is not None:
            paths = routes.get(el.get("route"))
        elif el.get("from") and el.get("to"):
            if net is None:
                net = sumolib.net.readNet(str(net_path))
            paths = [(_shortest(net, [el.get("from")] + el.get("via", "").split() + [el.get("to")]), 1.0)]
        else:
            paths = None
        if not paths or not any(e for e, _ in paths):
            skipped += 1
            continue
        tot = sum(w for _, w in paths) or 1.0
        for edges, w in paths:
            if edges:
                out.append((edges, n * w / tot * 3600.0 / duration))
    return out, skipped


def _shortest(net, stops: list[str]) -> list[str]:
    path = []
    for a, b in zip(stops, stops[1:]):
        try:
            p, _ = net.getShortestPath(net.getEdge(a), net.getEdge(b))
        except KeyError:
            return []
        if not p:
            return []
        ids = [e.getID() for e in p]
        path += ids[1:] if path and path[-1] == ids[0] else ids
    return path


def design_from_routes(net_path: str, model: dict, route_files, duration: float) -> dict:
    """The design info of a user's demand (as write_routes returns for the
    generated levels): the mean flow on each junction phase over
    [0, duration), which Webster's plan is designed on."""
    flows, skipped = route_flows(net_path, route_files, duration)
    pf = phase_flows_of(model, flows)
    return {
        "level": "routes",
        "duration": duration,
        "vehicles_per_hour": round(sum(q for _, q in flows), 1),
        "unrouted": skipped,
        "phase_flows": {t: {str(p): round(q, 1) for p, q in f.items()} for t, f in pf.items()},
    }
