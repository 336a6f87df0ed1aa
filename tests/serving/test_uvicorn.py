"""A real uvicorn process serving the app factory, scored over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.api.models import load_example

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(champion_lakehouse: Path, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "LAKEHOUSE_URI": str(champion_lakehouse),
        "FRAUD_API_POLL_SECONDS": "1",
    }
    log_path = tmp_path / "uvicorn.log"
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
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"uvicorn exited with {proc.returncode}:\n{log_path.read_text()}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not answer in 60 s:\n{log_path.read_text()}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.mark.integration
def test_uvicorn_serves_the_example(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["model_version"] == "fm-test-1"
        example = load_example()
        r = client.post("/v1/score", json=example)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["claim_id"] == example["claim_id"]
        assert body["model_version"] == "fm-test-1"
        assert 0.0 <= body["fraud_score"] <= 1.0
        assert body["decision"] in ("investigate", "fast_track")
        bad = client.post("/v1/score", json={**example, "claimed_amount": -5})
        assert bad.status_code == 422
