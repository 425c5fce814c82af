"""The Generator on the tiny model: result contents, decoding, exploration, batching."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from generator.config import DecodingConfig, GeneratorConfig
from generator.generator import Generator, resolve_decoding
from generator.loading import ModelFilesError
from generator.prompt import TEMPLATE_VERSION, PromptInputs, PromptTool, render_prompt

pytestmark = pytest.mark.usefixtures("single_torch_thread")

INPUTS = PromptInputs(
    query="my battery is low",
    response="Your battery is at 12%.",
    recent=("open wifi settings",),
    tools=(PromptTool("battery.saver_on", "Battery saver", "", "turn on battery saver"),),
    context={"battery": "low"},
)
GREEDY = DecodingConfig(temperature=0.0, max_new_tokens=12)


@dataclass
class Link:
    tool_id: str | None
    score: float


class EveryTextLinker:
    """Stands in for retrieval's Retriever.link_many: links every text to one tool."""

    def link_many(self, texts: list[str]) -> list[Link]:
        return [Link("battery.saver_on", 0.5) for _ in texts]


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> Generator:
    return Generator.load(tiny_model_dir, config=GeneratorConfig(n_suggestions=3),
                          model_version="tiny-v1")


def test_result_carries_what_an_impression_records(generator: Generator) -> None:
    result = generator.generate(INPUTS, decoding=GREEDY)
    assert result.prompt == render_prompt(INPUTS, 3, generator.config)
    assert result.template_version == TEMPLATE_VERSION
    assert result.model_version == "tiny-v1"
    assert result.decoding["do_sample"] is False and result.decoding["num_candidates"] == 1
    assert result.decoding["explore"] is False and result.decoding["max_new_tokens"] == 12
    assert len(result.raw_texts) == 1 and len(result.suggestions) <= 3
    assert 0 < result.timings["new_tokens"] <= 12
    assert result.timings["prompt_tokens"] > 50
    assert result.timings["total_ms"] >= result.timings["generate_ms"] > 0
    assert [s["position"] for s in result.shown()] == list(range(1, len(result.suggestions) + 1))


def test_greedy_is_deterministic_and_seeded_sampling_reproducible(generator: Generator) -> None:
    assert generator.generate(INPUTS, decoding=GREEDY).raw_texts == generator.generate(
        INPUTS, decoding=GREEDY).raw_texts
    seeded = DecodingConfig(temperature=1.5, top_p=1.0, max_new_tokens=12, seed=3)
    first = generator.generate(INPUTS, decoding=seeded).raw_texts
    assert generator.generate(INPUTS, decoding=seeded).raw_texts == first
    other = DecodingConfig(temperature=1.5, top_p=1.0, max_new_tokens=12, seed=4)
    assert generator.generate(INPUTS, decoding=other).raw_texts != first


def test_candidates_and_exploration(generator: Generator) -> None:
    many = DecodingConfig(temperature=1.0, num_candidates=3, max_new_tokens=8, seed=1)
    result = generator.generate(INPUTS, decoding=many)
    assert len(result.raw_texts) == 3 and result.timings["batch_rows"] == 3
    explore = DecodingConfig(temperature=0.0, explore_rate=1.0, explore_temperature=1.3,
                             explore_candidates=2, max_new_tokens=8, seed=1)
    result = generator.generate(INPUTS, decoding=explore)
    assert result.decoding["explore"] is True and result.decoding["temperature"] == 1.3
    assert len(result.raw_texts) == 2
    # greedy never returns more than one candidate, whatever num_candidates says
    flat = generator.generate(INPUTS, decoding=GREEDY.model_copy(update={"num_candidates": 4}))
    assert len(flat.raw_texts) == 1


def test_explore_rate_is_a_probability() -> None:
    rng = random.Random(0)
    decoding = DecodingConfig(explore_rate=0.25)
    share = sum(resolve_decoding(decoding, rng)["explore"] for _ in range(4000)) / 4000
    assert 0.22 < share < 0.28
    assert not any(resolve_decoding(DecodingConfig(), rng)["explore"] for _ in range(100))


def test_batch_matches_single_requests(generator: Generator) -> None:
    other = PromptInputs(query="wake me up at 7")
    batch = generator.generate_batch([INPUTS, other], decoding=GREEDY)
    assert [r.prompt for r in batch] == [generator.render(INPUTS), generator.render(other)]
    singles = [generator.generate(i, decoding=GREEDY) for i in (INPUTS, other)]
    assert [r.raw_texts for r in batch] == [r.raw_texts for r in singles]


def test_linker_tags_suggestions(tiny_model_dir: Path) -> None:
    generator = Generator.load(tiny_model_dir, linker=EveryTextLinker())
    result = generator.generate(INPUTS, decoding=DecodingConfig(temperature=0.0,
                                                                max_new_tokens=24))
    assert all(s.tool_id == "battery.saver_on" for s in result.suggestions)


def test_concurrent_calls_are_serialized(generator: Generator) -> None:
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(
        generator.generate(INPUTS, decoding=GREEDY))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3
    assert len({r.raw_texts for r in results}) == 1  # type: ignore[attr-defined]


def test_missing_adapter_fails_clearly(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match=str(tmp_path / "v7")):
        Generator.load(tiny_model_dir, tmp_path / "v7")


def test_adapter_of_another_template_version_warns(
    tiny_sft: Any, tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import shutil

    old = tmp_path / "old-adapter"
    shutil.copytree(tiny_sft.adapter_dir, old)
    report = json.loads((old / "sft-report.json").read_text())
    (old / "sft-report.json").write_text(json.dumps({**report, "template_version": "gqr-v0"}))
    with caplog.at_level("WARNING", logger="generator.generator"):
        Generator.load(tiny_model_dir, tiny_sft.adapter_dir)
    assert not caplog.records
    with caplog.at_level("WARNING", logger="generator.generator"):
        Generator.load(tiny_model_dir, old)
    assert "trained on prompt template gqr-v0" in caplog.text
