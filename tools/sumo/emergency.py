"""The emergency route green wave in SUMO (issue #18.2, docs/emergency.md).

An ambulance (vClass emergency, which here obeys the signals like any car)
crosses the arterial scenario from W to E through its five signals, under
Greenwave (free-style adaptive, as the table runs it) with every junction
given a [[preempt]] (input 1, dwell on the main-street throughs 2 and 6):

- `wave`: the run starts an emergency route over gRPC as the ambulance
  departs and reports its position and speed every second (from SUMO, as
  its AVL would); the daemon arms each junction 20 s ahead of it and
  releases it behind;
- `none`: the same run, same seed, no route: the ambulance takes the
  signals as they come.

Reported per run: the ambulance's travel time and time lost, and everyone
else's mean time lost (SUMO tripinfo `timeLoss`) over the same window in
both runs: the vehicles whose trips overlap the `--window` seconds from the
ambulance's departure (its trip, the wave's exits and the recovery after).

    /tmp/ci/.venv/bin/python tools/sumo/emergency.py --seeds 1,2,3 [--demand balanced]
        [--depart 600] [--duration 1200] [--window 300] [--out DIR] [--metrics-only]

The gRPC calls are fire-and-forget futures: the daemon's answer waits for
the engine, which in lockstep waits for the bridge, so the bridge must not
block on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402
from common import read_json, write_json  # noqa: E402

EV_ID = "ambulance"
TOKEN = "emergency-sil-operator-0123456789abcdef"
PREEMPT_INPUT = 1
# The arterial's main street, W to E: the edges the ambulance takes.
FROM_EDGE, TO_EDGE = "W_A1", "A5_E"


def ev_routes(net: Path, out: Path, depart: float) -> tuple[Path, list[str]]:
    """A route file with the ambulance, and its edges."""
    import sumolib

    sn = sumolib.net.readNet(str(net))
    path, _ = sn.getShortestPath(sn.getEdge(FROM_EDGE), sn.getEdge(TO_EDGE))
    if not path:
        raise SystemExit(f"no path {FROM_EDGE} -> {TO_EDGE} in {net}")
    edges = [e.getID() for e in path]
    out.write_text(
        "<routes>\n"
        '  <vType id="emergency" vClass="emergency" guiShape="emergency" accel="2.6" decel="4.5" sigma="0.5" '
        'length="6.5" minGap="2.5" tau="1.0" speedFactor="1.2"/>\n'
        f'  <vehicle id="{EV_ID}" type="emergency" depart="{depart}" departLane="best" departSpeed="max">\n'
        f'    <route edges="{" ".join(edges)}"/>\n'
        "  </vehicle>\n</routes>\n")
    return out, edges


def stops(net: Path, model: dict, edges: list[str]) -> list[dict]:
    """The signals the route crosses, in order: the junction id, its
    approach edge (the route's edge entering it) and the link length from
    the previous stop line (edge lengths; internal lanes left out)."""
    import sumolib

    sn = sumolib.net.readNet(str(net))
    by_node = {}
    for tid, j in model.items():
        for e in j["approaches"]:
            by_node[e] = tid
    out, run_m = [], 0.0
    for e in edges:
        run_m += sn.getEdge(e).getLength()
        tid = by_node.get(e)
        if tid is not None:
            out.append({"id": model[tid].get("id", tid), "approach": e, "approach_len": sn.getEdge(e).getLength(),
                        "at_m": run_m})
    for k, s in enumerate(out):
        s["link_m"] = s["at_m"] - out[k - 1]["at_m"] if k else 0.0
    return out


def grpc_toml(port: int) -> str:
    """The daemon's API for the run, with the reporter's operator token."""
    import hashlib

    sha = hashlib.sha256(TOKEN.encode()).hexdigest()
    return (f'[grpc]\nlisten = "127.0.0.1:{port}"\n'
            f'[[grpc.token]]\nname = "sil-dispatch"\nrole = "operator"\nsha256 = "{sha}"\n')


def preempt_toml(j: dict) -> str:
    dwell = [p for p in (2, 6) if p in j["phases"]] or [j["rings"][0][0]]
    return (f"\n[[preempt]]\ninput = {PREEMPT_INPUT}\nname = \"emergency vehicle\"\n"
            f"min_duration_s = 2.0\ndwell_phases = {dwell}\n")


class Reporter:
    """Starts the route as the ambulance departs and reports it every
    second of simulated time."""

    def __init__(self, port: int, route: list[dict], wave: bool):
        self.port, self.route, self.wave = port, route, wave
        self.started = False
        self.next_t = 0.0
        self.calls = []
        self.errors = []
        self.stub = self.pb = None

    def connect(self):
        import grpc
        from grpc_tools import protoc

        gen = tempfile.mkdtemp(prefix="gw-ev-stubs-")
        proto = HERE.parent.parent / "proto"
        if protoc.main(["protoc", f"-I{proto}", f"--python_out={gen}", f"--grpc_python_out={gen}",
                        "greenwave/v1/greenwave.proto"]) != 0:
            raise SystemExit("protoc failed")
        sys.path.insert(0, gen)
        from greenwave.v1 import greenwave_pb2, greenwave_pb2_grpc

        self.pb = greenwave_pb2
        self.stub = greenwave_pb2_grpc.ControlStub(grpc.insecure_channel(f"127.0.0.1:{self.port}"))

    def _call(self, method, req):
        fut = method.future(req, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30)
        self.calls.append(fut)

    def step(self, api, t: float):
        if not self.wave or t < self.next_t:
            return
        self.next_t = t + 1.0
        try:
            self._report(api)
        except Exception as e:  # noqa: BLE001  (the run goes on; the result says so)
            self.errors.append(f"t={t:.1f}: {type(e).__name__}: {e}"[:200])

    def _report(self, api):
        try:
            edge = api.vehicle.getRoadID(EV_ID)
        except Exception:  # noqa: BLE001  (not departed, or arrived)
            return
        if not edge:
            return
        speed = max(0.0, api.vehicle.getSpeed(EV_ID))
        position = self.position(api)
        if position is None:
            return
        if self.stub is None:
            self.connect()
        if not self.started:
            self.started = True
            req = self.pb.StartEmergencyRouteRequest(
                route_id="ambulance", distance_to_first_m=-position, speed_mps=speed, lead_s=20.0,
                stops=[self.pb.EmergencyStop(intersection_id=s["id"], preempt_input=PREEMPT_INPUT,
                                             link_m=s["link_m"]) for s in self.route])
            self._call(self.stub.StartEmergencyRoute, req)
        else:
            req = self.pb.UpdateEmergencyVehicleRequest(route_id="ambulance", position_m=position, speed_mps=speed)
            self._call(self.stub.UpdateEmergencyVehicle, req)

    def position(self, api) -> float | None:
        """Metres along the route from the first stop line: from the
        driving distance to the next stop line ahead, or past the last."""
        first = self.route[0]["at_m"]
        for s in self.route:
            d = api.vehicle.getDrivingDistance(EV_ID, s["approach"], s["approach_len"])
            if 0.0 <= d < 1e8:
                return s["at_m"] - first - d
        return self.route[-1]["at_m"] - first + 50.0

    def finish(self) -> dict:
        ok = 0
        for f in self.calls:
            try:
                f.result(timeout=30)
                ok += 1
            except Exception as e:  # noqa: BLE001
                self.errors.append(str(e)[:200])
        return {"route_calls": len(self.calls), "route_calls_ok": ok, "route_errors": self.errors[:5]}


def ev_metrics(tripinfo: Path, window_s: float) -> dict:
    """The ambulance's trip, and the others' mean time lost over the same
    window in every run: from the ambulance's departure for `window_s`.
    Another vehicle counts when its trip overlaps the window, finished or
    not (an unfinished trip's time lost is up to the end of the run)."""
    trips = []
    for _, el in ET.iterparse(tripinfo):
        if el.tag == "tripinfo":
            trips.append((el.get("id"), float(el.get("depart")), float(el.get("arrival")),
                          float(el.get("duration")), float(el.get("timeLoss"))))
        el.clear()
    ev = next((t for t in trips if t[0] == EV_ID), None)
    if ev is None or ev[2] < 0:
        return {"ev_error": "the ambulance did not arrive"}
    lo, hi = ev[1], ev[1] + window_s
    others = [t for t in trips if t[0] != EV_ID and 0 <= t[1] <= hi and (t[2] >= lo or t[2] < 0)]
    return {"ev_travel_s": ev[3], "ev_time_loss_s": ev[4],
            "others_n": len(others),
            "others_mean_time_loss_s": round(sum(t[4] for t in others) / max(1, len(others)), 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--demand", default="balanced")
    ap.add_argument("--depart", type=float, default=600.0, help="the ambulance departs at this SUMO time, s")
    ap.add_argument("--duration", type=float, default=1200.0)
    ap.add_argument("--window", type=float, default=300.0,
                    help="the others' time lost over this long from the ambulance's departure, s")
    ap.add_argument("--metrics-only", action="store_true",
                    help="recompute the table from the runs already in --out (no simulation)")
    ap.add_argument("--port-base", type=int, default=17100)
    ap.add_argument("--out", type=Path, default=run.BUILD / "emergency")
    a = ap.parse_args(argv)

    # the daemon runs in its run directory: every path absolute
    a.out = a.out.resolve()
    src = run.shipped_inputs("arterial", a.demand)
    net = Path(src["net"])
    model = run.load_model(src["ctl"])
    a.out.mkdir(parents=True, exist_ok=True)
    rou, edges = ev_routes(net, a.out / "ambulance.rou.xml", a.depart)
    route = stops(net, model, edges)
    print("route:", ", ".join(f"{s['id']} (+{s['link_m']:.0f} m)" for s in route), flush=True)
    results = []
    for k, seed in enumerate(int(s) for s in a.seeds.split(",")):
        for wave in (False, True):
            task = dict(src, seed=seed, controller="greenwave", routes=src["routes"] + [str(rou)],
                        run_dir=str(a.out / f"seed{seed}-{'wave' if wave else 'none'}"),
                        base_port=a.port_base + k * 50, greenwave_mode="adaptive", greenwave_style="free",
                        greenwave_cameras=True, greenwave_passage=0.5, duration=a.duration,
                        emergency={"wave": wave, "grpc_port": a.port_base + 40 + k * 50, "route": route})
            if a.metrics_only:
                r = read_json(Path(task["run_dir"]) / "result.json")
            else:
                r = run.run_one(task)
            tripinfo = Path(task["run_dir"]) / "tripinfo.xml"
            if tripinfo.exists():
                r.update(ev_metrics(tripinfo, a.window))
            r["wave"] = wave
            write_json(Path(task["run_dir"]) / "result.json", r)
            results.append(r)
            print(json.dumps({k2: r.get(k2) for k2 in ("seed", "wave", "ok", "trips", "ev_travel_s", "ev_time_loss_s",
                                                       "others_n", "others_mean_time_loss_s", "route_calls",
                                                       "route_calls_ok", "error")}), flush=True)
    write_json(a.out / "emergency.json", results)
    print(table(results))
    return 0 if all(r.get("ok") and "ev_travel_s" in r for r in results) else 1


def table(results: list[dict]) -> str:
    rows = ["| seed | wave | ambulance travel (s) | ambulance time lost (s) | others' mean time lost (s) | others (n) |",
            "|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['seed']} | {'yes' if r['wave'] else 'no'} | {r.get('ev_travel_s', '—')} | "
                    f"{r.get('ev_time_loss_s', '—')} | {r.get('others_mean_time_loss_s', '—')} | {r.get('others_n', '—')} |")
    for wave in (False, True):
        rs = [r for r in results if r["wave"] == wave and "ev_travel_s" in r]
        if rs:
            mean = lambda key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
            rows.append(f"| mean | {'yes' if wave else 'no'} | {mean('ev_travel_s'):.1f} | "
                        f"{mean('ev_time_loss_s'):.1f} | {mean('others_mean_time_loss_s'):.2f} | |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
