"""SQL over the lake for analysts: deltalake → Arrow dataset → DuckDB.

Each Delta table under `lake.root` is registered in an in-memory DuckDB under its own name
(`events`, `samples`, `models`, ...) as a lazily scanned Arrow dataset, so filters and
projections are pushed down to the Parquet files. DuckDB's `delta_scan` is not used: it
downloads an extension at run time (DESIGN.md §5), and extension auto-install / auto-load
are switched off so that nothing can download.

Sandboxed and read-only: pyarrow reads the lake's files, so DuckDB itself needs no file
access at all. After the tables are registered, `enable_external_access` is switched off
(no `read_text('/etc/passwd')`, no `COPY … TO`, no `ATTACH`, no `INSTALL`: every file or
network access of DuckDB is refused, in the lake and outside it) and the configuration is
locked (`lock_configuration`: no `SET` can undo it). Only SELECT / EXPLAIN statements run;
anything else (CREATE, INSERT, COPY, SET, PRAGMA, …) is refused before it executes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from lakehouse.config import LakeConfig
from lakehouse.maintenance import list_tables
from lakehouse.tables import open_table
from toolrec.errors import LakeError

__all__ = ["check_read_only", "connect", "format_table", "sql"]

_NO_DOWNLOADS: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
# Applied after registration; the lock comes last (afterwards no setting can change).
_SANDBOX = ("SET enable_external_access = false", "SET lock_configuration = true")
_READ_ONLY = ("SELECT", "EXPLAIN")


def connect(
    config: LakeConfig,
    *,
    tables: Iterable[str] | None = None,
    versions: Mapping[str, int] | None = None,
) -> Any:
    """An in-memory DuckDB connection with the lake's tables registered by name
    (`versions` pins some of them to a Delta version: time travel in SQL), sandboxed: no
    file or network access, configuration locked."""
    import duckdb

    con = duckdb.connect(":memory:", config=_NO_DOWNLOADS)
    for name in tables if tables is not None else list_tables(config):
        version = (versions or {}).get(name)
        con.register(name, open_table(config, name, version=version).to_pyarrow_dataset())
    for statement in _SANDBOX:
        con.execute(statement)
    return con


def check_read_only(query: str) -> None:
    """Refuse (LakeError) a query with any statement that is not SELECT or EXPLAIN."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise LakeError(f"SQL does not parse: {exc}") from exc
    for statement in statements:
        kind = statement.type.name
        if kind not in _READ_ONLY:
            raise LakeError(f"`toolrec lake sql` is read-only: a {kind} statement is refused "
                            f"({statement.query.strip()[:60]!r}); use SELECT or EXPLAIN")


def sql(config: LakeConfig, query: str, *, versions: Mapping[str, int] | None = None) -> pa.Table:
    """Run the read-only `query` over the lake's tables; the result as an Arrow table."""
    import duckdb

    check_read_only(query)
    con = connect(config, versions=versions)
    try:
        relation = con.sql(query)  # None for statements without a result
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        known = ", ".join(list_tables(config)) or "none yet"
        raise LakeError(f"SQL failed: {exc} (tables: {known})") from exc
    finally:
        con.close()


def format_table(table: pa.Table, *, fmt: str = "table", max_width: int = 40) -> str:
    """Render a query result as an aligned text table, CSV or JSON lines."""
    rows = table.to_pylist()
    if fmt == "json":
        return "\n".join(json.dumps(row, default=str, ensure_ascii=False) for row in rows)
    if fmt == "csv":
        import io

        import pyarrow.csv as pacsv

        out = io.BytesIO()
        pacsv.write_csv(table, out)
        return out.getvalue().decode().rstrip("\n")
    if fmt != "table":
        raise LakeError(f"unknown output format {fmt!r}; use table, csv or json")
    names = table.column_names
    cells = [[_cell(row[n], max_width) for n in names] for row in rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    line = "  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, rule, *body, f"({len(rows)} rows)"])


def _cell(value: Any, max_width: int) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= max_width else text[: max_width - 1] + "…"
