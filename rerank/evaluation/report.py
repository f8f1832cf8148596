"""The evaluation report: both stages' ir-measures metrics, lift, significance, per-query outcomes and
latency, written as JSON with its Markdown table and plot next to it.

The JSON shape is the contract in DESIGN.md ("Evaluation report"); measure names are ir-measures' own.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from winnow.rerank.evaluation.measures import (
    MEASURES,
    PRIMARY,
    first_relevant_rank,
    per_query_metrics,
    stage_metrics,
)
from winnow.rerank.evaluation.render import plot_report, render_markdown
from winnow.rerank.evaluation.runs import EvalRun, as_run, run_evaluation
from winnow.rerank.evaluation.statistics import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    compare_paired,
    wins_losses_ties,
)
from winnow.rerank.evaluation.trec import save_runs as write_runs

logger = logging.getLogger(__name__)

__all__ = ["build_report", "evaluate", "write_report"]

HURT_MOST = 10

STAGES = ("first_stage", "reranked")


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
    backend_note = (run.reranker_info or {}).get("backend_note")
    if backend_note:
        warnings.append(f"the reranker {backend_note}")
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
    report["significance"] = _significance(per_query, "reranked", qids, fs, seed, n_resamples)
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


def _significance(per_query, stage: str, qids: list[str], measures, seed: int, n_resamples: int) -> dict:
    """Each measure's paired tests of ``stage`` against the first stage, over ``qids``."""
    return {
        m: compare_paired(
            [per_query["first_stage"][m][q] for q in qids],
            [per_query[stage][m][q] for q in qids],
            n_resamples=n_resamples,
            seed=seed,
        )
        for m in measures
    }


def _add_interpolation(report, run, per_query, metrics, tolerance, seed, n_resamples) -> None:
    """The interpolated reranker next to the pure one: metrics, lift and significance over the first stage,
    per-query outcome, and a loud warning when it, too, loses to the first stage."""
    qids = list(run.queries)
    fs, ip = metrics["first_stage"], metrics["interpolated"]
    weight = run.interpolation_weight
    report["interpolation"] = {"weight": weight, "source": run.interpolation_source}
    if run.first_stage_only is not None:
        report["interpolation"]["first_stage_only"] = run.first_stage_only
    report["metrics"]["interpolated"] = _rounded(ip)
    report["lift_interpolated"] = {m: round(ip[m] - fs[m], 6) for m in fs}
    report["significance_interpolated"] = _significance(
        per_query, "interpolated", qids, fs, seed, n_resamples
    )
    before = [per_query["first_stage"][PRIMARY][q] for q in qids]
    after = [per_query["interpolated"][PRIMARY][q] for q in qids]
    report["per_query_interpolated"] = {
        "metric": PRIMARY,
        **wins_losses_ties(before, after, tolerance=tolerance),
    }
    values = report["per_query"].setdefault(
        "values", {q: {"first_stage": round(b, 6)} for q, b in zip(qids, before, strict=True)}
    )
    for q, value in zip(qids, after, strict=True):
        values[q]["interpolated"] = round(value, 6)
    lift = ip[PRIMARY] - fs[PRIMARY]
    if run.first_stage_only is not None:
        report["warnings"].append(f"the reranker was not run, as users get it: {run.first_stage_only}")
        return
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
