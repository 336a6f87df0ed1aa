"""The stores a landing zone and a lakehouse live on, for tests: a local folder, S3 (moto's
server) and ADLS (Azurite), each with the store's own client to drop files as a claims system
would (the servers come from the session fixtures of tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fraud_assets.resources import ADLSLanding, LandingZone, LocalLanding, S3Landing
from fraud_core.lakehouse import Lakehouse

AWS_SECRET = "fake-secret-that-must-never-be-logged"


@dataclass
class Store:
    """One backend: where the lakehouse is, the landing zone, and raw clients to write with."""

    name: str
    lakehouse_uri: str
    landing: LandingZone
    drop: Callable[[str, bytes], None]  # a file lands (written by the store's own client)
    write_beside: Callable[[str, bytes], None]  # another process writes into the lakehouse
    secrets: tuple[str, ...] = ()

    def lakehouse(self) -> Lakehouse:
        return Lakehouse(self.lakehouse_uri)


def local_store(tmp_path: Path, **intake: Any) -> Store:
    def write(root: Path) -> Callable[[str, bytes], None]:
        def put(rel: str, data: bytes) -> None:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)

        return put

    (tmp_path / "landing").mkdir()
    return Store(
        "local",
        str(tmp_path / "lake"),
        LocalLanding(path=str(tmp_path / "landing"), **intake),
        write(tmp_path / "landing"),
        write(tmp_path / "lake"),
    )


def s3_store(endpoint: str, monkeypatch: pytest.MonkeyPatch, **intake: Any) -> Store:
    import boto3

    # s3fs (the lakehouse) finds the endpoint where any AWS tool would: the environment.
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    bucket = f"claims-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket)

    def put(prefix: str) -> Callable[[str, bytes], None]:
        return lambda rel, data: client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=data)

    return Store(
        "s3",
        f"s3://{bucket}/lake",
        S3Landing(uri=f"s3://{bucket}/incoming", endpoint_url=endpoint, **intake),
        put("incoming"),
        put("lake"),
        (AWS_SECRET,),
    )


def adls_store(connection_string: str, monkeypatch: pytest.MonkeyPatch, **intake: Any) -> Store:
    from azure.storage.blob import BlobServiceClient

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string)
    parts = dict(p.split("=", 1) for p in connection_string.strip(";").split(";"))
    container = f"claims-{uuid.uuid4().hex[:10]}"
    service = BlobServiceClient.from_connection_string(connection_string)
    service.create_container(container)

    def put(prefix: str) -> Callable[[str, bytes], None]:
        def upload(rel: str, data: bytes) -> None:
            blob = service.get_blob_client(container, f"{prefix}/{rel}")
            blob.upload_blob(data, overwrite=True)

        return upload

    return Store(
        "adls",
        # Both URL forms work; the lakehouse uses the ADLS Gen2 one Databricks would.
        f"abfss://{container}@{parts['AccountName']}.dfs.core.windows.net/lake",
        ADLSLanding(uri=f"az://{container}/incoming", **intake),
        put("incoming"),
        put("lake"),
        (parts["AccountKey"], connection_string),
    )


def store_for(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **intake: Any
) -> Store:
    """The store named by ``request.param`` (``local``, ``s3`` or ``adls``); ``intake``: fields
    of its landing zone (feeds_file, chunk_rows...)."""
    if request.param == "s3":
        return s3_store(request.getfixturevalue("moto_endpoint"), monkeypatch, **intake)
    if request.param == "adls":
        return adls_store(request.getfixturevalue("azurite"), monkeypatch, **intake)
    return local_store(tmp_path, **intake)
