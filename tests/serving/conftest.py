"""Fixtures for the serving tests: real uvicorn processes on loopback and a raw HTTP client.

The raw client speaks HTTP/1.1 over asyncio streams with keep-alive: httpx's client costs more
per request than the server does, so load is generated with this.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fraud_cli.servers import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
KEY = "uvicorn-key-0123456789abcdef"
OLD_KEY = "uvicorn-old-key-0123456789ab"


@dataclass
class Server:
    """A uvicorn process serving ``serving.main:create_app``."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop this process (by its PID): terminate, then kill if it hangs."""
        stop_process(self.proc)


def launch(lakehouse: Path, log_path: Path, env: dict[str, str]) -> Server:
    """Start uvicorn (uvloop + httptools, one worker) without waiting for it."""
    port = free_port()
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("FRAUD_") and k != "LAKEHOUSE_URI"
    }
    full_env = {
        **clean,
        "LAKEHOUSE_URI": str(lakehouse),
        "FRAUD_API_POLL_SECONDS": "1",
        **env,
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "serving.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
            ],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(port, proc, log_path, full_env)


def wait_healthy(server: Server, timeout: float = 60.0) -> None:
    """Block until /healthz answers 200 (fail with the server's log if it dies or hangs)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            pytest.fail(f"uvicorn exited with {server.proc.returncode}:\n{server.log()}")
        try:
            status, _ = asyncio.run(request(server.port, "GET", "/healthz"))
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"uvicorn did not answer in {timeout} s:\n{server.log()}")
        time.sleep(0.2)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``start_server(lakehouse, **env)``: a healthy uvicorn process, stopped after the test."""
    started: list[Server] = []

    def start(lakehouse: Path, wait: bool = True, **env: str) -> Server:
        server = launch(lakehouse, tmp_path / f"uvicorn-{len(started)}.log", env)
        started.append(server)
        if wait:
            wait_healthy(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- a raw HTTP/1.1 client -----------------------------------------------------------------
def _encode(method: str, path: str, body: bytes | None, headers: dict[str, str] | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return int(status_line.split()[1]), await reader.readexactly(length)


async def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on a fresh connection: ``(status, body bytes)``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        writer.write(_encode(method, path, data, headers))
        await writer.drain()
        return await _read_response(reader)
    finally:
        writer.close()


class Connection:
    """One keep-alive connection sending requests one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        self.writer.write(_encode(method, path, body, headers))
        await self.writer.drain()
        return await _read_response(self.reader)

    def close(self) -> None:
        self.writer.close()


class Http:
    """The raw client, handed to tests as a fixture (conftest modules are not importable)."""

    key = KEY
    old_key = OLD_KEY

    async def request(
        self,
        port: int,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """See :func:`request`."""
        return await request(port, method, path, body, headers)

    async def connect(self, port: int) -> Connection:
        """A keep-alive connection to 127.0.0.1:port."""
        return await Connection.open(port)

    def get_json(self, port: int, path: str, key: str | None = KEY) -> tuple[int, Any]:
        """GET from synchronous test code: ``(status, parsed JSON or text)``."""
        headers = {"X-API-Key": key} if key else None
        status, body = asyncio.run(request(port, "GET", path, None, headers))
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode()


@pytest.fixture(scope="session")
def http() -> Http:
    """Raw HTTP helpers and the API keys the uvicorn fixtures use."""
    return Http()


@pytest.fixture(scope="module")
def served_champion(
    champion_lakehouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One uvicorn process on the champion lakehouse for a test module, accepting both keys of
    a rotation (``KEY`` new, ``OLD_KEY`` old)."""
    log_path = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    server = launch(champion_lakehouse, log_path, {"FRAUD_API_KEYS": f"{KEY},{OLD_KEY}"})
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop()
