"""A cross-encoder over (said form of a text, "name: description" of a tool): does this
tool serve this text? An experiment for issue 14 (retrieval/EVAL.md, session 15).

The bi-encoder ranking cannot tell "is it going to rain tomorrow" (weather) from "why
does it rain more in spring" (no tool): both lie near the weather tool. A pair model reads
the text and the tool together. It is all-MiniLM-L6-v2's weights (the installed package
`retrieval.encoder` loads; nothing downloads) read over the pair, mean-pooled, with a fresh
one-logit head, trained with a logistic loss on pairs built only from training rows:

- catalog examples (at most `max_per_tool` per tool): (example, its tool) = 1 and
  (example, each of the bi-encoder's `negatives` best other tools) = 0;
- the contrast pairs (`retrieval/data/linker_contrast.jsonl`): a tool row as a catalog
  example; its no-tool twin = 0 with its pair's tool and with the bi-encoder's
  `twin_negatives` best tools — "same topic, needs a tool or not".

Never a tuning or evaluation row (catalog dev / test, spoken, forms, fresh): those are
what `toolrec tools cv` decides out-of-fold; an example equal to a row of a set with
tuning rows is left out (157 spoken rows are catalog examples; the fresh set has none by
construction). The training-only no-tool texts the linker fits on (hand-written and
generated negatives) are left out as well, so their false-link rate in the
cross-validation stays out of sample. The pieces that build pairs are pure; torch and
transformers are imported inside the loop and the scorer.
`python -m retrieval.crossencoder` trains (cached under the retrieval cache) and compares the
linker with and without the pair score as one more feature (`CvSpec.extra`). Not shipped:
on CV it raised spoken link recall 1.4-3.0 points, but one pair score costs 8-12 ms even
in CTranslate2 int8; with the tool's name alone (`name_only`) it fits 8 ms but the gain
falls to 0.6-0.8 points (EVAL.md, sessions 15 and 16).

Imports `retrieval.evaluate` (rows, `CONTRAST_RESOURCE`), `retrieval.crossval`,
`retrieval.lexical`, `retrieval.encoder` (the weights' directory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.catalog import Catalog, Tool
from retrieval.lexical import form_text
from toolrec.errors import RetrievalError

log = logging.getLogger(__name__)
# (text, gold tool id or None, tool ids known not to serve it)
TrainingText = tuple[str, str | None, tuple[str, ...]]


@dataclass(frozen=True)
class PairSettings:
    """What the pair model is trained on and how (part of its cache key)."""

    max_per_tool: int = 3  # catalog examples per tool: a subsample, for training time
    negatives: int = 1  # the bi-encoder's best wrong tools paired with each text as 0
    twin_negatives: int = 2  # same for a no-tool twin (besides its pair's own tool)
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 3e-5
    head_learning_rate: float = 1e-3  # the fresh head starts from nothing
    warmup: float = 0.1
    max_length: int = 64  # tokens of text + tool together
    seed: int = 0
    name_only: bool = False  # the tool side is its name alone: half the tokens (session 16)

    def __post_init__(self) -> None:
        counts = {"max_per_tool": self.max_per_tool, "epochs": self.epochs,
                  "batch_size": self.batch_size, "max_length": self.max_length}
        low = {k: v for k, v in counts.items() if v < 1}
        if low:
            raise RetrievalError(f"PairSettings needs {sorted(low)} >= 1, got {low}")
        if self.negatives < 0 or self.twin_negatives < 0 or not 0 <= self.warmup < 1:
            raise RetrievalError(f"PairSettings needs negatives >= 0 and 0 <= warmup < 1, got "
                                 f"negatives={self.negatives}, twin_negatives="
                                 f"{self.twin_negatives}, warmup={self.warmup}")


@dataclass(frozen=True)
class Pair:
    text: str  # the said form
    tool: str  # a tool id
    label: float  # 1: the tool serves the text


def tool_text(tool: Tool, *, name_only: bool = False) -> str:
    """The tool side of a pair."""
    return tool.name if name_only else f"{tool.name}: {tool.description}"


def catalog_texts(catalog: Catalog, max_per_tool: int, seed: int,
                  exclude: Callable[[str], bool] = lambda _: False) -> list[TrainingText]:
    """Up to `max_per_tool` examples of every tool (a seeded sample of those not excluded),
    each with its tool."""
    rng = random.Random(seed)
    out: list[TrainingText] = []
    for tool in catalog.tools:
        picked = [e for e in tool.examples if not exclude(e)]
        rng.shuffle(picked)
        out += [(e, tool.id, ()) for e in picked[:max_per_tool]]
    return out


def contrast_texts(catalog: Catalog, resource: str) -> list[TrainingText]:
    """The contrast pairs: tool rows with their gold, no-tool twins with their mate's gold
    as a tool known not to serve them (pairs naming a tool the catalog lacks are left out)."""
    ref = resources.files("retrieval.data").joinpath(resource)
    rows = [json.loads(line) for line in ref.read_text("utf-8").splitlines() if line.strip()]
    gold = {r["pair"]: r["gold"] for r in rows if r.get("gold")}
    keep = {p for p, g in gold.items() if g in catalog}
    return [(r["text"], r.get("gold"), () if r.get("gold") else (gold[r["pair"]],))
            for r in rows if r["pair"] in keep]


def build_pairs(texts: Sequence[TrainingText], ranked: Sequence[Sequence[str]],
                settings: PairSettings) -> list[Pair]:
    """Labelled pairs of each text (`ranked[i]`: the bi-encoder's tool ids for text i, best
    first): its gold tool = 1, tools known not to serve it = 0, and its best-ranked other
    tools = 0 (`negatives` of a tool row, `twin_negatives` of a no-tool one)."""
    out: list[Pair] = []
    for (text, gold, known), top in zip(texts, ranked, strict=True):
        said = form_text(text)
        taken = {gold, *known}
        k = settings.negatives if gold else settings.twin_negatives
        others = [t for t in top if t not in taken][:k]
        out += [Pair(said, gold, 1.0)] if gold else []
        out += [Pair(said, t, 0.0) for t in (*known, *others)]
    return out


def settings_key(settings: PairSettings, catalog: Catalog, resource: str) -> str:
    """Names a fit: its settings, the catalog and the contrast file."""
    data = resources.files("retrieval.data").joinpath(resource).read_bytes()
    named = asdict(settings)
    if not settings.name_only:  # fits made before the option keep their key
        del named["name_only"]
    blob = json.dumps(named, sort_keys=True).encode() + catalog.hash.encode() + data
    return hashlib.sha256(blob).hexdigest()[:12]


class CrossEncoder:
    """The pair model: MiniLM over "[CLS] text [SEP] tool [SEP]", mean-pooled, one logit."""

    def __init__(self, model_dir: Path, catalog: Catalog, *, max_length: int = 64,
                 name_only: bool = False) -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        self.catalog = catalog
        self.name_only = name_only
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding()
        self.encoder = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
        torch.nn.init.normal_(self.head.weight, std=0.02)
        torch.nn.init.zeros_(self.head.bias)
        self._cache: dict[tuple[str, str], float] = {}

    def logits(self, pairs: Sequence[tuple[str, str]]) -> Any:
        """The model's logit of each (said text, tool id) pair, as a torch tensor."""
        import torch

        enc = self.tokenizer.encode_batch(
            [(text, tool_text(self.catalog.get(tool), name_only=self.name_only))
             for text, tool in pairs])
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        types = torch.tensor([e.type_ids for e in enc])
        hidden = self.encoder(input_ids=ids, attention_mask=mask,
                              token_type_ids=types).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return self.head(pooled).squeeze(-1)

    def score(self, texts: Sequence[str], tools: Sequence[str], *,
              batch_size: int = 64) -> np.ndarray:
        """Logits of (said form of text, tool) pairs, cached; batched by length."""
        import torch

        keys = [(form_text(t), tool) for t, tool in zip(texts, tools, strict=True)]
        todo = sorted({k for k in keys if k not in self._cache}, key=lambda k: len(k[0]))
        self.encoder.eval()
        with torch.inference_mode():
            for s in range(0, len(todo), batch_size):
                chunk = todo[s:s + batch_size]
                self._cache.update(zip(chunk, self.logits(chunk).tolist(), strict=True))
        return np.array([self._cache[k] for k in keys])

    def save(self, path: Path) -> None:
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"encoder": self.encoder.state_dict(), "head": self.head.state_dict()}, tmp)
        tmp.rename(path)

    def load(self, path: Path) -> CrossEncoder:
        import torch

        state = torch.load(path, map_location="cpu")
        self.encoder.load_state_dict(state["encoder"])
        self.head.load_state_dict(state["head"])
        return self


def train(model: CrossEncoder, pairs: Sequence[Pair], settings: PairSettings) -> list[float]:
    """Fit every weight with a logistic loss (AdamW, linear warm-up then decay), one
    thread; returns the mean loss of each logged stretch of steps."""
    import torch

    torch.manual_seed(settings.seed)
    order = list(pairs)
    batches: list[list[Pair]] = []
    for epoch in range(settings.epochs):
        random.Random(settings.seed + epoch).shuffle(order)
        batches += [order[s:s + settings.batch_size]
                    for s in range(0, len(order), settings.batch_size)]
    optim = torch.optim.AdamW([
        {"params": model.encoder.parameters(), "lr": settings.learning_rate},
        {"params": model.head.parameters(), "lr": settings.head_learning_rate}])
    warm = max(1, int(settings.warmup * len(batches)))
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(
        (s + 1) / warm, max(0.0, (len(batches) - s) / max(1, len(batches) - warm))))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.encoder.train()
    losses, stretch, start = [], [], time.monotonic()
    for step, batch in enumerate(batches, 1):
        loss = loss_fn(model.logits([(p.text, p.tool) for p in batch]),
                       torch.tensor([p.label for p in batch]))
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()
        stretch.append(loss.item())
        if step % 25 == 0 or step == len(batches):
            losses.append(float(np.mean(stretch)))
            log.info("step %d/%d loss %.4f (%.0f s)", step, len(batches), losses[-1],
                     time.monotonic() - start)
            stretch = []
    model.encoder.eval()
    return losses


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half."""
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="stable")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    values = np.concatenate([pos, neg])
    for v in np.unique(values):  # average ranks of ties
        tied = values == v
        ranks[tied] = ranks[tied].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def link_feature(model: CrossEncoder) -> Callable[[Sequence[str], Sequence[str]], np.ndarray]:
    """`CvSpec.extra`: the pair logit of each text with its best-ranked tool."""
    def extra(texts: Sequence[str], best: Sequence[str]) -> np.ndarray:
        return model.score(texts, best)
    return extra


def ranked_tools(retriever: Any, texts: Sequence[str], k: int) -> list[list[str]]:
    """The bi-encoder ranking's best `k` tool ids of each text (query only)."""
    retriever.encode([form_text(t) for t in texts])  # one batched pass fills the cache
    return [[h.tool_id for h in retriever.search(t, k=k)] for t in texts]


def equal_to_any(rows: Sequence[str]) -> Callable[[str], bool]:
    """Whether a text equals one of the rows after `normalize`."""
    from retrieval.evaluate import normalize

    taken = {normalize(r) for r in rows}
    return lambda text: normalize(text) in taken


def training_set(retriever: Any, settings: PairSettings, resource: str) -> list[Pair]:
    """Every training pair: catalog examples and the contrast pairs (module docstring),
    none equal to a row of a set with tuning rows (157 spoken rows are catalog examples:
    the spoken set's terse commands; a contrast row loses only itself, its mate stays)."""
    from retrieval.evaluate import EVAL_SETS, load_eval_set

    catalog = retriever.catalog
    seen = equal_to_any([r.text for name, spec in EVAL_SETS.items() if spec.tune
                         for r in load_eval_set(name)])
    texts = (catalog_texts(catalog, settings.max_per_tool, settings.seed, seen)
             + [t for t in contrast_texts(catalog, resource) if not seen(t[0])])
    k = 1 + max(settings.negatives, settings.twin_negatives) + 1
    return build_pairs(texts, ranked_tools(retriever, [t for t, _, _ in texts], k), settings)


def fitted(retriever: Any, settings: PairSettings, *, cache_dir: Path) -> CrossEncoder:
    """The trained pair model, from the cache when this fit was made before."""
    import torch

    from retrieval.encoder import default_model_dir
    from retrieval.evaluate import CONTRAST_RESOURCE

    torch.set_num_threads(1)
    catalog = retriever.catalog
    model = CrossEncoder(default_model_dir(), catalog, max_length=settings.max_length,
                         name_only=settings.name_only)
    path = cache_dir / f"crossencoder-{settings_key(settings, catalog, CONTRAST_RESOURCE)}.pt"
    if path.is_file():
        return model.load(path)
    pairs = training_set(retriever, settings, CONTRAST_RESOURCE)
    log.info("training the pair model on %d pairs (%d positive)", len(pairs),
             sum(p.label == 1 for p in pairs))
    start = time.monotonic()
    train(model, pairs, settings)
    log.info("trained in %.0f s", time.monotonic() - start)
    model.save(path)
    return model


def separation(retriever: Any, model: CrossEncoder) -> dict[str, dict[str, float]]:
    """Per tuning set: AUC of right vs wrong top-1 links (no-tool rows are wrong) of the
    pair score and of the ranking's best score (none of these rows was trained on)."""
    from retrieval.evaluate import tuning_rows

    rows = tuning_rows(retriever)
    signals = retriever.link_signals([r.text for r, _ in rows])
    ranked = [retriever.ranking(s) for s in signals]
    right = np.array([best == r.gold for (r, _), (_, best, _) in zip(rows, ranked, strict=True)])
    pair = model.score([r.text for r, _ in rows], [best for _, best, _ in ranked])
    best_score = np.array([rk.best for rk, _, _ in ranked])
    source = np.array([n for _, n in rows])
    return {s: {"rows": float((source == s).sum()),
                "pair": auc(pair[source == s], right[source == s]),
                "ranking": auc(best_score[source == s], right[source == s])}
            for s in sorted(set(source))}


def pair_latency(model: CrossEncoder, texts: Sequence[str], tools: Sequence[str]) -> dict[
        str, float]:
    """Milliseconds of one uncached pair score (p50 / p99), one thread."""
    times = []
    for text, tool in zip(texts, tools, strict=True):
        model._cache.clear()
        start = time.perf_counter()
        model.score([text], [tool])
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def main(argv: Sequence[str] | None = None) -> None:
    """Train (or load) the pair model, then print its separation, its latency and
    `tools cv` without and with it as one more linker feature, in the same run."""
    from retrieval.config import RetrievalConfig
    from retrieval.crossval import CvSpec, cross_validate, format_cv
    from retrieval.evaluate import tuning_rows
    from retrieval.retriever import Retriever

    parser = argparse.ArgumentParser(prog="python -m retrieval.crossencoder")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--max-per-tool", type=int, default=PairSettings.max_per_tool)
    parser.add_argument("--epochs", type=int, default=PairSettings.epochs)
    parser.add_argument("--learning-rate", type=float, default=PairSettings.learning_rate)
    parser.add_argument("--seed", type=int, default=PairSettings.seed)
    parser.add_argument("--max-length", type=int, default=PairSettings.max_length)
    parser.add_argument("--name-only", action="store_true", help="the tool side is its name")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--no-base", action="store_true", help="skip the run without it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    retriever = Retriever(RetrievalConfig())
    settings = PairSettings(max_per_tool=args.max_per_tool, epochs=args.epochs,
                            learning_rate=args.learning_rate, seed=args.seed,
                            max_length=args.max_length, name_only=args.name_only)
    model = fitted(retriever, settings, cache_dir=retriever.config.cache_dir)
    if args.train_only:
        return
    print(json.dumps({"settings": asdict(settings), "auc": separation(retriever, model)},
                     indent=1))
    rows = [r for r, _ in tuning_rows(retriever)][:300]
    best = [retriever.ranking(s)[1] for s in retriever.link_signals([r.text for r in rows])]
    print("one pair score:", pair_latency(model, [r.text for r in rows], best))
    for extra in ([] if args.no_base else [None]) + [link_feature(model)]:
        print(format_cv(cross_validate(retriever, CvSpec(repeats=args.repeats, extra=extra))))


if __name__ == "__main__":
    main()
