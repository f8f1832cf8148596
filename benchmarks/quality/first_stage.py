"""First-stage quality on a BEIR split over a built index: nDCG@10, RR@10, R@10, R@100 with ir-measures.

    python benchmarks/quality/first_stage.py --dataset ../shared/datasets/scifact --index idx --split test \
        --first-stage dense bm25 hybrid --out benchmarks/results/first_stage_scifact

Writes OUT.json and OUT.md. The full evaluation harness (`winnow eval`) supersedes this for reranking.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import ir_measures

from winnow.indexes import WinnowIndex
from winnow.retrieval.corpus import load_beir
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.first_stage import FIRST_STAGES, make_first_stage

MEASURES = [ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.R @ 10, ir_measures.R @ 100]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--first-stage", nargs="+", choices=FIRST_STAGES, default=list(FIRST_STAGES))
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    args = parser.parse_args()

    data = load_beir(args.dataset)
    queries = data.split_queries(args.split)
    qrels = data.qrels[args.split]
    index = WinnowIndex.load(args.index)
    embedder = Embedder(index.embedder, show_progress=False).load()
    rows = []
    for kind in args.first_stage:
        retriever = make_first_stage(kind, index, embedder)
        start = time.perf_counter()
        results = retriever.retrieve_batch(list(queries.values()), top_k=100)
        seconds = time.perf_counter() - start
        run = {}
        for qid, hits in zip(queries, results, strict=True):
            # arguana-style sets hold each query in the corpus under its own id: never count it (as BEIR does)
            run[qid] = {h.id: h.score for h in hits if h.id != qid}
        scores = ir_measures.calc_aggregate(MEASURES, qrels, run)
        rows.append(
            {
                "first_stage": kind,
                "seconds": round(seconds, 1),
                **{str(m): round(scores[m], 4) for m in MEASURES},
            }
        )
    report = {
        "dataset": data.name,
        "split": args.split,
        "queries": len(queries),
        "index": str(args.index),
        "factory": index.vectors.factory,
        "embedder": index.embedder,
        "chunked": bool(index.extra.get("chunked")),
        "machine": f"{platform.machine()} CPU, {platform.python_version()}",
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    header = ["first stage", *map(str, MEASURES), "seconds"]
    lines = [
        f"{data.name} / {args.split} ({len(queries)} queries), index {index.vectors.factory}, "
        f"embedder {index.embedder}{', chunked' if report['chunked'] else ''}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    keys = ["first_stage", *map(str, MEASURES), "seconds"]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
