"""Ray Data indexing (retrieval/ray_indexing.py) on the session's local Ray cluster (tests/ray_cluster.py)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from haystack import Document
from haystack.document_stores.types import DuplicatePolicy

from winnow.indexes import WinnowIndex
from winnow.retrieval.corpus import load_beir, sample_dataset_path
from winnow.retrieval.document_store import WinnowDocumentStore
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.indexing import build_index
from winnow.retrieval.ray_indexing import build_index_ray, index_documents_ray

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def sample_slice():
    """The first 60 passages of the sample corpus shipped in the package."""
    return load_beir(sample_dataset_path()).corpus[:60]


def _contents(index: WinnowIndex) -> tuple[list[tuple], np.ndarray]:
    """Every table row (key order) and the FAISS vector of each row that has one."""
    records = list(index.table.iter_records(with_embedding=False))
    rows = [(r.key, r.id, r.text, r.meta, r.parent_id) for r in records]
    keys = np.array([r.key for r in records], dtype=np.int64)
    with_vector = keys[index.vectors.contains(keys)]
    return rows, index.vectors.reconstruct(with_vector)


class FlakyEmbedder:
    """A picklable embedder factory whose embedder fails the first batch that holds ``poison`` text
    (remembered in a marker file, since a retry may run in another process)."""

    def __init__(self, path: str, marker: Path, poison: str, always: bool = False) -> None:
        self.path, self.marker, self.poison, self.always = path, marker, poison, always

    def __call__(self) -> Embedder:
        factory = self

        class _Flaky(Embedder):
            def embed_documents(self, texts, *, show_progress=None):
                if any(factory.poison in t for t in texts):
                    if factory.always:
                        raise OSError("disk on fire")
                    try:
                        os.close(os.open(factory.marker, os.O_CREAT | os.O_EXCL))
                    except FileExistsError:
                        pass
                    else:
                        raise OSError("transient failure")
                return super().embed_documents(texts, show_progress=show_progress)

        return _Flaky(self.path, show_progress=False)


def test_ray_index_equals_the_single_process_index_after_a_retried_batch(
    ray_local, tiny_bi_encoder_path, sample_slice, tmp_path
):
    chunk_words = 40  # chunks with vectors, and whole documents stored without one
    marker = tmp_path / "failed-once"
    flaky = FlakyEmbedder(tiny_bi_encoder_path, marker, " ".join(sample_slice[40].text.split()[:6]))
    single = build_index(
        sample_slice, Embedder(tiny_bi_encoder_path), chunk_words=chunk_words, show_progress=False
    )
    distributed = build_index_ray(
        sample_slice, embedder=flaky, chunk_words=chunk_words, block_size=16, workers=2, show_progress=False
    )
    assert marker.exists()  # one batch failed once, and was retried
    rows, vectors = _contents(single)
    ray_rows, ray_vectors = _contents(distributed)
    assert ray_rows == rows  # same documents, chunks, keys and order
    assert ray_vectors.shape == vectors.shape
    np.testing.assert_allclose(ray_vectors, vectors, atol=1e-5)
    assert distributed.embedder == single.embedder and distributed.extra == single.extra


@pytest.mark.slow
def test_a_batch_that_keeps_failing_fails_the_job_with_its_error(
    ray_local, tiny_bi_encoder_path, sample_slice, tmp_path
):
    broken = FlakyEmbedder(tiny_bi_encoder_path, tmp_path / "m", sample_slice[3].text, always=True)
    with pytest.raises(Exception, match=r"failed 2 times, last with OSError: disk on fire"):
        build_index_ray(
            sample_slice, embedder=broken, block_size=64, workers=1, max_attempts=2, show_progress=False
        )


class FileStore:
    """A shared DocumentStore stand-in (as a database would be): one JSON file per document, each written by
    an atomic rename. ``fail_after`` makes the first ``write_documents`` call of embedded documents die after
    that many documents (a crash mid-batch), once per ``marker`` file."""

    def __init__(self, root: Path, marker: Path | None = None, fail_after: int = 0) -> None:
        self.root, self.marker, self.fail_after = Path(root), marker, fail_after
        self.root.mkdir(parents=True, exist_ok=True)

    def write_documents(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        assert policy == DuplicatePolicy.OVERWRITE
        for i, doc in enumerate(documents):
            if self.marker is not None and i == self.fail_after and doc.embedding is not None:
                try:
                    os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    pass
                else:
                    raise ConnectionError("server closed the connection unexpectedly")
            name = doc.id.replace("/", "_")
            tmp = self.root / f".{name}.tmp"
            tmp.write_text(json.dumps(doc.to_dict()))
            tmp.replace(self.root / f"{name}.json")
        return len(documents)

    def documents(self) -> dict[str, Document]:
        return {
            d.id: d for d in (Document.from_dict(json.loads(p.read_text())) for p in self.root.glob("*.json"))
        }


@pytest.mark.slow
def test_actors_write_a_shared_store_retry_a_broken_batch_and_a_rerun_does_not_duplicate(
    ray_local, tiny_bi_encoder_path, sample_slice, tmp_path
):
    marker = tmp_path / "crashed-once"
    factory = functools.partial(FileStore, tmp_path / "store", marker, 5)
    for workers in (2, 1):  # the second run is a rerun over the same store
        written = index_documents_ray(
            sample_slice,
            store_factory=factory,
            embedder=tiny_bi_encoder_path,
            chunk_words=40,
            block_size=16,
            workers=workers,
            show_progress=False,
        )
    assert marker.exists()  # one batch died half-written, and was written again whole
    single = build_index(sample_slice, Embedder(tiny_bi_encoder_path), chunk_words=40, show_progress=False)
    rows, vectors = _contents(single)
    docs = FileStore(tmp_path / "store").documents()
    assert written == len(docs) == single.table.count() == len(rows)  # no duplicates, nothing missing
    with_vectors = iter(vectors)
    keys_with_vector = set(single.vectors.ids().tolist())
    for key, doc_id, text, meta, parent_id in rows:
        doc = docs[doc_id]
        assert doc.content == text and doc.meta.get("parent_id") == parent_id
        assert {k: v for k, v in doc.meta.items() if k != "parent_id"} == meta
        if key in keys_with_vector:
            np.testing.assert_allclose(doc.embedding, next(with_vectors), atol=1e-5)
        else:
            assert doc.embedding is None  # a chunked document, stored whole


@pytest.mark.slow
def test_driver_written_store_holds_what_the_single_process_index_holds(
    ray_local, tiny_bi_encoder_path, sample_slice
):
    store = WinnowDocumentStore()
    for _ in range(2):  # a rerun overwrites
        index_documents_ray(sample_slice, store=store, embedder=tiny_bi_encoder_path, show_progress=False)
    single = build_index(sample_slice, Embedder(tiny_bi_encoder_path), show_progress=False)
    assert store.count_documents() == single.table.count() == len(sample_slice)
    by_id = {d.id: d for d in store.filter_documents()}
    rows, vectors = _contents(single)
    for (_, doc_id, text, _meta, _parent), vector in zip(rows, vectors, strict=True):
        assert by_id[doc_id].content == text
        np.testing.assert_allclose(by_id[doc_id].embedding, vector, atol=1e-5)
