"""Real documents in: PDF/HTML/DOCX folders through Haystack's converters, skipped files, chunk pages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from winnow.retrieval import converters
from winnow.retrieval.chunker import chunk_passages
from winnow.retrieval.converters import MissingConverterError
from winnow.retrieval.corpus import load_corpus, load_document_folder

PAGES = [
    "Net revenue grew to 4.1 billion dollars. Operating margin fell on higher costs. Cash flow was strong.",
    "Risk factors include interest rates. Supply chains may fail! Will demand hold? Nobody knows yet.",
]
HTML = (
    "<html><head><title>Contoso 10-K</title></head><body><nav>Home | About</nav><article>"
    "<h1>Annual report</h1><p>Dividends were paid quarterly to all holders of common shares during the "
    "fiscal year, and the board expects to keep paying them.</p></article></body></html>"
)


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A small text PDF, one ``pages`` entry per page (reportlab)."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path))
    for page in pages:
        text = pdf.beginText(72, 720)
        for line in textwrap.wrap(page, 80):
            text.textLine(line)
        pdf.drawText(text)
        pdf.showPage()
    pdf.save()
    return path


def write_docx(path: Path, paragraphs: list[str]) -> Path:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    document.save(str(path))
    return path


def document_folder(root: Path, *, corrupt: bool = True) -> Path:
    """A PDF (two pages), an HTML page, a DOCX, a text file and (``corrupt``) a PDF that is not one."""
    (root / "filings").mkdir(parents=True)
    write_pdf(root / "filings" / "northwind.pdf", PAGES)
    (root / "contoso.html").write_text(HTML, encoding="utf-8")
    write_docx(root / "memo.docx", ["Board memo.", "The audit committee met four times."])
    (root / "notes.txt").write_text("plain text notes about gene expression", encoding="utf-8")
    if corrupt:
        (root / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    return root


def test_folder_of_documents_is_read_and_a_bad_file_is_skipped(tmp_path: Path) -> None:
    result = load_document_folder(document_folder(tmp_path))
    by_id = {p.id: p for p in result.passages}
    assert sorted(by_id) == ["contoso.html", "filings/northwind.pdf", "memo.docx", "notes.txt"]
    pdf = by_id["filings/northwind.pdf"]
    assert pdf.meta == {"path": "filings/northwind.pdf", "file_type": "pdf", "pages": 2}
    assert pdf.title == "northwind" and "\f" in pdf.text
    assert "4.1 billion" in pdf.text and "Risk factors" in pdf.text.split("\f")[1]
    assert "Dividends were paid quarterly" in by_id["contoso.html"].text
    assert "Home | About" not in by_id["contoso.html"].text  # trafilatura keeps the main text
    assert "audit committee" in by_id["memo.docx"].text
    assert by_id["memo.docx"].meta["file_type"] == "docx"
    assert [s.path for s in result.skipped] == ["broken.pdf"]
    assert result.skipped[0].reason  # says why (pypdf's error, through the converter's warning)
    assert [p.id for p in load_corpus(tmp_path)] == [p.id for p in result.passages]


def test_a_file_with_no_text_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "empty.html").write_text("<html><body></body></html>", encoding="utf-8")
    (tmp_path / "ok.txt").write_text("some text", encoding="utf-8")
    result = load_document_folder(tmp_path)
    assert [p.id for p in result.passages] == ["ok.txt"]
    assert [s.path for s in result.skipped] == ["empty.html"]
    assert "text" in result.skipped[0].reason


def test_missing_converter_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    monkeypatch.setitem(converters._CONVERTERS, ".pdf", ("winnow_no_such_module", "PyPDFToDocument", "pypdf"))
    with pytest.raises(MissingConverterError, match=r"pypdf.*pip install 'winnow-rerank\[convert\]'"):
        load_document_folder(tmp_path)


@pytest.mark.parametrize("split_by", ["word", "sentence", "passage"])
def test_chunks_keep_parent_id_and_page_number(tmp_path: Path, split_by: str) -> None:
    write_pdf(tmp_path / "r.pdf", PAGES)
    (pdf,) = load_document_folder(tmp_path).passages
    chunks = chunk_passages([pdf], size=8, overlap=0, split_by=split_by)
    assert len(chunks) > 2
    assert all(c.parent_id == "r.pdf" and c.id == f"r.pdf#{c.meta['chunk']}" for c in chunks)
    assert all(c.meta["path"] == "r.pdf" and c.meta["pages"] == 2 for c in chunks)
    pages = [c.meta["page_number"] for c in chunks]
    assert pages == sorted(pages) and pages[0] == 1 and pages[-1] == 2
    page_words = [set(page.split()) for page in pdf.text.split("\f")]
    assert all(c.text.split()[0] in page_words[c.meta["page_number"] - 1] for c in chunks)  # where it starts
    assert all(len(c.text.split()) <= 8 for c in chunks)
    if split_by != "word":  # chunks end at sentence ends
        assert all(c.text.rstrip().endswith((".", "!", "?")) for c in chunks)


def test_split_by_is_checked() -> None:
    from winnow.retrieval.corpus import Passage

    with pytest.raises(ValueError, match="split_by"):
        chunk_passages([Passage(id="d", text="a b c")], split_by="page")
