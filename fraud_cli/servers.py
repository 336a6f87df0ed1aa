"""Local servers on loopback, for the tests and the benchmarks: free ports, readiness, stopping
by PID, and ``dagster dev`` started so that it can be stopped.

``dagster dev`` started from a script ignores SIGINT and SIGTERM (the parent masks SIGINT for
background jobs and dagster copies that handler onto SIGTERM), so it is started as
``setsid env --default-signal=INT,TERM dagster dev ...`` and stopped with SIGINT (a clean
shutdown in a few seconds), its process group killed only if it hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from fraud_core.polling import poll_until

ROOT = Path(__file__).resolve().parent.parent
TELEMETRY_OFF = "telemetry:\n  enabled: false\n"
# What a server answers while it starts: "not yet".
NOT_YET = (OSError, httpx.HTTPError, RuntimeError, KeyError, TypeError, ValueError)

T = TypeVar("T")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_server(
    proc: subprocess.Popen[Any],
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.2,
    log: Callable[[], str] = lambda: "",
) -> T:
    """Call ``probe`` until it returns something truthy while ``proc`` runs; connection errors
    and GraphQL errors count as "not yet".

    Raises:
        RuntimeError: the process exited first (with the tail of ``log()``).
        TimeoutError: ``timeout`` passed (with the tail of ``log()``).
    """

    def running_probe() -> T | None:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the server exited early with code {proc.returncode} ({what}):\n{log()}"
            )
        try:
            return probe()
        except NOT_YET:  # the exit above is a RuntimeError too: only the probe's count
            return None

    try:
        return poll_until(running_probe, what=what, timeout=timeout, interval=interval)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{log()}") from None


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Block until something listens on 127.0.0.1:port (or the process dies / time runs out)."""

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True

    wait_for_server(proc, f"a listener on 127.0.0.1:{port}", listening, timeout, interval=0.1)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a server we started, by PID: terminate, then kill if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class DagsterDev:
    """A running ``dagster dev`` (webserver + daemon) on loopback."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """The ``data`` of a GraphQL answer; raises RuntimeError when it holds errors."""
        body = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=timeout,
        ).json()
        if body.get("errors") or not isinstance(body.get("data"), dict):
            raise RuntimeError(f"GraphQL errors from {self.url}: {body.get('errors')}")
        data: dict[str, Any] = body["data"]
        return data

    def wait_until(
        self, what: str, probe: Callable[[], T | None], timeout: float = 120, poll: float = 0.5
    ) -> T:
        """Call ``probe`` until it returns something truthy (see :func:`wait_for_server`)."""
        return wait_for_server(self.proc, what, probe, timeout, poll, self.log)

    def wait_for_graph(self, timeout: float = 120) -> list[dict[str, Any]]:
        """Until the code location has loaded its assets; returns the asset nodes' ids."""
        nodes: list[dict[str, Any]] = self.wait_until(
            "the asset graph", lambda: self.graphql("{ assetNodes { id } }")["assetNodes"], timeout
        )
        return nodes

    def stop(self) -> None:
        """SIGINT (clean shutdown in a few seconds); SIGKILL to the group if it hangs."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_dagster_dev(
    home: Path,
    env: Mapping[str, str] | None = None,
    instance_yaml: str | None = None,
    workspace: str = "workspace.yaml",
    cwd: Path = ROOT,
) -> DagsterDev:
    """Start ``dagster dev`` on a free loopback port without waiting for it.

    Args:
        home: DAGSTER_HOME (created; its dagster.yaml is ``instance_yaml``, or telemetry off
            when it has none yet). The log goes to ``home/../dagster-dev.log``.
        env: settings added to this process' environment (LAKEHOUSE_URI, ...).
        instance_yaml: the instance's dagster.yaml (replaces an existing one).
        workspace: the workspace file, relative to ``cwd``.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if instance_yaml is not None or not config.exists():
        config.write_text(TELEMETRY_OFF if instance_yaml is None else instance_yaml)
    full_env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(home)}
    port = free_port()
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    log_path = home.parent / "dagster-dev.log"
    # The child keeps its own descriptor of the log: ours can close now.
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["setsid", "env", "--default-signal=INT,TERM", dagster, "dev"]
            + ["-h", "127.0.0.1", "-p", str(port), "-w", workspace],
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return DagsterDev(f"http://127.0.0.1:{port}", proc, log_path, full_env)


@contextlib.contextmanager
def dagster_dev(
    home: Path,
    env: Mapping[str, str] | None = None,
    instance_yaml: str | None = None,
    timeout: float = 120,
) -> Iterator[DagsterDev]:
    """``dagster dev`` started, serving its asset graph, and stopped on exit."""
    server = start_dagster_dev(home, env, instance_yaml)
    try:
        server.wait_for_graph(timeout)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def background_server(
    command: list[str],
    port: int,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (output discarded) listening on ``port``; stopped by PID on exit."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, timeout)
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def scoring_api(
    env: Mapping[str, str],
    log_path: Path | None = None,
    uvicorn_args: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
    timeout: float = 120,
) -> Iterator[str]:
    """The scoring API (``serving.main:create_app`` under uvicorn) on a free loopback port,
    until ``/readyz`` answers 200 (its model loaded); yields its URL, stops it by PID on exit.

    Args:
        env: the whole environment of the server (LAKEHOUSE_URI, FRAUD_API_KEYS, ...).
        log_path: where its output goes (discarded without one).
        uvicorn_args: more uvicorn options (``--loop uvloop``, ...).
        prefix: a command to run it under (``taskset -c 0``).
    """
    port = free_port()
    command = [*prefix, sys.executable, "-m", "uvicorn", "serving.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), *uvicorn_args]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log_path.open("wb")) if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"

    def log() -> str:
        return log_path.read_text(errors="replace")[-3000:] if log_path else ""

    def ready() -> bool:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200

    try:
        wait_for_server(proc, f"the scoring API at {url} to be ready", ready, timeout, 0.2, log)
        yield url
    finally:
        stop_process(proc)
