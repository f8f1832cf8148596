"""VectorIndex on synthetic seeded data: recall, upsert, removal (native and tombstones), allow-lists, I/O."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from winnow.indexes import DuplicateIdError, IndexNotTrainedError, VectorIndex, set_faiss_threads

DIM = 32
N = 2000
FACTORIES = ["Flat", "HNSW32", "IVF16,SQ8"]


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def ids() -> np.ndarray:
    return np.arange(N, dtype=np.int64) * 7 + 3  # external ids unlike positions


def build(factory: str, data: np.ndarray, ids: np.ndarray, **kwargs: object) -> VectorIndex:
    index = VectorIndex(DIM, factory, **kwargs)
    index.train(data)
    index.add(ids, data)
    return index


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def self_recall(index: VectorIndex, data: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> float:
    _, found = index.search(data[rows], 1)
    return float((found[:, 0] == ids[rows]).mean())


@pytest.mark.parametrize("factory", FACTORIES)
def test_add_and_self_recall(factory: str, data: np.ndarray, ids: np.ndarray) -> None:
    index = build(factory, data, ids)
    assert len(index) == N and index.is_trained
    assert self_recall(index, data, ids, np.arange(200)) >= 0.99
    scores, found = index.search(data[:5], 10)
    assert scores.shape == found.shape == (5, 10)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert np.array_equal(index.ids(), np.sort(ids))
    assert index.contains([ids[0], 1, ids[-1]]).tolist() == [True, False, True]
    np.testing.assert_allclose(index.reconstruct(ids[:3]), unit(data[:3]), atol=0.02)


@pytest.mark.parametrize("factory", FACTORIES)
def test_upsert_changes_result(factory: str, data: np.ndarray, ids: np.ndarray) -> None:
    index = build(factory, data, ids)
    query = np.random.default_rng(1).standard_normal((1, DIM)).astype(np.float32)
    index.upsert([ids[10]], query)
    assert len(index) == N
    _, found = index.search(query, 3)
    assert found[0, 0] == ids[10]
    _, found = index.search(data[10:11], 5)
    assert ids[10] not in found  # the old vector is gone
    assert self_recall(index, data, ids, np.arange(20, 120)) >= 0.99


@pytest.mark.parametrize("factory", FACTORIES)
def test_remove_hides_ids_and_compaction_keeps_rest(factory: str, data: np.ndarray, ids: np.ndarray) -> None:
    index = build(factory, data, ids)
    assert index.uses_tombstones == (factory != "Flat")
    gone = ids[:100]
    assert index.remove(np.concatenate([gone, [1, 2]])) == 100  # unknown ids ignored
    assert index.remove(gone) == 0
    assert len(index) == N - 100
    assert not index.contains(gone).any()
    assert index.num_tombstones == (100 if index.uses_tombstones else 0)
    _, found = index.search(data[:100], 10)
    assert not np.isin(found, gone).any()
    with pytest.raises(KeyError):
        index.reconstruct(gone[:1])

    more = ids[100:500]  # crosses 20% of stored vectors -> compaction
    assert index.remove(more) == 400
    assert index.num_tombstones == 0 and len(index) == N - 500
    _, found = index.search(data[:500], 10)
    assert not np.isin(found, ids[:500]).any()
    assert self_recall(index, data, ids, np.arange(500, 800)) >= 0.99

    index.add(gone[:5], data[:5])  # ids can come back after removal
    _, found = index.search(data[:5], 1)
    assert found[:, 0].tolist() == gone[:5].tolist()


@pytest.mark.parametrize("factory", ["HNSW32", "IVF16,SQ8"])
def test_add_of_tombstoned_id_compacts(factory: str, data: np.ndarray, ids: np.ndarray) -> None:
    index = build(factory, data, ids)
    index.remove(ids[:3])
    assert index.num_tombstones == 3
    index.add(ids[:1], data[1000:1001])
    assert index.num_tombstones == 0 and len(index) == N - 2
    _, found = index.search(data[1000:1001], 2)
    assert set(found[0].tolist()) == {ids[0], ids[1000]}


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("n_allowed", [30, 1500])  # exact-scoring path and FAISS-selector path
def test_allow_list_returns_k_far_results(
    factory: str, n_allowed: int, data: np.ndarray, ids: np.ndarray
) -> None:
    index = build(factory, data, ids, ef_search=16, nprobe=1)
    query = data[:1]
    far = np.argsort(unit(data) @ unit(query)[0])[:n_allowed]  # the least similar vectors
    index.remove(ids[far[:2]])  # removed ids in the allow-list are skipped
    allowed = ids[far]
    scores, found = index.search(query, 10, allow_ids=allowed.tolist())
    assert (found >= 0).sum() == 10
    assert np.isin(found, allowed[2:]).all()
    if n_allowed == 30:  # exact: the true top-10 among the allowed
        expected = ids[far[2:]][np.argsort(-(unit(data[far[2:]]) @ unit(query)[0]))[:10]]
        assert set(found[0].tolist()) == set(expected.tolist())


@pytest.mark.parametrize("factory", FACTORIES)
def test_padding_when_fewer_than_k(factory: str, data: np.ndarray, ids: np.ndarray) -> None:
    index = build(factory, data, ids)
    scores, found = index.search(data[:2], 5, allow_ids=ids[[4, 8, 9]])
    assert all(set(row[:3].tolist()) == set(ids[[4, 8, 9]].tolist()) for row in found)
    assert (found[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    scores, found = index.search(data[:2], 5, allow_ids=[])
    assert (found == -1).all() and np.isneginf(scores).all()
    empty = VectorIndex(DIM, factory)
    empty.train(data)
    scores, found = empty.search(data[:3], 4)
    assert found.shape == (3, 4) and (found == -1).all() and np.isneginf(scores).all()


def test_index_without_selector_support(data: np.ndarray, ids: np.ndarray) -> None:
    index = build("IVF16,Flat,Refine(Flat)", data, ids)  # IndexRefine takes no IDSelector
    index.remove(ids[:50])
    assert index.num_tombstones == 50
    _, found = index.search(data[:60], 5)
    assert not np.isin(found, ids[:50]).any() and (found >= 0).all()
    assert (found[50:, 0] == ids[50:60]).all()
    allowed = ids[500:]
    _, found = index.search(data[:5], 10, allow_ids=allowed)  # 1500 > 1024: would use a selector
    assert np.isin(found, allowed).all() and (found >= 0).all()


def test_ivf_short_rows_are_filled_exactly(data: np.ndarray) -> None:
    index = VectorIndex(DIM, "IVF16,Flat", nprobe=1)
    index.train(data)
    index.add(np.arange(20), data[:20])  # nprobe=1 alone would find only a list's few members
    _, found = index.search(data[100:104], 10)
    assert ((found >= 0).sum(axis=1) == 10).all()


def test_untrained_and_undertrained_ivf(data: np.ndarray) -> None:
    index = VectorIndex(DIM, "IVF16,SQ8")
    assert index.needs_training and not index.is_trained
    with pytest.raises(IndexNotTrainedError, match="train"):
        index.add([1], data[:1])
    with pytest.raises(ValueError, match="at least 16"):
        index.train(data[:10])
    assert not VectorIndex(DIM, "HNSW32").needs_training


def test_duplicate_add_raises(data: np.ndarray, ids: np.ndarray) -> None:
    index = build("Flat", data[:10], ids[:10])
    with pytest.raises(DuplicateIdError, match=str(ids[3])):
        index.add([ids[3], 999], data[:2])
    assert len(index) == 10 and not index.contains([999])[0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ix, x: ix.add([1, 2], x[:2, :5]), "dimension"),
        (lambda ix, x: ix.add([1], x[0]), "2-D"),
        (lambda ix, x: ix.add([1, 2], np.where(np.eye(2, DIM) > 0, np.nan, x[:2])), "NaN"),
        (lambda ix, x: ix.add([1, 2], np.where(np.eye(2, DIM) > 0, np.inf, x[:2])), "NaN or infinite"),
        (lambda ix, x: ix.add([1, 2, 3], x[:2]), "3 ids for 2 vectors"),
        (lambda ix, x: ix.add([1, 1], x[:2]), "duplicates"),
        (lambda ix, x: ix.add([-5, 1], x[:2]), "non-negative"),
        (lambda ix, x: ix.add([1.5, 2.0], x[:2]), "integers"),
        (lambda ix, x: ix.search(x[:1], 0), "k must be"),
        (lambda ix, x: ix.search(x[:1], 2.0), "k must be"),
        (lambda ix, x: ix.search(x[:1, :4], 2), "dimension"),
        (lambda ix, x: ix.upsert([1, 1], x[:2]), "duplicates"),
    ],
)
def test_bad_inputs_raise_value_error(call, message: str, data: np.ndarray) -> None:  # noqa: ANN001
    index = VectorIndex(DIM)
    with pytest.raises(ValueError, match=message):
        call(index, data)
    assert len(index) == 0


def test_bad_construction() -> None:
    for kwargs in (
        {"metric": "cosine"},
        {"factory": "IDMap,Flat"},
        {"factory": "NoSuchIndex"},
        {"nprobe": 0},
    ):
        with pytest.raises(ValueError):
            VectorIndex(DIM, **kwargs)
    with pytest.raises(ValueError):
        VectorIndex(0)


def test_inputs_not_mutated(data: np.ndarray) -> None:
    x = data[:4].astype(np.float64) * 3.0
    before = x.copy()
    id_list = np.array([4, 3, 2, 1], dtype=np.int32)
    index = VectorIndex(DIM)
    index.add(id_list, x)
    index.search(x, 2)
    assert np.array_equal(x, before) and id_list.tolist() == [4, 3, 2, 1]
    np.testing.assert_allclose(np.linalg.norm(index.reconstruct([4, 1]), axis=1), 1.0, rtol=1e-5)


def test_l2_metric_scores_are_negative_distances(data: np.ndarray, ids: np.ndarray) -> None:
    index = build("Flat", data, ids, metric="l2")
    assert not index.normalize
    scores, found = index.search(data[:3] + 0.1, 5)
    assert np.all(np.diff(scores, axis=1) <= 0) and (scores <= 0).all()
    expected = -((data[None, :, :] - (data[:3] + 0.1)[:, None, :]) ** 2).sum(-1)
    order = np.argsort(-expected, axis=1)[:, :5]
    assert np.array_equal(found, ids[order])
    np.testing.assert_allclose(scores, np.take_along_axis(expected, order, axis=1), rtol=1e-4, atol=1e-3)
    exact_scores, exact_ids = index.search(data[:3] + 0.1, 5, allow_ids=ids[order[0]])
    np.testing.assert_allclose(exact_scores[0], scores[0], rtol=1e-4, atol=1e-3)


def test_reset_keeps_training(data: np.ndarray, ids: np.ndarray) -> None:
    index = build("IVF16,SQ8", data, ids)
    index.reset()
    assert len(index) == 0 and index.is_trained
    index.add(ids[:50], data[:50])
    assert self_recall(index, data, ids, np.arange(50)) == 1.0


@pytest.mark.parametrize("factory", ["HNSW32", "IVF16,SQ8"])
def test_save_load_round_trip_with_tombstones(
    factory: str, tmp_path, data: np.ndarray, ids: np.ndarray
) -> None:  # noqa: ANN001
    index = build(factory, data, ids, ef_search=64, nprobe=8)
    index.remove(ids[:10])
    written = index.save(tmp_path / "v.faiss")
    assert all(p.is_file() for p in written)
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert (loaded.factory, loaded.metric, loaded.dim, loaded.ef_search, loaded.nprobe) == (
        factory,
        "ip",
        DIM,
        64,
        8,
    )
    assert (
        len(loaded) == N - 10
        and loaded.num_tombstones == 10
        and loaded.needs_training == index.needs_training
    )
    for a, b in zip(index.search(data[:20], 5), loaded.search(data[:20], 5), strict=True):
        assert np.array_equal(a, b)
    np.testing.assert_array_equal(loaded.reconstruct(ids[10:12]), index.reconstruct(ids[10:12]))
    loaded.upsert(ids[20:21], data[:1])  # still mutable after load
    assert loaded.search(data[:1], 1)[1][0, 0] == ids[20]


def test_set_faiss_threads() -> None:
    default = set_faiss_threads(None)
    try:
        assert set_faiss_threads(1) == 1 == faiss.omp_get_max_threads()
    finally:
        assert set_faiss_threads(None) == default
    with pytest.raises(ValueError):
        set_faiss_threads(0)
