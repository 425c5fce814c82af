"""Settings of the generator, the weighted-KTO trainer, the evaluation gate and the daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generator.config import GeneratorConfig


class GateTolerances(BaseModel):
    """How far a candidate may regress on each guarded metric, against the champion and
    (the same amounts) against the fixed SFT baseline, so regressions cannot compound.

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
    suggestions_per_request: float = Field(
        0.5, ge=0.0, le=100.0, description="Allowed drop of the mean number of valid "
        "suggestions per request (a demo refresh once passed every other check while serving "
        "≈1.2 suggestions per request instead of ≈3.5)."
    )


class RewardObjectiveConfig(BaseModel):
    """GQR's CTR alignment in a refresh (`training.objective = "reward"`, trainer.listwise):
    a CTR model fitted on the calibrated clicks scores candidate lists sampled from the
    champion; KTO trains on the best and worst whole list per prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidates: int = Field(
        3, ge=1, le=16, description="Lists sampled per logged prompt beside the logged one "
        "(the generator's decoding, one seed per draw)."
    )
    min_gap: float = Field(
        0.02, ge=0, le=4, description="A prompt trains only when its best and worst list "
        "differ by at least this many expected clicks."
    )
    l2: float = Field(1.0, ge=0, description="L2 penalty of the CTR model's fit.")
    max_prompts: int = Field(
        96, ge=1, le=100_000, description="Most recent training prompts a refresh samples "
        "candidates for (generation is the objective's cost: ≈ candidates × max_prompts "
        "lists; each prompt gives at most one pair, two rows)."
    )
    generation_batch: int = Field(
        4, ge=1, le=64, description="Prompts per generate call, each repeated `candidates` "
        "times in it (trainer.listwise.sample_candidates measured 4 × 3 fastest here)."
    )
    ctr_history: int = Field(
        1000, ge=0, le=100_000, description="Older training-side lists (from samples read "
        "before this refresh's, newest first) the CTR model is fitted on beside this "
        "refresh's: one refresh's ≈ 170 lists gave a relevance coefficient of +1.13, -0.31 "
        "and +0.73 in three refreshes. 0 = this refresh's lists only."
    )
    learning_rate: float = Field(
        2e-4, gt=0.0, le=1e-2, description="LoRA learning rate with this objective (replaces "
        "training.learning_rate, which is the click objective's): 2e-4 and 20 steps lifted "
        "every calibration arm above the SFT start over 5 seeds (loop/RESULTS.md)."
    )


class TrainingConfig(BaseModel):
    """Weighted KTO, incremental refresh, evaluation gate, registry and daemon."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: Literal["clicks", "reward"] = Field(
        "reward", description="What a refresh trains on. reward: GQR's CTR alignment on whole "
        "lists (`reward`, trainer.listwise), the objective that lifted the generator above "
        "its SFT start (loop/RESULTS.md); engine 'fast' only. clicks: each shown suggestion "
        "labelled by its click, weighted by its calibrated weight."
    )
    reward: RewardObjectiveConfig = RewardObjectiveConfig()
    # weighted KTO (trainer.fastkto, or trainer.kto on TRL's KTOTrainer)
    engine: Literal["fast", "trl"] = Field(
        "fast", description="KTO implementation: 'fast' (trainer.fastkto: the same loss, ≈6× "
        "less CPU per step here) or 'trl' (trainer.kto, TRL's KTOTrainer + weights)."
    )
    threads: int = Field(
        1, ge=0, le=64, description="torch threads while the fast engine trains (0: torch's "
        "default). Measured on this 2-core machine under load ≈5: a step of 8 took 3.7–5.5 s "
        "wall on 1 thread, 15–22 s on 2 (OpenMP threads spin while the other core is busy)."
    )
    learning_rate: float = Field(
        5e-5, gt=0.0, le=1e-2, description="AdamW peak LR for LoRA with the click objective "
        "(the reward objective's is reward.learning_rate) (KTOConfig's 1e-6 is for "
        "full fine-tuning and far too low for LoRA; 2e-4 pushed every calibration arm below "
        "the SFT start in 20 steps, 5e-5 did not: loop/RESULTS.md)."
    )
    beta: float = Field(0.1, gt=0.0, le=10.0, description="KTO β: higher stays closer to ref.")
    desirable_weight: float = Field(
        1.0, ge=0.0, le=10.0, description="KTO class weight of clicked samples (KTOConfig's "
        "`desirable_weight`), on top of each sample's calibrated weight."
    )
    undesirable_weight: float = Field(
        1.0, ge=0.0, le=10.0, description="KTO class weight of non-clicked samples. 0 trains on "
        "clicks only (GQR's CTR-filtered KTO; non-clicked samples still cost their forward "
        "pass). Measured: clicks only did not stop trained models falling below SFT "
        "(2 seeds, loop/RESULTS.md), so 1 stays."
    )
    batch_size: int = Field(
        8, ge=2, le=256, description="Per-device batch; TRL's KL estimate needs > 1."
    )
    gradient_accumulation_steps: int = Field(1, ge=1, le=64, description="Batches per step.")
    epochs: float = Field(1.0, gt=0.0, le=20.0, description="Passes over one refresh's data.")
    max_steps: int = Field(
        64, ge=0, le=1_000_000, description="Cap on optimizer steps per refresh (0: no cap). "
        "SmolLM2 LoRA KTO costs ≈3.3 CPU-s per step of 8 with the fast engine (reference "
        "included) vs ≈22 with TRL's (`python -m bench.trainer --steps 3 --skip-refresh`)."
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
    weight_max: float = Field(
        10.0, gt=0.0, le=1000.0, description="Cap on a training weight after the per-class "
        "re-normalization; keep it equal to the calibration's w_max (streams.calibration."
        "w_max). When a class cannot carry its share under the cap, the ratio bound gives way "
        "(trainer.data, step 3)."
    )
    replay_share: float = Field(
        0.25, ge=0.0, le=0.9, description="Share of a refresh's training set drawn from older "
        "samples (replay against forgetting)."
    )
    replay_window_days: float | None = Field(
        30.0, gt=0.0, le=3650.0, description="How far back the older samples a refresh reads "
        "reach (replay, the gate's hold-out top-up, the reward objective's CTR history): "
        "impressions at most this many days before the newest new sample. Bounds each "
        "refresh's read and memory as the lake grows; None reads every older sample."
    )
    max_train_samples: int = Field(
        512, ge=8, le=10_000_000, description="Cap on new + replay samples per refresh "
        "(the most recent new ones are kept)."
    )
    holdout_share: float = Field(
        0.2, ge=0.0, le=0.5, description="Share of requests (stable hash of request_id: "
        "sibling suggestions stay together) never trained on and used for the gate's held-out "
        "reward margin. 0.2: at ≈0.06 clicks per suggestion the gate's click evidence is the "
        "bottleneck, and the held-out set accumulates over refreshes."
    )
    max_eval_samples: int = Field(
        128, ge=2, le=100_000, description="Cap on held-out samples scored per evaluation, "
        "most recent first, clicks first (up to half). Each model scored costs a forward pass "
        "per sample (SmolLM2: ≈0.5 CPU-s), and the gate scores up to three."
    )
    min_new_samples: int = Field(
        256, ge=1, le=10_000_000, description="M: a scheduled refresh runs only with at least "
        "this many new samples. 256 with holdout_share 0.2 trains on ≈205 new samples: ≥ 20 "
        "KTO steps of 8 in one epoch (plus the replay share once older data exists)."
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
    min_heldout_clicks: int = Field(
        10, ge=0, le=1_000_000, description="The held-out reward margin (the gate's primary "
        "metric) is measured only with at least this many held-out clicks; with fewer the "
        "refresh's outcome is 'not enough evidence': nothing is promoted and the next refresh "
        "re-reads the data since the champion, so the held-out set grows. 0 (with "
        "min_heldout_nonclicks 0) makes the margin optional: plumbing tests only."
    )
    min_heldout_nonclicks: int = Field(
        30, ge=0, le=1_000_000, description="Same, for held-out non-clicked samples."
    )
    baseline_version: str | None = Field(
        None, description="The fixed SFT baseline every candidate is also checked against "
        "(None: the first version registered with `toolrec models register`, i.e. the "
        "bootstrap SFT; the base model when none was)."
    )
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
    lake_upkeep_interval_s: float | None = Field(
        3600.0, ge=10.0, le=7 * 86400.0, description="Daemon: seconds between upkeeps of "
        "`upkeep_tables`: compaction (`lakehouse.maintenance.optimize`, safe beside the sink) "
        "then vacuum of files removed more than `lake.vacuum_retention_hours` ago. The sink "
        "commits about once a second, one small file each; without compaction a refresh's "
        "read of its replay window opens every one of them, and without vacuum the disk "
        "keeps every file ever compacted. None: never (run `toolrec lake optimize` and "
        "`toolrec lake vacuum` yourself)."
    )
    upkeep_tables: tuple[str, ...] = Field(
        ("samples", "events"), description="Tables the daemon keeps compact (the sink's)."
    )
    announce: bool = Field(True, description="Announce promotions/rollbacks on toolrec.models.")
    engine_quantization: Literal["int8", "int8_float32", "float32", "none"] = Field(
        "int8",
        description="At promotion the champion's LoRA is merged into the base and converted "
        "once for serving's fast engine (CTranslate2) in <artifact_dir>/<version>/engine/, "
        "its checksum in the registry row; 'none': no conversion (serving uses PyTorch).",
    )
    keep_engines: int = Field(
        2, ge=0, le=1000,
        description="Engine conversions kept for former champions (≈134 MB each for "
        "SmolLM2 int8), the most recently promoted first: the rollback targets. After each "
        "promotion the older ones are deleted and their rows forget them (`toolrec models "
        "prune-engines`); the champion's is always kept, and a version without one is "
        "converted again (≈20–35 s) when it is promoted or rolled back to.",
    )

    @model_validator(mode="after")
    def _reward_objective_on_the_fast_engine(self) -> TrainingConfig:
        if self.objective == "reward" and self.engine != "fast":
            raise ValueError("training.objective 'reward' trains whole lists with the fast "
                             "engine only; set training.engine = 'fast' or objective 'clicks'")
        return self

    @model_validator(mode="after")
    def _ratio_bounds_ordered(self) -> TrainingConfig:
        if self.desirable_ratio_min > self.desirable_ratio_max:
            raise ValueError(
                f"desirable_ratio_min ({self.desirable_ratio_min}) must be <= "
                f"desirable_ratio_max ({self.desirable_ratio_max})"
            )
        return self

    @model_validator(mode="after")
    def _evidence_fits_the_eval_cap(self) -> TrainingConfig:
        # the held-out set keeps at most half of max_eval_samples as clicks, the rest
        # non-clicks: a minimum above those shares could never be met
        clicks = self.max_eval_samples // 2
        others = self.max_eval_samples - clicks
        if self.min_heldout_clicks > clicks or self.min_heldout_nonclicks > others:
            raise ValueError(
                f"min_heldout_clicks ({self.min_heldout_clicks}) must be <= max_eval_samples // 2 "
                f"({clicks}) and min_heldout_nonclicks ({self.min_heldout_nonclicks}) <= "
                f"max_eval_samples - that ({others}); raise max_eval_samples "
                f"({self.max_eval_samples}) or lower the minimums"
            )
        return self


class TrainerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    generator: GeneratorConfig = GeneratorConfig()
    training: TrainingConfig = TrainingConfig()
