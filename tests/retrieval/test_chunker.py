from __future__ import annotations

import pytest

from winnow.retrieval.chunker import chunk_passages, window_spans
from winnow.retrieval.corpus import Passage
from winnow.retrieval.hit import Hit, collapse_to_documents


@pytest.mark.parametrize(
    ("n", "size", "overlap"), [(0, 5, 1), (5, 5, 1), (11, 5, 2), (100, 7, 3), (13, 4, 0)]
)
def test_windows_cover_everything_with_promised_overlap(n, size, overlap):
    spans = window_spans(n, size, size - overlap)
    assert spans[0][0] == 0 and spans[-1][1] == n
    for (s1, e1), (s2, e2) in zip(spans, spans[1:], strict=False):
        assert e1 - s1 == size
        assert e1 - s2 >= overlap  # the last window is aligned to the end, so it may overlap more
        assert e2 <= n


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (5, 5), (5, -1)])
def test_bad_window_parameters(size, overlap):
    with pytest.raises(ValueError):
        chunk_passages([Passage(id="d", text="a b c d e f g h i j k l")], size=size, overlap=overlap)


def test_long_documents_become_chunks_that_keep_their_parent():
    long = Passage(
        id="10K_p3", text=" ".join(f"w{i}" for i in range(50)), title="ACME 10-K", meta={"year": 2023}
    )
    short = Passage(id="s", text="short text")
    chunks = chunk_passages([long, short], size=20, overlap=5)
    assert [c.id for c in chunks] == ["10K_p3#0", "10K_p3#1", "10K_p3#2", "s"]
    assert all(c.parent_id == "10K_p3" and c.title == "ACME 10-K" for c in chunks[:3])
    assert chunks[1].text.split()[0] == "w15"
    assert chunks[1].meta == {"year": 2023, "chunk": 1}
    assert long.meta == {"year": 2023}  # input not mutated
    assert chunks[3] is short and chunks[3].doc_id == "s"


def test_token_chunks_cut_original_text(tiny_bi_encoder_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bi_encoder_path)
    text = "the revenue of the company " * 30
    chunks = chunk_passages([Passage(id="d", text=text)], size=16, overlap=4, unit="tokens", tokenizer=tok)
    assert len(chunks) > 1
    assert all(c.text in text for c in chunks)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        chunk_passages([Passage(id="d", text=text)], unit="tokens")


def test_collapse_keeps_best_chunk_per_document():
    hits = [
        Hit(id="a#0", score=0.2, parent_id="a"),
        Hit(id="b", score=0.5),
        Hit(id="a#1", score=0.9, parent_id="a", text="best"),
    ]
    collapsed = collapse_to_documents(hits)
    assert [(h.id, h.score) for h in collapsed] == [("a", 0.9), ("b", 0.5)]
    assert collapsed[0].text == "best" and collapsed[0].meta["best_chunk"] == "a#1"
