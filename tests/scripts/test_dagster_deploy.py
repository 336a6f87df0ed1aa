"""deploy/dagster without a cluster: the instance files load and build their run launchers,
and they agree with the code (the settings the prod Definitions need reach every run, the run
tags the queue limits are the jobs' own, the training pool is the asset's). The deployment is
run for real in tests/integration/test_dagster_prod.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from fraud_assets.assets.model import fraud_model
from fraud_assets.definitions import RERUN_SAFE, RUN_KIND_TAG, SettingsError, build_definitions

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "dagster"
INSTANCE = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
ECS = yaml.safe_load((DEPLOY / "run_launcher.ecs.yaml").read_text())
K8S = yaml.safe_load((DEPLOY / "run_launcher.k8s.yaml").read_text())
LAUNCHERS = {"docker": INSTANCE, "ecs": ECS, "k8s": K8S}
# Alternatives to a listed setting (key-pair instead of password for Snowflake).
ALTERNATIVES = {"SNOWFLAKE_PRIVATE_KEY", "SNOWFLAKE_PRIVATE_KEY_PATH"}


def env_references(node: object) -> set[str]:
    """Every ``{env: NAME}`` in a piece of instance config."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_references(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(env_references(v) for v in node))
    return set()


@pytest.fixture
def deployment_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in set().union(*(env_references(config) for config in LAUNCHERS.values())):
        monkeypatch.setenv(name, "5432" if name.endswith("_PORT") else f"value-of-{name}")
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)


def test_the_instance_loads_and_builds_the_docker_run_launcher(
    deployment_env: None, tmp_path: Path
) -> None:
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.instance.ref import InstanceRef
    from dagster_docker import DockerRunLauncher

    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(INSTANCE))
    config, _ = dagster_instance_config(str(tmp_path))  # raises on any schema error
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {
        "env": "DAGSTER_PG_PASSWORD"
    }
    launcher = InstanceRef.from_dir(str(tmp_path)).run_launcher
    assert isinstance(launcher, DockerRunLauncher)
    assert launcher.networks == ["value-of-DAGSTER_DOCKER_NETWORK"]
    assert launcher.container_kwargs["init"] is True


def test_the_ecs_run_launcher_builds_against_its_task_definition(
    deployment_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EcsRunLauncher reads the task definition when it is built (moto's ECS in-process)."""
    import boto3
    from dagster._core.instance.ref import InstanceRef
    from dagster_aws.ecs import EcsRunLauncher
    from moto import mock_aws

    monkeypatch.setenv("DAGSTER_ECS_TASK_DEFINITION", "fraud-dagster-run")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({**INSTANCE, **ECS}))
    with mock_aws():
        ecs = boto3.client("ecs")
        ecs.register_task_definition(
            family="fraud-dagster-run",
            containerDefinitions=[{"name": "run", "image": "fraud-mlops:1", "memory": 4096}],
        )
        launcher = InstanceRef.from_dir(str(tmp_path)).run_launcher
        assert isinstance(launcher, EcsRunLauncher)
        assert launcher.task_definition.endswith(":task-definition/fraud-dagster-run:1")
        monkeypatch.setenv("DAGSTER_ECS_TASK_DEFINITION", "no-such-family")
        with pytest.raises(Exception, match="no-such-family|not found|Unable"):
            _ = InstanceRef.from_dir(str(tmp_path)).run_launcher


def test_the_k8s_run_launcher_sends_each_run_as_a_job_of_the_image(
    deployment_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """K8sRunLauncher built from the deploy file launches a run of the code location: the Job
    it sends over HTTP (to a recording API server) fits the Kubernetes models and carries the
    code location's image, the service account, the secrets and every listed setting."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.instance import DagsterInstance
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
    from kubernetes.client import V1Job

    from tests.support.k8s_api import recording_k8s_api

    image = "registry.example/fraud-mlops:1.2.3"
    monkeypatch.setenv("DAGSTER_K8S_NAMESPACE", "fraud-dagster")
    for name in K8S["run_launcher"]["config"]["env_vars"]:  # the daemon's environment
        monkeypatch.setenv(name, os.environ.get(name) or f"daemon-{name}")
    with recording_k8s_api() as api:
        launcher_config = {
            **K8S["run_launcher"]["config"],
            # in the cluster: load_incluster_config (the pod's service account token)
            "load_incluster_config": False,
            "kubeconfig_file": str(api.kubeconfig(tmp_path)),
        }
        local = {  # runs stored in SQLite here: no Postgres needed to build a Job
            "storage": {"sqlite": {"base_dir": str(tmp_path / "storage")}},
            "run_launcher": {**K8S["run_launcher"], "config": launcher_config},
        }
        (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(local))
        instance = DagsterInstance.from_config(str(tmp_path))
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        # What `dagster api grpc -m fraud_assets.definitions` reports for a run of its image.
        origin = JobPythonOrigin(
            "ingest_batch",
            RepositoryPythonOrigin(
                executable_path="/app/.venv/bin/python",
                code_pointer=ModuleCodePointer("fraud_assets.definitions", "defs", None),
                container_image=image,
            ),
        )
        run = instance.create_run_for_job(
            build_definitions({}).resolve_job_def("ingest_batch"), job_code_origin=origin
        )
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))

    ((namespace, sent),) = api.jobs
    assert namespace == "fraud-dagster"
    job = k8s_model_from_dict(V1Job, k8s_snake_case_dict(V1Job, sent))  # strict: known keys only
    assert job.spec.backoff_limit == 0 and job.metadata.labels["dagster/job"] == "ingest_batch"
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert container.image == image
    assert pod.service_account_name == "value-of-DAGSTER_K8S_SERVICE_ACCOUNT"
    assert container.args[:5] == ["/app/.venv/bin/python", "-m", "dagster", "api", "execute_run"]
    assert container.resources.requests == {"cpu": "500m", "memory": "2Gi"}
    # The instance reaches the run in its command, with {env: ...} references unresolved: no
    # value of the launcher's environment (a password) is written into the Job.
    assert '"InstanceRef"' in container.args[5] and "value-of-" not in container.args[5]
    env = {e.name: e for e in container.env}
    password = env["DAGSTER_PG_PASSWORD"].value_from.secret_key_ref
    assert (password.name, password.key) == (
        "value-of-DAGSTER_K8S_PG_PASSWORD_SECRET", "postgresql-password"
    )  # fmt: skip
    assert {s.secret_ref.name for s in container.env_from if s.secret_ref} == {"fraud-secrets"}
    for name in launcher_config["env_vars"]:
        assert env[name].value == os.environ[name], name
    assert instance.get_run_by_id(run.run_id).tags["dagster/image"] == image


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_every_run_gets_the_settings_prod_needs(launcher: str) -> None:
    """Each setting FRAUD_ENV=prod requires, and each the instance config reads, is passed to
    the runs (on ECS and Kubernetes the passwords are secrets instead)."""
    listed = set(LAUNCHERS[launcher]["run_launcher"]["config"]["env_vars"])
    with pytest.raises(SettingsError) as error:
        build_definitions({"FRAUD_ENV": "prod"})
    required = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", str(error.value))) - ALTERNATIVES
    required |= {"FRAUD_ENV"} | env_references(INSTANCE["storage"])
    required |= env_references(INSTANCE["compute_logs"])
    if launcher != "docker":
        required -= {"DAGSTER_PG_PASSWORD", "SNOWFLAKE_PASSWORD"}  # secrets
    assert required - listed == set()
    assert not {"DAGSTER_PG_PASSWORD", "SNOWFLAKE_PASSWORD"} & listed or launcher == "docker"


def test_the_queue_limits_and_reruns_are_the_jobs_own() -> None:
    defs = build_definitions({})
    limits = INSTANCE["concurrency"]["runs"]["tag_concurrency_limits"]
    ingest = defs.resolve_job_def("ingest_batch")
    assert {(limit["key"], limit["value"]) for limit in limits} == {(RUN_KIND_TAG, "ingest")}
    assert ingest.tags[RUN_KIND_TAG] == "ingest"
    rerun = {
        job.name for job in defs.resolve_all_job_defs() if RERUN_SAFE.items() <= job.tags.items()
    }
    assert rerun == {"ingest_batch", "score_batch", "report_metrics"}  # never train_model
    assert INSTANCE["run_retries"] == {
        "enabled": True, "max_retries": 0, "retry_on_asset_or_op_failure": False
    }  # fmt: skip
    assert INSTANCE["run_monitoring"]["enabled"] is True
    assert fraud_model.op.pool == "training"
    assert INSTANCE["concurrency"]["pools"] == {"default_limit": 1, "granularity": "run"}
