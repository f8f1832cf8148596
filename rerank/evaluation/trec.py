"""TREC run files (``qid Q0 docid rank score tag``, one line per retrieved document) for both stages."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from winnow.rerank.evaluation.runs import EvalRun, Ranked, tie_broken

logger = logging.getLogger(__name__)

__all__ = ["TrecFormatError", "read_run", "save_runs", "write_run"]

_SPACE = re.compile(r"\s")


class TrecFormatError(ValueError):
    """A run file line is malformed; the message names the file and line."""


def _check_token(kind: str, value: str) -> None:
    if not value or _SPACE.search(value):
        raise ValueError(
            f"{kind} {value!r} cannot be written to a TREC run file: it is empty or has whitespace"
        )


def write_run(path: str | Path, lists: Mapping[str, Ranked], tag: str) -> Path:
    """Write ranked ``(doc id, score)`` lists, best first, as a TREC run; ranks start at 1.

    Tied scores are nudged down by one ulp in list order and every score is written in full (``repr``), so
    tools that re-sort by score (trec_eval, ir-measures) read the lists in the order given.
    """
    _check_token("run tag", tag)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for qid, ranked in lists.items():
        _check_token("query id", qid)
        for rank, (doc, score) in enumerate(tie_broken(ranked), start=1):
            _check_token("document id", doc)
            lines.append(f"{qid} Q0 {doc} {rank} {float(score)!r} {tag}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    """A TREC run file as ``{qid: {doc id: score}}`` (the form ir-measures takes)."""
    path = Path(path)
    run: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise TrecFormatError(
                    f"{path}:{line_no}: expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}"
                )
            qid, _, doc, _, score, _ = parts
            try:
                run.setdefault(qid, {})[doc] = float(score)
            except ValueError as err:
                raise TrecFormatError(f"{path}:{line_no}: score {score!r} is not a number") from err
    return run


def _tag(text: str) -> str:
    return _SPACE.sub("_", text.strip()) or "winnow"


def save_runs(run: EvalRun, directory: str | Path, *, tag: str | None = None) -> dict[str, Path]:
    """Write ``first_stage.trec`` (deepest depth; smaller depths are its prefixes), ``reranked.trec`` (deepest
    depth) and ``reranked.depth{d}.trec`` for every smaller depth (a shallower rerank is not a prefix).

    Returns ``{"first_stage": path, "reranked": path, "reranked@d": path, ...}``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base = _tag(tag or f"winnow-{run.first_stage_info.get('name', 'first-stage')}")
    paths = {"first_stage": write_run(directory / "first_stage.trec", run.first_stage_lists(), base)}
    if run.reranked:
        rr_tag = f"{base}+rerank"
        paths["reranked"] = write_run(directory / "reranked.trec", run.reranked_lists(), rr_tag)
        for depth in run.depths[:-1]:
            paths[f"reranked@{depth}"] = write_run(
                directory / f"reranked.depth{depth}.trec", run.reranked_lists(depth), rr_tag
            )
    logger.info("wrote TREC runs to %s", directory)
    return paths
