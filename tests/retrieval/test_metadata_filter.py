"""Haystack filters over an index's documents, and incremental writes chunked like the index."""

from __future__ import annotations

import pytest
from haystack.errors import FilterError

from winnow.indexes import WinnowIndex
from winnow.retrieval.corpus import Passage
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.indexing import build_index, prepare_upsert
from winnow.retrieval.metadata_filter import matching_document_ids

DOCS = [
    Passage(id="a", text="alpha " * 30, meta={"year": 2020, "tags": ["x"]}),
    Passage(id="b", text="beta", meta={"year": 2018}),
    Passage(id="c", text="gamma", title="Gamma", meta={"year": 2022, "kind": "fact"}),
]


@pytest.fixture(scope="module")
def embedder(tiny_bi_encoder_path):
    return Embedder(tiny_bi_encoder_path, show_progress=False)


@pytest.fixture()
def chunked(embedder) -> WinnowIndex:
    return build_index(DOCS, embedder, chunk_words=10, chunk_overlap=2, show_progress=False)


def test_matching_document_ids(chunked):
    year = {"field": "meta.year", "operator": ">=", "value": 2020}
    assert matching_document_ids(chunked, year) == ["a", "c"]  # parents only, never the chunks of "a"
    both = {
        "operator": "AND",
        "conditions": [year, {"field": "meta.kind", "operator": "==", "value": "fact"}],
    }
    assert matching_document_ids(chunked, both) == ["c"]
    assert matching_document_ids(chunked, {"field": "id", "operator": "in", "value": ["b", "zz"]}) == ["b"]
    with pytest.raises(ValueError, match="syntax"):
        matching_document_ids(chunked, {"year": 2020})
    with pytest.raises(FilterError, match="operator"):
        matching_document_ids(chunked, {"field": "meta.year", "operator": "~", "value": 1})


def test_prepare_upsert_chunks_like_the_index(chunked, embedder):
    before = len(chunked)
    write = prepare_upsert(chunked, [Passage(id="a", text="delta " * 12)], embedder)
    write.apply(chunked)
    ids = {r.id for r in chunked.table.iter_records(with_embedding=False)}
    assert {"a", "a#0", "a#1"} <= ids and "a#3" not in ids  # 30 words had 4 chunks, 12 words have 2
    assert len(chunked) == before - 2
    assert chunked.table.get(["a"])[0].text.startswith("delta")


def test_prepare_upsert_checks_inputs(chunked, embedder, tiny_cross_encoder_path):
    with pytest.raises(ValueError, match="no passages"):
        prepare_upsert(chunked, [], embedder)
    other = Embedder(tiny_cross_encoder_path)
    with pytest.raises(ValueError, match="differs"):
        prepare_upsert(chunked, DOCS[:1], other)
