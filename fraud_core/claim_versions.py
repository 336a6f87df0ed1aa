"""Claims delivered more than once, across files: the rule, and each claim's latest version.

The rule, applied when a batch is ingested, to each valid claim against the batches ingested
before it (:func:`earlier_claims`):

* a claim id not seen before is **new**: written to raw;
* the same claim id with the same content as its latest version (every claim column, the
  label included) is **re-delivered**: not written, counted (``re_delivered``);
* the same claim id with other content is a **correction**: written to raw with
  ``supersedes`` naming the batch of the version it replaces. Both versions stay in the
  lakehouse; the later one is the claim from then on (a label that became known, an amount
  fixed upstream).

"Before" is the order in which batches were first ingested (recorded in the batch lineage
table, :data:`fraud_core.layout.BATCH_LINEAGE`, a row per batch), so rerunning an old batch
does not make it newer than the corrections that came after it. Readers (feature history,
training, the scoring API's history, metrics) keep only each claim id's latest version
(:func:`latest_versions`), so a claim is never counted, trained on or held out twice, even if
two deliveries were ingested at once.

Raw rows carry ``content_hash`` (64 bits over the claim's columns, claim id included) and
``supersedes``. An ingest reads only those and the claim ids of earlier batches, not the
batches whole (one scan of the raw table: its id and hash columns).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import BATCH_COLUMN, BATCH_LINEAGE, RAW
from fraud_core.schema import CLAIM_COLUMNS, ID_COLUMN, KIND_DTYPES

CONTENT_HASH = "content_hash"
SUPERSEDES = "supersedes"
# The commit metadata key of a raw batch's commit holding its lineage (JSON), as in the batch
# lineage table's ``lineage`` column: when it was first ingested, from which file with which
# feed contract, and its counts.
INGEST_METADATA = "fraud.ingest"
_CLAIM_NAMES = [c.name for c in CLAIM_COLUMNS]


def id_hashes(ids: pd.Series) -> np.ndarray:
    """64-bit hashes of claim ids (as text)."""
    return np.asarray(pd.util.hash_array(ids.astype("string").astype(object).to_numpy()))


# Numbers are compared to this many decimals: a claim exported as text by one system and as
# binary by another is the same claim (money has 2, probabilities are shown with 6).
HASH_DECIMALS = 6


def content_hashes(claims: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash per claim over every claim column (absent optional ones count as null),
    the same for the same values whatever file, format or process they came through."""
    columns = {}
    for c in CLAIM_COLUMNS:
        dtype = KIND_DTYPES[c.kind]
        values = claims[c.name] if c.name in claims else pd.Series(pd.NA, index=claims.index)
        values = values.astype(dtype)
        columns[c.name] = values.round(HASH_DECIMALS) if c.kind == "float" else values
    typed = pd.DataFrame(columns)
    return np.asarray(pd.util.hash_pandas_object(typed, index=False).to_numpy(), dtype=np.uint64)


def with_versions(claims: pd.DataFrame, hashes: np.ndarray, supersedes: np.ndarray) -> pd.DataFrame:
    """Valid claims as raw keeps them: with ``content_hash`` and ``supersedes``."""
    out = claims.copy(deep=False)
    out[CONTENT_HASH] = hashes
    out[SUPERSEDES] = pd.array(supersedes, dtype="string")
    return out


def as_raw(claims: pd.DataFrame) -> pd.DataFrame:
    """Validated claims as a raw batch holds them, when they were not ingested from a file
    (simulations, tests): each a first delivery, with its content hash."""
    if CONTENT_HASH in claims:
        return claims
    return with_versions(claims, content_hashes(claims), np.full(len(claims), None, object))


@dataclass(frozen=True)
class Delivery:
    """What a chunk of valid claims is against earlier batches."""

    re_delivered: np.ndarray  # bool per claim: same content as its latest version
    supersedes: np.ndarray  # per claim: the batch whose version it corrects, else None

    @property
    def corrections(self) -> int:
        return int(sum(s is not None for s in self.supersedes))


@dataclass(frozen=True)
class ClaimIndex:
    """The latest version of every claim of some batches: claim-id hash -> content hash and
    batch, sorted by claim-id hash (24 bytes a claim)."""

    keys: np.ndarray
    content: np.ndarray
    batch: np.ndarray
    batches: tuple[str, ...] = ()

    @classmethod
    def empty(cls) -> ClaimIndex:
        none = np.array([], dtype=np.uint64)
        return cls(none, none, np.array([], dtype=np.int32))

    def __len__(self) -> int:
        return len(self.keys)

    def classify(self, claims: pd.DataFrame, hashes: np.ndarray) -> Delivery:
        """New, re-delivered or a correction, for each valid claim (see the module's rule)."""
        supersedes = np.full(len(claims), None, dtype=object)
        if not len(self.keys) or claims.empty:
            return Delivery(np.zeros(len(claims), dtype=bool), supersedes)
        keys = id_hashes(claims[ID_COLUMN])
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        seen = self.keys[at] == keys
        same = seen & (self.content[at] == hashes)
        changed = np.flatnonzero(seen & ~same)
        names = np.asarray(self.batches, dtype=object)
        supersedes[changed] = names[self.batch[at[changed]]]
        return Delivery(same, supersedes)


def record_lineage(lakehouse: Lakehouse, batch_id: str, lineage: dict[str, Any]) -> str:
    """Write (or replace) the batch's row of the batch lineage table."""
    row = pd.DataFrame(
        {
            "ingested_at": [str(lineage.get("ingested_at") or "")],
            "file": [str(lineage.get("file") or "")],
            "lineage": [json.dumps(lineage, sort_keys=True, default=str)],
        }
    )
    return lakehouse.write_batch(BATCH_LINEAGE, batch_id, row)


def _lineage_rows(lakehouse: Lakehouse) -> pd.DataFrame:
    if lakehouse.table_version(BATCH_LINEAGE) is None:
        return pd.DataFrame({BATCH_COLUMN: [], "ingested_at": [], "lineage": []})
    return lakehouse.read_table(BATCH_LINEAGE, [BATCH_COLUMN, "ingested_at", "lineage"])


def batch_lineage(lakehouse: Lakehouse, batch_id: str) -> dict[str, Any]:
    """A raw batch's lineage as its ingest recorded it (empty for batches written otherwise)."""
    rows = _lineage_rows(lakehouse)
    text = rows.loc[rows[BATCH_COLUMN] == batch_id, "lineage"]
    return json.loads(text.iloc[-1]) if len(text) else {}


def batch_order(lakehouse: Lakehouse) -> list[str]:
    """Raw batches in the order they were first ingested (batches without a record first,
    by id)."""
    rows = _lineage_rows(lakehouse)
    first = dict.fromkeys(lakehouse.batches(RAW), "")
    first.update(zip(rows[BATCH_COLUMN].astype(str), rows["ingested_at"].astype(str), strict=True))
    return sorted(first, key=lambda b: (first[b], b))


def earlier_claims(lakehouse: Lakehouse, batch_id: str) -> ClaimIndex:
    """The latest version of each claim of the raw batches first ingested before ``batch_id``
    (all of them when it was never ingested). Reads claim ids and content hashes only."""
    order = batch_order(lakehouse)
    earlier = order[: order.index(batch_id)] if batch_id in order else order
    present = set(lakehouse.batches(RAW))
    earlier = [b for b in earlier if b in present]
    if not earlier:
        return ClaimIndex.empty()
    frame = lakehouse.read_batches(RAW, earlier, [ID_COLUMN, CONTENT_HASH])
    if CONTENT_HASH not in frame:  # written before content hashes: hash it whole
        frame = lakehouse.read_batches(RAW, earlier, _CLAIM_NAMES)
        frame[CONTENT_HASH] = content_hashes(frame)
    frame = frame[frame[ID_COLUMN].notna()]
    rank = {b: i for i, b in enumerate(earlier)}
    k = id_hashes(frame[ID_COLUMN])
    c = frame[CONTENT_HASH].to_numpy().astype(np.int64).view(np.uint64)
    b = frame[BATCH_COLUMN].map(rank).to_numpy(dtype=np.int32)
    sort = np.lexsort((b, k))  # by claim, then by ingestion: the last of a claim is its latest
    k, c, b = k[sort], c[sort], b[sort]
    last = np.append(k[1:] != k[:-1], True)
    return ClaimIndex(k[last], c[last], b[last], tuple(earlier))


def latest_versions(
    lakehouse: Lakehouse, frame: pd.DataFrame, may_repeat: np.ndarray | None = None
) -> pd.DataFrame:
    """The rows of ``frame`` (claims, features or scores of several batches, with
    ``batch_id``) that hold each claim id's latest version: those of the batch ingested
    last. Row order is kept.

    ``may_repeat``: a mask of the rows whose claim id may be another row's too (e.g. their
    :func:`id_hashes` are), when the caller knows; the others are kept without looking at
    their ids (checking a million ids for repeats costs more than reading them).
    """
    if may_repeat is not None:
        if not may_repeat.any():
            return frame
        rows = np.flatnonzero(may_repeat)
        suspects = frame.iloc[rows].reset_index(drop=True)
        keep = ~np.asarray(may_repeat, dtype=bool)
        keep[rows[latest_versions(lakehouse, suspects).index.to_numpy()]] = True
        return frame[keep]
    if frame.empty or frame[ID_COLUMN].is_unique:
        return frame
    rank = {b: i for i, b in enumerate(batch_order(lakehouse))}
    ranks = frame[BATCH_COLUMN].map(rank).fillna(-1).to_numpy()
    by_claim = pd.Series(ranks, index=frame.index).groupby(
        frame[ID_COLUMN].to_numpy(), dropna=False
    )
    latest = by_claim.transform("max")
    return frame[ranks == latest.to_numpy()]
