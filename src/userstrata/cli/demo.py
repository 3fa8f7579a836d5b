"""Data to try it on: the shop simulator, and the whole pipeline on bundled data."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from userstrata import charts, export, i18n
from userstrata.cli._app import LangOpt, check_choice, check_lang, command, progress_bar, warnings_as_lines
from userstrata.cli.alerts import print_alerts
from userstrata.cli.change import print_forecast, print_migration
from userstrata.segments.migration import migration_sankey
from userstrata.cli.output import line, print_model_choice, print_predictions, print_summary
from userstrata.cli.predict import stage_progress
from userstrata.config import Settings
from userstrata.segments.snapshots import shift_months


@command
def simulate(
    users: Annotated[int, typer.Option("--users", min=1, help="Number of users.")] = 10_000,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("shop"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    events_per_user: Annotated[float, typer.Option(help="Mean behaviour events per user.")] = 20.0,
) -> None:
    """Write a simulated virtual-goods shop (users, orders, items, events, touches), in chunks."""
    from userstrata.datasets import simulate_shop

    check_choice(fmt, "--format", ("parquet", "csv"))
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar() as progress:
        task = progress.add_task("simulating users", total=users)
        files = simulate_shop(
            users, out, seed=seed, fmt=fmt, events_per_user=events_per_user,
            progress=lambda n: progress.advance(task, n),
        )
    for name, path in files.items():
        line(escape(f"{name:12s} {path}"))


@command
def demo(
    lang: LangOpt = "en",
    data: Annotated[str, typer.Option(help="shop (simulated virtual-goods shop) or cdnow.")] = "shop",
    users: Annotated[int, typer.Option(help="Users to simulate for --data shop.")] = 5_000,
    out: Annotated[Path, typer.Option(help="Folder for the workspace and the profile file.")] = Path("userstrata-demo"),
    horizon: Annotated[int, typer.Option(min=1, help="Prediction horizon in days.")] = 90,
    engine: Annotated[str, typer.Option(help="duckdb, or spark: the analyses run on a Spark session over the "
                                             "loaded tables written as Parquet (OUT/lake).")] = "duckdb",
    spark_master: Annotated[str, typer.Option(help="With --engine spark: the Spark master.")] = "local[2]",
) -> None:
    """Run the whole pipeline on bundled data: load, profile, predict.

    Shows tier shares, lifecycle stages, the RFM grid and predictions per tier. With ``--engine
    spark`` the data is loaded and validated as usual, then profile, predictions, migration,
    forecast and alerts run on Spark and print the same tables.
    """
    from userstrata.datasets import load_cdnow, simulate_shop
    from userstrata.workspace import Workspace

    lang_ = check_lang(lang)
    check_choice(data, "--data", ("shop", "cdnow"))
    check_choice(engine, "--engine", ("duckdb", "spark"))
    out.mkdir(parents=True, exist_ok=True)
    db = out / f"{data}.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)  # a demo starts from scratch
    path = out / "profiles.xlsx"  # the file an operator opens: headers and labels in --lang, shop time
    # CDNOW is an American store: its amounts are dollars
    settings = Settings(currency="USD") if data == "cdnow" else None
    with Workspace.open(db, settings=settings) as ws:
        with progress_bar() as progress:
            if data == "cdnow":
                task = progress.add_task("loading CDNOW", total=1)
                ws.load_frame("orders", load_cdnow(sample=False, timezone=ws.settings.timezone), source="CDNOW_master")
                progress.advance(task)
            else:
                tables = ("users", "orders", "order_items", "events", "touches", "identities")
                task = progress.add_task(f"simulating {users:,} users", total=users)
                with tempfile.TemporaryDirectory() as tmp:
                    # with its injected incident (one channel's add-to-cart rate halved for three weeks),
                    # and the whole user: several ids per person, anonymous browsing, usage of purchases
                    files = simulate_shop(users, tmp, seed=7, incident=True, whole_user=True,
                                          progress=lambda n: progress.advance(task, n))
                    task = progress.add_task("loading tables", total=len(tables))
                    for name in tables:
                        ws.load(name, files[name])
                        progress.advance(task)
            on = ws
            if engine == "spark":
                task = progress.add_task(f"Spark {spark_master}", total=1)
                on = _on_spark(ws, out / "lake", spark_master)
                progress.advance(task)
            as_of = on.latest_date()
            report = stage_progress(progress, lang_)
            with warnings_as_lines(lang_):
                frame = on.predict(as_of, horizon_days=horizon, with_profile=True, lang=lang_, progress=report)
            ws.snapshot(as_of, frame=frame)
            export.write_table(frame, path, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            report("writing")
            # change over the last quarter, and where the tiers are heading (a year of quarters)
            task = progress.add_task(i18n.label("migration.computing", lang_), total=1)
            quarter_ago = shift_months(as_of, -3)
            moved = on.migration(quarter_ago, as_of)
            ahead = on.migration_forecast(shift_months(as_of, -12), as_of, "1q", periods=2)
            sankey = charts.save(migration_sankey(moved, start=quarter_ago, end=as_of, lang=lang_), out / "migration.html")
            progress.advance(task)
            task = progress.add_task(i18n.label("alerts.computing", lang_), total=1)
            with warnings_as_lines(lang_):
                alerted = ws.alerts(as_of, profile=frame, source=on.store)  # read where analysed, kept in DuckDB
            open_alerts = ws.alert_list(open_only=True)
            progress.advance(task)
        profiled = f"截至 {as_of} 共 {len(frame):,} 位用户完成画像" if lang_ == "zh" else \
            f"{len(frame):,} users profiled as of {as_of}"
        line(f"[bold]{data}[/]: {profiled}")
        print_summary(ws, frame, lang_)
    print_model_choice(frame, lang_)
    print_predictions(frame, horizon, lang_)
    print_migration(moved, quarter_ago, as_of, lang_)
    print_forecast(ahead, 2, "1q", lang_)
    line(f"{escape(i18n.label('migration.chart_written', lang_))}: [bold]{escape(str(sankey))}[/]")
    print_alerts(alerted, open_alerts, as_of, 8, lang_)
    line(f"{i18n.label('profile_written', lang_)}: [bold]{escape(str(path))}[/]  (workspace: {escape(str(db))})")


def _on_spark(ws, lake: Path, master: str):
    """A Spark workspace over ``ws``'s loaded tables, written to ``lake`` as Parquet."""
    from userstrata.workspace import Workspace  # noqa: PLC0415

    ws.export_tables(lake)
    spark = ws.settings.engine.spark.model_copy(update={"master": master, "tables": str(lake), "format": "parquet"})
    settings = ws.settings.model_copy(update={"engine": ws.settings.engine.model_copy(update={"spark": spark})})
    return Workspace.open("spark", settings=settings)
