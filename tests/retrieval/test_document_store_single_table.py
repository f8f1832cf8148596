"""WinnowDocumentStore keeps every document in one WinnowIndex; stores with a second file still open."""

from __future__ import annotations

from pathlib import Path

from haystack import Document

from indexes import WinnowIndex, read_manifest
from retrieval.document_store import WinnowDocumentStore

EMBEDDER = "tiny"


def test_every_document_is_a_row_of_one_index(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    store.write_documents([Document(id="t", content="text only"), Document(id="v", embedding=[1.0, 0.0])])
    assert sorted(p.name for p in path.iterdir()) == [
        "documents.sqlite",
        "manifest.json",
        "vectors.faiss",
        "vectors.state.npz",
    ]
    manifest = read_manifest(path)
    assert (manifest.count, manifest.documents) == (1, 2)
    index = WinnowIndex.load(path)
    assert len(index) == 1 and [r.id for r in index.table.iter_records()] == ["t", "v"]
