"""One Markdown table (datasets as rows) over every benchmarks/results/first_stage_*.json."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
STAGES = ("dense", "bm25", "hybrid")


def main() -> None:
    header = "| dataset | split | queries | index | " + " | ".join(f"{s} nDCG@10 | {s} R@100" for s in STAGES)
    lines = [header + " |", "|" + "---|" * (4 + 2 * len(STAGES))]
    for path in sorted(RESULTS.glob("first_stage_*.json")):
        report = json.loads(path.read_text())
        by_stage = {row["first_stage"]: row for row in report["results"]}
        index = report["factory"] + (", chunked" if report.get("chunked") else "")
        cells = []
        for stage in STAGES:
            row = by_stage.get(stage)
            cells += [f"{row['nDCG@10']:.4f}", f"{row['R@100']:.4f}"] if row else ["-", "-"]
        lines.append(
            f"| {report['dataset']} | {report['split']} | {report['queries']} | {index} | "
            + " | ".join(cells)
            + " |"
        )
    out = RESULTS / "first_stages_summary.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
