"""Recommendations in the message (推荐): each user's top-k items, with where each comes from.

Candidates, strongest first:

1. **sequence**: the next item of a configured path (a course after the one bought; e.g.
   ``course-intro -> course-python -> course-data``) after the furthest item the user has;
2. **co-purchase**: items bought together with the user's items (``measure.bundles`` on one
   user's purchases of a day, lift above 1), scored by the confidence P(item | an item she has);
3. **category**: P(item | user) ~ her share of purchases in the item's category x the item's
   share of that category's buyers;
4. **popular**: the shop's best sellers (half their share of buyers), for users with little else.

Items the user already bought are not recommended. ``hit_rate`` backtests the lists: made on
history up to a cutoff, do they hold an item the user then bought (new to them) in the next
days, against the popularity baseline?
"""

from __future__ import annotations

import datetime as dt_
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from userstrata.errors import InputError
from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.measure.bundles import bundles

__all__ = ["Recommendations", "hit_rate", "recommend"]

# every source scores an estimate of P(user buys item) on one scale; a configured path's next
# step is what the shop wants sold next, so it goes first
_WEIGHT = {"sequence": 1.0, "co_purchase": 0.0, "category": 0.0, "popular": 0.0}
PRIOR_PURCHASES = 20.0  # chosen among 5, 20, 100 by hit rate on the simulated shop (docs/act.md)
_REASON = {
    "sequence": ("学习路径的下一步（已购 {anchor}）", "next on the path after {anchor}"),
    "co_purchase": ("常与 {anchor} 一起购买（提升度 {lift:.1f}）", "often bought with {anchor} (lift {lift:.1f})"),
    "category": ("偏好品类 {anchor} 的热销品", "best seller in a favourite category, {anchor}"),
    "popular": ("全店热销", "a shop best seller"),
}


@dataclass(frozen=True)
class Recommendations:
    """``items``: one row per user and rank (``user_id, rank, sku, source, score, reason_zh,
    reason_en``); ``k``; ``as_of``."""

    items: pd.DataFrame
    k: int
    as_of: dt_.date

    def wide(self, lang: str = "en") -> pd.DataFrame:
        """One row per user: ``item_1..item_k`` (the form a message template takes)."""
        out = self.items.pivot(index="user_id", columns="rank", values="sku")
        out.columns = [f"item_{r}" for r in out.columns]
        return out.reset_index()


def _history(orders: ir.Table, order_items: ir.Table, as_of: dt_.date, clock: Clock, execute) -> pd.DataFrame:
    bought = purchases(orders, as_of=as_of, clock=clock)
    lines = order_items.select("order_id", "sku", "category")
    joined = lines.join(bought.select("order_id", "user_id"), "order_id")
    return execute(joined.select("user_id", "sku", "category").distinct())


def recommend(
    orders: ir.Table,
    order_items: ir.Table,
    *,
    as_of: dt_.date,
    k: int = 3,
    sequences: Mapping[str, Sequence[str]] | None = None,
    min_support: float = 0.002,
    users: Sequence[str] | None = None,
    clock: Clock = Clock(),
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> Recommendations:
    """The top ``k`` items for every buyer (or ``users``) as of ``as_of``."""
    if k < 1:
        raise InputError(f"k = {k}: recommend at least 1 item", zh=f"k = {k}：至少推荐 1 个商品")
    execute = execute or (lambda e: e.to_pandas())
    history = _history(orders, order_items, as_of, clock, execute)
    if users is not None:
        wanted = pd.Index(pd.unique(pd.Series(users, dtype=object)))
    else:
        wanted = pd.Index(history["user_id"].unique())
    owned = history[history["user_id"].isin(wanted)][["user_id", "sku"]].drop_duplicates()
    popularity = history.groupby("sku")["user_id"].nunique().sort_values(ascending=False, kind="stable")
    popularity = popularity.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    lifts = _co_purchase_lifts(orders, order_items, owned, as_of, clock, execute, min_support)
    candidates = [
        _from_sequences(owned, sequences or {}),
        _from_preference(history, owned, popularity, lifts, k),
        _popular(wanted, popularity, k),
    ]
    found = pd.concat([c for c in candidates if len(c)], ignore_index=True)
    found = found.merge(owned.assign(_owned=True), on=["user_id", "sku"], how="left")
    found = found[found["_owned"].isna()].drop(columns="_owned")
    found["score"] = found["score"] + found["source"].map(_WEIGHT)
    found["_pop"] = found["sku"].map(popularity).fillna(0)
    found = found.sort_values(["user_id", "score", "_pop", "sku"], ascending=[True, False, False, True], kind="stable")
    found = found.drop_duplicates(["user_id", "sku"])
    found["rank"] = found.groupby("user_id").cumcount() + 1
    top = found[found["rank"] <= k].copy()
    zh = [_REASON[s][0] for s in top["source"]]
    en = [_REASON[s][1] for s in top["source"]]
    top["reason_zh"] = [t.format(anchor=a, lift=lift) for t, a, lift in zip(zh, top["anchor"], top["lift"].fillna(0))]
    top["reason_en"] = [t.format(anchor=a, lift=lift) for t, a, lift in zip(en, top["anchor"], top["lift"].fillna(0))]
    columns = ["user_id", "rank", "sku", "source", "score", "reason_zh", "reason_en"]
    return Recommendations(top[columns].reset_index(drop=True), k, as_of)


def _frame(rows: list, columns=("user_id", "sku", "source", "score", "anchor", "lift")) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def _from_sequences(owned: pd.DataFrame, sequences: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    frames = []
    for path in sequences.values():
        steps = {sku: i for i, sku in enumerate(path)}
        on_path = owned[owned["sku"].isin(list(steps))]
        if on_path.empty:
            continue
        furthest = on_path.assign(step=on_path["sku"].map(steps)).groupby("user_id")["step"].max()
        nxt = furthest[furthest + 1 < len(path)]
        frames.append(pd.DataFrame({
            "user_id": nxt.index, "sku": [path[i + 1] for i in nxt], "source": "sequence",
            "score": 1.0, "anchor": [path[i] for i in nxt], "lift": np.nan}))  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else _frame([])


def _co_purchase_lifts(orders, order_items, owned, as_of, clock, execute, min_support) -> pd.DataFrame:
    """Per user and item not yet hers: the best lift above 1 from an item she has (``anchor``)."""
    pairs = bundles(orders, order_items, basket="user_day", min_support=min_support, end=as_of, clock=clock,
                    execute=execute).pairs
    pairs = pairs[pairs["lift"] > 1]
    if pairs.empty:
        return pd.DataFrame(columns=["user_id", "sku", "anchor", "lift"])
    both = pd.concat([pairs.rename(columns={"item_a": "anchor", "item_b": "sku"}),
                      pairs.rename(columns={"item_b": "anchor", "item_a": "sku"})])[["anchor", "sku", "lift"]]
    found = owned.rename(columns={"sku": "anchor"}).merge(both, on="anchor")
    found = found.sort_values(["user_id", "sku", "lift", "anchor"], ascending=[True, True, False, True])
    return found.drop_duplicates(["user_id", "sku"])[["user_id", "sku", "anchor", "lift"]]


def _from_preference(history, owned, popularity, lifts, k) -> pd.DataFrame:
    """P(item | user) ~ her share of purchases in the item's category (shrunk toward the shop's
    mix) x the item's share of that category's buyers, times the co-purchase lift where an item
    she has goes with it: the best sellers of each category plus the items bought with hers."""
    users = history[history["user_id"].isin(owned["user_id"].unique())]
    counts = users.groupby(["user_id", "category"]).size().rename("n").reset_index()
    shop = history.groupby("category").size() / len(history)
    # a Dirichlet prior worth PRIOR_PURCHASES purchases: two purchases say little about a taste
    grid = pd.MultiIndex.from_product([counts["user_id"].unique(), shop.index], names=["user_id", "category"])
    preference = counts.set_index(["user_id", "category"]).reindex(grid, fill_value=0).reset_index()
    total = preference.groupby("user_id")["n"].transform("sum")
    preference["pref"] = (preference["n"] + PRIOR_PURCHASES * preference["category"].map(shop)) / (total + PRIOR_PURCHASES)
    items = history[["sku", "category"]].drop_duplicates("sku")
    items = items.assign(pop=items["sku"].map(popularity).fillna(0))
    items["in_category"] = items["pop"] / items.groupby("category")["pop"].transform("sum")
    best = items.sort_values(["category", "pop", "sku"], ascending=[True, False, True]).groupby("category").head(k * 3)
    found = preference.merge(best, on="category")[["user_id", "sku"]]
    found = pd.concat([found, lifts[["user_id", "sku"]]]).drop_duplicates()
    found = found.merge(items[["sku", "category", "in_category"]], on="sku")
    found = found.merge(preference[["user_id", "category", "pref"]], on=["user_id", "category"])
    found = found.merge(lifts, on=["user_id", "sku"], how="left")
    boosted = found["lift"].notna()
    return pd.DataFrame({
        "user_id": found["user_id"], "sku": found["sku"],
        "source": np.where(boosted, "co_purchase", "category"),
        "score": found["pref"] * found["in_category"] * found["lift"].fillna(1.0),
        "anchor": np.where(boosted, found["anchor"], found["category"]), "lift": found["lift"],
    })  # fmt: skip


def _popular(users: pd.Index, popularity: pd.Series, k: int) -> pd.DataFrame:
    top = list(popularity.index[: k * 3])
    if not top or not len(users):
        return _frame([])
    n = len(top)
    share = (popularity.iloc[:n] / max(popularity.sum(), 1)).to_numpy() * 0.5  # below the user's own evidence
    return pd.DataFrame({"user_id": np.repeat(users.to_numpy(), n), "sku": np.tile(top, len(users)),
                         "source": "popular", "score": np.tile(share, len(users)), "anchor": "", "lift": np.nan})


def hit_rate(
    orders: ir.Table,
    order_items: ir.Table,
    *,
    cutoff: dt_.date,
    horizon_days: int = 30,
    k: int = 3,
    sequences: Mapping[str, Sequence[str]] | None = None,
    min_support: float = 0.002,
    clock: Clock = Clock(),
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Hit rate @k on a time split: lists made with history up to ``cutoff``; a hit is an item of
    the list the user bought (new to them) in the ``horizon_days`` after. Rows: ``method``
    (userstrata, popular), ``users`` (buyers of something new in the holdout), ``hits``, ``hit_rate``."""
    execute = execute or (lambda e: e.to_pandas())
    before = _history(orders, order_items, cutoff, clock, execute)
    after = _history(orders, order_items, cutoff + dt_.timedelta(days=horizon_days), clock, execute)
    new = after.merge(before[["user_id", "sku"]].assign(_had=True), on=["user_id", "sku"], how="left")
    new = new[new["_had"].isna() & new["user_id"].isin(before["user_id"])][["user_id", "sku"]].drop_duplicates()
    judged = new["user_id"].unique()
    ours = recommend(orders, order_items, as_of=cutoff, k=k, sequences=sequences, min_support=min_support,
                     users=judged, clock=clock, execute=execute).items[["user_id", "sku"]]
    popularity = before.groupby("sku")["user_id"].nunique().sort_index().sort_values(ascending=False, kind="stable")
    owned = before[before["user_id"].isin(judged)][["user_id", "sku"]]
    baseline = _popular(pd.Index(judged), popularity, k).merge(owned.assign(_o=True), on=["user_id", "sku"], how="left")
    baseline = baseline[baseline["_o"].isna()]
    baseline = baseline.assign(rank=baseline.groupby("user_id").cumcount() + 1).query("rank <= @k")[["user_id", "sku"]]
    rows = []
    for method, lists in (("userstrata", ours), ("popular", baseline)):
        hits = lists.merge(new, on=["user_id", "sku"])["user_id"].nunique()
        rows.append({"method": method, "users": len(judged), "hits": hits,
                     "hit_rate": hits / len(judged) if len(judged) else np.nan})
    return pd.DataFrame(rows)
