"""The sink's columnar fast path never accepts what the contract rejects, and yields the same
values as the contract for what it accepts."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.events import Sample
from lakehouse.fastparse import FastParser
from lakehouse.tables import contract_schema
from tests.lakehouse.helpers import sample


def _dumps(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def _without(key: str) -> bytes:
    return _dumps({k: v for k, v in sample(5).items() if k != key})


VALID = [
    _dumps(sample(1)),  # tool_id set
    _dumps(sample(2)),  # tool_id null
    _dumps(sample(3) | {"prompt": 'émoji 🔋 "quoted" \\ back\tslash', "completion": ""}),
    _dumps(sample(4) | {"weight": 2, "user_ctr": 0}),  # integers where floats belong
    _dumps(sample(6) | {"impression_ts": 1, "closed_ts": 10**14 - 1, "position": -3}),
    _dumps(sample(7) | {"sample_id": "x" * 200}),
    json.dumps(sample(8)).encode(),  # \\u escapes instead of UTF-8
    _dumps({"position": 1, **{k: v for k, v in sample(9).items() if k != "position"}}),  # order
]
INVALID = [
    b"{not json",
    b"",
    None,
    b"[]",
    b"null",  # a block starting with a top-level null crashes pyarrow 26's reader
    b" null",
    b"null " + _dumps(sample(32)),
    _without("tool_id"),  # required even though nullable: a missing key is not null
    _without("weight"),
    _dumps(sample(10) | {"weight": None}),
    _dumps(sample(11) | {"request_id": ""}),
    _dumps(sample(12) | {"sample_id": "x" * 201}),
    _dumps(sample(13) | {"prompt": "p" * 20_001}),
    _dumps(sample(14) | {"impression_ts": 0}),
    _dumps(sample(15) | {"closed_ts": 10**14}),
    _dumps(sample(16) | {"schema": "sample/2"}),
    _dumps(sample(17) | {"extra": 1}),
    _dumps(sample(19) | {"position": 1.5}),
    _dumps(sample(21) | {"user_id": {"nested": True}}),
    _dumps(sample(22) | {"tool_id": ""}),
    _dumps(sample(25)).replace(b'"m1"', b'"\xff\xfe"', 1),  # invalid UTF-8
    _dumps(sample(26)).replace(b'"m1"', b'"\\ud800"', 1),  # lone surrogate
    _dumps(sample(27)) + b" " + _dumps(sample(28)),  # two objects on one line
]
# Accepted by the contract, but only by its slow path (the fast path must hand them over).
SLOW_BUT_VALID = [
    _without("schema"),  # the contract's default fills it in
    json.dumps(sample(30), indent=2).encode(),  # several lines
    _dumps(sample(33)).replace(b", ", b",\r", 1),  # a carriage return as whitespace
    b" " + _dumps(sample(34)) + b"\n",  # surrounding whitespace
    _dumps(sample(31) | {"position": "3"}),  # pydantic's lax mode coerces numeric strings
    _dumps(sample(18) | {"clicked": 1}),
    _dumps(sample(20) | {"weight": "1.0"}),
    json.dumps(sample(23) | {"weight": float("nan")}).encode(),  # the contract allows NaN / inf
    json.dumps(sample(24) | {"weight": float("inf")}).encode(),
    _dumps(sample(29)).replace(b'"weight"', b'"weight": 1, "weight"', 1),  # duplicate key: last
]


def _contract_accepts(raw: bytes | None) -> bool:
    try:
        Sample.model_validate_json(raw or b"")
    except Exception:  # noqa: BLE001 - any rejection counts
        return False
    return True


def test_the_case_lists_are_what_they_claim() -> None:
    assert all(_contract_accepts(r) for r in VALID + SLOW_BUT_VALID)
    assert not any(_contract_accepts(r) for r in INVALID)


@pytest.mark.parametrize("shuffle", [False, True])
def test_fast_path_accepts_only_contract_valid_rows_with_contract_values(shuffle: bool) -> None:
    parser = FastParser(Sample, contract_schema("samples"))
    assert parser.enabled
    filler = [_dumps(sample(100 + i)) for i in range(40)]
    raws = filler + VALID + INVALID + SLOW_BUT_VALID
    if shuffle:
        raws = raws[::-1]
    table, accepted, slow = parser.parse(raws, max_bytes=65_536)
    assert sorted(accepted + slow) == list(range(len(raws)))
    assert accepted == sorted(accepted)  # the table keeps the records' order (the sink's runs)
    for index, row in zip(accepted, table.to_pylist(), strict=True):
        assert row == Sample.model_validate_json(raws[index]).model_dump(by_alias=True)
    accepted_raws = {raws[i] for i in accepted}
    assert not accepted_raws & set(INVALID)
    assert set(VALID) | set(filler) <= accepted_raws  # the common case stays fast


def test_oversized_records_take_the_slow_path() -> None:
    parser = FastParser(Sample, contract_schema("samples"))
    big = _dumps(sample(1) | {"prompt": "p" * 5000})
    _, accepted, slow = parser.parse([_dumps(sample(0)), big], max_bytes=2048)
    assert (accepted, slow) == ([0], [1])


def test_models_the_fast_path_cannot_mirror_get_none() -> None:
    class Checked(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: str = Field(pattern="^x")  # a keyword the fast path does not know

    class Validated(BaseModel):
        a: str

        @field_validator("a")
        @classmethod
        def _upper(cls, value: str) -> str:
            return value.upper()

    import pyarrow as pa

    schema = pa.schema([pa.field("a", pa.string())])
    for model in (Checked, Validated):
        parser = FastParser(model, schema)
        assert not parser.enabled
        assert parser.parse([b'{"a": "x"}'], max_bytes=100)[2] == [0]


def test_a_batch_of_several_reader_blocks_keeps_order_and_isolates_bad_records() -> None:
    """Batches above the reader's block size are parsed block-parallel by Arrow."""
    parser = FastParser(Sample, contract_schema("samples"))
    raws = [_dumps(sample(i) | {"prompt": "p" * 500}) for i in range(4000)]  # ≈ 3.5 MB
    raws[2500] = _dumps(sample(2500) | {"position": "first"})
    raws[3100] = json.dumps(sample(3100), indent=1).encode()
    table, accepted, slow = parser.parse(raws, max_bytes=65_536)
    assert slow == [2500, 3100]
    assert table.column("sample_id").to_pylist() == [sample(i)["sample_id"] for i in accepted]
