"""Contact fields in a member list: kept phones and e-mails, through stitched ids; hashes refused."""

from __future__ import annotations

import csv

import pandas as pd
import pytest
from typer.testing import CliRunner

import userstrata.cli.segments  # noqa: F401  (registers the commands)
from userstrata.activate.contacts import contact_fields
from userstrata.cli import app
from userstrata.errors import InputError
from userstrata.workspace import Workspace

HASHED = "a" * 64  # what a salted HMAC-SHA256 looks like in the store


def test_identities_first_then_attributes_through_the_stitched_id():
    identities = pd.DataFrame({
        "source": ["phone", "手机号", "wechat_openid", "phone", "Mobile"],
        "external_id": ["13800138000", "13900000000", "oX1", HASHED, "15011112222"],
        "user_id": ["u1", "u1b", "u1", "u2", "u4"],
    })  # fmt: skip
    users = pd.DataFrame({
        "user_id": ["u1", "u3", "u4", "u5"],
        "attributes": ['{"phone": "11111111111"}', '{"邮箱": "li@example.com", "电话": "13700000000"}',
                       '{"email": "' + HASHED + '"}', "not json"],
    })  # fmt: skip
    found = contact_fields(["u1", "u2", "u3", "u4", "u5"], ["phone", "email", "wechat_openid"],
                           identities=identities, users=users, canonical={"u1b": "u1"})
    got = found.frame.set_index("user_id")
    # u1: its own identity row wins over its attributes and its second account's phone comes later
    assert got.loc["u1", "phone"] in ("13800138000", "13900000000")
    assert got.loc["u1", "phone"] != "11111111111" and got.loc["u1", "wechat_openid"] == "oX1"
    assert pd.isna(got.loc["u2", "phone"])  # only a hash is known
    assert got.loc["u3", "phone"] == "13700000000" and got.loc["u3", "email"] == "li@example.com"
    assert got.loc["u4", "phone"] == "15011112222" and pd.isna(got.loc["u4", "email"])
    assert got.loc["u5"].drop("email").isna().all()
    assert found.hashed == {"phone": 1, "email": 1, "wechat_openid": 0}


def test_a_field_with_only_hashes_names_keep_pii_and_an_unknown_field_says_so():
    identities = pd.DataFrame({"source": ["phone"], "external_id": [HASHED], "user_id": ["u1"]})
    users = pd.DataFrame({"user_id": [], "attributes": []})
    with pytest.raises(InputError, match="stored hashed") as caught:
        contact_fields(["u1"], ["phone"], identities=identities, users=users)
    assert "--keep-pii" in caught.value.hint and "哈希" in caught.value.zh
    with pytest.raises(InputError, match="'qq': no member has one"):
        contact_fields(["u1"], ["qq"], identities=identities, users=users)


@pytest.mark.parametrize("keep", [True, False])
def test_cli_writes_the_kept_phones_and_refuses_hashed_ones(tmp_path, keep):
    path = tmp_path / "shop.duckdb"
    users = tmp_path / "users.csv"
    with users.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "registered_at", "attributes"])
        writer.writerow(["big", "2023-12-01 10:00", '{"手机号": "+86 138-0013-8000"}'])
        writer.writerow(["small", "2024-06-01 10:00", '{"手机号": "13900000000"}'])
    with Workspace.open(str(path)) as ws:
        ws.load("users", users, keep_pii=keep)
        ws.load_frame("orders", pd.DataFrame({
            "order_id": ["o1", "o2"], "user_id": ["big", "small"],
            "ts": pd.to_datetime(["2024-01-02 02:00", "2024-06-20 02:00"]), "amount": [21660.0, 30.0]}),
            source="orders")  # fmt: skip
    (tmp_path / "userstrata.toml").write_text('[segments.big]\nwhere = "monetary >= 5000"\n', encoding="utf-8")
    out = tmp_path / "list.csv"
    result = CliRunner().invoke(app, ["segment", "big", "--as-of", "2024-06-30", "--out", str(out), "--contacts",
                                      "phone", "--lang", "zh", "--workspace", str(path),
                                      "--config", str(tmp_path / "userstrata.toml")])
    if keep:
        assert result.exit_code == 0, result.output
        lines = out.read_text(encoding="utf-8-sig").splitlines()
        header, row = lines[1].split(","), lines[2].split(",")
        assert header[:2] == ["用户ID", "手机号"] and len(lines) == 3
        # the cell is kept as loaded; a leading + is escaped so that a spreadsheet reads text
        assert row[0] == "big" and row[1].lstrip("'") == "+86 138-0013-8000"
    else:
        assert result.exit_code == 2 and "哈希" in result.output and "--keep-pii" in result.output
        assert not out.exists()
