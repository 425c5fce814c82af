"""Bootstrap SFT: the generated training set (real SysToolKit catalog) and a LoRA run on the
tiny model whose output parses."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from generator.config import DecodingConfig, GeneratorConfig
from generator.generator import Generator
from generator.loading import load_model
from generator.parser import parse_suggestions
from generator.prompt import PromptInputs, format_response, render_prompt
from retrieval.catalog import load_catalog
from retrieval.context import DeviceContext, active_hints
from toolrec.errors import TrainerError
from trainer.sft import REPORT_FILE, collate, completion_loss, tokenize_example
from trainer.sft_data import build_sft_examples, context_from_hints, retriever_search

pytestmark = pytest.mark.usefixtures("single_torch_thread")

CATALOG = load_catalog()
CONFIG = GeneratorConfig()


@pytest.fixture(scope="module")
def examples() -> list[Any]:
    return build_sft_examples(CATALOG.tools, 300, config=CONFIG, seed=0)


def test_examples_are_well_formed_and_grounded(examples: list[Any]) -> None:
    by_id = {t.id: t for t in CATALOG.tools}
    for ex in examples:
        n = len(ex.targets)
        assert 1 <= n <= CONFIG.n_suggestions
        assert ex.prompt == render_prompt(ex.inputs, n, CONFIG)
        assert ex.completion == format_response(ex.targets)
        parsed = parse_suggestions(ex.completion, query=ex.inputs.query, n=n,
                                   avoid=ex.inputs.recent)
        assert [s.text for s in parsed.suggestions] == list(ex.targets) and parsed.format_valid
        shown = {t.tool_id for t in ex.inputs.tools}
        assert set(ex.target_tools) <= shown  # every target comes from a listed tool
        for text, tool_id in zip(ex.targets, ex.target_tools, strict=True):
            assert text in by_id[tool_id].examples
        assert ex.inputs.query not in ex.targets
    assert sum(len(ex.targets) >= 2 for ex in examples) > 0.9 * len(examples)
    assert len({ex.inputs.tools[0].tool_id for ex in examples}) > 150  # broad coverage


def test_contexts_are_valid_device_contexts_that_activate_the_hints(examples: list[Any]) -> None:
    with_context = [ex for ex in examples if ex.inputs.context]
    assert 0.7 * len(examples) < len(with_context) < 0.9 * len(examples)
    for ex in with_context:
        DeviceContext.parse(ex.inputs.context)  # what serving accepts
    rng = random.Random(0)
    for hints in (["battery_low", "!charging"], ["night", "headset"], ["app:media", "wifi"],
                  ["non_english"], ["!wifi", "driving"]):
        active = active_hints(DeviceContext.parse(context_from_hints(hints, rng)))
        assert {h for h in hints if not h.startswith("!")} <= set(active)
        assert not {h[1:] for h in hints if h.startswith("!")} & set(active)


def test_generation_is_deterministic_per_seed() -> None:
    a = build_sft_examples(CATALOG.tools, 20, seed=5)
    assert a == build_sft_examples(CATALOG.tools, 20, seed=5)
    assert a != build_sft_examples(CATALOG.tools, 20, seed=6)


class FakeRetriever:
    """Stands in for retrieval's Retriever.search: always the same three tools."""

    def __init__(self, tools: list[Any]) -> None:
        self.tools = tools
        self.calls: list[dict[str, Any]] = []

    def search(self, query: str, **kwargs: Any) -> list[Any]:
        self.calls.append({"query": query, **kwargs})
        return self.tools[: kwargs["k"]]


def test_search_hook_decides_the_shown_tools() -> None:
    fixed = [CATALOG.get(i) for i in ("battery.saver.on", "display.brightness.down")
             if i in CATALOG] or CATALOG.tools[:2]
    retriever = FakeRetriever(fixed)
    made = build_sft_examples(CATALOG.tools, 10, seed=1, search=retriever_search(retriever))
    assert len(retriever.calls) >= 10
    assert {"response", "recent", "context", "k"} <= set(retriever.calls[0])
    for ex in made:
        assert [t.tool_id for t in ex.inputs.tools] == [t.id for t in fixed]


def test_a_catalog_without_examples_fails_clearly() -> None:
    with pytest.raises(TrainerError, match="tools with example utterances"):
        build_sft_examples(CATALOG.tools[:1], 5)


def test_tokenize_masks_the_prompt(tiny_model_dir: Path, examples: list[Any]) -> None:
    _, tokenizer = load_model(tiny_model_dir)
    ids, labels = tokenize_example(tokenizer, examples[0])
    learned = [i for i, lab in zip(ids, labels, strict=True) if lab != -100]
    assert tokenizer.decode(learned) == examples[0].completion
    assert labels[: len(ids) - len(learned)] == [-100] * (len(ids) - len(learned))


def test_sft_on_the_tiny_model_learns_the_list_format(tiny_sft: Any, tiny_model_dir: Path) -> None:
    report = tiny_sft.report
    assert report.steps == tiny_sft.config.sft.max_steps
    assert report.final_loss < 0.85 * report.first_loss
    assert (tiny_sft.adapter_dir / "adapter_config.json").is_file()
    saved = json.loads((tiny_sft.adapter_dir / REPORT_FILE).read_text())
    assert saved["template_version"] == report.template_version and saved["config"]["lora_r"]

    generator = Generator.load(tiny_model_dir, tiny_sft.adapter_dir, config=tiny_sft.config)
    held_out = build_sft_examples(tiny_sft.tools, 4, config=tiny_sft.config, seed=99)
    greedy = DecodingConfig(temperature=0.0, max_new_tokens=24)
    for result in generator.generate_batch([ex.inputs for ex in held_out], decoding=greedy):
        assert result.raw_text.startswith("- "), result.raw_text
        assert result.suggestions, result.raw_text
        parsed = parse_suggestions(result.raw_text, query="", n=3, complete=True)
        assert parsed.malformed == 0, result.raw_text


def test_untrained_tiny_model_does_not_produce_the_format(tiny_model_dir: Path) -> None:
    """The control for the test above: without the adapter the format does not appear."""
    generator = Generator.load(tiny_model_dir)
    result = generator.generate(PromptInputs(query="turn on wifi"),
                                decoding=DecodingConfig(temperature=0.0, max_new_tokens=12))
    assert not result.format_valid


def test_completion_loss_equals_the_full_right_padded_loss(
    tiny_model_dir: Path, examples: list[Any]
) -> None:
    """The left-padded, last-positions-only loss is the ordinary causal-LM loss."""
    import torch

    model, tokenizer = load_model(tiny_model_dir)
    rows = [tokenize_example(tokenizer, ex) for ex in examples[:4]]
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    right = {
        "input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows]),
        "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in rows]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows]),
    }
    with torch.no_grad():
        expected = model(**right).loss
        got = completion_loss(model, collate(rows, pad))
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)


def test_bootstrap_reuses_only_an_adapter_made_with_the_same_settings(
    tiny_sft: Any, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from trainer import sft as sft_module

    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_sft.adapter_dir, adapter)
    config = tiny_sft.config.model_copy(update={"model_dir": tiny_model_dir,
                                                "bootstrap_adapter_dir": adapter})
    trained: list[int] = []
    monkeypatch.setattr(sft_module, "bootstrap_smollm2", lambda path: Path(path))
    monkeypatch.setattr(sft_module, "run_sft",
                        lambda *a, **k: trained.append(1) or tiny_sft.report)
    result = sft_module.bootstrap(config, tools=tiny_sft.tools, progress=False)
    assert result.reused_adapter and result.report == tiny_sft.report and not trained
    changed = config.model_copy(update={"sft": config.sft.model_copy(update={"max_steps": 81})})
    result = sft_module.bootstrap(changed, tools=tiny_sft.tools, progress=False)
    assert not result.reused_adapter and trained == [1]
    sft_module.bootstrap(config, tools=tiny_sft.tools, force=True, progress=False)
    assert trained == [1, 1]


def test_the_bundled_smollm2_adapter_is_installed_only_for_its_own_settings(
    tmp_path: Path,
) -> None:
    """A fresh machine gets the shipped adapter of the default settings instead of ≈36 min
    of SFT; changed settings never get a stale one."""
    from generator.config import BootstrapSFTConfig
    from trainer.sft import BUNDLED_SMOLLM2_ADAPTER, _install_bundled, reusable_adapter

    defaults = GeneratorConfig().sft
    report = _install_bundled(tmp_path / "adapter", defaults)
    assert report is not None and report.template_version == "gqr-chatml-v2"
    assert reusable_adapter(tmp_path / "adapter", defaults) == report
    shipped = (BUNDLED_SMOLLM2_ADAPTER / "adapter_model.safetensors").read_bytes()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes() == shipped

    changed = BootstrapSFTConfig(**{**defaults.model_dump(), "learning_rate": 1e-3})
    assert _install_bundled(tmp_path / "other", changed) is None
    assert not (tmp_path / "other").exists()
