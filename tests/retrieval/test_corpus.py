from __future__ import annotations

import json

import pytest

from winnow.retrieval.corpus import (
    CorpusFormatError,
    load_beir,
    load_corpus,
    sample_dataset_path,
)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_jsonl_corpus_reads_ids_titles_and_metadata(tmp_path):
    path = tmp_path / "docs.jsonl"
    _write_jsonl(
        path,
        [{"_id": 1, "title": "T", "text": "alpha", "metadata": {"k": [1, 2]}}, {"id": "b", "text": "beta"}],
    )
    docs = load_corpus(path)
    assert [d.id for d in docs] == ["1", "b"]
    assert docs[0].title == "T" and docs[0].meta == {"k": [1, 2]}
    assert docs[0].full_text() == "T. alpha" and docs[1].full_text() == "beta"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n', "duplicate document id"),
        ('{"_id": "a"}\n', "needs an '_id'"),
        ("not json\n", ":1: not valid JSON"),
        ("[1, 2]\n", "expected a JSON object"),
    ],
)
def test_jsonl_corpus_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(CorpusFormatError, match=message):
        load_corpus(path)


def test_text_folder_is_one_document_per_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("first doc")
    (tmp_path / "sub" / "b.md").write_text("# second")
    (tmp_path / "skip.pdf").write_text("binary")
    docs = load_corpus(tmp_path)
    assert [d.id for d in docs] == ["a.txt", "sub/b.md"]
    assert docs[1].text == "# second"


def test_missing_and_empty_inputs_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_corpus(tmp_path / "nope")
    with pytest.raises(CorpusFormatError, match="no corpus.jsonl"):
        load_corpus(tmp_path)
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(CorpusFormatError, match="must be .jsonl"):
        load_corpus(tmp_path / "x.csv")


def test_bundled_sample_is_a_valid_beir_folder():
    data = load_beir(sample_dataset_path())
    assert len(data.corpus) >= 200
    ids = {d.id for d in data.corpus}
    queries = data.split_queries("test")
    assert len(queries) >= 10
    for qid, judged in data.qrels["test"].items():
        assert qid in data.queries
        assert set(judged) <= ids
    with pytest.raises(ValueError, match="no split 'train'"):
        data.split_queries("train")


def test_beir_slice_of_shared_scifact(datasets_dir):
    data = load_beir(datasets_dir / "scifact")
    assert len(data.corpus) == 5183
    assert len(data.split_queries("test")) == 300
