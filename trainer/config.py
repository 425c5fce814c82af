"""Settings of the generator, the weighted-KTO trainer, the evaluation gate and the daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class GateTolerances(BaseModel):
    """How far a candidate may regress from the champion on each guarded metric.

    Each tolerance is an absolute amount in the metric's own unit; a candidate is promoted
    only if no guarded metric regresses by more than its tolerance (`trainer.evaluate`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reward_margin: float = Field(
        0.0, ge=0.0, le=10.0, description="Allowed drop of the weighted KTO reward margin."
    )
    format_valid_rate: float = Field(
        0.05, ge=0.0, le=1.0, description="Allowed drop of the share of well-formed outputs."
    )
    tool_grounded_share: float = Field(
        0.10, ge=0.0, le=1.0, description="Allowed drop of the share of tool-linked suggestions."
    )
    duplicate_rate: float = Field(
        0.05, ge=0.0, le=1.0, description="Allowed rise of the duplicate-suggestion rate."
    )
    distinct_2: float = Field(
        0.10, ge=0.0, le=1.0, description="Allowed drop of distinct-2 (bigram diversity)."
    )
    length_drift: float = Field(
        0.5,
        ge=0.0,
        le=10.0,
        description="Largest allowed relative change of the mean suggestion length (words) "
        "against the champion: |cand/champ - 1|.",
    )
    relevance: float = Field(
        0.05, ge=0.0, le=2.0, description="Allowed drop of mean cosine(suggestion, query+resp)."
    )


class TrainingConfig(BaseModel):
    """Weighted KTO, incremental refresh, evaluation gate, registry and daemon."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # weighted KTO (trainer.kto)
    learning_rate: float = Field(
        2e-4, gt=0.0, le=1e-2, description="AdamW peak LR for LoRA (KTOConfig's 1e-6 is for "
        "full fine-tuning and far too low for LoRA)."
    )
    beta: float = Field(0.1, gt=0.0, le=10.0, description="KTO β: higher stays closer to ref.")
    batch_size: int = Field(
        8, ge=2, le=256, description="Per-device batch; TRL's KL estimate needs > 1."
    )
    gradient_accumulation_steps: int = Field(1, ge=1, le=64, description="Batches per step.")
    epochs: float = Field(1.0, gt=0.0, le=20.0, description="Passes over one refresh's data.")
    max_steps: int = Field(
        64, ge=0, le=1_000_000, description="Cap on optimizer steps per refresh (0: no cap). "
        "SmolLM2 LoRA KTO costs ≈40 CPU-s per step of 8 ≈135-token samples here."
    )
    warmup_steps: int = Field(0, ge=0, le=10_000, description="Linear LR warm-up steps.")
    max_length: int = Field(
        768, ge=32, le=8192, description="Prompt+completion token cap; longer prompts dropped."
    )
    bf16: bool = Field(False, description="bf16 autocast on CPU (≈30% faster, less exact).")
    logging_steps: int = Field(10, ge=1, le=10_000, description="Trainer log interval (steps).")
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank of a fresh adapter.")
    lora_alpha: int = Field(16, ge=1, le=1024, description="LoRA alpha of a fresh adapter.")
    lora_target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        min_length=1,
        description="Layers a fresh adapter targets (a champion's adapter keeps its own).",
    )
    seed: int = Field(0, ge=0, description="Seed of shuffling, replay sampling and LoRA init.")

    # data (trainer.data)
    desirable_ratio_min: float = Field(
        1.0, ge=0.1, le=10.0, description="Lower bound of the weighted desirable:undesirable "
        "ratio (KTO paper Eq. 8 recommends 1:1 to 4:3)."
    )
    desirable_ratio_max: float = Field(
        4 / 3, ge=0.1, le=10.0, description="Upper bound of that ratio."
    )
    replay_share: float = Field(
        0.25, ge=0.0, le=0.9, description="Share of a refresh's training set drawn from older "
        "samples (replay against forgetting)."
    )
    max_train_samples: int = Field(
        512, ge=8, le=10_000_000, description="Cap on new + replay samples per refresh "
        "(the most recent new ones are kept)."
    )
    holdout_share: float = Field(
        0.1, ge=0.0, le=0.5, description="Share of samples (stable hash of sample_id) never "
        "trained on and used for the held-out reward margin."
    )
    max_eval_samples: int = Field(
        256, ge=2, le=100_000, description="Cap on held-out samples scored per evaluation."
    )
    min_new_samples: int = Field(
        200, ge=1, le=10_000_000, description="M: a scheduled refresh runs only with at least "
        "this many new samples."
    )
    min_per_class: int = Field(
        2, ge=1, le=100_000, description="A refresh needs this many clicked and non-clicked "
        "training samples."
    )

    # evaluation gate (trainer.evaluate)
    eval_prompts: int = Field(
        6, ge=1, le=500, description="Fixed prompts generated per model for the generation "
        "metrics (SmolLM2: ≈3.5 s each on CPU)."
    )
    gate: GateTolerances = GateTolerances()
    gate_retrieval: bool = Field(
        True, description="Load retrieval for the gate's tool grounding / relevance metrics "
        "and eval-prompt tools (off: those metrics are not measured)."
    )

    # registry, artifacts, daemon (trainer.registry, trainer.daemon)
    registry_table: str = Field(
        "models", min_length=1, description="Delta table of the registry under the lake root."
    )
    artifact_dir: Path = Field(
        Path(".toolrec/artifacts"), description="Adapters live in <artifact_dir>/<version>/."
    )
    lock_path: Path = Field(
        Path(".toolrec/trainer.lock"), description="File lock: one refresh at a time per host."
    )
    interval_s: float = Field(
        900.0, ge=1.0, le=7 * 86400.0, description="Daemon: seconds between refresh checks."
    )
    announce: bool = Field(True, description="Announce promotions/rollbacks on toolrec.models.")

    @model_validator(mode="after")
    def _ratio_bounds_ordered(self) -> TrainingConfig:
        if self.desirable_ratio_min > self.desirable_ratio_max:
            raise ValueError(
                f"desirable_ratio_min ({self.desirable_ratio_min}) must be <= "
                f"desirable_ratio_max ({self.desirable_ratio_max})"
            )
        return self


class TrainerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    generator: GeneratorConfig = GeneratorConfig()
    training: TrainingConfig = TrainingConfig()
