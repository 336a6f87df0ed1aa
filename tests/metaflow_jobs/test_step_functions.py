"""FraudTrainingFlow deployed to AWS Step Functions + Batch, against a real moto server.

moto cannot execute Batch jobs, so an execution never completes: these tests prove the
deployment (state machine shape, retries, resources) and that the prod-mode Training resource
starts an execution. The waiting logic is tested in test_training.py.
"""

import json

import boto3
import pytest

from fraud_assets.resources import StepFunctionsTraining
from fraud_assets.resources.training import STEP_FUNCTIONS_SETTINGS

pytestmark = pytest.mark.integration
BUCKET = "fraud-metaflow"
QUEUE = "fraud-training-queue"


def _batch_queue(endpoint: str) -> None:
    """A bucket and a Batch job queue on a MANAGED EC2 compute environment (moto needs one)."""
    kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    boto3.client("s3", **kw).create_bucket(Bucket=BUCKET)
    ec2 = boto3.client("ec2", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="batch", Description="batch", VpcId=vpc)
    iam = boto3.client("iam", **kw)
    role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    iam.create_instance_profile(InstanceProfileName="ecs-instance")
    profile = iam.get_instance_profile(InstanceProfileName="ecs-instance")["InstanceProfile"]
    batch = boto3.client("batch", **kw)
    environment = batch.create_compute_environment(
        computeEnvironmentName="fraud-training",
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "EC2",
            "minvCpus": 0,
            "maxvCpus": 16,
            "instanceTypes": ["optimal"],
            "subnets": [subnet],
            "securityGroupIds": [group["GroupId"]],
            "instanceRole": profile["Arn"],
        },
        serviceRole=role,
    )
    batch.create_job_queue(
        jobQueueName=QUEUE,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
        ],
    )


@pytest.fixture(scope="module")
def batch_queue(moto_endpoint) -> str:
    _batch_queue(moto_endpoint)
    return moto_endpoint


@pytest.fixture
def aws(batch_queue, monkeypatch):
    moto_endpoint = batch_queue
    settings = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{BUCKET}/metaflow",
        "METAFLOW_SFN_IAM_ROLE": "arn:aws:iam::123456789012:role/fraud-sfn",
        "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": "arn:aws:iam::123456789012:role/fraud-batch",
        "METAFLOW_BATCH_JOB_QUEUE": QUEUE,
        "METAFLOW_SFN_DYNAMO_DB_TABLE": "fraud-sfn-state",
        "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": "arn:aws:iam::123456789012:role/fraud-events",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return boto3.client("stepfunctions", endpoint_url=moto_endpoint, region_name="us-east-1")


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
    for step in ("start", "train", "join", "evaluate", "register", "end"):
        task = _state(states, step)
        assert task["Resource"] == "arn:aws:states:::batch:submitJob.sync", step
        assert task["Parameters"]["JobQueue"] == QUEUE
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


def test_missing_settings_are_named(monkeypatch) -> None:
    for name in STEP_FUNCTIONS_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("METAFLOW_BATCH_JOB_QUEUE", QUEUE)
    with pytest.raises(Exception, match="METAFLOW_DATASTORE_SYSROOT_S3, METAFLOW_SFN_IAM_ROLE"):
        StepFunctionsTraining().deploy()
