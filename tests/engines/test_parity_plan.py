"""The plan's engine work (activity hours, trigger times, segment flags) is identical on DuckDB
and Spark, and so is the plan built from it."""

import datetime as dt

import pandas as pd
import pytest
from parity import END, _same_frames

from userstrata.activate.plan import activity_hours, make_plan
from userstrata.activate.playbooks import playbook_members, playbooks_from, trigger_times
from userstrata.features._time import Clock

pytestmark = pytest.mark.spark
START = END + dt.timedelta(days=1)


def _run(ws, expr) -> pd.DataFrame:
    return ws.store.con.execute(expr)


def test_activity_hours_same_on_both_engines(on_duckdb, on_spark):
    frames = []
    for ws in (on_duckdb, on_spark):
        clock = Clock(ws.settings.timezone, ws.store.engine)
        frame = _run(ws, activity_hours(ws.table("events"), ws.table("orders"), clock, until=END))
        frames.append(frame.astype({"best_hour": "int64", "activity": "int64", "weekend": bool}))
    _same_frames(*frames, key=["user_id", "weekend"])


def test_trigger_times_and_members_same_on_both_engines(on_duckdb, on_spark):
    books = playbooks_from()
    due, flags = [], []
    for ws in (on_duckdb, on_spark):
        clock = Clock(ws.settings.timezone, ws.store.engine)
        expr = trigger_times(ws.table("users"), ws.table("orders"), ws.table("events"), books, start=START, days=7,
                             clock=clock)
        due.append(_run(ws, expr).astype({"exact": bool}))
        flags.append(_run(ws, playbook_members(ws.profile(END), books)).astype(
            {b.name: bool for b in books if not b.trigger}))
    assert len(due[0]) > 0
    _same_frames(*due, key=["user_id", "playbook"])
    _same_frames(*flags)


def test_plan_same_on_both_engines(on_duckdb, on_spark):
    plans = []
    for ws in (on_duckdb, on_spark):
        plan = make_plan(users=ws.table("users"), orders=ws.table("orders"), events=ws.table("events"),
                         settings=ws.settings, engine=ws.store.engine, execute=ws.store.con.execute,
                         profile=ws.profile(END), start=START, days=7)
        plans.append(plan.contacts.astype({c: str for c in plan.contacts.columns if c not in ("send_at", "priority")}))
    _same_frames(*plans, key=["user_id", "playbook", "send_at"])
