#!/usr/bin/env bash
# SIL smoke for CI: single intersection, balanced demand, seed 1, 300 s,
# Webster + SUMO NEMA + Greenwave in the loop (Modbus lockstep). Exits
# non-zero on any failed run or safety-monitor trip. Builds the release
# daemon (a no-op when it is up to date: a stale binary would test old code)
# and installs the SUMO Python packages into .venv when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! cmp -s tools/requirements-sumo.txt .venv/.requirements-sumo.installed; then
    .venv/bin/pip install -q --disable-pip-version-check -r tools/requirements-sumo.txt
    cp tools/requirements-sumo.txt .venv/.requirements-sumo.installed
fi
cargo build --locked --release --bin greenwave
exec .venv/bin/python tools/sumo/run.py --smoke "$@"
