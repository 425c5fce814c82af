"""The fast engine (CTranslate2, `generator.fast`) against the PyTorch engine on the gate's
prompts, with the session's tiny model and its SFT (`tiny_start`, tests/conftest.py).

- float32 conversion: greedy suggestions identical to PyTorch, prompt by prompt.
- int8 conversion (what serving runs): greedy can differ in a few tokens (quantized
  weights change near-tied logits), so the test holds it to the gate's metrics instead:
  format-valid rate and relevance within 0.01 of PyTorch.
- Exploration keeps working: sampled candidates, the decoding recorded (a seed does not make
  the fast engine's sampling reproducible; greedy is deterministic); rows stop once the
  asked-for lines are complete.
- Two replicas (`inter_threads=2`, what two serving workers load) generate two batches from
  two threads at the same time, with the greedy output of one replica run one at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def engines(tiny_start: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from generator.config import GeneratorConfig
    from generator.fast import FastGenerator, convert_model
    from generator.generator import Generator

    config = GeneratorConfig(model_dir=tiny_start.model_dir, **tiny_start.generator_overrides)
    out = tmp_path_factory.mktemp("engines")
    built: dict[str, Any] = {"config": config, "torch": Generator.load(
        tiny_start.model_dir, tiny_start.adapter_dir, config=config, model_version="v1")}
    for quantization in ("float32", "int8"):
        path = convert_model(tiny_start.model_dir, tiny_start.adapter_dir,
                             out / quantization, quantization=quantization)
        built[quantization] = FastGenerator.load_converted(
            path, config=config, model_version="v1", compute_type=quantization, threads=1)
        built[f"{quantization}_dir"] = path
    return built


@pytest.fixture(scope="module")
def evaluator(engines: dict[str, Any]) -> Any:
    from retrieval import RetrievalConfig, Retriever
    from trainer.config import TrainingConfig
    from trainer.evaluate import ModelEvaluator

    retriever = Retriever(RetrievalConfig())
    return ModelEvaluator(TrainingConfig(eval_prompts=16), engines["config"],
                          encoder=retriever.encode)


def _texts(results: list[Any]) -> list[list[str]]:
    return [[s.text for s in r.suggestions] for r in results]


def _raw(results: list[Any]) -> list[tuple[str, ...]]:
    return [r.raw_texts for r in results]


def _same_tokens(fast: list[Any], reference: list[Any]) -> list[bool]:
    """Per request: the fast engine wrote what PyTorch wrote, up to where it stopped (it
    stops once the asked-for lines are complete; PyTorch runs to a stop token or the cap)."""
    return [all(b.startswith(a) for a, b in zip(f, r, strict=True))
            for f, r in zip(_raw(fast), _raw(reference), strict=True)]


def test_float32_conversion_is_greedy_identical_to_pytorch(
        engines: dict[str, Any], evaluator: Any) -> None:
    reference, ref_results = evaluator.score_generator(engines["torch"])
    fast, fast_results = evaluator.score_generator(engines["float32"])
    assert all(_same_tokens(fast_results, ref_results))  # token for token
    assert _texts(fast_results) == _texts(ref_results)
    assert fast["format_valid_rate"] == reference["format_valid_rate"]


def _assert_quality_parity(reference: dict[str, Any], fast: dict[str, Any]) -> None:
    """int8 is no worse than PyTorch, in the gate's terms (`trainer.evaluate.gate`: a
    quality metric may not fall more than its tolerance below the reference, and rising is
    no regression). int8 flips near-tied tokens, and which ones depends on the CPU's int8
    kernels, so on a few prompts it can also come out ahead: SmolLM2's relevance was 0.314
    against 0.305 on session 10's machine and 0.329 against 0.305 on an AVX2-only one."""
    assert abs(fast["format_valid_rate"] - reference["format_valid_rate"]) <= 0.01, (
        fast, reference)
    if reference["relevance"] is None or fast["relevance"] is None:
        # the tiny model's greedy lists hold no usable line (its SFT teaches the format,
        # not when to write text): then neither side has suggestions to score
        assert fast["suggestions_per_request"] == reference["suggestions_per_request"] == 0
        return
    assert fast["relevance"] >= reference["relevance"] - 0.01, (fast, reference)


def test_int8_engine_matches_pytorch_quality_on_the_gate_prompts(
        engines: dict[str, Any], evaluator: Any) -> None:
    reference, _ = evaluator.score_generator(engines["torch"])
    fast, _ = evaluator.score_generator(engines["int8"])
    _assert_quality_parity(reference, fast)
    # Not asserted: how many greedy lists are the same to the token. It depends on the
    # CPU's int8 kernels (at least 8 of 16 on session 10's machine, 4 of 16 on an AVX2-only
    # core, 2026-12-03); the float32 conversion is checked token for token above.


SMOLLM2 = Path("models/smollm2-135m-instruct")
SMOLLM2_SFT = Path("models/smollm2-135m-instruct-sft")


@pytest.mark.slow
@pytest.mark.skipif(not (SMOLLM2 / "config.json").is_file()
                    or not (SMOLLM2_SFT / "adapter_config.json").is_file(),
                    reason="SmolLM2 and its SFT adapter are not in models/ (toolrec models "
                    "bootstrap --sft)")
def test_smollm2_int8_engine_matches_pytorch_quality_on_the_gate_prompts(
        tmp_path: Path) -> None:
    """The served model itself (≈1 min: one conversion, two engines over 6 prompts).
    Measured 2026-12-02: format-valid 1.0 / 1.0, relevance 0.305 (PyTorch) vs 0.314
    (int8), 2 of 6 greedy lists identical (int8 flips near-tied tokens)."""
    from generator.config import GeneratorConfig
    from generator.fast import FastGenerator, convert_model
    from generator.generator import Generator
    from retrieval import RetrievalConfig, Retriever
    from trainer.config import TrainingConfig
    from trainer.evaluate import ModelEvaluator

    config = GeneratorConfig(model_dir=SMOLLM2)
    evaluator = ModelEvaluator(TrainingConfig(), config,
                               encoder=Retriever(RetrievalConfig()).encode)
    reference, _ = evaluator.score_generator(Generator.load(SMOLLM2, SMOLLM2_SFT, config=config))
    path = convert_model(SMOLLM2, SMOLLM2_SFT, tmp_path / "int8", quantization="int8")
    fast, _ = evaluator.score_generator(FastGenerator.load_converted(path, config=config))
    _assert_quality_parity(reference, fast)


def test_exploration_samples_candidates_and_logs_its_decoding(
        engines: dict[str, Any]) -> None:
    """Sampling works on the fast engine; a seed is not reproducible there (its sampler's
    random engine is per worker thread, seeded once: see generator.fast), greedy is."""
    from generator.config import DecodingConfig
    from generator.prompt import PromptInputs

    fast = engines["int8"]
    explore = DecodingConfig(temperature=1.0, num_candidates=2, explore_rate=1.0,
                             explore_temperature=1.2, explore_candidates=3, max_new_tokens=24)
    inputs = PromptInputs(query="my battery is low", response="Your battery is at 12%.")
    first = fast.generate(inputs, decoding=explore)
    assert first.decoding["explore"] is True and first.decoding["temperature"] == 1.2
    assert first.decoding["num_candidates"] == 3 and len(first.raw_texts) == 3
    assert len(set(first.raw_texts)) > 1  # candidates are sampled independently
    draws = {fast.generate(inputs, decoding=explore).raw_texts for _ in range(3)}
    assert len(draws) > 1
    greedy = DecodingConfig(temperature=0.0, max_new_tokens=24)
    assert len({fast.generate(inputs, decoding=greedy).raw_texts for _ in range(3)}) == 1


def test_rows_stop_once_the_asked_lines_are_complete(engines: dict[str, Any]) -> None:
    from generator.config import DecodingConfig
    from generator.prompt import PromptInputs

    # sampled: the tiny model's greedy lists are bare "-" lines, which do not count
    long = DecodingConfig(temperature=1.0, max_new_tokens=120)
    inputs = PromptInputs(query="turn on wifi", response="Wi-Fi is on.")
    stopped_early = 0
    for n in (1, 2, 1, 2):
        result = engines["int8"].generate(inputs, n=n, decoding=long)
        lines = [line for line in result.raw_text.split("\n") if line.strip(" -")]
        assert len(lines) <= n, result.raw_text
        assert result.timings["static_prefix_tokens"] > 0
        stopped_early += result.timings["new_tokens"] < 120
    assert stopped_early


def test_the_line_callback_holds_no_reference_to_the_generator(engines: dict[str, Any]) -> None:
    """CTranslate2 releases the callback in its worker thread; were it the last owner of the
    generator, the model's destructor would join its own thread and abort the process (seen
    in bench.serving after a hot swap)."""
    import gc

    fast = engines["int8"]
    counter = fast._line_counter(2, 3)
    reachable = gc.get_referents(*(cell.cell_contents for cell in counter.__closure__ or ()))
    owners = [cell.cell_contents for cell in counter.__closure__ or ()] + reachable
    assert not any(o is fast or o is fast.model for o in owners)


def _halves_at_once(fast: Any, inputs: list[Any], decoding: Any) -> list[list[Any]]:
    """Each half of `inputs` as one generate_batch call, the two calls from two threads."""
    import threading

    halves = [inputs[: len(inputs) // 2], inputs[len(inputs) // 2:]]
    results: list[list[Any]] = [[], []]

    def run(i: int) -> None:
        results[i] = fast.generate_batch(halves[i], decoding=decoding)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.parametrize(("replicas", "met"), [(2, [True, True]), (1, [False, False])])
def test_two_replicas_generate_two_batches_at_once_with_the_same_greedy_output(
        engines: dict[str, Any], evaluator: Any, replicas: int, met: list[bool]) -> None:
    """With one replica (the control) the second call queues inside CTranslate2 although
    the generator's lock is released: the first call's barrier times out."""
    from generator.config import DecodingConfig
    from generator.fast import FastGenerator
    from tests.generator.meeting import Meeting

    fast = FastGenerator.load_converted(engines["int8_dir"], config=engines["config"],
                                        model_version="v1", threads=1, inter_threads=replicas)
    fast.model = meeting = Meeting(fast.model, wait_s=30.0 if replicas > 1 else 2.0)
    greedy = DecodingConfig(temperature=0.0, num_candidates=1, explore_rate=0.0, seed=0,
                            max_new_tokens=24)
    inputs = evaluator.eval_inputs()
    together = _halves_at_once(fast, inputs, greedy)
    assert meeting.met == met
    one_at_a_time = [engines["int8"].generate_batch(half, decoding=greedy)
                     for half in (inputs[: len(inputs) // 2], inputs[len(inputs) // 2:])]
    assert [_raw(r) for r in together] == [_raw(r) for r in one_at_a_time]
    assert [_texts(r) for r in together] == [_texts(r) for r in one_at_a_time]


def test_a_missing_or_broken_conversion_fails_with_a_clear_error(tmp_path: Path) -> None:
    from generator.fast import FastGenerator
    from generator.loading import ModelFilesError

    with pytest.raises(ModelFilesError, match="no CTranslate2 model"):
        FastGenerator.load_converted(tmp_path)
    for name in ("model.bin", "config.json", "engine.json"):
        (tmp_path / name).write_text("garbage")
    with pytest.raises(ModelFilesError, match="corrupt"):
        FastGenerator.load_converted(tmp_path)
