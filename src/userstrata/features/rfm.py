"""Recency, frequency, monetary value (refunds netted) per user as of a date."""

from __future__ import annotations

import datetime as dt_

import ibis
import ibis.expr.types as ir

from userstrata import _engine
from userstrata.features._money import divide_cents, from_cents, to_cents
from userstrata.features._time import Clock
from userstrata.schema import PURCHASE_STATUSES


def purchases(orders: ir.Table, *, as_of: dt_.date, clock: Clock) -> ir.Table:
    """Orders that are purchases and happened on or before ``as_of`` (a local day, inclusive).

    A purchase has a status in ``schema.PURCHASE_STATUSES`` (paid, completed, refunding,
    partially_refunded, refunded) or no status at all (rows loaded before statuses were
    kept); cancelled, awaiting_payment and any value ingest did not map are not purchases.

    Money is in whole cents: ``amount_cents``, ``refund_cents`` (the refunds known by
    ``as_of``: a refund dated later is not yet known on that day, one without a date is) and
    ``net_cents``; ``net_amount`` is ``net_cents`` in yuan.
    """
    o = orders.filter(clock.on_or_before(orders.ts, as_of), orders.status.isin(PURCHASE_STATUSES) | orders.status.isnull())
    o = o.mutate(order_date=clock.local_date(o.ts))
    refund_known = o.refunded_at.isnull() | clock.on_or_before(o.refunded_at, as_of)
    o = o.mutate(
        amount_cents=to_cents(o.amount),
        refund_cents=ibis.ifelse(refund_known, to_cents(o.refund_amount.fill_null(0.0)), 0),
    )
    o = o.mutate(net_cents=o.amount_cents - o.refund_cents)
    return o.mutate(net_amount=from_cents(o.net_cents))


def rfm_features(
    purchases: ir.Table, *, as_of: dt_.date, monetary_window_days: int | None = None
) -> ir.Table:
    """One row per buyer: first/last order, ``frequency`` (repeat purchase days), ``orders``,
    ``monetary`` (net spend in the window), ``aov``, ``refund_rate`` and ``recency_days``.

    Several orders on one local day are one purchase occasion (Fader, Hardie & Lee 2005),
    so ``frequency`` = distinct purchase days - 1. ``refund_rate`` is the share of orders
    with a refund (退款率 as shops report it). ``purchases`` is the output of
    :func:`purchases` for the same ``as_of`` (computed once and shared by the profile).

    Money is summed in whole cents, so ``monetary`` is exact and ``aov`` (net spend per
    order in the window) is rounded to the cent half away from zero, identically on every
    engine and run.
    """
    p = purchases
    if monetary_window_days:
        p = p.mutate(in_window=p.order_date > as_of - dt_.timedelta(days=monetary_window_days))
    else:
        p = p.mutate(in_window=ibis.literal(True))
    in_window = p.in_window
    per_user = p.group_by("user_id").agg(
        first_order_ts=p.ts.min(),
        last_order_ts=p.ts.max(),
        first_order_date=p.order_date.min(),
        last_order_date=p.order_date.max(),
        order_days=p.order_date.nunique(),
        orders=p.count(),
        refunded_orders=p.count(where=p.refund_cents > 0),  # counted: int64 on every engine (see engagement)
        monetary_cents=ibis.ifelse(in_window, p.net_cents, 0).sum().cast("int64"),
        orders_in_window=in_window.sum(),
    )
    return per_user.mutate(
        frequency=per_user.order_days - 1,
        recency_days=_engine.days_between(per_user.last_order_date, as_of),
        monetary=from_cents(per_user.monetary_cents),
        aov=ibis.ifelse(
            per_user.orders_in_window > 0,
            from_cents(divide_cents(per_user.monetary_cents, per_user.orders_in_window)),
            None,
        ),
        refund_rate=per_user.refunded_orders / per_user.orders,
    ).drop("orders_in_window", "monetary_cents")


def btyd_summary(orders: ir.Table, *, as_of: dt_.date, clock: Clock) -> ir.Table:
    """Per-buyer inputs of the buy-till-you-die models, in days, as of ``as_of``.

    ``frequency`` = repeat purchase days, ``recency`` = days from the first to the last
    purchase day (t_x), ``T`` = days from the first purchase day to ``as_of`` (Fader, Hardie
    & Lee 2005; CDNOW's published summary is these in days / 7), ``monetary_mean`` = mean
    net spend per purchase day over the repeat days (Gamma-Gamma's z-bar; the first
    purchase is left out as in the papers), from exact cents (not rounded: it feeds a model);
    ``first_order_value`` = net spend of the first purchase day (a static covariate of the
    purchase models: :func:`~userstrata.models.select_covariates`).
    """
    p = purchases(orders, as_of=as_of, clock=clock)
    days = p.group_by(["user_id", "order_date"]).agg(day_cents=p.net_cents.sum().cast("int64"))
    first = days.order_date.min().over(group_by=days.user_id)
    days = days.mutate(is_first=days.order_date == first)
    per_user = days.group_by("user_id").agg(
        first_day=days.order_date.min(),
        last_day=days.order_date.max(),
        purchase_days=days.count(),
        repeat_cents=ibis.ifelse(days.is_first, 0, days.day_cents).sum().cast("int64"),
        first_cents=ibis.ifelse(days.is_first, days.day_cents, 0).sum().cast("int64"),
    )
    frequency = per_user.purchase_days - 1
    return per_user.select(
        "user_id",
        frequency=frequency,
        recency=clock.days_before(per_user.first_day, as_of) - clock.days_before(per_user.last_day, as_of),
        T=clock.days_before(per_user.first_day, as_of),
        # one division of two exact integers: the same float on every engine
        monetary_mean=ibis.ifelse(
            frequency > 0, per_user.repeat_cents.cast("float64") / (frequency * 100).cast("float64"), None
        ),
        first_order_value=per_user.first_cents.cast("float64") / 100.0,
    )
