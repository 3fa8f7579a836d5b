"""The Typer app and what every command shares: options, argument parsing, error translation.

Nothing here imports the workspace or the models at module level: ``userstrata --help``,
``load`` and ``schema`` must start without scikit-learn, SciPy or matplotlib.
"""

from __future__ import annotations

import contextlib
import datetime as dt_
import functools
import os
import re
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from userstrata import i18n
from userstrata._engine import DEFAULT_WORKSPACE
from userstrata.errors import InputError, Notice, UserstrataError

if TYPE_CHECKING:
    from userstrata.workspace import Workspace

app = typer.Typer(
    name="userstrata",
    help="User value stratification and lifecycle operations (用户价值分层与生命周期运营).",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
    pretty_exceptions_show_locals=False,  # locals may hold customer data
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

DEFAULT_WORKSPACE_PATH = Path(DEFAULT_WORKSPACE)
WorkspaceOpt = Annotated[
    Path,
    typer.Option("--workspace", "-w", envvar="USERSTRATA_WORKSPACE", help="Workspace file (DuckDB)."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Settings file (default ./userstrata.toml if present).")
]
LangOpt = Annotated[str, typer.Option("--lang", help="Language of labels and files: zh (中文) or en.")]
DATE_HELP = "e.g. 2024-06-30, 2024/6/30, 20240630, 2024.06.30 or 2024年6月30日"


def version() -> str:
    """The installed package's version."""
    try:
        return metadata.version("userstrata")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from userstrata import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        console.print(f"userstrata {version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    _version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


def command(fn: Callable[..., Any] | None = None, *, on: typer.Typer | None = None, name: str | None = None) -> Any:
    """Register ``fn`` as a command (named ``name``, of ``on``, a group; default the top level)
    whose user errors become one red line and exit code 2."""
    if fn is None:
        return functools.partial(command, on=on, name=name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserstrataError as exc:
            if _state["debug"]:
                raise
            lang = kwargs.get("lang") if kwargs.get("lang") in ("zh", "en") else "en"
            error, hint = ("错误：", "提示：") if lang == "zh" else ("error: ", "hint: ")
            err_console.print(f"[bold red]{error}[/]{escape(exc.text(lang))}", highlight=False, soft_wrap=True)
            if exc.hint_text(lang):
                err_console.print(f"[yellow]{hint}[/]{escape(exc.hint_text(lang))}", highlight=False,
                                  soft_wrap=True)
            raise typer.Exit(2) from None

    return (on or app).command(name)(wrapper)


def open_workspace(path: Path, config: Path | None = None) -> "Workspace":
    """An existing workspace (``NotFoundError`` says how to create one)."""
    from userstrata.workspace import Workspace  # the facade pulls in every analysis layer

    return Workspace.open(path, settings=config, create=False)


def warn(message: str, lang: str = "en") -> None:
    """One yellow line on stderr (``message`` is plain text: brackets in it are not markup)."""
    prefix = "警告：" if lang == "zh" else "warning: "
    err_console.print(f"[yellow]{prefix}[/]{escape(message)}", highlight=False, soft_wrap=True)


# -- parsing ---------------------------------------------------------------------------------
def check_lang(lang: str) -> i18n.Lang:
    if lang not in i18n.LANGS:
        raise InputError(f"--lang {lang!r} is not supported; use one of: {', '.join(i18n.LANGS)}")
    return lang  # type: ignore[return-value]


def check_choice(value: str, option: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(f"{option} {value!r}: use one of {', '.join(allowed)}")
    return value


# The day styles input files use (ingest/validate.py), written by hand on a command line.
_DATE_STYLES = (
    re.compile(r"(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})"),
    re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})"),
    re.compile(r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日?"),
)


def parse_date(text: str, option: str) -> dt_.date:
    """A day written as 2024-06-30, 2024/6/30, 20240630, 2024.06.30 or 2024年6月30日."""
    clean = text.strip()
    for style in _DATE_STYLES:
        found = style.fullmatch(clean)
        if found:
            try:
                return dt_.date(int(found["y"]), int(found["m"]), int(found["d"]))
            except ValueError as exc:
                raise InputError(f"{option} {text!r} is not a day of the calendar ({exc})") from None
    raise InputError(f"{option} {text!r} is not a date; expected {DATE_HELP}")


def parse_horizon(text: str, option: str = "--horizon") -> int:
    """'90d', '39w' or a plain number of days -> days."""
    units = {"d": 1, "w": 7}
    value, unit = (text[:-1], text[-1]) if text and text[-1].lower() in units else (text, "d")
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"{option} {text!r}: expected days or weeks such as 90d or 39w")
    return int(value) * units[unit.lower()]


def data_days(ws: "Workspace") -> tuple[dt_.date, dt_.date] | None:
    """The first and last local day with an order or event (None when there is neither)."""
    from userstrata.features._time import Clock

    clock = Clock(ws.settings.timezone, ws.store.engine)
    firsts, lasts = [], []
    for name in ("orders", "events"):
        table = ws.table(name)
        day = clock.local_date(table.ts)
        span = ws.store.execute(table.aggregate(first=day.min(), last=day.max()))
        first, last = span["first"].iloc[0], span["last"].iloc[0]
        if first is not None and first == first:  # NULL comes back as None or NaT
            firsts.append(_as_date(first))
            lasts.append(_as_date(last))
    return (min(firsts), max(lasts)) if firsts else None


def _as_date(value: Any) -> dt_.date:
    return value.date() if isinstance(value, dt_.datetime) else value


def day_or_latest(ws: "Workspace", text: str | None, option: str) -> dt_.date:
    """The day given with ``option`` (warning when the data does not reach it), else the last
    day in the data."""
    if text is None:
        return ws.latest_date()
    day = parse_date(text, option)
    span = data_days(ws)
    if span is None:
        warn(f"{option} {day}: the workspace has no orders or events yet")
    elif day < span[0]:
        warn(f"{option} {day} is before the first day with orders or events ({span[0]}); nobody had bought yet")
    elif day > span[1]:
        warn(
            f"{option} {day} is after the last day with orders or events ({span[1]}); "
            "the days in between count as days without purchases"
        )
    return day


# -- running ---------------------------------------------------------------------------------
@contextlib.contextmanager
def warnings_as_lines(lang: str = "en") -> Iterator[None]:
    """Show library warnings as one yellow line each (not as Python warning dumps), a
    bilingual ``Notice`` in ``lang``; the same text twice is shown once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    shown = set()
    for w in caught:
        if issubclass(w.category, (UserWarning, RuntimeWarning)):
            text = w.message.text(lang) if isinstance(w.message, Notice) else str(w.message)
            if text not in shown:
                shown.add(text)
                warn(text, lang)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and os.environ.get("USERSTRATA_PROGRESS") != "1",
    )
