"""The claims history by claim month and its window snapshot, and reading a look-back window
of raw claims from them.

Raw claims are a Delta partition per batch, so a daily feed leaves a small file a day, and a
year's look-back would open about 365 of them: opening a file costs more than reading its
rows (``bench/lakehouse.py``). The claims history table (:data:`fraud_core.layout.CLAIMS_HISTORY`)
holds the same rows' window columns (:data:`~fraud_core.features.HISTORY_COLUMNS`, with
``supersedes`` and ``batch_id``) partitioned by claim month, one file a month once compacted,
so a window reads about 13 files plus the batches landed since.

* **Folded by maintenance, never by the pipeline.** :func:`fold` (run first by
  :meth:`Lakehouse.maintain <fraud_core.lakehouse.Lakehouse.maintain>`: ``fraud lakehouse
  maintain`` and the ``lakehouse_maintenance`` job) adds raw's files not folded yet and drops
  the rows of raw files that are gone (a rerun replaced its batch), rewriting only the months
  they touch, in one commit. Ingest pays nothing for it.
* **Raw stays the truth.** Each history row names the raw file it came from (``raw_file``,
  as raw's log names it). :func:`window_rows` keeps only the rows whose file is in the raw
  snapshot it reads, and reads from raw itself the batches with a file in the window not
  folded (landed or rerun since the last maintenance). So the rows are raw's rows whatever
  the history holds: at any pair of versions (time travel pins both tables), with or
  without maintenance (without it, every batch comes from raw: correct, only slower).
* **The window, mapped.** A full window is still ~734,000 claims at 2,000 a day, and decoding
  them from Parquet cost 5x what 60 days cost. So :func:`fold` also writes the history's
  look-back window as one uncompressed Arrow IPC file
  (:data:`fraud_core.layout.CLAIMS_WINDOW`, :class:`_Snapshot`): sorted by claim date, each
  claim id hashed, naming the raw files it covers. :func:`window_rows` memory-maps it and
  slices the window out by date (each key column's condition from that column's own
  look-back only), under the same rule as the history: its rows count where raw still has
  their file, raw's files it does not cover are read from raw.
* **A correction wins though the window cannot see it.** A read of latest versions also takes
  every correction raw holds (claim id and batch; :func:`_corrections`: the snapshot keeps
  those dated before its window too), so a version replaced by a correction dated before the
  window, or moved to other keys, is left out (:func:`_latest`).
"""

from __future__ import annotations

import functools
import json
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import DeltaTable

from fraud_core import delta
from fraud_core.claim_versions import SUPERSEDES, id_hashes, latest_versions
from fraud_core.delta import LakehouseError
from fraud_core.features import DATE, HISTORY_COLUMNS, WINDOWED, lookback_days
from fraud_core.lakehouse import Lakehouse, to_frame
from fraud_core.layout import BATCH_COLUMN, CLAIMS_HISTORY, CLAIMS_WINDOW, MONTH_COLUMN, RAW
from fraud_core.schema import ID_COLUMN

# The raw file a history row was folded from: a 64-bit hash of its path in raw's log (a
# number, so that checking a window's rows against raw's files costs little).
RAW_FILE = "raw_file"
# What the history holds of each raw claim (besides RAW_FILE and MONTH_COLUMN).
FOLDED_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys([*HISTORY_COLUMNS, SUPERSEDES]))
# Raw files folded per commit (memory is bounded by their rows and the months they touch).
FOLD_FILES = 512
_TIMESTAMP = pa.timestamp("us")
_FILENAME = "__filename"  # pyarrow's scanner names each row's file in this column
# How far back the window features look, per key column (days), and at most.
LOOKBACK_DAYS: dict[str, int] = lookback_days(WINDOWED)
MAX_LOOKBACK_DAYS = max(LOOKBACK_DAYS.values())
# The window snapshot (CLAIMS_WINDOW) starts this many days before the window of raw's latest
# claim when it is written, so that a batch of claims reported up to a month late still reads
# it rather than the history's months.
SNAPSHOT_MARGIN_DAYS = 31
# The window snapshot's column of each row's claim id hashed (claim_versions.id_hashes), and
# the same hashes sorted (a column of the same length: what a membership test searches).
ID_HASH = "id_hash"
_SORTED_HASH = "id_hash_sorted"
_SNAPSHOT_KEY = b"fraud.claims_window"  # its schema metadata: start, files covered, repeats


def window_since(latest: pd.Timestamp) -> pd.Timestamp:
    """The first claim date of the longest look-back window before claims of ``latest``'s day
    (what the scoring API holds)."""
    return pd.Timestamp(latest).normalize() - pd.Timedelta(days=MAX_LOOKBACK_DAYS + 1)


def file_ids(paths: Sequence[str]) -> pa.Array:
    """The :data:`RAW_FILE` of raw's files (paths as its log names them)."""
    hashes = pd.util.hash_array(np.asarray(list(paths), dtype=object))
    return pa.array(np.asarray(hashes, dtype=np.uint64).view(np.int64), pa.int64())


def _raw_files(raw: DeltaTable) -> pa.Table:
    """Raw's data files from its log: ``path``, its ``file`` id (:func:`file_ids`),
    ``batch_id``, ``rows`` and the claim dates' ``low`` and ``high`` (null when the log has
    no statistics)."""
    actions = pa.table(raw.get_add_actions(flatten=True))
    n = actions.num_rows

    def column(name: str, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
        if name in actions.column_names:
            return actions[name].cast(kind)
        return pa.nulls(n, kind)

    return pa.table(
        {
            "path": actions["path"],
            "file": file_ids(actions["path"].to_pylist()),
            BATCH_COLUMN: column(f"partition.{BATCH_COLUMN}", pa.string()),
            "rows": column("num_records", pa.int64()),
            "low": column(f"min.{DATE}", _TIMESTAMP),
            "high": column(f"max.{DATE}", _TIMESTAMP),
        }
    )


def _month(day: pd.Timestamp) -> str:
    return pd.Timestamp(day).strftime("%Y-%m")


def _stamp(value: pd.Timestamp) -> pa.Scalar:
    return pa.scalar(pd.Timestamp(value).to_pydatetime(), _TIMESTAMP)


def _day64(value: pd.Timestamp) -> np.datetime64:
    return pd.Timestamp(value).to_datetime64().astype("datetime64[us]")


def window_rows(
    lakehouse: Lakehouse,
    columns: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp | None = None,
    row_filter: pads.Expression | None = None,
    latest: bool = False,
    any_of: Sequence[tuple[pd.Timestamp, pads.Expression]] = (),
) -> pd.DataFrame:
    """Raw claims with ``start <= claim_date`` (``<= end`` when given) that ``row_filter``
    keeps, with ``columns`` and ``batch_id``: from the window snapshot or the claims history
    where they hold their raw file, otherwise from raw (see the module's doc). Every version
    of a claim is there, unless ``latest``: then each claim's latest version only
    (:func:`fraud_core.claim_versions.latest_versions`).

    ``any_of``: when given, only the rows dated ``since`` or later that ``condition`` keeps,
    for one of its ``(since, condition)`` (a window per key column: the snapshot, sorted by
    date, evaluates each condition from its own ``since`` only).

    Raises:
        LakehouseError: there is no raw table, a log is damaged, or the window snapshot is.
    """
    wanted = list(dict.fromkeys([*columns, BATCH_COLUMN]))
    raw = lakehouse.delta_table(RAW)
    if raw is None:
        return lakehouse.read_table(RAW, wanted)  # raises: no raw table, saying what to do
    dates = pads.field(DATE) >= _stamp(start)
    sql = f"{DATE} >= '{start:%Y-%m-%d %H:%M:%S}'"
    if end is not None:
        dates = dates & (pads.field(DATE) <= _stamp(end))
        sql += f" AND {DATE} <= '{end:%Y-%m-%d %H:%M:%S}'"
    keep = dates
    if any_of:
        keep = keep & functools.reduce(
            operator.or_, [(pads.field(DATE) >= _stamp(s)) & c for s, c in any_of]
        )
    if row_filter is not None:
        keep = keep & row_filter
    snapshot = _Snapshot.read(lakehouse)
    if snapshot is not None and not snapshot.serves(start, wanted):
        snapshot = None
    history = lakehouse.delta_table(CLAIMS_HISTORY) if snapshot is None else None
    if snapshot is None and (history is None or not set(wanted) <= set(_folded_names(raw))):
        every = to_frame(lakehouse.scan(raw, wanted, sql, keep))
        if not latest:
            return every
        return _latest(lakehouse, every, _corrections(lakehouse, raw, None))
    files = _raw_files(raw)
    months = f"{MONTH_COLUMN} >= '{_month(start)}'"
    if end is not None:
        months += f" AND {MONTH_COLUMN} <= '{_month(end)}'"
    if snapshot is None:
        assert history is not None
        # A raw file is folded whole, so one the history's months hold at all is one whose
        # window rows are all there: that needs the (tiny) file-id column only.
        ids = lakehouse.scan(history, [RAW_FILE], months)[RAW_FILE]
        folded = pc.unique(pc.filter(ids, pc.is_in(ids, files["file"])))  # raw still has them
    else:
        folded = snapshot.files_in(files["file"])
    reaches = pc.fill_null(pc.greater_equal(files["high"], _stamp(start)), True)
    if end is not None:
        reaches = pc.and_(reaches, pc.fill_null(pc.less_equal(files["low"], _stamp(end)), True))
    missing = files.filter(
        pc.and_(
            pc.and_(reaches, pc.invert(pc.is_in(files["file"], folded))),
            pc.fill_null(pc.greater(files["rows"], 0), True),
        )
    )
    todo = sorted({str(b) for b in missing[BATCH_COLUMN].to_pylist()})
    if snapshot is None:
        assert history is not None
        # the rows of raw's folded files (none of a batch read from raw), filtered as read
        held_filter = keep & pads.field(RAW_FILE).isin(folded)
        if todo:
            held_filter = held_filter & ~pads.field(BATCH_COLUMN).isin(pa.array(todo, pa.string()))
        held = lakehouse.scan(history, wanted, months, held_filter).select(wanted)
        held_ids = None
    else:
        rows = snapshot.rows_for(start, end, any_of, row_filter, folded, todo)
        held, held_ids = rows.select(wanted), rows[ID_HASH]
    parts = [held]
    if todo:
        fresh = lakehouse.scan(raw, wanted, f"({delta.batch_predicate(todo)}) AND {sql}", keep)
        parts.append(fresh.select(wanted).cast(held.schema))
    every = to_frame(pa.concat_tables(parts))
    if not latest:
        return every
    if SUPERSEDES not in _folded_names(raw):
        corrections = pd.DataFrame({ID_COLUMN: [], BATCH_COLUMN: []})  # none can be told
    elif snapshot is None:
        assert history is not None
        # every month's (``folded`` is the window's months'): the file ids, and corrections
        present = pads.field(RAW_FILE).isin(files["file"].combine_chunks())
        every_file = pc.unique(lakehouse.scan(history, [RAW_FILE], None, present)[RAW_FILE])
        held_corrections = lakehouse.scan(
            history, [ID_COLUMN, BATCH_COLUMN], None, pads.field(SUPERSEDES).is_valid() & present
        )
        corrections = _corrections(lakehouse, raw, (every_file, held_corrections), files)
    else:
        corrections = _corrections(lakehouse, raw, (folded, snapshot.corrections(folded)), files)
    if held_ids is None or snapshot is None:
        return _latest(lakehouse, every, corrections)
    may_repeat = snapshot.may_repeat(held_ids, every[held.num_rows :])
    return _latest(lakehouse, every, corrections, may_repeat)


def _corrections(
    lakehouse: Lakehouse,
    raw: DeltaTable,
    held: tuple[pa.Array, pa.Table] | None,
    files: pa.Table | None = None,
) -> pd.DataFrame:
    """The claim id and batch of every correction raw holds, whatever its claim date or
    keys (a window's filters may leave it out while they keep the version it replaces).

    ``held``: raw's files the window snapshot or the claims history covers, and their
    corrections (there, the others are read from raw: the batches landed since); None: all
    read from raw (a scan of its ``supersedes`` column). ``files``: raw's files
    (:func:`_raw_files`), when read already.
    """
    if SUPERSEDES not in pa.schema(raw.schema().to_arrow()).names:
        return pd.DataFrame({ID_COLUMN: [], BATCH_COLUMN: []})
    columns = [ID_COLUMN, BATCH_COLUMN]
    corrected = pads.field(SUPERSEDES).is_valid()
    if held is None:
        return to_frame(lakehouse.scan(raw, columns, None, corrected))
    covered, rows = held
    files = _raw_files(raw) if files is None else files
    landed = files.filter(pc.invert(pc.is_in(files["file"], covered)))
    batches = sorted({str(b) for b in landed[BATCH_COLUMN].to_pylist()})
    parts = [rows.select(columns)]
    if batches:
        fresh = lakehouse.scan(raw, columns, delta.batch_predicate(batches), corrected)
        parts.append(fresh.select(columns).cast(parts[0].schema))
    return to_frame(pa.concat_tables(parts))


def _latest(
    lakehouse: Lakehouse,
    every: pd.DataFrame,
    corrections: pd.DataFrame,
    may_repeat: np.ndarray | None = None,
) -> pd.DataFrame:
    """The rows of ``every`` holding each claim's latest version among them and the
    ``corrections`` (claim id, batch): a row whose claim has a correction ingested later is
    left out, though that correction is not among the rows (its date or its keys are outside
    the window now)."""
    if not len(corrections):
        return latest_versions(lakehouse, every, may_repeat)
    n = len(every)
    keys = pd.concat(
        [every[[ID_COLUMN, BATCH_COLUMN]], corrections[[ID_COLUMN, BATCH_COLUMN]]],
        ignore_index=True,
    )
    if may_repeat is not None:
        ids = pa.array(every[ID_COLUMN].astype(str).to_numpy(object), pa.string())
        value_set = pa.array(corrections[ID_COLUMN].astype(str).to_numpy(object), pa.string())
        corrected = pc.is_in(ids, value_set=value_set).to_numpy(zero_copy_only=False)
        may_repeat = np.concatenate([may_repeat | corrected, np.ones(len(corrections), bool)])
    kept = latest_versions(lakehouse, keys, may_repeat).index.to_numpy()
    return every.iloc[kept[kept < n]]


@dataclass(frozen=True)
class _Snapshot:
    """The window snapshot (:data:`~fraud_core.layout.CLAIMS_WINDOW`): every row of the
    claims history with ``start <= claim_date``, sorted by claim date, of the raw ``files``
    it covers (a raw file's rows from ``start`` on are all there or none), each with its
    claim id hashed (:data:`ID_HASH`, and those hashes sorted in ``_SORTED_HASH``);
    ``repeated``: the hashes more than one row holds."""

    rows: pa.Table
    start: pd.Timestamp
    files: pa.Table  # file (RAW_FILE), batch_id
    repeated: np.ndarray
    with_corrections: bool = False  # it holds the corrections dated before ``start`` too

    @classmethod
    def read(cls, lakehouse: Lakehouse) -> _Snapshot | None:
        """The snapshot maintenance wrote (memory-mapped on a local lakehouse), or None."""
        try:
            if lakehouse.is_local:
                path = lakehouse.path(CLAIMS_WINDOW)
                if not os.path.exists(path):
                    return None
                source: Any = pa.memory_map(path)
            else:
                source = pa.BufferReader(lakehouse.read_bytes(CLAIMS_WINDOW))
        except LakehouseError:
            return None  # not written yet
        try:
            reader = pa.ipc.open_file(source)
            meta = json.loads((reader.schema.metadata or {})[_SNAPSHOT_KEY])
            lacks = {DATE, RAW_FILE, BATCH_COLUMN, ID_HASH, _SORTED_HASH} - set(reader.schema.names)
            if lacks:
                raise ValueError(f"no column(s) {', '.join(sorted(lacks))}")
            return cls(
                reader.read_all(),
                pd.Timestamp(meta["start"]),
                pa.table(
                    {
                        RAW_FILE: pa.array(meta["files"], pa.int64()),
                        BATCH_COLUMN: pa.array(meta["batches"], pa.string()),
                    }
                ),
                np.asarray(meta["repeated"], np.uint64),
                bool(meta.get("corrections", False)),
            )
        except (pa.ArrowException, KeyError, ValueError) as exc:
            raise LakehouseError(
                f"the window snapshot {lakehouse.url(CLAIMS_WINDOW)} is damaged ({exc}): "
                "delete it and run `fraud lakehouse maintain` to write it again"
            ) from exc

    def serves(self, start: pd.Timestamp, columns: Sequence[str]) -> bool:
        """Whether it holds the rows of a window from ``start`` with ``columns`` (and the
        corrections dated before it: snapshots written since they are kept)."""
        return (
            self.with_corrections
            and self.start <= start
            and set(columns) <= set(self.rows.column_names)
        )

    def corrections(self, folded: pa.Array) -> pa.Table:
        """The claim id and batch of its corrections (rows that replace an earlier version,
        of any date) from the ``folded`` raw files (those raw still has)."""
        if SUPERSEDES not in self.rows.column_names:
            return pa.table({c: pa.array([], pa.string()) for c in (ID_COLUMN, BATCH_COLUMN)})
        rows = self.rows.select([ID_COLUMN, BATCH_COLUMN, SUPERSEDES, RAW_FILE])
        rows = rows.filter(pc.is_valid(rows[SUPERSEDES]))
        rows = rows.filter(pc.is_in(rows[RAW_FILE], folded))
        return rows.select([ID_COLUMN, BATCH_COLUMN])

    def files_in(self, raw_files: pa.ChunkedArray) -> pa.Array:
        """The raw files it covers that are among ``raw_files``."""
        covered = self.files[RAW_FILE]
        return pc.filter(covered, pc.is_in(covered, raw_files)).combine_chunks()

    def rows_for(
        self,
        start: pd.Timestamp,
        end: pd.Timestamp | None,
        any_of: Sequence[tuple[pd.Timestamp, pads.Expression]],
        row_filter: pads.Expression | None,
        folded: pa.Array,
        todo: Sequence[str],
    ) -> pa.Table:
        """Its rows within ``[start, end]`` that ``any_of`` and ``row_filter`` keep (see
        :func:`window_rows`), of the ``folded`` raw files, none of the batches ``todo`` (read
        from raw): slices of the sorted rows, and filters only where needed."""
        days = self.rows[DATE].combine_chunks().cast(_TIMESTAMP).to_numpy()
        first = int(np.searchsorted(days, _day64(start), side="left"))
        last = len(days) if end is None else int(np.searchsorted(days, _day64(end), "right"))
        rows = self.rows.slice(first, max(last - first, 0))
        if any_of:
            days = days[first : first + rows.num_rows]
            hits = np.zeros(rows.num_rows, bool)
            for since, condition in any_of:
                at = int(np.searchsorted(days, _day64(since), side="left"))
                hit = pads.dataset(rows.slice(at)).to_table(columns={"hit": condition})["hit"]
                hits[at:] |= pc.fill_null(hit, False).to_numpy()
            rows = rows.filter(pa.array(hits))
        conditions = [] if row_filter is None else [row_filter]
        if len(folded) < self.files.num_rows:  # some raw files it covers are gone
            conditions.append(pads.field(RAW_FILE).isin(folded))
        covered = set(self.files[BATCH_COLUMN].to_pylist())
        rerun = [b for b in todo if b in covered]
        if rerun:  # a batch with files it covers and files it does not: read whole from raw
            conditions.append(~pads.field(BATCH_COLUMN).isin(pa.array(rerun, pa.string())))
        if not conditions:
            return rows
        return pads.dataset(rows).to_table(filter=functools.reduce(operator.and_, conditions))

    def may_repeat(self, held_ids: pa.ChunkedArray, fresh: pd.DataFrame) -> np.ndarray:
        """Which rows of its ``held_ids`` then of ``fresh`` (rows read from raw) may share a
        claim id with another: their id hash is held twice, or by a fresh row too (a
        binary search of the fresh rows' hashes in its sorted ones)."""
        fresh_ids = id_hashes(fresh[ID_COLUMN]) if len(fresh) else np.zeros(0, np.uint64)
        unique, counts = np.unique(fresh_ids, return_counts=True)
        held_sorted = self.rows[_SORTED_HASH].to_numpy()
        found = np.minimum(np.searchsorted(held_sorted, unique), max(len(held_sorted) - 1, 0))
        both = unique[held_sorted[found] == unique] if len(held_sorted) else unique[:0]
        suspects = np.union1d(self.repeated, np.union1d(unique[counts > 1], both))
        if not len(suspects):
            return np.zeros(len(held_ids) + len(fresh_ids), bool)
        return np.isin(np.concatenate([held_ids.to_numpy(), fresh_ids]), suspects)


def _write_snapshot(lakehouse: Lakehouse, raw: DeltaTable, files: pa.Table) -> dict[str, Any]:
    """Write the window snapshot from the claims history just folded up to raw's ``files``
    (:func:`_raw_files` of ``raw``; the history must hold every row of them: only
    :func:`fold` knows): its rows from :data:`SNAPSHOT_MARGIN_DAYS` before the window of
    raw's latest claim. Returns ``window_rows`` written (0, and nothing written, when there
    is no history or no claim date).
    """
    history = lakehouse.delta_table(CLAIMS_HISTORY)
    if history is None:
        return {"window_rows": 0}
    latest = pc.max(files["high"]).as_py()
    if latest is None:
        return {"window_rows": 0}
    start = window_since(pd.Timestamp(latest)) - pd.Timedelta(days=SNAPSHOT_MARGIN_DAYS)
    names = [c for c in _folded_schema(raw).names if c != MONTH_COLUMN]
    held = pads.field(RAW_FILE).isin(files["file"].combine_chunks())
    rows = lakehouse.scan(
        history,
        names,
        f"{MONTH_COLUMN} >= '{_month(start)}'",
        (pads.field(DATE) >= _stamp(start)) & held,
    )
    if SUPERSEDES in names:  # and the corrections dated before: no window slice reaches them
        earlier = pads.field(SUPERSEDES).is_valid() & (pads.field(DATE) < _stamp(start))
        rows = pa.concat_tables([lakehouse.scan(history, names, None, earlier & held), rows])
    rows = rows.sort_by([(DATE, "ascending")]).combine_chunks()
    # text as pandas holds it (64-bit offsets): a frame of the window wraps it, not copies it
    rows = rows.cast(
        pa.schema(
            [f.with_type(pa.large_string()) if f.type == pa.string() else f for f in rows.schema]
        )
    )
    hashes = id_hashes(rows[ID_COLUMN].to_pandas())
    unique, counts = np.unique(hashes, return_counts=True)
    rows = rows.append_column(ID_HASH, pa.array(hashes, pa.uint64()))
    rows = rows.append_column(_SORTED_HASH, pa.array(np.sort(hashes), pa.uint64()))
    meta = {
        "start": start.isoformat(),
        "files": files["file"].to_pylist(),
        "batches": files[BATCH_COLUMN].to_pylist(),
        "repeated": unique[counts > 1].tolist(),
        "corrections": True,
    }
    rows = rows.replace_schema_metadata({_SNAPSHOT_KEY: json.dumps(meta).encode()})
    staged = lakehouse.staging_path(CLAIMS_WINDOW)
    try:
        with pa.OSFile(staged, "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
            writer.write_table(rows)
    except BaseException:
        os.remove(staged)
        raise
    lakehouse.publish(staged, CLAIMS_WINDOW)
    return {"window_rows": rows.num_rows}


def fold(lakehouse: Lakehouse) -> dict[str, Any]:
    """Bring the claims history up to raw: add the rows of raw's files not folded yet, drop
    those of files raw no longer has, rewriting only the months either touches. A commit per
    :data:`FOLD_FILES` new files (oldest first), so memory is bounded by those files' rows
    and the months they touch. Returns the counts (``folded_files``, ``dropped_files``,
    ``months`` rewritten, ``commits``).

    Raises:
        LakehouseError: the lakehouse is pinned, or a log is damaged.
    """
    raw = lakehouse.delta_table(RAW)
    done = {"folded_files": 0, "dropped_files": 0, "months": 0, "commits": 0}
    if raw is None:
        return done
    if not set(HISTORY_COLUMNS) <= set(_folded_names(raw)):
        return done  # not claims (a test's table): nothing a window would read
    files = _raw_files(raw)
    history = lakehouse.delta_table(CLAIMS_HISTORY)
    have = pa.table({RAW_FILE: pa.array([], pa.int64()), MONTH_COLUMN: pa.array([], pa.string())})
    if history is not None:
        have = lakehouse.scan(history, [RAW_FILE, MONTH_COLUMN], None)
        have = have.group_by([RAW_FILE, MONTH_COLUMN]).aggregate([])
    gone = have.filter(pc.invert(pc.is_in(have[RAW_FILE], files["file"])))
    new = files.filter(
        pc.and_(
            pc.invert(pc.is_in(files["file"], have[RAW_FILE])),
            pc.fill_null(pc.greater(files["rows"], 0), True),
        )
    ).sort_by([("low", "ascending"), ("path", "ascending")])
    every = files["file"].combine_chunks()
    schema = _folded_schema(raw)
    dropped = set(gone[MONTH_COLUMN].to_pylist())
    for first in range(0, max(new.num_rows, 1 if dropped else 0), FOLD_FILES):
        group = new.slice(first, FOLD_FILES)
        months = sorted(_months_of(raw, group) | dropped)
        listed = ", ".join(f"'{m}'" for m in months)
        history = lakehouse.delta_table(CLAIMS_HISTORY)
        parts = []
        if history is not None:  # the months' rows whose raw file is still there
            kept = lakehouse.scan(
                history,
                schema.names,
                f"{MONTH_COLUMN} IN ({listed})",
                pc.field(RAW_FILE).isin(every),
            )
            parts.append(kept.cast(schema))
        if group.num_rows:
            parts.append(_rows_of(raw, group, schema))
        data = pa.concat_tables(parts) if parts else schema.empty_table()
        lakehouse.replace_rows(
            CLAIMS_HISTORY, delta.source_of(data), f"{MONTH_COLUMN} IN ({listed})"
        )
        dropped = set()
        done["months"] += len(months)
        done["commits"] += 1
    done.update(
        folded_files=new.num_rows,
        dropped_files=len(set(gone[RAW_FILE].to_pylist())),
    )
    done.update(_write_snapshot(lakehouse, raw, files))
    return done


def _rows_of(raw: DeltaTable, files: pa.Table, schema: pa.Schema) -> pa.Table:
    """The rows of raw's ``files`` with ``schema``'s columns: each with its file and month."""
    data = delta.dataset(raw, delta.batch_predicate(sorted(set(files[BATCH_COLUMN].to_pylist()))))
    columns = [c for c in schema.names if c not in (RAW_FILE, MONTH_COLUMN)]
    rows = data.to_table(columns=[*columns, _FILENAME])
    # each row's file as raw's log names it (null: a file of these batches not asked for)
    wanted = dict(
        zip(
            (os.path.basename(p) for p in files["path"].to_pylist()),
            files["file"].to_pylist(),
            strict=True,
        )
    )
    names = rows[_FILENAME].combine_chunks().dictionary_encode()
    ids = [wanted.get(os.path.basename(f)) for f in names.dictionary.to_pylist()]
    rows = rows.drop_columns([_FILENAME]).append_column(
        RAW_FILE, pc.take(pa.array(ids, pa.int64()), names.indices)
    )
    rows = rows.filter(pc.is_valid(rows[RAW_FILE]))
    rows = rows.append_column(MONTH_COLUMN, pc.strftime(rows[DATE], format="%Y-%m"))
    return rows.cast(schema)


def _months_of(raw: DeltaTable, files: pa.Table) -> set[str]:
    """The claim months the rows of ``files`` may fall in: every month between each file's
    lowest and highest claim date (its statistics; the dates themselves when it has none)."""
    months: set[str] = set()
    unknown = set()
    for lo, hi, batch in zip(
        files["low"].to_pylist(),
        files["high"].to_pylist(),
        files[BATCH_COLUMN].to_pylist(),
        strict=True,
    ):
        if lo is None or hi is None:
            unknown.add(str(batch))
            continue
        months.update(_month(m) for m in pd.period_range(lo, hi, freq="M").to_timestamp())
    if unknown:
        dates = delta.dataset(raw, delta.batch_predicate(sorted(unknown))).to_table(columns=[DATE])
        months.update(pc.unique(pc.strftime(dates[DATE], format="%Y-%m")).to_pylist())
    return months


def _folded_names(raw: DeltaTable) -> list[str]:
    """The columns the claims history holds of ``raw``'s rows, then ``batch_id``."""
    declared = pa.schema(raw.schema().to_arrow()).names
    return [*(c for c in FOLDED_COLUMNS if c in declared), BATCH_COLUMN]


def _folded_schema(raw: DeltaTable) -> pa.Schema:
    declared = pa.schema(raw.schema().to_arrow())
    return pa.schema(
        [
            *(declared.field(c) for c in FOLDED_COLUMNS if c in declared.names),
            pa.field(BATCH_COLUMN, pa.string()),
            pa.field(RAW_FILE, pa.int64()),
            pa.field(MONTH_COLUMN, pa.string()),
        ]
    )
