"""Readers: a file (or frame) as a stream of chunks of string columns, never the whole file.

Every reader yields ``Chunk`` s: the data as an Arrow table of string columns named ``c0``,
``c1``... by position (source names travel beside them, so no user text becomes an SQL
identifier), a ``_row`` column with the row number the user sees, and the rows the reader
itself set aside (``BadRow``: rows it could not split into fields, totals rows), which become
rejects.

Shop back-ends rarely write a bare table. The readers find the table inside the file:
- the header row is found among the first rows (``find_header``): title lines above it
  ("订单导出 2024-01-01 至 2024-12-31", "导出时间：...") are skipped with a warning; an explicit
  ``header_row`` (the row number a spreadsheet shows) overrides the search;
- a workbook's sheet is the first one that holds a table (a 说明/notes sheet is passed over),
  unless ``sheet`` names one;
- a totals row (合计, 总计, Total...) is set aside as a ``BadRow`` with its own reason;
- an ".xls" is read as what it really is: a workbook (97-2003 or newer), an HTML table or
  delimited text (``sniff_content``).

Row numbers are the ones a person would look up:
- CSV: the row a spreadsheet shows, so with the header on line 1 the first data row is row 2.
  Lines above the header count, blank ones included (title, blank line, header: the header is
  row 3); below the header a blank line is skipped and not counted (the fast reader drops
  them unseen). A record with a line break inside quotes is one row.
- Excel and HTML tables: the sheet's row (the table's ``<tr>``), empty rows included;
- JSON lines: the line number (first line = row 1); a JSON array: the element (first = 1);
- Parquet and in-memory frames: the record's position, first record = row 1.
"""

from __future__ import annotations

import csv
import datetime as dt_
import io
import itertools
import json
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from userstrata.errors import InputError
from userstrata.ingest.encoding import SAMPLE_BYTES, declared_charset, open_text, read_sample, sniff_delimiter
from userstrata.ingest.mapping import unique_names

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
# calamine reads all of these; a back-end's ".xls" may also be an HTML table or text (sniff_content)
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
PARQUET_SUFFIXES = (".parquet",)
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
SUFFIXES = CSV_SUFFIXES + EXCEL_SUFFIXES + PARQUET_SUFFIXES + JSON_SUFFIXES
SPREADSHEET_FORMATS = ("xlsx", "xls", "xlsb", "ods")

CSV_BLOCK_BYTES = 1 << 20  # pyarrow reads this much at a time (measured: 4 MB blocks cost +100 MB RSS for no speed)
PIECE_ROWS = 10_000  # rows per piece built in Python (fallback CSV, Excel, HTML, JSON lines)
HEADER_SCAN_ROWS = 20  # the header is looked for among this many non-blank rows at the top
SCAN_CAP_ROWS = 10_000  # ...and within this many rows, blank ones included

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 .xls (and encrypted .xlsx)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # .xlsx, .xlsb, .ods
_EXACT = 2**53  # integers below this are exact as floats


@dataclass
class BadRow:
    """A row the reader set aside (it could not be split into fields, or it is a totals row);
    it goes to rejects as it was."""

    row_number: int
    reason: str
    raw: str  # JSON text
    reason_zh: str | None = None  # the reason in Chinese, for shop operators


@dataclass
class Chunk:
    names: tuple[str, ...]  # source column names of c0, c1, ...
    table: pa.Table  # c0..cN as strings, _row int64, optionally _raw (the record as JSON)
    bad: list[BadRow] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return self.table.num_rows + len(self.bad)


def file_format(path: Path) -> str:
    """'csv', 'xlsx', 'xls', 'xlsb', 'ods', 'parquet' or 'jsonl', by the file's suffix; what a
    spreadsheet really holds is sniffed when it is opened (``open_reader``)."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in EXCEL_SUFFIXES:
        return "xlsx" if suffix == ".xlsm" else suffix[1:]
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    allowed = ", ".join(SUFFIXES)
    raise InputError(
        f"{path.name}: unsupported file type {suffix or '(no extension)'!r} (allowed: {allowed})",
        hint="save the sheet as .xlsx or .csv" if suffix in (".numbers", ".et", ".wps") else None,
    )


def open_reader(path: Path, fmt: str, *, encoding: str | None, header_row: int | None, sheet: str | None,
                chunk_rows: int):
    """The reader for ``path`` of format ``fmt`` (see ``file_format``).

    ``header_row`` (1-based, the row a spreadsheet shows) replaces the header search for CSV,
    workbooks and HTML tables; ``sheet`` picks a workbook's sheet by name.
    """
    header_row = _check_header_row(header_row)
    name = path.name
    if fmt == "csv":
        content = sniff_content(path)
        if content in ("zip", "ole2"):  # a workbook saved under a text name
            reader = ExcelReader(path, chunk_rows=chunk_rows, header_row=header_row, sheet=sheet, content=content)
            reader.warnings.insert(0, (f"{name} is an Excel workbook, not text; read it as a workbook",
                                       f"{name} 实际是 Excel 工作簿而不是文本，已按工作簿读取"))
            return reader
        reader = CsvReader(path, encoding=encoding, chunk_rows=chunk_rows, header_row=header_row)
    elif fmt in SPREADSHEET_FORMATS:
        content = sniff_content(path)
        if content in ("zip", "ole2"):
            return ExcelReader(path, chunk_rows=chunk_rows, header_row=header_row, sheet=sheet, content=content)
        if content == "xml2003":
            raise InputError(
                f"{name} is an Excel 2003 XML spreadsheet, which cannot be read",
                hint="open it in Excel/WPS and save it as .xlsx or .csv",
            )
        if content == "html":
            reader = HtmlTableReader(path, encoding=encoding, chunk_rows=chunk_rows, header_row=header_row)
            reader.warnings.insert(0, (f"{name} is a web page (an HTML table), not an Excel workbook; "
                                       "read its first table", f"{name} 实际是网页表格（HTML）而不是 Excel 工作簿，已读取其中第一个表格"))
        else:
            reader = CsvReader(path, encoding=encoding, chunk_rows=chunk_rows, header_row=header_row)
            reader.warnings.insert(0, (f"{name} is {_DELIMITER_NAMES[reader.delimiter]}-separated text "
                                       f"({reader.encoding}), not an Excel workbook; read it as text",
                                       f"{name} 实际是分隔符文本（{reader.encoding}）而不是 Excel 工作簿，已按文本读取"))
    elif fmt == "jsonl":
        reader = JsonLinesReader(path, encoding=encoding, chunk_rows=chunk_rows)
    else:
        reader = ParquetReader(path, chunk_rows=chunk_rows)
    if sheet is not None:
        reader.warnings.append((f"{name} is not a workbook; sheet={sheet!r} was ignored",
                                f"{name} 不是工作簿，已忽略 sheet={sheet!r}"))
    if header_row is not None and fmt in ("jsonl", "parquet"):
        reader.warnings.append((f"{name} has no header row; header_row={header_row} was ignored",
                                f"{name} 没有表头行，已忽略 header_row={header_row}"))
    return reader


_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def _check_header_row(header_row) -> int | None:
    if header_row is None:
        return None
    if isinstance(header_row, bool) or not isinstance(header_row, (int, np.integer)) or header_row < 1:
        raise InputError(
            f"header_row must be a row number, 1 or more (the row that holds the column names), got {header_row!r}"
        )
    return int(header_row)


def sniff_content(path: Path) -> str:
    """What a spreadsheet file really holds, whatever its name says: 'zip' (.xlsx/.xlsb/.ods),
    'ole2' (Excel 97-2003 .xls), 'html' (a web page, as many back-ends write ".xls"),
    'xml2003' (Excel 2003 XML) or 'text' (delimited text, also common as ".xls")."""
    head, _ = read_sample(path, 64 * 1024)
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(OLE2_MAGIC[:4]):  # (a cut-off file is still said to be one)
        return "ole2"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="replace")
    else:
        text = head.decode("latin-1")  # the markup that decides is ASCII in any other encoding
    start = text.lstrip("\ufeff\xef\xbb\xbf \t\r\n").lower()
    if start.startswith("<"):
        lowered = text.lower()
        if "urn:schemas-microsoft-com:office:spreadsheet" in lowered and "<html" not in lowered:
            return "xml2003"  # <Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet">
        return "html"
    return "text"


# -- layout: header, title rows, totals rows -------------------------------------------------


def _filled(value) -> bool:
    """Whether a cell holds anything ('' and whitespace are empty; 0 and False are values)."""
    return value is not None and value != "" and not (type(value) is str and value.isspace())


def _cell_text(value) -> str:
    return value if type(value) is str else (value_to_str(value) or "")


def find_header(rows: list[list]) -> int | None:
    """The index in ``rows`` (the first rows of a table, blank ones included) of the header row.

    Looking at the first ``HEADER_SCAN_ROWS`` non-blank rows, the header is the first row that
    (1) has at least two filled cells, (2) at least two thirds as many as the widest of those
    rows, and (3) has the rows below it (the next five non-blank ones, by majority) end within
    its columns. A title line ("订单导出 2024-01-01 至 2024-12-31") has one filled cell and an
    info line ("导出时间：...", "店铺：...") few, so neither is taken; nor is a row whose columns
    the data goes past. When no row passes, the first of the widest rows is the header; when
    every row has at most one filled cell (a one-column file), the first non-blank row is.
    None when every row is blank.
    """
    filled, last = [], []
    for row in rows:
        marks = [_filled(v) for v in row]
        filled.append(sum(marks))
        last.append(max((i + 1 for i, m in enumerate(marks) if m), default=0))
    nonblank = [i for i, n in enumerate(filled) if n]
    if not nonblank:
        return None
    scan = nonblank[:HEADER_SCAN_ROWS]
    widest = max(filled[i] for i in scan)
    if widest < 2:
        return scan[0]
    for k, i in enumerate(scan):
        if filled[i] < 2 or 3 * filled[i] < 2 * widest:
            continue
        below = nonblank[k + 1:k + 6]
        if below and 2 * sum(last[j] <= last[i] for j in below) < len(below):
            continue
        return i
    return next(i for i in scan if filled[i] == widest)


def _title_warning(display: str, above: list[list], header_number: int) -> list[tuple[str, str]]:
    titles = [row for row in above if any(_filled(v) for v in row)]
    if not titles:
        return []
    first = next(_cell_text(v).strip() for v in titles[0] if _filled(v))
    first = first if len(first) <= 40 else first[:37] + "..."
    rows = "row" if len(titles) == 1 else "rows"
    return [(f"{display}: skipped {len(titles)} title {rows} above the header (row {header_number}): {first!r}",
             f"{display}：跳过表头（第 {header_number} 行）上方的 {len(titles)} 行标题：{first!r}")]


# 合计/总计 (total), 小计 (subtotal), in the first filled cell, maybe with a colon and a number
_TOTALS_WORD = r"合\s*计|总\s*计|小\s*计|grand\s*totals?|sub-?\s*totals?|totals?"
_TOTALS = re.compile(rf"\s*({_TOTALS_WORD})\s*[:：]?\s*(.*?)\s*", re.IGNORECASE | re.DOTALL)
# the same test for Arrow (RE2), a prefilter: candidates are checked in full by totals_word
_TOTALS_RE2 = rf"^[\s\x{{3000}}\x{{a0}}]*({_TOTALS_WORD})"
_TOTALS_FIRST_BYTES = pa.array([b"\xe5", b"\xe6", b"T", b"t", b"G", b"g", b"S", b"s", b" ", b"\t", b"\xe3", b"\xc2"],
                                pa.binary())
_SPACE_FIRST_BYTES = pa.array([b" ", b"\t", b"\xe3", b"\xc2"], pa.binary())  # U+3000 is E3 80 80, U+00A0 C2 A0
_AMOUNT = re.compile(
    r"(共\s*)?[+\-]?\s*[¥￥$]?\s*[+\-]?\d[\d,，]*(\.\d+)?\s*(%|元|笔|单|件|条|个|人|次|rmb|cny)?", re.IGNORECASE
)


def totals_word(cells) -> str | None:
    """'合计' when ``cells`` is a totals row: its first filled cell is 合计/总计/小计/Total/
    Totals/Grand total/Subtotal (maybe with a colon and an amount), and the other filled cells
    are mostly numbers. None for any other row."""
    texts = [_cell_text(v).strip() for v in cells if _filled(v)]
    if not texts:
        return None
    match = _TOTALS.fullmatch(texts[0])
    if match is None or (match.group(2) and not _AMOUNT.fullmatch(match.group(2))):
        return None
    rest = texts[1:]
    numbers = sum(1 for t in rest if _AMOUNT.fullmatch(t))
    if len(rest) - numbers > numbers:
        return None
    word = match.group(1)
    return " ".join(word.split()) if word.isascii() else re.sub(r"\s+", "", word)


_TOTALS_START = re.compile(rf"\s*({_TOTALS_WORD})", re.IGNORECASE)


def _maybe_totals(row) -> bool:
    """Cheap first test (the first filled cell starts with a totals word); ``totals_word`` decides."""
    first = row[0] if row else None
    if first == "" or (type(first) is str and first.isspace()):
        first = next((v for v in row if _filled(v)), None)
    return type(first) is str and _TOTALS_START.match(first) is not None


def totals_bad_row(row_number: int, word: str, raw: list) -> BadRow:
    return BadRow(
        row_number,
        f"row {row_number} is a totals row ({word}), not a data row; skipped",
        json.dumps(raw, ensure_ascii=False),
        reason_zh=f"第 {row_number} 行是合计行（{word}），不是明细数据，已跳过",
    )


def _split_totals(table: pa.Table, ncols: int) -> tuple[pa.Table, list[BadRow]]:
    """Take the totals rows out of ``table`` (c0..cN strings and _row), vectorised: only rows
    whose first filled cell starts with a totals word are looked at in Python."""
    if not ncols or not table.num_rows:
        return table, []
    first = table.column("c0")
    for i in range(1, ncols):
        blank = _blank_cells(first)
        if not pc.any(blank).as_py():
            break
        first = pc.if_else(blank, table.column(f"c{i}"), first)
    # first byte: 合 小 (E5), 总 (E6), T G S in either case, or white space (ASCII, U+3000, U+00A0);
    # order ids (digits, or E/P/letters) stop here, a byte check being ~5x cheaper than the regex
    initial = pc.is_in(_first_bytes(first), value_set=_TOTALS_FIRST_BYTES)
    if not pc.any(initial).as_py():
        return table, []
    hits = pc.and_(initial, pc.match_substring_regex(first, _TOTALS_RE2, ignore_case=True))
    if not pc.any(hits).as_py():
        return table, []
    candidates = table.filter(hits)
    numbers = candidates.column("_row").to_pylist()
    columns = [candidates.column(f"c{i}").to_pylist() for i in range(ncols)]
    bad, totals = [], set()
    for k, number in enumerate(numbers):
        fields = [col[k] for col in columns]
        word = totals_word(fields)
        if word is not None:
            bad.append(totals_bad_row(number, word, fields))
            totals.add(number)
    if not totals:
        return table, []
    keep = pc.invert(pc.is_in(table.column("_row"), pa.array(sorted(totals), pa.int64())))
    return table.filter(keep), bad


def _first_bytes(column):
    return pc.binary_slice(column.cast(pa.binary()), 0, 1)


def _blank_cells(column):
    """Which cells of a string column are empty or white space only (as ``_filled`` says)."""
    blank = pc.equal(pc.binary_length(column), 0)  # (comparing lengths is ~50x faster than to '')
    # white space only: trimmed only when some cell starts with it (ids written as "\t123" do)
    if pc.any(pc.is_in(_first_bytes(column), value_set=_SPACE_FIRST_BYTES)).as_py():
        blank = pc.or_(blank, pc.equal(pc.binary_length(pc.utf8_trim_whitespace(column)), 0))
    return blank


def _overflow_bad_row(row_number: int, used: int, ncols: int, raw: list) -> BadRow:
    return BadRow(
        row_number,
        f"row has values in {used} columns but the header has {ncols}",
        json.dumps(raw, ensure_ascii=False),
        reason_zh=f"第 {row_number} 行有 {used} 列有值，但表头只有 {ncols} 列",
    )


# -- chunks ------------------------------------------------------------------------------------


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
        # Excel stores every number as a float: 1001.0 is the id 1001 (exact below 2**53)
        if value.is_integer() and abs(value) < _EXACT:
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


_NULL_STRING = pa.scalar(None, pa.string())


def _cells_to_array(values) -> pa.Array:
    """One column of sheet cells as strings (``value_to_str``); an empty cell ('') is null."""
    try:
        array = pa.array(values, pa.string())  # all text: no Python per cell
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        # value_to_str, with the common types inlined (a call per cell costs half the reading)
        array = pa.array([
            v if type(v) is str
            else (str(int(v)) if v.is_integer() and -_EXACT < v < _EXACT else repr(v)) if type(v) is float
            else v.isoformat(" ") if type(v) is dt_.datetime
            else value_to_str(v)
            for v in values
        ], pa.string())
    empty = pc.equal(array, "")
    return pc.if_else(empty, _NULL_STRING, array) if pc.any(empty).as_py() else array


# -- CSV -------------------------------------------------------------------------------------


class CsvReader:
    """CSV/TSV/TXT, any of , tab ; | as delimiter; UTF-8, UTF-8 BOM, GBK/GB18030, UTF-16.

    The header is found among the first rows (``find_header``) or given as ``header_row``.
    Fast path: pyarrow's streaming reader, from the header on (lines above it are skipped
    unparsed); totals rows are picked out of each batch vectorised. At the first malformed
    record (a row with more or fewer fields than the header, an unclosed quote) it falls
    back, from that record on, to Python's csv module, which reports such rows one by one so
    each can be rejected or padded with its exact row number.
    """

    def __init__(self, path: Path, *, encoding: str | None, chunk_rows: int, header_row: int | None = None):
        self.path, self.chunk_rows = path, chunk_rows
        self.display = path.name
        self.warnings: list[str | tuple[str, str]] = []  # (English, Chinese) or English
        self.short_rows = 0
        self.encoding, text = open_text(path, encoding, name=self.display)
        if not text.strip():
            raise InputError(f"{self.display} is empty")
        self.delimiter = "\t" if path.suffix.lower() == ".tsv" else sniff_delimiter(text)
        complete = path.stat().st_size <= SAMPLE_BYTES
        records = _sample_records(text, self.delimiter, complete=complete, upto=header_row)
        rows = [fields for fields, _ in records]
        if header_row is None:
            index = find_header(rows)
            if index is None:
                raise InputError(f"{self.display} has no data (every line of its start is empty)")
            self.warnings.extend(_title_warning(self.display, rows[:index], index + 1))
        else:
            index = header_row - 1
            _check_header_cells(rows, index, display=self.display, complete=complete)
        self.header_row = index + 1  # the spreadsheet row of the header
        self.skip_lines = records[index][1]  # physical lines above the header
        self.header = rows[index]
        self.ncols = len(self.header)
        self.names = unique_names(self.header)

    def chunks(self) -> Iterator[Chunk]:
        return rechunk(self._pieces(), self.chunk_rows, lambda: self.names)

    def _decode_error(self, after_row: int) -> InputError:
        return InputError(
            f"{self.display}: bytes that are not valid {self.encoding} after row {after_row}",
            hint="pass the file's real encoding with --encoding (gb18030 for Chinese Excel, utf-8 otherwise)",
        )

    def _pieces(self) -> Iterator[tuple[pa.Table, list[BadRow]]]:
        emitted = 0  # data records handed on so far
        first_data_row = self.header_row + 1
        try:
            for batch in self._arrow_batches():
                n = batch.num_rows
                table = pa.Table.from_batches([batch]).append_column("_row", _row_numbers(first_data_row + emitted, n))
                emitted += n
                yield _split_totals(table, self.ncols)
            return
        except UnicodeDecodeError:
            raise self._decode_error(self.header_row + emitted) from None
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc) or "UTF-8" in str(exc):
                raise self._decode_error(self.header_row + emitted) from None
            if "CSV parse error" not in str(exc) and "straddling" not in str(exc):
                raise InputError(f"{self.display}: cannot read the CSV: {exc}") from None
        yield from self._python_pieces(skip=emitted)
        if self.short_rows:
            self.warnings.append((
                f"{self.display}: {self.short_rows} {'row' if self.short_rows == 1 else 'rows'} had fewer fields "
                "than the header; "
                "the missing fields were read as empty",
                f"{self.display}：{self.short_rows} 行的字段少于表头，缺少的字段按空值读取",
            ))

    def _arrow_batches(self) -> Iterator[pa.RecordBatch]:
        # pyarrow skips a UTF-8 BOM itself and transcodes other encodings with Python codecs
        arrow_encoding = "utf8" if self.encoding in ("utf-8", "utf-8-sig") else self.encoding
        reader = pa_csv.open_csv(
            self.path,
            read_options=pa_csv.ReadOptions(
                encoding=arrow_encoding, block_size=CSV_BLOCK_BYTES, autogenerate_column_names=True,
                skip_rows=self.skip_lines,  # physical lines, blank ones included, quotes not parsed
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
            if not header_seen and batch.num_rows:
                header_seen = True
                # skip_rows counts lines, not records: check that the header is where it was found
                if list(batch.slice(0, 1).to_pylist()[0].values()) != self.header:
                    raise pa.ArrowInvalid("CSV parse error: header differs")
                batch = batch.slice(1)
            yield batch.rename_columns(names)

    def _python_pieces(self, *, skip: int) -> Iterator[tuple[pa.Table, list[BadRow]]]:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        n = self.ncols
        # the BOM is not data: utf-8-sig strips it, plain utf-8 would keep it in the header
        encoding = "utf-8-sig" if self.encoding == "utf-8" else self.encoding
        record = 0  # records read, blank lines included (the header is record header_row)
        data = 0  # data records (not blank) after the header
        with open(self.path, encoding=encoding, newline="") as fh:
            reader = csv.reader(fh, delimiter=self.delimiter)
            columns: list[list[str | None]] = [[] for _ in range(n)]
            rows: list[int] = []
            bad: list[BadRow] = []
            try:
                for fields in reader:
                    record += 1
                    if record <= self.header_row or not fields:
                        continue  # title rows and the header; a blank line, as pyarrow skips them
                    data += 1
                    if data <= skip:
                        continue
                    row_number = self.header_row + data
                    if len(fields) > n and any(f.strip() for f in fields[n:]):
                        bad.append(
                            BadRow(
                                row_number,
                                f"row has {len(fields)} fields but the header has {n}",
                                json.dumps(fields, ensure_ascii=False),
                                reason_zh=f"第 {row_number} 行有 {len(fields)} 个字段，但表头只有 {n} 个",
                            )
                        )
                        continue
                    short = len(fields) < n
                    if short:
                        fields = fields + [""] * (n - len(fields))
                    elif len(fields) > n:
                        fields = fields[:n]
                    if _maybe_totals(fields) and (word := totals_word(fields)) is not None:
                        bad.append(totals_bad_row(row_number, word, fields))  # a short totals row is no news
                        continue
                    self.short_rows += short
                    for i in range(n):
                        columns[i].append(fields[i])
                    rows.append(row_number)
                    if len(rows) >= PIECE_ROWS:
                        yield _piece(columns, rows, n), bad
                        columns, rows, bad = [[] for _ in range(n)], [], []
            except UnicodeDecodeError:
                raise self._decode_error(self.header_row + data) from None
            yield _piece(columns, rows, n), bad


def _sample_records(text: str, delimiter: str, *, complete: bool, upto: int | None) -> list[tuple[list[str], int]]:
    """The first records of ``text`` (blank lines included, as empty lists), each with the
    number of physical lines before it: enough to find the header (or to reach row ``upto``)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    out: list[tuple[list[str], int]] = []
    nonblank, before, ended = 0, 0, True
    try:
        for fields in reader:
            out.append((fields, before))
            before = reader.line_num
            nonblank += any(f.strip() for f in fields)
            if (nonblank >= HEADER_SCAN_ROWS + 6 or len(out) >= SCAN_CAP_ROWS) if upto is None else len(out) >= upto:
                ended = False
                break
    except csv.Error:
        pass
    if ended and not complete and out:
        out.pop()  # the last record may be cut by the sample's end
    return out


def _check_header_cells(rows: list[list], index: int, *, display: str, complete: bool) -> None:
    """InputError unless the explicit header row ``index + 1`` exists and has cells."""
    if index >= len(rows):
        where = f"{display} has {len(rows)} rows" if complete else f"{display}'s first ~1 MB holds {len(rows)} rows"
        raise InputError(f"header_row {index + 1} is beyond the data ({where})",
                         hint="give the row number that holds the column names, as Excel/WPS shows it")
    if not any(_filled(v) for v in rows[index]):
        raise InputError(f"{display}: row {index + 1} (header_row) is empty",
                         hint="give the row number that holds the column names, as Excel/WPS shows it")


# -- sheets and HTML tables -----------------------------------------------------------------


class _GridReader:
    """Rows of cells (a sheet, an HTML table) as chunks: the header is found or given, rows
    above it are skipped, totals rows and rows wider than the header are set aside.

    A row is a list of cells, the empty cell ''; the first row yielded is row 1.
    """

    encoding: str | None = None
    display: str
    chunk_rows: int
    warnings: list[str]

    def _layout(self, rows: Iterator[list], header_row: int | None, *, where: str, part: str) -> None:
        """Find (or take) the header among the first ``rows``; ``where`` names the place for
        messages ("orders.xlsx sheet '订单'"), ``part`` the table within the file ("its sheet '订单'")."""
        buffer, nonblank = [], 0
        for row in rows:
            buffer.append(row)
            if header_row is None:
                nonblank += any(_filled(v) for v in row)
                if nonblank >= HEADER_SCAN_ROWS + 6 or len(buffer) >= SCAN_CAP_ROWS:
                    break
            elif len(buffer) >= header_row:
                break
        texts = [[_cell_text(v) for v in row] for row in buffer]
        if header_row is None:
            index = find_header(texts)
            if index is None:
                raise InputError(f"{self.display} is empty ({part} has no cells with values)")
            self.warnings.extend(_title_warning(self.display, buffer[:index], index + 1))
        else:
            index = header_row - 1
            if index >= len(buffer):
                raise InputError(f"header_row {header_row} is beyond the data ({where} has {len(buffer)} rows)",
                                 hint="give the row number that holds the column names, as Excel/WPS shows it")
            if not any(_filled(v) for v in buffer[index]):
                raise InputError(f"{where}: row {header_row} (header_row) is empty",
                                 hint="give the row number that holds the column names, as Excel/WPS shows it")
        header = texts[index]
        ncols = max((i + 1 for i, v in enumerate(header) if _filled(v)), default=0)
        self.header_row = index + 1
        self.ncols = ncols
        self.names = unique_names([v or None for v in header[:ncols]])
        self._rows = itertools.chain(buffer[index + 1:], rows)

    def chunks(self) -> Iterator[Chunk]:
        return rechunk(self._pieces(), self.chunk_rows, lambda: self.names)

    def _close(self) -> None:
        pass

    def _pieces(self) -> Iterator[tuple[pa.Table, list[BadRow]]]:
        n = self.ncols
        try:
            acc: list[list] = []
            numbers: list[int] = []
            bad: list[BadRow] = []
            for number, row in enumerate(self._rows, start=self.header_row + 1):
                width = len(row)
                if row.count("") == width:
                    continue  # an empty row carries nothing; its number stays reserved
                if width > n:
                    extra = row[n:]
                    if extra.count("") != len(extra) and any(_filled(v) for v in extra):
                        used = max(i + 1 for i, v in enumerate(row) if _filled(v))
                        bad.append(_overflow_bad_row(number, used, n, _raw_cells(row[:used])))
                        continue
                    row = row[:n]
                elif width < n:
                    row = row + [""] * (n - width)
                if _maybe_totals(row) and (word := totals_word(row)) is not None:
                    bad.append(totals_bad_row(number, word, _raw_cells(row)))
                    continue
                acc.append(row)
                numbers.append(number)
                if len(acc) >= PIECE_ROWS:
                    yield self._table(acc, numbers), bad
                    acc, numbers, bad = [], [], []
            yield self._table(acc, numbers), bad
        finally:
            self._close()

    def _table(self, acc: list[list], numbers: list[int]) -> pa.Table:
        n = self.ncols
        columns = list(zip(*acc)) if acc else [()] * n
        arrays = {f"c{i}": _cells_to_array(columns[i]) for i in range(n)}
        arrays["_row"] = pa.array(numbers, pa.int64())
        return pa.table(arrays)


def _raw_cells(row: list) -> list[str | None]:
    """A row as JSON-able text for rejects, empty cells as null, trailing ones dropped."""
    cells = [_cell_text(v) if _filled(v) else None for v in row]
    while cells and cells[-1] is None:
        cells.pop()
    return cells


# a notes sheet is passed over while another sheet holds a table
_NOTES_SHEET = re.compile(r"说明|备注|须知|帮助|注意|readme|read me|notes?\b|instructions?|help", re.IGNORECASE)


class ExcelReader(_GridReader):
    """A sheet of a workbook: .xlsx/.xlsm, Excel 97-2003 .xls, .xlsb or OpenDocument .ods.

    Read with calamine (python-calamine, Rust): the sheet is parsed at once and its rows are
    turned into strings a piece at a time (~10x openpyxl; BENCHMARKS.md). Cells become text
    as ``value_to_str`` says (1001.0 -> "1001", dates and times ISO 8601); an empty cell is null.
    openpyxl (read-only, streamed) is kept as the fallback for two kinds of .xlsx: one whose
    sheets store integers beyond 2**53 as numbers (calamine reads every number as a float,
    which would round a 19-digit order id; Excel never writes such numbers, Go/PHP writers
    do), and one whose sheet XML is over ``CALAMINE_MAX_XML_BYTES`` (memory).

    The sheet is ``sheet`` (by name) or the first one that holds a table: a header row and
    at least one row under it (sheets named like 说明/备注/notes, hidden sheets and sheets
    without a table are passed over, with a warning naming the sheet read).
    """

    def __init__(self, path: Path, *, chunk_rows: int, header_row: int | None = None, sheet: str | None = None,
                 content: str | None = None):
        self.path, self.chunk_rows, self.display = path, chunk_rows, path.name
        self.warnings: list[str | tuple[str, str]] = []  # (English, Chinese) or English
        content = content or sniff_content(path)
        kind = _check_zip(path, self.display) if content == "zip" else "xls"
        if kind == "xlsx" and (_sheets_xml_bytes(path) > CALAMINE_MAX_XML_BYTES or _long_integers(path)):
            self.book = _OpenpyxlBook(path, self.display)
        else:
            self.book = _CalamineBook(path, self.display, content, kind)
        try:
            self.sheet = self._choose_sheet(sheet)
            self._layout(self.book.rows(self.sheet), header_row, where=f"{self.display} sheet {self.sheet!r}",
                         part=f"its sheet {self.sheet!r}")
        except BaseException:
            self.book.close()
            raise

    def _close(self) -> None:
        self.book.close()

    def _choose_sheet(self, wanted: str | None) -> str:
        names = self.book.sheet_names
        if wanted is not None:
            for match in (lambda s: s == wanted, lambda s: s.strip().casefold() == wanted.strip().casefold()):
                found = [s for s in names if match(s)]
                if found:
                    return found[0]
            shown = ", ".join(repr(s) for s in names)
            raise InputError(f"{self.display} has no sheet named {wanted!r} (sheets: {shown})",
                             hint="pass one of the sheet names shown")
        if len(names) == 1:
            return names[0]
        first_choice = [s for s in names if not self.book.hidden(s) and not _NOTES_SHEET.search(s)]
        order = first_choice + [s for s in names if s not in first_choice]
        passed = []
        for name in order:
            if _holds_table(self.book.rows(name)):
                before = names[:names.index(name)]
                skipped = [s for s in names if s != name and (s in before or s in passed)]
                note = f" (passed over {', '.join(repr(s) for s in skipped)})" if skipped else ""
                skipped_zh = f"（跳过 {'、'.join(repr(s) for s in skipped)}）" if skipped else ""
                self.warnings.append((
                    f"{self.display} has {len(names)} sheets; read {name!r}, the first that holds a table{note}; "
                    "pass sheet= to read another",
                    f"{self.display} 有 {len(names)} 个工作表；读取了第一个含数据表的 {name!r}{skipped_zh}；"
                    "如需其他工作表请用 --sheet 指定",
                ))
                return name
            passed.append(name)
        for name in order:  # an export of an empty window: a header and no rows beats a notes sheet
            if _holds_table(self.book.rows(name), need_rows=False):
                self.warnings.append((f"{self.display} has {len(names)} sheets and none holds data rows; read "
                                      f"{name!r}, the first with a header row",
                                      f"{self.display} 有 {len(names)} 个工作表，都没有数据行；读取了第一个有表头的 {name!r}"))
                return name
        for name in names:  # no sheet looks like a table: the first with any cell
            if any(any(_filled(v) for v in row) for row in itertools.islice(self.book.rows(name), SCAN_CAP_ROWS)):
                self.warnings.append((f"{self.display} has {len(names)} sheets and none looks like a table; "
                                      f"read {name!r}", f"{self.display} 有 {len(names)} 个工作表，都不像数据表；读取了 {name!r}"))
                return name
        raise InputError(f"{self.display} is empty (no sheet has cells)")


def _holds_table(rows: Iterator[list], *, need_rows: bool = True) -> bool:
    """Whether the top of a sheet looks like a table: a header (``find_header``) of two or
    more cells and (with ``need_rows``) a non-blank row under it."""
    buffer, nonblank = [], 0
    for row in rows:
        buffer.append([_cell_text(v) for v in row])
        nonblank += any(_filled(v) for v in row)
        if nonblank >= HEADER_SCAN_ROWS + 6 or len(buffer) >= SCAN_CAP_ROWS:
            break
    index = find_header(buffer)
    if index is None or sum(_filled(v) for v in buffer[index]) < 2:
        return False
    return not need_rows or any(any(_filled(v) for v in row) for row in buffer[index + 1:])


_SUFFIXES_OF = {"xlsx": (".xlsx", ".xlsm"), "xlsb": (".xlsb",), "ods": (".ods",), "xls": (".xls",)}


class _CalamineBook:
    """A workbook read with calamine; rows start at the sheet's row 1, empty cells ''."""

    def __init__(self, path: Path, display: str, content: str, kind: str):
        from python_calamine import (  # noqa: PLC0415 - only workbook loads pay for the import
            CalamineError,
            CalamineWorkbook,
            PasswordError,
            SheetTypeEnum,
            SheetVisibleEnum,
        )

        self.display, self.errors = display, (CalamineError, ValueError, OSError)
        try:
            if path.suffix.lower() in _SUFFIXES_OF[kind]:
                self.book = CalamineWorkbook.from_path(str(path))
            else:
                # calamine picks its parser by the name; a real .xlsx named .xls (common) or the
                # reverse is read from memory, where it goes by the content
                with open(path, "rb") as fh:
                    self.book = CalamineWorkbook.from_filelike(fh)
        except PasswordError:
            raise _password_error(display) from None
        except self.errors as exc:
            raise _unreadable(path, display, content, exc) from None
        self.sheet_names = list(self.book.sheet_names)
        self._hidden = {m.name for m in self.book.sheets_metadata
                        if m.visible != SheetVisibleEnum.Visible or m.typ != SheetTypeEnum.WorkSheet}
        self._sheets: dict[str, object] = {}

    def hidden(self, name: str) -> bool:
        return name in self._hidden

    def rows(self, name: str) -> Iterator[list]:
        if name not in self._sheets:
            try:
                self._sheets = {name: self.book.get_sheet_by_name(name)}  # keep one parsed sheet at a time
            except self.errors as exc:
                raise InputError(f"{self.display}: cannot read sheet {name!r} ({exc})",
                                 hint="open it in Excel/WPS and save it again as .xlsx") from None
        sheet = self._sheets[name]
        if sheet.start is None:
            return iter(())  # an empty sheet (iter_rows needs a start cell)
        # iter_rows yields the rows above the first filled one as empty rows: numbering stays the sheet's
        return iter(sheet.iter_rows())

    def close(self) -> None:
        self._sheets = {}
        try:
            self.book.close()
        except Exception:  # noqa: BLE001 - already closed
            pass


class _OpenpyxlBook:
    """A workbook read with openpyxl (read-only, streamed): exact integers of any length."""

    def __init__(self, path: Path, display: str):
        import openpyxl  # noqa: PLC0415 - only these files pay for the import
        from openpyxl.utils.exceptions import InvalidFileException  # noqa: PLC0415

        self.file = open(path, "rb")  # noqa: SIM115 - a file object: openpyxl refuses names but .xlsx/.xlsm
        try:
            self.book = openpyxl.load_workbook(self.file, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
            self.file.close()
            raise InputError(f"{display} is not a readable .xlsx workbook ({exc})") from None
        self.sheet_names = list(self.book.sheetnames)

    def hidden(self, name: str) -> bool:
        return self.book[name].sheet_state != "visible"

    def rows(self, name: str) -> Iterator[list]:
        sheet = self.book[name]
        # some writers store a wrong sheet size ("A1"); read every cell the XML really has
        sheet.reset_dimensions()
        return (["" if v is None else v for v in values] for values in sheet.iter_rows(values_only=True))

    def close(self) -> None:
        self.book.close()
        self.file.close()


# calamine holds a whole sheet, ~1.3 bytes per byte of its XML (measured: +40 MB for 31 MB);
# beyond this openpyxl streams it in constant memory, ~10x slower
CALAMINE_MAX_XML_BYTES = 768 << 20


def _sheets_xml_bytes(path: Path) -> int:
    """The size of the largest sheet's XML in an .xlsx, uncompressed."""
    try:
        with zipfile.ZipFile(path) as book:
            return max((i.file_size for i in book.infolist() if i.filename.startswith("xl/worksheets/")), default=0)
    except (zipfile.BadZipFile, OSError):
        return 0


_LONG_INTEGER = re.compile(rb"<v>\s*-?(\d{16,})\s*</v>")
LONG_INTEGER_SCAN_BYTES = 4 << 20  # of each sheet's XML: tens of thousands of rows, ~50 ms


def _long_integers(path: Path) -> bool:
    """Whether an .xlsx stores a number cell holding an integer beyond 2**53 (inexact as a
    float) in the first ``LONG_INTEGER_SCAN_BYTES`` of a sheet: ids are in every row, and a
    whole scan would cost a third of the reading."""
    try:
        with zipfile.ZipFile(path) as book:
            for part in book.namelist():
                if part.startswith("xl/worksheets/") and part.endswith(".xml"):
                    with book.open(part) as fh:
                        data = fh.read(LONG_INTEGER_SCAN_BYTES)
                    if any(int(m.group(1)) >= _EXACT for m in _LONG_INTEGER.finditer(data)):
                        return True
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return False  # calamine reports the damage
    return False


def _check_zip(path: Path, display: str) -> str:
    """The kind of workbook the zip at ``path`` holds: 'xlsx', 'xlsb' or 'ods'; InputError
    when it holds something else."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{display} is damaged or incomplete: its zip container cannot be opened ({exc})",
                         hint="export or download the file again") from None
    if any(n.endswith("workbook.xml") for n in names):
        return "xlsx"
    if any(n.endswith("workbook.bin") for n in names):
        return "xlsb"
    if "content.xml" in names:
        return "ods"
    if "word/document.xml" in names:
        raise InputError(f"{display} is a Word document, not a spreadsheet",
                         hint="export the table as .xlsx or .csv")
    if any(n.startswith("ppt/") for n in names):
        raise InputError(f"{display} is a PowerPoint file, not a spreadsheet",
                         hint="export the table as .xlsx or .csv")
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise InputError(f"{display} is a zip archive, not an Excel workbook (it holds: {shown or 'nothing'})",
                     hint="unzip it and load the file inside")


def _password_error(display: str) -> InputError:
    return InputError(f"{display} is password-protected",
                      hint="open it in Excel/WPS, remove the password and save it as .xlsx")


def _unreadable(path: Path, display: str, content: str, exc: Exception) -> InputError:
    if content == "ole2":
        head, _ = read_sample(path)
        if "EncryptedPackage".encode("utf-16-le") in head:  # an encrypted .xlsx lives in an OLE2 box
            return _password_error(display)
        return InputError(
            f"{display} is a legacy Excel 97-2003 .xls workbook that cannot be read ({exc})",
            hint="open it in Excel/WPS and save it as .xlsx or .csv",
        )
    return InputError(f"{display} is not a readable workbook ({exc})",
                      hint="open it in Excel/WPS and save it again as .xlsx")


_SPACING = re.compile(r"\s\s|[^\S ]")  # two white spaces in a row, or one that is not a plain space
_BR = "\ue000"  # a <br> in a cell (a private-use character, not expected in a page)


class _TableParser(HTMLParser):
    """The rows of the first top-level <table> of an HTML page, as lists of cell texts,
    placed as a spreadsheet places them: colspan/rowspan cells leave empty cells beside/under
    them. Rows are collected as they close; ``take()`` hands them over."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0  # <table> nesting
        self.seen_table = False
        self.done = False
        self.ready: list[list[str]] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.carry: dict[int, int] = {}  # column -> rows still covered by a rowspan above
        self.row_carry: set[int] = set()
        self.new_carry: dict[int, int] = {}

    def take(self) -> list[list[str]]:
        rows, self.ready = self.ready, []
        return rows

    def handle_starttag(self, tag, attrs):
        if self.done:
            return
        if tag == "table":
            self.depth += 1
            self.seen_table = True
            return
        if self.depth != 1:
            if tag == "br" and self.cell is not None:
                self.cell.append(_BR)
            return
        if tag == "tr":
            self._end_row()
            self._start_row()
        elif tag in ("td", "th"):
            self._end_cell()
            if self.row is None:
                self._start_row()
            spans = dict(attrs)
            self._skip_covered()
            self.span = (_span(spans.get("colspan")), _span(spans.get("rowspan")))
            self.cell = []
        elif tag == "br" and self.cell is not None:
            self.cell.append(_BR)

    def handle_endtag(self, tag):
        if self.done:
            return
        if tag == "table":
            if self.depth == 1:
                self._end_row()
                self.done = True
            self.depth -= 1
        elif self.depth == 1:
            if tag in ("td", "th"):
                self._end_cell()
            elif tag == "tr":
                self._end_row()

    def handle_data(self, data):
        if self.cell is not None and not self.done:
            self.cell.append(data)

    def _start_row(self):
        self.row = []
        self.row_carry = {c for c, left in self.carry.items() if left > 0}
        self.new_carry = {}

    def _skip_covered(self):
        while len(self.row) in self.row_carry:
            self.row.append("")

    def _end_cell(self):
        if self.cell is None:
            return
        text = self.cell[0] if len(self.cell) == 1 else "".join(self.cell)
        if _BR in text or _SPACING.search(text):
            # as a browser shows it: runs of white space (line breaks in the source too) are one
            # space, a <br> is a line break
            text = "\n".join(" ".join(part.split()) for part in text.split(_BR)).strip()
        else:
            text = text.strip()
        colspan, rowspan = self.span
        start = len(self.row)
        self.row.append(text)
        self.row.extend([""] * (colspan - 1))
        if rowspan > 1:
            for c in range(start, start + colspan):
                self.new_carry[c] = rowspan - 1
        self.cell = None

    def _end_row(self):
        if self.row is None:
            return
        self._end_cell()
        while len(self.row) in self.row_carry:
            self.row.append("")
        carry = {c: left - 1 for c, left in self.carry.items() if c in self.row_carry and left > 1}
        carry.update(self.new_carry)
        self.carry = carry
        self.ready.append(self.row)
        self.row = None


def _span(value: str | None) -> int:
    if value is None:
        return 1
    try:
        return max(1, min(int(value.strip()), 1000))
    except ValueError:
        return 1


class HtmlTableReader(_GridReader):
    """The first table of an HTML page: what many back-ends (Youzan, Weidian, 小鹅通...)
    export under an ".xls" name. Streamed with the standard library's html.parser; the
    encoding is a BOM, else the page's ``<meta charset>``, else UTF-8/GB18030 as for CSV."""

    def __init__(self, path: Path, *, encoding: str | None, chunk_rows: int, header_row: int | None = None):
        self.path, self.chunk_rows, self.display = path, chunk_rows, path.name
        self.warnings: list[str | tuple[str, str]] = []  # (English, Chinese) or English
        sample, _ = read_sample(path)
        self.encoding, _ = open_text(path, encoding, name=self.display, declared=declared_charset(sample))
        self._layout(self._html_rows(), header_row, where=f"{self.display}'s table", part="its table")

    def _html_rows(self) -> Iterator[list[str]]:
        parser = _TableParser()
        encoding = "utf-8-sig" if self.encoding == "utf-8" else self.encoding
        try:
            with open(self.path, encoding=encoding, newline="") as fh:
                while not parser.done and (block := fh.read(1 << 20)):
                    parser.feed(block)
                    yield from parser.take()
                parser.close()
                yield from parser.take()
        except UnicodeDecodeError:
            raise InputError(
                f"{self.display}: bytes that are not valid {self.encoding} in the page",
                hint="pass the file's real encoding with --encoding (gb18030 or utf-8)",
            ) from None
        if not parser.seen_table:
            raise InputError(f"{self.display} is a web page without a table",
                             hint="export the data again as .xlsx or .csv")


# -- Parquet ---------------------------------------------------------------------------------


class ParquetReader:
    """A Parquet file, batch by batch; typed columns are turned into strings and validated
    like any other input (a naive timestamp column is read as shop-local time)."""

    encoding = None

    def __init__(self, path: Path, *, chunk_rows: int):
        import pyarrow.parquet as pq  # noqa: PLC0415

        self.path, self.chunk_rows, self.display = path, chunk_rows, path.name
        self.warnings: list[str | tuple[str, str]] = []  # (English, Chinese) or English
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
        self.warnings: list[str | tuple[str, str]] = []  # (English, Chinese) or English
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


_JSON_KINDS_ZH = {"list": "数组", "str": "字符串", "int": "数字", "float": "数字", "bool": "布尔值", "NoneType": "null"}


class JsonLinesReader:
    """One JSON object per line (.jsonl/.ndjson/.json); a .json file holding one array of
    objects is read element by element. Columns are the keys, in order of first appearance."""

    def __init__(self, path: Path, *, encoding: str | None, chunk_rows: int):
        self.path, self.chunk_rows, self.display = path, chunk_rows, path.name
        self.warnings: list[str | tuple[str, str]] = []  # (English, Chinese) or English
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
                                  json.dumps(text, ensure_ascii=False),
                                  reason_zh=f"第 {number} 行不是有效的 JSON"))
                continue
            if not isinstance(obj, dict):
                bad.append(BadRow(number, f"line {number} is a JSON {type(obj).__name__}, not an object",
                                  json.dumps(text, ensure_ascii=False),
                                  reason_zh=f"第 {number} 行是 JSON {_JSON_KINDS_ZH.get(type(obj).__name__, '值')}，"
                                            "不是对象（{...}）"))
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
