"""``winnow index``: embed a corpus into an index directory."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from winnow.api.cli.options import FACTORY_HELP, add_common, emit, non_negative_int, positive_int

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the command and its options."""
    p = subparsers.add_parser("index", help="embed a corpus into a FAISS index directory")
    p.add_argument(
        "--corpus", required=True, type=Path, help="BEIR folder, .jsonl file, or folder of .txt/.md files"
    )
    p.add_argument("--out", required=True, type=Path, help="index directory to write (replaced atomically)")
    p.add_argument(
        "--embedder", default=None, help="bi-encoder path or name (default: packaged all-MiniLM-L6-v2)"
    )
    p.add_argument("--factory", default="Flat", help=FACTORY_HELP)
    p.add_argument(
        "--chunk-words", type=positive_int, default=None, help="split documents into windows of N words"
    )
    p.add_argument(
        "--chunk-overlap",
        type=non_negative_int,
        default=None,
        help="words shared by neighbours (N/5)",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help="embedding batch size")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from winnow.retrieval.corpus import load_corpus
    from winnow.retrieval.embedder import Embedder
    from winnow.retrieval.indexing import build_index

    if args.chunk_overlap is not None and args.chunk_words is None:
        raise ValueError("--chunk-overlap needs --chunk-words")
    if args.chunk_words and args.chunk_overlap is not None and args.chunk_overlap >= args.chunk_words:
        raise ValueError(
            f"--chunk-overlap ({args.chunk_overlap}) must be smaller than --chunk-words ({args.chunk_words})"
        )
    started = time.perf_counter()
    passages = load_corpus(args.corpus)
    logger.info("loaded %d documents from %s", len(passages), args.corpus)
    embedder = Embedder(args.embedder, device=args.device, batch_size=args.batch_size)
    index = build_index(
        passages,
        embedder,
        factory=args.factory,
        chunk_words=args.chunk_words,
        chunk_overlap=args.chunk_overlap,
    )
    index.save(args.out)
    summary = {
        "index": str(args.out),
        "documents": len(passages),
        "passages": len(index),
        "embedder": embedder.name,
        "factory": args.factory,
        "chunked": bool(index.extra.get("chunked")),
        "seconds": round(time.perf_counter() - started, 1),
    }
    emit(
        summary,
        args.json,
        f"indexed {len(passages)} documents as {len(index)} passages into {args.out} "
        f"({args.factory}, {embedder.name}) in {summary['seconds']} s",
    )
    return 0
