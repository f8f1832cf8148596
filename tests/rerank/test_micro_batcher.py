"""MicroBatcher: concurrent requests share model calls, results go back to the right caller, limits hold."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from winnow.rerank.micro_batcher import MicroBatcher, QueueFullError


class RecordingScorer:
    """Score = a hash of (query, document), so every caller can check its own scores."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    @staticmethod
    def expected(query: str, doc: str) -> float:
        return float(len(query) * 1000 + len(doc) + sum(map(ord, doc)) % 97)

    def score_pairs(self, pairs):
        with self.lock:
            self.calls.append(len(pairs))
        if self.fail_on is not None and any(q == self.fail_on for q, _ in pairs):
            raise ValueError(f"cannot score {self.fail_on!r}")
        time.sleep(self.delay)
        return np.array([self.expected(q, d) for q, d in pairs], dtype=np.float32)


def _request(i: int) -> tuple[str, list[str]]:
    return f"query {i}" + "?" * (i % 5), [f"doc {i}-{j}" for j in range(1 + i % 4)]


def test_concurrent_requests_share_calls_and_get_their_own_scores():
    scorer = RecordingScorer(delay=0.01)
    with MicroBatcher(scorer, max_wait_ms=50) as batcher, ThreadPoolExecutor(16) as pool:
        futures = {i: pool.submit(batcher.score, *_request(i)) for i in range(32)}
        for i, future in futures.items():
            query, docs = _request(i)
            np.testing.assert_array_equal(future.result(), [scorer.expected(query, d) for d in docs])
    assert sum(scorer.calls) == sum(len(_request(i)[1]) for i in range(32))
    assert len(scorer.calls) < 32  # batched: fewer model calls than requests


def test_disabled_scores_each_request_alone():
    scorer = RecordingScorer()
    with MicroBatcher(scorer, enabled=False) as batcher, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: batcher.score(*_request(i)), range(12)))
    assert len(scorer.calls) == 12


def test_max_batch_pairs_caps_a_batch():
    scorer = RecordingScorer(delay=0.05)
    with MicroBatcher(scorer, max_wait_ms=200, max_batch_pairs=4) as batcher:
        futures = [batcher.submit("q", ["a", "b"]) for _ in range(6)]
        for f in futures:
            f.result(timeout=10)
    assert max(scorer.calls) <= 4 and sum(scorer.calls) == 12


def test_a_failing_request_does_not_fail_its_batch_mates():
    scorer = RecordingScorer(fail_on="bad")
    with MicroBatcher(scorer, max_wait_ms=100) as batcher:
        good = batcher.submit("good", ["x"])
        bad = batcher.submit("bad", ["y"])
        assert good.result(timeout=10)[0] == scorer.expected("good", "x")
        with pytest.raises(ValueError, match="bad"):
            bad.result(timeout=10)
    assert batcher.pending_pairs == 0


def test_full_queue_raises_with_retry_after():
    scorer = RecordingScorer(delay=0.3)
    with MicroBatcher(scorer, max_wait_ms=0, max_queue_pairs=5) as batcher:
        first = batcher.submit("q", ["a"] * 5)
        with pytest.raises(QueueFullError) as info:
            batcher.submit("q", ["b"])
        assert info.value.retry_after >= 1
        first.result(timeout=10)
        assert batcher.submit("q", ["c"]).result(timeout=10).shape == (1,)
        big = batcher.submit("q", ["d"] * 50)  # larger than the queue, but the queue is empty: accepted
        assert big.result(timeout=10).shape == (50,)


def test_async_scoring_and_on_batch():
    seen = []
    scorer = RecordingScorer()

    async def main(batcher):
        return await asyncio.gather(*(batcher.score_async(*_request(i)) for i in range(10)))

    with MicroBatcher(scorer, max_wait_ms=20, on_batch=lambda p, r, s: seen.append((p, r))) as batcher:
        results = asyncio.run(main(batcher))
    assert [len(r) for r in results] == [len(_request(i)[1]) for i in range(10)]
    assert sum(p for p, _ in seen) == sum(len(r) for r in results)
    assert sum(r for _, r in seen) == 10


def test_empty_request_and_closed_batcher():
    batcher = MicroBatcher(RecordingScorer())
    assert batcher.score("q", []).shape == (0,)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("q", ["a"])
    with pytest.raises(ValueError):
        MicroBatcher(RecordingScorer(), max_wait_ms=-1)


class ReadingScorer(RecordingScorer):
    """Also says how it read each document: ``windows`` = the document's length, for checking."""

    def score_pairs_with_readings(self, pairs):
        from winnow.rerank.reading import Reading, Scored

        scores = self.score_pairs(pairs)
        return Scored(
            scores, [Reading("windows", 1, len(d), windows=len(d), best_window=0) for _, d in pairs]
        )


def test_readings_go_back_to_the_caller_that_asked():
    scorer = ReadingScorer()
    with MicroBatcher(scorer, max_wait_ms=50) as batcher, ThreadPoolExecutor(8) as pool:
        plain = {i: pool.submit(batcher.score, *_request(i)) for i in range(8)}
        read = {i: pool.submit(batcher.score_with_readings, *_request(i)) for i in range(8, 16)}
        for i, future in {**plain, **read}.items():
            query, docs = _request(i)
            expected = [scorer.expected(query, d) for d in docs]
            if i in plain:  # callers that did not ask get the scores alone
                assert isinstance(future.result(), np.ndarray)
                np.testing.assert_array_equal(future.result(), expected)
            else:
                np.testing.assert_array_equal(future.result().scores, expected)
                assert [r.windows for r in future.result().readings] == [len(d) for d in docs]
    assert batcher.score_with_readings("q", []).readings == []
    # a scorer that cannot tell: readings None, scores still there
    with MicroBatcher(RecordingScorer()) as batcher:
        scored = batcher.score_with_readings("q", ["a", "b"])
    assert scored.readings is None and scored.scores.shape == (2,)
