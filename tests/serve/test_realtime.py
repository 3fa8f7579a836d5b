"""Real-time profiles: a write updates the touched users from the last run's thresholds, and they
equal what a fresh batch run over the same data computes; the update reads the touched users'
rows only; a lookup answers what the snapshot row says."""

from __future__ import annotations

import datetime as dt
import time

import ibis
import ibis.expr.operations as ops
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from userstrata import Workspace
from userstrata.config import Settings
from userstrata.datasets import simulate_shop
from userstrata.serve import realtime
from userstrata.serve.app import create_app, jsonable
from userstrata.serve.tokens import create_token

END = dt.date(2024, 6, 30)
NEXT = END + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A served shop of its own (the writes here must not change the other API tests' data)."""
    folder = tmp_path_factory.mktemp("realtime")
    files = simulate_shop(400, folder / "files", seed=5, end=END)
    ws = Workspace.open(folder / "shop.duckdb")
    for name in ("users", "orders", "order_items", "events"):
        ws.load(name, files[name])
    secret, _ = create_token(ws.store, "admin")
    app = create_app(ws)
    yield ws, app, TestClient(app), {"Authorization": f"Bearer {secret}"}
    ws.close()


def _same(got, want) -> bool:
    """One JSON value against the batch's value (missing = missing, numbers by value)."""
    want = jsonable(want)
    if want is None or got is None:
        return want is None and got is None
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return float(got) == float(want)
    return got == want


def _diff(got: dict, want: pd.Series) -> dict:
    return {c: (got.get(c), want[c]) for c in want.index if not _same(got.get(c), want[c])}


def test_unchanged_users_get_their_batch_profile_back(shop):
    """Recomputing every user with no new data, each ranked against the others' kept values,
    gives the batch's scores, cells, value scores, tiers and reasons exactly."""
    ws, app, _, _ = shop
    batch = ws.profile(END).to_pandas()
    kept = realtime.thresholds(batch, ws.settings)
    query = realtime.TouchedQuery(ws.store.con, ws._tables, ws.settings)
    query.prepare(END)
    fresh = realtime.apply_thresholds(query.features(list(batch["user_id"]), END), kept, ws.settings)
    fresh = fresh.set_index("user_id", drop=False).loc[batch["user_id"]]
    assert len(fresh) == len(batch) and batch["tier"].nunique() == 4  # every tier is exercised
    for column in realtime.POPULATION_COLUMNS + ("lifecycle", "recency_days", "monetary"):
        a, b = fresh[column].to_numpy(), batch[column].to_numpy()
        same = (a == b) | (pd.isna(a) & pd.isna(b))
        assert same.all(), (column, list(zip(a[~same][:3], b[~same][:3])))


def test_cut_points_are_the_scores_boundaries(shop):
    """A buyer's R/F/M score is 1 + the cut points strictly below their value (hand rule from
    the quantile definition, counted independently in pandas)."""
    ws, app, _, _ = shop
    batch = ws.profile(END).to_pandas()
    kept = realtime.thresholds(batch, ws.settings)
    buyers = batch[batch["orders"] > 0]
    n, bins = len(buyers), ws.settings.rfm.bins
    cuts = kept.cut_points(bins)["f"]
    for value, score in buyers[["frequency", "rfm_f"]].drop_duplicates().itertuples(index=False):
        below = int((buyers["frequency"] < value).sum())
        assert score == 1 + sum(below * bins >= n * j for j in range(1, bins))
        assert score == 1 + sum(value > c for c in cuts)


def _run(client, admin) -> None:
    """A batch run (snapshot, alerts, reload of the profiles and their thresholds), waited for."""
    run = client.post("/v1/runs", headers=admin).json()["run_id"]
    for _ in range(600):
        status = client.get(f"/v1/runs/{run}", headers=admin).json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert status["status"] == "done", status


def test_writes_update_the_touched_users_as_a_fresh_batch_run_would(shop):
    """One user written after a run, so no other user's change moves the thresholds: the real-time
    profile equals a fresh batch run's row (as_of moved on to the written day included)."""
    ws, app, client, admin = shop
    state = app.state.serve
    base = state.profiles.copy()
    at = dt.datetime.combine(NEXT, dt.time(2, 0))  # naive text is shop time: 02:00 the day after the snapshot

    # a one-time buyer buys again: frequency, spend, recency, RFM scores and cell, value score, tier
    buyer = base[(base["orders"] == 1) & (base["lifecycle"] != "churned")].index[0]
    orders = [{"order_id": "rt-1", "user_id": buyer, "ts": at.isoformat(), "amount": 399.0, "status": "paid"},
              {"order_id": "rt-2", "user_id": buyer, "ts": at.isoformat(), "amount": 59.5, "status": "paid"}]
    body = client.post("/v1/orders", json={"rows": orders}, headers=admin).json()
    assert body["inserted"] == 2 and body["rejected"] == 0 and body["users_refreshed"] == 1, body
    got = client.get(f"/v1/users/{buyer}", headers=admin).json()
    batch = ws.profile(NEXT).to_pandas().set_index("user_id", drop=False)
    assert _diff(got, batch.loc[buyer]) == {}
    assert got["frequency"] == 1 and got["rfm_f"] > base.loc[buyer, "rfm_f"]  # it did change
    assert got["as_of"].startswith(NEXT.isoformat()) and state.realtime_as_of == NEXT
    # an untouched user keeps the snapshot's row; the same batch again changes nothing
    other = next(u for u in base.index if u != buyer)
    assert _diff(client.get(f"/v1/users/{other}", headers=admin).json(), base.loc[other]) == {}
    body = client.post("/v1/orders", json={"rows": orders}, headers=admin).json()
    assert body["inserted"] == 0 and body["unchanged"] == 2
    assert client.get(f"/v1/users/{buyer}", headers=admin).json() == got
    assert state.profiles.loc[buyer, "tier"] == got["tier"]  # the dashboard's frame agrees

    # after a run, a dormant buyer comes back with one event: returning, recency unchanged
    _run(client, admin)
    assert state.as_of == NEXT and buyer not in state._fresh
    base = state.profiles.copy()
    dormant = base[(base["orders"] > 0) & (base["lifecycle"] == "dormant")].index[0]
    events = [{"event_id": "rt-e1", "user_id": dormant, "ts": at.isoformat(), "event": "checkin"}]
    assert client.post("/v1/events", json={"rows": events}, headers=admin).json()["inserted"] == 1
    got = client.get(f"/v1/users/{dormant}", headers=admin).json()
    batch = ws.profile(NEXT).to_pandas().set_index("user_id", drop=False)
    assert _diff(got, batch.loc[dormant]) == {}
    assert got["lifecycle"] == "returning" and got["interaction_depth"] == base.loc[dormant, "interaction_depth"] + 1


def test_the_update_query_reads_only_the_touched_users_rows(shop):
    """Structural: every read of a canonical table in the update query goes straight through a
    filter on the touched users (order lines through the touched users' orders), so the work
    after the scan is the touched users' rows whatever the shop's size."""
    ws, _, _, _ = shop
    touched = ibis.table({"user_id": "string"}, name="touched")
    tables = {name: ws.table(name) for name in ("users", "orders", "order_items", "events")}
    for expr in (realtime.touched_features(tables, touched, as_of=END, settings=ws.settings, engine="duckdb"),
                 realtime.latest_day(tables, touched, settings=ws.settings, engine="duckdb")):
        graph = ibis.common.graph.Graph.from_bfs(expr.op())
        users_of: dict = {}
        for node, children in graph.items():
            for child in children:
                users_of.setdefault(child, []).append(node)
        canonical = [n for n in graph if isinstance(n, ops.DatabaseTable) and n.name in tables]
        assert canonical
        for table in canonical:
            # the relations built on the table (its columns, read inside those, are not)
            for parent in [p for p in users_of[table] if isinstance(p, ops.Relation)]:
                assert isinstance(parent, ops.Filter), (table.name, type(parent).__name__)
                subqueries = [p for pred in parent.predicates for p in pred.find(ops.InSubquery)]
                assert subqueries and all(touched.op() in s.rel.find(ops.UnboundTable) for s in subqueries), table.name


def test_a_lookup_is_the_snapshot_row_as_before(shop):
    """The in-memory lookup answers exactly what reading the snapshot's row with pandas gave."""
    ws, app, client, admin = shop
    state = app.state.serve
    frame = ws.snapshot_table(state.as_of).to_pandas().set_index("user_id", drop=False)
    fresh = set(state._fresh)
    for user in [u for u in frame.index if u not in fresh]:
        row = frame.loc[user]
        assert state.profile(user) == {c: jsonable(row[c]) for c in frame.columns}
    user = next(u for u in frame.index if u not in fresh)
    assert client.get(f"/v1/users/{user}", headers=admin).json() == state.profile(user)
    assert np.isnan(frame["rfm_r"]).any()  # missing values exercised (null in JSON)


def _five_buyers(monetary: list[float]) -> pd.DataFrame:
    n = len(monetary)
    return pd.DataFrame({
        "user_id": [f"u{i}" for i in range(1, n + 1)], "as_of": pd.Timestamp(END), "orders": [1] * n,
        "recency_days": [10.0] * n, "frequency": [0] * n, "monetary": monetary, "interaction_depth": [0] * n,
        "community_actions": [0] * n, "value_score": [0.5] * n,
    })


@pytest.mark.parametrize(("spend", "score", "high"), [(35.0, 3, False), (36.0, 3, True), (55.0, 5, True),
                                                      (5.0, 1, False), (20.0, 1, False)])
def test_a_changed_buyer_is_ranked_without_their_old_self(spend, score, high):
    """Hand-computed: buyers spent 10, 20, 30, 40, 50; u1 now spends ``spend``. The others below
    it (u1's old 10 left out; a tie is not below) over n = 5 give the M score (1 + the cut points
    j * 5 / 5 that count reaches);
    "high" needs spend * 5 > the new total 140 + spend, i.e. spend > 35 (35 itself is not above)."""
    kept = realtime.thresholds(_five_buyers([10.0, 20.0, 30.0, 40.0, 50.0]), Settings())
    fresh = _five_buyers([spend]).assign(value_score=np.nan)
    out = realtime.apply_thresholds(fresh, kept, Settings()).iloc[0]
    assert out["rfm_m"] == score
    assert out["rfm_cell"].startswith("important_" if high else "general_")
