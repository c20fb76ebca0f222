#!/usr/bin/env python3
"""Generates src/ntcip/mib.rs, the NTCIP objects the agent serves, from
the NTCIP 1202 v02 MIB text (actuated signal controller, below `asc`) and
the NTCIP 1201 v02 MIB text (global objects: the time base schedule and
day plans, below `global`).

    python3 tools/ntcip_mib.py 1202v0218.mib 1201v0227.mib > src/ntcip/mib.rs

The MIBs are not kept in this repository (see docs/standards.md, "NTCIP
1202", for where the public text is). Every OID, access and range in the
table comes from the MIBs' OBJECT-TYPE clauses: the object's parent and
number (`::= { parent n }`), resolved up to `asc` or `global` (NTCIP 8004:
`devices` 1 and 6), its ACCESS, and the numeric range of its SYNTAX. Only
the names in SERVED are emitted; a name the MIBs lack, or one below
neither root, is an error.
"""

import re
import sys

# What Greenwave serves, by group (docs/standards.md maps each one).
SERVED = [
    # phase {asc 1}
    "maxPhases", "phaseNumber", "phaseWalk", "phasePedestrianClear", "phaseMinimumGreen",
    "phasePassage", "phaseMaximum1", "phaseMaximum2", "phaseYellowChange", "phaseRedClear",
    "phaseAddedInitial", "phaseMaximumInitial", "phaseTimeBeforeReduction", "phaseTimeToReduce",
    "phaseMinimumGap", "phaseRing",
    "maxPhaseGroups", "phaseStatusGroupNumber", "phaseStatusGroupReds", "phaseStatusGroupYellows",
    "phaseStatusGroupGreens", "phaseStatusGroupDontWalks", "phaseStatusGroupPedClears",
    "phaseStatusGroupWalks", "phaseStatusGroupVehCalls", "phaseStatusGroupPedCalls",
    "phaseStatusGroupPhaseOns", "phaseStatusGroupPhaseNexts",
    # detector {asc 2}
    "maxVehicleDetectors", "vehicleDetectorNumber", "vehicleDetectorCallPhase",
    "vehicleDetectorDelay", "vehicleDetectorExtend", "vehicleDetectorNoActivity",
    "vehicleDetectorMaxPresence", "vehicleDetectorErraticCounts", "vehicleDetectorAlarms",
    "maxVehicleDetectorStatusGroups", "vehicleDetectorStatusGroupNumber",
    "vehicleDetectorStatusGroupActive", "vehicleDetectorStatusGroupAlarms",
    # unit {asc 3}
    "unitBackupTime", "unitControlStatus", "unitFlashStatus", "unitAlarmStatus1",
    "shortAlarmStatus",
    # coord {asc 4}
    "maxPatterns", "patternNumber", "patternCycleTime", "patternOffsetTime", "patternSplitNumber",
    "maxSplits", "splitNumber", "splitPhase", "splitTime", "splitCoordPhase",
    "coordPatternStatus", "localFreeStatus", "coordCycleStatus", "coordSyncStatus",
    "systemPatternControl",
    # timebaseAsc {asc 5}
    "maxTimebaseAscActions", "timebaseAscActionNumber", "timebaseAscPattern",
    "timebaseAscActionStatus",
    # preempt {asc 6}
    "maxPreempts", "preemptNumber", "preemptDelay", "preemptMinimumDuration", "preemptState",
    # ring {asc 7}
    "maxRings",
    # timebase {global 3 3} (NTCIP 1201)
    "maxTimeBaseScheduleEntries", "timeBaseScheduleNumber", "timeBaseScheduleMonth",
    "timeBaseScheduleDay", "timeBaseScheduleDate", "timeBaseScheduleDayPlan",
    "maxDayPlans", "maxDayPlanEvents", "dayPlanNumber", "dayPlanEventNumber",
    "dayPlanHour", "dayPlanMinute", "dayPlanActionNumberOID",
]

# What the agent takes a SET of (each must be read-write in the MIB). The
# timing objects among them become an edit of the controller file, which
# goes through the same validation and staging as gRPC ApplyTimingPlan
# (src/ntcip/timing.rs). The other read-write objects it serves are
# answered read-only (notWritable).
WRITABLE = {
    "unitBackupTime", "systemPatternControl",
    "phaseWalk", "phasePedestrianClear", "phaseMinimumGreen", "phasePassage",
    "phaseMaximum1", "phaseYellowChange", "phaseRedClear", "splitTime",
}

# NTCIP 8004: nema.transportation.devices, and the roots below it.
DEVICES = [1, 3, 6, 1, 4, 1, 1206, 4, 2]
ROOTS = {"asc": 1, "global": 6}


def parse(text):
    objects = {}
    pattern = re.compile(
        r"^(\w+)\s+(OBJECT-TYPE|OBJECT IDENTIFIER)(.*?)::=\s*\{\s*(\w+)\s+(\d+)\s*\}", re.S | re.M
    )
    for m in pattern.finditer(text):
        name, _kind, body, parent, number = m.groups()
        access = re.search(r"ACCESS\s+(\S+)", body)
        syntax = re.search(r"SYNTAX\s+([^\n]+)", body)
        rng = re.search(r"\((\d+)\s*\.\.\s*(\d+)\s*\)", syntax.group(1)) if syntax else None
        objects[name] = {
            "parent": parent,
            "number": int(number),
            "access": access.group(1) if access else None,
            "range": (int(rng.group(1)), int(rng.group(2))) if rng else None,
            "syntax": syntax.group(1).strip() if syntax else None,
        }
    return objects


def arcs(objects, name):
    """The OID of `name` below `devices`."""
    path = []
    while name not in ROOTS:
        if name not in objects:
            raise SystemExit(f"{name}: below neither asc nor global in the MIBs")
        path.append(objects[name]["number"])
        name = objects[name]["parent"]
    path.append(ROOTS[name])
    return list(reversed(path))


def pascal(name):
    return name[0].upper() + name[1:]


def main():
    objects = {}
    for path in sys.argv[1:]:
        objects.update(parse(open(path, encoding="latin-1").read()))
    rows = []
    for name in SERVED:
        o = objects.get(name)
        if o is None:
            raise SystemExit(f"{name}: not in the MIB")
        columnar = objects[o["parent"]]["parent"].endswith("Table") if o["parent"] in objects else False
        a = arcs(objects, name)
        lo, hi = o["range"] or (0, 2**31 - 1)
        writable = name in WRITABLE
        if writable and o["access"] != "read-write":
            raise SystemExit(f"{name}: written here but {o['access']} in the MIB")
        # SMIv1 INTEGER ranges past 2^31 - 1 (timeBaseScheduleDate's 32
        # day bits) travel as the unsigned Gauge32, SMIv2's Unsigned32.
        unsigned = hi > 2**31 - 1
        oid = o["syntax"] == "OBJECT IDENTIFIER"
        rows.append((a, name, columnar, writable, lo, hi, unsigned, oid))
    rows.sort()
    out = []
    w = out.append
    w("//! The NTCIP objects the agent serves: GENERATED by `tools/ntcip_mib.py`")
    w("//! from the NTCIP 1202 v02.18 MIB text (`1202v0218.mib`, NTCIP1202-2004)")
    w("//! and the NTCIP 1201 v02.27 MIB text (`1201v0227.mib`, NTCIP1201-2004);")
    w("//! do not edit. OIDs are below [`DEVICES`] (`asc` is 1, `global` 6); rows")
    w("//! are in OID order, which is the order GETNEXT walks them. Regenerate with")
    w("//! `python3 tools/ntcip_mib.py 1202v0218.mib 1201v0227.mib > src/ntcip/mib.rs`.")
    w("")
    w("/// `devices`: iso.org.dod.internet.private.enterprises.nema.transportation.devices.")
    w(f"pub const DEVICES: [u32; {len(DEVICES)}] = {DEVICES};")
    w("")
    w("/// An object of the table, by its MIB name.")
    w("#[derive(Clone, Copy, Debug, PartialEq, Eq)]")
    w("pub enum Object {")
    for a, name, *_ in rows:
        w(f"    /// `{name}` (devices.{'.'.join(map(str, a))})")
        w(f"    {pascal(name)},")
    w("}")
    w("")
    w("/// One object: its OID below [`DEVICES`], whether it is a table column (its")
    w("/// instances are rows) or a scalar (instance `.0`), whether the agent")
    w("/// takes a SET, the MIB's range, and its wire type: INTEGER, unsigned")
    w("/// (Gauge32, for a range past 2^31 - 1) or OBJECT IDENTIFIER.")
    w("#[derive(Clone, Copy, Debug)]")
    w("pub struct Entry {")
    w("    pub object: Object,")
    w("    pub name: &'static str,")
    w("    pub arcs: &'static [u32],")
    w("    pub columnar: bool,")
    w("    pub writable: bool,")
    w("    pub range: (i64, i64),")
    w("    pub unsigned: bool,")
    w("    pub oid: bool,")
    w("}")
    w("")
    w(f"pub const OBJECTS: [Entry; {len(rows)}] = [")
    for a, name, columnar, writable, lo, hi, unsigned, oid in rows:
        w(
            f"    Entry {{ object: Object::{pascal(name)}, name: \"{name}\", arcs: &{a}, "
            f"columnar: {str(columnar).lower()}, writable: {str(writable).lower()}, range: ({lo}, {hi}), "
            f"unsigned: {str(unsigned).lower()}, oid: {str(oid).lower()} }},"
        )
    w("];")
    print("\n".join(out))


if __name__ == "__main__":
    main()
