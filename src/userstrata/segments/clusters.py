"""Behaviour clusters (行为聚类): k-means on standardised behaviour features, described in words.

The features are taken from the executed profile (one row per user, ``docs/profile.md``):

- counts and money enter as ``log1p`` (a whale's spend would otherwise be the only axis);
- users who never bought have no purchase features (repeat days, spend, basket, recency, refund
  rate, category share): ``has_bought`` says so explicitly, the purchase features are
  standardised over the buyers and a never-buyer sits at their mean (z = 0), so that "low
  basket" means low among buyers and not "lower than the non-buyers' zero";
- every other feature is standardised over all users (a constant feature stays 0).

``k`` is chosen by the silhouette of k-means fits on a seeded sample of ``sample`` users
(Rousseeuw 1987); the clustering of every user is then one k-means run on all users started
from the chosen sample fit's centres, so that 1M users cost one pass of Lloyd iterations and
not ``n_init`` of them. With at most ``sample`` users the sample is everyone and the two fits
are the same.

Cluster ids are ordered by size (0 = largest; ties by the centre), so that the same data gives
the same ids on every run. Each cluster is described by the two or three standardised features
of its centre farthest from 0 (``|z| >= 0.5``), with a direction word from ``PHRASES``.

References
----------
Rousseeuw, P. J. (1987). Silhouettes: a graphical aid to the interpretation and validation of
cluster analysis. Journal of Computational and Applied Mathematics 20, 53-65.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from userstrata.errors import InputError
from userstrata.i18n import Lang

__all__ = ["FEATURES", "PHRASES", "BehaviourClusters", "behaviour_clusters", "silhouettes"]

# The behaviour features, in the order of the standardised matrix; all are profile columns but
# has_bought (orders > 0).
FEATURES: tuple[str, ...] = (
    "has_bought",
    "frequency",
    "monetary",
    "aov",
    "recency_days",
    "tenure_days",
    "inactive_days",
    "interaction_depth",
    "community_actions",
    "event_days",
    "refund_rate",
    "category_share",
)
_LOG_FEATURES = frozenset(FEATURES) - {"has_bought", "refund_rate", "category_share"}
# Only meaningful for buyers: not used to describe a cluster of non-buyers.
_PURCHASE_FEATURES = frozenset({"frequency", "monetary", "aov", "recency_days", "refund_rate", "category_share"})

# feature -> direction -> (zh, en). One table so that it can move to i18n.py as it is.
PHRASES: dict[str, dict[str, tuple[str, str]]] = {
    "has_bought": {"high": ("已购买", "buyers"), "low": ("未购买", "never bought")},
    "frequency": {"high": ("高频", "frequent"), "low": ("低频", "infrequent")},
    "monetary": {"high": ("高消费", "high spend"), "low": ("低消费", "low spend")},
    "aov": {"high": ("高客单", "high basket"), "low": ("低客单", "low basket")},
    "recency_days": {"high": ("久未购买", "lapsed"), "low": ("近期购买", "bought recently")},
    "tenure_days": {"high": ("老用户", "long-standing"), "low": ("新用户", "newcomers")},
    "inactive_days": {"high": ("久未活跃", "long inactive"), "low": ("近期活跃", "recently active")},
    "interaction_depth": {"high": ("互动多", "many interactions"), "low": ("互动少", "few interactions")},
    "community_actions": {"high": ("社区活跃", "active in the community"),
                          "low": ("社区沉默", "quiet in the community")},
    "event_days": {"high": ("常来访", "visit often"), "low": ("少来访", "rarely visit")},
    "refund_rate": {"high": ("退款多", "refund often"), "low": ("少退款", "rarely refund")},
    "category_share": {"high": ("品类专一", "one category"), "low": ("品类分散", "many categories")},
    "_average": {"any": ("接近平均", "close to average")},
    "_cluster": {"any": ("第 {n} 群", "cluster {n}")},
}  # fmt: skip
_JOIN = {"zh": "，", "en": ", "}
_REASONS = {
    "given": ("k = {k}，由参数指定", "k = {k}, as given"),
    "silhouette": (
        "k = {k}：在 {lo}-{hi} 中轮廓系数最高（{score:.3f}，{n:,} 个用户的抽样）",
        "k = {k}: the highest silhouette in {lo}-{hi} ({score:.3f}, on a sample of {n:,} users)",
    ),
}
_THRESHOLD = 0.5  # |z| of a centre that counts as distinguishing
_MAX_WORDS = 3
_N_INIT = 4
_PROFILE_COLUMNS = ("user_id", "orders", *(f for f in FEATURES if f != "has_bought"))


@dataclass(frozen=True)
class BehaviourClusters:
    """Behaviour clusters of a profile.

    Attributes
    ----------
    labels
        Cluster id per user (index ``user_id``), 0 = the largest cluster.
    clusters
        One row per cluster: ``cluster, size, share, description_zh, description_en`` and the
        mean of each raw feature (``recency_days``, ``aov``... over the cluster's buyers).
    silhouette
        Silhouette on the sample per ``k`` tried (index ``k``; empty when ``k`` was given).
    k
        The number of clusters.
    reason_zh, reason_en
        Why this ``k``.
    """

    labels: pd.Series
    clusters: pd.DataFrame
    silhouette: pd.Series
    k: int
    reason_zh: str
    reason_en: str

    def reason(self, lang: Lang = "en") -> str:
        return self.reason_zh if lang == "zh" else self.reason_en

    def assignments(self, lang: Lang = "en") -> pd.DataFrame:
        """``user_id, cluster, description`` (in ``lang``) per user."""
        words = self.clusters.set_index("cluster")[f"description_{lang}"]
        return pd.DataFrame({
            "user_id": self.labels.index.to_numpy(),
            "cluster": self.labels.to_numpy(),
            "description": words.reindex(self.labels.to_numpy()).to_numpy(),
        })  # fmt: skip


def _check(profile: pd.DataFrame, k, k_range, sample) -> tuple[int, int]:
    if not isinstance(profile, pd.DataFrame):
        raise InputError(f"profile must be a pandas DataFrame, got {type(profile).__name__}",
                         hint="pass Workspace.profile(as_of).to_pandas()")
    missing = [c for c in _PROFILE_COLUMNS if c not in profile.columns]
    if missing:
        raise InputError(f"profile lacks the columns {', '.join(missing)}",
                         hint="pass Workspace.profile(as_of).to_pandas()")
    n = len(profile)
    if n < 3:
        raise InputError(f"profile has {n} users; clustering needs at least 3",
                         hint="pass a later as_of or load more data")
    if profile["user_id"].duplicated().any():
        raise InputError("profile has repeated user_id values; expected one row per user")
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 3:
        raise InputError(f"sample = {sample!r}: expected a number of users of at least 3",
                         hint="e.g. sample=20_000")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= n - 1:
            raise InputError(f"k = {k!r} is not a number of clusters for {n} users; expected 2 to {n - 1}",
                             hint="leave k=None to choose it by silhouette")
    if k is not None and k > min(n, sample) - 1:
        raise InputError(f"k = {k!r} needs a sample of more than {k} users, got sample = {sample!r}",
                         hint=f"pass sample={k + 1} or more")
    lo, hi = (int(v) for v in k_range)
    if not 2 <= lo <= hi:
        raise InputError(f"k_range = {tuple(k_range)!r}: expected (low, high) with 2 <= low <= high",
                         hint="e.g. k_range=(3, 8)")
    return lo, hi


def _raw_features(profile: pd.DataFrame) -> pd.DataFrame:
    """The behaviour features before the log and the standardisation; purchase features are
    missing (NaN) for users who never bought."""
    def col(name: str) -> np.ndarray:
        return pd.to_numeric(profile[name]).to_numpy(dtype=np.float64, na_value=np.nan)

    bought = col("orders") > 0
    raw = {"has_bought": bought.astype(np.float64)}
    for name in FEATURES[1:]:
        values = col(name)
        raw[name] = np.where(bought, values, np.nan) if name in _PURCHASE_FEATURES else np.nan_to_num(values)
    return pd.DataFrame(raw, index=profile.index)


def _standardise(raw: pd.DataFrame) -> np.ndarray:
    """z-scores; a purchase feature is standardised over the buyers and a user without it (never
    bought) sits at their mean, 0, so that only ``has_bought`` tells the never-buyers apart."""
    x = raw.to_numpy(dtype=np.float64, copy=True)
    for j, name in enumerate(raw.columns):
        values = x[:, j]
        if name in _LOG_FEATURES:
            values = np.log1p(np.maximum(values, 0.0))  # net spend can be negative after refunds
        known = ~np.isnan(values)
        if not known.any():
            x[:, j] = 0.0
            continue
        mean, std = values[known].mean(), values[known].std()
        if std <= 1e-12 * max(1.0, abs(mean)):  # constant: its rounding noise must not become z = +-1
            std = np.inf
        x[:, j] = np.where(known, (values - mean) / std, 0.0)
    return x


def _describe(z_centres: np.ndarray, buyer_share: np.ndarray) -> list[list[tuple[str, str]]]:
    """Per cluster, its distinguishing (feature, direction) pairs, most distinguishing first."""
    out = []
    for centre, share in zip(z_centres, buyer_share, strict=True):
        buyers = share >= 0.5
        words: list[tuple[str, str]] = [] if buyers else [("has_bought", "low")]
        for j in np.argsort(-np.abs(centre), kind="stable"):
            name = FEATURES[j]
            if name == "has_bought" or (not buyers and name in _PURCHASE_FEATURES):
                continue
            words.append((name, "high" if centre[j] > 0 else "low"))
        strong = [w for w in words if w[0] == "has_bought" or abs(centre[FEATURES.index(w[0])]) >= _THRESHOLD]
        out.append(strong + [w for w in words if w not in strong])  # weaker ones only to break ties
    return out


def _phrases(ranked: list[list[tuple[str, str]]], z_centres: np.ndarray) -> list[tuple[str, str]]:
    """Descriptions (zh, en): up to three strong words; a later cluster whose words equal an
    earlier one's gets more words until they differ (and its id if none are left)."""
    def strong(i: int, w: tuple[str, str]) -> bool:
        return w[0] == "has_bought" or abs(z_centres[i, FEATURES.index(w[0])]) >= _THRESHOLD

    taken: set[tuple] = set()
    out = []
    for i, words in enumerate(ranked):
        n_words = sum(strong(i, w) for w in words[:_MAX_WORDS])
        chosen = tuple(words[:n_words]) or (("_average", "any"),)
        while chosen in taken and n_words < len(words):
            n_words += 1
            chosen = tuple(words[:n_words])
        if chosen in taken:
            chosen = (*chosen, ("_cluster", "any"))
        taken.add(chosen)
        zh = _JOIN["zh"].join(PHRASES[f][d][0] for f, d in chosen).format(n=i)
        en = _JOIN["en"].join(PHRASES[f][d][1] for f, d in chosen).format(n=i)
        out.append((zh, en))
    return out


def silhouettes(x: np.ndarray, labelings: list[np.ndarray], *, chunk: int = 1024) -> list[float]:
    """Mean silhouette (Rousseeuw 1987) of each labelling of the rows of ``x``, Euclidean.

    All labellings share one pass over the pairwise distances: a block of rows' distances to
    every row is multiplied by the one-hot matrices of all labellings at once, which gives each
    row's summed distance to every cluster of every labelling. A point alone in its cluster
    scores 0, as in the definition.
    """
    n = len(x)
    onehots, offsets = [], [0]
    for labels in labelings:
        k = int(labels.max()) + 1
        onehots.append(np.eye(k)[labels])
        offsets.append(offsets[-1] + k)
    onehot = np.hstack(onehots)  # n x (sum of k)
    sizes = onehot.sum(axis=0)
    sq = np.einsum("ij,ij->i", x, x)
    totals = [0.0] * len(labelings)
    for start in range(0, n, chunk):
        block = x[start:start + chunk]
        d2 = sq[start:start + chunk, None] + sq[None, :] - 2.0 * (block @ x.T)
        sums = np.sqrt(np.maximum(d2, 0.0)) @ onehot  # rows x (sum of k)
        for i, labels in enumerate(labelings):
            own = labels[start:start + chunk]
            part = sums[:, offsets[i]:offsets[i + 1]]
            size = sizes[offsets[i]:offsets[i + 1]]
            rows = np.arange(len(own))
            with np.errstate(divide="ignore", invalid="ignore"):
                a = part[rows, own] / (size[own] - 1)
                mean_other = part / size
            mean_other[rows, own] = np.inf
            b = mean_other.min(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.where(size[own] > 1, (b - a) / np.maximum(a, b), 0.0)
            totals[i] += float(np.nan_to_num(s, nan=0.0).sum())  # a = b = 0: identical points, 0
    return [t / n for t in totals]


def _kmeans(k: int, random_state: int, init="k-means++") -> KMeans:
    n_init = _N_INIT if isinstance(init, str) else 1
    return KMeans(n_clusters=k, n_init=n_init, init=init, random_state=random_state)


def behaviour_clusters(
    profile: pd.DataFrame,
    *,
    k: int | None = None,
    k_range: tuple[int, int] = (3, 8),
    random_state: int = 0,
    sample: int = 20_000,
    lang: Lang = "en",
) -> BehaviourClusters:
    """Cluster users on their standardised behaviour and describe each cluster in words.

    Parameters
    ----------
    profile
        The executed profile, ``Workspace.profile(as_of).to_pandas()``.
    k
        Number of clusters; ``None`` chooses it in ``k_range`` by silhouette on the sample.
    k_range
        Smallest and largest ``k`` tried (capped at the sample's users - 1).
    random_state
        Seeds the sample and k-means; the same data and seed give the same labels.
    sample
        Users on whom ``k`` is chosen and the starting centres are fitted.
    lang
        Language of the ``description`` column of ``clusters`` ("zh" or "en").

    Returns
    -------
    BehaviourClusters
    """
    lo, hi = _check(profile, k, k_range, sample)
    if lang not in ("zh", "en"):
        raise InputError(f"lang = {lang!r}: expected 'zh' or 'en'")
    profile = profile.sort_values("user_id", kind="stable").reset_index(drop=True)  # row order is no input
    raw = _raw_features(profile)
    z = _standardise(raw)
    n = len(z)
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(n, size=sample, replace=False)) if n > sample else np.arange(n)
    z_sample = z[rows]

    scores: dict[int, float] = {}
    fits: dict[int, KMeans] = {}
    if k is None:
        for kk in range(lo, min(hi, len(rows) - 1) + 1):
            fit = _kmeans(kk, random_state).fit(z_sample)
            if len(np.unique(fit.labels_)) >= 2:
                fits[kk] = fit
        scores = dict(zip(fits, silhouettes(z_sample, [f.labels_ for f in fits.values()]), strict=True))
        if not scores:
            raise InputError(f"no k in k_range {(lo, hi)} splits these {n} users into 2 or more groups",
                             hint="the users' behaviour is identical; pass k or more varied data")
        chosen = max(scores, key=lambda kk: (scores[kk], -kk))  # ties: fewer clusters
        zh, en = _REASONS["silhouette"]
        fmt = {"k": chosen, "lo": lo, "hi": hi, "score": scores[chosen], "n": len(rows)}
    else:
        chosen = int(k)
        fits[chosen] = _kmeans(chosen, random_state).fit(z_sample)
        zh, en = _REASONS["given"]
        fmt = {"k": chosen}
    start = fits[chosen]
    if len(rows) == n:
        raw_labels, centres = start.labels_, start.cluster_centers_
    else:
        full = _kmeans(chosen, random_state, init=start.cluster_centers_).fit(z)
        raw_labels, centres = full.labels_, full.cluster_centers_

    sizes = np.bincount(raw_labels, minlength=chosen)
    # 0 = largest; equal sizes ordered by their centre, so that ids never depend on k-means' order
    order = sorted(range(chosen), key=lambda c: (-sizes[c], *np.round(centres[c], 12)))
    order = [c for c in order if sizes[c] > 0]
    new_id = np.full(chosen, -1)
    new_id[order] = np.arange(len(order))
    labels = new_id[raw_labels]
    k_final = len(order)
    z_centres = np.array([z[labels == c].mean(axis=0) for c in range(k_final)])

    means = raw.groupby(labels).mean()  # purchase features: over the cluster's buyers (NaN skipped)
    words = _phrases(_describe(z_centres, means["has_bought"].to_numpy()), z_centres)
    table = pd.DataFrame({
        "cluster": np.arange(k_final),
        "size": np.bincount(labels, minlength=k_final),
        "share": np.bincount(labels, minlength=k_final) / n,
        "description_zh": [w[0] for w in words],
        "description_en": [w[1] for w in words],
    })  # fmt: skip
    table["description"] = table[f"description_{lang}"]
    table["buyer_share"] = means["has_bought"].to_numpy()
    for name in FEATURES[1:]:
        table[name] = means[name].to_numpy()
    return BehaviourClusters(
        labels=pd.Series(labels, index=pd.Index(profile["user_id"].to_numpy(), name="user_id"), name="cluster"),
        clusters=table,
        silhouette=pd.Series(scores, name="silhouette", dtype=np.float64).rename_axis("k"),
        k=k_final,
        reason_zh=zh.format(**fmt),
        reason_en=en.format(**fmt),
    )
