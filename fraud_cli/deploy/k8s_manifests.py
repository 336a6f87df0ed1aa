"""Render the scoring API's Kubernetes manifests (deploy/k8s/*.yaml) and validate them.

Rendering replaces ``${NAME}`` placeholders in the parsed YAML (never in the text, so a value
cannot break the YAML); a string that is exactly one placeholder takes the value's type, so
``replicas: ${REPLICAS}`` becomes a number. Validation loads each document into the Kubernetes
API model of its kind from the ``kubernetes`` package (``V1Deployment``, ``V1Service``) with
dagster-k8s's strict reader: a misspelt or misplaced key, a missing required field or a value of
the wrong type is refused, naming the object. Finally it checks what ties the two together:
the selector matches the pod labels, the Service targets a container port, the probes are there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any

import yaml

# The templates live in the repository (deploy/k8s), next to the other deployment files.
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
MODELS = {("apps/v1", "Deployment"): "V1Deployment", ("v1", "Service"): "V1Service"}
# Label values: at most 63 characters, alphanumeric at both ends.
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class ManifestError(ValueError):
    """A manifest is not a valid Kubernetes object; the message says where."""


def check_values(values: Mapping[str, Any]) -> None:
    """Refuse values Kubernetes would refuse, before rendering (clear messages)."""
    for key in ("NAME", "NAMESPACE"):
        if not _DNS_LABEL.match(str(values[key])):
            raise ManifestError(f"{key}={values[key]!r} is not a DNS label (a-z, 0-9, '-')")
    if not _LABEL_VALUE.match(str(values["MODEL_VERSION"])):
        raise ManifestError(
            f"model version {values['MODEL_VERSION']!r} cannot be a label value "
            "(at most 63 characters: letters, digits, '.', '_', '-')"
        )
    if not str(values["IMAGE"]).strip() or any(c.isspace() for c in str(values["IMAGE"])):
        raise ManifestError(f"IMAGE={values['IMAGE']!r} is not an image reference")
    if not isinstance(values["REPLICAS"], int) or values["REPLICAS"] < 1:
        raise ManifestError(f"REPLICAS must be a positive integer, got {values['REPLICAS']!r}")


def substitute(node: Any, values: Mapping[str, Any]) -> Any:
    """Replace placeholders in every string of a parsed YAML document.

    Raises:
        ManifestError: a placeholder has no value.
    """
    if isinstance(node, dict):
        return {substitute(k, values): substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values) for v in node]
    if not isinstance(node, str):
        return node
    whole = re.fullmatch(r"\$\{(\w+)\}", node)
    if whole and whole.group(1) in values:
        value = values[whole.group(1)]
        return value if isinstance(value, int | float | bool) else str(value)
    try:
        return Template(node).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise ManifestError(f"no value for placeholder {exc.args[0]!r} in {node!r}") from exc


def render(values: Mapping[str, Any], template_dir: Path = TEMPLATE_DIR) -> list[dict[str, Any]]:
    """Every document of every ``*.yaml`` template, rendered and validated (sorted by file)."""
    check_values(values)
    templates = sorted(template_dir.glob("*.yaml"))
    if not templates:  # deploy/k8s is in a checkout of the repository, not in a wheel
        raise ManifestError(f"no *.yaml templates in {template_dir}: run from a checkout")
    docs = []
    for path in templates:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append(substitute(doc, values))
    validate(docs)
    return docs


def to_model(doc: dict[str, Any]) -> Any:
    """The kubernetes client model object of ``doc``; raises ManifestError when invalid.

    dagster-k8s's strict reader (the one its run launcher applies to user k8s config) refuses
    any key that is not a field of its object, and the models refuse missing required fields.
    """
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
    from kubernetes import client

    key = (doc.get("apiVersion"), doc.get("kind"))
    name = f"{key[1]} {doc.get('metadata', {}).get('name', '?')}"
    if key not in MODELS:
        raise ManifestError(f"{name}: unsupported apiVersion/kind {key}")
    model = getattr(client, MODELS[key])
    try:
        return k8s_model_from_dict(model, k8s_snake_case_dict(model, doc))
    except Exception as exc:  # dagster-k8s raises bare Exception for unknown keys
        raise ManifestError(f"{name} does not fit {MODELS[key]}: {exc}") from exc


def validate(docs: list[dict[str, Any]]) -> None:
    """Validate each document against its API model, then the Deployment/Service wiring."""
    objects = [to_model(doc) for doc in docs]
    deployments = [o for o in objects if o.kind == "Deployment"]
    services = [o for o in objects if o.kind == "Service"]
    if len(deployments) != 1 or len(services) != 1:
        raise ManifestError(
            f"expected one Deployment and one Service, got {len(deployments)} and {len(services)}"
        )
    deployment, service = deployments[0], services[0]
    spec = deployment.spec
    pod_labels = spec.template.metadata.labels or {}
    selector = spec.selector.match_labels or {}
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        raise ManifestError(
            f"Deployment selector {selector} does not match pod labels {pod_labels}"
        )
    if any(pod_labels.get(k) != v for k, v in (service.spec.selector or {}).items()):
        raise ManifestError(f"Service selector {service.spec.selector} selects no pod")
    if deployment.metadata.namespace != service.metadata.namespace:
        raise ManifestError("Deployment and Service are in different namespaces")
    ports = {p.name for c in spec.template.spec.containers for p in c.ports or []} | {
        p.container_port for c in spec.template.spec.containers for p in c.ports or []
    }
    for port in service.spec.ports:
        if port.target_port not in ports:
            raise ManifestError(
                f"Service port {port.name} targets {port.target_port!r}: no such port"
            )
    for container in spec.template.spec.containers:
        if not container.image:
            raise ManifestError(f"container {container.name} has no image")
        if container.readiness_probe is None or container.liveness_probe is None:
            raise ManifestError(f"container {container.name} needs readiness and liveness probes")


def write(docs: list[dict[str, Any]], out_dir: str) -> list[str]:
    """Write one file per document (``deployment.yaml``, ``service.yaml``); returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for doc in docs:
        path = os.path.join(out_dir, f"{doc['kind'].lower()}.yaml")
        with open(path, "w") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)
        paths.append(path)
    return paths
