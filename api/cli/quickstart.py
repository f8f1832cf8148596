"""``winnow quickstart``: index the bundled sample corpus, show first-stage vs reranked results, offline."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from winnow.api.cli.options import add_common, positive_int

logger = logging.getLogger(__name__)

COLUMN = 58
UNTRAINED_LABEL = "all-MiniLM-L6-v2 with an UNTRAINED scoring head (no trained reranker installed)"


def _cell(rank: int, doc_id: str, title: str, relevant: bool) -> str:
    mark = "*" if relevant else " "
    text = f"{mark}{rank}. {doc_id} {title}"
    return text if len(text) <= COLUMN else text[: COLUMN - 1] + "…"


def pick_reranker(name: str | None) -> tuple[str, str, str]:
    """The reranker to use, a short label, and a paragraph saying plainly what it is."""
    from winnow.rerank.models import DEFAULT_RERANKER, shipped_models
    from winnow.retrieval.embedder import packaged_minilm_path

    if name:
        return name, name, f"reranker: {name} (as given with --reranker)"
    if DEFAULT_RERANKER in shipped_models():
        return (
            DEFAULT_RERANKER,
            DEFAULT_RERANKER,
            (
                f"reranker: {DEFAULT_RERANKER}, winnow's shipped general-relevance cross-encoder "
                "(MiniLM-L6 fine-tuned on SQuAD v1.1 + QED-NQ; see benchmarks/quality/)"
            ),
        )
    return (
        packaged_minilm_path(),
        UNTRAINED_LABEL,
        (
            "reranker: NO TRAINED CROSS-ENCODER IS INSTALLED. Using the packaged all-MiniLM-L6-v2 bi-encoder "
            "loaded as a "
            "cross-encoder with an UNTRAINED scoring head, so the reranked order below is meaningless. "
            "Pass --reranker PATH_OR_NAME to use a real cross-encoder."
        ),
    )


def run_quickstart(
    *,
    index_dir: Path,
    reranker: str | None = None,
    top_k: int = 3,
    candidates: int | None = None,
    device: str | None = None,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Index the sample, search each sample query with and without reranking, score both with ir-measures."""
    import torch

    from winnow.rerank.engine import CrossEncoderEngine
    from winnow.rerank.scorer import scorer_depth, scorer_keeps_first_stage
    from winnow.retrieval.corpus import load_beir, sample_dataset_path
    from winnow.retrieval.dense import DenseRetriever
    from winnow.retrieval.embedder import Embedder

    def say(line: str = "") -> None:
        if out is not None:
            print(line, file=out, flush=True)

    dataset = load_beir(sample_dataset_path())
    qrels = dataset.qrels["test"]
    queries = dataset.split_queries("test")
    say(
        f"winnow quickstart: {len(dataset.corpus)} sample passages (10-K style filings and fact-checks), "
        f"{len(queries)} queries"
    )

    embedder = Embedder(device=device, show_progress=out is not None)
    index = _build_sample_index(dataset, embedder, index_dir, show_progress=out is not None, say=say)

    reranker_name, reranker_label, reranker_note = pick_reranker(reranker)
    say(reranker_note)
    torch.manual_seed(0)  # a head initialised at load (the untrained fallback) is the same on every run
    engine = CrossEncoderEngine(reranker_name, device=device, show_progress=False)
    engine.load()
    retriever = DenseRetriever(index, embedder)
    candidates = scorer_depth(engine, 20) if candidates is None else candidates  # the card's, as search's
    note = scorer_keeps_first_stage(engine)
    if note:
        say(f"note: {note}")

    first_run, rerank_run, per_query = _compare_queries(
        queries,
        qrels,
        retriever,
        engine,
        top_k=top_k,
        candidates=candidates,
        say=say,
        keep_first_stage=note is not None,
    )
    metrics = _summarise_metrics(qrels, first_run, rerank_run, say=say)
    if note is None:
        say(f"reranker used: {reranker_label}")
    else:  # the card keeps the first stage's order: the model was loaded but never scored a pair
        say(f"reranker used: none ({reranker_label}'s card keeps the first stage's order, see the note)")
    return {
        "reranker": reranker_label,
        "reranker_note": reranker_note + (f" {note}" if note else ""),
        "embedder": embedder.name,
        "metrics": metrics,
        "queries": per_query,
    }


def _build_sample_index(
    dataset: Any, embedder: Any, index_dir: Path, *, show_progress: bool, say: Callable[..., None]
) -> Any:
    """Embed the sample corpus into a FAISS index saved at ``index_dir``, and load it back from there."""
    from winnow.indexes import WinnowIndex
    from winnow.retrieval.indexing import build_index

    say(f"first stage: dense retrieval with {embedder.name} (packaged, offline) in a FAISS Flat index")
    started = time.perf_counter()
    index = build_index(dataset.corpus, embedder, show_progress=show_progress)
    index.save(index_dir)
    index = WinnowIndex.load(index_dir, expected_embedder=embedder.name)
    say(f"indexed {len(index)} passages into {index_dir} in {time.perf_counter() - started:.1f} s")
    return index


def _compare_queries(
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    retriever: Any,
    engine: Any,
    *,
    top_k: int,
    candidates: int,
    say: Callable[..., None],
    keep_first_stage: bool = False,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Search each query, rerank its candidates and show the top ``top_k`` of both side by side
    (``keep_first_stage``: the reranker's card says it does not help, so its column is the first stage's).

    :returns: the first-stage run, the reranked run (query id -> doc id -> score) and the per-query report.
    """
    from winnow.rerank.search import first_stage_only, rerank_hits

    first_run: dict[str, dict[str, float]] = {}
    rerank_run: dict[str, dict[str, float]] = {}
    per_query = []
    for qid, text in queries.items():
        hits = retriever.retrieve(text, top_k=candidates)
        first = first_stage_only(hits)
        reranked = first if keep_first_stage else rerank_hits(text, hits, engine)
        first_run[qid] = {r.id: r.score for r in first}
        rerank_run[qid] = {r.id: r.score for r in reranked}
        relevant = qrels.get(qid, {})
        say()
        say(f"[{qid}] {text}")
        say(f"  {'first stage (dense)':<{COLUMN}} | reranked")
        for a, b in zip(first[:top_k], reranked[:top_k], strict=False):
            left = _cell(a.rank, a.id, a.title, a.id in relevant)
            right = _cell(b.rank, b.id, b.title, b.id in relevant)
            say(f"  {left:<{COLUMN}} | {right}")
        per_query.append(
            {
                "query_id": qid,
                "query": text,
                "first_stage": [r.id for r in first[:top_k]],
                "reranked": [r.id for r in reranked[:top_k]],
                "relevant": sorted(relevant),
            }
        )
    return first_run, rerank_run, per_query


def _summarise_metrics(
    qrels: dict[str, dict[str, int]],
    first_run: dict[str, dict[str, float]],
    rerank_run: dict[str, dict[str, float]],
    *,
    say: Callable[..., None],
) -> dict[str, dict[str, float]]:
    """nDCG@10, RR@10 and P@1 of both runs over all sample queries (ir-measures), shown and returned."""
    import ir_measures

    measures = [ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.P @ 1]
    first_agg = ir_measures.calc_aggregate(measures, qrels, first_run)
    rerank_agg = ir_measures.calc_aggregate(measures, qrels, rerank_run)
    metrics = {
        "first_stage": {str(m): first_agg[m] for m in measures},
        "reranked": {str(m): rerank_agg[m] for m in measures},
    }
    say()
    say("* = judged relevant.  Over all sample queries (ir-measures):")
    for name in metrics["first_stage"]:
        say(
            f"  {name:<8} first stage {metrics['first_stage'][name]:.3f}   "
            f"reranked {metrics['reranked'][name]:.3f}"
        )
    return metrics


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the command and its options."""
    p = subparsers.add_parser(
        "quickstart", help="offline demo on the bundled sample corpus: index, search, rerank"
    )
    p.add_argument(
        "--reranker", default=None, help="cross-encoder path or name (default: winnow's shipped one)"
    )
    p.add_argument("--top-k", type=positive_int, default=3, help="results shown per query (default 3)")
    p.add_argument(
        "--candidates",
        type=positive_int,
        default=None,
        help="first-stage candidates reranked (default: the reranker's model card's depth, else 20)",
    )
    p.add_argument(
        "--index-dir", type=Path, default=None, help="keep the sample index here (default: temp dir)"
    )
    add_common(p)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="winnow-quickstart-") as tmp:
        report = run_quickstart(
            index_dir=args.index_dir or Path(tmp) / "index",
            reranker=args.reranker,
            top_k=args.top_k,
            candidates=args.candidates,
            device=args.device,
            out=None if args.json else sys.stdout,
        )
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0
