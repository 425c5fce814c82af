"""The logistic tool linker (retrieval.linker): fitting, thresholds, features, the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval.evaluate import SPOKEN_WEIGHT
from retrieval.lexical import form_text
from retrieval.linker import (
    FEATURES,
    LinkModel,
    Ranking,
    answers_questions,
    false_link_threshold,
    features,
    fit_link_model,
    fit_logistic,
    load_link_model,
    precision_threshold,
)
from retrieval.retriever import Retriever
from toolrec.errors import RetrievalError


def _ranking(**kw: float | bool) -> Ranking:
    base: dict[str, float | bool] = dict(best=0.8, runner_up=0.6, query_sim=0.7, lexical=0.3,
                                         polarity=0.0, answers=False, respelled=False)
    return Ranking(**{**base, **kw})  # type: ignore[arg-type]


def test_fit_logistic_separates_a_separable_feature() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] > 0).astype(float)
    w, _ = fit_logistic(x, y, l2=0.1)
    assert w[0] > 3 * abs(w[1])


def test_precision_threshold_is_the_lowest_reaching_the_target() -> None:
    prob = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    y = np.array([1, 1, 0, 1, 0], dtype=float)
    assert precision_threshold(prob, y, 0.75) == 0.6  # 3 of 4 above 0.6 are right
    assert precision_threshold(prob, y, 1.0) == 0.8
    assert precision_threshold(prob, np.zeros(5), 0.9) == 0.9  # unreachable: highest


def test_a_sample_weight_counts_as_copies_of_the_row() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 3))
    y = (x[:, 0] + rng.normal(size=120) > 0).astype(float)
    weight = np.where(np.arange(120) < 40, 3.0, 1.0)
    copies = np.r_[np.arange(120), np.arange(40), np.arange(40)]
    w, b = fit_logistic(x, y, sample_weight=weight)
    w2, b2 = fit_logistic(x[copies], y[copies])
    assert np.allclose(w, w2, atol=1e-6) and b == pytest.approx(b2, abs=1e-6)
    prob = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([1, 0, 1, 1], dtype=float)
    assert precision_threshold(prob, labels, 0.75) == 0.6  # 3 of 4
    # the wrong link weighs 3: precision at 0.6 is 3/6, at 0.9 it is 1
    heavy = np.array([1.0, 3.0, 1.0, 1.0])
    assert precision_threshold(prob, labels, 0.75, sample_weight=heavy) == 0.9


def test_features_read_the_form_of_the_text() -> None:
    q = dict(zip(FEATURES, features("how much battery do I have", _ranking(answers=True)),
                 strict=True))
    assert q["question"] == 1 and q["question_x_answers"] == 1 and q["wh_how"] == 1
    d = dict(zip(FEATURES, features("what is a podcast", _ranking()), strict=True))
    assert d["definition"] == 1 and d["question_x_answers"] == 0
    c = dict(zip(FEATURES, features("turn on wifi please", _ranking()), strict=True))
    assert c["question"] == 0 and c["polite"] == 1 and c["margin"] == pytest.approx(0.2)
    assert answers_questions("Shows how much battery is left.")
    assert not answers_questions("Turns on Wi-Fi.")


def _form(text: str) -> dict[str, float]:
    return dict(zip(FEATURES, features(text, _ranking()), strict=True))


@pytest.mark.parametrize(("written", "said"), [
    ("could you turn on the lights?", "could you turn on the lights"),
    ("hey, can you mute me?", "can you mute me"),
    ("um what's my heart rate", "what's my heart rate"),
    ("ok so, the shower water is cold", "the shower water is cold"),
    ("wifi on??", "wifi on"),
])
def test_form_is_read_without_fillers_or_a_final_question_mark(written: str, said: str) -> None:
    """The tuning rows are transcribed speech: a typed '?' or a spoken filler must not
    change the form the linker reads."""
    assert form_text(written) == said
    assert _form(written) == _form(said)


def test_a_polite_request_with_a_question_mark_is_not_a_question() -> None:
    assert _form("could you turn on the lights?")["question"] == 0
    assert _form("is my flight on time?")["question"] == 1  # grammar, not punctuation
    assert form_text("so cold in here") == "so cold in here"  # "so" is a filler with a comma


def test_number_feature_and_its_question_cross() -> None:
    assert _form("what's 15 percent of 80")["number_x_question"] == 1
    assert _form("set a timer for ten minutes")["number"] == 1
    assert _form("set a timer for ten minutes")["number_x_question"] == 0
    assert _form("how many moons does jupiter have")["number"] == 0


@pytest.mark.parametrize(("text", "served"), [
    ("write a riddle about nfc", 1), ("tell me about the printing press", 1),
    ("can you recommend a laptop", 1), ("help me write a birthday card message", 1),
    ("could you write me a story", 1), ("sing me a song", 1),
    # requests a tool serves: a message or note to write, something to tell
    ("write an email to bob", 0), ("write down milk", 0), ("can you write a note", 0),
    ("compose a text to mum", 0), ("tell me the time", 0), ("can you tell me the weather", 0),
])
def test_self_served_marks_what_the_assistant_does_itself(text: str, served: int) -> None:
    assert _form(text)["self_served"] == served


def test_false_link_threshold_links_at_most_the_capped_share_of_no_tool_rows() -> None:
    prob = np.array([0.9, 0.7, 0.5, 0.3])
    assert false_link_threshold(prob, 0.0) > 0.9  # none may link
    assert 0.7 < false_link_threshold(prob, 0.25) <= np.nextafter(0.7, 1)  # only the 0.9
    assert false_link_threshold(prob, 1.0) == 0.0  # no limit
    heavy = np.array([3.0, 1.0, 1.0, 1.0])  # the 0.9 row alone is half the weight
    assert false_link_threshold(prob, 0.25, sample_weight=heavy) > 0.9


def test_the_false_link_cap_raises_the_threshold_only_when_it_binds() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, len(FEATURES)))
    no_tool = rng.random(400) < 0.3
    y = ((x[:, 0] + 0.8 * rng.normal(size=400) > 0) & ~no_tool).astype(float)
    # a loose precision target, which alone links many no-tool rows
    plain = fit_link_model(x, y, np.arange(400), target_precision=0.6)
    loose = fit_link_model(x, y, np.arange(400), target_precision=0.6, no_tool=no_tool,
                           max_false_links=1.0)
    tight = fit_link_model(x, y, np.arange(400), target_precision=0.6, no_tool=no_tool,
                           max_false_links=0.01)
    assert loose.threshold == plain.threshold < tight.threshold
    linked_no_tool = [tight.probability(f) >= tight.threshold for f in x[no_tool]]
    assert np.mean(linked_no_tool) <= 0.05  # in-sample; the cap held out-of-fold (0.01)


def test_model_round_trips_and_rejects_other_features(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, len(FEATURES)))
    y = (x[:, 0] + 0.1 * rng.normal(size=200) > 0).astype(float)
    model = fit_link_model(x, y, np.arange(200), target_precision=0.9, meta={"rows": 200})
    path = tmp_path / "linker.json"
    path.write_text(json.dumps(model.to_json()))
    again = load_link_model(path)
    assert again.threshold == pytest.approx(model.threshold, abs=1e-4)
    assert again.probability(x[0]) == pytest.approx(model.probability(x[0]), abs=1e-4)
    broken = {**model.to_json(), "features": ["best"]}
    path.write_text(json.dumps(broken))
    with pytest.raises(RetrievalError, match="fit-linker"):
        load_link_model(path)


def test_packaged_linker_was_fitted_on_tuning_splits_only() -> None:
    model: LinkModel = load_link_model()
    assert set(model.meta["fitted_on"]) == {"catalog", "spoken", "forms", "negatives",
                                            "generated"}
    assert "dev split" in model.meta["fitted_on"]["catalog"]
    assert "tune split" in model.meta["fitted_on"]["forms"]
    assert "tune+report splits" in model.meta["fitted_on"]["spoken"]  # the spent half too
    assert 0 < model.threshold < 1
    assert model.meta["spoken_weight"] == SPOKEN_WEIGHT  # as `toolrec tools fit-linker` fits


def test_questions_to_answer_tools_link(retriever: Retriever) -> None:
    """No blanket question penalty: a question a tool answers links to it."""
    for text, tool_id in [("how much battery is left", "battery.level"),
                          ("what's on my calendar today", "calendar.today")]:
        assert retriever.link(text).tool_id == tool_id, (text, retriever.link(text))


def test_reranker_only_reorders_the_top(retriever: Retriever) -> None:
    """With the reranker on, the top candidates are permuted; nothing else moves."""
    on = Retriever(retriever.config.model_copy(update={"rerank": True}),
                   catalog=retriever.catalog, encoder=retriever.encoder)
    for q in ("turn it up", "what's the weather tomorrow", "call mom"):
        plain = [h.tool_id for h in retriever.search(q, k=10)]
        reranked = on.search(q, k=10)
        assert {h.tool_id for h in reranked} == set(plain)
        assert all(abs(sum(h.parts.values()) - h.score) < 1e-4 for h in reranked)


def test_conditional_logit_learns_which_feature_picks_the_gold() -> None:
    from retrieval.rerank import fit_conditional_logit

    rng = np.random.default_rng(2)
    groups = [rng.normal(size=(10, 2)) for _ in range(200)]
    gold = [int(np.argmax(x[:, 1] + 0.1 * rng.normal(size=10))) for x in groups]
    w = fit_conditional_logit(groups, gold, l2=0.1)
    assert w[1] > 3 * abs(w[0])


def test_generated_negatives_are_deterministic_and_leave_tool_kinds_out() -> None:
    from retrieval.negatives import no_tool_texts

    texts = no_tool_texts(300)
    assert texts == no_tool_texts(300) and len(set(texts)) == 300
    served = ("weather", "search", "look up", "convert", "translate", "what time", "news")
    assert not [t for t in texts if any(word in t for word in served)]


def test_generated_negatives_do_not_link(retriever: Retriever) -> None:
    """The fitted linker refuses most generated no-tool texts (they are in its fit)."""
    from retrieval.negatives import no_tool_texts

    links = retriever.link_many(no_tool_texts(100))
    assert sum(lk.tool_id is not None for lk in links) <= 5
