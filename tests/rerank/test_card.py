"""The model card: atomic writes, the README summary, portable model references, the settings read from it."""

from __future__ import annotations

import json
from pathlib import Path

from winnow.rerank.card import (
    CARD_FILE,
    card_depth,
    card_interpolation_weight,
    card_windows,
    describe_model,
    first_stage_only_reason,
    read_card,
    save_card,
    weights_sha256,
    write_card,
)


def test_write_card_replaces_the_card_atomically(tmp_path):
    write_card(tmp_path, {"base": {"model": "m"}})
    write_card(tmp_path, {"base": {"model": "m"}, "interpolation": {"weight": 0.3}})
    assert read_card(tmp_path) == {"base": {"model": "m"}, "interpolation": {"weight": 0.3}}
    assert [p.name for p in tmp_path.iterdir()] == [CARD_FILE]  # no temp file left behind


def test_read_card_of_a_folder_without_one_or_with_a_broken_one(tmp_path):
    assert read_card(tmp_path) is None
    (tmp_path / CARD_FILE).write_text("[1, 2]")
    assert read_card(tmp_path) is None
    assert read_card(tmp_path / "missing") is None


def test_settings_read_from_the_card():
    assert card_interpolation_weight({"interpolation": {"weight": 0.4}}) == 0.4
    assert card_interpolation_weight({"interpolation": {"weight": 1.5}}) is None
    assert card_interpolation_weight(None) is None
    assert card_windows({"windows": False}) is False and card_windows({}) is None
    assert card_windows({"windows": "no"}) is None
    assert card_depth({"depth": 20}) == 20
    assert card_depth({"depth": 0}) is None and card_depth({"depth": True}) is None
    assert card_depth({"depth": "20"}) is None and card_depth(None) is None


def test_a_card_with_weight_zero_keeps_the_first_stage_and_says_what_to_do():
    card = {"interpolation": {"weight": 0.0, "split": "scifact/train, tatqa/dev"}}
    reason = first_stage_only_reason(card, "winnow-general")
    assert reason is not None
    assert "scifact/train, tatqa/dev" in reason and "winnow finetune" in reason and "winnow-general" in reason
    assert first_stage_only_reason({"interpolation": {"weight": 0.2}}, "m") is None
    assert first_stage_only_reason(None, "m") is None  # no card: a pure reranker, not switched off


def test_describe_model_names_and_hashes_a_folder_without_its_path(tiny_cross_encoder_path):
    tiny_cross_encoder_path = Path(tiny_cross_encoder_path)
    described = describe_model(str(tiny_cross_encoder_path), str(tiny_cross_encoder_path))
    assert described == {
        "model": tiny_cross_encoder_path.name,
        "sha256": weights_sha256(tiny_cross_encoder_path),
    }
    assert len(described["sha256"]) == 64
    assert str(tiny_cross_encoder_path.parent) not in json.dumps(described)
    assert describe_model("winnow-general", "/somewhere/winnow-general") == {"model": "winnow-general"}
    assert describe_model("org/model", "org/model") == {"model": "org/model"}  # a hub name


def test_save_card_keeps_one_summary_in_the_readme(tmp_path):
    (tmp_path / "README.md").write_text("# sentence-transformers card\n")
    card = {
        "base": {"model": "m"},
        "max_length": 128,
        "data": {
            "train_pairs": 4,
            "train_positives": 2,
            "train_queries": 2,
            "eval_pairs": 0,
            "eval_queries": 0,
            "sources": [],
        },
        "recipe": {
            "loss": "BCE",
            "batch_size": 16,
            "learning_rate": 5e-5,
            "warmup": 0.1,
            "seed": 42,
            "epochs": 1,
        },
        "training": {"global_steps": 1, "device": "cpu", "seconds": 1.0, "train_loss": 0.5},
        "interpolation": {"weight": 0.5, "source": "set by hand"},
    }
    save_card(tmp_path, card)
    save_card(tmp_path, card)
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# sentence-transformers card")
    assert readme.count("## winnow fine-tuning summary") == 1 and "interpolation weight 0.5" in readme
