"""``winnow index``: embed a corpus into an index directory, or ``--verify`` or ``--compact`` one."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from winnow.api.cli.options import (
    FACTORY_HELP,
    add_common,
    add_ray_options,
    emit,
    non_negative_int,
    positive_int,
)

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the command and its options."""
    p = subparsers.add_parser(
        "index", help="embed a corpus into a FAISS index directory (or --verify or --compact one)"
    )
    p.add_argument(
        "--corpus",
        type=Path,
        help="BEIR folder, .jsonl file, or folder of .txt/.md/.pdf/.html/.htm/.docx files (required; PDF, "
        "HTML and DOCX need the 'convert' extra); an unreadable file is skipped and named in the summary",
    )
    p.add_argument("--out", type=Path, help="index directory to write, replaced atomically (or --store)")
    p.add_argument(
        "--store",
        default=None,
        metavar="URI",
        help="where to write instead of --out: an index directory, or "
        "postgresql://USER:PASS@HOST/DB[?table=T] (pgvector; documents are upserted by id, so a rerun does "
        "not duplicate them)",
    )
    p.add_argument(
        "--verify",
        type=Path,
        metavar="INDEX_DIR",
        default=None,
        help="instead of indexing, hash every file of INDEX_DIR against its manifest and run SQLite's "
        "integrity check on its table; exit 2 if one is damaged",
    )
    p.add_argument(
        "--compact",
        type=Path,
        metavar="INDEX_DIR",
        default=None,
        help="instead of indexing, rewrite INDEX_DIR's vector snapshot (vectors.faiss) from its table's "
        "changes, which writes otherwise append (it also happens by itself once enough vectors changed)",
    )
    p.add_argument(
        "--embedder", default=None, help="bi-encoder path or name (default: packaged all-MiniLM-L6-v2)"
    )
    p.add_argument(
        "--factory",
        default=None,
        help=FACTORY_HELP + "; with --store postgresql://: HNSW<M> (default HNSW16) or Flat (exact scans)",
    )
    p.add_argument(
        "--chunk-words", type=positive_int, default=None, help="split documents into windows of N words"
    )
    p.add_argument(
        "--chunk-overlap",
        type=non_negative_int,
        default=None,
        help="words shared by neighbours (N/5)",
    )
    p.add_argument(
        "--split-by",
        choices=("word", "sentence", "passage"),
        default=None,
        help="chunk into windows of --chunk-words words (word, the default), or into chunks of at most that "
        "many words cut at sentence ends (sentence) or at pages/paragraphs, then sentences (passage); "
        "without --chunk-words, sentence and passage use 200",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help="embedding batch size")
    add_ray_options(p, "embed and write with a pool of actors (one per GPU when the cluster has GPUs)")
    add_common(p)
    p.set_defaults(check_args=lambda args: _check_args(p, args))


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--corpus and --out are required unless --verify or --compact is given (then they are refused)."""
    if args.verify is not None and args.compact is not None:
        parser.error("give either --verify INDEX_DIR or --compact INDEX_DIR, not both")
    for flag, value in (("--verify", args.verify), ("--compact", args.compact)):
        if value is not None:
            if args.corpus is not None or args.out is not None or args.store is not None:
                parser.error(f"{flag} takes an existing index; do not combine it with --corpus/--out/--store")
            return
    if args.out is not None and args.store is not None:
        parser.error("give either --out INDEX_DIR or --store URI, not both")
    missing = [
        flag
        for flag, value in (("--corpus", args.corpus), ("--out or --store", args.out or args.store))
        if value is None
    ]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (or --verify INDEX_DIR)")
    if args.store is not None:
        from winnow.retrieval.store_uri import is_postgres_uri

        if not is_postgres_uri(args.store):
            args.out, args.store = Path(args.store), None


def run(args: argparse.Namespace) -> int:
    if args.verify is not None:
        return _verify(args)
    if args.compact is not None:
        return _compact(args)
    from winnow.retrieval.bm25_index import keep_bm25
    from winnow.retrieval.corpus import load_corpus_report
    from winnow.retrieval.embedder import Embedder
    from winnow.retrieval.indexing import build_index

    if args.chunk_overlap is not None and args.chunk_words is None:
        raise ValueError("--chunk-overlap needs --chunk-words")
    if args.chunk_words and args.chunk_overlap is not None and args.chunk_overlap >= args.chunk_words:
        raise ValueError(
            f"--chunk-overlap ({args.chunk_overlap}) must be smaller than --chunk-words ({args.chunk_words})"
        )
    if args.split_by not in (None, "word") and args.chunk_words is None:
        args.chunk_words = 200
    started = time.perf_counter()
    loaded = load_corpus_report(args.corpus)
    passages, skipped = loaded.passages, _skipped_summary(loaded.skipped)
    if not passages:
        raise ValueError(f"no document in {args.corpus} could be read ({len(loaded.skipped)} files skipped)")
    logger.info("loaded %d documents from %s", len(passages), args.corpus)
    embedder = Embedder(args.embedder, device=args.device, batch_size=args.batch_size)
    if args.store is not None:
        return _index_into_store(args, passages, embedder, started, skipped=skipped)
    args.factory = args.factory or "Flat"
    if args.ray is not None:
        index = _build_index_ray(args, passages)
    else:
        index = build_index(
            passages,
            embedder,
            factory=args.factory,
            chunk_words=args.chunk_words,
            chunk_overlap=args.chunk_overlap,
            split_by=args.split_by or "word",
        )
    keep_bm25(index).save(args.out)  # BM25 is saved in OUT/bm25/, so search and eval load it
    summary = {
        "index": str(args.out),
        "documents": len(passages),
        "passages": len(index),
        "embedder": embedder.name,
        "factory": args.factory,
        "chunked": bool(index.extra.get("chunked")),
        "split_by": index.extra.get("split_by"),
        "seconds": round(time.perf_counter() - started, 1),
        **skipped,
    }
    emit(
        summary,
        args.json,
        f"indexed {len(passages)} documents as {len(index)} passages into {args.out} "
        f"({args.factory}, {embedder.name}) in {summary['seconds']} s" + _skipped_text(skipped),
    )
    return 0


def _skipped_summary(files: list) -> dict:
    """The summary's ``skipped_files`` count and ``skipped`` list (path and reason of each)."""
    return {"skipped_files": len(files), "skipped": [f.to_dict() for f in files]}


def _skipped_text(skipped: dict) -> str:
    if not skipped["skipped_files"]:
        return ""
    lines = [f"  {f['path']}: {f['reason']}" for f in skipped["skipped"]]
    return f"\nskipped {skipped['skipped_files']} file(s) that could not be read:\n" + "\n".join(lines)


def _index_into_store(
    args: argparse.Namespace, passages: list, embedder, started: float, *, skipped: dict | None = None
) -> int:
    """Embed and upsert every document into the PostgreSQL store ``--store`` names: in this process, or
    with ``--ray`` by a pool of Ray actors that each embed their batches and upsert them themselves."""
    import functools
    import re

    from winnow.retrieval.store_first_stage import write_passages
    from winnow.retrieval.store_uri import open_document_store, redact_dsn

    if args.chunk_words:
        raise ValueError(
            "--chunk-words is not supported with --store postgresql:// yet; index whole documents"
        )
    factory = args.factory or "HNSW16"
    hnsw = re.fullmatch(r"HNSW(\d+)", factory)
    if factory != "Flat" and hnsw is None:
        raise ValueError(
            f"--factory {factory!r} with --store postgresql://: use HNSW<M> (e.g. HNSW16) or Flat"
        )
    embedder.load()
    opener = functools.partial(
        open_document_store,
        args.store,
        embedding_dim=embedder.dim,
        embedder=embedder.name,
        search_strategy="hnsw" if hnsw else "exact",
        hnsw_m=int(hnsw.group(1)) if hnsw else 16,
    )
    store = opener()  # creates the table and records the embedder before anything is written
    try:
        store.record_embedder(embedder.name, embedder.dim)
        if args.ray is not None:
            _write_store_ray(args, passages, functools.partial(opener, create=False))
        else:
            write_passages(store, passages, embedder, show_progress=not args.json)
        total = store.count_documents()
    finally:
        store.close()
    name = redact_dsn(args.store)
    summary = {
        "index": name,
        "store": "pgvector",
        "documents": len(passages),
        "passages": len(passages),
        "stored_documents": total,
        "embedder": embedder.name,
        "factory": factory,
        "chunked": False,
        "ray": getattr(args, "ray", None),
        "seconds": round(time.perf_counter() - started, 1),
        **(skipped or _skipped_summary([])),
    }
    where = " on Ray" if args.ray is not None else ""
    emit(
        summary,
        args.json,
        f"indexed {len(passages)} documents into {name}{where} ({total} stored; {factory}, {embedder.name}) "
        f"in {summary['seconds']} s" + _skipped_text(summary),
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from winnow.indexes import verify_index

    started = time.perf_counter()
    result = verify_index(args.verify)
    summary = {
        "index": str(args.verify),
        "ok": result.ok,
        "files": {name: "ok" if problem is None else problem for name, problem in result.files.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if result.ok:
        text = f"OK: {len(result.files)} files of {args.verify} match their sha256 in manifest.json"
    else:
        text = f"{args.verify} is damaged:\n" + "\n".join(
            f"  {name}: {problem}" for name, problem in result.problems.items()
        )
    emit(summary, args.json, text)
    return 0 if result.ok else 2


def _compact(args: argparse.Namespace) -> int:
    from winnow.indexes import WinnowIndex

    started = time.perf_counter()
    index = WinnowIndex.load(args.compact)
    pending = index.pending_changes()
    manifest = index.compact()
    index.table.close()
    summary = {
        "index": str(args.compact),
        "changes_compacted": pending,
        "documents": manifest.document_count,
        "vectors": manifest.count,
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = (
        f"compacted {args.compact}: {pending} vector changes folded into vectors.faiss "
        f"({manifest.count} vectors, {manifest.document_count} documents) in {summary['seconds']} s"
    )
    emit(summary, args.json, text)
    return 0


# --------------------------------------------------------------------------- --ray
def _build_index_ray(args: argparse.Namespace, passages: list):
    """The index ``build_index`` would build, embedded by Ray actors (the driver writes the directory)."""
    from winnow.retrieval.ray_cluster import ray_session
    from winnow.retrieval.ray_indexing import build_index_ray

    with ray_session(args.ray):
        return build_index_ray(
            passages,
            embedder=args.embedder,
            factory=args.factory,
            chunk_words=args.chunk_words,
            chunk_overlap=args.chunk_overlap,
            split_by=args.split_by or "word",
            device=args.device,
            batch_size=args.batch_size,
            workers=args.ray_workers,
            show_progress=not args.json,
        )


def _write_store_ray(args: argparse.Namespace, passages: list, store_factory) -> None:
    """``--store postgresql://... --ray``: every Ray actor embeds its batches and upserts them itself
    (``store_factory`` opens the store in each actor)."""
    from winnow.retrieval.ray_cluster import ray_session
    from winnow.retrieval.ray_indexing import index_documents_ray

    with ray_session(args.ray):
        index_documents_ray(
            passages,
            store_factory=store_factory,
            embedder=args.embedder,
            device=args.device,
            batch_size=args.batch_size,
            workers=args.ray_workers,
            show_progress=not args.json,
        )
