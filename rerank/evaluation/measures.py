"""The measures winnow reports, computed by ir-measures (names are ir-measures' own)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import ir_measures

from winnow.rerank.evaluation.runs import Ranked

__all__ = ["MEASURES", "PRIMARY", "first_relevant_rank", "per_query_metrics", "stage_metrics"]

MEASURES = [
    ir_measures.nDCG @ 10,
    ir_measures.RR @ 10,
    ir_measures.R @ 10,
    ir_measures.R @ 100,
    ir_measures.AP,
    ir_measures.P @ 1,
]
PRIMARY = "nDCG@10"


def per_query_metrics(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], queries: Iterable[str]
) -> dict[str, dict[str, float]]:
    """``{measure name: {qid: value}}`` with ``ir_measures.iter_calc``; a query without results scores 0."""
    qids = list(queries)
    values = {str(m): dict.fromkeys(qids, 0.0) for m in MEASURES}
    present = {q: dict(run[q]) for q in qids if run.get(q)}
    if present:
        for row in ir_measures.iter_calc(MEASURES, _qrels_for(qrels, qids), present):
            if row.query_id in values[str(row.measure)]:
                values[str(row.measure)][row.query_id] = float(row.value)
    return values


def stage_metrics(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], queries: Iterable[str]
) -> dict[str, float]:
    """Mean of each measure over ``queries`` with ``ir_measures.calc_aggregate``.

    The qrels of every query are passed, so a query the system found nothing for counts as 0 (ir-measures
    fills judged queries missing from the run with zeros) rather than being left out of the mean.
    """
    qids = list(queries)
    present = {q: dict(run[q]) for q in qids if run.get(q)}
    if not present:
        return {str(m): 0.0 for m in MEASURES}
    aggregate = ir_measures.calc_aggregate(MEASURES, _qrels_for(qrels, qids), present)
    return {str(m): float(aggregate[m]) for m in MEASURES}


def _qrels_for(qrels: Mapping[str, Mapping[str, int]], qids: Sequence[str]) -> dict[str, dict[str, int]]:
    return {q: {d: int(g) for d, g in qrels.get(q, {}).items()} for q in qids}


def first_relevant_rank(ranked: Ranked, judged: Mapping[str, int]) -> int | None:
    """1-based rank of the first document judged relevant (grade >= 1), or None when none was retrieved."""
    for rank, (doc, _) in enumerate(ranked, start=1):
        if judged.get(doc, 0) >= 1:
            return rank
    return None
