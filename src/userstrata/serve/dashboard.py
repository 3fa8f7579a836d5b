"""The dashboard: server-rendered pages over the API's state, 中文 / English, login by token.

The sections are the report's (report/sections.py), computed once per snapshot and language and
kept until the profiles are reloaded, so a page view costs no engine work. plotly.js is served
from the plotly package at /static/plotly.min.js: offline shops have no CDN.
"""

import functools
import html
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Cookie, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from userstrata import i18n
from userstrata.report.overview import TITLE, workspace_sections
from userstrata.report.render import plotly_js, render_page
from userstrata.report.sections import Section
from userstrata.serve.tokens import Token, verify_token

__all__ = ["COOKIE", "dashboard_router"]

COOKIE = "userstrata_token"
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
}


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
            cache.clear()  # a new snapshot: the old pages are stale
            with state.lock:
                cache[key] = workspace_sections(state.ws, state.as_of, lang=lang,
                                                profile=state.profiles.reset_index(drop=True))
        # member-level lists only for operators and admins
        return [s for s in cache[key] if operator or s.key != "risk"]

    def nav(lang: str, path: str) -> str:
        other = "en" if lang == "zh" else "zh"
        return (f'<a href="{path}?lang={other}">{_t("switch", lang)}</a>'
                f'<a href="/dashboard/user?lang={lang}">{_t("lookup", lang)}</a>'
                f'<a href="/logout?lang={lang}">{_t("logout", lang)}</a> | ')

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

    return router


def _shown(column: str, value, lang: str) -> str:
    if column in ("tier", "lifecycle", "rfm_cell") and isinstance(value, str):
        return f"{i18n.label(value, lang)} ({value})"
    return "" if value is None or str(value) in ("nan", "NaT", "None") else str(value)
