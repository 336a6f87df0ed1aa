"""``scripts/deploy_model.py pull | deploy | smoke`` (see :mod:`fraud_cli.deploy`).

Flags override the settings of the same meaning (``--target``: ``DEPLOY_TARGET``,
``--model-dir``: ``MODEL_DIR``, ``--version``: ``MODEL_VERSION``, ``--timeout``:
``DEPLOY_TIMEOUT``). Exit codes: 0 done; 1 the deployment failed or did not become ready in
time; 2 a setting is missing or the bundle is unusable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from fraud_cli.deploy import DeployError, SettingError, k8s, sagemaker, service
from fraud_cli.deploy.pull import PulledModel, load_pulled, pull
from fraud_cli.deploy.settings import TARGETS, DeploySettings
from fraud_cli.deploy.smoke import smoke
from fraud_core.lakehouse import LakehouseError
from fraud_core.model.bundle import BundleError

EXIT_FAILED, EXIT_USAGE = 1, 2
DEPLOY: dict[str, Callable[[PulledModel, DeploySettings], str]] = {
    "fastapi": service.deploy,
    "sagemaker": sagemaker.deploy,
    "k8s": k8s.deploy,
}


def pull_model(settings: DeploySettings) -> PulledModel:
    """Pull ``MODEL_VERSION`` (or the champion) of ``LAKEHOUSE_URI`` into ``MODEL_DIR``."""
    source = settings.require("lakehouse_uri")
    model = pull(source, settings.model_dir, settings.model_version)
    print(
        f"pulled model {model.version} (sha256 {model.sha256[:12]}..., verified) from "
        f"{source} into {settings.model_dir}"
    )
    return model


def pulled_or_pull(settings: DeploySettings) -> PulledModel:
    """The model in ``MODEL_DIR`` when it is the one wanted, else a fresh pull."""
    model = load_pulled(settings.model_dir)
    if model is None or (settings.model_version and model.version != settings.model_version):
        return pull_model(settings)
    print(f"using model {model.version} pulled into {settings.model_dir} (checksum verified)")
    return model


def run(command: str, settings: DeploySettings) -> None:
    if command == "pull":
        pull_model(settings)
    elif command == "deploy":
        model = pulled_or_pull(settings)
        print(f"deployed: {DEPLOY[settings.deploy_target](model, settings)}")
    else:
        pulled = load_pulled(settings.model_dir)
        if pulled is None:
            raise SettingError(
                f"no pulled model in {settings.model_dir}: run `make pull-model` first"
            )
        print(f"smoke test passed: {smoke(pulled.version, settings)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Pull the champion model from a lakehouse, deploy it, smoke-test it."
    )
    parser.add_argument("command", choices=["pull", "deploy", "smoke"])
    parser.add_argument("--target", dest="deploy_target", choices=TARGETS, help="DEPLOY_TARGET")
    parser.add_argument("--model-dir", dest="model_dir", help="MODEL_DIR")
    parser.add_argument("--version", dest="model_version", help="a version instead of the champion")
    parser.add_argument("--timeout", dest="deploy_timeout", type=float, help="seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command")
    try:
        run(command, DeploySettings.from_env(**{k: v for k, v in args.items() if v is not None}))
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
    return 0
