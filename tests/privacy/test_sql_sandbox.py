"""`toolrec lake sql` is read-only and sandboxed: the probes of issue 16 fail with a clear
error and leave the lake readable."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lakehouse import read_table, write_samples
from lakehouse.config import LakeConfig
from lakehouse.sql import sql
from tests.lakehouse.helpers import sample
from toolrec.cli import cli
from toolrec.errors import LakeError


@pytest.fixture
def lake(tmp_path: Path) -> LakeConfig:
    config = LakeConfig(root=str(tmp_path / "lake"))
    write_samples(config, [sample(i) for i in range(6)])
    return config


def _parquet(lake: LakeConfig) -> Path:
    return next(Path(lake.root, "samples").rglob("*.parquet"))


@pytest.mark.parametrize("query", [
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('{parquet}')",
    "SELECT * FROM glob('/etc/*')",
])
def test_no_file_is_readable_through_duckdb(lake: LakeConfig, query: str) -> None:
    with pytest.raises(LakeError, match="(?i)permission|disabled"):
        sql(lake, query.format(parquet=_parquet(lake)))


@pytest.mark.parametrize("query", [
    "COPY (SELECT 1 AS x) TO '{tmp}/out.csv'",
    "COPY samples TO '{parquet}' (FORMAT parquet)",
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO samples SELECT * FROM samples",
    "SET enable_external_access = true",
    "ATTACH '{tmp}/x.duckdb' AS x",
    "INSTALL httpfs",
    "SELECT 1; COPY (SELECT 1) TO '{tmp}/second.csv'",
])
def test_writes_and_setting_changes_are_refused(lake: LakeConfig, tmp_path: Path,
                                                query: str) -> None:
    parquet = _parquet(lake)
    before = parquet.read_bytes()
    with pytest.raises(LakeError, match="read-only"):
        sql(lake, query.format(tmp=tmp_path, parquet=parquet))
    assert parquet.read_bytes() == before and not list(tmp_path.glob("*.csv"))
    assert read_table(lake, "samples").num_rows == 6  # still readable


def test_the_sandbox_holds_even_past_the_statement_check(lake: LakeConfig,
                                                         tmp_path: Path) -> None:
    """The connection itself refuses file access and setting changes (defence in depth)."""
    from lakehouse.sql import connect

    con = connect(lake)
    try:
        for statement in (f"COPY (SELECT 1) TO '{tmp_path}/x.csv'",
                          "SET enable_external_access = true",
                          "SELECT * FROM read_text('/etc/passwd')"):
            with pytest.raises(Exception, match="(?i)permission|cannot change|disabled"):
                con.execute(statement)
        assert con.sql("SELECT count(*) FROM samples").fetchall() == [(6,)]
    finally:
        con.close()


def test_cli_reports_the_refusal(lake: LakeConfig) -> None:
    result = CliRunner().invoke(cli, ["lake", "sql", "SELECT * FROM read_text('/etc/passwd')"],
                                env={"TOOLREC_LAKE__ROOT": lake.root})
    assert result.exit_code != 0 and "root:" not in result.output
