"""`toolrec tools ...`: search, show, link, validate, eval, cv, the fits, index, build-catalog.

Heavy imports (torch via the encoder) happen inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

import click

from retrieval.finetune import FinetuneSettings
from toolrec.cli import pass_settings


@click.group("tools")
def tools() -> None:
    """SysToolKit: search, link and validate system tools."""


def _retriever(settings: Any, **overrides: Any) -> Any:
    from retrieval.retriever import Retriever

    config = settings.retrieval.model_copy(update=overrides) if overrides else settings.retrieval
    return Retriever(config)


def _context(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@tools.command("search")
@click.argument("query", default="")
@click.option("--response", default="", help="The assistant's response to the query.")
@click.option("--recent", multiple=True, help="An earlier query of the session (repeatable, "
              "oldest first).")
@click.option("--battery", type=int, default=None, help="Battery level 0-100.")
@click.option("--charging/--not-charging", default=None)
@click.option("--hour", type=int, default=None, help="Local hour 0-23.")
@click.option("--time-of-day", type=click.Choice(["morning", "afternoon", "evening", "night"]),
              default=None)
@click.option("--network", type=click.Choice(["wifi", "cellular", "offline"]), default=None)
@click.option("--headset/--no-headset", default=None)
@click.option("--app", "foreground_app", default=None, help="Foreground app package.")
@click.option("--locale", default=None, help="BCP-47 locale, e.g. de-DE.")
@click.option("--driving/--not-driving", default=None)
@click.option("--k", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def search(settings: Any, query: str, response: str, recent: tuple[str, ...], k: int,
           as_json: bool, **ctx: Any) -> None:
    """Rank tools for QUERY in context; shows each score's parts."""
    hits = _retriever(settings).search(query, response=response, recent=list(recent),
                                       context=_context(**ctx), k=k)
    if as_json:
        click.echo(json.dumps([{"tool_id": h.tool_id, "score": h.score, "parts": h.parts}
                               for h in hits], indent=2))
        return
    if not hits:
        click.echo("no tools: the query is empty and the context suggests nothing")
        return
    names = list(hits[0].parts)
    click.echo(f"{'#':>2}  {'tool':<34} {'score':>6}  " + "  ".join(f"{n:>8}" for n in names))
    for i, h in enumerate(hits, 1):
        click.echo(f"{i:>2}  {h.tool_id:<34} {h.score:6.3f}  "
                   + "  ".join(f"{h.parts[n]:8.3f}" for n in names))


@tools.command("show")
@click.argument("tool_id")
@pass_settings
def show(settings: Any, tool_id: str) -> None:
    """Print one tool's record as JSON."""
    from retrieval.catalog import load_catalog

    tool = load_catalog(settings.retrieval.catalog_path).get(tool_id)
    click.echo(json.dumps(tool.model_dump(mode="json", exclude_none=True), indent=2,
                          ensure_ascii=False))


@tools.command("link")
@click.argument("texts", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def link(settings: Any, texts: tuple[str, ...], as_json: bool) -> None:
    """The tool each TEXT invokes, or none (the fitted linker's probability threshold, or
    retrieval.link_threshold when set)."""
    retriever = _retriever(settings)
    results = retriever.link_many(list(texts))
    if as_json:
        click.echo(json.dumps([{"text": t, "tool_id": r.tool_id, "score": r.score,
                                "best_id": r.best_id, "margin": r.margin}
                               for t, r in zip(texts, results, strict=True)], indent=2))
        return
    threshold = retriever.link_threshold
    for text, r in zip(texts, results, strict=True):
        verdict = r.tool_id or f"none (best {r.best_id})"
        click.echo(f"{text!r} -> {verdict}  confidence {r.score:.3f} "
                   f"(threshold {threshold:.3f})")


@tools.command("validate")
@click.option("--catalog", "catalog_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Catalog JSON to check (default: the configured one).")
@click.option("--no-duplicates", is_flag=True, help="Skip the near-duplicate check (no model).")
@pass_settings
def validate(settings: Any, catalog_path: Path | None, no_duplicates: bool) -> None:
    """Check the catalog: schema, ids, fields, params, actions, hints, near-duplicates."""
    from retrieval.catalog import load_catalog
    from retrieval.validate import validate_catalog

    cfg = settings.retrieval
    path = catalog_path or cfg.catalog_path
    catalog = load_catalog(path)
    vectors = None
    if not no_duplicates:
        retriever = _retriever(settings, catalog_path=path)
        index = retriever.index  # reuses the persisted phrase vectors (descriptions included)
        vectors = index.phrases[index.starts[:-1] + 1]
    report = validate_catalog(catalog, vectors=vectors, threshold=cfg.near_duplicate_threshold)
    click.echo(f"{catalog.source}: {report.n_tools} tools in {report.n_categories} categories")
    for problem in report.problems:
        click.echo(f"  {problem}")
    for a, b, sim in report.near_duplicates:
        click.echo(f"  [near-duplicate] {a} ~ {b}: description cosine {sim:.3f} "
                   f">= {report.threshold}")
    if not report.ok:
        click.echo(f"INVALID: {len(report.problems)} problems, "
                   f"{len(report.near_duplicates)} near-duplicate pairs")
        sys.exit(1)
    checked = "" if no_duplicates else f", no descriptions closer than {report.threshold}"
    click.echo(f"valid{checked}")


# the keys of retrieval.evaluate.EVAL_SETS and its CONTEXT_SET (not imported here: it loads
# the encoder stack)
EVAL_SET_NAMES = ("catalog", "spoken", "forms", "fresh", "context")


@tools.command("eval")
@click.option("--recall-floor", type=click.FloatRange(0, 1), default=0.87,
              show_default=True, help="Tuning-split recall the chosen link threshold must keep.")
@click.option("--set", "sets", multiple=True, type=click.Choice(EVAL_SET_NAMES),
              help="Evaluate only this set (repeatable; default: all, side by side).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def eval_cmd(settings: Any, recall_floor: float, sets: tuple[str, ...], as_json: bool) -> None:
    """Evaluate retrieval (Recall@1/5/10, MRR) and linking on the labelled sets: catalog
    (held-out test), spoken (all rows, tuned on), forms (tuning rows only) and fresh
    (held-out only); and the ranking of follow-ups with their context (context: tune and
    report halves, each beside the query searched alone)."""
    from retrieval.evaluate import evaluate, format_report

    report = evaluate(_retriever(settings), recall_floor=recall_floor,
                      sets=sets or EVAL_SET_NAMES)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


def _spoken_weight_option(fn: Any) -> Any:
    """--spoken-weight, shared by fit-linker and cv (unset: evaluate.SPOKEN_WEIGHT, so the
    CLI does not import the retriever to print a default)."""
    return click.option("--spoken-weight", type=click.FloatRange(0.1, 100), default=None,
                        help="Weight of the spoken rows in the linker's fit and "
                        "threshold [default: retrieval.evaluate.SPOKEN_WEIGHT].")(fn)


def _contrast_weight_option(fn: Any) -> Any:
    """--contrast-weight, shared by fit-linker and cv (unset: evaluate.CONTRAST_WEIGHT)."""
    return click.option("--contrast-weight", type=click.FloatRange(0, 100), default=None,
                        help="Weight of the contrast pairs (linker_contrast.jsonl) in the "
                        "linker's fit and threshold, 0 leaves them out [default: "
                        "retrieval.evaluate.CONTRAST_WEIGHT].")(fn)


def _weight_arg(spoken_weight: float | None,
                contrast_weight: float | None) -> dict[str, Any]:
    """The weights given on the command line (unset ones keep the fit's defaults), as
    keyword arguments (typed Any: splatted into CvSpec, whose other fields are not floats)."""
    given = {"spoken_weight": spoken_weight, "contrast_weight": contrast_weight}
    return {k: v for k, v in given.items() if v is not None}


@tools.command("cv")
@click.option("--repeats", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Fold assignments (salts of the text hash) to average over.")
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True)
@click.option("--drop", multiple=True, help="A linker feature to leave out (repeatable; an "
              "ablation to compare with).")
@_spoken_weight_option
@_contrast_weight_option
@click.option("--perturb", type=click.Choice(["none", "question-mark", "filler"]),
              default="none", show_default=True, help="Decide every row's text with a '?' "
              "after it or a spoken filler ('hey, ') before it, fitted on the rows as written "
              "(what a surface change the tuning rows lack does to linking).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def cv_cmd(settings: Any, repeats: int, folds: int, drop: tuple[str, ...],
           spoken_weight: float | None, contrast_weight: float | None, perturb: str,
           as_json: bool) -> None:
    """Cross-validate the reranker and the linker on the tuning rows only (never the
    held-out splits): out-of-fold R@1 and linking precision / recall per set and kind."""
    from retrieval.crossval import CvSpec, Perturbation, cross_validate, format_cv

    spec = CvSpec(repeats=repeats, folds=folds, drop=drop,
                  **_weight_arg(spoken_weight, contrast_weight),
                  target_precision=settings.retrieval.link_target_precision,
                  max_false_links=settings.retrieval.link_max_false_links,
                  perturb=cast(Perturbation, perturb))
    report = cross_validate(_retriever(settings), spec)
    click.echo(json.dumps(report, indent=2) if as_json else format_cv(report))


def _fit_options(fn: Any) -> Any:
    """--out and --l2, shared by the commands that fit a model on the tuning splits."""
    fn = click.option("--l2", type=click.FloatRange(0, 1000), default=1.0, show_default=True,
                      help="L2 penalty of the fit.")(fn)
    return click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
                        help="Where to write (default: the packaged file in retrieval/data)."
                        )(fn)


def _write_fitted(model_json: dict[str, Any], out: Path | None, name: str) -> Path:
    target = out or Path(__file__).parent / "data" / name
    target.write_text(json.dumps(model_json, indent=1) + "\n", encoding="utf-8")
    return target


@tools.command("fit-linker")
@_fit_options
@_spoken_weight_option
@_contrast_weight_option
@pass_settings
def fit_linker_cmd(settings: Any, out: Path | None, l2: float,
                   spoken_weight: float | None, contrast_weight: float | None) -> None:
    """Fit the tool linker on the eval sets' tuning splits (never the held-out ones)."""
    from retrieval.evaluate import fit_linker
    from retrieval.linker import FEATURES

    cfg = settings.retrieval
    model = fit_linker(_retriever(settings), target_precision=cfg.link_target_precision, l2=l2,
                       max_false_links=cfg.link_max_false_links,
                       **_weight_arg(spoken_weight, contrast_weight))
    target = _write_fitted(model.to_json(), out, "linker.json")
    click.echo(f"fitted on {model.meta['rows']} tuning rows ({model.meta['positives']} "
               f"correct best tools); threshold {model.threshold:.4f} -> {target}")
    for name, weight in sorted(zip(FEATURES, model.weights, strict=True),
                               key=lambda p: -abs(p[1])):
        click.echo(f"  {name:<20}{weight:+.3f}")


@tools.command("fit-reranker")
@_fit_options
@pass_settings
def fit_reranker_cmd(settings: Any, out: Path | None, l2: float) -> None:
    """Fit the reranker on the eval sets' tuning splits (never the held-out ones); refit the
    linker afterwards (it reads the reranked ranking)."""
    from retrieval.evaluate import fit_reranker
    from retrieval.rerank import RERANK_FEATURES

    model = fit_reranker(_retriever(settings, rerank=False), l2=l2)
    target = _write_fitted(model.to_json(), out, "reranker.json")
    click.echo(f"fitted on {model.meta['queries']} tuning queries -> {target}")
    for name, weight in zip(RERANK_FEATURES, model.weights, strict=True):
        click.echo(f"  {name:<20}{weight:+.3f}")


@tools.command("fit-adapter")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the .npz (its .json beside it; default: the packaged "
              "retrieval/data/adapter.npz).")
@click.option("--rank", type=click.IntRange(1, 384), default=64, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 1000), default=40, show_default=True)
@click.option("--l2", type=click.FloatRange(0, 10), default=2e-2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@pass_settings
def fit_adapter_cmd(settings: Any, out: Path | None, rank: int, epochs: int, l2: float,
                    seed: int) -> None:
    """Fit the embedding adapter on the catalog's phrasings only; refit the linker after
    (its features are of the adapted ranking)."""
    from retrieval.adapter import AdapterFit, fit_catalog_adapter

    retriever = _retriever(settings, adapter=False)
    blob, meta = fit_catalog_adapter(retriever.catalog, retriever.encoder,
                                     AdapterFit(rank=rank, epochs=epochs, l2=l2, seed=seed))
    target = out or Path(__file__).parent / "data" / "adapter.npz"
    target.write_bytes(blob)
    target.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    click.echo(f"fitted on {meta['phrasings']} phrasings + {meta['framed']} framed examples; "
               f"sha256 {meta['sha256'][:12]} -> {target}")


@tools.command("fit-encoder")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the .npz (its .json beside it; default: the packaged "
              "retrieval/data/encoder_update.npz).")
@click.option("--epochs", type=click.IntRange(1, 20), default=1, show_default=True)
@click.option("--lr", type=click.FloatRange(1e-6, 1e-2), default=None,
              help="Learning rate [default: 2e-5, or 2e-4 with --lora-rank].")
@click.option("--lora-rank", type=click.IntRange(0, 384), default=0, show_default=True,
              help="Train low-rank updates only (0: every weight, shipped compacted).")
@click.option("--update-rank", type=click.IntRange(1, 384),
              default=FinetuneSettings.update_rank, show_default=True,
              help="Rank each linear's change is truncated to in the shipped update.")
@click.option("--no-tool-per-batch", type=click.IntRange(0, 256),
              default=FinetuneSettings.no_tool_per_batch, show_default=True,
              help="No-tool texts (the contrast pairs' no-tool side) joining each batch as "
              "negatives of every anchor.")
@click.option("--framed/--no-framed", default=True, show_default=True,
              help="Add the examples in spoken frames to the anchors.")
@click.option("--seed", type=int, default=0, show_default=True)
@pass_settings
def fit_encoder_cmd(settings: Any, out: Path | None, epochs: int, lr: float | None,
                    lora_rank: int, update_rank: int, no_tool_per_batch: int, framed: bool,
                    seed: int) -> None:
    """Fine-tune the encoder on the catalog's own text by hard-negative contrastive learning
    and write the weight update `retrieval.encoder_update` runs with; refit the linker after
    (its features are of the ranking). ≈ 10-20 CPU-minutes for a full fit."""
    from retrieval.encoder import default_model_dir
    from retrieval.evaluate import CONTRAST_RESOURCE, training_texts
    from retrieval.finetune import fit_catalog_update

    cfg = settings.retrieval
    retriever = _retriever(settings, encoder_update=False)  # mines with the base encoder
    no_tool = [r.text for r in training_texts(CONTRAST_RESOURCE) if r.gold is None]
    fit = FinetuneSettings(epochs=epochs, learning_rate=lr or (2e-4 if lora_rank else 2e-5),
                           lora_rank=lora_rank, lora_alpha=lora_rank or 16,
                           update_rank=update_rank, no_tool_per_batch=no_tool_per_batch,
                           framed=framed, seed=seed)
    blob, meta = fit_catalog_update(retriever.catalog, retriever.encoder,
                                    cfg.model_dir or default_model_dir(), fit, cfg.cache_dir,
                                    cfg.max_seq_length, no_tool=no_tool)
    target = out or Path(__file__).parent / "data" / "encoder_update.npz"
    target.write_bytes(blob)
    target.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    click.echo(f"fitted on {meta['triples']} triples in {meta['steps']} steps (loss "
               f"{meta['loss_first']:.3f} -> {meta['loss_last']:.3f}); {len(blob) / 1e6:.1f} MB, "
               f"sha256 {meta['sha256'][:12]} -> {target}")


@tools.command("index")
@pass_settings
def index_cmd(settings: Any) -> None:
    """Load the tool index (building it if the catalog or encoder changed); print its meta."""
    index = _retriever(settings).index
    state = "rebuilt" if index.rebuilt else "loaded"
    click.echo(f"{state}: {json.dumps(index.meta)}")


@tools.command("build-catalog")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write (default: the packaged retrieval/data/systoolkit.json).")
def build_catalog(out: Path | None) -> None:
    """Compile the per-category data files (retrieval/data/catalog) into the catalog file."""
    from retrieval.catalog import write_catalog
    from retrieval.catalog_data import build_records

    target = out or Path(__file__).parent / "data" / "systoolkit.json"
    catalog = write_catalog(build_records(), target)
    click.echo(f"wrote {len(catalog)} tools ({len(catalog.categories)} categories), "
               f"hash {catalog.hash} -> {target}")
