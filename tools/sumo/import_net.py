#!/usr/bin/env python3
"""Turn a SUMO network's signalised junctions into Greenwave controllers.

    .venv/bin/python tools/sumo/import_net.py NET.net.xml --out DIR \\
        [--base-port 15100] [--mode free|adaptive] [--style cycle|free] [--passage S]
        [--adaptive max_cycle_s=120,...] [--detectors FILE.add.xml]

Writes into DIR:
- <tls>.toml: one controller file per traffic light (controllers/README.md
  format): NEMA phases (main street 2/6, protected lefts 1/5/3/7 where the
  approach has a left pocket, side street 4/8; lefts without a pocket are
  permissive within their through phase), rings [[1,2,3,4],[5,6,7,8]]
  (phases that do not exist left out) with barriers {1,2,5,6} | {3,4,7,8},
  ITE yellow and red clearance from the approach speed and the crossing
  width measured in the network, default minimum/maximum greens and
  passage, stop-bar and advance loops, and a [cabinet] on Modbus TCP at
  127.0.0.1:<base-port + k> (the bridge serves junction k there, unit 1);
- detectors.add.xml: the SUMO induction loops (e1) behind those detector
  channels, created here because the generated networks have none (with
  --detectors, the given file is used instead and matched by lane);
- sumo-map.json: for the bridge and the baselines, per junction: port,
  phase of every SUMO link index, the foe relation, detector channel ->
  loop id, timings.

Check the result with `greenwave check DIR`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, write_json  # noqa: E402
import netmodel  # noqa: E402


# max2 = 1.5 x max1, the headroom an engineer commonly gives a heavy period.
MAX2_SCALE = 1.5
# Where maxima may be cut to the re-planned green: maximum = green x this, room
# for the cycles whose arrivals run above the mean. In SIL, 1.25 against 1.0:
# tnet balanced 33.2 s (33.7), arterial near-saturated 78.5 s (82.0); 1.5 made
# tnet worse (balanced 34.2 s, near-saturated 84.0 s, peak 70.9 s).
CUT_MAX_HEADROOM = 1.25


def controller_toml(j: dict, port: int, host: str, mode: str, cycle_s: float | None = None,
                    style: str = "cycle", adaptive: dict | None = None, cameras: bool = False) -> str:
    tid = j["tls"]
    ph = j["phases"]
    # A left-turner waiting for a gap blocks its lane until the opposing
    # green ends, so these lanes gain capacity with every cycle: free-style
    # adaptive may cut the maxima there (shorter cycles). Without max2
    # headroom as well, tnet peak ran 73.1 s instead of 63.6 s (SIL).
    blocked = netmodel.shared_permissive_lefts(j) if mode == "adaptive" and style == "free" else []
    L = []
    w = L.append
    w(f"# Imported from SUMO traffic light '{tid}' by tools/sumo/import_net.py.")
    w("# Approaches: " + ", ".join(
        f"{a['label']} = {a['edge']} ({a['speed_kmh']:g} km/h, {a['lanes']} lanes{', left pocket' if a['pocket'] else ''})"
        for a in sorted(j["approaches"].values(), key=lambda a: a["label"])))
    w("# Phases: 2/6 main street (A/B), 4/8 side street (C/D), 1/5/3/7 protected lefts from pockets;")
    w("# lefts without a pocket are permissive in their through phase. Clearances: ITE from the")
    w("# approach speed and the crossing width (stop line to the far conflict point) in the network.")
    w("")
    w("[intersection]")
    w(f'id = "{tid}"')
    w(f'name = "SUMO junction {tid}"')
    w("")
    w("[cabinet]")
    w('kind = "modbus-tcp"')
    w(f'address = "{host}:{port}"')
    w("unit_id = 1")
    if cameras:
        zones = netmodel.camera_zones(j)
        w("# video zones, one per stop-bar lane: the vehicles standing on it (queue registers)")
        w(f"camera_zone_channels = {[d['channel'] for d in zones]}")
        w("[cabinet.registers]")
        w("camera_zones = 0")
        w(f"camera_queue_zones = {len(zones)}")
    w("")
    w("[startup]")
    w("flash_s = 2.0")
    w("all_red_s = 2.0")
    start = [p for p in (2, 6) if p in ph] or [j["rings"][0][0]]
    w(f"phases = {start}")
    w("")
    w("[sequence]")
    w(f"rings = {j['rings']}")
    w(f"barriers = {j['barriers']}")
    for p in sorted(ph):
        v = ph[p]
        w("")
        w("[[phase]]")
        w(f"number = {p}")
        w(f'name = "{v["name"]}"')
        w(f"min_green_s = {fmt(v['min_green_s'])}")
        w(f"passage_s = {fmt(v['passage_s'])}")
        w(f"max1_s = {fmt(v['max1_s'])}")
        if mode == "adaptive":
            # the adaptive layer may run a heavy phase past max1, up to max2
            w(f"max2_s = {fmt(v['max1_s'] * MAX2_SCALE)}")
        w(f"yellow_s = {fmt(v['yellow_s'])}")
        w(f"red_clear_s = {fmt(v['red_clear_s'])}")
        w(f"approach_speed_kmh = {fmt(v['approach_speed_kmh'])}")
        w(f"crossing_width_m = {fmt(v['crossing_width_m'])}")
    for d in j["detectors"]:
        w("")
        w("[[detector]]")
        w(f"channel = {d['channel']}")
        if d["kind"] == "advance":
            w('placement = "advance"')
        w(f"calls = {d['calls']}  # {d['kind']} loop on {d['lane']}")
    w("")
    w("[[plan]]")
    w("number = 1")
    if mode == "adaptive":
        cycle, splits = initial_splits(j)
        w('name = "adaptive"')
        w('mode = "adaptive"')
        w("# starting point; the optimizer adapts cycle and splits within [adaptive]")
        w(f"cycle_s = {fmt(cycle)}")
        w("offset_s = 0")
        w("splits_s = { " + ", ".join(f"{p} = {fmt(v)}" for p, v in sorted(splits.items())) + " }")
        w(f"coordinated = {[p for p in (2, 6) if p in ph] or [j['rings'][0][0]]}")
        w("")
        w("[adaptive]")
        w(f'style = "{style}"')
        bounds = {"min_cycle_s": 40, "max_cycle_s": 150}
        if blocked:
            w(f"# permissive lefts in shared lanes: {', '.join(blocked)}: maxima from min service up")
            bounds["max_floor"] = '"min_service"'
            bounds["max_headroom"] = fmt(CUT_MAX_HEADROOM)
        bounds.update(adaptive or {})
        for key, value in bounds.items():
            w(f"{key} = {value}")
    else:
        w('name = "free"')
        w('mode = "free"')
    w("")
    w("[schedule]")
    w("default_plan = 1")
    return "\n".join(L) + "\n"


def initial_splits(j: dict) -> tuple[float, dict]:
    """A demand-free starting plan: each phase's green halfway between its
    minimum and max1, barriers aligned (the shorter ring's last phase takes
    the slack). Splits are green + yellow + red clearance."""
    ph = j["phases"]
    split = {p: round((v["min_green_s"] + v["max1_s"]) / 2 + v["yellow_s"] + v["red_clear_s"], 1)
             for p, v in ph.items()}
    cycle = 0.0
    for g in j["barriers"]:
        rings = [[p for p in r if p in g] for r in j["rings"]]
        lens = [sum(split[p] for p in r) for r in rings]
        B = max(lens)
        for r, ln in zip(rings, lens):
            if r and ln < B:
                split[r[-1]] = round(split[r[-1]] + B - ln, 1)
        cycle += B
    return round(cycle, 1), split


def detectors_xml(model: dict) -> str:
    L = ["<additional>"]
    for j in model.values():
        for d in j["detectors"]:
            L.append(f'    <inductionLoop id="{d["id"]}" lane="{d["lane"]}" pos="{fmt(d["pos"])}" '
                     f'length="{fmt(d["length"])}" period="3600" file="NUL"/>')
    L.append("</additional>")
    return "\n".join(L) + "\n"


def match_existing(model: dict, path: Path) -> None:
    """Use existing e1 loops: the loop nearest the stop line on a lane is its
    stop-bar detector, the farthest (if any other) its advance detector."""
    import xml.etree.ElementTree as ET

    loops = {}
    for el in ET.parse(path).getroot():
        if el.tag in ("inductionLoop", "e1Detector"):
            loops.setdefault(el.get("lane"), []).append((float(el.get("pos")), el.get("id")))
    for j in model.values():
        for d in j["detectors"]:
            have = sorted(loops.get(d["lane"], []))
            if have:
                pos, lid = have[-1] if d["kind"] == "stopbar" else have[0]
                d["id"], d["pos"], d["existing"] = lid, pos, True


def import_net(net: Path, out: Path, base_port: int = 15100, host: str = "127.0.0.1", mode: str = "free",
               detectors: Path | None = None, style: str = "cycle", passage_s: float | None = None,
               adaptive: dict | None = None, cameras: bool = False,
               platoon_passage_s: float | None = None) -> dict:
    model = netmodel.analyze(str(net))
    for j in model.values():
        for v in j["phases"].values():
            if passage_s is not None:
                v["passage_s"] = passage_s
    if platoon_passage_s is not None:
        import sumolib

        sn = sumolib.net.readNet(str(net))
        for j in model.values():
            for p, v in j["phases"].items():
                # A through movement fed by an upstream signal gets its
                # traffic in platoons, whose vehicles arrive further apart
                # than a standing queue discharges: a longer gap keeps it.
                if int(p) % 2 == 0 and upstream_signal(sn, model, v["lanes"][0].rsplit("_", 1)[0]):
                    v["passage_s"] = platoon_passage_s
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.toml"):
        old.unlink()
    if detectors:
        match_existing(model, detectors)
    for k, (tid, j) in enumerate(model.items()):
        j["port"] = base_port + k
        j["host"] = host
        (out / f"{tid}.toml").write_text(controller_toml(j, j["port"], host, mode, style=style, adaptive=adaptive,
                                                                     cameras=cameras))
    if not detectors:
        (out / "detectors.add.xml").write_text(detectors_xml(model))
    write_json(out / "sumo-map.json", {"net": str(Path(net).resolve()), "junctions": model})
    return model


def upstream_signal(sn, model: dict, edge_id: str):
    """Where an approach's traffic last passed a signal: followed upstream
    through unsignalised nodes (straight on, within 30 degrees). Returns
    (junction id, the edge leaving it, free-flow travel s from its stop line
    to this one), or None when the approach starts elsewhere."""
    edge = sn.getEdge(edge_id)
    travel = 0.0
    while True:
        travel += edge.getLength() / edge.getSpeed()
        node = edge.getFromNode()
        if node.getID() in model:
            return node.getID(), edge, round(travel, 1)
        straight = [e for e in node.getIncoming()
                    if abs(netmodel.angdiff(netmodel.heading(e), netmodel.heading(edge))) < 30]
        if len(straight) != 1:
            return None
        edge = straight[0]


def corridors(net: Path, model: dict) -> list[dict]:
    """Chains of signalised junctions along their main street, for
    `[[corridor]]`: members in the order phase 2 travels, and the free-flow
    travel time between neighbours (stop line to stop line). A junction's
    phase-2 approach leads back to the previous signal (upstream_signal),
    which must run phase 2 the same way."""
    import sumolib

    sn = sumolib.net.readNet(str(net))
    approach_a = {tid: next((e for e, ap in j["approaches"].items() if ap["label"] == "A"), None)
                  for tid, j in model.items()}
    upstream = {}  # tid -> (previous member, travel s)
    for tid, a in approach_a.items():
        found = upstream_signal(sn, model, a) if a else None
        if found is None:
            continue
        prev, edge, travel = found
        prev_a = approach_a.get(prev)
        if prev_a and abs(netmodel.angdiff(netmodel.heading(sn.getEdge(prev_a)), netmodel.heading(edge))) < 30:
            upstream[tid] = (prev, travel)
    downstream = {prev: (tid, t) for tid, (prev, t) in upstream.items()}
    out = []
    for first in model:
        if first in upstream or first not in downstream:
            continue
        members, travel, at = [first], [], first
        while at in downstream and len(members) <= len(model):
            at, t = downstream[at]
            members.append(at)
            travel.append(t)
        out.append({"members": members, "travel_s": travel})
    return out


def corridor_toml(corridors_: list[dict]) -> str:
    return "".join(f'[[corridor]]\nmembers = {json.dumps(c["members"])}\ntravel_s = {json.dumps(c["travel_s"])}\n'
                   for c in corridors_)


def parse_keys(text: str) -> dict:
    """`a=1,b=2` → {"a": "1", "b": "2"} (values go into TOML as written)."""
    return dict(kv.split("=", 1) for kv in text.split(",") if kv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("net", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base-port", type=int, default=15100)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--mode", choices=["free", "adaptive"], default="free",
                    help="plan mode of the controllers: free (actuated) or adaptive")
    ap.add_argument("--detectors", type=Path, help="existing e1 detectors (additional file) to use")
    ap.add_argument("--style", choices=["cycle", "free"], default="cycle",
                    help="with --mode adaptive: coordinated re-planned cycles, or free actuated with re-planned maxima")
    ap.add_argument("--passage", type=float, help="passage (gap) in s for every phase, instead of 2.0")
    ap.add_argument("--platoon-passage", type=float,
                    help="passage for through phases whose approach comes from an upstream signal, instead of --passage")
    ap.add_argument("--cameras", action="store_true",
                    help="map a video zone to every stop-bar lane (camera queue registers, see docs/modbus.md)")
    ap.add_argument("--adaptive", default="", metavar="KEY=VALUE,...",
                    help="extra [adaptive] keys, e.g. max_cycle_s=120,smoothing=0.5")
    a = ap.parse_args()
    model = import_net(a.net, a.out, a.base_port, a.host, a.mode, a.detectors, style=a.style,
                       passage_s=a.passage, adaptive=parse_keys(a.adaptive), cameras=a.cameras,
                       platoon_passage_s=a.platoon_passage)
    for tid, j in model.items():
        print(f"{tid}: phases {sorted(j['phases'])} rings {j['rings']} barriers {j['barriers']}, "
              f"{len(j['detectors'])} detectors, {len(j['links'])} links -> {a.out / (tid + '.toml')} "
              f"(port {j['port']})")


if __name__ == "__main__":
    main()
