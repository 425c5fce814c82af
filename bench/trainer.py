"""Benchmark of the learning half: weighted vs stock KTO with LoRA on SmolLM2, and a refresh.

    python -m bench.trainer [--model models/smollm2-135m-instruct] [--steps 6] [--batch 8]
                            [--refresh-samples 1000] [--skip-refresh] [--skip-rss]

1. Throughput, interleaved in one process: the weighted trainer (`trainer.kto`) and TRL's
   stock `KTOTrainer` on the same batches (the stock one without the weight column), one
   training step (collate + forward + backward) of each in turn, first mover alternating,
   so drifting load on a shared machine hits both alike. Prints samples/s of each and the
   weighting overhead (target <= 5%).
2. Peak RSS: each trainer's full `.train()` of the same steps in its own spawned process
   (ru_maxrss), with its samples/s from the HF loop (optimizer included).
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


def _dataset(n: int, *, weighted: bool) -> Any:
    import pyarrow as pa

    from trainer.config import TrainingConfig
    from trainer.data import build_training_set, synthetic_samples, to_kto_dataset

    table = pa.Table.from_pylist(synthetic_samples(n, seed=11))
    train = build_training_set(table, None, TrainingConfig(holdout_share=0.0), seed=11)
    dataset = to_kto_dataset(train.table)
    return dataset if weighted else dataset.remove_columns("weight")


def _trainer(kind: str, model_dir: Path, batch: int, steps: int, out_dir: Path) -> Any:
    import datasets
    from trl import KTOTrainer

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
    trainer = _trainer(kind, Path(model_dir), batch, steps, Path(out))
    metrics = trainer.train().metrics
    queue.put({"kind": kind, "samples_per_s": metrics["train_samples_per_second"],
               "runtime_s": metrics["train_runtime"],
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def peak_rss(model_dir: Path, batch: int, steps: int, out: Path) -> dict[str, dict[str, float]]:
    """Each trainer's `.train()` in its own spawned process: HF-loop samples/s, peak RSS."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    results: dict[str, dict[str, float]] = {}
    for kind in ("stock", "weighted"):
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
    from generator.config import GeneratorConfig
    from lakehouse.config import LakeConfig
    from lakehouse.writer import write_samples
    from trainer.config import TrainerConfig, TrainingConfig
    from trainer.data import synthetic_samples
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=6, help="Measured steps per trainer.")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--refresh-samples", type=int, default=1000)
    parser.add_argument("--skip-refresh", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
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
        if not args.skip_refresh:
            n = args.refresh_samples
            print(f"\n[3] full refresh of {n} samples (train + evaluate + register)")
            result, wall, training = full_refresh(args.model, n, out)
            record = result.record
            print(f"full refresh of {n} samples: {wall:.1f} s wall; outcome {result.outcome} "
                  f"({result.reason}); timings {_rounded(result.timings)}")
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
