"""The full Haystack route: text embedder -> winnow retriever -> winnow ranker, serialised and loaded back."""

from __future__ import annotations

import pytest
from haystack import Document, Pipeline

from winnow.rerank.ranker import WinnowRanker
from winnow.retrieval.document_store import WinnowDocumentStore
from winnow.retrieval.embedder_components import WinnowDocumentEmbedder, WinnowTextEmbedder
from winnow.retrieval.embedding_retriever import WinnowEmbeddingRetriever

TEXTS = [
    "net revenue increased twelve percent in fiscal 2023",
    "cash flow from operating activities was 1.2 billion",
    "claim: the vaccine contains a chip | rating: false",
    "the company repurchased shares of common stock",
    "risk factors include interest rate increases",
    "apple banana cherry",
]
ALLOWED = ["winnow"]


def _build(tmp_path, bi_encoder: str, cross_encoder: str) -> Pipeline:
    doc_embedder = WinnowDocumentEmbedder(model=bi_encoder, progress_bar=False)
    docs = doc_embedder.run([Document(id=f"d{i}", content=t) for i, t in enumerate(TEXTS)])["documents"]
    store = WinnowDocumentStore(index_path=str(tmp_path / "store"), embedder=doc_embedder.embedder_name)
    store.write_documents(docs)
    pipeline = Pipeline()
    pipeline.add_component("embedder", WinnowTextEmbedder(model=bi_encoder, progress_bar=False))
    pipeline.add_component("retriever", WinnowEmbeddingRetriever(document_store=store, top_k=5))
    pipeline.add_component("ranker", WinnowRanker(model=cross_encoder, top_k=3))
    pipeline.connect("embedder.embedding", "retriever.query_embedding")
    pipeline.connect("retriever.documents", "ranker.documents")
    return pipeline


def _run(pipeline: Pipeline, query: str) -> list[tuple[str, float]]:
    out = pipeline.run({"embedder": {"text": query}, "ranker": {"query": query}})
    return [(d.id, d.score) for d in out["ranker"]["documents"]]


def test_pipeline_round_trips_through_yaml_with_identical_results(
    tmp_path, tiny_bi_encoder_path, tiny_cross_encoder_path
):
    pipeline = _build(tmp_path, tiny_bi_encoder_path, tiny_cross_encoder_path)
    query = "how much revenue did the company make"
    before = _run(pipeline, query)
    assert len(before) == 3
    assert [s for _, s in before] == sorted((s for _, s in before), reverse=True)

    yaml_text = pipeline.dumps()
    assert (
        "winnow.rerank.ranker.WinnowRanker" in yaml_text
        and "winnow.retrieval.embedding_retriever" in yaml_text
    )
    loaded = Pipeline.loads(yaml_text, allowed_modules=ALLOWED)
    after = _run(loaded, query)
    assert [i for i, _ in after] == [i for i, _ in before]
    for (_, a), (_, b) in zip(after, before, strict=True):
        assert abs(a - b) < 1e-6


def test_pipeline_saved_before_the_move_to_winnow_loads_through_the_old_names(
    tmp_path, tiny_bi_encoder_path, tiny_cross_encoder_path
):
    pipeline = _build(tmp_path, tiny_bi_encoder_path, tiny_cross_encoder_path)
    query = "how much revenue did the company make"
    before = _run(pipeline, query)
    old_yaml = pipeline.dumps().replace("type: winnow.", "type: ")  # how it was saved before the move
    assert "type: rerank.ranker.WinnowRanker" in old_yaml and "winnow.rerank" not in old_yaml
    with pytest.warns(DeprecationWarning, match="winnow.rerank.ranker.WinnowRanker"):
        loaded = Pipeline.loads(old_yaml, allowed_modules=["rerank", "retrieval"])  # the allowlist of then
    assert [i for i, _ in _run(loaded, query)] == [i for i, _ in before]
    assert "type: winnow.rerank.ranker.WinnowRanker" in loaded.dumps()  # saved again: the new names
