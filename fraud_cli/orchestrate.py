"""Materialize the asset graph in-process, the way the sensor and jobs do under ``dagster dev``.

Used by ``fraud demo`` and ``fraud materialize`` (the Jenkins stage): the same Definitions,
sensor and jobs, recorded into the Dagster instance of ``DAGSTER_HOME``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from fraud_assets.definitions import build_definitions
from fraud_assets.partitions import landing_batches

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
CURSOR_FILE = "landing_cursor.json"


def ensure_dagster_home(path: str) -> str:
    """Create DAGSTER_HOME with a config (telemetry off) and point this process at it."""
    os.makedirs(path, exist_ok=True)
    config = os.path.join(path, "dagster.yaml")
    if not os.path.exists(config):
        with open(config, "w") as fh:
            fh.write("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = path
    return path


@dataclass
class Orchestrator:
    """Runs the graph's jobs in this process against one Dagster instance."""

    env: Mapping[str, str]
    on_step: Callable[[str], None] = lambda _label: None
    defs: dg.Definitions = field(init=False)
    instance: dg.DagsterInstance = field(init=False)

    def __post_init__(self) -> None:
        self.defs = build_definitions(self.env)
        self.instance = dg.DagsterInstance.get()

    def ingest_new_files(self) -> list[str]:
        """Evaluate the landing sensor once; run ingestion for every file it reports."""
        cursor_path = os.path.join(self.instance.root_directory, CURSOR_FILE)
        cursor = Path(cursor_path).read_text() if os.path.exists(cursor_path) else None
        sensor = self.defs.resolve_sensor_def("landing_sensor")
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=cursor,
            resources={"landing": self.defs.resources["landing"]},
        )
        result = sensor(context)
        if isinstance(result, dg.SkipReason):
            return []
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        job = self.defs.resolve_job_def("ingest_batch")
        done = []
        for run in result.run_requests:
            self.on_step(f"ingest {run.partition_key}")
            outcome = job.execute_in_process(
                instance=self.instance,
                partition_key=run.partition_key,
                run_config=QUIET,
                # The sensor's own tags: once the sensor is switched on in the UI, Dagster
                # knows these files were ingested already and does not launch them again.
                tags={
                    "dagster/run_key": run.run_key or "",
                    "dagster/sensor_name": "landing_sensor",
                    "source": "fraud cli",
                },
                raise_on_error=False,
            )
            if not outcome.success:
                raise RuntimeError(
                    f"ingest of {run.partition_key} failed (run {outcome.run_id}); "
                    "`make ui` shows its logs"
                )
            done.append(str(run.partition_key))
        if result.cursor is not None:
            Path(cursor_path).write_text(result.cursor)
        return done

    def train(self, seed: int = 0, max_epochs: int = 0) -> dict[str, Any]:
        """Train a candidate and promote it if the model gate passes."""
        self.on_step("train (Metaflow)")
        run_config = {
            **QUIET,
            "ops": {"fraud_model": {"config": {"seed": seed, "max_epochs": max_epochs}}},
        }
        result = self.defs.resolve_job_def("train_model").execute_in_process(
            instance=self.instance, run_config=run_config, raise_on_error=False
        )
        gate = [e for e in result.get_asset_check_evaluations() if e.check_name == "model_gate"]
        if not result.success and not (gate and not gate[0].passed):
            raise RuntimeError(f"training failed (run {result.run_id}); `make ui` shows its logs")
        return {
            "run_id": result.run_id,
            "gate_passed": bool(gate and gate[0].passed),
            "gate_description": gate[0].description if gate else "",
        }

    def retrain_on_drift(self, seed: int = 0, max_epochs: int = 0) -> dict[str, Any] | None:
        """Evaluate the drift sensor once; when it asks for a retraining, run it.

        Returns None when drift did not persist, else the training outcome with the drifting
        batches that triggered it.
        """
        sensor = self.defs.resolve_sensor_def("drift_retraining_sensor")
        context = dg.build_sensor_context(
            instance=self.instance, resources={"lakehouse": self.defs.resources["lakehouse"]}
        )
        request = sensor(context)
        if not isinstance(request, dg.RunRequest):
            return None
        self.on_step("retrain (drift)")
        outcome = self.train(seed=seed, max_epochs=max_epochs)
        return {**outcome, "drifting_batches": request.tags.get("fraud/drifting_batches", "")}

    def score(self, batch_ids: list[str]) -> None:
        job = self.defs.resolve_job_def("score_batch")
        for batch_id in batch_ids:
            self.on_step(f"score {batch_id}")
            job.execute_in_process(instance=self.instance, partition_key=batch_id, run_config=QUIET)

    def report(self) -> None:
        self.on_step("metrics + warehouse")
        self.defs.resolve_job_def("report_metrics").execute_in_process(
            instance=self.instance, run_config=QUIET
        )

    def batches(self) -> list[str]:
        return list(self.instance.get_dynamic_partitions(landing_batches.name))
