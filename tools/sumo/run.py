#!/usr/bin/env python3
"""Run SIL scenarios and print the results table.

    .venv/bin/python tools/sumo/run.py --scenario single --demand balanced \\
        --seeds 1,2,3 --controllers webster,actuated,delay_based,nema,maxpressure,greenwave
    .venv/bin/python tools/sumo/run.py --all --seeds 1,2,3,4,5     # the full table
    .venv/bin/python tools/sumo/run.py --smoke                     # CI: exits 1 on any failure or trip

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
The table shows the median over seeds. Results go to
tools/sumo/results/<tag>.{csv,json} (or --out).

greenwave: the controllers are imported from the network (import_net.py;
--greenwave-mode free = actuated with the imported timings, adaptive = the
`adaptive` plan mode), each junction is served as a Modbus cabinet by the
bridge, and the daemon (target/release/greenwave, or $SIL_GREENWAVE_BIN) runs
unmodified with clock = "cabinet".
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing as mp
import os
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
from common import BUILD, HERE, SCENARIOS, STEP_S, ensure_env, greenwave_bin, read_json, sumo_bin, write_json  # noqa: E402

SCENARIO_NAMES = ["single", "arterial", "grid", "tnet"]
LEVEL_NAMES = ["balanced", "unbalanced", "nearsat", "peak"]
CONTROLLERS = ["webster", "actuated", "delay_based", "nema", "maxpressure", "greenwave"]
DRAIN_S = 900  # after the demand ends, run until empty or this much longer

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


def program_file(sc: str, level: str, ctrl: str, model: dict, design: dict, tuning: dict | None) -> Path | None:
    import baselines

    out = BUILD / sc / "programs" / f"{level}-{ctrl}.add.xml"
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

        model = model_for(sc)
        rou, design = demand_for(sc, level)
        dets = BUILD / sc / "ctl" / "detectors.add.xml"
        prog = program_file(sc, level, ctrl, model, design, task.get("tuning"))
        adds = [str(dets)] + ([str(prog)] if prog else [])
        ti = rdir / "tripinfo.xml"
        end_limit = design["duration"] + DRAIN_S
        if task.get("duration"):
            end_limit = task["duration"]
        cmd = [sumo_bin("sumo"), "-n", str(net_path(sc)), "-r", str(rou), "-a", ",".join(adds),
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
    m2 = import_net.import_net(net_path(task["scenario"]), ctl, base_port=task["base_port"],
                               mode=task.get("greenwave_mode", "free"),
                               style=task.get("greenwave_style", "cycle"),
                               passage_s=task.get("greenwave_passage"),
                               adaptive=import_net.parse_keys(task.get("greenwave_adaptive", "")),
                               cameras=task.get("greenwave_cameras", False),
                               platoon_passage_s=task.get("greenwave_platoon_passage"))
    for tid in model:
        model[tid]["port"] = m2[tid]["port"]
    (ctl / "detectors.add.xml").unlink(missing_ok=True)
    cfg = rdir / "greenwave.toml"
    cfg.write_text(f'controllers = "{ctl}"\ntick_ms = {int(STEP_S * 1000)}\nview = false\nclock = "cabinet"\n'
                   f'[event_log]\ndir = "{rdir / "log"}"\n'
                   # No API in SIL runs: parallel runs would fight over its port.
                   '[grpc]\nenabled = false\n'
                   + (import_net.corridor_toml(import_net.corridors(net_path(task["scenario"]), m2))
                      if task.get("greenwave_corridors") else ""))
    out = {}

    async def main():
        br = Bridge(model, api, STEP_S, finished)
        await br.start()
        log = open(rdir / "greenwave.log", "w")
        # GREENWAVE_* variables are daemon settings: a run uses the scenario's
        # config only, never overrides left in the caller's shell
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GREENWAVE_")}
        env.update(NO_COLOR="1", RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        proc = subprocess.Popen([greenwave_bin(), "run", "--config", str(cfg), "--no-view",
                                 "--stats-json", str(rdir / "stats.json")],
                                cwd=rdir, stdout=log, stderr=subprocess.STDOUT, env=env)
        limit = time.time() + task.get("wall_limit_s", 3600)
        err = None
        last_steps, last_progress = 0, time.time()
        while not br.done.is_set():
            await asyncio.sleep(0.2)
            if proc.poll() is not None:
                err = f"greenwave exited with {proc.returncode} at sim t={br.sim_t:.1f}s (see {rdir / 'greenwave.log'})"
                break
            if br.steps != last_steps:
                last_steps, last_progress = br.steps, time.time()
            elif time.time() - last_progress > 30:
                err = f"lockstep stalled at sim t={br.sim_t:.1f}s for 30 s (see {rdir / 'greenwave.log'})"
                break
            if time.time() > limit:
                err = f"wall-clock limit at sim t={br.sim_t:.1f}s"
                break
        br.stopping = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            for _ in range(50):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            if proc.poll() is None:
                proc.kill()
        await br.stop()
        log.close()
        out["trips"] = len(br.trips())
        out["trip_log"] = br.trips()[:20]
        out["flashes"] = br.flashes()
        out["steps"] = br.steps
        out["daemon_exit"] = proc.returncode
        errs = [ln.strip() for ln in open(rdir / "greenwave.log", errors="replace") if " ERROR " in ln]
        out["daemon_errors"] = len(errs)
        out["daemon_error_log"] = errs[:5]
        out["modbus_reads"] = sum(j.reads for j in br.juncs)
        out["modbus_writes"] = sum(j.writes for j in br.juncs)
        silent = [j.tls for j in br.juncs if not j.monitor.started]
        if silent and not err and br.sim_t > 60:
            err = f"junctions never showed a green: {', '.join(silent)}"
        if err:
            out["error"] = err

    asyncio.run(main())
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="single", help="comma list, or 'all'")
    ap.add_argument("--demand", default="balanced", help="comma list, or 'all'")
    ap.add_argument("--all", action="store_true", help="every scenario and demand")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--controllers", default=",".join(CONTROLLERS))
    ap.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--greenwave-mode", choices=["free", "adaptive"], default="free")
    ap.add_argument("--greenwave-style", choices=["cycle", "free"], default="cycle",
                    help="adaptive style: cycle (coordinated, re-planned cycle and splits) or free "
                         "(actuated with re-planned maxima)")
    ap.add_argument("--greenwave-passage", type=float,
                    help="passage (gap) in s for every imported phase, instead of the importer's default")
    ap.add_argument("--greenwave-platoon-passage", type=float,
                    help="passage for through phases fed by an upstream signal (platoons), instead of --greenwave-passage")
    ap.add_argument("--greenwave-adaptive", default="", metavar="KEY=VALUE,...",
                    help="extra [adaptive] keys for the imported controllers, e.g. max_cycle_s=120")
    ap.add_argument("--greenwave-cameras", action="store_true",
                    help="simulated video zones on every stop-bar lane report the vehicles standing there "
                         "(camera queue registers); the adaptive layer fuses them with the loops")
    ap.add_argument("--greenwave-corridors", action="store_true",
                    help="write a [[corridor]] for every chain of junctions along a main street "
                         "(import_net.corridors): common cycle and green-wave offsets for cycle-style plans")
    ap.add_argument("--tune-nema", action="store_true",
                    help="first tune NEMA (vehext x max-green scale) per demand level on the single "
                         "intersection, seed 100 (not an evaluation seed); use the best everywhere")
    ap.add_argument("--nema-tuning", type=Path,
                    help="JSON {demand level: {vehext, max_scale}} from an earlier tuning, used for every scenario")
    ap.add_argument("--nema", default="", help="NEMA settings for every row, e.g. vehext=1.0,max_scale=1.5")
    ap.add_argument("--duration", type=float, help="override the demand duration (s) and stop there")
    ap.add_argument("--out", type=Path, help="results directory (default tools/sumo/results)")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--port-base", type=int, default=21000,
                    help="first Modbus port of the bridge's cabinets (runs take 50 each, 40 runs apart); "
                         "give concurrent invocations ranges 2000 apart")
    ap.add_argument("--collect", metavar="TAG", help="rebuild the table from the finished runs of TAG (build/runs/TAG)")
    ap.add_argument("--smoke", action="store_true",
                    help="CI smoke: single, balanced, seed 1, 300 s, webster + nema + greenwave (free-style adaptive "
                         "with cameras); exit 1 on any failure or trip")
    a = ap.parse_args()

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
        scenarios = SCENARIO_NAMES if (a.all or a.scenario == "all") else a.scenario.split(",")
        levels = LEVEL_NAMES if (a.all or a.demand == "all") else a.demand.split(",")
        seeds = [int(s) for s in a.seeds.split(",")]
        ctrls = a.controllers.split(",")
    for c in ctrls:
        if c not in CONTROLLERS:
            sys.exit(f"unknown controller {c} (known: {', '.join(CONTROLLERS)})")
    out = a.out or (HERE / "results")
    if a.collect:
        results = [read_json(p) for p in sorted((BUILD / "runs" / a.collect).glob("*/result.json"))
                   if p.parent.parent.name != "tune"]
        cs = [c for c in CONTROLLERS if any(r["controller"] == c for r in results)]
        text, _ = table(results, cs)
        print(text)
        print(f"\n{len(results)} finished runs; failed: {sum(1 for r in results if not r.get('ok'))}; "
              f"trips: {sum(r.get('trips', 0) for r in results)}")
        return 0
    tag = a.tag or time.strftime("%Y%m%d-%H%M%S")
    rundir = BUILD / "runs" / tag
    t0 = time.time()
    # prepare shared inputs once, serially (cached files)
    for sc in scenarios:
        model_for(sc)
        for lv in levels:
            demand_for(sc, lv)
    if "greenwave" in ctrls:
        greenwave_bin()
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
    tasks = []
    k = 0
    for sc in scenarios:
        for lv in levels:
            for seed in seeds:
                for c in ctrls:
                    t = {"scenario": sc, "demand": lv, "seed": seed, "controller": c,
                         "run_dir": str(rundir / f"{sc}-{lv}-{seed}-{c}"),
                         "base_port": a.port_base + (k % 40) * 50, "greenwave_mode": a.greenwave_mode,
                         "greenwave_style": a.greenwave_style, "greenwave_passage": a.greenwave_passage,
                         "greenwave_adaptive": a.greenwave_adaptive,
                         "greenwave_corridors": a.greenwave_corridors,
                         "greenwave_cameras": a.greenwave_cameras,
                         "greenwave_platoon_passage": a.greenwave_platoon_passage}
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
    for r in failed:
        print(f"FAILED {r['scenario']} {r['demand']} seed {r['seed']} {r['controller']}: "
              f"{(r.get('error') or '').strip()[:800]} {r.get('trip_log', '')}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{tag}.csv", "w", newline="") as f:
        keys = sorted({k for r in results for k in r if k not in ("trip_log", "error")})
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in sorted(results, key=lambda r: (r["scenario"], r["demand"], r["seed"], r["controller"])):
            w.writerow(r)
    write_json(out / f"{tag}.json", {"runs": results, "table": rows, "nema_tuning": tuning,
                                     "wall_s": round(total, 1), "text": text})
    (out / f"{tag}.txt").write_text(text + "\n")
    print(f"results: {out / tag}.{{csv,json,txt}}")
    return 1 if failed else 0


def tune_nema(scenarios, levels, seed, jobs, rundir) -> dict:
    tasks = []
    for sc in scenarios:
        for lv in levels:
            for k, (v, m) in enumerate(NEMA_GRID):
                tasks.append({"scenario": sc, "demand": lv, "seed": seed, "controller": "nema",
                              "tuning": {"vehext": v, "max_scale": m},
                              "run_dir": str(rundir / "tune" / f"{sc}-{lv}-v{v}-m{m}")})
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
