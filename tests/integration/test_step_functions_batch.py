"""FraudTrainingFlow on AWS Step Functions + Batch, executed on this machine.

moto's server runs the state machine (execution on) and every Batch job as a Docker container
of the project's image, on the host network; the S3 datastore and the lakehouse are on that
moto. moto 5.2.5's gaps are filled by tests/support/moto_sfn.py (nothing in the project is
bent to it). The state machines are deployed with `make deploy-training`, the project's own
command, and the `fraud_model` asset runs through the Definitions with
FRAUD_TRAINING=step-functions.

Metadata: there is no Metaflow metadata service here, so Metaflow keeps metadata locally and
the tasks upload theirs into the S3 datastore; the Training resource brings it back after the
execution (what Metaflow's own `batch` command does for one task). With METAFLOW_SERVICE_URL
set, that step does nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
import s3fs

from fraud_assets.assets.model import champion_model, fraud_model
from fraud_assets.checks import model_gate
from fraud_assets.definitions import build_definitions
from fraud_cli.servers import background_server, dagster_dev, free_port
from fraud_core.lakehouse import Lakehouse
from tests.support.aws_batch import REGION, create_training_infrastructure
from tests.support.containers import DockerEngine

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BUCKET, QUEUE, LAKE = "fraud-metaflow", "fraud-training", "s3://fraud-lake/fraud"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
# Small and quick, but the real flow: two grid points (a Map of two train branches).
TRAINING_CONFIG = {
    "search": {"hidden": [[32], [64, 32]], "dropout": [0.1], "lr": [0.003], "batch_size": [1024]},
    "training": {"max_epochs": 6, "patience": 3, "weight_decay": 1e-05, "embedding_dim": 4},
    "split": {"val_fraction": 0.15, "test_fraction": 0.15},
    "decision": {"investigation_cost": 150.0, "precision_k": 100},
    "max_workers": 2,
    "lightgbm": {"params": {"learning_rate": 0.1, "num_leaves": 15, "num_boost_round": 200}},
}
# Against no champion: the gate's absolute conditions decide.
GATE = {"fraud_model_model_gate": {"config": {"max_ap_drop": 1.0}}}


@pytest.fixture(scope="module")
def aws(
    docker: DockerEngine,
    project_image: str,
    champion_lakehouse: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """moto executing state machines with Batch jobs in Docker; the Metaflow deployment's
    settings, an S3 lakehouse with the fixture's labelled features (no champion), all set in
    this process' environment for the module."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    work = tmp_path_factory.mktemp("sfn")
    config = work / "training.json"
    config.write_text(json.dumps(TRAINING_CONFIG))
    server_env = {
        **FAKE_AWS,
        "MOTO_PORT": str(port),  # moto's interpreter calls http://localhost:$MOTO_PORT
        "MOTO_DOCKER_NETWORK_MODE": "host",
        "DOCKER_HOST": docker.host,
    }
    command = [sys.executable, "-m", "tests.support.moto_server", "-H", "127.0.0.1"]
    command += ["-p", str(port), "--execute"]
    with (
        background_server(command, port, env=server_env, cwd=ROOT),
        pytest.MonkeyPatch.context() as mp,
    ):
        for key, value in FAKE_AWS.items():
            mp.setenv(key, value)
        settings = create_training_infrastructure(endpoint, BUCKET, QUEUE)
        settings |= {
            "METAFLOW_BATCH_CONTAINER_IMAGE": project_image,
            "METAFLOW_DEFAULT_METADATA": "local",
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(work),
            "FRAUD_TRAINING_CONFIG": str(config),
            "LAKEHOUSE_URI": LAKE,
            "DUCKDB_PATH": str(work / "w.duckdb"),
        }
        for key, value in settings.items():
            mp.setenv(key, value)
        # s3fs keeps its filesystems per process; one made by an earlier test points at that
        # test's moto (AWS_ENDPOINT_URL is read when a filesystem is made).
        s3fs.S3FileSystem.clear_instance_cache()
        boto3.client("s3").create_bucket(Bucket=LAKE.split("/")[2])
        source, lake = Lakehouse(str(champion_lakehouse)), Lakehouse(LAKE)
        for dataset in ("raw", "features"):
            for rel in source.find(dataset):
                lake.write_bytes(f"{dataset}/{rel}", source.read_bytes(f"{dataset}/{rel}"))
        yield {**settings, **FAKE_AWS, "ENDPOINT": endpoint}
        s3fs.S3FileSystem.clear_instance_cache()


def deploy(name: str, **env: str) -> str:
    """`make deploy-training` (Metaflow's Step Functions deployer) for state machine ``name``."""
    started = time.monotonic()
    done = subprocess.run(
        ["make", "--no-print-directory", "deploy-training"],
        cwd=ROOT,
        env={**os.environ, "FRAUD_STATE_MACHINE": name, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"deployed {name} in {time.monotonic() - started:.1f} s:\n{done.stdout}")
    return done.stdout


@pytest.fixture(scope="module")
def retry_machine(aws: dict[str, str]) -> str:
    """A state machine deployed with FRAUD_FLOW_FAIL_FIRST_ATTEMPT=train: every train branch
    fails its first attempt in its container."""
    printed = deploy("fraud-training-retry", FRAUD_FLOW_FAIL_FIRST_ATTEMPT="train")
    image = aws["METAFLOW_BATCH_CONTAINER_IMAGE"]
    assert f"image (METAFLOW_BATCH_CONTAINER_IMAGE): {image}" in printed
    assert "fraud_core" in printed.split("code package (files): ")[1]
    return "fraud-training-retry"


@pytest.fixture(scope="module")
def failing_run(aws: dict[str, str]) -> Iterator[Future[dg.ExecuteInProcessResult]]:
    """fraud_model on a state machine deployed with FRAUD_FLOW_FAIL=register, started in the
    background: it runs side by side with the successful execution (the suite's time)."""
    deploy("fraud-training-fail", FRAUD_FLOW_FAIL="register")
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(materialize, "fraud-training-fail")


def materialize(state_machine: str, **run_config: Any) -> dg.ExecuteInProcessResult:
    """fraud_model (+ its gate and champion_model) through the Definitions, in prod mode's
    training (FRAUD_TRAINING=step-functions), following the execution every 2 s."""
    env = {**os.environ, "FRAUD_TRAINING": "step-functions", "FRAUD_STATE_MACHINE": state_machine}
    resources = build_definitions(env).resources
    training = resources["training"].model_copy(update={"poll_seconds": 2})
    return dg.materialize(
        [fraud_model, champion_model, model_gate],
        resources={**resources, "training": training},
        run_config={"ops": {**GATE, **run_config}},
        raise_on_error=False,
    )


def execution(aws: dict[str, str], arn: str) -> dict[str, Any]:
    client = boto3.client("stepfunctions")
    described = client.describe_execution(executionArn=arn)
    events = client.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    described["entered"] = [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]
    return described


def batch_jobs(execution_arn: str) -> dict[str, list[dict[str, Any]]]:
    """The Batch jobs of one execution (their METAFLOW_RUN_ID is its name), by Metaflow step
    (job names are ``SFN-FraudTrainingFlow--<step>--``)."""
    batch = boto3.client("batch")
    ids = [
        job["jobId"]
        for status in ("SUCCEEDED", "FAILED", "RUNNING", "STARTING", "RUNNABLE", "PENDING")
        for job in batch.list_jobs(jobQueue=QUEUE, jobStatus=status)["jobSummaryList"]
    ]
    name = execution_arn.split(":")[-1]
    by_step: dict[str, list[dict[str, Any]]] = {}
    for job in batch.describe_jobs(jobs=ids)["jobs"] if ids else []:
        env = {e["name"]: e["value"] for e in job.get("container", {}).get("environment", [])}
        if env.get("METAFLOW_RUN_ID") == name:
            by_step.setdefault(job["jobName"].split("--")[1], []).append(job)
    return by_step


def test_training_runs_on_batch_retries_each_branch_and_promotes(
    aws: dict[str, str], retry_machine: str, failing_run: Future[dg.ExecuteInProcessResult]
) -> None:
    # failing_run is requested here only to start it first: both executions run at once.
    started = time.monotonic()
    result = materialize(retry_machine)
    print(f"fraud_model + gate + champion_model in {time.monotonic() - started:.1f} s")
    assert result.success, _failure(result)
    meta = result.asset_materializations_for_node("fraud_model")[0].metadata
    arn, pathspec = meta["step_functions_execution"].value, meta["metaflow_run"].value
    assert "console.aws.amazon.com/states" in meta["step_functions_console"].value

    described = execution(aws, arn)
    assert described["status"] == "SUCCEEDED"
    run_id = pathspec.split("/")[1]
    assert run_id == "sfn-" + arn.split(":")[-1]
    # start, the foreach as a Map with two train branches, join, evaluate, register, end
    assert described["entered"].count("train") == 2
    for step in ("start", "join", "evaluate", "register", "end"):
        assert described["entered"].count(step) == 1, step
    # Every step a Batch job run as a container; each train branch failed once and its retry
    # (Batch's retry strategy, from @retry) succeeded.
    jobs = batch_jobs(arn)
    attempts = {step: [len(j["attempts"]) for j in js] for step, js in jobs.items()}
    print("Batch jobs (attempts):", attempts, _durations(jobs))
    assert attempts == {
        "start": [1], "train": [2, 2], "join": [1], "evaluate": [1], "register": [1], "end": [1]
    }  # fmt: skip
    assert all(j["status"] == "SUCCEEDED" for js in jobs.values() for j in js)
    for job in jobs["train"]:
        first, retry = job["attempts"]
        assert first["container"]["exitCode"] != 0 and retry["container"]["exitCode"] == 0

    from metaflow import Run

    run = Run(pathspec, _namespace_check=False)  # read back from the S3 datastore
    assert run.successful
    tasks = list(run["train"].tasks())
    assert len(tasks) == 2 and all(t.successful and t.current_attempt == 1 for t in tasks)
    assert [c["attempt"] for c in run.data.candidates] == [1, 1]
    origin = run["start"].task.data.code_origin
    assert all("/.mf_code/" in path for path in origin.values()), origin  # the code package's
    lake = Lakehouse(LAKE)
    version = run.data.model_version
    assert lake.exists(f"models/{version}/manifest.json")
    gate = result.get_asset_check_evaluations()[0]
    assert gate.passed, gate.description
    champion = lake.champion()
    assert champion is not None and champion["version"] == version
    assert champion["metaflow_run"] == pathspec


def _durations(jobs: dict[str, list[dict[str, Any]]]) -> str:
    """Seconds each container attempt ran, per step (for the timings in the notes)."""
    return ", ".join(
        f"{step} "
        + "/".join(f"{(a['stoppedAt'] - a['startedAt']) / 1000:.1f}" for a in j["attempts"])
        for step, js in jobs.items()
        for j in js
    )


def _failure(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_failure]
    return "\n".join(str(e.event_specific_data) for e in failures)[-4000:]


def test_a_failed_execution_fails_the_asset_and_resumes_locally(
    aws: dict[str, str], failing_run: Future[dg.ExecuteInProcessResult]
) -> None:
    """Step Functions cannot restart an execution: the failed run is resumed with Metaflow's
    local runtime against the same S3 datastore (the finished branches are reused)."""
    result = failing_run.result(timeout=1200)
    assert not result.success
    failure = result.failure_data_for_node("fraud_model").user_failure_data
    text = failure.description
    arn, run_id = failure.metadata["execution_arn"].value, failure.metadata["metaflow_run_id"].value
    print("failure:", text)
    assert (
        f"training execution {arn} ended FAILED: States.TaskFailed: Batch job "
        "SFN-FraudTrainingFlow--register-- FAILED: Essential container in task exited, exit code 1"
    ) in text
    assert "step register failed" in text and "injected failure: register" in text  # its stderr
    assert "console.aws.amazon.com/states" in text and f"resume_from={run_id}" in text
    assert execution(aws, arn)["status"] == "FAILED"
    assert not Lakehouse(LAKE).exists(f"models/fm-{run_id}")  # nothing was registered
    assert result.get_asset_check_evaluations() == []  # nor gated, nor promoted

    env = {**os.environ, "FRAUD_TRAINING": "local"}  # METAFLOW_DEFAULT_DATASTORE=s3 is set
    resources = build_definitions(env).resources
    assert resources["training"].datastore == "s3"
    started = time.monotonic()
    resumed = dg.materialize(
        [fraud_model],
        resources=resources,
        run_config={"ops": {"fraud_model": {"config": {"resume_from": run_id}}}},
    )
    print(f"local resume of {run_id}: {time.monotonic() - started:.1f} s")
    assert resumed.success
    meta = resumed.asset_materializations_for_node("fraud_model")[0].metadata
    from metaflow import Run

    run = Run(meta["metaflow_run"].value, _namespace_check=False)
    for task in run["train"].tasks():  # cloned from the Batch branches, not trained again
        assert task.origin_pathspec.startswith(f"FraudTrainingFlow/{run_id}/train/")
    assert run["register"].task.origin_pathspec is None  # register ran again, here
    assert Lakehouse(LAKE).exists(f"models/{run.data.model_version}/manifest.json")


def test_terminating_the_dagster_run_stops_the_execution(
    aws: dict[str, str], retry_machine: str, tmp_path: Path
) -> None:
    """`dagster dev` (webserver + daemon) runs fraud_model; terminating the run aborts the
    Step Functions execution and its running Batch job."""
    from dagster_graphql import DagsterGraphQLClient

    client = boto3.client("stepfunctions")
    machine = next(
        m["stateMachineArn"]
        for m in client.list_state_machines()["stateMachines"]
        if m["name"] == retry_machine
    )
    before = {
        e["executionArn"] for e in client.list_executions(stateMachineArn=machine)["executions"]
    }
    env = {"FRAUD_TRAINING": "step-functions", "FRAUD_STATE_MACHINE": retry_machine}
    with dagster_dev(tmp_path / "dagster_home", env) as server:
        port = int(server.url.rsplit(":", 1)[1])
        graphql = DagsterGraphQLClient("127.0.0.1", port_number=port)
        run_id = graphql.submit_job_execution(
            "__ASSET_JOB", asset_selection=[dg.AssetKey("fraud_model")]
        )

        def running_job() -> dict[str, Any] | None:
            new = [
                e
                for e in client.list_executions(stateMachineArn=machine)["executions"]
                if e["executionArn"] not in before
            ]
            if not new:
                return None
            jobs = batch_jobs(new[0]["executionArn"])
            live = [j for js in jobs.values() for j in js if j["status"] == "RUNNING"]
            return {"arn": new[0]["executionArn"], "job": live[0]} if live else None

        found = server.wait_until("a Batch job of the execution running", running_job, 300, 1)
        graphql.terminate_run(run_id)
        status = server.wait_until(
            "the run to be canceled",
            lambda: (s := graphql.get_run_status(run_id).value) in ("CANCELED", "FAILURE") and s,
            120,
        )
        assert status == "CANCELED"
    described = client.describe_execution(executionArn=found["arn"])
    assert described["status"] == "ABORTED"
    assert "the Dagster step following it ended" in described.get("cause", "")
    deadline = time.monotonic() + 60
    while (job := _job(found["job"]["jobId"]))["status"] not in ("FAILED", "SUCCEEDED"):
        assert time.monotonic() < deadline, f"Batch job still {job['status']}"
        time.sleep(1)
    assert job["status"] == "FAILED"  # terminated with the execution, not left to finish


def _job(job_id: str) -> dict[str, Any]:
    (job,) = boto3.client("batch").describe_jobs(jobs=[job_id])["jobs"]
    return job
