"""Micro-batching: score the pairs of many concurrent rerank requests together in one model call.

Requests from many clients arrive one at a time; scored one by one, each pays for a padded forward pass of its
own and the CPU cores or the GPU sit partly idle. :class:`MicroBatcher` holds the first request for at most
``max_wait_ms``, takes every request that arrives meanwhile (up to ``max_batch_pairs`` pairs) and hands all
their pairs to the scorer at once, whose length-sorted batching then packs them tightly. One worker thread
owns the model, so callers never run it on an event loop and never oversubscribe the cores.

A request's cost is counted in windows (model rows), not documents: a scorer that can estimate it
(``estimate_windows``, as ``CrossEncoderEngine`` does) prices a long document as the windows it will become.
Admission is bounded twice, and a request that fails either check gets :class:`QueueFullError` at once, which
says how long to wait, instead of piling up until the process falls over:

* the queue holds at most ``max_queue_pairs`` windows waiting or being scored;
* with a ``latency_budget_ms``, the expected wait (queued windows over the measured windows per second, an
  exponentially weighted average of recent model calls) stays within ``queue_share`` (3/4) of the budget;
  the rest is left for what a request does besides waiting (a first stage, HTTP) and for the estimate's
  error, so that admitted requests finish within the budget.

A request's future that is cancelled (its client went away, or it timed out) gives its cost back at once and
is skipped by the worker.
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

from winnow.rerank.reading import Scored

logger = logging.getLogger(__name__)


class PairScorer(Protocol):
    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...


class QueueFullError(RuntimeError):
    """Not admitted: the queue is full (``reason="queue_full"``) or the expected wait is over the latency
    budget (``reason="latency_budget"``); retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float, reason: str = "queue_full") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


@dataclass
class _Request:
    query: str
    documents: list[str]
    cost: int = 0
    future: Future = field(default_factory=Future)
    released: bool = False
    readings: bool = False  # resolve to Scored (scores and readings) instead of the scores alone


BatchCallback = Callable[[int, int, float], None]
"""Called after each model call with (pairs, requests, seconds)."""

_STOP = object()


class MicroBatcher:
    """Collects concurrent ``(query, documents)`` requests and scores them in shared model calls.

    :param scorer: anything with ``score_pairs(pairs) -> np.ndarray`` (e.g. ``CrossEncoderEngine``); one
        that also has ``score_pairs_with_readings`` (the engine) gives ``submit(..., readings=True)`` them.
    :param max_wait_ms: longest a request waits for company before its batch runs.
    :param max_batch_pairs: a batch stops taking requests once it holds this many pairs (a larger request
        runs alone).
    :param max_queue_pairs: most windows (model rows; one per document for a scorer that cannot estimate
        windows) waiting or being scored; beyond it :meth:`submit` raises :class:`QueueFullError`. A single
        request is always accepted into an empty queue.
    :param latency_budget_ms: the latency an admitted request should stay within; a request whose expected
        wait (from the measured windows per second) is over ``queue_share`` of it makes :meth:`submit` raise
        :class:`QueueFullError` (``reason="latency_budget"``). None: no budget. Until a first model call has
        been measured only ``max_queue_pairs`` applies.
    :param queue_share: the share of ``latency_budget_ms`` a request may spend waiting for the model.
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
        latency_budget_ms: float | None = None,
        queue_share: float = 0.75,
        enabled: bool = True,
        on_batch: BatchCallback | None = None,
    ) -> None:
        if max_wait_ms < 0 or not math.isfinite(max_wait_ms):
            raise ValueError(f"max_wait_ms must be a finite number >= 0, got {max_wait_ms}")
        if max_batch_pairs <= 0 or max_queue_pairs <= 0:
            raise ValueError("max_batch_pairs and max_queue_pairs must be positive")
        if latency_budget_ms is not None and not (latency_budget_ms > 0 and math.isfinite(latency_budget_ms)):
            raise ValueError(f"latency_budget_ms must be > 0 and finite, or None; got {latency_budget_ms}")
        self.scorer = scorer
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch_pairs = max_batch_pairs
        self.max_queue_pairs = max_queue_pairs
        if not 0 < queue_share <= 1:
            raise ValueError(f"queue_share must be in (0, 1], got {queue_share}")
        self.latency_budget = None if latency_budget_ms is None else latency_budget_ms / 1000.0
        self.queue_share = queue_share
        self.enabled = enabled
        self.on_batch = on_batch
        self._estimate = getattr(scorer, "estimate_windows", None)
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0  # pairs
        self._pending_cost = 0  # windows
        self._lock = threading.Lock()
        self._windows_per_second = 0.0  # moving average of model calls: expected wait and Retry-After
        self._windows_per_pair = 1.0  # moving average, to price a request before its documents are known
        self._running_cost = 0  # windows of the model call under way, and when it started
        self._running_since = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._slots = RetrySlots()

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

    @property
    def pending_windows(self) -> int:
        """Windows (the queue's cost unit) waiting or being scored."""
        return self._pending_cost

    @property
    def windows_per_second(self) -> float:
        """Measured throughput (moving average over model calls); 0 until the first call."""
        return self._windows_per_second

    def estimate_cost(self, query: str, documents: Sequence[str]) -> int:
        """A request's cost in windows: the scorer's ``estimate_windows``, else one per document."""
        if not documents:
            return 0
        if self._estimate is None:
            return len(documents)
        return max(len(documents), int(self._estimate(query, documents)))

    def estimate_pairs_cost(self, pairs: int) -> int:
        """The cost of ``pairs`` documents not seen yet, from the windows per pair measured so far."""
        return max(pairs, math.ceil(pairs * self._windows_per_pair))

    def expected_wait(self, cost: int = 0) -> float:
        """Seconds until a request of ``cost`` windows queued now would be scored: the queued windows, less
        what the running model call has presumably done already, over the measured rate; 0 before any
        measurement."""
        rate = self._windows_per_second
        if rate <= 0:
            return 0.0
        running = self._running_cost
        done = min((time.perf_counter() - self._running_since) * rate, 0.9 * running) if running else 0.0
        return max(0.0, self._pending_cost - done + cost) / rate

    # ------------------------------------------------------------------ submitting
    def reserve(self, cost: int) -> int:
        """Admit ``cost`` windows now (or raise :class:`QueueFullError`) and count them as queued until
        :meth:`submit` (``reserved=cost``) or :meth:`unreserve`: for work whose documents are not known yet.
        Returns ``cost``."""
        cost = max(0, int(cost))
        with self._lock:
            self._check_admission(cost)
            self._pending_cost += cost
        return cost

    def unreserve(self, cost: int) -> None:
        """Give back a :meth:`reserve` that will not be submitted."""
        if cost:
            with self._lock:
                self._pending_cost -= cost

    def _check_admission(self, cost: int) -> None:
        if self._closed:
            raise RuntimeError("this MicroBatcher is closed")
        pending = self._pending_cost
        if not pending:
            return  # a lone request is always served
        if pending + cost > self.max_queue_pairs:
            raise QueueFullError(
                f"rerank queue is full ({pending} windows waiting, limit {self.max_queue_pairs})",
                retry_after=self._slots.rejected(self._retry_after(), self._service_time(cost)),
                reason="queue_full",
            )
        wait = self.expected_wait(cost)
        allowed = None if self.latency_budget is None else self.latency_budget * self.queue_share
        if allowed is not None and wait > allowed:
            raise QueueFullError(
                f"rerank queue holds {pending} windows: the expected wait of {wait:.1f} s does not fit the "
                f"latency budget of {self.latency_budget:.1f} s (WINNOW_LATENCY_BUDGET_MS)",
                retry_after=self._slots.rejected(max(1.0, wait - allowed), self._service_time(cost)),
                reason="latency_budget",
            )

    def submit(
        self,
        query: str,
        documents: Sequence[str],
        *,
        cost: int | None = None,
        reserved: int = 0,
        readings: bool = False,
    ) -> Future:
        """Queue one request; the future resolves to one float32 score per document. ``cost``: its windows
        (default: :meth:`estimate_cost`). ``reserved``: windows a :meth:`reserve` admitted for it, used up
        here (no second check). ``readings``: resolve to :class:`rerank.reading.Scored` instead, the scores
        with how each document was read (``readings`` None when the scorer cannot tell). Cancelling the
        future before it runs gives its cost back and skips it."""
        request = _Request(query, list(documents), readings=readings)
        if not request.documents:
            self.unreserve(reserved)
            empty = np.zeros(0, dtype=np.float32)
            request.future.set_result(Scored(empty, []) if readings else empty)
            return request.future
        request.cost = self.estimate_cost(query, request.documents) if cost is None else max(1, int(cost))
        with self._lock:
            self._pending_cost -= reserved
            if reserved and self._closed:
                raise RuntimeError("this MicroBatcher is closed")
            if not reserved:
                self._check_admission(request.cost)
            self._pending += len(request.documents)
            self._pending_cost += request.cost
        request.future.add_done_callback(lambda f: self._release(request) if f.cancelled() else None)
        if self._thread is None:
            self.start()
        self._queue.put(request)
        return request.future

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """Blocking :meth:`submit` (the ``Scorer`` protocol of ``winnow.rerank.scorer``)."""
        return self.submit(query, documents).result()

    def score_with_readings(self, query: str, documents: Sequence[str]) -> Scored:
        """Blocking :meth:`submit` with ``readings=True``: the scores and how each document was read."""
        return self.submit(query, documents, readings=True).result()

    async def score_async(
        self, query: str, documents: Sequence[str], *, timeout: float | None = None
    ) -> np.ndarray:
        """:meth:`submit` awaited without blocking the event loop. Cancelling the awaiting task, or passing
        ``timeout`` seconds (``TimeoutError``), cancels the queued work."""
        future = asyncio.wrap_future(self.submit(query, documents))
        return await asyncio.wait_for(future, timeout)

    def _release(self, request: _Request) -> None:
        with self._lock:
            if request.released:
                return
            request.released = True
            self._pending -= len(request.documents)
            self._pending_cost -= request.cost

    def _service_time(self, cost: int) -> float:
        """Seconds the model needs for ``cost`` windows at the measured rate (1 s before any measurement)."""
        rate = self._windows_per_second
        return cost / rate if rate > 0 else 1.0

    def _retry_after(self) -> float:
        """Seconds until the queued work is done (at least 1)."""
        rate = self._windows_per_second
        if rate <= 0:
            return 1.0
        return max(1.0, math.ceil(self._pending_cost / rate))

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
            for r in batch:
                self._release(r)

    def _score_isolated(self, requests: list[_Request]) -> None:
        """Score together; if that fails, one by one, so only the request at fault gets the error."""
        try:
            self._score_requests(requests)
        except Exception as err:  # noqa: BLE001 - handed to the caller through its future
            if len(requests) == 1:
                self._release(requests[0])
                requests[0].future.set_exception(err)
                return
            logger.warning("a batch of %d requests failed (%s); scoring them one by one", len(requests), err)
            for request in requests:
                self._score_isolated([request])

    def _record(self, requests: list[_Request], seconds: float) -> None:
        pairs = sum(len(r.documents) for r in requests)
        windows = sum(r.cost for r in requests)
        if seconds > 0 and windows:
            rate = windows / seconds
            previous = self._windows_per_second
            self._windows_per_second = rate if not previous else 0.8 * previous + 0.2 * rate
        if pairs:
            self._windows_per_pair = 0.8 * self._windows_per_pair + 0.2 * (windows / pairs)
        if self.on_batch is not None:
            try:
                self.on_batch(pairs, len(requests), seconds)
            except Exception:  # noqa: BLE001 - a metrics hook must not fail requests
                logger.exception("on_batch callback failed")

    def _score_requests(self, requests: list[_Request]) -> None:
        pairs = [(r.query, d) for r in requests for d in r.documents]
        with_readings = getattr(self.scorer, "score_pairs_with_readings", None)
        if not any(r.readings for r in requests):
            with_readings = None  # no caller asked: the plain call
        readings = None
        start = time.perf_counter()
        self._running_since, self._running_cost = start, sum(r.cost for r in requests)
        try:
            if with_readings is not None:
                raw, readings = with_readings(pairs)
            else:
                raw = self.scorer.score_pairs(pairs)
            scores = np.asarray(raw, dtype=np.float32)
        finally:
            self._running_cost = 0
        if readings is not None and len(readings) != len(pairs):
            raise RuntimeError(f"scorer returned {len(readings)} readings for {len(pairs)} pairs")
        if scores.shape != (len(pairs),):
            raise RuntimeError(f"scorer returned {scores.shape} scores for {len(pairs)} pairs")
        self._record(requests, time.perf_counter() - start)  # before callers wake up and read the metrics
        offset = 0
        for r in requests:
            end = offset + len(r.documents)
            self._release(r)  # before the caller wakes: its cost is no longer queued when it reads the queue
            if not r.future.done():
                own = scores[offset:end].copy()
                if r.readings:
                    r.future.set_result(Scored(own, None if readings is None else readings[offset:end]))
                else:
                    r.future.set_result(own)
            offset = end


class RetrySlots:
    """The ``Retry-After`` a rejected request gets: a turn in a virtual queue behind the clients already sent
    away.

    A fixed short ``Retry-After`` brings a crowd of clients back every second, and on a small machine
    answering hundreds of 429s a second takes the CPU the model needs. Instead, each rejection is given the
    next free slot, one expected service time (divided by ``overbook``, so that the model does not idle when
    a client comes back late) after the previous one; with no crowd the slot is simply ``minimum`` seconds
    away. Answers are whole seconds, at most ``max_s``.
    """

    def __init__(self, *, overbook: float = 1.25, max_s: float = 60.0) -> None:
        if overbook <= 0 or max_s < 1:
            raise ValueError("overbook must be positive and max_s at least 1")
        self.overbook, self.max_s = overbook, max_s
        self._next = 0.0  # time.monotonic() of the next free slot
        self._lock = threading.Lock()

    def rejected(self, minimum: float, service_s: float) -> float:
        """A rejected request's wait in whole seconds (at least ``minimum``); ``service_s``: how long the
        model needs for one request like it."""
        with self._lock:
            now = time.monotonic()
            slot = max(now + minimum, self._next)
            self._next = slot + max(0.0, service_s) / self.overbook
            return float(min(self.max_s, max(1, math.ceil(slot - now))))
