"""`toolrec lake ...`: run the sink, maintain the tables, query them.

toolrec lake sink                         # Kafka → Delta until SIGTERM / Ctrl-C
toolrec lake optimize [TABLE...]          # compact small files (safe while the sink runs)
toolrec lake vacuum [TABLE...] --retention-hours 168 [--dry-run]
toolrec lake sql "SELECT date, count(*) FROM samples GROUP BY 1"
toolrec lake history [TABLE] [--limit 20]
toolrec lake tables                       # version, files, rows of every table
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from toolrec.cli import pass_settings
from toolrec.errors import ConfigError

_SINK_TABLES = ("samples", "events")


@click.group()
def lake() -> None:
    """The Delta lake: sink, maintenance, SQL."""


def _tables_or_all(settings: Any, names: tuple[str, ...]) -> list[str]:
    from lakehouse.maintenance import list_tables

    return list(names) or list_tables(settings.lake)


@lake.command("init")
@pass_settings
def init(settings: Any) -> None:
    """Create the empty `events` and `samples` tables (the sink also does it)."""
    from lakehouse.tables import ensure_table

    for name in _SINK_TABLES:
        dt = ensure_table(settings.lake, name)
        click.echo(f"{name}: version {dt.version()} at {dt.table_uri}")


@lake.command("sink")
@click.option(
    "--table",
    "tables",
    multiple=True,
    type=click.Choice(_SINK_TABLES),
    help="Write only these tables (repeatable; default both). One writer per table.",
)
@click.option(
    "--idle-exit",
    type=float,
    default=None,
    help="Stop after this many seconds without records (default: run until SIGTERM).",
)
@pass_settings
def sink(settings: Any, tables: tuple[str, ...], idle_exit: float | None) -> None:
    """Consume toolrec.samples / impressions / feedback into Delta, exactly once in effect."""
    from contracts.events import settings_key
    from lakehouse.sink import run_sink

    key = settings_key(settings) if settings.streams.protect_events else None
    stats = run_sink(
        settings.lake,
        settings.kafka,
        tables=tables or _SINK_TABLES,  # type: ignore[arg-type]
        idle_exit_s=idle_exit,
        handle_signals=True,
        user_id_key=key,
        pii=settings.privacy.pii,
    )
    click.echo(
        json.dumps(
            {
                "records": stats.records,
                "rows": stats.rows,
                "duplicates": stats.duplicates,
                "dlq": stats.dlq,
                "commits": stats.commits,
                "files": stats.files,
                "elapsed_s": round(stats.elapsed, 3),
            }
        )
    )


@lake.command("optimize")
@click.argument("tables", nargs=-1)
@click.option("--target-size-mb", type=click.IntRange(1, 4096), default=None)
@pass_settings
def optimize_cmd(settings: Any, tables: tuple[str, ...], target_size_mb: int | None) -> None:
    """Compact small files of TABLES (default all). Safe while the sink runs."""
    from lakehouse.maintenance import optimize

    size = target_size_mb * 1024 * 1024 if target_size_mb else None
    for name in _tables_or_all(settings, tables):
        metrics = optimize(settings.lake, name, target_size=size)
        click.echo(
            f"{name}: {metrics.get('numFilesRemoved', 0)} files compacted into "
            f"{metrics.get('numFilesAdded', 0)}"
        )


@lake.command("vacuum")
@click.argument("tables", nargs=-1)
@click.option(
    "--retention-hours",
    type=click.IntRange(0, 24 * 365),
    default=None,
    help="Keep removed files this long (default lake.vacuum_retention_hours). Time travel "
    "to versions older than this stops working.",
)
@click.option("--dry-run", is_flag=True, help="List the files without deleting them.")
@click.option("--full", is_flag=True, help="Also delete files no commit mentions (>= 1 h).")
@pass_settings
def vacuum_cmd(
    settings: Any, tables: tuple[str, ...], retention_hours: int | None, dry_run: bool, full: bool
) -> None:
    """Delete files that compaction removed from TABLES (default all). Safe with the sink."""
    from lakehouse.maintenance import vacuum

    for name in _tables_or_all(settings, tables):
        deleted = vacuum(
            settings.lake, name, retention_hours=retention_hours, dry_run=dry_run, full=full
        )
        click.echo(f"{name}: {len(deleted)} files {'would be ' if dry_run else ''}deleted")


@lake.command("sql")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option(
    "--at", "pins", multiple=True, metavar="TABLE=VERSION", help="Time travel: pin a table."
)
@pass_settings
def sql_cmd(settings: Any, query: str, fmt: str, pins: tuple[str, ...]) -> None:
    """Run QUERY (DuckDB SQL) over the lake's tables, registered by name."""
    from lakehouse.sql import format_table, sql

    versions = {}
    for pin in pins:
        name, sep, version = pin.partition("=")
        if not sep or not version.isdigit():
            raise click.BadParameter(f"{pin!r} is not TABLE=VERSION (e.g. samples=12)",
                                     param_hint="--at")
        versions[name] = int(version)
    click.echo(format_table(sql(settings.lake, query, versions=versions), fmt=fmt))


@lake.command("history")
@click.argument("table", default="samples")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20)
@click.option("--json", "as_json", is_flag=True, help="Raw commit infos as JSON lines.")
@pass_settings
def history_cmd(settings: Any, table: str, limit: int, as_json: bool) -> None:
    """Commits of TABLE (default samples), newest first."""
    from lakehouse.maintenance import history

    for commit in history(settings.lake, table, limit=limit):
        if as_json:
            click.echo(json.dumps(commit, default=str))
            continue
        when = datetime.fromtimestamp(commit.get("timestamp", 0) / 1000, tz=UTC)
        line = f"{commit.get('version'):>6}  {when:%Y-%m-%d %H:%M:%S}  {commit.get('operation')}"
        click.echo(f"{line:<44} {_summary(commit.get('operationMetrics') or {})}".rstrip())


def _summary(metrics: dict[str, Any]) -> str:
    if "num_added_rows" in metrics:
        return f"+{metrics['num_added_rows']} rows in {metrics.get('num_added_files', 0)} files"
    if "numFilesRemoved" in metrics:
        return f"{metrics['numFilesRemoved']} files -> {metrics.get('numFilesAdded', 0)}"
    return json.dumps(metrics, default=str) if metrics else ""


@lake.command("tables")
@pass_settings
def tables_cmd(settings: Any) -> None:
    """Version, live files, rows and size of every table under lake.root."""
    from lakehouse.maintenance import describe, list_tables

    for name in list_tables(settings.lake):
        info = describe(settings.lake, name)
        click.echo(
            f"{name:<10} v{info['version']:<6} {info['files']:>6} files {info['rows']:>10} rows "
            f"{info['bytes'] / 1e6:>9.1f} MB  {info['partitions']} partitions"
        )


@lake.command("bench")
@click.option("--rows", type=click.IntRange(1, 10_000_000), default=100_000, show_default=True)
@pass_settings
def bench_cmd(settings: Any, rows: int) -> None:
    """Sink throughput on the configured broker vs a bare consumer (throw-away topics/lake)."""
    bench_sink = _source_tree_benchmark()

    for line in bench_sink(settings.lake, settings.kafka, rows=rows).lines():
        click.echo(line)


def _source_tree_benchmark() -> Any:
    """`bench.sink.bench_sink` from the source checkout this package runs from: benchmarks
    are not part of the installed packages, but an editable install sits beside `bench/`."""
    import importlib
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "sink.py").is_file():
        raise ConfigError(
            f"the sink benchmark is not installed with the package (no bench/sink.py under "
            f"{root}); run `toolrec lake bench` from an editable install of the repository"
        )
    if str(root) not in sys.path:
        sys.path.append(str(root))
    return importlib.import_module("bench.sink").bench_sink
