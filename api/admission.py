"""Waiting on the reranker from a route: admission by the latency budget, a timeout, and cancellation when
the client goes away.

The wait happens on the event loop (an awaited future), never in a threadpool thread, so waiting searches
hold no threadpool token and ``/documents`` keeps its threads. Work of a client that disconnected, or that
waited longer than ``rerank_timeout_s``, is cancelled in the micro-batcher before it reaches the model.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import Request

from winnow.api.errors import ApiError
from winnow.api.service import SearchService
from winnow.rerank.reading import Scored

DISCONNECT_POLL_S = 0.2
"""How often a waiting request checks whether its client is still connected."""

CLIENT_CLOSED = 499  # nginx's "client closed request": nobody reads it, but the metrics and log show it


def reserve_rerank(service: SearchService, pairs: int) -> int:
    """Admit ``pairs`` documents not seen yet, or 429 at once (``QueueFullError``): lets ``/search`` refuse
    before it spends its first stage, and counts its rerank work as queued meanwhile. Returns the windows
    reserved: hand them to :func:`rerank_scores`, or give them back with :func:`release_rerank`."""
    if service.batcher is None or not pairs:
        return 0
    return service.batcher.reserve(service.batcher.estimate_pairs_cost(pairs))


def release_rerank(service: SearchService, reserved: int) -> None:
    if service.batcher is not None:
        service.batcher.unreserve(reserved)


async def rerank_scores(
    request: Request, service: SearchService, query: str, documents: Sequence[str], *, reserved: int = 0
) -> np.ndarray:
    """The reranker's logits for ``documents``, awaited on the event loop. 429 when not admitted (raised by
    the batcher), 503 past ``rerank_timeout_s``; the queued work is cancelled on timeout or disconnect.
    ``reserved``: windows :func:`reserve_rerank` admitted for this work (used up here)."""
    return await _await_batcher(request, service, query, documents, reserved=reserved, readings=False)


async def rerank_scored(
    request: Request, service: SearchService, query: str, documents: Sequence[str], *, reserved: int = 0
) -> Scored:
    """:func:`rerank_scores` with how each document was read (``Scored.readings``)."""
    return await _await_batcher(request, service, query, documents, reserved=reserved, readings=True)


async def _await_batcher(
    request: Request,
    service: SearchService,
    query: str,
    documents: Sequence[str],
    *,
    reserved: int,
    readings: bool,
) -> Any:
    if service.batcher is None:
        release_rerank(service, reserved)
        raise ApiError(503, "this server has no reranker loaded", error_type="no_reranker")
    timeout = service.settings.rerank_timeout_s
    task = asyncio.wrap_future(service.batcher.submit(query, documents, reserved=reserved, readings=readings))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                retry = str(max(1, math.ceil(timeout / 4)))
                raise ApiError(
                    503,
                    f"reranking took longer than {timeout:g} s (WINNOW_RERANK_TIMEOUT_S); the server is "
                    "overloaded, retry later",
                    error_type="timeout",
                    headers={"Retry-After": retry},
                )
            done, _ = await asyncio.wait({task}, timeout=min(DISCONNECT_POLL_S, remaining))
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ApiError(
                    CLIENT_CLOSED,
                    "the client disconnected; its rerank work was cancelled",
                    error_type="client_closed",
                )
    finally:
        if not task.done():
            task.cancel()  # cancels the batcher's future: its cost is given back, the worker skips it
