"""Shared fixtures: the `sprint` CLI binary (for the equality tests) and the repo root."""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def sprint_binary():
    """The `sprint` CLI: $SPRINT_BIN, else target/{release,debug}/sprint, else PATH."""
    env = os.environ.get("SPRINT_BIN")
    if env:
        return env if Path(env).exists() else None
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "sprint"
        if p.exists():
            return str(p)
    return shutil.which("sprint")


@pytest.fixture(scope="session")
def sprint_bin():
    b = sprint_binary()
    if b is None:
        pytest.skip("the sprint CLI is not built (cargo build -p sprint-cli, or set SPRINT_BIN)")
    return b


@pytest.fixture(scope="session")
def root():
    return ROOT
