"""Landing files: every format read; broken files refused with a reason."""

import io

import pandas as pd
import pytest

from fraud_core.landing import read_claims_file
from fraud_core.schema import SchemaError, coerce_claims


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf)
    return buf.getvalue()


def test_formats() -> None:
    frame = pd.DataFrame({"claim_id": ["a", "b"], "claimed_amount": [1.5, 2.0]})
    assert read_claims_file("x.parquet", _parquet(frame))["claim_id"].tolist() == ["a", "b"]
    csv = read_claims_file("x.csv", b"claim_id,claimed_amount\na,1.5\nb,abc\n")
    assert csv["claimed_amount"].tolist() == ["1.5", "abc"]  # typed later, row by row
    jsonl = read_claims_file("x.jsonl", b'{"claim_id": "a"}\n{"claim_id": "b"}\n')
    assert jsonl["claim_id"].tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("x.parquet", b"", "x.parquet: the file is empty"),
        ("x.parquet", b"PAR1 not really parquet", "x.parquet: cannot be read as parquet"),
        ("x.csv", b"claim_id\n", "x.csv: the file has no rows"),
        ("x.xlsx", b"data", "x.xlsx: unsupported file type .xlsx"),
        ("x.jsonl", b"{not json}\n", "x.jsonl: cannot be read as jsonl"),
    ],
)
def test_broken_files_are_refused_with_the_reason(name: str, data: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message.replace(".", r"\.")):
        read_claims_file(name, data)


def test_size_limit() -> None:
    with pytest.raises(
        SchemaError,
        match="over the 10-byte limit of one batch \\(LANDING_MAX_FILE_BYTES\\); split the file",
    ):
        read_claims_file("x.csv", b"claim_id\na\nb\nc\n", max_bytes=10)


def test_missing_columns_name_them() -> None:
    with pytest.raises(SchemaError, match="missing required column\\(s\\): policy_id, "):
        coerce_claims(pd.DataFrame({"claim_id": ["a"]}))
