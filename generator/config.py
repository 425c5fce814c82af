"""Settings of the suggestion generator: models, prompt limits, decoding, the bootstrap SFT.

They live here, next to the code they configure, because serving builds generators from
them without importing the trainer. `trainer.config.TrainerConfig` nests `GeneratorConfig`
as its `generator` section, so the configuration a user writes is unchanged.
`BootstrapSFTConfig` sits here because it is a section of `GeneratorConfig` (how the base
model becomes the first champion); `trainer.sft` runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BootstrapSFTConfig", "DecodingConfig", "GeneratorConfig"]


class DecodingConfig(BaseModel):
    """How the generator samples (GQR's "randomness in online decoding" exploration).

    Serving may pass its own per request; every impression records the one used.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(
        48, ge=4, le=512, description="New-token cap; SmolLM2 decodes ~77 ms/token fp32 here."
    )
    temperature: float = Field(
        0.7, ge=0.0, le=2.0, description="Sampling temperature; 0 means greedy decoding."
    )
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, le=1000, description="Top-k sampling cut; 0 disables it.")
    repetition_penalty: float = Field(
        1.0,
        ge=1.0,
        le=2.0,
        description="Penalty on tokens already in prompt or output (1 = none); it also "
        "penalizes the list's own '- ' and newline tokens, so keep it near 1.",
    )
    num_candidates: int = Field(
        1,
        ge=1,
        le=8,
        description="Sequences sampled per request; their suggestions are merged round-robin "
        "into one de-duplicated list (diverse candidates).",
    )
    explore_rate: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Probability that a request explores: it then samples with "
        "explore_temperature and explore_candidates.",
    )
    explore_temperature: float = Field(
        1.0, gt=0.0, le=2.0, description="Temperature of exploring requests."
    )
    explore_candidates: int = Field(
        2, ge=1, le=8, description="num_candidates of exploring requests."
    )
    seed: int | None = Field(
        None, ge=0, description="Seed of sampling and of the explore draw (None: random)."
    )


class BootstrapSFTConfig(BaseModel):
    """The LoRA SFT that turns a base model into the first champion (`trainer.sft`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    examples: int = Field(
        640,
        ge=8,
        le=200_000,
        description="Training examples generated from SysToolKit (640 = 80 steps of 8).",
    )
    epochs: int = Field(1, ge=1, le=100, description="Passes over the generated examples.")
    batch_size: int = Field(8, ge=1, le=256, description="Examples per optimizer step.")
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps to run, overriding epochs (None: epochs decide)."
    )
    learning_rate: float = Field(5e-4, gt=0.0, le=0.1, description="AdamW peak learning rate.")
    warmup_ratio: float = Field(0.1, ge=0.0, le=0.5, description="Linear warm-up share.")
    max_seq_len: int = Field(
        768, ge=64, le=8192, description="Longer prompt+response pairs are dropped."
    )
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, le=1024, description="LoRA scaling numerator.")
    lora_dropout: float = Field(0.05, ge=0.0, le=0.5, description="LoRA dropout.")
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        min_length=1,
        description="Linear layers that get LoRA (KTO refreshes continue this adapter).",
    )
    seed: int = Field(0, ge=0, description="Seed of data generation, init and shuffling.")


class GeneratorConfig(BaseModel):
    """Models, prompt template and decoding of the suggestion generator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Path = Field(
        Path("models/smollm2-135m-instruct"),
        description="Base model: a local Hugging Face checkpoint directory "
        "(`toolrec models bootstrap` writes SmolLM2 here).",
    )
    bootstrap_adapter_dir: Path = Field(
        Path("models/smollm2-135m-instruct-sft"),
        description="Where `toolrec models bootstrap --sft` writes the first champion adapter.",
    )
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Weights dtype at inference (bf16 ≈20% faster decode on CPU)."
    )
    merge_adapter: bool = Field(
        True, description="Merge LoRA into the weights at load (faster decode, no unmerge)."
    )
    n_suggestions: int = Field(4, ge=1, le=10, description="Suggestions per request.")
    max_tools: int = Field(4, ge=0, le=16, description="Retrieved tools shown in the prompt.")
    max_recent: int = Field(3, ge=0, le=10, description="Recent session queries shown.")
    max_query_chars: int = Field(200, ge=16, le=4000, description="Query is cut beyond this.")
    max_response_chars: int = Field(
        280, ge=0, le=8000, description="Assistant response is cut beyond this."
    )
    max_suggestion_chars: int = Field(
        64, ge=8, le=400, description="Longer generated suggestions are dropped."
    )
    max_suggestion_words: int = Field(
        12, ge=1, le=100, description="Suggestions with more words are dropped."
    )
    decoding: DecodingConfig = DecodingConfig()
    sft: BootstrapSFTConfig = BootstrapSFTConfig()
