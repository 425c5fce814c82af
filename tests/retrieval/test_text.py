"""Pure text helpers: BM25, polarity, question detection, app-name abstraction."""

from __future__ import annotations

import numpy as np

from retrieval.apps import AppNames
from retrieval.catalog import Catalog
from retrieval.lexical import BM25, is_question, stem, tokenize
from retrieval.polarity import contradiction, text_sides, tool_side


def test_tokenize_keeps_on_off_and_stems() -> None:
    assert tokenize("Turn ON the Alarms, please!") == ["turn", "on", "alarm"]
    assert stem("photos") == "photo" and stem("batteries") == "battery"


def test_bm25_normalized_and_discriminative() -> None:
    bm = BM25(["turn wifi on", "turn wifi off", "set an alarm"])
    on = bm.scores("wifi on")
    assert on.argmax() == 0 and 0 < on.max() <= 1
    assert bm.scores("zzz unknown").tolist() == [0.0, 0.0, 0.0]
    assert np.all(bm.scores("alarm") <= 1)


def test_polarity_sides() -> None:
    # on/off also names start/stop for tools that have no on/off ("turn off the dryer")
    assert text_sides("turn the lights off") == {"on/off": 1, "start/stop": 1}
    assert text_sides("switch bluetooth on") == {"on/off": 0, "start/stop": 0}
    assert text_sides("start the vacuum and turn off the lights") == {"on/off": 1,
                                                                      "start/stop": 0}
    assert text_sides("cross bread off my list")["add/remove"] == 1
    assert text_sides("add milk to the list") == {"add/remove": 0}
    assert text_sides("disconnect my headphones") == {"connect/disconnect": 1}
    assert text_sides("the plane is taking off") == {}
    assert text_sides("set up my hotspot") == {}
    assert text_sides("make it quieter")["up/down"] == 1
    assert tool_side("home.lights.off") == ("on/off", 1)
    assert tool_side("home.lights.color") is None
    assert contradiction({"on/off": 1}, ("on/off", 0)) == 1.0
    assert contradiction({"on/off": 1}, ("on/off", 1)) == 0.0


def test_questions() -> None:
    assert is_question("what's the weather")
    assert is_question("is it going to rain?")
    assert not is_question("can you turn on wifi")
    assert not is_question("set a timer")


def test_app_names(catalog: Catalog) -> None:
    apps = AppNames.from_catalog(catalog)
    assert apps.generic("install instagram") == "install this app"
    assert apps.generic("open the twitter app") == "open the this app"
    assert apps.generic("zoom in on the map") is None  # everyday word, not the app
    assert apps.generic("join the google meet") == "join the this app"
    assert apps.find("stop candy crush notifications") == "candy crush"
