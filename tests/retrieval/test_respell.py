"""Sound-alike respelling against the catalog vocabulary (retrieval.respell)."""

from __future__ import annotations

import pytest

from retrieval.respell import Respeller, phonetic_key

VOCAB = ["turn on bluetooth", "flashlight on", "open the equalizer", "set a timer",
         "send a message", "turn on wifi", "wifi settings", "open instagram", "enable it",
         "make the light blue"]


@pytest.mark.parametrize("a, b", [("wifi", "whyfi"), ("flash", "flesh"),
                                  ("equalizer", "equaleyeser"), ("message", "massage"),
                                  ("timer", "timeer")])
def test_sound_alikes_share_a_key(a: str, b: str) -> None:
    assert phonetic_key(a) == phonetic_key(b)


@pytest.mark.parametrize("heard, meant", [
    ("turn on blue tooth", "turn on bluetooth"),     # letters join to a catalog word
    ("flash light on", "flashlight on"),
    ("turn off the flesh light", "turn off the flashlight"),  # unknown word, same sound
    ("open the equal eyes er", "open the equalizer"),  # three words sound like one
    ("send a massage", "send a message"),
    ("open insta gram", "open instagram"),
])
def test_respells_misrecognised_words(heard: str, meant: str) -> None:
    assert Respeller(VOCAB).respell(heard) == meant


def test_leaves_known_words_alone() -> None:
    r = Respeller(VOCAB)
    assert r.respell("turn on wifi") is None
    assert r.respell("") is None
    assert r.respell("on blue") is None  # two known words never join into "enable"
