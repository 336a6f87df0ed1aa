"""Pull the champion model from the (S3) lakehouse, deploy it, and smoke-test the deployment.

Three commands, each a make target (``make pull-model``, ``make deploy``, ``make smoke``):

``pull``
    Reads the champion pointer (``models/champion.json``) of ``LAKEHOUSE_URI`` (``s3://...``;
    any fsspec URI works), downloads the bundle (``manifest.json`` + ``model.safetensors``),
    verifies it (sha256 of the weights against the manifest, format, feature list: the checks of
    :meth:`fraud_core.model.bundle.ModelBundle.from_parts`) and writes it to ``MODEL_DIR`` as a
    one-model lakehouse (``models/VERSION/...`` and ``models/champion.json``).
``deploy``
    Deploys the pulled model (pulling first when ``MODEL_DIR`` holds none) to ``DEPLOY_TARGET``:

    - ``fastapi``: copies the bundle into the lakehouse the service watches
      (``FRAUD_SERVICE_LAKEHOUSE_URI``), moves its champion pointer last, and waits until
      ``FRAUD_SERVICE_URL/readyz`` reports the new version (the service swaps without restart).
    - ``sagemaker``: uploads the bundle as ``model.tar.gz`` (a one-model lakehouse, so the
      container runs the same API with ``LAKEHOUSE_URI=/opt/ml/model``), then creates the model
      and endpoint configuration named after the version, and creates the endpoint or updates
      it to the new configuration; waits until it is InService.
    - ``k8s``: renders deploy/k8s/*.yaml with the image and bundle version injected, validates
      them against the Kubernetes API models (scripts/k8s_manifests.py) and writes them to
      ``K8S_OUT_DIR``; with ``K8S_APPLY=true`` also runs ``kubectl apply -f`` on them and waits
      for the rollout (``KUBECTL``: the kubectl to run, default ``kubectl`` on PATH). The pods
      get ``FRAUD_ENV`` (with ``prod`` the API refuses to start without API keys).
``smoke``
    Checks the deployed API: ``/readyz`` serves the pulled version and ``POST /v1/score`` scores
    the example claim with it (fastapi, k8s: ``FRAUD_SERVICE_URL``, ``FRAUD_API_KEY`` when the
    API wants a key); for sagemaker, the endpoint is InService on this version's configuration.

AWS credentials, region and endpoint come from the usual AWS environment (``AWS_ENDPOINT_URL``
points boto3 and s3fs at an S3-compatible store or at moto in the tests). Nothing secret is
printed. Exit codes: 0 done; 1 the deployment failed or did not become ready in time
(``DEPLOY_TIMEOUT``, default 300 s); 2 a setting is missing or the bundle is unusable.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from fraud_core.lakehouse import Lakehouse, LakehouseError
from fraud_core.layout import CHAMPION_POINTER
from fraud_core.model.bundle import MANIFEST_FILE, WEIGHTS_FILE, BundleError, ModelBundle

TARGETS = ("fastapi", "sagemaker", "k8s")
EXIT_FAILED, EXIT_USAGE = 1, 2


class DeployError(RuntimeError):
    """The deployment did not happen or did not become ready; the message says why."""


class SettingError(ValueError):
    """A required setting is missing or malformed."""


def setting(name: str, default: str | None = None) -> str:
    """An environment setting; raises SettingError when required and unset."""
    value = os.environ.get(name, "")
    if value:
        return value
    if default is None:
        raise SettingError(f"{name} is not set")
    return default


@dataclass(frozen=True)
class PulledModel:
    """A verified bundle in a local one-model lakehouse."""

    version: str
    manifest: dict[str, Any]
    weights: bytes
    lakehouse: Lakehouse

    @property
    def sha256(self) -> str:
        return str(self.manifest["weights"]["sha256"])

    def files(self) -> dict[str, bytes]:
        """Lakehouse-relative path -> bytes, weights before manifest (the manifest marks a
        complete bundle)."""
        lh = self.lakehouse
        return {
            lh.model_path(self.version, WEIGHTS_FILE): self.weights,
            lh.model_path(self.version, MANIFEST_FILE): lh.read_bytes(
                lh.model_path(self.version, MANIFEST_FILE)
            ),
        }


def read_verified(lakehouse: Lakehouse, version: str) -> tuple[dict[str, Any], bytes]:
    """Manifest and weights of ``version``, verified (checksum, format, features).

    Raises:
        BundleError: the bundle is missing, corrupt or incompatible with this code.
    """
    try:
        manifest = lakehouse.read_json(lakehouse.model_path(version, MANIFEST_FILE))
        weights = lakehouse.read_bytes(lakehouse.model_path(version, WEIGHTS_FILE))
    except (LakehouseError, ValueError) as exc:
        raise BundleError(f"model bundle {version!r} cannot be read: {exc}") from exc
    ModelBundle.from_parts(manifest, weights)  # raises on a checksum mismatch
    return manifest, weights


def pull(source_uri: str, model_dir: str, version: str = "") -> PulledModel:
    """Download the champion (or ``version``) from ``source_uri`` into ``model_dir``, verified."""
    source = Lakehouse(source_uri)
    pointer = {"version": version} if version else source.champion()
    if pointer is None:
        raise BundleError(f"no champion model in {source.url('models')}: promote one first")
    version = str(pointer["version"])
    manifest, weights = read_verified(source, version)
    target = Lakehouse(model_dir)
    target.delete("models")  # MODEL_DIR holds exactly one model
    target.write_bytes(target.model_path(version, WEIGHTS_FILE), weights)
    target.write_json(target.model_path(version, MANIFEST_FILE), manifest)
    target.set_champion(
        {
            **pointer,
            "source": source.url(source.model_path(version)),
            "pulled_at": datetime.now(UTC).isoformat(),
        }
    )
    return PulledModel(version, manifest, weights, target)


def load_pulled(model_dir: str) -> PulledModel | None:
    """The model pulled into ``model_dir`` (verified again), or None when there is none."""
    if not os.path.exists(os.path.join(model_dir, CHAMPION_POINTER)):
        return None
    lakehouse = Lakehouse(model_dir)
    pointer = lakehouse.champion()
    if pointer is None:
        return None
    version = str(pointer["version"])
    manifest, weights = read_verified(lakehouse, version)
    return PulledModel(version, manifest, weights, lakehouse)


# --- fastapi ----------------------------------------------------------------------------------


def api_headers() -> dict[str, str]:
    """The API key header when ``FRAUD_API_KEY`` is set (the value is never printed)."""
    key = os.environ.get("FRAUD_API_KEY", "")
    return {"X-API-Key": key} if key else {}


def wait_until_serving(service_url: str, version: str, timeout: float, poll: float = 0.5) -> None:
    """Poll ``/readyz`` until it reports ``version``.

    Raises:
        DeployError: the service refused the model, or did not report it within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{service_url}/readyz", timeout=5)
            body = response.json()
            serving = body.get("model_version")
            if response.status_code == 200 and serving == version:
                return
            error = body.get("reload_error") or body.get("detail") or ""
            if version in error and "could not be loaded" in error:
                raise DeployError(f"the service refused model {version}: {error}")
            last = f"HTTP {response.status_code}, serving {serving or 'nothing'} {error}".strip()
        except (httpx.HTTPError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(poll)
    raise DeployError(
        f"{service_url}/readyz did not report model {version} within {timeout:g} s (last: {last})"
    )


def deploy_fastapi(model: PulledModel, timeout: float) -> str:
    """Place the bundle where the service watches its champion pointer, then wait for it."""
    service = Lakehouse(setting("FRAUD_SERVICE_LAKEHOUSE_URI"))
    service_url = setting("FRAUD_SERVICE_URL", "http://127.0.0.1:8080").rstrip("/")
    for rel, data in model.files().items():
        service.write_bytes(rel, data)
    read_verified(service, model.version)  # what the service will load is what we verified
    service.set_champion({"version": model.version, "deployed_at": datetime.now(UTC).isoformat()})
    print(f"champion pointer of {service.url(CHAMPION_POINTER)} -> {model.version}")
    wait_until_serving(service_url, model.version, timeout)
    return f"{service_url} serves model {model.version}"


# --- sagemaker --------------------------------------------------------------------------------


def sagemaker_name(*parts: str) -> str:
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


def sagemaker_container_env(version: str) -> dict[str, str]:
    """The environment of the model's container (``docker run IMAGE serve`` on SageMaker):
    the one-model lakehouse SageMaker unpacks at /opt/ml/model, no polling, no API keys."""
    return {
        "LAKEHOUSE_URI": "/opt/ml/model",
        "FRAUD_MODEL_VERSION": version,
        "FRAUD_API_POLL_SECONDS": "0",
        # SageMaker authenticates callers with IAM and forwards no X-API-Key.
        "FRAUD_API_SAGEMAKER": "true",
        "FRAUD_ENV": setting("FRAUD_ENV", "local"),
    }


def _missing(exc: Exception) -> bool:
    """True when a SageMaker ClientError says the resource does not exist."""
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
    return "Could not find" in message or "does not exist" in message


def deploy_sagemaker(model: PulledModel, timeout: float, sm: Any = None) -> str:
    """Create (or reuse) the model and endpoint config of this version; create/update the
    endpoint; wait until InService. ``sm``: a SageMaker client (default: from the environment)."""
    import boto3
    from botocore.exceptions import ClientError, WaiterError

    endpoint = setting("SAGEMAKER_ENDPOINT", "fraud-scoring")
    image = setting("SAGEMAKER_IMAGE_URI")
    role = setting("SAGEMAKER_ROLE_ARN")
    artifacts = setting(
        "SAGEMAKER_ARTIFACT_URI", f"{setting('LAKEHOUSE_URI').rstrip('/')}/deploy/sagemaker"
    )
    if not artifacts.startswith("s3://"):
        raise SettingError(f"SAGEMAKER_ARTIFACT_URI must be an s3:// URI, got {artifacts!r}")
    store = Lakehouse(artifacts)
    data_url = store.write_bytes(f"{model.version}/model.tar.gz", bundle_tarball(model))
    print(f"uploaded model.tar.gz to {data_url}")

    sm = sm or boto3.client("sagemaker")
    name = sagemaker_name(endpoint, model.version)
    tags = [
        {"Key": "fraud.model/version", "Value": model.version},
        {"Key": "fraud.model/sha256", "Value": model.sha256},
    ]
    try:
        sm.describe_model(ModelName=name)
        print(f"model {name} exists")
    except ClientError as exc:
        if not _missing(exc):
            raise
        sm.create_model(
            ModelName=name,
            PrimaryContainer={
                "Image": image,
                "ModelDataUrl": data_url,
                "Environment": sagemaker_container_env(model.version),
            },
            ExecutionRoleArn=role,
            Tags=tags,
        )
        print(f"created model {name}")
    try:
        sm.describe_endpoint_config(EndpointConfigName=name)
        print(f"endpoint configuration {name} exists")
    except ClientError as exc:
        if not _missing(exc):
            raise
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": setting("SAGEMAKER_INSTANCE_TYPE", "ml.m5.large"),
                    "InitialInstanceCount": int(setting("SAGEMAKER_INSTANCE_COUNT", "1")),
                }
            ],
            Tags=tags,
        )
        print(f"created endpoint configuration {name}")
    try:
        current = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    except ClientError as exc:
        if not _missing(exc):
            raise
        current = None
    if current is None:
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name, Tags=tags)
        print(f"creating endpoint {endpoint}")
    elif current != name:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=name)
        print(f"updating endpoint {endpoint}: {current} -> {name}")
    else:
        print(f"endpoint {endpoint} already runs {name}")
    delay = 15 if timeout >= 60 else 1
    try:
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint,
            WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(timeout // delay))},
        )
    except WaiterError as exc:
        raise DeployError(f"endpoint {endpoint} is not InService: {exc}") from exc
    return f"SageMaker endpoint {endpoint} serves model {model.version} (config {name})"


# --- kubernetes -------------------------------------------------------------------------------


def deploy_k8s(model: PulledModel, timeout: float) -> str:
    """Render and validate the manifests; apply them when ``K8S_APPLY=true``.

    The cluster is reached through ``KUBECTL`` (default: ``kubectl`` on PATH; its context and
    credentials are kubectl's own): ``KUBECTL apply -f K8S_OUT_DIR``, then ``KUBECTL rollout
    status`` until the new pods are ready or ``timeout`` passes.
    """
    import k8s_manifests

    values = {
        "NAME": setting("K8S_APP_NAME", "fraud-scoring"),
        "NAMESPACE": setting("K8S_NAMESPACE", "fraud"),
        "IMAGE": setting("K8S_IMAGE"),
        "REPLICAS": int(setting("K8S_REPLICAS", "2")),
        "MODEL_VERSION": model.version,
        "MODEL_SHA256": model.sha256,
        "LAKEHOUSE_URI": setting("LAKEHOUSE_URI"),
        "FRAUD_ENV": setting("FRAUD_ENV", "local"),
    }
    try:
        docs = k8s_manifests.render(values)
    except k8s_manifests.ManifestError as exc:
        raise SettingError(f"manifests are invalid: {exc}") from exc
    out_dir = setting("K8S_OUT_DIR", "build/k8s")
    paths = k8s_manifests.write(docs, out_dir)
    print("rendered and validated " + ", ".join(paths))
    if setting("K8S_APPLY", "false").lower() != "true":
        return f"manifests for model {model.version} in {out_dir} (not applied)"
    kubectl = shutil.which(setting("KUBECTL", "kubectl"))
    if kubectl is None:
        raise SettingError(
            "K8S_APPLY=true but kubectl was not found: put it on PATH or set KUBECTL to its path"
        )
    namespace, name = values["NAMESPACE"], values["NAME"]
    steps = {
        "kubectl apply": [kubectl, "apply", "-f", out_dir],
        "kubectl rollout status": [
            kubectl,
            "rollout",
            "status",
            f"deployment/{name}",
            "-n",
            str(namespace),
            f"--timeout={int(timeout)}s",
        ],
    }
    for what, command in steps.items():
        if subprocess.run(command, check=False).returncode != 0:
            raise DeployError(f"{what} failed (its output is above)")
    return f"deployment/{name} in {namespace} rolled out with model {model.version}"


# --- smoke test -------------------------------------------------------------------------------


def smoke_api(service_url: str, version: str) -> str:
    """``/readyz`` serves ``version`` and the example claim gets a score from it."""
    from serving.api.models import load_example

    wait_until_serving(service_url, version, timeout=float(setting("SMOKE_TIMEOUT", "30")))
    response = httpx.post(
        f"{service_url}/v1/score", json=load_example(), headers=api_headers(), timeout=30
    )
    if response.status_code != 200:
        raise DeployError(f"POST /v1/score answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    score = float(body["fraud_score"])
    if body.get("model_version") != version or not 0.0 <= score <= 1.0:
        raise DeployError(f"unexpected score response {body}")
    return (
        f"{service_url}: model {version} scored the example claim {score:.4f} ({body['decision']})"
    )


def smoke_sagemaker(version: str) -> str:
    """The endpoint is InService on this version's endpoint configuration."""
    import boto3

    endpoint = setting("SAGEMAKER_ENDPOINT", "fraud-scoring")
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    expected = sagemaker_name(endpoint, version)
    if described["EndpointStatus"] != "InService" or described["EndpointConfigName"] != expected:
        raise DeployError(
            f"endpoint {endpoint} is {described['EndpointStatus']} on "
            f"{described['EndpointConfigName']}, expected InService on {expected}"
        )
    return f"SageMaker endpoint {endpoint} is InService with model {version}"


# --- commands ---------------------------------------------------------------------------------


def _pulled_or_pull(args: argparse.Namespace) -> PulledModel:
    model = load_pulled(args.model_dir)
    if model is None or (args.version and model.version != args.version):
        model = _pull(args)
    else:
        print(f"using model {model.version} pulled into {args.model_dir} (checksum verified)")
    return model


def _pull(args: argparse.Namespace) -> PulledModel:
    source = setting("LAKEHOUSE_URI")
    model = pull(source, args.model_dir, args.version)
    print(
        f"pulled model {model.version} (sha256 {model.sha256[:12]}..., verified) from "
        f"{source} into {args.model_dir}"
    )
    return model


def run(args: argparse.Namespace) -> int:
    if args.command == "pull":
        _pull(args)
        return 0
    if args.target not in TARGETS:
        raise SettingError(
            f"DEPLOY_TARGET must be one of {', '.join(TARGETS)}, got {args.target!r}"
        )
    if args.command == "deploy":
        model = _pulled_or_pull(args)
        deploy = {"fastapi": deploy_fastapi, "sagemaker": deploy_sagemaker, "k8s": deploy_k8s}
        print(f"deployed: {deploy[args.target](model, args.timeout)}")
        return 0
    pulled = load_pulled(args.model_dir)
    if pulled is None:
        raise SettingError(f"no pulled model in {args.model_dir}: run `make pull-model` first")
    if args.target == "sagemaker":
        print(f"smoke test passed: {smoke_sagemaker(pulled.version)}")
    else:
        url = setting("FRAUD_SERVICE_URL", "http://127.0.0.1:8080").rstrip("/")
        print(f"smoke test passed: {smoke_api(url, pulled.version)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["pull", "deploy", "smoke"])
    parser.add_argument(
        "--target", default=env("DEPLOY_TARGET", "fastapi"), help=", ".join(TARGETS)
    )
    parser.add_argument("--model-dir", default=env("MODEL_DIR", "build/model"))
    parser.add_argument(
        "--version", default=env("MODEL_VERSION", ""), help="a version instead of the champion"
    )
    parser.add_argument(
        "--timeout", type=float, default=float(env("DEPLOY_TIMEOUT", "300")), help="seconds"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (SettingError, BundleError, LakehouseError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeployError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(exc, BotoCoreError | ClientError):
            raise
        print(f"ERROR: AWS refused: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
