"""The smoke test of a deployment: the deployed API serves the pulled version and scores the
example claim with it (fastapi, k8s: ``FRAUD_SERVICE_URL``, with ``FRAUD_API_KEY`` when the API
wants a key); on SageMaker, the endpoint is InService on this version's configuration."""

from __future__ import annotations

import httpx

from fraud_cli.deploy import DeployError, sagemaker
from fraud_cli.deploy.service import api_headers, wait_until_serving
from fraud_cli.deploy.settings import DeploySettings


def smoke_api(version: str, settings: DeploySettings) -> str:
    """``/readyz`` serves ``version`` and the example claim gets a score from it."""
    from serving.api.models import load_example

    url = settings.service_url
    wait_until_serving(url, version, timeout=settings.smoke_timeout)
    response = httpx.post(
        f"{url}/v1/score", json=load_example(), headers=api_headers(settings), timeout=30
    )
    if response.status_code != 200:
        raise DeployError(f"POST /v1/score answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    score = float(body["fraud_score"])
    if body.get("model_version") != version or not 0.0 <= score <= 1.0:
        raise DeployError(f"unexpected score response {body}")
    return f"{url}: model {version} scored the example claim {score:.4f} ({body['decision']})"


def smoke(version: str, settings: DeploySettings) -> str:
    """The smoke test of ``DEPLOY_TARGET``; returns what passed, raises DeployError."""
    if settings.deploy_target == "sagemaker":
        return sagemaker.check_in_service(version, settings)
    return smoke_api(version, settings)
