"""``winnow index``: embed a corpus into an index directory, or ``--verify`` one."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from winnow.api.cli.options import FACTORY_HELP, add_common, emit, non_negative_int, positive_int

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the command and its options."""
    p = subparsers.add_parser(
        "index", help="embed a corpus into a FAISS index directory (or --verify one's files)"
    )
    p.add_argument(
        "--corpus", type=Path, help="BEIR folder, .jsonl file, or folder of .txt/.md files (required)"
    )
    p.add_argument("--out", type=Path, help="index directory to write, replaced atomically (required)")
    p.add_argument(
        "--verify",
        type=Path,
        metavar="INDEX_DIR",
        default=None,
        help="instead of indexing, hash every file of INDEX_DIR against its manifest; exit 2 if one differs",
    )
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
    p.set_defaults(check_args=lambda args: _check_args(p, args))


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--corpus and --out are required unless --verify is given (then they are refused)."""
    if args.verify is not None:
        if args.corpus is not None or args.out is not None:
            parser.error("--verify checks an existing index; do not combine it with --corpus/--out")
        return
    missing = [flag for flag, value in (("--corpus", args.corpus), ("--out", args.out)) if value is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (or --verify INDEX_DIR)")


def run(args: argparse.Namespace) -> int:
    if args.verify is not None:
        return _verify(args)
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
