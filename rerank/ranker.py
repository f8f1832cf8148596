"""``WinnowRanker``: a Haystack component that reranks documents with winnow's cross-encoder engine."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np
from haystack import Document, component, default_from_dict, default_to_dict
from haystack.utils import ComponentDevice

from winnow.rerank.engine import CrossEncoderEngine, sigmoid
from winnow.rerank.interpolation import check_weight, interpolate, order_scores
from winnow.rerank.reading import Reading
from winnow.rerank.scorer import scorer_keeps_first_stage
from winnow.retrieval.legacy_names import register_legacy_name, upgrade_legacy_type

logger = logging.getLogger(__name__)

__all__ = ["WinnowRanker"]


@component
class WinnowRanker:
    """Reranks documents by the relevance a cross-encoder gives each (query, document) pair.

    Documents longer than the model's maximum length are split into overlapping windows and scored by their
    best window (see :class:`rerank.engine.CrossEncoderEngine`), so the end of a long page still counts,
    unless ``windows=False`` or the model's card chose truncation on its dev split.
    Unlike Haystack's stock rankers, run-time values are honoured even when falsy: ``top_k=0`` returns no
    documents, ``scale_score=False`` returns raw logits and ``score_threshold=0.0`` drops negative scores.

    The text scored for a document is ``document_prefix`` + the values of ``meta_fields_to_embed`` present in
    its meta, in order, and its content (``""`` when the content is None), joined by ``embedding_separator``.
    Documents sharing an id are collapsed to the best-scoring one. Input documents are never mutated: the
    output holds copies (each with its own meta dict) carrying the new ``score`` and, in
    ``meta["rerank_reading"]``, how the cross-encoder read the document (:class:`rerank.reading.Reading` as a
    dict: ``read`` is ``"whole"``, ``"truncated"`` at ``tokens`` tokens, or ``"windows"``, its best of
    ``windows`` windows being ``best_window``).

    ``run`` warms the component up on first use (loading the model), as Haystack 3's own components do; call
    ``warm_up()`` beforehand to pay that cost at start-up. Loading a pipeline that contains this component
    from YAML needs the module on Haystack's deserialization allowlist:
    ``Pipeline.loads(yaml, allowed_modules=["winnow"])``.

    Usage example:

    ```python
    from haystack import Document
    from winnow.rerank.ranker import WinnowRanker

    ranker = WinnowRanker(model="cross-encoder/ms-marco-MiniLM-L6-v2", top_k=2)
    docs = [Document(content="Paris is in France."), Document(content="Berlin is in Germany.")]
    result = ranker.run(query="Where is Berlin?", documents=docs)
    print(result["documents"][0].content)
    ```
    """

    def __init__(
        self,
        *,
        model: str,
        device: str | ComponentDevice | None = None,
        top_k: int = 10,
        query_prefix: str = "",
        document_prefix: str = "",
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        scale_score: bool = True,
        score_threshold: float | None = None,
        max_length: int | None = None,
        windows: bool | None = None,
        batch_size: int | None = None,
        interpolation_weight: float | None = None,
    ) -> None:
        """
        Create a WinnowRanker.

        :param model: A local model folder, a winnow short name or a Hugging Face Hub name of a cross-encoder.
        :param device: Torch device string (``"cpu"``, ``"cuda:0"``, ``"mps"``) or a ``ComponentDevice``;
            None picks cuda, then mps, then cpu.
        :param top_k: The most documents to return (0 returns none).
        :param query_prefix: Text put before the query, e.g. an instruction the model was trained with.
        :param document_prefix: Text put before each document's text.
        :param meta_fields_to_embed: Meta fields whose values are put before the content.
        :param embedding_separator: Separator between the meta values and the content.
        :param scale_score: If True, scores are the sigmoid of the raw logits, in (0, 1); else raw logits.
        :param score_threshold: If set, documents scoring below it (after scaling, if any) are dropped.
        :param max_length: Tokens per (query, window) pair; None = the model's maximum, capped at 512.
        :param windows: If True, long documents are scored by their best window; if False, truncated. None
            uses what the model's card chose on a dev split, else windows.
        :param batch_size: Most pairs per forward pass; None = the engine's default for the device.
        :param interpolation_weight: Combine per-query min-max-normalised reranker scores with the incoming
            documents' (first-stage) scores as ``w * rerank + (1 - w) * first_stage``. None uses the weight
            tuned for the model (its ``winnow.json`` card, written by ``winnow finetune``), or pure reranking
            when it has none; 1.0 forces pure reranking. Interpolated scores lie in [0, 1] and ``scale_score``
            does not apply to them. Documents without a score get their input order as first-stage score.
            At weight 0 (a card's way of saying the model does not help) the model is not run: documents keep
            their incoming order, and a warning says why once.
        :raises ValueError: If ``top_k`` is negative or ``interpolation_weight`` is outside [0, 1].
        """
        _check_top_k(top_k)
        _check_threshold(score_threshold)
        self.interpolation_weight = check_weight(interpolation_weight)
        self.model = model
        self.device = device
        self.top_k = top_k
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.meta_fields_to_embed = list(meta_fields_to_embed) if meta_fields_to_embed else []
        self.embedding_separator = embedding_separator
        self.scale_score = scale_score
        self.score_threshold = score_threshold
        self.max_length = max_length
        self.windows = windows
        self.batch_size = batch_size
        self._engine: CrossEncoderEngine | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialize this component to a dictionary that mirrors ``__init__``."""
        return default_to_dict(
            self,
            model=self.model,
            device=self.device,
            top_k=self.top_k,
            query_prefix=self.query_prefix,
            document_prefix=self.document_prefix,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
            scale_score=self.scale_score,
            score_threshold=self.score_threshold,
            max_length=self.max_length,
            windows=self.windows,
            batch_size=self.batch_size,
            interpolation_weight=self.interpolation_weight,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WinnowRanker:
        """Deserialize a component from ``to_dict``'s output (a serialized ComponentDevice is restored)."""
        return default_from_dict(cls, upgrade_legacy_type(data, cls))

    def warm_up(self) -> None:
        """Load the model; later calls do nothing."""
        if self._engine is None:
            device = self.device.to_torch_str() if isinstance(self.device, ComponentDevice) else self.device
            self._engine = self._make_engine(device)
        self._engine.load()  # idempotent and thread-safe

    def _make_engine(self, device: str | None) -> CrossEncoderEngine:
        return CrossEncoderEngine(
            self.model,
            device=device,
            max_length=self.max_length,
            batch_size=self.batch_size,
            windows=self.windows,
        )

    async def warm_up_async(self) -> None:
        """Load the model in a worker thread so the event loop is not blocked."""
        if self._engine is None or not self._engine.is_loaded:
            await asyncio.to_thread(self.warm_up)

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        scale_score: bool | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """
        Rerank ``documents`` by their relevance to ``query``.

        Run-time values override the init values when they are not None, falsy ones included.

        :param query: The query.
        :param documents: The documents to rerank.
        :param top_k: The most documents to return; 0 returns none.
        :param scale_score: If True, sigmoid of the raw logits; if False, raw logits.
        :param score_threshold: Drop documents scoring below this value.
        :returns: A dictionary with key ``documents``: copies of the input documents with their new ``score``
            and ``meta["rerank_reading"]`` (how the document was read), best first, duplicates (same id)
            collapsed to the best-scoring one.
        :raises TypeError: If ``query`` is not a str or ``documents`` is not a list of Documents.
        :raises ValueError: If ``top_k`` is negative.
        """
        _check_inputs(query, documents)
        top_k = self.top_k if top_k is None else top_k
        scale_score = self.scale_score if scale_score is None else scale_score
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        _check_top_k(top_k)
        _check_threshold(score_threshold)
        if not documents or top_k == 0:
            return {"documents": []}

        weight = self.effective_interpolation_weight
        if weight == 0.0:  # the interpolated order is the incoming one: the model is not run
            self._say_first_stage_only()
            scores = interpolate(np.zeros(len(documents)), _first_stage_scores(documents), 0.0)
            return {"documents": _select(documents, scores, top_k, score_threshold, None)}
        self.warm_up()
        assert self._engine is not None
        texts = [self._document_text(doc) for doc in documents]
        unique = list(dict.fromkeys(texts))  # identical texts are scored once
        unique_scores, unique_readings = self._engine.score_with_readings(self.query_prefix + query, unique)
        by_text = dict(zip(unique, unique_scores.tolist(), strict=True))
        raw = np.array([by_text[text] for text in texts], dtype=np.float64)
        read_by_text = dict(zip(unique, unique_readings or [None] * len(unique), strict=True))
        readings = [read_by_text[text] for text in texts]
        if weight is not None and weight < 1.0:
            scores = interpolate(raw, _first_stage_scores(documents), weight)
        else:
            scores = sigmoid(raw) if scale_score else raw
        return {"documents": _select(documents, scores, top_k, score_threshold, readings)}

    def _say_first_stage_only(self) -> None:
        """Log once why this ranker keeps the incoming order (weight 0)."""
        if not getattr(self, "_said_first_stage_only", False):
            reason = scorer_keeps_first_stage(self._engine, self.interpolation_weight)
            logger.warning(reason or "interpolation weight 0 keeps the incoming order: the model is not run")
            self._said_first_stage_only = True

    @property
    def effective_interpolation_weight(self) -> float | None:
        """The weight ``run`` uses: the init value, else the model card's (loads nothing but the card)."""
        if self.interpolation_weight is not None:
            return self.interpolation_weight
        if self._engine is None:
            device = self.device.to_torch_str() if isinstance(self.device, ComponentDevice) else self.device
            self._engine = self._make_engine(device)
        weight = getattr(self._engine, "interpolation_weight", None)
        return None if isinstance(weight, bool) or not isinstance(weight, (int, float)) else float(weight)

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        scale_score: bool | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """
        Asynchronously rerank ``documents``: :meth:`run` in a worker thread, same parameters and result.

        :param query: The query.
        :param documents: The documents to rerank.
        :param top_k: The most documents to return; 0 returns none.
        :param scale_score: If True, sigmoid of the raw logits; if False, raw logits.
        :param score_threshold: Drop documents scoring below this value.
        :returns: A dictionary with key ``documents``, as :meth:`run`.
        """
        return await asyncio.to_thread(
            self.run,
            query=query,
            documents=documents,
            top_k=top_k,
            scale_score=scale_score,
            score_threshold=score_threshold,
        )

    def _document_text(self, document: Document) -> str:
        meta_values = [
            str(document.meta[key])
            for key in self.meta_fields_to_embed
            if key in document.meta and document.meta[key] is not None
        ]
        return self.document_prefix + self.embedding_separator.join([*meta_values, document.content or ""])


def _first_stage_scores(documents: list[Document]) -> np.ndarray:
    """The documents' incoming scores; when any is missing, their input order (first = best) instead."""
    if all(isinstance(doc.score, (int, float)) and math.isfinite(doc.score) for doc in documents):
        return np.array([float(doc.score) for doc in documents], dtype=np.float64)
    logger.debug("some documents have no score; interpolating with their input order as first-stage score")
    return order_scores(len(documents))


def _select(
    documents: list[Document],
    scores: np.ndarray,
    top_k: int,
    score_threshold: float | None,
    readings: list[Reading | None] | None = None,
) -> list[Document]:
    """Best-scoring copy per id, best first (ties keep input order), thresholded, cut to ``top_k``; each
    with its reading in ``meta["rerank_reading"]`` when ``readings`` has one."""
    best: dict[str, int] = {}
    for i, doc in enumerate(documents):
        j = best.get(doc.id)
        if j is None or scores[i] > scores[j]:
            best[doc.id] = i
    order = sorted(best.values(), key=lambda i: (-scores[i], i))
    if score_threshold is not None:
        order = [i for i in order if scores[i] >= score_threshold]
    # copies with their own meta dict, so that changing an output's meta leaves the input alone
    return [
        replace(documents[i], score=float(scores[i]), meta=_meta(documents[i], readings, i))
        for i in order[:top_k]
    ]


def _meta(document: Document, readings: list[Reading | None] | None, i: int) -> dict[str, Any]:
    meta = dict(document.meta)
    reading = None if readings is None else readings[i]
    if reading is not None:
        meta["rerank_reading"] = reading.to_dict()
    return meta


def _check_inputs(query: Any, documents: Any) -> None:
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if not isinstance(documents, list) or not all(isinstance(doc, Document) for doc in documents):
        raise TypeError("documents must be a list of haystack Document objects")


def _check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")


def _check_threshold(score_threshold: Any) -> None:
    if score_threshold is None:
        return
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)):
        raise TypeError(f"score_threshold must be a number or None, got {type(score_threshold).__name__}")
    if math.isnan(score_threshold):
        raise ValueError("score_threshold must not be NaN")


register_legacy_name(WinnowRanker)  # pipelines saved before the move to winnow.*
