"""MBG/NBD purchase model (Batislam, Denizel & Filiztekin 2007), fitted by maximum likelihood."""

from __future__ import annotations

from userstrata.models.btyd.bgnbd import _BetaGeoFamily, _simulate

__all__ = ["ModifiedBetaGeo", "simulate_mbgnbd"]


class ModifiedBetaGeo(_BetaGeoFamily):
    """MBG/NBD purchase model fitted by maximum likelihood.

    As BG/NBD, but the dropout coin (``p ~ Beta(a, b)``) is also tossed right after the
    first purchase, at time 0; so customers without repeat purchases can be inactive and
    ``probability_alive`` is below 1 for them (BG/NBD sets it to 1).

    Likelihood: ``L = B(a, b+x+1)/B(a, b) G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
    + B(a+1, b+x)/B(a, b) G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))``.
    The unconditional mean used by ``expected_purchases_new`` is
    ``E[X(t)] = b/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b+1; a+b; t/(alpha+t))]``, derived here
    from ``E[X(t) | lambda, p] = (1-p)/p (1 - exp(-lambda p t))`` with Euler's integral;
    lifetimes' ``ModifiedBetaGeoFitter`` uses ``a+b-1`` as the third 2F1 argument, which
    does not match that integral (the tests check ours against numerical integration).

    Parameters
    ----------
    penalizer
        L2 penalty ``penalizer * sum(params**2)`` added to the mean negative log-likelihood.

    Attributes
    ----------
    params_, standard_errors_, log_params_cov_, log_likelihood_, n_customers_, converged_, at_boundary_
        As for :class:`~userstrata.models.BetaGeo` (parameters ``r, alpha, a, b``).

    References
    ----------
    Batislam, E. P., Denizel, M. & Filiztekin, A. (2007). Empirical validation and comparison
    of models for customer base analysis. International Journal of Research in Marketing,
    24(3), 201-209.
    """

    _modified = True


def simulate_mbgnbd(n: int, params: dict, T, random_state=None, *, resolution: float | None = None):
    """Simulate ``(frequency, recency, T)`` from MBG/NBD (see :func:`simulate_bgnbd`).

    The only change: the lifetime number of repeat purchases is ``Geometric(p) - 1``, since a
    customer may drop out right after the first purchase.
    """
    return _simulate(n, params, T, random_state, resolution, modified=True)
