"""The scoring API in-process (TestClient): validation, scoring, model info, probes, auth,
limits, metrics, hot swap. tests/serving/test_uvicorn.py repeats the essentials over HTTP."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from fraud_core.features import build_features
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import RAW
from fraud_core.model.bundle import ModelBundle
from fraud_core.schema import INPUT_COLUMNS, DateWindow, claims_frame, coerce_claims
from fraud_core.scoring import ClaimScorer
from serving.api.models import BatchResponse, Claim, ScoreResponse, load_example
from serving.core.config import Settings
from serving.core.security import ApiKeys
from serving.main import create_app
from tests.support.http import wait_for_json

KEY = "test-key-0123456789abcdef"
OLD_KEY = "old-key-0123456789abcdef"


def _settings(root: Path, **overrides: Any) -> Settings:
    """Settings for an in-process app (torch_threads=0: leave the test process's torch alone)."""
    defaults: dict[str, Any] = {
        "poll_seconds": 0,
        "torch_threads": 0,
        "api_keys": [KEY, OLD_KEY],
        "auth_disabled": False,  # whatever the CI environment says
        "bench_echo": False,
    }
    return Settings(lakehouse_uri=str(root), **{**defaults, **overrides})


def _client(app: Any) -> TestClient:
    return TestClient(app, headers={"X-API-Key": KEY})


@pytest.fixture(scope="module")
def client(champion_lakehouse: Path) -> Iterator[TestClient]:
    app = create_app(_settings(champion_lakehouse))
    with _client(app) as c:
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
    threshold = client.get("/v1/model").json()["threshold"]
    assert body["threshold"] == pytest.approx(threshold)
    assert 0.0 < threshold < 1.0
    assert body["decision"] == ("investigate" if body["fraud_score"] >= threshold else "fast_track")


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
    # the hand-encoded answer has the documented shape, both kinds of result included
    assert BatchResponse.model_validate(body).model_dump(exclude_unset=True) == body
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
    with _client(create_app(_settings(champion_lakehouse, max_batch_size=2))) as c:
        r = c.post("/v1/score/batch", json={"claims": [example] * 3})
        assert r.status_code == 413
        assert "at most 2" in r.json()["detail"]


def test_model_info(client: TestClient) -> None:
    r = client.get("/v1/model")
    assert r.status_code == 200
    info = r.json()
    assert info["version"] == "fm-test-1"
    assert 0.0 < info["threshold"] < 1.0
    assert info["training_batches"] == ["b0", "b1", "b2"]
    # the Delta version of each table the training read (as_of retrains on exactly them)
    assert info["table_versions"]["features/claims"] == 2 and "raw/claims" in info["table_versions"]
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
    with _client(app) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert "no champion model" in ready.json()["detail"]
        scored = c.post("/v1/score", json=example)
        assert scored.status_code == 503
        assert scored.json()["detail"].startswith("no model loaded: no champion model")
        assert c.get("/v1/model").status_code == 503


def test_hot_swap_and_bad_bundle_refused(
    champion_lakehouse: Path, tmp_path: Path, example: dict[str, Any]
) -> None:
    root = tmp_path / "lh"
    shutil.copytree(champion_lakehouse, root)
    lh = Lakehouse(str(root))
    app = create_app(_settings(root, poll_seconds=0.2))
    with _client(app) as c:
        assert c.get("/v1/model").json()["version"] == "fm-test-1"

        # A champion whose bundle is missing: refused, the old model keeps serving.
        lh.set_champion({"version": "fm-missing"})
        ready = wait_for_json(c, "/readyz", lambda b: b.get("reload_error"))
        assert "fm-missing" in ready["reload_error"]
        assert ready["model_version"] == "fm-test-1"
        assert c.post("/v1/score", json=example).json()["model_version"] == "fm-test-1"

        bundle = ModelBundle.load(lh, "fm-test-1")
        bundle.version = "fm-test-2"
        bundle.save(lh)
        lh.set_champion({"version": "fm-test-2"})
        info = wait_for_json(c, "/v1/model", lambda b: b["version"] == "fm-test-2")
        assert info["version"] == "fm-test-2"
        assert c.post("/v1/score", json=example).json()["model_version"] == "fm-test-2"
        assert c.get("/readyz").json()["reload_error"] is None

        # An incompatible bundle (trained on other features): refused with the reason.
        bundle.version = "fm-other-features"
        bundle.save(lh)
        manifest_path = lh.model_path("fm-other-features", "manifest.json")
        manifest = lh.read_json(manifest_path)
        manifest["features"]["numeric"] = [*manifest["features"]["numeric"], "new_feature"]
        lh.write_json(manifest_path, manifest)
        lh.set_champion({"version": "fm-other-features"})
        ready = wait_for_json(c, "/readyz", lambda b: b.get("reload_error"))
        assert "trained on other features" in ready["reload_error"]
        assert ready["model_version"] == "fm-test-2"
        assert c.post("/v1/score", json=example).json()["model_version"] == "fm-test-2"

        # New raw claims land for the same champion: the history is reloaded, same model.
        lh.set_champion({"version": "fm-test-2"})
        wait_for_json(c, "/readyz", lambda b: b.get("reload_error") is None)
        before = c.get("/v1/model").json()["history_claims"]
        extra = lh.read_batch(RAW, "b0").head(100).copy()
        extra["claim_id"] = "EXTRA-" + extra["claim_id"].astype(str)
        lh.write_batch(RAW, "b3", extra)
        info = wait_for_json(c, "/v1/model", lambda b: b["history_claims"] == before + 100)
        assert info["history_batches"] == ["b0", "b1", "b2", "b3"]
        assert info["version"] == "fm-test-2"


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


# --- auth ---------------------------------------------------------------------------------
def test_auth_missing_wrong_and_rotated_keys(
    champion_lakehouse: Path, example: dict[str, Any]
) -> None:
    app = create_app(_settings(champion_lakehouse))
    with TestClient(app) as c:
        missing = c.post("/v1/score", json=example)
        assert missing.status_code == 401
        assert missing.json()["detail"] == "missing X-API-Key header"
        assert missing.headers["www-authenticate"] == "X-API-Key"
        wrong = c.post("/v1/score", json=example, headers={"X-API-Key": KEY[:-1] + "X"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "invalid X-API-Key"
        for key in (KEY, OLD_KEY):  # both keys of a rotation are accepted
            ok = c.post("/v1/score", json=example, headers={"X-API-Key": key})
            assert ok.status_code == 200, ok.text
        for path in ("/v1/model",):
            assert c.get(path).status_code == 401
        assert c.post("/v1/score/batch", json={"claims": [example]}).status_code == 401
        # probes and metrics are open
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert c.get("/metrics").status_code == 200
    # after the rotation, the old key is gone
    with TestClient(create_app(_settings(champion_lakehouse, api_keys=[KEY]))) as c:
        old = c.post("/v1/score", json=example, headers={"X-API-Key": OLD_KEY})
        assert old.status_code == 401


def test_key_checked_before_routing_and_before_the_body(
    champion_lakehouse: Path, example: dict[str, Any]
) -> None:
    app = create_app(_settings(champion_lakehouse, max_body_bytes=2048))
    with TestClient(app) as c:
        # an unknown /v1 path tells a caller without a key nothing about which routes exist
        assert c.get("/v1/no-such-route").status_code == 401
        assert c.get("/v1/no-such-route", headers={"X-API-Key": KEY}).status_code == 404
        # a body over the limit from a caller without a key: refused as unauthenticated,
        # without being read or parsed
        big = b"{" + b" " * 10_000 + b"}"
        r = c.post("/v1/score", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 401
        # the 401s are counted like any answer
        text = c.get("/metrics").text
        assert 'fraud_api_requests_total{method="POST",route="/v1/score",status="401"} 1.0' in text
        assert 'route="unmatched",status="401"' in text


def test_metrics_can_require_a_key(champion_lakehouse: Path) -> None:
    app = create_app(_settings(champion_lakehouse, metrics_require_key=True))
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200


def test_auth_disabled_only_when_explicit(
    champion_lakehouse: Path, example: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FRAUD_API_KEYS", "FRAUD_API_AUTH_DISABLED", "FRAUD_ENV", "FRAUD_API_ENV"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="no API keys"):
        Settings(lakehouse_uri=str(champion_lakehouse))
    monkeypatch.setenv("FRAUD_API_AUTH_DISABLED", "true")
    settings = Settings(lakehouse_uri=str(champion_lakehouse), poll_seconds=0, torch_threads=0)
    with TestClient(create_app(settings)) as c:  # local demo: no key needed
        assert c.post("/v1/score", json=example).status_code == 200


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FRAUD_ENV": "prod"}, "FRAUD_ENV=prod refuses to start without them"),
        ({"FRAUD_ENV": "prod", "FRAUD_API_AUTH_DISABLED": "true"}, "local demo only"),
        ({"FRAUD_API_KEYS": "short"}, "at least 16"),
        ({"FRAUD_API_KEYS": "changethis-changethis"}, "placeholder"),
        ({"FRAUD_API_KEYS": KEY, "FRAUD_API_AUTH_DISABLED": "true"}, "choose one"),
    ],
)
def test_settings_refuse_unsafe_auth(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name in ("FRAUD_API_KEYS", "FRAUD_API_AUTH_DISABLED", "FRAUD_ENV", "FRAUD_API_ENV"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        create_app()


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_API_KEYS", f" {KEY} ,{OLD_KEY},")
    monkeypatch.setenv("FRAUD_ENV", "prod")
    monkeypatch.delenv("FRAUD_API_AUTH_DISABLED", raising=False)
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, OLD_KEY]
    assert KEY not in repr(settings)  # secrets stay out of logs
    keys = ApiKeys.from_settings(settings)
    assert keys.accepts(KEY) and keys.accepts(OLD_KEY)
    assert not keys.accepts(None) and not keys.accepts("") and not keys.accepts(KEY + "x")


# --- validation and limits ----------------------------------------------------------------
def test_422_names_field_and_reason(client: TestClient, example: dict[str, Any]) -> None:
    r = client.post(
        "/v1/score", json={**example, "claimed_amount": -1, "colour": "red", "region": "mars"}
    )
    assert r.status_code == 422
    by_field = {e["field"]: e for e in r.json()["detail"]}
    assert set(by_field) == {"claimed_amount", "colour", "region"}
    assert by_field["colour"]["type"] == "extra_forbidden"
    assert "greater than or equal to 0.01" in by_field["claimed_amount"]["msg"]
    assert "input" not in by_field["region"]  # the request is not echoed back
    rule = client.post("/v1/score", json={**example, "claimed_amount": 30000.0})
    (error,) = rule.json()["detail"]
    assert (error["field"], error["type"]) == ("claimed_amount", "amount_within_limit")
    assert "coverage_limit" in error["msg"]
    bad_json = client.post(
        "/v1/score", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422
    assert bad_json.json()["detail"][0]["type"] == "json_invalid"


def test_dates_a_claim_cannot_carry_are_422_with_the_contracts_reason(
    champion_lakehouse: Path, example: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAIM_DATE_MAX_SKEW_DAYS", "2")  # the pipeline's variable, shared
    settings = _settings(champion_lakehouse)
    assert settings.claim_date_max_skew_days == 2
    today = dt.datetime.now(dt.UTC).date()
    window = DateWindow.until_today(2, today=today)
    with _client(create_app(settings)) as c:

        def post(**change: str) -> Any:
            return c.post("/v1/score", json={**example, **change})

        assert post(claim_date=str(today + dt.timedelta(days=2))).status_code == 200
        for field, day in (
            ("claim_date", dt.date(9999, 12, 31)),  # 'unknown' in some claims systems
            ("claim_date", today + dt.timedelta(days=3)),
            ("policy_start_date", dt.date(1899, 12, 31)),
        ):
            r = post(**{field: day.isoformat()})
            assert r.status_code == 422, r.text
            (error,) = r.json()["detail"]
            assert (error["field"], error["type"]) == (field, "date_window")
            assert error["msg"] == window.problem(field, day)  # the quarantine's words
        batch = c.post(
            "/v1/score/batch",
            json={"claims": [example, {**example, "claim_id": "F", "claim_date": "9999-12-31"}]},
        ).json()
        assert batch["scored"] == 1 and batch["results"][1]["error"][0]["type"] == "date_window"


def test_body_size_limit_is_413_with_a_clear_message(
    champion_lakehouse: Path, example: dict[str, Any]
) -> None:
    app = create_app(_settings(champion_lakehouse, max_body_bytes=2048, max_batch_body_bytes=4096))
    with _client(app) as c:
        padded = {**example, "claim_id": "X" * 3000}
        r = c.post("/v1/score", json=padded)
        assert r.status_code == 413
        assert "at most 2,048 bytes" in r.json()["detail"]
        assert "FRAUD_API_MAX_BODY_BYTES" in r.json()["detail"]
        many = {"claims": [{**example, "claim_id": f"C{i}"} for i in range(12)]}
        r = c.post("/v1/score/batch", json=many)
        assert r.status_code == 413
        assert "FRAUD_API_MAX_BATCH_BODY_BYTES" in r.json()["detail"]
        # without a Content-Length (chunked), counted as it arrives
        chunks = (b" " * 1024 for _ in range(4))
        r = c.post("/v1/score", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert "at most 2,048 bytes" in r.json()["detail"]
        assert c.post("/v1/score", json=example).status_code == 200
        text = c.get("/metrics").text  # refused before routing, still counted on its route
        assert 'fraud_api_requests_total{method="POST",route="/v1/score",status="413"} 2.0' in text


def test_openapi_states_the_policies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["BatchRequest"]["additionalProperties"] is False
    assert (
        "unknown fields are refused"
        in schema["components"]["schemas"]["Claim"]["description"].lower()
    )
    assert "Unknown fields are refused" in schema["info"]["description"]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    score = schema["paths"]["/v1/score"]["post"]
    assert {"401", "413", "422", "503"} <= set(score["responses"])
    assert score["security"] == [{"APIKeyHeader": []}]
    (param,) = score["parameters"]
    assert (param["name"], param["in"], param["schema"]["maximum"]) == ("top_features", "query", 18)
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert "/v1/echo" not in schema["paths"]


# --- scores, attribution, lineage, metrics ------------------------------------------------
def test_score_has_top_features(client: TestClient, example: dict[str, Any]) -> None:
    body = client.post("/v1/score", json=example).json()
    ScoreResponse.model_validate(body)  # the hand-encoded answer has the documented shape
    top = body["top_features"]
    assert len(top) == 3
    sizes = [abs(t["contribution"]) for t in top]
    assert sizes == sorted(sizes, reverse=True)
    names = client.get("/v1/model").json()["features"]
    assert {t["feature"] for t in top} <= set(names["numeric"]) | set(names["categorical"])
    five = client.post("/v1/score?top_features=5", json=example).json()
    assert len(five["top_features"]) == 5
    assert five["fraud_score"] == pytest.approx(body["fraud_score"])
    assert client.post("/v1/score?top_features=0", json=example).json()["top_features"] == []
    for bad in ("99", "-1", "abc", "1.5", ""):
        r = client.post(f"/v1/score?top_features={bad}", json=example)
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["field"] == "top_features"


def test_score_equals_pipeline_scoring(
    client: TestClient, example: dict[str, Any], scorer_and_history: tuple[ClaimScorer, Any]
) -> None:
    scorer, history = scorer_and_history
    claim = claims_frame([Claim.model_validate(example).model_dump()])
    expected = scorer.bundle.predict_proba(build_features(claim, history))[0]
    got = client.post("/v1/score", json=example).json()["fraud_score"]
    assert got == pytest.approx(expected, rel=1e-5)


def test_batch_top_features_and_counts(client: TestClient, example: dict[str, Any]) -> None:
    claims = [{**example, "claim_id": f"T-{i}"} for i in range(3)] + [{"claim_id": "bad"}]
    body = client.post("/v1/score/batch?top_features=2", json={"claims": claims}).json()
    assert (body["scored"], body["failed"]) == (3, 1)
    assert all(len(r["top_features"]) == 2 for r in body["results"][:3])
    missing = {e["field"] for e in body["results"][3]["error"]}
    assert "coverage_limit" in missing
    plain = client.post("/v1/score/batch", json={"claims": claims[:1]}).json()
    assert plain["results"][0]["top_features"] == []


def test_model_lineage_from_pointer_and_manifest(champion_lakehouse: Path, tmp_path: Path) -> None:
    root = tmp_path / "lh"
    shutil.copytree(champion_lakehouse, root)
    lh = Lakehouse(str(root))
    pointer = {
        "version": "fm-test-1",
        "metaflow_run": "FraudTrainingFlow/1731",
        "dagster_run_id": "dagster-run-abc",
        "trained_at": "2026-11-01T10:00:00+00:00",
        "promoted_at": "2026-11-01T10:05:00+00:00",
        "promoted_by_run": "dagster-run-def",
        "previous_version": None,
        "bundle_uri": lh.url("models/fm-test-1"),
    }
    lh.set_champion(pointer)
    with _client(create_app(_settings(root))) as c:
        info = c.get("/v1/model").json()
    assert info["metaflow_run"] == "FraudTrainingFlow/1731"
    assert info["dagster_run_id"] == "dagster-run-abc"
    assert info["trained_at"] == "2026-11-01T10:00:00+00:00"
    assert info["promoted_by_run"] == "dagster-run-def"
    assert info["bundle_uri"].endswith("models/fm-test-1")
    assert info["training_batches"] == ["b0", "b1", "b2"]
    assert info["history_batches"] == ["b0", "b1", "b2"]
    assert info["history_claims"] > 0
    assert info["split"]
    assert "gradient x input" in info["attribution"]
    assert info["champion"]["dagster_run_id"] == "dagster-run-abc"


def test_metrics_exposition(client: TestClient, example: dict[str, Any]) -> None:
    client.post("/v1/score", json={**example, "claim_id": "M-1"})
    client.post("/v1/score", json={**example, "claimed_amount": -1})
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'fraud_api_requests_total{method="POST",route="/v1/score",status="200"}' in text
    assert 'fraud_api_requests_total{method="POST",route="/v1/score",status="422"}' in text
    assert 'route="unmatched",status="404"' in text
    assert (
        'fraud_api_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/score"}'
        in text
    )
    assert 'fraud_api_scores_bucket{le="0.1",model_version="fm-test-1"}' in text
    assert 'fraud_api_decisions_total{decision="fast_track",model_version="fm-test-1"}' in text
    assert 'fraud_api_model_info{dagster_run_id="",metaflow_run="",version="fm-test-1"} 1.0' in text
    assert "fraud_api_ready 1.0" in text
    assert 'fraud_api_model_reloads_total{result="swapped"} 1.0' in text
    assert "process_resident_memory_bytes" in text
