"""What static traits of a buyer drive purchasing and dropout: BG/NBD with covariates on a shop.

The traits are fixed at acquisition, so they cannot echo the history the model explains:
the acquisition ``channel`` (``users.channel``) and the first purchase day's net spend
(``first_order_value`` of :func:`~userstrata.features.btyd_summary`, on a log scale). Each is
kept only when it raises the held-out log-likelihood (:func:`~userstrata.models.select_covariates`).
"""

from __future__ import annotations

import datetime as dt_
from collections.abc import Sequence

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from userstrata.config import Settings
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.models.btyd import CovariateSelection, select_covariates
from userstrata.models.predict import MIN_BUYERS, Execute, _btyd_frame

__all__ = ["COVARIATES", "purchase_covariates"]

# name -> what it is; the design column of first_order_value is its log (money is skewed)
COVARIATES = {
    "channel": "acquisition channel (users.channel; missing: unknown)",
    "first_order_value": "net spend of the first purchase day, as log(1 + value)",
}


def purchase_covariates(
    *,
    users: ir.Table,
    orders: ir.Table,
    as_of: dt_.date,
    settings: Settings,
    engine: str,
    execute: Execute,
    columns: Sequence[str] = tuple(COVARIATES),
    random_state=0,
) -> CovariateSelection:
    """Fit BG/NBD with the buyers' static ``columns`` as covariates, as of ``as_of``, and keep
    those that improve the held-out log-likelihood (coefficients with standard errors in
    ``result.coefficients``, the decision in ``result.reason(lang)``).

    Raises
    ------
    InputError
        An unknown column, too few buyers, or no column that varies between buyers.
    """
    unknown = [c for c in columns if c not in COVARIATES]
    if unknown or not columns:
        raise InputError(f"covariates {unknown or list(columns)}; expected some of {', '.join(COVARIATES)}")
    summary = _btyd_frame(orders, as_of=as_of, clock=Clock(settings.timezone, engine), execute=execute)
    if len(summary) < MIN_BUYERS:
        raise InputError(f"{len(summary)} buyers as of {as_of}; covariates need at least {MIN_BUYERS}",
                         hint="use a later --as-of")
    design = pd.DataFrame(index=summary.index)
    if "channel" in columns:
        channel = execute(users.select("user_id", "channel")).drop_duplicates("user_id").set_index("user_id")["channel"]
        design["channel"] = channel.reindex(summary.index).fillna("unknown").astype(str)
    if "first_order_value" in columns:
        design["log_first_order_value"] = np.log1p(summary["first_order_value"].clip(lower=0.0))
    constant = [c for c in design.columns if design[c].nunique() < 2]
    design = design.drop(columns=constant)
    if design.shape[1] == 0:
        raise InputError(f"covariates {', '.join(columns)} have one value for every buyer: nothing to learn from",
                         hint="load users with their channel (users.channel)")
    return select_covariates(summary[["frequency", "recency", "T"]], design, random_state=random_state)
