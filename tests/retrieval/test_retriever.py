"""Ranking, context-awareness, conversational signals, linking and odd inputs, on the real
catalog and encoder."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.config import RetrievalConfig
from retrieval.context import DeviceContext
from retrieval.retriever import Retriever
from toolrec.errors import ValidationError


def ids(hits) -> list[str]:
    return [h.tool_id for h in hits]


def rank(hits, tool_id: str) -> int | None:
    return ids(hits).index(tool_id) + 1 if tool_id in ids(hits) else None


@pytest.mark.parametrize(
    ("query", "tool_id"),
    [
        ("turn on wifi", "connectivity.wifi.on"),
        ("switch bluetooth off", "connectivity.bluetooth.off"),
        ("wake me up at six thirty", "clock.alarm.set"),
        ("make the screen darker", "display.brightness.down"),
        ("take me to the airport", "navigation.drive"),
        ("lights off in the kitchen", "home.lights.off"),
        ("uninstall tiktok", "system.app.uninstall"),
    ],
)
def test_known_phrasings_rank_first(retriever: Retriever, query: str, tool_id: str) -> None:
    assert ids(retriever.search(query, k=5))[0] == tool_id


def test_parts_sum_to_score(retriever: Retriever) -> None:
    hits = retriever.search("make the screen darker", response="Sure.", recent=["hi"],
                            context={"battery": 12}, k=5)
    assert len(hits) == 5
    assert {"query", "lexical", "polarity", "form", "response", "recent", "context",
            "rerank"} == set(hits[0].parts)
    for h in hits:
        assert sum(h.parts.values()) == pytest.approx(h.score, abs=1e-4)
        assert h.tool.id == h.tool_id
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_low_battery_lifts_battery_saver(retriever: Retriever) -> None:
    plain = retriever.search("my battery is almost empty", k=10)
    low = retriever.search("my battery is almost empty", context={"battery": 8}, k=10)
    assert ids(low)[0] == "battery.saver.on"
    assert rank(low, "battery.saver.on") <= rank(plain, "battery.saver.on")
    saver = next(h for h in low if h.tool_id == "battery.saver.on")
    assert saver.parts["context"] > 0.15


def test_low_battery_lifts_power_friendly_display_tools(retriever: Retriever) -> None:
    plain = retriever.search("make the screen darker", k=5)
    low = retriever.search("make the screen darker", context={"battery": 12}, k=5)
    assert rank(low, "display.dark_mode.on") < rank(plain, "display.dark_mode.on")
    assert ids(low)[0] == "display.brightness.down"


def test_context_does_not_change_unrelated_requests(retriever: Retriever) -> None:
    for query in ("set an alarm for 7", "play some jazz", "call my brother"):
        plain = retriever.search(query, k=3)
        busy = retriever.search(query, context={"battery": 5, "hour": 2, "driving": True,
                                                "network": "offline"}, k=3)
        assert ids(plain)[0] == ids(busy)[0]
        assert "battery.saver.on" not in ids(busy)


def test_charging_penalizes_battery_saver(retriever: Retriever) -> None:
    unplugged = retriever.search("battery saver", context={"battery": 15}, k=5)
    plugged = retriever.search("battery saver", context={"battery": 15, "charging": True}, k=5)
    def saver(hits):
        return next(h for h in hits if h.tool_id == "battery.saver.on")
    assert saver(plugged).parts["context"] < 0 < saver(unplugged).parts["context"]


def test_foreground_app_disambiguates(retriever: Retriever) -> None:
    music = retriever.search("louder", context={"foreground_app": "com.spotify.music"}, k=3)
    assert ids(music)[0] == "sound.volume.media.up"
    call = retriever.search("louder", context={"foreground_app": "com.google.android.dialer"},
                            k=3)
    assert ids(call)[0] == "sound.volume.call.up"


def test_context_alone_suggests_tools(retriever: Retriever) -> None:
    assert retriever.search("") == []
    assert ids(retriever.search("", context={"battery": 7}, k=3))[0] == "battery.saver.on"
    night = retriever.search("", context=DeviceContext(hour=23), k=5)
    assert "dnd.bedtime.on" in ids(night)
    assert all(h.parts["query"] == 0 for h in night)


def test_response_and_recent_queries_steer(retriever: Retriever) -> None:
    after_music = retriever.search("what's next", recent=["play my workout playlist"], k=3)
    after_meeting = retriever.search("what's next", recent=["when is my next meeting"], k=3)
    assert ids(after_music)[0].startswith("media.")
    assert ids(after_meeting)[0].startswith("calendar.")
    timer = retriever.search("do it", response="I can set a timer for your pasta, 10 minutes.")
    assert ids(timer)[0] == "clock.timer.set"


def test_ann_matches_exact(retriever: Retriever) -> None:
    exact = Retriever(retriever.config.model_copy(update={"search_mode": "exact"}),
                      catalog=retriever.catalog, encoder=retriever.encoder)
    assert not exact.index.rebuilt  # same catalog: the persisted index is loaded
    for q in ("dim the screen", "who called me", "show photos of my dog", "order pizza"):
        assert ids(retriever.search(q, k=5)) == ids(exact.search(q, k=5))


def test_linking(retriever: Retriever) -> None:
    for text, tool_id in [("Turn on battery saver", "battery.saver.on"),
                          ("Set an alarm for 7 am", "clock.alarm.set"),
                          ("Open Bluetooth settings", "connectivity.bluetooth.settings"),
                          ("Navigate home", "navigation.home")]:
        assert retriever.link(text).tool_id == tool_id, text
    for text in ("who won the world cup in 2018", "tell me a joke", "why is the sky blue",
                 "what's the capital of australia"):
        result = retriever.link(text)
        assert result.tool_id is None, (text, result)
        assert result.best_id is not None


def test_link_many_equals_link(retriever: Retriever) -> None:
    texts = ["turn on wifi", "", "tell me a joke", "install instagram", "play some jazz"]
    assert retriever.link_many(texts) == [retriever.link(t) for t in texts]


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_input(retriever: Retriever, text: str) -> None:
    assert retriever.search(text) == []
    assert retriever.link(text).tool_id is None
    assert retriever.link(text).score == 0.0


def test_very_long_input(retriever: Retriever) -> None:
    text = "please turn on the wifi " + "and also some unrelated words " * 2000
    hits = retriever.search(text, k=3)
    assert len(hits) == 3
    assert retriever.link(text).best_id is not None


@pytest.mark.parametrize("text", ["schalte das WLAN ein", "打开蓝牙", "включи фонарик", "🔦🔦"])
def test_non_english_input_gives_a_clear_result(retriever: Retriever, text: str) -> None:
    hits = retriever.search(text, k=3)
    assert len(hits) == 3 and all(np.isfinite(h.score) for h in hits)
    assert retriever.link(text).tool_id is None or retriever.link(text).score > 0


def test_bad_arguments(retriever: Retriever) -> None:
    with pytest.raises(ValidationError, match="k"):
        retriever.search("wifi", k=0)
    with pytest.raises(ValidationError, match="query"):
        retriever.search(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="context.battery"):
        retriever.search("wifi", context={"battery": 101})


def test_encode_is_normalized(retriever: Retriever) -> None:
    vectors = retriever.encode(["turn on wifi", "enable wi-fi", "bake a cake"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_construction_is_lazy(tmp_path) -> None:
    lazy = Retriever(RetrievalConfig(cache_dir=tmp_path / "never"))
    assert lazy._index is None and lazy._encoder is None
    assert not (tmp_path / "never").exists()
