"""`protect_untrusted` skips the redaction only when every id is a verified pseudonym; any
other event gets exactly what `protect_event` gives it (issue 12's fast path, issue 15's
rule)."""

from __future__ import annotations

import pytest

from contracts.events import (
    Feedback,
    Impression,
    is_pseudonym,
    protect_event,
    protect_untrusted,
    pseudonymize,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
GOOD = {name: pseudonymize(name, KEY) for name in ("user", "session", "request")}
FORGED = "p_" + "0" * 32  # the right shape, a wrong MAC
ALIEN = pseudonymize("user", OTHER_KEY)  # a pseudonym of another key
ID_FIELDS = {"user_id": "user", "session_id": "session", "request_id": "request"}


def _event(kind: str, **ids: str) -> Impression | Feedback:
    values = {field: ids.get(field, GOOD[name]) for field, name in ID_FIELDS.items()}
    if kind == "feedback":
        del values["session_id"]
        return Feedback.model_validate({"schema": "feedback/1", "event_id": "e1", "ts": 5,
                                        "type": "click", "position": 1, **values})
    return Impression.model_validate({
        "schema": "impression/1", "event_id": "e1", "ts": 5, "model_version": "m",
        "template_version": "t", "prompt": "call me at 555-123-4567", "query": "q",
        "suggestions": [{"position": 1, "text": "mail bob@example.com"}], **values})


@pytest.mark.parametrize("kind", ["impression", "feedback"])
def test_verified_ids_return_the_event_itself(kind: str) -> None:
    event = _event(kind)
    assert protect_untrusted(event, KEY) is event


@pytest.mark.parametrize("kind", ["impression", "feedback"])
@pytest.mark.parametrize("field", ["user_id", "session_id", "request_id"])
@pytest.mark.parametrize("value", ["raw-id", FORGED, ALIEN, "p_short"])
def test_any_unverified_id_gets_the_full_protection(kind: str, field: str, value: str) -> None:
    if kind == "feedback" and field == "session_id":
        pytest.skip("feedback carries no session id")
    event = _event(kind, **{field: value})
    protected = protect_untrusted(event, KEY)
    assert protected == protect_event(event, KEY)
    assert protected is not event
    assert all(is_pseudonym(getattr(protected, name), KEY)
               for name in ID_FIELDS if hasattr(protected, name))
