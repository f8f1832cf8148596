from __future__ import annotations

import json

import pytest

from api.cli import build_parser, main


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [
        {"_id": "p1", "title": "Northwind 10-K", "text": "net revenue increased to 4.1 billion dollars " * 3},
        {"_id": "p2", "title": "Fact check", "text": "Claim: vaccines contain chips | Rating: False"},
        {"_id": "p3", "text": " ".join(["risk"] * 40 + ["banana"] * 4)},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_help_lists_the_commands():
    text = build_parser().format_help()
    for command in ("index", "search", "quickstart"):
        assert command in text


def test_index_then_search_json(tmp_path, corpus, capsys, tiny_bi_encoder_path, tiny_cross_encoder_path):
    out = tmp_path / "idx"
    summary = _run_json(
        capsys,
        ["index", "--corpus", str(corpus), "--out", str(out), "--embedder", tiny_bi_encoder_path, "--json"],
    )
    assert summary["documents"] == 3 and summary["passages"] == 3 and (out / "manifest.json").is_file()

    result = _run_json(
        capsys, ["search", "--index", str(out), "--top-k", "2", "--json", "--first-stage", "bm25", "banana"]
    )
    assert [r["id"] for r in result["results"]][0] == "p3"
    assert result["results"][0]["rank"] == 1 and "first_stage" in result["timings_ms"]

    reranked = _run_json(
        capsys,
        [
            "search",
            "--index",
            str(out),
            "--reranker",
            tiny_cross_encoder_path,
            "--candidates",
            "3",
            "--top-k",
            "3",
            "--json",
            "net revenue",
        ],
    )
    ranks = [r["rank"] for r in reranked["results"]]
    assert ranks == [1, 2, 3]
    assert {r["first_stage_rank"] for r in reranked["results"]} == {1, 2, 3}
    assert "rerank" in reranked["timings_ms"]


def test_chunked_index_search_returns_document_ids(tmp_path, corpus, capsys, tiny_bi_encoder_path):
    out = tmp_path / "idx"
    summary = _run_json(
        capsys,
        [
            "index",
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--chunk-words",
            "10",
            "--embedder",
            tiny_bi_encoder_path,
            "--json",
        ],
    )
    assert summary["chunked"] and summary["passages"] > 3
    result = _run_json(capsys, ["search", "--index", str(out), "--json", "--top-k", "5", "banana"])
    ids = [r["id"] for r in result["results"]]
    assert sorted(ids) == ["p1", "p2", "p3"]


def test_errors_are_reported_not_raised(tmp_path, capsys, tiny_bi_encoder_path):
    assert main(["search", "--index", str(tmp_path / "missing"), "q"]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["index", "--corpus", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2


def test_corrupted_index_and_bad_flags_exit_2(tmp_path, corpus, capsys, tiny_bi_encoder_path):
    out = tmp_path / "idx"
    argv = ["index", "--corpus", str(corpus), "--out", str(out), "--embedder", tiny_bi_encoder_path]
    assert main(argv) == 0
    data = bytearray((out / "vectors.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "vectors.faiss").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["search", "--index", str(out), "q"]) == 2
    assert "vectors.faiss" in capsys.readouterr().err
    assert main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--chunk-overlap", "3"]) == 2
    assert "--chunk-overlap needs --chunk-words" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--chunk-words", "0"])
    assert exit_info.value.code == 2


@pytest.mark.integration
def test_quickstart_prints_both_stages_and_names_the_reranker(tmp_path, capsys, tiny_cross_encoder_path):
    argv = ["quickstart", "--reranker", tiny_cross_encoder_path, "--index-dir", str(tmp_path / "qs")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "first stage (dense)" in out and "| reranked" in out
    assert f"reranker used: {tiny_cross_encoder_path}" in out
    assert "nDCG@10" in out
