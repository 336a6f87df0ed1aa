"""What a Metaflow AWS deployment provides, created in moto: the S3 datastore bucket, a Batch
job queue on a MANAGED EC2 compute environment (moto needs one: an unmanaged one fails with
KeyError 'computeResources'), the DynamoDB table of foreach state, and the settings that name
them (the STEP_FUNCTIONS_SETTINGS of fraud_assets.resources.training)."""

from __future__ import annotations

import boto3

REGION = "us-east-1"
ACCOUNT_ROLE = "arn:aws:iam::123456789012:role/"


def create_training_infrastructure(
    endpoint: str, bucket: str, queue: str, table: str = "fraud-sfn-state"
) -> dict[str, str]:
    """Create the bucket, table and queue on moto at ``endpoint``; returns Metaflow's settings
    for them (without the image, which the caller chooses)."""
    kw = {"endpoint_url": endpoint, "region_name": REGION}
    boto3.client("s3", **kw).create_bucket(Bucket=bucket)
    # Metaflow's Step Functions foreach keeps its cardinality under the hash key "pathspec".
    boto3.client("dynamodb", **kw).create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pathspec", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pathspec", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ec2 = boto3.client("ec2", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{queue}-sg", Description="batch", VpcId=vpc)
    iam = boto3.client("iam", **kw)
    role = iam.create_role(RoleName=f"{queue}-service", AssumeRolePolicyDocument="{}")["Role"]
    iam.create_instance_profile(InstanceProfileName=f"{queue}-instance")
    profile = iam.get_instance_profile(InstanceProfileName=f"{queue}-instance")["InstanceProfile"]
    batch = boto3.client("batch", **kw)
    environment = batch.create_compute_environment(
        computeEnvironmentName=f"{queue}-ce",
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
        serviceRole=role["Arn"],
    )
    batch.create_job_queue(
        jobQueueName=queue,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
        ],
    )
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{bucket}/metaflow",
        "METAFLOW_SFN_IAM_ROLE": ACCOUNT_ROLE + "fraud-sfn",
        "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": ACCOUNT_ROLE + "fraud-batch",
        "METAFLOW_BATCH_JOB_QUEUE": queue,
        "METAFLOW_SFN_DYNAMO_DB_TABLE": table,
        "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": ACCOUNT_ROLE + "fraud-events",
    }
