"""Tables for people: localised headers and labels, shop time, and the files Excel opens."""

import math

import numpy as np
import openpyxl
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from userstrata import export
from userstrata.errors import InputError
from userstrata.i18n import label


def profile_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "=HYPERLINK(\"x\")"],
            # naive UTC, as the store keeps it: 16:30 UTC on May 1 is 00:30 on May 2 in Shanghai
            "last_order_ts": pd.to_datetime(["2024-05-01 16:30", "2024-05-02 01:00", None]),
            "monetary": [1234.5, 20.0, np.nan],
            "refund_rate": [0.25, 0.0, np.nan],
            "orders": [3, 1, 0],
            "tier": ["co_builder", "explorer", "explorer"],
            "lifecycle": ["mature", "churned", "potential"],
            "rfm_cell": ["important_value", "general_retain", None],
            "tier_reason": ["价值得分前 5%", "1 笔订单", "未购买"],
            "as_of": pd.to_datetime(["2024-06-30"] * 3).astype("datetime64[s]"),  # a local day
            "custom_flag": ["a", "b", "c"],
        }
    )


def test_zh_headers_labels_next_to_codes_and_shop_time():
    got = export.localize(profile_rows(), "zh", "Asia/Shanghai")
    assert list(got.columns) == [
        "用户ID", "最近购买时间 (Asia/Shanghai)", "累计消费金额(元)", "退款率", "购买订单数",
        "价值层级(代码)", "价值层级", "生命周期阶段(代码)", "生命周期阶段", "RFM 分群(代码)", "RFM 分群",
        "分层原因", "统计日期", "custom_flag",
    ]  # fmt: skip
    assert list(got["价值层级(代码)"]) == ["co_builder", "explorer", "explorer"]  # machine keys kept
    assert list(got["价值层级"]) == ["品牌共建者", "体验探索者", "体验探索者"]
    assert list(got["生命周期阶段"]) == ["成熟", "流失", "潜在"]
    assert got["RFM 分群"].iloc[0] == "重要价值客户" and pd.isna(got["RFM 分群"].iloc[2])
    ts = got["最近购买时间 (Asia/Shanghai)"]
    assert ts.iloc[0] == pd.Timestamp("2024-05-02 00:30") and ts.iloc[1] == pd.Timestamp("2024-05-02 09:00")
    assert pd.isna(ts.iloc[2])
    assert list(got["统计日期"].astype(str)) == ["2024-06-30"] * 3  # a day is not shifted by the zone
    assert got["累计消费金额(元)"].iloc[0] == 1234.5


def test_en_headers_and_other_zones_and_currencies():
    got = export.localize(profile_rows(), "en", "America/New_York", currency="USD")
    assert "Net spend (USD)" in got.columns and "Value tier (code)" in got.columns
    assert list(got["Value tier"]) == [label("co_builder", "en"), label("explorer", "en"), label("explorer", "en")]
    # 16:30 UTC on 2024-05-01 is 12:30 in New York (EDT, UTC-4)
    assert got["Last purchase (America/New_York)"].iloc[0] == pd.Timestamp("2024-05-01 12:30")


def test_zone_aware_timestamps_are_converted_too():
    frame = pd.DataFrame({"loaded_at": pd.to_datetime(["2024-05-01 08:00+08:00"])})
    got = export.localize(frame, "zh", "UTC")
    assert got["导入时间 (UTC)"].iloc[0] == pd.Timestamp("2024-05-01 00:00")


def test_csv_has_a_bom_and_reads_back(tmp_path):
    path = export.write_table(profile_rows(), tmp_path / "p.csv", lang="zh", timezone="Asia/Shanghai")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only with the BOM
    back = pd.read_csv(path, encoding="utf-8-sig")
    assert back.columns[0] == "用户ID"
    assert list(back["最近购买时间 (Asia/Shanghai)"].iloc[:2]) == ["2024-05-02 00:30:00", "2024-05-02 09:00:00"]
    assert back["价值层级"].iloc[0] == "品牌共建者"


def test_parquet_keeps_the_machine_columns(tmp_path):
    frame = profile_rows()
    path = export.write_table(frame, tmp_path / "p.parquet", lang="zh", timezone="Asia/Shanghai")
    assert_frame_equal(pd.read_parquet(path), frame, check_dtype=False)


def test_xlsx_frozen_header_widths_and_number_formats(tmp_path):
    path = export.write_table(profile_rows(), tmp_path / "p.xlsx", lang="zh", timezone="Asia/Shanghai")
    sheet = openpyxl.load_workbook(path).active
    assert sheet.freeze_panes == "A2"
    header = [c.value for c in sheet[1]]
    col = {name: i + 1 for i, name in enumerate(header)}
    row2 = {name: sheet.cell(row=2, column=i) for name, i in col.items()}
    assert row2["累计消费金额(元)"].value == 1234.5 and row2["累计消费金额(元)"].number_format == "#,##0.00"
    assert row2["退款率"].number_format == "0.0%"
    assert row2["最近购买时间 (Asia/Shanghai)"].number_format == "yyyy-mm-dd hh:mm"
    assert row2["最近购买时间 (Asia/Shanghai)"].value == pd.Timestamp("2024-05-02 00:30").to_pydatetime()
    assert row2["统计日期"].number_format == "yyyy-mm-dd"
    # a cell that looks like a formula stays text
    formula_like = sheet.cell(row=4, column=col["用户ID"])
    assert formula_like.data_type == "s" and formula_like.value.startswith("=HYPERLINK")
    # missing values are empty cells
    assert sheet.cell(row=4, column=col["累计消费金额(元)"]).value is None
    # widths fit the widest of header and values, Chinese characters counting two, plus 2
    def width(name):
        return sheet.column_dimensions[openpyxl.utils.get_column_letter(col[name])].width

    assert width("最近购买时间 (Asia/Shanghai)") == pytest.approx(2 * 6 + len(" (Asia/Shanghai)") + 2, abs=1)
    assert width("分层原因") == pytest.approx(2 * 5 + len(" 5%") + 2, abs=1)  # 价值得分前 5%
    assert width("用户ID") == pytest.approx(len('=HYPERLINK("x")') + 2, abs=1)


def test_xlsx_reads_back_to_the_localised_frame(tmp_path):
    frame = profile_rows()
    path = export.write_table(frame, tmp_path / "p.xlsx", lang="en", timezone="Asia/Shanghai")
    back = pd.read_excel(path, engine="openpyxl")
    want = export.localize(frame, "en", "Asia/Shanghai")
    assert list(back.columns) == list(want.columns)
    assert back["Net spend (CNY)"].iloc[0] == 1234.5 and math.isnan(back["Net spend (CNY)"].iloc[2])
    assert list(back["Value tier"]) == list(want["Value tier"])


def test_unsupported_extension_is_refused(tmp_path):
    with pytest.raises(InputError, match="unsupported file type '.json'"):
        export.write_table(profile_rows(), tmp_path / "p.json")
    assert not (tmp_path / "p.json").exists()


def test_too_many_rows_for_one_sheet(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "_XLSX_MAX_ROWS", 3)  # header + 2 rows
    with pytest.raises(InputError, match="do not fit in one Excel sheet") as info:
        export.write_table(profile_rows(), tmp_path / "p.xlsx")
    assert ".csv or .parquet" in info.value.hint
