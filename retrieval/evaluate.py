"""Evaluation of retrieval and tool linking on the labelled set shipped with the package.

`retrieval/data/eval.jsonl` holds utterances written independently of the catalog's
examples: each has `text`, `gold` (a tool id, or null for questions, chit-chat and web
lookups that invoke no tool) and `split` (dev / test, fixed by a hash of the text).

Metrics (query only, no context):
- retrieval on the gold rows: Recall@1/5/10 (gold among the top k) and MRR;
- linking on all rows: a link is correct when the linked id equals the gold id; precision
  = correct / linked (wrong tools and links of no-tool rows count against it), recall =
  correct / gold rows; plus the binary "invokes a tool" precision/recall and the false-link
  rate on the no-tool rows.
The link threshold is chosen on the dev split, precision first: the most precise threshold
whose dev recall stays ≥ `recall_floor` (0.87: the 0.85 target plus room for dev→test
variance); it is reported on the test split, so the test numbers are held out.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from retrieval.retriever import Retriever
from toolrec.errors import RetrievalError

EVAL_RESOURCE = "eval.jsonl"


@dataclass(frozen=True)
class EvalRow:
    id: str
    text: str
    gold: str | None
    split: str


def load_eval_set() -> list[EvalRow]:
    """The labelled utterances shipped with the package."""
    ref = resources.files("retrieval.data").joinpath(EVAL_RESOURCE)
    rows = []
    for n, line in enumerate(ref.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append(EvalRow(d["id"], d["text"], d["gold"], d["split"]))
        except (json.JSONDecodeError, KeyError) as exc:
            raise RetrievalError(f"{EVAL_RESOURCE} line {n} is malformed: {exc}") from exc
    return rows


def normalize(text: str) -> str:
    """Lower-case alphanumerics and single spaces (for overlap checks)."""
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def ranking_metrics(ranks: list[int]) -> dict[str, float]:
    """Recall@1/5/10 and MRR from 1-based ranks (0 = not retrieved)."""
    r = np.array([x if x > 0 else 10**9 for x in ranks], dtype=float)
    if not len(r):
        return {"n": 0}
    return {"n": len(r), "recall@1": float(np.mean(r <= 1)), "recall@5": float(np.mean(r <= 5)),
            "recall@10": float(np.mean(r <= 10)), "mrr": float(np.mean(1.0 / r))}


def link_metrics(rows: list[EvalRow], best: list[str | None], conf: list[float],
                 threshold: float) -> dict[str, float]:
    """Strict and binary linking precision/recall at a threshold."""
    linked = [c >= threshold for c in conf]
    gold_rows = sum(r.gold is not None for r in rows)
    none_rows = len(rows) - gold_rows
    correct = sum(1 for r, b, ln in zip(rows, best, linked, strict=True) if ln and b == r.gold)
    n_linked = sum(linked)
    tool_hits = sum(1 for r, ln in zip(rows, linked, strict=True) if ln and r.gold is not None)
    false_links = sum(1 for r, ln in zip(rows, linked, strict=True) if ln and r.gold is None)
    return {
        "threshold": threshold, "linked": n_linked, "correct": correct,
        "precision": correct / n_linked if n_linked else 1.0,
        "recall": correct / gold_rows if gold_rows else 0.0,
        "wrong_tool": n_linked - correct - false_links,
        "false_links_no_tool": false_links,
        "false_link_rate_no_tool": false_links / none_rows if none_rows else 0.0,
        "detect_precision": tool_hits / n_linked if n_linked else 1.0,
        "detect_recall": tool_hits / gold_rows if gold_rows else 0.0,
    }


def choose_threshold(rows: list[EvalRow], best: list[str | None], conf: list[float],
                     recall_floor: float) -> float:
    """The most precise threshold whose recall stays at or above the floor (ties: the
    higher threshold); the lowest threshold when no threshold reaches the floor."""
    candidates = sorted(set(round(c, 4) for c in conf))
    scored = [(t, link_metrics(rows, best, conf, t)) for t in candidates]
    ok = [(m["precision"], t) for t, m in scored if m["recall"] >= recall_floor]
    return max(ok)[1] if ok else candidates[0]


def independence(retriever: Retriever, rows: list[EvalRow]) -> dict[str, float]:
    """How far eval utterances are from the catalog's own examples (leakage check)."""
    catalog = retriever.catalog
    examples = {normalize(e) for t in catalog.tools for e in t.examples}
    exact = sum(normalize(r.text) in examples for r in rows)
    index = retriever.index
    is_example = np.zeros(len(index.phrases), dtype=bool)
    for t in range(index.n_tools):
        is_example[index.starts[t] + 2: index.starts[t + 1]] = True  # skip name, description
    q = retriever.encode([r.text for r in rows])
    nearest = (q @ index.phrases[is_example].T).max(axis=1)
    return {"exact_overlap": exact, "nearest_example_cos_mean": float(nearest.mean()),
            "nearest_example_cos_p90": float(np.quantile(nearest, 0.9)),
            "share_cos_ge_0.95": float(np.mean(nearest >= 0.95))}


def evaluate(retriever: Retriever, *, recall_floor: float = 0.87) -> dict[str, Any]:
    """The full report: ranking, linking (threshold from dev), per category, leakage."""
    rows = load_eval_set()
    unknown = {r.gold for r in rows if r.gold is not None and r.gold not in retriever.catalog}
    if unknown:
        raise RetrievalError(f"eval set names tools missing from the catalog: {sorted(unknown)}")
    retriever.encode([r.text for r in rows])  # one batched pass fills the encoder cache
    ranks, best, conf = [], [], []
    for r in rows:
        hits = retriever.search(r.text, k=10) if r.gold else []
        ids = [h.tool_id for h in hits]
        ranks.append(ids.index(r.gold) + 1 if r.gold in ids else 0)
    for link in retriever.link_many([r.text for r in rows]):
        best.append(link.best_id)
        conf.append(link.score)
    by_split: dict[str, list[int]] = defaultdict(list)
    for r, rank in zip(rows, ranks, strict=True):
        if r.gold:
            by_split[r.split].append(rank)
            by_split["all"].append(rank)
    report: dict[str, Any] = {
        "rows": len(rows), "gold_rows": sum(r.gold is not None for r in rows),
        "no_tool_rows": sum(r.gold is None for r in rows),
        "categories_covered": len({r.gold.split(".")[0] for r in rows if r.gold}),
        "catalog_categories": len(retriever.catalog.categories),
        "retrieval": {s: ranking_metrics(v) for s, v in sorted(by_split.items())},
    }
    report["linking"] = _linking(rows, best, conf, recall_floor,
                                 retriever.config.link_threshold)
    report["per_category_recall@5"] = _per_category(rows, ranks)
    report["independence"] = independence(retriever, rows)
    return report


def _linking(rows: list[EvalRow], best: list[str | None], conf: list[float],
             target: float, configured: float) -> dict[str, Any]:
    def part(split: str) -> tuple[list[EvalRow], list[str | None], list[float]]:
        keep = [i for i, r in enumerate(rows) if split == "all" or r.split == split]
        return [rows[i] for i in keep], [best[i] for i in keep], [conf[i] for i in keep]

    dev = part("dev")
    chosen = choose_threshold(*dev, target)
    return {
        "recall_floor": target, "threshold_chosen_on_dev": chosen,
        "configured_threshold": configured,
        "at_chosen": {s: link_metrics(*part(s), chosen) for s in ("dev", "test", "all")},
        "at_configured": {s: link_metrics(*part(s), configured) for s in ("test", "all")},
    }


def _per_category(rows: list[EvalRow], ranks: list[int]) -> dict[str, float]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for r, rank in zip(rows, ranks, strict=True):
        if r.gold:
            hits[r.gold.split(".")[0]].append(0 < rank <= 5)
    return {c: float(np.mean(v)) for c, v in sorted(hits.items())}


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text (the `toolrec tools eval` output)."""
    lines = [
        f"eval set: {report['rows']} utterances = {report['gold_rows']} with a gold tool "
        f"({report['categories_covered']}/{report['catalog_categories']} categories) "
        f"+ {report['no_tool_rows']} no-tool",
        "",
        "retrieval (query only)     n   R@1    R@5    R@10   MRR",
    ]
    for split, m in report["retrieval"].items():
        lines.append(f"  {split:<20}{m['n']:>6}  {m['recall@1']:.3f}  {m['recall@5']:.3f}  "
                     f"{m['recall@10']:.3f}  {m['mrr']:.3f}")
    lk = report["linking"]
    lines += ["", f"tool linking (threshold chosen on dev: most precise with recall >= "
                  f"{lk['recall_floor']}: {lk['threshold_chosen_on_dev']:.4f}; "
                  f"configured: {lk['configured_threshold']:.4f})",
              "  split  threshold  precision  recall  wrong-tool  false-links(no-tool)  "
              "detect-P  detect-R"]
    for label, group in (("chosen", lk["at_chosen"]), ("config", lk["at_configured"])):
        for split, m in group.items():
            lines.append(
                f"  {split:<5}  {m['threshold']:.4f}     {m['precision']:.3f}      "
                f"{m['recall']:.3f}   {m['wrong_tool']:>5}       {m['false_links_no_tool']:>3} "
                f"({m['false_link_rate_no_tool']:.1%})          {m['detect_precision']:.3f}"
                f"     {m['detect_recall']:.3f}   [{label}]")
    ind = report["independence"]
    lines += ["", "independence of the eval set from catalog examples: "
              f"{ind['exact_overlap']} exact overlaps; nearest-example cosine mean "
              f"{ind['nearest_example_cos_mean']:.3f}, p90 {ind['nearest_example_cos_p90']:.3f}, "
              f"share >= 0.95: {ind['share_cos_ge_0.95']:.1%}",
              "", "recall@5 per category (all splits):"]
    cats = list(report["per_category_recall@5"].items())
    for i in range(0, len(cats), 4):
        lines.append("  " + "  ".join(f"{c:<14}{v:.2f}" for c, v in cats[i:i + 4]))
    return "\n".join(lines)
