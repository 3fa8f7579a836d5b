"""The dashboard: server-rendered pages over the API's state, 中文 / English, login by token.

The sections are the report's (report/sections.py), computed once per snapshot and language and
kept until the profiles are reloaded, so a page view costs no engine work. plotly.js is served
from the plotly package at /static/plotly.min.js: offline shops have no CDN.

More pages, each from the analysis the CLI runs (computed once per snapshot, kept until the
profiles are reloaded; the charts and tables are drawn per language from the kept result):
``/dashboard/plan`` (this week's contact plan, ``Workspace.plan``), ``/dashboard/abtests``
(``Workspace.abtest`` of a touches campaign), ``/dashboard/forecast`` (the Markov tier forecast,
``Workspace.migration_forecast``, beside the migration Sankey) and ``/dashboard/risk`` (the
valuable users most at risk, ``report.sections.risk_section``). Contact rows and member lists
only for operators and admins.
"""

import datetime as dt_
import functools
import html
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Cookie, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

import pandas as pd
import plotly.graph_objects as go

from userstrata import i18n
from userstrata.activate.plan import CHANNEL_ZH, REASON_LABELS
from userstrata.errors import UserstrataError
from userstrata.report.overview import TITLE, workspace_sections
from userstrata.report.render import plotly_js, render_page
from userstrata.report.sections import Section, risk_section
from userstrata.segments.migration import forecast_chart
from userstrata.segments.snapshots import shift_months
from userstrata.serve.tokens import Token, verify_token

__all__ = ["COOKIE", "FORECAST", "PLAN_DAYS", "RISK_TOP", "abtest_campaigns", "dashboard_router", "plan_chart"]

COOKIE = "userstrata_token"
PLAN_DAYS = 7  # the plan page: the week after the profiles' day (as GET /v1/plan)
PLAN_ROWS = 50  # contacts listed on the plan page
RISK_TOP = 100  # users on the churn-risk page
FORECAST = {"every": "1q", "periods": 4, "months": 12}  # five quarterly profiles, four quarters ahead
_TEXT = {
    "login": ("登录", "Sign in"),
    "token": ("访问令牌", "Access token"),
    "login.help": ("用 `userstrata token create --role viewer` 创建令牌。", "Create a token with `userstrata token create --role viewer`."),
    "login.bad": ("令牌无效、已撤销或已过期。", "The token is unknown, revoked or expired."),
    "as_of": ("截至 {day}（{users:,} 位用户）", "As of {day} ({users:,} users)"),
    "switch": ("English", "中文"),
    "logout": ("退出", "Sign out"),
    "lookup": ("查询用户", "Look up a user"),
    "user": ("用户 {id}", "User {id}"),
    "no_user": ("没有该用户", "No such user"),
    "field": ("字段", "Field"),
    "value": ("值", "Value"),
    "operator_only": ("需要 operator 角色", "Needs the operator role"),
    "nav.home": ("总览", "Overview"),
    "nav.plan": ("本周触达计划", "This week's plan"),
    "nav.abtests": ("A/B 实验", "A/B results"),
    "nav.forecast": ("层级预测", "Forecast"),
    "nav.risk": ("流失风险", "Churn risk"),
    "failed": ("无法计算：{error}", "Could not compute: {error}"),
    # the plan page
    "plan.sub": ("触达计划：{start} 起 {days} 天", "Contact plan: {days} days from {start}"),
    "plan.chart": ("计划与未发送的触达（按层级、渠道、原因）", "Planned and dropped contacts (by tier, channel, reason)"),
    "plan.x": ("层级 / 渠道", "Tier / channel"),
    "plan.y": ("触达数", "Contacts"),
    "plan.summary": ("触达汇总", "Contacts by tier, channel and reason"),
    "plan.fairness": ("公平性检查（按层级）", "Fairness (per tier)"),
    "plan.fair_ok": ("各层级均有上升通道，且都受频次上限保护。", "Every tier has an upward path and is protected by caps."),
    "plan.contacts": ("触达明细（前 {n} 条，共 {total:,} 条）", "Contacts (first {n} of {total:,})"),
    "plan.none": ("这一周没有候选触达。", "No candidate contacts this week."),
    "tier": ("价值层级", "Tier"),
    "channel": ("渠道", "Channel"),
    "status": ("状态", "Status"),
    "reason": ("原因", "Reason"),
    "contacts": ("触达数", "Contacts"),
    "users": ("用户数", "Users"),
    "planned": ("计划触达", "Planned"),
    "reached": ("触达用户", "Reached"),
    "upward": ("上升通道", "Upward path"),
    "cap": ("每周上限", "Weekly cap"),
    "most": ("单周最多", "Most per user-week"),
    "warning": ("提醒", "Warning"),
    "yes": ("有", "yes"),
    "no": ("无", "no"),
    "top": ("最高层", "top tier"),
    "user_id": ("用户ID", "User ID"),
    "playbook": ("策略", "Playbook"),
    "why": ("原因说明", "Why"),
    "send_at": ("发送时间（店铺时间）", "Send at (shop time)"),
    "dropped_because": ("未发送/顺延原因", "Dropped or moved because"),
    "planned_status": ("计划", "planned"),
    "moved_status": ("顺延", "moved"),
    "dropped_status": ("不发", "dropped"),
    # the A/B page
    "ab.pick": ("实验（触达表中的活动）", "Experiment (a campaign of the touches table)"),
    "ab.show": ("查看", "Show"),
    "ab.none": ("触达表中没有带实验分组（variant）的活动。", "No campaign in the touches table has variants."),
    "ab.variants": ("实验 {name}：各组（分组后 {days} 天内）", "Experiment {name}: variants (within {days} days of assignment)"),
    "ab.effects": ("各组相对 {control} 的差异", "Differences from {control}"),
    "ab.interval": ("区间", "Interval"),
    "ab.srm_bad": ("样本比例失衡（SRM）：p = {p:.2g}，分组可能有问题，结论不可信",
                   "Sample ratio mismatch (SRM): p = {p:.2g}; the assignment may be broken, do not trust the results"),
    "ab.srm_ok": ("样本比例检查（SRM）通过：p = {p:.2g}", "Sample ratio check (SRM) passed: p = {p:.2g}"),
    "ab.verdict": ("结论", "Verdict"),
    "ab.chart": ("相对提升：{metric}", "Lift: {metric}"),
    "ab.unknown": ("触达表中没有带实验分组的活动 {name}。", "No campaign {name} with variants in the touches table."),
    "ab.single": ("只有一个组别，无法比较。", "Only one variant: nothing to compare."),
    # the forecast page
    "fc.title": ("层级占比的马尔可夫预测（未来 {n} 期，每期 {every}）", "Markov forecast of tier shares ({n} periods of {every} ahead)"),
    "fc.table": ("预测占比（90% 区间）", "Forecast shares (90% interval)"),
    "fc.sankey": ("迁移桑基图见总览页。", "The migration Sankey is on the overview page."),
    "fc.none": ("近一季度没有可比较的迁移。", "No migration to show for the last quarter."),
    # the risk page
    "risk.none": ("当前画像没有流失预测；先运行 `userstrata predict` 并保存快照。",
                  "The profiles have no churn predictions; run `userstrata predict` and save a snapshot."),
}
# reason codes of the plan (activate/plan.py), as an operator reads them


_t = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def _lang(value: str | None) -> str:
    return "zh" if value != "en" else "en"  # Chinese first


def _login_page(lang: str, error: bool = False) -> str:
    other = "en" if lang == "zh" else "zh"
    message = f'<p style="color:#b00">{_t("login.bad", lang)}</p>' if error else ""
    return (
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
        f'<title>userstrata</title></head><body style="font-family:sans-serif;max-width:420px;margin:80px auto">'
        f"<h1>userstrata · {_t('login', lang)}</h1>{message}"
        f'<form method="post" action="/login?lang={lang}"><label>{_t("token", lang)}<br>'
        f'<input name="token" type="password" size="48" autofocus></label><br><br>'
        f'<button type="submit">{_t("login", lang)}</button></form>'
        f'<p style="color:#666">{html.escape(_t("login.help", lang))}</p>'
        f'<p><a href="/?lang={other}">{_t("switch", lang)}</a></p></body></html>'
    )


def dashboard_router(state) -> APIRouter:
    """The pages over ``state`` (the API's ``ServeState``)."""
    router = APIRouter(include_in_schema=False)
    cache: dict[tuple, list[Section]] = {}

    def signed_in(token: str | None) -> Token | None:
        return verify_token(state.ws.store, token) if token else None

    def sections(lang: str, operator: bool) -> list[Section]:
        key = (state.as_of, lang)
        if key not in cache:
            if any(day != state.as_of for day, _ in cache):
                cache.clear()  # a new snapshot: the old pages are stale (both languages stay otherwise)
            with state.lock:
                cache[key] = workspace_sections(state.ws, state.as_of, lang=lang,
                                                profile=state.profiles.reset_index(drop=True))
        # member-level lists only for operators and admins
        return [s for s in cache[key] if operator or s.key != "risk"]

    def nav(lang: str, path: str, query: str = "") -> str:
        """The switch to the other language (same page, same ``query``), the pages, sign out."""
        other = "en" if lang == "zh" else "zh"
        pages = "".join(f'<a href="{href}?lang={lang}">{_t(key, lang)}</a>' for href, key in _PAGES)
        return (f'<a href="{path}?lang={other}{html.escape(query)}">{_t("switch", lang)}</a>{pages}'
                f'<a href="/dashboard/user?lang={lang}">{_t("lookup", lang)}</a>'
                f'<a href="/logout?lang={lang}">{_t("logout", lang)}</a> | ')

    kept: dict = {}

    def kept_result(key: tuple, make, *, engine: bool = True):
        """``make()`` once per snapshot (kept until the profiles are reloaded); a clear error kept too."""
        if kept.get("as_of") != state.as_of:
            kept.clear()  # a new snapshot: the old results are stale
            kept["as_of"] = state.as_of
        if key not in kept:
            try:
                if engine:
                    with state.lock:
                        kept[key] = make()
                else:
                    kept[key] = make()
            except UserstrataError as exc:
                kept[key] = exc
        return kept[key]

    # what the pages show, made once per snapshot (the same call for a page view and a run's warm-up)
    def plan_result():
        return kept_result(("plan",), lambda: state.ws.plan(state.as_of + dt_.timedelta(days=1), PLAN_DAYS))

    def campaigns_result():
        return kept_result(("campaigns",), lambda: abtest_campaigns(state.ws.table("touches")))

    def abtest_result(name: str):
        return kept_result(("abtest", name), lambda: state.ws.abtest(name))

    def forecast_result():
        as_of = state.as_of
        return kept_result(("forecast",), lambda: state.ws.migration_forecast(
            shift_months(as_of, -FORECAST["months"]), as_of, FORECAST["every"], periods=FORECAST["periods"]))

    def warm() -> list[str]:
        """Compute every page's aggregates for the current snapshot (both languages), so that the
        first view after a run reads them instead of computing; what failed is kept as its error."""
        for lang in ("zh", "en"):
            sections(lang, True)
        plan_result()
        forecast_result()
        names = campaigns_result()
        if names and not isinstance(names, UserstrataError):
            abtest_result(names[0])
        return sorted(str(k[0]) for k in kept if k != "as_of")

    router.warm = warm  # called by POST /v1/runs after the reload (serve/app.py)

    def page(lang: str, path: str, parts: list[Section], *, subtitle: str, before: str = "",
             query: str = "") -> HTMLResponse:
        text = render_page(parts, title=TITLE[lang], subtitle=subtitle, lang=lang,
                           script_url="/static/plotly.min.js", nav=nav(lang, path, query))
        wide = "<style>#contacts,#risk{grid-column:1/-1}</style>"  # member lists: the page's whole width
        return HTMLResponse(text.replace("<main>", f"<main>{wide}{before}", 1))

    @router.get("/", response_class=HTMLResponse)
    def home(lang: str | None = None, userstrata_token: Annotated[str | None, Cookie()] = None) -> Response:
        if signed_in(userstrata_token):
            return RedirectResponse(f"/dashboard?lang={_lang(lang)}", status_code=303)
        return HTMLResponse(_login_page(_lang(lang)))

    @router.post("/login")
    async def login(request: Request, lang: str | None = None) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        if not signed_in(token):
            return HTMLResponse(_login_page(_lang(lang), error=True), status_code=401)
        response = RedirectResponse(f"/dashboard?lang={_lang(lang)}", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @router.get("/logout")
    def logout(lang: str | None = None) -> Response:
        response = RedirectResponse(f"/?lang={_lang(lang)}", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @router.get("/static/plotly.min.js")
    def plotly() -> Response:
        return Response(plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    @router.get("/dashboard", response_class=HTMLResponse)
    def dashboard(lang: str | None = None, userstrata_token: Annotated[str | None, Cookie()] = None) -> Response:
        lang = _lang(lang)
        token = signed_in(userstrata_token)
        if token is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        subtitle = _t("as_of", lang).format(day=state.as_of, users=len(state.profiles))
        page = render_page(sections(lang, token.allows("operator")), title=TITLE[lang], subtitle=subtitle, lang=lang,
                           script_url="/static/plotly.min.js", nav=nav(lang, "/dashboard"))
        return HTMLResponse(page)

    @router.get("/dashboard/user", response_class=HTMLResponse)
    def user_page(lang: str | None = None, id: str | None = None,
                  userstrata_token: Annotated[str | None, Cookie()] = None) -> Response:
        lang = _lang(lang)
        token = signed_in(userstrata_token)
        if token is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        form = (f'<section><form method="get" action="/dashboard/user"><input type="hidden" name="lang" value="{lang}">'
                f'<input name="id" value="{html.escape(id or "")}" size="30"> <button>{_t("lookup", lang)}</button>'
                "</form>")
        if not token.allows("operator"):
            body = form + f"<p>{_t('operator_only', lang)}</p></section>"
        elif id is None:
            body = form + "</section>"
        elif id not in state.profiles.index:
            body = form + f"<p>{_t('no_user', lang)}: {html.escape(id)}</p></section>"
        else:
            row = state.profiles.loc[id]
            cells = "".join(
                f"<tr><td>{html.escape(i18n.label('col.' + c, lang) if i18n.label('col.' + c, lang) != 'col.' + c else c)}"
                f"</td><td>{html.escape(_shown(c, row[c], lang))}</td></tr>" for c in state.profiles.columns)
            body = (form + f"<h2>{html.escape(_t('user', lang).format(id=id))}</h2><table><thead><tr>"
                    f"<th>{_t('field', lang)}</th><th>{_t('value', lang)}</th></tr></thead><tbody>{cells}</tbody></table></section>")
        page = render_page([], title=TITLE[lang], subtitle=_t("lookup", lang), lang=lang,
                           script_url="/static/plotly.min.js", nav=nav(lang, "/dashboard/user"))
        return HTMLResponse(page.replace("<main></main>", f"<main>{body}</main>"))

    @router.get("/dashboard/plan", response_class=HTMLResponse)
    def plan_page(lang: str | None = None, userstrata_token: Annotated[str | None, Cookie()] = None) -> Response:
        lang = _lang(lang)
        token = signed_in(userstrata_token)
        if token is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        start = state.as_of + dt_.timedelta(days=1)
        result = plan_result()
        subtitle = _t("plan.sub", lang, start=start, days=PLAN_DAYS)
        if isinstance(result, UserstrataError):
            return page(lang, "/dashboard/plan", [], subtitle=subtitle, before=_failed(result, lang))
        return page(lang, "/dashboard/plan", plan_sections(result, lang=lang, operator=token.allows("operator")),
                    subtitle=subtitle)

    @router.get("/dashboard/abtests", response_class=HTMLResponse)
    def abtest_page(lang: str | None = None, name: str | None = None,
                    userstrata_token: Annotated[str | None, Cookie()] = None) -> Response:
        lang = _lang(lang)
        token = signed_in(userstrata_token)
        if token is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        names = campaigns_result()
        if isinstance(names, UserstrataError):
            names = []
        chosen = name if name is not None else (names[0] if names else None)
        options = "".join(f'<option value="{html.escape(n)}"{" selected" if n == chosen else ""}>{html.escape(n)}</option>'
                          for n in names)
        form = (f'<section id="pick"><form method="get" action="/dashboard/abtests">'
                f'<input type="hidden" name="lang" value="{lang}"><label>{_t("ab.pick", lang)}<br>'
                f'<select name="name" onchange="this.form.submit()">{options}</select></label> '
                f'<button type="submit">{_t("ab.show", lang)}</button></form></section>')
        query = f"&name={quote(chosen)}" if chosen else ""
        subtitle = _t("nav.abtests", lang)
        if chosen is None or chosen not in names:
            missing = _t("ab.none", lang) if chosen is None else _t("ab.unknown", lang, name=chosen)
            return page(lang, "/dashboard/abtests", [], subtitle=subtitle,
                        before=form + f"<section><p>{html.escape(missing)}</p></section>")
        result = abtest_result(chosen)
        if isinstance(result, UserstrataError):
            return page(lang, "/dashboard/abtests", [], subtitle=subtitle, before=form + _failed(result, lang),
                        query=query)
        verdict, parts = abtest_sections(result, lang=lang)
        return page(lang, "/dashboard/abtests", parts, subtitle=f"{subtitle}: {chosen}", before=form + verdict,
                    query=query)

    @router.get("/dashboard/forecast", response_class=HTMLResponse)
    def forecast_page(lang: str | None = None, userstrata_token: Annotated[str | None, Cookie()] = None) -> Response:
        lang = _lang(lang)
        token = signed_in(userstrata_token)
        if token is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        as_of = state.as_of
        result = forecast_result()
        # the Sankey of the overview (the report's migration section, kept with the other sections)
        sankey = [s for s in sections(lang, token.allows("operator")) if s.key == "migration"]
        subtitle = _t("as_of", lang).format(day=as_of, users=len(state.profiles))
        before = "" if sankey else f'<section><p class="note">{_t("fc.none", lang)}</p></section>'
        if isinstance(result, UserstrataError):
            return page(lang, "/dashboard/forecast", sankey, subtitle=subtitle, before=_failed(result, lang) + before)
        return page(lang, "/dashboard/forecast", [*sankey, *forecast_sections(result, lang=lang)],
                    subtitle=subtitle, before=before)

    @router.get("/dashboard/risk", response_class=HTMLResponse)
    def risk_page(lang: str | None = None, userstrata_token: Annotated[str | None, Cookie()] = None) -> Response:
        lang = _lang(lang)
        token = signed_in(userstrata_token)
        if token is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        subtitle = _t("as_of", lang).format(day=state.as_of, users=len(state.profiles))
        if not token.allows("operator"):
            return page(lang, "/dashboard/risk", [], subtitle=subtitle,
                        before=f"<section><p>{_t('operator_only', lang)}</p></section>")
        found = kept_result(("risk", lang), lambda: risk_section(state.profiles.reset_index(drop=True), lang=lang,
                                                                  top=RISK_TOP), engine=False)
        if found is None:
            return page(lang, "/dashboard/risk", [], subtitle=subtitle,
                        before=f"<section><p>{html.escape(_t('risk.none', lang))}</p></section>")
        return page(lang, "/dashboard/risk", [found], subtitle=subtitle)

    return router


_PAGES = (("/dashboard", "nav.home"), ("/dashboard/plan", "nav.plan"), ("/dashboard/abtests", "nav.abtests"),
          ("/dashboard/forecast", "nav.forecast"), ("/dashboard/risk", "nav.risk"))


def _failed(exc: UserstrataError, lang: str) -> str:
    return f'<section><p style="color:#b00">{html.escape(_t("failed", lang, error=exc.text(lang)))}</p></section>'


def _blank(value) -> bool:
    return value is None or str(value) in ("", "nan", "None", "<NA>")


def _reason(code, lang: str) -> str:
    if _blank(code):
        return ""
    return i18n.pick(REASON_LABELS, str(code), lang) if str(code) in REASON_LABELS else str(code)


def _status(value, lang: str) -> str:
    key = f"{value}_status"
    return _t(key, lang) if key in _TEXT else str(value)


def _channel(value, lang: str) -> str:
    return CHANNEL_ZH.get(str(value), str(value)) if lang == "zh" else str(value)


def plan_chart(summary: pd.DataFrame, *, lang: str = "en") -> go.Figure:
    """``Plan.summary`` as stacked bars: one bar per tier and channel, one colour per status and
    reason (planned; moved because ...; dropped because ...)."""
    frame = summary.astype({"tier": str, "channel": str, "status": str})
    frame["reason_code"] = ["" if _blank(c) else str(c) for c in summary["reason_code"]]
    bars = list(dict.fromkeys(zip(frame["tier"], frame["channel"])))
    x = [[i18n.label(t, lang) for t, _ in bars], [_channel(c, lang) for _, c in bars]]
    fig = go.Figure()
    for status, code in dict.fromkeys(zip(frame["status"], frame["reason_code"])):
        part = frame[(frame["status"] == status) & (frame["reason_code"] == code)]
        counts = part.groupby(["tier", "channel"])["contacts"].sum()
        name = _status(status, lang) + (f": {_reason(code, lang)}" if code else "")
        fig.add_trace(go.Bar(x=x, y=[int(counts.get(b, 0)) for b in bars], name=name))
    return fig.update_layout(barmode="stack", title=_t("plan.chart", lang), xaxis=dict(title=_t("plan.x", lang)),
                             yaxis=dict(title=_t("plan.y", lang)))


def plan_sections(plan, *, lang: str = "en", operator: bool = False) -> list[Section]:
    """The plan page: contacts by tier, channel and reason (chart and table), the fairness check,
    and (operators only) the first ``PLAN_ROWS`` contacts with their reasons."""
    summary = plan.summary
    table = pd.DataFrame({
        _t("tier", lang): [i18n.label(str(t), lang) for t in summary["tier"]],
        _t("channel", lang): [_channel(c, lang) for c in summary["channel"]],
        _t("status", lang): [_status(s, lang) for s in summary["status"]],
        _t("reason", lang): [_reason(c, lang) for c in summary["reason_code"]],
        _t("contacts", lang): [int(n) for n in summary["contacts"]],
    })  # fmt: skip
    fair = plan.fairness
    fairness = pd.DataFrame({
        _t("tier", lang): [i18n.label(str(t), lang) for t in fair["tier"]],
        _t("users", lang): [int(n) for n in fair["users"]],
        _t("planned", lang): [int(n) for n in fair["planned"]],
        _t("reached", lang): [int(n) for n in fair["users_reached"]],
        _t("upward", lang): [_t("top", lang) if u is None or u != u else _t("yes" if u else "no", lang)
                             for u in fair["upward_path"]],
        _t("cap", lang): [int(n) for n in fair["weekly_cap"]],
        _t("most", lang): [int(n) for n in fair["max_per_user_week"]],
        _t("warning", lang): [str(w or "") for w in fair["warning_zh" if lang == "zh" else "warning_en"]],
    })  # fmt: skip
    warnings = plan.warnings(lang)
    note = ("；" if lang == "zh" else "; ").join(warnings) if warnings else _t("plan.fair_ok", lang)
    if len(summary):
        parts = [Section("plan", _t("plan.chart", lang), plan_chart(summary, lang=lang), table)]
    else:
        parts = [Section("plan", _t("plan.chart", lang), note=_t("plan.none", lang))]
    parts.append(Section("fairness", _t("plan.fairness", lang), table=fairness, note=note))
    title = _t("plan.contacts", lang, n=min(PLAN_ROWS, len(plan.contacts)), total=len(plan.contacts))
    if not operator:
        parts.append(Section("contacts", title, note=_t("operator_only", lang)))
        return parts
    rows = plan.contacts.head(PLAN_ROWS)
    contacts = pd.DataFrame({
        _t("user_id", lang): rows["user_id"].astype(str),
        _t("tier", lang): [i18n.label(str(t), lang) for t in rows["tier"]],
        _t("playbook", lang): rows["playbook"].astype(str),
        _t("why", lang): rows["why_zh" if lang == "zh" else "why_en"].astype(str),
        _t("channel", lang): [_channel(c, lang) for c in rows["channel"]],
        _t("send_at", lang): [str(v)[:16] for v in rows["send_at"]],
        _t("status", lang): [_status(s, lang) for s in rows["status"]],
        _t("dropped_because", lang): ["" if _blank(r) else str(r) for r in rows["reason_zh" if lang == "zh" else "reason_en"]],
    })  # fmt: skip
    parts.append(Section("contacts", title, table=contacts))
    return parts


def abtest_campaigns(touches) -> list[str]:
    """The campaigns of the touches table with variants, the latest touched first."""
    t = touches.filter(touches.campaign.notnull() & touches.variant.notnull())
    frame = t.group_by("campaign").aggregate(last=t.ts.max()).to_pandas()
    return [str(c) for c in frame.sort_values(["last", "campaign"], ascending=[False, True])["campaign"]]


def abtest_sections(result, *, lang: str = "en") -> tuple[str, list[Section]]:
    """The A/B page of ``measure.abtest``'s result: the SRM flag and the verdict (HTML), the
    variants, the lift on conversion and revenue per user with intervals, the differences."""
    from userstrata.measure import abtest as ab  # noqa: PLC0415 - SciPy only when the page is opened

    srm = _t("ab.srm_bad" if result.srm_flagged else "ab.srm_ok", lang, p=result.srm_p_value)
    colour = "#b00" if result.srm_flagged else "#2a7"
    lines = "".join(f"<li>{html.escape(v)}</li>" for v in result.verdict(lang))
    verdict = (f'<section id="verdict"><h2>{_t("ab.verdict", lang)}</h2>'
               f'<p id="srm" data-flagged="{str(result.srm_flagged).lower()}" style="color:{colour}">{html.escape(srm)}</p>'
               f"<ul>{lines}</ul></section>")
    v = result.variants
    variants = pd.DataFrame({
        ab.text("variant", lang): v["variant"].astype(str),
        ab.text("users", lang): [int(n) for n in v["users"]],
        ab.text("share", lang): [f"{s:.1%}" for s in v["share"]],
        ab.text("conversion_rate", lang): [f"{r:.2%}" for r in v["conversion_rate"]],
        ab.text("revenue_per_user", lang): [f"{r:,.2f}" for r in v["revenue_per_user"]],
        ab.text("orders_per_user", lang): [f"{r:.3f}" for r in v["orders_per_user"]],
    })  # fmt: skip
    parts = [Section("variants", _t("ab.variants", lang, name=result.experiment, days=result.window_days),
                     table=variants)]
    e = result.effects
    if not len(e):
        return verdict, [*parts, Section("effects", _t("ab.effects", lang, control=result.control),
                                         note=_t("ab.single", lang))]
    for metric in ("conversion", "revenue"):
        if (e["metric"] == metric).any():
            parts.append(Section(f"ab_{metric}", _t("ab.chart", lang, metric=ab.text(metric, lang)),
                                 result.chart(metric, lang)))
    pct = lambda x: "" if pd.isna(x) else f"{x:+.1%}"  # noqa: E731
    effects = pd.DataFrame({
        ab.text("metric", lang): [ab.text(m, lang) for m in e["metric"]],
        ab.text("variant", lang): e["variant"].astype(str),
        ab.text("effect", lang): [f"{x:+,.4g}" for x in e["effect"]],
        ab.text("relative", lang): [pct(x) for x in e["relative"]],
        _t("ab.interval", lang): [f"{pct(lo)} ~ {pct(hi)}" for lo, hi in zip(e["relative_low"], e["relative_high"])],
        ab.text("p_holm", lang): ["" if pd.isna(p) else f"{p:.3g}" for p in e["p_holm"]],
    })  # fmt: skip
    parts.append(Section("effects", _t("ab.effects", lang, control=result.control), table=effects))
    return verdict, parts


def _state_name(state: str, lang: str) -> str:
    return i18n.label(state, lang)


def forecast_sections(result, *, lang: str = "en") -> list[Section]:
    """The Markov forecast (``segments.migration.forecast``): its chart, the shares with their
    intervals per period ahead, the matrix's stability and the backtest."""
    every, n = FORECAST["every"], len(result.shares) - 1
    table = pd.DataFrame({i18n.label("migration.periods_ahead", lang).format(every=every):
                          [str(k) for k in result.shares.index]})
    for col in result.shares.columns:
        table[_state_name(col, lang)] = [
            f"{result.shares.loc[k, col]:.1%} ({100 * result.low.loc[k, col]:.1f}-{100 * result.high.loc[k, col]:.1f})"
            for k in result.shares.index]
    notes = [i18n.label("migration.stability", lang).format(stability=result.stability)]
    if result.backtest:
        notes.append(i18n.label("migration.forecast_backtest", lang).format(**result.backtest))
    return [Section("forecast", _t("fc.title", lang, n=n, every=every), forecast_chart(result, every=every, lang=lang),
                    table, ("；" if lang == "zh" else "; ").join(notes))]


def _shown(column: str, value, lang: str) -> str:
    if column in ("tier", "lifecycle", "rfm_cell") and isinstance(value, str):
        return f"{i18n.label(value, lang)} ({value})"
    return "" if value is None or str(value) in ("nan", "NaT", "None") else str(value)
