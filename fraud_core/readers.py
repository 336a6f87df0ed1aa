"""Reading a landed file as claims, a chunk of rows at a time, in memory bounded by the chunk.

A file is ``stem.format[.compression]`` (:mod:`fraud_core.formats`), read with its feed's
contract (:mod:`fraud_core.feeds`): compression is undone as a stream (pyarrow's gzip, bz2 and
zstd codecs; a zip archive must hold one claims file), then

* CSV is read by pyarrow's streaming CSV reader, every value as text (typing is the claims
  contract's job, row by row), with the feed's dialect or one sniffed from the file's start
  (encoding: UTF-8, else Windows-1252; delimiter);
* Parquet by ``ParquetFile.iter_batches`` (any codec pyarrow reads; memory bounded by the
  file's row groups); a compressed or zipped Parquet file is first copied to a local
  temporary file, since Parquet is read from its end;
* JSON lines in blocks of whole lines (pandas' reader, as for a small file);
* a ``.json`` file holding one JSON array is read whole, up to :data:`JSON_ARRAY_MAX_BYTES`.

Nothing here knows which store the file is on: it is opened through an :data:`Opener` that the
landing resource gives (a local file, or an fsspec stream on S3 or ADLS). A failure of the
store while reading is raised as :class:`StoreError` (not the file's fault: the run fails and
is retried); anything the file's content causes is a :class:`~fraud_core.schema.SchemaError`
naming the file and the reason.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, cast
from zipfile import BadZipFile

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fraud_core.feeds import DEFAULT_FEED, FEEDS_DOC, FeedContract
from fraud_core.formats import SUPPORTED_HINT, FileKind, split_name
from fraud_core.schema import SchemaError

# Opens the landed file from its start: a new binary stream at each call.
Opener = Callable[[], IO[bytes]]

DEFAULT_CHUNK_ROWS = 100_000
# CSV is parsed in blocks of this many bytes (pyarrow's streaming reader keeps a few dozen
# blocks in flight), then gathered into chunks of chunk_rows rows: a block the size of a chunk
# (17 MB for 100,000 claims) held far more than the chunk in memory.
CSV_BLOCK_BYTES = 1 << 20
# JSON lines are read in blocks of bytes: about this many per claim (a simulated claim takes
# 150 to 170 as CSV, 400 as JSON).
TEXT_BYTES_PER_ROW = 168
_MIN_BLOCK_BYTES = 64 * 1024
# A JSON array cannot be read a chunk at a time: up to this many bytes it is read whole.
JSON_ARRAY_MAX_BYTES = 256 * 1024 * 1024
# How much of a CSV file's start the dialect is sniffed from.
SNIFF_BYTES = 64 * 1024
SNIFFED_DELIMITERS = ",;\t|"
_COPY_BYTES = 8 * 1024 * 1024


class StoreError(RuntimeError):
    """The store failed while the file was read (network, permissions): not the file's fault."""


class _Guarded(io.RawIOBase):
    """A store's stream whose failures surface as :class:`StoreError`, even through pyarrow
    (which raises a Python exception from a file object's method as it was)."""

    def __init__(self, inner: IO[bytes], name: str) -> None:
        self._inner = inner
        self._name = name

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._inner, method)(*args)
        except Exception as exc:
            raise StoreError(f"reading {self._name} from its landing zone failed: {exc}") from exc

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._inner.seekable())

    def readinto(self, buffer: Any) -> int:
        data = self._call("read", len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return bytes(self._call("read", size))

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._call("seek", offset, whence))

    def tell(self) -> int:
        return int(self._call("tell"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._inner.close()
        super().close()


def file_kind(name: str, feed: FeedContract = DEFAULT_FEED) -> FileKind:
    """How the landed file ``name`` is read: its extension, or its feed's ``format``.

    Raises:
        SchemaError: an unsupported file type, saying what to rename or configure.
    """
    _, kind = split_name(name)
    fmt = feed.format or kind.format
    if fmt is None and kind.compression != "zip":  # a zip's member names its format
        ext = os.path.splitext(name)[1].lower() or "(none)"
        raise SchemaError(
            f"{os.path.basename(name)}: unsupported file type {ext}; {SUPPORTED_HINT}: rename "
            f"the file, or give its feed a format in the feeds file (FEEDS_FILE, {FEEDS_DOC})"
        )
    return FileKind(fmt, kind.compression)


def read_chunks(
    name: str,
    opener: Opener,
    feed: FeedContract = DEFAULT_FEED,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """The rows of a landed file as they arrived (source column names), ``chunk_rows`` at a
    time (CSV and Parquet: exactly, the last chunk fewer; JSON lines: blocks of about that
    many rows' bytes).

    CSV values are all text; Parquet keeps its types. Chunks are never empty.

    Raises:
        SchemaError: an unsupported, empty, corrupt or unparsable file, with the reason (at
            the first chunk, or where the file breaks).
        StoreError: the store failed while reading.
    """
    base = os.path.basename(name)
    kind = file_kind(name, feed)
    source = _Source(name, opener, kind, feed.format)
    fmt = source.resolve()
    rows = 0
    try:
        if fmt == "csv":
            chunks = _csv_chunks(source, feed, chunk_rows)
        elif fmt == "parquet":
            chunks = _parquet_chunks(source, chunk_rows)
        else:
            block = max(_MIN_BLOCK_BYTES, chunk_rows * TEXT_BYTES_PER_ROW)
            chunks = _json_chunks(source, fmt, chunk_rows, block)
        for chunk in chunks:
            rows += len(chunk)
            yield chunk
    except (StoreError, SchemaError, FileNotFoundError):
        raise
    except (
        pa.ArrowException,
        ValueError,
        EOFError,
        OSError,
        zipfile.BadZipFile,
        zlib.error,
    ) as exc:
        what = FileKind(fmt, kind.compression).describe()
        raise SchemaError(f"{base}: cannot be read as {what}: {exc}") from exc
    if rows == 0:
        raise SchemaError(f"{base}: the file has no rows")


class _Source:
    """A landed file and how to get at its content (through a zip member or a codec)."""

    def __init__(self, name: str, opener: Opener, kind: FileKind, fmt: str | None) -> None:
        self.name = name
        self.base = os.path.basename(name)
        self.opener = opener
        self.kind = kind
        self.format = fmt or kind.format
        self.member: str | None = None

    def resolve(self) -> str:
        """The format of the content; for a zip, the one claims file it holds."""
        if self.kind.compression == "zip":
            with self._raw() as raw, self._archive(raw) as archive:
                self.member = self._only_member(archive)
            if self.format is None:
                self.format = file_kind(self.member).format
        assert self.format is not None
        return self.format

    @contextlib.contextmanager
    def _raw(self) -> Iterator[IO[bytes]]:
        try:
            inner = self.opener()
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise StoreError(f"opening {self.name} in its landing zone failed: {exc}") from exc
        with _Guarded(inner, self.name) as raw:
            yield cast(IO[bytes], raw)

    @contextlib.contextmanager
    def _archive(self, raw: IO[bytes]) -> Iterator[zipfile.ZipFile]:
        try:
            archive = zipfile.ZipFile(raw)
        except BadZipFile as exc:
            raise SchemaError(f"{self.base}: cannot be read as a zip archive: {exc}") from exc
        with archive:
            yield archive

    def _only_member(self, archive: zipfile.ZipFile) -> str:
        files = [
            i.filename
            for i in archive.infolist()
            if not i.is_dir()
            and not any(p.startswith((".", "_")) for p in i.filename.split("/") if p)
        ]
        if len(files) != 1:
            listed = ", ".join(files[:10]) or "nothing"
            raise SchemaError(
                f"{self.base}: a zip archive must hold exactly one claims file; it holds "
                f"{listed}: land one file per archive"
            )
        return files[0]

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The content as a stream, from its start (decompressed)."""
        with self._raw() as raw:
            if self.kind.compression == "zip":
                assert self.member is not None
                with self._archive(raw) as archive, archive.open(self.member) as member:
                    yield member
            elif self.kind.compression is not None:
                with pa.CompressedInputStream(raw, self.kind.compression) as stream:
                    yield cast(IO[bytes], stream)
            else:
                yield raw

    @contextlib.contextmanager
    def open_seekable(self) -> Iterator[IO[bytes]]:
        """The content in a file that can be read from anywhere (a local copy when the
        content is compressed)."""
        if self.kind.compression is None:
            with self.open() as stream:
                yield stream
            return
        with tempfile.TemporaryFile() as copy:
            with self.open() as stream:
                shutil.copyfileobj(stream, copy, _COPY_BYTES)
            copy.seek(0)
            yield copy

    def head(self, size: int) -> bytes:
        """The content's first ``size`` bytes (or all of it when shorter)."""
        with self.open() as stream:
            parts, left = [], size
            while left > 0:
                part = stream.read(left)
                if not part:
                    break
                parts.append(part)
                left -= len(part)
        return b"".join(parts)


# --- CSV -----------------------------------------------------------------------------------------
def _sniff_encoding(sample: bytes) -> str:
    """The text encoding of a file's start: UTF-16 with a BOM, UTF-8 (with or without BOM),
    else Windows-1252 (Western European exports), else Latin-1 (which reads any byte).

    Guessing further from a few kilobytes is unreliable; a feed in another encoding
    declares it (``csv.encoding``).
    """
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    for encoding in ("utf-8", "cp1252"):
        try:
            sample.decode(encoding)
            return encoding
        except UnicodeDecodeError as exc:
            cut = len(sample) == SNIFF_BYTES and exc.start >= len(sample) - 3
            if encoding == "utf-8" and cut:
                return encoding  # a character cut by the sample's end
    return "latin-1"


def _sniff_delimiter(text: str) -> str:
    """The delimiter of CSV text: csv.Sniffer among , ; tab |, else a comma."""
    lines = text.splitlines()[:50]
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line may be cut by the sample's end
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=SNIFFED_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _csv_chunks(source: _Source, feed: FeedContract, chunk_rows: int) -> Iterator[pd.DataFrame]:
    sample = source.head(SNIFF_BYTES)
    if not sample.strip():
        raise SchemaError(f"{source.base}: the file is empty")
    encoding = feed.csv.encoding or _sniff_encoding(sample)
    text = sample.decode(encoding, errors="ignore").lstrip("\ufeff")
    delimiter = feed.csv.delimiter or _sniff_delimiter(text)
    quote = feed.csv.quote or '"'
    header = next(csv.reader(io.StringIO(text), delimiter=delimiter, quotechar=quote), [])
    if not any(h.strip() for h in header):
        raise SchemaError(f"{source.base}: the first line holds no column names")
    utf8 = codecs_name(encoding) == "utf-8"
    with source.open() as stream:
        reader = pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(
                block_size=CSV_BLOCK_BYTES, encoding="utf8" if utf8 else encoding
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter, quote_char=quote, newlines_in_values=True
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        for table in _gathered(reader, chunk_rows):
            yield table.to_pandas()


def _gathered(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The rows of ``batches`` in tables of exactly ``rows`` rows (the last one fewer, never
    empty): small record batches joined, a large one sliced (slices share its memory)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - held, batch.num_rows)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == rows:
                yield pa.Table.from_batches(pending)
                pending, held = [], 0
    if held:
        yield pa.Table.from_batches(pending)


def codecs_name(encoding: str) -> str:
    """The canonical name of an encoding (``UTF8`` and ``utf_8`` are ``utf-8``)."""
    import codecs

    name = codecs.lookup(encoding).name
    return "utf-8" if name in ("utf-8", "utf-8-sig") else name


# --- Parquet -------------------------------------------------------------------------------------
def _parquet_chunks(source: _Source, chunk_rows: int) -> Iterator[pd.DataFrame]:
    with source.open_seekable() as stream:
        parquet = pq.ParquetFile(stream)
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            if batch.num_rows:
                yield batch.to_pandas()


# --- JSON ----------------------------------------------------------------------------------------
def _json_chunks(source: _Source, fmt: str, chunk_rows: int, block: int) -> Iterator[pd.DataFrame]:
    head = source.head(SNIFF_BYTES).lstrip(b"\xef\xbb\xbf").lstrip()
    if not head:
        raise SchemaError(f"{source.base}: the file is empty")
    if fmt == "json" and head.startswith(b"["):
        yield from _json_array(source, chunk_rows)
    else:
        yield from _json_lines(source, block)


def _json_array(source: _Source, chunk_rows: int) -> Iterator[pd.DataFrame]:
    with source.open() as stream:
        data = stream.read(JSON_ARRAY_MAX_BYTES + 1)
    if len(data) > JSON_ARRAY_MAX_BYTES:
        raise SchemaError(
            f"{source.base}: a JSON array over {JSON_ARRAY_MAX_BYTES:,} bytes cannot be read "
            "in chunks: land it as JSON lines (one claim object a line, .jsonl), which are"
        )
    frame = pd.read_json(io.BytesIO(data), orient="records", dtype=False)
    del data
    for start in range(0, len(frame), chunk_rows):
        yield frame.iloc[start : start + chunk_rows].reset_index(drop=True)


def _json_lines(source: _Source, block_bytes: int) -> Iterator[pd.DataFrame]:
    """Blocks of whole lines, each with every key seen so far (a key absent from a whole
    block is a column of nulls there, as when the file is read at once)."""
    columns: dict[str, None] = {}
    with source.open() as stream:
        rest = b""
        first = True
        while True:
            block = stream.read(block_bytes)
            if first:
                block, first = block.removeprefix(b"\xef\xbb\xbf"), False
            data = rest + block
            if block:
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
            if data.strip():
                chunk = pd.read_json(io.BytesIO(data), lines=True, dtype=False)
                columns.update(dict.fromkeys(chunk.columns))
                yield chunk.reindex(columns=list(columns))
            if not block:
                return
