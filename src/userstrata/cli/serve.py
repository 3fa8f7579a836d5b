"""The API server and its tokens: ``userstrata serve``, ``userstrata token create|list|revoke``."""

from __future__ import annotations

import functools

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from userstrata import i18n
from userstrata.cli._app import (
    DEFAULT_WORKSPACE_PATH,
    ConfigOpt,
    LangOpt,
    WorkspaceOpt,
    app,
    check_lang,
    command,
    console,
    open_workspace,
)
from userstrata.cli.output import line

token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")

_TEXT: dict[str, tuple[str, str]] = {
    "created": ("已创建 {role} 令牌 {id}（仅显示这一次，请妥善保存）：",
                "Created {role} token {id} (shown only this once; keep it safe):"),
    "expires": ("有效期至 {at} (UTC)", "expires {at} (UTC)"),
    "never": ("永不过期", "never expires"),
    "revoked": ("已撤销令牌 {id}", "Revoked token {id}"),
    "title": ("API 令牌", "API tokens"),
    "serving": ("服务地址 http://{host}:{port}（接口文档 /docs）", "Serving on http://{host}:{port} (API docs at /docs)"),
}
_COLUMNS = {"token_id": ("编号", "Id"), "role": ("角色", "Role"), "note": ("备注", "Note"),
            "created_at": ("创建于", "Created"), "expires_at": ("过期于", "Expires"), "revoked_at": ("撤销于", "Revoked")}


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


@command
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log",
                                             help="Log every request (costs ~0.4 ms of CPU per request).")] = False,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Start the REST API over the workspace (uvicorn; OpenAPI docs at /docs)."""
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from userstrata.serve.app import create_app  # noqa: PLC0415

    lang_ = check_lang(lang)
    ws = open_workspace(workspace, config)
    api = create_app(ws)
    line(escape(_text("serving", lang_).format(host=host, port=port)))
    uvicorn.run(api, host=host, port=port, log_level="info", access_log=access_log)


@command(on=token_app)
def create(
    role: Annotated[str, typer.Option(help="viewer (aggregates), operator (+ members, plans, exports) or admin.")],
    expires: Annotated[int | None, typer.Option(help="Days until it expires (default: never).")] = None,
    note: Annotated[str, typer.Option(help="What the token is for.")] = "",
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Create a token; its secret is printed once and stored only as a digest."""
    from userstrata.serve.tokens import create_token  # noqa: PLC0415

    lang_ = check_lang(lang)
    with open_workspace(workspace, config) as ws:
        secret, token = create_token(ws.store, role, expires_days=expires, note=note)
    line(escape(_text("created", lang_).format(role=token.role, id=token.token_id)))
    console.print(secret, highlight=False, soft_wrap=True)
    at = _text("expires", lang_).format(at=f"{token.expires_at:%Y-%m-%d %H:%M}") if token.expires_at else _text("never", lang_)
    line(escape(at))


@command(on=token_app, name="list")
def list_(
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """The tokens (never their secrets)."""
    from userstrata.serve.tokens import list_tokens  # noqa: PLC0415

    lang_ = check_lang(lang)
    with open_workspace(workspace, config) as ws:
        tokens = list_tokens(ws.store)
    view = Table(title=_text("title", lang_))
    for col, (zh, en) in _COLUMNS.items():
        view.add_column(zh if lang_ == "zh" else en)
    for row in tokens.itertuples(index=False):
        view.add_row(*(escape("" if v is None or str(v) in ("NaT", "None") else str(v)[:16]) for v in row))
    console.print(view)


@command(on=token_app)
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `userstrata token list`).")],
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Revoke a token at once."""
    from userstrata.serve.tokens import revoke_token  # noqa: PLC0415

    lang_ = check_lang(lang)
    with open_workspace(workspace, config) as ws:
        revoke_token(ws.store, token_id)
    line(escape(_text("revoked", lang_).format(id=token_id)))
