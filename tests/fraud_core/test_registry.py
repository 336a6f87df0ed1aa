"""Promotions are recorded; a rollback restores the previous champion, safely."""

import shutil

import pytest

from fraud_cli.main import main
from fraud_core.lakehouse import Lakehouse
from fraud_core.model.bundle import ModelBundle
from fraud_core.registry import history, promote, rollback


@pytest.fixture
def lh(champion_lakehouse, tmp_path) -> Lakehouse:
    root = tmp_path / "lake"
    shutil.copytree(champion_lakehouse, root)
    lake = Lakehouse(str(root))
    second = ModelBundle.load(lake, "fm-test-1")
    second.version = "fm-test-2"
    second.save(lake)
    return lake


def test_promote_then_rollback(lh: Lakehouse, capsys) -> None:
    promote(lh, {"version": "fm-test-1"})
    promote(lh, {"version": "fm-test-2"})
    assert lh.champion()["previous_version"] == "fm-test-1"
    assert [h["version"] for h in history(lh)] == ["fm-test-1", "fm-test-2"]
    assert main(["model", "rollback", "--lakehouse", lh.uri]) == 0
    assert "champion is fm-test-1 again (rolled back from fm-test-2)" in capsys.readouterr().out
    assert lh.champion()["version"] == "fm-test-1"
    assert [h["version"] for h in history(lh)] == ["fm-test-1"]


def test_nothing_to_roll_back_to(lh: Lakehouse) -> None:
    promote(lh, {"version": "fm-test-1"})
    with pytest.raises(ValueError, match="nothing to roll back to"):
        rollback(lh)
    assert main(["model", "rollback", "--lakehouse", lh.uri]) == 2  # clear error, exit code 2


def test_rollback_refuses_a_broken_previous_bundle(lh: Lakehouse) -> None:
    promote(lh, {"version": "fm-test-1"})
    promote(lh, {"version": "fm-test-2"})
    lh.write_bytes(lh.model_path("fm-test-1", "model.safetensors"), b"broken")
    with pytest.raises(ValueError, match="cannot roll back to fm-test-1: .*checksum"):
        rollback(lh)
    assert lh.champion()["version"] == "fm-test-2"  # nothing changed
