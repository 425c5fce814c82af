"""The fast inference engine of the served model: CTranslate2, fed by a one-off conversion.

Owns
- `convert_model`: base checkpoint + LoRA adapter → the adapter merged into the base →
  one CTranslate2 model directory (`model.bin`, its vocabulary and config) plus the
  tokenizer's files under `tokenizer/`. It runs once per champion, at promotion
  (`trainer.registry`); serving only loads the result.
- `FastGenerator`: a `generator.generator.Generator` whose sampling step runs on
  `ctranslate2.Generator` instead of PyTorch; render, parse, tool linking, exploration
  and the logged decoding are the parent's, so both engines answer through one code path.

Threads: the parent's lock still serializes a call's tokenizing, parsing and tool linking,
but is released while CTranslate2 generates (the GIL is released there too), so callers in
other threads overlap their generations. A model loaded with `inter_threads=N` holds N
replicas sharing one copy of the weights and runs N such batches in parallel; with 1 they
queue inside CTranslate2.

Why (DESIGN.md §5, `bench.serving`): PyTorch eager decoding of SmolLM2 costs ≈60–80 ms per
token on this CPU, mostly per-layer framework overhead; CTranslate2 int8 runs the same
model 2–3× faster. Work per request is cut further by
- the fixed template prefix (system instruction up to the user turn) passed as CTranslate2's
  `static_prompt`: its attention state is computed once per `n` and reused;
- a stop as soon as `n` suggestion lines are complete (a per-token callback), so the model
  never writes lines the parser would drop.

Differences from PyTorch, stated: int8 weights change logits slightly, so greedy outputs can
differ from PyTorch fp32 in a few tokens (a `float32` conversion matches greedy PyTorch
token for token on the tiny test model); and a seeded *sampled* call is not reproducible:
CTranslate2's sampler draws from a random engine per worker thread, seeded once when that
thread starts (`ctranslate2.set_random_seed` does not reseed it, and 4.8.5's generate_batch
has no per-call seed). Greedy decoding is deterministic; exploration still samples, and the
decoding it used (temperature, candidates, arm, seed asked for) is recorded as before.

May import: `generator` itself, `toolrec` core; ctranslate2, torch, transformers and peft
are imported inside functions (never at import time).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from generator.config import GeneratorConfig
from generator.generator import Generator
from generator.loading import MODEL_LOAD_LOCK, ModelFilesError, apply_adapter, load_model
from generator.parser import ToolLinker
from generator.prompt import SUGGESTION_PREFIX, SUGGESTION_SEP

__all__ = [
    "ENGINE_INFO",
    "FastGenerator",
    "Quantization",
    "convert_model",
    "is_converted",
    "static_prefix",
]

log = logging.getLogger(__name__)

Quantization = Literal["int8", "int8_float32", "float32"]
ENGINE_INFO = "engine.json"  # what was converted from what (read by people and by serving)
TOKENIZER_DIR = "tokenizer"
_USER_TURN = "<|im_start|>user\n"


def is_converted(path: Path) -> bool:
    """True when `path` holds a finished CTranslate2 conversion (`convert_model` output)."""
    path = Path(path)
    return all((path / name).is_file() for name in ("model.bin", "config.json", ENGINE_INFO))


def convert_model(base_dir: Path, adapter_dir: Path | None, out_dir: Path, *,
                  quantization: Quantization = "int8") -> Path:
    """Merge `adapter_dir` (None: serve the base) into `base_dir`, convert to CTranslate2.

    Writes into `out_dir` (created; must not hold a conversion already). Raises
    ModelFilesError naming the directory when a model file or the conversion fails.
    """
    from ctranslate2.converters import TransformersConverter

    out_dir = Path(out_dir)
    merged = out_dir.parent / f".merged-{out_dir.name}"
    shutil.rmtree(merged, ignore_errors=True)
    try:
        model, tokenizer = load_model(Path(base_dir), dtype="float32")
        if adapter_dir is not None:
            model = apply_adapter(model, Path(adapter_dir), merge=True)
        with MODEL_LOAD_LOCK:  # transformers' save/load is not thread-safe (generator.loading)
            model.save_pretrained(str(merged))
            tokenizer.save_pretrained(str(merged))
            TransformersConverter(str(merged)).convert(
                str(out_dir), quantization=None if quantization == "float32" else quantization,
                force=True)
        tokenizer.save_pretrained(str(out_dir / TOKENIZER_DIR))
    except ModelFilesError:
        raise
    except Exception as exc:  # the converter raises ValueError / OSError / RuntimeError
        raise ModelFilesError(
            f"converting {base_dir} + {adapter_dir} to CTranslate2 in {out_dir} failed "
            f"({type(exc).__name__}: {exc}); serving can use engine='torch' meanwhile"
        ) from exc
    finally:
        shutil.rmtree(merged, ignore_errors=True)
    info = {"engine": "ctranslate2", "quantization": quantization,
            "base_model": str(base_dir), "adapter": str(adapter_dir) if adapter_dir else None}
    (out_dir / ENGINE_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return out_dir


def static_prefix(prompt: str) -> str:
    """The fixed head of a rendered prompt: everything before the user turn's content
    (the system instruction depends only on `n`)."""
    head, sep, _ = prompt.partition(_USER_TURN)
    return head + sep if sep else ""


class FastGenerator(Generator):
    """A Generator sampling with CTranslate2 (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, *, config: GeneratorConfig | None = None,
                 linker: ToolLinker | None = None, model_version: str = "base",
                 stop_after_lines: bool = True) -> None:
        super().__init__(model, tokenizer, config=config, linker=linker,
                         model_version=model_version)
        self.stop_after_lines = stop_after_lines
        self._newline_ids, self._blank_ids = self._line_token_ids()
        self._prefix_cache: dict[str, list[str]] = {}

    @classmethod
    def load_converted(cls, engine_dir: Path, *, config: GeneratorConfig | None = None,
                       linker: ToolLinker | None = None, model_version: str = "base",
                       compute_type: Quantization = "int8", threads: int = 0,
                       inter_threads: int = 1) -> FastGenerator:
        """Load a `convert_model` directory with `inter_threads` replicas of `threads`
        intra-op threads each (0: CTranslate2's default). Raises ModelFilesError naming the
        directory when it is broken."""
        import ctranslate2
        from transformers import AutoTokenizer

        engine_dir = Path(engine_dir)
        if not is_converted(engine_dir):
            raise ModelFilesError(
                f"no CTranslate2 model at {engine_dir} (model.bin, config.json or "
                f"{ENGINE_INFO} missing); convert it (`toolrec models convert`) or set "
                "serving.engine='torch'")
        try:
            with MODEL_LOAD_LOCK:
                tokenizer = AutoTokenizer.from_pretrained(str(engine_dir / TOKENIZER_DIR),
                                                          local_files_only=True)
                model = ctranslate2.Generator(str(engine_dir), device="cpu",
                                              compute_type=compute_type,
                                              inter_threads=inter_threads,
                                              intra_threads=threads)
        except Exception as exc:  # ctranslate2 raises RuntimeError for every load failure
            raise ModelFilesError(
                f"the CTranslate2 model at {engine_dir} is corrupt ({type(exc).__name__}: "
                f"{exc}); convert it again or set serving.engine='torch'") from exc
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return cls(model, tokenizer, config=config, linker=linker, model_version=model_version)

    def _line_token_ids(self) -> tuple[frozenset[int], frozenset[int]]:
        """(ids whose text ends a line, ids that carry no suggestion text: whitespace and
        the list marker)."""
        ends, blank = set(), set()
        marker = SUGGESTION_PREFIX.strip()
        for token_id in self.tokenizer.get_vocab().values():
            text = self.tokenizer.decode([token_id])
            if text.endswith(SUGGESTION_SEP):
                ends.add(token_id)
            if text.strip() in ("", marker):
                blank.add(token_id)
        return frozenset(ends), frozenset(blank)

    def _line_counter(self, lines: int, rows: int) -> Callable[[Any], bool]:
        """The per-token callback that stops a row once its `lines`-th line is complete.

        It closes over plain data only, never over this generator or its model: CTranslate2
        drops the callback in its own worker thread, and if that dropped the last reference
        to the model, the model's destructor would join the very thread running it
        ("Resource deadlock avoided", the process aborts) — seen after a hot swap."""
        newline_ids, blank_ids = self._newline_ids, self._blank_ids
        states = [[0, 0] for _ in range(rows)]

        def enough_lines(step: Any) -> bool:
            state = states[int(step.batch_id)]
            _count_line(int(step.token_id), state, newline_ids, blank_ids)
            return state[0] >= lines

        return enough_lines

    def _tokens(self, text: str) -> list[str]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return list(self.tokenizer.convert_ids_to_tokens(ids))

    def _split(self, prompt: str) -> tuple[list[str], list[str]]:
        """(static prefix tokens, the rest); the prefix is empty when tokenizing the two
        parts apart would not give the tokens of the whole prompt."""
        tokens = self._tokens(prompt)
        head = static_prefix(prompt)
        if not head:
            return [], tokens
        cached = self._prefix_cache.get(head)
        if cached is None:
            cached = self._prefix_cache.setdefault(head, self._tokens(head))
        if tokens[: len(cached)] != cached:
            return [], tokens
        return cached, tokens[len(cached):]

    def _sample(
        self, prompts: list[str], settings: dict[str, Any], lines: int = 0
    ) -> tuple[list[list[str]], list[list[bool]], dict[str, float]]:
        """`num_candidates` texts per prompt, sampled by CTranslate2; a row stops once it
        has written `lines` complete lines (0: only at a stop token or the token cap)."""
        k = settings["num_candidates"]
        split = [self._split(p) for p in prompts]
        prefixes = {tuple(head) for head, _ in split}
        static = list(next(iter(prefixes))) if len(prefixes) == 1 else []
        rows = [tail if static else head + tail for head, tail in split for _ in range(k)]
        steps = self._generate(rows, static, settings, lines if self.stop_after_lines else 0)
        texts: list[list[str]] = [[] for _ in prompts]
        complete: list[list[bool]] = [[] for _ in prompts]
        longest = 0
        for row, ids in enumerate(steps):
            cut, ended = self._cut(ids)
            ended = ended or self._lines_done(cut, lines)
            longest = max(longest, len(ids))
            texts[row // k].append(self.tokenizer.decode(cut, skip_special_tokens=True))
            complete[row // k].append(ended)
        counts = {
            "prompt_tokens": float(max(len(h) + len(t) for h, t in split)),
            "new_tokens": float(longest),
            "batch_rows": float(len(rows)),
            "static_prefix_tokens": float(len(static)),
        }
        return texts, complete, counts

    def _generate(self, rows: list[list[str]], static: list[str], settings: dict[str, Any],
                  lines: int) -> list[list[int]]:
        sampling = settings["do_sample"]
        callback = self._line_counter(lines, len(rows)) if lines else None
        with _unlocked(self._lock):  # only CTranslate2 runs here ("Threads", module docstring)
            results = self.model.generate_batch(
                rows,
                max_length=settings["max_new_tokens"],
                include_prompt_in_result=False,
                static_prompt=static or None,
                end_token=self._stop_ids,
                return_end_token=True,
                repetition_penalty=settings["repetition_penalty"],
                sampling_topk=(settings["top_k"] or 0) if sampling else 1,
                sampling_topp=settings["top_p"] if sampling else 1.0,
                sampling_temperature=settings["temperature"] if sampling else 1.0,
                callback=callback,
            )
        return [list(result.sequences_ids[0]) for result in results]

    def _lines_done(self, ids: list[int], lines: int) -> bool:
        """A row stopped by the line callback ended on its own terms: its list is whole."""
        if not lines or not ids:
            return False
        state = [0, 0]
        for token in ids:
            _count_line(token, state, self._newline_ids, self._blank_ids)
        return state[0] >= lines


@contextmanager
def _unlocked(lock: threading.Lock) -> Iterator[None]:
    """Release `lock`, which the calling thread holds (`Generator.generate_batch` holds its
    own around `_sample`), for the block; take it again after, whatever happens."""
    lock.release()
    try:
        yield
    finally:
        lock.acquire()


def _count_line(token: int, state: list[int], newline_ids: frozenset[int],
                blank_ids: frozenset[int]) -> None:
    """Advance one row's [complete lines, line has text] by one token; blank lines and
    bare "-" lines do not count (the parser drops them as empty)."""
    if token not in blank_ids:
        state[1] = 1
    if token in newline_ids:
        state[0] += state[1]
        state[1] = 0
