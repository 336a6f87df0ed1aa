"""Hot swap with the lakehouse on S3 (moto): the service reads the champion pointer, bundles
and raw batches through fsspec, so the same polling, refusal and history reload work there."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import RAW
from fraud_core.model.bundle import WEIGHTS_FILE, ModelBundle
from serving.api.models import load_example
from serving.core.config import Settings
from serving.main import create_app
from tests.support.http import wait_for_json

pytestmark = pytest.mark.integration
KEY = "s3-test-key-0123456789abcdef"


def test_hot_swap_on_s3(
    champion_lakehouse: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # s3fs reads it like any AWS tool
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=bucket)
    for path in champion_lakehouse.rglob("*"):
        if path.is_file():
            key = f"lake/{path.relative_to(champion_lakehouse).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    uri = f"s3://{bucket}/lake"
    lh = Lakehouse(uri)
    settings = Settings(
        lakehouse_uri=uri, api_keys=[KEY], auth_disabled=False, poll_seconds=0.2, torch_threads=0
    )
    example = load_example()
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as c:
        assert c.get("/readyz").json()["model_version"] == "fm-test-1"

        bundle = ModelBundle.load(lh, "fm-test-1")
        bundle.version = "fm-s3-bad"
        bundle.save(lh)
        lh.write_bytes(lh.model_path("fm-s3-bad", WEIGHTS_FILE), b"truncated")
        lh.set_champion({"version": "fm-s3-bad"})
        ready = wait_for_json(c, "/readyz", lambda b: b.get("reload_error"), timeout=30.0)
        assert "checksum mismatch" in ready["reload_error"]
        assert c.post("/v1/score", json=example).json()["model_version"] == "fm-test-1"

        bundle.version = "fm-s3-2"
        bundle.save(lh)
        lh.set_champion({"version": "fm-s3-2"})
        info = wait_for_json(c, "/v1/model", lambda b: b["version"] == "fm-s3-2", timeout=30.0)
        assert info["version"] == "fm-s3-2"
        assert info["bundle_uri"].startswith(f"s3://{bucket}/lake/models/fm-s3-2")
        assert c.post("/v1/score", json=example).json()["model_version"] == "fm-s3-2"

        extra = lh.read_batch(RAW, "b1").head(50).copy()
        extra["claim_id"] = "S3-" + extra["claim_id"].astype(str)
        lh.write_batch(RAW, "b9", extra)
        info = wait_for_json(c, "/v1/model", lambda b: "b9" in b["history_batches"], timeout=30.0)
        assert info["history_batches"] == ["b0", "b1", "b2", "b9"]
