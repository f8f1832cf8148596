"""`winnow finetune` on the tiny BEIR folder, and `winnow eval` reading the weight it tuned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import winnow.rerank.training.mining as mining
from winnow.api.cli import build_parser, main


@pytest.fixture()
def beir_train(tiny_beir_dir):
    shutil.copy(tiny_beir_dir / "qrels" / "test.tsv", tiny_beir_dir / "qrels" / "train.tsv")
    return tiny_beir_dir


def test_help_lists_finetune():
    assert "finetune" in build_parser().format_help()


def test_finetune_then_eval(tmp_path, beir_train, tiny_cross_encoder_path, capsys):
    from sentence_transformers.cross_encoder import CrossEncoder

    out = tmp_path / "model"
    pairs = tmp_path / "extra.tsv"
    pairs.write_text("query\tdocument\tlabel\napple\tapple cell\t1\napple\tdebt report\t0\n")
    argv = [
        "finetune",
        "--dataset",
        str(beir_train),
        "--pairs",
        str(pairs),
        "--out",
        str(out),
        "--base",
        tiny_cross_encoder_path,
        "--max-steps",
        "2",
        "--hard-negatives",
        "2",
        "--random-negatives",
        "1",
        "--eval-fraction",
        "0.25",
        "--json",
    ]
    assert main(argv) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["training"]["global_steps"] == 2
    assert {s["name"] for s in card["data"]["sources"]} == {"tinybeir/train", "extra.tsv"}
    assert card["data"]["sources"][1]["hard_negatives"] == 2
    assert card["command"].startswith("winnow finetune --dataset") and "--max-steps 2" in card["command"]
    assert (
        json.loads((out / "winnow.json").read_text())["interpolation"]["weight"]
        == card["interpolation"]["weight"]
    )
    assert CrossEncoder(str(out), device="cpu").predict([("apple", "apple cell")]).shape == (1,)

    report = tmp_path / "r.json"
    eval_argv = ["eval", "--dataset", str(beir_train), "--split", "test", "--first-stage", "bm25"]
    eval_argv += ["--reranker", str(out), "--out", str(report), "--json"]
    assert main([*eval_argv, "--interpolation-weight", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["interpolation"] == {"weight": 0.0, "source": "argument"}
    assert data["metrics"]["interpolated"] == data["metrics"]["first_stage"]  # weight 0 = the first stage
    assert "Interpolated reranker" in report.with_suffix(".md").read_text()

    assert main(eval_argv) == 0  # no flag: the weight comes from the model card
    data = json.loads(capsys.readouterr().out)
    assert data["interpolation"] == {"weight": card["interpolation"]["weight"], "source": "model card"}
    assert "reranked" in data["metrics"] and "interpolated" in data["metrics"]


def test_missing_base_exits_2_before_mining(tmp_path, beir_train, capsys, monkeypatch):

    def fail(*args, **kwargs):
        raise AssertionError("mining ran before the base was checked")

    monkeypatch.setattr(mining, "mine_beir", fail)
    argv = [
        "finetune",
        "--dataset",
        str(beir_train),
        "--out",
        str(tmp_path / "m"),
        "--base",
        str(tmp_path / "nope"),
    ]
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_bad_labels_and_bad_arguments_exit_2(tmp_path, beir_train, tiny_cross_encoder_path, capsys):
    pairs = tmp_path / "claims.csv"
    pairs.write_text("query,document,label\nclaim,fact-check,1\nclaim,other,-1\n")
    base = ["finetune", "--out", str(tmp_path / "m"), "--base", tiny_cross_encoder_path]
    assert main([*base, "--pairs", str(pairs)]) == 2
    err = capsys.readouterr().err
    assert f"{pairs}:3" in err and "outside [0, 1]" in err
    assert main(base) == 2
    assert "needs training data" in capsys.readouterr().err
    assert main([*base, "--dataset", str(beir_train), "--split", "test"]) == 2
    assert "test split" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--interpolation-weight", "2"])


def test_first_stage_and_index_are_given_once_or_once_per_dataset(tmp_path, beir_train, capsys, monkeypatch):

    seen = []

    def record(path, split, **kwargs):
        seen.append((Path(path).name, kwargs["first_stage"], kwargs["index"]))
        if len(seen) == 2:
            raise ValueError("stop after mining")

    monkeypatch.setattr(mining, "mine_beir", record)
    base = ["finetune", "--out", str(tmp_path / "m"), "--dataset", str(beir_train), "--dataset", "b"]
    assert main([*base, "--first-stage", "dense", "--index", "i1", "--index", "i2"]) == 2
    assert "stop after mining" in capsys.readouterr().err
    assert seen == [(beir_train.name, "dense", Path("i1")), ("b", "dense", Path("i2"))]
    assert main([*base, "--first-stage", "dense", "--first-stage", "bm25", "--first-stage", "hybrid"]) == 2
    assert "--first-stage was given 3 times for 2 --dataset" in capsys.readouterr().err
    assert len(seen) == 2  # refused before any mining
