"""Helpers for the tests of scripts/ (the entry points Jenkins calls through make).

Scripts are tested the way Jenkins runs them: as programs (``python scripts/NAME.py``) with an
environment, reading their exit code and output. Pure functions are also imported from the
script files for unit tests (``script_module``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from fraud_cli import servers

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"

RunScript = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def script_module() -> Iterator[Callable[[str], ModuleType]]:
    """Import ``scripts/NAME.py`` as a module (scripts/ on sys.path, as when it runs)."""
    sys.path.insert(0, str(SCRIPTS))
    loaded: dict[str, ModuleType] = {}

    def load(name: str) -> ModuleType:
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(f"scripts_{name}", SCRIPTS / f"{name}.py")
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    try:
        yield load
    finally:
        sys.path.remove(str(SCRIPTS))


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
