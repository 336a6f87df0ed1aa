"""Under `dagster dev` (webserver + daemon), a file dropped into the landing folder is ingested
by the landing sensor with no manual step: the sensor is switched on (it ships stopped), a file
lands, and the run it requests succeeds."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from fraud_cli.servers import start_dagster_dev
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import FEATURES, RAW
from fraud_core.simulate import SimulationConfig, simulate_claims

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


@pytest.mark.slow
@pytest.mark.integration
def test_a_dropped_file_is_ingested_by_the_running_sensor(tmp_path: Path) -> None:
    started = time.monotonic()
    deadline = started + 85
    home, landing, lake = tmp_path / "dagster_home", tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    env = {
        "LAKEHOUSE_URI": str(lake),
        "LANDING_URI": str(landing),
        "LANDING_SENSOR_INTERVAL_SECONDS": "5",
        "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path),
    }
    server = start_dagster_dev(home, env)
    try:

        def repository() -> dict[str, Any] | None:
            nodes = server.graphql(REPOSITORIES)["repositoriesOrError"]["nodes"]
            return next((n for n in nodes if {"name": "landing_sensor"} in n["sensors"]), None)

        repo = server.wait_until("the code location", repository, deadline - time.monotonic())
        selector = {
            "repositoryLocationName": repo["location"]["name"],
            "repositoryName": repo["name"],
            "sensorName": "landing_sensor",
        }
        switched = server.graphql(START_SENSOR, {"selector": selector})["startSensor"]
        assert switched["sensorState"]["status"] == "RUNNING", switched

        # A claims system lands a file the safe way: write under a hidden name, then rename.
        claims = simulate_claims(SimulationConfig(n_claims=500, seed=8)).drop(columns="scenario")
        claims.to_parquet(landing / ".claims_mar.parquet.part", index=False)
        os.replace(landing / ".claims_mar.parquet.part", landing / "claims_mar.parquet")

        def finished_run() -> dict[str, Any] | None:
            runs = server.graphql(RUNS)["runsOrError"]["results"]
            done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            return done[0] if done else None

        run = server.wait_until(
            "the sensor's run to finish", finished_run, deadline - time.monotonic(), poll=1
        )
        assert run["status"] == "SUCCESS", run
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/partition"] == "claims_mar"
        assert tags["landing/file"] == "claims_mar.parquet"
        lh = Lakehouse(str(lake))
        assert len(lh.read_batch(RAW, "claims_mar")) == 500
        assert lh.batches(FEATURES) == ["claims_mar"]
        assert len(server.graphql(RUNS)["runsOrError"]["results"]) == 1  # one file, one run
        assert time.monotonic() - started < 90
    finally:
        server.stop()
