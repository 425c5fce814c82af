"""The reward objective's reading of the samples table (pure parts of `trainer.listwise`);
the whole objective runs in `test_refresh.py` on the tiny model."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from bench.samples import synthetic_samples
from generator.prompt import parse_prompt
from trainer.listwise import _history, fit_logged, logged_lists, prompt_tool_ids
from trainer.reward import FEATURES, candidate_features


def _table(rows: list[dict]) -> pa.Table:  # type: ignore[type-arg]
    return pa.Table.from_pylist(rows)


def test_logged_lists_read_each_request_back_in_display_order() -> None:
    rows = synthetic_samples(40, seed=3)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    lists, skipped = logged_lists(_table(shuffled))
    assert skipped == 0
    assert sum(len(logged.shown.suggestions) for logged in lists) == len(rows)
    by_id = {logged.request_id: logged for logged in lists}
    for row in rows:
        logged = by_id[row["request_id"]]
        line = logged.shown.suggestions[row["position"] - 1]
        assert f"- {line.text}\n" == row["completion"] and line.tool_id == row["tool_id"]
        assert logged.clicked[row["position"] - 1] == row["clicked"]
        assert logged.weights[row["position"] - 1] == row["weight"]
        if row["position"] == 1:
            assert logged.rendered == row["prompt"]
    first = lists[0]
    assert first.prompt == parse_prompt(first.rendered)
    assert first.turn.startswith(first.prompt.query)
    assert [logged.closed_ts for logged in lists] == sorted(logged.closed_ts for logged in lists)


def test_requests_whose_rows_do_not_make_one_list_are_skipped() -> None:
    rows = synthetic_samples(24, seed=4)
    requests = sorted({row["request_id"] for row in rows})
    tampered = [dict(row, prompt=row["prompt"] + "x") if row["request_id"] == requests[0]
                and row["position"] == 2 else row for row in rows]
    foreign = [dict(row, prompt="<|im_start|>user\nhi<|im_end|>\n")
               if row["request_id"] == requests[1] else row for row in tampered]
    lists, skipped = logged_lists(_table(foreign))
    assert skipped == 2
    assert {logged.request_id for logged in lists} == set(requests[2:])


def test_prompt_tools_as_ids_and_the_logged_fit() -> None:
    lists, _ = logged_lists(_table(synthetic_samples(200, seed=5)))
    names = lists[0].prompt.tool_names
    ids = prompt_tool_ids(lists[0].prompt, {names[0]: "known.id"})
    assert ids == ("known.id", *names[1:])  # unknown names keep their place

    def encode(texts: list[str]) -> np.ndarray:
        return np.tile(np.eye(1, 4), (len(texts), 1))  # every cosine 1: relevance constant

    features = [candidate_features(logged.turn, [logged.shown],
                             tuple(line.tool_id or "" for line in logged.shown.suggestions),
                             encode)[0] for logged in lists]
    assert all(f.shape == (len(logged.shown.suggestions), len(FEATURES))
               for f, logged in zip(features, lists, strict=True))
    model = fit_logged(lists, features, l2=1.0)
    # the synthetic rows click tool suggestions (all on the list here) far more than plain
    # ones, which the fit must find
    on_list = np.concatenate(features)[:, FEATURES.index("rank1"):FEATURES.index("off_list")]
    coef = model.describe()
    assert on_list.any() and coef["rank1"] > 0.5 and coef["rank2"] > 0.5
    with pytest.raises(ValueError):
        fit_logged([], [np.zeros((0, len(FEATURES)))], l2=1.0)


def test_history_is_the_newest_readable_lists_of_other_requests() -> None:
    table = _table(synthetic_samples(120, seed=6))
    lists, _ = logged_lists(table)
    assert len(lists) > 4
    newest = _history(table, 3, exclude=set())
    assert [x.request_id for x in newest] == [x.request_id for x in lists[-3:]]
    skip = {lists[-1].request_id}
    assert [x.request_id for x in _history(table, 3, exclude=skip)] == [
        x.request_id for x in lists[-4:-1]]
    assert _history(table, 0, exclude=set()) == [] and _history(None, 3, exclude=set()) == []
