"""De-duplication in bounded memory (lakehouse.writer) on real Delta tables in tmp dirs.

The writer holds the keys of recent rows only (`lake.dedup_cache_keys`); a row older than
they cover is checked in the table. These tests push rows below that horizon and start
fresh writers, and check that no key is ever written twice while the set stays bounded.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from contracts.events import validate_payload
from lakehouse import read_table, table_uri
from lakehouse.config import LakeConfig
from lakehouse.tables import RowBuffer, spec_of
from lakehouse.writer import AppendResult, DeltaAppender
from tests.lakehouse.helpers import DAY_MS, T0, impression, sample

Payload = Callable[[int], dict[str, Any]]
TABLES = [("samples", sample), ("events", impression)]  # each payload's event time is T0 + i


def _lake(tmp_path: Path, cache_keys: int) -> LakeConfig:
    return LakeConfig(root=str(tmp_path / "lake"), dedup_cache_keys=cache_keys)


def _rows(name: str, payloads: Iterable[dict[str, Any]]) -> pa.Table:
    buffer = RowBuffer(spec_of(name))
    for payload in payloads:
        buffer.add_model(validate_payload(payload), raw=None, source=None)
    return buffer.to_table(ingest_ts=int(time.time() * 1000))


def _append(appender: DeltaAppender, make: Payload, indices: Iterable[int]) -> AppendResult:
    return appender.append(_rows(appender.spec.name, [make(i) for i in indices]))


def _assert_each_key_once(lake: LakeConfig, name: str, expected: int) -> None:
    key = spec_of(name).key
    counts = Counter(read_table(lake, name, columns=[key]).column(key).to_pylist())
    assert len(counts) == expected and max(counts.values()) == 1, counts.most_common(3)


@pytest.mark.parametrize(("name", "make"), TABLES)
def test_a_duplicate_older_than_the_cache_is_still_dropped(
    tmp_path: Path, name: str, make: Payload
) -> None:
    lake = _lake(tmp_path, cache_keys=100)
    appender = DeltaAppender(lake, name)
    for start in range(0, 300, 60):
        _append(appender, make, range(start, start + 60))
    floor = appender.dedup_stats().floor
    assert floor is not None and floor > T0 + 100  # rows 0..99 are only in the table now

    key = spec_of(name).key
    late = make(7) | {key: f"late-{key}"}  # a new key with an old event time
    rows = [make(5), make(7), late, make(250), *(make(i) for i in range(300, 320))]
    result = appender.append(_rows(name, rows))
    assert (result.duplicates, result.rows_written) == (3, 21)
    _assert_each_key_once(lake, name, 321)


def test_the_cache_never_exceeds_its_bound(tmp_path: Path) -> None:
    lake = _lake(tmp_path, cache_keys=250)
    appender = DeltaAppender(lake, "samples")
    held = []
    for start in range(0, 4000, 100):
        _append(appender, sample, range(start, start + 100))
        held.append(appender.dedup_stats().keys)
    stats = appender.dedup_stats()
    assert max(held) <= 250 and stats.peak_keys <= 250
    assert stats.floor == T0 + 3800  # the two newest batches are held, older ones left
    # a batch larger than the whole set: none of it is held, the floor passes it
    _append(appender, sample, range(4000, 4300))
    assert appender.dedup_stats() == type(stats)(keys=0, peak_keys=stats.peak_keys,
                                                 floor=T0 + 4300)  # fmt: skip
    again = _append(appender, sample, range(3950, 4350))  # 350 known, all below the floor
    assert (again.duplicates, again.rows_written) == (350, 50)
    _assert_each_key_once(lake, "samples", 4350)


@pytest.mark.parametrize(("name", "make"), TABLES)
def test_a_fresh_writer_drops_duplicates_from_the_table(
    tmp_path: Path, name: str, make: Payload
) -> None:
    """A restarted sink starts with an empty set whose floor is above the table's newest
    event time: every older row is checked in the table."""
    lake = _lake(tmp_path, cache_keys=500_000)
    first = DeltaAppender(lake, name)
    for start in range(0, 300, 100):
        _append(first, make, range(start, start + 100))
    fresh = DeltaAppender(lake, name)
    result = _append(fresh, make, [10, *range(250, 400)])
    assert (result.duplicates, result.rows_written) == (51, 100)
    assert fresh.dedup_stats().floor == T0 + 300  # newest row before: T0 + 299
    assert fresh.dedup_stats().keys == 100  # 300..399, written above the floor
    _assert_each_key_once(lake, name, 400)


def test_files_without_statistics_count_to_the_end_of_their_date(tmp_path: Path) -> None:
    lake = _lake(tmp_path, cache_keys=1000)
    _append(DeltaAppender(lake, "samples"), sample, range(100))  # creates the table
    DeltaTable(table_uri(lake, "samples")).alter.set_table_properties(
        {"delta.dataSkippingNumIndexedCols": "0"}  # later files carry no column statistics
    )
    _append(DeltaAppender(lake, "samples"), sample, range(100, 200))
    fresh = DeltaAppender(lake, "samples")
    result = _append(fresh, sample, [5, 150, 250])
    assert (result.duplicates, result.rows_written) == (2, 1)
    assert fresh.dedup_stats().floor == (T0 // DAY_MS + 1) * DAY_MS  # the next midnight
    _assert_each_key_once(lake, "samples", 201)
