#!/usr/bin/env bash
# The one test command (README and .ci/run both use it). On a fresh machine
# it installs what the tests need — Debian's mbpoll, socat, chromium and
# chromium-driver, nats-server, a Python
# venv with the independent Modbus/gRPC peers, pytest and Eclipse SUMO —
# then runs the whole suite, ending with the SIL rig's Python tests and the
# SUMO software-in-the-loop smoke.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages used by the interop tests: mbpoll as an independent
# peer, socat for the pseudo-terminal pair of the serial RTU test, chromium
# and its driver for the web view's browser test (tests/web.rs), nats-server
# (with JetStream) as the broker of the city feed test (tests/nats.rs),
# snmp (net-snmp's snmpget/snmpwalk/snmpset) as the NTCIP manager
# (tests/ntcip.rs).
missing=()
command -v mbpoll >/dev/null 2>&1 || missing+=(mbpoll)
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v snmpwalk >/dev/null 2>&1 || missing+=(snmp)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# Debian installs it in /usr/sbin, which a non-root PATH may lack.
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "== installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# Python peers (pymodbus, grpcio, grpcurl) in a project-local venv.
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import sys; sys.exit(0)' 2>/dev/null \
    || ! cmp -s tools/requirements.txt .venv/.requirements.installed; then
    echo "== installing Python test peers"
    .venv/bin/pip install -q --disable-pip-version-check -r tools/requirements.txt
    cp tools/requirements.txt .venv/.requirements.installed
fi
# GW_TEST_*, not GREENWAVE_*: the daemon the tests start reads every
# GREENWAVE_* variable as a setting and rejects unknown ones.
export GW_TEST_PYTHON="$PWD/.venv/bin/python"
export PATH="$PWD/.venv/bin:$PATH"
# Interop tests fail (rather than skip) when a peer is missing.
export GW_TEST_REQUIRE_INTEROP=1

echo "== cargo test"
cargo test --locked --all-targets
cargo test --locked --doc

echo "== greenwave check controllers/"
cargo run --locked --quiet -- check controllers

# The SIL rig's own Python unit tests (argument parsing, import_net, the
# bridge's safety monitor, demand); they need the SUMO packages (sumolib),
# installed here as smoke.sh installs them.
echo "== SIL rig Python tests"
if ! cmp -s tools/requirements-sumo.txt .venv/.requirements-sumo.installed; then
    .venv/bin/pip install -q --disable-pip-version-check -r tools/requirements-sumo.txt
    cp tools/requirements-sumo.txt .venv/.requirements-sumo.installed
fi
.venv/bin/python -m pytest -q tools/sumo/tests

# The unchanged daemon in lockstep over Modbus against SUMO, with
# baselines; fails on any safety-monitor trip (installs the SUMO packages
# into .venv when they are missing).
echo "== SUMO software-in-the-loop smoke"
tools/sumo/smoke.sh
