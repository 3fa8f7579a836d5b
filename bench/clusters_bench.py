"""Time ``behaviour_clusters`` on a profile-shaped frame of N users.

The frame is synthesised (simulating and profiling a 1M-user shop takes far longer than the
clustering): six groups in the simulator's proportions (browsers, one-time buyers, casual,
whales, co-builders, returners) with log-normal counts and spend, so that k-means has groups
to find. The time covers the whole call: features, k chosen by silhouette on the 20,000-user
sample (k = 3..8), the fit on every user, the table and the descriptions.

    .venv/bin/python bench/clusters_bench.py 100000 1000000
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from userstrata.segments.clusters import behaviour_clusters

# share, orders (median), aov, community actions, interactions, recency, tenure (medians)
_GROUPS = {
    "browser": (0.18, 0, 0, 0.05, 8, 0, 120),
    "one_time": (0.22, 1, 60, 0.1, 10, 150, 200),
    "casual": (0.33, 6, 80, 0.3, 40, 40, 300),
    "whale": (0.04, 25, 300, 1.0, 120, 10, 400),
    "co_builder": (0.08, 15, 120, 15, 200, 15, 400),
    "returner": (0.15, 4, 70, 0.3, 30, 20, 250),
}


def synthetic_profile(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    shares = np.array([g[0] for g in _GROUPS.values()])
    group = rng.choice(len(_GROUPS), size=n, p=shares / shares.sum())
    spec = np.array([g[1:] for g in _GROUPS.values()], dtype=float)[group]

    def around(median, sigma=0.5):
        return median * rng.lognormal(0.0, sigma, n)

    orders = np.where(spec[:, 0] > 0, np.maximum(1, np.round(around(spec[:, 0]))), 0).astype(np.int64)
    bought = orders > 0
    aov = np.where(bought, np.round(around(spec[:, 1]), 2), np.nan)
    tenure = np.round(around(spec[:, 5], 0.4))
    recency = np.where(bought, np.minimum(np.round(around(np.maximum(spec[:, 4], 1))), tenure), np.nan)
    community = rng.poisson(spec[:, 2])
    return pd.DataFrame({
        "user_id": [f"u{i:08d}" for i in range(n)],
        "orders": orders,
        "frequency": np.maximum(orders - 1, 0),
        "monetary": np.where(bought, aov * orders, 0.0),
        "aov": aov,
        "recency_days": recency,
        "tenure_days": tenure,
        "inactive_days": np.where(bought, recency, np.round(tenure * rng.uniform(0, 1, n))),
        "interaction_depth": rng.poisson(spec[:, 3]) + community,
        "community_actions": community,
        "event_days": rng.poisson(spec[:, 3] / 4),
        "refund_rate": np.where(bought, (rng.uniform(size=n) < 0.05) * 1.0, np.nan),
        "category_share": np.where(bought, rng.uniform(0.3, 1.0, n), np.nan),
        "archetype": np.array(list(_GROUPS))[group],
    })  # fmt: skip


def main(sizes: list[int]) -> None:
    from sklearn.metrics import adjusted_rand_score

    for n in sizes:
        profile = synthetic_profile(n)
        start = time.perf_counter()
        result = behaviour_clusters(profile)
        seconds = time.perf_counter() - start
        ari = adjusted_rand_score(profile["archetype"], result.labels.reindex(profile["user_id"]).to_numpy())
        print(f"n={n:>9,}  k={result.k}  {seconds:6.1f} s  ARI vs groups {ari:.3f}  {result.reason_en}", flush=True)
        print(result.clusters[["cluster", "size", "description_en"]].to_string(index=False), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000])
