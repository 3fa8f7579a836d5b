"""Backtest plots: holdout purchases by calibration frequency, and churn calibration.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend), so
they render headless; ``fig.savefig`` writes PNG through the Agg canvas.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve

__all__ = ["plot_calibration", "plot_frequency_conditional"]


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
