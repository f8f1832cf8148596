"""Fixtures for tests/indexes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from winnow.indexes import set_faiss_threads


@pytest.fixture(scope="package", autouse=True)
def _single_faiss_thread() -> Iterator[None]:
    """One OpenMP thread: on small synthetic data, FAISS' thread pool only adds contention on shared CPUs."""
    set_faiss_threads(1)
    yield
    set_faiss_threads(None)
