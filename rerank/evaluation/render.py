"""A report rendered for people: the Markdown table next to the JSON, and the plot."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from winnow.rerank.evaluation.measures import PRIMARY

__all__ = ["fmt", "plot_report", "render_markdown"]


def fmt(value: Any, digits: int = 4) -> str:
    """A figure for a table: floats at ``digits`` places, None as a dash."""
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
    lines = [
        f"## {report['dataset']} / {report['split']} ({report['queries']} queries, depth {report['depth']})",
        "",
        f"First stage: {fs_info.get('name')} ({fs_info.get('model')}); "
        f"reranker: {rr_info.get('model') or 'none'}",
        "",
    ]
    for warning in report.get("warnings", []):
        lines += [f"> **WARNING:** {warning}", ""]
    lines += _metrics_table(report)
    lines += _interpolated_section(report)
    lines += _depth_table(report)
    lines += _per_query_lines(report)
    lines += _latency_lines(report)
    lines += _hurt_most_table(report)
    return "\n".join(lines) + "\n"


def _metrics_table(report: Mapping[str, Any]) -> list[str]:
    """First stage against reranked, with lift and significance; the first stage alone when not reranked."""
    fs = report["metrics"]["first_stage"]
    reranked = report["metrics"].get("reranked")
    if not reranked:
        return ["| measure | first stage |", "|---|---|", *(f"| {m} | {fmt(v)} |" for m, v in fs.items())]
    lines = [
        "| measure | first stage | reranked | lift | p (paired t) | p (permutation) | 95% CI of lift |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in fs:
        sig = (report.get("significance") or {}).get(m, {})
        lo, hi = sig.get("ci95") or (None, None)
        lines.append(
            f"| {m} | {fmt(fs[m])} | {fmt(reranked[m])} | {report['lift'][m]:+.4f} | "
            f"{_pvalue(sig.get('p_value'))} | {_pvalue(sig.get('permutation_p_value'))} | "
            f"[{fmt(lo)}, {fmt(hi)}] |"
        )
    return lines


def _interpolated_section(report: Mapping[str, Any]) -> list[str]:
    """The interpolated reranker against the first stage, when the report has it."""
    interpolated = report["metrics"].get("interpolated")
    if not interpolated:
        return []
    fs = report["metrics"]["first_stage"]
    weight = (report.get("interpolation") or {}).get("weight")
    kept = (report.get("interpolation") or {}).get("first_stage_only")
    if kept:  # the card's weight 0: what users get is the first stage's order, and the model never ran
        return ["", f"Reranker as users get it: the first stage's order, the model not run. {kept}"]
    lines = [
        "",
        f"Interpolated reranker (weight {fmt(weight, 2)} x normalised reranker + "
        f"{fmt(None if weight is None else 1 - weight, 2)} x normalised first stage):",
        "",
        "| measure | first stage | interpolated | lift | p (paired t) | p (permutation) |",
        "|---|---|---|---|---|---|",
    ]
    for m in fs:
        sig = (report.get("significance_interpolated") or {}).get(m, {})
        lines.append(
            f"| {m} | {fmt(fs[m])} | {fmt(interpolated[m])} | {report['lift_interpolated'][m]:+.4f} | "
            f"{_pvalue(sig.get('p_value'))} | {_pvalue(sig.get('permutation_p_value'))} |"
        )
    return lines


def _depth_table(report: Mapping[str, Any]) -> list[str]:
    """The primary measure by rerank depth (when reranked or there are several depths)."""
    depths = report.get("depths") or {}
    if not (len(depths) > 1 or report["metrics"].get("reranked")):
        return []
    lines = [
        "",
        f"{PRIMARY} by rerank depth:",
        "",
        "| depth | first stage | reranked | lift |",
        "|---|---|---|---|",
    ]
    for depth, entry in depths.items():
        rr = (entry.get("reranked") or {}).get(PRIMARY)
        lift = (entry.get("lift") or {}).get(PRIMARY)
        lines.append(
            f"| {depth} | {fmt(entry['first_stage'][PRIMARY])} | {fmt(rr)} | "
            f"{'–' if lift is None else f'{lift:+.4f}'} |"
        )
    return lines


def _per_query_lines(report: Mapping[str, Any]) -> list[str]:
    """Wins, losses and ties per query, reranked and interpolated, when counted."""
    lines: list[str] = []
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
    return lines


def _latency_lines(report: Mapping[str, Any]) -> list[str]:
    lat = report.get("latency_ms") or {}
    return [
        "",
        f"Latency (ms): first stage p50 {fmt(lat.get('first_stage_p50'), 2)}, "
        f"p95 {fmt(lat.get('first_stage_p95'), 2)}; rerank p50 {fmt(lat.get('rerank_p50'), 2)}, "
        f"p95 {fmt(lat.get('rerank_p95'), 2)}; {fmt(lat.get('pairs_per_second'), 1)} pairs/s "
        f"on {lat.get('device') or 'n/a'}.",
    ]


def _hurt_most_table(report: Mapping[str, Any]) -> list[str]:
    """The queries the reranker hurt most, with where their first relevant document went."""
    hurt = report.get("hurt_most") or []
    if not hurt:
        return []
    lines = [
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
            f"| {h['query_id']} | {text} | {fmt(h['first_stage'])} | {fmt(h['reranked'])} | "
            f"{fmt(h['first_relevant_rank_first_stage'])} -> {fmt(h['first_relevant_rank_reranked'])} |"
        )
    return lines


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
    if values and all("reranked" in v for v in values.values()):  # none when the card kept the first stage
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
