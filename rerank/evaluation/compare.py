"""Several evaluation reports side by side: one Markdown table of a measure (``winnow eval --compare``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from winnow.rerank.evaluation.measures import PRIMARY
from winnow.rerank.evaluation.render import fmt

__all__ = ["compare_reports"]


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
        lines.append(f"| {dataset} | " + " | ".join(fmt(cells.get((dataset, c))) for c in columns) + " |")
    if len(rows) > 1 and all((d, c) in cells for d in rows for c in columns):
        means = [sum(cells[(d, c)] for d in rows) / len(rows) for c in columns]
        lines.append("| **mean** | " + " | ".join(fmt(m) for m in means) + " |")
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
