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
from fraud_assets.sensors import FILE_TAG, PARTITIONS
from fraud_core.layout import SCORES

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
CURSOR_FILE = "landing_cursor.json"
SENSOR = "landing_sensor"


def ensure_dagster_home(path: str) -> str:
    """Create DAGSTER_HOME with a config (telemetry off) and point this process at it."""
    os.makedirs(path, exist_ok=True)
    config = os.path.join(path, "dagster.yaml")
    if not os.path.exists(config):
        with open(config, "w") as fh:
            fh.write("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = path
    return path


@dataclass(frozen=True)
class FailedBatch:
    """A landing file whose ingestion run failed: recorded in the instance, never retried by
    the sensor (its run key is taken); a fixed file is a new version and is ingested."""

    batch_id: str
    file: str
    run_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.batch_id} ({self.file}, run {self.run_id}): {self.reason}"


@dataclass(frozen=True)
class Ingestion:
    """What one evaluation of the landing sensor led to."""

    ingested: list[str] = field(default_factory=list)
    failed: list[FailedBatch] = field(default_factory=list)

    def __add__(self, other: Ingestion) -> Ingestion:
        return Ingestion(self.ingested + other.ingested, self.failed + other.failed)

    def failure_report(self) -> str:
        """The failed files, a line each, for the end of a command ('' when none failed)."""
        if not self.failed:
            return ""
        lines = [f"{len(self.failed)} landing file(s) failed to ingest (`make ui` shows the runs):"]
        return "\n".join(lines + [f"  - {failed}" for failed in self.failed])


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """Why a run failed, in one line: its failed blocking checks, else its first step error."""
    checks = [
        f"{c.check_name}: {c.description}"
        for c in result.get_asset_check_evaluations()
        if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
    ]
    if checks:
        return "; ".join(checks)
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            return event.step_failure_data.error.message.strip().splitlines()[0]
    return "the run failed"


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

    def ingest_new_files(self) -> Ingestion:
        """Evaluate the landing sensor once; run ingestion for every file it reports.

        As under the daemon: a run key already used by a run of the sensor is not launched
        again (so a lost cursor never ingests a file twice), and a failed file does not hold
        back the others; the cursor moves past it. Failures are returned, with their reasons.
        """
        cursor_path = os.path.join(self.instance.root_directory, CURSOR_FILE)
        cursor = Path(cursor_path).read_text() if os.path.exists(cursor_path) else None
        sensor = self.defs.resolve_sensor_def(SENSOR)
        context = dg.build_sensor_context(
            instance=self.instance, cursor=cursor, resources={"landing": self._resource("landing")}
        )
        result = sensor(context)
        if not isinstance(result, dg.SensorResult):  # a SkipReason: no new file
            return Ingestion()
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        job = self.defs.resolve_job_def("ingest_batch")
        outcome = Ingestion()
        for run in result.run_requests or []:
            if run.run_key and self._launched(run.run_key):
                continue
            self.on_step(f"ingest {run.partition_key}")
            executed = job.execute_in_process(
                instance=self.instance,
                partition_key=run.partition_key,
                run_config=QUIET,
                # The sensor's own tags: once the sensor is switched on in the UI, Dagster
                # knows these files were ingested already and does not launch them again.
                tags={
                    **run.tags,
                    "dagster/run_key": run.run_key or "",
                    "dagster/sensor_name": SENSOR,
                    "source": "fraud cli",
                },
                raise_on_error=False,
            )
            if executed.success:
                outcome.ingested.append(str(run.partition_key))
            else:
                file = run.tags.get(FILE_TAG, str(run.partition_key))
                reason = failure_reason(executed)
                outcome.failed.append(
                    FailedBatch(str(run.partition_key), file, executed.run_id, reason)
                )
        if result.cursor is not None:
            Path(cursor_path).write_text(result.cursor)
        return outcome

    def _launched(self, run_key: str) -> bool:
        """Whether a run of the landing sensor already has this run key (Dagster's rule)."""
        tags = {"dagster/run_key": run_key, "dagster/sensor_name": SENSOR}
        return bool(self.instance.get_run_ids(dg.RunsFilter(tags=tags), limit=1))

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
            instance=self.instance, resources={"lakehouse": self._resource("lakehouse")}
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

    def scored_batches(self) -> list[str]:
        """The batches with scores in the lakehouse (none before a champion scored one)."""
        return list(self._resource("lakehouse").get().batches(SCORES))

    def batches(self) -> list[str]:
        return list(self.instance.get_dynamic_partitions(PARTITIONS))

    def _resource(self, name: str) -> Any:
        """One of the Definitions' resources (the sensors are evaluated with it)."""
        return (self.defs.resources or {})[name]
