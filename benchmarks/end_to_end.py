"""End-to-end query latency: first stage + rerank of the top 20/50/100, winnow vs the stock Haystack pipeline.

Two Haystack ``Pipeline``\\s of three components each (text embedder -> embedding retriever -> ranker), on the
same documents, the same document vectors and the same two models:

- ``winnow``: the pipeline README.md documents, built from winnow's components: ``WinnowTextEmbedder`` ->
  ``WinnowEmbeddingRetriever`` over a ``WinnowDocumentStore`` (FAISS + SQLite; the winnow index folder itself)
  -> ``WinnowRanker``. (``TwoStageSearch``, which ``winnow search`` and ``winnow serve`` use, is not measured
  here; it runs the same embedder, FAISS search and engine without Haystack's pipeline.)
- ``stock``: Haystack's own components: ``SentenceTransformersTextEmbedder`` ->
  ``InMemoryEmbeddingRetriever`` over an ``InMemoryDocumentStore`` (dot product) ->
  ``SentenceTransformersSimilarityRanker`` (packages ``haystack-ai`` and ``sentence-transformers-haystack``).
  The in-memory store is filled with the documents and the vectors read from the winnow index
  (``WinnowDocumentStore.filter_documents``), so no document is embedded twice and both first stages search
  identical vectors.

Both embedders load the index's bi-encoder (the packaged all-MiniLM-L6-v2 by default); both rankers load the
same cross-encoder with the same ``--max-length`` (stock: ``tokenizer_kwargs={"model_max_length": ...}``),
score ``meta_fields_to_embed`` (``title``) + content joined by a newline, return the sigmoid of the logit and
keep each component's own batch size (winnow: length-sorted token-budget batches; stock: 16). winnow's ranker
runs with its defaults but for ``interpolation_weight=1.0`` (pure reranking, as the stock ranker does;
``--interpolation-weight card`` uses the model card's weight): documents longer than ``--max-length`` are
scored in overlapping windows (best window wins), the stock ranker truncates them (``--no-windows`` makes
winnow truncate too, for equal work). The report gives the share of candidate pairs longer than
``--max-length``.

Method. Queries: the first ``--queries`` judged queries of ``--split`` (file order), one at a time, as a
service answers them. For each depth in ``--depths`` the retriever returns that many candidates (run-time
``top_k``) and the ranker reorders them and returns the best ``--top-k``. Per depth: ``--warmup`` untimed
queries per pipeline, then every timed query through both pipelines, alternating which goes first (winnow,
stock; stock, winnow; ...) so that machine noise hits both. Latency = wall time of ``Pipeline.run``; a
Haystack tracer also records each component's run, giving first stage (embedder + retriever) and rerank
(ranker) per query. p50 and p95 are numpy's linear-interpolated percentiles over the timed queries (with 30
queries, p95 sits between the two slowest). nDCG@10 (ir_measures, the split's qrels) of both pipelines' first
stage and reranked output over the timed queries shows that they rank alike; it is not a quality figure (a
few queries, pure reranking).

Data: a BEIR folder under ``../shared/datasets`` (``--dataset scifact``); absent -> a message and exit 0.
Index: ``--index DIR`` when it holds a winnow index (e.g. ``work/idx-scifact``, built by ``winnow index`` with
the packaged MiniLM); otherwise one is built with winnow's indexer (Flat) and saved to ``--index DIR`` when
given, else to a temporary folder. Building embeds every document (SciFact's 5,183: ~6 min on 2 CPU cores);
``--max-docs N`` builds from the timed and warm-up queries' judged documents plus the first other documents up
to N (a smaller, easier corpus: fine for a smoke run, not for figures).

Model: ``--model``; default the shipped ``winnow-general``, else ``work/general/checkpoints/checkpoint-300``
when it exists, else the packaged MiniLM-L6 with a fresh seeded head (same cost per pair).
Threads: ``--threads`` (default 2) for torch (``torch.set_num_threads``) and FAISS; device ``--device``
(``cpu``, ``cuda``). Precision: each side keeps its own default unless ``--stock-dtype match``. winnow embeds
in fp16 on CUDA and its ranker engine picks its own dtype (``dtype="auto"``, ``rerank.engine.resolve_dtype``:
bf16 on CUDA and on CPUs with native bf16); the stock components run in fp32. The report records every
component's dtype and says so when
the rankers' differ; ``--stock-dtype match`` loads the stock embedder and ranker in winnow's dtypes
(``model_kwargs={"dtype": ...}``) for a same-precision comparison. Writes
``benchmarks/results/end_to_end.json`` and ``.md`` (``--quick``: ``end_to_end_quick.*``).

    python benchmarks/end_to_end.py --quick                                  # smoke run, ~1-2 min on 2 cores
    python benchmarks/end_to_end.py --index work/idx-scifact                 # ~20 min on 2 CPU cores
    python benchmarks/end_to_end.py --index work/idx-scifact --device cuda --queries 100

Run time on CPU is mostly the rerank: ~10 pairs/s on 2 cores, so the defaults (30 queries + 2 warm-up per
depth, depths 20+50+100, both pipelines) score about 2 x 32 x 170 = 10,900 pairs: ~20 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench_common import device_name, pick_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ROOT.parent / "shared" / "datasets"
PIPELINES = ("winnow", "stock")
FULL = {"queries": 30, "depths": "20,50,100", "warmup": 2, "max_docs": None}
QUICK = {"queries": 3, "depths": "5,10", "warmup": 1, "max_docs": 200}
PACKAGES = (
    "haystack-ai",
    "sentence-transformers-haystack",
    "sentence-transformers",
    "transformers",
    "torch",
    "faiss-cpu",
    "numpy",
)

logger = logging.getLogger("end_to_end")


# ----------------------------------------------------------------------------------------------- timing
def _component_clock() -> Any:
    """A Haystack tracer, enabled, that adds up the wall seconds of each component's run
    (``haystack.component.run`` spans) in its ``seconds`` dict, keyed by component name."""
    from haystack import tracing

    class _NoSpan(tracing.Span):
        def set_tag(self, key: str, value: Any) -> None:
            """Tags are not kept."""

    class Clock(tracing.Tracer):
        def __init__(self) -> None:
            self.seconds: dict[str, float] = {}

        @contextlib.contextmanager
        def trace(
            self, operation_name: str, tags: dict[str, Any] | None = None, parent_span: Any = None
        ) -> Iterator[tracing.Span]:
            start = time.perf_counter()
            try:
                yield _NoSpan()
            finally:
                if operation_name == "haystack.component.run":
                    name = str((tags or {}).get("haystack.component.name", "?"))
                    self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        def current_span(self) -> tracing.Span | None:
            return None

    clock = Clock()
    tracing.enable_tracing(clock)
    return clock


# ----------------------------------------------------------------------------------------------- setup
def _dataset_path(name: str) -> Path:
    path = Path(name)
    return path if path.is_dir() else DATASETS / name


def _choose_queries(
    dataset: Any, split: str, n: int, warmup: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(timed queries, warm-up queries): the first ``n`` judged queries, then the next ``warmup`` (the timed
    ones again when the split has too few)."""
    queries = list(dataset.split_queries(split).items())
    timed = queries[:n]
    spare = queries[n : n + warmup]
    return timed, spare if len(spare) >= warmup else (spare + timed)[:warmup]


def _subset(dataset: Any, keep: set[str], max_docs: int) -> list[Any]:
    """The documents in ``keep`` first, then the rest in file order: ``max_docs`` in all (all of ``keep``)."""
    kept = [p for p in dataset.corpus if p.id in keep]
    rest = [p for p in dataset.corpus if p.id not in keep]
    return (kept + rest)[: max(max_docs, len(kept))]


def _open_or_build_index(
    args: argparse.Namespace, dataset: Any, judged: set[str], tmp: Path
) -> tuple[Path, dict[str, Any]]:
    """The index folder to search and how it came about."""
    from winnow.indexes import read_manifest

    if args.index is not None and (args.index / "manifest.json").is_file():
        if args.max_docs_given:
            logger.warning("--max-docs is ignored: %s already holds an index", args.index)
        manifest = read_manifest(args.index)
        return args.index, {"path": str(args.index), "built": False, "documents": manifest.count}

    from winnow.retrieval.embedder import Embedder
    from winnow.retrieval.indexing import build_index

    passages = dataset.corpus if not args.max_docs else _subset(dataset, judged, args.max_docs)
    out = args.index if args.index is not None else tmp / "index"
    logger.info(
        "building a winnow index of %d documents with the packaged all-MiniLM-L6-v2 on %s "
        "(SciFact's 5,183 take ~6 min on 2 CPU cores) ...",
        len(passages),
        args.device,
    )
    start = time.perf_counter()
    embedder = Embedder(None, device=args.device, show_progress=False)
    build_index(passages, embedder, factory="Flat", show_progress=False).save(out)
    build_s = time.perf_counter() - start
    logger.info("indexed %d documents in %.1f s into %s", len(passages), build_s, out)
    return out, {
        "path": str(out) if args.index is not None else "(temporary)",
        "built": True,
        "documents": len(passages),
        "build_s": round(build_s, 1),
        "subset": bool(args.max_docs),
    }


def _doc_id(doc: Any) -> str:
    """The corpus id of a retrieved Document (a chunk's parent)."""
    parent = doc.meta.get("parent_id") if isinstance(doc.meta, dict) else None
    return parent if isinstance(parent, str) and parent else doc.id


def _stores(index_path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(the WinnowDocumentStore on the index, an InMemoryDocumentStore with the same documents and vectors,
    facts for the report)."""
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    from winnow.indexes import read_manifest
    from winnow.retrieval.document_store import WinnowDocumentStore

    manifest = read_manifest(index_path)
    if manifest.metric != "ip":
        raise SystemExit(f"{index_path} uses metric {manifest.metric!r}; this benchmark needs 'ip' (cosine)")
    start = time.perf_counter()
    winnow_store = WinnowDocumentStore(
        index_path=str(index_path),
        embedder=manifest.embedder,
        factory=manifest.factory,
        metric=manifest.metric,
    )
    open_s = time.perf_counter() - start
    documents = [doc for doc in winnow_store.filter_documents() if doc.embedding is not None]
    start = time.perf_counter()
    stock_store = InMemoryDocumentStore(embedding_similarity_function="dot_product", shared=False)
    stock_store.write_documents(documents)
    fill_s = time.perf_counter() - start
    info = {
        "embedder": manifest.embedder,
        "factory": manifest.factory,
        "metric": manifest.metric,
        "rows": winnow_store.count_documents(),
        "vectors": len(documents),
        "winnow_store_open_s": round(open_s, 2),
        "stock_store_fill_s": round(fill_s, 2),
        "ids": sorted({_doc_id(doc) for doc in documents}),
    }
    return winnow_store, stock_store, info


def _pipelines(
    args: argparse.Namespace, model: str, embedder: str, winnow_store: Any, stock_store: Any
) -> dict[str, Any]:
    """The two pipelines, not warmed up."""
    from haystack import Pipeline
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.utils import ComponentDevice
    from haystack_integrations.components.embedders.sentence_transformers import (
        SentenceTransformersTextEmbedder,
    )
    from haystack_integrations.components.rankers.sentence_transformers import (
        SentenceTransformersSimilarityRanker,
    )

    from winnow.rerank.ranker import WinnowRanker
    from winnow.retrieval.embedder import resolve_embedder
    from winnow.retrieval.embedder_components import WinnowTextEmbedder
    from winnow.retrieval.embedding_retriever import WinnowEmbeddingRetriever

    depth = max(args.depth_list)
    device = ComponentDevice.from_str(args.device)
    embedder_kwargs, ranker_kwargs = _stock_model_kwargs(args.stock_dtype, args.device)
    winnow = Pipeline()
    winnow.add_component(
        "embedder", WinnowTextEmbedder(model=embedder, device=args.device, progress_bar=False)
    )
    winnow.add_component("retriever", WinnowEmbeddingRetriever(document_store=winnow_store, top_k=depth))
    winnow.add_component(
        "ranker",
        WinnowRanker(
            model=model,
            device=args.device,
            top_k=args.top_k,
            meta_fields_to_embed=args.meta_field_list,
            max_length=args.max_length,
            windows=args.windows,
            interpolation_weight=args.weight,
        ),
    )
    stock = Pipeline()
    stock.add_component(
        "embedder",
        SentenceTransformersTextEmbedder(
            model=resolve_embedder(embedder)[1],
            device=device,
            progress_bar=False,
            normalize_embeddings=True,
            model_kwargs=embedder_kwargs,
        ),
    )
    stock.add_component("retriever", InMemoryEmbeddingRetriever(document_store=stock_store, top_k=depth))
    stock.add_component(
        "ranker",
        SentenceTransformersSimilarityRanker(
            model=model,
            device=device,
            top_k=args.top_k,
            meta_fields_to_embed=args.meta_field_list,
            tokenizer_kwargs={"model_max_length": args.max_length},
            model_kwargs=ranker_kwargs,
        ),
    )
    for pipe in (winnow, stock):
        pipe.connect("embedder.embedding", "retriever.query_embedding")
        pipe.connect("retriever.documents", "ranker.documents")
    return {"winnow": winnow, "stock": stock}


def _stock_model_kwargs(mode: str, device: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``model_kwargs`` for the stock embedder and ranker: None (their own default, fp32) or, for ``match``,
    the dtypes winnow's components pick on ``device`` (embedder: fp16 on CUDA; ranker: ``dtype="auto"``)."""
    if mode != "match":
        return None, None
    import torch

    from winnow.rerank.engine import resolve_dtype
    from winnow.retrieval.device import resolve_device

    resolved = resolve_device(device)
    embedder = {"dtype": torch.float16} if resolved.startswith("cuda") else None
    return embedder, {"dtype": resolve_dtype("auto", resolved)}


def _dtype(module: Any) -> str | None:
    """The dtype of a torch module's first parameter, e.g. ``"float32"`` (None when it cannot tell)."""
    try:
        return str(next(module.parameters()).dtype).removeprefix("torch.")
    except Exception:  # noqa: BLE001 - a fact for the report, never worth failing the run
        return None


def _ranker_facts(pipes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """dtype, max length and batch size each ranker runs with, and each embedder's dtype (after warm-up)."""
    winnow = pipes["winnow"].get_component("ranker")
    stock = pipes["stock"].get_component("ranker")
    engine = winnow._engine
    facts: dict[str, dict[str, Any]] = {
        "winnow": {
            "embedder_dtype": _dtype(pipes["winnow"].get_component("embedder")._embedder._model),
            "dtype": str(engine.dtype).removeprefix("torch."),
            "max_length": engine.max_length,
            "batch_size": engine._batch_size,
            "max_batch_tokens": engine._max_batch_tokens,
            "windows": winnow.windows,
            "interpolation_weight": winnow.effective_interpolation_weight,
        },
        "stock": {
            "embedder_dtype": _dtype(pipes["stock"].get_component("embedder").embedding_backend.model),
            "dtype": _dtype(stock._cross_encoder),
            "batch_size": stock.batch_size,
        },
    }
    with contextlib.suppress(Exception):
        facts["stock"]["max_length"] = int(stock._cross_encoder.max_seq_length)
    return facts


# ----------------------------------------------------------------------------------------------- measuring
def _run_query(pipe: Any, clock: Any, query: str, depth: int) -> dict[str, Any]:
    """One query through one pipeline: wall ms, per-component ms, first-stage and reranked ids and scores."""
    data = {"embedder": {"text": query}, "retriever": {"top_k": depth}, "ranker": {"query": query}}
    clock.seconds = {}
    start = time.perf_counter()
    out = pipe.run(data, include_outputs_from={"retriever"})
    total = time.perf_counter() - start
    parts = {name: round(s * 1000, 3) for name, s in clock.seconds.items()}
    return {
        "total_ms": round(total * 1000, 3),
        "first_stage_ms": round(parts.get("embedder", 0.0) + parts.get("retriever", 0.0), 3),
        "rerank_ms": parts.get("ranker", 0.0),
        "components_ms": parts,
        "first_stage": [_doc_id(d) for d in out["retriever"]["documents"]],
        "ranked": [_doc_id(d) for d in out["ranker"]["documents"]],
        "scores": [float(d.score) for d in out["ranker"]["documents"]],
    }


def _measure(
    pipes: dict[str, Any],
    clock: Any,
    depth: int,
    timed: list[tuple[str, str]],
    warmup: list[tuple[str, str]],
) -> dict[str, list[dict[str, Any]]]:
    """Warm-up, then every timed query through both pipelines, alternating which one goes first."""
    for i, (_, text) in enumerate(warmup):
        for name in PIPELINES if i % 2 == 0 else PIPELINES[::-1]:
            _run_query(pipes[name], clock, text, depth)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in PIPELINES}
    for i, (qid, text) in enumerate(timed):
        for name in PIPELINES if i % 2 == 0 else PIPELINES[::-1]:
            row = _run_query(pipes[name], clock, text, depth)
            rows[name].append({"qid": qid, **row})
        logger.info(
            "depth %d: query %d/%d: winnow %.0f ms, stock %.0f ms",
            depth,
            i + 1,
            len(timed),
            rows["winnow"][-1]["total_ms"],
            rows["stock"][-1]["total_ms"],
        )
    return rows


# ----------------------------------------------------------------------------------------------- reporting
def _percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p95": round(float(np.percentile(arr, 95)), 1),
        "mean": round(float(arr.mean()), 1),
        "min": round(float(arr.min()), 1),
        "max": round(float(arr.max()), 1),
    }


def _ndcg10(rows: list[dict[str, Any]], key: str, qrels: dict[str, dict[str, int]]) -> float:
    """nDCG@10 of each row's ``key`` list (rank order; a chunk's parent keeps its best rank)."""
    import ir_measures
    from ir_measures import nDCG

    run: dict[str, dict[str, float]] = {}
    for row in rows:
        ranking = run.setdefault(row["qid"], {})
        for rank, doc_id in enumerate(row[key]):
            ranking.setdefault(doc_id, float(len(row[key]) - rank))
    judged = {row["qid"]: qrels.get(row["qid"], {}) for row in rows}
    return round(float(ir_measures.calc_aggregate([nDCG @ 10], judged, run)[nDCG @ 10]), 4)


def _summarise(rows: dict[str, list[dict[str, Any]]], qrels: dict[str, dict[str, int]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in PIPELINES:
        summary[name] = {
            "total_ms": _percentiles([r["total_ms"] for r in rows[name]]),
            "first_stage_ms": _percentiles([r["first_stage_ms"] for r in rows[name]]),
            "rerank_ms": _percentiles([r["rerank_ms"] for r in rows[name]]),
            "ndcg10_first_stage": _ndcg10(rows[name], "first_stage", qrels),
            "ndcg10_reranked": _ndcg10(rows[name], "ranked", qrels),
        }
    w, s = summary["winnow"]["total_ms"], summary["stock"]["total_ms"]
    pairs = list(zip(rows["winnow"], rows["stock"], strict=True))
    diffs = [
        abs(a - b)
        for rw, rs in pairs
        for doc_id, a in zip(rw["ranked"], rw["scores"], strict=True)
        for other, b in zip(rs["ranked"], rs["scores"], strict=True)
        if doc_id == other
    ]
    summary["stock_over_winnow_p50"] = round(s["p50"] / w["p50"], 2) if w["p50"] else None
    summary["stock_over_winnow_p95"] = round(s["p95"] / w["p95"], 2) if w["p95"] else None
    summary["same_candidates_share"] = round(
        sum(set(rw["first_stage"]) == set(rs["first_stage"]) for rw, rs in pairs) / len(pairs), 3
    )
    summary["same_ranking_share"] = round(
        sum(rw["ranked"] == rs["ranked"] for rw, rs in pairs) / len(pairs), 3
    )
    summary["max_abs_score_diff"] = float(max(diffs)) if diffs else None
    return summary


def _token_stats(model: str, pairs: list[tuple[str, str]], max_length: int) -> dict[str, float | int]:
    """Mean tokens of the candidate pairs (truncated at ``max_length``) and the share longer than it."""
    from transformers import AutoTokenizer

    from winnow.rerank.models import resolve_model

    if not pairs:
        return {}
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
    full = tokenizer([q for q, _ in pairs], [d for _, d in pairs], verbose=False)["input_ids"]
    return {
        "pairs": len(pairs),
        "mean_tokens": round(sum(min(len(ids), max_length) for ids in full) / len(full), 1),
        "longer_than_max_length_share": round(sum(len(ids) > max_length for ids in full) / len(full), 3),
    }


def _candidate_pairs(
    pipe: Any, timed: list[tuple[str, str]], depth: int, meta_fields: list[str]
) -> list[tuple[str, str]]:
    """(query, text the rankers score) for the winnow first stage's candidates at ``depth`` (untimed)."""
    embedder, retriever = pipe.get_component("embedder"), pipe.get_component("retriever")
    pairs = []
    for _, text in timed:
        embedding = embedder.run(text=text)["embedding"]
        for doc in retriever.run(query_embedding=embedding, top_k=depth)["documents"]:
            values = [str(doc.meta[k]) for k in meta_fields if doc.meta.get(k) is not None]
            pairs.append((text, "\n".join([*values, doc.content or ""])))
    return pairs


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _ms(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    index = report["index"]
    rankers = report["rankers"]
    title = "# End-to-end query latency: winnow vs stock Haystack pipeline"
    lines = [title + (" (QUICK SMOKE RUN: not figures)" if cfg["quick"] else ""), ""]
    lines += [
        f"Device: **{report['device_name']}** ({cfg['device']}), {cfg['threads']} torch/FAISS threads, "
        f"{report['cpu_count']} cores visible. Dataset: {cfg['dataset']} ({cfg['split']}), "
        f"{report['queries']} timed queries one at a time, {cfg['warmup']} untimed warm-up query(ies) per "
        f"pipeline and depth, the two pipelines alternating which goes first.",
        "",
        f"Index: {index['documents']:,} documents ({index['factory']}, {index['embedder']}, "
        + (
            f"built here in {index['build_s']} s"
            + (" from a subset: judged documents of the queries + file order" if index.get("subset") else "")
            if index["built"]
            else f"`{index['path']}`"
        )
        + f"). Reranker: {cfg['model_note']}; max_length {cfg['max_length']}, top {cfg['top_k']} returned.",
        "",
        f"- **winnow**: `WinnowTextEmbedder` ({rankers['winnow'].get('embedder_dtype')}) -> "
        f"`WinnowEmbeddingRetriever` (`WinnowDocumentStore`, FAISS) -> `WinnowRanker` "
        f"({rankers['winnow'].get('dtype')}, batches of <= {rankers['winnow'].get('batch_size')} pairs / "
        f"{rankers['winnow'].get('max_batch_tokens')} tokens, windows "
        f"{'on' if rankers['winnow'].get('windows') else 'off'}, interpolation weight "
        f"{rankers['winnow'].get('interpolation_weight')}).",
        f"- **stock**: `SentenceTransformersTextEmbedder` ({rankers['stock'].get('embedder_dtype')}) -> "
        f"`InMemoryEmbeddingRetriever` (`InMemoryDocumentStore`, same vectors) -> "
        f"`SentenceTransformersSimilarityRanker` ({rankers['stock'].get('dtype')}, batch "
        f"{rankers['stock'].get('batch_size')}, truncates).",
        "",
    ]
    if rankers["winnow"].get("dtype") != rankers["stock"].get("dtype"):
        lines += [
            f"**The rankers ran in different precisions** (winnow {rankers['winnow'].get('dtype')}: its "
            f'engine\'s `dtype="auto"`; stock {rankers["stock"].get("dtype")}: its default), so part of any '
            "difference below is precision, in speed and in scores. `--stock-dtype match` runs the stock "
            "components in winnow's dtypes.",
            "",
        ]
    lines += [
        "## Latency per query (ms, wall time of `Pipeline.run`)",
        "",
        "| depth | winnow p50 | winnow p95 | stock p50 | stock p95 | stock/winnow p50 | stock/winnow p95 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for depth, d in report["depths"].items():
        w, s = d["winnow"]["total_ms"], d["stock"]["total_ms"]
        lines.append(
            f"| {depth} | {_ms(w['p50'])} | {_ms(w['p95'])} | {_ms(s['p50'])} | {_ms(s['p95'])} "
            f"| {d['stock_over_winnow_p50']} | {d['stock_over_winnow_p95']} |"
        )
    lines += [
        "",
        "Ratios above 1: winnow is faster.",
        "",
        "## Where the time goes (p50 ms) and how they rank",
        "",
        "| depth | winnow first stage | winnow rerank | stock first stage | stock rerank "
        "| nDCG@10 first stage winnow / stock | nDCG@10 reranked winnow / stock | same candidates "
        "| same top-k order | max abs score diff |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for depth, d in report["depths"].items():
        w, s = d["winnow"], d["stock"]
        diff = d["max_abs_score_diff"]
        lines.append(
            f"| {depth} | {_ms(w['first_stage_ms']['p50'])} | {_ms(w['rerank_ms']['p50'])} "
            f"| {_ms(s['first_stage_ms']['p50'])} | {_ms(s['rerank_ms']['p50'])} "
            f"| {w['ndcg10_first_stage']:.4f} / {s['ndcg10_first_stage']:.4f} "
            f"| {w['ndcg10_reranked']:.4f} / {s['ndcg10_reranked']:.4f} "
            f"| {d['same_candidates_share']:.0%} | {d['same_ranking_share']:.0%} "
            f"| {'-' if diff is None else f'{diff:.2e}'} |"
        )
    tokens = report.get("candidate_tokens") or {}
    lines += [
        "",
        "First stage = embedder + retriever, rerank = ranker (each component's run as Haystack's tracer sees "
        "it, input copy included); the rest of `Pipeline.run` is Haystack's own bookkeeping. Scores are "
        "sigmoids of the logit; `max abs score diff` compares documents both pipelines returned.",
    ]
    if tokens:
        lines += [
            "",
            f"Candidate pairs at depth {max(cfg['depths'])}: mean {tokens['mean_tokens']} tokens (after "
            f"truncation at {cfg['max_length']}), {tokens['longer_than_max_length_share']:.0%} longer than "
            f"{cfg['max_length']} (the stock ranker truncates those; winnow "
            + (
                "scores them in windows, i.e. does more work)."
                if rankers["winnow"].get("windows")
                else "too)."
            ),
        ]
    lines += [
        "",
        f"Load: winnow pipeline warm-up {report['load_s']['winnow']} s, stock {report['load_s']['stock']} s; "
        f"in-memory store filled in {report['stores']['stock_store_fill_s']} s. Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + ".",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main
def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="scifact", help="BEIR folder, or its name under shared/datasets")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--index", type=Path, default=None, help="winnow index folder (built there if absent)"
    )
    parser.add_argument("--max-docs", type=int, default=None, help="when building: index at most N documents")
    parser.add_argument("--model", default=None, help="cross-encoder folder (default: see above)")
    parser.add_argument(
        "--queries", type=int, default=None, help=f"timed queries (default {FULL['queries']})"
    )
    parser.add_argument("--depths", default=None, help=f"candidates to rerank (default {FULL['depths']})")
    parser.add_argument(
        "--warmup", type=int, default=None, help=f"untimed queries per depth (default {FULL['warmup']})"
    )
    parser.add_argument("--top-k", type=int, default=10, help="documents the rankers return")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per pair, both rankers")
    parser.add_argument(
        "--windows",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="winnow scores long documents in windows (default) or truncates them (--no-windows)",
    )
    parser.add_argument(
        "--interpolation-weight",
        default="1.0",
        help="WinnowRanker interpolation_weight: a number in [0, 1] (1.0 = pure reranker) or 'card'",
    )
    parser.add_argument(
        "--meta-fields", default="title", help="meta fields both rankers score, comma-separated"
    )
    parser.add_argument(
        "--stock-dtype",
        choices=("default", "match"),
        default="default",
        help="stock embedder/ranker precision: their default (fp32), or the dtypes winnow's components pick",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch and FAISS threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 docs, 3 queries, depths 5,10")
    parser.add_argument("--out", type=Path, default=None, help="output path without suffix")
    args = parser.parse_args(argv)
    args.max_docs_given = args.max_docs is not None
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = RESULTS / ("end_to_end_quick" if args.quick else "end_to_end")
    args.depth_list = sorted({int(x) for x in str(args.depths).split(",") if x.strip()})
    if not args.depth_list or min(args.depth_list) < 1:
        parser.error(f"--depths must be positive integers, got {args.depths!r}")
    if args.queries < 1 or args.warmup < 0 or args.top_k < 1 or args.threads < 1:
        parser.error("--queries, --top-k and --threads must be >= 1, --warmup >= 0")
    args.meta_field_list = [f.strip() for f in args.meta_fields.split(",") if f.strip()]
    if args.interpolation_weight.strip().lower() == "card":
        args.weight = None
    else:
        try:
            args.weight = float(args.interpolation_weight)
        except ValueError:
            parser.error(
                f"--interpolation-weight must be a number or 'card', got {args.interpolation_weight!r}"
            )
        if not 0.0 <= args.weight <= 1.0:
            parser.error("--interpolation-weight must lie in [0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no posthog calls inside Pipeline.run
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)

    data_path = _dataset_path(args.dataset)
    if not (data_path / "corpus.jsonl").is_file():
        print(f"end_to_end: skipped: no BEIR dataset at {data_path} (corpus.jsonl missing)")
        return 0
    try:
        import haystack_integrations.components.rankers.sentence_transformers  # noqa: F401
    except ImportError as err:
        print(
            f"end_to_end: skipped: sentence-transformers-haystack is not importable ({err}); "
            "pip install -e '.[dev]'"
        )
        return 0

    import torch
    import transformers

    from winnow.indexes import set_faiss_threads
    from winnow.retrieval.corpus import load_beir

    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars on stderr
    torch.set_num_threads(args.threads)
    set_faiss_threads(args.threads)
    logger.info("loading %s ...", data_path)
    dataset = load_beir(data_path)
    timed, warmup = _choose_queries(dataset, args.split, args.queries, args.warmup)
    qrels = dataset.qrels[args.split]
    judged = {doc for qid, _ in [*timed, *warmup] for doc in qrels.get(qid, {})}

    with tempfile.TemporaryDirectory(prefix="winnow-end-to-end-") as tmp:
        tmp_path = Path(tmp)
        model, model_note = pick_model(args.model, tmp_path)
        index_path, index_info = _open_or_build_index(args, dataset, judged, tmp_path)
        winnow_store, stock_store, store_info = _stores(index_path)
        present = set(store_info.pop("ids"))
        timed_judged = {doc for qid, _ in timed for doc in qrels.get(qid, {})}
        if timed_judged and not timed_judged & present:
            raise SystemExit(
                f"the index at {index_path} holds none of the judged documents of these queries: was it "
                f"built from {data_path}?"
            )
        if timed_judged - present:
            logger.warning(
                "%d of %d judged documents of the timed queries are not in the index",
                len(timed_judged - present),
                len(timed_judged),
            )
        pipes = _pipelines(args, model, store_info["embedder"], winnow_store, stock_store)
        load_s = {}
        for name in PIPELINES:
            start = time.perf_counter()
            pipes[name].warm_up()
            load_s[name] = round(time.perf_counter() - start, 2)
            logger.info("%s pipeline warmed up in %.1f s", name, load_s[name])
        clock = _component_clock()
        depths: dict[str, Any] = {}
        per_query: dict[str, Any] = {}
        for depth in args.depth_list:
            logger.info(
                "depth %d: %d warm-up + %d timed queries per pipeline", depth, len(warmup), len(timed)
            )
            rows = _measure(pipes, clock, depth, timed, warmup)
            depths[str(depth)] = _summarise(rows, qrels)
            per_query[str(depth)] = rows
        rankers = _ranker_facts(pipes)
        pairs = _candidate_pairs(pipes["winnow"], timed, args.depth_list[-1], args.meta_field_list)
        candidate_tokens = _token_stats(model, pairs, args.max_length)

    report = {
        "device_name": device_name(args.device),
        "cpu_count": os.cpu_count(),
        "versions": _versions(),
        "config": {
            "quick": args.quick,
            "dataset": data_path.name,
            "split": args.split,
            "device": args.device,
            "threads": args.threads,
            "depths": args.depth_list,
            "warmup": args.warmup,
            "top_k": args.top_k,
            "max_length": args.max_length,
            "meta_fields": args.meta_field_list,
            "model": model,
            "model_note": model_note,
            "pipeline_form": "haystack Pipeline of winnow components (README.md), not TwoStageSearch",
            "stock_dtype": args.stock_dtype,
        },
        "queries": len(timed),
        "index": {**index_info, **{k: store_info[k] for k in ("embedder", "factory", "metric")}},
        "stores": store_info,
        "rankers": rankers,
        "load_s": load_s,
        "candidate_tokens": candidate_tokens,
        "depths": depths,
        "per_query": per_query,
        "command": " ".join(
            ["python", "benchmarks/end_to_end.py", *(sys.argv[1:] if argv is None else argv)]
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = _markdown(report)
    args.out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
