"""The project's image: what the Dockerfile installs and runs matches the project.

The image is built and run for real in test_image.py (SageMaker's `serve`, commands passed
through) and tests/integration/test_step_functions_batch.py (every training step a Batch
container). Here, without Docker: the torch pin, the packages it copies, the entry point's
dispatch, and a real wheel of the project carrying the files read at run time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from fraud_cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_torch_pin_matches_the_project() -> None:
    pinned = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch")]
    assert pinned == ["torch==2.13.0"]
    assert re.search(
        r'pip install( --\S+)* --index-url "\$TORCH_INDEX_URL" torch==2\.13\.0', DOCKERFILE
    )
    for setting in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        assert re.search(rf"^ARG {setting}$", DOCKERFILE, flags=re.M), setting  # passed to pip
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in DOCKERFILE
    assert "ARG BASE_IMAGE=python:3.11-slim" in DOCKERFILE
    assert re.search(r"pip install( --\S+)* -c constraints\.txt -r requirements\.txt", DOCKERFILE)
    assert "pip install --no-deps ." in DOCKERFILE


def test_copies_every_package_the_project_installs() -> None:
    copied = set(re.findall(r"^COPY (\w+) \./\1$", DOCKERFILE, flags=re.M))
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert copied == packages


def test_sagemaker_serve_binds_all_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 'ENTRYPOINT ["fraud-entrypoint"]' in DOCKERFILE
    assert re.search(r'^CMD \["serve"\]', DOCKERFILE, flags=re.M)
    assert "FRAUD_SERVE_HOST=0.0.0.0" in DOCKERFILE and "FRAUD_SERVE_PORT=8080" in DOCKERFILE
    assert "EXPOSE 8080" in DOCKERFILE
    monkeypatch.setenv("FRAUD_SERVE_HOST", "0.0.0.0")
    monkeypatch.setenv("FRAUD_SERVE_PORT", "8080")
    args = build_parser().parse_args(["serve"])  # what `docker run IMAGE serve` gives
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    monkeypatch.delenv("FRAUD_SERVE_HOST")
    monkeypatch.delenv("FRAUD_SERVE_PORT")
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"  # loopback outside images


@pytest.mark.parametrize(
    ("args", "runs"),
    [
        ([], "fraud serve"),
        (["serve"], "fraud serve"),
        (["serve", "--port", "9000"], "fraud serve --port 9000"),
        (["bash", "-c", "echo step"], "bash -c echo step"),  # an AWS Batch task's command
        (["dagster", "api", "grpc"], "dagster api grpc"),  # the Dagster code location
    ],
)
def test_the_entry_point_serves_or_passes_the_command_through(
    tmp_path: Path, args: list[str], runs: str
) -> None:
    # Put recording stand-ins for fraud/bash/dagster first on PATH and run the real script.
    for name in ("fraud", "bash", "dagster"):
        fake = tmp_path / name
        fake.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        fake.chmod(0o755)
    done = subprocess.run(
        ["sh", str(ROOT / "deploy" / "docker" / "entrypoint.sh"), *args],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == runs


def test_wheel_carries_the_runtime_data_files(tmp_path: Path) -> None:
    # Built from a copy of what the Dockerfile copies, so no build/ lands in the checkout.
    source = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for package in re.findall(r"^COPY (\w+) \./\1$", DOCKERFILE, flags=re.M):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__py*"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("fraud_mlops-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "metaflow_jobs/config/training.json" in names  # the flow's default settings
    assert "serving/examples/claim.json" in names  # the OpenAPI example and the smoke test
    assert "fraud_core/model/fast.py" in names
