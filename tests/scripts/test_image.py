"""The project's image, built from the Dockerfile and run in a real Docker engine on this machine.

- SageMaker: ``docker run IMAGE serve`` with what ``make pull-model`` wrote mounted at
  /opt/ml/model and the deploy script's container environment answers ``/ping`` and scores the
  example claim on ``/invocations`` exactly as ``make serve`` does on the host.
- The entry point passes any other command through unchanged (what AWS Batch and the Dagster
  code location rely on).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraud_cli.deploy import sagemaker
from fraud_cli.deploy.settings import DeploySettings
from fraud_cli.servers import free_port, scoring_api
from fraud_core.polling import poll_until
from serving.api.models import load_example
from tests.support.containers import DockerEngine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait_for_ping(
    docker: DockerEngine, container: str, url: str, timeout: float = 90
) -> httpx.Response:
    def ping() -> httpx.Response | None:
        state = docker.docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
        if state != "true":
            logs = docker.docker("logs", container, check=False)
            raise AssertionError(f"the container exited:\n{logs.stdout[-3000:]}{logs.stderr}")
        try:
            answer = httpx.get(f"{url}/ping", timeout=2)
        except httpx.HTTPError:
            return None
        return answer if answer.status_code == 200 else None

    return poll_until(ping, what=f"{url}/ping to answer 200", timeout=timeout, interval=0.5)


def test_sagemaker_serve_scores_like_make_serve(
    docker: DockerEngine,
    project_image: str,
    champion_lakehouse: Path,
    run_script: Any,
    tmp_path: Path,
) -> None:
    model_dir = tmp_path / "model"
    pulled = run_script(
        "deploy_model",
        "pull",
        env={"LAKEHOUSE_URI": str(champion_lakehouse), "MODEL_DIR": str(model_dir)},
    )
    assert pulled.returncode == 0, pulled.stderr
    container_env = sagemaker.container_env("fm-test-1", DeploySettings.from_env())
    port = free_port()  # SageMaker's 8080 may be taken on the host network
    flags = [f"--env={k}={v}" for k, v in {**container_env, "FRAUD_SERVE_PORT": port}.items()]
    started = time.monotonic()
    container = docker.docker(
        "run",
        "--detach",
        "--network=host",
        f"--volume={model_dir}:/opt/ml/model:ro",
        *flags,
        project_image,
        "serve",  # exactly what SageMaker runs
    ).stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        ping = _wait_for_ping(docker, container, url)
        print(f"container serving after {time.monotonic() - started:.1f} s")
        assert ping.json()["model_version"] == "fm-test-1"
        example = load_example()
        invoked = httpx.post(f"{url}/invocations", json=example, timeout=10)
        assert invoked.status_code == 200, invoked.text
        # /v1 accepts no key at all in SageMaker mode (SageMaker forwards none)
        assert httpx.post(f"{url}/v1/score", json=example, timeout=10).status_code == 401
    finally:
        docker.docker("rm", "--force", container)

    # `make serve` on the host, on the same pulled model.
    host_env = {"LAKEHOUSE_URI": str(model_dir), "FRAUD_API_AUTH_DISABLED": "true"}
    with scoring_api(host_env, log_path=tmp_path / "serve.log") as host_url:
        local = httpx.post(f"{host_url}/v1/score", json=example, timeout=10).json()
    (result,) = invoked.json()["results"]
    assert invoked.json()["model_version"] == local["model_version"] == "fm-test-1"
    assert result.pop("index") == 0
    assert result == local  # score, decision, threshold, top features: all the same


def test_any_other_command_passes_through_the_entry_point(
    docker: DockerEngine, project_image: str
) -> None:
    # What AWS Batch sends for a Metaflow step: `bash -c '...'`, run as given, in a writable
    # working directory, with python (not only python3) and the project importable.
    script = (
        "touch probe && python -c 'import fraud_core, metaflow, torch; print(torch.__version__)'"
    )
    ran = docker.docker("run", "--rm", "--network=host", project_image, "bash", "-c", script)
    assert ran.stdout.strip().endswith("2.13.0+cpu")
    # The Dagster code location of the next deployment: `dagster api grpc` exists in the image.
    dagster = docker.docker("run", "--rm", "--network=host", project_image, "dagster", "--version")
    assert "1.13" in dagster.stdout
