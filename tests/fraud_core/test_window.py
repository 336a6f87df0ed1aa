"""The claims history by claim month (fraud_core.window): folded from raw by maintenance, read
for a look-back window; the rows are raw's whatever the history holds (reruns, corrections,
time travel, batches landed since the fold)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from fraud_core.claim_versions import (
    SUPERSEDES,
    as_raw,
    content_hashes,
    latest_versions,
    with_versions,
)
from fraud_core.delta import LakehouseError
from fraud_core.features import HISTORY_COLUMNS
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import CLAIMS_HISTORY, CLAIMS_WINDOW, MONTH_COLUMN, RAW
from fraud_core.pipeline import claims_history, featurize_batch, window_history
from fraud_core.schema import ID_COLUMN, coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims
from fraud_core.window import fold, window_rows

# a batch every 20 days over 14 months: the window (366 days) reaches over a dozen months
DAYS = pd.date_range("2024-01-01", periods=22, freq="20D")


def _day(i: int, n: int = 40) -> pd.DataFrame:
    config = SimulationConfig(
        n_claims=n,
        seed=100 + i,
        id_prefix=f"W{i}-",
        start_date=DAYS[i].strftime("%Y-%m-%d"),
        days=1,  # policyholder and provider ids recur across simulations: windows see history
    )
    return as_raw(coerce_claims(simulate_claims(config).drop(columns="scenario")).frame)


def _batch(i: int) -> str:
    return f"d{i:02d}"


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(ID_COLUMN).reset_index(drop=True)


def _reads(lh: Lakehouse, batch: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the pipeline and the API read: a batch's history, its features, the API's window
    (each through a fresh Lakehouse, as a run would)."""
    fresh = Lakehouse(lh.uri)
    claims = fresh.read_batch(RAW, batch)
    history = claims_history(fresh, claims, batch)
    assert history is not None
    return (
        _sorted(history),
        _sorted(featurize_batch(Lakehouse(lh.uri), batch)),
        _sorted(window_history(Lakehouse(lh.uri))),
    )


def _equal(left: tuple[pd.DataFrame, ...], right: tuple[pd.DataFrame, ...]) -> None:
    for a, b in zip(left, right, strict=True):
        pd.testing.assert_frame_equal(a, b)


@pytest.fixture
def lakehouse(tmp_path: Path) -> Lakehouse:
    lh = Lakehouse(str(tmp_path))
    for i in range(len(DAYS) - 3):
        lh.write_batch(RAW, _batch(i), _day(i))
    return lh


def test_the_folded_history_reads_the_same_rows_as_raw(lakehouse: Lakehouse) -> None:
    last = _batch(len(DAYS) - 4)
    before = _reads(lakehouse, last)
    assert len(before[0]) > 0 and len(before[2]) > len(before[0])
    done = fold(lakehouse)
    assert done["folded_files"] == len(DAYS) - 3 and done["commits"] == 1
    history = lakehouse.read_table(CLAIMS_HISTORY)
    assert len(history) == sum(len(lakehouse.read_batch(RAW, b)) for b in lakehouse.batches(RAW))
    assert set(history[MONTH_COLUMN]) == {d.strftime("%Y-%m") for d in DAYS[:-3]}
    _equal(_reads(lakehouse, last), before)
    assert fold(lakehouse)["folded_files"] == 0  # nothing new: nothing written
    assert lakehouse.table_version(CLAIMS_HISTORY) == 0


def test_batches_landed_since_the_fold_are_read_from_raw(lakehouse: Lakehouse) -> None:
    fold(lakehouse)
    new = _batch(len(DAYS) - 3)
    lakehouse.write_batch(RAW, new, _day(len(DAYS) - 3))
    window = window_rows(lakehouse, HISTORY_COLUMNS, DAYS[0])
    assert set(window["batch_id"]) == set(lakehouse.batches(RAW))
    assert len(window) == sum(len(lakehouse.read_batch(RAW, b)) for b in lakehouse.batches(RAW))
    # the folded batches come from the history: their raw files are not opened (one removed
    # behind the log's back does not matter), the new batch's are
    folded_file = next((Path(lakehouse.uri) / RAW / "batch_id=d00").glob("*.parquet"))
    folded_file.unlink()
    assert len(window_rows(lakehouse, HISTORY_COLUMNS, DAYS[0])) == len(window)
    next((Path(lakehouse.uri) / RAW / f"batch_id={new}").glob("*.parquet")).unlink()
    with pytest.raises(OSError):
        window_rows(lakehouse, HISTORY_COLUMNS, DAYS[0])


def test_a_rerun_of_a_folded_batch_is_read_from_raw_then_refolded(lakehouse: Lakehouse) -> None:
    fold(lakehouse)
    versions = lakehouse.table_versions()
    old = lakehouse.read_batch(RAW, "d05")
    rerun = _day(5, n=15)
    lakehouse.write_batch(RAW, "d05", rerun)
    lakehouse.write_batch(RAW, "d19", _day(19))  # and a batch lands
    window = window_rows(lakehouse, HISTORY_COLUMNS, DAYS[0])
    assert sorted(window.loc[window["batch_id"] == "d05", ID_COLUMN]) == sorted(rerun[ID_COLUMN])
    assert not set(old[ID_COLUMN]) - set(rerun[ID_COLUMN]) & set(window[ID_COLUMN])
    before = _reads(lakehouse, "d18")
    done = fold(lakehouse)
    assert done["folded_files"] == 2 and done["dropped_files"] == 1 and done["months"] == 2
    _equal(_reads(lakehouse, "d18"), before)
    # time travel: pinned to the versions before the rerun, the old rows come back
    pinned = window_rows(lakehouse.pinned(versions), HISTORY_COLUMNS, DAYS[0])
    assert sorted(pinned.loc[pinned["batch_id"] == "d05", ID_COLUMN]) == sorted(old[ID_COLUMN])
    assert "d19" not in set(pinned["batch_id"])
    # raw pinned before, the history as folded after: still raw's rows then (the history's
    # rows of files raw did not have are left out)
    raw_only = lakehouse.pinned({RAW: versions[RAW]})
    again = window_rows(raw_only, HISTORY_COLUMNS, DAYS[0])
    pd.testing.assert_frame_equal(_sorted(again), _sorted(pinned))


def _correct(
    lakehouse: Lakehouse, batch: str, n: int, into: str, **changed: object
) -> pd.DataFrame:
    """Batch ``into`` corrects the first ``n`` claims of ``batch`` (their amounts doubled, and
    the ``changed`` columns set)."""
    fixed = lakehouse.read_batch(RAW, batch).head(n).copy()
    fixed["claimed_amount"] = fixed["claimed_amount"] * 2
    for column, value in changed.items():
        fixed[column] = value
    fixed = with_versions(
        fixed.drop(columns=["content_hash", SUPERSEDES]),
        content_hashes(fixed),
        np.full(n, batch, dtype=object),
    )
    lakehouse.write_batch(RAW, into, fixed)
    return fixed


def test_a_correction_wins_in_the_folded_history(lakehouse: Lakehouse) -> None:
    fixed = _correct(lakehouse, "d10", 3, into="d99")  # a later batch corrects three claims
    before = window_history(Lakehouse(lakehouse.uri))
    fold(lakehouse)
    after = window_history(Lakehouse(lakehouse.uri))
    pd.testing.assert_frame_equal(_sorted(after), _sorted(before))
    amounts = after.set_index(ID_COLUMN).loc[fixed[ID_COLUMN], "claimed_amount"]
    np.testing.assert_allclose(amounts.to_numpy(), fixed["claimed_amount"].to_numpy())


def test_maintain_folds_and_a_pinned_lakehouse_refuses_to(lakehouse: Lakehouse) -> None:
    results = {r["table"]: r for r in lakehouse.maintain()}
    assert results["claims_history"]["folded_files"] == len(DAYS) - 3
    assert lakehouse.table_version(CLAIMS_HISTORY) is not None
    with pytest.raises(LakehouseError, match="pinned"):
        lakehouse.pinned(lakehouse.table_versions()).maintain()


def test_a_raw_table_without_claims_columns_is_not_folded(tmp_path: Path) -> None:
    lh = Lakehouse(str(tmp_path))
    lh.write_batch(RAW, "b1", pd.DataFrame({"x": [1, 2]}))
    assert fold(lh)["folded_files"] == 0
    assert lh.table_version(CLAIMS_HISTORY) is None


def _from_raw(lh: Lakehouse, start: pd.Timestamp) -> pd.DataFrame:
    """The window as raw alone holds it: each claim's latest version, if dated ``start`` on."""
    every = latest_versions(lh, lh.read_batches(RAW, columns=[*HISTORY_COLUMNS]))
    every = every[(every["claim_date"] >= start).to_numpy()]
    return _sorted(every[list(HISTORY_COLUMNS)])


def _window(lh: Lakehouse, start: pd.Timestamp) -> pd.DataFrame:
    rows = window_rows(Lakehouse(lh.uri), HISTORY_COLUMNS, start, latest=True)
    return _sorted(rows[list(HISTORY_COLUMNS)])


def test_maintenance_writes_the_window_snapshot_and_reads_take_it(lakehouse: Lakehouse) -> None:
    start = DAYS[-4] - pd.Timedelta(days=200)
    expected = _from_raw(lakehouse, start)
    results = {r["table"]: r for r in lakehouse.maintain()}
    window = Path(lakehouse.uri) / CLAIMS_WINDOW
    assert window.exists() and results["claims_history"]["window_rows"] > len(expected)
    pd.testing.assert_frame_equal(_window(lakehouse, start), expected)
    # the window's rows come from the snapshot alone: the history's files are not read
    for part in (Path(lakehouse.uri) / CLAIMS_HISTORY).glob("claim_month=*/*.parquet"):
        part.unlink()
    pd.testing.assert_frame_equal(_window(lakehouse, start), expected)
    # a window from before the snapshot's start reads the history's months (gone here)
    with pytest.raises(OSError):
        window_rows(Lakehouse(lakehouse.uri), HISTORY_COLUMNS, start - pd.Timedelta(days=400))


def test_the_snapshot_yields_to_raw_reruns_corrections_and_new_batches(
    lakehouse: Lakehouse,
) -> None:
    lakehouse.maintain()
    start = DAYS[-4] - pd.Timedelta(days=200)
    lakehouse.write_batch(RAW, "d15", _day(15, n=12))  # a rerun of a batch it covers
    lakehouse.write_batch(RAW, "d19", _day(19))  # a new batch
    fixed = _correct(lakehouse, "d14", 4, into="d98")  # four claims the snapshot holds
    window = _window(lakehouse, start)
    pd.testing.assert_frame_equal(window, _from_raw(lakehouse, start))
    amounts = window.set_index(ID_COLUMN).loc[fixed[ID_COLUMN], "claimed_amount"]
    np.testing.assert_allclose(amounts.to_numpy(), fixed["claimed_amount"].to_numpy())
    # the new batch is read from raw (its file gone behind the log's back: the read fails)
    next((Path(lakehouse.uri) / RAW / "batch_id=d19").glob("*.parquet")).unlink()
    with pytest.raises(OSError):
        _window(lakehouse, start)


def test_only_rows_whose_id_may_repeat_are_checked_for_versions(lakehouse: Lakehouse) -> None:
    every = lakehouse.read_batches(RAW, ["d01", "d02"], list(HISTORY_COLUMNS))
    again = every.head(5).assign(batch_id="d03")  # five claims delivered again, later
    frame = pd.concat([every, again], ignore_index=True)
    repeats = frame[ID_COLUMN].duplicated(keep=False).to_numpy()
    kept = latest_versions(lakehouse, frame, may_repeat=repeats)
    pd.testing.assert_frame_equal(kept, latest_versions(lakehouse, frame))
    assert len(kept) == len(every) and set(kept.tail(5)["batch_id"]) == {"d03"}
    # a mask that misses a repeat keeps both: the mask is the caller's promise
    assert len(latest_versions(lakehouse, frame, may_repeat=np.zeros(len(frame), bool))) == len(
        frame
    )


def test_a_damaged_snapshot_fails_with_what_to_do(lakehouse: Lakehouse) -> None:
    lakehouse.maintain()
    (Path(lakehouse.uri) / CLAIMS_WINDOW).write_bytes(b"not arrow")
    with pytest.raises(LakehouseError, match=r"claims_window\.arrow is damaged .* maintain"):
        window_history(Lakehouse(lakehouse.uri))


@pytest.mark.parametrize("read_from", ["raw", "history", "snapshot", "raw since the snapshot"])
def test_a_correction_that_leaves_the_window_or_the_keys_replaces_its_version(
    lakehouse: Lakehouse, read_from: str
) -> None:
    start = DAYS[-4] - pd.Timedelta(days=200)
    if read_from == "raw since the snapshot":
        lakehouse.maintain()
    # three claims corrected to a date before the window, three to another policyholder
    earlier = _correct(lakehouse, "d10", 3, into="d90", claim_date=DAYS[2])
    moved = _correct(lakehouse, "d12", 3, into="d91", policyholder_id="P-MOVED")
    owners = lakehouse.read_batch(RAW, "d12").head(3)["policyholder_id"]
    if read_from in ("history", "snapshot"):
        lakehouse.maintain()
    if read_from == "history":
        (Path(lakehouse.uri) / CLAIMS_WINDOW).unlink()
    window = _window(lakehouse, start)
    pd.testing.assert_frame_equal(window, _from_raw(lakehouse, start))
    assert not set(earlier[ID_COLUMN]) & set(window[ID_COLUMN])
    # the old owners' history (a batch's read: a key filter) no longer holds the moved claims
    theirs = window_rows(
        Lakehouse(lakehouse.uri),
        HISTORY_COLUMNS,
        start,
        row_filter=pads.field("policyholder_id").isin(pa.array(owners.tolist(), pa.string())),
        latest=True,
    )
    assert len(theirs) and not set(moved[ID_COLUMN]) & set(theirs[ID_COLUMN])
    held = window.set_index(ID_COLUMN).loc[moved[ID_COLUMN], "policyholder_id"]
    assert set(held) == {"P-MOVED"}
