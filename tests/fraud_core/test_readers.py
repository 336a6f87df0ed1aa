"""Reading landed files a chunk at a time: a large CSV in chunks of exactly chunk_rows rows,
every row read once, in order."""

from __future__ import annotations

import gzip
import io

import pandas as pd
import pyarrow as pa
import pytest

from fraud_core.readers import CSV_BLOCK_BYTES, _gathered, read_chunks

ROWS = 60_000
CHUNK_ROWS = 11_000


def _csv(rows: int) -> bytes:
    lines = ["claim_id,claim_date,claimed_amount,region,notes"]
    lines += [
        f"C{i:07d},2025-{1 + i % 12:02d}-{1 + i % 28:02d},{1000 + i * 0.25:.2f},"
        f'{("north", "south", "east", "west")[i % 4]},"a note, with a comma, {i}"'
        for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def large_csv() -> bytes:
    data = _csv(ROWS)
    assert len(data) > 3 * CSV_BLOCK_BYTES  # several of the reader's blocks
    return data


@pytest.mark.parametrize("name", ["extract.csv", "extract.csv.gz"])
def test_a_large_csv_is_read_in_chunks_of_exactly_chunk_rows(large_csv: bytes, name: str) -> None:
    data = gzip.compress(large_csv) if name.endswith(".gz") else large_csv
    chunks = list(read_chunks(name, lambda: io.BytesIO(data), chunk_rows=CHUNK_ROWS))
    sizes = [len(c) for c in chunks]
    assert sizes == [CHUNK_ROWS] * (ROWS // CHUNK_ROWS) + [ROWS % CHUNK_ROWS]
    got = pd.concat(chunks, ignore_index=True)
    expected = pd.read_csv(io.BytesIO(large_csv), dtype=str, keep_default_na=False)
    assert len(got) == ROWS  # rows in == rows out
    assert got["claim_id"].tolist() == expected["claim_id"].tolist()  # each once, in order
    assert got["notes"].tolist() == expected["notes"].tolist()
    assert got["claimed_amount"].tolist() == expected["claimed_amount"].tolist()  # as text


def test_a_csv_that_divides_into_chunks_has_no_short_or_empty_last_chunk() -> None:
    data = _csv(3 * 500)
    chunks = list(read_chunks("x.csv", lambda: io.BytesIO(data), chunk_rows=500))
    assert [len(c) for c in chunks] == [500, 500, 500]


def _batches(sizes: list[int]) -> list[pa.RecordBatch]:
    start, out = 0, []
    for n in sizes:
        out.append(pa.record_batch({"i": pa.array(range(start, start + n), pa.int64())}))
        start += n
    return out


@pytest.mark.parametrize(
    "sizes",
    [[3, 3, 3, 3], [25], [1] * 17, [0, 4, 0, 9, 2, 0], [10, 10], [7, 3, 14, 1, 5]],
)
def test_gathered_tables_hold_exactly_rows_rows_in_order(sizes: list[int]) -> None:
    tables = list(_gathered(_batches(sizes), 10))
    total = sum(sizes)
    last = [total % 10] if total % 10 else []
    assert [t.num_rows for t in tables] == [10] * (total // 10) + last
    assert [v for t in tables for v in t.column("i").to_pylist()] == list(range(total))


def test_gathered_nothing_from_no_rows() -> None:
    assert list(_gathered(_batches([0, 0]), 10)) == []
