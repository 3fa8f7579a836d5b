"""Delivery (投放): the plan's contacts POSTed to a webhook in batches, each contact once.

A contact's **idempotency key** is a hash of (user_id, playbook, channel, send_at): the same
plan rebuilt from the same data gives the same keys. Every batch is logged in the workspace's
``deliveries`` table; a contact is ``sent`` only after the receiver acknowledged its batch
(a 2xx answer), and in the same transaction its row is appended to ``touches`` (what
measurement reads for campaign results). Before sending, keys already ``sent`` are skipped, so
re-running the same plan, or resuming after a crash, sends nothing twice from this side.

The one window no client can close: the receiver got a batch and the process died before the
log was written (kill -9, power loss). On the rerun that batch goes out again with the same
keys; a receiver that drops keys it has already seen (the ``Idempotency-Key`` header and each
contact's ``idempotency_key``) makes the delivery exactly once. At most one batch is in that
window at any time (batches go out one after another).

Retries: connection errors, timeouts, 429 and 5xx are retried with exponential backoff
(``backoff_s * 2**n``, capped at ``max_backoff_s``, times a jitter in [0.5, 1) from a seeded
generator); any other 4xx fails the batch at once with the receiver's answer as the reason.
A batch that is still unacknowledged after its retries is logged ``failed`` and the run stops
(the receiver is down: later batches would fail the same way). Failed keys are sent again by
the next run.

Holdout contacts (the plan's ``dropped`` rows with reason ``holdout``) are not POSTed; they are
written to ``deliveries`` (status ``holdout``) and ``touches`` (``outcome = "holdout"``) so that
measurement can compare the arms; a later plan does not count them towards caps.
"""

from __future__ import annotations

import datetime as dt_
import hashlib
import http.client
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ibis.expr.types as ir
import pandas as pd

from userstrata.activate.experiments import HOLDOUT
from userstrata.errors import InputError

__all__ = [
    "DELIVERIES", "DELIVERY_COLUMNS", "PLAN_COLUMNS", "SENDABLE", "DeliveryReport", "check_url", "contact_keys",
    "deliveries", "history_for_resend", "payloads", "send_contacts",
]  # fmt: skip

DELIVERIES = "deliveries"
TOUCHES_LOAD_ID = "send"  # load_id of the touches rows written here (not a file load)
SENDABLE = ("planned", "moved")  # a moved contact is sent at its new time
PLAN_COLUMNS = ("user_id", "playbook", "channel", "send_at", "status")
DELIVERY_COLUMNS = ("key", "user_id", "channel", "playbook", "send_at", "experiment", "variant", "plan_start",
                    "plan_days", "status", "attempts", "http_status", "reason", "first_attempt_at",
                    "last_attempt_at", "sent_at")  # fmt: skip
_USER_AGENT = "userstrata-send"

# post(url, body, headers, timeout_s) -> (HTTP status, response text); raises OSError (or
# http.client.HTTPException) when no answer came: connection refused, reset, timed out
Post = Callable[[str, bytes, dict[str, str], float], tuple[int, str]]


@dataclass(frozen=True)
class DeliveryReport:
    """What one run did: contacts ``sent`` now, ``skipped`` (sent by an earlier run), ``failed``
    (with ``reasons`` counted), ``holdout`` (recorded, not sent), ``pending`` (not tried: the run
    stopped or was a dry run), ``batches`` POSTed, ``requests`` made (retries included) and
    ``stopped`` (why the run stopped early, else None)."""

    sent: int
    skipped: int
    failed: int
    holdout: int
    pending: int
    batches: int
    requests: int
    reasons: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    dry_run: bool = False
    sample: dict | None = None  # the first contact's payload (dry runs show it)


# -- keys and payloads -----------------------------------------------------------------------
def _stamp(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%S")


def contact_keys(contacts: pd.DataFrame) -> pd.Series:
    """The idempotency key of each contact: the first 32 hex digits of SHA-256 over user_id,
    playbook, channel and send_at (shop-local, to the second), separated by a unit separator."""
    parts = zip(contacts["user_id"].astype(str), contacts["playbook"].astype(str), contacts["channel"].astype(str),
                pd.to_datetime(contacts["send_at"]), strict=True)  # fmt: skip
    keys = [hashlib.sha256("\x1f".join((u, p, c, _stamp(s))).encode()).hexdigest()[:32] for u, p, c, s in parts]
    return pd.Series(keys, index=contacts.index, dtype=object)


def _local_iso(send_at: pd.Series, timezone: str) -> list[str]:
    """Shop-local naive times as ISO 8601 with the shop's offset (2024-07-01T10:00:00+08:00)."""
    aware = pd.to_datetime(send_at).dt.tz_localize(timezone, nonexistent="shift_forward", ambiguous=False)
    return [t.isoformat() for t in aware]


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value)
    return text or None


def payloads(contacts: pd.DataFrame, timezone: str) -> list[dict]:
    """One JSON object per contact (``contacts`` needs a ``key`` column): idempotency_key,
    user_id, channel, playbook, template_id, send_at (ISO with the shop's offset) and, where the
    plan has them, offer, goal, experiment, variant and items (``item_1``.. columns)."""
    items = sorted((c for c in contacts.columns if c.startswith("item_") and c[5:].isdigit()), key=lambda c: int(c[5:]))
    iso = _local_iso(contacts["send_at"], timezone)
    optional = [c for c in ("offer", "goal", "experiment", "variant") if c in contacts.columns]
    out = []
    for i, row in enumerate(contacts.to_dict("records")):
        body = {"idempotency_key": row["key"], "user_id": str(row["user_id"]), "channel": str(row["channel"]),
                "playbook": str(row["playbook"]), "template_id": _text(row.get("template")) or str(row["playbook"]),
                "send_at": iso[i]}  # fmt: skip
        for col in optional:
            value = _text(row[col])
            if value is not None:
                body[col] = value
        chosen = [v for v in (_text(row[c]) for c in items) if v is not None]
        if chosen:
            body["items"] = chosen
        out.append(body)
    return out


# -- the log ---------------------------------------------------------------------------------
def _ensure_table(raw: Any) -> None:
    raw.execute(
        f"CREATE TABLE IF NOT EXISTS {DELIVERIES} (key VARCHAR PRIMARY KEY, user_id VARCHAR, channel VARCHAR, "
        "playbook VARCHAR, send_at TIMESTAMP, experiment VARCHAR, variant VARCHAR, plan_start DATE, plan_days BIGINT, "
        "status VARCHAR, attempts BIGINT, http_status BIGINT, reason VARCHAR, first_attempt_at TIMESTAMP, "
        "last_attempt_at TIMESTAMP, sent_at TIMESTAMP)"
    )


def deliveries(store: Any) -> pd.DataFrame:
    """The delivery log (``DELIVERY_COLUMNS``; empty before the first send), by send_at and key.
    ``send_at`` is shop-local; the ``*_at`` times of attempts are naive UTC."""
    store.require_duckdb("the delivery log")
    raw = store.duckdb
    _ensure_table(raw)
    return raw.execute(f"SELECT * FROM {DELIVERIES} ORDER BY send_at, key").fetchdf()


def history_for_resend(store: Any, touches: ir.Table, start: dt_.date, days: int) -> ir.Table:
    """``touches`` without the rows that sends of this very plan window (``start``, ``days``)
    wrote: the history the plan was first built on, so that rebuilding it gives the same
    contacts and keys. Touches of other windows stay: they count towards caps and cooldowns."""
    if store.engine != "duckdb" or DELIVERIES not in store.con.list_tables():
        return touches
    log = store.table(DELIVERIES)
    own = log.filter((log.plan_start == start) & (log.plan_days == days)).select(_own_key=log.key)
    return touches.anti_join(own, touches.touch_id == own._own_key)


def _write(raw: Any, rows: pd.DataFrame, *, touches: bool) -> None:
    """Upsert ``rows`` (DELIVERY_COLUMNS, plus touch_ts and outcome) into the log and, with
    ``touches``, append their touches (a key already there is not appended again)."""
    raw.register("_delivered", rows)
    try:
        cols = ", ".join(DELIVERY_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in DELIVERY_COLUMNS if c not in ("key", "first_attempt_at"))
        raw.execute(
            f"INSERT INTO {DELIVERIES} ({cols}) SELECT key, user_id, channel, playbook, CAST(send_at AS TIMESTAMP), "
            "experiment, variant, CAST(plan_start AS DATE), CAST(plan_days AS BIGINT), status, CAST(attempts AS BIGINT), "
            "CAST(http_status AS BIGINT), reason, CAST(first_attempt_at AS TIMESTAMP), "
            "CAST(last_attempt_at AS TIMESTAMP), CAST(sent_at AS TIMESTAMP) FROM _delivered "
            f"ON CONFLICT (key) DO UPDATE SET {updates}"
        )
        if touches:
            raw.execute(
                "INSERT INTO touches (touch_id, user_id, ts, channel, campaign, variant, outcome, load_id) "
                "SELECT d.key, d.user_id, CAST(d.touch_ts AS TIMESTAMP), d.channel, d.playbook, d.variant, d.outcome, ? "
                "FROM _delivered d WHERE NOT EXISTS (SELECT 1 FROM touches t WHERE t.touch_id = d.key)",
                [TOUCHES_LOAD_ID],
            )
    finally:
        raw.unregister("_delivered")


# -- HTTP ------------------------------------------------------------------------------------
def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL, else InputError."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(
            f"--url {url!r} is not an http(s) URL", hint="write it in full, e.g. https://push.example.com/hooks/contacts",
            zh=f"--url {url!r} 不是 http(s) 地址", hint_zh="请写完整地址，例如 https://push.example.com/hooks/contacts",
        )  # fmt: skip
    return url


def urllib_post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """POST with the standard library; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310 - checked by check_url
            return answer.status, answer.read(2000).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read(2000).decode("utf-8", "replace") if exc.fp is not None else ""
        return exc.code, text


def _transient(status: int) -> bool:
    return status == 429 or status >= 500


def _no_answer(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    what = inner if isinstance(inner, BaseException) else exc
    if isinstance(what, TimeoutError):
        return "timeout"
    return f"no answer ({type(what).__name__})"


# -- sending ---------------------------------------------------------------------------------
def _check_columns(contacts: pd.DataFrame) -> None:
    missing = [c for c in PLAN_COLUMNS if c not in contacts.columns]
    if missing:
        have = ", ".join(map(str, contacts.columns))
        raise InputError(
            f"the plan has no column {', '.join(missing)} (has: {have})",
            hint="use the file `userstrata plan --out` wrote (.parquet keeps the machine columns), unchanged",
            zh=f"计划文件缺少列 {'、'.join(missing)}（现有：{have}）",
            hint_zh="请使用 `userstrata plan --out` 导出的文件（.parquet 保留原始列名），不要改动列名",
        )  # fmt: skip


def _batches(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _utc_now() -> dt_.datetime:
    return dt_.datetime.now(dt_.UTC).replace(tzinfo=None)


def send_contacts(
    store: Any,
    contacts: pd.DataFrame,
    *,
    url: str,
    timezone: str = "Asia/Shanghai",
    channels: Sequence[str] | None = None,
    batch_size: int = 100,
    timeout_s: float = 5.0,
    retries: int = 5,
    backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    seed: int = 0,
    plan_window: tuple[dt_.date, int] | None = None,
    dry_run: bool = False,
    post: Post | None = None,
    now: Callable[[], dt_.datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int, int], None] | None = None,
) -> DeliveryReport:
    """POST the plan's sendable contacts to ``url`` in batches and log each one.

    Parameters
    ----------
    contacts
        The plan's contacts (``Plan.contacts`` or the file ``userstrata plan --out`` wrote):
        ``user_id, playbook, channel, send_at`` (shop-local), ``status`` and optionally
        ``template, offer, goal, experiment, variant, reason_code, item_1..``. Contacts
        ``planned`` or ``moved`` are sent; ``dropped`` ones are not (holdouts are recorded).
    channels
        Only contacts of these plan channels (sms, wecom...); None: every channel.
    retries
        Retries per batch after the first try (5: up to 6 requests).
    plan_window
        (start, days) of the plan, kept in the log so that ``history_for_resend`` can rebuild
        the same plan.
    post
        The HTTP call (``urllib_post`` by default); ``now`` the clock (naive UTC), ``sleep``
        the pause between retries, ``progress(batch_done, batches)`` after each batch.
    """
    _check_columns(contacts)
    check_url(url)
    if batch_size < 1 or retries < 0 or timeout_s <= 0:
        raise InputError(f"batch_size {batch_size}, retries {retries}, timeout {timeout_s}: need batch_size >= 1, "
                         "retries >= 0, timeout > 0",
                         zh=f"批大小 {batch_size}、重试 {retries}、超时 {timeout_s}：需要批大小 ≥ 1、重试 ≥ 0、超时 > 0")
    store.require_duckdb("send (the delivery log)")
    post = post or urllib_post
    now = now or _utc_now
    rng = random.Random(seed)

    frame = contacts.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(object)
    frame["send_at"] = pd.to_datetime(frame["send_at"])
    if channels:
        frame = frame[frame["channel"].astype(str).isin(list(channels))]
    status = frame["status"].astype(str)
    reason = frame["reason_code"].astype(str) if "reason_code" in frame.columns else pd.Series("", index=frame.index)
    held = (status == "dropped") & (reason == HOLDOUT)
    frame = frame[status.isin(SENDABLE) | held].copy()
    frame["key"] = contact_keys(frame)
    frame["_holdout"] = held[frame.index].to_numpy()
    frame = frame.drop_duplicates("key").sort_values(["send_at", "key"], kind="stable").reset_index(drop=True)
    for col in ("experiment", "variant"):
        frame[col] = frame[col].map(_text) if col in frame.columns else None
    start, days = plan_window if plan_window else (None, None)

    raw = store.duckdb
    _ensure_table(raw)
    raw.register("_keys", frame[["key"]])
    try:
        known = raw.execute(f"SELECT d.key, d.status, d.attempts, d.first_attempt_at FROM {DELIVERIES} d "
                            "JOIN _keys k ON d.key = k.key").fetchdf()  # fmt: skip
    finally:
        raw.unregister("_keys")
    known = known.set_index("key").reindex(frame["key"].to_numpy())
    done = known["status"].isin(["sent", HOLDOUT]).to_numpy()
    prior_attempts = pd.Series(known["attempts"].fillna(0).to_numpy(dtype="int64"), index=frame.index)
    first_seen = pd.Series(pd.to_datetime(known["first_attempt_at"]).to_numpy(), index=frame.index)

    def rows(part: pd.DataFrame, **values: Any) -> pd.DataFrame:
        out = pd.DataFrame({
            "key": part["key"], "user_id": part["user_id"].astype(str), "channel": part["channel"].astype(str),
            "playbook": part["playbook"].astype(str), "send_at": part["send_at"], "experiment": part["experiment"],
            "variant": part["variant"], "plan_start": start, "plan_days": days,
        })  # fmt: skip
        for name, value in values.items():
            out[name] = value
        return out

    holdouts = frame[frame["_holdout"] & ~done]
    to_send = frame[~frame["_holdout"] & ~done]
    skipped = int((~frame["_holdout"] & done).sum())
    sample = payloads(to_send.head(1), timezone)[0] if len(to_send) else None
    n_batches = -(-len(to_send) // batch_size)
    if dry_run:
        return DeliveryReport(0, skipped, 0, len(holdouts), len(to_send), n_batches, 0, {}, None, True, sample)

    if len(holdouts):
        at = now()
        touch_ts = _touch_times(holdouts["send_at"], timezone, at)
        log = rows(holdouts, status=HOLDOUT, attempts=0, http_status=None, reason=HOLDOUT, first_attempt_at=at,
                   last_attempt_at=at, sent_at=None, touch_ts=touch_ts, outcome=HOLDOUT)  # fmt: skip
        with store.transaction():
            _write(raw, log, touches=True)

    sent = failed = requests = batches = 0
    reasons: Counter[str] = Counter()
    stopped = None
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": _USER_AGENT}
    for number, part in enumerate(_batches(len(to_send), batch_size), start=1):
        batch = to_send.iloc[part]
        keys = list(batch["key"])
        body = json.dumps({"contacts": payloads(batch, timezone)}, ensure_ascii=False).encode("utf-8")
        batch_key = hashlib.sha256("\x1f".join(sorted(keys)).encode()).hexdigest()[:32]
        first_at = now()
        attempts, status_code, why, ok, transient = 0, None, "", False, False
        while True:
            attempts += 1
            requests += 1
            try:
                status_code, text = post(url, body, {**headers, "Idempotency-Key": batch_key}, timeout_s)
            except (OSError, http.client.HTTPException) as exc:
                status_code, why, transient = None, _no_answer(exc), True
            else:
                ok = 200 <= status_code < 300
                transient = _transient(status_code)
                why = "" if ok else f"HTTP {status_code}" + (f": {text.strip()[:200]}" if text.strip() else "")
            if ok or not transient or attempts > retries:
                break
            pause = min(max_backoff_s, backoff_s * 2 ** (attempts - 1)) * (0.5 + rng.random() / 2)
            sleep(pause)
        batches += 1
        at = now()
        tried = prior_attempts[batch.index] + attempts
        opened = first_seen[batch.index].where(first_seen[batch.index].notna(), first_at)
        if ok:
            log = rows(batch, status="sent", attempts=tried.to_numpy(), http_status=status_code, reason="",
                       first_attempt_at=pd.to_datetime(opened).to_numpy(), last_attempt_at=at, sent_at=at,
                       touch_ts=_touch_times(batch["send_at"], timezone, at), outcome="sent")  # fmt: skip
            sent += len(batch)
        else:
            if transient:
                why = f"{why} after {attempts} attempts"
            log = rows(batch, status="failed", attempts=tried.to_numpy(), http_status=status_code, reason=why,
                       first_attempt_at=pd.to_datetime(opened).to_numpy(), last_attempt_at=at, sent_at=None,
                       touch_ts=None, outcome=None)  # fmt: skip
            failed += len(batch)
            reasons[why] += len(batch)
        with store.transaction():
            _write(raw, log, touches=ok)
        if progress is not None:
            progress(number, n_batches)
        if not ok and transient:
            stopped = why
            break
    pending = len(to_send) - sent - failed
    return DeliveryReport(sent, skipped, failed, len(holdouts), pending, batches, requests, dict(reasons), stopped,
                          False, sample)  # fmt: skip


def _touch_times(send_at: pd.Series, timezone: str, at: dt_.datetime) -> Any:
    """When the user is reached, naive UTC: the planned time (the receiver schedules by it), or
    ``at`` (the acknowledgement) when that time has already passed."""
    planned = (pd.to_datetime(send_at).dt.tz_localize(timezone, nonexistent="shift_forward", ambiguous=False)
               .dt.tz_convert("UTC").dt.tz_localize(None))  # fmt: skip
    return planned.where(planned > pd.Timestamp(at), pd.Timestamp(at)).to_numpy()
