"""What the queries a reranker hurt have in common: per-query nDCG@10 of a ``winnow eval`` report, grouped by
the query metadata a BEIR set carries (TAT-QA: ``answer_from``, ``answer_type``; FinanceBench:
``question_type``, ``question_reasoning``) and by simple text traits (length in words, naming a year).

    python benchmarks/quality/hurt_queries.py benchmarks/results/mixed_zeroshot_tatqa.json \\
        ../shared/datasets/tatqa --fields answer_from answer_type

Prints Markdown: per group, the queries, how many the reranker hurt / helped (nDCG@10 moved by more than
1e-9), and the mean lift, for the pure and the interpolated reranker.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

YEAR = re.compile(r"\b(19|20)\d\d\b")


def load_queries(dataset: Path) -> dict[str, dict]:
    rows = (json.loads(line) for line in (dataset / "queries.jsonl").read_text().splitlines() if line.strip())
    return {str(row["_id"]): row for row in rows}


def traits(text: str) -> dict[str, str]:
    words = len(text.split())
    return {
        "query length": "<= 10 words" if words <= 10 else "11-20 words" if words <= 20 else "> 20 words",
        "names a year": "yes" if YEAR.search(text) else "no",
    }


def group_rows(values: dict[str, dict], queries: dict[str, dict], fields: list[str]) -> dict:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for qid, scores in values.items():
        query = queries.get(qid, {})
        meta = query.get("metadata") or {}
        keys = {field: str(meta.get(field, "-")) for field in fields} | traits(query.get("text", ""))
        for field, value in keys.items():
            groups[field, value].append(scores)
    return groups


def summary(rows: list[dict], column: str) -> str:
    lifts = [row[column] - row["first_stage"] for row in rows if column in row]
    if not lifts:
        return "- | - | -"
    hurt = sum(lift < -1e-9 for lift in lifts)
    helped = sum(lift > 1e-9 for lift in lifts)
    return f"{hurt} | {helped} | {sum(lifts) / len(lifts):+.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="winnow eval report JSON")
    parser.add_argument("dataset", type=Path, help="the BEIR folder it evaluated (for query metadata)")
    parser.add_argument("--fields", nargs="*", default=[], help="query metadata fields to group by")
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    values = report["per_query"]["values"]
    groups = group_rows(values, load_queries(args.dataset), args.fields)
    model = report["reranker"]["model"]
    print(f"{report['dataset']} / {report['split']}: {len(values)} queries, reranker {model}")
    print()
    columns = (
        "group | value | queries | first stage | pure: hurt | helped | mean lift | interp.: hurt | helped"
    )
    print(f"| {columns} | mean lift |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (field, value), rows in sorted(groups.items()):
        first = sum(row["first_stage"] for row in rows) / len(rows)
        print(
            f"| {field} | {value} | {len(rows)} | {first:.4f} | {summary(rows, 'reranked')} | "
            f"{summary(rows, 'interpolated')} |"
        )


if __name__ == "__main__":
    main()
