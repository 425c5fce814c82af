"""HTML reports of the demo and the experiments: tables plus matplotlib plots embedded as
base64 PNGs, so one self-contained file can be opened or mailed anywhere."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loop.metrics import Record, group, summarize
from loop.population import COHORTS

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; } pre { background: #f7f7f7; padding: 0.8em; }
"""


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
          *, left: Sequence[str] = ()) -> str:
    """An HTML table of `rows`; `columns` = (key, header)."""
    head = "".join(f"<th class='{'l' if k in left else ''}'>{html.escape(h)}</th>"
                   for k, h in columns)
    body = "".join(
        "<tr>" + "".join(f"<td class='{'l' if k in left else ''}'>"
                         f"{html.escape(fmt(row.get(k)))}</td>" for k, _ in columns) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def png(draw: Callable[[Any], None], *, size: tuple[float, float] = (6.5, 3.6),
        ncols: int = 1) -> str:
    """Run `draw(ax)` (`draw(axes)` with ncols > 1) on a fresh figure; return an <img> with
    the PNG inlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, ncols, figsize=size, dpi=100)
    try:
        draw(ax)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img src='data:image/png;base64,{data}'/>"


def page(title: str, sections: Sequence[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            + "\n".join(sections) + "</body></html>")


def write(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- plots


def _bars(ax: Any, labels: Sequence[str], series: dict[str, Sequence[float | None]],
          ylabel: str) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [j + i * width - 0.4 + width / 2 for j in range(len(labels))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize=8)


def by_version_plots(records: Sequence[Record]) -> list[str]:
    """Ground-truth CTR, tool-query share and suggestion length per served model version."""
    groups = group(records, lambda r: r.model_version)
    versions = sorted(groups, key=lambda v: (len(v), v))
    stats = [summarize(groups[v]) for v in versions]
    out = [
        "<h3>Ground-truth CTR by model version</h3>",
        png(lambda ax: _bars(ax, versions, {
            "ground-truth CTR (reference user)": [s["gt_ctr"] for s in stats],
            "observed CTR (all users)": [s["obs_ctr"] for s in stats],
            "right-tool click share (GT)": [s["gt_right_tool_share"] for s in stats],
        }, "rate")),
        "<h3>Tool-query share by model version</h3>",
        png(lambda ax: _bars(ax, versions, {
            "suggestions that invoke a tool": [s["tool_query_share"] for s in stats],
        }, "share")),
    ]

    def lengths(ax: Any) -> None:
        data = [[len(s.text.split()) for r in groups[v] for s in r.shown] or [0]
                for v in versions]
        ax.boxplot(data, tick_labels=versions, showmeans=True)
        ax.set_ylabel("words per suggestion")

    out += ["<h3>Suggestion length by model version</h3>", png(lengths)]
    return out


def cohort_ctr_plot(records: Sequence[Record], key: Callable[[Record], Any],
                    label: str) -> str:
    groups = group(records, key)
    keys = sorted(groups)
    stats = [summarize(groups[k]) for k in keys]
    return png(lambda ax: _bars(ax, [f"{label} {k}" for k in keys], {
        cohort: [s[f"obs_ctr_{cohort}"] for s in stats] for cohort in COHORTS
    }, "observed CTR"))


def weight_plot(samples: Any, cohort_of_request: dict[str, str]) -> str:
    """Box plots of the calibrated weight by activity cohort, clicked vs not clicked."""
    rows = samples.select(["request_id", "clicked", "weight"]).to_pylist()
    data, labels = [], []
    for cohort in COHORTS:
        for clicked in (True, False):
            values = [r["weight"] for r in rows
                      if cohort_of_request.get(r["request_id"]) == cohort
                      and bool(r["clicked"]) == clicked]
            data.append(values or [0.0])
            labels.append(f"{cohort}\n{'click' if clicked else 'no click'}\n(n={len(values)})")

    def draw(ax: Any) -> None:
        ax.boxplot(data, tick_labels=labels, showmeans=True)
        ax.set_yscale("log")
        ax.set_ylabel("calibrated sample weight")

    return png(draw, size=(8, 3.8))


# --------------------------------------------------------------------------- demo


def _refresh_text(refresh: dict[str, Any]) -> str:
    if not refresh:
        return ""
    if refresh.get("version") is None:
        return f"no refresh: {refresh.get('status')} ({'; '.join(refresh.get('reasons', []))})"
    swap = f", swap {refresh['swap_s']} s" if "swap_s" in refresh else ""
    return (f"{refresh['version']} {refresh.get('status')} (refresh {refresh.get('refresh_s')} s"
            f"{swap})")


def round_curve_plot(series: dict[str, Sequence[dict[str, Any]]]) -> str:
    """The learning curve of a loop run: per round the ground-truth CTR of what was served
    (`gt_ctr`, with `gt_ctr_lo`/`gt_ctr_hi` as a 95 % interval), one line per series (a
    demo has one; the closed-loop experiment one per arm), each point labelled with the
    served model version."""
    def draw(ax: Any) -> None:
        for i, (name, rows) in enumerate(series.items()):
            xs = [r["round"] + (i - (len(series) - 1) / 2) * 0.06 for r in rows]
            means = [r["gt_ctr"] if r["gt_ctr"] is not None else float("nan") for r in rows]
            err = [[m - r["gt_ctr_lo"] if r.get("gt_ctr_lo") is not None else 0.0
                    for m, r in zip(means, rows, strict=True)],
                   [r["gt_ctr_hi"] - m if r.get("gt_ctr_hi") is not None else 0.0
                    for m, r in zip(means, rows, strict=True)]]
            ax.errorbar(xs, means, yerr=err, marker="o", capsize=4, label=name)
            for x, m, r in zip(xs, means, rows, strict=True):
                ax.annotate(str(r.get("model_version", "")), (x, m), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))
        ax.set_xticks(sorted({r["round"] for rows in series.values() for r in rows}))
        ax.set_xlabel("round (each served by the model the previous refreshes left)")
        ax.set_ylabel("ground-truth CTR (95 % interval)")
        if len(series) > 1:
            ax.legend(fontsize=8)

    return png(draw, size=(8, 4.0))


def demo_report(result: Any, table_text: str) -> str:
    """The demo's HTML report (`loop.demo.DemoResult`)."""
    rows = [r.row() for r in result.rounds]
    curve = round_curve_plot({"demo": rows})
    for row in rows:
        row["refresh_after"] = _refresh_text(row.pop("refresh") or {})
        row["gt_ctr_ci"] = (f"[{fmt(row['gt_ctr_lo'])}, {fmt(row['gt_ctr_hi'])}]"
                            if row.get("gt_ctr_lo") is not None else None)
    columns = [("round", "round"), ("model_version", "served version"),
               ("requests", "requests"), ("samples", "samples in Delta"),
               ("obs_ctr", "observed CTR"), ("gt_ctr", "ground-truth CTR"),
               ("gt_ctr_ci", "95 % interval"),
               ("gt_right_tool_share", "right-tool click share"),
               ("tool_query_share", "tool-query share"), ("relevance", "relevance"),
               ("seconds", "seconds"), ("refresh_after", "refresh after the round")]
    records = result.records
    cohorts = {r.request_id: r.turn.user.cohort for r in records}
    timings = {k: round(v, 1) for k, v in result.timings.items()}
    sections = [
        f"<p class='note'>Start model: {html.escape(result.start_model)}. Wall time "
        f"{timings.get('wall_s')} s (start-up {timings.get('startup_s')} s). Ground truth "
        "comes from the simulator only; the system saw requests and feedback.</p>",
        "<h2>Rounds</h2>", table(rows, columns, left=("model_version", "refresh_after")),
        "<h2>Learning curve</h2>",
        "<p class='note'>Ground-truth CTR of the reference user per round, with its 95 % "
        "Student-t interval over the round's requests. Each round is served by the model "
        "the refreshes before it left; a round's requests are new turns of the same "
        "users, so rounds differ by the model and by the draw of turns.</p>", curve,
        "<h2>Registry</h2>",
        table(result.registry, [("version", "version"), ("status", "status"),
                                ("parent", "parent"), ("n_train", "trained on"),
                                ("reward_margin", "held-out reward margin"),
                                ("reasons", "gate")], left=("status", "reasons")),
        "<h2>Plots</h2>", *by_version_plots(records),
        "<h3>Observed CTR per activity cohort, by round</h3>",
        cohort_ctr_plot(records, lambda r: r.round, "round"),
    ]
    if result.samples is not None and result.samples.num_rows:
        sections += ["<h3>Calibrated weights by activity cohort (samples table)</h3>",
                     weight_plot(result.samples, cohorts)]
    sections += ["<h2>Configuration</h2>",
                 f"<pre>{html.escape(json.dumps(result.config, indent=2, default=str))}</pre>",
                 "<h2>Round table (text)</h2>", f"<pre>{html.escape(table_text)}</pre>"]
    return page("toolrec demo: the closed loop", sections)


# --------------------------------------------------------------------------- experiment

ARM_LABELS = {
    "sft": "SFT baseline", "raw": "KTO, raw clicks (w = 1)", "activity": "activity only",
    "tool": "tool only", "full": "full dual-level", "full_position": "full + position",
    "full_toolrec": "full, ToolRec form", "oracle": "oracle lists (true CTR; ceiling)",
}


def _interval(value: Any, digits: int = 4) -> str:
    if not value:
        return "–"
    mean, low, high = value
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def experiment_report(rows: Sequence[dict[str, Any]], results: Sequence[Any],
                      config: dict[str, Any], findings: Sequence[str],
                      record: dict[str, Any] | None = None) -> str:
    """The calibration experiment's HTML report: the aggregate table (mean [95 % interval]
    over seeds), the paired differences to raw KTO (Holm), the learning curves, per-seed
    values, the diagnostics, and a plot with error bars."""
    shown = [{
        "arm": ARM_LABELS.get(r["arm"], r["arm"]), "seeds": r["seeds"],
        "gt_ctr": _interval(r["gt_ctr"]), "diff": _interval(r["gt_ctr_minus_raw"]),
        "right_tool": _interval(r["gt_right_tool_share"], 3),
        "relevance": _interval(r["relevance"], 3),
        "tool_q": _interval(r["tool_query_share"], 3),
        "gap": _interval(r["utility_gap"], 3),
        "heavy": _interval(r["heavy_share_of_click_weight"], 3),
    } for r in rows]
    columns = [("arm", "arm"), ("seeds", "seeds"), ("gt_ctr", "ground-truth CTR"),
               ("diff", "GT CTR − raw KTO (paired)"), ("right_tool", "right-tool click share"),
               ("relevance", "relevance"), ("tool_q", "tool-query share"),
               ("gap", "weighted utility gap (data)"),
               ("heavy", "heavy clickers' share of click weight")]
    per_seed = [{"seed": r.seed, "arm": r.arm, **{k: r.metrics.get(k) for k in (
        "gt_ctr", "gt_right_tool_share", "relevance", "tool_query_share", "mean_words")},
        "utility_gap": r.diagnostics.get("utility_gap"),
        "gate": (r.refresh or {}).get("steps"), "train_s": (r.refresh or {}).get("seconds")}
        for r in results]
    sections = [
        "<h2>Findings</h2>", "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in findings)
        + "</ul>",
        "<h2>Arms: mean [95 % interval] over seeds</h2>",
        table(shown, columns, left=("arm",)),
        "<h2>Plot</h2>", _arms_plot(rows),
        *_record_sections(record),
        "<h2>Per seed</h2>",
        table(per_seed, [("seed", "seed"), ("arm", "arm"), ("gt_ctr", "GT CTR"),
                         ("gt_right_tool_share", "right-tool share"),
                         ("relevance", "relevance"), ("tool_query_share", "tool-query share"),
                         ("mean_words", "words"), ("utility_gap", "utility gap"),
                         ("gate", "KTO steps"), ("train_s", "train s")], left=("arm",)),
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(json.dumps(config, indent=2, default=str))}</pre>",
    ]
    return page("toolrec experiment: calibration", sections)


def _vs_raw_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    def cell(value: dict[str, float] | None, pct: bool) -> str:
        if not value:
            return "–"
        def f(v: float) -> str:
            return f"{v:+.1%}" if pct else f"{v:+.4f}"

        if value["lo"] is None:
            return f"{f(value['mean'])} (one seed)"
        return f"{f(value['mean'])} [{f(value['lo'])}, {f(value['hi'])}]"

    return [{"arm": ARM_LABELS.get(arm, arm), "seeds": vs["seeds"],
             "abs": cell(vs["abs"], False), "rel": cell(vs.get("rel"), True),
             "level": f"{vs['level']:.2%}", "p": fmt(vs.get("p"), 4),
             "p_holm": fmt(vs.get("p_holm"), 4), "reject": "yes" if vs.get("reject") else "no"}
            for arm, vs in record.get("vs_raw", {}).items()]


VS_RAW_COLUMNS = [("arm", "arm"), ("seeds", "seeds"), ("abs", "GT CTR − raw"),
                  ("rel", "relative to raw"), ("level", "interval level (Holm step)"),
                  ("p", "paired t p"), ("p_holm", "Holm-adjusted p"),
                  ("reject", "differs from raw")]


def _record_sections(record: dict[str, Any] | None) -> list[str]:
    if not record:
        return []
    return [
        "<h2>Paired difference to KTO on raw clicks (Holm-corrected)</h2>",
        "<p class='note'>Per seed the arm's ground-truth CTR minus raw's on the same traffic "
        "and evaluation turns; paired t-test over seeds, Holm's correction over all arms "
        "compared with raw; each interval at its Holm step's level.</p>",
        table(_vs_raw_rows(record), VS_RAW_COLUMNS, left=("arm",)),
        "<h2>Learning curves</h2>",
        "<p class='note'>Ground-truth CTR of the reference user against KTO steps: mean over "
        "seeds with its 95 % interval (step 0 = the SFT adapter every arm starts from).</p>",
        _curves_plot(record.get("curves", {})),
    ]


def _curves_plot(curves: dict[str, list[dict[str, Any]]]) -> str:
    def draw(ax: Any) -> None:
        for arm, points in curves.items():
            if arm == "sft" or not points:
                continue
            steps = [p["step"] for p in points]
            ax.plot(steps, [p["mean"] for p in points], marker="o",
                    label=ARM_LABELS.get(arm, arm))
            if all(p["lo"] is not None for p in points):
                ax.fill_between(steps, [p["lo"] for p in points], [p["hi"] for p in points],
                                alpha=0.12)
        ax.set_xlabel("KTO steps")
        ax.set_ylabel("ground-truth CTR")
        ax.legend(fontsize=8)

    return png(draw, size=(8, 4.2))


def _arms_plot(rows: Sequence[dict[str, Any]]) -> str:
    """One panel per metric: each arm's mean over seeds with its 95 % interval."""
    metrics = [("gt_ctr", "ground-truth CTR"), ("gt_right_tool_share", "right-tool click share"),
               ("relevance", "relevance to the hidden intent")]

    def draw(axes: Any) -> None:
        labels = [r["arm"] for r in rows]
        for ax, (key, name) in zip(axes, metrics, strict=True):
            means = [r[key][0] if r[key] else 0.0 for r in rows]
            low = [m - r[key][1] if r[key] else 0.0 for m, r in zip(means, rows, strict=True)]
            high = [r[key][2] - m if r[key] else 0.0 for m, r in zip(means, rows, strict=True)]
            ax.bar(range(len(rows)), means, yerr=[low, high], capsize=4,
                   color=["#999999" if a in ("sft", "raw") else "#1f77b4" for a in labels])
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
            ax.set_title(name, fontsize=9)
            finite = [m - lo for m, lo in zip(means, low, strict=True)] or [0.0]
            top = [m + hi for m, hi in zip(means, high, strict=True)] or [1.0]
            span = max(top) - min(finite)
            ax.set_ylim(max(min(finite) - 0.3 * span, 0.0), max(top) + 0.15 * span + 1e-6)

    return png(draw, size=(11, 3.8), ncols=len(metrics))


def experiment_markdown(rows: Sequence[dict[str, Any]], results: Sequence[Any],
                        config: dict[str, Any], findings: Sequence[str],
                        record: dict[str, Any] | None = None) -> str:
    """The same summary as Markdown (small enough to commit beside the code)."""
    def cell(value: Any, digits: int = 4) -> str:
        return _interval(value, digits) if isinstance(value, (tuple, list)) else fmt(value)

    head = ("| arm | seeds | ground-truth CTR | GT CTR − raw (paired) | right-tool share | "
            "relevance | tool-query share | weighted utility gap (data) | heavy share of "
            "click weight |")
    lines = ["# Calibration experiment", "", "Mean [95 % Student-t interval] over seeds.", "",
             head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {ARM_LABELS.get(r['arm'], r['arm'])} | {r['seeds']} | "
                     f"{cell(r['gt_ctr'])} | {cell(r['gt_ctr_minus_raw'])} | "
                     f"{cell(r['gt_right_tool_share'], 3)} | {cell(r['relevance'], 3)} | "
                     f"{cell(r['tool_query_share'], 3)} | {cell(r['utility_gap'], 3)} | "
                     f"{cell(r['heavy_share_of_click_weight'], 3)} |")
    if record:
        wall = record.get("wall_s")
        lines += ["", f"Wall time of the run: {wall / 60:.1f} min." if wall else ""]
        lines += ["", "## Paired difference to KTO on raw clicks (Holm-corrected)", "",
                  "| " + " | ".join(h for _, h in VS_RAW_COLUMNS) + " |",
                  "|" + "---|" * len(VS_RAW_COLUMNS)]
        lines += ["| " + " | ".join(str(r[k]) for k, _ in VS_RAW_COLUMNS) + " |"
                  for r in _vs_raw_rows(record)]
        lines += ["", "## Learning curves (ground-truth CTR, mean [95 % interval] over seeds)",
                  ""]
        for arm, points in record.get("curves", {}).items():
            if arm != "sft" and points:
                lines.append(f"- {ARM_LABELS.get(arm, arm)}: " + "; ".join(
                    f"step {p['step']}: {p['mean']:.4f}" + (
                        f" [{p['lo']:.4f}, {p['hi']:.4f}]" if p["lo"] is not None else "")
                    for p in points))
    lines += ["", "## Findings", "", *[f"- {f}" for f in findings], "", "## Per seed", "",
              "| seed | arm | GT CTR | right-tool | relevance | tool-q | words | utility gap | "
              "unweighted gap | tool share of click weight | train loss | KTO steps | train s |",
              "|" + "---|" * 13]
    for r in results:
        m, d, f = r.metrics, r.diagnostics or {}, r.refresh or {}
        lines.append(
            f"| {r.seed} | {r.arm} | {fmt(m.get('gt_ctr'), 4)} | "
            f"{fmt(m.get('gt_right_tool_share'))} | {fmt(m.get('relevance'))} | "
            f"{fmt(m.get('tool_query_share'))} | {fmt(m.get('mean_words'), 2)} | "
            f"{fmt(d.get('utility_gap'))} | {fmt(d.get('unweighted_utility_gap'))} | "
            f"{fmt(d.get('tool_share_of_click_weight'))} | {fmt(f.get('train_loss'))} | "
            f"{f.get('steps', '–')} | {f.get('seconds', '–')} |")
    lines += _reward_model_lines(results)
    lines += ["", "## Configuration", "", "```json", json.dumps(config, indent=2, default=str),
              "```", ""]
    return "\n".join(lines)


def _reward_model_lines(results: Sequence[Any]) -> list[str]:
    """Per seed and arm, what the CTR reward model did (objective "reward" only): pairs,
    its list reward's correlation with the true list CTR over all candidates, how much
    truly better the chosen lists were, and its coefficients."""
    rows = [r for r in results if "pairs" in (r.diagnostics or {})]
    if not rows:
        return []
    lines = ["", "## CTR reward model (objective \"reward\")", "",
             "| seed | arm | pairs | corr(reward, true CTR) | true CTR chosen − rejected | "
             "coefficients |", "|" + "---|" * 6]
    for r in rows:
        d = r.diagnostics
        coef = ", ".join(f"{k} {v:+.2f}" for k, v in (d.get("ctr_model") or {}).items())
        lines.append(f"| {r.seed} | {r.arm} | {d['pairs']} | {fmt(d.get('reward_true_corr'))} "
                     f"| {fmt(d.get('pair_true_gap'))} | {coef} |")
    return lines
