"""pyproject.toml and tools/requirements-sumo.txt list the same
dependencies (scripts install from the requirements file)."""

from __future__ import annotations

import tomllib

from conftest import SUMO_DIR


def requirement_lines(path) -> list[str]:
    return sorted(ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()
                  if ln.split("#", 1)[0].strip())


def test_pyproject_matches_requirements_sumo():
    doc = tomllib.loads((SUMO_DIR / "pyproject.toml").read_text())
    assert sorted(doc["project"]["dependencies"]) == requirement_lines(SUMO_DIR.parent / "requirements-sumo.txt")


def test_pytest_is_in_the_test_venv_requirements():
    assert any(ln.startswith("pytest") for ln in requirement_lines(SUMO_DIR.parent / "requirements.txt"))
