"""``winnow eval``: both stages measured on a BEIR split, or existing reports compared."""

from __future__ import annotations

import argparse
from pathlib import Path

from winnow.api.cli.options import (
    add_common,
    add_ray_options,
    add_reranker_options,
    depths,
    emit,
    load_reranker,
    positive_int,
    weight,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the command and its options."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate first stage and reranking on a BEIR split (or --compare reports)",
        description="Evaluate a first stage and a reranker on a BEIR split: ir-measures metrics of "
        "both stages, lift, significance, per-query wins/losses; writes REPORT.json, .md and .png. "
        "With --compare, print one nDCG@10 table of existing reports instead.",
    )
    p.add_argument(
        "--dataset", type=Path, default=None, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    p.add_argument("--split", default="test", help="qrels split to evaluate (default test)")
    p.add_argument("--first-stage", choices=("dense", "bm25", "hybrid"), default="dense")
    p.add_argument(
        "--index", type=Path, default=None, help="index directory to search (default: build one in memory)"
    )
    p.add_argument(
        "--store",
        default=None,
        metavar="URI",
        help="instead of --index: an index directory, or postgresql://USER:PASS@HOST/DB[?table=T] "
        "(written by `winnow index --store`)",
    )
    p.add_argument("--reranker", default=None, help="cross-encoder path or name; omit for first stage only")
    p.add_argument(
        "--depth",
        type=depths,
        default=[100],
        help="candidates reranked: 100, or a list such as 10,20,50,100 (one pass at the deepest)",
    )
    p.add_argument("--out", type=Path, default=None, help="report JSON to write (.md and .png next to it)")
    p.add_argument("--save-runs", type=Path, default=None, help="directory for TREC run files of both stages")
    p.add_argument(
        "--embedder",
        default=None,
        help="bi-encoder for dense/hybrid (default: the index's or the packaged one)",
    )
    p.add_argument("--max-queries", type=positive_int, default=None, help="evaluate only the first N queries")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the permutation test and bootstrap (default 0)"
    )
    p.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        default=None,
        metavar="REPORT",
        help="reports to tabulate (nDCG@10)",
    )
    p.add_argument(
        "--interpolation-weight",
        type=weight,
        default=None,
        help="also report the reranker interpolated with the first stage at this weight in [0, 1] "
        "(default: the weight in the reranker's winnow.json card, if any)",
    )
    p.add_argument(
        "--titles",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the reranker reads 'title. text' (default) or the text alone (--no-titles: for sets whose "
        "titles exist on the test split only, such as arguana, with a model trained without them)",
    )
    add_reranker_options(p)
    add_ray_options(p, "rerank the queries in parallel")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from winnow.rerank.evaluation.compare import compare_reports

    if args.compare:
        if args.dataset is not None:
            raise ValueError("--compare tabulates existing reports; do not combine it with --dataset")
        table = compare_reports(args.compare)
        emit({"table": table, "reports": [str(p) for p in args.compare]}, args.json, table.rstrip("\n"))
        return 0
    if args.dataset is None or args.out is None:
        raise ValueError(
            "eval needs --dataset BEIR_DIR and --out REPORT.json (or --compare A.json B.json ...)"
        )
    if args.index is not None and args.store is not None:
        raise ValueError("give either --index DIR or --store URI, not both")
    from winnow.rerank.evaluation.report import evaluate
    from winnow.retrieval.corpus import load_beir

    dataset = load_beir(args.dataset)
    report = evaluate(
        dataset,
        args.split,
        out=args.out,
        save_runs=args.save_runs,
        seed=args.seed,
        first_stage=args.first_stage,
        index=args.store if args.store is not None else args.index,
        embedder=args.embedder,
        reranker=load_reranker(args.reranker, args, show_progress=False),
        depths=args.depth,
        device=args.device,
        max_queries=args.max_queries,
        show_progress=not args.json,
        interpolation_weight=args.interpolation_weight,
        rerank_titles=args.titles,
        ray_address=args.ray if args.reranker is not None else None,
        ray_workers=args.ray_workers,
    )
    emit(report, args.json, Path(report["files"]["markdown"]).read_text(encoding="utf-8").rstrip("\n"))
    return 0
