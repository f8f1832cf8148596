"""Micro-batching: score the pairs of many concurrent rerank requests together in one model call.

Requests from many clients arrive one at a time; scored one by one, each pays for a padded forward pass of its
own and the CPU cores or the GPU sit partly idle. :class:`MicroBatcher` holds the first request for at most
``max_wait_ms``, takes every request that arrives meanwhile (up to ``max_batch_pairs`` pairs) and hands all
their pairs to the scorer at once, whose length-sorted batching then packs them tightly. One worker thread
owns the model, so callers never run it on an event loop and never oversubscribe the cores.

The queue is bounded (``max_queue_pairs``): a request that would overflow it fails at once with
:class:`QueueFullError`, which says how long to wait, instead of piling up until the process falls over.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)


class PairScorer(Protocol):
    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...


class QueueFullError(RuntimeError):
    """The batcher already holds ``max_queue_pairs`` pairs; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Request:
    query: str
    documents: list[str]
    future: Future = field(default_factory=Future)


BatchCallback = Callable[[int, int, float], None]
"""Called after each model call with (pairs, requests, seconds)."""

_STOP = object()


class MicroBatcher:
    """Collects concurrent ``(query, documents)`` requests and scores them in shared model calls.

    :param scorer: anything with ``score_pairs(pairs) -> np.ndarray`` (e.g. ``CrossEncoderEngine``).
    :param max_wait_ms: longest a request waits for company before its batch runs.
    :param max_batch_pairs: a batch stops taking requests once it holds this many pairs (a larger request
        runs alone).
    :param max_queue_pairs: most pairs waiting or being scored; beyond it :meth:`submit` raises
        :class:`QueueFullError`. A single request is always accepted into an empty queue.
    :param enabled: False scores each request on its own (same worker, no waiting): the baseline.
    :param on_batch: metrics hook, called with (pairs, requests, seconds) after each model call.
    """

    def __init__(
        self,
        scorer: PairScorer,
        *,
        max_wait_ms: float = 5.0,
        max_batch_pairs: int = 512,
        max_queue_pairs: int = 8192,
        enabled: bool = True,
        on_batch: BatchCallback | None = None,
    ) -> None:
        if max_wait_ms < 0 or not math.isfinite(max_wait_ms):
            raise ValueError(f"max_wait_ms must be a finite number >= 0, got {max_wait_ms}")
        if max_batch_pairs <= 0 or max_queue_pairs <= 0:
            raise ValueError("max_batch_pairs and max_queue_pairs must be positive")
        self.scorer = scorer
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch_pairs = max_batch_pairs
        self.max_queue_pairs = max_queue_pairs
        self.enabled = enabled
        self.on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._pairs_per_second = 0.0  # moving average, for Retry-After
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MicroBatcher:
        """Start the worker thread (idempotent)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this MicroBatcher was closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="winnow-micro-batcher", daemon=True)
                self._thread.start()
        return self

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish queued requests, then stop the worker."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def __enter__(self) -> MicroBatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending_pairs(self) -> int:
        """Pairs waiting or being scored."""
        return self._pending

    # ------------------------------------------------------------------ submitting
    def submit(self, query: str, documents: Sequence[str]) -> Future:
        """Queue one request; the future resolves to one float32 score per document."""
        request = _Request(query, list(documents))
        if not request.documents:
            request.future.set_result(np.zeros(0, dtype=np.float32))
            return request.future
        n = len(request.documents)
        with self._lock:
            if self._closed:
                raise RuntimeError("this MicroBatcher is closed")
            if self._pending and self._pending + n > self.max_queue_pairs:
                raise QueueFullError(
                    f"rerank queue is full ({self._pending} pairs waiting, limit {self.max_queue_pairs})",
                    retry_after=self._retry_after(),
                )
            self._pending += n
        if self._thread is None:
            self.start()
        self._queue.put(request)
        return request.future

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """Blocking :meth:`submit` (the ``Scorer`` protocol of ``winnow.rerank.scorer``)."""
        return self.submit(query, documents).result()

    async def score_async(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """:meth:`submit` awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(query, documents))

    def _retry_after(self) -> float:
        rate = self._pairs_per_second
        if rate <= 0:
            return 1.0
        return max(1.0, math.ceil(self._pending / rate))

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            if self.enabled:
                pairs = len(first.documents)
                deadline = time.monotonic() + self.max_wait
                while pairs < self.max_batch_pairs:
                    remaining = max(0.0, deadline - time.monotonic())
                    try:
                        item = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                    pairs += len(item.documents)
            self._score_batch(batch)
            if stop:
                self._drain()
                return

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._score_batch([item])

    def _score_batch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        try:
            if live:
                self._score_isolated(live)
        finally:
            with self._lock:
                self._pending -= sum(len(r.documents) for r in batch)

    def _score_isolated(self, requests: list[_Request]) -> None:
        """Score together; if that fails, one by one, so only the request at fault gets the error."""
        try:
            self._score_requests(requests)
        except Exception as err:  # noqa: BLE001 - handed to the caller through its future
            if len(requests) == 1:
                requests[0].future.set_exception(err)
                return
            logger.warning("a batch of %d requests failed (%s); scoring them one by one", len(requests), err)
            for request in requests:
                self._score_isolated([request])

    def _record(self, requests: list[_Request], seconds: float) -> None:
        pairs = sum(len(r.documents) for r in requests)
        if seconds > 0:
            rate = pairs / seconds
            previous = self._pairs_per_second
            self._pairs_per_second = rate if not previous else 0.8 * previous + 0.2 * rate
        if self.on_batch is not None:
            try:
                self.on_batch(pairs, len(requests), seconds)
            except Exception:  # noqa: BLE001 - a metrics hook must not fail requests
                logger.exception("on_batch callback failed")

    def _score_requests(self, requests: list[_Request]) -> None:
        pairs = [(r.query, d) for r in requests for d in r.documents]
        start = time.perf_counter()
        scores = np.asarray(self.scorer.score_pairs(pairs), dtype=np.float32)
        if scores.shape != (len(pairs),):
            raise RuntimeError(f"scorer returned {scores.shape} scores for {len(pairs)} pairs")
        self._record(requests, time.perf_counter() - start)  # before callers wake up and read the metrics
        offset = 0
        for r in requests:
            end = offset + len(r.documents)
            if not r.future.done():
                r.future.set_result(scores[offset:end].copy())
            offset = end
