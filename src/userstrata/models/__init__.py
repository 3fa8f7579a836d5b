"""Predictive models: BTYD purchase models, the Gamma-Gamma spend model and CLV."""

from userstrata.models._base import PurchaseModel
from userstrata.models.btyd import BetaGeo, BetaGeoBetaBinom, GammaGamma, ModifiedBetaGeo, ParetoNBD
from userstrata.models.clv import clv

__all__ = ["BetaGeo", "BetaGeoBetaBinom", "GammaGamma", "ModifiedBetaGeo", "ParetoNBD", "PurchaseModel", "clv"]
