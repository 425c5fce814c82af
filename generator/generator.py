"""The suggestion generator that serving calls: prompt → model → parsed, tool-tagged list.

`Generator` wraps one causal LM (optionally with a LoRA adapter merged in). A call renders
the GQR prompt (`generator.prompt`), samples one or more candidate lists, parses and merges
them (`generator.parser`) and returns a `GenerationResult` carrying everything an impression
records: the rendered prompt, the template version, the model version, the decoding used,
the suggestions with their linked tools, plus the raw text and timings.

Exploration (GQR appendix C, "randomness in online decoding") is configured by
`DecodingConfig`: temperature / top-p / top-k sampling, several diverse candidates merged
round-robin, and an `explore_rate` share of requests that sample hotter with more
candidates. Temperature 0 is greedy (one candidate).

Cost on these machines (DESIGN.md §5): SmolLM2 fp32 decodes ≈77 ms per token after a
≈0.5 s prefill, so `max_new_tokens` (48) bounds latency; candidates run as one batch.

Thread safety: one generation at a time per Generator. `generate` / `generate_batch` hold
an internal lock, so concurrent callers are serialized, not corrupted; to serve requests in
parallel, run a pool of Generators (each holds its own model copy).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.models import BASE_VERSION
from generator.config import DecodingConfig, GeneratorConfig
from generator.loading import apply_adapter, load_model
from generator.parser import Dropped, Suggestion, ToolLinker, parse_candidates
from generator.prompt import TEMPLATE_VERSION, PromptInputs, render_prompt

__all__ = ["GenerationResult", "Generator", "resolve_decoding"]

log = logging.getLogger(__name__)
_STOP_TOKENS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>")


@dataclass(frozen=True)
class GenerationResult:
    """One request's output and everything needed to log its impression."""

    suggestions: tuple[Suggestion, ...]
    prompt: str
    raw_texts: tuple[str, ...]
    template_version: str
    model_version: str
    decoding: dict[str, Any]
    timings: dict[str, float]
    format_valid: bool
    dropped: tuple[Dropped, ...] = ()
    complete: tuple[bool, ...] = field(default=())

    @property
    def raw_text(self) -> str:
        """The first candidate's generated text (all of them: `raw_texts`)."""
        return self.raw_texts[0] if self.raw_texts else ""

    def shown(self) -> list[dict[str, Any]]:
        """The impression's `suggestions` field: 1-based positions, text, linked tool."""
        return [
            {"position": i, "text": s.text, "tool_id": s.tool_id}
            for i, s in enumerate(self.suggestions, start=1)
        ]


def resolve_decoding(decoding: DecodingConfig, rng: random.Random) -> dict[str, Any]:
    """The concrete sampling settings of one call (the explore draw happens here)."""
    explored = decoding.explore_rate > 0 and rng.random() < decoding.explore_rate
    temperature = decoding.explore_temperature if explored else decoding.temperature
    candidates = decoding.explore_candidates if explored else decoding.num_candidates
    greedy = temperature == 0
    return {
        "do_sample": not greedy,
        "temperature": temperature,
        "top_p": decoding.top_p,
        "top_k": decoding.top_k,
        "repetition_penalty": decoding.repetition_penalty,
        "num_candidates": 1 if greedy else candidates,
        "max_new_tokens": decoding.max_new_tokens,
        "explore": explored,
        "seed": decoding.seed,
    }


class Generator:
    """A model that writes follow-up suggestions. See the module docstring for threading."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        config: GeneratorConfig | None = None,
        linker: ToolLinker | None = None,
        model_version: str = BASE_VERSION,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or GeneratorConfig()
        self.linker = linker
        self.model_version = model_version
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._stop_ids = self._find_stop_ids()

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        adapter_dir: Path | None = None,
        *,
        config: GeneratorConfig | None = None,
        linker: ToolLinker | None = None,
        model_version: str | None = None,
    ) -> Generator:
        """Load the base model from local files (default: `config.model_dir`) + an adapter.

        Raises `ModelFilesError` naming the directory when the model or adapter is broken.
        """
        config = config or GeneratorConfig()
        model, tokenizer = load_model(Path(model_dir or config.model_dir), dtype=config.dtype)
        if adapter_dir is not None:
            _check_template(Path(adapter_dir))
            model = apply_adapter(model, Path(adapter_dir), merge=config.merge_adapter)
        version = model_version or (Path(adapter_dir).name if adapter_dir else BASE_VERSION)
        return cls(model, tokenizer, config=config, linker=linker, model_version=version)

    def _find_stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[token] for token in _STOP_TOKENS if token in vocab)
        return sorted(i for i in ids if i is not None)

    def render(self, inputs: PromptInputs, n: int | None = None) -> str:
        return render_prompt(inputs, n or self.config.n_suggestions, self.config)

    def generate(
        self,
        inputs: PromptInputs,
        *,
        n: int | None = None,
        decoding: DecodingConfig | None = None,
    ) -> GenerationResult:
        """Suggestions for one request (`n` defaults to `config.n_suggestions`)."""
        return self.generate_batch([inputs], n=n, decoding=decoding)[0]

    def generate_batch(
        self,
        batch: Sequence[PromptInputs],
        *,
        n: int | None = None,
        decoding: DecodingConfig | None = None,
    ) -> list[GenerationResult]:
        """Suggestions for several requests in one padded forward pass.

        One decoding (and one explore draw) for the whole batch. On CPU a batch raises
        throughput but each request waits for the slowest (DESIGN.md §5).
        """
        n = n or self.config.n_suggestions
        return self.generate_rendered([self.render(inputs, n) for inputs in batch], batch,
                                      n=n, decoding=decoding)

    def generate_rendered(
        self,
        prompts: Sequence[str],
        batch: Sequence[PromptInputs],
        *,
        n: int,
        decoding: DecodingConfig | None = None,
    ) -> list[GenerationResult]:
        """`generate_batch` for prompts rendered already (a stored impression's, which this
        code version might render differently); `batch[i]` holds what the parser checks
        prompt i's list against: its query and recent queries (`RenderedPrompt.inputs`)."""
        decoding = decoding or self.config.decoding
        prompts = list(prompts)
        with self._lock:
            started = time.perf_counter()
            rng = random.Random(decoding.seed) if decoding.seed is not None else self._rng
            settings = resolve_decoding(decoding, rng)
            texts, complete, counts = self._sample(prompts, settings, n)
            generated = time.perf_counter()
            results = [
                self._result(batch[i], prompts[i], texts[i], complete[i], settings, n)
                for i in range(len(batch))
            ]
        parsed = time.perf_counter()
        timings = {
            "generate_ms": round((generated - started) * 1000, 2),
            "parse_ms": round((parsed - generated) * 1000, 2),
            "total_ms": round((parsed - started) * 1000, 2),
            **counts,
        }
        return [_with_timings(r, timings) for r in results]

    def _result(
        self,
        inputs: PromptInputs,
        prompt: str,
        texts: list[str],
        complete: list[bool],
        settings: dict[str, Any],
        n: int,
    ) -> GenerationResult:
        parsed = parse_candidates(
            texts,
            query=inputs.query,
            n=n,
            linker=self.linker,
            avoid=inputs.recent,
            max_chars=self.config.max_suggestion_chars,
            max_words=self.config.max_suggestion_words,
            complete=complete,
        )
        return GenerationResult(
            suggestions=parsed.suggestions,
            prompt=prompt,
            raw_texts=tuple(texts),
            template_version=TEMPLATE_VERSION,
            model_version=self.model_version,
            decoding=dict(settings),
            timings={},
            format_valid=parsed.format_valid,
            dropped=parsed.dropped,
            complete=tuple(complete),
        )

    def _sample(
        self, prompts: list[str], settings: dict[str, Any], lines: int = 0
    ) -> tuple[list[list[str]], list[list[bool]], dict[str, float]]:
        """Generate `num_candidates` texts per prompt: (texts, ended-on-its-own, counts).
        `lines` (the suggestions asked for) lets an engine stop a finished list early; this
        PyTorch path stops only at a stop token or the token cap."""
        import torch

        encoded = self.tokenizer(
            prompts, return_tensors="pt", padding=True, padding_side="left",
            add_special_tokens=False,
        )
        k = settings["num_candidates"]
        with _seeded(settings["seed"]), torch.inference_mode():
            output = self.model.generate(
                **encoded,
                **self._generate_kwargs(settings),
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        texts: list[list[str]] = [[] for _ in prompts]
        complete: list[list[bool]] = [[] for _ in prompts]
        longest = 0
        for row, ids in enumerate(new_tokens):
            cut, ended = self._cut(ids)
            longest = max(longest, len(cut) + int(ended))
            texts[row // k].append(self.tokenizer.decode(cut, skip_special_tokens=True))
            complete[row // k].append(ended)
        counts = {
            "prompt_tokens": float(encoded["input_ids"].shape[1]),
            "new_tokens": float(longest),
            "batch_rows": float(len(new_tokens)),
        }
        return texts, complete, counts

    def _generate_kwargs(self, settings: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": settings["max_new_tokens"],
            "do_sample": settings["do_sample"],
            "num_return_sequences": settings["num_candidates"],
            "repetition_penalty": settings["repetition_penalty"],
            "eos_token_id": self._stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if settings["do_sample"]:
            kwargs.update(
                temperature=settings["temperature"],
                top_p=settings["top_p"],
                top_k=settings["top_k"] or None,
            )
        else:  # silence sampling defaults a checkpoint's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def _cut(self, ids: list[int]) -> tuple[list[int], bool]:
        """New tokens up to the first stop token, and whether one was produced."""
        for index, token in enumerate(ids):
            if token in self._stop_ids:
                return ids[:index], True
        return ids, False


def _check_template(adapter_dir: Path) -> None:
    """Warn when an adapter was trained on another template version than the one in use."""
    report = adapter_dir / "sft-report.json"
    if not report.is_file():
        return
    try:
        trained_on = json.loads(report.read_text()).get("template_version")
    except (OSError, ValueError):
        return
    if trained_on and trained_on != TEMPLATE_VERSION:
        log.warning(
            "adapter %s was trained on prompt template %s, the generator renders %s: its "
            "output format may break; retrain it (`toolrec models bootstrap --force`)",
            adapter_dir, trained_on, TEMPLATE_VERSION,
        )


def _with_timings(result: GenerationResult, timings: dict[str, float]) -> GenerationResult:
    from dataclasses import replace

    return replace(result, timings=dict(timings))


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's sampling for this call only, without touching the global RNG state."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
