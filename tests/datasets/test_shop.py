"""The shop simulator: determinism, the canonical contract, referential integrity, realism."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from userstrata import Workspace, _engine
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.schema import CANONICAL

END = date(2024, 6, 30)
TABLES = ("users", "orders", "order_items", "events", "touches", "truth")
ARCHETYPES = {"browser", "one_time", "casual", "whale", "co_builder", "returner"}
ZONE = "Asia/Shanghai"  # the simulated shop's zone: UTC+8, no daylight saving
END_UTC = pd.Timestamp(END + timedelta(days=1), tz=ZONE)  # local midnight after END


def read_all(paths) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def shop_paths(tmp_path_factory):
    out = tmp_path_factory.mktemp("shop")
    return simulate_shop(3_000, out, seed=7, chunk_users=1_000, events_per_user=20.0)


@pytest.fixture(scope="module")
def shop(shop_paths) -> dict[str, pd.DataFrame]:
    return read_all(shop_paths)


def test_returns_one_file_per_table(shop_paths):
    assert set(shop_paths) == set(TABLES)
    assert all(p.name == f"{name}.parquet" and p.exists() for name, p in shop_paths.items())


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    a = simulate_shop(300, tmp_path / "a", seed=3, chunk_users=100)
    b = simulate_shop(300, tmp_path / "b", seed=3, chunk_users=100)
    c = simulate_shop(300, tmp_path / "c", seed=4, chunk_users=100)
    for name in TABLES:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert a["orders"].read_bytes() != c["orders"].read_bytes()
    assert not read_all(a)["events"].equals(read_all(c)["events"])


@pytest.mark.parametrize("table", ["users", "orders", "order_items", "events", "touches"])
def test_files_follow_the_canonical_schema(shop_paths, table):
    got = pq.read_schema(shop_paths[table])
    want = CANONICAL[table].schema.to_pyarrow()
    assert got.names == list(CANONICAL[table].columns)
    # canonical timestamps are naive UTC; the files mark them as UTC instants (in
    # microseconds, which Spark reads), so that ingest never takes them for shop-local time
    utc = pa.timestamp("us", tz="UTC")
    assert [t for t in got.types] == [utc if pa.types.is_timestamp(t) else t for t in want.types]


def test_one_row_group_per_chunk(shop_paths):
    assert pq.ParquetFile(shop_paths["users"]).metadata.num_row_groups == 3
    assert pq.ParquetFile(shop_paths["events"]).metadata.num_row_groups == 3


def test_keys_are_unique(shop):
    assert shop["users"]["user_id"].is_unique
    assert shop["orders"]["order_id"].is_unique
    assert not shop["order_items"].duplicated(["order_id", "sku"]).any()
    assert not shop["order_items"].duplicated(["order_id", "line_no"]).any()
    assert shop["events"]["event_id"].is_unique
    assert shop["touches"]["touch_id"].is_unique


def test_references_resolve(shop):
    users = set(shop["users"]["user_id"])
    orders = set(shop["orders"]["order_id"])
    assert set(shop["orders"]["user_id"]) <= users
    assert set(shop["order_items"]["order_id"]) == orders  # and every order has an item
    assert set(shop["touches"]["user_id"]) <= users
    assert set(shop["truth"]["user_id"]) == users
    events = shop["events"]
    known = events["user_id"].notna()
    assert set(events.loc[known, "user_id"]) <= users
    # an event has a user or an anonymous visitor, never both, never neither
    assert (known ^ events["anonymous_id"].notna()).all()
    assert (~known).sum() > 0


def test_amounts_are_the_sum_of_the_items(shop):
    items = shop["order_items"]
    total = (items["quantity"] * items["price"]).groupby(items["order_id"]).sum().round(2)
    orders = shop["orders"].set_index("order_id")
    assert np.allclose(orders["amount"], total.reindex(orders.index), atol=1e-9)
    assert (orders["amount"] >= 0).all() and (orders["currency"] == "CNY").all()
    assert (items["quantity"] >= 1).all() and (items["price"] >= 0).all()
    tiers = {6.0, 30.0, 68.0, 128.0, 328.0, 648.0}
    assert tiers <= set(items["price"])


def test_categories_are_chinese_names(shop):
    categories = set(shop["order_items"]["category"])
    assert categories >= {"游戏道具", "会员", "课程", "皮肤", "礼包", "点券"}


def test_refunds_are_consistent(shop):
    orders = shop["orders"]
    refunded = orders[orders["refund_amount"] > 0]
    assert 0.03 <= len(refunded) / len(orders) <= 0.05
    assert (refunded["refund_amount"] <= refunded["amount"]).all()
    assert (refunded["refunded_at"] >= refunded["ts"]).all()
    assert (refunded["refunded_at"] < END_UTC).all()
    full = refunded["refund_amount"] == refunded["amount"]
    assert full.any() and (~full).any()
    assert set(refunded["status"]) == {"refunded", "partially_refunded"}
    assert (refunded.loc[full, "status"] == "refunded").all()
    rest = orders[orders["refund_amount"] == 0]
    assert rest["refunded_at"].isna().all()
    assert set(rest["status"]) == {"paid", "cancelled"}
    assert 0 < (orders["status"] == "cancelled").mean() < 0.03


def test_timestamps_lie_in_the_window_and_after_registration(shop):
    start = END_UTC - pd.Timedelta(days=540)
    registered = shop["users"].set_index("user_id")["registered_at"]
    assert registered.between(start, END_UTC, inclusive="left").all()
    for table in ("orders", "events", "touches"):
        frame = shop[table]
        assert frame["ts"].between(start, END_UTC, inclusive="left").all(), table
        mine = frame[frame["user_id"].notna()]
        assert (mine["ts"].to_numpy() >= registered.reindex(mine["user_id"]).to_numpy()).all(), table
    assert (shop["orders"]["ts"].dt.microsecond == 0).all()  # whole seconds


def test_order_lines_are_numbered_from_one_in_each_order(shop):
    items = shop["order_items"]
    lines = items.groupby("order_id")["line_no"].agg(["min", "max", "size"])
    assert (lines["min"] == 1).all() and (lines["max"] == lines["size"]).all()
    assert (lines["size"] > 1).any()


def test_evenings_are_busy_and_nights_quiet(shop):
    hour = shop["events"]["ts"].dt.tz_convert(ZONE).dt.hour
    share = hour.value_counts(normalize=True)
    assert share.reindex(range(3, 7)).sum() < 0.05
    assert share.reindex(range(19, 23)).sum() > 0.25
    touch_hour = shop["touches"]["ts"].dt.tz_convert(ZONE).dt.hour
    assert ((touch_hour >= 23) | (touch_hour < 8)).mean() < 0.1


def test_every_archetype_appears(shop):
    assert set(shop["truth"]["archetype"]) == ARCHETYPES


def test_volumes_are_near_the_targets(shop):
    n_users = len(shop["users"])
    assert 7 <= len(shop["orders"]) / n_users <= 13
    registered_events = shop["events"]["user_id"].notna().sum()
    assert registered_events / n_users == pytest.approx(20.0, rel=0.1)


def test_archetypes_behave_as_named(shop):
    truth = shop["truth"].set_index("user_id")["archetype"]
    orders = shop["orders"]
    per_user = orders.groupby("user_id").size().reindex(truth.index, fill_value=0)
    assert (per_user[truth == "browser"] == 0).all()
    assert (per_user[truth == "one_time"] == 1).all()
    spend = orders.groupby("user_id")["amount"].sum().reindex(truth.index, fill_value=0)
    by_type = spend.groupby(truth).mean()
    assert by_type["whale"] > 5 * by_type["casual"]
    events = shop["events"].dropna(subset=["user_id"])
    community = events["event"].isin(["share", "review", "post"]).groupby(events["user_id"]).sum()
    community = community.reindex(truth.index, fill_value=0).groupby(truth).mean()
    assert community["co_builder"] > 3 * community["casual"]


def test_vocabularies(shop):
    events = shop["events"]
    assert set(events["event"]) == {
        "page_view", "search", "add_to_cart", "checkin", "share", "review", "post", "use", "login",
    }  # fmt: skip
    assert all(isinstance(json.loads(p), dict) for p in events["properties"].drop_duplicates())
    touches = shop["touches"]
    assert set(touches["channel"]) == {"sms", "wechat", "app_push", "email"}
    assert set(touches["variant"]) == {"A", "B", "holdout"}
    assert set(touches["outcome"]) == {"sent", "opened", "clicked", "converted"}
    # a holdout is never delivered, so it is never opened or clicked
    held = touches[touches["variant"] == "holdout"]
    assert set(held["outcome"]) <= {"sent", "converted"}
    attributes = shop["users"]["attributes"].drop_duplicates()
    assert all(isinstance(json.loads(a), dict) for a in attributes)


def test_converted_touches_precede_an_order(shop):
    touches = shop["touches"]
    converted = touches[touches["outcome"] == "converted"]
    orders = shop["orders"][["user_id", "ts"]].rename(columns={"ts": "order_ts"})
    pairs = converted.merge(orders, on="user_id")
    gap = pairs["order_ts"] - pairs["ts"]
    followed = pairs[(gap >= pd.Timedelta(0)) & (gap <= pd.Timedelta(hours=48))]
    assert set(followed["touch_id"]) == set(converted["touch_id"])


def lifecycle_as_of(shop, end: date) -> pd.Series:
    """Lifecycle stage per user as of ``end`` with the DESIGN.md defaults (plain pandas)."""
    end_day = pd.Timestamp(end)
    activity = pd.concat(
        [
            shop["orders"][["user_id", "ts"]],
            shop["events"].dropna(subset=["user_id"])[["user_id", "ts"]],
        ]
    )
    activity["day"] = activity["ts"].dt.tz_convert(ZONE).dt.tz_localize(None).dt.normalize()
    activity = activity.drop_duplicates(["user_id", "day"]).sort_values(["user_id", "day"])
    activity["gap"] = activity.groupby("user_id")["day"].diff().dt.days
    first = activity.groupby("user_id")["day"].min()
    last = activity.groupby("user_id")["day"].max()
    recent = activity[(end_day - activity["day"]).dt.days < 30]
    back = set(recent.loc[recent["gap"] > 30, "user_id"])
    paid = shop["orders"][shop["orders"]["status"] != "cancelled"]
    buyers = set(paid["user_id"])
    users = shop["users"]["user_id"]
    inactive = (end_day - last.reindex(users)).dt.days.to_numpy()
    tenure = (end_day - first.reindex(users)).dt.days.to_numpy()
    stage = np.select(
        [
            ~users.isin(buyers).values,
            inactive > 90,
            inactive > 30,
            users.isin(back).values,
            tenure <= 7,
            tenure <= 30,
        ],
        ["potential", "churned", "dormant", "returning", "new", "growth"],
        "mature",
    )
    return pd.Series(stage, index=users.values)


def test_every_lifecycle_stage_appears_on_the_end_date(shop):
    stages = lifecycle_as_of(shop, END).value_counts()
    assert set(stages.index) == {
        "potential", "new", "growth", "mature", "dormant", "churned", "returning",
    }  # fmt: skip
    assert stages.min() >= 20


def test_truth_matches_the_activity(shop):
    truth = shop["truth"].set_index("user_id")
    assert truth["acquired_at"].equals(shop["users"].set_index("user_id")["registered_at"])
    events = shop["events"].dropna(subset=["user_id"])
    activity = pd.concat([shop["orders"][["user_id", "ts"]], events[["user_id", "ts"]]])
    last = activity.groupby("user_id")["ts"].max()
    dropped = truth["churned_at"].notna()
    assert 0.2 < dropped.mean() < 0.9
    assert (truth.loc[dropped, "churned_at"] == last.reindex(truth.index[dropped])).all()
    # browsers and one-time buyers mostly leave; returners are mostly still here
    by_type = dropped.groupby(truth["archetype"]).mean()
    assert by_type["one_time"] > by_type["returner"]


def test_tiny_chunks_give_a_valid_shop_with_unique_ids(tmp_path):
    done: list[int] = []
    paths = simulate_shop(50, tmp_path, seed=1, chunk_users=7, progress=done.append)
    shop = read_all(paths)
    assert done == [7, 14, 21, 28, 35, 42, 49, 50]
    assert len(shop["users"]) == 50 and shop["users"]["user_id"].is_unique
    for table, key in [("orders", "order_id"), ("events", "event_id"), ("touches", "touch_id")]:
        assert shop[table][key].is_unique, table
    assert set(shop["order_items"]["order_id"]) == set(shop["orders"]["order_id"])
    anon = shop["events"]["anonymous_id"].dropna()
    assert anon.nunique() == shop["events"].loc[anon.index].groupby("anonymous_id").ngroups
    assert pq.ParquetFile(paths["users"]).metadata.num_row_groups == 8


def test_csv_holds_the_same_rows_as_parquet(tmp_path):
    csv = simulate_shop(200, tmp_path / "csv", seed=5, chunk_users=64, fmt="csv")
    parquet = simulate_shop(200, tmp_path / "pq", seed=5, chunk_users=64, fmt="parquet")
    assert all(p.suffix == ".csv" for p in csv.values())
    for name in TABLES:
        got = pd.read_csv(csv[name], keep_default_na=False, na_values=[""])
        want = pd.read_parquet(parquet[name])
        assert list(got.columns) == list(want.columns), name
        assert len(got) == len(want), name
    got = pd.read_csv(csv["orders"], parse_dates=["ts", "refunded_at"])
    want = pd.read_parquet(parquet["orders"])
    assert (got["ts"] == want["ts"]).all()  # the same instants, written with +08:00
    assert np.allclose(got["amount"], want["amount"])
    # CSV holds the shop's wall-clock time with an explicit offset, whole seconds
    first = pd.read_csv(csv["orders"], dtype=str)["ts"].iloc[0]
    assert first == want["ts"].iloc[0].tz_convert(ZONE).strftime("%Y-%m-%d %H:%M:%S+08:00")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_loading_the_files_keeps_each_instant_and_its_local_day_and_hour(tmp_path, fmt):
    """Workspace.load reads a timestamp without an offset as shop-local time: the files
    carry their zone, so every loaded instant is the simulated one (not 8 hours early)."""
    paths = simulate_shop(300, tmp_path / fmt, seed=9, chunk_users=100, fmt=fmt)
    truth = simulate_shop(300, tmp_path / "truth", seed=9, chunk_users=100)  # the same shop
    raw = {name: pd.read_parquet(truth[name]) for name in ("users", "orders", "truth")}
    with Workspace.open(tmp_path / "ws.duckdb") as ws:
        assert ws.settings.timezone == ZONE
        for name in ("users", "orders", "order_items", "events"):
            assert ws.load(name, paths[name]).rows_rejected == 0, name
        orders = ws.table("orders")
        local = _engine.local_time(orders.ts, ZONE, "duckdb")
        got = orders.select(
            "order_id", "user_id", "ts", day=Clock(ZONE).local_date(orders.ts), hour=local.hour()
        ).to_pandas().set_index("order_id").sort_index()
        registered = ws.table("users").to_pandas().set_index("user_id")["registered_at"]
        first_order = ws.profile(as_of=END).to_pandas().set_index("user_id")["first_order_ts"]
    want = raw["orders"].set_index("order_id").sort_index()
    assert len(got) == len(want) > 1000
    # the same instant (stored as naive UTC) ...
    assert (got["ts"] == want["ts"].dt.tz_localize(None)).all()
    # ... on the same local day and hour as the simulator drew them
    want_local = want["ts"].dt.tz_convert(ZONE)
    assert (pd.to_datetime(got["day"]) == want_local.dt.tz_localize(None).dt.normalize()).all()
    assert (got["hour"] == want_local.dt.hour).all()
    assert (got["hour"] < 8).any()  # where loading as local time would have moved the day
    # the truth file's acquisition time is the loaded registration time
    acquired = raw["truth"].set_index("user_id")["acquired_at"].dt.tz_localize(None)
    assert registered.reindex(acquired.index).equals(acquired.rename("registered_at"))
    # and the profile's first purchase is the file's earliest order of each buyer
    paid = raw["orders"][raw["orders"]["status"] != "cancelled"]
    earliest = paid.groupby("user_id")["ts"].min().dt.tz_localize(None)
    assert (first_order.reindex(earliest.index) == earliest).all()


@pytest.mark.parametrize(
    "kwargs",
    [{"n_users": 0}, {"chunk_users": 0}, {"days": 30}, {"fmt": "xlsx"}, {"events_per_user": 0}],
)
def test_bad_arguments_are_input_errors(tmp_path, kwargs):
    args = {"n_users": 10, "out_dir": tmp_path} | kwargs
    with pytest.raises(InputError):
        simulate_shop(**args)
