"""Money as whole cents (int64): exact sums, and exact integer division for averages and shares.

Float sums depend on the order rows are added in (which differs between runs and engines),
so money is converted to cents once per row, summed as integers, and turned back into
currency units (``cents / 100``) only at the end: that last division is one correctly
rounded IEEE operation on an exact integer, so every engine gives the same float.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def to_cents(amount: ir.NumericValue) -> ir.IntegerValue:
    """Whole cents of a money amount: ``amount * 100`` rounded to the nearest integer.

    Amounts carry at most two decimals, so this only removes binary noise (19.99 * 100 is
    1998.9999999999998); a sub-cent amount is rounded half away from zero, as ``ROUND``
    does on DuckDB and Spark.
    """
    return (amount * 100).round().cast("int64")


def from_cents(cents: ir.IntegerValue) -> ir.FloatingValue:
    return cents.cast("float64") / 100


def floor_divide(num: ir.IntegerValue, den: ir.IntegerValue) -> ir.IntegerValue:
    """``num // den`` for integers ``num >= 0, den > 0``, exactly.

    Ibis compiles integer ``//`` to ``FLOOR(num / den)`` (a float division); subtracting the
    remainder first makes the division exact, because ``num - num % den`` is a multiple of
    ``den`` (and both are far below 2**53).
    """
    return ((num - num % den) / den).cast("int64")


def divide_cents(cents: ir.IntegerValue, count: ir.IntegerValue) -> ir.IntegerValue:
    """``cents / count`` rounded to a whole cent, half away from zero (四舍五入), in integers.

    ``count`` must be > 0. For ``c >= 0``: ``floor((2c + n) / 2n)``; negative totals (refunds
    larger than the amount) are rounded by their absolute value and keep their sign.
    """
    num = cents.abs() * 2 + count
    q = floor_divide(num, count * 2)
    return ibis.ifelse(cents < 0, -q, q)
