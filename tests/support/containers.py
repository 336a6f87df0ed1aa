"""Docker on this machine, for the tests: an engine, a base image made from Debian's packages,
and the project's image built from its Dockerfile.

- The engine is Debian's ``docker.io`` (installed with apt when ``dockerd`` is missing), started
  by the tests as ``dockerd --bridge=none --iptables=false`` on a socket of its own, so every
  container and build runs on the host network and is reached at 127.0.0.1 only. It is stopped
  by its PID. Its data root is a cache folder (``FRAUD_DOCKER_CACHE``, default
  ``~/.cache/fraud-mlops/docker``), so images and build layers survive between local sessions;
  a fresh machine (CI) builds everything once per session.
- No registry image can be pulled here, so the Dockerfile's default base (``python:3.11-slim``)
  is replaced by a base made with ``debootstrap`` from the Debian mirror apt uses (bookworm:
  Python 3.11 and its venv module), carrying this machine's CA bundle so pip reaches PyPI.
- The build is offline: the image's dependencies are repacked from this interpreter's
  site-packages (tests/support/wheelhouse.py: the versions `make install` pinned, torch's CPU
  build included) and served over loopback HTTP as pip's ``PIP_FIND_LINKS`` with
  ``PIP_NO_INDEX=1``, build arguments the Dockerfile passes to pip.
- Under pytest-xdist the controlling process owns the engine and builds the image (it is idle
  otherwise); it publishes the engine's socket and the image's tag in a file (``publish``), and
  the workers' container tests use that one engine (``published``). The scheduler holds the
  container modules back until the image is ready (tests/support/scheduling.py).
- What each phase took is kept in ``TIMINGS`` (the test session prints it at its end).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from fraud_cli.servers import background_server, free_port
from tests.support.wheelhouse import build_wheelhouse, image_requirements

ROOT = Path(__file__).resolve().parents[2]
# Bump the tag when the recipe below changes: a cached base of the old recipe is then rebuilt.
BASE_IMAGE = "fraud-test-base:bookworm-2"
# libgomp1: LightGBM's OpenMP runtime (python:3.11-slim lacks it too; the Dockerfile adds it)
BASE_PACKAGES = ("python3-minimal", "python3-venv", "ca-certificates", "libgomp1")
WHEEL_PORT = 38_213
WHEEL_CACHE = Path.home() / ".cache" / "fraud-mlops" / "wheels"
APT_LOCK = "/tmp/fraud-mlops-apt.lock"  # noqa: S108 (apt is machine-wide, so is its lock)
TIMINGS: list[str] = []  # what the engine, the base and the build took, in order


def _log(message: str) -> None:
    TIMINGS.append(message)
    print(f"[containers] {message}", flush=True)


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin")


def ensure_apt(binary: str, package: str) -> str:
    """The path of ``binary``, installing Debian's ``package`` with apt when it is missing."""
    found = _which(binary)
    if found:
        return found
    assert os.geteuid() == 0, f"{binary} is missing and only root can `apt-get install {package}`"
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with FileLock(APT_LOCK):  # one apt at a time across the test workers (dpkg's lock fails)
        if not _which(binary):  # another worker may have installed it meanwhile
            for command in (
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", package],
            ):
                subprocess.run(command, check=True, env=env, capture_output=True, timeout=900)
            _log(f"apt-get install {package}: {time.monotonic() - started:.1f} s")
    found = _which(binary)
    assert found, f"apt installed {package} but {binary} is still not on PATH"
    return found


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 ``.sources`` or one-line lists)."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        text = Path(path).read_text()
        if "Suites: bookworm" in text or "Suites: bookworm " in text:
            for line in text.splitlines():
                if line.startswith("URIs:") and "security" not in line:
                    return line.split()[1]
    for path in ["/etc/apt/sources.list", *glob.glob("/etc/apt/sources.list.d/*.list")]:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(path).read_text().splitlines():
                parts = line.split()
                if parts[:1] == ["deb"] and "bookworm" in parts and "security" not in line:
                    return next(p for p in parts[1:] if p.startswith("http"))
    return "http://deb.debian.org/debian"


@dataclass
class DockerEngine:
    """A dockerd started by the tests; ``env`` points a docker client at it. ``proc`` is None in
    a process that uses an engine another process started (an xdist worker)."""

    host: str
    proc: subprocess.Popen[bytes] | None
    log_path: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}

    def docker(
        self, *args: str, timeout: float = 300, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this engine."""
        done = subprocess.run(
            [docker_client(), *args],
            env=self.env,
            capture_output=True,
            text=input is None,
            input=input,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(args[:3])} ... failed ({done.returncode}):\n"
                f"{str(done.stdout)[-2000:]}\n{str(done.stderr)[-3000:]}"
            )
        return done  # type: ignore[return-value]

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]


def docker_client() -> str:
    """The docker command-line client (Debian's docker.io brings one if none is installed)."""
    return shutil.which("docker") or ensure_apt("docker", "docker.io")


@contextlib.contextmanager
def docker_engine() -> Iterator[DockerEngine]:
    """Start dockerd (installing docker.io if needed) and stop it by PID at the end."""
    dockerd = ensure_apt("dockerd", "docker.io")
    docker_client()
    cache = Path(
        os.environ.get("FRAUD_DOCKER_CACHE") or Path.home() / ".cache" / "fraud-mlops" / "docker"
    )
    cache.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="fraud-dockerd-", dir="/tmp"))  # short socket paths
    host = f"unix://{run_dir}/docker.sock"
    log_path = run_dir / "dockerd.log"
    command = [
        dockerd,
        "--data-root", str(cache),
        "--exec-root", str(run_dir / "exec"),
        "--pidfile", str(run_dir / "dockerd.pid"),
        "--host", host,
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
    ]  # fmt: skip
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    engine = DockerEngine(host, proc, log_path)
    try:
        deadline = time.monotonic() + 60
        while engine.docker("version", check=False, timeout=10).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{engine.log()}")
            time.sleep(0.2)
        _log(f"dockerd ready in {time.monotonic() - started:.1f} s (data root {cache})")
        yield engine
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(run_dir, ignore_errors=True)


def build_base_image(engine: DockerEngine, name: str = BASE_IMAGE) -> str:
    """A Debian bookworm base with Python 3.11 (``debootstrap``, then ``docker import``).

    Skipped when the engine already holds ``name`` (its cache survives between sessions).
    """
    if engine.has_image(name):
        _log(f"base image {name}: cached")
        return name
    debootstrap = ensure_apt("debootstrap", "debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fraud-rootfs-") as workdir:
        rootfs = Path(workdir) / "rootfs"
        subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(rootfs),
                debian_mirror(),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        # This machine's CA bundle (pip must trust whatever stands between it and PyPI).
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/")
        bootstrapped = time.monotonic()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        imported = subprocess.run(
            [
                docker_client(),
                "import",
                "--change",
                "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                "--change",
                "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                "-",
                name,
            ],  # fmt: skip
            stdin=tar.stdout,
            env=engine.env,
            capture_output=True,
            timeout=600,
        )
        tar.stdout.close()
        tar.wait()
        assert imported.returncode == 0, imported.stderr.decode()[-2000:]
    _log(
        f"base image {name}: debootstrap {bootstrapped - started:.1f} s, "
        f"docker import {time.monotonic() - bootstrapped:.1f} s"
    )
    return name


def _wheel_port() -> int:
    """A fixed loopback port for the wheel server when it is free: the URL is a build argument,
    and a new one each build would invalidate every cached layer after it."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server binds
        try:
            probe.bind(("127.0.0.1", WHEEL_PORT))
        except OSError:
            return free_port()
    return WHEEL_PORT


def build_project_image(engine: DockerEngine, tag: str, base: str) -> str:
    """``docker build`` of the repository's Dockerfile on ``base`` (the host network), offline:
    pip takes every dependency from a wheelhouse of this interpreter's packages."""
    started = time.monotonic()
    wheels = build_wheelhouse(image_requirements(ROOT / "pyproject.toml"), WHEEL_CACHE)
    _log(f"wheelhouse: {len(wheels)} wheels in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    port = _wheel_port()
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with background_server(server, port, cwd=WHEEL_CACHE):
        engine.docker(
            "build", "--network", "host", "-t", tag,
            "--build-arg", f"BASE_IMAGE={base}",
            "--build-arg", f"PIP_FIND_LINKS=http://127.0.0.1:{port}/",
            "--build-arg", "PIP_NO_INDEX=1",
            str(ROOT),
            timeout=1800,
        )  # fmt: skip
    _log(f"image {tag}: docker build {time.monotonic() - started:.1f} s")
    return tag


class BackgroundImage:
    """The engine and the project's image, prepared in a thread from the start of the test
    session, so the build (minutes on a fresh machine) overlaps the tests that need no image.
    ``result()`` waits for it; ``close()`` stops the engine."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._publish: Path | None = None
        self._stack = contextlib.ExitStack()
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[tuple[DockerEngine, str]] | None = None

    def start(self, idle: bool = True, publish: Path | None = None) -> None:
        """Start preparing; ``idle``: at the lowest CPU and disk priority (the tests running
        meanwhile come first), else at the test session's (a test is waiting for it).
        ``publish``: a file that then holds the engine and the image, or why it failed, for the
        other processes of the session (``published``)."""
        if self._future is None:
            self._publish = publish
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="image-build")
            self._future = self._pool.submit(self._prepare, idle)

    def _prepare(self, idle: bool) -> tuple[DockerEngine, str]:
        # Idle-time work: this thread, and what it starts (apt, debootstrap, dockerd and the
        # build's containers), yield the CPU and the disk to the tests running meanwhile.
        if idle:
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, 19)
            if shutil.which("ionice"):
                subprocess.run(["ionice", "-c", "2", "-n", "7", "-p", str(thread)], check=False)
        started = time.monotonic()
        try:
            engine = self._stack.enter_context(docker_engine())
            image = build_project_image(engine, self.tag, build_base_image(engine))
        except BaseException as exc:
            self._write({"error": f"{type(exc).__name__}: {exc}"})
            raise
        _log(f"engine + image ready {time.monotonic() - started:.1f} s after the session began")
        self._write({"host": engine.host, "log": str(engine.log_path), "image": image})
        return engine, image

    def _write(self, state: dict[str, str]) -> None:
        if self._publish is not None:
            partial = self._publish.with_suffix(".partial")
            partial.write_text(json.dumps(state))
            partial.rename(self._publish)  # whole or absent, for a reader polling it

    def ready(self) -> bool:
        """Whether the engine and the image are prepared (or their preparation failed)."""
        return self._future is not None and self._future.done()

    def result(self) -> tuple[DockerEngine, str]:
        self.start(idle=False)
        assert self._future is not None
        if not self._future.done():
            started = time.monotonic()
            self._future.exception()  # wait
            _log(f"the first test needing the image waited {time.monotonic() - started:.1f} s")
        return self._future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # a build in progress finishes before dockerd stops
        self._stack.close()


def published(path: Path, timeout: float = 1800) -> tuple[DockerEngine, str]:
    """The engine and image another process of the session prepared (``BackgroundImage``
    with ``publish=path``), once they are ready."""
    started = time.monotonic()
    while not path.exists():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"no Docker engine and image in {path} after {timeout:.0f} s")
        time.sleep(1)
    waited = time.monotonic() - started
    if waited > 1:
        _log(f"the first test needing the image waited {waited:.1f} s")
    state = json.loads(path.read_text())
    if "error" in state:
        raise RuntimeError(f"the session's Docker engine or image failed: {state['error']}")
    return DockerEngine(state["host"], None, Path(state["log"])), state["image"]
