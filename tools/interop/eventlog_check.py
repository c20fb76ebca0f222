"""An independent checker of Indiana hi-resolution event logs (the CSV
greenwave writes, `SignalID,Timestamp,EventCode,EventParam`), written apart
from greenwave's code as an ATSPM consumer would read the log.

It replays each signal's events in file order and reports:
- conflicts: a phase, its pedestrian movement or an overlap beginning green,
  walk or pedestrian clearance while a conflicting one shows green, yellow,
  walk or pedestrian clearance. Conflicts come from the controller files
  (same ring, or different barrier groups; `sequence.conflicts`; an
  overlap's `conflicts`, by default the phases that conflict with every
  parent) or from `--conflict A,B` pairs;
- intervals not closed: a green (1) ends in its termination (7) or yellow
  (8), a yellow in 9 (or red clearance 10), a red clearance in 11, a walk or
  pedestrian clearance (21, 22) in solid don't walk or dark (23, 24), an
  overlap (61, 62, 63, 64) in off or dark (65, 66). Anything still open when
  the unit's flash status changes (173), when its phase goes inactive (12),
  when it begins again, or when the log ends (unless `--allow-open-at-end`)
  is a finding;
- an end without its beginning, and timestamps going backwards.

    eventlog_check.py --controller controllers/elm-and-oak.toml LOG_DIR_OR_CSV...

Prints one `FINDING <signal> <timestamp> <what>` line per finding, then `OK
<summary>` and exits 0, or `FAIL <n> findings` and exits 1 (2: bad usage).
"""

import argparse
import csv
import sys
import tomllib
from pathlib import Path

GREEN, YELLOW, RED_CLEAR = "green", "yellow", "red clearance"
WALK, PED_CLEAR = "walk", "pedestrian clearance"
PERMISSIVE = (GREEN, YELLOW, WALK, PED_CLEAR)


def overlap_number(letter):
    return ord(letter.upper()) - ord("A") + 1


class Table:
    """Which movements conflict: phases by number, pedestrian movements as
    ("ped", phase), overlaps as ("overlap", number)."""

    def __init__(self):
        self.pairs = set()

    def add(self, a, b):
        self.pairs.add((a, b))
        self.pairs.add((b, a))

    def conflict(self, a, b):
        return (a, b) in self.pairs

    @staticmethod
    def from_controller(doc):
        t = Table()
        seq = doc["sequence"]
        ring_of = {p: r for r, ring in enumerate(seq["rings"]) for p in ring}
        group_of = {p: g for g, group in enumerate(seq["barriers"]) for p in group}
        phases = sorted(ring_of)
        conflicts = {p: set() for p in phases}
        for a in phases:
            for b in phases:
                if a != b and (ring_of[a] == ring_of[b] or group_of.get(a) != group_of.get(b)):
                    conflicts[a].add(b)
        for a, b in seq.get("conflicts", []):
            conflicts[a].add(b)
            conflicts[b].add(a)
        for a in phases:
            for b in conflicts[a]:
                t.add_phases(a, b)
        for ov in doc.get("overlap", []):
            parents = ov["parents"]
            against = ov.get("conflicts")
            if against is None:
                against = [p for p in phases if all(p in conflicts[q] for q in parents)]
            me = ("overlap", overlap_number(ov["id"]))
            for p in against:
                t.add(me, p)
                t.add(me, ("ped", p))
        return t

    def add_phases(self, a, b):
        """Phases a and b conflict, and so do their pedestrian movements."""
        for x in (a, ("ped", a)):
            for y in (b, ("ped", b)):
                self.add(x, y)


class Signal:
    """One signal's log, replayed. An interval left open is reported once
    (at the flash, say) and stays open, so a conflict it causes later
    (after the restart: "phase 4 green while phase 2 green") is reported
    too, as a consumer that knows nothing of flashes would see it."""

    def __init__(self, name, table, report):
        self.name = name
        self.table = table
        self.report = report
        self.open = {}  # movement -> interval
        self.reported = set()  # movements whose open interval was reported
        self.last_time = ""

    def find(self, when, what):
        self.report(self.name, when, what)

    def set(self, movement, interval):
        self.open[movement] = interval
        self.reported.discard(movement)

    def clear(self, movement):
        self.open.pop(movement, None)
        self.reported.discard(movement)

    def begin(self, when, movement, interval, code):
        if interval in (GREEN, WALK) or (interval == PED_CLEAR and movement not in self.open):
            if movement in self.open:
                self.find(when, f"{describe(movement)} began {interval} ({code}) while its {self.open[movement]} was open")
            if self.table is not None:
                for other, shown in self.open.items():
                    if shown in PERMISSIVE and self.table.conflict(movement, other):
                        self.find(when, f"CONFLICT: {describe(movement)} {interval} while {describe(other)} {shown}")
        self.set(movement, interval)

    def end(self, when, movement, intervals, code):
        if self.open.get(movement) in intervals:
            self.clear(movement)
        else:
            shown = self.open.get(movement, "nothing")
            self.find(when, f"{describe(movement)}: event {code} ends {' or '.join(intervals)}, but {shown} was open")

    def still_open(self, when, cause):
        for movement, interval in sorted(self.open.items(), key=lambda kv: str(kv[0])):
            if movement not in self.reported:
                self.reported.add(movement)
                self.find(when, f"{describe(movement)} {interval} still open at {cause}")

    def event(self, when, code, param):
        if when < self.last_time:
            self.find(when, f"timestamp goes backwards (after {self.last_time})")
        self.last_time = max(self.last_time, when)
        p, ped, ov = param, ("ped", param), ("overlap", param)
        if code == 1:
            self.begin(when, p, GREEN, code)
        elif code == 7:
            self.end(when, p, (GREEN,), code)
        elif code == 8:
            if self.open.get(p) == GREEN:
                self.clear(p)
            self.begin(when, p, YELLOW, code)
        elif code == 9:
            self.end(when, p, (YELLOW,), code)
        elif code == 10:
            if self.open.get(p) == YELLOW:
                self.clear(p)
            self.begin(when, p, RED_CLEAR, code)
        elif code == 11:
            self.end(when, p, (RED_CLEAR,), code)
        elif code == 12:
            if p in self.open:
                self.find(when, f"phase {p} inactive (12) with its {self.open[p]} never ended")
                self.clear(p)
        elif code == 21:
            self.begin(when, ped, WALK, code)
        elif code == 22:
            if self.open.get(ped) == WALK:
                self.set(ped, PED_CLEAR)
            else:
                self.begin(when, ped, PED_CLEAR, code)
        elif code in (23, 24):
            self.clear(ped)
        elif code in (61, 62):
            if self.open.get(ov) != GREEN:
                self.begin(when, ov, GREEN, code)
        elif code == 63:
            self.set(ov, YELLOW)
        elif code == 64:
            self.set(ov, RED_CLEAR)
        elif code in (65, 66):
            self.clear(ov)
        elif code == 173:
            self.still_open(when, f"a flash status change (173,{param})")


def describe(movement):
    if isinstance(movement, tuple):
        kind, n = movement
        return f"phase {n} pedestrians" if kind == "ped" else f"overlap {chr(ord('A') + n - 1)}"
    return f"phase {movement}"


def log_files(paths):
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(path.glob("*.csv"))
        else:
            yield path


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", help="event log CSV files or directories of them")
    ap.add_argument("--controller", action="append", default=[], help="controller TOML file (its rings, barriers, overlaps)")
    ap.add_argument("--conflict", action="append", default=[], help="A,B: phases that conflict (every signal)")
    ap.add_argument("--allow-open-at-end", action="store_true", help="a log cut while running may end with intervals open")
    args = ap.parse_args(argv)

    tables = {}
    for f in args.controller:
        with open(f, "rb") as fh:
            doc = tomllib.load(fh)
        tables[doc["intersection"]["id"]] = Table.from_controller(doc)
    given = None
    if args.conflict:
        given = Table()
        for pair in args.conflict:
            a, b = (int(x) for x in pair.split(","))
            given.add_phases(a, b)

    findings = []

    def report(signal, when, what):
        findings.append(f"FINDING {signal} {when} {what}")
        print(findings[-1], flush=True)

    signals = {}
    events = 0
    files = list(log_files(args.logs))
    if not files:
        print(f"FAIL no event log files in {args.logs}", flush=True)
        return 2
    for f in files:
        with open(f, newline="") as fh:
            for row in csv.reader(fh):
                if not row or row[0] == "SignalID":
                    continue
                name, when, code, param = row[0], row[1], int(row[2]), int(row[3])
                s = signals.get(name)
                if s is None:
                    table = tables.get(name, given)
                    s = signals[name] = Signal(name, table, report)
                    if table is None:
                        report(name, when, "no conflict table (no --controller for it, no --conflict): conflicts not checked")
                s.event(when, code, param)
                events += 1
    if not args.allow_open_at_end:
        for s in signals.values():
            s.still_open(s.last_time, "the end of the log")
    if findings:
        print(f"FAIL {len(findings)} findings", flush=True)
        return 1
    print(f"OK {events} events of {len(signals)} signals in {len(files)} files, 0 findings", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
