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
