from __future__ import annotations

import json

import pytest

from winnow.api.cli import build_parser, main


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


@pytest.mark.integration
def test_quickstart_with_a_weight_zero_card_says_no_reranker_ran(tmp_path, capsys, tiny_cross_encoder_path):
    from tests.rerank.helpers import model_with_card

    model = model_with_card(tiny_cross_encoder_path, tmp_path / "m", {"interpolation": {"weight": 0.0}})
    assert main(["quickstart", "--reranker", model, "--index-dir", str(tmp_path / "qs")]) == 0
    out = capsys.readouterr().out
    assert "note: reranker" in out and "winnow finetune" in out
    assert "reranker used: none (" in out and "keeps the first stage's order" in out


def test_eval_end_to_end_writes_report_runs_and_compares(
    tmp_path, capsys, tiny_beir_dir, tiny_cross_encoder_path
):
    out = tmp_path / "reports" / "bm25.json"
    argv = ["eval", "--dataset", str(tiny_beir_dir), "--split", "test", "--first-stage", "bm25"]
    argv += [
        "--reranker",
        tiny_cross_encoder_path,
        "--depth",
        "2,10",
        "--out",
        str(out),
        "--max-length",
        "48",
        "--windows",
    ]
    report = _run_json(capsys, [*argv, "--save-runs", str(tmp_path / "runs"), "--json"])
    assert report["reranker"]["windows"] is True and report["reranker"]["titles"] is True
    assert report["queries"] == 12 and report["depth"] == 10 and set(report["depths"]) == {"2", "10"}
    assert report["reranker"]["model"] == tiny_cross_encoder_path and report["latency_ms"]["device"] == "cpu"
    assert (report["reranker"]["max_length"], report["reranker"]["backend"]) == (48, "torch")
    assert json.loads(out.read_text())["metrics"] == report["metrics"]
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").is_file()
    assert (tmp_path / "runs" / "first_stage.trec").is_file() and (
        tmp_path / "runs" / "reranked.trec"
    ).is_file()

    assert (
        main(
            [
                "eval",
                "--dataset",
                str(tiny_beir_dir),
                "--first-stage",
                "bm25",
                "--out",
                str(tmp_path / "fs.json"),
            ]
        )
        == 0
    )
    assert "| nDCG@10 |" in capsys.readouterr().out

    assert main(["eval", "--compare", str(out), str(tmp_path / "fs.json")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| dataset (nDCG@10) | bm25 | bm25 + ")
    assert table[2].startswith("| tinybeir | ")


def test_eval_errors_exit_2(tmp_path, capsys, tiny_beir_dir):
    assert main(["eval", "--dataset", str(tiny_beir_dir), "--first-stage", "bm25"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["eval", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "r.json")]) == 2
    assert "not a BEIR folder" in capsys.readouterr().err
    argv = ["eval", "--dataset", str(tiny_beir_dir), "--split", "dev", "--first-stage", "bm25"]
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 2
    assert "no split 'dev'" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{")
    assert main(["eval", "--compare", str(tmp_path / "junk.json")]) == 2
    assert "not a JSON report" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--dataset", str(tiny_beir_dir), "--depth", "0", "--out", "r.json"])
    assert exc.value.code == 2


def test_search_json_says_how_each_reranked_document_was_read(
    tmp_path, corpus, capsys, tiny_bi_encoder_path, tiny_cross_encoder_path
):
    out = tmp_path / "idx"
    _run_json(
        capsys,
        ["index", "--corpus", str(corpus), "--out", str(out), "--embedder", tiny_bi_encoder_path, "--json"],
    )
    base = ["search", "--index", str(out), "--first-stage", "bm25", "--reranker", tiny_cross_encoder_path]
    base += ["--candidates", "3", "--top-k", "3", "--max-length", "40", "--json"]
    budget = 40 - 3 - 2  # [CLS] q [SEP] d [SEP], the query "banana claim" is two tokens

    windows = {
        r["id"]: r["reading"] for r in _run_json(capsys, [*base, "--windows", "banana claim"])["results"]
    }
    assert windows["p3"]["read"] == "windows" and windows["p3"]["windows"] > 1  # 44 tokens, 35-token windows
    assert windows["p3"]["tokens"] == budget and windows["p3"]["complete"]
    assert windows["p3"]["best_window"] is not None
    assert windows["p2"]["read"] == "whole" and windows["p2"]["tokens"] == 28  # title + text: 28 tokens

    truncated = {
        r["id"]: r["reading"] for r in _run_json(capsys, [*base, "--no-windows", "banana claim"])["results"]
    }
    assert truncated["p3"]["read"] == "truncated" and truncated["p3"]["tokens"] == budget
    assert not truncated["p3"]["complete"] and truncated["p3"]["windows"] == 1


FAILED_CHECK = {
    "cpu_quantization": {
        "default": "torch",
        "reason": "no quantised backend kept nDCG@10 within 0.005 of fp32 on every check set",
    }
}


def test_eval_says_why_the_reranker_runs_fp32_after_its_quality_check_failed(
    tmp_path, capsys, tiny_beir_dir, tiny_cross_encoder_path
):
    from tests.rerank.helpers import model_with_card

    model = model_with_card(tiny_cross_encoder_path, tmp_path / "m", FAILED_CHECK)
    argv = ["eval", "--dataset", str(tiny_beir_dir), "--split", "test", "--first-stage", "bm25"]
    argv += ["--reranker", model, "--depth", "5", "--out", str(tmp_path / "r.json"), "--max-length", "48"]
    report = _run_json(capsys, [*argv, "--json"])  # no --backend: the default, auto
    assert report["reranker"]["backend"] == "torch"
    assert "runs fp32" in report["reranker"]["backend_note"]
    assert "no quantised backend kept nDCG@10" in report["reranker"]["backend_note"]
    assert any("runs fp32" in w for w in report["warnings"])
    assert "runs fp32" in (tmp_path / "r.md").read_text()


def test_backend_choices_of_the_cli_and_the_server_settings_agree():
    import typing

    from winnow.api.cli.options import RERANK_BACKENDS
    from winnow.api.settings import RerankBackend
    from winnow.rerank.engine import BACKENDS

    assert typing.get_args(RerankBackend) == RERANK_BACKENDS
    assert set(RERANK_BACKENDS) == {"auto", *BACKENDS}
