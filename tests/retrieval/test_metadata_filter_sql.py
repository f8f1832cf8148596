"""Filters run in SQLite: the translation agrees exactly with Haystack's ``document_matches_filter``."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from haystack import Document
from haystack.errors import FilterError
from haystack.utils.filters import document_matches_filter

from winnow.indexes import DocumentRecord, DocumentTable
from winnow.retrieval.document_store import WinnowDocumentStore, record_to_document
from winnow.retrieval.filter_sql import compile_filter
from winnow.retrieval.metadata_filter import filter_keys

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -2,
    3,
    2020,
    0.5,
    1.0,
    -0.0,
    2.5,
    2**70,
    "x",
    "abc",
    "1",
    "",
    "2020-01-01",
    "2020-01-01T00:00:00",
    "2020-01-01 10:30:00",
    "2021-06-15T12:30:00",
    "2020-01-01T10:00:00+02:00",
    "2020-01-01T10:00:00Z",
    "2020-01-01t00:00:00",
    "2020-01-01T00:00:00.500",
    "2020-02-30",
    "2020-13-01",
    "0000-01-01",
    "2020-01-01T24:00:00",
    "2020-1-1",
    "March 3 2019",
    "20200101",
    [],
    [1, 2],
    [1.0, 2],
    [True],
    ["x"],
    {},
    {"x": 1},
    {"x": 1, "y": [2]},
]
FILTER_VALUES: list[Any] = [
    *VALUES,
    datetime(2020, 1, 1),
    datetime(2020, 1, 1, 10, 30),
    datetime(2020, 1, 1, 10, tzinfo=timezone(timedelta(hours=2))),
    datetime(2020, 6, 1, 0, 0, 0, 1),
    "not a date",
    "2020-01-01T10:30:00+05:00",
    2**63,
    float("nan"),
    (1, 2),
]
FIELDS = [
    "meta.a",
    "a",
    "meta.b",
    "meta.n.x",
    "meta.n.y",
    "meta.n",
    "meta.n.x.z",
    "meta.missing",
    "missing",
    "id",
    "content",
    "id.x",
    "content.x",
    "meta.parent_id",
    "parent_id",
    "meta.__haystack__",
    "meta.__haystack__.score",
    "score",
    "meta",
    'meta.q"k',
    "meta.",
    "blob.x",
]
OPERATORS = ["==", "!=", ">", ">=", "<", "<=", "in", "not in"]


def _random_meta(rng: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key in ("a", "b", 'q"k', ""):
        if rng.random() < 0.7:
            meta[key] = rng.choice(VALUES)
    if rng.random() < 0.6:
        meta["n"] = {k: rng.choice(VALUES) for k in ("x", "y") if rng.random() < 0.7}
    elif rng.random() < 0.3:
        meta["n"] = rng.choice(VALUES)
    if rng.random() < 0.2:
        meta["parent_id"] = rng.choice(["p1", "", None, 3])
    if rng.random() < 0.2:
        meta["__haystack__"] = {"score": rng.choice([0.5, 2])}
    return meta


def _records(rng: random.Random, n: int) -> list[DocumentRecord]:
    records = []
    for i in range(n):
        text = rng.choice([None, "alpha", "2020-01-01", "x", "", "1"])
        parent = rng.choice([None, None, None, "p1", ""])
        doc_id = rng.choice([f"d{i}", f"2020-01-{i % 28 + 1:02d}", f"x{i}"]) + f"#{i}"
        records.append(DocumentRecord(id=doc_id, text=text, meta=_random_meta(rng), parent_id=parent))
    return records


def _random_condition(rng: random.Random, depth: int) -> dict[str, Any]:
    if depth > 0 and rng.random() < 0.45:
        conditions = [_random_condition(rng, depth - 1) for _ in range(rng.randint(0, 4))]
        return {"operator": rng.choice(["AND", "OR", "NOT"]), "conditions": conditions}
    operator = rng.choice(OPERATORS)
    if operator in ("in", "not in"):
        value: Any = [rng.choice(FILTER_VALUES) for _ in range(rng.randint(0, 4))]
    else:
        value = rng.choice(FILTER_VALUES)
    return {"field": rng.choice(FIELDS), "operator": operator, "value": value}


def _raw_document(record: DocumentRecord) -> Document:
    return Document(id=record.id, content=record.text, meta=dict(record.meta))


def _expected(records: list[DocumentRecord], filters: dict[str, Any], to_document) -> Any:
    """Matching keys (a full Python scan in key order), or the (type, message) of the error it raises."""
    keys = []
    for record in records:
        try:
            if document_matches_filter(filters=filters, document=to_document(record)):
                keys.append(record.key)
        except Exception as err:  # noqa: BLE001 - the reference raises what Haystack raises
            return type(err), str(err)
    return keys


def _actual(
    table: DocumentTable,
    filters: dict[str, Any],
    to_document,
    store_view: bool,
    checked: list[int] | None = None,
) -> Any:
    def match(batch: list[DocumentRecord]) -> list[bool]:
        if checked is not None:
            checked.append(len(batch))
        return [document_matches_filter(filters=filters, document=to_document(r)) for r in batch]

    try:
        return filter_keys(table, filters, match, store_view=store_view).tolist()
    except Exception as err:  # noqa: BLE001
        return type(err), str(err)


@pytest.mark.parametrize("store_view", [False, True], ids=["raw", "store"])
def test_sql_filters_agree_with_haystack(store_view: bool) -> None:
    rng = random.Random(18 + store_view)
    table = DocumentTable()
    table.insert(_records(rng, 300))
    records = list(table.iter_records(with_embedding=False))
    to_document = record_to_document if store_view else _raw_document
    errors = sql_only = 0
    for _ in range(400):
        filters = _random_condition(rng, depth=3)
        expected = _expected(records, filters, to_document)
        checked: list[int] = []
        assert _actual(table, filters, to_document, store_view, checked) == expected, filters
        sql_only += not checked
        errors += isinstance(expected, tuple)
    assert sql_only > 100 and 30 < errors < 300  # the sample covers SQL-only filters and Haystack's errors


def test_well_typed_data_never_reaches_python() -> None:
    table = DocumentTable()
    metas = [
        {"year": 2015 + i % 10, "kind": "ab"[i % 2], "when": f"2020-01-{i % 28 + 1:02d}"} for i in range(100)
    ]
    table.insert([DocumentRecord(id=f"d{i}", text="t", meta=meta) for i, meta in enumerate(metas)])
    year = {"field": "meta.year", "operator": ">=", "value": 2020}
    cases = [
        year,
        {"operator": "AND", "conditions": [year, {"field": "meta.kind", "operator": "!=", "value": "a"}]},
        {"operator": "NOT", "conditions": [{"field": "id", "operator": "in", "value": ["d1", 1, None]}]},
        {"field": "meta.when", "operator": "==", "value": "2020-01-02T00:00:00"},
        {"field": "meta.when", "operator": "<", "value": "2020-01-03"},
        {"field": "meta.missing", "operator": "!=", "value": 1},
    ]
    records = list(table.iter_records(with_embedding=False))
    for filters in cases:
        expected = _expected(records, filters, _raw_document)
        assert filter_keys(table, filters, _never).tolist() == expected and len(expected) > 3, filters
    assert compile_filter(cases[0]).exact is False  # '>=' raises on strings: Python sees those rows only
    assert compile_filter(cases[1]["conditions"][1]).exact


def test_values_are_bound_never_interpolated() -> None:
    nasty = "x'); DROP TABLE documents; --"
    compiled = compile_filter(
        {
            "operator": "OR",
            "conditions": [
                {"field": f"meta.{nasty}", "operator": "==", "value": nasty},
                {"field": "content", "operator": "in", "value": [nasty, 1]},
            ],
        }
    )
    assert nasty not in compiled.sure.text and "DROP" not in compiled.sure.text
    table = DocumentTable()
    table.insert([DocumentRecord(id="a", text=nasty, meta={nasty: nasty})])
    assert filter_keys(table, {"field": f"meta.{nasty}", "operator": "==", "value": nasty}, _never).size == 1
    assert table.count() == 1


def _never(records: list[DocumentRecord]) -> list[bool]:
    raise AssertionError(f"SQL should decide every row, but Python was asked about {len(records)}")


def test_large_and_deep_filters() -> None:
    table = DocumentTable()
    table.insert([DocumentRecord(id=f"d{i}", text=None, meta={"n": i}) for i in range(50)])
    many = {"field": "meta.n", "operator": "in", "value": list(range(0, 100_000, 2))}
    assert filter_keys(table, many, _never).size == 25
    wide = {
        "operator": "OR",
        "conditions": [{"field": "meta.n", "operator": "==", "value": i} for i in range(2000)],
    }
    assert filter_keys(table, wide, _never).size == 50
    deep: dict[str, Any] = {"field": "meta.n", "operator": ">", "value": 10}
    for _ in range(300):
        deep = {"operator": "AND", "conditions": [deep]}
    assert filter_keys(table, deep, _never).size == 39
    nots: dict[str, Any] = {"field": "meta.n", "operator": "<", "value": 10}
    for _ in range(400):  # nested deeper than SQLite parses: every row is checked in Python
        nots = {"operator": "NOT", "conditions": [nots]}
    assert filter_keys(table, nots, _python).size == 10


def _python(records: list[DocumentRecord]) -> list[bool]:
    return [record.meta["n"] < 10 for record in records]


def test_rows_sqlite_cannot_parse_go_to_python() -> None:
    table = DocumentTable()
    table.insert(
        [
            DocumentRecord(id="nan", text=None, meta={"n": float("nan")}),
            DocumentRecord(id="inf", text=None, meta={"n": float("inf")}),
            DocumentRecord(id="one", text=None, meta={"n": 1}),
        ]
    )
    records = list(table.iter_records(with_embedding=False))
    for op in (">", "!=", "=="):
        filters = {"field": "meta.n", "operator": op, "value": 0}
        assert _actual(table, filters, _raw_document, False) == _expected(records, filters, _raw_document)


def test_malformed_filters_raise() -> None:
    with pytest.raises(FilterError, match="list"):
        compile_filter({"field": "meta.a", "operator": "in", "value": "a"})
    with pytest.raises(FilterError, match="operator"):
        compile_filter({"field": "meta.a", "operator": "~", "value": 1})
    with pytest.raises(FilterError, match="logical"):
        compile_filter({"operator": "XOR", "conditions": []})


def test_keys_feed_faiss_allow_lists() -> None:
    table = DocumentTable()
    keys = table.insert([DocumentRecord(id=f"d{i}", text=None, meta={"even": i % 2 == 0}) for i in range(10)])
    found = filter_keys(table, {"field": "meta.even", "operator": "==", "value": True}, _never)
    assert found.dtype == np.int64 and found.tolist() == keys[::2].tolist()


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_store_filtered_retrieval_returns_top_k(factory: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 8))
    store = WinnowDocumentStore(factory=factory, embedding_dim=8)
    docs = [
        Document(id=f"d{i}", embedding=v.tolist(), meta={"bucket": i % 100}) for i, v in enumerate(vectors)
    ]
    store.write_documents(docs)
    for bucket_filter, allowed in (
        ({"field": "meta.bucket", "operator": "==", "value": 7}, {7}),  # 1% of the documents
        ({"field": "meta.bucket", "operator": "<", "value": 10}, set(range(10))),  # 10%
        ({"field": "meta.bucket", "operator": ">=", "value": 50}, set(range(50, 100))),  # 50%
    ):
        found = store.embedding_retrieval(rng.standard_normal(8).tolist(), filters=bucket_filter, top_k=10)
        assert len(found) == 10 and {d.meta["bucket"] for d in found} <= allowed
        assert store.count_documents_by_filter(bucket_filter) == 30 * len(allowed)
