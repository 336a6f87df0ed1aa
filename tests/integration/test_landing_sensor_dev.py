"""Under `dagster dev` (webserver + daemon), a file dropped into the landing folder is ingested
by the landing sensor with no manual step: the sensor is switched on (it ships stopped), a file
lands, and the run it requests succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraud_core.lakehouse import FEATURES, RAW, Lakehouse
from fraud_core.simulate import SimulationConfig, simulate_claims

ROOT = Path(__file__).resolve().parents[2]

REPOSITORIES = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name location { name } sensors { name } } } } }
"""
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""
RUNS = """
{ runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "landing_sensor"}]}) {
    ... on Runs { results { runId status tags { key value } } } } }
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = httpx.post(url, json={"query": query, "variables": variables or {}}, timeout=10).json()
    assert "errors" not in body, body["errors"]
    return dict(body["data"])


def _wait(what: str, probe, deadline: float, proc: subprocess.Popen[bytes]):  # type: ignore[no-untyped-def]
    while time.monotonic() < deadline:
        assert proc.poll() is None, "dagster dev exited early"
        try:
            value = probe()
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.integration
def test_a_dropped_file_is_ingested_by_the_running_sensor(tmp_path: Path) -> None:
    started = time.monotonic()
    deadline = started + 85
    home, landing, lake = tmp_path / "dagster_home", tmp_path / "landing", tmp_path / "lake"
    for folder in (home, landing):
        folder.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LAKEHOUSE_URI": str(lake),
        "LANDING_URI": str(landing),
        "LANDING_SENSOR_INTERVAL_SECONDS": "5",
        "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path),
    }
    port = _free_port()
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    # setsid + default signal handlers: otherwise dagster dev ignores SIGINT/SIGTERM when
    # started from a non-interactive parent (see STACK_NOTES).
    proc = subprocess.Popen(
        ["setsid", "env", "--default-signal=INT,TERM", dagster, "dev"]
        + ["-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/graphql"

        def repository() -> dict[str, Any] | None:
            nodes = _graphql(url, REPOSITORIES)["repositoriesOrError"]["nodes"]
            return next((n for n in nodes if {"name": "landing_sensor"} in n["sensors"]), None)

        repo = _wait("the code location", repository, deadline, proc)
        selector = {
            "repositoryLocationName": repo["location"]["name"],
            "repositoryName": repo["name"],
            "sensorName": "landing_sensor",
        }
        switched = _graphql(url, START_SENSOR, {"selector": selector})["startSensor"]
        assert switched["sensorState"]["status"] == "RUNNING", switched

        # A claims system lands a file the safe way: write under a hidden name, then rename.
        claims = simulate_claims(SimulationConfig(n_claims=500, seed=8)).drop(columns="scenario")
        claims.to_parquet(landing / ".claims_mar.parquet.part", index=False)
        os.replace(landing / ".claims_mar.parquet.part", landing / "claims_mar.parquet")

        def finished_run() -> dict[str, Any] | None:
            runs = _graphql(url, RUNS)["runsOrError"]["results"]
            done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            return done[0] if done else None

        run = _wait("the sensor's run to finish", finished_run, deadline, proc)
        assert run["status"] == "SUCCESS", run
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/partition"] == "claims_mar"
        assert tags["landing/file"] == "claims_mar.parquet"
        lh = Lakehouse(str(lake))
        assert len(lh.read_batch(RAW, "claims_mar")) == 500
        assert lh.batches(FEATURES) == ["claims_mar"]
        assert len(_graphql(url, RUNS)["runsOrError"]["results"]) == 1  # one file, one run
        assert time.monotonic() - started < 90
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
