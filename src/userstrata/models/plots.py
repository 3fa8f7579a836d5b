"""Backtest plots: holdout purchases by calibration frequency, churn calibration, cohort tracking.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend), so
they render headless; ``fig.savefig`` writes PNG through the Agg canvas.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Text
from sklearn.calibration import calibration_curve

from userstrata import i18n
from userstrata.charts import cjk_font
from userstrata.errors import InputError, Notice
from userstrata.models.churn import check_lang
from userstrata.models.tracking import weekly_tracking

__all__ = ["plot_calibration", "plot_frequency_conditional", "plot_tracking"]

# the chart's texts, in i18n as "tracking.<key>"
TRACKING_LABEL_KEYS = ("title_cum", "title_weekly", "actual", "expected", "cutoff", "week", "cum", "weekly")


def _axes(ax, figsize=(6.4, 4.4)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_frequency_conditional(by_frequency: pd.DataFrame, ax=None):
    """Actual vs predicted mean holdout purchases by number of calibration repeat purchases.

    ``by_frequency`` is :attr:`BacktestResult.by_frequency` (columns ``frequency_group``,
    ``actual_mean``, ``predicted_mean``), as in FHL 2005's conditional-expectation figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _axes(ax)
    pos = np.arange(len(by_frequency))
    ax.plot(pos, by_frequency["actual_mean"], marker="o", color="#222222", label="actual")
    ax.plot(pos, by_frequency["predicted_mean"], marker="s", linestyle="--", color="#d62728", label="predicted")
    ax.set_xticks(pos, [str(v) for v in by_frequency["frequency_group"]])
    ax.set_xlabel("repeat purchases in calibration")
    ax.set_ylabel("mean purchases in holdout")
    ax.set_title("Conditional expectation of holdout purchases")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return fig


def plot_calibration(y_true, p, ax=None, *, n_bins: int = 10):
    """Reliability diagram: mean predicted probability vs observed rate, per quantile bin.

    Parameters
    ----------
    y_true
        Observed outcomes (True/1 = churned).
    p
        Predicted probabilities, or a mapping ``label -> probabilities`` to overlay several
        (e.g. the classifier and the BTYD baselines). NaN predictions are left out.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _axes(ax)
    curves = p if isinstance(p, Mapping) else {"predicted": p}
    y = np.asarray(y_true, dtype=np.float64)
    ax.plot([0, 1], [0, 1], color="#999999", linewidth=1, label="perfectly calibrated")
    for label, probs in curves.items():
        probs = np.asarray(probs, dtype=np.float64)
        ok = np.isfinite(probs) & np.isfinite(y)
        if ok.sum() < 2 or len(np.unique(y[ok])) < 2:
            continue
        observed, predicted = calibration_curve(y[ok], probs[ok], n_bins=n_bins, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title("Churn calibration")
    ax.legend(frameon=False, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def chart_language(lang: str, chart_en: str, chart_zh: str):
    """``(lang, font)`` for a chart: Chinese needs a font with Chinese glyphs; without one the
    chart falls back to English labels and says so (a ``Notice``) rather than drawing empty boxes."""
    lang = check_lang(lang)
    if lang != "zh":
        return lang, None
    font = cjk_font()
    if font is None:
        warnings.warn(Notice(
            f"no font with Chinese glyphs is installed, so the {chart_en} has English labels; "
            "install one (e.g. fonts-noto-cjk) for Chinese labels",
            f"未安装含中文字形的字体，{chart_zh}使用英文标注；安装中文字体（如 fonts-noto-cjk）后即为中文",
        ), stacklevel=3)
        return "en", None
    return lang, font


def plot_tracking(tracking: pd.DataFrame, ax=None, lang: str = "en"):
    """Cohort tracking: cumulative and weekly repeat transactions, actual vs model, cutoff marked.

    ``tracking`` is :func:`~userstrata.models.tracking.tracking_table` (as in
    :attr:`BacktestResult.tracking`); the weekly panel sums it per week, as FHL 2005
    (Figure 1) and R BTYD's ``PlotTrackingCum`` / ``PlotTrackingInc`` show them.

    Parameters
    ----------
    ax
        None for a new figure with two panels, or two Axes ``(cumulative, weekly)``.
    lang
        ``"zh"`` or ``"en"``. Chinese needs a font with Chinese glyphs (Noto Sans CJK,
        WenQuanYi, Microsoft YaHei, PingFang ...); without one the labels are English, with a warning.

    Returns
    -------
    matplotlib.figure.Figure
    """
    lang, font = chart_language(lang, "tracking chart", "购买队列跟踪图")
    if ax is None:
        fig = Figure(figsize=(7.2, 7.6), layout="constrained")
        ax_cum, ax_week = fig.subplots(2, 1)
    else:
        try:
            ax_cum, ax_week = ax
        except (TypeError, ValueError):
            raise InputError(
                f"ax = {ax!r}; expected None or two Axes (cumulative, weekly)",
                hint="pass fig.subplots(2, 1), or leave ax out for a new figure",
            ) from None
        fig = ax_cum.figure
    text = {key: i18n.label(f"tracking.{key}", lang) for key in TRACKING_LABEL_KEYS}
    weekly = weekly_tracking(tracking)
    calib = weekly[weekly["period"] == "calibration"]
    cutoff_week = float(calib["week"].max()) + 0.5 if len(calib) else None
    for axes, actual, expected, title, ylabel in (
        (ax_cum, "actual_cum", "expected_cum", "title_cum", "cum"),
        (ax_week, "actual", "expected", "title_weekly", "weekly"),
    ):
        axes.plot(weekly["week"], weekly[actual], color="#222222", label=text["actual"])
        axes.plot(weekly["week"], weekly[expected], linestyle="--", color="#d62728", label=text["expected"])
        if cutoff_week is not None and len(weekly) > len(calib):
            axes.axvline(cutoff_week, color="#777777", linestyle=":", linewidth=1.2, label=text["cutoff"])
        axes.set_title(text[title])
        axes.set_xlabel(text["week"])
        axes.set_ylabel(text[ylabel])
        axes.legend(frameon=False, loc="upper left")
        axes.grid(alpha=0.3)
    if font is not None:
        # set on each text now: the generic family is looked up only when the figure is drawn
        for item in fig.findobj(Text):
            item.set_fontfamily([font, "sans-serif"])
    return fig
