"""Target ``sagemaker``: the bundle as ``model.tar.gz``, a SageMaker model and endpoint
configuration named after the version, the endpoint created or updated to it.

``model.tar.gz`` is a one-model lakehouse, so the container (``docker run IMAGE serve``) runs
the same API with ``LAKEHOUSE_URI=/opt/ml/model``. The wait for InService is botocore's
``endpoint_in_service`` waiter.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Callable
from typing import Any

from fraud_cli.deploy import DeployError
from fraud_cli.deploy.pull import PulledModel
from fraud_cli.deploy.settings import DeploySettings
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import CHAMPION_POINTER


def resource_name(*parts: str) -> str:
    """A SageMaker resource name (alphanumerics and '-', at most 63 characters)."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", "-".join(parts)).strip("-")
    return name[:63].rstrip("-")


def bundle_tarball(model: PulledModel) -> bytes:
    """``model.tar.gz``: the one-model lakehouse (bundle + champion pointer)."""
    buf = io.BytesIO()
    files = {
        **model.files(),
        CHAMPION_POINTER: model.lakehouse.read_bytes(CHAMPION_POINTER),
    }
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def container_env(version: str, settings: DeploySettings) -> dict[str, str]:
    """The environment of the model's container (``docker run IMAGE serve`` on SageMaker):
    the one-model lakehouse SageMaker unpacks at /opt/ml/model, no polling, no API keys."""
    return {
        "LAKEHOUSE_URI": "/opt/ml/model",
        "FRAUD_MODEL_VERSION": version,
        "FRAUD_API_POLL_SECONDS": "0",
        # SageMaker authenticates callers with IAM and forwards no X-API-Key.
        "FRAUD_API_SAGEMAKER": "true",
        "FRAUD_ENV": settings.fraud_env,
    }


def client(sm: Any = None) -> Any:
    """``sm``, or a SageMaker client from the AWS environment."""
    import boto3

    return sm or boto3.client("sagemaker")


def _described(describe: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """What ``describe()`` answers, or None when SageMaker says the resource does not exist."""
    from botocore.exceptions import ClientError

    try:
        return describe()
    except ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if "Could not find" in message or "does not exist" in message:
            return None
        raise


def deploy(model: PulledModel, settings: DeploySettings, sm: Any = None) -> str:
    """Create (or reuse) the model and endpoint config of this version; create/update the
    endpoint; wait until InService. ``sm``: a SageMaker client (default: from the environment)."""
    from botocore.exceptions import WaiterError

    endpoint = settings.sagemaker_endpoint
    image = settings.require("sagemaker_image_uri")
    role = settings.require("sagemaker_role_arn")
    store = Lakehouse(settings.sagemaker_artifacts)
    data_url = store.write_bytes(f"{model.version}/model.tar.gz", bundle_tarball(model))
    print(f"uploaded model.tar.gz to {data_url}")

    sm = client(sm)
    name = resource_name(endpoint, model.version)
    tags = [
        {"Key": "fraud.model/version", "Value": model.version},
        {"Key": "fraud.model/sha256", "Value": model.sha256},
    ]
    if _described(lambda: sm.describe_model(ModelName=name)):
        print(f"model {name} exists")
    else:
        sm.create_model(
            ModelName=name,
            PrimaryContainer={
                "Image": image,
                "ModelDataUrl": data_url,
                "Environment": container_env(model.version, settings),
            },
            ExecutionRoleArn=role,
            Tags=tags,
        )
        print(f"created model {name}")
    if _described(lambda: sm.describe_endpoint_config(EndpointConfigName=name)):
        print(f"endpoint configuration {name} exists")
    else:
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": settings.sagemaker_instance_type,
                    "InitialInstanceCount": settings.sagemaker_instance_count,
                }
            ],
            Tags=tags,
        )
        print(f"created endpoint configuration {name}")
    described = _described(lambda: sm.describe_endpoint(EndpointName=endpoint))
    current = described["EndpointConfigName"] if described else None
    if current is None:
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name, Tags=tags)
        print(f"creating endpoint {endpoint}")
    elif current != name:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=name)
        print(f"updating endpoint {endpoint}: {current} -> {name}")
    else:
        print(f"endpoint {endpoint} already runs {name}")
    timeout = settings.deploy_timeout
    delay = 15 if timeout >= 60 else 1
    try:
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint,
            WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(timeout // delay))},
        )
    except WaiterError as exc:
        raise DeployError(f"endpoint {endpoint} is not InService: {exc}") from exc
    return f"SageMaker endpoint {endpoint} serves model {model.version} (config {name})"


def check_in_service(version: str, settings: DeploySettings, sm: Any = None) -> str:
    """The endpoint is InService on this version's endpoint configuration (the smoke test)."""
    endpoint = settings.sagemaker_endpoint
    described = client(sm).describe_endpoint(EndpointName=endpoint)
    expected = resource_name(endpoint, version)
    if described["EndpointStatus"] != "InService" or described["EndpointConfigName"] != expected:
        raise DeployError(
            f"endpoint {endpoint} is {described['EndpointStatus']} on "
            f"{described['EndpointConfigName']}, expected InService on {expected}"
        )
    return f"SageMaker endpoint {endpoint} is InService with model {version}"
