"""Baseline controllers, all built on the same movement-to-phase mapping
as the Greenwave controllers (netmodel), so every controller serves the
same movements with the same clearances:

- webster:     fixed time. Webster's optimal cycle C = (1.5 L + 5) / (1 - Y)
               from the design flows (one common cycle for a network: the
               longest junction cycle, offsets 0), greens split in
               proportion to the critical flow ratios, dual-ring timing
               (each ring times its own phases within the barrier).
- actuated:    SUMO type="actuated" (gap-based, SUMO's own detectors),
               stage program lead-lead with phase skipping ('next').
- delay_based: SUMO type="delay_based", the same stage program.
- nema:        SUMO type="NEMA" dual ring with phase skipping and gap-out,
               the per-phase min/max/passage/yellow/red of the model.
- maxpressure: Python controller over libsumo: every second after min
               green it picks the ring-barrier-compatible phase pair with
               the largest sum over its links of (queue in - queue out),
               through full yellow and red clearance.
"""

from __future__ import annotations

from itertools import product

from common import fmt
from netmodel import LinkStates, compatible


# ---- stage structures -------------------------------------------------


def barrier_rings(j: dict):
    """[(group, [ring phases in group] per ring)] in barrier order."""
    out = []
    for g in j["barriers"]:
        out.append((g, [[p for p in ring if p in g] for ring in j["rings"]]))
    return out


def lead_lead_stages(j: dict) -> list[frozenset]:
    """Stages in cyclic order: per barrier, lefts together then throughs
    (a ring with one phase in the barrier keeps it through both)."""
    stages = []
    for _, rings in barrier_rings(j):
        rings = [r for r in rings if r]
        n = max(len(r) for r in rings)
        for k in range(n):
            stages.append(frozenset(r[min(k, len(r) - 1)] for r in rings))
    return stages


def all_stages(j: dict) -> list[frozenset]:
    """Every combination of one phase per ring within a barrier."""
    out = []
    for _, rings in barrier_rings(j):
        rings = [r for r in rings if r]
        for combo in product(*rings):
            out.append(frozenset(combo))
    return out


def clearance(j: dict, ending: set) -> tuple[float, float]:
    if not ending:
        return 0.0, 0.0
    ph = j["phases"]
    return max(ph[p]["yellow_s"] for p in ending), max(ph[p]["red_clear_s"] for p in ending)


# ---- Webster ----------------------------------------------------------


def webster(model: dict, design: dict, min_cycle=40.0, max_cycle=150.0) -> dict:
    """Per junction: cycle and green per phase, on a common cycle."""
    plans = {}
    cycles = []
    for tid, j in model.items():
        ph = j["phases"]
        flows = design["phase_flows"][tid]
        y = {}
        for p, v in ph.items():
            sat = (1700.0 if p % 2 == 1 else 1800.0) * len(v["lanes"])
            y[p] = max(flows[str(p)] / sat, 0.02)
        crit = []
        Y = 0.0
        L = 0.0
        for g, rings in barrier_rings(j):
            best = max((r for r in rings if r), key=lambda r: sum(y[p] for p in r))
            crit.append(best)
            Y += sum(y[p] for p in best)
            L += sum(ph[p]["yellow_s"] + ph[p]["red_clear_s"] for p in best)
        C = max_cycle if Y >= 0.95 else (1.5 * L + 5.0) / (1.0 - Y)
        C = min(max(C, min_cycle), max_cycle)
        plans[tid] = {"y": y, "Y": Y, "L": L, "C0": C}
        cycles.append(C)
    common = max(cycles)
    for tid, j in model.items():
        plans[tid]["cycle"] = common
        plans[tid]["green"] = _split(j, plans[tid]["y"], common)
    return plans


def _split(j: dict, y: dict, C: float) -> dict:
    ph = j["phases"]
    br = barrier_rings(j)
    # barrier lengths: from the critical ring's share of flow ratio
    lost = {}
    need = {}
    for k, (g, rings) in enumerate(br):
        best = max((r for r in rings if r), key=lambda r: sum(y[p] for p in r))
        lost[k] = sum(ph[p]["yellow_s"] + ph[p]["red_clear_s"] for p in best)
        need[k] = sum(y[p] for p in best)
    G = C - sum(lost.values())
    ysum = sum(need.values())
    green = {}
    for k, (g, rings) in enumerate(br):
        B = lost[k] + G * need[k] / ysum
        for r in rings:
            if not r:
                continue
            rl = sum(ph[p]["yellow_s"] + ph[p]["red_clear_s"] for p in r)
            avail = B - rl
            ry = sum(y[p] for p in r)
            gs = {p: max(ph[p]["min_green_s"], avail * y[p] / ry) for p in r}
            over = sum(gs.values()) - avail
            if over > 0:  # min greens pushed it over: take it from the largest
                big = max(gs, key=gs.get)
                gs[big] = max(ph[big]["min_green_s"], gs[big] - over)
            green.update(gs)
    return green


def ring_timeline(j: dict, green: dict, cycle: float):
    """Per ring, a list of (start, end, phase, 'G'|'y'|'r') over one cycle,
    barriers aligned (each ring waits at the barrier for the longer ring)."""
    ph = j["phases"]
    br = barrier_rings(j)
    rings_tl = [[] for _ in j["rings"]]
    t = 0.0
    for g, rings in br:
        lens = []
        for r in rings:
            lens.append(sum(green[p] + ph[p]["yellow_s"] + ph[p]["red_clear_s"] for p in r))
        B = max(lens)
        for ri, r in enumerate(rings):
            s = t
            for k, p in enumerate(r):
                gtime = green[p]
                if k == len(r) - 1:  # the last phase absorbs the wait for the barrier
                    gtime += B - lens[ri]
                rings_tl[ri].append((s, s + gtime, p, "G"))
                s += gtime
                rings_tl[ri].append((s, s + ph[p]["yellow_s"], p, "y"))
                s += ph[p]["yellow_s"]
                rings_tl[ri].append((s, s + ph[p]["red_clear_s"], p, "r"))
                s += ph[p]["red_clear_s"]
        t += B
    return rings_tl, t


def static_tllogic(j: dict, green: dict, cycle: float, program="webster") -> str:
    ls = LinkStates(j)
    tl, total = ring_timeline(j, green, cycle)
    cuts = sorted({round(a, 1) for r in tl for (a, b, _, _) in r} | {round(total, 1)})
    phases = []
    for a, b in zip(cuts, cuts[1:]):
        if b - a < 0.05:
            continue
        mid = (a + b) / 2
        gr, ye = set(), set()
        for r in tl:
            for (s, e, p, st) in r:
                if s <= mid < e:
                    if st == "G":
                        gr.add(p)
                    elif st == "y":
                        ye.add(p)
        state = ls.state(frozenset(gr), frozenset(ye))
        if phases and phases[-1][1] == state:
            phases[-1][0] += b - a
        else:
            phases.append([b - a, state])
    L = [f'    <tlLogic id="{j["tls"]}" programID="{program}" offset="0" type="static">']
    for d, s in phases:
        L.append(f'        <phase duration="{fmt(d)}" state="{s}"/>')
    L.append("    </tlLogic>")
    return "\n".join(L)


# ---- SUMO actuated / delay_based -----------------------------------------


def stage_program(j: dict, kind: str, params: dict, max_scale: float = 1.0) -> str:
    """Lead-lead stage program with transitions; a left-turn stage can be
    skipped ('next' lists the stage after it as well)."""
    ls = LinkStates(j)
    ph = j["phases"]
    stages = lead_lead_stages(j)
    n = len(stages)
    entries = []  # (attrs dict)
    index_of_green = {}
    for i, st in enumerate(stages):
        index_of_green[i] = len(entries)
        entries.append({"stage": i})
    trans = {}

    def add_transition(i, k):
        a, b = stages[i], stages[k]
        ending = set(a - b)
        yel, red = clearance(j, ending)
        first = len(entries)
        cont = frozenset(a & b)
        entries.append({"dur": max(yel, 0.1), "state": ls.state(cont, frozenset(ending)), "next": None})
        if red > 0:
            entries[-1]["next"] = ("entry", len(entries))
            entries.append({"dur": red, "state": ls.state(cont), "next": None})
        entries[-1]["next"] = ("green", k)
        trans[(i, k)] = first

    for i in range(n):
        add_transition(i, (i + 1) % n)
        k2 = (i + 2) % n
        nxt = stages[(i + 1) % n]
        skippable = n > 2 and all(p % 2 == 1 for p in nxt) and k2 != i
        if skippable:
            add_transition(i, k2)
    L = [f'    <tlLogic id="{j["tls"]}" programID="{kind}" offset="0" type="{kind}">']
    for k, v in params.items():
        L.append(f'        <param key="{k}" value="{v}"/>')
    for e in entries:
        if "stage" in e:
            i = e["stage"]
            st = stages[i]
            mn = max(ph[p]["min_green_s"] for p in st)
            mx = max(ph[p]["max1_s"] for p in st) * max_scale
            nxts = [trans[(i, (i + 1) % n)]]
            if (i, (i + 2) % n) in trans:
                nxts.append(trans[(i, (i + 2) % n)])
            L.append(f'        <phase duration="{fmt(mn)}" minDur="{fmt(mn)}" maxDur="{fmt(mx)}" '
                     f'state="{ls.state(st)}" next="{" ".join(map(str, nxts))}" name="{"+".join(map(str, sorted(st)))}"/>')
        else:
            kind_, k = e["next"]
            nx = index_of_green[k] if kind_ == "green" else k
            L.append(f'        <phase duration="{fmt(e["dur"])}" state="{e["state"]}" next="{nx}"/>')
    L.append("    </tlLogic>")
    return "\n".join(L)


# ---- SUMO NEMA ----------------------------------------------------------


def nema_program(j: dict, vehext: float = 2.0, max_scale: float = 1.0, det_len: float = 20.0,
                 min_recall: str = "", det_len_left: float | None = None) -> str:
    ls = LinkStates(j)
    ph = j["phases"]
    r1 = {p for p in j["rings"][0]}
    r2 = {p for p in j["rings"][1]} if len(j["rings"]) > 1 else set()

    def slots(ring_set, other):
        s = []
        for k, (a, b) in enumerate(((1, 2), (3, 4)) if ring_set <= {1, 2, 3, 4} else ((5, 6), (7, 8))):
            s += [a if a in ring_set else 0, b if b in ring_set else 0]
        return s

    s1 = slots(r1, r2) if r1 else [0, 0, 0, 0]
    s2 = [0, 0, 0, 0]
    for k, p in enumerate([5, 6, 7, 8]):
        if p in r2:
            s2[k] = p
    # a barrier side with no ring-2 phase repeats ring 1's (SUMO NEMA docs)
    for half in (0, 2):
        if s2[half] == 0 and s2[half + 1] == 0:
            s2[half], s2[half + 1] = s1[half], s1[half + 1]
        if s1[half] == 0 and s1[half + 1] == 0:
            s1[half], s1[half + 1] = s2[half], s2[half + 1]
    bar2 = f"{s1[1] or s1[0]},{s2[1] or s2[0]}"  # end of barrier 1 (main street)
    bar = f"{s1[3] or s1[2]},{s2[3] or s2[2]}"  # end of barrier 2
    cyc = 0.0
    for half in (0, 2):
        cyc += max(
            sum(ph[p]["max1_s"] * max_scale + ph[p]["yellow_s"] + ph[p]["red_clear_s"] for p in s[half:half + 2] if p)
            for s in (s1, s2))
    L = [f'    <tlLogic id="{j["tls"]}" programID="nema" offset="0" type="NEMA">',
         f'        <param key="detector-length" value="{fmt(det_len)}"/>',
         f'        <param key="detector-length-leftTurnLane" value="{fmt(det_len_left or det_len)}"/>',
         f'        <param key="total-cycle-length" value="{fmt(cyc)}"/>',
         f'        <param key="ring1" value="{",".join(map(str, s1))}"/>',
         f'        <param key="ring2" value="{",".join(map(str, s2))}"/>',
         f'        <param key="barrierPhases" value="{bar}"/>',
         f'        <param key="barrier2Phases" value="{bar2}"/>',
         '        <param key="coordinate-mode" value="false"/>',
         f'        <param key="minRecall" value="{min_recall}"/>',
         '        <param key="maxRecall" value=""/>',
         '        <param key="fixForceOff" value="false"/>',
         '        <param key="ignore-errors" value="true"/>',
         '        <param key="show-detectors" value="false"/>']
    for p in sorted(ph):
        v = ph[p]
        L.append(f'        <phase duration="99" minDur="{fmt(v["min_green_s"])}" maxDur="{fmt(v["max1_s"] * max_scale)}" '
                 f'vehext="{fmt(vehext)}" yellow="{fmt(v["yellow_s"])}" red="{fmt(v["red_clear_s"])}" name="{p}" '
                 f'state="{ls.phase_state(p)}"/>')
    L.append("    </tlLogic>")
    return "\n".join(L)


# ---- max pressure (runs in the TraCI loop) -------------------------------


class MaxPressure:
    """One junction. `step(t)` each simulation step; sets link states."""

    def __init__(self, j: dict, api, decide_every=1.0, max_green=90.0, hysteresis=1.0):
        self.j = j
        self.api = api
        self.ls = LinkStates(j)
        self.stages = all_stages(j)
        self.cur = self.stages[0]
        self.mode = "green"
        self.t_mode = 0.0
        self.target = None
        self.next_decide = 0.0
        self.decide_every = decide_every
        self.max_green = max_green
        self.hyst = hysteresis
        ph = j["phases"]
        self.min_green = {s: max(ph[p]["min_green_s"] for p in s) for s in self.stages}
        self.stage_links = {s: [l for l in j["links"] if l["phase"] in s] for s in self.stages}
        self._apply(self.ls.state(self.cur))

    def _apply(self, state):
        self.api.trafficlight.setRedYellowGreenState(self.j["tls"], state)

    def pressure(self, s, halt_in, halt_out):
        return sum(halt_in[l["from_lane"]] - halt_out[l["to_edge"]] for l in self.stage_links[s])

    def step(self, t: float, halt_in: dict, halt_out: dict):
        el = t - self.t_mode
        if self.mode == "green":
            if el < self.min_green[self.cur] or t < self.next_decide:
                return
            self.next_decide = t + self.decide_every
            best = max(self.stages, key=lambda s: self.pressure(s, halt_in, halt_out))
            pc = self.pressure(self.cur, halt_in, halt_out)
            pb = self.pressure(best, halt_in, halt_out)
            if best != self.cur and (pb > pc + self.hyst or el >= self.max_green and pb > 0):
                self.target = best
                ending = set(self.cur - best)
                self.yel, self.red = clearance(self.j, ending)
                self.mode = "yellow"
                self.t_mode = t
                self._apply(self.ls.state(frozenset(self.cur & best), frozenset(ending)))
        elif self.mode == "yellow":
            if el >= self.yel - 1e-6:
                self.mode = "red"
                self.t_mode = t
                self._apply(self.ls.state(frozenset(self.cur & self.target)))
                el = 0.0
                if self.red <= 0:
                    self._to_green(t)
        elif self.mode == "red":
            if el >= self.red - 1e-6:
                self._to_green(t)

    def _to_green(self, t):
        self.cur = self.target
        self.mode = "green"
        self.t_mode = t
        self._apply(self.ls.state(self.cur))


def compatible_pairs_ok(j: dict, s: frozenset) -> bool:
    return all(compatible(j, p, q) for p in s for q in s)
