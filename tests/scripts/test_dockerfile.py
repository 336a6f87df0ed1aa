"""The scoring image: what the Dockerfile installs and runs matches the project.

Docker cannot pull a base image here (loopback-only network), so the image is not built in
the tests; what can be checked without it is: the torch pin, the packages it copies, the
command SageMaker runs (`docker run IMAGE serve`), and a real wheel of the project carrying
the files the service and the flow read at run time.
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
    assert re.search(r"pip install --index-url \S+/cpu torch==2\.13\.0", DOCKERFILE)
    assert "-c constraints.txt ." in DOCKERFILE


def test_copies_every_package_the_project_installs() -> None:
    copied = set(re.findall(r"^COPY (\w+) \./\1$", DOCKERFILE, flags=re.M))
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert copied == packages


def test_sagemaker_serve_binds_all_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 'ENTRYPOINT ["fraud"]' in DOCKERFILE
    assert re.search(r'^CMD \["serve"', DOCKERFILE, flags=re.M)
    assert "FRAUD_SERVE_HOST=0.0.0.0" in DOCKERFILE
    assert "EXPOSE 8080" in DOCKERFILE
    monkeypatch.setenv("FRAUD_SERVE_HOST", "0.0.0.0")
    args = build_parser().parse_args(["serve"])  # what `docker run IMAGE serve` gives
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    monkeypatch.delenv("FRAUD_SERVE_HOST")
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"  # loopback outside images


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
