"""Shared helpers for the SUMO software-in-the-loop rig (tools/sumo/).

Paths, the SUMO installation (from the eclipse-sumo wheel), small XML
helpers. Everything here is plain Python 3.10+; the SUMO packages come
from tools/requirements-sumo.txt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

# The repository-relative paths are defaults only: the shipped scenarios,
# their cache and the daemon built in this checkout. A user network
# (run.py --net/--routes) takes its paths from the command line, relative
# to the caller's working directory (user_path).
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCENARIOS = HERE / "scenarios"
# Everything generated for the shipped scenarios (routes, per-run outputs,
# controller files) lives under build/ and is ignored by git.
BUILD = HERE / "build"

# Simulated time the bridge publishes at SUMO time 0 (unix ms) unless
# run.py --start-time says otherwise: Monday 2026-01-05 00:00:00 UTC, the
# same epoch `greenwave simulate` and `greenwave sim-cabinet --lockstep` use.
EPOCH_MS = 1_767_571_200_000

STEP_S = 0.1  # SUMO step = the daemon's tick (100 ms)


def sumo_home() -> str:
    home = os.environ.get("SUMO_HOME")
    if home and Path(home, "bin").is_dir():
        return home
    try:
        import sumo  # the eclipse-sumo wheel

        return sumo.SUMO_HOME
    except ImportError:  # pragma: no cover
        sys.exit("SUMO not found: .venv/bin/pip install -r tools/requirements-sumo.txt (or set SUMO_HOME)")


def ensure_env() -> str:
    home = sumo_home()
    os.environ["SUMO_HOME"] = home
    tools = str(Path(home, "tools"))
    if tools not in sys.path:
        sys.path.append(tools)
    return home


def sumo_bin(name: str) -> str:
    home = ensure_env()
    p = Path(home, "bin", name)
    if p.exists():
        return str(p)
    w = shutil.which(name)
    if w:
        return w
    sys.exit(f"{name} not found under {home}/bin")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}")
    return r


def greenwave_bin() -> str:
    """The daemon binary: $SIL_GREENWAVE_BIN (run.py --greenwave-bin sets
    it), else this checkout's target/release/greenwave (built with `cargo
    build --release` when missing), else `greenwave` on PATH when the rig is
    not inside a Cargo checkout. Not GREENWAVE_*: the daemon rejects unknown
    GREENWAVE_ variables."""
    env = os.environ.get("SIL_GREENWAVE_BIN")
    if env:
        p = user_path(env)
        if p.is_file():
            return str(p)
        w = shutil.which(env) if os.sep not in env else None
        if w:
            return w
        sys.exit(f"SIL_GREENWAVE_BIN={env}: no such file")
    p = REPO / "target" / "release" / "greenwave"
    if p.exists():
        return str(p)
    if (REPO / "Cargo.toml").exists():
        run(["cargo", "build", "--release", "--bin", "greenwave"], cwd=REPO)
        return str(p)
    w = shutil.which("greenwave")
    if w:
        return w
    sys.exit("greenwave binary not found: give --greenwave-bin PATH or set SIL_GREENWAVE_BIN")


def user_path(p) -> Path:
    """A path given by the user: relative to the caller's working
    directory (never to the repository), `~` expanded, made absolute so
    it survives the daemon's and the workers' own working directories."""
    return Path(os.path.expanduser(str(p))).resolve()


def parse_start_time(text: str | None, time_zone: str | None = None) -> int:
    """The simulated wall-clock time at SUMO time 0, as unix ms, from an
    ISO 8601 date-time with a UTC offset (`2026-12-07T06:58:00+08:00`,
    `...Z`). Without an offset it is read in `time_zone` (an IANA name) when
    one is given, and refused otherwise. None gives the default EPOCH_MS."""
    if text is None:
        return EPOCH_MS
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"start time {text!r} is not an ISO 8601 date-time, "
                         "e.g. 2026-12-07T06:58:00+08:00") from None
    if dt.tzinfo is None:
        if not time_zone:
            raise ValueError(f"start time {text!r} has no UTC offset: add one "
                             "(e.g. +08:00 or Z) or give a time zone")
        dt = dt.replace(tzinfo=zone(time_zone))
    return int(round(dt.timestamp() * 1000))


def zone(name: str):
    """The IANA time zone `name` (ValueError when unknown)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Asia/Singapore)") from None


def iso_ms(ms: int, time_zone: str | None = None) -> str:
    """Unix ms as ISO 8601, in `time_zone` or UTC."""
    tz = zone(time_zone) if time_zone else timezone.utc
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="milliseconds")


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def fmt(x: float) -> str:
    """A number for XML/TOML: at most 2 decimals, no trailing zeros."""
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"
