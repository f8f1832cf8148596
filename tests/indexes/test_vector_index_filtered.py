"""Filtered search: an allow-list of any selectivity still gets k results (when k ids are allowed)."""

from __future__ import annotations

import numpy as np
import pytest

import winnow.indexes.vector_index as vector_index
from winnow.indexes import DocumentRecord, DocumentTable, VectorIndex, WinnowIndex

N, DIM, K = 8000, 16, 10


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    queries = rng.standard_normal((20, DIM)).astype(np.float32)
    ids = np.arange(N, dtype=np.int64) * 3 + 7  # not 0..N-1: ids are external
    return vectors, queries, ids


@pytest.fixture(scope="module", params=["Flat", "HNSW32", "IVF32,Flat"])
def index(request, data) -> VectorIndex:
    vectors, _, ids = data
    vi = VectorIndex(DIM, request.param, "ip", nprobe=2, ef_search=16)  # stingy settings: filters must cope
    if vi.needs_training:
        vi.train(vectors)
    vi.add(ids, vectors)
    vi.remove(ids[:50])  # tombstones (HNSW, IVF) or native removal (Flat) under the allow-list too
    return vi


def _exact_top(vectors: np.ndarray, queries: np.ndarray, ids: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    mask = np.isin(ids, allowed)
    x = vectors[mask] / np.linalg.norm(vectors[mask], axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    order = np.argsort(-(q @ x.T), axis=1)[:, :K]
    return ids[mask][order]


@pytest.mark.parametrize("share", [0.01, 0.10, 0.50])
@pytest.mark.parametrize("exact_shortcut", [True, False], ids=["default", "approximate-only"])
def test_filtered_search_returns_k(index, data, share, exact_shortcut, monkeypatch) -> None:
    if not exact_shortcut:  # search the approximate index under the selector at every selectivity
        monkeypatch.setattr(vector_index, "EXACT_ALLOW_LIST_MIN", 0)
        monkeypatch.setattr(vector_index, "EXACT_ALLOW_FRACTION", 0.0)
    vectors, queries, ids = data
    rng = np.random.default_rng(int(share * 100))
    live = ids[50:]
    allowed = rng.choice(live, size=int(share * N), replace=False)
    allow_list = np.concatenate([allowed, ids[:50]])  # removed ids in the allow-list are ignored
    scores, labels = index.search(queries, K, allow_ids=allow_list)
    assert (labels >= 0).all() and np.isfinite(scores).all()
    assert np.isin(labels, allowed).all()
    assert all(len(set(row)) == K for row in labels.tolist())
    recall = _recall(labels, _exact_top(vectors, queries, ids, allowed))
    unfiltered = _recall(index.search(queries, K)[1], _exact_top(vectors, queries, ids, live))
    # the filtered search is no worse than the index's own recall (efSearch / nprobe grow with selectivity)
    assert recall >= (0.99 if index.factory == "Flat" else min(0.9, unfiltered - 0.1)), (recall, unfiltered)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(b)) / K for a, b in zip(found.tolist(), truth.tolist(), strict=True)])
    )


def test_fewer_allowed_than_k(index, data) -> None:
    _, queries, ids = data
    scores, labels = index.search(queries[:3], K, allow_ids=ids[100:104])
    assert (np.sort(labels[:, :4], axis=1) == ids[100:104]).all()
    assert (labels[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()


def test_winnow_index_search_with_allow_keys(data) -> None:
    vectors, queries, _ = data
    table = DocumentTable()
    records = [DocumentRecord(id=f"d{i}", text=None, meta={"bucket": i % 100}) for i in range(2000)]
    index = WinnowIndex(VectorIndex(DIM, "HNSW32", "ip", ef_search=16), table, embedder="test")
    index.add_records(records, vectors[:2000])
    keys = table.keys_where("json_extract(meta, ?) < ?", ["$.bucket", 5])  # 5% of the documents
    assert keys.size == 100
    for row in index.search(queries, K, allow_keys=keys):
        assert len(row) == K and all(record.meta["bucket"] < 5 for record, _ in row)
