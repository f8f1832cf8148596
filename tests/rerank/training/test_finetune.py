"""Fine-tuning with a tiny random model: a few steps that save, reload, rank, resume and write the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_tiny_beir
from winnow.rerank.card import card_interpolation_weight, read_card, save_card
from winnow.rerank.models import ModelNotFoundError
from winnow.rerank.training.finetune import TrainingRecipe, finetune, resolve_base
from winnow.rerank.training.mining import mine_beir
from winnow.rerank.training.pairs import build_training_set
from winnow.rerank.training.tuning import tune_interpolation
from winnow.retrieval.corpus import load_beir


def _training_set(root: Path, *, dev: bool = False):
    path = write_tiny_beir(root)
    shutil.copy(path / "qrels" / "test.tsv", path / "qrels" / "train.tsv")
    if dev:
        shutil.copy(path / "qrels" / "test.tsv", path / "qrels" / "dev.tsv")
    source = mine_beir(load_beir(path), "train", hard_negatives=2, skip_top=0, random_negatives=2)
    return build_training_set([source], eval_fraction=0.25, min_pairs=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cross_encoder_path):
    root = tmp_path_factory.mktemp("finetune")
    training_set = _training_set(root / "beir")
    out = root / "model"
    card = finetune(
        training_set,
        out,
        base=tiny_cross_encoder_path,
        recipe=TrainingRecipe(max_steps=4, eval_steps=2),
        show_progress=False,
        command="winnow finetune --test",
    )
    return out, card, training_set


def test_saved_folder_loads_with_plain_cross_encoder_and_winnow_engine(trained):
    from sentence_transformers.cross_encoder import CrossEncoder

    from winnow.rerank.engine import CrossEncoderEngine

    out, _, _ = trained
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    docs = ["apple apple apple cell", "debt the company said", "gene protein study", "cash flow"]
    model = CrossEncoder(str(out), device="cpu")
    st_scores = np.asarray(model.predict([("apple", d) for d in docs]))
    engine = CrossEncoderEngine(str(out), device="cpu")
    scores = engine.score("apple", docs)
    assert scores.shape == (4,) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores, st_scores, atol=1e-4)  # raw logits both ways
    assert np.argsort(-scores).tolist() == np.argsort(-st_scores).tolist()
    assert engine.default_activation == "identity"


def test_training_changed_the_weights(trained, tiny_cross_encoder_path):
    from winnow.rerank.engine import CrossEncoderEngine

    out, _, _ = trained
    pairs = [("apple", "apple apple apple cell"), ("vaccine", "the company said debt")]
    before = CrossEncoderEngine(tiny_cross_encoder_path, device="cpu").score_pairs(pairs)
    after = CrossEncoderEngine(str(out), device="cpu").score_pairs(pairs)
    assert not np.allclose(before, after)


def test_model_card_contents(trained, tiny_cross_encoder_path):
    out, card, training_set = trained
    assert read_card(out) == json.loads((out / "winnow.json").read_text())
    from pathlib import Path

    from winnow.rerank.card import weights_sha256

    # the base by name and weights hash, never a machine path
    assert card["base"] == {
        "model": Path(tiny_cross_encoder_path).name,
        "sha256": weights_sha256(tiny_cross_encoder_path),
    }
    assert str(Path(tiny_cross_encoder_path).parent) not in json.dumps(card["base"])
    assert card["data"]["train_pairs"] == len(training_set.train) > 0
    assert card["data"]["eval_queries"] == 3
    assert card["data"]["sources"][0]["name"] == "beir/train"
    recipe = card["recipe"]
    assert (
        recipe["batch_size"],
        recipe["learning_rate"],
        recipe["seed"],
        recipe["warmup"],
        recipe["epochs"],
    ) == (
        16,
        5e-5,
        42,
        0.1,
        1.0,
    )
    assert "BinaryCrossEntropyLoss" in recipe["loss"]
    assert card["training"]["global_steps"] == 4 and card["training"]["device"] == "cpu"
    assert card["max_length"] == 256  # the CPU cap
    cls = card["eval"]["classification"]
    for key in ("accuracy", "f1", "precision", "recall", "average_precision"):
        assert 0.0 <= cls[key] <= 1.0
    assert card["thresholds"]["accuracy"] == cls["accuracy_threshold"]
    assert card["thresholds"]["f1"] == cls["f1_threshold"]
    assert "ndcg@10" in card["eval"]["reranking"] and "base_ndcg@10" in card["eval"]["reranking"]
    assert card["training"]["best_metric"]["name"] == "eval_heldout_ndcg@10"
    weight = card["interpolation"]
    assert 0.0 <= weight["weight"] <= 1.0 and len(weight["grid"]) == 11
    assert "held-apart" in weight["split"]
    assert card["command"] == "winnow finetune --test"
    readme = (out / "README.md").read_text()
    assert "winnow fine-tuning summary" in readme and "winnow finetune --test" in readme
    assert "sentence-transformers" in readme  # sentence-transformers' own card is kept
    assert not (out / "checkpoints").exists()  # removed after a successful run by default


def test_ranker_reads_the_trained_card(trained):
    from haystack import Document

    from winnow.rerank.ranker import WinnowRanker

    out, card, _ = trained
    ranker = WinnowRanker(model=str(out), device="cpu")
    assert ranker.effective_interpolation_weight == card["interpolation"]["weight"]
    docs = [Document(id=str(i), content=t, score=float(i)) for i, t in enumerate(["apple", "debt", "gene"])]
    assert len(ranker.run(query="apple", documents=docs)["documents"]) == 3


def test_resume_from_checkpoint(tmp_path, tiny_cross_encoder_path):
    training_set = _training_set(tmp_path / "beir")
    out = tmp_path / "model"
    first = finetune(
        training_set,
        out,
        base=tiny_cross_encoder_path,
        recipe=TrainingRecipe(max_steps=2, eval_steps=2),
        show_progress=False,
        keep_checkpoints=True,
        tune_weight_split=None,
    )
    assert first["training"]["resumed_from"] is None and first["interpolation"] is None
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    second = finetune(
        training_set,
        out,
        base=tiny_cross_encoder_path,
        recipe=TrainingRecipe(max_steps=4, eval_steps=2),
        show_progress=False,
        tune_weight_split=None,
    )
    assert second["training"]["resumed_from"].endswith("checkpoint-2")
    assert second["training"]["global_steps"] == 4
    assert [e["step"] for e in second["training"]["loss_history"]][-1] == 4


def test_weight_is_tuned_on_dev_when_there_is_one(tmp_path, tiny_cross_encoder_path):
    training_set = _training_set(tmp_path / "beir", dev=True)
    card = finetune(
        training_set,
        tmp_path / "model",
        base=tiny_cross_encoder_path,
        recipe=TrainingRecipe(max_steps=1),
        show_progress=False,
    )
    assert card["interpolation"]["split"] == "beir/dev" and card["interpolation"]["queries"] == 12


def test_missing_base_fails_before_any_work(tmp_path):
    training_set = _training_set(tmp_path / "beir")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        finetune(training_set, tmp_path / "model", base=str(tmp_path / "no-such-model"))
    assert not (tmp_path / "model").exists()
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_base("some-org/some-hub-model")


def test_bad_settings_are_refused_before_training(tmp_path, tiny_cross_encoder_path):
    training_set = _training_set(tmp_path / "beir")
    with pytest.raises(ValueError, match="warmup"):
        TrainingRecipe(warmup=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        TrainingRecipe(batch_size=0)
    with pytest.raises(ValueError, match="test split"):
        finetune(training_set, tmp_path / "m", base=tiny_cross_encoder_path, tune_weight_split="test")
    with pytest.raises(ValueError, match="no 'dev' split"):
        finetune(training_set, tmp_path / "m", base=tiny_cross_encoder_path, tune_weight_split="dev")
    assert not (tmp_path / "m").exists()


def test_fp16_copy_loads_and_scores_like_the_original(trained, tmp_path):
    import torch
    from safetensors.torch import load_file
    from sentence_transformers.cross_encoder import CrossEncoder

    from winnow.rerank.engine import CrossEncoderEngine
    from winnow.rerank.training.finetune import save_fp16_copy

    out, _, _ = trained
    half = save_fp16_copy(out, tmp_path / "half")
    assert (half / "winnow.json").is_file() and (half / "README.md").is_file()
    assert (
        sum(f.stat().st_size for f in half.glob("*.safetensors")) < (out / "model.safetensors").stat().st_size
    )
    docs = ["apple apple apple cell", "debt the company said", "gene protein study"]
    full = CrossEncoderEngine(str(out), device="cpu").score("apple", docs)
    np.testing.assert_allclose(
        CrossEncoderEngine(str(half), device="cpu").score("apple", docs), full, atol=1e-2
    )
    plain = CrossEncoder(str(half), device="cpu")  # stored fp16, computed fp32 (fp16 on CPU is slow)
    assert next(plain.model.parameters()).dtype == torch.float32
    assert plain.predict([("apple", docs[0])]).shape == (1,)
    stored = {t.dtype for f in half.glob("*.safetensors") for t in load_file(str(f)).values()}
    assert stored == {torch.float16}


def test_save_card_records_a_hand_set_weight_in_card_and_readme(trained, tmp_path):

    out, card, _ = trained
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    card = {**card, "interpolation": {"weight": 0.5, "source": "stated prior", "split": None}}
    save_card(copy, card)
    save_card(copy, card)  # idempotent: one winnow summary in the README
    assert card_interpolation_weight(read_card(copy)) == 0.5
    readme = (copy / "README.md").read_text()
    assert readme.count("## winnow fine-tuning summary") == 1
    assert "- interpolation weight 0.5 (stated prior)" in readme


def test_a_mixed_model_records_what_each_dataset_would_choose(trained, tmp_path):
    out, _, _ = trained
    sources = []
    for name in ("alpha", "beta"):
        path = write_tiny_beir(tmp_path / name)
        for split in ("train", "dev"):
            shutil.copy(path / "qrels" / "test.tsv", path / "qrels" / f"{split}.tsv")
        sources.append(mine_beir(load_beir(path), "train", hard_negatives=2, skip_top=0))
    tuning = tune_interpolation(out, build_training_set(sources, min_pairs=0), depth=10)
    per = tuning.info["per_dataset"]
    assert set(per) == {"alpha/dev", "beta/dev"}
    assert sum(row["queries"] for row in per.values()) == tuning.queries == 24
    pooled = tuning.to_dict()
    for row in per.values():  # two copies of one set: each alone scores what the pool scores
        assert row["weight"] == pooled["weight"]
        assert row["ndcg_interpolated"] == pytest.approx(pooled["ndcg_interpolated"], abs=1e-6)
        assert row["ndcg_first_stage"] == pytest.approx(pooled["ndcg_first_stage"], abs=1e-6)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    save_card(copy, {**read_card(copy), "interpolation": pooled})
    assert "alpha/dev alone (12 queries) would choose" in (copy / "README.md").read_text()
