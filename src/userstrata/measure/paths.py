"""Paths (用户路径): what users do right after (or before) an event, step by step.

Each user counts once: from their *first* ``anchor`` event whose shop-local day lies in
``[start, end]``, the next ``steps`` events (``direction="after"``) or the ``steps`` events
before it (``"before"``) form the user's path. Repeats in a row (page_view, page_view) count as
one step, as PostHog's paths do. Paid orders are events named ``purchase``. A path shorter than
``steps`` ends in ``(end)`` (``(start)`` before). A user *converted* when a ``conversion`` event
follows the anchor within ``window``.
"""

from __future__ import annotations

import functools

import dataclasses
import datetime as dt_
from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata import i18n
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.measure.funnels import ORDER_STEPS, _default_execute, event_label, event_stream
from userstrata.measure.privacy import hide as hidden_cells

DIRECTIONS = ("after", "before")
END, START = "(end)", "(start)"  # where a path runs out of events

TEXT: dict[str, tuple[str, str]] = {
    "event": ("事件", "Event"),
    "users": ("用户数", "Users"),
    "share": ("占比", "Share"),
    "path": ("路径", "Path"),
    "step_n": ("第 {n} 步", "Step {n}"),
    "converted": ("是否转化", "Converted"),
    "yes": ("已转化", "Converted"),
    "no": ("未转化", "Not converted"),
    "(end)": ("（结束）", "(end)"),
    "(start)": ("（开始）", "(start)"),
    "title_after": ("{anchor} 之后的前 {top} 条路径（{steps} 步）", "Top {top} paths after {anchor} ({steps} steps)"),
    "title_before": ("{anchor} 之前的前 {top} 条路径（{steps} 步）", "Top {top} paths before {anchor} ({steps} steps)"),
}


text = functools.partial(i18n.pick, TEXT)  # text in zh or en


def _name(event: Any, lang: str) -> str:
    return text(event, lang) if event in (END, START) else event_label(event, lang)


def user_paths(
    events: ir.Table, anchor: str, *, start: dt_.date, end: dt_.date, orders: ir.Table | None = None,
    direction: str = "after", steps: int = 3, conversion: str | None = "purchase",
    window: dt_.timedelta = dt_.timedelta(days=7), collapse_repeats: bool = True, clock: Clock = Clock(),
) -> ir.Table:
    """One row per user who did ``anchor`` in the period: ``step_1 .. step_<steps>`` (the events
    after or before it, nearest first) and ``converted``."""
    if direction not in DIRECTIONS:
        raise InputError(f"paths direction {direction!r}: use one of {', '.join(DIRECTIONS)}",
                         zh=f"路径方向 {direction!r} 无效：可选 {', '.join(DIRECTIONS)}")
    if steps < 1:
        raise InputError(f"paths --steps {steps}: expected 1 or more", zh=f"路径步数 {steps} 无效：至少为 1")
    stream = event_stream(events, orders, names=None, order_names=["purchase"] if orders is not None else [])
    w = ibis.window(group_by="user_id", order_by=[stream.ts, stream.event_id])
    if collapse_repeats:
        stream = stream.mutate(_prev=stream.event.lag().over(w))
        stream = stream.filter(stream._prev.isnull() | (stream._prev != stream.event)).drop("_prev")
    stream = stream.mutate(seq=ibis.row_number().over(ibis.window(group_by="user_id", order_by=[stream.ts, stream.event_id])))
    day = clock.local_date(stream.ts)
    hits = stream.filter((stream.event == anchor) & day.between(start, end))
    first = ibis.window(group_by="user_id", order_by=[hits.seq])
    anchors = (hits.mutate(_rank=ibis.row_number().over(first)).filter(lambda t: t._rank == 0)
               .select("user_id", a_seq=hits.seq, a_ts=hits.ts))

    other = stream.select(o_user=stream.user_id, o_seq=stream.seq, o_event=stream.event)
    # the range as plain columns: DuckDB runs a left join whose condition computes across both
    # sides as a nested loop, not a hash join
    lo, hi = (anchors.a_seq + 1, anchors.a_seq + steps) if direction == "after" else (
        anchors.a_seq - steps, anchors.a_seq - 1)
    anchors = anchors.mutate(a_lo=lo, a_hi=hi)
    near = anchors.left_join(other, [anchors.user_id == other.o_user, other.o_seq >= anchors.a_lo,
                                     other.o_seq <= anchors.a_hi])
    gap = (other.o_seq - anchors.a_seq) if direction == "after" else (anchors.a_seq - other.o_seq)
    near = near.select(anchors.user_id, anchors.a_ts, gap=gap, o_event=other.o_event)
    filler = END if direction == "after" else START
    per_user = near.group_by(["user_id", "a_ts"]).aggregate(**{
        f"step_{i}": near.o_event.max(where=near.gap == i) for i in range(1, steps + 1)
    })  # fmt: skip
    per_user = per_user.mutate(**{f"step_{i}": per_user[f"step_{i}"].fill_null(filler) for i in range(1, steps + 1)})

    if conversion is None:
        return per_user.mutate(converted=ibis.literal(False)).drop("a_ts")
    conv_orders = [conversion] if conversion in ORDER_STEPS and orders is not None else []
    conv = event_stream(events, orders, names=[conversion], order_names=conv_orders)
    conv = conv.select(c_user=conv.user_id, c_ts=conv.ts)
    seconds = int(window.total_seconds())
    per_user = per_user.mutate(a_until=per_user.a_ts + ibis.interval(seconds=seconds))
    done = per_user.semi_join(conv, [per_user.user_id == conv.c_user, conv.c_ts > per_user.a_ts,
                                     conv.c_ts <= per_user.a_until])
    done = done.select(d_user=done.user_id)
    flagged = per_user.left_join(done, per_user.user_id == done.d_user)
    return flagged.select(*[per_user[c] for c in per_user.columns if c not in ("a_ts", "a_until")],
                          converted=flagged.d_user.notnull())


@dataclasses.dataclass(frozen=True)
class PathsResult:
    """``next``: the first event after (before) the anchor with users and share; ``paths``: the
    top paths; ``by_conversion``: the top paths of converters and of the others (share within
    each); ``flows``: step-to-step links of the top paths (the Sankey's)."""

    next: pd.DataFrame
    paths: pd.DataFrame
    by_conversion: pd.DataFrame
    flows: pd.DataFrame
    definition: dict[str, Any]

    def table(self, lang: str = "en", which: str = "paths") -> pd.DataFrame:
        frame = getattr(self, which).copy()
        for col in frame.columns:
            if col == "event" or col.startswith("step_"):
                frame[col] = [_name(e, lang) for e in frame[col]]
        if "converted" in frame:
            frame["converted"] = [text("yes" if c else "no", lang) for c in frame["converted"]]
        names = {c: text(c, lang) for c in frame.columns if c in TEXT}
        names.update({c: text("step_n", lang).format(n=c[5:]) for c in frame.columns if c.startswith("step_")})
        return frame.rename(columns=names)

    def chart(self, lang: str = "en") -> Any:
        """Sankey of the top paths: the anchor, then each step's events, bands as wide as users."""
        import plotly.graph_objects as go  # noqa: PLC0415

        d = self.definition
        nodes: dict[tuple[int, str], int] = {}
        for row in self.flows.itertuples(index=False):
            for key in ((row.from_step, row.from_event), (row.to_step, row.to_event)):
                nodes.setdefault(key, len(nodes))
        labels = [_name(e, lang) for (_, e) in nodes]
        links = [(nodes[(r.from_step, r.from_event)], nodes[(r.to_step, r.to_event)], int(r.users))
                 for r in self.flows.itertuples(index=False)]
        fig = go.Figure(go.Sankey(
            node=dict(label=labels, pad=12),
            link=dict(source=[s for s, _, _ in links], target=[t for _, t, _ in links], value=[v for _, _, v in links]),
        ))  # fmt: skip
        title = text(f"title_{d['direction']}", lang).format(anchor=event_label(d["anchor"], lang), top=d["top"],
                                                             steps=d["steps"])
        fig.update_layout(title=title)
        return fig


def paths(
    events: ir.Table, anchor: str, *, start: dt_.date, end: dt_.date, orders: ir.Table | None = None,
    direction: str = "after", steps: int = 3, top: int = 10, conversion: str | None = "purchase",
    window: dt_.timedelta = dt_.timedelta(days=7), collapse_repeats: bool = True, min_count: int | None = None,
    clock: Clock = Clock(), execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> PathsResult:
    """Next (previous) events, the top ``top`` paths of ``steps`` events from ``anchor``, and the
    top paths of users who converted vs did not (see the module's docstring for the rules)."""
    execute = execute or _default_execute
    per_user = user_paths(events, anchor, start=start, end=end, orders=orders, direction=direction, steps=steps,
                          conversion=conversion, window=window, collapse_repeats=collapse_repeats, clock=clock)
    cols = [f"step_{i}" for i in range(1, steps + 1)]
    counts = execute(per_user.group_by([*cols, "converted"]).aggregate(users=per_user.count()))
    counts["users"] = counts["users"].astype("int64")
    counts["converted"] = counts["converted"].astype(bool)
    total = int(counts["users"].sum())

    nxt = counts.groupby("step_1", as_index=False)["users"].sum().rename(columns={"step_1": "event"})
    nxt = _ranked(nxt, ["event"], total, None, min_count)
    all_paths = counts.groupby(cols, as_index=False)["users"].sum()
    top_paths = _ranked(all_paths, cols, total, top, min_count)
    parts = []
    for flag in (True, False):
        part = counts[counts["converted"] == flag].groupby(cols, as_index=False)["users"].sum()
        ranked = _ranked(part, cols, int(part["users"].sum()), top, min_count)
        parts.append(ranked.assign(converted=flag)[["converted", *cols, "users", "share"]])
    by_conversion = pd.concat(parts, ignore_index=True)
    flows = _flows(top_paths, anchor, cols, direction)
    definition = dict(anchor=anchor, start=start, end=end, direction=direction, steps=steps, top=top,
                      conversion=conversion, window=window, min_count=min_count, users=total)
    return PathsResult(nxt, top_paths, by_conversion, flows, definition)


def _ranked(frame: pd.DataFrame, keys: list[str], total: int, top: int | None, min_count: int | None) -> pd.DataFrame:
    """Most users first (ties by the keys), share of ``total``; hidden cells blanked, at most ``top`` rows."""
    frame = frame.sort_values(["users", *keys], ascending=[False, *([True] * len(keys))], kind="stable")
    frame = frame.reset_index(drop=True)
    if top is not None:
        frame = frame.head(top)
    frame["share"] = frame["users"] / total if total else float("nan")
    hide = hidden_cells(frame["users"], min_count)
    frame["users"] = frame["users"].astype("Int64").mask(hide)
    frame["share"] = frame["share"].astype(float).mask(hide)
    return frame[[*keys, "users", "share"]]


def _flows(top_paths: pd.DataFrame, anchor: str, cols: list[str], direction: str) -> pd.DataFrame:
    """Links (from_step, from_event) -> (to_step, to_event) summed over the shown top paths, in
    time order: the anchor is column 0 after it, the last column before it. Hidden paths (blank
    counts) are left out."""
    shown = top_paths.dropna(subset=["users"])
    rows = []
    for path in shown.itertuples(index=False):
        events = [anchor, *(getattr(path, c) for c in cols)]
        if direction == "before":
            events = events[::-1]
        for i in range(len(cols)):
            rows.append((i, events[i], i + 1, events[i + 1], int(path.users)))
    flows = pd.DataFrame(rows, columns=["from_step", "from_event", "to_step", "to_event", "users"])
    return flows.groupby(["from_step", "from_event", "to_step", "to_event"], as_index=False)["users"].sum()
