"""Loading the generator's model from local files only, under one process-wide lock.

`load_model` / `apply_adapter` load a checkpoint directory / LoRA adapter and fail with a
`ModelFilesError` that names the path and the fix. Nothing here downloads: Hugging Face
offline mode is switched on (`hub_offline`) before transformers loads. Building model files
(SmolLM2 bootstrap, the tiny test Llama) is the trainer's job (`trainer.models`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from toolrec.errors import GeneratorError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "MODEL_LOAD_LOCK",
    "Dtype",
    "ModelFilesError",
    "apply_adapter",
    "hub_offline",
    "load_model",
]

Dtype = Literal["float32", "bfloat16"]

# transformers' from_pretrained is not thread-safe: two concurrent SmolLM2 loads were seen to
# leave the tied lm_head randomly initialized. It is the one process-wide model-load lock:
# every load here, serving's hot swap and retrieval's sentence encoder hold it. Re-entrant,
# because a swap holds it around `load_model`, which takes it again.
MODEL_LOAD_LOCK = threading.RLock()


class ModelFilesError(GeneratorError):
    """A model or adapter directory is missing, incomplete or unreadable."""


def hub_offline() -> None:
    """Forbid any hub download before transformers / huggingface_hub read their settings."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _torch_dtype(dtype: Dtype) -> Any:
    import torch

    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    raise ModelFilesError(f"dtype {dtype!r} is not supported; use 'float32' or 'bfloat16'")


def load_model(
    path: Path, dtype: Dtype = "float32"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local checkpoint directory, in eval mode.

    Raises ModelFilesError naming the path when it is missing, incomplete or corrupt.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelFilesError(
            f"no model checkpoint at {path} (config.json missing); run "
            "`toolrec models bootstrap` or point trainer.generator.model_dir at a Hugging "
            "Face checkpoint directory"
        )
    hub_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with MODEL_LOAD_LOCK:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, dtype=_torch_dtype(dtype)
            )
    except Exception as exc:  # safetensors, tokenizers and json each raise their own types
        raise ModelFilesError(
            f"the model at {path} is incomplete or corrupt ({type(exc).__name__}: {exc}); "
            "delete the directory and rebuild it (`toolrec models bootstrap`)"
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # transformers leaves PreTrainedModel.eval unannotated.
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def apply_adapter(model: Any, adapter_dir: Path, *, merge: bool = True) -> Any:
    """Put the LoRA adapter in `adapter_dir` on `model` (merged into the weights by default).

    Raises ModelFilesError naming the directory when it is missing or does not fit the model.
    """
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelFilesError(
            f"no LoRA adapter at {adapter_dir} (adapter_config.json missing); check the "
            "registry's adapter path or retrain it"
        )
    from peft import PeftModel

    try:
        with MODEL_LOAD_LOCK:
            peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    except Exception as exc:  # peft surfaces json, safetensors and shape errors as-is
        raise ModelFilesError(
            f"the adapter at {adapter_dir} is corrupt or does not fit the base model "
            f"({type(exc).__name__}: {exc}); retrain it or roll back to the previous champion"
        ) from exc
    peft_model.eval()
    return peft_model.merge_and_unload() if merge else peft_model
