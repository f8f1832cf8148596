"""WinnowEmbeddingRetriever: parameters, serialisation, run/run_async, and a serialised Pipeline."""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest
from haystack import Document, Pipeline
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.document_stores.types import FilterPolicy

from winnow.retrieval.document_store import WinnowDocumentStore
from winnow.retrieval.embedder_components import WinnowDocumentEmbedder, WinnowTextEmbedder
from winnow.retrieval.embedding_retriever import WinnowEmbeddingRetriever

DIM = 8


@pytest.fixture
def store() -> WinnowDocumentStore:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((30, DIM))
    store = WinnowDocumentStore()
    store.write_documents(
        [
            Document(id=f"d{i}", content=f"doc {i}", meta={"even": i % 2 == 0, "i": i}, embedding=v.tolist())
            for i, v in enumerate(vectors)
        ]
    )
    return store


@pytest.fixture
def query() -> list[float]:
    return np.random.default_rng(1).standard_normal(DIM).tolist()


def test_init_validation(store: WinnowDocumentStore) -> None:
    with pytest.raises(TypeError, match="WinnowDocumentStore"):
        WinnowEmbeddingRetriever(document_store=InMemoryDocumentStore())
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="top_k"):
            WinnowEmbeddingRetriever(document_store=store, top_k=bad)
    with pytest.raises(TypeError):
        WinnowEmbeddingRetriever(store)  # keyword-only
    assert (
        WinnowEmbeddingRetriever(document_store=store, filter_policy="merge").filter_policy
        == FilterPolicy.MERGE
    )


def test_to_dict_from_dict_round_trip(tmp_path, query: list[float]) -> None:
    path = tmp_path / "idx"
    persisted = WinnowDocumentStore(index_path=str(path), embedding_dim=DIM)
    persisted.write_documents([Document(id="a", content="a", embedding=query)])
    retriever = WinnowEmbeddingRetriever(
        document_store=persisted,
        filters={"field": "meta.k", "operator": "==", "value": 1},
        top_k=3,
        scale_score=True,
        return_embedding=True,
        filter_policy=FilterPolicy.MERGE,
    )
    data = retriever.to_dict()
    assert data == {
        "type": "winnow.retrieval.embedding_retriever.WinnowEmbeddingRetriever",
        "init_parameters": {
            "document_store": persisted.to_dict(),
            "filters": {"field": "meta.k", "operator": "==", "value": 1},
            "top_k": 3,
            "scale_score": True,
            "return_embedding": True,
            "filter_policy": "merge",
        },
    }
    snapshot = copy.deepcopy(data)
    restored = WinnowEmbeddingRetriever.from_dict(data)
    assert data == snapshot  # from_dict leaves its input alone
    assert restored.to_dict() == data
    assert restored.document_store.filter_documents() == persisted.filter_documents()


def test_run_honours_run_time_values(store: WinnowDocumentStore, query: list[float]) -> None:
    even = {"field": "meta.even", "operator": "==", "value": True}
    retriever = WinnowEmbeddingRetriever(document_store=store, filters=even, top_k=5, scale_score=True)
    default = retriever.run(query_embedding=query)["documents"]
    assert len(default) == 5 and all(d.meta["even"] for d in default)
    assert all(0.0 <= d.score <= 1.0 for d in default)

    raw = retriever.run(query_embedding=query, top_k=2, scale_score=False)["documents"]
    assert [d.id for d in raw] == [d.id for d in default[:2]]
    assert [d.score for d in raw] == pytest.approx([2 * d.score - 1 for d in default[:2]], abs=1e-6)

    unfiltered = retriever.run(query_embedding=query, filters={}, top_k=30)["documents"]  # {} replaces
    assert len(unfiltered) == 30
    odd = {"field": "meta.even", "operator": "==", "value": False}
    assert all(not d.meta["even"] for d in retriever.run(query_embedding=query, filters=odd)["documents"])
    assert retriever.run(query_embedding=query, return_embedding=True)["documents"][0].embedding is not None
    for bad in (0, -3):
        with pytest.raises(ValueError, match="top_k"):
            retriever.run(query_embedding=query, top_k=bad)


def test_merge_policy_combines_filters(store: WinnowDocumentStore, query: list[float]) -> None:
    retriever = WinnowEmbeddingRetriever(
        document_store=store,
        filters={"field": "meta.even", "operator": "==", "value": True},
        filter_policy=FilterPolicy.MERGE,
        top_k=30,
    )
    docs = retriever.run(query_embedding=query, filters={"field": "meta.i", "operator": "<", "value": 10})[
        "documents"
    ]
    assert sorted(d.meta["i"] for d in docs) == [0, 2, 4, 6, 8]


def test_run_async_equals_run_and_inputs_are_not_mutated(
    store: WinnowDocumentStore, query: list[float]
) -> None:
    retriever = WinnowEmbeddingRetriever(document_store=store, top_k=4)
    filters = {"operator": "AND", "conditions": [{"field": "meta.i", "operator": ">=", "value": 3}]}
    query_copy, filters_copy = list(query), copy.deepcopy(filters)
    sync = retriever.run(query_embedding=query, filters=filters)
    asynchronous = asyncio.run(retriever.run_async(query_embedding=query, filters=filters))
    assert sync == asynchronous
    assert query == query_copy and filters == filters_copy
    with pytest.raises(ValueError, match="top_k"):
        asyncio.run(retriever.run_async(query_embedding=query, top_k=0))


def test_wrong_query_dimension_says_both(store: WinnowDocumentStore) -> None:
    retriever = WinnowEmbeddingRetriever(document_store=store)
    with pytest.raises(ValueError, match=f"dimension 3.*dimension {DIM}"):
        retriever.run(query_embedding=[1.0, 2.0, 3.0])


def test_serialised_pipeline_gives_identical_results(tmp_path, tiny_bi_encoder_path: str) -> None:
    doc_embedder = WinnowDocumentEmbedder(model=tiny_bi_encoder_path, device="cpu")
    texts = [
        "net revenue increased this fiscal year",
        "the company paid a dividend to shares",
        "apple banana cherry",
        "cash flow from operating expenses",
        "the vaccine study reported a protein",
        "interest rate growth and market risk",
    ]
    documents = [Document(id=f"d{i}", content=t, meta={"i": i}) for i, t in enumerate(texts)]
    path = str(tmp_path / "idx")
    writer = WinnowDocumentStore(index_path=path, embedder=doc_embedder.embedder_name)
    writer.write_documents(doc_embedder.run(documents)["documents"])

    pipeline = Pipeline()
    pipeline.add_component("embedder", WinnowTextEmbedder(model=tiny_bi_encoder_path, device="cpu"))
    store = WinnowDocumentStore(index_path=path, embedder=doc_embedder.embedder_name)
    pipeline.add_component("retriever", WinnowEmbeddingRetriever(document_store=store, top_k=3))
    pipeline.connect("embedder.embedding", "retriever.query_embedding")
    inputs = {"embedder": {"text": "revenue and cash flow"}}
    before = pipeline.run(inputs)["retriever"]["documents"]

    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["winnow"])
    after = loaded.run(inputs)["retriever"]["documents"]
    assert len(before) == 3
    assert [d.id for d in after] == [d.id for d in before]
    assert [d.score for d in after] == [d.score for d in before]
