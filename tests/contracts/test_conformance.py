"""Every stage contract checked the same way.

Round trip: an impression and its feedback as bytes (the producer's and serving's factories)
→ parsed events → the real calibration (`streams.window`: open, attribute, close) → samples
→ the Delta `samples` table (Arrow columns derived from `Sample`) → read back unchanged →
the training rows the trainer builds (label = clicked, weight from the calibration).

Schema evolution, per contract: adding an optional field to the model keeps every payload
written before valid (for the sample: and adds a nullable column at the end of its derived
Arrow schema; the events table keeps impressions and feedback as JSON payloads); a
payload without a required field is refused with that field named; an unknown field in an
event is refused (a producer must bump the schema tag), while a model announcement ignores
one (serving only takes it as a hint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import BaseModel, create_model

from contracts.arrow import arrow_fields
from contracts.events import (
    Feedback,
    Impression,
    Sample,
    new_feedback,
    new_impression,
    parse_event,
    validate_payload,
)
from contracts.models import BASE_VERSION, ModelAnnouncement, parse_announcement
from lakehouse.config import LakeConfig
from lakehouse.tables import read_table
from lakehouse.writer import write_samples
from streams.config import StreamsConfig
from streams.window import close, new_global_state, new_user_state, on_feedback, on_impression
from toolrec.errors import ValidationError
from trainer.config import TrainingConfig
from trainer.data import build_training_set

TS = 1_767_225_600_000
SUGGESTIONS = [{"position": 1, "text": "turn on battery saver", "tool_id": "battery.saver.on"},
               {"position": 2, "text": "what is the weather"},
               {"position": 3, "text": "open wifi settings", "tool_id": "wifi.settings"}]


def _impression() -> Impression:
    return new_impression(
        request_id="r-1", user_id="p_user", session_id="s-1", model_version=BASE_VERSION,
        template_version="t1", prompt="<prompt>", query="battery low", ts=TS, event_id="e-1",
        suggestions=SUGGESTIONS, context={"battery": 12}, decoding={"temperature": 0.7},
    )


def _feedback() -> Feedback:
    return new_feedback(request_id="r-1", user_id="p_user", type="click", position=1,
                        ts=TS + 500, event_id="f-1")


def _calibrated(impression_bytes: bytes, feedback_bytes: bytes) -> list[Sample]:
    """The samples the streams worker emits for these two messages (one partition)."""
    cfg = StreamsConfig()
    impression, feedback = parse_event(impression_bytes), parse_event(feedback_bytes)
    assert isinstance(impression, Impression) and isinstance(feedback, Feedback)
    user = new_user_state(0)
    assert on_impression(user, impression, 0, 0, cfg) == "accepted"
    on_feedback(user, feedback, 1, feedback_bytes.decode(), cfg)
    return close(user, new_global_state(), impression, cfg)


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return _calibrated(_impression().to_json_bytes(), _feedback().to_json_bytes())


def test_bytes_to_event_to_sample_to_delta_to_training_row(samples: list[Sample],
                                                           tmp_path: Path) -> None:
    assert [s.position for s in samples] == [1, 2, 3]
    assert [s.clicked for s in samples] == [True, False, False]
    assert all(s.request_id == "r-1" and s.prompt for s in samples)

    lake = LakeConfig(root=str(tmp_path / "lake"))
    write_samples(lake, [s.model_dump(by_alias=True) for s in samples])
    table = read_table(lake, "samples")
    contract = pa.schema(arrow_fields(Sample))
    assert table.select(contract.names).schema.equals(contract)
    back = sorted((Sample.model_validate(row) for row in table.select(contract.names)
                   .to_pylist()), key=lambda s: s.position)
    assert back == samples

    config = TrainingConfig(holdout_share=0.0, replay_share=0.0, min_per_class=1)
    rows = {r["sample_id"]: r for r in build_training_set(table, None, config).table.to_pylist()}
    for sample in samples:
        row = rows[sample.sample_id]
        assert (row["prompt"], row["completion"]) == (sample.prompt, sample.completion)
        assert row["label"] is sample.clicked
        assert row["weight_calibrated"] == pytest.approx(sample.weight) and row["weight"] > 0


def _payloads(samples: list[Sample]) -> dict[str, tuple[type[BaseModel], dict[str, Any]]]:
    return {
        "impression": (Impression, _impression().model_dump(by_alias=True)),
        "feedback": (Feedback, _feedback().model_dump(by_alias=True)),
        "sample": (Sample, samples[0].model_dump(by_alias=True)),
    }


EVENTS = ("impression", "feedback", "sample")


def _required(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()
            if info.is_required()]


@pytest.mark.parametrize("contract", EVENTS)
def test_an_added_optional_field_keeps_old_payloads_valid(contract: str,
                                                          samples: list[Sample]) -> None:
    model, payload = _payloads(samples)[contract]
    evolved = create_model(f"{model.__name__}Next", __base__=model,
                           added_later=(str | None, None))
    assert evolved.model_validate(payload).added_later is None  # type: ignore[attr-defined]
    if model is not Sample:  # impressions and feedback reach the lake as JSON payloads
        return
    old, new = pa.schema(arrow_fields(model)), pa.schema(arrow_fields(evolved))
    assert pa.schema(list(new)[: len(old)]).equals(old)
    assert new.field("added_later").nullable and len(new) == len(old) + 1


@pytest.mark.parametrize(("contract", "field"),
                         [(c, f) for c, m in (("impression", Impression), ("feedback", Feedback),
                                              ("sample", Sample)) for f in _required(m)])
def test_a_removed_required_field_is_refused_with_its_name(contract: str, field: str,
                                                           samples: list[Sample]) -> None:
    _, payload = _payloads(samples)[contract]
    payload = {k: v for k, v in payload.items() if k != field}
    with pytest.raises(ValidationError) as caught:
        validate_payload(payload)
    assert caught.value.field == field or field in str(caught.value)


@pytest.mark.parametrize("contract", EVENTS)
def test_an_unknown_field_in_an_event_is_refused(contract: str, samples: list[Sample]) -> None:
    _, payload = _payloads(samples)[contract]
    with pytest.raises(ValidationError, match="added_later"):
        validate_payload({**payload, "added_later": "x"})


def test_model_announcements_evolve_as_hints() -> None:
    message = ModelAnnouncement(version="v3", adapter_path="/a/v3", ts=TS)
    body = message.model_dump(by_alias=True)
    assert parse_announcement(message.to_bytes()) == message
    assert parse_announcement(json.dumps({**body, "added_later": 1}).encode()) == message
    without_version = {k: v for k, v in body.items() if k != "version"}
    assert parse_announcement(json.dumps(without_version).encode()) is None
