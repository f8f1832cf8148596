"""The quality check that decides whether a reranker may run a quantised CPU backend by default.

Each candidate backend (:data:`rerank.quantized.QUANTIZED_BACKENDS` that can run here) is built (int8:
calibrated on pairs from the model's own training data, never a test split), then scores the same check pairs
as fp32 torch: BM25 candidates of held-apart or dev queries. A candidate passes when its nDCG@10 is within
``tolerance`` (0.005) of fp32 on every check set. The fastest candidate that passes, if at least 1.1x fp32
torch here, becomes the model's CPU default (``backend="auto"``); when none does, the model runs fp32 and the
card says why. The result goes into the card's ``cpu_quantization`` section (``--write-card``), which
:func:`rerank.quantized.auto_backend` reads.

    python -m winnow.rerank.quantize_check winnow-general --write-card        # sets and calibration below
    python -m winnow.rerank.quantize_check work/my-model --sets scifact:train --calibration-file pairs.jsonl

Defaults suit winnow's general model: check sets ``scifact:train``, ``checkthat2020-task2:dev`` and
``tatqa:dev`` (10-K style passages: financebench has no dev split) from ``../shared/datasets``, 100 queries
each times their BM25 top 10; calibration on 256 pairs from its training data (SQuAD v1.1 train questions,
their paragraph and two other paragraphs of the same article; QED-NQ train pairs). Speed depends on the CPU
(int8 needs VNNI/AMX to beat fp32): run the check on the kind of CPU the model will serve on; the card records
which CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from winnow.rerank.card import read_card, write_card
from winnow.rerank.engine import CrossEncoderEngine
from winnow.rerank.models import resolve_model
from winnow.rerank.quantized import (
    CHECK_SECTION,
    DEFAULT_TOLERANCE,
    QUANTIZED_BACKENDS,
    artifact_dir,
    artifact_path,
    backend_missing,
)

logger = logging.getLogger(__name__)

__all__ = ["CheckSet", "beir_check_set", "cpu_info", "ndcg10", "record_check", "run_check", "training_pairs"]

DEFAULT_SETS = "scifact:train,checkthat2020-task2:dev,tatqa:dev"
MIN_SPEEDUP = 1.1  # a candidate that passes becomes the default only when this much faster than fp32 torch


@dataclass
class CheckSet:
    """Check pairs of one set: ``pairs[i]`` is (query text, document text) of ``owners[i]`` (query id,
    document id); ``qrels`` are the judgements of its queries."""

    name: str
    split: str
    pairs: list[tuple[str, str]]
    owners: list[tuple[str, str]]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def queries(self) -> int:
        return len({q for q, _ in self.owners})


def beir_check_set(folder: str | Path, split: str, *, queries: int = 100, depth: int = 10) -> CheckSet:
    """The first ``queries`` judged queries of ``split`` (file order) times their BM25 top ``depth``."""
    from winnow.retrieval.bm25 import BM25Retriever
    from winnow.retrieval.corpus import load_beir

    if split == "test":
        raise ValueError("the quality check never reads a test split; use a dev or train split")
    dataset = load_beir(Path(folder))
    chosen = list(dataset.split_queries(split).items())[:queries]
    texts = {p.id: p.full_text() for p in dataset.corpus}
    hits = BM25Retriever(dataset.corpus).retrieve_batch([text for _, text in chosen], top_k=depth)
    pairs, owners = [], []
    for (qid, text), query_hits in zip(chosen, hits, strict=True):
        for hit in query_hits:
            pairs.append((text, texts[hit.doc_id]))
            owners.append((qid, hit.doc_id))
    qrels = {qid: dict(dataset.qrels[split].get(qid, {})) for qid, _ in chosen}
    return CheckSet(Path(folder).name, split, pairs, owners, qrels)


def training_pairs(datasets: str | Path, n: int = 256, seed: int = 0) -> tuple[list[tuple[str, str]], str]:
    """Calibration pairs from the general model's training data, and how they were drawn: SQuAD v1.1 train
    questions with their paragraph and two other paragraphs of its article (3 of every 4 pairs), and QED-NQ
    train pairs (positive and negatives)."""
    from winnow.retrieval.corpus import load_beir

    rng = random.Random(seed)
    squad = load_beir(Path(datasets) / "squad-v1.1")
    by_id = {p.id: p for p in squad.corpus}
    by_article: dict[str, list[str]] = {}
    for p in squad.corpus:
        by_article.setdefault(p.title, []).append(p.id)
    train = squad.qrels["train"]
    qids = sorted(train)
    rng.shuffle(qids)
    pairs: list[tuple[str, str]] = []
    for qid in qids:
        if len(pairs) >= n * 3 // 4:
            break
        pos = by_id[next(iter(train[qid]))]
        pairs.append((squad.queries[qid], pos.full_text()))
        siblings = [d for d in by_article[pos.title] if d != pos.id]
        pairs += [
            (squad.queries[qid], by_id[d].full_text()) for d in rng.sample(siblings, min(2, len(siblings)))
        ]
    qed = Path(datasets) / "qed-nq" / "pairs" / "train.jsonl"
    if qed.is_file():
        records = [json.loads(line) for line in qed.read_text(encoding="utf-8").splitlines() if line.strip()]
        rng.shuffle(records)
        for rec in records:
            if len(pairs) >= n:
                break
            pairs += [(rec["query"], doc) for doc in [rec["positive"], *rec.get("negatives", [])[:1]]]
    pairs = pairs[:n]
    return (
        pairs,
        f"{len(pairs)} pairs of the model's training data: squad-v1.1 train, qed-nq train (seed {seed})",
    )


def pairs_file(path: str | Path, n: int = 256, seed: int = 0) -> tuple[list[tuple[str, str]], str]:
    """``n`` random pairs of a training pairs file (JSON lines: ``query``, ``passage`` or ``document``)."""
    records = [
        json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    random.Random(seed).shuffle(records)
    pairs = [(r["query"], r.get("passage") or r.get("document") or r.get("positive")) for r in records[:n]]
    return pairs, f"{len(pairs)} pairs of {Path(path).name} (the model's training data, seed {seed})"


def ndcg10(
    owners: Sequence[tuple[str, str]], scores: Sequence[float], qrels: dict[str, dict[str, int]]
) -> float:
    """nDCG@10 of ``scores`` over the candidates ``owners`` (ir_measures)."""
    import ir_measures
    from ir_measures import nDCG

    run: dict[str, dict[str, float]] = {}
    for (qid, doc_id), score in zip(owners, scores, strict=True):
        run.setdefault(qid, {})[doc_id] = float(score)
    return float(ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10])


def cpu_info() -> dict[str, Any]:
    """This CPU: name, logical cores, and which of the ISA extensions that matter here it has."""
    import os

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = {
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}),
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "amx": bool(flags & {"amx_tile", "amx_int8", "amx_bf16"}),
    }
    return {"name": name, "cores": os.cpu_count(), "isa": isa}


def run_check(
    model: str,
    check_sets: Sequence[CheckSet],
    calibration: Sequence[tuple[str, str]],
    calibration_note: str,
    *,
    candidates: Sequence[str] = QUANTIZED_BACKENDS,
    tolerance: float = DEFAULT_TOLERANCE,
    threads: int | None = None,
    quantized_dir: str | Path | None = None,
    rebuild: bool = False,
) -> dict[str, Any]:
    """Build and score each candidate against fp32 torch on ``check_sets``; the card section to record.

    ``quantized_dir``: where quantised files go (None: :func:`rerank.quantized.artifact_dir`); ``rebuild``
    re-quantises even when a cached file exists."""
    folder = Path(quantized_dir) if quantized_dir else artifact_dir(resolve_model(model))
    common: dict[str, Any] = {"device": "cpu", "num_threads": threads, "show_progress": False}
    reference = CrossEncoderEngine(model, backend="torch", dtype="float32", **common)
    fp32, fp32_seconds = _score_sets(reference, check_sets)
    fp32_ndcg = {s.name: round(ndcg10(s.owners, fp32[s.name], s.qrels), 4) for s in check_sets}
    results: dict[str, Any] = {}
    for backend in candidates:
        missing = backend_missing(backend, building=True)
        if missing:
            results[backend] = {"passed": False, "skipped": missing}
            continue
        path = artifact_path(folder, backend)
        if rebuild and path.is_file() and backend != "openvino":
            path.unlink()
        engine = CrossEncoderEngine(
            model, backend=backend, onnx_dir=folder, calibration_pairs=list(calibration), **common
        )
        engine.load()
        scores, seconds = _score_sets(engine, check_sets)
        ndcg = {s.name: round(ndcg10(s.owners, scores[s.name], s.qrels), 4) for s in check_sets}
        change = {name: round(ndcg[name] - fp32_ndcg[name], 4) for name in ndcg}
        worst = min(change.values())
        results[backend] = {
            "passed": worst >= -tolerance,
            "ndcg10": ndcg,
            "change_vs_fp32": change,
            "worst_change": worst,
            "max_abs_score_diff": round(max(float(np.max(np.abs(scores[n] - fp32[n]))) for n in scores), 4),
            "speedup_vs_fp32": round(fp32_seconds / seconds, 2),
        }
        logger.info("%s: worst nDCG@10 change %+.4f, %.2fx fp32", backend, worst, fp32_seconds / seconds)
    passed = [b for b, r in results.items() if r["passed"]]
    default = max(passed, key=lambda b: results[b]["speedup_vs_fp32"]) if passed else "torch"
    if passed and results[default]["speedup_vs_fp32"] < MIN_SPEEDUP:
        default = "torch"  # nothing that passed is clearly faster than fp32 torch
    failed = "; ".join(
        f"{b} {r['worst_change']:+.4f} nDCG@10 on {min(r['change_vs_fp32'], key=r['change_vs_fp32'].get)}"
        if "worst_change" in r
        else f"{b} not run ({r['skipped']})"
        for b, r in results.items()
        if not r["passed"]
    )
    if default != "torch":
        reason = f"{default} passed ({results[default]['speedup_vs_fp32']}x fp32 in the check)"
    elif passed:
        reason = (
            f"the backends that passed ({', '.join(passed)}) were not faster than fp32 torch in the check"
        )
    else:
        reason = f"no quantised backend kept nDCG@10 within {tolerance} of fp32 ({failed})"
    return {
        "checked": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metric": "nDCG@10 against fp32 torch on the same candidates",
        "tolerance": tolerance,
        "data": [
            {"set": s.name, "split": s.split, "queries": s.queries, "pairs": len(s.pairs)} for s in check_sets
        ],
        "calibration": calibration_note,
        "cpu": cpu_info(),
        "threads": threads,
        "fp32_ndcg10": fp32_ndcg,
        "candidates": results,
        "default": default,
        "reason": reason,
    }


def _score_sets(engine: CrossEncoderEngine, sets: Sequence[CheckSet]) -> tuple[dict[str, np.ndarray], float]:
    engine.load()
    engine.score_pairs(sets[0].pairs[:8])  # warm-up
    scores, total = {}, 0.0
    for s in sets:
        start = time.perf_counter()
        scores[s.name] = np.asarray(engine.score_pairs(s.pairs), dtype=np.float64)
        total += time.perf_counter() - start
    return scores, total


def record_check(model: str | Path, check: dict[str, Any]) -> Path:
    """Write ``check`` into the card (``winnow.json``) of the local model folder ``model``; its path."""
    folder = Path(resolve_model(str(model)))
    card = read_card(str(folder))
    if card is None:
        raise ValueError(f"{folder} has no readable winnow.json card to record the check in")
    card[CHECK_SECTION] = check
    return write_card(folder, card)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="reranker: winnow short name or local folder")
    parser.add_argument("--datasets", type=Path, default=Path.cwd().parent / "shared" / "datasets")
    parser.add_argument("--sets", default=DEFAULT_SETS, help="NAME:SPLIT,... under --datasets (never test)")
    parser.add_argument("--queries", type=int, default=100, help="queries per check set")
    parser.add_argument("--depth", type=int, default=10, help="BM25 candidates per query")
    parser.add_argument("--calibration-file", type=Path, default=None, help="the model's training pairs")
    parser.add_argument("--calibration-pairs", type=int, default=256)
    parser.add_argument("--backends", default=",".join(QUANTIZED_BACKENDS))
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quantized-dir", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true", help="re-quantise even when cached")
    parser.add_argument("--write-card", action="store_true", help="record the check in the model's card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sets = []
    for item in args.sets.split(","):
        name, _, split = item.strip().partition(":")
        sets.append(
            beir_check_set(args.datasets / name, split or "dev", queries=args.queries, depth=args.depth)
        )
    if args.calibration_file:
        calibration, note = pairs_file(args.calibration_file, args.calibration_pairs)
    else:
        calibration, note = training_pairs(args.datasets, args.calibration_pairs)
    check = run_check(
        args.model,
        sets,
        calibration,
        note,
        candidates=[b.strip() for b in args.backends.split(",") if b.strip()],
        tolerance=args.tolerance,
        threads=args.threads,
        quantized_dir=args.quantized_dir,
        rebuild=args.rebuild,
    )
    check["command"] = " ".join(["python -m winnow.rerank.quantize_check", *(argv or sys.argv[1:])])
    sys.stdout.write(json.dumps(check, indent=2) + "\n")
    if args.write_card:
        sys.stdout.write(f"recorded in {record_check(args.model, check)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
