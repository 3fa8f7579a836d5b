"""Real shop exports: title rows above the header, workbooks with a notes sheet, totals rows,
".xls" files that are really HTML tables or text, and the calamine workbook reader."""

from __future__ import annotations

import datetime as dt
import json
import struct
import zipfile

import pytest

from userstrata.errors import InputError
from userstrata.ingest import load_file, readers
from userstrata.ingest.encoding import sniff_delimiter

from .conftest import rows

openpyxl = pytest.importorskip("openpyxl")

HEADER = ["订单号", "用户ID", "下单时间", "实付金额"]
TITLE = "订单导出 2024-01-01 至 2024-12-31"
# (order_id, user_id, ts in UTC, amount); Shanghai is UTC+8: 10:00 local is 02:00 UTC
A1 = ("A1", "u1", dt.datetime(2024, 6, 30, 2, 0), 12.5)
A3 = ("A3", "u3", dt.datetime(2024, 7, 1, 0, 30), 99.0)


def write_text(path, lines, *, encoding="utf-8"):
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def orders(store):
    return store.duckdb.execute("SELECT order_id, user_id, ts, amount FROM orders ORDER BY order_id").fetchall()


def rejects(store):
    """(row, column, value, reason) of every reject, in row order."""
    return store.duckdb.execute(
        "SELECT row_number, column_name, value, reason FROM rejects ORDER BY row_number").fetchall()


def read_all(path, **options):
    reader = readers.open_reader(path, readers.file_format(path), encoding=options.get("encoding"),
                                 header_row=options.get("header_row"), sheet=options.get("sheet"), chunk_rows=1000)
    table_rows, bad = [], []
    for chunk in reader.chunks():
        table_rows += chunk.table.to_pylist()
        bad += chunk.bad
    return reader, table_rows, bad


# -- header detection ------------------------------------------------------------------------

EXPORT_LINES = [
    TITLE,
    "",
    "导出时间：2024-07-02 09:00:00",
    "订单号,用户ID,下单时间,实付金额",
    "A1,u1,2024-06-30 10:00:00,12.50",
    "A2,u2,2024-07-01 08:30:00,abc",
    "A3,u3,2024-07-01 08:30:00,99",
    "合计,,,111.50",
]
# the same export saved again by Excel: every row padded to the table's width
EXCEL_SAVED_LINES = [line + "," * (3 - line.count(",")) for line in EXPORT_LINES]


@pytest.mark.parametrize("lines", [EXPORT_LINES, EXCEL_SAVED_LINES], ids=["back-end", "saved-by-excel"])
@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk"])
def test_csv_title_rows_are_skipped_and_rows_keep_spreadsheet_numbers(store, tmp_path, lines, encoding):
    path = write_text(tmp_path / "orders.csv", lines, encoding=encoding)
    report = load_file(store, "orders", path)
    # title, blank line and info line are rows 1-3, so the header is row 4 and A2 is row 6
    assert (report.rows_read, report.rows_rejected) == (4, 2)
    assert orders(store) == [A1, A3]
    assert rejects(store) == [
        (6, "amount", "abc", "amount 'abc' is not a number"),
        (8, None, None, "row 8 is a totals row (合计), not a data row; skipped"),
    ]
    assert f"orders.csv: skipped 2 title rows above the header (row 4): {TITLE!r}" in report.warnings


def test_csv_title_with_a_line_break_inside_quotes(tmp_path):
    # one spreadsheet row over two lines: the header is row 2, and the data rows 3 and 4
    path = write_text(tmp_path / "orders.csv", ['"订单导出', '2024-01-01 至 2024-12-31"', *EXPORT_LINES[3:5],
                                                 EXPORT_LINES[6]])
    reader, got, bad = read_all(path)
    assert reader.names == tuple(HEADER)
    assert [(r["_row"], r["c0"]) for r in got] == [(3, "A1"), (4, "A3")] and bad == []


def test_explicit_header_row_overrides_the_search(store, tmp_path):
    path = write_text(tmp_path / "orders.csv", EXPORT_LINES)
    report = load_file(store, "orders", path, header_row=4)
    assert orders(store) == [A1, A3] and report.rows_rejected == 2
    # header_row 3 makes the info line the header: its columns are what the file has
    with pytest.raises(InputError, match="missing required columns"):
        load_file(store, "orders", path, header_row=3)


@pytest.mark.parametrize("header_row, message", [
    (40, r"header_row 40 is beyond the data \(orders\.csv has 8 rows\)"),
    (2, r"orders\.csv: row 2 \(header_row\) is empty"),
    (0, r"header_row must be a row number, 1 or more"),
])
def test_header_row_out_of_place_is_a_clear_error(store, tmp_path, header_row, message):
    path = write_text(tmp_path / "orders.csv", EXPORT_LINES)
    with pytest.raises(InputError, match=message):
        load_file(store, "orders", path, header_row=header_row)
    assert rows(store, "loads") == []


def test_tab_separated_export_with_a_title_line(store, tmp_path):
    lines = [TITLE, "\t".join(HEADER), "A1\tu1\t2024-06-30 10:00:00\t12.5", "A3\tu3\t2024-07-01 08:30\t99"]
    assert sniff_delimiter("\n".join(lines)) == "\t"
    load_file(store, "orders", write_text(tmp_path / "orders.txt", lines))
    assert orders(store) == [A1, A3]


@pytest.mark.parametrize("layout, expected", [
    ([["订单导出"], [], ["导出时间：2024-07-02"], ["a", "b", "c", "d"], ["1", "2", "3", "4"]], 3),
    # an info line of two cells is not the header of a 4-column table
    ([["店铺：小店", "导出人：张三"], ["a", "b", "c", "d"], ["1", "2", "3", "4"]], 1),
    # nor one of three cells when the data goes past its columns
    ([["店铺：小店", "导出人：张三"], ["a", "b", "c"], ["1", "2", "3"]], 1),
    # a header with a blank name is still the header (not its first data row)
    ([["title"], ["a", "", "c", "d", "e"], ["1", "2", "3", "4", "5"]], 1),
    ([["a", "b"], ["1", "2"]], 0),
    # a one-column file: the first row
    ([[""], ["user_id"], ["u1"]], 1),
    ([[], ["", "  "]], None),
])
def test_find_header(layout, expected):
    assert readers.find_header(layout) == expected


# -- totals rows -----------------------------------------------------------------------------


@pytest.mark.parametrize("cells, word", [
    (["合计", "", "", "1,299.00"], "合计"),
    (["合计：", "", "58", "￥1,299.00"], "合计"),
    (["总计:58单", "", "", ""], "总计"),
    (["", "合 计", "", "12"], "合计"),
    (["小计", "", "", "12.5"], "小计"),
    (["Total", "", "", "$12.50"], "Total"),
    (["Grand  total", None, None, 12.5], "Grand total"),
    (["TOTALS", "", "", ""], "TOTALS"),
    # not totals rows: an order whose id happens to be a totals word, and a label
    (["Total", "u1", "2024-06-30 10:00", "12.5"], None),
    (["合计金额", "", "", "12"], None),
    (["T1001", "u1", "2024-06-30 10:00", "12.5"], None),
])
def test_totals_word(cells, word):
    assert readers.totals_word(cells) == word


def test_csv_totals_rows_are_taken_out_of_arrow_batches(store, tmp_path, monkeypatch):
    lines = ["订单号,用户ID,下单时间,实付金额"]
    lines += [f"T{i:06d},u{i % 7},2024-06-30 10:00:00,{i % 50 + 1}" for i in range(40_000)]  # ~1.6 MB: 2+ batches
    lines.insert(10_001, "\u3000,合计：,,1234")  # row 10,002: the first filled cell is the second
    lines.insert(30_002, "小计,,,1234")  # row 30,003
    lines.append('Total,,,"$99,999.00"')  # row 40,004
    path = write_text(tmp_path / "orders.csv", lines)

    def no_slow_path(self, *, skip):
        raise AssertionError("totals rows sent the CSV to the slow path")

    monkeypatch.setattr(readers.CsvReader, "_python_pieces", no_slow_path)
    report = load_file(store, "orders", path)
    assert (report.rows_read, report.rows_rejected) == (40_003, 3)
    assert len(orders(store)) == 40_000
    assert rejects(store) == [
        (10_002, None, None, "row 10002 is a totals row (合计), not a data row; skipped"),
        (30_003, None, None, "row 30003 is a totals row (小计), not a data row; skipped"),
        (40_004, None, None, "row 40004 is a totals row (Total), not a data row; skipped"),
    ]
    raw = store.duckdb.execute("SELECT raw FROM rejects ORDER BY row_number").fetchone()[0]
    assert json.loads(raw) == ["\u3000", "合计：", "", "1234"]


def test_totals_and_wide_rows_on_the_exact_path_have_chinese_reasons(tmp_path):
    lines = [TITLE, *EXPORT_LINES[3:5], "A9,u9,2024-06-30 10:00:00,1,extra", EXPORT_LINES[6], "总计：,,,111.5"]
    reader, got, bad = read_all(write_text(tmp_path / "orders.csv", lines))
    assert [(r["_row"], r["c0"]) for r in got] == [(3, "A1"), (5, "A3")]
    assert [(b.row_number, b.reason, b.reason_zh) for b in bad] == [
        (4, "row has 5 fields but the header has 4", "第 4 行有 5 个字段，但表头只有 4 个"),
        (6, "row 6 is a totals row (总计), not a data row; skipped", "第 6 行是合计行（总计），不是明细数据，已跳过"),
    ]


# -- workbooks -------------------------------------------------------------------------------


def orders_sheet(sheet):
    sheet["A1"] = "订单导出 2024-06"
    sheet.merge_cells("A1:D1")
    sheet["A2"] = "导出时间：2024-07-02 09:00:00"
    sheet.append([])  # row 3 stays empty
    sheet.append(HEADER)  # row 4
    sheet.append([1001, "u1", dt.datetime(2024, 6, 30, 10, 0), 12.5])  # integer id, datetime cell
    sheet.append(["A2", "u2", dt.date(2024, 7, 1), 99])  # a date cell: midnight in Shanghai
    sheet.append([1002, "u3", "2024-07-01 08:30", 1299.99])  # a text time, a decimal amount
    sheet.append(["合计", None, None, 1411.49])  # row 8


def test_xlsx_title_rows_typed_cells_and_totals(store, tmp_path):
    book = openpyxl.Workbook()
    orders_sheet(book.active)
    book.save(tmp_path / "orders.xlsx")
    reader, got, bad = read_all(tmp_path / "orders.xlsx")
    assert [[r[f"c{i}"] for i in range(4)] + [r["_row"]] for r in got] == [
        ["1001", "u1", "2024-06-30 10:00:00", "12.5", 5],
        ["A2", "u2", "2024-07-01", "99", 6],
        ["1002", "u3", "2024-07-01 08:30", "1299.99", 7],
    ]
    assert [(b.row_number, b.reason) for b in bad] == [(8, "row 8 is a totals row (合计), not a data row; skipped")]
    report = load_file(store, "orders", tmp_path / "orders.xlsx")
    assert orders(store) == [
        ("1001", "u1", dt.datetime(2024, 6, 30, 2, 0), 12.5),
        ("1002", "u3", dt.datetime(2024, 7, 1, 0, 30), 1299.99),
        ("A2", "u2", dt.datetime(2024, 6, 30, 16, 0), 99.0),
    ]
    assert "orders.xlsx: skipped 2 title rows above the header (row 4): '订单导出 2024-06'" in report.warnings


def notes_and_orders_book(path):
    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "说明"
    for line in ("本文件由后台导出", "金额单位：元", "时间为北京时间"):
        notes.append([line])
    orders_sheet(book.create_sheet("订单"))
    book.save(path)
    return path


def test_workbook_reads_the_first_sheet_that_holds_a_table(store, tmp_path):
    path = notes_and_orders_book(tmp_path / "export.xlsx")
    report = load_file(store, "orders", path)
    assert len(orders(store)) == 3
    assert ("export.xlsx has 2 sheets; read '订单', the first that holds a table (passed over '说明'); "
            "pass sheet= to read another") in report.warnings


def test_an_export_of_an_empty_window_reads_the_header_sheet_not_the_notes(store, tmp_path):
    book = openpyxl.Workbook()
    book.active.title = "说明"
    book.active.append(["抖店订单导出说明"])
    book.create_sheet("订单").append(HEADER)
    book.save(tmp_path / "empty.xlsx")
    report = load_file(store, "orders", tmp_path / "empty.xlsx")
    assert report.rows_read == 0 and orders(store) == []
    assert any("none holds data rows; read '订单'" in w for w in report.warnings)


def test_sheet_by_name_and_a_missing_sheet(store, tmp_path):
    path = notes_and_orders_book(tmp_path / "export.xlsx")
    report = load_file(store, "orders", path, sheet="订单", header_row=4)
    assert len(orders(store)) == 3 and not any("sheets" in w for w in report.warnings)
    with pytest.raises(InputError, match=r"export\.xlsx has no sheet named '订单明细' \(sheets: '说明', '订单'\)"):
        load_file(store, "orders", path, sheet="订单明细")
    with pytest.raises(InputError, match=r"header_row 50 is beyond the data \(export\.xlsx sheet '订单' has 8 rows\)"):
        load_file(store, "orders", path, sheet="订单", header_row=50)


def test_xlsx_long_integer_ids_stay_exact(store, tmp_path):
    # Go and PHP writers store a 19-digit order id as an exact number; a float would round it
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append([TITLE])
    sheet.append(["订单号", "用户ID", "下单时间", "实付金额"])
    sheet.append([777, "u1", "2024-06-30 10:00:00", 12.5])
    book.save(tmp_path / "plain.xlsx")
    with zipfile.ZipFile(tmp_path / "plain.xlsx") as src, zipfile.ZipFile(tmp_path / "orders.xlsx", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                assert b"<v>777</v>" in data
                data = data.replace(b"<v>777</v>", b"<v>4928374659283746523</v>")
            dst.writestr(item, data)
    load_file(store, "orders", tmp_path / "orders.xlsx")
    assert orders(store)[0][:2] == ("4928374659283746523", "u1")


def test_xlsx_named_xls_is_read_by_its_content(store, tmp_path):
    book = openpyxl.Workbook()
    orders_sheet(book.active)
    book.save(tmp_path / "orders.xls")  # what many back-ends do
    reader, got, bad = read_all(tmp_path / "orders.xls")
    assert [r["c0"] for r in got] == ["1001", "A2", "1002"] and [b.row_number for b in bad] == [8]


def test_workbook_named_csv_is_read_as_a_workbook(store, tmp_path):
    book = openpyxl.Workbook()
    orders_sheet(book.active)
    book.save(tmp_path / "orders.csv")
    report = load_file(store, "orders", tmp_path / "orders.csv")
    assert len(orders(store)) == 3
    assert "orders.csv is an Excel workbook, not text; read it as a workbook" in report.warnings


# -- ".xls" files ----------------------------------------------------------------------------

HTML_XLS = """<html><head>
<meta http-equiv="Content-Type" content="text/html; charset=gb2312">
<style>td {{ mso-number-format:"\\@"; }}</style></head><body>
<table border="1">
<thead>
<tr><td colspan="4"><b>订单导出</b> 2024-06</td></tr>
<tr><th>订单号</th><th>用户ID</th><th>下单时间</th><th>实付金额</th></tr>
</thead>
<tbody>
<tr><td>A1</td><td>u1</td><td>2024-06-30&nbsp;10:00:00</td><td>12.50</td></tr>
<tr><td>A2</td><td rowspan="2">u2</td><td>2024-07-01 08:30</td><td>abc</td></tr>
<tr><td>A3</td><td>2024-07-01 08:30</td><td>99</td></tr>
</tbody>
<tfoot><tr><td>合计</td><td></td><td></td><td>111.50</td></tr></tfoot>
</table>
<table><tr><td>another table</td></tr></table>
</body></html>"""


def test_html_table_saved_as_xls(store, tmp_path):
    path = tmp_path / "有赞订单.xls"
    path.write_bytes(HTML_XLS.format().encode("gbk"))
    report = load_file(store, "orders", path)
    assert report.encoding == "gb18030"
    # A3 sits under u2's rowspan, so its user cell is empty: rejected, not shifted
    assert orders(store) == [A1]
    assert [(r[0], r[1], r[3]) for r in rejects(store)] == [
        (4, "amount", "amount 'abc' is not a number"),
        (5, "user_id", "user_id is empty"),
        (6, None, "row 6 is a totals row (合计), not a data row; skipped"),
    ]
    assert report.warnings[0] == "有赞订单.xls is a web page (an HTML table), not an Excel workbook; read its first table"


def test_html_cells_are_placed_as_a_spreadsheet_shows_them(tmp_path):
    page = ("<table><tr><th>a</th><th>b</th><th>c</th><th>d</th></tr>"
            "<tr><td rowspan=2>r\n  1</td><td colspan=2>x<br>y</td><td>&nbsp;4 </td></tr>"
            "<tr><td>5</td><td>6</td><td>7</td></tr></table>")
    path = tmp_path / "t.xls"
    path.write_text(page, encoding="utf-8")
    _, got, _ = read_all(path)
    assert [[r[f"c{i}"] for i in range(4)] for r in got] == [["r 1", "x\ny", None, "4"], [None, "5", "6", "7"]]


def test_html_page_declared_charset_wins_over_the_guess(tmp_path):
    page = ('<html><head><meta charset="big5"></head><body><table>'
            "<tr><td>order_id</td><td>user_id</td><td>ts</td><td>amount</td></tr>"
            "<tr><td>B1</td><td>用戶甲</td><td>2024-06-30 10:00</td><td>1</td></tr></table></body></html>")
    path = tmp_path / "orders.xls"
    path.write_bytes(page.encode("big5"))
    reader, got, _ = read_all(path)
    assert reader.encoding == "big5" and got[0]["c1"] == "用戶甲"


def test_utf16_text_saved_as_xls(store, tmp_path):
    lines = [TITLE, "\t".join(HEADER), "A1\tu1\t2024-06-30 10:00:00\t12.5", "A3\tu3\t2024-07-01 08:30\t99",
             "合计\t\t\t111.5"]
    path = write_text(tmp_path / "微店订单.xls", lines, encoding="utf-16")
    report = load_file(store, "orders", path)
    assert report.encoding == "utf-16" and orders(store) == [A1, A3]
    assert rejects(store) == [(5, None, None, "row 5 is a totals row (合计), not a data row; skipped")]
    assert "微店订单.xls is tab-separated text (utf-16), not an Excel workbook; read it as text" in report.warnings


def _biff_record(kind: int, data: bytes = b"") -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def biff8_xls(sheet_name: str, cells: list[list]) -> bytes:
    """A minimal Excel 97-2003 workbook (BIFF8 records in an OLE2 compound file, [MS-XLS] and
    [MS-CFB]): one sheet of LABEL (text) and NUMBER cells."""
    def bof(kind):
        return _biff_record(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0, 0, 0, 0))

    def label(r, c, text):
        return _biff_record(0x0204, struct.pack("<HHHHB", r, c, 0, len(text), 1) + text.encode("utf-16-le"))

    def number(r, c, value):
        return _biff_record(0x0203, struct.pack("<HHHd", r, c, 0, value))

    def boundsheet(position):
        name = sheet_name.encode("utf-16-le")
        return _biff_record(0x0085, struct.pack("<IBBBB", position, 0, 0, len(sheet_name), 1) + name)

    codepage = _biff_record(0x0042, struct.pack("<H", 1200))  # UTF-16
    globals_size = len(bof(0x0005) + codepage + boundsheet(0) + _biff_record(0x000A))
    sheet = bof(0x0010) + b"".join(
        number(r, c, v) if isinstance(v, (int, float)) else label(r, c, v)
        for r, row in enumerate(cells) for c, v in enumerate(row) if v is not None
    ) + _biff_record(0x000A)
    stream = bof(0x0005) + codepage + boundsheet(globals_size) + _biff_record(0x000A) + sheet
    # 4096 bytes at least (smaller streams live in the mini stream), whole 512-byte sectors
    stream = stream.ljust(max(4096, -(-len(stream) // 512) * 512), b"\0")
    n_sectors = len(stream) // 512
    free, end = 0xFFFFFFFF, 0xFFFFFFFE
    # sector 0: the FAT, sector 1: the directory, sectors 2...: the Workbook stream
    fat = [0xFFFFFFFD, end] + [3 + i for i in range(n_sectors - 1)] + [end]
    fat += [free] * (128 - len(fat))
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16 + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
              + b"\0" * 6 + struct.pack("<9I", 0, 1, 1, 0, 4096, end, 0, end, 0)
              + struct.pack("<109I", 0, *[free] * 108))

    def entry(name, kind, child, start, size):
        raw = (name + "\0").encode("utf-16-le") if name else b""
        return (raw.ljust(64, b"\0") + struct.pack("<HBB", len(raw), kind, 1) + struct.pack("<III", free, free, child)
                + b"\0" * 36 + struct.pack("<II", start, size) + b"\0" * 4)

    directory = (entry("Root Entry", 5, 1, end, 0) + entry("Workbook", 2, free, 2, len(stream))
                 + entry("", 0, free, 0, 0) * 2)
    return header + struct.pack("<128I", *fat) + directory + stream


@pytest.mark.parametrize("name", ["orders.xls", "named-wrongly.xlsx"])
def test_legacy_biff_xls_is_read(store, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(biff8_xls("订单", [
        [TITLE], [], HEADER,
        ["A1", "u1", "2024-06-30 10:00:00", 12.5],
        [1001, "u3", "2024-07-01 08:30", 99],
        ["合计", None, None, 111.5],
    ]))
    report = load_file(store, "orders", path)
    assert report.encoding is None and report.rows_rejected == 1
    assert orders(store) == [("1001", *A3[1:]), A1]
    assert rejects(store) == [(6, None, None, "row 6 is a totals row (合计), not a data row; skipped")]


def test_unreadable_legacy_xls_says_how_to_convert_it(store, tmp_path):
    path = tmp_path / "orders.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 1000)
    with pytest.raises(InputError, match=r"orders\.xls is a legacy Excel 97-2003 \.xls workbook") as info:
        load_file(store, "orders", path)
    assert info.value.hint == "open it in Excel/WPS and save it as .xlsx or .csv"


def test_zip_that_is_not_a_workbook(store, tmp_path):
    with zipfile.ZipFile(tmp_path / "orders.xlsx", "w") as archive:
        archive.writestr("orders.csv", "order_id,user_id,ts,amount\n")
    message = r"orders\.xlsx is a zip archive, not an Excel workbook \(it holds: orders\.csv\)"
    with pytest.raises(InputError, match=message):
        load_file(store, "orders", tmp_path / "orders.xlsx")


def ods_bytes_to(path, rows):
    """A minimal OpenDocument spreadsheet: one sheet of string and float cells."""
    def cell(v):
        if v is None:
            return "<table:table-cell/>"
        if isinstance(v, (int, float)):
            return (f'<table:table-cell office:value-type="float" office:value="{v}"><text:p>{v}</text:p>'
                    "</table:table-cell>")
        return f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>'

    body = "".join("<table:table-row>" + "".join(cell(v) for v in row) + "</table:table-row>" for row in rows)
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="订单">{body}</table:table>'
        "</office:spreadsheet></office:body></office:document-content>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", content)
        archive.writestr("META-INF/manifest.xml", (
            '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
            'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
            '<manifest:file-entry manifest:full-path="/" '
            'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/></manifest:manifest>'))
    return path


def test_opendocument_ods_is_read(tmp_path):
    path = ods_bytes_to(tmp_path / "orders.ods", [[TITLE], HEADER, [1001, "u1", "2024-06-30 10:00:00", 12.5],
                                                  ["合计", None, None, 12.5]])
    reader, got, bad = read_all(path)
    assert reader.names == tuple(HEADER) and reader.encoding is None
    assert got == [{"c0": "1001", "c1": "u1", "c2": "2024-06-30 10:00:00", "c3": "12.5", "_row": 3}]
    assert [b.row_number for b in bad] == [4]
