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
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from filelock import FileLock

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
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process listening on ``port``; stopped by PID on exit.

    Its output goes to ``log_path`` (discarded without one). When the block fails while the
    server is gone, the error says so, with the server's exit code and the tail of its log:
    a dead server otherwise shows only as a refused connection.
    """
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, timeout)
        yield proc
    except Exception as exc:
        if proc.poll() is None:
            raise
        tail = log_path.read_text(errors="replace")[-2000:] if log_path else "(no log kept)"
        raise RuntimeError(
            f"{os.path.basename(command[0])} on port {port} exited with code {proc.returncode} "
            f"during the block ({exc.__class__.__name__}: {exc}); its log ends:\n{tail}"
        ) from exc
    finally:
        stop_process(proc)
        if log:
            log.close()


# Credentials for moto: fake, and set for whatever talks to it, so no client reaches AWS.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# Azurite's published development account (the same for every Azurite; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@contextlib.contextmanager
def moto_server(log_path: Path | None = None) -> Iterator[str]:
    """moto's server (S3, Step Functions, Batch, ...) on a free loopback port; yields its URL.

    moto comes with the dev extra (``moto[server]``). Clients still need ``FAKE_AWS``.
    """
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if not exe:
        raise RuntimeError("moto_server is not installed: it comes with the dev extra")
    port = free_port()
    with background_server([exe, "-H", "127.0.0.1", "-p", str(port)], port, log_path=log_path):
        yield f"http://127.0.0.1:{port}"


def node_tool(name: str) -> str:
    """``node_modules/.bin/NAME``: the repository's Node tooling (package.json: Azurite,
    npm-groovy-lint), installed from package-lock.json with ``npm ci`` when missing. One
    install at a time across processes (test workers), and never over a complete install."""
    exe = ROOT / "node_modules" / ".bin" / name
    if not exe.exists():
        npm = shutil.which("npm")
        if not npm:
            raise RuntimeError(f"npm is needed to install {name} (package.json): Node >= 20")
        with FileLock(str(ROOT / "node_modules.lock")):
            if not exe.exists():
                done = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if done.returncode != 0:
                    failed = done.stderr[-2000:]
                    raise RuntimeError(f"`npm ci` failed ({name} not installed):\n{failed}")
    if not exe.exists():
        raise RuntimeError(f"`npm ci` did not install {exe}: is {name} in package.json?")
    return str(exe)


@contextlib.contextmanager
def azurite(workdir: Path, log_path: Path | None = None) -> Iterator[str]:
    """Azurite's Blob service (the ADLS / Blob emulator) on a free loopback port, in memory and
    without telemetry; yields its connection string (what adlfs reads from
    ``AZURE_STORAGE_CONNECTION_STRING``)."""
    port = free_port()
    command = [node_tool("azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    command += ["--inMemoryPersistence", "--loose", "--skipApiVersionCheck", "--disableTelemetry"]
    with background_server(command, port, cwd=workdir, log_path=log_path):
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
        )


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
