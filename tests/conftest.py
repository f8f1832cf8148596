"""Shared fixtures: tiny random models (a few hundred KB) and paths to the shared datasets."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

# Tests never reach a hub or send telemetry (the machines have no network; CI neither).
for _var, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HAYSTACK_TELEMETRY_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_var, _value)

DATASETS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

_WORDS = (
    "the a an of to in and or is are was were be been for on with by at from as that this it its revenue "
    "income net total cash flow operating expenses year fiscal quarter million billion company shares "
    "stock claim false true fact check vaccine president tax said report risk factors market sales profit "
    "loss debt interest rate growth percent increase decrease capital assets liabilities equity dividend "
    "apple banana cherry query document relevant answer question science cell protein gene study"
).split()


def _vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    return list(dict.fromkeys(specials + chars + pieces + _WORDS))


def build_tiny_bert(folder: Path, *, num_labels: int | None = None, max_position: int = 512) -> Path:
    """Save a tiny random BERT (hidden 32, 2 layers) with a word-piece tokenizer into ``folder``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(_vocab())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=max_position)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position,
    )
    if num_labels is None:
        model = BertModel(config)
    else:
        config.num_labels = num_labels
        model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bi_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random sentence-transformers bi-encoder folder (mean pooling, 32-d)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    base = build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
    transformer = Transformer(str(base), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    out = tmp_path_factory.mktemp("tiny-bi-encoder")
    model.save(str(out))
    return str(out)


@pytest.fixture(scope="session")
def tiny_cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random cross-encoder folder (one raw-logit label) that ``CrossEncoder(path)`` loads."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny-cross-encoder"), num_labels=1))


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """``../shared/datasets``; tests that need it skip when it is absent."""
    if not DATASETS_DIR.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS_DIR}")
    return DATASETS_DIR


def dataset_or_skip(name: str) -> Path:
    path = DATASETS_DIR / name
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"dataset {name!r} not found at {path}")
    return path
