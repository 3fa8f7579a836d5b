"""Identity stitching: chains, cycles, the cap, anonymous events around a login, load order."""

from __future__ import annotations

import random
from collections import defaultdict

import ibis
import pandas as pd
import pytest
from typer.testing import CliRunner

import userstrata.cli.identities  # noqa: F401 - registers the command
from builders import order, table
from .conftest import write_csv
from userstrata.cli import app
from userstrata.errors import InputError
from userstrata.ingest.identity import attribute, attribute_tables, stitch
from userstrata.workspace import Workspace


def links(rows, linked=False) -> pd.DataFrame:
    columns = ["source", "external_id", "user_id"] + (["linked_source"] if linked else [])
    return pd.DataFrame(rows, columns=columns)


def canonical(result) -> dict[tuple[str, str], str | None]:
    return {(r.source, r.external_id): r.user_id for r in result.mapping.itertuples()}


def test_chain_of_external_ids_reaches_the_smallest_user_id():
    # openid -> unionid -> phone -> u7, and u3 -> openid: one person, five nodes
    rows = [
        ("wechat_openid", "o1", "un1", "wechat_unionid"),
        ("wechat_unionid", "un1", "p1", "phone"),
        ("phone", "p1", "u7", None),
        ("community", "c9", "u3", None),
        ("wechat_openid", "o1", "u3", ""),
    ]
    got = canonical(stitch(links(rows, linked=True)))
    assert got == {
        ("wechat_openid", "o1"): "u3", ("wechat_unionid", "un1"): "u3", ("phone", "p1"): "u3",
        ("community", "c9"): "u3", ("user_id", "u3"): "u3", ("user_id", "u7"): "u3",
    }


def test_separate_people_stay_separate_and_summary_counts():
    rows = [("phone", "p1", "u1"), ("wechat_openid", "o1", "u1"), ("phone", "p2", "u2"), ("email", "e3", "u3"),
            ("user_id", "u4", "u3")]
    result = stitch(links(rows))
    got = canonical(result)
    assert got[("phone", "p1")] == got[("wechat_openid", "o1")] == "u1"
    assert got[("phone", "p2")] == "u2"
    assert got[("email", "e3")] == got[("user_id", "u4")] == "u3"
    assert result.summary["source_ids"] == 4  # p1, o1, p2, e3
    assert result.summary["user_ids"] == 4  # u1, u2, u3, u4
    assert result.summary["users"] == 3
    assert result.summary["merged_user_ids"] == 1  # u4 folded into u3
    assert result.summary["conflicts"] == 0
    # both groups have 3 ids; u3's holds two user ids, so it comes first
    assert result.largest[["user_id", "members", "user_ids"]].values.tolist() == [["u3", 3, 2], ["u1", 3, 1], ["u2", 2, 1]]
    assert result.largest["sources"].iloc[0] == "user_id 2, email 1"


def test_cycle_is_one_group():
    rows = [("a", "1", "2", "b"), ("b", "2", "3", "c"), ("c", "3", "1", "a"), ("c", "3", "u5", None)]
    result = stitch(links(rows, linked=True))
    assert set(canonical(result).values()) == {"u5"}
    assert len(result.mapping) == 4
    assert result.summary["links"] == 4


def test_two_known_users_merge_into_the_smaller_id_and_orders_follow():
    result = stitch(links([("phone", "p1", "u9"), ("phone", "p1x", "u10"), ("wechat_unionid", "un", "u9"),
                           ("wechat_unionid", "un", "u10")]))
    # string order: "u10" < "u9"
    assert canonical(result)[("user_id", "u9")] == "u10"
    orders = table("orders", [order("A", "u9", "2024-05-01 10:00", 10.0), order("B", "u10", "2024-05-02 10:00", 5.0),
                              order("C", "u2", "2024-05-03 10:00", 7.0)])
    got = attribute(orders, result).to_pandas().set_index("order_id")
    assert got["user_id"].to_dict() == {"A": "u10", "B": "u10", "C": "u2"}  # u2 is unknown: unchanged
    assert list(got.reset_index().columns) == list(orders.columns)


def test_shared_phone_over_the_cap_is_listed_not_merged():
    shared = [("phone", "P", f"u{i}") for i in range(5)]
    own = [("wechat_openid", f"o{i}", f"u{i}") for i in range(5)]
    result = stitch(links(shared + own), max_links=4)
    got = canonical(result)
    assert {got[("user_id", f"u{i}")] for i in range(5)} == {f"u{i}" for i in range(5)}  # not merged
    assert ("phone", "P") not in got  # belongs to nobody
    conflict = result.conflicts.iloc[0]
    assert (conflict["source"], conflict["external_id"], conflict["links"]) == ("phone", "P", 5)
    assert conflict["examples"] == "user_id:u0, user_id:u1, user_id:u2, user_id:u3, user_id:u4"
    assert result.summary["conflicts"] == 1 and result.summary["users"] == 5
    # at the cap (5 links, max_links=5) the phone still merges
    at_cap = stitch(links(shared + own), max_links=5)
    assert set(canonical(at_cap).values()) == {"u0"}
    assert at_cap.conflicts.empty


def test_user_over_the_cap_keeps_its_own_id():
    rows = [("device_id", f"d{i}", "test") for i in range(4)] + [("device_id", "d0", "u1")]
    result = stitch(links(rows), max_links=3)
    got = canonical(result)
    assert got[("user_id", "test")] == "test"
    assert got[("device_id", "d0")] == got[("user_id", "u1")] == "u1"  # its own link survives
    assert got[("device_id", "d1")] is None  # linked only through the capped account: unlinked


def events_around_login():
    rows = [
        ("e1", None, "a1", None, "2024-05-01 08:00", "page_view", None),  # before login
        ("e2", "u1", "a1", None, "2024-05-01 08:05", "login", None),  # the login links a1 to u1
        ("e3", None, "a1", None, "2024-05-01 09:00", "page_view", None),  # after login, logged out
        ("e4", "u1", None, None, "2024-05-02 09:00", "page_view", None),
        ("e5", None, "a2", None, "2024-05-02 10:00", "page_view", None),  # never logs in
        ("e6", "u2", "a3", None, "2024-05-02 10:00", "login", None),
    ]
    return table("events", rows)


def test_anonymous_events_before_and_after_login_are_attributed():
    events = events_around_login()
    result = stitch(links([("wechat_openid", "o2", "u2")]), events=events)
    got = attribute(events, result).to_pandas().set_index("event_id")["user_id"]
    got = got.astype(object).where(got.notna(), None)
    assert got.to_dict() == {"e1": "u1", "e2": "u1", "e3": "u1", "e4": "u1", "e5": None, "e6": "u2"}
    # before any login there is nothing to attribute a1 to
    before = stitch(links([("wechat_openid", "o2", "u2")]))
    got = attribute(events, before).to_pandas().set_index("event_id")["user_id"]
    assert got.isna().to_dict() == {"e1": True, "e2": False, "e3": True, "e4": False, "e5": True, "e6": False}


def test_anonymous_id_of_a_device_source_attributes_too():
    events = events_around_login()
    result = stitch(links([("device_id", "a2", "u5")]))
    got = attribute(events, result).to_pandas().set_index("event_id")["user_id"]
    assert got["e5"] == "u5" and pd.isna(got["e1"])


def test_identities_table_and_frame_give_the_same_result():
    rows = [("phone", "p1", "u1"), ("wechat_openid", "o1", "u1")]
    frame = stitch(links(rows)).mapping
    expr = stitch(ibis.memtable(links(rows))).mapping
    pd.testing.assert_frame_equal(frame, expr)


def test_missing_column_is_an_input_error():
    with pytest.raises(InputError, match="external_id"):
        stitch(pd.DataFrame({"source": ["phone"], "user_id": ["u1"]}))


def _components_by_search(rows, max_links):
    """An independent check: breadth-first search over the links, skipping ids over the cap."""
    near = defaultdict(set)
    for source, external, user in rows:
        a, b = (source, external), ("user_id", user)
        if a != b:
            near[a].add(b)
            near[b].add(a)
    capped = {n for n, ns in near.items() if len(ns) > max_links}
    seen, out = set(), {}
    for start in sorted(near):
        if start in seen or (start in capped and start[0] != "user_id"):
            continue
        group, todo = [], [start]
        seen.add(start)
        while todo:
            n = todo.pop()
            group.append(n)
            if n in capped:
                continue
            for m in near[n]:
                if m not in seen and m not in capped:
                    seen.add(m)
                    todo.append(m)
        users = sorted(v for s, v in group if s == "user_id")
        for n in group:
            out[n] = users[0] if users else None
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_graph_matches_breadth_first_search_in_any_load_order(seed):
    rng = random.Random(seed)
    sources = ["phone", "wechat_openid", "wechat_unionid", "device_id", "user_id"]
    rows = [(rng.choice(sources), f"x{rng.randrange(60)}", f"u{rng.randrange(40)}") for _ in range(120)]
    rows += [("phone", "family-phone", f"u{i}") for i in range(8)]
    expected = _components_by_search(rows, max_links=6)
    first = stitch(links(rows), max_links=6)
    assert canonical(first) == expected
    shuffled = rows[:]
    rng.shuffle(shuffled)
    again = stitch(links(shuffled), max_links=6)
    pd.testing.assert_frame_equal(first.mapping, again.mapping)
    assert ("phone", "family-phone") in set(zip(first.conflicts["source"], first.conflicts["external_id"], strict=True))


def test_canonical_ids_are_the_same_after_reloading_in_another_order(tmp_path):
    rows = [("wechat_openid", "o1", "u8"), ("wechat_unionid", "un1", "u8"), ("device_id", "d1", "u3"),
            ("wechat_openid", "o2", "u3"), ("community", "c1", "u5"), ("user_id", "u8", "u5")]
    header = ["source", "external_id", "user_id"]
    results = []
    for name, order_rows in (("a", rows), ("b", rows[::-1])):
        ws = Workspace.open(str(tmp_path / f"{name}.duckdb"))
        half = len(order_rows) // 2  # two files, as two systems would send them
        ws.load("identities", write_csv(tmp_path / f"{name}1.csv", header, order_rows[:half]))
        ws.load("identities", write_csv(tmp_path / f"{name}2.csv", header, order_rows[half:]))
        results.append(stitch(ws.table("identities")).mapping)
        ws.close()
    pd.testing.assert_frame_equal(results[0], results[1])
    got = {(r.source, r.external_id): r.user_id for r in results[0].itertuples()}
    assert got[("wechat_unionid", "un1")] == "u5" and got[("device_id", "d1")] == "u3"


def test_cli_reports_merges_and_conflicts(tmp_path):
    path = tmp_path / "w.duckdb"
    ws = Workspace.open(str(path))
    rows = [("wechat_openid", f"o{i}", f"u{i}") for i in range(4)] + [("user_id", "u1", "u0")]
    ws.load("identities", write_csv(tmp_path / "ids.csv", ["source", "external_id", "user_id"], rows))
    # one shared tablet: four accounts log in on it (4 links, over a cap of 3)
    logins = [(f"u{i}", "tablet", f"2024-05-0{i + 1} 10:00", "login") for i in range(4)]
    ws.load("events", write_csv(tmp_path / "events.csv", ["user_id", "anonymous_id", "ts", "event"], logins))
    ws.close()
    chart = tmp_path / "sizes.html"
    result = CliRunner().invoke(app, ["identities", "-w", str(path), "--max-links", "3", "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    assert "4 external ids and 4 user ids merged into 3 users" in result.output
    assert "tablet" in result.output and chart.exists()
    zh = CliRunner().invoke(app, ["identities", "-w", str(path), "--max-links", "3", "--lang", "zh"])
    assert zh.exit_code == 0 and "合并为 3 个用户" in zh.output


def test_users_of_one_person_become_one_row():
    users = table("users", [("u9", "2024-03-01 10:00", "app", '{"level": "gold"}'),
                            ("u10", "2024-04-01 10:00", "wechat", None), ("u2", None, "web", None)])
    result = stitch(links([("user_id", "u9", "u10")]))
    got = attribute_tables({"users": users}, result)["users"].to_pandas().set_index("user_id")
    assert sorted(got.index) == ["u10", "u2"]
    # u9 registered first: its date, channel and attributes stand for the person, under id u10
    assert str(got.loc["u10", "registered_at"]) == "2024-03-01 10:00:00"
    assert got.loc["u10", "channel"] == "app" and "gold" in got.loc["u10", "attributes"]
    assert got.loc["u2", "channel"] == "web"
