"""FraudTrainingFlow at production depth: retries, resume, and the wait logic of prod mode."""

import json
import shutil
import signal
from pathlib import Path

import dagster as dg
import pytest

from fraud_assets.assets.model import fraud_model
from fraud_assets.resources import LakehouseResource, MetaflowTraining
from fraud_assets.resources.step_functions import StepFunctionsExecution, failure_summary
from fraud_core.lakehouse import Lakehouse
from metaflow_jobs.settings import DEFAULT_CONFIG, FAIL_ALWAYS, FAIL_FIRST_ATTEMPT, parse_settings


@pytest.fixture
def lakehouse(champion_lakehouse, tmp_path) -> str:
    root = tmp_path / "lake"
    shutil.copytree(champion_lakehouse, root)
    return str(root)


@pytest.mark.slow
def test_a_failing_branch_succeeds_on_retry(lakehouse, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(FAIL_FIRST_ATTEMPT, "train")
    training = MetaflowTraining(datastore_root=str(tmp_path / "mf"))
    run = training.train(lakehouse, [], seed=1, max_epochs=2)
    assert [c["attempt"] for c in run.candidates] == [1, 1]  # each branch: 2nd attempt won
    from metaflow import Run

    tasks = list(Run(run.pathspec)["train"].tasks())
    assert len(tasks) == 2
    assert all(t.current_attempt == 1 and t.successful for t in tasks)
    assert Lakehouse(lakehouse).exists(f"models/{run.model_version}/manifest.json")
    # the default config distills: start tuned the LightGBM baseline and scored the training
    # rows out of fold (the branches' soft targets); evaluate reported that same baseline
    flow = Run(run.pathspec)
    start = flow["start"].task.data
    teacher = start.teacher
    assert len(teacher.claim_id) == flow.data.split_summary["train"]["rows"]
    folds = parse_settings(Path(DEFAULT_CONFIG).read_text())["training"]["teacher_folds"]
    assert len(set(teacher.claim_id)) == len(teacher.claim_id) and teacher.folds == folds
    assert ((teacher.probability >= 0) & (teacher.probability <= 1)).all()
    assert flow.data.lightgbm_baseline == start.tuned_lightgbm.describe()


@pytest.mark.slow
def test_a_failed_run_resumes_from_dagster_without_retraining(
    lakehouse, tmp_path, monkeypatch
) -> None:
    resources = {
        "lakehouse": LakehouseResource(uri=lakehouse),
        "training": MetaflowTraining(datastore_root=str(tmp_path / "mf")),
    }
    monkeypatch.setenv(FAIL_ALWAYS, "register")
    failed = dg.materialize(
        [fraud_model],
        resources=resources,
        run_config={"ops": {"fraud_model": {"config": {"max_epochs": 2}}}},
        raise_on_error=False,
    )
    assert not failed.success
    failure = failed.failure_data_for_node("fraud_model").user_failure_data
    origin = failure.metadata["metaflow_run_id"].value
    assert f"resume_from={origin}" in failure.description
    monkeypatch.delenv(FAIL_ALWAYS)
    resumed = dg.materialize(
        [fraud_model],
        resources=resources,
        run_config={"ops": {"fraud_model": {"config": {"resume_from": origin}}}},
    )
    assert resumed.success
    pathspec = (
        resumed.asset_materializations_for_node("fraud_model")[0].metadata["metaflow_run"].value
    )
    assert pathspec != f"FraudTrainingFlow/{origin}"
    from metaflow import Run

    run = Run(pathspec)
    # The branches were cloned from the failed run, not trained again; register really ran.
    for task in run["train"].tasks():
        assert task.origin_pathspec and task.origin_pathspec.startswith(
            f"FraudTrainingFlow/{origin}/train/"
        )
    assert run["register"].task.origin_pathspec is None
    assert run.data.bundle_uri.endswith(run.data.model_version)


@pytest.mark.slow
def test_without_distillation_start_fits_no_teacher(lakehouse, tmp_path) -> None:
    """``training.distill_weight`` 0: no teacher, and ``evaluate`` tunes the LightGBM baseline
    itself (here over a smaller grid)."""
    from metaflow import Run

    from metaflow_jobs.settings import DEFAULT_CONFIG

    config = json.loads(Path(DEFAULT_CONFIG).read_text())
    config["training"]["distill_weight"] = 0.0
    config["lightgbm"]["search"] = {"num_leaves": [7, 15]}
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(config))
    training = MetaflowTraining(datastore_root=str(tmp_path / "mf"), config_file=str(path))
    run = Run(training.train(lakehouse, [], seed=1, max_epochs=2).pathspec)
    start = run["start"].task.data
    assert start.teacher is None and start.tuned_lightgbm is None
    assert len(run.data.lightgbm_baseline["candidates"]) == 2
    assert all(c["epochs_run"] >= 1 for c in run.data.candidates)


class _Client:
    """Answers describe_execution with the given statuses, one per call, and an empty history
    (the shape of boto3's Step Functions client for what StepFunctionsExecution reads)."""

    def __init__(self, statuses: list[str]) -> None:
        self.statuses, self.stopped = statuses, []

    def describe_execution(self, executionArn: str) -> dict:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"executionArn": executionArn, "status": status}

    def get_paginator(self, name: str):
        return self

    def paginate(self, **kwargs):
        return [{"events": []}]

    def stop_execution(self, **kwargs) -> None:
        self.stopped.append(kwargs)


ARN = "arn:aws:states:eu-west-1:123456789012:execution:FraudTrainingFlow:abc"


def test_wait_polls_until_the_execution_ends() -> None:
    slept: list[float] = []
    execution = StepFunctionsExecution(ARN, _Client(["RUNNING", "RUNNING", "FAILED"]))
    assert execution.wait(timeout=100, poll=5, sleep=slept.append)["status"] == "FAILED"
    assert slept == [5, 5]
    assert execution.console_url.startswith("https://eu-west-1.console.aws.amazon.com/states/")
    assert execution.console_url.endswith(ARN)


def test_wait_times_out_and_leaves_stopping_to_the_caller() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    client = _Client(["RUNNING"])
    execution = StepFunctionsExecution(ARN, client)
    with pytest.raises(TimeoutError, match=f"{ARN} still running after 60 s"):
        execution.wait(timeout=60, poll=10, sleep=sleep, clock=lambda: now[0])
    assert client.stopped == []
    execution.stop("given up")
    assert client.stopped == [
        {"executionArn": ARN, "error": "Fraud.TrainingCancelled", "cause": "given up"}
    ]


def test_a_failed_batch_job_is_summarised() -> None:
    cause = json.dumps(  # as Step Functions gives a failed batch:submitJob.sync task's job
        {
            "JobId": "j-1",
            "JobName": "SFN-FraudTrainingFlow--register--",
            "Status": "FAILED",
            "StatusReason": "Essential container in task exited",
            "Container": {"ExitCode": 1},
            "Attempts": [{}],
        }
    )
    described = {"status": "FAILED", "error": "States.TaskFailed", "cause": cause}
    assert failure_summary(described) == (
        "FAILED: States.TaskFailed: Batch job SFN-FraudTrainingFlow--register-- FAILED: "
        "Essential container in task exited, exit code 1, 1 attempt(s)"
    )
    assert failure_summary({"status": "ABORTED", "cause": "x" * 900}).endswith("...")


def test_a_metaflow_runner_does_not_take_over_interrupts() -> None:
    """Metaflow's subprocess manager replaces SIGINT's handler (and swallows the signal); the
    Training resources keep the caller's, so a terminated Dagster run reaches the step."""
    from metaflow import Runner

    from fraud_assets.resources.training import FLOW_FILE, keep_interrupt_handlers

    def mine(signum, frame) -> None:  # stands for Dagster's interrupt handler
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, mine)
    try:
        with keep_interrupt_handlers():
            Runner(FLOW_FILE)
        assert signal.getsignal(signal.SIGINT) is mine
        Runner(FLOW_FILE)  # what the guard is for: without it, Metaflow's handler stays
        assert signal.getsignal(signal.SIGINT) is not mine
    finally:
        signal.signal(signal.SIGINT, previous)
