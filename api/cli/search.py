"""``winnow search``: one query against an index, optionally reranked."""

from __future__ import annotations

import argparse
from pathlib import Path

from winnow.api.cli.options import add_common, add_reranker_options, emit, load_reranker, positive_int, short


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the command and its options."""
    p = subparsers.add_parser("search", help="search an index, optionally reranking with a cross-encoder")
    p.add_argument("query", help="the query text")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", type=Path, help="index directory written by `winnow index`")
    where.add_argument(
        "--store",
        metavar="URI",
        help="an index directory, or postgresql://USER:PASS@HOST/DB[?table=T] (from `winnow index --store`)",
    )
    p.add_argument("--reranker", default=None, help="cross-encoder path or name; omit for first stage only")
    p.add_argument("--top-k", type=positive_int, default=10, help="results to return (default 10)")
    p.add_argument(
        "--candidates",
        type=positive_int,
        default=None,
        help="first-stage candidates to rerank (default: the reranker's model card's depth, else 100)",
    )
    p.add_argument("--first-stage", choices=("dense", "bm25", "hybrid"), default="dense")
    p.add_argument("--embedder", default=None, help="must match the index's embedder (default: the index's)")
    add_reranker_options(p)
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from winnow.indexes import WinnowIndex
    from winnow.rerank.search import TwoStageSearch
    from winnow.retrieval.embedder import Embedder, resolve_embedder
    from winnow.retrieval.first_stage import make_first_stage
    from winnow.retrieval.store_uri import is_postgres_uri

    if args.store is not None and is_postgres_uri(args.store):
        from winnow.retrieval.first_stage import build_store_first_stage

        first_stage, _ = build_store_first_stage(
            args.first_stage, None, args.store, embedder=args.embedder, device=args.device
        )
    else:
        expected = resolve_embedder(args.embedder)[0] if args.embedder else None
        index = WinnowIndex.load(args.index or Path(args.store), expected_embedder=expected, read_only=True)
        embedder = Embedder(args.embedder or index.embedder, device=args.device, show_progress=False)
        if args.first_stage != "bm25":
            embedder.load()  # before the timed search
        # a hybrid fuses >= 100 per retriever
        first_stage = make_first_stage(args.first_stage, index, embedder)
    searcher = TwoStageSearch(
        first_stage,
        load_reranker(args.reranker, args, show_progress=not args.json),
        candidates=args.candidates,
    )
    result = searcher.search(args.query, top_k=args.top_k)
    payload = {
        "query": args.query,
        "first_stage": args.first_stage,
        "reranker": args.reranker,
        "reranked": result.reranked,
        "results": [r.to_dict() for r in result.results],
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
    }
    lines = [f"query: {args.query}  ({args.first_stage}{' + ' + args.reranker if args.reranker else ''})"]
    for r in result.results:
        lines.append(
            f"{r.rank:>3}. {r.score:8.3f}  {r.id}  {short((r.title + ': ' if r.title else '') + r.text)}"
        )
    if searcher.first_stage_only:  # the model's card says reranking does not help: the first stage's order
        payload["note"] = searcher.first_stage_only
        lines.append(f"note: {searcher.first_stage_only}")
    emit(payload, args.json, "\n".join(lines))
    return 0
