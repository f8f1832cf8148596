"""MicroBatcher admission: cost in windows, the latency budget, cancellation; the engine's window estimate."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from winnow.rerank.engine import CrossEncoderEngine
from winnow.rerank.micro_batcher import MicroBatcher, QueueFullError, RetrySlots


class GatedScorer:
    """Scores pairs once ``gate`` is set (holds the worker busy until then); records every document scored.
    ``windows_per_doc``: what ``estimate_windows`` reports for each document."""

    def __init__(self, windows_per_doc: int = 1, *, open_gate: bool = False) -> None:
        self.gate = threading.Event()
        if open_gate:
            self.gate.set()
        self.windows_per_doc = windows_per_doc
        self.scored: list[str] = []
        self.busy = threading.Event()

    def estimate_windows(self, query: str, documents) -> int:
        return self.windows_per_doc * len(documents)

    def score_pairs(self, pairs):
        self.busy.set()
        assert self.gate.wait(30), "the test never opened the gate"
        self.scored.extend(d for _, d in pairs)
        return np.zeros(len(pairs), dtype=np.float32)


def _busy(batcher: MicroBatcher, scorer: GatedScorer, docs: list[str]):
    """Submit a request and wait until the worker is stuck scoring it."""
    future = batcher.submit("hold", docs)
    assert scorer.busy.wait(10)
    return future


def test_queue_bound_counts_windows_not_documents():
    scorer = GatedScorer(windows_per_doc=16)
    with MicroBatcher(scorer, max_wait_ms=0, max_queue_pairs=40) as batcher:
        held = _busy(batcher, scorer, ["long document"])
        assert batcher.pending_windows == 16 and batcher.pending_pairs == 1
        with pytest.raises(QueueFullError) as info:
            batcher.submit("q", ["long a", "long b"])  # 3 documents in all, but 48 windows > 40
        assert info.value.reason == "queue_full" and "windows" in str(info.value)
        batcher.submit("q", ["long c"])  # 32 windows fit
        scorer.gate.set()
        held.result(timeout=10)


def test_latency_budget_refuses_what_would_wait_too_long():
    scorer = GatedScorer(open_gate=True)
    with MicroBatcher(scorer, max_wait_ms=0, max_queue_pairs=10**6, latency_budget_ms=60_000) as batcher:
        batcher.score("warm", ["x"] * 10)  # measures windows per second
        rate = batcher.windows_per_second
        assert rate > 0
        scorer.gate.clear()
        scorer.busy.clear()
        # room for 20.5 windows at the measured rate: the running request (10, partly done) and a second fit,
        # a third does not (the running call counts as at most 90 % done)
        batcher.latency_budget = 20.5 / rate / batcher.queue_share
        held = _busy(batcher, scorer, ["a"] * 10)
        second = batcher.submit("q", ["b"] * 10)
        assert 11 / rate <= batcher.expected_wait() <= 20 / rate
        with pytest.raises(QueueFullError) as info:
            batcher.submit("q", ["c"] * 10)
        assert info.value.reason == "latency_budget" and info.value.retry_after >= 1
        with pytest.raises(QueueFullError):
            batcher.reserve(10)  # a reservation goes through the same check
        assert batcher.pending_windows == 20
        scorer.gate.set()
        held.result(timeout=10)
        second.result(timeout=10)
    assert "c" not in scorer.scored


def test_a_lone_request_is_admitted_whatever_its_cost():
    scorer = GatedScorer(windows_per_doc=16, open_gate=True)
    with MicroBatcher(scorer, max_wait_ms=0, max_queue_pairs=4, latency_budget_ms=1) as batcher:
        batcher.score("warm", ["x"])
        assert batcher.score("q", ["a"] * 10).shape == (10,)


def test_a_cancelled_request_gives_its_cost_back_and_is_never_scored():
    scorer = GatedScorer()
    with MicroBatcher(scorer, max_wait_ms=0) as batcher:
        held = _busy(batcher, scorer, ["held"])
        queued = batcher.submit("q", ["dropped-1", "dropped-2"])
        assert batcher.pending_windows == 3
        assert queued.cancel()
        assert batcher.pending_windows == 1 and batcher.pending_pairs == 1  # at once, before the worker
        scorer.gate.set()
        held.result(timeout=10)
        assert batcher.score("q", ["after"]).shape == (1,)
    assert scorer.scored == ["held", "after"] and batcher.pending_windows == 0


def test_score_async_timeout_cancels_the_queued_work():
    scorer = GatedScorer()

    async def wait_too_long(batcher: MicroBatcher) -> None:
        with pytest.raises(TimeoutError):
            await batcher.score_async("q", ["late"], timeout=0.2)

    with MicroBatcher(scorer, max_wait_ms=0) as batcher:
        held = _busy(batcher, scorer, ["held"])
        asyncio.run(wait_too_long(batcher))
        assert batcher.pending_windows == 1
        scorer.gate.set()
        held.result(timeout=10)
    assert scorer.scored == ["held"]


@pytest.fixture(scope="module")
def engine(tiny_cross_encoder_path: str) -> CrossEncoderEngine:
    return CrossEncoderEngine(tiny_cross_encoder_path, device="cpu", max_length=64, windows=True).load()


def test_engine_estimates_windows_from_length(engine: CrossEncoderEngine):
    assert engine.estimate_windows("q", ["short text"]) == 1
    long = engine.estimate_windows("q", ["protein " * 200])
    assert 1 < long <= 16
    assert engine.estimate_windows("q", ["protein " * 100_000]) == 16  # max_windows
    assert engine.estimate_windows("q", ["a", "protein " * 200]) == 1 + long
    truncating = CrossEncoderEngine(engine.model_name, device="cpu", max_length=64, windows=False).load()
    assert truncating.estimate_windows("q", ["a", "protein " * 200]) == 2


def test_a_micro_batcher_over_an_engine_prices_long_documents_higher(engine: CrossEncoderEngine):
    with MicroBatcher(engine) as batcher:
        assert batcher.estimate_cost("q", ["protein " * 200]) > batcher.estimate_cost("q", ["protein"])


def test_engine_tokenises_a_bounded_part_of_a_huge_document(engine: CrossEncoderEngine, monkeypatch):
    seen: list[int] = []
    tokenize = engine._tokenize

    def recording(texts):
        seen.extend(len(t) for t in texts)
        return tokenize(texts)

    monkeypatch.setattr(engine, "_tokenize", recording)
    huge = "protein " * 125_000 + "banana"  # a million characters
    start = time.perf_counter()
    assert engine.score("q", [huge]).shape == (1,)
    assert max(seen) <= 64 * 16 * 8 + 1, "the whole document was tokenised"
    assert time.perf_counter() - start < 30


def test_a_reservation_counts_as_queued_until_submitted_or_given_back():
    scorer = GatedScorer(open_gate=True)
    with MicroBatcher(scorer, max_wait_ms=0, max_queue_pairs=10) as batcher:
        reserved = batcher.reserve(8)
        assert batcher.pending_windows == 8
        with pytest.raises(QueueFullError):
            batcher.reserve(5)
        assert batcher.submit("q", ["a", "b"], reserved=reserved).result(timeout=10).shape == (2,)
        assert batcher.pending_windows == 0
        batcher.unreserve(batcher.reserve(3))
        assert batcher.pending_windows == 0


def test_rejected_clients_get_successive_turns_instead_of_all_returning_at_once(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("winnow.rerank.micro_batcher.time.monotonic", lambda: clock[0])
    slots = RetrySlots(overbook=1.0, max_s=60.0)
    answers = [slots.rejected(1, service_s=2.0) for _ in range(40)]
    assert answers[:4] == [
        1.0,
        3.0,
        5.0,
        7.0,
    ]  # one service time apart: a crowd is spread, not sent back at once
    assert answers[-1] == 60.0  # capped
    clock[0] += 200.0  # the crowd has gone: the next rejection waits only the minimum
    assert slots.rejected(2, service_s=2.0) == 2.0


def test_a_crowd_of_rejections_gets_spread_retry_afters():
    scorer = GatedScorer(open_gate=True)
    with MicroBatcher(scorer, max_wait_ms=0, max_queue_pairs=10**6, latency_budget_ms=60_000) as batcher:
        batcher.score("warm", ["x"] * 10)
        scorer.gate.clear()
        scorer.busy.clear()
        held = _busy(batcher, scorer, ["a"] * 10)
        batcher._windows_per_second = 5.0  # as if measured: a 10-window request takes the model 2 s
        batcher.latency_budget = 1.0 / batcher.queue_share  # room for 5 windows: only the running request
        waits = []
        for _ in range(5):
            with pytest.raises(QueueFullError) as info:
                batcher.submit("q", ["b"] * 10)
            waits.append(info.value.retry_after)
        assert waits == sorted(waits) and waits[-1] >= waits[0] + 6  # about 2 s apart, not all at once
        scorer.gate.set()
        held.result(timeout=10)
