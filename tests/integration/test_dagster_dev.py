"""`dagster dev` loads workspace.yaml and serves the asset graph (what `make ui` starts)."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUERY = """
{ assetNodes { assetKey { path } isPartitioned hasAssetChecks
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_dagster_dev_serves_the_graph(tmp_path) -> None:
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LAKEHOUSE_URI": str(tmp_path / "lake"),
        "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
    }
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    # setsid + default signal handlers: otherwise dagster dev ignores SIGINT/SIGTERM when
    # started from a non-interactive parent (see STACK_NOTES).
    proc = subprocess.Popen(
        [
            "setsid",
            "env",
            "--default-signal=INT,TERM",
            dagster,
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        deadline = time.monotonic() + 120
        nodes = None
        while time.monotonic() < deadline and nodes is None:
            try:
                body = httpx.post(url, json={"query": QUERY}, timeout=5).json()
                nodes = body["data"]["assetNodes"] or None  # empty while the location loads
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass
            if nodes is None:
                assert proc.poll() is None, "dagster dev exited early"
                time.sleep(1)
        assert nodes, "dagster dev did not serve the asset graph within 120 s"
        keys = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert len(keys) == 8
        assert keys["raw_claims"]["isPartitioned"] and not keys["fraud_model"]["isPartitioned"]
        gate = keys["fraud_model"]["assetChecksOrError"]["checks"]
        assert gate == [{"name": "model_gate", "blocking": True}]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
