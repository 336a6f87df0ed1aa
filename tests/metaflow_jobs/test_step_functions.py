"""FraudTrainingFlow deployed to AWS Step Functions + Batch, against a real moto server (with
execution off): the state machine's shape (retries, resources, image), what `make
deploy-training` prints, and the settings it refuses to go without. The execution itself runs
in tests/integration/test_step_functions_batch.py.
"""

import json

import boto3
import pytest

from fraud_assets.resources import StepFunctionsTraining
from fraud_assets.resources.training import STEP_FUNCTIONS_SETTINGS
from fraud_cli.main import main as fraud
from tests.support.aws_batch import create_training_infrastructure

pytestmark = pytest.mark.integration
BUCKET = "fraud-metaflow"
QUEUE = "fraud-training-queue"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-mlops:1.0"


@pytest.fixture(scope="module")
def batch_queue(moto_endpoint) -> dict[str, str]:
    return create_training_infrastructure(moto_endpoint, BUCKET, QUEUE)


@pytest.fixture
def aws(batch_queue, monkeypatch):
    for key, value in {**batch_queue, "METAFLOW_BATCH_CONTAINER_IMAGE": IMAGE}.items():
        monkeypatch.setenv(key, value)
    return boto3.client(
        "stepfunctions", endpoint_url=batch_queue["AWS_ENDPOINT_URL"], region_name="us-east-1"
    )


def _state(states: dict, name: str) -> dict:
    for key, state in states.items():
        if key == name:
            return state
        if state["Type"] == "Map":
            found = _state(state["Iterator"]["States"], name)
            if found:
                return found
    return {}


def test_deploy_creates_a_state_machine_shaped_like_the_flow(aws) -> None:
    training = StepFunctionsTraining(state_machine="fraud-training-test")
    assert training.deploy() == "fraud-training-test"
    (machine,) = [
        m for m in aws.list_state_machines()["stateMachines"] if m["name"] == "fraud-training-test"
    ]
    definition = json.loads(
        aws.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["definition"]
    )
    states = definition["States"]
    maps = [s for s in states.values() if s["Type"] == "Map"]
    assert len(maps) == 1 and "train" in maps[0]["Iterator"]["States"]  # the foreach
    batch = boto3.client("batch", endpoint_url=aws.meta.endpoint_url, region_name="us-east-1")
    for step in ("start", "train", "join", "evaluate", "register", "end"):
        task = _state(states, step)
        assert task["Resource"] == "arn:aws:states:::batch:submitJob.sync", step
        assert task["Parameters"]["JobQueue"] == QUEUE
        (definition,) = batch.describe_job_definitions(
            jobDefinitions=[task["Parameters"]["JobDefinition"]]
        )["jobDefinitions"]
        assert definition["containerProperties"]["image"] == IMAGE  # the deployment's image
    train = _state(states, "train")["Parameters"]
    assert train["RetryStrategy"] == {"Attempts": 3}  # @retry(times=2): 1 + 2 retries
    assert train["Timeout"] == {"AttemptDurationSeconds": 3600}  # @timeout(minutes=60)
    resources = {r["Type"]: r["Value"] for r in train["ContainerOverrides"]["ResourceRequirements"]}
    assert resources == {"VCPU": "1", "MEMORY": "4096"}  # @resources(cpu=1, memory=4096)
    assert _state(states, "join")["Parameters"]["RetryStrategy"] == {"Attempts": 1}


def test_prod_training_triggers_an_execution(aws) -> None:
    training = StepFunctionsTraining(state_machine="fraud-training-trigger")
    training.deploy()
    arn = next(
        m["stateMachineArn"]
        for m in aws.list_state_machines()["stateMachines"]
        if m["name"] == "fraud-training-trigger"
    )
    params = training.flow_parameters("s3://lake/fraud", ["b1", "b2"], seed=3, max_epochs=5)
    triggered = training.trigger(**params)
    assert triggered.pathspec.startswith("FraudTrainingFlow/sfn-")
    (execution,) = aws.list_executions(stateMachineArn=arn)["executions"]
    assert execution["status"] == "RUNNING"
    given = json.loads(aws.describe_execution(executionArn=execution["executionArn"])["input"])
    assert json.loads(given["Parameters"])["lakehouse_uri"] == "s3://lake/fraud"


def test_deploy_training_prints_the_image_and_the_code_package(aws, capsys) -> None:
    assert fraud(["deploy-training", "--state-machine", "fraud-training-printed"]) == 0
    out = capsys.readouterr().out
    assert "state machine fraud-training-printed deployed" in out
    assert f"image (METAFLOW_BATCH_CONTAINER_IMAGE): {IMAGE}" in out
    package = out.split("code package (files): ")[1]
    counts = dict(item.rsplit(" ", 1) for item in package.strip().split(", "))
    # The tasks run this commit's domain code and flow config, not the image's copy.
    assert int(counts["fraud_core"]) >= 20 and int(counts["metaflow_jobs"]) >= 4
    assert int(counts["metaflow"]) > 100  # Metaflow ships itself too


def test_missing_settings_are_named_and_exit_2(monkeypatch, capsys) -> None:
    for name in STEP_FUNCTIONS_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("METAFLOW_BATCH_JOB_QUEUE", QUEUE)
    with pytest.raises(Exception, match="METAFLOW_DATASTORE_SYSROOT_S3, METAFLOW_SFN_IAM_ROLE"):
        StepFunctionsTraining().deploy()
    assert fraud(["deploy-training"]) == 2
    missing = [n for n in STEP_FUNCTIONS_SETTINGS if n != "METAFLOW_BATCH_JOB_QUEUE"]
    err = capsys.readouterr().err
    assert "Step Functions training needs these variables set: " + ", ".join(missing) in err
    assert "METAFLOW_BATCH_CONTAINER_IMAGE" in err
