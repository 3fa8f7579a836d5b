"""Predictive models: BTYD purchase models (with covariates, and BG/BB in discrete time), the
Gamma-Gamma spend model, CLV, and the sBG model of membership renewals."""

from userstrata.models._base import PurchaseModel
from userstrata.models.btyd import (
    BetaGeo,
    BetaGeoBetaBinom,
    BetaGeoCovariates,
    GammaGamma,
    ModifiedBetaGeo,
    ParetoNBD,
    select_covariates,
)
from userstrata.models.clv import clv
from userstrata.models.renewals import ShiftedBetaGeo

__all__ = [
    "BetaGeo",
    "BetaGeoBetaBinom",
    "BetaGeoCovariates",
    "GammaGamma",
    "ModifiedBetaGeo",
    "ParetoNBD",
    "PurchaseModel",
    "ShiftedBetaGeo",
    "clv",
    "select_covariates",
]
