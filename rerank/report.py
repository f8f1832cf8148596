"""The evaluation report: both stages' ir-measures metrics, lift, significance, a Markdown table, a plot.

The JSON shape is the contract in DESIGN.md ("Evaluation report"); measure names are ir-measures' own.
matplotlib and scipy are imported only when a plot is drawn or a test run (they are in the ``eval`` extra).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ir_measures
import numpy as np

from rerank.evaluation import EvalRun, Ranked, as_run, run_evaluation
from rerank.statistics import DEFAULT_RESAMPLES, DEFAULT_SEED, compare_paired, wins_losses_ties

logger = logging.getLogger(__name__)

__all__ = [
    "MEASURES",
    "PRIMARY",
    "build_report",
    "compare_reports",
    "evaluate",
    "per_query_metrics",
    "plot_report",
    "render_markdown",
    "stage_metrics",
    "write_report",
]

MEASURES = [
    ir_measures.nDCG @ 10,
    ir_measures.RR @ 10,
    ir_measures.R @ 10,
    ir_measures.R @ 100,
    ir_measures.AP,
    ir_measures.P @ 1,
]
PRIMARY = "nDCG@10"
HURT_MOST = 10
STAGES = ("first_stage", "reranked")


# --------------------------------------------------------------------------- metrics
def per_query_metrics(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], queries: Iterable[str]
) -> dict[str, dict[str, float]]:
    """``{measure name: {qid: value}}`` with ``ir_measures.iter_calc``; a query without results scores 0."""
    qids = list(queries)
    values = {str(m): dict.fromkeys(qids, 0.0) for m in MEASURES}
    present = {q: dict(run[q]) for q in qids if run.get(q)}
    if present:
        for row in ir_measures.iter_calc(MEASURES, _qrels_for(qrels, qids), present):
            if row.query_id in values[str(row.measure)]:
                values[str(row.measure)][row.query_id] = float(row.value)
    return values


def stage_metrics(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], queries: Iterable[str]
) -> dict[str, float]:
    """Mean of each measure over ``queries`` with ``ir_measures.calc_aggregate``.

    The qrels of every query are passed, so a query the system found nothing for counts as 0 (ir-measures
    fills judged queries missing from the run with zeros) rather than being left out of the mean.
    """
    qids = list(queries)
    present = {q: dict(run[q]) for q in qids if run.get(q)}
    if not present:
        return {str(m): 0.0 for m in MEASURES}
    aggregate = ir_measures.calc_aggregate(MEASURES, _qrels_for(qrels, qids), present)
    return {str(m): float(aggregate[m]) for m in MEASURES}


def _qrels_for(qrels: Mapping[str, Mapping[str, int]], qids: Sequence[str]) -> dict[str, dict[str, int]]:
    return {q: {d: int(g) for d, g in qrels.get(q, {}).items()} for q in qids}


def first_relevant_rank(ranked: Ranked, judged: Mapping[str, int]) -> int | None:
    """1-based rank of the first document judged relevant (grade >= 1), or None when none was retrieved."""
    for rank, (doc, _) in enumerate(ranked, start=1):
        if judged.get(doc, 0) >= 1:
            return rank
    return None


# --------------------------------------------------------------------------- the report
def build_report(
    run: EvalRun,
    *,
    tolerance: float = 1e-9,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> dict[str, Any]:
    """The report dict (DESIGN.md "Evaluation report" plus per-depth metrics, hurt queries and warnings)."""
    qids = list(run.queries)
    depth = run.max_depth
    stages = STAGES if run.reranked else STAGES[:1]
    if run.interpolated:
        stages = (*stages, "interpolated")
    lists = {stage: run.lists(stage) for stage in stages}
    runs = {stage: as_run(lists[stage]) for stage in stages}
    per_query = {stage: per_query_metrics(run.qrels, runs[stage], qids) for stage in stages}
    metrics = {stage: stage_metrics(run.qrels, runs[stage], qids) for stage in stages}
    warnings: list[str] = []
    empty = sum(1 for q in qids if not run.first_stage[q])
    if empty:
        warnings.append(f"{empty} of {len(qids)} queries got no first-stage results; they count as 0")
    report: dict[str, Any] = {
        "dataset": run.dataset,
        "split": run.split,
        "queries": len(qids),
        "depth": depth,
        "depths_evaluated": list(run.depths),
        "first_stage": {"name": None, "model": None, **run.first_stage_info},
        "reranker": {"model": None, **(run.reranker_info or {})},
        "measures": [str(m) for m in MEASURES],
        "metrics": {
            "first_stage": _rounded(metrics["first_stage"]),
            "reranked": _rounded(metrics["reranked"]) if run.reranked else None,
        },
        "lift": None,
        "relative_lift_pct": None,
        "significance": None,
        "per_query": {"metric": PRIMARY, "tolerance": tolerance, "wins": None, "losses": None, "ties": None},
        "hurt_most": [],
        "latency_ms": _latency(run),
        "depths": _per_depth(run),
        "self_hits_removed": run.self_hits_removed,
        "warnings": warnings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if run.reranked:
        _add_comparison(report, run, lists, per_query, metrics, tolerance, seed, n_resamples)
    if run.interpolated:
        _add_interpolation(report, run, per_query, metrics, tolerance, seed, n_resamples)
    elif run.reranked and report["lift"][PRIMARY] < 0:
        report["warnings"].append(
            "no interpolation weight is recorded for this reranker: `winnow finetune` tunes one on a dev "
            "split (winnow.json), or pass --interpolation-weight to see reranker and first stage combined"
        )
    for message in warnings:
        logger.warning("%s/%s: %s", run.dataset, run.split, message)
    return report


def _add_comparison(report, run, lists, per_query, metrics, tolerance, seed, n_resamples) -> None:
    qids = list(run.queries)
    fs, rr = metrics["first_stage"], metrics["reranked"]
    report["lift"] = {m: round(rr[m] - fs[m], 6) for m in fs}
    report["relative_lift_pct"] = {m: round(100 * (rr[m] - fs[m]) / fs[m], 2) if fs[m] else None for m in fs}
    report["significance"] = {
        m: compare_paired(
            [per_query["first_stage"][m][q] for q in qids],
            [per_query["reranked"][m][q] for q in qids],
            n_resamples=n_resamples,
            seed=seed,
        )
        for m in fs
    }
    before = [per_query["first_stage"][PRIMARY][q] for q in qids]
    after = [per_query["reranked"][PRIMARY][q] for q in qids]
    report["per_query"].update(wins_losses_ties(before, after, tolerance=tolerance))
    report["per_query"]["values"] = {
        q: {"first_stage": round(b, 6), "reranked": round(a, 6)}
        for q, b, a in zip(qids, before, after, strict=True)
    }
    report["hurt_most"] = _hurt_most(run, lists, before, after, tolerance)
    lift = rr[PRIMARY] - fs[PRIMARY]
    if lift < 0:
        report["warnings"].append(
            f"RERANKING HURTS: {PRIMARY} fell by {-lift:.4f} ({fs[PRIMARY]:.4f} -> {rr[PRIMARY]:.4f}) with "
            f"reranker {report['reranker'].get('model')!r}; check the model, its max length and the depth"
        )


def _add_interpolation(report, run, per_query, metrics, tolerance, seed, n_resamples) -> None:
    """The interpolated reranker next to the pure one: metrics, lift and significance over the first stage,
    per-query outcome, and a loud warning when it, too, loses to the first stage."""
    qids = list(run.queries)
    fs, ip = metrics["first_stage"], metrics["interpolated"]
    weight = run.interpolation_weight
    report["interpolation"] = {"weight": weight, "source": run.interpolation_source}
    report["metrics"]["interpolated"] = _rounded(ip)
    report["lift_interpolated"] = {m: round(ip[m] - fs[m], 6) for m in fs}
    report["significance_interpolated"] = {
        m: compare_paired(
            [per_query["first_stage"][m][q] for q in qids],
            [per_query["interpolated"][m][q] for q in qids],
            n_resamples=n_resamples,
            seed=seed,
        )
        for m in fs
    }
    before = [per_query["first_stage"][PRIMARY][q] for q in qids]
    after = [per_query["interpolated"][PRIMARY][q] for q in qids]
    report["per_query_interpolated"] = {
        "metric": PRIMARY,
        **wins_losses_ties(before, after, tolerance=tolerance),
    }
    for q, value in zip(qids, after, strict=True):
        report["per_query"]["values"][q]["interpolated"] = round(value, 6)
    lift = ip[PRIMARY] - fs[PRIMARY]
    pure_lift = report["lift"][PRIMARY]
    if lift < 0:
        report["warnings"].append(
            f"INTERPOLATED RERANKING HURTS TOO: {PRIMARY} fell by {-lift:.4f} ({fs[PRIMARY]:.4f} -> "
            f"{ip[PRIMARY]:.4f}) at weight {weight:.2f}; this reranker does not help on this data: serve the "
            "first stage alone or retrain"
        )
    elif pure_lift < 0:
        report["warnings"].append(
            f"the interpolated reranker (weight {weight:.2f}) does not hurt: {PRIMARY} {ip[PRIMARY]:.4f} "
            f"(lift {lift:+.4f}) where the pure reranker loses {pure_lift:+.4f}; use the interpolated one"
        )


def _hurt_most(run: EvalRun, lists, before: list[float], after: list[float], tolerance: float) -> list[dict]:
    qids = list(run.queries)
    losses = sorted(
        (i for i in range(len(qids)) if after[i] - before[i] < -tolerance),
        key=lambda i: (after[i] - before[i], qids[i]),
    )[:HURT_MOST]
    out = []
    for i in losses:
        q = qids[i]
        out.append(
            {
                "query_id": q,
                "query": run.queries[q],
                "first_stage": round(before[i], 6),
                "reranked": round(after[i], 6),
                "delta": round(after[i] - before[i], 6),
                "first_relevant_rank_first_stage": first_relevant_rank(lists["first_stage"][q], run.qrels[q]),
                "first_relevant_rank_reranked": first_relevant_rank(lists["reranked"][q], run.qrels[q]),
                "relevant": sorted(d for d, g in run.qrels[q].items() if g >= 1),
            }
        )
    return out


def _per_depth(run: EvalRun) -> dict[str, dict[str, Any]]:
    """Both stages' metrics at every evaluated depth (from the one deepest pass)."""
    qids = list(run.queries)
    out: dict[str, dict[str, Any]] = {}
    for depth in run.depths:
        fs = stage_metrics(run.qrels, as_run(run.first_stage_lists(depth)), qids)
        entry: dict[str, Any] = {"first_stage": _rounded(fs), "reranked": None, "lift": None}
        if run.reranked:
            rr = stage_metrics(run.qrels, as_run(run.reranked_lists(depth)), qids)
            entry["reranked"] = _rounded(rr)
            entry["lift"] = {m: round(rr[m] - fs[m], 6) for m in fs}
        if run.interpolated:
            ip = stage_metrics(run.qrels, as_run(run.interpolated_lists(depth)), qids)
            entry["interpolated"] = _rounded(ip)
            entry["lift_interpolated"] = {m: round(ip[m] - fs[m], 6) for m in fs}
        out[str(depth)] = entry
    return out


def _latency(run: EvalRun) -> dict[str, Any]:
    def pct(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 3) if values else None

    seconds = sum(run.rerank_ms) / 1000
    return {
        "first_stage_p50": pct(run.first_stage_ms, 50),
        "first_stage_p95": pct(run.first_stage_ms, 95),
        "rerank_p50": pct(run.rerank_ms, 50),
        "rerank_p95": pct(run.rerank_ms, 95),
        "pairs": run.pairs,
        "pairs_per_second": round(run.pairs / seconds, 1) if seconds > 0 else None,
        "device": (run.reranker_info or {}).get("device"),
    }


def _rounded(values: Mapping[str, float], digits: int = 6) -> dict[str, float]:
    return {k: round(float(v), digits) for k, v in values.items()}


# --------------------------------------------------------------------------- files
def write_report(report: Mapping[str, Any], path: str | Path, *, plot: bool = True) -> dict[str, Path]:
    """Write the JSON to ``path``, the Markdown table next to it (``.md``) and the plot (``.png``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    paths = {"json": path, "markdown": path.with_suffix(".md")}
    path.write_text(json.dumps(_json_safe(report), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    if plot:
        paths["plot"] = plot_report(report, path.with_suffix(".png"))
    return paths


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pvalue(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def render_markdown(report: Mapping[str, Any]) -> str:
    """Metrics table (with lift and significance), per-depth table, per-query outcome, latency, warnings."""
    fs_info, rr_info = report["first_stage"], report.get("reranker") or {}
    reranked = report["metrics"].get("reranked")
    lines = [
        f"## {report['dataset']} / {report['split']} ({report['queries']} queries, depth {report['depth']})",
        "",
        f"First stage: {fs_info.get('name')} ({fs_info.get('model')}); "
        f"reranker: {rr_info.get('model') or 'none'}",
        "",
    ]
    for warning in report.get("warnings", []):
        lines += [f"> **WARNING:** {warning}", ""]
    fs = report["metrics"]["first_stage"]
    if reranked:
        lines += [
            "| measure | first stage | reranked | lift | p (paired t) | p (permutation) | 95% CI of lift |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in fs:
            sig = (report.get("significance") or {}).get(m, {})
            lo, hi = sig.get("ci95") or (None, None)
            lines.append(
                f"| {m} | {_fmt(fs[m])} | {_fmt(reranked[m])} | {report['lift'][m]:+.4f} | "
                f"{_pvalue(sig.get('p_value'))} | {_pvalue(sig.get('permutation_p_value'))} | "
                f"[{_fmt(lo)}, {_fmt(hi)}] |"
            )
    else:
        lines += ["| measure | first stage |", "|---|---|"]
        lines += [f"| {m} | {_fmt(v)} |" for m, v in fs.items()]
    interpolated = report["metrics"].get("interpolated")
    if interpolated:
        weight = (report.get("interpolation") or {}).get("weight")
        lines += [
            "",
            f"Interpolated reranker (weight {_fmt(weight, 2)} x normalised reranker + "
            f"{_fmt(None if weight is None else 1 - weight, 2)} x normalised first stage):",
            "",
            "| measure | first stage | interpolated | lift | p (paired t) | p (permutation) |",
            "|---|---|---|---|---|---|",
        ]
        for m in fs:
            sig = (report.get("significance_interpolated") or {}).get(m, {})
            lines.append(
                f"| {m} | {_fmt(fs[m])} | {_fmt(interpolated[m])} | {report['lift_interpolated'][m]:+.4f} | "
                f"{_pvalue(sig.get('p_value'))} | {_pvalue(sig.get('permutation_p_value'))} |"
            )
    depths = report.get("depths") or {}
    if len(depths) > 1 or reranked:
        lines += ["", f"{PRIMARY} by rerank depth:", "", "| depth | first stage | reranked | lift |"]
        lines.append("|---|---|---|---|")
        for depth, entry in depths.items():
            rr = (entry.get("reranked") or {}).get(PRIMARY)
            lift = (entry.get("lift") or {}).get(PRIMARY)
            lines.append(
                f"| {depth} | {_fmt(entry['first_stage'][PRIMARY])} | {_fmt(rr)} | "
                f"{'–' if lift is None else f'{lift:+.4f}'} |"
            )
    pq = report.get("per_query") or {}
    if pq.get("wins") is not None:
        lines += [
            "",
            f"Per query ({pq['metric']}): {pq['wins']} wins, {pq['losses']} losses, {pq['ties']} ties.",
        ]
    pqi = report.get("per_query_interpolated") or {}
    if pqi.get("wins") is not None:
        lines.append(
            f"Interpolated, per query ({pqi['metric']}): {pqi['wins']} wins, {pqi['losses']} losses, "
            f"{pqi['ties']} ties."
        )
    lat = report.get("latency_ms") or {}
    lines += [
        "",
        f"Latency (ms): first stage p50 {_fmt(lat.get('first_stage_p50'), 2)}, "
        f"p95 {_fmt(lat.get('first_stage_p95'), 2)}; rerank p50 {_fmt(lat.get('rerank_p50'), 2)}, "
        f"p95 {_fmt(lat.get('rerank_p95'), 2)}; {_fmt(lat.get('pairs_per_second'), 1)} pairs/s "
        f"on {lat.get('device') or 'n/a'}.",
    ]
    hurt = report.get("hurt_most") or []
    if hurt:
        lines += [
            "",
            f"Queries hurt most ({PRIMARY}):",
            "",
            "| query id | query | first stage | reranked | first relevant rank (first stage -> reranked) |",
            "|---|---|---|---|---|",
        ]
        for h in hurt:
            text = " ".join(h["query"].split()).replace("|", "\\|")
            text = text if len(text) <= 80 else text[:79] + "…"
            lines.append(
                f"| {h['query_id']} | {text} | {_fmt(h['first_stage'])} | {_fmt(h['reranked'])} | "
                f"{_fmt(h['first_relevant_rank_first_stage'])} -> {_fmt(h['first_relevant_rank_reranked'])} |"
            )
    return "\n".join(lines) + "\n"


def plot_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """PNG: metrics against rerank depth for both stages, and the histogram of per-query nDCG@10 lift."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    values = ((report.get("per_query") or {}).get("values")) or {}
    fig = Figure(figsize=(11 if values else 6, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if values else 1, squeeze=False)[0]
    depths = report.get("depths") or {}
    xs = [int(d) for d in depths]
    for i, m in enumerate(("nDCG@10", "RR@10", "R@100")):
        color = f"C{i}"
        axes[0].plot(
            xs, [e["first_stage"][m] for e in depths.values()], "o--", color=color, label=f"{m} first"
        )
        if all(e.get("reranked") for e in depths.values()):
            axes[0].plot(
                xs, [e["reranked"][m] for e in depths.values()], "o-", color=color, label=f"{m} rerank"
            )
    if len(xs) > 1 and max(xs) / min(xs) >= 10:
        axes[0].set_xscale("log")
    axes[0].set_xticks(xs, [str(x) for x in xs])
    axes[0].set_xlabel("rerank depth (first-stage candidates)")
    axes[0].set_ylabel("score")
    axes[0].set_title(f"{report['dataset']} / {report['split']}")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if values:
        deltas = [v["reranked"] - v["first_stage"] for v in values.values()]
        ax = axes[1]
        ax.hist(deltas, bins=min(40, max(5, len(deltas) // 5)), color="C0", alpha=0.8)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.axvline(float(np.mean(deltas)), color="C3", linestyle="--", label=f"mean {np.mean(deltas):+.4f}")
        pq = report["per_query"]
        ax.set_title(
            f"per-query {PRIMARY} lift: {pq['wins']} wins / {pq['losses']} losses / {pq['ties']} ties"
        )
        ax.set_xlabel(f"reranked - first stage ({PRIMARY})")
        ax.set_ylabel("queries")
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# --------------------------------------------------------------------------- comparison
def _system_labels(report: Mapping[str, Any]) -> tuple[str, str | None]:
    fs = report.get("first_stage") or {}
    label = str(fs.get("name") or "first stage")
    embedder = fs.get("embedder")
    if embedder:
        label += f" ({Path(str(embedder)).name})"
    model = (report.get("reranker") or {}).get("model")
    rr = f"{label} + {Path(str(model)).name}" if model and report["metrics"].get("reranked") else None
    return label, rr


def compare_reports(reports: Sequence[str | Path | Mapping[str, Any]], *, metric: str = PRIMARY) -> str:
    """One Markdown table of ``metric``: datasets as rows, systems (each first stage, each reranked
    variant) as columns; a mean row when every system covers every dataset."""
    if not reports:
        raise ValueError("give at least one report to compare")
    loaded = [_load(r) for r in reports]
    columns: list[str] = []
    rows: list[str] = []
    cells: dict[tuple[str, str], float] = {}
    for report in loaded:
        dataset = (
            report["dataset"] if report.get("split") == "test" else f"{report['dataset']} ({report['split']})"
        )
        if dataset not in rows:
            rows.append(dataset)
        fs_label, rr_label = _system_labels(report)
        ip_label = (
            f"{rr_label} (interpolated)" if rr_label and report["metrics"].get("interpolated") else None
        )
        for label, stage in ((fs_label, "first_stage"), (rr_label, "reranked"), (ip_label, "interpolated")):
            if label is None:
                continue
            stage_metrics_ = report["metrics"].get(stage) or {}
            if metric not in stage_metrics_:
                raise ValueError(f"report for {dataset} has no {metric!r}; it has {sorted(stage_metrics_)}")
            if label not in columns:
                columns.append(label)
            cells.setdefault((dataset, label), float(stage_metrics_[metric]))
    lines = [f"| dataset ({metric}) | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for dataset in rows:
        lines.append(f"| {dataset} | " + " | ".join(_fmt(cells.get((dataset, c))) for c in columns) + " |")
    if len(rows) > 1 and all((d, c) in cells for d in rows for c in columns):
        means = [sum(cells[(d, c)] for d in rows) / len(rows) for c in columns]
        lines.append("| **mean** | " + " | ".join(_fmt(m) for m in means) + " |")
    return "\n".join(lines) + "\n"


def _load(report: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(report, Mapping):
        return report
    path = Path(report)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not a JSON report ({err.msg}); pass files written by `winnow eval`"
        ) from err
    if not isinstance(data, dict) or "metrics" not in data or "dataset" not in data:
        raise ValueError(f"{path} is not a winnow evaluation report (no 'dataset'/'metrics')")
    return data


def evaluate(
    dataset: Any,
    split: str = "test",
    *,
    out: str | Path | None = None,
    save_runs: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`rerank.evaluation.run_evaluation` (``kwargs`` go to it), then the report; with ``out`` the
    JSON, Markdown and plot are written, with ``save_runs`` the TREC runs of both stages."""
    run = run_evaluation(dataset, split, **kwargs)
    report = build_report(run, seed=seed)
    if save_runs is not None:
        from rerank.trec import save_runs as write_runs

        report["runs"] = {k: str(v) for k, v in write_runs(run, save_runs).items()}
    if out is not None:
        out = Path(out)
        report["files"] = {
            "json": str(out),
            "markdown": str(out.with_suffix(".md")),
            "plot": str(out.with_suffix(".png")),
        }
        write_report(report, out)
    return report
