"""Shared fixtures for the SIL rig's unit tests (pytest, from the repository
root: `.venv/bin/python -m pytest -q tools/sumo/tests`). The rig's scripts
are plain modules in tools/sumo/, put on sys.path here as they put
themselves. No daemon binary is needed; sumolib comes from
tools/requirements-sumo.txt."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SUMO_DIR = Path(__file__).resolve().parent.parent
if str(SUMO_DIR) not in sys.path:
    sys.path.insert(0, str(SUMO_DIR))

SINGLE_NET = SUMO_DIR / "scenarios" / "single" / "single.net.xml"


@pytest.fixture(scope="session")
def single_model():
    """The shipped single junction as the NEMA model (netmodel.analyze)."""
    import netmodel

    return netmodel.analyze(str(SINGLE_NET))
