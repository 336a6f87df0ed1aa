"""The champion watcher on its own (no app): loading, refusal, the retry after a refusal, and
the history reload, one :meth:`Champion.refresh` at a time."""

from __future__ import annotations

import asyncio
import gc
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_core.claim_versions import as_raw, content_hashes, with_versions
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import RAW
from fraud_core.schema import coerce_claims
from fraud_core.scoring import ClaimScorer
from fraud_core.simulate import SimulationConfig, simulate_claims
from serving.api.models import Claim, load_example
from serving.core import champion as champion_module
from serving.core.champion import Champion
from serving.core.metrics import Metrics


def _reloads(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("fraud_api_model_reloads_total", {"result": result})
    assert value is not None
    return value


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    """A swap freezes the heap (``freeze_heap``); the app's lifespan unfreezes it at the end."""
    yield
    gc.unfreeze()


@pytest.fixture
def lakehouse(champion_lakehouse: Path, tmp_path: Path) -> Path:
    root = tmp_path / "lh"
    shutil.copytree(champion_lakehouse, root)
    return root


def _champion(root: Path, reload_history: bool = True) -> Champion:
    example = vars(Claim.model_validate(load_example()))
    return Champion(str(root), Metrics(), example, reload_history=reload_history)


def test_refused_champion_is_retried_only_after_a_while(
    lakehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion = _champion(lakehouse)
    assert (champion.model, champion.error) == (None, "starting")
    asyncio.run(champion.refresh())
    assert champion.model is not None and champion.model.version == "fm-test-1"
    assert (champion.error, champion.pointer_version) == (None, "fm-test-1")
    assert _reloads(champion.metrics, "swapped") == 1

    Lakehouse(str(lakehouse)).set_champion({"version": "fm-missing"})
    asyncio.run(champion.refresh())
    assert champion.model.version == "fm-test-1"  # the old model keeps serving
    assert champion.pointer_version == "fm-missing"
    assert "champion fm-missing could not be loaded" in (champion.error or "")
    assert _reloads(champion.metrics, "refused") == 1

    asyncio.run(champion.refresh())  # the same champion again: not tried before the delay
    assert _reloads(champion.metrics, "refused") == 1
    monkeypatch.setattr(champion_module, "RETRY_REFUSED_SECONDS", 0.0)
    asyncio.run(champion.refresh())
    assert _reloads(champion.metrics, "refused") == 2
    assert champion.model.version == "fm-test-1"


def test_new_raw_batches_reload_the_history_only_when_asked(lakehouse: Path) -> None:
    lh = Lakehouse(str(lakehouse))
    reloading, fixed = _champion(lakehouse), _champion(lakehouse, reload_history=False)
    asyncio.run(reloading.refresh())
    asyncio.run(fixed.refresh())
    extra = lh.read_batch(RAW, "b0").head(10).copy()
    extra["claim_id"] = "EXTRA-" + extra["claim_id"].astype(str)
    lh.write_batch(RAW, "b3", extra)
    asyncio.run(reloading.refresh())
    asyncio.run(fixed.refresh())
    assert reloading.model is not None and fixed.model is not None
    assert reloading.model.scorer.history_batches == ["b0", "b1", "b2", "b3"]
    assert fixed.model.scorer.history_batches == ["b0", "b1", "b2"]
    assert _reloads(reloading.metrics, "swapped") == 2
    assert _reloads(fixed.metrics, "swapped") == 1


def _scores(scorer: ClaimScorer, claims: pd.DataFrame) -> np.ndarray:
    records = claims.to_dict("records")
    for record in records:
        record["claim_date"] = record["claim_date"].date()
        record["policy_start_date"] = record["policy_start_date"].date()
    return scorer.score_records(records).fraud_score


def test_new_batches_are_added_to_the_history_as_a_fresh_load_reads_it(lakehouse: Path) -> None:
    lh = Lakehouse(str(lakehouse))
    champion = _champion(lakehouse)
    asyncio.run(champion.refresh())
    assert champion.model is not None
    before = champion.model
    # a batch a year on: the window moves, the first months' claims leave it; and a
    # correction of a claim of b2 (a later version wins)
    later = as_raw(
        coerce_claims(
            simulate_claims(
                SimulationConfig(n_claims=300, seed=5, start_date="2025-06-01", days=30)
            )
            .drop(columns="scenario")
            .assign(policyholder_id=lambda f: lh.read_batch(RAW, "b2")["policyholder_id"][:300])
        ).frame
    )
    fixed = lh.read_batch(RAW, "b2").tail(2).copy()
    fixed["claimed_amount"] = fixed["claimed_amount"] + 1000.0
    # and a claim of b2 corrected to a date before the window: it leaves the history
    gone = lh.read_batch(RAW, "b2").head(1).drop(columns=["content_hash", "supersedes"])
    gone["claim_date"] = pd.Timestamp("2020-01-02")
    gone = with_versions(gone, content_hashes(gone), np.array(["b2"], dtype=object))
    assert gone["claim_id"].iloc[0] in set(before.scorer.history["claim_id"])
    lh.write_batch(RAW, "b3", pd.concat([as_raw(fixed.drop(columns="content_hash")), gone, later]))
    asyncio.run(champion.refresh())
    model = champion.model
    assert model is not before and model.version == before.version
    assert model.loaded_at == before.loaded_at  # the same model: only its history grew
    assert _reloads(champion.metrics, "swapped") == 2
    fresh = ClaimScorer.from_lakehouse(Lakehouse(str(lakehouse)), model.version)
    assert model.scorer.history_batches == fresh.history_batches == ["b0", "b1", "b2", "b3"]
    assert len(model.scorer.history) == len(fresh.history) < 0.6 * len(before.scorer.history)
    assert gone["claim_id"].iloc[0] not in set(model.scorer.history["claim_id"])
    key = ["claim_id"]
    pd.testing.assert_frame_equal(
        model.scorer.history.sort_values(key).reset_index(drop=True),
        fresh.history.sort_values(key).reset_index(drop=True),
    )
    probe = pd.concat([later.tail(50), lh.read_batch(RAW, "b2").tail(50)])
    np.testing.assert_allclose(_scores(model.scorer, probe), _scores(fresh, probe), rtol=1e-9)
    assert not np.allclose(_scores(before.scorer, probe), _scores(fresh, probe))
    # nothing new: the same model object; a batch replaced: the history is read anew
    asyncio.run(champion.refresh())
    assert champion.model is model
    assert model.scorer.updated(lh) is model.scorer
    lh.write_batch(RAW, "b3", later.head(100))
    assert model.scorer.updated(Lakehouse(str(lakehouse))) is None
    asyncio.run(champion.refresh())
    again = ClaimScorer.from_lakehouse(Lakehouse(str(lakehouse)), model.version)
    assert champion.model is not model
    assert len(champion.model.scorer.history) == len(again.history) != len(fresh.history)
    assert _reloads(champion.metrics, "swapped") == 3


def test_no_champion_says_what_to_do(tmp_path: Path) -> None:
    champion = _champion(tmp_path)
    asyncio.run(champion.refresh())
    assert champion.model is None and champion.pointer_version is None
    assert champion.error is not None and "no champion model in" in champion.error
    assert "materialize fraud_model and champion_model first" in champion.error
