"""The command line end to end (CliRunner): what each command prints and the files it writes."""

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from userstrata import Workspace
from userstrata.cli import _app, app
from userstrata.datasets import load_cdnow
from userstrata.errors import InputError
from userstrata.i18n import label
from userstrata.schema import CANONICAL, EVENT_NAMES, ORDER_STATUSES, TIERS

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[1] / "docs"

ORDERS_CSV = (
    "单号,用户ID,下单时间,实付金额\n"
    "A1,u1,2024-06-01 10:00:00,30\n"
    "A2,u1,2024-06-20 10:00:00,50\n"
    "A3,u2,2024-06-25 10:00:00,abc\n"
    "A4,u2,2024-06-26 10:00:00,20\n"
)


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kw)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every row of the terminal tables in ``text`` (header rows included)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        for sep in ("┃", "│"):
            if line.startswith(sep) and line.endswith(sep):
                rows.append([c.strip() for c in line[1:-1].split(sep)])
    return rows


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


@pytest.fixture
def wide(monkeypatch):
    """A terminal wide enough that no table cell folds."""
    monkeypatch.setattr(_app.console, "width", 250)


@pytest.fixture
def ws(tmp_path):
    path = tmp_path / "shop.duckdb"
    assert invoke("init", path).exit_code == 0
    return path


@pytest.fixture
def loaded(tmp_path, ws):
    src = tmp_path / "订单.csv"
    src.write_bytes(ORDERS_CSV.encode("gbk"))
    assert invoke("load", "orders", src, "--workspace", ws).exit_code == 0
    return ws


def load_id_of(output: str, lang: str = "en") -> str:
    (line,) = lines_starting(output, label("col.load_id", lang) + ": ")
    return line.split(": ", 1)[1]


# -- start-up --------------------------------------------------------------------------------
def imported_modules(*args: str, cwd: Path) -> set[str]:
    """Every module a fresh ``userstrata ARGS`` process imports (python -X importtime)."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "userstrata.cli", *args],
        capture_output=True, text=True, cwd=cwd, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}


HEAVY = ("sklearn", "matplotlib", "scipy", "userstrata.models")


@pytest.mark.parametrize("args", [["--help"], ["schema"], ["load"]])
def test_light_commands_do_not_import_the_models(tmp_path, args):
    if args == ["load"]:
        src = tmp_path / "orders.csv"
        src.write_text(ORDERS_CSV, encoding="utf-8")
        assert invoke("init", tmp_path / "s.duckdb").exit_code == 0
        args = ["load", "orders", str(src), "--workspace", str(tmp_path / "s.duckdb")]
    modules = imported_modules(*args, cwd=tmp_path)
    assert "userstrata.cli" in modules  # the measurement saw the command's own imports
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert heavy == []


def test_version_and_short_help():
    assert invoke("--version").output == f"userstrata {metadata.version('userstrata')}\n"
    assert invoke("-h").output == invoke("--help").output
    assert invoke("load", "-h").output == invoke("load", "--help").output


# -- loading ---------------------------------------------------------------------------------
def test_load_prints_counts_in_the_chosen_language(tmp_path, ws):
    src = tmp_path / "订单.csv"
    src.write_bytes(ORDERS_CSV.encode("gbk"))
    first = invoke("load", "orders", src, "--workspace", ws, "--lang", "zh")
    assert first.exit_code == 0, first.output
    assert "订单.csv -> orders  (编码: gb18030)" in [line.strip() for line in first.stdout.splitlines()]
    assert table_rows(first.stdout) == [["读取", "新增", "更新", "未变", "拒绝"], ["4", "3", "0", "0", "1"]]

    again = invoke("load", "orders", src, "--workspace", ws)
    assert table_rows(again.stdout) == [
        ["Read", "Inserted", "Updated", "Unchanged", "Rejected"], ["4", "0", "0", "3", "1"],
    ]
    with Workspace.open(ws, create=False) as opened:
        assert list(opened.loads().load_id) == [load_id_of(first.stdout, "zh"), load_id_of(again.stdout)]
        assert opened.table("orders").count().execute() == 3


def test_item_level_export_reports_each_table(tmp_path, ws):
    src = tmp_path / "订单明细.csv"
    src.write_text(
        "订单编号,买家ID,下单时间,商品编码,单价,数量\n"
        "B1,u1,2024-06-01 10:00,sku-a,10,2\n"
        "B1,u1,2024-06-01 10:00,sku-b,5,1\n"
        "B2,u2,2024-06-02 11:00,sku-a,10,1\n",
        encoding="utf-8",
    )
    result = invoke("load", "orders", src, "--workspace", ws)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert rows[:2] == [["Read", "Inserted", "Updated", "Unchanged", "Rejected"], ["3", "3", "0", "0", "0"]]
    per_table = {r[0]: r[1:] for r in rows[3:]}
    assert rows[2] == ["Table", "Inserted", "Updated", "Unchanged"]
    assert per_table == {"orders": ["2", "0", "0"], "order_items": ["3", "0", "0"]}
    assert lines_starting(result.stdout, "note:") == [
        "note: amount: sum of unit price x quantity over the item lines (the file has no amount column)"
    ]
    with Workspace.open(ws, create=False) as opened:
        amounts = opened.table("orders").to_pandas().set_index("order_id").amount
    assert amounts.to_dict() == {"B1": 25.0, "B2": 10.0}  # 10 x 2 + 5, and 10


def test_sheet_and_header_row_reach_the_reader(tmp_path, ws):
    book = openpyxl.Workbook()
    book.active.title = "说明"
    book.active.append(["本文件由后台导出"])
    sheet = book.create_sheet("订单")
    sheet.append(["订单导出 2024年6月"])  # a title line above the header
    for line in ORDERS_CSV.splitlines():
        sheet.append(line.split(","))
    src = tmp_path / "orders.xlsx"
    book.save(src)
    result = invoke("load", "orders", src, "--sheet", "订单", "--header-row", "2", "--workspace", ws)
    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout)[1] == ["4", "3", "0", "0", "1"]
    wrong = runner.invoke(app, ["load", "orders", str(src), "--sheet", "订单", "--header-row", "3",
                                "--workspace", str(ws)])
    assert wrong.exit_code == 2 and len(lines_starting(wrong.stderr, "error:")) == 1


def test_loads_lists_and_unload_undoes(tmp_path, ws, wide):
    src = tmp_path / "orders.csv"
    src.write_text(ORDERS_CSV, encoding="utf-8")
    first = load_id_of(invoke("load", "orders", src, "--workspace", ws).stdout)
    changed = tmp_path / "orders-later.csv"
    changed.write_text(ORDERS_CSV.replace("A1,u1,2024-06-01 10:00:00,30", "A1,u1,2024-06-01 10:00:00,35"),
                       encoding="utf-8")
    second = load_id_of(invoke("load", "orders", changed, "--workspace", ws).stdout)

    listing = invoke("loads", "--workspace", ws, "--lang", "zh")
    header, *rows = table_rows(listing.stdout)
    assert header[:3] == ["导入批次", "数据表", "文件"] and header[3] == "导入时间 (Asia/Shanghai)"
    got = [dict(zip(header, row, strict=True)) for row in rows]
    assert [r["导入批次"] for r in got] == [first, second]
    assert [r["文件"] for r in got] == ["orders.csv", "orders-later.csv"]
    assert [(r["读取"], r["新增"], r["更新"], r["未变"], r["拒绝"]) for r in got] == [
        ("4", "3", "0", "0", "1"), ("4", "0", "1", "2", "1"),
    ]

    refused = runner.invoke(app, ["unload", first, "--workspace", str(ws)])
    assert refused.exit_code == 2
    assert len(lines_starting(refused.stderr, "error:")) == 1 and "Traceback" not in refused.output

    undone = invoke("unload", second, "--workspace", ws)
    assert undone.exit_code == 0, undone.output
    assert undone.stdout.startswith(f"undid load {second}")
    with Workspace.open(ws, create=False) as opened:
        amounts = opened.table("orders").to_pandas().set_index("order_id").amount
    assert amounts.to_dict() == {"A1": 30, "A2": 50, "A4": 20}  # the earlier version is back
    header, *rows = table_rows(invoke("loads", "--workspace", ws).stdout)
    undone_at = [dict(zip(header, row, strict=True))["Undone at (Asia/Shanghai)"] for row in rows]
    assert undone_at[0] == "" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", undone_at[1])


def test_rejects_in_chinese_to_a_file_and_english_on_screen(tmp_path, loaded, wide):
    out = tmp_path / "rejects.csv"
    result = invoke("rejects", "--lang", "zh", "--out", out, "--workspace", loaded)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, encoding="utf-8-sig")
    assert list(frame["行号"]) == [4] and list(frame["列"]) == ["amount"] and list(frame["值"]) == ["abc"]
    with Workspace.open(loaded, create=False) as opened:
        stored = opened.rejects()
    assert list(frame["原因"]) == list(stored.reason_zh)  # the Chinese reason, not the English one
    assert "'abc'" in frame["原因"][0] and re.search(r"[\u4e00-\u9fff]", frame["原因"][0])

    shown = invoke("rejects", "--workspace", loaded)
    assert table_rows(shown.stdout) == [
        ["Table", "File", "Row", "Column", "Reason"], ["orders", "订单.csv", "4", "amount", stored.reason[0]],
    ]


# -- the profile -----------------------------------------------------------------------------
def test_profile_defaults_to_a_chinese_workbook(tmp_path, loaded, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("profile", "--as-of", "2024-06-30", "--workspace", loaded, "--lang", "zh")
    assert result.exit_code == 0, result.output
    assert "用户画像已写入: profiles.xlsx (2 users, as of 2024-06-30)" in result.stdout.splitlines()
    frame = pd.read_excel(tmp_path / "profiles.xlsx", engine="openpyxl").set_index("用户ID")
    u1 = frame.loc["u1"]
    assert u1["累计消费金额(元)"] == 80 and u1["购买订单数"] == 2  # the rejected row is not counted
    assert frame.loc["u2", "累计消费金额(元)"] == 20 and frame.loc["u2", "购买订单数"] == 1
    # written in shop time, as the file had it (naive times in the input are shop-local)
    assert u1["首次购买时间 (Asia/Shanghai)"] == pd.Timestamp("2024-06-01 10:00")
    assert u1["最近购买时间 (Asia/Shanghai)"] == pd.Timestamp("2024-06-20 10:00")
    assert u1["生命周期阶段(代码)"] == "growth" and u1["生命周期阶段"] == "成长"  # first seen 06-01
    for code, name in zip(frame["价值层级(代码)"], frame["价值层级"], strict=True):
        assert code in TIERS and name == label(code, "zh")
    assert all(re.search(r"[\u4e00-\u9fff]", reason) for reason in frame["分层原因"])
    sheet = openpyxl.load_workbook(tmp_path / "profiles.xlsx").active
    assert sheet.freeze_panes == "A2"
    money = [c.value for c in sheet[1]].index("累计消费金额(元)") + 1
    assert sheet.cell(row=2, column=money).number_format == "#,##0.00"


def test_profile_csv_is_english_and_parquet_keeps_machine_columns(tmp_path, loaded):
    csv, parquet = tmp_path / "p.csv", tmp_path / "p.parquet"
    for out in (csv, parquet):
        assert invoke("profile", "--as-of", "2024-06-30", "--out", out, "--workspace", loaded).exit_code == 0
    assert csv.read_bytes().startswith(b"\xef\xbb\xbf")
    frame = pd.read_csv(csv, encoding="utf-8-sig").set_index("User ID")
    assert frame.loc["u1", "Net spend (CNY)"] == 80 and frame.loc["u1", "Value tier (code)"] in TIERS
    assert frame.loc["u1", "Last purchase (Asia/Shanghai)"] == "2024-06-20 10:00:00"
    machine = pd.read_parquet(parquet).set_index("user_id")
    assert machine.loc["u1", "monetary"] == 80 and "tier_label" not in machine.columns
    assert machine.loc["u1", "last_order_ts"] == pd.Timestamp("2024-06-20 02:00")  # UTC, as stored


@pytest.mark.parametrize("text", ["2024-06-30", "2024/6/30", "20240630", "2024年6月30日", "2024.06.30"])
def test_dates_in_the_styles_files_use(tmp_path, loaded, text):
    out = tmp_path / "p.parquet"
    result = invoke("profile", "--as-of", text, "--out", out, "--workspace", loaded)
    assert result.exit_code == 0, result.output
    assert set(pd.read_parquet(out).as_of) == {pd.Timestamp("2024-06-30")}


@pytest.mark.parametrize(
    ("text", "message"),
    [("30/06/2024", "is not a date; expected e.g. 2024-06-30"), ("2024-02-30", "is not a day of the calendar"),
     ("2024年13月1日", "is not a day of the calendar"), ("yesterday", "is not a date")],
)
def test_dates_that_are_not_days(text, message):
    with pytest.raises(InputError, match=message):
        _app.parse_date(text, "--as-of")


@pytest.mark.parametrize(
    ("as_of", "warning"),
    [
        ("2024-05-31", "--as-of 2024-05-31 is before the first day with orders or events (2024-06-01)"),
        ("2024-07-01", "--as-of 2024-07-01 is after the last day with orders or events (2024-06-26)"),
        ("2024-06-26", None),
        ("2024-06-01", None),
    ],
)
def test_as_of_outside_the_data_warns_in_one_line(tmp_path, loaded, as_of, warning):
    result = invoke("profile", "--as-of", as_of, "--out", tmp_path / "p.parquet", "--workspace", loaded)
    assert result.exit_code == 0, result.output
    warnings = lines_starting(result.stderr, "warning:")
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(f"warning: {warning}")


# -- the schema ------------------------------------------------------------------------------
def test_schema_lists_every_canonical_column_and_the_vocabularies():
    result = invoke("schema")
    assert result.exit_code == 0
    got, table = {}, None
    for line in result.stdout.splitlines():
        if heading := re.fullmatch(r"(\w+)  key: (.+)", line):
            table = heading[1]
            got[table] = {"key": tuple(heading[2].split(", ")), "columns": {}}
        elif table and (col := re.fullmatch(r"  (\w+)\s+(\w+)\s+(required|optional.*)", line)):
            got[table]["columns"][col[1]] = (col[2], col[3] == "required")
        elif not line.strip():
            table = None
    want = {
        name: {"key": spec.key, "columns": {c: (str(spec.schema[c]), c in spec.required) for c in spec.columns}}
        for name, spec in CANONICAL.items()
    }
    assert got == want
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert set(ORDER_STATUSES) <= listed and set(EVENT_NAMES) <= listed


def test_schema_of_one_table():
    result = invoke("schema", "order_items")
    assert lines_starting(result.stdout, "order_items  key:") and not lines_starting(result.stdout, "orders  key:")
    assert runner.invoke(app, ["schema", "payments"]).exit_code == 2


def test_schema_doc_describes_every_canonical_column():
    text = (DOCS / "schema.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `(\w+)`\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    for name, spec in CANONICAL.items():
        assert name in sections, f"docs/schema.md has no section for {name}"
        for column in spec.columns:
            assert f"`{column}`" in sections[name], f"docs/schema.md: {name}.{column} is not described"
    for value in (*ORDER_STATUSES, *EVENT_NAMES):
        assert f"`{value}`" in text


def test_schema_doc_vocabulary_is_what_ingest_maps():
    from userstrata.ingest import vocab

    text = (DOCS / "schema.md").read_text(encoding="utf-8")
    for title, lookup, canonical in (("Order statuses", vocab.status_lookup({}), ORDER_STATUSES),
                                     ("Event names", vocab.event_lookup({}), EVENT_NAMES)):
        section = re.search(rf"^### {title}\n(.*?)(?=^##)", text, re.S | re.M)[1]
        rows = re.findall(r"^\| `(\w+)` \|(?: [^|]+ \|)? ([^|]+) \|$", section, re.M)
        assert [value for value, _ in rows] == list(canonical)
        for value, sources in rows:
            for source in sources.split(", "):
                assert lookup[vocab.fold(source)] == value, f"docs/schema.md: {source} -> {value}"


@pytest.mark.parametrize("table", list(CANONICAL))
def test_schema_doc_examples_load_without_rejects(tmp_path, ws, table):
    text = (DOCS / "schema.md").read_text(encoding="utf-8")
    section = re.search(rf"^## `{table}`\n(.*?)(?=^## |\Z)", text, re.S | re.M)[1]
    examples = re.findall(r"```csv\n(.*?)```", section, re.S)
    assert examples
    for i, example in enumerate(examples):
        src = tmp_path / f"{table}{i}.csv"
        src.write_text(example, encoding="utf-8")
        result = invoke("load", table, src, "--workspace", ws)
        assert result.exit_code == 0, result.output
        read, *_, rejected = table_rows(result.stdout)[1]
        assert read == str(example.count("\n") - 1) and rejected == "0"
        assert lines_starting(result.stderr, "warning:") == []


# -- errors ----------------------------------------------------------------------------------
def test_env_var_names_the_workspace(tmp_path, ws):
    src = tmp_path / "orders.csv"
    src.write_text(ORDERS_CSV, encoding="utf-8")
    result = runner.invoke(app, ["load", "orders", str(src)], env={"USERSTRATA_WORKSPACE": str(ws)})
    assert result.exit_code == 0, result.output
    with Workspace.open(ws, create=False) as opened:
        assert opened.table("orders").count().execute() == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "--as-of", "30/06/2024"], "error: --as-of '30/06/2024' is not a date; expected e.g. 2024-06-30"),
        (["profile", "--out", "x.json"], "error: x.json: unsupported file type '.json'"),
        (["profile", "--lang", "fr"], "error: --lang 'fr' is not supported"),
        (["load", "payments", "x.csv"], "error: unknown table 'payments'"),
        (["load", "orders", "x.csv", "--map", "order_id"], "error: --map 'order_id' must look like canonical=source"),
        (["predict", "--model", "arima"], "error: --model 'arima': use one of auto, bgnbd, pareto, mbgnbd"),
        (["backtest", "--cutoff", "2024-01-01", "--activity", "login"], "error: --activity 'login'"),
        (["predict", "--horizon", "3m"], "error: --horizon '3m': expected days or weeks such as 90d or 39w"),
        (["unload", "nope"], "error: "),
    ],
)
def test_user_errors_are_one_red_line_and_exit_2(ws, args, message):
    result = runner.invoke(app, [*args, "--workspace", str(ws)])
    assert result.exit_code == 2
    errors = lines_starting(result.stderr, "error:")
    assert len(errors) == 1 and errors[0].startswith(message)
    assert "Traceback" not in result.output


def test_missing_workspace_says_how_to_create_it(tmp_path):
    result = runner.invoke(app, ["profile", "--workspace", str(tmp_path / "nope.duckdb")])
    assert result.exit_code == 2
    assert "userstrata init" in result.stderr


# -- whole runs ------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_demo_runs_on_bundled_data(tmp_path, lang):
    result = invoke("demo", "--users", "1500", "--out", tmp_path / "demo", "--lang", lang)
    assert result.exit_code == 0, result.output
    profile = saved_profile(tmp_path / "demo" / "shop.duckdb")
    assert len(profile) > 1000
    words = {"en": ["Explorer", "Dormant", "Important value", "Migration", "Markov forecast"],
             "zh": ["体验探索者", "沉睡", "重要价值客户", "迁移（人数）", "马尔可夫预测"]}[lang]
    for word in words:
        assert word in result.output
    assert str(tmp_path / "demo" / "profiles.xlsx") in result.output.replace("\n", "")
    # the file for people has the profile's users, with headers in the chosen language
    people = pd.read_excel(tmp_path / "demo" / "profiles.xlsx", engine="calamine")
    assert len(people) == len(profile)
    assert {"en": "Value tier", "zh": "价值层级"}[lang] in people.columns


def saved_profile(workspace) -> pd.DataFrame:
    """The snapshot the demo saved in its workspace (machine column names)."""
    import duckdb

    with duckdb.connect(str(workspace), read_only=True) as con:
        return con.execute("SELECT * FROM profiles").df()


@pytest.mark.slow  # the whole pipeline on 23k CDNOW customers: minutes
def test_demo_on_cdnow(tmp_path):
    result = invoke("demo", "--data", "cdnow", "--out", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    profile = saved_profile(tmp_path / "demo" / "cdnow.duckdb")
    assert len(profile) == 23_570  # every CDNOW customer
    # independent expectation: churned = last purchase more than 90 days before the last day
    orders = load_cdnow(sample=False)
    day = (orders.ts + pd.Timedelta(hours=8)).dt.date  # local Shanghai day, as bundled
    last = day.groupby(orders.user_id).max()
    idle = (last.max() - last).map(lambda d: d.days)
    churned = profile.set_index("user_id").lifecycle.eq("churned")
    assert churned.sum() == (idle > 90).sum()


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory):
    """A workspace with the CDNOW sample, and its settings: an American store, in dollars."""
    folder = tmp_path_factory.mktemp("cdnow")
    config = folder / "userstrata.toml"
    config.write_text('currency = "USD"\n', encoding="utf-8")
    path = folder / "cdnow.duckdb"
    with Workspace.open(path, settings=config) as ws:
        report = ws.load_frame("orders", load_cdnow(sample=True), source="CDNOW_sample")
        assert report.rows_inserted == 6919
    return ["--workspace", path, "--config", config]


def test_predict_writes_predictions_into_the_profile(tmp_path, cdnow):
    out = tmp_path / "predicted.parquet"
    result = invoke("predict", "--as-of", "1997-09-30", "--horizon", "39w", "--out", out, *cdnow)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out).set_index("user_id")
    assert len(frame) == 2357
    for col in ("p_alive", "expected_purchases", "expected_spend", "clv", "clv_low", "clv_high",
                "churn_probability", "churn_reasons", "next_purchase_days"):
        assert col in frame.columns
    # auto chose a model and says which and why, by BIC
    chosen = re.search(r"Purchase model: auto chose (BG/NBD|MBG/NBD|Pareto/NBD): lowest BIC", result.stdout)
    assert chosen, result.stdout
    if chosen.group(1) == "BG/NBD":  # eq. 11 of FHL (2005) with x = 0
        assert (frame.loc[frame.frequency == 0, "p_alive"] == 1).all()
    assert frame.loc[frame.frequency >= 0, "p_alive"].between(0, 1).all()
    assert (frame.clv_low <= frame.clv + 1e-9).all() and (frame.clv <= frame.clv_high + 1e-9).all()
    # the churn classifier needs history before as_of - horizon (1996-12-31): none, so a warning
    assert lines_starting(result.stderr, "warning:")
    # and the snapshot in the workspace carries the predictions too
    with Workspace.open(cdnow[1], create=False) as ws:
        snap = ws.table("profiles").to_pandas()
    assert {"p_alive", "clv", "churn_probability"} <= set(snap.columns)
    assert len(snap[snap.as_of == pd.Timestamp("1997-09-30")]) == 2357


def test_predict_workbook_in_chinese(tmp_path, cdnow):
    out = tmp_path / "predicted.xlsx"
    result = invoke("predict", "--as-of", "1997年9月30日", "--horizon", "90d", "--out", out, "--lang", "zh", *cdnow)
    assert result.exit_code == 0, result.output
    frame = pd.read_excel(out, engine="openpyxl")
    assert len(frame) == 2357
    assert frame["流失概率"].between(0, 1).all() and (frame["客户终身价值(USD)"] >= 0).all()
    reasons = frame["流失原因"].dropna()
    assert len(reasons) > 0 and all(re.search(r"[\u4e00-\u9fff]", r) for r in reasons)
    sheet = openpyxl.load_workbook(out, read_only=True).active
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    row2 = next(sheet.iter_rows(min_row=2, max_row=2))
    assert row2[header.index("流失概率")].number_format == "0.0%"
    assert row2[header.index("客户终身价值(USD)")].number_format == "#,##0.00"


def test_backtest_reports_accuracy_and_plots(tmp_path, cdnow):
    out = tmp_path / "bt"
    result = invoke("backtest", "--cutoff", "1997-09-30", "--horizon", "39w", "--churn-horizon", "90d",
                    "--out", out, *cdnow)
    assert result.exit_code == 0, result.output
    assert (out / "by_frequency.csv").exists() and (out / "per_user.csv").exists()
    pngs = list(out.glob("*.png"))
    assert len(pngs) >= 2 and all(p.stat().st_size > 1000 for p in pngs)
    per_user = pd.read_csv(out / "per_user.csv")
    assert len(per_user) == 2357


def test_backtest_speaks_chinese(tmp_path, cdnow):
    result = invoke("backtest", "--cutoff", "1997-09-30", "--horizon", "39w", "--churn-horizon", "90d",
                    "--model", "bgnbd", "--lang", "zh", "--out", tmp_path / "bt", *cdnow)
    assert result.exit_code == 0, result.output
    for text in ("回测：截止 1997-09-30", "合计误差 %", "流失分类器 AUC", "1 - 存活概率 AUC", "按校准期复购次数",
                 "购买队列跟踪：", "购买模型：BG/NBD"):
        assert text in result.stdout, text
    # every metric has a name for people: no machine key is left in the table
    assert not re.search(r"\b(total_error_pct|classifier_auc|palive_brier|tracking_cum_error_pct)\b", result.stdout)
    assert "e+0" not in result.stdout  # 22,530, not 2.253e+04


# -- the predictions summary -------------------------------------------------------------------


def _predictions_frame() -> pd.DataFrame:
    nan = float("nan")
    rows = [  # tier, P(buy in horizon), churn, expected purchases, CLV
        ("co_builder", 0.9, 0.1, 3.0, 300.0), ("co_builder", 0.7, 0.3, 2.0, 100.0),
        ("regular", 0.5, 0.5, 1.0, 50.0),
        ("explorer", nan, 0.95, nan, nan), ("explorer", nan, 0.85, nan, nan),  # never bought
    ]
    return pd.DataFrame(rows, columns=["tier", "next_purchase_within_horizon", "churn_probability",
                                       "expected_purchases", "clv"])


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_predictions_summary_reads_right_at_80_columns(monkeypatch, lang):
    from rich.cells import cell_len
    from rich.console import Console

    from userstrata.cli import output

    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    monkeypatch.setattr(output, "console", console)
    output.print_predictions(_predictions_frame(), 90, lang)
    text = console.export_text()
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in text.splitlines() if line.startswith("│")}
    # every header whole, nothing cut short (Chinese characters are two columns wide)
    for key in ("mean_p_purchase", "mean_churn_short", "total_expected_purchases", "total_clv"):
        assert all(part in text for part in label(key, lang).split("\n")), (label(key, lang), text)
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│├└"]
    assert "…" not in text and max(cell_len(line) for line in table) <= 80  # the note after it may wrap
    # means are means, totals are totals; a tier with nothing to show says n/a, never 0
    assert rows[label("co_builder", lang)] == ["2", "0.80", "0.20", "5", "400"]
    assert rows[label("explorer", lang)] == ["2", "n/a", "0.90", "n/a", "n/a"]
    assert rows[label("all_tiers", lang)] == ["5", "0.70", "0.54", "6", "450"]
    # P(alive) is gone from the summary: under BG/NBD a one-time buyer is alive by definition
    assert label("mean_p_alive", lang) not in text
    assert ("均值" in text and "合计" in text) if lang == "zh" else ("Mean" in text and "Total" in text)



@pytest.mark.slow  # a dozen profiles of CDNOW through the CLI: minutes
def test_snapshots_and_migration(tmp_path, cdnow):
    first = invoke("snapshot", "--as-of", "1997-09-30", *cdnow)
    again = invoke("snapshot", "--as-of", "1997-09-30", "--lang", "zh", *cdnow)
    assert first.exit_code == 0 and again.exit_code == 0, again.output
    assert "replaced the earlier snapshot" in first.stdout or "saved" in first.stdout
    assert "已替换原有快照" in again.stdout  # the second run of a day replaces it, and says so
    listed = invoke("snapshots", *cdnow)
    assert "1997-09-30" in listed.stdout and "2,357" in listed.stdout
    out = tmp_path / "moves.csv"
    moved = invoke("migration", "--from", "1997-09-30", "--to", "1998-06-30", "--lang", "zh", "--out", out, *cdnow)
    assert moved.exit_code == 0, moved.output
    assert "迁移（人数）" in moved.stdout and "升级" in moved.stdout and "新出现" in moved.stdout
    yearly = invoke("migration", "--from", "1997-06-30", "--to", "1998-06-30", "--every", "1q", *cdnow)
    assert yearly.exit_code == 0, yearly.output
    assert re.search(r"annual migration rate: \d+\.\d%", yearly.stdout)
    ahead = invoke("migration", "--from", "1997-03-31", "--to", "1998-06-30", "--every", "1q", "--forecast", "2",
                   "--lang", "zh", *cdnow)
    assert ahead.exit_code == 0, ahead.output
    assert "马尔可夫预测" in ahead.stdout and "转移矩阵稳定性" in ahead.stdout and "回测" in ahead.stdout
    assert "含新进入与离开的人数预测" in ahead.stdout and "每期新进入" in ahead.stdout and "每期离开概率" in ahead.stdout
    alone = invoke("migration", "--from", "1997-03-31", "--forecast", "2", *cdnow)
    assert alone.exit_code == 2 and "--forecast needs --every" in alone.stderr
    moves = pd.read_csv(out, encoding="utf-8-sig")
    assert len(moves) > 0 and "原状态" in moves.columns
    bad = invoke("migration", "--from", "1997-09-30", "--by", "colour", *cdnow)
    assert bad.exit_code == 2 and "--by 'colour'" in bad.stderr
