"""fraud_cli.servers: waiting for a local server says why it gave up (exit or timeout)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraud_cli.servers import background_server, free_port, stop_process, wait_for_server


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        stop_process(proc)


def test_a_server_that_exits_is_reported_at_once_not_awaited() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()

    def probe() -> bool:
        raise RuntimeError("GraphQL errors")  # "not yet", were the process alive

    with pytest.raises(RuntimeError, match=r"exited early with code 3 \(the graph\):\nthe log"):
        wait_for_server(proc, "the graph", probe, timeout=60, log=lambda: "the log")


def test_not_yet_until_the_timeout_with_the_log(sleeper: subprocess.Popen[bytes]) -> None:
    attempts: list[int] = []

    def probe() -> None:
        attempts.append(1)
        raise ConnectionRefusedError

    with pytest.raises(TimeoutError, match=r"waiting for the graph\nthe log"):
        wait_for_server(
            sleeper, "the graph", probe, timeout=0.3, interval=0.05, log=lambda: "the log"
        )
    assert len(attempts) > 2


def test_background_server_waits_for_its_port() -> None:
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with background_server(command, port) as proc:
        assert proc.poll() is None
    assert proc.poll() is not None  # stopped by PID


def test_a_server_that_dies_during_the_block_is_named_with_its_log(tmp_path: Path) -> None:
    """A refused connection is all a client sees of a dead server: the block's error says the
    server exited, with its exit code and the end of its log."""
    port = free_port()
    script = (
        "import socket, sys, time\n"
        f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen()\n"
        "time.sleep(0.5); print('out of memory', flush=True); sys.exit(3)\n"
    )
    with (
        pytest.raises(
            RuntimeError, match=r"exited with code 3 .*ConnectionError.*\n.*out of memory"
        ),
        background_server([sys.executable, "-c", script], port, log_path=tmp_path / "log") as proc,
    ):
        proc.wait(timeout=10)
        raise ConnectionError("Could not connect to the endpoint URL")
