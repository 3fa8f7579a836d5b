"""The command line end to end (CliRunner): init, load, rejects, profile, demo, errors."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from userstrata.cli import app
from userstrata.datasets import load_cdnow

runner = CliRunner()

ORDERS_CSV = (
    "单号,用户ID,下单时间,实付金额\n"
    "A1,u1,2024-06-01 10:00:00,30\n"
    "A2,u1,2024-06-20 10:00:00,50\n"
    "A3,u2,2024-06-25 10:00:00,abc\n"
    "A4,u2,2024-06-26 10:00:00,20\n"
)


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kw)


@pytest.fixture
def ws(tmp_path):
    path = tmp_path / "shop.duckdb"
    assert invoke("init", path).exit_code == 0
    return path


def test_load_profile_and_rejects_with_gbk_csv(tmp_path, ws):
    src = tmp_path / "订单.csv"
    src.write_bytes(ORDERS_CSV.encode("gbk"))
    result = invoke("load", "orders", src, "--workspace", ws)
    assert result.exit_code == 0, result.output
    assert "gb18030" in result.output.lower() or "gbk" in result.output.lower()
    # read 4, accepted 3, rejected 1, duplicates 0
    assert "4" in result.output and "3" in result.output

    again = invoke("load", "orders", src, "--workspace", ws)
    assert again.exit_code == 0

    rejects = invoke("rejects", "--workspace", ws)
    assert "amount" in rejects.output and "abc" in rejects.output

    out = tmp_path / "profiles.csv"
    result = invoke("profile", "--as-of", "2024-06-30", "--out", out, "--workspace", ws, "--lang", "zh")
    assert result.exit_code == 0, result.output
    assert "体验探索者" in result.output and "重要价值客户" in result.output
    frame = pd.read_csv(out, encoding="utf-8-sig").set_index("user_id")
    assert frame.loc["u1", "orders"] == 2 and frame.loc["u1", "monetary"] == 80  # loaded once
    assert frame.loc["u2", "orders"] == 1

    xlsx = tmp_path / "profiles.xlsx"
    assert invoke("profile", "--as-of", "2024-06-30", "--out", xlsx, "--workspace", ws).exit_code == 0
    sheet = pd.read_excel(xlsx).set_index("user_id")
    assert sheet.loc["u1", "monetary"] == 80 and sheet.loc["u1", "lifecycle"] == "growth"  # first seen 06-01


def test_env_var_names_the_workspace(tmp_path, ws, monkeypatch):
    src = tmp_path / "orders.csv"
    src.write_text(ORDERS_CSV, encoding="utf-8")
    result = runner.invoke(app, ["load", "orders", str(src)], env={"USERSTRATA_WORKSPACE": str(ws)})
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "--as-of", "30/06/2024"], "expected YYYY-MM-DD"),
        (["profile", "--out", "x.json"], "unsupported file type"),
        (["profile", "--lang", "fr"], "--lang 'fr' is not supported"),
        (["load", "payments", "x.csv"], "unknown table 'payments'"),
        (["load", "orders", "x.csv", "--map", "order_id"], "must look like canonical=source"),
        (["predict", "--model", "arima"], "--model 'arima': use one of bgnbd, pareto, mbgnbd"),
        (["backtest", "--cutoff", "2024-01-01", "--activity", "login"], "--activity 'login'"),
    ],
)
def test_user_errors_are_one_red_line_and_exit_2(tmp_path, ws, args, message):
    result = runner.invoke(app, [*args, "--workspace", str(ws)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_workspace_says_how_to_create_it(tmp_path):
    result = runner.invoke(app, ["profile", "--workspace", str(tmp_path / "nope.duckdb")])
    assert result.exit_code == 2
    assert "userstrata init" in result.output


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_demo_runs_on_bundled_data(tmp_path, lang):
    result = invoke("demo", "--users", "1500", "--out", tmp_path / "demo", "--lang", lang)
    assert result.exit_code == 0, result.output
    profile = pd.read_parquet(tmp_path / "demo" / "profiles.parquet")
    assert len(profile) > 1000
    words = {"en": ["Explorer", "Dormant", "Important value"], "zh": ["体验探索者", "沉睡", "重要价值客户"]}[lang]
    for word in words:
        assert word in result.output
    assert str(tmp_path / "demo" / "profiles.parquet") in result.output.replace("\n", "")


def test_demo_on_cdnow(tmp_path):
    result = invoke("demo", "--data", "cdnow", "--out", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    profile = pd.read_parquet(tmp_path / "demo" / "profiles.parquet")
    assert len(profile) == 23_570  # every CDNOW customer
    # independent expectation: churned = last purchase more than 90 days before the last day
    orders = load_cdnow(sample=False)
    day = (orders.ts + pd.Timedelta(hours=8)).dt.date  # local Shanghai day, as bundled
    last = day.groupby(orders.user_id).max()
    idle = (last.max() - last).map(lambda d: d.days)
    churned = profile.set_index("user_id").lifecycle.eq("churned")
    assert churned.sum() == (idle > 90).sum()
    assert "CDNOW" in result.output or "cdnow" in result.output


@pytest.fixture(scope="module")
def cdnow_ws(tmp_path_factory):
    from userstrata import Workspace

    path = tmp_path_factory.mktemp("cdnow") / "cdnow.duckdb"
    with Workspace.open(path) as ws:
        report = ws.load_frame("orders", load_cdnow(sample=True), source="CDNOW_sample")
        assert report.rows_accepted == 6919
    return path


def test_predict_writes_predictions_into_the_profile(tmp_path, cdnow_ws):
    out = tmp_path / "predicted.parquet"
    result = invoke("predict", "--as-of", "1997-09-30", "--horizon", "39w", "--out", out, "--workspace", cdnow_ws)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out).set_index("user_id")
    assert len(frame) == 2357
    for col in ("p_alive", "expected_purchases", "expected_spend", "clv", "clv_low", "clv_high",
                "churn_probability", "churn_reasons", "next_purchase_days"):
        assert col in frame.columns
    # P(alive) of a customer without repeat purchases is 1 under BG/NBD (FHL 2005, eq. 11 with x=0)
    assert (frame.loc[frame.frequency == 0, "p_alive"] == 1).all()
    assert (frame.clv_low <= frame.clv + 1e-9).all() and (frame.clv <= frame.clv_high + 1e-9).all()
    # the churn classifier needs history before as_of - horizon (1996-12-31): none, so a warning
    assert "warning" in result.output
    # and the snapshot in the workspace carries the predictions too
    from userstrata import Workspace

    with Workspace.open(cdnow_ws, create=False) as ws:
        snap = ws.table("profiles").to_pandas()
    assert {"p_alive", "clv", "churn_probability"} <= set(snap.columns)
    assert len(snap[snap.as_of == pd.Timestamp("1997-09-30")]) == 2357


def test_backtest_reports_accuracy_and_plots(tmp_path, cdnow_ws):
    out = tmp_path / "bt"
    result = invoke("backtest", "--cutoff", "1997-09-30", "--horizon", "39w", "--churn-horizon", "90d",
                    "--out", out, "--workspace", cdnow_ws)
    assert result.exit_code == 0, result.output
    assert (out / "by_frequency.csv").exists() and (out / "per_user.csv").exists()
    pngs = list(out.glob("*.png"))
    assert len(pngs) >= 2 and all(p.stat().st_size > 1000 for p in pngs)
    per_user = pd.read_csv(out / "per_user.csv")
    assert len(per_user) == 2357


def test_horizon_must_be_days_or_weeks(cdnow_ws):
    result = runner.invoke(app, ["predict", "--horizon", "3m", "--workspace", str(cdnow_ws)])
    assert result.exit_code == 2 and "90d or 39w" in result.output
