"""Settings of the closed loop: the user simulator, `toolrec demo` and the calibration
experiment. Every constant of the simulator is this project's own design (see
`loop.population` and `loop.simulator` for what each one means)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainer.config import RewardObjectiveConfig

_REWARD = RewardObjectiveConfig()


class ClickModelConfig(BaseModel):
    """How simulated users click (`loop.population`).

    A user has an activity level a in [0, 1]. Their chance to click a suggestion they
    examine, given its true utility u in [0, 1], is
        attract(u) = floor(a) + (ceiling − floor(a)) · σ((u − τ(a)) / s(a))
    with floor(a) = floor_rare·(floor_heavy/floor_rare)^a (log-linear),
    τ(a) = tau_rare + (tau_heavy − tau_rare)·a and s(a) = slope_rare + (slope_heavy −
    slope_rare)·a: heavy clickers click often whatever the utility (high floor, flat
    curve), rare clickers only very useful suggestions (tiny floor, steep curve, high τ).
    Position k is examined with probability k^−eta (cascade: the user reads top-down and
    stops at the first click).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rare_share: float = Field(0.3, ge=0, le=1, description="Users with a in [0, rare_max).")
    heavy_share: float = Field(0.2, ge=0, le=1, description="Users with a in [heavy_min, 1].")
    rare_max: float = Field(0.3, gt=0, lt=1, description="Upper activity of rare clickers.")
    heavy_min: float = Field(0.75, gt=0, lt=1, description="Lower activity of heavy clickers.")
    floor_rare: float = Field(0.003, gt=0, lt=1, description="attract(0) at a = 0.")
    floor_heavy: float = Field(0.3, gt=0, lt=1, description="attract floor at a = 1.")
    ceiling: float = Field(0.85, gt=0, le=1, description="attract(u) for u → ∞.")
    tau_rare: float = Field(0.8, ge=0, le=1, description="Utility threshold at a = 0.")
    tau_heavy: float = Field(0.35, ge=0, le=1, description="Utility threshold at a = 1.")
    slope_rare: float = Field(0.05, gt=0, le=5, description="Sigmoid scale at a = 0 (steep).")
    slope_heavy: float = Field(0.45, gt=0, le=5, description="Sigmoid scale at a = 1 (flat).")
    eta: float = Field(0.8, ge=0, le=5, description="Position bias: examine(k) = k^-eta.")
    reference_activity: float = Field(
        0.5, ge=0, le=1, description="Activity of the reference user of the ground-truth CTR."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ClickModelConfig:
        if self.rare_share + self.heavy_share > 1:
            raise ValueError(
                f"rare_share + heavy_share must be <= 1, got {self.rare_share} + "
                f"{self.heavy_share}"
            )
        if self.rare_max > self.heavy_min:
            raise ValueError(
                f"rare_max ({self.rare_max}) must be <= heavy_min ({self.heavy_min})"
            )
        if self.floor_heavy >= self.ceiling:
            raise ValueError(
                f"floor_heavy ({self.floor_heavy}) must be below ceiling ({self.ceiling})"
            )
        return self


class UtilityConfig(BaseModel):
    """True utility of a suggestion for a hidden intent (`loop.simulator`):
        r = clip((cos − rel_low) / (rel_high − rel_low), 0, 1)
        u = (r + tool_bonus·match) / (1 + tool_bonus)
    cos = the best cosine between the suggestion and the intent's phrasings (retrieval's
    MiniLM encoder); match = the suggestion invokes exactly the intent's tool.

    Anchors (measured with MiniLM on the catalog, 2026-12-02): a random tool example against
    an unrelated intent's phrasings has a best cosine of 0.13 at the median (0.20 at the
    upper quartile); another example of the same tool has 0.64 at the lower decile and 0.89
    at the median. So rel_low = 0.15 (as similar as unrelated text: worth nothing) and
    rel_high = 0.7 (a paraphrase: fully relevant). The suggestions the SFT model shows that
    miss the intended tool then spread over utility ≈0–0.35, a hit is worth ≈1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rel_low: float = Field(0.15, ge=-1, le=1, description="Cosine with no relevance at all.")
    rel_high: float = Field(0.7, ge=-1, le=1, description="Cosine of full relevance.")
    tool_bonus: float = Field(
        1.0, ge=0, le=10, description="Weight of invoking the intended tool vs relevance."
    )
    exec_success_match: float = Field(
        0.92, ge=0, le=1, description="P(execution succeeds) after a click on the right tool."
    )
    exec_success_other: float = Field(
        0.5, ge=0, le=1, description="P(execution succeeds) after a click on another tool."
    )

    @model_validator(mode="after")
    def _ordered(self) -> UtilityConfig:
        if self.rel_low >= self.rel_high:
            raise ValueError(f"rel_low ({self.rel_low}) must be < rel_high ({self.rel_high})")
        return self


class SimulatorConfig(BaseModel):
    """The simulated population and its turns (`loop.simulator`, `loop.intents`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(0, ge=0, description="Everything the simulator draws derives from it.")
    users: int = Field(12, ge=1, le=100_000, description="Size of the population.")
    n_suggestions: int = Field(4, ge=1, le=10, description="N asked of /v1/recommend.")
    session_turns: int = Field(
        3, ge=1, le=50, description="Turns per session (recent queries come from the session)."
    )
    need_query_share: float = Field(
        0.2, ge=0, le=1, description="Share of turns whose query is a non-tool question."
    )
    tool_intent_share: float = Field(
        0.75, ge=0, le=1, description="Share of hidden follow-up intents that are tools."
    )
    click: ClickModelConfig = ClickModelConfig()
    utility: UtilityConfig = UtilityConfig()


class DemoConfig(BaseModel):
    """`toolrec demo`: sized so the default finishes in ≈20 min with SmolLM2 on 2 cores and
    every refresh is a real one: ≥ 20 KTO steps and enough held-out evidence for the gate.

    What drives the size: the gate measures the held-out reward margin only with ≥ 10
    held-out clicks and ≥ 30 held-out non-clicks (`trainer.training.min_heldout_*`; fewer:
    "not enough evidence", the champion stays). Simulated users click in ≈0.3 of their
    requests, so with half the requests held out a round needs ≈100 requests for ≈15
    held-out clicks at the first refresh (later refreshes also hold out the earlier
    rounds' requests). The other half (≈180 samples of 4 suggestions per request, ≈23
    batches of 8) gives 20 KTO steps in one epoch through the fast engine
    (`trainer.training.engine = "fast"`, ≈4–5 CPU-s per step with SmolLM2).
    Measured with SmolLM2 on the shared 2-core machine at load ≈4 (2026-12-02, about half
    of it other sessions): start-up 17 s, round 1 313 s (100 requests, ≈3.1 s each; 23
    held-out clicks and 41 non-clicks at the gate), its refresh 263 s (reference log-probs
    68 s, 20 KTO steps ≈150 s, gate ≈35 s) + hot-swap 2 s. So the default 3 rounds ≈25 min
    at that load, less on an idle machine; `--requests 4` saves ≈1 min per round at some
    risk of "not enough evidence" at the first refresh. Rounds and refreshes never overlap
    (the demo holds the refresh lock during a round), so the API and the trainer daemon may
    each use both cores."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state_dir: Path = Field(
        Path(".toolrec/demo"), description="Everything of one demo run (wiped at its start)."
    )
    rounds: int = Field(3, ge=1, le=100, description="Rounds of traffic; a refresh after each "
                        "but the last.")
    users: int = Field(20, ge=1, le=10_000, description="Simulated users.")
    requests_per_user: int = Field(5, ge=1, le=1000, description="Requests per user per round.")
    concurrency: int = Field(2, ge=1, le=64, description="Simulated users in flight at once.")
    max_steps: int = Field(20, ge=1, le=100_000, description="KTO steps per refresh.")
    epochs: float = Field(
        2.0, gt=0, le=100, description="Upper bound of passes over a refresh's samples: the "
        "steps stop at max_steps first when a round brought enough samples."
    )
    holdout_share: float = Field(
        0.5, ge=0, le=0.5, description="Share of requests held out for the gate (the "
        "trainer's default 0.2 would need ≈2.5× the traffic per round for the same evidence)."
    )
    max_eval_samples: int = Field(
        64, ge=2, le=100_000, description="Held-out samples scored per model at the gate "
        "(clicks first, up to half): enough for the evidence minimums, half the trainer's "
        "default cost."
    )
    eval_prompts: int = Field(
        6, ge=1, le=500, description="Gate generation prompts per model (≈3 s each). With 2, "
        "the gate judged ≈4 suggestions and one suggestion that did not link was a 0.25 drop "
        "of tool_grounded_share (tolerance 0.10): both refreshes of a demo were rejected on "
        "it. 6 (the trainer's default) makes one suggestion ≈0.05."
    )
    gate_reward_margin: float = Field(
        0.1, ge=0, le=10, description="Gate tolerance of the held-out reward margin. A demo "
        "refresh scores only a few dozen held-out samples, whose margin moves by chance; the "
        "trainer's own default (0) would reject refreshes on noise."
    )
    api_threads: int = Field(2, ge=1, le=64, description="torch threads of the API process.")
    trainer_threads: int = Field(
        2, ge=1, le=64, description="torch threads of the retraining daemon (it trains only "
        "between rounds, while the API is idle)."
    )
    attribution_window_s: float = Field(4.0, gt=0, description="Faust attribution window.")
    allowed_lateness_s: float = Field(1.0, ge=0, description="Faust allowed lateness.")
    daemon_interval_s: float = Field(5.0, ge=1, description="Daemon check interval.")
    refresh_timeout_s: float = Field(
        900.0, gt=0, description="Longest wait for one refresh (and its hot-swap)."
    )
    request_timeout_s: float = Field(180.0, gt=0, description="HTTP timeout of one request.")
    feedback: Literal["kafka", "api"] = Field(
        "kafka", description="kafka: the telemetry producer; api: POST /v1/feedback."
    )


LoopArm = Literal["raw", "activity", "tool", "full", "full_position", "full_toolrec"]


class ClosedLoopConfig(BaseModel):
    """`toolrec experiment closed-loop` (`loop.closedloop`): the demo's whole stack once per
    arm — the same simulated population (same seed, same turns), the same start model, the
    streams worker's calibration switched per arm — over `rounds` rounds of traffic →
    refresh → hot-swap, so each model trains on the traffic its predecessor served. The
    other run settings (gate tolerance, held-out share, threads, timeouts) are
    `loop.demo`'s."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    out_dir: Path = Field(Path(".toolrec/closed-loop"), description="Per arm its run "
                          "directory (wiped at the start), closed_loop.json and report.html.")
    model: Literal["smollm2", "tiny"] = Field(
        "smollm2", description="smollm2: the real run; tiny: a quick run on the tiny Llama."
    )
    arms: tuple[LoopArm, ...] = Field(
        ("raw", "full"), min_length=1, description="Calibration of each run (the switches "
        "of loop.experiment.ARM_SWITCHES); 'raw' first makes it the paired reference."
    )
    rounds: int = Field(4, ge=2, le=100, description="Rounds of traffic per arm (a refresh "
                        "after each but the last).")
    users: int = Field(20, ge=1, le=10_000, description="Simulated users.")
    requests_per_user: int = Field(5, ge=1, le=1000, description="Requests per user per round.")
    max_steps: int = Field(20, ge=1, le=100_000, description="KTO steps per refresh.")
    seed: int = Field(0, ge=0, description="Simulator seed: the population and its turns, "
                      "the same in every arm.")


# "oracle" (objective "reward" only) picks the lists by the simulator's true CTR: the ceiling of
# the reward objective's pair selection, not a deployable method; not in the default arms.
Arm = Literal["sft", "raw", "activity", "tool", "full", "full_position", "full_toolrec",
              "oracle"]
ARMS: tuple[Arm, ...] = ("sft", "raw", "activity", "tool", "full", "full_position",
                         "full_toolrec")


class ExperimentConfig(BaseModel):
    """`toolrec experiment calibration` (`loop.experiment`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    out_dir: Path = Field(Path(".toolrec/experiment"), description="Results and report.")
    seeds: tuple[int, ...] = Field((0, 1, 2, 3, 4), min_length=1,
                                   description="Simulator seeds (the replicates).")
    arms: tuple[Arm, ...] = Field(ARMS, min_length=1, description="Arms to run.")
    model: Literal["smollm2", "tiny"] = Field(
        "smollm2", description="smollm2: the real run; tiny: a quick run on the tiny Llama."
    )
    users: int = Field(24, ge=2, le=10_000, description="Users of the logged traffic.")
    requests_per_user: int = Field(8, ge=1, le=10_000, description="Logged requests per user.")
    history_per_user: int = Field(
        40, ge=0, le=10_000, description="Earlier impressions per user in the calibration "
        "state before the logged traffic (not trained on; see loop.experiment)."
    )
    eval_turns: int = Field(40, ge=1, le=10_000, description="Fixed ground-truth eval turns.")
    max_steps: int = Field(20, ge=1, le=100_000, description="KTO steps per trained arm.")
    eval_every: int = Field(
        10, ge=0, le=100_000, description="Evaluate the adapter every this many steps (the "
        "learning curve; each point costs one evaluation pass). 0: the final step only."
    )
    epochs: float = Field(
        3.0, gt=0, le=1000, description="Upper bound of passes over an arm's samples (the "
        "steps stop at max_steps first when the data suffice)."
    )
    batch_size: int = Field(8, ge=2, le=256, description="KTO batch size.")
    learning_rate: float = Field(
        2e-4, gt=0, le=1, description="KTO LoRA learning rate. With the reward objective 2e-4 "
        "and 20 steps lifted every trained arm above SFT over 5 seeds; on single clicks "
        "(objective clicks) 2e-4 pushed every arm below SFT, use 5e-5 there (loop/RESULTS.md)."
    )
    beta: float | None = Field(
        None, gt=0, le=10, description="KTO β (None: the trainer's, trainer.training.beta)."
    )
    undesirable_weight: float | None = Field(
        None, ge=0, le=10, description="KTO class weight of non-clicked samples (None: the "
        "trainer's; 0: clicks only, GQR's CTR-filtered KTO)."
    )
    objective: Literal["clicks", "reward"] = Field(
        "reward", description="clicks: KTO on each shown suggestion labelled by its click "
        "(weights from the arm's calibration). reward: GQR's CTR alignment — a CTR model "
        "fitted on the arm's weighted clicks scores sampled candidate lists of the logged "
        "prompts; KTO on the best (desirable) and worst (undesirable) whole list per prompt "
        "(trainer.reward)."
    )
    # the refresh's defaults (trainer.config.RewardObjectiveConfig), so both train alike
    candidates: int = Field(
        _REWARD.candidates, ge=1, le=16, description="reward objective: lists sampled per "
        "logged prompt beside the logged one (same decoding as serving), shared by every arm "
        "of a seed."
    )
    min_reward_gap: float = Field(
        _REWARD.min_gap, ge=0, le=4, description="reward objective: a prompt trains only when "
        "its best and worst candidate differ by at least this many expected clicks."
    )
    reward_l2: float = Field(_REWARD.l2, ge=0, description="L2 penalty of the CTR model's fit.")
    engine: Literal["torch", "ctranslate2"] = Field(
        "ctranslate2", description="Engine of every generation (logged traffic, candidates, "
        "evaluation): torch runs the adapter as trained; ctranslate2 converts each adapter "
        "to int8 first, as serving does (≈ 3–5× faster here)."
    )
    generation_batch: int = Field(8, ge=1, le=64, description="Requests per generate call.")
    publish: bool = Field(
        False, description="Also write publish_json and the experiment section of "
        "publish_markdown (the committed record of a run)."
    )
    publish_json: Path = Field(Path("loop/results/calibration.json"),
                               description="Arms and paired differences (issue 11's shape).")
    publish_markdown: Path = Field(Path("loop/RESULTS.md"), description="Its section between "
                                   "the experiment markers is replaced; the rest is kept.")


class LoopConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    simulator: SimulatorConfig = SimulatorConfig()
    demo: DemoConfig = DemoConfig()
    experiment: ExperimentConfig = ExperimentConfig()
    closed_loop: ClosedLoopConfig = ClosedLoopConfig()
