"""Readers: a file (or frame) as a stream of chunks of string columns, never the whole file.

Every reader yields ``Chunk`` s: the data as an Arrow table of string columns named ``c0``,
``c1``... by position (source names travel beside them, so no user text becomes an SQL
identifier), a ``_row`` column with the row number the user sees, and the rows the reader
itself could not split into fields (``BadRow``), which become rejects.

Row numbers are the ones a person would look up:
- CSV and Excel: the spreadsheet row, so the header is row 1 and the first data row row 2
  (a CSV record with a line break inside quotes is one row; blank lines are skipped and not
  counted, as in most viewers that skip them; Excel rows keep their sheet numbers);
- JSON lines: the line number (first line = row 1); a JSON array: the element (first = 1);
- Parquet and in-memory frames: the record's position, first record = row 1.
"""

from __future__ import annotations

import csv
import datetime as dt_
import json
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from userstrata.errors import InputError
from userstrata.ingest.encoding import open_text, sniff_delimiter
from userstrata.ingest.mapping import unique_names

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
EXCEL_SUFFIXES = (".xlsx",)
PARQUET_SUFFIXES = (".parquet",)
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
SUFFIXES = CSV_SUFFIXES + EXCEL_SUFFIXES + PARQUET_SUFFIXES + JSON_SUFFIXES

CSV_BLOCK_BYTES = 1 << 20  # pyarrow reads this much at a time (measured: 4 MB blocks cost +100 MB RSS for no speed)
PIECE_ROWS = 10_000  # rows per piece built in Python (fallback CSV, Excel, JSON lines)


@dataclass
class BadRow:
    """A row that could not even be split into fields; it goes to rejects as it was."""

    row_number: int
    reason: str
    raw: str  # JSON text


@dataclass
class Chunk:
    names: tuple[str, ...]  # source column names of c0, c1, ...
    table: pa.Table  # c0..cN as strings, _row int64, optionally _raw (the record as JSON)
    bad: list[BadRow] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return self.table.num_rows + len(self.bad)


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in EXCEL_SUFFIXES:
        return "xlsx"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    allowed = ", ".join(SUFFIXES)
    raise InputError(
        f"{path.name}: unsupported file type {suffix or '(no extension)'!r} (allowed: {allowed})",
        hint="save the sheet as .xlsx or .csv" if suffix in (".xls", ".xlsb", ".ods", ".numbers") else None,
    )


def open_reader(path: Path, fmt: str, *, encoding: str | None, header_row: int | None, sheet: str | None,
                chunk_rows: int):
    """The reader for ``path`` of format ``fmt`` (see ``file_format``)."""
    if fmt == "csv":
        return CsvReader(path, encoding=encoding, chunk_rows=chunk_rows)
    if fmt == "jsonl":
        return JsonLinesReader(path, encoding=encoding, chunk_rows=chunk_rows)
    if fmt == "xlsx":
        return ExcelReader(path, chunk_rows=chunk_rows)
    return ParquetReader(path, chunk_rows=chunk_rows)


def _row_numbers(start: int, n: int) -> pa.Array:
    return pa.array(np.arange(start, start + n, dtype=np.int64))


def _piece(columns: list[list[str | None]], rows: list[int], ncols: int) -> pa.Table:
    arrays = {f"c{i}": pa.array(columns[i], pa.string()) for i in range(ncols)}
    arrays["_row"] = pa.array(rows, pa.int64())
    return pa.table(arrays)


def rechunk(pieces: Iterator[tuple[pa.Table, list[BadRow]]], chunk_rows: int, names) -> Iterator[Chunk]:
    """Regroup pieces into chunks of exactly ``chunk_rows`` table rows (the last one fewer).

    ``names`` is called for each chunk: a reader may learn new columns as it goes (JSON lines).
    """
    pending: list[pa.Table] = []
    pending_rows = 0
    bad: list[BadRow] = []

    def emit(table: pa.Table) -> Chunk:
        nonlocal bad
        n_cols = sum(1 for c in table.column_names if c.startswith("c"))
        chunk = Chunk(tuple(names()[:n_cols]), table, bad)
        bad = []
        return chunk

    def combined() -> pa.Table:
        return pending[0] if len(pending) == 1 else pa.concat_tables(pending, promote_options="default")

    for table, piece_bad in pieces:
        bad.extend(piece_bad)
        if table.num_rows:
            pending.append(table)
            pending_rows += table.num_rows
        while pending_rows >= chunk_rows:
            whole = combined()
            yield emit(whole.slice(0, chunk_rows))
            rest = whole.slice(chunk_rows)
            pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
    if pending_rows or bad:
        yield emit(combined() if pending else pa.table({"_row": pa.array([], pa.int64())}))


# -- values to strings ---------------------------------------------------------------------


def _json_default(value):
    if isinstance(value, (dt_.datetime, dt_.date, dt_.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def value_to_str(value) -> str | None:
    """One cell (Excel) or JSON value as the text a person would have typed."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Excel stores every number as a float: 1001.0 is the id 1001
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt_.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt_.date, dt_.time)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value)


def arrow_to_strings(column: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
    """A typed Arrow column as strings (timestamps ISO 8601, nested values as JSON)."""
    kind = column.type
    if pa.types.is_string(kind):
        return column
    nested = pa.types.is_nested(kind) or (
        pa.types.is_dictionary(kind) and pa.types.is_nested(kind.value_type)
    )
    if not nested:
        try:
            return column.cast(pa.string())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            pass
    return pa.array([value_to_str(v) for v in column.to_pylist()], pa.string())


# -- CSV -------------------------------------------------------------------------------------


class CsvReader:
    """CSV/TSV/TXT, any of , tab ; | as delimiter; UTF-8, UTF-8 BOM, GBK/GB18030, UTF-16.

    Fast path: pyarrow's streaming reader. At the first malformed record (a row with more or
    fewer fields than the header, an unclosed quote) it falls back, from that record on, to
    Python's csv module, which reports such rows one by one so each can be rejected or padded
    with its exact row number.
    """

    def __init__(self, path: Path, *, encoding: str | None, chunk_rows: int):
        self.path, self.chunk_rows = path, chunk_rows
        self.display = path.name
        self.encoding, text = open_text(path, encoding, name=self.display)
        if not text.strip():
            raise InputError(f"{self.display} is empty")
        self.delimiter = "\t" if path.suffix.lower() == ".tsv" else sniff_delimiter(text)
        header = next(csv.reader(_first_record(text), delimiter=self.delimiter))
        self.ncols = len(header)
        self.names = unique_names(header)
        self.warnings: list[str] = []
        self.short_rows = 0

    def chunks(self) -> Iterator[Chunk]:
        return rechunk(self._pieces(), self.chunk_rows, lambda: self.names)

    def _decode_error(self, after_row: int) -> InputError:
        return InputError(
            f"{self.display}: bytes that are not valid {self.encoding} after row {after_row}",
            hint="pass the file's real encoding with --encoding (gb18030 for Chinese Excel, utf-8 otherwise)",
        )

    def _pieces(self) -> Iterator[tuple[pa.Table, list[BadRow]]]:
        emitted = 0  # data records handed on so far
        try:
            for batch in self._arrow_batches():
                n = batch.num_rows
                table = pa.Table.from_batches([batch]).append_column("_row", _row_numbers(emitted + 2, n))
                emitted += n
                yield table, []
            return
        except UnicodeDecodeError:
            raise self._decode_error(emitted + 1) from None
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc) or "UTF-8" in str(exc):
                raise self._decode_error(emitted + 1) from None
            if "CSV parse error" not in str(exc) and "straddling" not in str(exc):
                raise InputError(f"{self.display}: cannot read the CSV: {exc}") from None
        yield from self._python_pieces(skip=emitted)
        if self.short_rows:
            self.warnings.append(
                f"{self.display}: {self.short_rows} rows had fewer fields than the header; "
                "the missing fields were read as empty"
            )

    def _arrow_batches(self) -> Iterator[pa.RecordBatch]:
        # pyarrow skips a UTF-8 BOM itself and transcodes other encodings with Python codecs
        arrow_encoding = "utf8" if self.encoding in ("utf-8", "utf-8-sig") else self.encoding
        reader = pa_csv.open_csv(
            self.path,
            read_options=pa_csv.ReadOptions(
                encoding=arrow_encoding, block_size=CSV_BLOCK_BYTES, autogenerate_column_names=True
            ),
            parse_options=pa_csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(self.ncols)},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        names = [f"c{i}" for i in range(self.ncols)]
        header_seen = False
        for batch in reader:
            if batch.num_columns != self.ncols:
                # pyarrow read a different header than the sniffer: let the exact path decide
                raise pa.ArrowInvalid("CSV parse error: header differs")
            if not header_seen:
                header_seen = True
                batch = batch.slice(1)
            yield batch.rename_columns(names)

    def _python_pieces(self, *, skip: int) -> Iterator[tuple[pa.Table, list[BadRow]]]:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        n = self.ncols
        # the BOM is not data: utf-8-sig strips it, plain utf-8 would keep it in the header
        encoding = "utf-8-sig" if self.encoding == "utf-8" else self.encoding
        record = 0  # 0 = header
        with open(self.path, encoding=encoding, newline="") as fh:
            reader = csv.reader(fh, delimiter=self.delimiter)
            columns: list[list[str | None]] = [[] for _ in range(n)]
            rows: list[int] = []
            bad: list[BadRow] = []
            try:
                for fields in reader:
                    if not fields:
                        continue  # a blank line, as pyarrow skips them
                    record += 1
                    if record <= skip + 1:
                        continue
                    row_number = record  # header is row 1, first data record row 2
                    if len(fields) > n and any(f.strip() for f in fields[n:]):
                        bad.append(
                            BadRow(
                                row_number,
                                f"row has {len(fields)} fields but the header has {n}",
                                json.dumps(fields, ensure_ascii=False),
                            )
                        )
                        continue
                    if len(fields) < n:
                        self.short_rows += 1
                        fields = fields + [""] * (n - len(fields))
                    for i in range(n):
                        columns[i].append(fields[i])
                    rows.append(row_number)
                    if len(rows) >= PIECE_ROWS:
                        yield _piece(columns, rows, n), bad
                        columns, rows, bad = [[] for _ in range(n)], [], []
            except UnicodeDecodeError:
                raise self._decode_error(record) from None
            yield _piece(columns, rows, n), bad


def _first_record(text: str) -> list[str]:
    """The lines of ``text`` that make up its first CSV record (a quoted header may span lines)."""
    lines = text.splitlines(keepends=True)
    out, quotes = [], 0
    for line in lines:
        out.append(line)
        quotes += line.count('"')
        if quotes % 2 == 0:
            break
    return ["".join(out)]


# -- Excel -----------------------------------------------------------------------------------


class ExcelReader:
    """The first (active) sheet of an .xlsx workbook, streamed row by row (openpyxl read-only)."""

    encoding = None

    def __init__(self, path: Path, *, chunk_rows: int):
        import openpyxl  # noqa: PLC0415 - only Excel loads pay for the import
        from openpyxl.utils.exceptions import InvalidFileException  # noqa: PLC0415

        self.path, self.chunk_rows, self.display = path, chunk_rows, path.name
        self.warnings: list[str] = []
        try:
            self.workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
            raise InputError(f"{self.display} is not a readable .xlsx workbook ({exc})") from None
        sheet = self.workbook.active or self.workbook.worksheets[0]
        if len(self.workbook.worksheets) > 1:
            self.warnings.append(
                f"{self.display} has {len(self.workbook.worksheets)} sheets; loaded the active one, {sheet.title!r}"
            )
        # some writers store a wrong sheet size ("A1"); read every cell the XML really has
        sheet.reset_dimensions()
        self.rows = sheet.iter_rows(values_only=True)
        self.header_row = 0
        header: tuple = ()
        for values in self.rows:
            self.header_row += 1
            if any(v is not None and str(v).strip() for v in values):
                header = values
                break
        while header and header[-1] is None:
            header = header[:-1]
        if not header:
            self.workbook.close()
            raise InputError(f"{self.display} is empty (its sheet {sheet.title!r} has no cells)")
        self.ncols = len(header)
        self.names = unique_names([value_to_str(v) for v in header]) if header else None

    def chunks(self) -> Iterator[Chunk]:
        return rechunk(self._pieces(), self.chunk_rows, lambda: self.names)

    def _pieces(self) -> Iterator[tuple[pa.Table, list[BadRow]]]:
        n = self.ncols
        try:
            if not n:
                return
            columns: list[list[str | None]] = [[] for _ in range(n)]
            rows: list[int] = []
            bad: list[BadRow] = []
            for row_number, values in enumerate(self.rows, start=self.header_row + 1):
                cells = [value_to_str(v) for v in values]
                if not any(c is not None and c.strip() for c in cells):
                    continue  # an empty sheet row carries nothing; its number stays reserved
                if len(cells) > n and any(c is not None and c.strip() for c in cells[n:]):
                    bad.append(
                        BadRow(
                            row_number,
                            f"row has values in {len(cells)} columns but the header has {n}",
                            json.dumps(cells, ensure_ascii=False),
                        )
                    )
                    continue
                cells = (cells + [None] * n)[:n]
                for i in range(n):
                    columns[i].append(cells[i])
                rows.append(row_number)
                if len(rows) >= PIECE_ROWS:
                    yield _piece(columns, rows, n), bad
                    columns, rows, bad = [[] for _ in range(n)], [], []
            yield _piece(columns, rows, n), bad
        finally:
            self.workbook.close()


# -- Parquet ---------------------------------------------------------------------------------


class ParquetReader:
    """A Parquet file, batch by batch; typed columns are turned into strings and validated
    like any other input (a naive timestamp column is read as shop-local time)."""

    encoding = None

    def __init__(self, path: Path, *, chunk_rows: int):
        import pyarrow.parquet as pq  # noqa: PLC0415

        self.path, self.chunk_rows, self.display = path, chunk_rows, path.name
        self.warnings: list[str] = []
        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.display} is not a readable Parquet file ({exc})") from None
        self.names = unique_names(self.file.schema_arrow.names)

    def chunks(self) -> Iterator[Chunk]:
        return rechunk(self._pieces(), self.chunk_rows, lambda: self.names)

    def _pieces(self) -> Iterator[tuple[pa.Table, list[BadRow]]]:
        start = 1
        try:
            for batch in self.file.iter_batches(batch_size=min(self.chunk_rows, 65_536)):
                yield frame_piece(batch, start), []
                start += batch.num_rows
        finally:
            self.file.close()


def frame_piece(batch: pa.RecordBatch | pa.Table, start: int) -> pa.Table:
    arrays = {f"c{i}": arrow_to_strings(batch.column(i)) for i in range(batch.num_columns)}
    arrays["_row"] = _row_numbers(start, batch.num_rows)
    return pa.table(arrays)


class FrameReader:
    """An in-memory pandas DataFrame or Arrow table (bundled datasets, tests)."""

    encoding = None

    def __init__(self, data, *, source: str, chunk_rows: int):
        self.display, self.chunk_rows = source, chunk_rows
        self.warnings: list[str] = []
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if not isinstance(data, pa.Table):
            data = _pandas_to_arrow(data, source)
        self.data = data
        self.names = unique_names([str(n) for n in data.column_names])

    def chunks(self) -> Iterator[Chunk]:
        def pieces():
            start = 1
            for batch in self.data.to_batches(max_chunksize=min(self.chunk_rows, 65_536)):
                yield frame_piece(batch, start), []
                start += batch.num_rows

        return rechunk(pieces(), self.chunk_rows, lambda: self.names)


def _pandas_to_arrow(frame, source: str) -> pa.Table:
    import pandas as pd  # noqa: PLC0415

    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{source}: expected a pandas DataFrame or a pyarrow Table, got {type(frame).__name__}")
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # mixed-type object columns: take each value as its text
        fixed = frame.copy()
        for name in fixed.columns:
            if fixed[name].dtype == object:
                fixed[name] = [None if _isna(v) else value_to_str(v) for v in fixed[name]]
        return pa.Table.from_pandas(fixed, preserve_index=False)


def _isna(value) -> bool:
    try:
        return bool(value is None or value != value)
    except (TypeError, ValueError):
        return False


# -- JSON lines ------------------------------------------------------------------------------


class JsonLinesReader:
    """One JSON object per line (.jsonl/.ndjson/.json); a .json file holding one array of
    objects is read element by element. Columns are the keys, in order of first appearance."""

    def __init__(self, path: Path, *, encoding: str | None, chunk_rows: int):
        self.path, self.chunk_rows, self.display = path, chunk_rows, path.name
        self.warnings: list[str] = []
        self.encoding, text = open_text(path, encoding, name=self.display)
        text = text.lstrip()
        if not text:
            raise InputError(f"{self.display} is empty")
        self.is_array = text.startswith("[")
        self.keys: dict[str, int] = {}
        self.names: tuple[str, ...] | None = None  # known only once records are read

    def _names(self) -> tuple[str, ...]:
        return unique_names(list(self.keys))

    def chunks(self) -> Iterator[Chunk]:
        records = self._array_records() if self.is_array else self._line_records()
        return rechunk(self._pieces(records), self.chunk_rows, self._names)

    def _line_records(self) -> Iterator[tuple[int, str]]:
        encoding = "utf-8-sig" if self.encoding == "utf-8" else self.encoding
        line_number = 0
        try:
            with open(self.path, encoding=encoding, newline=None) as fh:
                for line_number, line in enumerate(fh, start=1):
                    line = line.strip()
                    if line:
                        yield line_number, line
        except UnicodeDecodeError:
            raise InputError(
                f"{self.display}: bytes that are not valid {self.encoding} after line {line_number}",
                hint="pass the file's real encoding with --encoding",
            ) from None

    def _array_records(self) -> Iterator[tuple[int, str]]:
        # a JSON array cannot be split by lines; DuckDB streams its elements as JSON text
        import duckdb  # noqa: PLC0415

        if self.encoding not in ("utf-8", "utf-8-sig"):
            raise InputError(f"{self.display}: a JSON array must be UTF-8 (found {self.encoding})",
                             hint="convert it to JSON lines, one object per line")
        con = duckdb.connect()
        try:
            result = con.execute("SELECT json::VARCHAR FROM read_json_objects(?, format = 'array')", [str(self.path)])
            number = 0
            while batch := result.fetchmany(PIECE_ROWS):
                for (text,) in batch:
                    number += 1
                    yield number, text
        except duckdb.Error as exc:
            raise InputError(f"{self.display}: not a valid JSON array ({exc})",
                             hint="write one JSON object per line (.jsonl)") from None
        finally:
            con.close()

    def _pieces(self, records: Iterator[tuple[int, str]]) -> Iterator[tuple[pa.Table, list[BadRow]]]:
        keys = self.keys
        values: list[dict[int, str | None]] = []
        rows: list[int] = []
        raws: list[str] = []
        bad: list[BadRow] = []

        def flush():
            cols = {f"c{i}": pa.array([v.get(i) for v in values], pa.string()) for i in range(len(keys))}
            cols["_row"] = pa.array(rows, pa.int64())
            cols["_raw"] = pa.array(raws, pa.string())
            return pa.table(cols)

        for number, text in records:
            try:
                obj = json.loads(text)
            except ValueError as exc:
                bad.append(BadRow(number, f"line {number} is not valid JSON ({exc.args[0].split(':')[0]})",
                                  json.dumps(text, ensure_ascii=False)))
                continue
            if not isinstance(obj, dict):
                bad.append(BadRow(number, f"line {number} is a JSON {type(obj).__name__}, not an object",
                                  json.dumps(text, ensure_ascii=False)))
                continue
            record = {}
            for key, value in obj.items():
                position = keys.setdefault(key, len(keys))
                record[position] = value_to_str(value)
            values.append(record)
            rows.append(number)
            raws.append(text)
            if len(rows) >= PIECE_ROWS:
                self.names = self._names()
                yield flush(), bad
                values, rows, raws, bad = [], [], [], []
        self.names = self._names()
        yield flush(), bad
