"""scripts/deploy_model.py (fraud_cli.deploy): pull the champion from an S3 lakehouse (moto's
server), verify it, deploy it to a real uvicorn service, to SageMaker (moto) and as Kubernetes
manifests."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from fraud_cli.deploy import DeployError, SettingError, k8s, k8s_manifests, sagemaker
from fraud_cli.deploy.pull import pull
from fraud_cli.deploy.service import wait_until_serving
from fraud_cli.deploy.settings import DeploySettings
from fraud_cli.servers import scoring_api
from fraud_core.lakehouse import Lakehouse
from fraud_core.model.bundle import MANIFEST_FILE, WEIGHTS_FILE, BundleError

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "fraud-deploy-lake"
NEW = "fm-test-2"  # the champion published in S3; the service starts with fm-test-1
ROLE = "arn:aws:iam::123456789012:role/fraud-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-scoring:1.4.0"

pytestmark = pytest.mark.integration


def publish(source: Lakehouse, target: Lakehouse, version: str, corrupt: bool = False) -> None:
    """Copy the fixture's fm-test-1 bundle into ``target`` as ``version``, make it champion."""
    manifest = source.read_json(source.model_path("fm-test-1", MANIFEST_FILE))
    weights = source.read_bytes(source.model_path("fm-test-1", WEIGHTS_FILE))
    if corrupt:
        weights = weights[:-16] + bytes(16)
    target.write_bytes(target.model_path(version, WEIGHTS_FILE), weights)
    target.write_json(target.model_path(version, MANIFEST_FILE), {**manifest, "version": version})
    target.set_champion({"version": version})


@pytest.fixture(scope="module")
def s3(moto_endpoint: str, champion_lakehouse: Path) -> Iterator[dict[str, str]]:
    """An S3 lakehouse whose champion is fm-test-2, and one with a corrupt champion."""
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=BUCKET)
    saved = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = moto_endpoint  # s3fs and boto3 read it (verified here)
    try:
        source = Lakehouse(str(champion_lakehouse))
        publish(source, Lakehouse(f"s3://{BUCKET}/lakehouse"), NEW)
        publish(source, Lakehouse(f"s3://{BUCKET}/corrupt"), "fm-bad", corrupt=True)
        yield {"AWS_ENDPOINT_URL": moto_endpoint, "LAKEHOUSE_URI": f"s3://{BUCKET}/lakehouse"}
    finally:
        if saved is None:
            del os.environ["AWS_ENDPOINT_URL"]
        else:
            os.environ["AWS_ENDPOINT_URL"] = saved


def test_pull_downloads_and_verifies_the_champion(
    s3: dict[str, str], run_script: Any, tmp_path: Path
) -> None:
    result = run_script("deploy_model", "pull", env={**s3, "MODEL_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"pulled model {NEW}" in result.stdout and "verified" in result.stdout
    pulled = Lakehouse(str(tmp_path))
    pointer = pulled.champion()
    assert pointer and pointer["version"] == NEW
    assert pointer["source"] == f"s3://{BUCKET}/lakehouse/models/{NEW}"
    remote = Lakehouse(s3["LAKEHOUSE_URI"])
    for name in (MANIFEST_FILE, WEIGHTS_FILE):
        assert pulled.read_bytes(pulled.model_path(NEW, name)) == remote.read_bytes(
            remote.model_path(NEW, name)
        )


def test_pull_refuses_a_corrupt_bundle_and_a_missing_champion(
    s3: dict[str, str], run_script: Any, tmp_path: Path
) -> None:
    env = {**s3, "LAKEHOUSE_URI": f"s3://{BUCKET}/corrupt", "MODEL_DIR": str(tmp_path / "m")}
    result = run_script("deploy_model", "pull", env=env)
    assert result.returncode == 2
    assert "weights checksum mismatch" in result.stderr
    assert not (tmp_path / "m").exists()  # nothing unverified is written
    with pytest.raises(BundleError, match="no champion model"):
        pull(f"s3://{BUCKET}/empty", str(tmp_path / "m"))


# --- fastapi: a real service that swaps models ------------------------------------------------


@pytest.fixture
def service(tmp_path: Path, champion_lakehouse: Path) -> Iterator[dict[str, str]]:
    """uvicorn serving fm-test-1 from a local lakehouse (API keys on), polling its champion
    pointer every 0.3 s."""
    lakehouse = tmp_path / "service_lakehouse"
    shutil.copytree(champion_lakehouse, lakehouse)
    key = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "LAKEHOUSE_URI": str(lakehouse),
        "FRAUD_API_KEYS": key,
        "FRAUD_API_POLL_SECONDS": "0.3",
    }
    env.pop("FRAUD_API_AUTH_DISABLED", None)
    with scoring_api(env, tmp_path / "uvicorn.log", timeout=90) as url:
        yield {"url": url, "lakehouse": str(lakehouse), "key": key}


def test_fastapi_deploy_swaps_the_running_service_and_smoke_passes(
    s3: dict[str, str], service: dict[str, str], run_script: Any, tmp_path: Path
) -> None:
    assert httpx.get(f"{service['url']}/readyz").json()["model_version"] == "fm-test-1"
    env = {
        **s3,
        "MODEL_DIR": str(tmp_path / "model"),
        "DEPLOY_TARGET": "fastapi",
        "FRAUD_SERVICE_LAKEHOUSE_URI": service["lakehouse"],
        "FRAUD_SERVICE_URL": service["url"],
        "DEPLOY_TIMEOUT": "60",
        "FRAUD_API_KEY": "",
    }
    result = run_script("deploy_model", "deploy", env=env)  # pulls first: no model pulled yet
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"pulled model {NEW}" in result.stdout
    assert f"{service['url']} serves model {NEW}" in result.stdout
    assert httpx.get(f"{service['url']}/readyz").json()["model_version"] == NEW
    assert Lakehouse(service["lakehouse"]).champion()["version"] == NEW  # type: ignore[index]

    result = run_script("deploy_model", "smoke", env=env)  # the API wants a key
    assert result.returncode == 1 and "answered 401" in result.stderr
    assert service["key"] not in result.stdout + result.stderr
    result = run_script("deploy_model", "smoke", env={**env, "FRAUD_API_KEY": service["key"]})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"model {NEW} scored the example claim" in result.stdout


def test_waiting_for_a_service_that_does_not_answer_times_out(
    free_port: Callable[[], int],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DeployError, match=f"did not report model {NEW} within 0.5 s"):
        wait_until_serving(url, NEW, timeout=0.5, poll=0.1)


# --- sagemaker (moto) ----------------------------------------------------------------------


def test_sagemaker_deploy_creates_model_config_and_endpoint(
    s3: dict[str, str], run_script: Any, tmp_path: Path
) -> None:
    env = {
        **s3,
        "MODEL_DIR": str(tmp_path / "model"),
        "DEPLOY_TARGET": "sagemaker",
        "SAGEMAKER_ENDPOINT": "fraud-test",
        "SAGEMAKER_IMAGE_URI": IMAGE,
        "SAGEMAKER_ROLE_ARN": ROLE,
        "DEPLOY_TIMEOUT": "20",
    }
    result = run_script("deploy_model", "deploy", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    name = f"fraud-test-{NEW}"
    sm = boto3.client("sagemaker", endpoint_url=s3["AWS_ENDPOINT_URL"])
    model = sm.describe_model(ModelName=name)
    container = model["PrimaryContainer"]
    data_url = f"s3://{BUCKET}/lakehouse/deploy/sagemaker/{NEW}/model.tar.gz"
    assert container["Image"] == IMAGE and container["ModelDataUrl"] == data_url
    assert container["Environment"]["LAKEHOUSE_URI"] == "/opt/ml/model"
    # The container's API must start without keys behind SageMaker's IAM (see serving config).
    assert container["Environment"]["FRAUD_API_SAGEMAKER"] == "true"
    assert model["ExecutionRoleArn"] == ROLE
    variant = sm.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"][0]
    assert variant["ModelName"] == name
    endpoint = sm.describe_endpoint(EndpointName="fraud-test")
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", name)
    # model.tar.gz is a one-model lakehouse: the API runs on it as it is.
    tarball = Lakehouse(s3["LAKEHOUSE_URI"]).read_bytes(f"deploy/sagemaker/{NEW}/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        names = set(tar.getnames())
        pointer = json.load(tar.extractfile("models/champion.json"))  # type: ignore[arg-type]
    assert names == {
        "models/champion.json",
        f"models/{NEW}/{MANIFEST_FILE}",
        f"models/{NEW}/{WEIGHTS_FILE}",
    }
    assert pointer["version"] == NEW

    result = run_script("deploy_model", "smoke", env=env)
    assert result.returncode == 0 and "InService with model" in result.stdout, result.stderr


def test_sagemaker_deploy_again_changes_nothing(
    s3: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same version twice (moto): model, config and endpoint are reused, not recreated."""
    for name, value in {
        "SAGEMAKER_ENDPOINT": "fraud-again",
        "SAGEMAKER_IMAGE_URI": IMAGE,
        "SAGEMAKER_ROLE_ARN": ROLE,
        "LAKEHOUSE_URI": s3["LAKEHOUSE_URI"],
    }.items():
        monkeypatch.setenv(name, value)
    model = pull(s3["LAKEHOUSE_URI"], str(tmp_path / "model"))
    settings = DeploySettings.from_env(deploy_timeout=10)
    sagemaker.deploy(model, settings)
    capsys.readouterr()
    sagemaker.deploy(model, settings)
    out = capsys.readouterr().out
    assert "model fraud-again-fm-test-2 exists" in out
    assert "endpoint configuration fraud-again-fm-test-2 exists" in out
    assert "endpoint fraud-again already runs fraud-again-fm-test-2" in out


def test_sagemaker_deploy_updates_an_existing_endpoint(
    s3: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto 5.2 has no UpdateEndpoint: botocore's Stubber checks the calls against the API
    model instead (model and config exist already, the endpoint runs an older config)."""
    from botocore.stub import Stubber

    monkeypatch.setenv("SAGEMAKER_IMAGE_URI", IMAGE)
    monkeypatch.setenv("SAGEMAKER_ROLE_ARN", ROLE)
    monkeypatch.setenv("LAKEHOUSE_URI", s3["LAKEHOUSE_URI"])
    model = pull(s3["LAKEHOUSE_URI"], str(tmp_path / "model"))
    sm = boto3.client("sagemaker", region_name="us-east-1")
    name = f"fraud-scoring-{NEW}"
    endpoint = {
        "EndpointName": "fraud-scoring",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/fraud-scoring",
        "EndpointConfigName": "fraud-scoring-fm-test-1",
        "EndpointStatus": "InService",
        "CreationTime": "2026-11-01T00:00:00Z",
        "LastModifiedTime": "2026-11-01T00:00:00Z",
    }
    with Stubber(sm) as stub:
        stub.add_response("describe_model", _model_response(name), {"ModelName": name})
        stub.add_response(
            "describe_endpoint_config",
            _config_response(name),
            {"EndpointConfigName": name},
        )
        stub.add_response("describe_endpoint", endpoint, {"EndpointName": "fraud-scoring"})
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": endpoint["EndpointArn"]},
            {"EndpointName": "fraud-scoring", "EndpointConfigName": name},
        )
        stub.add_response(
            "describe_endpoint",
            {**endpoint, "EndpointConfigName": name},
            {"EndpointName": "fraud-scoring"},
        )
        summary = sagemaker.deploy(model, DeploySettings.from_env(deploy_timeout=5), sm=sm)
        stub.assert_no_pending_responses()
    assert summary == f"SageMaker endpoint fraud-scoring serves model {NEW} (config {name})"


def _model_response(name: str) -> dict[str, Any]:
    return {
        "ModelName": name,
        "ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{name}",
        "CreationTime": "2026-11-01T00:00:00Z",
    }


def _config_response(name: str) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{name}",
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": name}],
        "CreationTime": "2026-11-01T00:00:00Z",
    }


# --- kubernetes manifests -----------------------------------------------------------------


def k8s_env(s3: dict[str, str], tmp_path: Path, **settings: str) -> dict[str, str]:
    return {
        **s3,
        "MODEL_DIR": str(tmp_path / "model"),
        "DEPLOY_TARGET": "k8s",
        "K8S_IMAGE": IMAGE,
        "K8S_NAMESPACE": "fraud-staging",
        "K8S_REPLICAS": "3",
        "K8S_OUT_DIR": str(tmp_path / "k8s"),
        **settings,
    }


def check_manifests(folder: Path, tmp_path: Path, fraud_env: str) -> None:
    """deployment.yaml + service.yaml parse, fit the Kubernetes models and carry the image,
    the pulled bundle's version and checksum, and FRAUD_ENV."""
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
    from kubernetes.client import V1Deployment, V1Service

    def load(model: Any, doc: dict[str, Any]) -> Any:
        return k8s_model_from_dict(model, k8s_snake_case_dict(model, doc))

    assert sorted(p.name for p in folder.iterdir()) == ["deployment.yaml", "service.yaml"]
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    service = yaml.safe_load((folder / "service.yaml").read_text())
    dep, svc = load(V1Deployment, deployment), load(V1Service, service)
    pod = dep.spec.template
    (container,) = pod.spec.containers
    assert container.image == IMAGE and dep.spec.replicas == 3
    assert dep.metadata.namespace == svc.metadata.namespace == "fraud-staging"
    assert pod.metadata.labels["fraud.model/version"] == NEW
    manifest = Lakehouse(str(tmp_path / "model")).read_json(f"models/{NEW}/{MANIFEST_FILE}")
    assert pod.metadata.annotations["fraud.model/sha256"] == manifest["weights"]["sha256"]
    env_vars = {e.name: e.value for e in container.env}
    assert env_vars["LAKEHOUSE_URI"] == f"s3://{BUCKET}/lakehouse"
    assert env_vars["FRAUD_MODEL_VERSION"] == NEW and env_vars["FRAUD_ENV"] == fraud_env
    assert svc.spec.selector.items() <= pod.metadata.labels.items()


def test_k8s_manifests_are_rendered_with_image_and_version_and_validated(
    s3: dict[str, str], run_script: Any, tmp_path: Path
) -> None:
    # FRAUD_ENV unset (empty): the pods run with the default, local.
    result = run_script("deploy_model", "deploy", env={**k8s_env(s3, tmp_path), "FRAUD_ENV": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rendered and validated" in result.stdout and "(not applied)" in result.stdout
    check_manifests(tmp_path / "k8s", tmp_path, fraud_env="local")


FAKE_KUBECTL = """#!{python}
# kubectl stand-in: records its arguments and the manifests `apply -f DIR` was given.
import json, os, shutil, sys
record = os.environ["FAKE_KUBECTL_RECORD"]
os.makedirs(record, exist_ok=True)
with open(os.path.join(record, "calls.jsonl"), "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["apply", "-f"]:
    shutil.copytree(sys.argv[3], os.path.join(record, "applied"))
sys.exit(1 if os.environ.get("FAKE_KUBECTL_FAIL") == sys.argv[1] else 0)
"""


@pytest.fixture
def kubectl(tmp_path: Path) -> Path:
    """A fake kubectl (see FAKE_KUBECTL) in tmp_path; what it got lands in tmp_path/kubectl."""
    path = tmp_path / "bin" / "kubectl"
    path.parent.mkdir()
    path.write_text(FAKE_KUBECTL.format(python=sys.executable))
    path.chmod(0o755)
    return path


def test_k8s_apply_runs_kubectl_apply_then_waits_for_the_rollout(
    s3: dict[str, str], run_script: Any, tmp_path: Path, kubectl: Path
) -> None:
    record = tmp_path / "kubectl"
    env = k8s_env(
        s3,
        tmp_path,
        K8S_APPLY="true",
        KUBECTL=str(kubectl),
        FAKE_KUBECTL_RECORD=str(record),
        FRAUD_ENV="prod",
        DEPLOY_TIMEOUT="120",
    )
    result = run_script("deploy_model", "deploy", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"deployment/fraud-scoring in fraud-staging rolled out with model {NEW}" in result.stdout
    calls = [json.loads(line) for line in (record / "calls.jsonl").read_text().splitlines()]
    assert calls == [
        ["apply", "-f", str(tmp_path / "k8s")],
        ["rollout", "status", "deployment/fraud-scoring", "-n", "fraud-staging", "--timeout=120s"],
    ]
    check_manifests(record / "applied", tmp_path, fraud_env="prod")


def test_k8s_apply_failures_fail_the_deploy(
    s3: dict[str, str], run_script: Any, tmp_path: Path, kubectl: Path
) -> None:
    record = tmp_path / "kubectl"
    env = k8s_env(s3, tmp_path, K8S_APPLY="true", KUBECTL=str(kubectl))
    env["FAKE_KUBECTL_RECORD"] = str(record)
    failed = run_script("deploy_model", "deploy", env={**env, "FAKE_KUBECTL_FAIL": "apply"})
    assert failed.returncode == 1 and "kubectl apply failed" in failed.stderr
    assert len((record / "calls.jsonl").read_text().splitlines()) == 1  # no rollout wait
    shutil.rmtree(record)
    stuck = run_script("deploy_model", "deploy", env={**env, "FAKE_KUBECTL_FAIL": "rollout"})
    assert stuck.returncode == 1 and "kubectl rollout status failed" in stuck.stderr
    missing = run_script(
        "deploy_model", "deploy", env={**env, "KUBECTL": str(tmp_path / "no-kubectl")}
    )
    assert missing.returncode == 2 and "set KUBECTL to its path" in missing.stderr


def test_k8s_validation_refuses_what_the_api_would(tmp_path: Path) -> None:
    values = {
        "NAME": "fraud-scoring",
        "NAMESPACE": "fraud",
        "IMAGE": IMAGE,
        "REPLICAS": 2,
        "MODEL_VERSION": NEW,
        "MODEL_SHA256": "ab" * 32,
        "LAKEHOUSE_URI": "s3://lake/fraud",
        "FRAUD_ENV": "prod",
    }
    docs = k8s_manifests.render(values)
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]

    def broken(edit: Callable[[str], str]) -> Path:
        folder = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        shutil.copytree(k8s_manifests.TEMPLATE_DIR, folder)
        path = folder / "deployment.yaml"
        path.write_text(edit(path.read_text()))
        return folder

    cases = {
        "V1DeploymentSpec: {'replica'}": lambda t: t.replace("replicas:", "replica:"),
        "`selector`, must not be `None`": lambda t: t.replace(
            "  selector:\n    matchLabels:\n      app.kubernetes.io/name: ${NAME}\n", ""
        ),
        "does not fit V1Deployment: invalid literal for int": lambda t: t.replace(
            "replicas: ${REPLICAS}", "replicas: two"
        ),
        "no value for placeholder 'REGION'": lambda t: t.replace("${NAMESPACE}", "${REGION}"),
        "targets 'http': no such port": lambda t: t.replace("- name: http\n", "- name: web\n"),
    }
    for message, edit in cases.items():
        with pytest.raises(k8s_manifests.ManifestError, match=message.replace("(", r"\(")):
            k8s_manifests.render(values, broken(edit))
    with pytest.raises(k8s_manifests.ManifestError, match="cannot be a label value"):
        k8s_manifests.render({**values, "MODEL_VERSION": "v" * 64})
    with pytest.raises(k8s_manifests.ManifestError, match="no \\*.yaml templates in"):
        k8s_manifests.render(values, tmp_path / "empty")


def test_k8s_deploy_needs_an_image(
    champion_lakehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("K8S_IMAGE", raising=False)
    model = pull(str(champion_lakehouse), str(tmp_path / "model"))
    with pytest.raises(SettingError, match="K8S_IMAGE is not set"):
        k8s.deploy(model, DeploySettings.from_env(deploy_timeout=10))
