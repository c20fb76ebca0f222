#!/usr/bin/env python3
"""An independent subscriber (nats-py) to greenwave's state subject.

Subscribes to `<prefix>.*.state` on core NATS for a while and prints one
JSON summary line: messages per subject, and the checks each body passed
(docs/nats.md gives the body). Exits non-zero when a body is malformed or
nothing arrived. Used by tests/nats.rs; also handy by hand:

    python tools/interop/nats_state.py --url nats://127.0.0.1:4222 --seconds 5
"""

import argparse
import asyncio
import json
import sys

import nats

REQUIRED = {
    "intersection": str,
    "at_unix_ms": int,
    "unit": str,
    "mode": str,
    "plan": int,
    "rings": list,
    "vehicle_calls": list,
    "config_version": int,
}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="nats://127.0.0.1:4222")
    ap.add_argument("--prefix", default="greenwave")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()

    nc = await nats.connect(args.url, connect_timeout=5, max_reconnect_attempts=0)
    per_subject: dict[str, int] = {}
    intersections: dict[str, str] = {}
    last_at: dict[str, int] = {}
    errors: list[str] = []

    async def on_state(msg):
        per_subject[msg.subject] = per_subject.get(msg.subject, 0) + 1
        try:
            body = json.loads(msg.data)
        except ValueError as e:
            errors.append(f"{msg.subject}: not JSON ({e})")
            return
        for key, kind in REQUIRED.items():
            if not isinstance(body.get(key), kind):
                errors.append(f"{msg.subject}: {key} missing or not {kind.__name__}: {body.get(key)!r}")
        if body.get("unit") not in ("run", "all_red", "flash"):
            errors.append(f"{msg.subject}: unit {body.get('unit')!r}")
        for ring in body.get("rings") or []:
            if ring.get("interval") not in ("idle", "green", "yellow", "red_clear"):
                errors.append(f"{msg.subject}: ring interval {ring.get('interval')!r}")
        intersections[msg.subject] = body.get("intersection", "")
        at = body.get("at_unix_ms", 0)
        if at < last_at.get(msg.subject, 0):
            errors.append(f"{msg.subject}: control time went back ({at} after {last_at[msg.subject]})")
        last_at[msg.subject] = at

    await nc.subscribe(f"{args.prefix}.*.state", cb=on_state)
    await asyncio.sleep(args.seconds)
    await nc.drain()
    print(json.dumps({"per_subject": per_subject, "intersections": intersections, "errors": errors[:20]}))
    return 1 if errors or not per_subject else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
