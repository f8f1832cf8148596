"""BM25 lives with the index: saved in INDEX/bm25/ and listed in the manifest, loaded instead of rebuilt when
it matches the saved table, rebuilt when stale, missing or damaged, and current straight after a write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from winnow.indexes import DocumentRecord, WinnowIndex, read_manifest, verify_index
from winnow.retrieval.bm25 import BM25Retriever
from winnow.retrieval.bm25_index import BM25_FOLDER, bm25_for_index, keep_bm25, table_passages

TEXTS = {
    "rev": "Net revenue increased 12 percent to 4.1 billion dollars in fiscal 2023.",
    "debt": "Long-term debt covenants require a leverage ratio below 3.5.",
    "vax": "Claim: vaccines contain microchips | Rating: False | No vaccine contains a chip.",
    "gas": "The city council banned gas stoves in newly constructed homes starting 2025.",
}
QUERIES = ["revenue increase", "gas stoves", "vaccine chip", "leverage debt"]


def _index(texts: dict[str, str]) -> WinnowIndex:
    index = WinnowIndex.create(4, embedder="tiny")
    x = np.random.default_rng(0).standard_normal((len(texts), 4)).astype(np.float32)
    index.add_records([DocumentRecord(i, t) for i, t in texts.items()], x)
    return index


def _ranking(retriever: BM25Retriever) -> list[list[tuple[str, float]]]:
    return [[(h.id, round(h.score, 5)) for h in hits] for hits in retriever.retrieve_batch(QUERIES, 3)]


def _fresh(index: WinnowIndex) -> BM25Retriever:
    return BM25Retriever(table_passages(index.table))


def test_winnow_index_saves_bm25_and_search_loads_it(
    tmp_path: Path, tiny_bi_encoder_path: str, bm25_builds: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    from winnow.api.cli import main

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in TEXTS.items()))
    out = tmp_path / "idx"
    assert (
        main(["index", "--corpus", str(corpus), "--out", str(out), "--embedder", tiny_bi_encoder_path]) == 0
    )
    manifest = read_manifest(out)
    bm25_files = [f for f in manifest.files if f.startswith(f"{BM25_FOLDER}/")]
    assert f"{BM25_FOLDER}/params.index.json" in bm25_files and f"{BM25_FOLDER}/doc_ids.json" in bm25_files
    assert all((out / f).is_file() for f in bm25_files) and BM25_FOLDER in manifest.attachments
    assert verify_index(out).ok
    bm25_builds.clear()
    capsys.readouterr()

    assert main(["search", "--index", str(out), "--first-stage", "bm25", "--json", "gas stoves"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["id"] == "gas"
    index = WinnowIndex.load(out)
    assert _ranking(bm25_for_index(index)) == _ranking(_fresh(index))
    assert bm25_builds == []  # neither the search nor the load above tokenised the corpus


def test_a_saved_bm25_is_loaded_cached_and_rebuilt_after_a_write(
    tmp_path: Path, bm25_builds: list[int]
) -> None:
    keep_bm25(_index(TEXTS)).save(tmp_path / "idx")
    assert bm25_builds == [4]  # built once, at the save
    index = WinnowIndex.load(tmp_path / "idx")
    first = bm25_for_index(index)
    assert bm25_for_index(index) is first and bm25_builds == [4]

    index.upsert_records([DocumentRecord("zebra", "a zebra crossing")], np.ones((1, 4), np.float32))
    hits = bm25_for_index(index).retrieve("zebra", 1)
    assert [h.id for h in hits] == ["zebra"] and bm25_builds == [4, 5]  # found straight after the write
    index.save(tmp_path / "idx")
    assert bm25_builds == [4, 5]  # the save wrote the current BM25, without rebuilding it
    again = bm25_for_index(WinnowIndex.load(tmp_path / "idx"))
    assert [h.id for h in again.retrieve("zebra", 1)] == ["zebra"] and bm25_builds == [4, 5]


def test_a_stale_bm25_is_rebuilt(tmp_path: Path, bm25_builds: list[int]) -> None:
    keep_bm25(_index(dict(list(TEXTS.items())[:3]))).save(tmp_path / "old")
    keep_bm25(_index(TEXTS)).save(tmp_path / "idx")
    # leave the older table's BM25 in place, as a writer that changed the table without it would
    old, new = read_manifest(tmp_path / "old"), read_manifest(tmp_path / "idx")
    shutil.rmtree(tmp_path / "idx" / BM25_FOLDER)
    shutil.copytree(tmp_path / "old" / BM25_FOLDER, tmp_path / "idx" / BM25_FOLDER)
    for name in [f for f in new.files if f.startswith(f"{BM25_FOLDER}/")]:
        del new.files[name], new.file_stats[name]
    for name in [f for f in old.files if f.startswith(f"{BM25_FOLDER}/")]:
        new.files[name] = old.files[name]
        stat = (tmp_path / "idx" / name).stat()
        new.file_stats[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    new.attachments = old.attachments
    (tmp_path / "idx" / "manifest.json").write_text(new.to_json(), encoding="utf-8")
    assert verify_index(tmp_path / "idx").ok  # intact files, but built from another table
    bm25_builds.clear()

    index = WinnowIndex.load(tmp_path / "idx")
    retriever = bm25_for_index(index)
    assert bm25_builds == [4] and _ranking(retriever) == _ranking(_fresh(index))
    assert retriever.retrieve("gas stoves", 1)[0].id == "gas"


def test_an_index_without_bm25_opens_rebuilds_and_saves_it(tmp_path: Path, bm25_builds: list[int]) -> None:
    _index(TEXTS).save(tmp_path / "idx")  # as saved before BM25 lived with the index
    assert not (tmp_path / "idx" / BM25_FOLDER).exists()
    index = WinnowIndex.load(tmp_path / "idx")
    assert _ranking(bm25_for_index(index)) == _ranking(_fresh(index)) and bm25_builds == [4]
    index.save(tmp_path / "idx")  # a writable owner (the REST service's snapshot) saves it again
    assert bm25_builds == [4] and (tmp_path / "idx" / BM25_FOLDER).is_dir()
    bm25_for_index(WinnowIndex.load(tmp_path / "idx"))
    assert bm25_builds == [4]


def test_verify_flags_a_damaged_bm25_file_which_is_then_rebuilt(
    tmp_path: Path, bm25_builds: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    from winnow.api.cli import main

    keep_bm25(_index(TEXTS)).save(tmp_path / "idx")
    damaged = tmp_path / "idx" / BM25_FOLDER / "data.csc.index.npy"
    blob = bytearray(damaged.read_bytes())
    blob[-1] ^= 0xFF
    damaged.write_bytes(bytes(blob))
    assert list(verify_index(tmp_path / "idx").problems) == [f"{BM25_FOLDER}/data.csc.index.npy"]
    assert main(["index", "--verify", str(tmp_path / "idx")]) == 2
    assert "data.csc.index.npy" in capsys.readouterr().out
    bm25_builds.clear()

    index = WinnowIndex.load(tmp_path / "idx")  # derived data: the index still opens
    assert _ranking(bm25_for_index(index)) == _ranking(_fresh(index)) and bm25_builds == [4]


def test_an_empty_index_saves_no_bm25(tmp_path: Path) -> None:
    index = keep_bm25(WinnowIndex.create(4, embedder="tiny"))
    index.save(tmp_path / "idx")
    assert (
        not (tmp_path / "idx" / BM25_FOLDER).exists() and read_manifest(tmp_path / "idx").attachments is None
    )
