"""The CDNOW music store purchases (Jan 1997 - Jun 1998) as a canonical ``orders`` table.

References
----------
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your customers" the easy way:
an alternative to the Pareto/NBD model. Marketing Science 24(2), 275-284.
The files are those shipped in the ``lifetimes`` 0.11.3 wheel.
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np
import pandas as pd

from userstrata.schema import ORDERS

_PACKAGE = "userstrata.datasets"  # files under data/ (package-data, no __init__.py)


def _read_raw(sample: bool) -> pd.DataFrame:
    """The whitespace-separated file as strings: user, yyyymmdd date, CDs, dollars."""
    name = "CDNOW_sample.txt.gz" if sample else "CDNOW_master.txt.gz"
    path = resources.files(_PACKAGE).joinpath("data", name)
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        if sample:
            # customer id, sample id, date, CDs, dollars (no header). The published
            # 2,357-customer summaries (FHL 2005; lifetimes' cdnow_customers_summary.csv) are
            # keyed by the *sample id* (second column), so that id is the user.
            names, user_col = ["customer_id", "sample_id", "date", "cds", "dollars"], "sample_id"
            header = None
        else:
            names, user_col = ["customer_id", "date", "cds", "dollars"], "customer_id"
            header = 0
        frame = pd.read_csv(
            text,
            sep=r"\s+",
            header=header,
            names=names,
            dtype={"customer_id": str, "sample_id": str, "date": str, "cds": "int64"},
        )
    # "0001" -> "1": the same spelling as the ID column of the published summaries
    frame["user_id"] = frame[user_col].str.lstrip("0").replace("", "0")
    return frame


def load_cdnow(*, sample: bool = True, timezone: str = "Asia/Shanghai") -> pd.DataFrame:
    """CDNOW purchases as the canonical ``orders`` table (one row per purchase line).

    Parameters
    ----------
    sample
        The 2,357-customer 1/10th sample (6,919 lines) used in the BTYD literature, or the
        whole 23,570-customer cohort (69,659 lines).
    timezone
        The shop's time zone (pass the workspace's ``Settings.timezone``). The file has dates
        only: each purchase is placed at 12:00 local time on its date, so that its local
        calendar day is the file's date, and returned as that UTC instant.

    Returns
    -------
    pandas.DataFrame
        Columns exactly ``schema.ORDERS.columns``; amounts in USD, status ``paid``, no refunds.
        ``ts`` and ``refunded_at`` are timezone-aware UTC (``datetime64[us, UTC]``): ingest
        (``Workspace.load_frame``) converts them as instants, where a naive value would be
        read as shop-local time, and an Ibis memtable with the canonical schema stores them
        as naive UTC.
        ``user_id`` is the sample id for ``sample=True`` (it matches the published summaries)
        and the customer id for ``sample=False``, both without leading zeros; the two id
        spaces are different, so do not join the sample with the master file on ``user_id``.
        ``order_id`` is ``cdnow-<user>-<yyyymmdd>-<k>`` (``k``: k-th line of that user that
        day); several lines of one user on one day are one transaction in the papers.
    """
    raw = _read_raw(sample)
    day = pd.to_datetime(raw["date"], format="%Y%m%d")
    noon_local = (day + pd.Timedelta(hours=12)).dt.tz_localize(timezone)
    ts = noon_local.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    line_of_day = raw.groupby(["user_id", "date"], sort=False).cumcount() + 1
    n = len(raw)
    orders = pd.DataFrame(
        {
            "order_id": (
                "cdnow-" + raw["user_id"] + "-" + raw["date"] + "-" + line_of_day.astype(str)
            ),
            "user_id": raw["user_id"],
            "ts": ts,
            "amount": raw["dollars"].astype("float64"),
            "currency": pd.Series(["USD"] * n, dtype=raw["user_id"].dtype),
            "status": pd.Series(["paid"] * n, dtype=raw["user_id"].dtype),
            "refund_amount": np.zeros(n, dtype="float64"),
            "refunded_at": pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]"),
            "discount_amount": np.full(n, np.nan),
            "coupon_id": pd.Series([None] * n, index=raw.index, dtype=raw["user_id"].dtype),
        }
    )
    return orders[list(ORDERS.columns)]
