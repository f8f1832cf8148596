from __future__ import annotations

import pytest

from winnow.indexes import EmbedderMismatchError, WinnowIndex
from winnow.retrieval.chunker import chunk_passages
from winnow.retrieval.corpus import Passage, load_beir
from winnow.retrieval.dense import DenseRetriever
from winnow.retrieval.embedder import DEFAULT_EMBEDDER, Embedder, resolve_embedder
from winnow.retrieval.first_stage import make_first_stage
from winnow.retrieval.indexing import build_index

DOCS = [
    Passage(id="apple", text="apple apple apple", title="fruit"),
    Passage(id="cash", text="cash flow from operating activities", meta={"year": 2023}),
    Passage(id="long", text=" ".join(["filler"] * 60 + ["banana"] * 5), title="10-K page"),
]


@pytest.fixture(scope="module")
def embedder(tiny_bi_encoder_path):
    return Embedder(tiny_bi_encoder_path, show_progress=False)


def test_embedder_vectors_are_normalised(embedder):
    import numpy as np

    vectors = embedder.embed_documents(["a b c", "the revenue"])
    assert vectors.shape == (2, embedder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_queries([]).shape == (0, embedder.dim)
    with pytest.raises(TypeError):
        embedder.embed_queries("not a list")


def test_default_embedder_is_the_packaged_minilm():
    name, location = resolve_embedder(None)
    assert name == DEFAULT_EMBEDDER and location.endswith("model")
    assert resolve_embedder("sentence-transformers/all-MiniLM-L6-v2")[0] == DEFAULT_EMBEDDER
    assert resolve_embedder("org/some-model") == ("org/some-model", "org/some-model")


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_index_round_trip_and_dense_search(tmp_path, embedder, factory):
    index = build_index(DOCS, embedder, factory=factory, show_progress=False)
    index.save(tmp_path / "idx")
    loaded = WinnowIndex.load(tmp_path / "idx", expected_embedder=embedder.name)
    retriever = DenseRetriever(loaded, embedder)
    hits = retriever.retrieve("fruit. apple apple apple", top_k=3)  # identical text: cosine 1
    assert hits[0].id == "apple" and hits[0].title == "fruit"
    assert {h.id: h.meta.get("year") for h in hits}["cash"] == 2023
    assert [h.id for h in retriever.retrieve("apple", top_k=3, allow_ids=["cash"])] == ["cash"]


def test_chunked_index_returns_document_ids(tmp_path, embedder):
    index = build_index(DOCS, embedder, chunk_words=20, chunk_overlap=5, show_progress=False)
    assert len(index) > len(DOCS)
    assert index.extra["chunked"] is True
    last_chunk = chunk_passages(DOCS[2:], size=20, overlap=5)[
        -1
    ]  # identical text: cosine 1 even for a tiny model
    hits = DenseRetriever(index, embedder).retrieve(last_chunk.full_text(), top_k=3)
    assert {h.id for h in hits} == {"apple", "cash", "long"}
    assert hits[0].id == "long" and hits[0].meta["best_chunk"] == last_chunk.id
    bm25_hits = make_first_stage("bm25", index, embedder).retrieve("banana", top_k=3)
    assert bm25_hits[0].id == "long"
    hybrid = make_first_stage("hybrid", index, embedder).retrieve("banana", top_k=2)
    assert hybrid[0].id == "long"


def test_mismatched_embedder_is_refused(tmp_path, embedder):
    build_index(DOCS, embedder, show_progress=False).save(tmp_path / "idx")
    with pytest.raises(EmbedderMismatchError):
        WinnowIndex.load(tmp_path / "idx", expected_embedder="some-other-model")
    index = WinnowIndex.load(tmp_path / "idx")
    with pytest.raises(ValueError, match="built with embedder"):
        DenseRetriever(index, Embedder(None))
    with pytest.raises(ValueError, match="unknown first stage"):
        make_first_stage("sparse", index, embedder)


@pytest.mark.integration
def test_packaged_minilm_finds_scifact_abstracts(datasets_dir):
    data = load_beir(datasets_dir / "scifact")
    qrels = data.qrels["test"]
    qids = sorted(qrels)[:10]
    relevant = {d for q in qids for d in qrels[q]}
    docs = [p for p in data.corpus if p.id in relevant] + [p for p in data.corpus if p.id not in relevant][
        :290
    ]
    embedder = Embedder(show_progress=False)
    retriever = DenseRetriever(build_index(docs, embedder, show_progress=False), embedder)
    results = retriever.retrieve_batch([data.queries[q] for q in qids], top_k=10)
    found = sum(any(h.id in qrels[q] for h in hits) for q, hits in zip(qids, results, strict=True))
    assert found >= 8


def test_chunked_search_filters_by_document_id_and_returns_whole_documents(embedder):
    index = build_index(DOCS, embedder, chunk_words=20, chunk_overlap=5, show_progress=False)
    retriever = DenseRetriever(index, embedder)
    hits = retriever.retrieve("banana", top_k=3, allow_ids=["long"])
    assert [h.id for h in hits] == ["long"]
    assert hits[0].text == DOCS[2].text  # the reranker gets the whole page, not the matching chunk
    bm25_docs = {p.id: p.text for p in make_first_stage("bm25", index, embedder).passages}
    assert bm25_docs == {p.id: p.text for p in DOCS}  # BM25 indexes whole documents, not chunks


def test_chunked_search_widens_until_top_k_documents(embedder):
    crowd = Passage(id="crowd", text=" ".join(f"w{i}" for i in range(400)))
    docs = [crowd, *(Passage(id=f"s{i}", text=f"short passage number {i}") for i in range(5))]
    index = build_index(docs, embedder, chunk_words=10, chunk_overlap=0, show_progress=False)
    retriever = DenseRetriever(index, embedder, chunk_overfetch=1)
    # the crowd's many chunks fill the first fetches
    query = chunk_passages([crowd], size=10, overlap=0)[3].full_text()
    hits = retriever.retrieve(query, top_k=4)
    assert hits[0].id == "crowd" and len(hits) == 4 and len({h.id for h in hits}) == 4
