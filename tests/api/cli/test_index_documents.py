"""``winnow index --corpus DIR`` over PDF/HTML files: a corrupt file is named in the report, exit 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.retrieval.test_converters import HTML, PAGES, write_pdf
from winnow.api.cli import main
from winnow.indexes import WinnowIndex


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "filings"
    root.mkdir()
    write_pdf(root / "northwind.pdf", PAGES)
    (root / "contoso.html").write_text(HTML, encoding="utf-8")
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.4\nnot a pdf at all")
    return root


def test_index_reads_pdf_and_html_and_names_the_corrupt_file(
    folder: Path, tmp_path: Path, tiny_bi_encoder_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "index"
    args = ["index", "--corpus", str(folder), "--out", str(out), "--embedder", tiny_bi_encoder_path]
    assert main([*args, "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["documents"] == 2 and report["passages"] == 2
    assert report["skipped_files"] == 1
    assert [s["path"] for s in report["skipped"]] == ["corrupt.pdf"] and report["skipped"][0]["reason"]
    index = WinnowIndex.load(out)
    assert sorted(r.id for r in index.table.iter_records(with_embedding=False)) == [
        "contoso.html",
        "northwind.pdf",
    ]

    assert main([*args, "--device", "cpu"]) == 0  # text summary, same run again
    text = capsys.readouterr().out
    assert "indexed 2 documents" in text and "skipped 1 file(s)" in text and "corrupt.pdf" in text


def test_split_by_sentence_keeps_parent_and_page(
    folder: Path, tmp_path: Path, tiny_bi_encoder_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "index"
    args = ["index", "--corpus", str(folder), "--out", str(out), "--embedder", tiny_bi_encoder_path]
    assert main([*args, "--split-by", "sentence", "--chunk-words", "8", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["chunked"] is True and report["split_by"] == "sentence" and report["skipped_files"] == 1
    index = WinnowIndex.load(out)
    chunks = [r for r in index.table.iter_records(with_embedding=False) if r.parent_id == "northwind.pdf"]
    assert len(chunks) > 2
    assert {r.meta["page_number"] for r in chunks} == {1, 2}
    assert index.extra["split_by"] == "sentence"


def test_missing_converter_package_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from winnow.retrieval import converters

    write_pdf(tmp_path / "a.pdf", PAGES)
    monkeypatch.setitem(converters._CONVERTERS, ".pdf", ("winnow_no_such_module", "PyPDFToDocument", "pypdf"))
    assert main(["index", "--corpus", str(tmp_path), "--out", str(tmp_path / "index")]) == 2
    assert "pip install 'winnow-rerank[convert]'" in capsys.readouterr().err
