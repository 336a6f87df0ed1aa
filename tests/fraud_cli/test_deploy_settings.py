"""DeploySettings: every setting of pull/deploy/smoke read once, flags winning, bad values named."""

from __future__ import annotations

import pytest

from fraud_cli.deploy import SettingError
from fraud_cli.deploy.cli import main
from fraud_cli.deploy.settings import DeploySettings


def test_defaults_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEPLOY_TARGET", "MODEL_DIR", "K8S_REPLICAS", "K8S_APPLY", "FRAUD_ENV"):
        monkeypatch.delenv(name, raising=False)
    defaults = DeploySettings.from_env()
    assert (defaults.deploy_target, defaults.model_dir, defaults.k8s_replicas) == (
        "fastapi",
        "build/model",
        2,
    )
    monkeypatch.setenv("DEPLOY_TARGET", "k8s")
    monkeypatch.setenv("K8S_REPLICAS", "3")
    monkeypatch.setenv("K8S_APPLY", "true")
    monkeypatch.setenv("FRAUD_ENV", "")  # empty counts as unset
    monkeypatch.setenv("MODEL_DIR", "from-env")
    settings = DeploySettings.from_env(model_dir="from-flag")
    assert (settings.deploy_target, settings.k8s_replicas, settings.k8s_apply) == ("k8s", 3, True)
    assert settings.fraud_env == "local" and settings.model_dir == "from-flag"


def test_missing_and_malformed_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_IMAGE_URI", raising=False)
    with pytest.raises(SettingError, match="SAGEMAKER_IMAGE_URI is not set"):
        DeploySettings.from_env().require("sagemaker_image_uri")
    monkeypatch.setenv("K8S_REPLICAS", "two")
    with pytest.raises(SettingError, match="K8S_REPLICAS: Input should be a valid integer"):
        DeploySettings.from_env()


def test_sagemaker_artifacts_go_under_the_lakehouse_on_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_ARTIFACT_URI", raising=False)
    monkeypatch.setenv("LAKEHOUSE_URI", "s3://lake/fraud/")
    assert DeploySettings.from_env().sagemaker_artifacts == "s3://lake/fraud/deploy/sagemaker"
    monkeypatch.setenv("LAKEHOUSE_URI", "/data/lake")
    with pytest.raises(SettingError, match="SAGEMAKER_ARTIFACT_URI must be an s3:// URI"):
        _ = DeploySettings.from_env().sagemaker_artifacts


def test_the_api_key_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_API_KEY", "k" * 32)
    settings = DeploySettings.from_env()
    assert "k" * 32 not in repr(settings) + str(settings)
    assert settings.fraud_api_key.get_secret_value() == "k" * 32


def test_bad_settings_exit_2_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEPLOY_TIMEOUT", "-1")
    assert main(["pull"]) == 2
    assert "DEPLOY_TIMEOUT: Input should be greater than 0" in capsys.readouterr().err
    monkeypatch.delenv("DEPLOY_TIMEOUT")
    monkeypatch.delenv("LAKEHOUSE_URI", raising=False)
    assert main(["pull"]) == 2
    assert "LAKEHOUSE_URI is not set" in capsys.readouterr().err
