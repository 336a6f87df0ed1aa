"""Helpers for the tests of scripts/ (the entry points Jenkins calls through make).

Scripts are tested the way Jenkins runs them: as programs (``python scripts/NAME.py``) with an
environment, reading their exit code and output. Each script is one line over a package module
(fraud_cli.deploy, fraud_cli.materialize), which the unit tests import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fraud_cli import servers

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"

RunScript = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_script() -> RunScript:
    """Run ``scripts/NAME.py ARGS`` with ``env`` added to this process' environment."""

    def run(
        name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPTS / f"{name}.py"), *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """Returns a function giving a free TCP port on the loopback interface."""
    return servers.free_port
