"""WinnowTextEmbedder and WinnowDocumentEmbedder on the tiny fixture bi-encoder."""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest
from haystack import Document

from winnow.retrieval.embedder_components import WinnowDocumentEmbedder, WinnowTextEmbedder


@pytest.fixture(scope="module")
def text_embedder(tiny_bi_encoder_path: str) -> WinnowTextEmbedder:
    embedder = WinnowTextEmbedder(model=tiny_bi_encoder_path, device="cpu", progress_bar=False)
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="module")
def document_embedder(tiny_bi_encoder_path: str) -> WinnowDocumentEmbedder:
    embedder = WinnowDocumentEmbedder(model=tiny_bi_encoder_path, device="cpu", progress_bar=False)
    embedder.warm_up()
    return embedder


def test_to_dict_from_dict_round_trip(tiny_bi_encoder_path: str) -> None:
    text = WinnowTextEmbedder(
        model=tiny_bi_encoder_path, device="cpu", batch_size=4, prefix="q: ", suffix="!"
    )
    data = text.to_dict()
    assert data == {
        "type": "winnow.retrieval.embedder_components.WinnowTextEmbedder",
        "init_parameters": {
            "model": tiny_bi_encoder_path,
            "device": "cpu",
            "batch_size": 4,
            "prefix": "q: ",
            "suffix": "!",
            "progress_bar": True,
        },
    }
    assert WinnowTextEmbedder.from_dict(data).to_dict() == data

    docs = WinnowDocumentEmbedder(
        meta_fields_to_embed=["title"], embedding_separator=" | ", progress_bar=False
    )
    data = docs.to_dict()
    assert data["type"] == "winnow.retrieval.embedder_components.WinnowDocumentEmbedder"
    assert data["init_parameters"] == {
        "model": None,
        "device": None,
        "batch_size": 32,
        "prefix": "",
        "suffix": "",
        "progress_bar": False,
        "meta_fields_to_embed": ["title"],
        "embedding_separator": " | ",
    }
    assert WinnowDocumentEmbedder.from_dict(data).to_dict() == data


def test_init_is_keyword_only_and_validated() -> None:
    with pytest.raises(TypeError):
        WinnowTextEmbedder("model")  # type: ignore[misc]
    with pytest.raises(ValueError, match="batch_size"):
        WinnowDocumentEmbedder(batch_size=0)


def test_warm_up_is_idempotent(text_embedder: WinnowTextEmbedder) -> None:
    loaded = text_embedder._embedder
    text_embedder.warm_up()
    assert text_embedder._embedder is loaded


def test_text_embedder(text_embedder: WinnowTextEmbedder, tiny_bi_encoder_path: str) -> None:
    embedding = text_embedder.run("net revenue")["embedding"]
    assert isinstance(embedding, list) and len(embedding) == 32
    assert all(isinstance(x, float) for x in embedding)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert asyncio.run(text_embedder.run_async("net revenue"))["embedding"] == embedding
    prefixed = WinnowTextEmbedder(model=tiny_bi_encoder_path, device="cpu", prefix="query ")
    assert prefixed.run("revenue")["embedding"] == text_embedder.run("query revenue")["embedding"]
    for bad in (["a list"], None, 3):
        with pytest.raises(TypeError, match="string"):
            text_embedder.run(bad)  # type: ignore[arg-type]


def test_document_embedder_returns_copies(
    document_embedder: WinnowDocumentEmbedder, text_embedder: WinnowTextEmbedder
) -> None:
    documents = [
        Document(id="a", content="cash flow", meta={"title": "report"}),
        Document(id="b", content=None, meta={}),
    ]
    snapshot = copy.deepcopy(documents)
    result = document_embedder.run(documents)["documents"]
    assert documents == snapshot and all(d.embedding is None for d in documents)  # inputs untouched
    assert [d.id for d in result] == ["a", "b"] and all(
        r is not d for r, d in zip(result, documents, strict=True)
    )
    assert result[0].meta == {"title": "report"} and result[0].content == "cash flow"
    assert result[0].embedding == text_embedder.run("cash flow")["embedding"]
    assert asyncio.run(document_embedder.run_async(documents)) == {"documents": result}
    assert document_embedder.run([])["documents"] == []
    with pytest.raises(TypeError, match="list of Documents"):
        document_embedder.run("cash flow")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of Documents"):
        document_embedder.run(["cash flow"])  # type: ignore[list-item]


def test_meta_fields_prefix_and_suffix(tiny_bi_encoder_path: str, text_embedder: WinnowTextEmbedder) -> None:
    embedder = WinnowDocumentEmbedder(
        model=tiny_bi_encoder_path,
        device="cpu",
        prefix="p ",
        suffix=" s",
        meta_fields_to_embed=["title", "missing", "none"],
        embedding_separator=" | ",
    )
    doc = Document(content="cash flow", meta={"title": "report", "none": None})
    assert embedder._text_to_embed(doc) == "p report | cash flow s"
    embedded = embedder.run([doc])["documents"][0]
    assert embedded.embedding == text_embedder.run("p report | cash flow s")["embedding"]
