"""The said form of an utterance (`lexical.form_text`): its pure rules, and the ranking and
linking reading it (a leading filler or a final '?' changes nothing)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from retrieval.catalog import Catalog
from retrieval.lexical import form_text, is_question
from retrieval.retriever import Retriever


@pytest.mark.parametrize(("written", "said"), [
    ("hey, could you turn on the lights?", "could you turn on the lights"),
    ("um... what's my heart rate?", "what's my heart rate"),
    ("ok so, the shower water is cold", "the shower water is cold"),
    ("Alright! Well, set a timer", "set a timer"),
    ("uhh and erm yeah play jazz", "play jazz"),
    ("  wifi on??  ", "wifi on"),
])
def test_fillers_and_a_final_question_mark_go(written: str, said: str) -> None:
    assert form_text(written) == said
    assert form_text(said) == said  # idempotent


@pytest.mark.parametrize("text", ["um, ok", "hey!", "okay?", "  ", "", "so, well,"])
def test_a_filler_only_text_is_empty(text: str) -> None:
    assert form_text(text) == ""


@pytest.mark.parametrize("text", [
    "hi-fi mode on",  # a filler is a whole word before a space or punctuation, not '-'
    "uh-oh, my phone is dying",
    "umbrella weather today",
    "android settings",
    "okayish brightness",
    "so cold in here",  # "so" and "well" are fillers only with a comma
    "well done steak timer",
    "what is a question mark? explain",  # only a final '?' goes
])
def test_words_that_only_look_like_fillers_stay(text: str) -> None:
    assert form_text(text) == text


def test_a_wake_name_after_a_filler_stays() -> None:
    """The chosen reading of "ok google": the filler goes, the name stays — the catalog
    has no wake words and "google" can name the app the request is about."""
    assert form_text("ok google, set a timer") == "google, set a timer"
    assert form_text("hey google") == "google"


def test_the_question_form_is_grammar_not_punctuation() -> None:
    assert not is_question(form_text("could you turn on the lights?"))
    assert not is_question(form_text("hey, set a timer?"))
    assert is_question(form_text("um, what's my battery level?"))
    assert is_question(form_text("is my flight on time?"))


def _examples(catalog: Catalog) -> list[str]:
    ids = ["clock.alarm.set", "connectivity.wifi.on", "battery.usage", "home.lights.off",
           "navigation.drive"]
    return [catalog.get(i).examples[0] for i in ids]


@pytest.mark.parametrize("dress", [lambda t: f"hey, {t}", lambda t: f"{t}?",
                                   lambda t: f"um, ok so, {t}??"])
def test_ranking_ignores_a_leading_filler_and_a_final_question_mark(
        retriever: Retriever, dress: Callable[[str], str]) -> None:
    for text in _examples(retriever.catalog):
        plain, dressed = retriever.search(text, k=5), retriever.search(dress(text), k=5)
        assert [(h.tool_id, h.score) for h in dressed] == [(h.tool_id, h.score) for h in plain]
        assert retriever.link(dress(text)) == retriever.link(text), text


def test_recent_queries_are_read_in_their_said_form(retriever: Retriever) -> None:
    plain = retriever.search("the other one too", recent=["turn on wifi"], k=3)
    dressed = retriever.search("the other one too", recent=["um, turn on wifi?", "hey"], k=3)
    assert [(h.tool_id, h.score) for h in dressed] == [(h.tool_id, h.score) for h in plain]


def test_a_filler_only_text_ranks_and_links_nothing(retriever: Retriever) -> None:
    assert retriever.search("um, ok") == []
    assert retriever.link_many(["hey", "turn on wifi"])[0].tool_id is None
    assert retriever.link_many(["hey", "turn on wifi"])[1] == retriever.link("turn on wifi")
