"""WinnowHybridRetriever: the CLI's RRF, ranks in meta, order independence, writes, filters, YAML."""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

import pytest
from haystack import Document, Pipeline

from winnow.retrieval.corpus import Passage
from winnow.retrieval.document_store import WinnowDocumentStore
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.first_stage import make_first_stage
from winnow.retrieval.hybrid_retriever import WinnowHybridRetriever
from winnow.retrieval.indexing import build_index

WORDS = (
    "revenue billion dollars margin costs gene expression plants drought protein yeast heat vaccine chips "
    "claim dividend shares cash flow interest rate market risk banana cells stress growth fiscal year"
).split()
QUERIES = ["revenue billion dollars", "gene expression in plants", "vaccine chips claim", "cash flow risk"]


def hybrid_docs(n: int = 40, seed: int = 7) -> list[Passage]:
    """``n`` small documents over a shared vocabulary (so BM25 and dense rankings overlap but differ)."""
    rng = random.Random(seed)
    return [
        Passage(
            id=f"d{i:02d}",
            title=f"Doc {i}",
            text=" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))),
            meta={"year": 2010 + i % 15},
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def hybrid_index(tmp_path_factory: pytest.TempPathFactory, tiny_bi_encoder_path: str) -> Path:
    """A saved 40-document index built with the tiny bi-encoder (copy it before writing to it)."""
    path = tmp_path_factory.mktemp("hybrid") / "index"
    build_index(hybrid_docs(), Embedder(tiny_bi_encoder_path), show_progress=False).save(path)
    return path


@pytest.fixture()
def store(tmp_path: Path, hybrid_index: Path, tiny_bi_encoder_path: str) -> WinnowDocumentStore:
    target = tmp_path / "index"
    shutil.copytree(hybrid_index, target)
    return WinnowDocumentStore(index_path=str(target), embedder=Embedder(tiny_bi_encoder_path).name)


@pytest.fixture()
def retriever(store: WinnowDocumentStore) -> WinnowHybridRetriever:
    component = WinnowHybridRetriever(document_store=store, device="cpu", top_k=10)
    component.warm_up()
    return component


@pytest.mark.parametrize("query", QUERIES)
def test_same_ranking_as_the_cli_first_stage(retriever: WinnowHybridRetriever, store, query: str) -> None:
    index = store.index
    first_stage = make_first_stage("hybrid", index, Embedder(index.embedder, device="cpu"))
    want = first_stage.retrieve(query, 10)
    got = retriever.run(query=query)["documents"]
    assert [d.id for d in got] == [h.doc_id for h in want]
    assert [d.score for d in got] == [h.score for h in want]
    for doc, hit in zip(got, want, strict=True):
        assert doc.meta["dense_rank"] == hit.ranks.get("dense")
        assert doc.meta["bm25_rank"] == hit.ranks.get("bm25")
        assert doc.meta["title"] == hit.title and doc.content == hit.text


def test_ranks_in_meta_are_each_retrievers_ranks(retriever: WinnowHybridRetriever, store) -> None:
    query = "revenue billion dollars"
    index = store.index
    dense = make_first_stage("dense", index, Embedder(index.embedder, device="cpu")).retrieve(query, 100)
    bm25 = make_first_stage("bm25", index).retrieve(query, 100)
    dense_ranks = {h.doc_id: r for r, h in enumerate(dense, start=1)}
    bm25_ranks = {h.doc_id: r for r, h in enumerate(bm25, start=1)}
    docs = retriever.run(query=query, top_k=40)["documents"]
    assert len(docs) == 40
    for doc in docs:
        assert doc.meta["dense_rank"] == dense_ranks.get(doc.id)
        assert doc.meta["bm25_rank"] == bm25_ranks.get(doc.id)
    assert any(d.meta["bm25_rank"] is None for d in docs)  # BM25 misses documents without query words


def test_fusion_does_not_depend_on_the_retrievers_order(retriever: WinnowHybridRetriever) -> None:
    before = retriever.run(query="gene expression in plants")["documents"]
    hybrid = retriever._first_stage()
    hybrid.retrievers.reverse()  # BM25 answers first
    after = retriever.run(query="gene expression in plants")["documents"]
    assert after == before


def test_serialised_pipeline_gives_identical_results(retriever: WinnowHybridRetriever) -> None:
    pipeline = Pipeline()
    pipeline.add_component("retriever", retriever)
    inputs = {"retriever": {"query": "revenue billion dollars", "top_k": 5}}
    before = pipeline.run(inputs)["retriever"]["documents"]
    yaml_text = pipeline.dumps()
    assert "WinnowHybridRetriever" in yaml_text and "rrf_k: 60" in yaml_text

    loaded = Pipeline.loads(yaml_text, allowed_modules=["winnow"])
    after = loaded.run(inputs)["retriever"]["documents"]
    assert len(before) == 5
    assert after == before  # ids, contents, scores and meta (ranks included)


def test_to_dict_from_dict_and_validation(store: WinnowDocumentStore) -> None:
    component = WinnowHybridRetriever(
        document_store=store,
        top_k=3,
        rrf_k=10,
        depth=50,
        filters={"field": "meta.year", "operator": ">", "value": 1},
    )
    data = component.to_dict()
    again = WinnowHybridRetriever.from_dict(data)
    assert again.to_dict() == data
    with pytest.raises(TypeError):
        WinnowHybridRetriever(store)  # keyword-only
    for bad in ({"top_k": 0}, {"depth": -1}, {"rrf_k": -1}, {"top_k": True}):
        with pytest.raises(ValueError):
            WinnowHybridRetriever(document_store=store, **bad)
    with pytest.raises(ValueError, match="query"):
        component.run(query="  ")


def test_writes_through_the_store_are_found_at_once(retriever, store, tiny_bi_encoder_path: str) -> None:
    word = "zorblaxitude"
    assert all(d.meta["bm25_rank"] is None for d in retriever.run(query=word)["documents"])
    vector = Embedder(tiny_bi_encoder_path, device="cpu").embed_documents([f"the {word} of dividends"])[0]
    store.write_documents(
        [Document(id="new-1", content=f"the {word} of dividends", embedding=vector.tolist())],
        policy="overwrite",
    )
    first = retriever.run(query=word)["documents"][0]
    assert first.id == "new-1" and first.meta["bm25_rank"] == 1
    store.delete_documents(["new-1"])
    assert "new-1" not in [d.id for d in retriever.run(query=word)["documents"]]


def test_filters_restrict_both_retrievers(retriever: WinnowHybridRetriever) -> None:
    flt = {"field": "meta.year", "operator": ">=", "value": 2020}
    docs = retriever.run(query="revenue billion dollars", filters=flt, top_k=40)["documents"]
    matching = [p.id for p in hybrid_docs() if p.meta["year"] >= 2020]
    assert sorted(d.id for d in docs) == sorted(matching)  # every match comes back, nothing else
    none = {"field": "meta.year", "operator": ">", "value": 3000}
    assert retriever.run(query="revenue", filters=none)["documents"] == []


def test_run_async_equals_run(retriever: WinnowHybridRetriever) -> None:
    sync = retriever.run(query="cash flow risk", top_k=4)["documents"]
    assert asyncio.run(retriever.run_async(query="cash flow risk", top_k=4))["documents"] == sync


def test_empty_store_returns_nothing(tiny_bi_encoder_path: str) -> None:
    component = WinnowHybridRetriever(
        document_store=WinnowDocumentStore(embedder=Embedder(tiny_bi_encoder_path).name), device="cpu"
    )
    assert component.run(query="anything")["documents"] == []


@pytest.mark.parametrize("query", QUERIES[:2])
def test_top_10_equals_winnow_search_hybrid_json(
    retriever: WinnowHybridRetriever, hybrid_index: Path, capsys, query: str
) -> None:
    import json

    from winnow.api.cli import main

    args = ["search", "--index", str(hybrid_index), "--first-stage", "hybrid", "--top-k", "10", "--json"]
    assert main([*args, "--device", "cpu", query]) == 0
    cli = json.loads(capsys.readouterr().out)["results"]
    got = retriever.run(query=query, top_k=10)["documents"]
    assert len(got) == 10
    assert [d.id for d in got] == [h["id"] for h in cli]
    for doc, hit in zip(got, cli, strict=True):
        assert doc.score == pytest.approx(hit["score"])
        assert (doc.meta["dense_rank"], doc.meta["bm25_rank"]) == (hit["dense_rank"], hit["bm25_rank"])


def test_chunked_index_gives_whole_documents_as_the_cli(tmp_path: Path, tiny_bi_encoder_path: str) -> None:
    embedder = Embedder(tiny_bi_encoder_path, device="cpu")
    path = tmp_path / "chunked"
    build_index(hybrid_docs(12), embedder, chunk_words=4, chunk_overlap=1, show_progress=False).save(path)
    store = WinnowDocumentStore(index_path=str(path), embedder=embedder.name)
    component = WinnowHybridRetriever(document_store=store, device="cpu", top_k=5)
    want = make_first_stage("hybrid", store.index, embedder).retrieve("revenue billion dollars", 5)
    got = component.run(query="revenue billion dollars")["documents"]
    assert [d.id for d in got] == [h.doc_id for h in want]
    docs = {p.id: p for p in hybrid_docs(12)}
    assert all(d.content == docs[d.id].text and "#" not in d.id for d in got)  # the whole document
    assert any("best_chunk" in d.meta for d in got)
