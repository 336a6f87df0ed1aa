"""Target ``k8s``: the scoring API's manifests rendered with the image and the bundle's version,
validated (:mod:`fraud_cli.deploy.k8s_manifests`), written to ``K8S_OUT_DIR``, and with
``K8S_APPLY=true`` applied with kubectl.

The cluster is reached through ``KUBECTL`` (default: ``kubectl`` on PATH; its context and
credentials are kubectl's own): ``KUBECTL apply -f K8S_OUT_DIR``, then ``KUBECTL rollout
status`` until the new pods are ready or the deploy timeout passes. The pods get ``FRAUD_ENV``
(with ``prod`` the API refuses to start without API keys).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from fraud_cli.deploy import DeployError, SettingError, k8s_manifests
from fraud_cli.deploy.pull import PulledModel
from fraud_cli.deploy.settings import DeploySettings


def manifest_values(model: PulledModel, settings: DeploySettings) -> dict[str, Any]:
    """The values of the templates' ``${NAME}`` placeholders."""
    return {
        "NAME": settings.k8s_app_name,
        "NAMESPACE": settings.k8s_namespace,
        "IMAGE": settings.require("k8s_image"),
        "REPLICAS": settings.k8s_replicas,
        "MODEL_VERSION": model.version,
        "MODEL_SHA256": model.sha256,
        "LAKEHOUSE_URI": settings.require("lakehouse_uri"),
        "FRAUD_ENV": settings.fraud_env,
    }


def deploy(model: PulledModel, settings: DeploySettings) -> str:
    """Render and validate the manifests; apply them when ``K8S_APPLY=true``."""
    values = manifest_values(model, settings)
    try:
        docs = k8s_manifests.render(values)
    except k8s_manifests.ManifestError as exc:
        raise SettingError(f"manifests are invalid: {exc}") from exc
    out_dir = settings.k8s_out_dir
    paths = k8s_manifests.write(docs, out_dir)
    print("rendered and validated " + ", ".join(paths))
    if not settings.k8s_apply:
        return f"manifests for model {model.version} in {out_dir} (not applied)"
    kubectl = shutil.which(settings.kubectl)
    if kubectl is None:
        raise SettingError(
            "K8S_APPLY=true but kubectl was not found: put it on PATH or set KUBECTL to its path"
        )
    namespace, name = settings.k8s_namespace, settings.k8s_app_name
    steps = {
        "kubectl apply": [kubectl, "apply", "-f", out_dir],
        "kubectl rollout status": [
            kubectl,
            "rollout",
            "status",
            f"deployment/{name}",
            "-n",
            namespace,
            f"--timeout={int(settings.deploy_timeout)}s",
        ],
    }
    for what, command in steps.items():
        if subprocess.run(command, check=False).returncode != 0:
            raise DeployError(f"{what} failed (its output is above)")
    return f"deployment/{name} in {namespace} rolled out with model {model.version}"
