"""DocumentTable: SQLite round-trips, stable keys, batching, backup/load, thread safety."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from winnow.indexes import DocumentRecord, DocumentTable, DuplicateIdError

META = {
    "title": "Ünïcode ✓",
    "nested": {"a": [1, 2.5, None, True, False, {"b": "c"}], "empty": {}},
    "score": 0.125,
    "flag": False,
    "none": None,
    "big": 2**40,
}


def records(n: int, prefix: str = "d", parent: str | None = None) -> list[DocumentRecord]:
    return [DocumentRecord(f"{prefix}{i}", f"text {i}", {"i": i}, parent_id=parent) for i in range(n)]


def test_round_trip_meta_embedding_parent() -> None:
    table = DocumentTable()
    emb = np.random.default_rng(0).standard_normal(7).astype(np.float32)
    original = DocumentRecord("x", "hello", META, parent_id="p", embedding=emb)
    (key,) = table.upsert([original])
    (got,) = table.get(["x"])
    assert got.key == key and got.id == "x" and got.text == "hello" and got.parent_id == "p"
    assert got.meta == META
    assert got.embedding.dtype == np.float32 and np.array_equal(got.embedding, emb)
    assert original.key is None and original.meta is META  # caller's record untouched
    (no_emb,) = table.get(["x"], with_embedding=False)
    assert no_emb.embedding is None and no_emb.meta == META
    table.upsert([DocumentRecord("y", "", {}, embedding=[1.0, 2.0])])
    assert table.get(["y"])[0].embedding.tolist() == [1.0, 2.0] and table.get(["y"])[0].parent_id is None


def test_keys_stable_on_upsert_and_never_reused() -> None:
    table = DocumentTable()
    keys = table.upsert(records(5))
    assert keys.dtype == np.int64 and len(set(keys.tolist())) == 5
    again = table.upsert([DocumentRecord("d3", "changed", {"v": 2}), DocumentRecord("new", "n")])
    assert again[0] == keys[3] and again[1] not in keys
    assert table.get(["d3"])[0].text == "changed" and table.count() == 6
    removed = table.delete(["d4", "nope"])
    assert removed.tolist() == [keys[4]]
    table.delete_all()
    fresh = table.upsert(records(1, prefix="z"))
    assert fresh[0] > max(keys.max(), again.max())  # AUTOINCREMENT: FAISS ids stay unique


def test_insert_existing_raises_and_writes_nothing() -> None:
    table = DocumentTable()
    table.insert(records(3))
    with pytest.raises(DuplicateIdError, match="d1"):
        table.insert([DocumentRecord("fresh", "f"), DocumentRecord("d1", "again")])
    assert table.count() == 3 and table.get(["fresh"]) == [None]
    with pytest.raises(ValueError, match="repeat"):
        table.upsert([DocumentRecord("a", "1"), DocumentRecord("a", "2")])


def test_explicit_keys() -> None:
    table = DocumentTable()
    assert table.insert([DocumentRecord("a", "x", key=100)]).tolist() == [100]
    with pytest.raises(ValueError, match="already has key 100"):
        table.upsert([DocumentRecord("a", "x", key=5)])
    with pytest.raises(ValueError, match="key"):
        table.insert([DocumentRecord("b", "x", key=100)])
    assert table.upsert([DocumentRecord("a", "y", key=100)]).tolist() == [100]


def test_bad_records() -> None:
    table = DocumentTable()
    with pytest.raises(ValueError, match="'bad'.*JSON"):
        table.upsert([DocumentRecord("ok", "t"), DocumentRecord("bad", "t", {"when": object()})])
    with pytest.raises(ValueError, match="non-empty"):
        table.upsert([DocumentRecord("", "t")])
    with pytest.raises(ValueError, match="1-D"):
        table.upsert([DocumentRecord("e", "t", embedding=np.zeros((2, 2)))])
    assert table.count() == 0


def test_lookups_preserve_order_and_batch() -> None:
    table = DocumentTable()
    keys = table.upsert(records(2500))  # > SQLite's 999-variable limit per IN (...)
    ids = [f"d{i}" for i in range(2499, -1, -1)] + ["missing"]
    got = table.get(ids)
    assert [r.id for r in got[:-1]] == ids[:-1] and got[-1] is None
    assert table.keys_for(ids).tolist() == keys[::-1].tolist() + [-1]
    by_key = table.get_by_keys([keys[7], -1, 10**9, keys[0]])
    assert [None if r is None else r.id for r in by_key] == ["d7", None, None, "d0"]
    assert np.array_equal(table.all_keys(), np.sort(keys))
    assert [r.id for r in table.iter_records(batch_size=333)] == [f"d{i}" for i in range(2500)]
    assert table.delete(ids).size == 2500 and table.count() == 0


def test_ids_for_parent() -> None:
    table = DocumentTable()
    table.upsert(records(3, prefix="a#", parent="a") + records(2, prefix="b#", parent="b") + records(1, "c"))
    assert table.ids_for_parent(["a"]) == ["a#0", "a#1", "a#2"]
    assert table.ids_for_parent(["b", "zzz", "a"]) == ["a#0", "a#1", "a#2", "b#0", "b#1"]
    assert table.ids_for_parent([]) == []
    with pytest.raises(TypeError, match="single string"):
        table.get("a#0")


def test_file_backed_backup_and_load(tmp_path: Path) -> None:
    db = tmp_path / "live.sqlite"
    table = DocumentTable(db)
    assert table._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    keys = table.upsert(records(10) + [DocumentRecord("m", "meta", META, embedding=np.ones(3, np.float32))])
    backup = table.backup_to(tmp_path / "copy.sqlite")
    table.close()
    assert not (tmp_path / "copy.sqlite-wal").exists()
    for into_memory in (True, False):
        loaded = DocumentTable.load_from(backup, into_memory=into_memory)
        assert loaded.count() == 11 and np.array_equal(loaded.keys_for(["d0", "m"]), keys[[0, 10]])
        assert loaded.get(["m"])[0].meta == META
        loaded.upsert(records(1, prefix="extra"))
        loaded.close()
    assert DocumentTable.load_from(backup).count() == 12  # only the file-backed load wrote to the file
    reopened = DocumentTable(db)
    assert reopened.count() == 11


def test_load_from_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        DocumentTable.load_from(tmp_path / "nope.sqlite")
    foreign = tmp_path / "other.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="not a winnow document table"):
        DocumentTable.load_from(foreign, into_memory=False)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        DocumentTable.load_from(tmp_path / "junk.sqlite")


def test_concurrent_writers_and_readers() -> None:
    table = DocumentTable()
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for batch in range(10):
                table.upsert(records(20, prefix=f"w{worker}-{batch}-"))
                table.get([f"w{worker}-{batch}-3"])
                table.count()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert table.count() == 4 * 10 * 20 and len(set(table.all_keys().tolist())) == 800


def test_keys_where_runs_sql_over_meta_with_bound_values() -> None:
    table = DocumentTable()
    table.insert(
        DocumentRecord(id=f"d{i}", text=f"t{i}", meta={"year": 2000 + i, "tag": "a" if i % 2 else "b"})
        for i in range(6)
    )
    keys = table.keys_where(
        "json_extract(meta, '$.year') >= ? AND json_extract(meta, '$.tag') = ?", (2002, "a")
    )
    assert [r.id for r in table.get_by_keys(keys)] == ["d3", "d5"]
    assert table.keys_where("id = ?", ("'; DROP TABLE documents; --",)).size == 0
    assert table.count() == 6
