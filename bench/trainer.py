"""Benchmark of the learning half: weighted vs stock KTO with LoRA on SmolLM2, and a refresh.

    python -m bench.trainer [--model models/smollm2-135m-instruct] [--steps 6] [--batch 8]
                            [--refresh-samples 1000] [--skip-refresh] [--skip-rss]
                            [--skip-engine] [--skip-throughput] [--engine-threads 1]
                            [--engine-bf16]

0. The fast engine (`trainer.fastkto`) against the stock-TRL path on the same batches, from
   the same champion adapter (the bootstrap SFT one when present), which is the reference
   of both: CPU seconds per step, interleaved, first mover alternating, the engine's
   one-time reference precompute amortized into its steps, and the largest loss difference
   (both policies hold the same weights at every step). One torch thread by default
   (`--engine-threads`): CPU time then measures work, not OpenMP spin-waiting on a loaded
   machine. Prints `kto_step_cpu_s stock=… ours=… speedup=… max_loss_diff=…`.
1. Throughput, interleaved in one process: the weighted trainer (`trainer.kto`) and TRL's
   stock `KTOTrainer` on the same batches (the stock one without the weight column), one
   training step (collate + forward + backward) of each in turn, first mover alternating,
   so drifting load on a shared machine hits both alike. Prints samples/s of each and the
   weighting overhead (target <= 5%).
2. Peak RSS: each trainer's full `.train()` of the same steps in its own spawned process
   (ru_maxrss), with its samples/s from the HF loop (optimizer included); the fast engine's
   `train_weighted_kto` likewise.
3. Wall time of a full refresh (`trainer.refresh`) of N synthetic samples on a fresh Delta
   lake, evaluation and registration included (announcement off: no broker needed).

Every number is measured on this machine in this run; nothing is estimated.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL = Path("models/smollm2-135m-instruct")
DEFAULT_CHAMPION = Path("models/smollm2-135m-instruct-sft")  # the bootstrap SFT adapter


def _dataset(n: int, *, weighted: bool) -> Any:
    import pyarrow as pa

    from bench.samples import synthetic_samples
    from trainer.config import TrainingConfig
    from trainer.data import build_training_set, to_kto_dataset

    table = pa.Table.from_pylist(synthetic_samples(n, seed=11))
    train = build_training_set(table, None, TrainingConfig(holdout_share=0.0), seed=11)
    dataset = to_kto_dataset(train.table)
    return dataset if weighted else dataset.remove_columns("weight")


def _trainer(kind: str, model_dir: Path, batch: int, steps: int, out_dir: Path) -> Any:
    import datasets
    from trl.trainer.kto_trainer import KTOTrainer

    from generator.loading import load_model
    from trainer.config import TrainingConfig
    from trainer.kto import WeightedKTOTrainer, kto_args, lora_config

    datasets.disable_progress_bars()
    logging.getLogger("trl.trainer.kto_trainer").setLevel(logging.ERROR)
    config = TrainingConfig(batch_size=batch, max_steps=steps, logging_steps=10_000)
    model, tokenizer = load_model(model_dir)
    cls = WeightedKTOTrainer if kind == "weighted" else KTOTrainer
    extra: dict[str, Any] = {"completion_eos": True} if kind == "weighted" else {}  # same seqs
    return cls(model=model, args=kto_args(config, out_dir / kind),
               train_dataset=_dataset(batch * steps, weighted=kind == "weighted"),
               processing_class=tokenizer, peft_config=lora_config(config), **extra)


def interleaved_throughput(model_dir: Path, batch: int, steps: int, out: Path) -> dict[str, Any]:
    """Per-step wall time of both trainers, alternating, after one warm-up step each."""
    trainers = {k: _trainer(k, model_dir, batch, steps + 1, out) for k in ("stock", "weighted")}
    loaders = {k: iter(t.get_train_dataloader()) for k, t in trainers.items()}
    for trainer in trainers.values():
        trainer.current_gradient_accumulation_steps = 1  # set by .train() otherwise
    times: dict[str, list[float]] = {"stock": [], "weighted": []}
    cpu: dict[str, list[float]] = {"stock": [], "weighted": []}
    for step in range(steps + 1):
        order = ["weighted", "stock"] if step % 2 else ["stock", "weighted"]
        for kind in order:
            trainer = trainers[kind]
            started, cpu_started = time.perf_counter(), time.process_time()
            inputs = next(loaders[kind])
            trainer.training_step(trainer.model, inputs)
            trainer.model.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_started
            if step > 0:  # step 0 warms caches and allocators
                times[kind].append(elapsed)
                cpu[kind].append(cpu_s)
            print(f"  step {step} {kind:<8} {elapsed:6.2f}s wall {cpu_s:6.2f}s cpu", flush=True)
    result: dict[str, Any] = {"steps": steps, "batch": batch}
    for kind, values in times.items():
        result[kind] = {"samples_per_s": batch * len(values) / sum(values),
                        "median_step_s": statistics.median(values),
                        "cpu_s_per_sample": sum(cpu[kind]) / (batch * len(values))}
    result["added"] = added_work(trainers["weighted"], batch)
    result["overhead"] = sum(times["weighted"]) / sum(times["stock"]) - 1
    result["cpu_overhead"] = sum(cpu["weighted"]) / sum(cpu["stock"]) - 1
    # per-step pairs share the machine's load of that moment: their median ratio is robust
    result["median_pair_overhead"] = statistics.median(
        w / s for w, s in zip(times["weighted"], times["stock"], strict=True)) - 1
    result["median_pair_cpu_overhead"] = statistics.median(
        w / s for w, s in zip(cpu["weighted"], cpu["stock"], strict=True)) - 1
    return result


def added_work(trainer: Any, batch: int, reps: int = 200) -> dict[str, float]:
    """Wall time of exactly the work weighting adds to a step, measured in isolation (robust
    to a loaded machine): the weight tensor in the collator, and the per-batch class-weight
    swap around TRL's loss. Both in milliseconds per step."""
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    examples = [trainer.train_dataset[i] for i in range(batch)]
    weighted = trainer.data_collator
    stock = DataCollatorForUnpairedPreference(pad_token_id=weighted.pad_token_id)

    def per_call_ms(fn: Any) -> float:
        started = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - started) / reps * 1000

    rounds = [(per_call_ms(lambda: weighted(examples)), per_call_ms(lambda: stock(examples)))
              for _ in range(5)]  # alternating; the minimum of each is the least disturbed
    collate = min(w for w, _ in rounds) - min(s for _, s in rounds)
    inputs = weighted(examples)

    def hook() -> None:
        with trainer._per_sample_class_weights(inputs["weight"], inputs["label"]):
            pass

    return {"collate_ms": collate, "loss_hook_ms": per_call_ms(hook)}


def _rss_child(kind: str, model_dir: str, batch: int, steps: int, out: str, queue: Any) -> None:
    if kind == "fast":
        queue.put(_fast_run(Path(model_dir), batch, steps))
        return
    trainer = _trainer(kind, Path(model_dir), batch, steps, Path(out))
    metrics = trainer.train().metrics
    queue.put({"kind": kind, "samples_per_s": metrics["train_samples_per_second"],
               "runtime_s": metrics["train_runtime"],
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _fast_run(model_dir: Path, batch: int, steps: int) -> dict[str, Any]:
    """`trainer.fastkto.train_weighted_kto` on the same rows and fresh LoRA as the HF-loop
    runs; its samples/s include tokenization and the reference precompute."""
    from generator.loading import load_model
    from trainer.config import TrainingConfig
    from trainer.fastkto import train_weighted_kto

    model, tokenizer = load_model(model_dir)
    policy = _continue_from(model, None)
    config = TrainingConfig(batch_size=batch, max_steps=steps)
    rows = _dataset(batch * steps, weighted=True).to_list()
    result = train_weighted_kto(policy, tokenizer, rows, config, label="rss")
    return {"kind": "fast", "samples_per_s": result.steps * batch / result.seconds,
            "runtime_s": result.seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def peak_rss(model_dir: Path, batch: int, steps: int, out: Path) -> dict[str, dict[str, float]]:
    """Each trainer's `.train()` in its own spawned process: HF-loop samples/s, peak RSS."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    results: dict[str, dict[str, float]] = {}
    for kind in ("stock", "weighted", "fast"):
        queue = context.Queue()
        process = context.Process(target=_rss_child,
                                  args=(kind, str(model_dir), batch, steps, str(out), queue))
        process.start()
        results[kind] = queue.get(timeout=3600)
        process.join()
        print(f"  {kind:<8} {results[kind]}", flush=True)
    return results


def full_refresh(model_dir: Path, n: int, out: Path) -> Any:
    """One refresh of `n` synthetic samples on a fresh lake, default training settings."""
    from bench.samples import synthetic_samples
    from generator.config import GeneratorConfig
    from lakehouse.config import LakeConfig
    from lakehouse.writer import write_samples
    from trainer.config import TrainerConfig, TrainingConfig
    from trainer.refresh import Refresher

    lake = LakeConfig(root=str(out / "lake"))
    write_samples(lake, synthetic_samples(n, seed=12))
    config = TrainerConfig(
        generator=GeneratorConfig(model_dir=model_dir),
        training=TrainingConfig(artifact_dir=out / "artifacts", lock_path=out / "lock",
                                min_new_samples=1, announce=False),
    )
    from toolrec.config import load_settings
    from trainer.refresh import retrieval_parts

    parts = retrieval_parts(load_settings().retrieval)  # loaded (warm) before the clock starts
    started = time.monotonic()
    result = Refresher(lake, config, **parts).run()
    return result, time.monotonic() - started, config.training


def _champion_config(champion: Path) -> Any:
    """The champion's LoRA config, made trainable (saved configs say inference_mode)."""
    from peft import PeftConfig

    config = PeftConfig.from_pretrained(str(champion))
    config.inference_mode = False
    return config


def _continue_from(model: Any, champion: Path | None) -> Any:
    """`model` with a trainable LoRA holding the champion's weights, as a refresh builds it
    (a fresh LoRA when there is no champion)."""
    from peft import get_peft_model, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    from trainer.config import TrainingConfig
    from trainer.kto import lora_config

    if champion is None:
        return get_peft_model(model, lora_config(TrainingConfig()))
    policy = get_peft_model(model, _champion_config(champion))
    set_peft_model_state_dict(policy, load_peft_weights(str(champion), device="cpu"))
    return policy


def _stock_on(rows: list[dict[str, Any]], model_dir: Path, champion: Path | None,
              batch: int, out: Path) -> Any:
    """The stock-TRL path (`trainer.kto.WeightedKTOTrainer` = TRL's KTOTrainer + weights)
    from the same champion, which is also its reference (TRL's "ref" adapter)."""
    import datasets
    from datasets import Dataset
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights
    from trl.trainer.utils import disable_dropout_in_model

    from generator.loading import load_model
    from trainer.config import TrainingConfig
    from trainer.kto import WeightedKTOTrainer, kto_args, lora_config

    datasets.disable_progress_bars()
    logging.getLogger("trl.trainer.kto_trainer").setLevel(logging.ERROR)
    config = TrainingConfig(batch_size=batch, logging_steps=10_000)
    model, tokenizer = load_model(model_dir)
    columns = {k: [r[k] for r in rows] for k in ("prompt", "completion", "label", "weight")}
    peft_config = _champion_config(champion) if champion else lora_config(config)
    trainer = WeightedKTOTrainer(model=model, args=kto_args(config, out / "stock-engine"),
                                 train_dataset=Dataset.from_dict(columns),
                                 processing_class=tokenizer, peft_config=peft_config)
    peft_model: Any = trainer.model
    if champion is not None:
        set_peft_model_state_dict(peft_model, load_peft_weights(str(champion), device="cpu"))
        peft_model.load_adapter(str(champion), adapter_name="ref")
        disable_dropout_in_model(peft_model)  # TRL did it at init, before "ref" existed
    trainer.current_gradient_accumulation_steps = 1  # set by .train() otherwise
    return trainer


def engine_comparison(model_dir: Path, champion: Path | None, batch: int, steps: int,
                      out: Path, *, bf16: bool = False) -> dict[str, Any]:
    """CPU seconds per KTO step, `trainer.fastkto` vs the stock-TRL path, on the same batches
    (the engine's request-packed batches, fed to the stock trainer in that order), from the
    same champion, which is the reference of both. Steps alternate (first mover alternating),
    one warm-up step each; both take an AdamW step, then the stock policy is set to the
    engine's weights, so every step's two losses are computed on identical weights. The
    engine's one-time reference precompute (done before the first update, as in training)
    is added to its steps, per batch. `bf16`: the engine under bf16 autocast (stock fp32)."""
    import pyarrow as pa
    import torch

    from bench.samples import synthetic_samples
    from generator.loading import load_model
    from trainer import fastkto as fk
    from trainer.config import TrainingConfig
    from trainer.data import build_training_set

    config = TrainingConfig(batch_size=batch, holdout_share=0.0)
    table = pa.Table.from_pylist(synthetic_samples(batch * (steps + 1), seed=11))
    rows = build_training_set(table, None, config, seed=11).table.to_pylist()
    model, tokenizer = load_model(model_dir)
    policy = _continue_from(model, champion)
    policy.eval()
    cpu0 = time.process_time()
    samples = fk.tokenize_rows(tokenizer, rows, max_length=config.max_length)
    order = fk.plan_batches(samples, batch, seed=0)[: steps + 1]
    plans = [fk.build_batch(samples, idx, max_length=config.max_length) for idx in order]
    plan_cpu = (time.process_time() - cpu0) / len(plans)
    ref_cpu, refs = [], []
    for plan in plans:
        cpu0 = time.process_time()
        refs.append(fk.reference_logps(policy, plan, bf16=bf16))
        ref_cpu.append(time.process_time() - cpu0 + plan_cpu)
    stock = _stock_on([rows[i] for idx in order for i in idx], model_dir, champion, batch, out)
    params = {"ours": [p for p in policy.parameters() if p.requires_grad],
              "stock": [p for p in stock.model.parameters() if p.requires_grad]}
    optimizers = {k: torch.optim.AdamW(v, lr=config.learning_rate, weight_decay=0.0)
                  for k, v in params.items()}
    loader = iter(stock.get_train_dataloader())
    cpu: dict[str, list[float]] = {"stock": [], "ours": []}
    wall: dict[str, list[float]] = {"stock": [], "ours": []}
    loss_diffs = []
    for step in range(steps + 1):
        losses: dict[str, float] = {}
        for kind in (["ours", "stock"] if step % 2 else ["stock", "ours"]):
            started, cpu_started = time.perf_counter(), time.process_time()
            if kind == "stock":
                losses[kind] = float(stock.training_step(stock.model, next(loader)))
            else:
                losses[kind], _ = fk.accumulate_step(policy, [plans[step]], [refs[step]],
                                                     beta=config.beta, bf16=bf16)
            torch.nn.utils.clip_grad_norm_(params[kind], 1.0)
            optimizers[kind].step()
            optimizers[kind].zero_grad(set_to_none=True)
            cpu_s, wall_s = time.process_time() - cpu_started, time.perf_counter() - started
            if kind == "ours":
                cpu_s += ref_cpu[step]
            print(f"  step {step} {kind:<5} {wall_s:6.2f}s wall {cpu_s:6.2f}s cpu "
                  f"loss {losses[kind]:.6f}", flush=True)
            if step > 0:  # step 0 warms caches and allocators
                cpu[kind].append(cpu_s)
                wall[kind].append(wall_s)
        loss_diffs.append(abs(losses["ours"] - losses["stock"]))
        with torch.no_grad():  # same weights for the next step's loss comparison
            for mine, theirs in zip(params["ours"], params["stock"], strict=True):
                theirs.copy_(mine)
    return {"cpu": cpu, "wall": wall, "ref_cpu": ref_cpu[1:], "loss_diffs": loss_diffs,
            "tokens": [p.n_tokens for p in plans[1:]],
            "stock_tokens": [p.sequence_tokens for p in plans[1:]]}


def _report_engines(result: dict[str, Any], threads: int, *, bf16: bool = False) -> None:
    stock = statistics.mean(result["cpu"]["stock"])
    ours = statistics.mean(result["cpu"]["ours"])
    load = os.getloadavg()
    name = "kto_step_cpu_s_ours_bf16" if bf16 else "kto_step_cpu_s"
    print(f"{name} stock={stock:.2f} ours={ours:.2f} speedup={stock / ours:.2f} "
          f"max_loss_diff={max(result['loss_diffs']):.2e}")
    print(f"  ours includes its one-time reference precompute amortized per step "
          f"({statistics.mean(result['ref_cpu']):.2f} CPU-s per batch); wall per step "
          f"stock {statistics.mean(result['wall']['stock']):.2f}s, ours "
          f"{statistics.mean(result['wall']['ours']):.2f}s (+ precompute); "
          f"backbone tokens per batch (policy + reference, target + KL) ours "
          f"{2 * statistics.mean(result['tokens']):.0f} vs stock "
          f"{statistics.mean(result['stock_tokens']):.0f} (unpadded; its head on every one)")
    print(f"  torch threads {threads}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=6, help="Measured steps per trainer.")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--refresh-samples", type=int, default=1000)
    parser.add_argument("--skip-refresh", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--champion", type=Path, default=DEFAULT_CHAMPION,
                        help="Adapter both engines start from and use as reference in [0] "
                        "(missing: a fresh LoRA).")
    parser.add_argument("--skip-engine", action="store_true",
                        help="Skip [0], the fast engine vs stock comparison.")
    parser.add_argument("--engine-bf16", action="store_true",
                        help="Run the fast engine in [0] under bf16 autocast (stock stays fp32).")
    parser.add_argument("--engine-threads", type=int, default=1,
                        help="torch threads for [0]: with 1, CPU time measures work; with 2 "
                        "on a loaded 2-core machine it also counts OpenMP spin-waiting.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for [1] (default: torch's). 1 thread makes CPU "
                        "time a load-independent measure of work on a shared machine.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"no model at {args.model}; run `toolrec models bootstrap` first")
    import torch

    default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"model {args.model}, torch threads {torch.get_num_threads()} in [1], "
          f"{default_threads} in [2] and [3]; cores {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        out = Path(tmp)
        if not args.skip_engine:
            champion = args.champion if (args.champion / "adapter_config.json").is_file() else None
            print(f"\n[0] KTO step, fast engine vs stock TRL, same batches: batch {args.batch}, "
                  f"{args.steps} steps each, from {champion or 'a fresh LoRA'}")
            threads = torch.get_num_threads()
            torch.set_num_threads(args.engine_threads)
            _report_engines(engine_comparison(args.model, champion, args.batch, args.steps, out,
                                              bf16=args.engine_bf16),
                            args.engine_threads, bf16=args.engine_bf16)
            torch.set_num_threads(threads)
        if not args.skip_throughput:
            print(f"\n[1] interleaved throughput: batch {args.batch}, {args.steps} steps each")
            _report_throughput(interleaved_throughput(args.model, args.batch, args.steps, out))
        torch.set_num_threads(default_threads)
        if not args.skip_rss:
            print(f"\n[2] full .train() per trainer in its own process: {args.steps} steps")
            rss = peak_rss(args.model, args.batch, args.steps, out)
            w, s = rss["weighted"], rss["stock"]
            print(f"peak RSS: weighted {w['peak_rss_mb']:.0f} MB, stock {s['peak_rss_mb']:.0f} MB "
                  f"(ratio {w['peak_rss_mb'] / s['peak_rss_mb']:.3f})")
            print(f"HF-loop samples/s: weighted {w['samples_per_s']:.3f}, stock "
                  f"{s['samples_per_s']:.3f} (ratio {w['samples_per_s'] / s['samples_per_s']:.3f})")
            f = rss["fast"]
            print(f"fast engine: peak RSS {f['peak_rss_mb']:.0f} MB, {f['samples_per_s']:.3f} "
                  f"samples/s (tokenization and reference precompute included)")
        if not args.skip_refresh:
            n = args.refresh_samples
            print(f"\n[3] full refresh of {n} samples (train + evaluate + register)")
            result, wall, training = full_refresh(args.model, n, out)
            record = result.record
            sampler = ("; no champion: its lists sampled on PyTorch"
                       if training.objective == "reward" else "")
            print(f"full refresh of {n} samples (objective {training.objective}{sampler}): "
                  f"{wall:.1f} s wall; outcome {result.outcome} ({result.reason}); timings "
                  f"{_rounded(result.timings)}")
            if record is not None:
                print(f"  trained on {record.n_train} samples ({training.batch_size}/step, "
                      f"max {training.max_steps} steps, {training.epochs} epoch), "
                      f"{record.n_holdout} held out, {training.eval_prompts} eval prompts/model")


def _report_throughput(tp: dict[str, Any]) -> None:
    print(f"weighted KTO: {tp['weighted']['samples_per_s']:.3f} samples/s "
          f"(median step {tp['weighted']['median_step_s']:.2f}s)")
    print(f"stock KTO:    {tp['stock']['samples_per_s']:.3f} samples/s "
          f"(median step {tp['stock']['median_step_s']:.2f}s)")
    added = tp["added"]["collate_ms"] + tp["added"]["loss_hook_ms"]
    step_ms = tp["stock"]["median_step_s"] * 1000
    print(f"work weighting adds per step, timed in isolation: collate "
          f"{tp['added']['collate_ms']:+.3f} ms, loss hook {tp['added']['loss_hook_ms']:.3f} "
          f"ms = {added / step_ms * 100:.4f}% of a median stock step ({step_ms:.0f} ms)")
    print(f"weighting overhead, median of per-step pairs: "
          f"{tp['median_pair_overhead'] * 100:+.1f}% wall, "
          f"{tp['median_pair_cpu_overhead'] * 100:+.1f}% CPU time (target <= 5%)")
    print(f"weighting overhead, totals: {tp['overhead'] * 100:+.1f}% wall, "
          f"{tp['cpu_overhead'] * 100:+.1f}% CPU time; CPU s/sample "
          f"weighted {tp['weighted']['cpu_s_per_sample']:.2f}, "
          f"stock {tp['stock']['cpu_s_per_sample']:.2f}")


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in values.items()}


if __name__ == "__main__":
    main()
