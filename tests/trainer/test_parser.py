"""The output parser: splitting, cleaning, every drop reason, merging, tool tagging."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from generator.parser import Suggestion, normalize, parse_candidates, parse_suggestions
from generator.prompt import END_OF_TURN, format_response
from toolrec.errors import RetrievalError


@dataclass
class FakeLink:
    tool_id: str | None
    score: float


class FakeLinker:
    """Stands in for retrieval's Retriever.link_many: links texts mentioning a keyword."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def link_many(self, texts: list[str]) -> list[FakeLink]:
        self.calls.append(list(texts))
        return [
            FakeLink("battery.saver_on", 0.9) if "battery" in t else FakeLink(None, 0.1)
            for t in texts
        ]


def texts(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.text for s in result.suggestions]


def reasons(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {d.text: d.reason for d in result.dropped}


def test_well_formed_output_round_trips() -> None:
    shown = ["turn on battery saver", "open wifi settings", "set an alarm for 7"]
    result = parse_suggestions(format_response(shown), query="my battery is low", n=3)
    assert texts(result) == shown
    assert result.format_valid and result.dropped == () and result.malformed == 0


def test_every_drop_reason() -> None:
    raw = (
        "- Turn on battery saver.\n"
        "-   \n"
        "- My battery is LOW!\n"           # echo of the query
        "- turn on   battery saver\n"      # duplicate
        "- " + "very " * 20 + "long\n"    # too long
        "- open recent apps\n"           # echo of a recent query (avoid)
        "- share my location\n"
        "- take a screenshot\n"           # surplus
        "- open the cam"                 # truncated: no end of turn
    )
    result = parse_suggestions(raw, query="my battery is low", n=2,
                               avoid=["Open recent apps"])
    assert texts(result) == ["Turn on battery saver", "share my location"]
    assert reasons(result) == {
        "": "empty",
        "My battery is LOW!": "echo",
        "turn on battery saver": "duplicate",
        ("very " * 20 + "long"): "too_long",
        "open recent apps": "echo",
        "take a screenshot": "surplus",
        "open the cam": "truncated",
    }
    assert not result.format_valid  # the generation did not end on its own


def test_word_order_echo_and_limits() -> None:
    result = parse_suggestions(
        "- low battery my\n- one two three four\n" + END_OF_TURN,
        query="my battery low", n=4, max_words=3,
    )
    assert texts(result) == []
    assert reasons(result) == {"low battery my": "echo", "one two three four": "too_long"}
    assert not result.format_valid
    chars = parse_suggestions("- abcdefghij\n", query="q", n=1, max_chars=9)
    assert reasons(chars) == {"abcdefghij": "too_long"}


def test_malformed_lists_are_salvaged_but_not_format_valid() -> None:
    raw = '1. open wifi settings\n2) "call mom"\n* lower the volume\nplay music\n' + END_OF_TURN
    result = parse_suggestions(raw, query="q", n=5)
    assert texts(result) == ["open wifi settings", "call mom", "lower the volume", "play music"]
    assert result.malformed == 4 and not result.format_valid


def test_numbers_that_are_content_are_kept() -> None:
    result = parse_suggestions("- 10-minute timer\n- 2:30 alarm\n", query="q", n=3)
    assert texts(result) == ["10-minute timer", "2:30 alarm"]


def test_template_leak_and_chat_markers() -> None:
    raw = "- open wifi\nTools:\nQuery: hello\n- ok<|im_end|>\n<|im_start|>user\n- after end"
    result = parse_suggestions(raw, query="hello there", n=5)
    assert texts(result) == ["open wifi", "ok"]
    assert [d.reason for d in result.dropped] == ["template", "template"]
    assert not result.format_valid


def test_completion_flag_overrides_inference() -> None:
    assert texts(parse_suggestions("- a b\n- c d", query="q", n=3, complete=True)) == [
        "a b", "c d"]
    # the token cap hit right after a delimiter: every line is whole
    assert texts(parse_suggestions("- a b\n", query="q", n=3, complete=False)) == ["a b"]
    assert texts(parse_suggestions("- a b\n- c", query="q", n=3, complete=False)) == ["a b"]
    # whole lines, but the model never ended its turn: not format-valid
    capped = parse_suggestions("- a b\n- c d\n", query="q", n=1, complete=False)
    assert texts(capped) == ["a b"] and not capped.ended and not capped.format_valid
    assert parse_suggestions("- a b\n" + END_OF_TURN, query="q", n=1).format_valid


def test_empty_and_garbage() -> None:
    for raw in ["", "\n\n", END_OF_TURN, "-\n*\n1.\n"]:
        result = parse_suggestions(raw, query="q", n=3)
        assert result.suggestions == () and not result.format_valid


def test_candidates_merge_round_robin_without_duplicates() -> None:
    first = format_response(["a one", "a two", "shared"])
    second = format_response(["Shared!", "b one"])
    result = parse_candidates([first, second], query="q", n=4)
    assert texts(result) == ["a one", "Shared!", "a two", "b one"]
    assert reasons(result) == {"shared": "duplicate"}


def test_tool_tagging_is_one_batched_call() -> None:
    linker = FakeLinker()
    result = parse_suggestions(
        format_response(["battery saver on", "call mom", "battery saver on"]),
        query="q", n=3, linker=linker,
    )
    assert result.suggestions == (
        Suggestion("battery saver on", "battery.saver_on", 0.9),
        Suggestion("call mom", None, 0.1),
    )
    assert linker.calls == [["battery saver on", "call mom"]]
    assert parse_suggestions("", query="q", n=3, linker=linker).suggestions == ()
    assert len(linker.calls) == 1  # nothing to link, no call


def test_linker_must_answer_every_text() -> None:
    class Short:
        def link_many(self, texts: list[str]) -> list[FakeLink]:
            return []

    with pytest.raises(RetrievalError, match="one LinkResult per text"):
        parse_suggestions("- a\n", query="q", n=1, linker=Short())


def test_suggestions_are_delimiter_safe() -> None:
    result = parse_suggestions("- a\tb <|x\n", query="q", n=2, complete=True)
    assert texts(result) == ["a b"]
    result = parse_suggestions("- a\tb |> c\n", query="q", n=2)
    assert texts(result) == ["a b > c"]
    assert normalize("  Turn ON, the Wi-Fi! ") == "turn on the wi fi"
