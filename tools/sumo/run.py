#!/usr/bin/env python3
"""Run SIL scenarios and print the results table.

    .venv/bin/python tools/sumo/run.py --scenario single --demand balanced \\
        --seeds 1,2,3 --controllers webster,actuated,delay_based,nema,maxpressure,greenwave
    .venv/bin/python tools/sumo/run.py --all --seeds 1,2,3,4,5     # the full table
    .venv/bin/python tools/sumo/run.py --smoke                     # CI: exits 1 on any failure or trip
    .venv/bin/python tools/sumo/run.py --net my.net.xml --routes am.rou.xml \\
        --detectors loops.add.xml --controllers webster,greenwave --seeds 1   # a user's own network

A user's network (--net with --routes, optionally --detectors and
--additional) runs the same controllers without the scenario generator:
the rig imports the network's traffic lights (import_net.py), designs
Webster on the mean flows of the route files, and writes everything into
--out (default ./greenwave-sil): ctl/ (controllers, sumo-map.json, the
rig's loops), design.json, runs/<tag>/<run>/ and the tables <tag>.{csv,json,txt}.
Paths given on the command line are relative to the working directory.

Every run is one SUMO simulation (libsumo, step 0.1 s) in its own process;
--jobs runs several at once. Metrics per run, from tripinfo with unfinished
and undeparted vehicles written at the end:
- delay_s:     mean time loss per vehicle, including depart delay (time spent
               waiting to enter the network), over every vehicle that was
               due to depart: arrived, still driving, or still waiting;
- travel_s:    mean travel time of the vehicles that departed (still driving
               ones counted to the end of the run);
- throughput:  vehicles that arrived, per hour of demand;
- stops:       mean number of stops per departed vehicle.
The table shows the median over seeds. Results of the shipped scenarios go
to tools/sumo/results/<tag>.{csv,json,txt} (or --out), their runs to
tools/sumo/build/runs/<tag>/.

greenwave: the controllers are imported from the network (import_net.py;
--greenwave-mode free = actuated with the imported timings, adaptive = the
`adaptive` plan mode), each junction is served as a Modbus cabinet by the
bridge, and the daemon (--greenwave-bin, $SIL_GREENWAVE_BIN, or this
checkout's target/release/greenwave) runs unmodified with clock = "cabinet".
The bridge's simulated clock starts at --start-time (default Monday
2026-01-05 00:00 UTC); the daemon's Indiana event log stays in each run
directory (log/) and --keep-events DIR copies it out.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (BUILD, EPOCH_MS, HERE, SCENARIOS, STEP_S, ensure_env, greenwave_bin, iso_ms,  # noqa: E402
                    parse_start_time, read_json, sumo_bin, user_path, write_json, zone)

# --all runs the four table networks; city (16 signals) runs when named
TABLE_SCENARIOS = ["single", "arterial", "grid", "tnet"]
SCENARIO_NAMES = TABLE_SCENARIOS + ["city"]
LEVEL_NAMES = ["balanced", "unbalanced", "nearsat", "peak"]
CONTROLLERS = ["webster", "actuated", "delay_based", "nema", "maxpressure", "greenwave"]
DRAIN_S = 900  # after the demand ends, run until empty or this much longer
DEFAULT_OUT = "greenwave-sil"  # a user network's output directory, under the working directory
PLAN_CHANGE = 131  # Indiana event code: coordination pattern change

# NEMA tuning grid (see tune_nema): passage (vehext) x max-green scale, with
# SUMO's long stop-bar presence zones and no recalls (skip empty phases).
NEMA_GRID = [(v, m) for v in (0.5, 1.0, 1.5, 2.5, 3.5) for m in (1.0, 1.5)]
NEMA_DEFAULT = {"vehext": 2.5, "max_scale": 1.0, "det_len": 20.0, "min_recall": ""}
ACTUATED_PARAMS = {"max-gap": "3.0", "detector-gap": "2.0", "passing-time": "2.0", "show-detectors": "false"}
DELAY_PARAMS = {"detectorRange": "100", "minTimeloss": "1.0", "show-detectors": "false"}


# ---- preparation (cached under build/) ---------------------------------


def net_path(sc: str) -> Path:
    p = SCENARIOS / sc / f"{sc}.net.xml"
    if not p.exists():
        import make_scenarios

        make_scenarios.main([sc])
    return p


def shipped_inputs(sc: str, level: str) -> dict:
    """The input files of a shipped scenario at a demand level (made or
    re-made under build/<scenario>/ when missing or stale)."""
    model_for(sc)
    rou, _ = demand_for(sc, level)
    return {"scenario": sc, "demand": level, "net": str(net_path(sc)), "routes": [str(rou)],
            "design": str(BUILD / sc / f"{level}.design.json"), "ctl": str(BUILD / sc / "ctl"),
            "detectors": None, "additional": []}


def user_inputs(a, out: Path) -> dict:
    """A user's network and routes: its traffic lights imported into
    out/ctl, Webster's design flows from the routes into out/design.json."""
    import demand
    import import_net

    unsupported, report = [], {}
    ctl = out / "ctl"
    model = import_net.import_net(a.net, ctl, detectors=a.detectors, unsupported=unsupported,
                                  detector_report=report)
    import_net.print_report(unsupported, report, a.detectors)
    if not model:
        sys.exit(f"{a.net}: no traffic light the rig can control")
    duration = a.duration or demand.routes_end(a.routes)
    if not duration:
        sys.exit("the route files' demand has no end (a flow without end or number): give --duration S")
    design = demand.design_from_routes(str(a.net), model, a.routes, duration)
    write_json(out / "design.json", design)
    print(f"{a.net.name}: {len(model)} traffic lights ({', '.join(model)}), demand {design['vehicles_per_hour']:.0f} "
          f"veh/h for {duration:.0f} s" + (f", {design['unrouted']} entries without a route left out of Webster's "
                                           "design flows" if design["unrouted"] else ""), flush=True)
    return {"scenario": a.name, "demand": a.demand_label, "net": str(a.net), "routes": [str(r) for r in a.routes],
            "design": str(out / "design.json"), "ctl": str(ctl),
            "detectors": str(a.detectors) if a.detectors else None, "additional": [str(x) for x in a.additional]}


def load_model(ctl) -> dict:
    return {k: _intkeys(v) for k, v in read_json(Path(ctl) / "sumo-map.json")["junctions"].items()}


def model_for(sc: str) -> dict:
    import import_net

    d = BUILD / sc / "ctl"
    mp_ = d / "sumo-map.json"
    # Stale when the network or the importer (phases, detectors) changed.
    sources = [net_path(sc), HERE / "netmodel.py", HERE / "import_net.py"]
    if not mp_.exists() or mp_.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        import_net.import_net(net_path(sc), d)
    return {k: _intkeys(v) for k, v in read_json(mp_)["junctions"].items()}


def _intkeys(j: dict) -> dict:
    j["phases"] = {int(k): v for k, v in j["phases"].items()}
    return j


def demand_for(sc: str, level: str) -> tuple[Path, dict]:
    import demand

    rou = BUILD / sc / f"{level}.rou.xml"
    info = BUILD / sc / f"{level}.design.json"
    if not rou.exists() or not info.exists():
        d = demand.write_routes(str(net_path(sc)), model_for(sc), level, rou)
        write_json(info, d)
    return rou, read_json(info)


def program_file(out: Path, ctrl: str, model: dict, design: dict, tuning: dict | None) -> Path | None:
    """The baseline's SUMO programs (tlLogic) as an additional file `out`
    (in the run's own directory: parallel runs never share one)."""
    import baselines

    out.parent.mkdir(parents=True, exist_ok=True)
    L = ["<additional>"]
    if ctrl == "webster":
        plans = baselines.webster(model, design)
        for tid, j in model.items():
            L.append(baselines.static_tllogic(j, plans[tid]["green"], plans[tid]["cycle"]))
    elif ctrl == "actuated":
        for j in model.values():
            L.append(baselines.stage_program(j, "actuated", ACTUATED_PARAMS))
    elif ctrl == "delay_based":
        for j in model.values():
            L.append(baselines.stage_program(j, "delay_based", DELAY_PARAMS))
    elif ctrl == "nema":
        t = dict(NEMA_DEFAULT, **(tuning or {}))
        for j in model.values():
            L.append(baselines.nema_program(j, t["vehext"], t["max_scale"], t["det_len"], t["min_recall"]))
    else:
        return None
    L.append("</additional>")
    out.write_text("\n".join(L) + "\n")
    return out


# ---- one run -------------------------------------------------------------


def run_one(task: dict) -> dict:
    """One simulation; returns metrics (or an error)."""
    t0 = time.time()
    sc, level, seed, ctrl = task["scenario"], task["demand"], task["seed"], task["controller"]
    rdir = Path(task["run_dir"])
    rdir.mkdir(parents=True, exist_ok=True)
    res = {"scenario": sc, "demand": level, "seed": seed, "controller": ctrl}
    try:
        ensure_env()
        import libsumo

        model = load_model(task["ctl"])
        design = read_json(task["design"])
        # the user's detectors (if any), the rig's own loops, the user's
        # other additional files, the baseline's program
        dets = ([task["detectors"]] if task.get("detectors") else []) + [str(Path(task["ctl"]) / "detectors.add.xml")]
        prog = program_file(rdir / "program.add.xml", ctrl, model, design, task.get("tuning"))
        adds = dets + list(task.get("additional") or []) + ([str(prog)] if prog else [])
        ti = rdir / "tripinfo.xml"
        end_limit = design["duration"] + DRAIN_S
        if task.get("duration"):
            end_limit = task["duration"]
        cmd = [sumo_bin("sumo"), "-n", task["net"], "-r", ",".join(task["routes"]), "-a", ",".join(adds),
               "--step-length", str(STEP_S), "--seed", str(seed),
               "--tripinfo-output", str(ti), "--tripinfo-output.write-unfinished", "true",
               "--tripinfo-output.write-undeparted", "true",
               "--no-step-log", "true", "--no-warnings", "true", "--time-to-teleport", "-1",
               "--end", str(end_limit + 1)]
        libsumo.start(cmd)
        prog_id = {"webster": "webster", "actuated": "actuated", "delay_based": "delay_based", "nema": "nema"}.get(ctrl)
        if prog_id:
            for tid in model:
                libsumo.trafficlight.setProgram(tid, prog_id)
        demand_end = design["duration"] if not task.get("duration") else task["duration"]
        lsmon = LinkMonitor(model, libsumo)

        def finished(t):
            lsmon.check(t)
            return t >= end_limit - 1e-6 or (t >= demand_end and libsumo.simulation.getMinExpectedNumber() == 0)

        extra = {}
        if ctrl == "greenwave":
            extra = run_greenwave(task, model, libsumo, finished, rdir)
        elif ctrl == "maxpressure":
            run_maxpressure(model, libsumo, finished)
        else:
            t = 0.0
            while True:
                libsumo.simulationStep()
                t += STEP_S
                if finished(t):
                    break
        sim_end = libsumo.simulation.getTime()
        libsumo.close()
        res.update(metrics(ti, demand_end))
        res.update(extra)
        res["link_conflicts"] = lsmon.count
        res["sim_end_s"] = round(sim_end, 1)
        res["ok"] = not extra.get("error") and not extra.get("trips") and lsmon.count == 0
    except Exception as e:  # noqa: BLE001
        res["ok"] = False
        res["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        try:
            import libsumo

            libsumo.close()
        except Exception:  # noqa: BLE001
            pass
    res["wall_s"] = round(time.time() - t0, 1)
    write_json(rdir / "result.json", res)
    return res


class LinkMonitor:
    """Link-level check for every controller: two foe links both 'G'
    (neither yields) at the same time."""

    def __init__(self, model, api):
        self.api = api
        self.model = model
        self.last = {}
        self.count = 0
        self.examples = []

    def check(self, t):
        for tid, j in self.model.items():
            s = self.api.trafficlight.getRedYellowGreenState(tid)
            if self.last.get(tid) == s:
                continue
            self.last[tid] = s
            G = [i for i, c in enumerate(s) if c == "G"]
            foes = j["foes"]
            for a in G:
                for b in G:
                    if a < b and foes[a][b]:
                        self.count += 1
                        if len(self.examples) < 5:
                            self.examples.append(f"{tid} t={t:.1f} links {a},{b} both G: {s}")


def run_maxpressure(model, api, finished):
    import baselines

    ensure_env()
    import sumolib

    ctrls = [baselines.MaxPressure(j, api) for j in model.values()]
    in_lanes = sorted({l["from_lane"] for j in model.values() for l in j["links"]})
    out_edges = sorted({l["to_edge"] for j in model.values() for l in j["links"]})
    # queues beyond a left pocket: the edge upstream of a pocket edge
    net = sumolib.net.readNet(str(Path(api.simulation.getOption("net-file"))))
    upstream = {}
    for lane in in_lanes:
        e = net.getLane(lane).getEdge()
        inc = e.getIncoming()
        if len(inc) == 1 and e.getFromNode().getType() != "traffic_light":
            up = list(inc)[0]
            upstream[lane] = (up.getID(), e.getLaneNumber())
    nlanes = {e: net.getEdge(e).getLaneNumber() for e in out_edges}
    cap = {lane: max(1, int(net.getLane(lane).getLength() / 7.5)) for lane in in_lanes}
    t = 0.0
    while True:
        hin = {}
        for lane in in_lanes:
            q = api.lane.getLastStepHaltingNumber(lane)
            # the queue upstream of a short (pocket) lane counts for it only
            # once it is full: otherwise the vehicles waiting there may be
            # bound for another lane (a left queue spilling back)
            if lane in upstream and q >= cap[lane] - 1:
                q += api.edge.getLastStepHaltingNumber(upstream[lane][0]) / upstream[lane][1]
            hin[lane] = q
        hout = {e: api.edge.getLastStepHaltingNumber(e) / nlanes[e] for e in out_edges}
        for c in ctrls:
            c.step(t, hin, hout)
        api.simulationStep()
        t += STEP_S
        if finished(t):
            break


def run_greenwave(task, model, api, finished, rdir: Path) -> dict:
    import import_net
    from bridge import Bridge

    ctl = rdir / "ctl"
    net = Path(task["net"])
    m2 = import_net.import_net(net, ctl, base_port=task["base_port"], detectors=task.get("detectors"),
                               unsupported=[],
                               mode=task.get("greenwave_mode", "free"),
                               style=task.get("greenwave_style", "cycle"),
                               passage_s=task.get("greenwave_passage"),
                               adaptive=import_net.parse_keys(task.get("greenwave_adaptive", "")),
                               cameras=task.get("greenwave_cameras", False),
                               platoon_passage_s=task.get("greenwave_platoon_passage"),
                               schedule=task.get("greenwave_schedule"))
    for tid in model:
        model[tid]["port"] = m2[tid]["port"]
    (ctl / "detectors.add.xml").unlink(missing_ok=True)
    ev = task.get("emergency")
    reporter = None
    if ev:
        # tools/sumo/emergency.py: every junction gets the ambulance's
        # preempt, the daemon its gRPC API for the route
        import emergency

        for j in m2.values():
            f = ctl / f"{j['id']}.toml"
            f.write_text(f.read_text() + emergency.preempt_toml(j))
        reporter = emergency.Reporter(ev["grpc_port"], ev["route"], ev["wave"])
    corridors = import_net.corridors(net, m2) if task.get("greenwave_corridors") else []
    broker = None
    n_daemons = task.get("greenwave_daemons", 1)
    if n_daemons == 1:
        # one daemon: the run directory's own layout (README.md, "Your own network")
        daemons = [{"dir": rdir, "ids": None}]
        ctls = [ctl]
    else:
        # one directory per daemon, its controllers moved out of ctl/; the
        # corridors they share are joined through the run's own broker
        import broker as nats_broker

        broker = nats_broker.Broker(task["nats_port"], rdir / "nats")
        daemons, ctls = [], []
        for k, ids in enumerate(import_net.split_daemons(net, m2, n_daemons), 1):
            d = rdir / f"daemon{k}"
            (d / "ctl").mkdir(parents=True, exist_ok=True)
            for cid in ids:
                (ctl / f"{cid}.toml").replace(d / "ctl" / f"{cid}.toml")
            daemons.append({"dir": d, "ids": ids})
            ctls.append(d / "ctl")
    for d, dctl in zip(daemons, ctls):
        local = set(d["ids"]) if d["ids"] is not None else None
        d["config"] = d["dir"] / "greenwave.toml"
        d["log_dir"] = d["dir"] / "log"
        d["config"].write_text(greenwave_toml(dctl, d["log_dir"], time_zone=task.get("time_zone"),
                                              corridors=import_net.corridor_toml(corridors, local),
                                              grpc=emergency.grpc_toml(ev["grpc_port"]) if ev else None,
                                              nats_url=broker.url if broker else None))
    out = {"event_log": str(daemons[0]["log_dir"] if n_daemons == 1 else rdir)}

    def step(t):
        if reporter:
            reporter.step(api, t)
        return finished(t)

    async def main():
        br = Bridge(model, api, STEP_S, step, start_ms=task.get("start_ms", EPOCH_MS))
        await br.start()
        if broker:
            broker.start()
        # GREENWAVE_* variables are daemon settings: a run uses the scenario's
        # config only, never overrides left in the caller's shell
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GREENWAVE_")}
        env.update(NO_COLOR="1", RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        if task.get("time_zone"):
            # the daemon writes its event log in local time: the simulated
            # junctions' zone
            env["TZ"] = task["time_zone"]
        for d in daemons:
            d["log"] = open(d["dir"] / "greenwave.log", "w")
            d["proc"] = subprocess.Popen([greenwave_bin(), "run", "--config", str(d["config"]), "--no-view",
                                          "--stats-json", str(d["dir"] / "stats.json")],
                                         cwd=d["dir"], stdout=d["log"], stderr=subprocess.STDOUT, env=env)
        limit = time.time() + task.get("wall_limit_s", 3600)
        err = None
        last_steps, last_progress = 0, time.time()
        while not br.done.is_set():
            await asyncio.sleep(0.2)
            for d in daemons:
                if d["proc"].poll() is not None:
                    err = (f"greenwave exited with {d['proc'].returncode} at sim t={br.sim_t:.1f}s "
                           f"(see {d['dir'] / 'greenwave.log'})")
                    break
            if err:
                break
            if br.steps != last_steps:
                last_steps, last_progress = br.steps, time.time()
            elif time.time() - last_progress > 30:
                logs = ", ".join(str(d["dir"] / "greenwave.log") for d in daemons)
                err = f"lockstep stalled at sim t={br.sim_t:.1f}s for 30 s (see {logs})"
                break
            if time.time() > limit:
                err = f"wall-clock limit at sim t={br.sim_t:.1f}s"
                break
        br.stopping = True
        if broker:
            # while the daemons are still connected: the broker forgets a
            # closed connection's counts
            try:
                out["neighbours"] = broker.neighbour_traffic(
                    [{m.replace(".", "_") for m in import_net.remote_neighbours(corridors, set(d["ids"]))}
                     for d in daemons])
            except OSError as e:
                out["neighbours_error"] = f"broker monitoring: {e}"
        for d in daemons:
            if d["proc"].poll() is None:
                d["proc"].send_signal(signal.SIGTERM)
        for _ in range(50):
            if all(d["proc"].poll() is not None for d in daemons):
                break
            await asyncio.sleep(0.1)
        for d in daemons:
            if d["proc"].poll() is None:
                d["proc"].kill()
                d["proc"].wait()
            d["log"].close()
        if broker:
            broker.stop()
        await br.stop()
        out["trips"] = len(br.trips())
        out["trip_log"] = br.trips()[:20]
        out["flashes"] = br.flashes()
        out["steps"] = br.steps
        exits = [d["proc"].returncode for d in daemons]
        out["daemon_exit"] = exits[0] if n_daemons == 1 else exits
        if broker:
            # each daemon's own count of neighbours' projections that came
            # after their delivery time (docs/nats.md#neighbours): any, and
            # the run is not reproducible
            late = []
            for d in daemons:
                try:
                    late.append(json.loads((d["dir"] / "stats.json").read_text()).get("late_projections"))
                except (OSError, ValueError):
                    late.append(None)
            out["late_projections"] = late
        errs = []
        for d in daemons:
            lines = [ln.strip() for ln in open(d["dir"] / "greenwave.log", errors="replace") if ln.strip()]
            errs += [ln for ln in lines if " ERROR " in ln]
            if err and d["proc"].returncode not in (None, 0) and lines:
                err += f": {lines[-1][:300]}"  # why the daemon stopped (e.g. a config error)
        out["daemon_errors"] = len(errs)
        out["daemon_error_log"] = errs[:5]
        out["modbus_reads"] = sum(j.reads for j in br.juncs)
        out["modbus_writes"] = sum(j.writes for j in br.juncs)
        if reporter:
            out.update(reporter.finish())
        silent = [j.tls for j in br.juncs if not j.monitor.started]
        if silent and not err and br.sim_t > 60:
            err = f"junctions never showed a green: {', '.join(silent)}"
        if err:
            out["error"] = err

    asyncio.run(main())
    if n_daemons > 1:
        out["daemons"] = [{"daemon": k, "junctions": d["ids"]} for k, d in enumerate(daemons, 1)]
    out["plan_changes"] = [pc for d in daemons for pc in plan_changes(d["log_dir"])][:50]
    if task.get("keep_events"):
        keep = Path(task["keep_events"]) / rdir.name
        if keep.exists():
            shutil.rmtree(keep)
        for d in daemons:
            # several daemons' logs may share file names: one directory each
            into = keep if n_daemons == 1 else keep / d["dir"].name
            into.mkdir(parents=True)
            for f in sorted(d["log_dir"].glob("*.csv")):
                shutil.copy2(f, into / f.name)
        out["event_log"] = str(keep)
    return out


def greenwave_toml(ctl: Path, log_dir: Path, time_zone: str | None = None, corridors: str = "",
                   grpc: str | None = None, nats_url: str | None = None) -> str:
    """The daemon's greenwave.toml for one SIL run. `time_zone` is written
    only when given, so the default works with daemons that do not know
    the key. `grpc`: a `[grpc]` section (the emergency runs), else none.
    `nats_url`: the broker of a run split over several daemons (`[nats]`:
    the city feed and the corridor neighbour exchange), else none."""
    return ((f"time_zone = {json.dumps(time_zone)}\n" if time_zone else "")
            + f"controllers = {json.dumps(str(ctl))}\ntick_ms = {int(STEP_S * 1000)}\nview = false\n"
            'clock = "cabinet"\n'
            # Split over daemons: at most 8 simulated seconds per real one, so
            # the broker has 125 ms or more of real time to carry each
            # neighbour projection within its 1 s of control time
            # (docs/nats.md#neighbours); the light start of a run otherwise
            # races.
            + ("lockstep_speed = 8\n" if nats_url else "")
            + f"[event_log]\ndir = {json.dumps(str(log_dir))}\n"
            # No API in SIL runs but the emergency ones (their own port):
            # parallel runs would fight over it.
            + (grpc or "[grpc]\nenabled = false\n")
            + (f"[nats]\nurl = {json.dumps(nats_url)}\n" if nats_url else "")
            + corridors)


def plan_changes(log_dir: Path) -> list[list[str]]:
    """[signal, timestamp, plan] of every plan change (Indiana event 131)
    in the daemon's event log files, in file order."""
    out = []
    for f in sorted(Path(log_dir).glob("*.csv")):
        with open(f, newline="") as fh:
            for row in csv.reader(fh):
                if len(row) >= 4 and row[2].strip() == str(PLAN_CHANGE):
                    out.append([row[0], row[1], row[3]])
    return out


def metrics(tripinfo: Path, demand_end: float) -> dict:
    n = arrived = departed = 0
    delay = travel = stops = 0.0
    for _, el in ET.iterparse(tripinfo):
        if el.tag != "tripinfo":
            continue
        n += 1
        dd = float(el.get("departDelay", 0) or 0)
        tl = float(el.get("timeLoss", 0) or 0)
        dep = float(el.get("depart", -1) or -1)
        delay += max(dd, 0) + max(tl, 0)
        if dep >= 0:
            departed += 1
            travel += float(el.get("duration", 0) or 0)
            stops += float(el.get("waitingCount", 0) or 0)
        if el.get("vaporized") in (None, "") and float(el.get("arrival", -1) or -1) >= 0:
            arrived += 1
        el.clear()
    return {
        "vehicles": n,
        "arrived": arrived,
        "unfinished": n - arrived,
        "delay_s": round(delay / max(n, 1), 2),
        "travel_s": round(travel / max(departed, 1), 2),
        "throughput_vph": round(arrived * 3600.0 / max(demand_end, 1), 1),
        "stops": round(stops / max(departed, 1), 3),
    }


# ---- many runs, table ------------------------------------------------------


def execute(tasks: list[dict], jobs: int, verbose=True) -> list[dict]:
    """Run the tasks; a task whose run directory already has a successful
    result (same tag: an interrupted table) is not run again."""
    results = []
    todo = []
    for t in tasks:
        p = Path(t["run_dir"]) / "result.json"
        if p.exists():
            r = read_json(p)
            if r.get("ok"):
                results.append(r)
                continue
        todo.append(t)
    if verbose and len(todo) < len(tasks):
        print(f"{len(tasks) - len(todo)} runs already done (reused)", flush=True)
    tasks = todo
    done0 = len(results)
    if not tasks:
        return results
    if jobs <= 1 or len(tasks) == 1:
        for t in tasks:
            r = _sub(t)
            results.append(r)
            if verbose:
                _progress(r, len(results) - done0, len(tasks))
        return results
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as ex:
        futs = [ex.submit(run_one, t) for t in tasks]
        for f in as_completed(futs):
            r = f.result()
            results.append(r)
            if verbose:
                _progress(r, len(results) - done0, len(tasks))
    return results


def _sub(t):
    # run in a fresh process (libsumo holds one simulation per process)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as ex:
        return ex.submit(run_one, t).result()


def _progress(r, k, n):
    status = "ok" if r.get("ok") else ("FAIL " + (r.get("error") or f"trips={r.get('trips')}").splitlines()[0])
    print(f"[{k}/{n}] {r['scenario']:8s} {r['demand']:10s} seed {r['seed']} {r['controller']:11s} "
          f"delay {r.get('delay_s', float('nan')):7.1f} s  wall {r.get('wall_s', 0):6.1f} s  {status}", flush=True)


def table(results: list[dict], controllers: list[str]) -> tuple[str, list[dict]]:
    rows = []
    keys = sorted({(r["scenario"], r["demand"]) for r in results},
                  key=lambda k: (SCENARIO_NAMES.index(k[0]) if k[0] in SCENARIO_NAMES else 99,
                                 LEVEL_NAMES.index(k[1]) if k[1] in LEVEL_NAMES else 99))
    for sc, lv in keys:
        row = {"scenario": sc, "demand": lv}
        for c in controllers:
            rs = [r for r in results if r["scenario"] == sc and r["demand"] == lv and r["controller"] == c and "delay_s" in r]
            if not rs:
                continue
            for m in ("delay_s", "travel_s", "throughput_vph", "stops", "unfinished", "wall_s"):
                row[f"{c}.{m}"] = statistics.median(r[m] for r in rs)
            row[f"{c}.n"] = len(rs)
            row[f"{c}.fails"] = sum(1 for r in results if r["scenario"] == sc and r["demand"] == lv
                                    and r["controller"] == c and not r.get("ok"))
        rows.append(row)
    lines = []
    head = f"{'scenario':9s} {'demand':10s} " + " ".join(f"{c:>12s}" for c in controllers) + "   best baseline"
    lines.append("Mean delay per vehicle, s (median over seeds; time loss incl. insertion wait and unfinished)")
    lines.append(head)
    for row in rows:
        cells = []
        for c in controllers:
            v = row.get(f"{c}.delay_s")
            cells.append(f"{v:12.1f}" if v is not None else f"{'-':>12s}")
        base = [(row[f"{c}.delay_s"], c) for c in controllers if c != "greenwave" and f"{c}.delay_s" in row]
        best = min(base) if base else None
        extra = f"   {best[1]} {best[0]:.1f}" if best else ""
        if best and "greenwave.delay_s" in row:
            gw = row["greenwave.delay_s"]
            extra += f"  (greenwave {100 * (gw - best[0]) / best[0]:+.0f}%)"
        lines.append(f"{row['scenario']:9s} {row['demand']:10s} " + " ".join(cells) + extra)
    for metric, title in (("travel_s", "Mean travel time, s"), ("throughput_vph", "Throughput, veh/h arrived"),
                          ("stops", "Stops per vehicle"), ("unfinished", "Vehicles unfinished at the end"),
                          ("wall_s", "Wall time per run, s")):
        lines.append("")
        lines.append(title + " (median over seeds)")
        lines.append(head.replace("   best baseline", ""))
        for row in rows:
            cells = []
            for c in controllers:
                v = row.get(f"{c}.{metric}")
                cells.append(f"{v:12.2f}" if isinstance(v, float) and metric == "stops" else
                             (f"{v:12.1f}" if v is not None else f"{'-':>12s}"))
            lines.append(f"{row['scenario']:9s} {row['demand']:10s} " + " ".join(cells))
    return "\n".join(lines), rows


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="single",
                    help="comma list (single, arterial, grid, tnet, city), or 'all' (the first four)")
    ap.add_argument("--demand", default="balanced", help="comma list, or 'all'")
    ap.add_argument("--all", action="store_true", help="the four table scenarios at every demand")
    g = ap.add_argument_group("a user's network (instead of --scenario/--demand; paths relative to the working directory)")
    g.add_argument("--net", type=Path, metavar="FILE.net.xml", help="the SUMO network")
    g.add_argument("--routes", type=Path, nargs="+", action="extend", default=[], metavar="FILE.rou.xml",
                   help="route files (vehicles, trips, flows); one or more")
    g.add_argument("--detectors", type=Path, metavar="FILE.add.xml",
                   help="induction loops / lane area detectors on the approach lanes for Greenwave (the one "
                        "nearest the stop line is the stop-bar detector, the farthest other one the advance "
                        "detector); the rig places its own loops on approach lanes without any. Default: the "
                        "rig's own everywhere")
    g.add_argument("--additional", type=Path, nargs="+", action="extend", default=[], metavar="FILE.add.xml",
                   help="other SUMO additional files every run loads (vehicle types, ...)")
    g.add_argument("--name", help="the network's name in the table (default: the --net file name)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--controllers", default=",".join(CONTROLLERS))
    ap.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--greenwave-bin", type=Path, metavar="PATH",
                    help="the daemon binary (default $SIL_GREENWAVE_BIN, else this checkout's target/release/greenwave)")
    ap.add_argument("--start-time", metavar="ISO8601",
                    help="simulated wall-clock time at SUMO time 0, with a UTC offset, e.g. 2026-12-07T06:58:00+08:00 "
                         "(without one, read in --time-zone); the bridge publishes it in the simulated-time "
                         "registers. Default 2026-01-05T00:00:00Z (a Monday)")
    ap.add_argument("--time-zone", metavar="IANA",
                    help='write time_zone = "<IANA>" into the daemon\'s greenwave.toml (and run the daemon with '
                         "TZ set to it, the zone of its event log's timestamps); not written when not given")
    ap.add_argument("--keep-events", type=Path, metavar="DIR",
                    help="copy each Greenwave run's Indiana event log (log/*.csv) to DIR/<run>/ and list its plan "
                         "changes (event 131); the logs also stay in the run directories")
    ap.add_argument("--greenwave-mode", choices=["free", "adaptive"], default="free")
    ap.add_argument("--greenwave-style", choices=["cycle", "free", "schedule"], default="cycle",
                    help="adaptive style: cycle (coordinated, re-planned cycle and splits), free "
                         "(actuated with re-planned maxima) or schedule (actuated, greens held or ended by a "
                         "rolling-horizon plan every second)")
    ap.add_argument("--greenwave-passage", type=float,
                    help="passage (gap) in s for every imported phase, instead of the importer's default")
    ap.add_argument("--greenwave-platoon-passage", type=float,
                    help="passage for through phases fed by an upstream signal (platoons), instead of --greenwave-passage")
    ap.add_argument("--greenwave-adaptive", default="", metavar="KEY=VALUE,...",
                    help="extra [adaptive] keys for the imported controllers, e.g. max_cycle_s=120")
    ap.add_argument("--greenwave-cameras", action="store_true",
                    help="simulated video zones on every stop-bar lane report the vehicles standing there "
                         "(camera queue registers); the adaptive layer fuses them with the loops")
    ap.add_argument("--greenwave-schedule", metavar="HH:MM,...",
                    help="give the imported controllers a plan change at each time of the simulated day (plans "
                         "2, 3, ...: copies of plan 1), e.g. 07:00 with --start-time 06:58 to see event 131 at 07:00")
    ap.add_argument("--greenwave-corridors", action="store_true",
                    help="write a [[corridor]] for every chain of junctions along a main street "
                         "(import_net.corridors): common cycle and green-wave offsets for cycle-style plans")
    ap.add_argument("--greenwave-daemons", type=int, default=1, metavar="N",
                    help="split the junctions into N daemons, contiguous groups along the main axis "
                         "(import_net.split_daemons), each with its own controllers, config and logs, joined "
                         "through a nats-server the run starts on its own ports: corridors that span daemons "
                         "list the other daemons' members as remote (with --greenwave-corridors)")
    ap.add_argument("--tune-nema", action="store_true",
                    help="first tune NEMA (vehext x max-green scale) per demand level on the single "
                         "intersection, seed 100 (not an evaluation seed); use the best everywhere")
    ap.add_argument("--nema-tuning", type=Path,
                    help="JSON {demand level: {vehext, max_scale}} from an earlier tuning, used for every scenario")
    ap.add_argument("--nema", default="", help="NEMA settings for every row, e.g. vehext=1.0,max_scale=1.5")
    ap.add_argument("--duration", type=float,
                    help="override the demand duration (s) and stop there (a user's routes: default the end of "
                         "their demand, then until the network is empty or 900 s more)")
    ap.add_argument("--out", type=Path,
                    help="results directory (default tools/sumo/results); with --net everything of the run: "
                         f"controllers, runs and tables (default ./{DEFAULT_OUT})")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--port-base", type=int, default=21000,
                    help="first Modbus port of the bridge's cabinets (runs take 50 each, or one per traffic light "
                         "and two for the broker when more, 40 runs apart); give concurrent invocations ranges "
                         "2000 apart")
    ap.add_argument("--collect", metavar="TAG|DIR",
                    help="rebuild the table from the finished runs of TAG (build/runs/TAG, or OUT/runs/TAG with "
                         "--net) or of a runs directory")
    ap.add_argument("--smoke", action="store_true",
                    help="CI smoke: single, balanced, seed 1, 300 s, webster + nema + greenwave (free-style adaptive "
                         "with cameras); exit 1 on any failure or trip")
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked, with every user path made absolute
    against the working directory (the daemon and the workers run
    elsewhere). Adds start_ms (simulated unix ms at SUMO time 0),
    demand_label and, with --net, name."""
    import import_net

    ap = build_parser()
    a = ap.parse_args(argv)
    a.user = a.net is not None
    if a.user:
        if not a.routes and not a.collect:
            ap.error("--net needs --routes (one or more route files)")
        for opt in ("smoke", "all", "tune_nema"):
            if getattr(a, opt):
                ap.error(f"--{opt.replace('_', '-')} runs the shipped scenarios, not --net")
        for opt, default in (("scenario", "single"), ("demand", "balanced")):
            if getattr(a, opt) != default:
                ap.error(f"--{opt} picks a shipped scenario; with --net the routes are the demand")
        if a.nema_tuning:
            ap.error("--nema-tuning is per demand level of the shipped scenarios; with --net use --nema")
    elif a.routes or a.detectors or a.additional or a.name:
        ap.error("--routes, --detectors, --additional and --name go with --net")
    for key in ("net", "detectors", "greenwave_bin", "nema_tuning", "out", "keep_events"):
        if getattr(a, key) is not None:
            setattr(a, key, user_path(getattr(a, key)))
    a.routes = [user_path(r) for r in a.routes]
    a.additional = [user_path(x) for x in a.additional]
    for f in ([a.net, a.detectors, a.greenwave_bin, a.nema_tuning] + a.routes + a.additional):
        if f is not None and not f.is_file():
            ap.error(f"{f}: no such file")
    if a.greenwave_daemons < 1:
        ap.error("--greenwave-daemons must be 1 or more")
    if a.greenwave_daemons > 1:
        import broker

        broker.server_bin()
    if a.time_zone:
        try:
            zone(a.time_zone)
        except ValueError as e:
            ap.error(str(e))
    try:
        a.start_ms = parse_start_time(a.start_time, a.time_zone)
        a.greenwave_schedule = import_net.parse_schedule(a.greenwave_schedule)
    except ValueError as e:
        ap.error(str(e))
    if a.user:
        a.name = a.name or a.net.name.removesuffix(".gz").removesuffix(".xml").removesuffix(".net")
        a.demand_label = "+".join(r.name.removesuffix(".gz").removesuffix(".xml").removesuffix(".rou")
                                  for r in a.routes)[:40] or "routes"
        if a.out is None:
            a.out = user_path(DEFAULT_OUT)
    else:
        a.demand_label = None
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.greenwave_bin:
        # the workers (spawned processes) inherit it; common.greenwave_bin reads it
        os.environ["SIL_GREENWAVE_BIN"] = str(a.greenwave_bin)

    if a.smoke:
        scenarios, levels, seeds = ["single"], ["balanced"], [1]
        ctrls = ["webster", "nema", "greenwave"]
        a.duration = a.duration or 300.0
        a.tag = a.tag or "smoke"
        # Greenwave as the table runs it: free-style adaptive, camera queues
        # through the Modbus camera registers.
        a.greenwave_mode, a.greenwave_style, a.greenwave_cameras = "adaptive", "free", True
        a.greenwave_passage = a.greenwave_passage or 0.5
    else:
        scenarios = TABLE_SCENARIOS if (a.all or a.scenario == "all") else a.scenario.split(",")
        levels = LEVEL_NAMES if (a.all or a.demand == "all") else a.demand.split(",")
        seeds = [int(s) for s in a.seeds.split(",")]
        ctrls = a.controllers.split(",")
    for c in ctrls:
        if c not in CONTROLLERS:
            sys.exit(f"unknown controller {c} (known: {', '.join(CONTROLLERS)})")
    if not a.user:
        for sc in scenarios:
            if sc not in SCENARIO_NAMES:
                sys.exit(f"unknown scenario {sc} (known: {', '.join(SCENARIO_NAMES)}; or --net for your own)")
        for lv in levels:
            if lv not in LEVEL_NAMES:
                sys.exit(f"unknown demand level {lv} (known: {', '.join(LEVEL_NAMES)})")
    out = a.out or (HERE / "results")
    runs = (out / "runs") if a.user else (BUILD / "runs")
    if a.collect:
        cdir = Path(a.collect)
        cdir = user_path(cdir) if cdir.is_dir() else runs / a.collect
        results = [read_json(p) for p in sorted(cdir.glob("*/result.json"))
                   if p.parent.parent.name != "tune"]
        cs = [c for c in CONTROLLERS if any(r["controller"] == c for r in results)]
        text, _ = table(results, cs)
        print(text)
        print(f"\n{len(results)} finished runs; failed: {sum(1 for r in results if not r.get('ok'))}; "
              f"trips: {sum(r.get('trips', 0) for r in results)}")
        return 0
    tag = a.tag or time.strftime("%Y%m%d-%H%M%S")
    rundir = runs / tag
    t0 = time.time()
    # prepare shared inputs once, serially (cached files)
    if a.user:
        sources = [user_inputs(a, out)]
    else:
        sources = [shipped_inputs(sc, lv) for sc in scenarios for lv in levels]
    if "greenwave" in ctrls:
        print("greenwave:", greenwave_bin(), flush=True)
    if a.start_time or a.time_zone:
        print(f"simulated time at SUMO 0 s: {iso_ms(a.start_ms, a.time_zone)}"
              + (f" (time_zone = {a.time_zone})" if a.time_zone else ""), flush=True)
    tuning = {}
    if a.tune_nema and "nema" in ctrls:
        per_level = tune_nema(["single"], levels, 100, a.jobs, rundir)
        tuning = {f"{sc}/{lv}": per_level[f"single/{lv}"] for sc in scenarios for lv in levels
                  if f"single/{lv}" in per_level}
        print("NEMA tuning (single intersection, seed 100, per demand level):", json.dumps(per_level), flush=True)
    if a.nema_tuning:
        per_level = read_json(a.nema_tuning)
        tuning = {f"{sc}/{lv}": per_level[lv] for sc in scenarios for lv in levels if lv in per_level}
        print("NEMA tuning from", a.nema_tuning, json.dumps(per_level), flush=True)
    n_tls = max(len(load_model(s["ctl"])) for s in sources)
    # a run's ports: one per junction, then the broker's two (several daemons)
    stride = max(50, n_tls + 2)
    slots = max(1, min(40, (65535 - a.port_base) // stride))
    tasks = []
    k = 0
    for src in sources:
        sc, lv = src["scenario"], src["demand"]
        for seed in seeds:
            for c in ctrls:
                t = dict(src, seed=seed, controller=c,
                         run_dir=str(rundir / f"{sc}-{lv}-{seed}-{c}"),
                         base_port=a.port_base + (k % slots) * stride, greenwave_mode=a.greenwave_mode,
                         greenwave_style=a.greenwave_style, greenwave_passage=a.greenwave_passage,
                         greenwave_adaptive=a.greenwave_adaptive,
                         greenwave_corridors=a.greenwave_corridors,
                         greenwave_daemons=a.greenwave_daemons,
                         nats_port=a.port_base + (k % slots) * stride + stride - 2,
                         greenwave_cameras=a.greenwave_cameras,
                         greenwave_platoon_passage=a.greenwave_platoon_passage,
                         greenwave_schedule=a.greenwave_schedule, start_ms=a.start_ms, time_zone=a.time_zone,
                         keep_events=str(a.keep_events) if a.keep_events else None)
                if a.duration:
                    t["duration"] = a.duration
                if c == "nema" and a.nema:
                    t["tuning"] = {kv.split("=")[0]: (float(kv.split("=")[1]) if kv.split("=")[0] != "min_recall"
                                                      else kv.split("=")[1]) for kv in a.nema.split(",")}
                elif c == "nema" and f"{sc}/{lv}" in tuning:
                    t["tuning"] = {kk: vv for kk, vv in tuning[f"{sc}/{lv}"].items() if kk != "delay_s"}
                tasks.append(t)
                k += 1
    results = execute(tasks, a.jobs)
    text, rows = table(results, ctrls)
    total = time.time() - t0
    print()
    print(text)
    print(f"\n{len(results)} runs in {total:.0f} s wall ({a.jobs} jobs)")
    failed = [r for r in results if not r.get("ok")]
    trips = sum(r.get("trips", 0) for r in results)
    conflicts = sum(r.get("link_conflicts", 0) for r in results)
    print(f"safety-monitor trips over all Greenwave SIL runs: {trips}; link conflicts (any controller): {conflicts}")
    if a.keep_events or a.start_time or a.time_zone or a.greenwave_schedule:
        for r in sorted(results, key=lambda r: (r["scenario"], r["demand"], r["seed"])):
            if r["controller"] == "greenwave" and r.get("event_log"):
                pcs = r.get("plan_changes") or []
                print(f"events {r['scenario']} {r['demand']} seed {r['seed']}: {r['event_log']}; plan changes "
                      f"(event {PLAN_CHANGE}): " + ("; ".join(f"{s} {ts} plan {p}" for s, ts, p in pcs[:8])
                                                   + (" ..." if len(pcs) > 8 else "") if pcs else "none"))
    for r in sorted(results, key=lambda r: (r["scenario"], r["demand"], r["seed"])):
        if r.get("neighbours") or r.get("neighbours_error"):
            print(f"neighbours over the broker, {r['scenario']} {r['demand']} seed {r['seed']} (outflow messages "
                  "published / delivered, per daemon): "
                  + ("; ".join(f"daemon {n['daemon']} {n['published']} / {n['received']}"
                               for n in r.get("neighbours") or []) or r["neighbours_error"])
                  + f"; projections late at the control thread, per daemon: {r.get('late_projections')}")
    for r in failed:
        print(f"FAILED {r['scenario']} {r['demand']} seed {r['seed']} {r['controller']}: "
              f"{(r.get('error') or '').strip()[:800]} {r.get('trip_log', '')}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{tag}.csv", "w", newline="") as f:
        keys = sorted({k for r in results for k in r if k not in ("trip_log", "error", "plan_changes")})
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in sorted(results, key=lambda r: (r["scenario"], r["demand"], r["seed"], r["controller"])):
            w.writerow(r)
    write_json(out / f"{tag}.json", {"runs": results, "table": rows, "nema_tuning": tuning,
                                     "wall_s": round(total, 1), "text": text})
    (out / f"{tag}.txt").write_text(text + "\n")
    print(f"results: {out / tag}.{{csv,json,txt}}; runs: {rundir}")
    return 1 if failed else 0


def tune_nema(scenarios, levels, seed, jobs, rundir) -> dict:
    tasks = []
    for sc in scenarios:
        for lv in levels:
            src = shipped_inputs(sc, lv)
            for k, (v, m) in enumerate(NEMA_GRID):
                tasks.append(dict(src, seed=seed, controller="nema",
                                  tuning={"vehext": v, "max_scale": m},
                                  run_dir=str(rundir / "tune" / f"{sc}-{lv}-v{v}-m{m}")))
    res = execute(tasks, jobs, verbose=False)
    by_dir = {Path(t["run_dir"]).name: t for t in tasks}
    best = {}
    for t in tasks:
        r = read_json(Path(t["run_dir"]) / "result.json")
        key = f"{t['scenario']}/{t['demand']}"
        if "delay_s" in r and (key not in best or r["delay_s"] < best[key]["delay_s"]):
            best[key] = dict(t["tuning"], delay_s=r["delay_s"])
    _ = (res, by_dir)
    return best


if __name__ == "__main__":
    sys.exit(main())
