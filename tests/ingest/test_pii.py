"""Direct identifiers: phones and e-mails reach the workspace file only as salted hashes."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from userstrata.ingest import pii
from userstrata.ingest.identity import stitch
from userstrata.workspace import Workspace

from .conftest import write_csv

PHONES = ("13800138000", "13912345678", "15011112222")
EMAIL = "Li.Lei@Example.com"


def workspace_bytes(ws: Workspace, path) -> bytes:
    ws.store.duckdb.execute("CHECKPOINT")
    ws.close()
    return path.read_bytes()


def users_file(tmp_path):
    rows = [
        ("u1", "2024-05-01 10:00", "+86 138-0013-8000", EMAIL, "{}"),
        ("u2", "2024-05-02 10:00", "139 1234 5678", "", '{"phone": "15011112222", "level": "gold"}'),
        # rejected (the date is not a date): kept whole in rejects, so its phone must be hashed there too
        ("u3", "not a date", "13800138000", "", "{}"),
    ]
    return write_csv(tmp_path / "users.csv", ["user_id", "registered_at", "手机号", "email", "attributes"], rows)


def test_phone_forms_normalise_alike():
    for form in ("+86 138-0013-8000", "0086 13800138000", "86-138 0013 8000", "１３８００１３８０００", "(138)00138000"):
        assert pii.normalise_phone(form) == "13800138000", form
    assert pii.normalise_identifier(" Li.Lei@Example.COM ") == "li.lei@example.com"


def test_hash_is_hmac_sha256_of_the_normalised_value():
    salt = bytes(range(32))
    expected = hmac.new(salt, b"13800138000", hashlib.sha256).hexdigest()
    assert pii.hash_identifier(salt, "+86 138 0013 8000") == expected
    assert pii.hash_identifier(salt, expected) == expected  # hashing twice changes nothing
    assert pii.hash_identifier(bytes(32), "13800138000") != expected  # another salt, another hash


def test_no_raw_phone_in_the_workspace_file(tmp_path):
    path = tmp_path / "shop.duckdb"
    ws = Workspace.open(str(path))
    report = ws.load("users", users_file(tmp_path))
    assert (report.rows_inserted, report.rows_rejected) == (2, 1)
    salt = pii.workspace_salt(ws.store.duckdb)
    attributes = dict(ws.store.duckdb.execute("SELECT user_id, attributes FROM users").fetchall())
    assert pii.hash_identifier(salt, "13800138000") in attributes["u1"]
    assert pii.hash_identifier(salt, "li.lei@example.com") in attributes["u1"]
    assert pii.hash_identifier(salt, "15011112222") in attributes["u2"]
    assert '"level":"gold"' in attributes["u2"].replace(" ", "")  # other keys are kept as they are
    raw = ws.store.duckdb.execute("SELECT raw FROM rejects").fetchone()[0]
    assert pii.hash_identifier(salt, "13800138000") in raw and "u3" in raw
    data = workspace_bytes(ws, path)
    for secret in (*PHONES, "138-0013-8000", "1234 5678", EMAIL, EMAIL.lower()):
        assert secret.encode() not in data, secret


def test_keep_pii_keeps_them(tmp_path):
    path = tmp_path / "shop.duckdb"
    ws = Workspace.open(str(path))
    ws.load("users", users_file(tmp_path), keep_pii=True)
    data = workspace_bytes(ws, path)
    # the scan finds what is there: it is the hashing that hides them
    assert b"13800138000" in data and b"15011112222" in data and EMAIL.encode() in data


def test_identity_phones_are_hashed_and_still_link(tmp_path):
    path = tmp_path / "shop.duckdb"
    ws = Workspace.open(str(path))
    rows = [("phone", "+86 138 0013 8000", "u1"), ("phone", "13800138000", "u1"), ("wechat_openid", "o1", "u1"),
            ("email", EMAIL, "u2"), ("wechat_openid", "o2", "u2")]
    report = ws.load("identities", write_csv(tmp_path / "ids.csv", ["source", "external_id", "user_id"], rows))
    # the two forms of one phone are one identity once hashed: the second is a repeat
    assert (report.rows_inserted, report.rows_unchanged, report.rows_rejected) == (4, 1, 0)
    salt = pii.workspace_salt(ws.store.duckdb)
    ids = dict(ws.store.duckdb.execute("SELECT source, external_id FROM identities WHERE source <> 'wechat_openid'")
               .fetchall())
    assert ids == {"phone": pii.hash_identifier(salt, "13800138000"), "email": pii.hash_identifier(salt, EMAIL)}
    assert ws.store.duckdb.execute("SELECT count(*) FROM identities WHERE external_id = 'o1'").fetchone()[0] == 1
    result = stitch(ws.table("identities"))
    assert result.summary["users"] == 2 and result.summary["source_ids"] == 4
    data = workspace_bytes(ws, path)
    assert b"13800138000" not in data and b"0013 8000" not in data and EMAIL.encode() not in data


def test_salt_is_kept_in_the_workspace(tmp_path):
    first = Workspace.open(str(tmp_path / "a.duckdb"))
    salt = pii.workspace_salt(first.store.duckdb)
    first.close()
    again = Workspace.open(str(tmp_path / "a.duckdb"))
    other = Workspace.open(str(tmp_path / "b.duckdb"))
    assert pii.workspace_salt(again.store.duckdb) == salt and len(salt) == 32
    assert pii.workspace_salt(other.store.duckdb) != salt
    again.close()
    other.close()


@pytest.mark.parametrize("text", ["call 13800138000 now", "tel:+86 138 0013 8000.", "mail li@x.cn"])
def test_scrub_hashes_phones_and_emails_inside_text(text):
    salt = bytes(32)
    out = pii.scrub_text(salt, text)
    assert "13800138000" not in out and "0013 8000" not in out and "li@x.cn" not in out
    assert len(out) > len(text)  # the hash stands in its place


def test_scrub_leaves_other_numbers():
    assert pii.scrub_text(bytes(32), "order 202405011234567 amount 138.00") == "order 202405011234567 amount 138.00"
