"""Options, argument types and output helpers that several ``winnow`` commands share."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from winnow.rerank.quantized import QUANTIZED_BACKENDS  # numpy only: keeps the CLI's start cheap

if TYPE_CHECKING:
    from winnow.rerank.engine import CrossEncoderEngine

__all__ = [
    "FACTORY_HELP",
    "RERANK_BACKENDS",
    "add_common",
    "add_ray_options",
    "add_reranker_options",
    "depths",
    "emit",
    "int_at_least",
    "load_reranker",
    "non_negative_int",
    "positive_int",
    "short",
    "weight",
]

# --backend choices: "auto" picks per model (rerank.quantized.auto_backend), the others force a runtime
RERANK_BACKENDS = ("auto", "torch", "onnx", "onnx-int8", *QUANTIZED_BACKENDS)

FACTORY_HELP = (
    "faiss index factory string: Flat (exact), HNSW32, IVF4096,SQ8, IVF1024,PQ32 ... (default: Flat)"
)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def add_reranker_options(parser: argparse.ArgumentParser) -> None:
    """Options of how the reranker runs, shared by search and eval."""
    parser.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="reranker tokens per (query, document) pair (default: the model's, at most 512)",
    )
    parser.add_argument(
        "--windows",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score documents longer than a pair leaves room for by their best overlapping window, or "
        "truncate them (--no-windows); default: what the model's card chose on a dev split, else windows",
    )
    parser.add_argument(
        "--backend",
        choices=RERANK_BACKENDS,
        default="auto",
        help="reranker runtime (default auto: on CPU the quantised backend the model's own quality check "
        "chose, else torch fp32, and the log says why; onnx* and openvino* run on CPU)",
    )


def add_ray_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--ray [ADDRESS|local]`` and ``--ray-workers N`` (the ``ray`` extra)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS|local",
        help=f"{what} on Ray: 'local' (the default when the flag has no value) starts a private "
        "loopback cluster for this run; ADDRESS (host:6379, ray://host:10001, auto) joins a running "
        "one. Needs pip install 'winnow-rerank[ray]'",
    )
    parser.add_argument(
        "--ray-workers",
        type=positive_int,
        default=None,
        help="Ray actors (default: one per GPU of the cluster, else one per CPU)",
    )


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``-v`` and ``--device``, taken by every command."""
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")


def weight(text: str) -> float:
    """argparse type: an interpolation weight in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a weight in [0, 1], got {text!r}")
    return value


def depths(text: str) -> list[int]:
    """argparse type: rerank depths, ``100`` or ``10,20,50,100``."""
    from winnow.rerank.evaluation.runs import parse_depths  # heavy: imported when the option is used

    try:
        return parse_depths(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def emit(payload: dict[str, Any], as_json: bool, text: str) -> None:
    """Print ``payload`` as JSON with ``--json``, else ``text``."""
    print(json.dumps(payload, indent=2, ensure_ascii=False) if as_json else text)


def short(text: str, width: int = 100) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def load_reranker(
    name: str | None, args: argparse.Namespace, show_progress: bool
) -> CrossEncoderEngine | None:
    """The engine for ``--reranker NAME`` with the run options of :func:`add_reranker_options`, loaded."""
    from winnow.rerank.engine import CrossEncoderEngine  # torch: loaded only by commands that rerank

    if name is None:
        return None
    engine = CrossEncoderEngine(
        name,
        device=args.device,
        show_progress=show_progress,
        max_length=getattr(args, "max_length", None),
        windows=getattr(args, "windows", None),
        backend=getattr(args, "backend", None) or "auto",
    )
    engine.load()
    return engine
