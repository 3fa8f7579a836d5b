"""The statistics of an A/B test, on summary statistics (count, sum, sum of squares, sums of
products): Welch t-tests of means and proportions, ratio metrics and relative effects by the
delta method, CUPED / regression adjustment, always-valid (sequential) intervals, the
sample-ratio-mismatch check, Holm's correction and the sample size for a given power.

Everything here is plain numpy/SciPy on a handful of numbers per variant; the per-user sums
are computed by the engine (``measure/abtest.py``). The conventions follow GrowthBook's
``gbstats`` (MIT), whose published test cases ``tests/measure/test_abtest.py`` reproduces:
per-unit variances with ``n - 1`` (proportions: ``p (1 - p)``), Welch–Satterthwaite degrees of
freedom, relative effects ``(mean_b - mean_a) / mean_a`` with the delta-method variance of a
ratio of independent means, CUPED with one ``theta`` pooled over both arms.

References
----------
Welch, B. L. (1947). The generalization of "Student's" problem when several different
population variances are involved. Biometrika 34.
Deng, A., Xu, Y., Kohavi, R. & Walker, T. (2013). Improving the sensitivity of online
controlled experiments by utilizing pre-experiment data (CUPED). WSDM.
Deng, A., Knoblich, U. & Lu, J. (2018). Applying the delta method in metric analytics. KDD.
Waudby-Smith, I., Arbour, D., Sinha, R., Kennedy, E. H. & Ramdas, A. (2023). Time-uniform
central limit theory and asymptotic confidence sequences (arXiv:2103.06476v7), eq. 9 and 161.
Howard, S. R., Ramdas, A., McAuliffe, J. & Sekhon, J. (2021). Time-uniform, nonparametric,
nonasymptotic confidence sequences. Annals of Statistics 49.
Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J. Stat. 6.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

DEFAULT_TUNING = 5000.0  # sequential tuning: the total sample size where the interval is narrowest


def _sps():  # noqa: ANN202 - scipy.stats, imported on first use: the CLI starts without SciPy
    from scipy import stats  # noqa: PLC0415

    return stats


# -- statistics of one variant ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MeanStat:
    """A metric's values over ``n`` units: their sum and sum of squares."""

    n: int
    sum: float
    sum_squares: float

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Per-unit sample variance (``n - 1``)."""
        if self.n <= 1:
            return 0.0
        return max((self.sum_squares - self.sum**2 / self.n) / (self.n - 1), 0.0)

    @property
    def unadjusted_mean(self) -> float:
        return self.mean


@dataclasses.dataclass(frozen=True)
class ProportionStat(MeanStat):
    """``sum`` of ``n`` units converted (0/1 values: the sum of squares is the sum)."""

    def __init__(self, n: int, sum: float):  # noqa: A002 - the statistic's name
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "sum", sum)
        object.__setattr__(self, "sum_squares", sum)

    @property
    def variance(self) -> float:
        p = self.mean
        return p * (1 - p)


def covariance(n: int, sum_x: float, sum_y: float, sum_of_products: float) -> float:
    """Sample covariance (``n - 1``) from sums."""
    return (sum_of_products - sum_x * sum_y / n) / (n - 1) if n > 1 else 0.0


def ratio_variance(mean_m: float, var_m: float, mean_d: float, var_d: float, cov_md: float) -> float:
    """Delta-method variance of ``M / D`` (Deng et al. 2018)."""
    return var_m / mean_d**2 + var_d * mean_m**2 / mean_d**4 - 2 * cov_md * mean_m / mean_d**3


@dataclasses.dataclass(frozen=True)
class RatioStat:
    """A ratio metric (e.g. revenue per order) over ``n`` units: numerator and denominator
    statistics and the sum of their products; its mean is ``sum(M) / sum(D)``."""

    n: int
    numerator: MeanStat
    denominator: MeanStat
    sum_of_products: float

    @property
    def mean(self) -> float:
        return self.numerator.mean / self.denominator.mean if self.denominator.mean else 0.0

    @property
    def unadjusted_mean(self) -> float:
        return self.mean

    @property
    def variance(self) -> float:
        """Per-unit variance of the ratio (delta method): ``variance / n`` is its variance."""
        if self.n <= 1 or not self.denominator.mean:
            return 0.0
        cov = covariance(self.n, self.numerator.sum, self.denominator.sum, self.sum_of_products)
        return ratio_variance(self.numerator.mean, self.numerator.variance, self.denominator.mean,
                              self.denominator.variance, cov)


@dataclasses.dataclass(frozen=True)
class AdjustedStat:
    """CUPED: the metric after assignment (``post``) adjusted by the same metric before it
    (``pre``): ``post - theta * pre`` (Deng et al. 2013); ``theta`` None until pooled."""

    n: int
    post: MeanStat
    pre: MeanStat
    sum_of_products: float
    theta: float | None = None

    @property
    def covariance(self) -> float:
        return covariance(self.n, self.post.sum, self.pre.sum, self.sum_of_products)

    @property
    def mean(self) -> float:
        return self.post.mean - (self.theta or 0.0) * self.pre.mean

    @property
    def unadjusted_mean(self) -> float:
        return self.post.mean

    @property
    def variance(self) -> float:
        theta = self.theta or 0.0
        return max(self.post.variance + theta**2 * self.pre.variance - 2 * theta * self.covariance, 0.0)


Stat = MeanStat | RatioStat | AdjustedStat


def pooled_theta(a: AdjustedStat, b: AdjustedStat) -> float:
    """CUPED's ``theta = cov(post, pre) / var(pre)`` on both arms together (one theta for both
    keeps the adjusted difference unbiased); 0 when the pre-period has no variance."""
    n = a.n + b.n
    pre = MeanStat(n, a.pre.sum + b.pre.sum, a.pre.sum_squares + b.pre.sum_squares)
    post = MeanStat(n, a.post.sum + b.post.sum, a.post.sum_squares + b.post.sum_squares)
    if isinstance(a.pre, ProportionStat):
        pre = ProportionStat(n, a.pre.sum + b.pre.sum)
    if isinstance(a.post, ProportionStat):
        post = ProportionStat(n, a.post.sum + b.post.sum)
    if pre.variance == 0 or post.variance == 0:
        return 0.0
    cov = covariance(n, post.sum, pre.sum, a.sum_of_products + b.sum_of_products)
    return cov / pre.variance


# -- comparing two variants -------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Effect:
    """Variant ``b`` against control ``a``: the point estimate (absolute ``mean_b - mean_a`` or
    relative ``(mean_b - mean_a) / mean_a``), its standard error, the interval and p-value."""

    estimate: float
    stddev: float
    ci_low: float
    ci_high: float
    p_value: float
    dof: float


def _untestable(estimate: float) -> Effect:
    """The point estimate alone: too few units or no variance for an interval."""
    return Effect(estimate, math.nan, math.nan, math.nan, math.nan, math.nan)


def welch_dof(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom from per-unit variances."""
    num = (var_a / n_a + var_b / n_b) ** 2
    den = (var_a / n_a) ** 2 / (n_a - 1) + (var_b / n_b) ** 2 / (n_b - 1)
    return num / den if den > 0 else math.inf


def sequential_rho(alpha: float, tuning: float) -> float:
    """Mixing parameter of the Gaussian mixture martingale, chosen so that the confidence
    sequence is tightest near ``tuning`` total units (Waudby-Smith et al. 2023, eq. 161)."""
    return math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)


def compare(
    a: Stat, b: Stat, *, relative: bool = False, alpha: float = 0.05, sequential: bool = False,
    tuning: float = DEFAULT_TUNING,
) -> Effect:
    """Two-sided test of ``b`` against control ``a``.

    Fixed horizon: Welch's t-test (interval ``estimate ± t(1 - alpha/2, dof) · se``).
    ``sequential``: the asymptotic confidence sequence of Waudby-Smith et al. (2023, eq. 9),
    valid at every look, and its always-valid p-value (the smallest alpha whose sequence
    excludes 0, with the mixing parameter of ``alpha``; capped at 1).
    For CUPED pass two ``AdjustedStat`` (theta pooled here when not set).
    """
    if isinstance(a, AdjustedStat) and isinstance(b, AdjustedStat) and (a.theta is None or b.theta is None):
        theta = pooled_theta(a, b)
        a, b = dataclasses.replace(a, theta=theta), dataclasses.replace(b, theta=theta)
    base = a.unadjusted_mean
    if relative:
        estimate = (b.mean - a.mean) / base if base else math.nan
    else:
        estimate = b.mean - a.mean
    if a.n <= 1 or b.n <= 1:
        return _untestable(estimate)
    var_a, var_b = a.variance, b.variance
    if var_a <= 0 and var_b <= 0 or (relative and base == 0):
        return _untestable(estimate)
    if relative:
        variance = ratio_variance(b.unadjusted_mean, var_b / b.n, base, var_a / a.n, 0.0)
    else:
        variance = var_b / b.n + var_a / a.n
    se = math.sqrt(variance)
    dof = welch_dof(var_a, a.n, var_b, b.n)
    if sequential:
        n = a.n + b.n
        rho = sequential_rho(alpha, tuning)
        s2 = variance * n
        half = math.sqrt(s2) * math.sqrt(2 * (n * rho**2 + 1) * math.log(math.sqrt(n * rho**2 + 1) / alpha)
                                         / (n * rho) ** 2)
        z2 = estimate**2 / variance
        log_p = 0.5 * math.log(n * rho**2 + 1) - n * rho**2 * z2 / (2 * (n * rho**2 + 1))
        p_value = min(1.0, math.exp(min(log_p, 0.0)))
        return Effect(estimate, se, estimate - half, estimate + half, p_value, dof)
    sps = _sps()
    t = sps.t.ppf(1 - alpha / 2, dof)
    p_value = float(2 * sps.t.sf(abs(estimate) / se, dof))
    return Effect(estimate, se, estimate - t * se, estimate + t * se, p_value, dof)


# -- checks and corrections ---------------------------------------------------------------------
def srm_p_value(users: Sequence[int], weights: Sequence[float]) -> float:
    """Sample-ratio mismatch: Pearson's chi-square goodness-of-fit p-value of the users per
    variant against the planned ``weights`` (variants of weight 0 are left out, with their users)."""
    kept = [(o, w) for o, w in zip(users, weights) if w > 0]
    total = float(sum(o for o, _ in kept))
    if total <= 0 or len(kept) < 2:
        return 1.0
    weight = sum(w for _, w in kept)
    x2 = sum((o - w / weight * total) ** 2 / (w / weight * total) for o, w in kept)
    return float(_sps().chi2.sf(x2, len(kept) - 1))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down; NaN stays NaN): reject where ``<= alpha``
    keeps the family-wise error at ``alpha`` over all comparisons."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    if not len(idx):
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def users_for_power(var_a: float, var_b: float, delta: float, *, alpha: float = 0.05, power: float = 0.8,
                    share_b: float = 0.5) -> float:
    """Total users (both arms, ``share_b`` in b) for a two-sided test at ``alpha`` to detect an
    absolute difference ``delta`` with probability ``power`` (normal approximation)."""
    if delta == 0:
        return math.inf
    z = _sps().norm.ppf(1 - alpha / 2) + _sps().norm.ppf(power)
    return z**2 * (var_a / (1 - share_b) + var_b / share_b) / delta**2


# -- intervals of one group ------------------------------------------------------------------
def z_value(level: float = 0.95) -> float:
    """The two-sided normal quantile of ``level`` (1.959963984540054 for 95%)."""
    return float(_sps().norm.ppf(0.5 + level / 2))


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (Wilson 1927); NaN for ``n == 0``."""
    if n <= 0:
        return math.nan, math.nan
    z = z_value(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def normal_mean(stat: MeanStat, level: float = 0.95) -> tuple[float, float]:
    """``mean ± z · sqrt(variance / n)`` (per-unit variance with ``n - 1``); NaN below 2 units."""
    if stat.n < 2:
        return math.nan, math.nan
    half = z_value(level) * math.sqrt(stat.variance / stat.n)
    return stat.mean - half, stat.mean + half
