"""Benchmark of the generator half: SmolLM2 load, generation latency, bootstrap-SFT step time.

    python -m bench.generator [--model models/smollm2-135m-instruct] [--adapter DIR]
                              [--requests 6] [--sft-steps 3] [--batch 8] [--threads N]

1. Load: `Generator.load` of the fp32 checkpoint (+ the adapter, merged), wall seconds.
2. Latency of one request (n=4, max_new_tokens 48) on held-out SysToolKit requests:
   greedy; sampled with 2 diverse candidates; and a batch of 4 requests in one call.
   Prints wall ms (mean, p50, max), new tokens, ms per new token and the format-valid rate.
3. Bootstrap SFT: wall and CPU seconds per optimizer step (LoRA, batch of `--batch`).

The machine is shared: the 1-minute load average is printed before and after, and CPU
seconds next to wall seconds, so a number taken under contention reads as such.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _requests(count: int, config: Any) -> list[Any]:
    from retrieval.catalog import load_catalog
    from trainer.sft_data import build_sft_examples

    return [ex.inputs for ex in build_sft_examples(load_catalog().tools, count, config=config,
                                                   seed=1234)]


def _latency(label: str, calls: list[Any]) -> None:
    walls = [c["ms"] for c in calls]
    tokens = [c["tokens"] for c in calls]
    valid = sum(c["valid"] for c in calls) / len(calls)
    per_token = sum(walls) / max(sum(tokens), 1)
    print(f"  {label:<28} mean {statistics.mean(walls):7.0f} ms  p50 "
          f"{statistics.median(walls):7.0f}  max {max(walls):7.0f}  new tokens "
          f"{statistics.mean(tokens):5.1f}  {per_token:5.1f} ms/token (incl. prefill)  "
          f"format-valid {valid:.2f}")


def bench_generation(generator: Any, requests: list[Any]) -> None:
    from generator.config import DecodingConfig

    greedy = DecodingConfig(temperature=0.0)
    sampled = DecodingConfig(temperature=0.8, num_candidates=2, seed=0)
    for label, decoding in (("greedy, 1 candidate", greedy), ("sampled, 2 candidates", sampled)):
        calls = []
        for inputs in requests:
            result = generator.generate(inputs, n=4, decoding=decoding)
            calls.append({"ms": result.timings["total_ms"], "tokens": result.timings["new_tokens"],
                          "valid": result.format_valid})
        _latency(label, calls)
    batch = requests[:4]
    started = time.perf_counter()
    results = generator.generate_batch(batch, n=4, decoding=greedy)
    wall = (time.perf_counter() - started) * 1000
    print(f"  greedy batch of {len(batch)} requests   {wall:7.0f} ms in all, "
          f"{wall / len(batch):7.0f} ms per request; format-valid "
          f"{sum(r.format_valid for r in results) / len(results):.2f}")


def bench_sft(model_dir: Path, steps: int, batch: int) -> None:
    import torch
    from peft import get_peft_model

    from generator.config import BootstrapSFTConfig
    from generator.loading import load_model
    from retrieval.catalog import load_catalog
    from trainer.sft import collate, completion_loss, lora_config, tokenize_example
    from trainer.sft_data import build_sft_examples

    config = BootstrapSFTConfig()
    model, tokenizer = load_model(model_dir)
    model = get_peft_model(model, lora_config(config))
    examples = build_sft_examples(load_catalog().tools, batch * (steps + 1), seed=7)
    rows = [tokenize_example(tokenizer, ex) for ex in examples]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    walls, cpus = [], []
    for step in range(steps + 1):  # the first step warms up and is not counted
        wall, cpu = time.perf_counter(), time.process_time()
        loss = completion_loss(model, collate(rows[step * batch:(step + 1) * batch],
                                              tokenizer.pad_token_id))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    tokens = statistics.mean(len(ids) for ids, _ in rows)
    print(f"  LoRA SFT step, batch {batch} (~{tokens:.0f} tokens each): "
          f"{statistics.mean(walls):.2f} s wall, {statistics.mean(cpus):.2f} s CPU per step "
          f"over {steps} steps -> default bootstrap ({config.examples} examples, "
          f"{config.epochs} epoch) ≈ {statistics.mean(walls) * config.examples / batch / 60:.1f}"
          " min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/smollm2-135m-instruct"))
    parser.add_argument("--adapter", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--sft-steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from generator.config import GeneratorConfig
    from generator.generator import Generator
    from trainer.models import bootstrap_smollm2

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}")
    if args.model == Path("models/smollm2-135m-instruct"):
        bootstrap_smollm2(args.model)
    config = GeneratorConfig(model_dir=args.model)
    started = time.perf_counter()
    generator = Generator.load(args.model, args.adapter, config=config)
    print(f"  load {args.model}{' + ' + str(args.adapter) if args.adapter else ''}: "
          f"{time.perf_counter() - started:.2f} s")
    bench_generation(generator, _requests(args.requests, config))
    if args.sft_steps:
        bench_sft(args.model, args.sft_steps, args.batch)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
