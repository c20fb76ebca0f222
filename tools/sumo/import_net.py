#!/usr/bin/env python3
"""Turn a SUMO network's signalised junctions into Greenwave controllers.

    .venv/bin/python tools/sumo/import_net.py NET.net.xml --out DIR \\
        [--base-port 15100] [--mode free|adaptive] [--style cycle|free|schedule] [--passage S]
        [--adaptive max_cycle_s=120,...] [--detectors FILE.add.xml] [--schedule HH:MM,...]

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
  channels, created here because the generated networks have none. With
  --detectors FILE (a SUMO additional file of induction loops and/or lane
  area detectors), an approach lane that has detectors in FILE uses those
  (the one nearest the stop line is its stop-bar detector, the farthest
  other one its advance detector where the lane gets one); only the lanes
  FILE has none on get loops here. SUMO needs both files;
- sumo-map.json: for the bridge and the baselines, per junction: port,
  phase of every SUMO link index, the foe relation, detector channel ->
  detector id, timings.

Traffic lights the NEMA model cannot map (more than four approaches, one
program for several junctions) are left out with a message and keep their
SUMO program. Controller ids are the traffic light ids with characters
other than letters, digits, '-', '_' and '.' replaced by '_'.

Check the result with `greenwave check DIR`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

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
                    style: str = "cycle", adaptive: dict | None = None, cameras: bool = False,
                    schedule: list[str] | None = None) -> str:
    """One controller file. `schedule` (times "HH:MM", increasing, after
    00:00) adds a plan change at each time, every day: plans 2, 3, ... are
    copies of plan 1 under new numbers, so the change shows in the event
    log (event 131) without changing the timing."""
    tid = j.get("id", j["tls"])
    ph = j["phases"]
    # A left-turner waiting for a gap blocks its lane until the opposing
    # green ends, so these lanes gain capacity with every cycle: free-style
    # adaptive may cut the maxima there (shorter cycles). Without max2
    # headroom as well, tnet peak ran 73.1 s instead of 63.6 s (SIL).
    blocked = netmodel.shared_permissive_lefts(j) if mode == "adaptive" and style == "free" else []
    L = []
    w = L.append
    w(f"# Imported from SUMO traffic light '{j['tls']}' by tools/sumo/import_net.py.")
    w("# Approaches: " + ", ".join(
        f"{a['label']} = {a['edge']} ({a['speed_kmh']:g} km/h, {a['lanes']} lanes{', left pocket' if a['pocket'] else ''})"
        for a in sorted(j["approaches"].values(), key=lambda a: a["label"])))
    w("# Phases: 2/6 main street (A/B), 4/8 side street (C/D), 1/5/3/7 protected lefts from pockets;")
    w("# lefts without a pocket are permissive in their through phase. Clearances: ITE from the")
    w("# approach speed and the crossing width (stop line to the far conflict point) in the network.")
    w("")
    w("[intersection]")
    w(f'id = "{tid}"')
    w(f"name = {json.dumps('SUMO junction ' + j['tls'])}")
    w("")
    w("[cabinet]")
    w('kind = "modbus-tcp"')
    w(f'address = "{host}:{port}"')
    w("unit_id = 1")
    w("# Lockstep: simulated time waits for every cabinet, so a bridge slowed by a busy host is")
    w("# late, not lost. At the 0.2 s default, 16 cabinets timing out together under load kept")
    w("# reconnecting and never completed a step again (docs/sil.md, the city runs).")
    w("request_timeout_s = 2.0")
    w("link_timeout_s = 4.0")
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
        w(f"calls = {d['calls']}  # {d['kind']} "
          + (f"detector {d['id']} ({d['sumo']}, from --detectors) on {d['lane']}" if d.get("existing")
             else f"loop on {d['lane']}"))
    w("")
    changes = schedule or []
    for k in range(1 + len(changes)):
        if k:
            w("")
        w("[[plan]]")
        w(f"number = {k + 1}")
        name = "adaptive" if mode == "adaptive" else "free"
        w(f'name = "{name}"' if not k else f'name = "{name} from {changes[k - 1]}"')
        if mode == "adaptive":
            cycle, splits = initial_splits(j)
            w('mode = "adaptive"')
            w("# starting point; the optimizer adapts cycle and splits within [adaptive]")
            w(f"cycle_s = {fmt(cycle)}")
            w("offset_s = 0")
            w("splits_s = { " + ", ".join(f"{p} = {fmt(v)}" for p, v in sorted(splits.items())) + " }")
            w(f"coordinated = {[p for p in (2, 6) if p in ph] or [j['rings'][0][0]]}")
        else:
            w('mode = "free"')
    if mode == "adaptive":
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
    w("")
    w("[schedule]")
    w("default_plan = 1")
    if changes:
        w('week = ["sil", "sil", "sil", "sil", "sil", "sil", "sil"]')
        w("")
        w("[[schedule.day_plan]]")
        w('name = "sil"')
        w("events = [" + ", ".join([f'{{ at = "00:00", plan = 1 }}']
                                   + [f'{{ at = "{at}", plan = {k + 2} }}' for k, at in enumerate(changes)]) + "]")
    return "\n".join(L) + "\n"


def parse_schedule(text: str | None) -> list[str]:
    """`07:00,19:00` -> ["07:00", "19:00"]: plan-change times, strictly
    increasing, after 00:00 (ValueError otherwise)."""
    out = []
    for at in (text or "").split(","):
        at = at.strip()
        if not at:
            continue
        hh, _, mm = at.partition(":")
        if not (hh.isdigit() and mm.isdigit() and len(mm) == 2 and int(hh) < 24 and int(mm) < 60):
            raise ValueError(f"schedule time {at!r} is not HH:MM")
        at = f"{int(hh):02d}:{mm}"
        if at == "00:00" or (out and at <= out[-1]):
            raise ValueError(f"schedule times must increase after 00:00: {text!r}")
        out.append(at)
    return out


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
    """The loops the rig places itself (every detector not taken from the
    user's file)."""
    L = ["<additional>"]
    for j in model.values():
        for d in j["detectors"]:
            if d.get("existing"):
                continue
            L.append(f'    <inductionLoop id={quoteattr(d["id"])} lane={quoteattr(d["lane"])} pos="{fmt(d["pos"])}" '
                     f'length="{fmt(d["length"])}" period="3600" file="NUL"/>')
    L.append("</additional>")
    return "\n".join(L) + "\n"


E1_TAGS = ("inductionLoop", "e1Detector")
E2_TAGS = ("laneAreaDetector", "e2Detector")


def read_detectors(path: Path, lane_length) -> dict:
    """A SUMO additional file's induction loops (e1) and lane area
    detectors (e2), by lane: {lane: [(distance of the detector's downstream
    end from the lane's end in m, id, "e1"|"e2")]}, nearest the stop line
    first. A multi-lane e2 counts on its last (downstream) lane. Negative
    positions count from the lane's end, as in SUMO."""
    import xml.etree.ElementTree as ET

    def at(lane, v, default):
        if v is None:
            return default
        x = float(v)
        return x + lane_length(lane) if x < 0 else x

    out = {}
    for el in ET.parse(path).iter():
        if el.tag not in E1_TAGS + E2_TAGS or el.get("id") is None:
            continue
        lanes = (el.get("lane") or el.get("lanes") or "").split()
        if not lanes:
            continue
        lane = lanes[-1]
        try:
            if el.tag in E1_TAGS:
                end, kind = at(lane, el.get("pos"), 0.0), "e1"
            elif el.get("endPos") is not None:
                end, kind = at(lane, el.get("endPos"), 0.0), "e2"
            elif el.get("pos") is not None and el.get("length") is not None:
                end, kind = at(lane, el.get("pos"), 0.0) + float(el.get("length")), "e2"
            else:
                end, kind = lane_length(lane), "e2"
            dist = max(0.0, lane_length(lane) - end)
        except KeyError:
            raise ValueError(f"{path}: detector {el.get('id')} is on lane {lane}, "
                             "which the network does not have") from None
        out.setdefault(lane, []).append((round(dist, 2), el.get("id"), kind))
    for v in out.values():
        v.sort()
    return out


def match_existing(model: dict, path: Path, net: Path) -> dict:
    """Use the detectors of a SUMO additional file: on an approach lane
    that has any, the one nearest the stop line is the stop-bar detector and
    the farthest other one the advance detector (where the rig would place
    one; no advance when the lane has a single detector). Lanes without any
    keep the rig's own loops. Channels are renumbered from 1 per junction.
    Returns {"used": [ids], "placed": [lanes the rig put loops on],
    "ignored": [ids of detectors not on an approach lane or not needed]}."""
    import sumolib

    sn = sumolib.net.readNet(str(net))
    found = read_detectors(path, lambda lane: sn.getLane(lane).getLength())
    used, placed = [], []
    for j in model.values():
        keep = []
        for d in j["detectors"]:
            have = found.get(d["lane"])
            if not have:
                keep.append(d)
                if d["kind"] == "stopbar":
                    placed.append(d["lane"])
                continue
            if d["kind"] == "stopbar":
                dist, did, kind = have[0]
            elif len(have) > 1:
                dist, did, kind = have[-1]
            else:
                continue  # one detector on the lane: it is the stop-bar one
            d.update(id=did, sumo=kind, existing=True, distance_m=dist)
            d.pop("pos", None)
            used.append(did)
            keep.append(d)
        renumber = {d["channel"]: k + 1 for k, d in enumerate(keep)}
        for d in keep:
            d["channel"] = renumber[d["channel"]]
            if not d.get("existing"):
                d["id"] = f"gw_{j['tls']}_{d['channel']}"
        j["detectors"] = keep
    ignored = sorted({did for v in found.values() for _, did, _ in v} - set(used))
    return {"used": used, "placed": placed, "ignored": ignored}


def controller_ids(model: dict) -> None:
    """Give every junction a Greenwave controller id: its traffic light id
    with characters Greenwave does not allow in ids replaced by '_' (made
    unique with a suffix)."""
    seen = set()
    for tid, j in model.items():
        base = re.sub(r"[^A-Za-z0-9._-]", "_", tid) or "tls"
        cid, k = base, 2
        while cid in seen:
            cid, k = f"{base}_{k}", k + 1
        seen.add(cid)
        j["id"] = cid


def import_net(net: Path, out: Path, base_port: int = 15100, host: str = "127.0.0.1", mode: str = "free",
               detectors: Path | None = None, style: str = "cycle", passage_s: float | None = None,
               adaptive: dict | None = None, cameras: bool = False,
               platoon_passage_s: float | None = None, unsupported: list | None = None,
               detector_report: dict | None = None, schedule: list[str] | None = None) -> dict:
    """Write the controllers of `net` into `out`; returns the model. With
    `unsupported` (a list), traffic lights the model cannot map are left out
    and listed there; with `detector_report` (a dict), match_existing's
    report on the --detectors file is put there."""
    model = netmodel.analyze(str(net), unsupported)
    controller_ids(model)
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
        report = match_existing(model, detectors, net)
        if detector_report is not None:
            detector_report.update(report)
    for k, (tid, j) in enumerate(model.items()):
        j["port"] = base_port + k
        j["host"] = host
        (out / f"{j['id']}.toml").write_text(controller_toml(j, j["port"], host, mode, style=style,
                                                             adaptive=adaptive, cameras=cameras, schedule=schedule))
    (out / "detectors.add.xml").write_text(detectors_xml(model))
    write_json(out / "sumo-map.json", {"net": str(Path(net).resolve()),
                                       "detectors": str(Path(detectors).resolve()) if detectors else None,
                                       "junctions": model})
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
        out.append({"members": [model[m].get("id", m) for m in members], "travel_s": travel})
    return out


def corridor_toml(corridors_: list[dict], local: set[str] | None = None) -> str:
    """`[[corridor]]` tables. With `local` (the controller ids one daemon
    of several runs), a corridor with none of them is left out and the
    members another daemon runs are listed as `remote`
    (docs/configuration.md#corridor): the daemons exchange their projected
    outflows through NATS."""
    out = []
    for c in corridors_:
        remote = [m for m in c["members"] if local is not None and m not in local]
        if len(remote) == len(c["members"]):
            continue
        out.append(f'[[corridor]]\nmembers = {json.dumps(c["members"])}\ntravel_s = {json.dumps(c["travel_s"])}\n'
                   + (f"remote = {json.dumps(remote)}\n" if remote else ""))
    return "".join(out)


def split_daemons(net: Path, model: dict, n: int) -> list[list[str]]:
    """The controller ids of `model` in `n` contiguous groups along the
    network's main axis (the mean direction phase 2 travels), one per
    daemon: sizes differ by one at most, so each corridor along that axis
    is cut as few times as the split allows. ValueError unless
    1 <= n <= the number of junctions."""
    import sumolib

    if not 1 <= n <= len(model):
        raise ValueError(f"{n} daemons for {len(model)} traffic lights: give 1 to {len(model)}")
    sn = sumolib.net.readNet(str(net))
    where, ax, ay = {}, 0.0, 0.0
    for j in model.values():
        edge = sn.getEdge(next((e for e, ap in j["approaches"].items() if ap["label"] == "A"),
                               next(iter(j["approaches"]))))
        h = math.radians(netmodel.heading(edge))
        ax, ay = ax + math.cos(h), ay + math.sin(h)
        where[j.get("id", j["tls"])] = edge.getToNode().getCoord()[:2]
    ids = sorted(where, key=lambda i: (where[i][0] * ax + where[i][1] * ay, i))
    size, extra = divmod(len(ids), n)
    groups, at = [], 0
    for k in range(n):
        step = size + (1 if k < extra else 0)
        groups.append(ids[at:at + step])
        at += step
    return groups


def remote_neighbours(corridors_: list[dict], local: set[str]) -> set[str]:
    """The remote members next to one of `local` along a corridor: whose
    projected outflows that daemon subscribes to (src/daemon/neighbours.rs
    `inbound`)."""
    out = set()
    for c in corridors_:
        for a, b in zip(c["members"], c["members"][1:]):
            if (a in local) != (b in local):
                out.add(b if a in local else a)
    return out


def parse_keys(text: str) -> dict:
    """`a=1,b=2` → {"a": "1", "b": "2"} (values go into TOML as written)."""
    return dict(kv.split("=", 1) for kv in text.split(",") if kv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("net", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base-port", type=int, default=15100)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--mode", choices=["free", "adaptive"], default="free",
                    help="plan mode of the controllers: free (actuated) or adaptive")
    ap.add_argument("--detectors", type=Path,
                    help="a SUMO additional file with induction loops / lane area detectors to use on the approach "
                         "lanes it covers (the rig places loops on the others)")
    ap.add_argument("--style", choices=["cycle", "free", "schedule"], default="cycle",
                    help="with --mode adaptive: coordinated re-planned cycles, free actuated with re-planned "
                         "maxima, or schedule-driven (rolling-horizon plan every second)")
    ap.add_argument("--passage", type=float, help="passage (gap) in s for every phase, instead of 2.0")
    ap.add_argument("--platoon-passage", type=float,
                    help="passage for through phases whose approach comes from an upstream signal, instead of --passage")
    ap.add_argument("--cameras", action="store_true",
                    help="map a video zone to every stop-bar lane (camera queue registers, see docs/modbus.md)")
    ap.add_argument("--adaptive", default="", metavar="KEY=VALUE,...",
                    help="extra [adaptive] keys, e.g. max_cycle_s=120,smoothing=0.5")
    ap.add_argument("--schedule", metavar="HH:MM,...",
                    help="a plan change at each time, every day (plans 2, 3, ...: copies of plan 1), "
                         "to see event 131 in the event log")
    a = ap.parse_args(argv)
    try:
        schedule = parse_schedule(a.schedule)
    except ValueError as e:
        ap.error(str(e))
    unsupported, report = [], {}
    model = import_net(a.net, a.out, a.base_port, a.host, a.mode, a.detectors, style=a.style,
                       passage_s=a.passage, adaptive=parse_keys(a.adaptive), cameras=a.cameras,
                       platoon_passage_s=a.platoon_passage, unsupported=unsupported, detector_report=report,
                       schedule=schedule)
    for tid, j in model.items():
        print(f"{tid}: phases {sorted(j['phases'])} rings {j['rings']} barriers {j['barriers']}, "
              f"{len(j['detectors'])} detectors, {len(j['links'])} links -> {a.out / (j['id'] + '.toml')} "
              f"(port {j['port']})")
    print_report(unsupported, report, a.detectors)
    if not model:
        print("no traffic light the model can map: nothing written", file=sys.stderr)
        return 1
    return 0


def print_report(unsupported: list, report: dict, detectors: Path | None, file=None) -> None:
    for tid, why in unsupported:
        print(f"{tid}: left out ({why}); SUMO's own program keeps running it", file=file)
    if detectors:
        print(f"detectors from {detectors}: {len(report.get('used', []))} used"
              + (f"; {len(report['ignored'])} not on an approach lane or not needed: "
                 f"{', '.join(report['ignored'][:10])}{' ...' if len(report['ignored']) > 10 else ''}"
                 if report.get("ignored") else "")
              + (f"; the rig placed loops on {len(report['placed'])} approach lanes it has none on: "
                 f"{', '.join(report['placed'][:10])}{' ...' if len(report['placed']) > 10 else ''}"
                 if report.get("placed") else ""), file=file)


if __name__ == "__main__":
    sys.exit(main())
