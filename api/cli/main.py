"""The ``winnow`` command line: one module per command, each with ``add_parser`` and ``run``.

Commands import their heavy dependencies (torch, faiss, haystack) when they run, so ``winnow --help`` and
argument errors stay fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from winnow.api.cli import evaluate, finetune, index, quickstart, search, serve, tune

__all__ = ["COMMANDS", "build_parser", "main"]

# command name -> the module that parses and runs it, in the order ``winnow --help`` lists them
COMMANDS: dict[str, ModuleType] = {
    "index": index,
    "search": search,
    "quickstart": quickstart,
    "eval": evaluate,
    "finetune": finetune,
    "tune": tune,
    "serve": serve,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``winnow`` parser with every command's subparser."""
    parser = argparse.ArgumentParser(
        prog="winnow",
        description="Retrieve with a bi-encoder + FAISS, rerank with a cross-encoder.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbosity == 0:
        logging.getLogger("winnow.api.cli").setLevel(logging.INFO)  # the commands' own progress notes
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-file "Loading weights" bars; winnow shows its own


def main(argv: list[str] | None = None) -> int:
    """Run ``winnow`` with ``argv`` (default: the process arguments); returns the exit code."""
    from winnow.indexes import WinnowIndexError

    args = build_parser().parse_args(argv)
    if (check_args := getattr(args, "check_args", None)) is not None:
        check_args(args)  # a command's checks across options, reported as argparse errors
    _setup_logging(args.verbose)
    try:
        return COMMANDS[args.command].run(args)
    except (ValueError, OSError, WinnowIndexError, *_store_errors()) as err:
        if args.verbose > 1:
            raise
        from winnow.retrieval.store_uri import redact_dsn

        print(f"winnow {args.command}: error: {redact_dsn(str(err))}", file=sys.stderr)
        return 2


def _store_errors() -> tuple[type[Exception], ...]:
    """A document store's errors (an unreachable database...), reported like other user errors; looked up
    only when an error happens, so commands that never touch Haystack do not import it."""
    try:
        from haystack.document_stores.errors import DocumentStoreError
    except ImportError:  # pragma: no cover - haystack is a core dependency
        return ()
    return (DocumentStoreError,)
