"""Experiment (issue 14): does hard-negative contrastive fine-tuning of the encoder on the
catalog (`retrieval.finetune`) raise retrieval on unseen phrasing?

Fits the encoder once (cached under the retrieval cache by `finetune_key`), then scores the
base and the fine-tuned encoder side by side in one run, both on the shipped engine
(CTranslate2 int8; the fine-tuned directory is converted like the base), on the TUNING rows
only (every spoken row, catalog `dev`; catalog `test` and the fresh set never read): R@1 /
R@5 / MRR of the fused ranking, and with `--cv` the out-of-fold linking of `toolrec tools cv`
(reranker and linker refitted per fold, so each encoder gets its own linker).

    OMP_NUM_THREADS=1 nice -n 19 python -m bench.encoder_finetune [--epochs 1] [--cv]
        [--lora-rank R --lr 2e-4 [--lora-alpha A]]

With `--lora-rank` the fit is a LoRA (its merged model is scored; the low-rank file it
would ship, `encoder_lora.npz`, lies beside it); its update scale is alpha / rank, so a
higher rank at the default alpha (16) is also a smaller step: pass `--lora-alpha` = rank
to keep the scale at 1.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from retrieval.config import RetrievalConfig
from retrieval.crossval import CvSpec, cross_validate
from retrieval.encoder import default_model_dir, encoder_identity
from retrieval.evaluate import (
    CONTRAST_RESOURCE,
    EVAL_SETS,
    context_ranking,
    load_context_set,
    load_eval_set,
    ranking_metrics,
    training_texts,
)
from retrieval.finetune import (
    FINETUNE_DIR_PREFIX,
    FinetuneSettings,
    catalog_triples,
    finetune_key,
    train,
)
from retrieval.retriever import Retriever


def tune_ranking(retriever: Retriever) -> dict[str, dict[str, float]]:
    """R@1/R@5/MRR of each set's tuning splits (gold rows whose tool is in the catalog), and
    of the context set's tune half searched with its context."""
    out = {}
    for name, spec in EVAL_SETS.items():
        if not spec.tune:  # a held-out-only set (fresh) is never scored while tuning
            continue
        rows = [r for r in load_eval_set(name) if spec.is_tuning(r) and r.gold]
        retriever.encode([r.text for r in rows])
        ranks = []
        for r in rows:
            ids = [h.tool_id for h in retriever.search(r.text, k=10)]
            ranks.append(ids.index(r.gold) + 1 if r.gold in ids else 0)
        out[name] = ranking_metrics(ranks)
    context = [r for r in load_context_set() if r.split == "tune"]
    out["context"] = context_ranking(retriever, context)
    return out


def contrast_no_tool_texts() -> list[str]:
    """The no-tool side of the linker's contrast pairs (training-only; `linker_contrast.jsonl`)."""
    return [r.text for r in training_texts(CONTRAST_RESOURCE) if r.gold is None]


def fit(config: RetrievalConfig, settings: FinetuneSettings, limit: int) -> Path:
    """The fine-tuned model directory under the cache, trained now if missing."""
    base = Retriever(config)
    base_dir = default_model_dir()
    no_tool = contrast_no_tool_texts() if settings.no_tool_per_batch else []
    key = finetune_key(base.catalog.hash, encoder_identity(base_dir, config.max_seq_length),
                       settings, no_tool)
    out = config.cache_dir / f"{FINETUNE_DIR_PREFIX}{key}{'-lim' + str(limit) if limit else ''}"
    if (out / "model.safetensors").is_file():
        print(f"fine-tuned model exists: {out}")
        return out
    started = time.perf_counter(), time.process_time()
    triples = catalog_triples(base.catalog, base.encoder, settings)
    triples = triples[:limit] if limit else triples
    print(f"{len(triples)} triples mined in {time.perf_counter() - started[0]:.0f} s; e.g.")
    for t in triples[:: max(1, len(triples) // 5)][:5]:
        print(f"  {t.anchor!r} + {t.positive!r} - {t.negative!r}")
    record = train(base_dir, triples, settings, out, no_tool=no_tool, log_every=20)
    print(f"trained {record['steps']} steps in {time.perf_counter() - started[0]:.0f} s wall, "
          f"{time.process_time() - started[1]:.0f} s CPU; loss {record['loss_first']:.3f} -> "
          f"{record['loss_last']:.3f} -> {out}")
    return out


def report(label: str, retriever: Retriever, cv: bool) -> dict[str, Any]:
    scores: dict[str, Any] = {"ranking": tune_ranking(retriever)}
    if cv:
        scores["cv"] = cross_validate(retriever, CvSpec(repeats=3))["scores"]
    for name, m in scores["ranking"].items():
        print(f"{label:<6} {name:<8} tune n={m['n']} R@1 {m['recall@1']:.3f} "
              f"R@5 {m['recall@5']:.3f} MRR {m['mrr']:.3f}", flush=True)
    for name, m in scores.get("cv", {}).items():
        cells = " ".join(f"{k} {v[0]:.3f}" for k, v in m.items())
        print(f"{label:<6} cv {name:<16} {cells}", flush=True)
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hard-pool", type=int, default=3)
    ap.add_argument("--no-framed", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lora-rank", type=int, default=0, help="0: full fine-tuning")
    ap.add_argument("--lora-alpha", type=int, default=FinetuneSettings.lora_alpha,
                    help="LoRA update scale is alpha / rank (16 at rank 16: scale 1)")
    ap.add_argument("--no-tool-per-batch", type=int, default=0,
                    help="no-tool texts of the contrast pairs joining each batch as negatives")
    ap.add_argument("--limit", type=int, default=0, help="train on the first N triples only")
    ap.add_argument("--cv", action="store_true", help="also cross-validate the linker")
    ap.add_argument("--skip-base", action="store_true")
    args = ap.parse_args()
    config = RetrievalConfig(encoder_threads=1)  # the shipped engine and precision
    settings = FinetuneSettings(epochs=args.epochs, learning_rate=args.lr,
                                batch_size=args.batch_size, hard_pool=args.hard_pool,
                                framed=not args.no_framed, seed=args.seed,
                                lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
                                no_tool_per_batch=args.no_tool_per_batch)
    tuned_dir = fit(config, settings, args.limit)
    if not args.skip_base:
        report("base", Retriever(config), args.cv)
    report("tuned", Retriever(config.model_copy(update={"model_dir": tuned_dir})), args.cv)


if __name__ == "__main__":
    main()
