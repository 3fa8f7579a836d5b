"""Terminal tables: load reports, listings, the profile summary, predictions, the schema."""

from __future__ import annotations

import datetime as dt_
import numbers
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from userstrata import i18n
from userstrata.cli._app import console, warn
from userstrata.schema import CANONICAL, EVENT_NAMES, LIFECYCLE_STAGES, ORDER_STATUSES, PURCHASE_STATUSES

if TYPE_CHECKING:
    from userstrata.workspace import Workspace


def heading(column: str, lang: i18n.Lang) -> str:
    """The header of a machine column in ``lang`` (its name when it has none)."""
    key = f"col.{column}"
    text = i18n.label(key, lang)
    return column if text == key else text


def cell(value: Any) -> str:
    """One value as a terminal table shows it: counts with thousands separators, amounts with
    two decimals, times to the minute, missing values empty."""
    if isinstance(value, str):
        return value
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, dt_.datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    if isinstance(value, numbers.Real):
        return f"{value:,.2f}"
    return str(value)


def localize_columns(frame: pd.DataFrame, lang: i18n.Lang) -> pd.DataFrame:
    """``frame`` with headers in ``lang`` and a ``process`` column's values named in it too."""
    out = frame.copy()
    if "process" in out.columns:
        out["process"] = [i18n.label(f"process.{p}", lang) for p in out["process"]]
    return out.rename(columns={c: heading(c, lang) for c in out.columns})


def print_frame(frame: pd.DataFrame, title: str | None = None, *, wide: Iterable[str] = ()) -> None:
    """A (localised) frame as a terminal table; numbers right-aligned, ``wide`` columns folded."""
    wide = set(wide)
    view = Table(title=title)
    for name in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
        view.add_column(str(name), justify="right" if numeric else "left",
                        ratio=4 if name in wide else None, overflow="fold")
    for row in frame.itertuples(index=False):
        view.add_row(*(Text(cell(v)) for v in row))
    console.print(view)


# -- loading ---------------------------------------------------------------------------------
# Counts of a load, newest report fields first; a report shows the ones it has.
_NEW_COUNTS = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected")
_OLD_COUNTS = ("rows_read", "rows_accepted", "rows_rejected", "rows_duplicate")


def _count(counts: Any, name: str) -> int | None:
    """``name`` of a per-table count: a mapping keyed with or without ``rows_``, or an object."""
    if isinstance(counts, Mapping):
        for key in (name, name.removeprefix("rows_")):
            if key in counts:
                return counts[key]
        return None
    return getattr(counts, name, None)


def print_load_report(report: Any, lang: i18n.Lang) -> None:
    """What a load did: its counts (and each table's, for an item-level order export), its id,
    then notes and warnings."""
    fields = _NEW_COUNTS if hasattr(report, "rows_inserted") else _OLD_COUNTS
    title = f"{Path(report.file).name} -> {report.table}"
    if getattr(report, "encoding", None):
        title += f"  ({heading('encoding', lang)}: {report.encoding})"
    view = Table(title=Text(title))
    for name in fields:
        view.add_column(heading(name, lang), justify="right")
    view.add_row(*(cell(getattr(report, name, None)) for name in fields))
    console.print(view)
    tables: Mapping[str, Any] = getattr(report, "tables", None) or {}
    if set(tables) - {report.table}:  # one file wrote several tables: say what each got
        per_table = [name for name in fields if name not in ("rows_read", "rows_rejected")]
        view = Table()
        view.add_column(heading("table_name", lang))
        for name in per_table:
            view.add_column(heading(name, lang), justify="right")
        for table, counts in tables.items():
            view.add_row(table, *(cell(_count(counts, name)) for name in per_table))
        console.print(view)
    line(escape(f"{heading('load_id', lang)}: {report.load_id}"))
    ignored = getattr(report, "ignored_columns", ())
    if ignored:
        line(escape(f"{heading('ignored_columns', lang)}: {', '.join(ignored)}"))
    if hasattr(report, "messages"):
        warnings, notes = report.messages(lang)
    else:
        warnings, notes = getattr(report, "warnings", ()), getattr(report, "notes", ())
    for note in notes:
        line(escape(f"{heading('note', lang)}: {note}"))
    for message in warnings:
        warn(message, lang)


# -- the profile ----------------------------------------------------------------------------
def print_summary(ws: "Workspace", frame: pd.DataFrame, lang: i18n.Lang) -> None:
    """Tier shares vs targets, lifecycle counts and the RFM grid as terminal tables."""
    t = i18n.label
    shares = ws.tier_shares(frame)
    view = Table(title=t("tier_shares_title", lang))
    for col in ("tier", "users", "share", "target", "on_target"):
        view.add_column(t(col, lang), justify="left" if col == "tier" else "right")
    for row in shares.itertuples():
        view.add_row(
            t(row.tier, lang), f"{row.users:,}", f"{row.share:.1%}",
            f"{row.target_low:.0%}-{row.target_high:.0%}", t("yes" if row.on_target else "no", lang),
        )
    console.print(view)

    counts = frame["lifecycle"].value_counts()
    view = Table(title=t("lifecycle_title", lang))
    for col in ("lifecycle", "users", "share"):
        view.add_column(t(col, lang), justify="left" if col == "lifecycle" else "right")
    for stage in LIFECYCLE_STAGES:
        n = int(counts.get(stage, 0))
        view.add_row(t(stage, lang), f"{n:,}", f"{n / max(len(frame), 1):.1%}")
    console.print(view)

    grid = ws.rfm_grid(frame)
    view = Table(title=t("rfm_title", lang))
    for col in ("rfm_cell", "users", "share", "mean_monetary"):
        view.add_column(t(col, lang), justify="left" if col == "rfm_cell" else "right")
    for row in grid.itertuples():
        mean = "-" if pd.isna(row.mean_monetary) else f"{row.mean_monetary:,.2f}"
        view.add_row(t(row.rfm_cell, lang), f"{row.users:,}", f"{row.share:.1%}", mean)
    console.print(view)


def _na(value: float, fmt: str) -> str:
    """A number in ``fmt``, or "n/a" when missing: a missing prediction never reads as 0."""
    return "n/a" if value is None or pd.isna(value) else format(value, fmt)


def _sum_or_na(values: pd.Series) -> float:
    """The sum of the known values; NaN (shown "n/a") when none is known."""
    return values.sum() if values.notna().any() else np.nan


def print_predictions(frame: pd.DataFrame, horizon_days: int, lang: i18n.Lang) -> None:
    """Predictions per value tier, then all users: means are per user, totals per tier.

    P(buy) (at least one purchase within the horizon) sits beside P(churn) (none within it):
    two estimates of complementary events, so they can be read against each other; P(alive)
    is left out here because under BG/NBD a one-time buyer is alive by definition.
    """
    t = i18n.label
    view = Table(title=t("predictions_title", lang).format(days=horizon_days))
    cols = ("tier", "users", "mean_p_purchase", "mean_churn_short", "total_expected_purchases", "total_clv")
    for col in cols:
        view.add_column(t(col, lang), justify="left" if col == "tier" else "right", no_wrap=True)

    def row(label: str, g: pd.DataFrame) -> None:
        view.add_row(
            label, f"{len(g):,}", _na(g.next_purchase_within_horizon.mean(), ".2f"),
            _na(g.churn_probability.mean(), ".2f"), _na(_sum_or_na(g.expected_purchases), ",.0f"),
            _na(_sum_or_na(g.clv), ",.0f"),
        )

    grouped = frame.groupby("tier")
    for tier in ("co_builder", "engaged", "regular", "explorer"):
        if tier in grouped.groups:
            row(t(tier, lang), grouped.get_group(tier))
    view.add_section()
    row(t("all_tiers", lang), frame)
    console.print(view)
    line(escape(t("predictions_note", lang).format(days=horizon_days)))


def print_model_choice(frame: pd.DataFrame, lang: i18n.Lang) -> None:
    """Which purchase model the predictions use, and why (set by ``models.predict.predict``)."""
    choice = frame.attrs.get("purchase_model")
    if choice:
        sep = '：' if lang == 'zh' else ': '
        line(escape(f"{i18n.label('purchase_model', lang)}{sep}{choice['reason_zh' if lang == 'zh' else 'reason_en']}"))


def metric_label(key: str, lang: i18n.Lang) -> str:
    """A backtest metric's name for people: its own label, a parameter, or "<who> <score>"."""
    t = i18n.label
    if t(f"metric.{key}", lang) != f"metric.{key}":
        return t(f"metric.{key}", lang)
    if key.startswith("param_"):
        return t("metric.param", lang).format(name=key.removeprefix("param_"))
    for score in ("pr_auc", "auc", "brier"):  # pr_auc before auc: "x_pr_auc" also ends in "_auc"
        who = key.removesuffix(f"_{score}")
        if who != key and t(f"metric.who.{who}", lang) != f"metric.who.{who}":
            return f"{t(f'metric.who.{who}', lang)} {t(f'metric.score.{score}', lang)}"
    return key


def _metric_value(value: Any) -> str:
    """Counts and large numbers whole with separators (22,530, not 2.253e+04), others to 4 digits."""
    if not isinstance(value, float):
        return str(value)
    if pd.isna(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 or value.is_integer() else f"{value:.4g}"


def print_backtest(result: Any, title: str, lang: i18n.Lang = "en") -> None:
    """Accuracy metrics, predicted vs actual purchases by calibration frequency, the cohort tracking."""
    t = i18n.label
    view = Table(title=title)
    view.add_column(t("backtest.metric", lang))
    view.add_column(t("backtest.value", lang), justify="right")
    for key, value in result.metrics.items():
        view.add_row(metric_label(key, lang), _metric_value(value))
    console.print(view)
    view = Table(title=t("backtest.by_frequency_title", lang))
    for col in result.by_frequency.columns:
        view.add_column(heading(str(col), lang), justify="right")
    for row in result.by_frequency.itertuples(index=False):
        view.add_row(*(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(view)
    m = result.metrics
    if "tracking_cum_error_pct" in m:
        line(escape(t("backtest.tracking", lang).format(
            expected=m["tracking_expected_cum_end"], actual=m["tracking_actual_cum_end"],
            error=m["tracking_cum_error_pct"], h_expected=m["tracking_holdout_expected"],
            h_actual=m["tracking_holdout_actual"], h_error=m["tracking_holdout_error_pct"])))
    for name, path in result.plots.items():
        line(f"{t(f'backtest.plot.{name}', lang)}: [bold]{escape(str(path))}[/]")


# -- the schema ------------------------------------------------------------------------------
def _vocabulary_examples(synonyms: Mapping[str, tuple[str, ...]], name: str, n: int = 3) -> str:
    chinese = [s for s in synonyms.get(name, ()) if re.search(r"[\u4e00-\u9fff]", s)][:n]
    return f"  ({', '.join(chinese)} ...)" if chinese else ""


def line(markup: str = "") -> None:
    """One line as it is: no wrapping (a terminal wraps), no syntax highlighting. ``markup`` is
    Rich markup: pass data through ``escape`` (a note may say "[ingest.status_map]")."""
    console.print(markup, highlight=False, soft_wrap=True)


def print_schema(tables: Iterable[str]) -> None:
    """Each canonical table as aligned plain lines, then the status and event vocabularies."""
    from userstrata.ingest import vocab

    for name in tables:
        spec = CANONICAL[name]
        line(f"[bold]{name}[/]  key: {', '.join(spec.key)}")
        width = max(len(c) for c in spec.columns)
        for column in spec.columns:
            if column in spec.required:
                need = "required"
            elif column in spec.defaults:
                need = f"optional, default {spec.defaults[column]!r}"
            else:
                need = "optional"
            line(f"  {column:<{width}}  {spec.schema[column]!s:<9}  {need}")
        line()
    line(f"[bold]order statuses[/] (purchases: {', '.join(PURCHASE_STATUSES)})")
    for status in ORDER_STATUSES:
        line(f"  {status}{_vocabulary_examples(vocab.STATUS_SYNONYMS, status)}")
    line()
    line("[bold]event names[/] (other names are kept as they come)")
    for event in EVENT_NAMES:
        line(f"  {event}{_vocabulary_examples(vocab.EVENT_SYNONYMS, event)}")
