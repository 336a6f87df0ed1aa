"""scripts/deploy_training.py (make deploy-training): a thin call of StepFunctionsTraining.deploy()
(tested against moto in tests/metaflow_jobs); here: what it says when settings are missing."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from fraud_assets.resources.training import STEP_FUNCTIONS_SETTINGS


def test_missing_metaflow_settings_are_named_and_exit_2(
    script_module: Callable[[str], ModuleType],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in STEP_FUNCTIONS_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("METAFLOW_BATCH_JOB_QUEUE", "fraud-training-queue")
    assert script_module("deploy_training").main() == 2
    err = capsys.readouterr().err
    missing = [n for n in STEP_FUNCTIONS_SETTINGS if n != "METAFLOW_BATCH_JOB_QUEUE"]
    assert "Step Functions training needs these variables set: " + ", ".join(missing) in err
