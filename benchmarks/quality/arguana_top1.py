"""What an ArguAna ranking puts first: the rebuttal (relevant), another document of the same debate, or a
document of another debate. Reads the TREC runs that ``winnow eval --save-runs DIR`` writes.

    winnow eval --dataset ../shared/datasets/arguana --split test --first-stage hybrid \\
        --index work/idx-arguana --depth 20 --reranker rerank/models/winnow-general \\
        --interpolation-weight 0.5 --max-queries 40 --save-runs work/arguana-runs --out work/arguana40.json
    python benchmarks/quality/arguana_top1.py work/arguana-runs

ArguAna ids are ``<debate>-<pro|con><n><a|b>``: ``a`` is an argument, ``b`` the counter-argument to it; the
only relevant document for query ``X-pro01a`` is ``X-pro01b``.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

ID = re.compile(r"(?P<debate>.*)-(?P<side>pro|con)(?P<n>\d+)(?P<kind>[ab])$")
KINDS = (
    "the rebuttal (relevant)",
    "same debate, same side, an argument",
    "same debate, other side, an argument",
    "same debate, another counter-argument",
    "another debate",
)


def load_run(path: Path) -> dict[str, list[str]]:
    ranked: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        qid, _, doc, rank, *_ = line.split()
        ranked[qid].append((int(rank), doc))
    return {q: [d for _, d in sorted(rows)] for q, rows in ranked.items()}


def kind_of(query_id: str, doc_id: str) -> str:
    q, d = ID.match(query_id), ID.match(doc_id)
    if q is None or d is None or q["debate"] != d["debate"]:
        return KINDS[4]
    if d["kind"] == "b":
        same = (d["side"], d["n"]) == (q["side"], q["n"])
        return KINDS[0] if same else KINDS[3]
    return KINDS[1] if d["side"] == q["side"] else KINDS[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder with first_stage.trec and reranked.trec")
    args = parser.parse_args()
    runs = {name: load_run(args.runs / f"{name}.trec") for name in ("first_stage", "reranked")}
    counts = {name: Counter(kind_of(q, docs[0]) for q, docs in run.items()) for name, run in runs.items()}
    print(f"| rank-1 document ({len(runs['reranked'])} queries) | first stage | reranked |")
    print("|---|---:|---:|")
    for kind in KINDS:
        print(f"| {kind} | {counts['first_stage'][kind]} | {counts['reranked'][kind]} |")


if __name__ == "__main__":
    main()
