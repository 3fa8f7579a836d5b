"""The REST API (FastAPI) over one workspace: ``create_app(path)``; ``userstrata serve`` runs it.

Profiles are read from the latest snapshot, held in memory, so a user lookup never queries the
engine (``GET /v1/users/{id}`` is answered before FastAPI's routing: ``FastLookup``). A write
(``POST /v1/events``, ``/v1/orders``) updates the touched users' real-time profiles at once from
their own rows and the snapshot's thresholds (``serve.realtime``); the next run (``POST /v1/runs``)
replaces them with a new snapshot. Everything else goes through the ``Workspace`` under one lock:
a DuckDB connection runs one statement at a time, and requests arrive on several threads.

Errors are JSON ``{"code", "message", "hint"}`` in the language of ``Accept-Language`` (zh or en):
InputError 422, NotFoundError 404, NotFittedError 409, a missing or bad token 401, a role too
low 403. Any other exception is a bug: logged with its traceback, answered with a plain 500.
"""


import collections
import contextlib
import datetime as dt_
import gc
import hashlib
import json
import logging
import math
import secrets
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from userstrata import __version__, export
from userstrata.errors import InputError, NotFittedError, NotFoundError, OutOfMemoryError, UserstrataError
from userstrata.serve import realtime
from userstrata.serve.dashboard import dashboard_router
from userstrata.serve.tokens import Token, verify_token
from userstrata.workspace import Workspace

__all__ = ["create_app"]

log = logging.getLogger("userstrata.serve")
# out of memory: the server's [engine] memory_limit, not the request, is at fault
_STATUS = {InputError: 422, NotFoundError: 404, NotFittedError: 409, OutOfMemoryError: 503}
MAX_PAGE = 1_000
MAX_BATCH = 10_000  # rows per POST
MAX_BODY = 8 * 1024 * 1024  # bytes per request


class AuthError(UserstrataError):
    code = "unauthorized"


class RoleError(UserstrataError):
    code = "forbidden"


class BatchTooLarge(UserstrataError):
    code = "too_large"


class Batch(BaseModel):
    """Rows of one canonical table, as JSON objects keyed by column name."""

    rows: list[dict[str, Any]]


def _lang(request: Request) -> str:
    accepted = request.headers.get("accept-language", "")
    return "zh" if accepted.lower().startswith("zh") else "en"


def _error(request: Request, status: int, exc: UserstrataError) -> JSONResponse:
    lang = _lang(request)
    return JSONResponse(status_code=status, content={"code": exc.code, "message": exc.text(lang),
                                                     "hint": exc.hint_text(lang)})


def jsonable(value: Any) -> Any:
    """A profile value as JSON: missing -> null, times -> ISO text, numpy -> Python."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, dt_.datetime, dt_.date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return value


def records(frame: pd.DataFrame) -> list[dict]:
    """A result table as JSON rows."""
    return [{str(c): jsonable(v) for c, v in zip(frame.columns, row)} for row in frame.itertuples(index=False)]


class ServeState:
    """The workspace, its lock, and the served profiles: the latest snapshot plus the real-time
    profiles of the users written since (``serve.realtime``), ranked against that snapshot's
    thresholds. A lookup reads memory only."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.lock = threading.Lock()
        self.as_of: dt_.date | None = None
        self.realtime_as_of: dt_.date | None = None
        self._base = pd.DataFrame()
        self._fresh: dict[str, dict] = {}  # user -> real-time profile row (base columns, then fresh ones)
        self._frame: pd.DataFrame | None = None  # base with the real-time rows, built when asked for
        self.thresholds: realtime.Thresholds | None = None
        self.query = realtime.TouchedQuery(ws.store.con, ws.tables, ws.settings)
        self.tokens = TokenCache(ws.store)
        self._refreshing = threading.Condition()
        self._pending: set[str] = set()
        self._started = self._finished = 0
        self._running = False
        self.since_run: set[str] | None = None  # users written while a run goes (refreshed again after it)
        self.reload()

    # -- reading ---------------------------------------------------------------------------
    @property
    def profiles(self) -> pd.DataFrame:
        """Every served profile indexed by user (the snapshot's rows with the real-time ones in place)."""
        frame, fresh = self._frame, self._fresh
        if frame is None:
            if fresh:
                rows = pd.DataFrame(list(fresh.values()))
                rows = rows.reindex(columns=list(dict.fromkeys([*self._base.columns, *rows.columns])))
                frame = pd.concat([self._base.drop(index=list(fresh), errors="ignore"),
                                   rows.set_index("user_id", drop=False).astype(self._base.dtypes.to_dict(),
                                                                              errors="ignore")])
            else:
                frame = self._base
            self._frame = frame
        return frame

    def users(self) -> int:
        return len(self._base) + sum(u not in self._position for u in self._fresh)

    def profile(self, user_id: str) -> dict | None:
        """One user's profile as JSON (None when unknown): a dictionary look-up, no query."""
        row = self._fresh.get(user_id)
        if row is not None:
            return {c: jsonable(v) for c, v in row.items()}
        i = self._position.get(user_id)
        if i is None:
            return None
        return {c: convert(values[i]) for c, convert, values in self._columns}

    # -- writing ---------------------------------------------------------------------------
    def refresh(self, users: list[str]) -> int:
        """Recompute the real-time profiles of ``users`` (their rows only, ranked against the
        snapshot's thresholds; ``serve.realtime``) and return when they are in place; prediction
        columns of the snapshot stay until the next run. ``as_of`` moves on to the last day of
        their data when that is later. Returns how many of them have a profile.

        Writes arriving while a refresh runs are refreshed together by the next one (one pass
        over the tables for all of them), so a burst of batches costs one query, not one each."""
        if not users:
            return 0
        wanted = set(users)
        if self.since_run is not None:
            self.since_run |= wanted
        with self._refreshing:
            self._pending |= wanted
            target = self._started + 1  # the next refresh to start includes these users
            while self._finished < target:
                if self._running:
                    self._refreshing.wait()
                    continue
                self._running, batch, self._pending = True, sorted(self._pending), set()
                self._started += 1
                self._refreshing.release()
                try:
                    self._refresh_now(batch)
                finally:
                    self._refreshing.acquire()
                    self._running, self._finished = False, self._started
                    self._refreshing.notify_all()
        return sum(u in self._fresh for u in wanted)

    def _refresh_now(self, users: list[str]) -> None:
        # the queries read committed data on the query's own cursor, outside the workspace lock: the
        # next batch loads meanwhile (compiling, and the as_of it is compiled for, need the lock)
        with self.lock:
            query = self.query
            query.prepare(self.realtime_as_of)
        day = query.latest_day(users)
        with self.lock:
            if day is not None and day > self.realtime_as_of:
                self.realtime_as_of = day
            as_of, thresholds = self.realtime_as_of, self.thresholds
            query.prepare(as_of)
        fresh = query.features(users, as_of)
        fresh = realtime.apply_thresholds(fresh, thresholds, self.ws.settings)
        base = self._base
        for column in fresh.columns.intersection(base.columns):
            try:
                fresh[column] = fresh[column].astype(base[column].dtype)
            except (TypeError, ValueError):
                pass
        empty = dict.fromkeys(base.columns)
        updates = {}
        for row in fresh.to_dict("records"):
            user = row["user_id"]
            i = self._position.get(user)
            old = self._fresh.get(user) or (empty if i is None else {c: values[i] for c, _, values in self._columns})
            updates[user] = {**old, **row}
        self._fresh = {**self._fresh, **updates}  # replaced whole: readers on other threads see one or the other
        self._frame = None

    def reload(self) -> None:
        """Read the latest snapshot (saving one of the last day in the data when there is none),
        and its thresholds; the real-time rows are dropped (the snapshot includes their data)."""
        with self.lock:
            kept = self.ws.snapshots()
            if kept.empty:
                self.ws.snapshot()
                kept = self.ws.snapshots()
            as_of = pd.Timestamp(kept["as_of"].max()).date()
            base = self.ws.store.execute(self.ws.snapshot_table(as_of))
            self.query = realtime.TouchedQuery(self.ws.store.con, self.ws.tables, self.ws.settings)
        thresholds = realtime.thresholds(base, self.ws.settings)
        base = base.set_index("user_id", drop=False)
        self._columns = [(c, _converter(base[c].dtype), base[c].to_numpy()) for c in base.columns]
        self._position = {u: i for i, u in enumerate(base.index)}
        self._base, self._fresh, self._frame, self.thresholds = base, {}, None, thresholds
        self.as_of = self.realtime_as_of = as_of
        # the served profiles live until the next reload: keep the collector from walking their
        # millions of objects on every full collection (a pause of 100+ ms on 100k users)
        gc.unfreeze()  # the previous profiles' objects: collectable again
        gc.collect()
        gc.freeze()


def _float(value) -> float | None:
    return None if value != value else float(value)


def _converter(dtype) -> Any:
    """``jsonable`` for one column's values, picked once by its dtype (a lookup runs it per column)."""
    kind = getattr(dtype, "kind", "O") if isinstance(dtype, np.dtype) else "O"
    return {"f": _float, "i": int, "u": int, "b": bool}.get(kind, jsonable)


class TokenCache:
    """Verified tokens by digest, so a request costs no query (a DuckDB query is ~1-2 ms here).

    Tokens are written only through ``store.transaction`` (create, revoke), so every committed
    transaction empties the cache: a revoked token is refused on the next request. An expiry is
    checked on every hit; an entry lives at most ``ttl`` seconds.
    """

    def __init__(self, store, ttl: float = 60.0):
        self.store, self.ttl = store, ttl
        self.found: dict[str, tuple[float, Token]] = {}
        self.generation = 0
        original = store.transaction

        @contextlib.contextmanager
        def transaction():
            with original() as raw:
                yield raw
            self.generation += 1
            self.found = {}

        store.transaction = transaction

    def cached(self, secret: str) -> Token | None:
        """The token of ``secret`` if verified lately and not expired since; None (unknown) otherwise."""
        key = hashlib.sha256(secret.encode("utf-8")).hexdigest()  # no secret is kept
        hit = self.found.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            token = hit[1]
            if token.expires_at is None or token.expires_at > _utcnow():
                return token
        return None

    def verify(self, secret: str) -> Token | None:
        token = self.cached(secret)
        if token is not None:
            return token
        now, key = time.monotonic(), hashlib.sha256(secret.encode("utf-8")).hexdigest()
        generation = self.generation
        token = verify_token(self.store, secret)
        if token is not None and generation == self.generation:
            self.found = {**self.found, key: (now, token)}
        return token


def _utcnow() -> dt_.datetime:
    return dt_.datetime.now(dt_.UTC).replace(tzinfo=None)


class Runs:
    """Background recomputations, one at a time: snapshot, alerts, reload of the served profiles,
    then the dashboard pages' aggregates (``warm``)."""

    STEPS = ("snapshot", "alerts", "reload", "pages")

    def __init__(self, state: "ServeState", warm: Callable[[], Any] | None = None):
        self.state, self.warm = state, warm
        self.runs: dict[str, dict] = {}
        self.busy = threading.Lock()

    def start(self, token_id: str) -> str:
        if not self.busy.acquire(blocking=False):
            raise InputError("a run is already going; wait for it (GET /v1/runs/{id})",
                             zh="已有计算在进行，请等待其完成（GET /v1/runs/{id}）")
        run_id = secrets.token_hex(6)
        self.runs[run_id] = {"run_id": run_id, "status": "queued", "steps_done": [], "error": None,
                             "started_by": token_id, "started_at": dt_.datetime.now(dt_.UTC).isoformat()}
        threading.Thread(target=self._run, args=(run_id,), daemon=True).start()
        return run_id

    def _run(self, run_id: str) -> None:
        run, state = self.runs[run_id], self.state
        run["status"] = "running"
        state.since_run = set()
        try:
            with state.lock:
                day = state.ws.latest_date()
                state.ws.snapshot(day)
            run["steps_done"].append("snapshot")
            with state.lock:
                state.ws.alerts(day)
            run["steps_done"].append("alerts")
            state.reload()
            # users written after the snapshot began: real-time again against the new thresholds
            written, state.since_run = state.since_run, None
            state.refresh(sorted(written))
            run["steps_done"].append("reload")
            if self.warm is not None:  # the dashboard's pages read these instead of computing on view
                self.warm()
                run["steps_done"].append("pages")
            run["status"] = "done"
        except Exception as exc:  # a failed run is reported, never lost in a thread
            log.exception("run %s failed", run_id)
            run["status"], run["error"] = "failed", str(exc)
        finally:
            state.since_run = None
            run["finished_at"] = dt_.datetime.now(dt_.UTC).isoformat()
            self.busy.release()

    def get(self, run_id: str) -> dict:
        if run_id not in self.runs:
            raise NotFoundError(f"no run {run_id!r}", zh=f"没有计算任务 {run_id!r}")
        return self.runs[run_id]


class RateLimited(UserstrataError):
    code = "rate_limited"


class RateLimit:
    """At most ``per_minute`` requests per token in any sliding minute: each token's request times
    in a queue, the expired ones dropped from its front (constant work per request)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.seen: dict[str, collections.deque] = {}
        self.lock = threading.Lock()

    def check(self, token_id: str) -> None:
        now = time.monotonic()
        with self.lock:
            recent = self.seen.setdefault(token_id, collections.deque())
            while recent and now - recent[0] >= 60:
                recent.popleft()
            if len(recent) >= self.per_minute:
                raise RateLimited(f"more than {self.per_minute:,} requests in a minute with this token",
                                  hint="slow down and retry in a minute", zh=f"该令牌一分钟内请求超过 {self.per_minute:,} 次",
                                  hint_zh="请降低频率，一分钟后重试")
            recent.append(now)


class LimitSize:
    """Refuse a request whose declared body exceeds ``MAX_BODY`` with 413 before reading it
    (plain ASGI: cheaper per request than an ``@app.middleware`` function)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if value.isdigit() and int(value) > MAX_BODY:
                        size = int(value)
                        response = _error(Request(scope), 413, BatchTooLarge(
                            f"the request is {size:,} bytes; at most {MAX_BODY:,}", hint="split the batch",
                            zh=f"请求 {size:,} 字节；最多 {MAX_BODY:,} 字节", hint_zh="请拆分后分批提交"))
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


class FastLookup:
    """``GET /v1/users/{id}`` answered without FastAPI's routing and dependency resolution (most of
    a lookup's cost): a known token (from the cache) allowed to read members, within its rate,
    asking for a served user gets the profile straight away. Anything else (no or unknown token,
    role too low, over the rate, unknown user, other paths) goes on to the API, which answers
    exactly as it does for every route."""

    PREFIX = b"/v1/users/"

    def __init__(self, app, state: "ServeState", limit: RateLimit):
        self.app, self.state, self.limit = app, state, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("query_string"):
            raw = scope.get("raw_path") or scope["path"].encode()
            if raw.startswith(self.PREFIX) and b"/" not in raw[len(self.PREFIX):] and b"%" not in raw:
                body = self._answer(scope, raw[len(self.PREFIX):].decode("utf-8", "replace"))
                if body is not None:
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    def _answer(self, scope, user_id: str) -> bytes | None:
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not user_id or not authorization.startswith(b"Bearer "):
            return None
        token = self.state.tokens.cached(authorization[7:].decode("latin-1").strip())
        if token is None or not token.allows("operator"):
            return None
        found = self.state.profile(user_id)
        if found is None:
            return None
        try:
            self.limit.check(token.token_id)
        except RateLimited:
            return None
        return json.dumps(found, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def create_app(workspace: str | Path | Workspace, *, settings: Any = None, requests_per_minute: int = 60_000) -> FastAPI:
    """The API over ``workspace`` (a path of a DuckDB workspace, or an open ``Workspace``);
    each token may make ``requests_per_minute`` requests a minute (429 beyond)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace, settings=settings, create=False)
    state = ServeState(ws)
    app = FastAPI(title="userstrata", version=__version__,
                  description="User value stratification and lifecycle operations (用户价值分层与生命周期运营)")
    app.state.serve = state
    pages = dashboard_router(state)
    runs = Runs(state, warm=pages.warm)
    limit = RateLimit(requests_per_minute)
    app.include_router(pages)

    app.add_middleware(FastLookup, state=state, limit=limit)
    app.add_middleware(LimitSize)

    @app.exception_handler(UserstrataError)
    def _known(request: Request, exc: UserstrataError) -> JSONResponse:
        status = 401 if isinstance(exc, AuthError) else 403 if isinstance(exc, RoleError) else \
            413 if isinstance(exc, BatchTooLarge) else 429 if isinstance(exc, RateLimited) else next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 422)
        return _error(request, status, exc)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
        return _error(request, 422, InputError(f"{field}: {first['msg']}", zh=f"{field}：{first['msg']}",
                                               hint="see /docs for the request's fields",
                                               hint_zh="请求字段见 /docs"))

    @app.exception_handler(Exception)
    def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"code": "internal_error", "message": "internal error",
                                                      "hint": None})

    # async: a dependency without I/O runs on the event loop, not a worker thread (a thread hop
    # per dependency is most of a fast lookup's cost); a cache miss runs one short query.
    async def token(authorization: Annotated[str | None, Header()] = None) -> Token:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("no token: send 'Authorization: Bearer <token>'",
                            hint="create one with `userstrata token create --role viewer`",
                            zh="缺少令牌：请求头需带 'Authorization: Bearer <令牌>'",
                            hint_zh="用 `userstrata token create --role viewer` 创建")
        found = state.tokens.verify(authorization.removeprefix("Bearer ").strip())
        if found is None:
            raise AuthError("the token is unknown, revoked or expired", hint="create a new one",
                            zh="令牌无效、已撤销或已过期", hint_zh="请重新创建令牌")
        limit.check(found.token_id)
        return found

    def role(needed: str):
        async def check(found: Annotated[Token, Depends(token)]) -> Token:
            if not found.allows(needed):
                raise RoleError(f"this needs the {needed} role; the token is {found.role}",
                                hint=f"use a token created with --role {needed}",
                                zh=f"需要 {needed} 角色；当前令牌为 {found.role}",
                                hint_zh=f"请使用 --role {needed} 创建的令牌")
            return found
        return check

    Viewer = Annotated[Token, Depends(role("viewer"))]
    Operator = Annotated[Token, Depends(role("operator"))]
    Admin = Annotated[Token, Depends(role("admin"))]

    @app.get("/v1/health")
    def health() -> dict:
        """Alive, and which snapshot the profiles come from (no token needed)."""
        return {"status": "ok", "version": __version__, "profiles_as_of": jsonable(state.as_of),
                "users": state.users()}

    @app.get("/v1/users/{user_id}")
    async def read_user(user_id: str, _: Operator) -> Response:
        """One user's profile: the latest snapshot's, or the real-time one when the user's events or
        orders were written since (``as_of`` then says which day): tier with its reason, lifecycle,
        RFM cell and scores, and the snapshot's other columns."""
        found = state.profile(user_id)
        if found is None:
            raise NotFoundError(f"no user {user_id!r} in the profiles of {state.as_of}",
                                zh=f"{state.as_of} 的画像中没有用户 {user_id!r}")
        return Response(json.dumps(found, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
                        media_type="application/json")

    @app.get("/v1/segments")
    def list_segments(_: Viewer) -> list[dict]:
        """The segments: name, labels, condition."""
        return [{"name": s.name, "label_zh": s.label("zh"), "label_en": s.label("en"), "where": s.where}
                for s in ws.segment_definitions().values()]

    @app.get("/v1/segments/{name}/members")
    def segment_members(name: str, _: Operator, cursor: str | None = None,
                        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> dict:
        """One page of a segment's members ordered by user id; ``next_cursor`` fetches the next."""
        with state.lock:
            members = ws.segment(name, state.as_of)
        members = members.sort_values("user_id", kind="stable")
        if cursor is not None:
            members = members[members["user_id"] > cursor]
        page = members.head(limit)
        rows = [{c: jsonable(v) for c, v in zip(page.columns, values)} for values in page.itertuples(index=False)]
        more = len(members) > limit
        return {"segment": name, "as_of": jsonable(state.as_of), "members": rows,
                "next_cursor": rows[-1]["user_id"] if more and rows else None}

    def write(table: str, request: Request, found: Token, rows: list) -> dict:
        """Load a batch through the same validation as files, then refresh its users' profiles."""
        if len(rows) > MAX_BATCH:
            raise BatchTooLarge(f"{len(rows):,} rows in one batch; at most {MAX_BATCH:,}",
                                hint="split the batch", zh=f"一批 {len(rows):,} 行；每批最多 {MAX_BATCH:,} 行",
                                hint_zh="请拆分后分批提交")
        if not rows:
            raise InputError("the batch has no rows", zh="这一批没有数据")
        frame = pd.DataFrame(rows)
        with state.lock:
            report = ws.load_frame(table, frame, source=f"api:{found.token_id}")
            rejects = ws.rejects(load_id=report.load_id)
        log.info("token %s wrote %s: %s", found.token_id, table, report.summary())
        accepted = frame.drop(index=[int(r) - 1 for r in rejects["row_number"]], errors="ignore")
        users = sorted({u for u in accepted.get("user_id", pd.Series(dtype=object)).dropna().astype(str)})
        refreshed = state.refresh(users)
        return {
            "load_id": report.load_id, "rows_read": report.rows_read, "inserted": report.rows_inserted,
            "updated": report.rows_updated, "unchanged": report.rows_unchanged, "rejected": report.rows_rejected,
            "rejects": [{"row": int(r.row_number), "column": r.column_name, "value": r.value,
                         "reason": r.reason_zh if _lang(request) == "zh" and r.reason_zh else r.reason}
                        for r in rejects.itertuples(index=False)],
            "users_refreshed": refreshed,
        }

    @app.post("/v1/events")
    def post_events(batch: Batch, request: Request, found: Admin) -> dict:
        """A batch of events (canonical columns; ``event_id`` optional): validated like a file, idempotent
        by id; each user's profile (lifecycle, tier...) is refreshed at once."""
        return write("events", request, found, batch.rows)

    @app.post("/v1/orders")
    def post_orders(batch: Batch, request: Request, found: Admin) -> dict:
        """A batch of orders, validated like a file and idempotent by ``order_id``; profiles refreshed at once."""
        return write("orders", request, found, batch.rows)

    @app.get("/v1/patterns")
    def read_patterns(request: Request, _: Viewer, start: Annotated[dt_.date | None, Query(alias="from")] = None,
                      end: Annotated[dt_.date | None, Query(alias="to")] = None, by: str | None = None,
                      min_count: Annotated[int | None, Query(ge=1)] = None) -> dict:
        """Paid orders per shop-local weekday x hour (``by=category`` per category)."""
        with state.lock:
            result = ws.purchase_patterns(start=start, end=end, by=by, min_count=min_count)
        return {"cells": records(result.cells), "peaks": records(result.peaks(5))}

    @app.get("/v1/bundles")
    def read_bundles(_: Viewer, level: str = "sku", min_support: Annotated[float, Query(gt=0, le=1)] = 0.001,
                     top: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> dict:
        """Items bought together: pairs with support, confidence and lift, strongest first."""
        with state.lock:
            result = ws.bundles(level=level, min_support=min_support)
        return {"baskets": result.n_baskets, "pairs": records(result.pairs.head(top))}

    @app.get("/v1/refunds")
    def read_refunds(_: Viewer, level: str = "sku", top: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> dict:
        """Refund rates by item, time to refund, refunders' behaviour before buying."""
        with state.lock:
            result = ws.refunds(level=level)
        return {"rates": records(result.rates.head(top)), "timing": records(result.timing),
                "behaviour": records(result.behaviour)}

    @app.get("/v1/abtests/{experiment}")
    def read_abtest(experiment: str, request: Request, _: Viewer,
                    window_days: Annotated[int, Query(ge=1, le=365)] = 14) -> dict:
        """A/B results of a campaign in the touches table: per variant, effects with intervals, SRM, verdict."""
        with state.lock:
            result = ws.abtest(experiment, window_days=window_days)
        return {"experiment": experiment, "variants": records(result.variants), "effects": records(result.effects),
                "srm_p_value": jsonable(result.srm_p_value), "srm_flagged": bool(result.srm_flagged),
                "verdict": result.verdict(_lang(request))}

    @app.get("/v1/kpis")
    def read_kpis(_: Viewer, start: Annotated[dt_.date, Query(alias="from")],
                  end: Annotated[dt_.date | None, Query(alias="to")] = None, grain: str = "day", by: str | None = None,
                  min_count: Annotated[int | None, Query(ge=1)] = None) -> dict:
        """KPIs per period (docs/metrics.md), and historical LTV by acquisition cohort."""
        with state.lock:
            result = ws.kpis(start, end or state.as_of, grain=grain, by=by, min_count=min_count)
        return {"kpis": records(result.table), "ltv": records(result.ltv)}

    @app.get("/v1/cohorts")
    def read_cohorts(_: Viewer, start: Annotated[dt_.date, Query(alias="from")],
                     end: Annotated[dt_.date | None, Query(alias="to")] = None, cohort_by: str = "registration",
                     period: str = "week", mode: str = "first_time", periods: Annotated[int, Query(ge=1, le=400)] = 12,
                     min_count: Annotated[int | None, Query(ge=1)] = None) -> dict:
        """Retention cohorts: users per cohort and period, and D1/D7/D30."""
        with state.lock:
            result = ws.retention(start, end or state.as_of, cohort_by=cohort_by, period=period, mode=mode,
                                  periods=periods, min_count=min_count)
        return {"cells": records(result.counts), "summary": records(result.summary)}

    @app.get("/v1/funnels")
    def read_funnel(_: Viewer, steps: str, start: Annotated[dt_.date, Query(alias="from")],
                    end: Annotated[dt_.date | None, Query(alias="to")] = None,
                    window_days: Annotated[int, Query(ge=1, le=365)] = 7, weekly: bool = False,
                    by: str | None = None) -> dict:
        """Conversion through ``steps`` (comma separated, e.g. page_view,add_to_cart,purchase)."""
        with state.lock:
            result = ws.funnel([s.strip() for s in steps.split(",") if s.strip()], start, end or state.as_of,
                               window=dt_.timedelta(days=window_days), weekly=weekly, by=by)
        return {"steps": records(result.steps), "weekly": records(result.weekly) if weekly else []}

    @app.get("/v1/alerts")
    def read_alerts(request: Request, found: Viewer, rule: str | None = None,
                    top: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> dict:
        """Open alerts counted by rule and severity, the segment alerts; user alerts for operators."""
        with state.lock:
            shown = ws.alert_list(open_only=True, rule=rule)
        counts = shown.groupby(["rule", "severity"]).size().reset_index(name="alerts")
        lang = _lang(request)
        keep = ["alert_id", "rule", "subject_type", "subject", "severity", "tier", "since", "opened_on",
                "seen_zh" if lang == "zh" else "seen_en"]
        visible = shown if found.allows("operator") else shown[shown["subject_type"] == "segment"]
        return {"counts": records(counts), "alerts": records(visible[[c for c in keep if c in visible]].head(top))}

    @app.get("/v1/segments/{name}/export")
    def export_segment(name: str, request: Request, found: Operator, contacts: str | None = None) -> Response:
        """A segment's members as CSV (UTF-8 with BOM, the definition on the first line, no formula cells);
        ``contacts=phone,email`` adds contact fields kept in clear, for admin tokens only."""
        import tempfile  # noqa: PLC0415

        lang = _lang(request)
        fields = [f.strip() for f in (contacts or "").split(",") if f.strip()]
        if fields and not found.allows("admin"):
            raise RoleError(f"contact fields need the admin role; the token is {found.role}",
                            hint="use a token created with --role admin, or leave out contacts=",
                            zh=f"导出联系方式需要 admin 角色；当前令牌为 {found.role}",
                            hint_zh="请使用 --role admin 创建的令牌，或去掉 contacts= 参数")
        with state.lock:
            members = ws.segment(name, state.as_of, lang=lang)
            seg = ws.segment_definitions()[name]
            if fields:
                found_contacts = ws.contacts(members["user_id"].astype(str).tolist(), fields)
                members = members.merge(found_contacts.frame.astype({"user_id": "object"}), on="user_id", how="left")
                members = members[["user_id", *fields, *[c for c in members.columns if c not in ("user_id", *fields)]]]
        log.info("token %s exported segment %s (%d users; contacts: %s)", found.token_id, name, len(members),
                 ",".join(fields) or "none")
        with tempfile.TemporaryDirectory() as tmp:
            path = export.write_table(members, Path(tmp) / f"{name}.csv", lang=lang, timezone=ws.settings.timezone,
                                      currency=ws.settings.currency,
                                      title=f"{seg.label(lang)} ({name}): {seg.where}; {len(members):,} @ {state.as_of}")
            content = path.read_bytes()
        return Response(content, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    @app.get("/v1/plan")
    def read_plan(request: Request, found: Operator, start: Annotated[dt_.date | None, Query(alias="date")] = None,
                  days: Annotated[int, Query(ge=1, le=92)] = 7,
                  top: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> dict:
        """The contact plan from ``date`` (default: the day after the profiles): summary, fairness, contacts."""
        first = start or (state.as_of + dt_.timedelta(days=1))
        with state.lock:
            result = ws.plan(first, days)
        return {"start": first.isoformat(), "days": days, "summary": records(result.summary),
                "fairness": records(result.fairness), "warnings": list(result.warnings(_lang(request))),
                "contacts": records(result.contacts.head(top)), "contacts_total": len(result.contacts)}

    @app.post("/v1/runs", status_code=202)
    def start_run(found: Admin) -> dict:
        """Recompute in the background: the snapshot of the last day, the alerts, then the served
        profiles; follow it at /v1/runs/{id}."""
        run = runs.start(found.token_id)
        return {"run_id": run, "status_url": f"/v1/runs/{run}"}

    @app.get("/v1/runs/{run_id}")
    def read_run(run_id: str, _: Viewer) -> dict:
        """A run's progress: ``status`` (queued, running, done, failed), the steps done, the error if any."""
        return runs.get(run_id)

    @app.get("/v1/migration")
    def read_migration(_: Viewer, start: Annotated[dt_.date, Query(alias="from")],
                       end: Annotated[dt_.date | None, Query(alias="to")] = None, by: str = "tier") -> dict:
        """From -> to counts between two days (``new``/``gone`` rows and columns), changed share, up, down."""
        with state.lock:
            result = ws.migration(start, end or state.as_of, by=by)
        return {"by": by, "from": start.isoformat(), "to": (end or state.as_of).isoformat(),
                "counts": {k: {c: int(v) for c, v in row.items()} for k, row in result.counts.to_dict("index").items()},
                "changed_share": result.changed_share, "upgrades": result.upgrades,
                "downgrades": result.downgrades}

    return app
