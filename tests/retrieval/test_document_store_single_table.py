"""WinnowDocumentStore keeps every document, with or without an embedding, in one WinnowIndex."""

from __future__ import annotations

from pathlib import Path

import pytest
from haystack import Document
from haystack.document_stores.types import DuplicatePolicy

from winnow.indexes import WinnowIndex, read_manifest
from winnow.retrieval.document_store import WinnowDocumentStore

EMBEDDER = "tiny"


def test_every_document_is_a_row_of_one_index(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    store.write_documents([Document(id="t", content="text only"), Document(id="v", embedding=[1.0, 0.0])])
    sidecars = ("-wal", "-shm")  # the live table's SQLite files, and the open/compaction lock
    assert sorted(p.name for p in path.iterdir() if not p.name.endswith(sidecars) and p.name != ".lock") == [
        "documents.sqlite",
        "manifest.json",
        "vectors.faiss",
        "vectors.state.npz",
    ]
    manifest = read_manifest(path)
    assert (manifest.count, manifest.documents) == (1, 2)
    index = WinnowIndex.load(path)
    assert len(index) == 1 and [r.id for r in index.table.iter_records()] == ["t", "v"]


def test_failed_overwrite_keeps_the_stored_document(monkeypatch: pytest.MonkeyPatch) -> None:
    store = WinnowDocumentStore(embedding_dim=2)
    store.write_documents([Document(id="a", content="old", embedding=[1.0, 0.0])])
    original_add = WinnowIndex.add_records
    calls = {"n": 0}

    def failing_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return original_add(self, *args, **kwargs)

    monkeypatch.setattr(WinnowIndex, "add_records", failing_once)
    with pytest.raises(OSError, match="disk full"):
        new = Document(id="a", content="new", embedding=[0.0, 1.0])
        store.write_documents([new], DuplicatePolicy.OVERWRITE)
    kept = store.filter_documents()
    assert [(d.id, d.content) for d in kept] == [("a", "old")]
    assert store.embedding_retrieval([1.0, 0.0], top_k=1)[0].id == "a"
