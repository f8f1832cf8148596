"""The rerank pass of an evaluation on Ray Data: queries scored in parallel by a pool of reranker actors.

Each actor loads the cross-encoder once (built from the driver's engine settings, so it scores exactly as the
driver's engine would; one GPU per actor when the cluster has GPUs) and scores batches of queries; a batch
that fails is retried. The result has :func:`rerank.evaluation.runs.rerank_pass`'s shape, in query order.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from winnow.rerank.scorer import Scorer
from winnow.retrieval.hit import Hit
from winnow.retrieval.ray_cluster import cluster_cpus, cluster_gpus, import_ray, with_retries

logger = logging.getLogger(__name__)

__all__ = ["engine_spec", "rerank_pass_ray"]

QUERIES_PER_BATCH = 4


def engine_spec(scorer: Any) -> dict[str, Any] | None:
    """Keyword arguments that rebuild ``scorer`` as an identical ``CrossEncoderEngine`` in another process
    (device left to the actor), or None when ``scorer`` is not an engine."""
    from winnow.rerank.engine import CrossEncoderEngine

    if not isinstance(scorer, CrossEncoderEngine):
        return None
    return {
        "model": scorer.model_name,
        "backend": scorer.backend,
        "dtype": str(scorer.dtype).removeprefix("torch."),
        "max_length": scorer.max_length,
        "windows": scorer.windows,
        "activation": scorer.activation,
    }


class _RerankBatch:
    """A Ray Data actor: one scorer, loaded once; scores a batch of queries (each timed)."""

    def __init__(
        self, spec: dict[str, Any] | None, scorer: Scorer | None, device: str, attempts: int
    ) -> None:
        if spec is not None:
            from winnow.rerank.engine import CrossEncoderEngine

            if device.startswith("cuda"):
                spec = {**spec, "dtype": "auto"}  # the driver's CPU dtype is no choice for a GPU
            scorer = CrossEncoderEngine(device=device, **spec).load()
        assert scorer is not None
        self.scorer = scorer
        self.attempts = attempts

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        def attempt() -> dict[str, np.ndarray]:
            scores, timings = [], []
            for query, docs_json in zip(batch["query"], batch["docs"], strict=True):
                docs = json.loads(str(docs_json))
                start = time.perf_counter()
                values = np.asarray(self.scorer.score(str(query), docs), dtype=np.float64).reshape(-1)
                timings.append((time.perf_counter() - start) * 1000)
                if len(values) != len(docs):
                    raise ValueError(f"reranker returned {len(values)} scores for {len(docs)} documents")
                scores.append(json.dumps(values.tolist()))
            return {"qid": batch["qid"], "scores": np.array(scores, dtype=object), "ms": np.array(timings)}

        return with_retries(attempt, f"reranking queries {list(batch['qid'])[:3]}...", self.attempts)


def rerank_pass_ray(
    scorer: Scorer,
    queries: dict[str, str],
    hits: dict[str, list[Hit]],
    show_progress: bool,
    titles: bool = True,
    *,
    workers: int | None = None,
    max_attempts: int = 3,
    scorer_factory: Callable[[], Scorer] | None = None,
) -> tuple[dict[str, dict[str, float]], list[float], int]:
    """:func:`rerank.evaluation.runs.rerank_pass` on Ray actors (connect to Ray first).

    A ``CrossEncoderEngine`` is rebuilt in each actor from its settings; any other scorer is pickled and
    shipped as is. ``workers`` defaults to one actor per GPU, else one per CPU.
    """
    ray = import_ray()
    if not ray.is_initialized():
        raise RuntimeError("connect to Ray first: with ray_session(address): ...")
    gpus = int(cluster_gpus(ray))
    n_actors = workers or gpus or max(1, int(cluster_cpus(ray)))
    if gpus and n_actors > gpus:
        raise ValueError(f"{n_actors} GPU actors asked for, but the cluster has {gpus} GPUs")
    spec = engine_spec(scorer) if scorer_factory is None else None
    shipped = None if spec is not None else (scorer_factory() if scorer_factory else scorer)
    device = "cuda" if gpus else "cpu"
    rows = []
    for qid, text in queries.items():
        row = hits[qid]
        if row:
            docs = [h.full_text() if titles else h.text for h in row]
            rows.append({"qid": qid, "query": text, "docs": json.dumps(docs)})
    scores: dict[str, dict[str, float]] = {qid: {} for qid in queries if not hits[qid]}
    ms: dict[str, float] = {}
    pairs = sum(len(hits[qid]) for qid in queries)
    if rows:
        ctx = ray.data.DataContext.get_current()
        saved = ctx.enable_progress_bars
        ctx.enable_progress_bars = False
        logger.info("reranking %d queries with %d Ray actors", len(rows), n_actors)
        try:
            ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), 8 * n_actors)).map_batches(
                _RerankBatch,
                fn_constructor_kwargs={
                    "spec": spec,
                    "scorer": shipped,
                    "device": device,
                    "attempts": max_attempts,
                },
                batch_size=QUERIES_PER_BATCH,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=n_actors, max_tasks_in_flight_per_actor=2),
                num_gpus=1 if gpus else 0,
                num_cpus=0 if gpus else 1,
            )
            bar = tqdm(total=len(rows), desc="reranking (ray)", unit="query", disable=not show_progress)
            with bar:
                for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for qid, values, elapsed in zip(out["qid"], out["scores"], out["ms"], strict=True):
                        qid = str(qid)
                        doc_ids = [h.doc_id for h in hits[qid]]
                        scores[qid] = dict(zip(doc_ids, json.loads(str(values)), strict=True))
                        ms[qid] = float(elapsed)
                    bar.update(len(out["qid"]))
        finally:
            ctx.enable_progress_bars = saved
    missing = [qid for qid in queries if qid not in scores]
    if missing:
        raise RuntimeError(f"Ray returned no scores for {len(missing)} queries (e.g. {missing[0]!r})")
    ordered = {qid: scores[qid] for qid in queries}
    return ordered, [ms[qid] for qid in queries if qid in ms], pairs
