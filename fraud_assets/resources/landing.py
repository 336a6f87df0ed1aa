"""Landing zones: where claims files arrive. One interface, three stores.

* :class:`LocalLanding`: a folder on this machine.
* :class:`S3Landing`: an S3 prefix, listed with dagster-aws' ``get_objects`` through a boto3
  client from dagster-aws' ``S3Resource`` (``endpoint_url`` for S3-compatible stores such as
  moto or MinIO).
* :class:`ADLSLanding`: an ADLS Gen2 / Blob container prefix, listed with adlfs.

:func:`landing_for` picks one from ``LANDING_URI``. Credentials are never fields here: boto3
reads the AWS environment or profile, adlfs reads ``AZURE_STORAGE_CONNECTION_STRING`` (or
account name + key, or a service principal) from the environment.

All three list files recursively under the root, ignore names with a hidden (``.x``) or
``_x`` part (uploads in progress, metadata) and return every other file as a
:class:`LandedFile`, ordered by arrival: a file of an unsupported type is rejected by its run
with the reason, never skipped in silence. The sensor keeps its own cursor
(fraud_core.landing.LandingCursor) and passes ``since`` so a store that can filter by time does.
Files are read as streams (:meth:`LandingZone.open`: a local file, or an fsspec stream on S3
and ADLS), a chunk at a time.

The feed contracts (``feeds_file``, :mod:`fraud_core.feeds`) say how each file is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

import dagster as dg
import fsspec
from dagster_aws.s3 import S3Resource
from dagster_aws.s3.sensor import get_objects

from fraud_core.feeds import Feeds, load_feeds
from fraud_core.landing import (
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_MAX_BYTES,
    LandedFile,
    is_landed_file,
)
from fraud_core.readers import DEFAULT_CHUNK_ROWS, Opener
from fraud_core.schema import DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS

# fsspec's read-ahead per request when a file is streamed from S3 or ADLS.
STREAM_BLOCK_BYTES = 16 * 1024 * 1024

ADLS_SCHEMES = ("abfss", "abfs", "az")


class LandingZone(dg.ConfigurableResource):
    """A place claims files land in: list them, find a batch's file, open one; and how
    files are taken in (feed contracts, the size of a batch, the dates a claim can carry)."""

    max_file_bytes: int = DEFAULT_MAX_BYTES
    """What one file (one batch) may hold, as landed; larger files are rejected unread."""
    lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS
    """How far behind the newest file the sensor looks again (see LandingCursor)."""
    feeds_file: str = ""
    """The feed contracts (YAML, fraud_core.feeds); '' reads every file with the default."""
    claim_date_max_skew_days: int = DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS
    """Days past today a claim may be dated (clock skew between systems)."""
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    """Rows read, validated and written at a time: what bounds an ingest's memory."""

    @property
    def location(self) -> str:
        """The zone's root, as a path or URI (for messages; never holds credentials)."""
        raise NotImplementedError

    def list_files(self, since: float | None = None) -> list[LandedFile]:
        """Claims files, ordered by arrival (``seen_at``) then name.

        Args:
            since: when given, files with ``seen_at`` before it may be left out (a store that
                can filter by time does; the others list everything).
        """
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        """The file ``name`` (relative to the root) as a binary stream, from its start.

        Raises:
            FileNotFoundError: it is not there (any more).
        """
        raise NotImplementedError

    def opener(self, name: str) -> Opener:
        """Opens the file ``name`` anew at each call (readers sniff, then read)."""
        return lambda: self.open(name)

    def read(self, name: str) -> bytes:
        """The whole content of the file ``name`` (small files; ingestion streams)."""
        with self.open(name) as fh:
            return bytes(fh.read())

    def feeds(self) -> Feeds:
        """The feed contracts of ``feeds_file`` as they are now."""
        return load_feeds(self.feeds_file)

    def file_uri(self, name: str) -> str:
        """Full path or URI of the file ``name``."""
        return f"{self.location.rstrip('/')}/{name}"

    def find(self, batch_id: str) -> LandedFile:
        """The one file whose batch id is ``batch_id``.

        Raises:
            FileNotFoundError: no such file (moved or renamed after its partition was added).
            ValueError: several files map to that batch id.
        """
        matches = [f for f in self.list_files() if f.batch_id == batch_id]
        if not matches:
            raise FileNotFoundError(
                f"no landing file for batch {batch_id!r} in {self.location}: the file was "
                "moved or renamed after its partition was added"
            )
        if len(matches) > 1:
            names = ", ".join(sorted(f.name for f in matches))
            raise ValueError(
                f"batch {batch_id!r} is ambiguous: {names} all map to it; rename or remove "
                "all but one of them"
            )
        return matches[0]


def _ordered(files: list[LandedFile]) -> list[LandedFile]:
    return sorted(files, key=lambda f: (f.seen_at, f.name))


def _scan(folder: str, rel: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Files under ``folder`` as (path relative to the zone, entry); hidden and ``_`` folders
    are not entered."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _scan(entry.path, f"{rel}{entry.name}/")
        elif entry.is_file():
            yield f"{rel}{entry.name}", entry


class LocalLanding(LandingZone):
    """A local folder that a claims system drops files into.

    Writers should write under a hidden or ``_`` name (or elsewhere) and rename: a rename is
    atomic, so a half-written file is never picked up.
    """

    path: str

    @property
    def location(self) -> str:
        return os.path.abspath(self.path)

    def list_files(self, since: float | None = None) -> list[LandedFile]:
        files = []
        for rel, entry in _scan(self.location, ""):
            try:
                stat = entry.stat()
            except FileNotFoundError:  # renamed or removed while we listed
                continue
            # ctime: set by the kernel when the file is created, written, moved in or touched;
            # unlike mtime it cannot be carried over from elsewhere or set to the future
            # (which would push the sensor's high-water mark past files still to come).
            if since is not None and stat.st_ctime < since:
                continue
            files.append(LandedFile(rel, stat.st_size, stat.st_mtime, arrived=stat.st_ctime))
        return _ordered(files)

    def open(self, name: str) -> IO[bytes]:
        return open(os.path.join(self.location, name), "rb")


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"S3 URI without a bucket: {uri!r}")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3Landing(LandingZone):
    """An S3 prefix (``s3://bucket/prefix``), listed with dagster-aws' ``get_objects``."""

    uri: str
    endpoint_url: str | None = None
    """An S3-compatible endpoint (MinIO, moto, ...); None for AWS itself."""
    region_name: str | None = None
    profile_name: str | None = None
    """An AWS profile; without one boto3's default chain (environment, profile, role)."""

    @property
    def location(self) -> str:
        return self.uri.rstrip("/")

    def _client(self) -> Any:
        # dagster-aws' S3Resource builds the boto3 client; credentials come from the AWS
        # chain, never from a field here.
        return S3Resource(
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            profile_name=self.profile_name,
        ).get_client()

    def list_files(self, since: float | None = None) -> list[LandedFile]:
        bucket, prefix = _split_s3(self.uri)
        # get_objects keeps objects strictly newer than since_last_modified; LastModified has
        # 1 s resolution, so ask from one second earlier and let the cursor sort out the rest.
        after = None if since is None else datetime.fromtimestamp(since - 1.0, UTC)
        objects = get_objects(bucket, prefix, since_last_modified=after, client=self._client())
        files = []
        for obj in objects:
            name = obj["Key"][len(prefix) :]
            if is_landed_file(name):
                files.append(
                    LandedFile(
                        name,
                        int(obj.get("Size") or 0),
                        obj["LastModified"].timestamp(),
                        etag=str(obj.get("ETag", "")).strip('"'),
                    )
                )
        return _ordered(files)

    def open(self, name: str) -> IO[bytes]:
        bucket, prefix = _split_s3(self.uri)
        # s3fs streams it in ranged GETs; credentials from the AWS chain, as for the client.
        fs = fsspec.filesystem(
            "s3",
            profile=self.profile_name,
            client_kwargs={"endpoint_url": self.endpoint_url, "region_name": self.region_name},
            use_listings_cache=False,
        )
        try:
            return fs.open(f"{bucket}/{prefix}{name}", "rb", block_size=STREAM_BLOCK_BYTES)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.file_uri(name)} is not in the landing zone") from exc


class ADLSLanding(LandingZone):
    """An ADLS Gen2 / Blob prefix: ``abfss://container@account.dfs.core.windows.net/prefix``
    or ``az://container/prefix``, listed with adlfs (credentials from the environment)."""

    uri: str

    @property
    def location(self) -> str:
        return self.uri.rstrip("/")

    def _fs(self) -> tuple[Any, str]:
        # Listings must come from the store on every tick, never from fsspec's cache.
        fs, root = fsspec.core.url_to_fs(self.uri, use_listings_cache=False)
        return fs, root.strip("/")

    def list_files(self, since: float | None = None) -> list[LandedFile]:
        fs, root = self._fs()
        try:
            found = fs.find(root, detail=True)
        except FileNotFoundError:
            return []
        files = []
        for path, info in found.items():
            name = str(path).strip("/")[len(root) + 1 :]
            if info.get("type") != "file" or not is_landed_file(name):
                continue
            modified = info["last_modified"].timestamp()
            if since is not None and modified < since:
                continue
            files.append(
                LandedFile(
                    name, int(info["size"]), modified, etag=str(info.get("etag", "")).strip('"')
                )
            )
        return _ordered(files)

    def open(self, name: str) -> IO[bytes]:
        fs, root = self._fs()
        stream: IO[bytes] = fs.open(f"{root}/{name}", "rb", block_size=STREAM_BLOCK_BYTES)
        return stream


def landing_for(
    uri: str,
    *,
    endpoint_url: str | None = None,
    **intake: Any,
) -> LandingZone:
    """The landing resource for a ``LANDING_URI``: a path, ``s3://...`` or an ADLS URI.

    Args:
        uri: local path (or ``file://``), ``s3://bucket/prefix``,
            ``abfss://container@account.dfs.core.windows.net/prefix`` or
            ``az://container/prefix``.
        endpoint_url: S3 endpoint for S3-compatible stores (not a secret).
        intake: how files are taken in, the fields every zone shares (``max_file_bytes``,
            ``feeds_file``, ``claim_date_max_skew_days``, ``chunk_rows``).
    """
    scheme, sep, _ = uri.partition("://")
    scheme = scheme.lower() if sep else "file"
    if scheme == "file":
        return LocalLanding(path=uri.removeprefix("file://"), **intake)
    if scheme == "s3":
        _split_s3(uri)
        return S3Landing(uri=uri, endpoint_url=endpoint_url, **intake)
    if scheme in ADLS_SCHEMES:
        return ADLSLanding(uri=uri, **intake)
    raise ValueError(
        f"LANDING_URI {uri!r} has an unsupported scheme {scheme!r}: use a local path, "
        "s3://bucket/prefix or abfss://container@account.dfs.core.windows.net/prefix"
    )
