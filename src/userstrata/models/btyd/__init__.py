"""Buy-'til-you-die purchase models (continuous time, and BG/BB in discrete time) and the Gamma-Gamma spend model."""

from userstrata.models.btyd.bgbb import BetaGeoBetaBinom, discrete_summary, simulate_bgbb
from userstrata.models.btyd.bgnbd import BetaGeo, simulate_bgnbd
from userstrata.models.btyd.covariates import (
    BetaGeoCovariates,
    CovariateSelection,
    select_covariates,
    simulate_bgnbd_covariates,
)
from userstrata.models.btyd.gammagamma import GammaGamma, simulate_gammagamma
from userstrata.models.btyd.mbgnbd import ModifiedBetaGeo, simulate_mbgnbd
from userstrata.models.btyd.paretonbd import ParetoNBD, simulate_paretonbd

__all__ = [
    "BetaGeo",
    "BetaGeoBetaBinom",
    "BetaGeoCovariates",
    "CovariateSelection",
    "GammaGamma",
    "ModifiedBetaGeo",
    "ParetoNBD",
    "discrete_summary",
    "select_covariates",
    "simulate_bgbb",
    "simulate_bgnbd",
    "simulate_bgnbd_covariates",
    "simulate_gammagamma",
    "simulate_mbgnbd",
    "simulate_paretonbd",
]
