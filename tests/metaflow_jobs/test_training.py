"""FraudTrainingFlow at production depth: retries, resume, and the wait logic of prod mode."""

import shutil

import dagster as dg
import pytest

from fraud_assets.assets.model import fraud_model
from fraud_assets.resources import LakehouseResource, MetaflowTraining
from fraud_assets.resources.training import wait_for_completion
from fraud_core.lakehouse import Lakehouse
from metaflow_jobs.fraud_training_flow import FAIL_ALWAYS, FAIL_FIRST_ATTEMPT


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


class _FakeRun:
    def __init__(self, finished: bool, successful: bool) -> None:
        self.finished, self.successful = finished, successful
        self.pathspec = "FraudTrainingFlow/sfn-123"


def test_wait_for_completion_polls_until_finished() -> None:
    states = [None, _FakeRun(False, False), _FakeRun(True, True)]
    slept: list[float] = []
    run = wait_for_completion(lambda: states.pop(0), timeout=100, poll=5, sleep=slept.append)
    assert run.successful and slept == [5, 5]


def test_wait_for_completion_reports_a_failed_run() -> None:
    with pytest.raises(dg.Failure, match="FraudTrainingFlow/sfn-123 failed.*resume_from=sfn-123"):
        wait_for_completion(
            lambda: _FakeRun(True, False), timeout=100, poll=1, sleep=lambda s: None
        )


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (None, "has not started"),
        (_FakeRun(False, False), "FraudTrainingFlow/sfn-123 is still running"),
    ],
)
def test_wait_for_completion_times_out(run, message) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(TimeoutError, match=f"training run {message} after 60 s"):
        wait_for_completion(lambda: run, timeout=60, poll=10, sleep=sleep, clock=lambda: now[0])
