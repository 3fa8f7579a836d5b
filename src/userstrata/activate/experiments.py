"""Experiments (实验分组): deterministic arms by hashing, and the plan as rows of ``touches``.

A user's arm is ``SHA-256(salt + ":" + experiment + ":" + user_id)``: its first 8 bytes as a
number in [0, 1), placed on the cumulative shares of the arms in the order given. Nothing is
stored to remember it: the same salt, experiment and user always give the same arm (stable
across runs for the experiment's life), and another experiment's name gives an independent draw.

```python
arms = assign(["u1", "u2"], "recall_gift", {"A": 0.45, "B": 0.45, "holdout": 0.10}, salt="shop")
rows = to_touches(plan.contacts, timezone="Asia/Shanghai")   # ready for the touches table
```
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from userstrata.errors import InputError

__all__ = ["DEFAULT_VARIANTS", "HOLDOUT", "assign", "to_touches", "uniform"]

HOLDOUT = "holdout"  # the arm that is not contacted (kept in the plan as dropped, for measurement)
DEFAULT_VARIANTS: dict[str, float] = {"A": 0.45, "B": 0.45, HOLDOUT: 0.10}


def uniform(user_ids: Iterable[str], experiment: str, salt: str = "userstrata") -> np.ndarray:
    """Each user's number in [0, 1) for ``experiment``: the first 8 bytes of SHA-256, big endian."""
    prefix = f"{salt}:{experiment}:".encode()
    sha = hashlib.sha256
    ids = user_ids.astype(str).tolist() if isinstance(user_ids, (pd.Series, np.ndarray)) else [str(u) for u in user_ids]
    digests = b"".join([sha(prefix + u.encode()).digest()[:8] for u in ids])
    return np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64


def _check(experiment: str, variants: Mapping[str, float]) -> None:
    shares = list(variants.values())
    if not variants or any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-9:
        raise InputError(f"experiment {experiment!r}: variants {dict(variants)} must have shares >= 0 adding up to 1",
                         zh=f"实验 {experiment!r}：分组 {dict(variants)} 的占比须不小于 0 且合计为 1")


def assign(user_ids: Iterable[str], experiment: str, variants: Mapping[str, float] | None = None,
           salt: str = "userstrata") -> pd.Series:
    """The arm of each user (a Series indexed like ``user_ids`` when it is a Series)."""
    variants = dict(variants or DEFAULT_VARIANTS)
    _check(experiment, variants)
    ids = user_ids if isinstance(user_ids, pd.Series) else pd.Series(list(user_ids), dtype=object)
    draw = uniform(ids.to_numpy(dtype=object), experiment, salt)
    edges = np.cumsum(list(variants.values()))
    edges[-1] = np.inf  # rounding must never leave a user without an arm
    arm = np.searchsorted(edges, draw, side="right")
    names = np.array(list(variants), dtype=object)
    return pd.Series(names[np.minimum(arm, len(names) - 1)], index=ids.index, name="variant")


def to_touches(contacts: pd.DataFrame, *, timezone: str = "Asia/Shanghai") -> pd.DataFrame:
    """The plan's planned, moved and holdout contacts as rows of the ``touches`` table:
    ``touch_id`` (a hash of user, playbook and time: loading the same plan twice adds nothing),
    ``ts`` (naive UTC, as the store keeps time), ``campaign`` = the playbook, ``variant`` = the
    arm ("" outside experiments), ``outcome`` = "planned" or "holdout" (measurement compares
    them). Other dropped contacts are not touches and are left out."""
    keep = contacts["status"].isin(["planned", "moved"]) | (contacts["reason_code"] == "holdout")
    rows = contacts.loc[keep]
    local = pd.to_datetime(rows["send_at"])
    ts = local.dt.tz_localize(timezone, nonexistent="shift_forward", ambiguous=False).dt.tz_convert("UTC")
    ts = ts.dt.tz_localize(None)
    key = rows["user_id"].astype(str) + "|" + rows["playbook"].astype(str) + "|" + ts.astype(str)
    touch_id = [hashlib.sha256(k.encode()).hexdigest()[:20] for k in key]
    return pd.DataFrame({
        "touch_id": touch_id,
        "user_id": rows["user_id"].astype(str).to_numpy(),
        "ts": ts.to_numpy(),
        "channel": rows["channel"].astype(str).to_numpy(),
        "campaign": rows["playbook"].astype(str).to_numpy(),
        "variant": rows["variant"].astype(str).to_numpy(),
        "outcome": np.where(rows["reason_code"].astype(str) == "holdout", "holdout", "planned"),
    })  # fmt: skip
