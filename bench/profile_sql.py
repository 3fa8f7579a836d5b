"""The user value profile as one hand-written DuckDB SQL query: the reference for bench/profile_bench.py.

``profile_sql(as_of, users=..., orders=..., order_items=..., events=...)`` returns the SQL of
every column ``segments.build_profile`` gives (``schema.PROFILE_COLUMNS`` and the supporting
ones), with the default settings (``Settings()``): shop days in Asia/Shanghai, default
lifecycle, RFM (5 bins, mean split), interaction/community event lists and tier rules, reasons
in English. The table arguments are SQL relations: table names of a workspace, or
``read_parquet('...')``. Timestamps are naive UTC (a workspace's TIMESTAMP columns).

Column by column (``D`` = the as-of day, days are shop-local: ``CAST(ts + 8 hours AS DATE)``,
valid for Asia/Shanghai since its last offset change in 1991):

- purchases: orders with a status in paid, completed, refunding, partially_refunded,
  refunded (or no status) on a day <= D. Money in whole cents: ``round(amount * 100)``; a
  refund counts if ``refunded_at`` is missing or on a day <= D.
- ``first_ts`` / ``last_ts``: earliest / latest of registration, purchase and event (events of
  a known user) moments on days <= D. ``tenure_days`` = D - day(first_ts), ``inactive_days``
  = D - day(last_ts).
- ``days_since_return``: D - the last active day d >= D - 30 with more than 30 silent days
  between d and the previous active day (null if none).
- ``frequency`` = distinct purchase days - 1 (0 if none); ``orders``; ``refunded_orders``
  (orders with refund cents > 0); ``monetary`` = net cents / 100 (0.0 if none);
  ``aov`` = net cents / orders rounded half away from zero to a cent, / 100 (null if none);
  ``refund_rate`` = refunded_orders / orders; ``recency_days`` = D - last purchase day;
  ``first_order_ts`` / ``last_order_ts``.
- ``interaction_depth`` / ``community_actions``: events (lower-cased names) in the interaction /
  community lists; ``event_days``: distinct event days (all 0 without events).
- ``top_category``: the category with most item spend (``round(price*100) * coalesce(quantity,
  1)`` over the purchases' items), ties to the alphabetically first; ``category_share`` = its
  spend / all item spend (null if that is <= 0).
- ``lifecycle``: churned (inactive > 90), dormant (> 30), potential (no orders), returning
  (days_since_return <= 30), new (tenure <= 7), growth (<= 30), mature.
- ``rfm_r/f/m``: among buyers (n of them), ``1 + floor(5 * below / n)`` where ``below`` is the
  number of buyers with a strictly worse value (R: -recency_days, F: frequency, M: net cents);
  null for non-buyers. ``rfm_cell``: high on a measure when ``value * n > sum(value)`` over the
  buyers (non-buyers: low on all), mapped to the 8 cells.
- ``value_score``: ``(4 * U - sum of the four "users at least as good" counts) / (4 * U)`` over
  all U users for frequency, monetary, recency (missing = worst) and interaction depth.
- ``tier`` / ``tier_reason``: the first matching default rule (co_builder, engaged, regular;
  explorer otherwise); "top p" holds when (users at least as good) <= p * U, and the reason
  shows ``ceil(100 * count / U)`` capped at the rule's percent.
"""

from __future__ import annotations

import datetime as dt

PURCHASE_STATUSES = ("paid", "completed", "refunding", "partially_refunded", "refunded")
INTERACTION_EVENTS = ("add_to_cart", "checkin", "share", "review", "post", "comment", "like",
                      "favorite", "use", "watch", "redeem", "invite")
COMMUNITY_EVENTS = ("share", "review", "post", "comment", "invite")


def _list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def profile_sql(as_of: dt.date, *, users: str = "users", orders: str = "orders",
                order_items: str = "order_items", events: str = "events") -> str:
    """The profile as of ``as_of`` (one row per user, ordered by user_id) from the four relations."""
    window_from = as_of - dt.timedelta(days=30)
    return f"""
WITH
purchase AS (        -- purchases on or before D, money in cents
    SELECT order_id, user_id, ts, CAST(ts + INTERVAL 8 HOUR AS DATE) AS day,
           CAST(round(amount * 100) AS BIGINT) AS amount_cents,
           CASE WHEN refunded_at IS NULL OR CAST(refunded_at + INTERVAL 8 HOUR AS DATE) <= DATE '{as_of}'
                THEN CAST(round(coalesce(refund_amount, 0) * 100) AS BIGINT) ELSE 0 END AS refund_cents
    FROM {orders}
    WHERE (status IN ({_list(PURCHASE_STATUSES)}) OR status IS NULL)
      AND CAST(ts + INTERVAL 8 HOUR AS DATE) <= DATE '{as_of}'
),
buyer AS (           -- one row per buyer
    SELECT user_id, min(ts) AS first_order_ts, max(ts) AS last_order_ts,
           max(day) AS last_order_day,
           max(day) FILTER (WHERE day < DATE '{window_from}') AS day_before_window,
           count(DISTINCT day) - 1 AS frequency, count(*) AS orders,
           count(*) FILTER (WHERE refund_cents > 0) AS refunded_orders,
           CAST(sum(amount_cents - refund_cents) AS BIGINT) AS monetary_cents
    FROM purchase GROUP BY user_id
),
event AS (           -- events of known users on or before D
    SELECT user_id, ts, CAST(ts + INTERVAL 8 HOUR AS DATE) AS day, lower(event) AS name
    FROM {events}
    WHERE user_id IS NOT NULL AND CAST(ts + INTERVAL 8 HOUR AS DATE) <= DATE '{as_of}'
),
engaged AS (         -- one row per user with events
    SELECT user_id, min(ts) AS first_event_ts, max(ts) AS last_event_ts,
           max(day) FILTER (WHERE day < DATE '{window_from}') AS day_before_window,
           count(DISTINCT day) AS event_days,
           count(*) FILTER (WHERE name IN ({_list(INTERACTION_EVENTS)})) AS interaction_depth,
           count(*) FILTER (WHERE name IN ({_list(COMMUNITY_EVENTS)})) AS community_actions
    FROM event GROUP BY user_id
),
registered AS (      -- registrations on or before D
    SELECT user_id, min(registered_at) AS registered_at,
           max(CAST(registered_at + INTERVAL 8 HOUR AS DATE))
               FILTER (WHERE CAST(registered_at + INTERVAL 8 HOUR AS DATE) < DATE '{window_from}') AS day_before_window
    FROM {users}
    WHERE registered_at IS NOT NULL AND CAST(registered_at + INTERVAL 8 HOUR AS DATE) <= DATE '{as_of}'
    GROUP BY user_id
),
known AS (           -- every user active on or before D: registered, bought or had an event
    SELECT user_id, r.registered_at, r.day_before_window AS reg_before, b.*EXCLUDE (user_id, day_before_window),
           b.day_before_window AS buy_before, e.*EXCLUDE (user_id, day_before_window),
           e.day_before_window AS event_before
    FROM registered r FULL JOIN buyer b USING (user_id) FULL JOIN engaged e USING (user_id)
),
active_day AS (      -- the days a return can be judged on: active days in the window, and the last before it
    SELECT user_id, day FROM purchase WHERE day >= DATE '{window_from}'
    UNION
    SELECT user_id, day FROM event WHERE day >= DATE '{window_from}'
    UNION
    SELECT user_id, CAST(registered_at + INTERVAL 8 HOUR AS DATE) FROM {users}
    WHERE CAST(registered_at + INTERVAL 8 HOUR AS DATE) BETWEEN DATE '{window_from}' AND DATE '{as_of}'
    UNION
    SELECT user_id, greatest(reg_before, buy_before, event_before) FROM known
    WHERE coalesce(reg_before, buy_before, event_before) IS NOT NULL
),
returned AS (        -- the last day in the window after more than 30 silent days
    SELECT user_id, max(day) AS last_return_day
    FROM (SELECT user_id, day, day - lag(day) OVER (PARTITION BY user_id ORDER BY day) - 1 AS silent_days
          FROM active_day)
    WHERE silent_days > 30 AND day >= DATE '{window_from}'
    GROUP BY user_id
),
category_spend AS (
    SELECT p.user_id, i.category,
           CAST(sum(CAST(round(i.price * 100) AS BIGINT) * coalesce(i.quantity, 1)) AS BIGINT) AS spend_cents
    FROM {order_items} i JOIN purchase p USING (order_id)
    WHERE i.category IS NOT NULL
    GROUP BY p.user_id, i.category
),
preference AS (      -- the top category by spend, ties to the alphabetically first
    SELECT user_id, category AS top_category,
           CASE WHEN total_cents > 0 THEN spend_cents::DOUBLE / total_cents::DOUBLE END AS category_share
    FROM (SELECT *, sum(spend_cents) OVER (PARTITION BY user_id) AS total_cents FROM category_spend)
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY spend_cents DESC, category) = 1
),
base AS (
    SELECT k.user_id,
           least(registered_at, first_order_ts, first_event_ts) AS first_ts,
           greatest(registered_at, last_order_ts, last_event_ts) AS last_ts,
           DATE '{as_of}' - CAST(least(registered_at, first_order_ts, first_event_ts) + INTERVAL 8 HOUR AS DATE) AS tenure_days,
           DATE '{as_of}' - CAST(greatest(registered_at, last_order_ts, last_event_ts) + INTERVAL 8 HOUR AS DATE) AS inactive_days,
           DATE '{as_of}' - last_return_day AS days_since_return,
           DATE '{as_of}' - last_order_day AS recency_days,
           coalesce(frequency, 0) AS frequency,
           coalesce(orders, 0) AS orders,
           coalesce(monetary_cents, 0) AS monetary_cents,
           coalesce(monetary_cents, 0)::DOUBLE / 100 AS monetary,
           CASE WHEN orders > 0 THEN sign(monetary_cents) * ((abs(monetary_cents) * 2 + orders) // (2 * orders))::DOUBLE / 100 END AS aov,
           refunded_orders / orders AS refund_rate,
           coalesce(interaction_depth, 0) AS interaction_depth,
           coalesce(community_actions, 0) AS community_actions,
           coalesce(event_days, 0) AS event_days,
           coalesce(refunded_orders, 0) AS refunded_orders,
           top_category, category_share, first_order_ts, last_order_ts,
           coalesce(orders, 0) > 0 AS buyer
    FROM known k LEFT JOIN returned USING (user_id) LEFT JOIN preference USING (user_id)
),
ranked AS (          -- counts of users below / at least as good, by window
    SELECT *,
           count(*) OVER (PARTITION BY buyer) AS n,
           rank() OVER (PARTITION BY buyer ORDER BY -recency_days) - 1 AS r_below,
           rank() OVER (PARTITION BY buyer ORDER BY frequency) - 1 AS f_below,
           rank() OVER (PARTITION BY buyer ORDER BY monetary_cents) - 1 AS m_below,
           sum(-recency_days) OVER (PARTITION BY buyer) AS r_sum,
           sum(frequency) OVER (PARTITION BY buyer) AS f_sum,
           sum(monetary_cents) OVER (PARTITION BY buyer) AS m_sum,
           count(*) OVER () AS u,
           count(*) OVER () - rank() OVER (ORDER BY frequency) + 1 AS f_good,
           count(*) OVER () - rank() OVER (ORDER BY monetary_cents) + 1 AS m_good,
           count(*) OVER () - rank() OVER (ORDER BY coalesce(recency_days, 1000000000) DESC) + 1 AS r_good,
           count(*) OVER () - rank() OVER (ORDER BY interaction_depth) + 1 AS i_good,
           count(*) OVER () - rank() OVER (ORDER BY community_actions) + 1 AS c_good
    FROM base
),
scored AS (
    SELECT *,
           (4 * u - (f_good + m_good + r_good + i_good))::DOUBLE / (4 * u)::DOUBLE AS value_score,
           buyer AND -recency_days * n > r_sum AS r_high,
           buyer AND frequency * n > f_sum AS f_high,
           buyer AND monetary_cents * n > m_sum AS m_high
    FROM ranked
),
tiered AS (
    SELECT *, u - rank() OVER (ORDER BY value_score) + 1 AS v_good FROM scored
),
matched AS (         -- the default tier rules, and the pieces of their reasons
    SELECT *,
           c_good * 10 <= u AND community_actions >= 3 AND orders >= 2 AND recency_days <= 90 AS co_builder_1,
           v_good * 50 <= u * 3 AND recency_days <= 180 AS co_builder_2,
           v_good * 50 <= u * 9 AND recency_days <= 365 AS engaged_1,
           i_good * 20 <= u * 3 AND interaction_depth >= 5 AND orders >= 1 AND recency_days <= 90 AS engaged_2,
           orders >= 1 AND v_good * 20 <= u * 11 AS regular_1,
           least((c_good * 100 + u - 1) // u, 10)::VARCHAR AS c_pct,
           (v_good * 100 + u - 1) // u AS v_pct,
           least((i_good * 100 + u - 1) // u, 15)::VARCHAR AS i_pct,
           orders || CASE WHEN orders = 1 THEN ' order' ELSE ' orders' END AS orders_text
    FROM tiered
)
SELECT user_id, first_ts, last_ts, tenure_days, recency_days, frequency, orders, monetary, aov,
       refund_rate, interaction_depth, top_category, category_share,
       CASE WHEN inactive_days > 90 THEN 'churned'
            WHEN inactive_days > 30 THEN 'dormant'
            WHEN orders = 0 THEN 'potential'
            WHEN days_since_return <= 30 THEN 'returning'
            WHEN tenure_days <= 7 THEN 'new'
            WHEN tenure_days <= 30 THEN 'growth'
            ELSE 'mature' END AS lifecycle,
       CASE WHEN co_builder_1 OR co_builder_2 THEN 'co_builder'
            WHEN engaged_1 OR engaged_2 THEN 'engaged'
            WHEN regular_1 THEN 'regular'
            ELSE 'explorer' END AS tier,
       CASE WHEN co_builder_1 THEN 'community actions in top ' || c_pct || '%, ' || orders_text || ', bought in the last 90 days'
            WHEN co_builder_2 THEN 'value score in top ' || least(v_pct, 6) || '%, bought in the last 180 days'
            WHEN engaged_1 THEN 'value score in top ' || least(v_pct, 18) || '%, bought in the last 365 days'
            WHEN engaged_2 THEN 'interaction depth in top ' || i_pct || '%, ' || orders_text || ', bought in the last 90 days'
            WHEN regular_1 THEN orders_text || ', value score in top ' || least(v_pct, 55) || '%'
            WHEN orders = 0 THEN 'no purchase yet, ' || interaction_depth
                                 || CASE WHEN interaction_depth = 1 THEN ' interaction' ELSE ' interactions' END
            ELSE orders_text || ', last bought ' || recency_days
                 || CASE WHEN recency_days = 1 THEN ' day ago' ELSE ' days ago' END
                 || '; below the rules of higher tiers' END AS tier_reason,
       CASE WHEN buyer THEN 1 + 5 * r_below // n END AS rfm_r,
       CASE WHEN buyer THEN 1 + 5 * f_below // n END AS rfm_f,
       CASE WHEN buyer THEN 1 + 5 * m_below // n END AS rfm_m,
       CASE WHEN m_high THEN 'important_' ELSE 'general_' END
           || CASE WHEN r_high AND f_high THEN 'value' WHEN r_high THEN 'develop'
                   WHEN f_high THEN 'keep' ELSE 'retain' END AS rfm_cell,
       DATE '{as_of}' AS as_of, community_actions, event_days, inactive_days, days_since_return,
       value_score, first_order_ts, last_order_ts, refunded_orders
FROM matched
ORDER BY user_id
"""
