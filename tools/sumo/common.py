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
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCENARIOS = HERE / "scenarios"
# Everything generated (routes, per-run outputs, controller files) lives
# under build/ and is ignored by git.
BUILD = HERE / "build"

# Simulated time the bridge publishes at SUMO time 0 (unix ms): Monday
# 2026-01-05 00:00:00 UTC, the same epoch `greenwave simulate` and
# `greenwave sim-cabinet --lockstep` use.
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
    """The daemon binary: $SIL_GREENWAVE_BIN, else target/release/greenwave
    (built with `cargo build --release` when missing). Not GREENWAVE_*: the
    daemon rejects unknown GREENWAVE_ variables."""
    env = os.environ.get("SIL_GREENWAVE_BIN")
    if env:
        return env
    p = REPO / "target" / "release" / "greenwave"
    if not p.exists():
        run(["cargo", "build", "--release", "--bin", "greenwave"], cwd=REPO)
    return str(p)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def fmt(x: float) -> str:
    """A number for XML/TOML: at most 2 decimals, no trailing zeros."""
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"
