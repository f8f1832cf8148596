"""Shared fixtures: tiny random models (a few hundred KB) and paths to the shared datasets."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.ray_cluster",  # the session's local Ray cluster (fixture ray_local)
    "tests.postgres_server",  # the session's bundled PostgreSQL + pgvector (fixture postgres_server)
]

# Tests never reach a hub or send telemetry (the machines have no network; CI neither).
for _var, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HAYSTACK_TELEMETRY_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
    # fp32 on every CPU, so scores compare exactly on machines with and without native bf16 (subprocesses
    # inherit it); the bf16 path has tests of its own that set dtype explicitly.
    "WINNOW_CPU_BF16": "0",
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


# --------------------------------------------------------------------------- tiny BEIR folder (evaluation)
_TOPICS = ("apple", "banana", "cherry", "revenue", "vaccine", "protein", "gene", "dividend", "debt", "equity")
_FILLER = "the company said that market growth and capital assets were in the fiscal year report"


def write_tiny_beir(root: Path) -> Path:
    """A 30-document, 12-query BEIR folder where BM25 is imperfect but every query finds candidates.

    Queries ``q0..q11`` each name one topic word. Three kinds (by ``q % 4``): 0 -> the relevant document
    repeats the word and wins under BM25 over a distractor; 1, 2 -> a distractor repeats it and beats the
    relevant document; 3 -> the relevant document is the only candidate. Document ``q3`` is the text of query
    q3 itself (arguana-style self-hit). Relevant documents are ``rel-q*`` (grade 1, ``rel-q0`` grade 2).
    """
    import json

    root.mkdir(parents=True, exist_ok=True)
    words = [*_TOPICS, "cash", "interest"]
    corpus, queries, qrels = [], [], []
    for q, word in enumerate(words):
        qid = f"q{q}"
        queries.append({"_id": qid, "text": word})
        kind = q % 4
        if kind == 0:
            corpus.append({"_id": f"rel-{qid}", "title": "", "text": f"{word} {word} {word} cell"})
            corpus.append({"_id": f"dis-{qid}", "title": "", "text": f"{word} {_FILLER}"})
        elif kind in (1, 2):
            corpus.append({"_id": f"rel-{qid}", "title": "", "text": f"{word} {_FILLER}"})
            corpus.append({"_id": f"dis-{qid}", "title": "", "text": f"{word} {word} {word} cell"})
        else:
            corpus.append({"_id": f"rel-{qid}", "title": "", "text": f"{word} {_FILLER}"})
        qrels.append((qid, f"rel-{qid}", 2 if q == 0 else 1))
    corpus.append({"_id": "q3", "title": "", "text": words[3]})
    noise = ("sales profit loss", "tax said report", "shares stock total", "percent increase decrease")
    while len(corpus) < 30:
        corpus.append({"_id": f"noise-{len(corpus)}", "title": "", "text": noise[len(corpus) % len(noise)]})
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (root / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, d, g in qrels]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def tiny_beir_dir(tmp_path: Path) -> Path:
    """A tiny synthetic BEIR folder (30 documents, 12 queries, split ``test``): see ``write_tiny_beir``."""
    return write_tiny_beir(tmp_path / "tinybeir")


@pytest.fixture()
def bm25_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many passages each BM25 build tokenised (a loaded BM25 builds nothing)."""
    from winnow.retrieval import bm25_index

    calls: list[int] = []
    real = bm25_index.build_bm25

    def spy(passages, **kwargs):
        calls.append(len(passages))
        return real(passages, **kwargs)

    monkeypatch.setattr(bm25_index, "build_bm25", spy)
    return calls
