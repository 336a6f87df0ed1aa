"""The scoring API in-process (TestClient): validation, scoring, model info, probes, hot swap."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraud_core.features import build_features
from fraud_core.lakehouse import RAW, Lakehouse
from fraud_core.model.bundle import ModelBundle
from fraud_core.schema import INPUT_COLUMNS, claims_frame, coerce_claims
from fraud_core.scoring import ClaimScorer
from serving.api.models import Claim, load_example
from serving.core.config import Settings
from serving.main import create_app


def _settings(root: Path, **overrides: Any) -> Settings:
    """Settings for an in-process app (torch_threads=0: leave the test process's torch alone)."""
    return Settings(lakehouse_uri=str(root), **{"poll_seconds": 0, "torch_threads": 0, **overrides})


@pytest.fixture(scope="module")
def client(champion_lakehouse: Path) -> Iterator[TestClient]:
    app = create_app(_settings(champion_lakehouse))
    with TestClient(app) as c:
        yield c


@pytest.fixture
def example() -> dict[str, Any]:
    return load_example()


def _field_errors(response: Any) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in response.json()["detail"]]


def test_example_has_every_input_column(example: dict[str, Any]) -> None:
    assert set(example) == set(INPUT_COLUMNS)


def test_claims_frame_types_like_coerce_claims(example: dict[str, Any]) -> None:
    records = [
        Claim.model_validate({**example, "claim_id": f"C{i}", "witnesses": i}).model_dump()
        for i in range(3)
    ]
    expected = coerce_claims(pd.DataFrame(records)).frame
    pd.testing.assert_frame_equal(claims_frame(records), expected)


def test_score_example(client: TestClient, example: dict[str, Any]) -> None:
    r = client.post("/v1/score", json=example)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["claim_id"] == example["claim_id"]
    assert 0.0 <= body["fraud_score"] <= 1.0
    assert body["decision"] in ("investigate", "fast_track")
    assert body["model_version"] == "fm-test-1"
    assert body["threshold"] == pytest.approx(0.05)
    assert body["decision"] == ("investigate" if body["fraud_score"] >= 0.05 else "fast_track")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"claimed_amount": -10.0}, "claimed_amount"),
        ({"region": "atlantis"}, "region"),
        ({"incident_type": "alien_abduction"}, "incident_type"),
        ({"claim_date": "yesterday"}, "claim_date"),
        ({"witnesses": 2.5}, "witnesses"),
        ({"claim_id": "   "}, "claim_id"),
        ({"claimed_ammount": 100.0}, "claimed_ammount"),  # typo: refused, not ignored
    ],
)
def test_invalid_claim_is_422_naming_the_field(
    client: TestClient, example: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    r = client.post("/v1/score", json={**example, **change})
    assert r.status_code == 422, r.text
    assert ("body", field) in _field_errors(r)


def test_missing_field_is_422(client: TestClient, example: dict[str, Any]) -> None:
    example.pop("coverage_limit")
    r = client.post("/v1/score", json=example)
    assert r.status_code == 422
    assert [e["type"] for e in r.json()["detail"]] == ["missing"]
    assert ("body", "coverage_limit") in _field_errors(r)


def test_pair_rule_is_422(client: TestClient, example: dict[str, Any]) -> None:
    r = client.post("/v1/score", json={**example, "claimed_amount": 30000.0})
    assert r.status_code == 422
    assert "amount_within_limit" in r.text


def test_batch_reports_bad_claims_by_index(client: TestClient, example: dict[str, Any]) -> None:
    claims = [
        {**example, "claim_id": "B-0"},
        {**example, "claim_id": "B-1", "claimed_amount": -1},
        {**example, "claim_id": "B-2", "claimed_amount": 9000.0},
        {**example, "claim_id": "B-0"},  # duplicate of index 0
        {**example, "claim_id": "B-4", "region": "nowhere", "extra": 1},
    ]
    r = client.post("/v1/score/batch", json={"claims": claims})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "fm-test-1"
    results = body["results"]
    assert [x["index"] for x in results] == [0, 1, 2, 3, 4]
    assert [x.get("claim_id") for x in results] == ["B-0", None, "B-2", None, None]
    assert [e["loc"] for e in results[1]["error"]] == [["claimed_amount"]]
    assert results[3]["error"][0]["type"] == "duplicate_claim_id"
    assert {tuple(e["loc"]) for e in results[4]["error"]} == {("region",), ("extra",)}
    # The bad claims change nothing: same scores as a batch of just the good ones (claims of
    # one batch count as each other's history, as in a pipeline batch).
    good = client.post("/v1/score/batch", json={"claims": [claims[0], claims[2]]}).json()
    assert [x["fraud_score"] for x in good["results"]] == pytest.approx(
        [results[0]["fraud_score"], results[2]["fraud_score"]]
    )


def test_batch_too_large_or_malformed(client: TestClient, example: dict[str, Any]) -> None:
    assert client.post("/v1/score/batch", json={"claims": []}).status_code == 422
    assert client.post("/v1/score/batch", json={"claims": [1, 2]}).status_code == 422
    too_many = {"claims": [example] * 10_001}
    assert client.post("/v1/score/batch", json=too_many).status_code == 422


def test_batch_over_server_limit_is_413(champion_lakehouse: Path, example: dict[str, Any]) -> None:
    with TestClient(create_app(_settings(champion_lakehouse, max_batch_size=2))) as c:
        r = c.post("/v1/score/batch", json={"claims": [example] * 3})
        assert r.status_code == 413
        assert "at most 2" in r.json()["detail"]


def test_model_info(client: TestClient) -> None:
    r = client.get("/v1/model")
    assert r.status_code == 200
    info = r.json()
    assert info["version"] == "fm-test-1"
    assert info["threshold"] == pytest.approx(0.05)
    assert info["training_batches"] == ["b0", "b1", "b2"]
    assert info["metaflow_run"] is None  # the fixture trains without Metaflow
    assert "average_precision" in info["metrics"]["test"]["model"]
    assert info["created_at"]


def test_probes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["model_version"] == "fm-test-1"
    assert r.json()["reload_error"] is None


def test_openapi_documents_claim(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    claim = schema["components"]["schemas"]["Claim"]
    assert claim["additionalProperties"] is False
    assert set(claim["required"]) == set(INPUT_COLUMNS)
    assert claim["properties"]["region"]["enum"] == ["north", "south", "east", "west", "central"]
    assert claim["examples"][0]["claim_id"] == load_example()["claim_id"]
    assert "index" in schema["paths"]["/v1/score/batch"]["post"]["description"]


def test_no_champion_is_503_but_alive(tmp_path: Path, example: dict[str, Any]) -> None:
    app = create_app(_settings(tmp_path))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert "no champion model" in ready.json()["detail"]
        scored = c.post("/v1/score", json=example)
        assert scored.status_code == 503
        assert scored.json()["detail"].startswith("no model loaded: no champion model")
        assert c.get("/v1/model").status_code == 503


def _wait_for(c: TestClient, path: str, predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = c.get(path).json()
        if predicate(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_hot_swap_and_bad_bundle_refused(
    champion_lakehouse: Path, tmp_path: Path, example: dict[str, Any]
) -> None:
    root = tmp_path / "lh"
    shutil.copytree(champion_lakehouse, root)
    lh = Lakehouse(str(root))
    app = create_app(_settings(root, poll_seconds=0.2))
    with TestClient(app) as c:
        assert c.get("/v1/model").json()["version"] == "fm-test-1"

        # A champion whose bundle is missing: refused, the old model keeps serving.
        lh.set_champion({"version": "fm-missing"})
        ready = _wait_for(c, "/readyz", lambda b: b.get("reload_error"))
        assert "fm-missing" in ready["reload_error"]
        assert ready["model_version"] == "fm-test-1"
        assert c.post("/v1/score", json=example).json()["model_version"] == "fm-test-1"

        bundle = ModelBundle.load(lh, "fm-test-1")
        bundle.version = "fm-test-2"
        bundle.save(lh)
        lh.set_champion({"version": "fm-test-2"})
        info = _wait_for(c, "/v1/model", lambda b: b["version"] == "fm-test-2")
        assert info["version"] == "fm-test-2"
        assert c.post("/v1/score", json=example).json()["model_version"] == "fm-test-2"
        assert c.get("/readyz").json()["reload_error"] is None


@pytest.fixture(scope="module")
def scorer_and_history(champion_lakehouse: Path) -> tuple[ClaimScorer, pd.DataFrame]:
    lh = Lakehouse(str(champion_lakehouse))
    return ClaimScorer.from_lakehouse(lh), lh.read_batches(RAW)


@pytest.mark.parametrize("shift_days", [0, 3, 30, 31, 90, 91, 365, 366])
def test_scorer_history_subset_matches_full_history(
    scorer_and_history: tuple[ClaimScorer, pd.DataFrame], shift_days: int
) -> None:
    """Handing build_features only the request's window of history rows changes nothing.

    New claims copy existing ones (new ids), dated ``shift_days`` later: the originals sit
    exactly on the edges of the 30/90/365-day windows.
    """
    scorer, history = scorer_and_history
    assert len(scorer.history) == len(history)
    claims = history.sample(60, random_state=shift_days).reset_index(drop=True)
    claims["claim_id"] = "NEW-" + claims["claim_id"].astype(str)
    claims["claim_date"] = claims["claim_date"] + pd.Timedelta(days=shift_days)
    subset = scorer.history_for(claims)
    assert len(subset) < len(history) / 2
    full = build_features(claims, history)
    pd.testing.assert_frame_equal(build_features(claims, subset), full)
    got = scorer.score(claims)
    assert list(got["claim_id"]) == list(claims["claim_id"])
    np.testing.assert_allclose(got["fraud_score"], scorer.bundle.predict_proba(full), rtol=1e-6)


def test_one_claim_gets_a_few_history_rows(
    scorer_and_history: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    scorer, history = scorer_and_history
    claim = history.iloc[[len(history) // 2]].reset_index(drop=True)
    subset = scorer.history_for(claim)
    assert 0 < len(subset) < 300  # this policyholder's year and this provider's 90 days
    assert set(subset["policyholder_id"]) | set(subset["provider_id"]) >= {
        claim.at[0, "policyholder_id"],
        claim.at[0, "provider_id"],
    }
