"""Which purchase model to use: fit BG/NBD, MBG/NBD and Pareto/NBD and keep the one with the lowest BIC.

All three describe the same observations (each buyer's repeat purchase times up to ``T``) with
four parameters, and their likelihoods include every constant, so their log-likelihoods are
directly comparable (Fader, Hardie & Lee 2005 compare BG/NBD and Pareto/NBD on CDNOW this way).
BIC = k ln(n) - 2 LL with the same k and n for all three, so the choice is the model with the
highest likelihood; BIC is what the report shows, so that it reads as a criterion with a scale
(a difference above 10 is strong evidence, below 2 barely any).

A fit that stops at the edge of its search box is still a model (BG/NBD with a, b -> inf is the
limit in which a purchase never ends a customer's life), so it competes like any other; a fit
that raises or leaves a buyer without a finite prediction does not.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from userstrata.errors import InputError, UserstrataError
from userstrata.models._base import PurchaseModel
from userstrata.models.btyd import BetaGeo, ModifiedBetaGeo, ParetoNBD

__all__ = ["MODEL_NAMES", "PURCHASE_MODELS", "ModelChoice", "choose_purchase_model", "fit_checked"]

PURCHASE_MODELS: dict[str, type[PurchaseModel]] = {
    "bgnbd": BetaGeo,
    "pareto": ParetoNBD,
    "mbgnbd": ModifiedBetaGeo,
}
MODEL_NAMES = {"bgnbd": "BG/NBD", "pareto": "Pareto/NBD", "mbgnbd": "MBG/NBD"}
# buyers the candidates compete on, at most (choose_purchase_model)
SAMPLE = 100_000


def fit_checked(name: str, frequency, recency, T, *, horizon: float = 90.0) -> PurchaseModel:
    """Fit ``name`` and check that every buyer gets finite predictions; InputError otherwise.

    Fit warnings (e.g. a boundary optimum) are not re-raised here: the caller reports the
    outcome once.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        model = PURCHASE_MODELS[name]().fit(frequency, recency, T)
        alive = model.probability_alive(frequency, recency, T)
        expected = model.expected_purchases(horizon, frequency, recency, T)
    bad = int((~np.isfinite(alive) | ~np.isfinite(expected)).sum())
    if bad:
        params = ", ".join(f"{k}={v:.3g}" for k, v in model.params_.items())
        raise InputError(f"the {MODEL_NAMES[name]} fit ({params}) leaves {bad} of {len(alive)} buyers without a prediction")
    return model


@dataclass(frozen=True)
class ModelChoice:
    """The chosen model and why: ``candidates`` has one row per model tried (``model``, ``name``,
    ``log_likelihood``, ``bic``, ``at_boundary``, ``error``), best first."""

    name: str
    model: PurchaseModel
    candidates: pd.DataFrame
    reason_en: str
    reason_zh: str

    def reason(self, lang: str = "en") -> str:
        return self.reason_zh if lang == "zh" else self.reason_en


def _reasons(name: str, table: pd.DataFrame, sampled: tuple[int, int] | None) -> tuple[str, str]:
    best = table.iloc[0]
    others = table.iloc[1:]
    fitted = others[others.error == ""]
    failed = others[others.error != ""]
    en = f"auto chose {MODEL_NAMES[name]}: lowest BIC ({best.bic:,.1f})"
    zh = f"自动选择 {MODEL_NAMES[name]}：BIC 最低（{best.bic:,.1f}）"
    if sampled:
        en += f" on a random {sampled[0]:,} of {sampled[1]:,} buyers"
        zh = f"自动选择 {MODEL_NAMES[name]}：在随机抽取的 {sampled[0]:,} 位（共 {sampled[1]:,} 位）购买用户上 BIC 最低（{best.bic:,.1f}）"
    if best.at_boundary:
        en += f", with {best.at_boundary} at the edge of the search box (the limit model)"
        zh += f"，参数 {best.at_boundary} 停在搜索边界（取极限模型）"
    if len(fitted):
        en += "; " + ", ".join(f"{MODEL_NAMES[m]} {b:,.1f} (+{b - best.bic:,.1f})" for m, b in zip(fitted.model, fitted.bic))
        zh += "；" + "，".join(f"{MODEL_NAMES[m]} {b:,.1f}（+{b - best.bic:,.1f}）" for m, b in zip(fitted.model, fitted.bic))
        if float(fitted.bic.iloc[0] - best.bic) < 2:
            en += "; a difference under 2: the data barely tell them apart"
            zh += "；差距不足 2，数据几乎无法区分这些模型"
    if len(failed):
        en += "; " + ", ".join(MODEL_NAMES[m] for m in failed.model) + " could not be fitted"
        zh += "；" + "、".join(MODEL_NAMES[m] for m in failed.model) + " 无法拟合"
    return en, zh


def choose_purchase_model(
    frequency, recency, T, *, horizon: float = 90.0, candidates=tuple(PURCHASE_MODELS), sample: int = SAMPLE,
    random_state=0,
) -> ModelChoice:
    """Fit each of ``candidates`` and keep the one with the lowest BIC (see the module docstring).

    With more than ``sample`` buyers the candidates compete on a random ``sample`` of them
    (seeded by ``random_state``) and the winner is then fitted on all: at that size the BIC gaps
    are decisive already, and Pareto/NBD's likelihood costs seconds per 100,000 distinct histories.

    Raises
    ------
    InputError
        When no candidate can be fitted, with each one's reason.
    """
    x, t_x, T_ = (np.asarray(a, dtype=np.float64) for a in (frequency, recency, T))
    sampled = None
    if len(x) > sample:
        keep = np.sort(np.random.default_rng(random_state).choice(len(x), sample, replace=False))
        sampled = (sample, len(x))
        x, t_x, T_ = x[keep], t_x[keep], T_[keep]
    rows, models = [], {}
    n = float(np.sum(T_ > 0))  # T = 0 rows carry no information
    for name in candidates:
        try:
            model = fit_checked(name, x, t_x, T_, horizon=horizon)
        except UserstrataError as exc:
            rows.append(dict(model=name, name=MODEL_NAMES[name], log_likelihood=np.nan, bic=np.nan,
                             at_boundary="", error=str(exc)))
            continue
        models[name] = model
        k = len(model.params_)
        rows.append(dict(model=name, name=MODEL_NAMES[name], log_likelihood=model.log_likelihood_,
                         bic=k * np.log(max(n, 1.0)) - 2 * model.log_likelihood_,
                         at_boundary=", ".join(model.at_boundary_), error=""))
    table = pd.DataFrame(rows).sort_values("bic", na_position="last", kind="stable").reset_index(drop=True)
    if not models:
        raise InputError(
            "no purchase model could be fitted: " + "; ".join(f"{r.name}: {r.error}" for r in table.itertuples()),
            hint="more buyers or a longer history help: a later as-of date (--as-of)",
        )
    name = str(table.model.iloc[0])
    model = models[name] if sampled is None else fit_checked(name, frequency, recency, T, horizon=horizon)
    return ModelChoice(name, model, table, *_reasons(name, table, sampled))
