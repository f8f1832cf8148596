"""WinnowDocumentStore: Haystack's own conformance suite plus winnow-specific behaviour."""

from __future__ import annotations

import asyncio
import threading
import warnings

import numpy as np
import pytest
from haystack import Document
from haystack.dataclasses import ByteStream, SparseEmbedding
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError
from haystack.testing.document_store import (
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    DocumentStoreBaseExtendedTests,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldUniqueValuesTest,
)

with warnings.catch_warnings():  # the async suite is marked for pytest-asyncio, which is not installed
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from haystack.testing.document_store_async import (
        CountDocumentsAsyncTest,
        CountDocumentsByFilterAsyncTest,
        CountUniqueMetadataByFilterAsyncTest,
        DeleteAllAsyncTest,
        DeleteByFilterAsyncTest,
        DeleteDocumentsAsyncTest,
        FilterDocumentsAsyncTest,
        GetMetadataFieldMinMaxAsyncTest,
        GetMetadataFieldsInfoAsyncTest,
        GetMetadataFieldUniqueValuesAsyncTest,
        UpdateByFilterAsyncTest,
        WriteDocumentsAsyncTest,
    )

from winnow.indexes import DocumentRecord, EmbedderMismatchError, WinnowIndex
from winnow.indexes.index_dir import DOCUMENTS_FILE
from winnow.retrieval.document_store import RESERVED_META_KEY, WinnowDocumentStore


# ---------------------------------------------------------------------- Haystack's conformance suite
class TestConformance(
    DocumentStoreBaseExtendedTests,
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldUniqueValuesTest,
):
    @pytest.fixture
    def document_store(self) -> WinnowDocumentStore:
        return WinnowDocumentStore()  # embedding_dim inferred from the suite's 768-d embeddings

    def test_write_documents(self, document_store: WinnowDocumentStore) -> None:
        doc = Document(content="test doc")
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([doc])  # DuplicatePolicy.NONE behaves as FAIL
        assert document_store.filter_documents() == [doc]


@pytest.mark.anyio
class TestAsyncConformance(
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    CountUniqueMetadataByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    GetMetadataFieldMinMaxAsyncTest,
    GetMetadataFieldsInfoAsyncTest,
    GetMetadataFieldUniqueValuesAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
):
    """The async suite (marked for pytest-asyncio upstream) run through anyio's pytest plugin."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def document_store(self) -> WinnowDocumentStore:
        return WinnowDocumentStore()

    async def test_write_documents_async(self, document_store: WinnowDocumentStore) -> None:
        doc = Document(content="test doc")
        assert await document_store.write_documents_async([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            await document_store.write_documents_async([doc])
        assert await document_store.filter_documents_async() == [doc]


# ---------------------------------------------------------------------- helpers
DIM = 16


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _docs(vectors: np.ndarray, **meta: object) -> list[Document]:
    return [
        Document(id=f"d{i}", content=f"doc {i}", meta={"i": i, **meta}, embedding=v.tolist())
        for i, v in enumerate(vectors)
    ]


# ---------------------------------------------------------------------- round-trip
def test_documents_round_trip_exactly() -> None:
    store = WinnowDocumentStore()
    doc = Document(
        id="x",
        content="text",
        meta={"nested": {"a": [1, 2.5, None, {"b": "c"}]}, "flag": True, "date": "2024-01-02"},
        embedding=[0.1, 0.2, 0.3],  # float64 values that float32 cannot hold exactly
        blob=ByteStream(data=b"\x00\xffbytes", mime_type="application/octet-stream", meta={"src": "f"}),
        sparse_embedding=SparseEmbedding(indices=[0, 7], values=[0.5, 1.25]),
        score=0.75,
    )
    plain = Document(id="y", content=None, meta={})
    store.write_documents([doc, plain])
    assert store.filter_documents() == [doc, plain]
    record = store.index.table.get(["x"])[0]
    assert RESERVED_META_KEY in record.meta  # extra fields travel in the reserved key ...
    np.testing.assert_array_equal(
        record.embedding, np.float32([0.1, 0.2, 0.3])
    )  # ... raw vector in the column


def test_float32_embedding_needs_no_reserved_meta() -> None:
    store = WinnowDocumentStore()
    vector = np.float32([3.0, 4.0, 0.5]).tolist()
    store.write_documents([Document(id="a", content="a", meta={"k": 1}, embedding=vector)])
    record = store.index.table.get(["a"])[0]
    assert record.meta == {"k": 1}
    assert store.filter_documents()[0].embedding == vector  # not normalised


def test_reserved_meta_key_and_non_json_meta_are_rejected() -> None:
    store = WinnowDocumentStore()
    with pytest.raises(ValueError, match=RESERVED_META_KEY):
        store.write_documents([Document(content="a", meta={RESERVED_META_KEY: 1})])
    with pytest.raises(ValueError, match="JSON"):
        store.write_documents([Document(content="a", meta={"x": object()})])
    assert store.count_documents() == 0


def test_embedding_dimension_mismatch_writes_nothing() -> None:
    store = WinnowDocumentStore()
    docs = [Document(id="a", embedding=[1.0, 0.0]), Document(id="b", embedding=[1.0, 0.0, 0.0])]
    with pytest.raises(ValueError, match="dimension 3.*dimension 2"):
        store.write_documents(docs)
    assert store.count_documents() == 0
    store.write_documents(docs[:1])
    with pytest.raises(ValueError, match="dimension 3.*dimension 2"):
        store.write_documents(docs[1:])


def test_overwrite_moves_to_end_and_update_keeps_order() -> None:
    store = WinnowDocumentStore()
    docs = [
        Document(id=str(i), content=str(i), embedding=[1.0, float(i)] if i % 2 else None) for i in range(4)
    ]
    store.write_documents(docs)
    replaced = Document(id="1", content="new")  # had an embedding, now has none
    store.write_documents([replaced], policy=DuplicatePolicy.OVERWRITE)
    assert [d.id for d in store.filter_documents()] == ["0", "2", "3", "1"]
    assert not store.index.vectors.contains(store.index.table.keys_for(["1"]))[0]  # a row, no vector
    assert store.update_by_filter({"field": "id", "operator": "in", "value": ["2", "3"]}, {"tag": "t"}) == 2
    result = store.filter_documents()
    assert [d.id for d in result] == ["0", "2", "3", "1"]
    assert result[2].meta == {"tag": "t"} and result[2].embedding == [1.0, 3.0]


def test_policies_within_one_batch() -> None:
    store = WinnowDocumentStore()
    a1, a2 = Document(id="a", content="1"), Document(id="a", content="2")
    with pytest.raises(DuplicateDocumentError):
        store.write_documents([a1, a2])
    assert store.count_documents() == 0
    assert store.write_documents([a1, a2], policy=DuplicatePolicy.SKIP) == 1
    assert store.filter_documents() == [a1]
    assert store.write_documents([a1, a2], policy=DuplicatePolicy.OVERWRITE) == 2
    assert store.filter_documents() == [a2]


def test_malformed_filters_fail_even_on_an_empty_store() -> None:
    store = WinnowDocumentStore()
    with pytest.raises(FilterError):
        store.filter_documents({"operator": "AND", "conditions": [{"field": "meta.a", "operator": "=="}]})
    with pytest.raises(FilterError):
        store.filter_documents({"field": "meta.a", "operator": "in", "value": "a"})
    with pytest.raises(ValueError):
        store.filter_documents({"meta.a": 1})
    with pytest.raises(FilterError):
        store.delete_by_filter({})


# ---------------------------------------------------------------------- retrieval
def test_embedding_retrieval_ranks_the_nearest_first() -> None:
    rng = np.random.default_rng(0)
    vectors = _unit(rng, 50)
    store = WinnowDocumentStore(embedding_dim=DIM)
    store.write_documents(_docs(vectors) + [Document(id="no-vector", content="x")])
    query = vectors[7] + 0.05 * rng.standard_normal(DIM).astype(np.float32)
    result = store.embedding_retrieval(query.tolist(), top_k=5)
    assert len(result) == 5
    assert result[0].id == "d7"
    scores = [d.score for d in result]
    assert scores == sorted(scores, reverse=True)
    expected = float(vectors[7] @ (query / np.linalg.norm(query)))
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    assert all(d.embedding is None for d in result)
    scaled = store.embedding_retrieval(query.tolist(), top_k=1, scale_score=True, return_embedding=True)
    assert scaled[0].score == pytest.approx((expected + 1) / 2, abs=1e-5)
    assert scaled[0].embedding == vectors[7].tolist()


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_filtered_retrieval_returns_top_k_allowed_documents_far_from_the_query(factory: str) -> None:
    rng = np.random.default_rng(1)
    query = _unit(rng, 1)[0]
    near = query + 0.1 * _unit(rng, 300)  # 300 documents close to the query ...
    far = -query + 0.3 * _unit(rng, 20)  # ... and 20 on the opposite side, the only ones the filter allows
    docs = _docs(near, group="near") + [
        Document(id=f"far{i}", content="far", meta={"group": "far"}, embedding=v.tolist())
        for i, v in enumerate(far)
    ]
    store = WinnowDocumentStore(factory=factory)
    store.write_documents(docs)
    flt = {"field": "meta.group", "operator": "==", "value": "far"}
    result = store.embedding_retrieval(query.tolist(), filters=flt, top_k=8)
    assert len(result) == 8
    assert all(d.meta["group"] == "far" for d in result)
    far_scores = sorted((far / np.linalg.norm(far, axis=1, keepdims=True)) @ query, reverse=True)[:8]
    np.testing.assert_allclose([d.score for d in result], far_scores, atol=1e-5)


def test_retrieval_edge_cases() -> None:
    store = WinnowDocumentStore()
    assert store.embedding_retrieval([1.0, 0.0], top_k=3) == []  # nothing embedded yet
    store.write_documents(
        [Document(id="v", embedding=[1.0, 0.0, 0.0]), Document(id="t", content="no vector", meta={"k": 1})]
    )
    with pytest.raises(ValueError, match="dimension 2.*dimension 3"):
        store.embedding_retrieval([1.0, 0.0], top_k=3)
    with pytest.raises(ValueError, match="top_k"):
        store.embedding_retrieval([1.0, 0.0, 0.0], top_k=0)
    assert (
        store.embedding_retrieval([1.0, 0.0, 0.0], filters={"field": "meta.k", "operator": "==", "value": 1})
        == []
    )
    assert [d.id for d in store.embedding_retrieval([0.0, 1.0, 0.0], top_k=10)] == ["v"]


def test_async_retrieval_matches_sync() -> None:
    rng = np.random.default_rng(2)
    store = WinnowDocumentStore()
    store.write_documents(_docs(_unit(rng, 20)))
    query = _unit(rng, 1)[0].tolist()
    flt = {"field": "meta.i", "operator": ">", "value": 5}
    sync = store.embedding_retrieval(query, filters=flt, top_k=4)
    assert asyncio.run(store.embedding_retrieval_async(query, filters=flt, top_k=4)) == sync


def test_concurrent_writes_and_searches() -> None:
    rng = np.random.default_rng(3)
    store = WinnowDocumentStore(embedding_dim=DIM)
    batches = [_docs(_unit(rng, 10), batch=b) for b in range(8)]
    batches = [
        [Document(id=f"{b}-{d.id}", content=d.content, meta=d.meta, embedding=d.embedding) for d in docs]
        for b, docs in enumerate(batches)
    ]
    errors: list[BaseException] = []

    def work(docs: list[Document]) -> None:
        try:
            store.write_documents(docs)
            store.embedding_retrieval(docs[0].embedding, top_k=3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(docs,)) for docs in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count_documents() == 80 and len(store.index) == 80


# ---------------------------------------------------------------------- persistence and serialisation
def test_persistence_round_trip(tmp_path) -> None:
    path = tmp_path / "store"
    rng = np.random.default_rng(4)
    vectors = _unit(rng, 10)
    store = WinnowDocumentStore(index_path=str(path), embedder="tiny")
    docs = _docs(vectors) + [Document(id="plain", content="no embedding", meta={"k": [1, {"a": None}]})]
    store.write_documents(docs)
    assert (path / DOCUMENTS_FILE).is_file()

    reopened = WinnowDocumentStore(index_path=str(path), embedder="tiny")
    assert reopened.filter_documents() == docs
    assert reopened.embedding_dim == DIM
    query = vectors[3].tolist()
    assert reopened.embedding_retrieval(query, top_k=3) == store.embedding_retrieval(query, top_k=3)

    reopened.delete_documents(["d0"])
    reopened.update_by_filter({"field": "id", "operator": "==", "value": "plain"}, {"k": "changed"})
    reopened.write_documents([Document(id="new", embedding=vectors[0].tolist())])
    third = WinnowDocumentStore(index_path=str(path), embedder="tiny")
    assert [d.id for d in third.filter_documents()] == [f"d{i}" for i in range(1, 10)] + ["plain", "new"]
    assert third.filter_documents({"field": "id", "operator": "==", "value": "plain"})[0].meta == {
        "k": "changed"
    }

    plain_index = WinnowIndex.load(path)  # an ordinary winnow index: "plain" is a row without a vector
    assert len(plain_index) == 10 and plain_index.table.count() == 11


def test_store_without_embeddings_persists_and_infers_the_dimension_later(tmp_path) -> None:
    path = tmp_path / "store"
    store = WinnowDocumentStore(index_path=str(path))
    store.write_documents([Document(id="t", content="text only")])
    reopened = WinnowDocumentStore(index_path=str(path))
    assert reopened.embedding_dim is None and reopened.count_documents() == 1
    reopened.write_documents([Document(id="v", embedding=[0.0, 2.0, 0.0, 0.0, 0.0])])
    again = WinnowDocumentStore(index_path=str(path))
    assert again.embedding_dim == 5
    assert [d.id for d in again.filter_documents()] == ["t", "v"]
    assert again.embedding_retrieval([0.0, 1.0, 0.0, 0.0, 0.0], top_k=2)[0].id == "v"


def test_loading_checks_dimension_metric_and_embedder(tmp_path) -> None:
    path = tmp_path / "store"
    WinnowDocumentStore(index_path=str(path), embedder="tiny").write_documents(
        [Document(id="a", embedding=[1.0, 0.0])]
    )
    with pytest.raises(ValueError, match="dimension 2.*embedding_dim=3"):
        WinnowDocumentStore(index_path=str(path), embedder="tiny", embedding_dim=3)
    with pytest.raises(ValueError, match="metric"):
        WinnowDocumentStore(index_path=str(path), embedder="tiny", metric="l2")
    with pytest.raises(EmbedderMismatchError):
        WinnowDocumentStore(index_path=str(path), embedder="other-model")


def test_opens_an_index_built_without_the_store(tmp_path) -> None:
    """An index from `winnow index` (no stored embeddings, parent ids in their column) reads as Documents."""
    rng = np.random.default_rng(5)
    vectors = _unit(rng, 4)
    index = WinnowIndex.create(DIM, embedder="all-MiniLM-L6-v2")
    records = [
        DocumentRecord(id=f"c{i}", text=f"chunk {i}", meta={"title": "T"}, parent_id="p") for i in range(4)
    ]
    index.add_records(records, vectors)
    index.save(tmp_path / "idx")
    store = WinnowDocumentStore(index_path=str(tmp_path / "idx"))
    docs = store.filter_documents()
    assert [d.meta for d in docs] == [{"title": "T", "parent_id": "p"}] * 4
    np.testing.assert_allclose(docs[2].embedding, vectors[2], atol=1e-6)  # reconstructed from FAISS
    assert store.embedding_retrieval(vectors[2].tolist(), top_k=1)[0].id == "c2"


def test_save_refuses_a_foreign_directory(tmp_path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("keep me")
    store = WinnowDocumentStore()
    store.write_documents([Document(id="a", content="a")])
    with pytest.raises(Exception, match="refusing to overwrite"):
        store.save(tmp_path / "other")
    assert (tmp_path / "other" / "file.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="index_path"):
        store.save()


def test_to_dict_from_dict(tmp_path) -> None:
    path = tmp_path / "store"
    store = WinnowDocumentStore(index_path=str(path), embedding_dim=4, factory="HNSW32", embedder="tiny")
    store.write_documents([Document(id="a", content="a", embedding=[1.0, 2.0, 3.0, 4.0])])
    data = store.to_dict()
    assert data == {
        "type": "winnow.retrieval.document_store.WinnowDocumentStore",
        "init_parameters": {
            "index_path": str(path),
            "embedding_dim": 4,
            "factory": "HNSW32",
            "metric": "ip",
            "embedder": "tiny",
        },
    }
    restored = WinnowDocumentStore.from_dict(data)
    assert restored.to_dict() == data
    assert restored.filter_documents() == store.filter_documents()


def test_invalid_init_arguments() -> None:
    with pytest.raises(ValueError, match="metric"):
        WinnowDocumentStore(metric="cosine")
    with pytest.raises(ValueError, match="embedding_dim"):
        WinnowDocumentStore(embedding_dim=0)
    with pytest.raises(ValueError, match="training"):
        WinnowDocumentStore(embedding_dim=8, factory="IVF4,Flat")
