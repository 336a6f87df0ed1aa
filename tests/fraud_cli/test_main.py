"""The ``fraud`` command's deploy-training: the state machine is the one the fraud_model asset
triggers (one reading of FRAUD_STATE_MACHINE), and missing AWS settings exit 2 naming them."""

from __future__ import annotations

import pytest

from fraud_assets.resources.training import (
    IMAGE_SETTING,
    STEP_FUNCTIONS_SETTINGS,
    StepFunctionsTraining,
)
from fraud_cli.main import main


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """StepFunctionsTraining with its AWS side stood in for: records the deployed names."""
    names: list[str] = []

    def deploy(self: StepFunctionsTraining) -> str:
        names.append(self.state_machine)
        return self.state_machine

    monkeypatch.setattr(StepFunctionsTraining, "code_package", lambda self: {"fraud_core": 9})
    monkeypatch.setattr(StepFunctionsTraining, "deploy", deploy)
    monkeypatch.setenv(IMAGE_SETTING, "registry.example/fraud:1")
    return names


def test_deploy_training_names_the_state_machine_like_the_asset(
    deployed: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRAUD_STATE_MACHINE", "")
    assert main(["deploy-training"]) == 0
    monkeypatch.setenv("FRAUD_STATE_MACHINE", "fraud-training-staging")
    assert main(["deploy-training"]) == 0
    assert main(["deploy-training", "--state-machine", "fraud-training-x"]) == 0
    assert deployed == ["FraudTrainingFlow", "fraud-training-staging", "fraud-training-x"]
    out = capsys.readouterr().out
    assert "state machine fraud-training-x deployed" in out
    assert "registry.example/fraud:1" in out and "fraud_core 9" in out


def test_deploy_training_without_aws_settings_exits_2_naming_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in STEP_FUNCTIONS_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert main(["deploy-training"]) == 2
    err = capsys.readouterr().err
    assert "Step Functions training needs these variables set" in err
    assert all(name in err for name in STEP_FUNCTIONS_SETTINGS)
