"""The REST API (FastAPI) over one workspace: ``create_app(path)``; ``userstrata serve`` runs it.

Profiles are read from the latest snapshot, held in memory, so a user lookup never queries the
engine. Everything else goes through the ``Workspace`` under one lock: a DuckDB connection runs
one statement at a time, and requests arrive on several threads.

Errors are JSON ``{"code", "message", "hint"}`` in the language of ``Accept-Language`` (zh or en):
InputError 422, NotFoundError 404, NotFittedError 409, a missing or bad token 401, a role too
low 403. Any other exception is a bug: logged with its traceback, answered with a plain 500.
"""


import datetime as dt_
import logging
import math
import secrets
import threading
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from userstrata import __version__, export
from userstrata.errors import InputError, NotFittedError, NotFoundError, UserstrataError
from userstrata.serve.dashboard import dashboard_router
from userstrata.serve.tokens import Token, verify_token
from userstrata.workspace import Workspace

__all__ = ["create_app"]

log = logging.getLogger("userstrata.serve")
_STATUS = {InputError: 422, NotFoundError: 404, NotFittedError: 409}
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
    """The workspace, its lock, and the latest snapshot's profiles indexed by user."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.lock = threading.Lock()
        self.profiles = pd.DataFrame()
        self.as_of: dt_.date | None = None
        self.reload()

    def refresh(self, users: list[str]) -> int:
        """Recompute the profiles of ``users`` now (as of the last day in the data) and put them in
        place; prediction columns of the snapshot stay until the next run. Returns how many."""
        if not users:
            return 0
        with self.lock:
            profile = self.ws.profile()
            fresh = profile.filter(profile.user_id.isin(users)).to_pandas().set_index("user_id", drop=False)
        for column in fresh.columns.difference(self.profiles.columns):
            self.profiles[column] = pd.NA
        old = self.profiles.reindex(fresh.index)
        merged = old.copy()
        merged[fresh.columns] = fresh
        self.profiles = pd.concat([self.profiles.drop(index=fresh.index, errors="ignore"), merged])
        return len(fresh)

    def reload(self) -> None:
        """Read the latest snapshot (saving one of the last day in the data when there is none)."""
        with self.lock:
            kept = self.ws.snapshots()
            if kept.empty:
                self.ws.snapshot()
                kept = self.ws.snapshots()
            self.as_of = pd.Timestamp(kept["as_of"].max()).date()
            self.profiles = self.ws.snapshot_table(self.as_of).to_pandas().set_index("user_id", drop=False)


class Runs:
    """Background recomputations, one at a time: snapshot, alerts, reload of the served profiles."""

    STEPS = ("snapshot", "alerts", "reload")

    def __init__(self, state: "ServeState"):
        self.state = state
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
        try:
            with state.lock:
                day = state.ws.latest_date()
                state.ws.snapshot(day)
            run["steps_done"].append("snapshot")
            with state.lock:
                state.ws.alerts(day)
            run["steps_done"].append("alerts")
            state.reload()
            run["steps_done"].append("reload")
            run["status"] = "done"
        except Exception as exc:  # a failed run is reported, never lost in a thread
            log.exception("run %s failed", run_id)
            run["status"], run["error"] = "failed", str(exc)
        finally:
            run["finished_at"] = dt_.datetime.now(dt_.UTC).isoformat()
            self.busy.release()

    def get(self, run_id: str) -> dict:
        if run_id not in self.runs:
            raise NotFoundError(f"no run {run_id!r}", zh=f"没有计算任务 {run_id!r}")
        return self.runs[run_id]


class RateLimited(UserstrataError):
    code = "rate_limited"


class RateLimit:
    """At most ``per_minute`` requests per token in any sliding minute (a fixed-window count per second)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.seen: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def check(self, token_id: str) -> None:
        import time  # noqa: PLC0415

        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.seen.get(token_id, []) if now - t < 60]
            if len(recent) >= self.per_minute:
                raise RateLimited(f"more than {self.per_minute:,} requests in a minute with this token",
                                  hint="slow down and retry in a minute", zh=f"该令牌一分钟内请求超过 {self.per_minute:,} 次",
                                  hint_zh="请降低频率，一分钟后重试")
            recent.append(now)
            self.seen[token_id] = recent


def create_app(workspace: str | Path | Workspace, *, settings: Any = None, requests_per_minute: int = 60_000) -> FastAPI:
    """The API over ``workspace`` (a path of a DuckDB workspace, or an open ``Workspace``);
    each token may make ``requests_per_minute`` requests a minute (429 beyond)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace, settings=settings, create=False)
    state = ServeState(ws)
    app = FastAPI(title="userstrata", version=__version__,
                  description="User value stratification and lifecycle operations (用户价值分层与生命周期运营)")
    app.state.serve = state
    runs = Runs(state)
    limit = RateLimit(requests_per_minute)
    app.include_router(dashboard_router(state))

    @app.middleware("http")
    async def _limit_size(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY:
            return _error(request, 413, BatchTooLarge(
                f"the request is {int(size):,} bytes; at most {MAX_BODY:,}", hint="split the batch",
                zh=f"请求 {int(size):,} 字节；最多 {MAX_BODY:,} 字节", hint_zh="请拆分后分批提交"))
        return await call_next(request)

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

    def token(authorization: Annotated[str | None, Header()] = None) -> Token:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("no token: send 'Authorization: Bearer <token>'",
                            hint="create one with `userstrata token create --role viewer`",
                            zh="缺少令牌：请求头需带 'Authorization: Bearer <令牌>'",
                            hint_zh="用 `userstrata token create --role viewer` 创建")
        found = verify_token(ws.store, authorization.removeprefix("Bearer ").strip())
        if found is None:
            raise AuthError("the token is unknown, revoked or expired", hint="create a new one",
                            zh="令牌无效、已撤销或已过期", hint_zh="请重新创建令牌")
        limit.check(found.token_id)
        return found

    def role(needed: str):
        def check(found: Annotated[Token, Depends(token)]) -> Token:
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
                "users": len(state.profiles)}

    @app.get("/v1/users/{user_id}")
    def read_user(user_id: str, _: Operator) -> dict:
        """One user's profile from the latest snapshot: tier with its reason, lifecycle, RFM cell and scores."""
        if user_id not in state.profiles.index:
            raise NotFoundError(f"no user {user_id!r} in the profiles of {state.as_of}",
                                zh=f"{state.as_of} 的画像中没有用户 {user_id!r}")
        row = state.profiles.loc[user_id]
        return {col: jsonable(row[col]) for col in state.profiles.columns}

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
    def export_segment(name: str, request: Request, found: Operator) -> Response:
        """A segment's members as CSV (UTF-8 with BOM, the definition on the first line, no formula cells)."""
        import tempfile  # noqa: PLC0415

        lang = _lang(request)
        with state.lock:
            members = ws.segment(name, state.as_of, lang=lang)
            seg = ws.segment_definitions()[name]
        log.info("token %s exported segment %s (%d users)", found.token_id, name, len(members))
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
