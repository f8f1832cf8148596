"""`winnow tune`: windows or truncation, and the weight, chosen on a dev split or held-apart queries and
written to the model card that every winnow command reads."""

from __future__ import annotations

import json
import shutil

import pytest

from winnow.api.cli import main


@pytest.fixture()
def trained(tmp_path, tiny_beir_dir, tiny_cross_encoder_path, capsys):
    """A two-step model fine-tuned on the tiny BEIR folder, which gets train and dev copies of its qrels."""
    for split in ("train", "dev"):
        shutil.copy(tiny_beir_dir / "qrels" / "test.tsv", tiny_beir_dir / "qrels" / f"{split}.tsv")
    out = tmp_path / "model"
    argv = ["finetune", "--dataset", str(tiny_beir_dir), "--out", str(out), "--base", tiny_cross_encoder_path]
    argv += ["--max-steps", "2", "--hard-negatives", "2", "--eval-fraction", "0.25", "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    return out, tiny_beir_dir


@pytest.mark.parametrize("split", ["dev", "heldout"])
def test_tune_records_the_choice_in_the_card(trained, capsys, split):
    model, dataset = trained
    before = json.loads((model / "winnow.json").read_text())
    argv = ["tune", "--model", str(model), "--dataset", str(dataset), "--split", split]
    assert main([*argv, "--first-stage", "bm25", "--depth", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    card = json.loads((model / "winnow.json").read_text())
    assert isinstance(card["windows"], bool) and card["windows"] == printed["windows"]
    chosen = card["interpolation"]
    assert set(chosen["by_windows"]) == {"true", "false"}
    assert chosen["truncation_vs_windows"]["rule"].startswith("truncation only when")
    assert chosen["previous"] == before["interpolation"]  # the earlier tuning is kept
    assert chosen["split"].startswith("tinybeir/" + ("dev" if split == "dev" else "heldout"))
    assert "## winnow fine-tuning summary" in (model / "README.md").read_text()


def test_tune_refuses_a_test_split_and_a_model_without_a_card(trained, tmp_path, capsys):
    model, dataset = trained
    assert main(["tune", "--model", str(model), "--dataset", str(dataset), "--split", "test"]) == 2
    assert "never tune on a test split" in capsys.readouterr().err
    bare = tmp_path / "bare"
    shutil.copytree(model, bare)
    (bare / "winnow.json").unlink()
    assert main(["tune", "--model", str(bare), "--dataset", str(dataset)]) == 2
    assert "no winnow.json model card" in capsys.readouterr().err


def test_tuning_set_specs_parse_and_never_name_a_test_split():
    import argparse

    from winnow.api.cli.tune import tuning_set_spec

    assert tuning_set_spec("../d/scifact,split=train,first_stage=hybrid,index=work/i") == {
        "dataset": "../d/scifact",
        "split": "train",
        "first_stage": "hybrid",
        "index": "work/i",
    }
    assert tuning_set_spec("d,first-stage=bm25") == {"dataset": "d", "first_stage": "bm25"}
    for bad in ("d,split=test", "d,first_stage=sparse", "d,depth=3", "d,split"):
        with pytest.raises(argparse.ArgumentTypeError):
            tuning_set_spec(bad)


def test_tune_across_sets_records_the_defaults_every_path_reads(trained, tmp_path, capsys):
    model, dataset = trained
    other = tmp_path / "otherset"  # a set the model never trained on
    shutil.copytree(dataset, other)
    cache = tmp_path / "cache"
    argv = ["tune", "--model", str(model), "--set", f"{other},split=dev,first_stage=bm25", "--depth", "5"]
    assert main([*argv, "--cache", str(cache), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    card = json.loads((model / "winnow.json").read_text())
    assert card["depth"] == printed["depth"] and card["depth"] in (5, 10)
    assert card["windows"] == printed["windows"] and card["interpolation"]["weight"] == printed["weight"]
    assert card["defaults"]["per_set"]["otherset/dev"]["queries"] > 0
    assert card["interpolation"]["split"] == "otherset/dev"
    assert len(list(cache.iterdir())) == 2  # one scored run per reading, reused by a rerun
    assert main([*argv, "--cache", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weight"] == printed["weight"]
    # the set it was trained on is refused
    assert main(["tune", "--model", str(model), "--set", f"{dataset},split=dev"]) == 2
    assert "was trained on" in capsys.readouterr().err
