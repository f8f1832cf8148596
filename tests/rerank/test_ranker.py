from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest
import torch
from haystack import Document, Pipeline
from haystack.utils import ComponentDevice
from transformers import AutoTokenizer

from winnow.rerank.engine import sigmoid
from winnow.rerank.ranker import WinnowRanker

QUERY = "which fruit"


@pytest.fixture(scope="module")
def model_path(tiny_cross_encoder_path: str) -> str:
    return tiny_cross_encoder_path


@pytest.fixture(scope="module")
def word_ids(model_path: str) -> tuple[int, int]:
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return tokenizer.convert_tokens_to_ids("banana"), tokenizer.convert_tokens_to_ids("apple")


def _stub_forward(banana: int, apple: int):
    """Raw logit = 3 * #banana + #apple - 1.5 over attended tokens: both signs, easy to predict."""

    def forward(input_ids, attention_mask, token_type_ids):
        attended = attention_mask == 1
        n_banana = ((input_ids == banana) & attended).sum(dim=1)
        n_apple = ((input_ids == apple) & attended).sum(dim=1)
        return (3.0 * n_banana + n_apple).float() - 1.5

    return forward


def _expected_raw(text: str) -> float:
    words = text.lower().split()
    return 3.0 * words.count("banana") + words.count("apple") - 1.5


@pytest.fixture
def make_ranker(model_path: str, word_ids: tuple[int, int], monkeypatch: pytest.MonkeyPatch):
    def make(**kwargs) -> WinnowRanker:
        kwargs.setdefault("device", "cpu")
        ranker = WinnowRanker(model=model_path, **kwargs)
        ranker.warm_up()
        monkeypatch.setattr(ranker._engine, "_forward", _stub_forward(*word_ids))
        return ranker

    return make


def _docs() -> list[Document]:
    return [
        Document(id="cherry", content="cherry", score=0.9),
        Document(id="banana", content="a banana", score=0.1),
        Document(id="apple", content="an apple", score=0.5),
        Document(id="two-apples", content="apple and apple", score=0.3),
        Document(id="none", content="the report", score=0.2),
    ]


# ---------------------------------------------------------------- serialisation


def test_to_dict_mirrors_init_and_round_trips(model_path: str):
    ranker = WinnowRanker(
        model=model_path,
        device="cpu",
        top_k=4,
        query_prefix="query: ",
        document_prefix="passage: ",
        meta_fields_to_embed=["title"],
        embedding_separator=" | ",
        scale_score=False,
        score_threshold=0.0,
        max_length=128,
        windows=False,
        batch_size=8,
    )
    data = ranker.to_dict()
    assert data == {
        "type": "winnow.rerank.ranker.WinnowRanker",
        "init_parameters": {
            "model": model_path,
            "device": "cpu",
            "top_k": 4,
            "query_prefix": "query: ",
            "document_prefix": "passage: ",
            "meta_fields_to_embed": ["title"],
            "embedding_separator": " | ",
            "scale_score": False,
            "score_threshold": 0.0,
            "max_length": 128,
            "windows": False,
            "batch_size": 8,
            "interpolation_weight": None,
        },
    }
    restored = WinnowRanker.from_dict(data)
    assert restored.to_dict() == data
    assert restored._engine is None  # from_dict does not load the model

    defaults = WinnowRanker(model=model_path).to_dict()["init_parameters"]
    assert defaults["top_k"] == 10 and defaults["scale_score"] is True and defaults["score_threshold"] is None
    assert defaults["windows"] is None  # the model card's choice, else windows


def test_component_device_round_trips(model_path: str):
    ranker = WinnowRanker(model=model_path, device=ComponentDevice.from_str("cpu"))
    data = ranker.to_dict()
    assert data["init_parameters"]["device"] == ComponentDevice.from_str("cpu").to_dict()
    restored = WinnowRanker.from_dict(data)
    assert isinstance(restored.device, ComponentDevice)
    assert restored.to_dict() == data
    restored.warm_up()
    assert restored._engine.device == "cpu"


# ---------------------------------------------------------------- run-time parameters


def test_ranks_by_raw_logits_and_honours_top_k(make_ranker):
    ranker = make_ranker(top_k=3, scale_score=False)
    out = ranker.run(query=QUERY, documents=_docs())["documents"]
    assert [d.id for d in out] == ["banana", "two-apples", "apple"]
    assert [d.score for d in out] == [1.5, 0.5, -0.5]

    assert [d.id for d in ranker.run(query=QUERY, documents=_docs(), top_k=1)["documents"]] == ["banana"]
    assert len(ranker.run(query=QUERY, documents=_docs(), top_k=10)["documents"]) == 5
    assert ranker.run(query=QUERY, documents=_docs(), top_k=0) == {"documents": []}
    with pytest.raises(ValueError, match="top_k"):
        ranker.run(query=QUERY, documents=_docs(), top_k=-1)
    with pytest.raises(ValueError, match="top_k"):
        WinnowRanker(model="x", top_k=-2)


def test_scale_score_false_at_run_time_gives_raw_logits(make_ranker):
    ranker = make_ranker(top_k=5)  # init default scale_score=True
    scaled = ranker.run(query=QUERY, documents=_docs())["documents"]
    raw = ranker.run(query=QUERY, documents=_docs(), scale_score=False)["documents"]
    assert [d.id for d in scaled] == [d.id for d in raw]
    raw_scores = np.array([d.score for d in raw])
    assert (raw_scores < 0).any()
    expected = {d.id: _expected_raw(d.content) for d in _docs()}
    assert {d.id: d.score for d in raw} == expected
    scaled_scores = np.array([d.score for d in scaled])
    assert np.all((scaled_scores > 0) & (scaled_scores < 1))
    np.testing.assert_allclose(scaled_scores, sigmoid(raw_scores), rtol=1e-6)


def test_score_threshold_zero_at_run_time(make_ranker):
    ranker = make_ranker(top_k=5, scale_score=False, score_threshold=-100.0)
    assert len(ranker.run(query=QUERY, documents=_docs())["documents"]) == 5
    kept = ranker.run(query=QUERY, documents=_docs(), score_threshold=0.0)["documents"]
    assert [d.id for d in kept] == ["banana", "two-apples"]
    assert all(d.score >= 0.0 for d in kept)
    # with scaling, every sigmoid score is > 0: a 0.0 threshold keeps everything
    assert (
        len(ranker.run(query=QUERY, documents=_docs(), scale_score=True, score_threshold=0.0)["documents"])
        == 5
    )
    # init threshold applies when the run-time value is None
    strict = make_ranker(top_k=5, scale_score=False, score_threshold=1.0)
    assert [d.id for d in strict.run(query=QUERY, documents=_docs())["documents"]] == ["banana"]


def test_duplicates_collapsed_to_best_scoring(make_ranker):
    ranker = make_ranker(scale_score=False)
    docs = [
        Document(id="x", content="cherry"),
        Document(id="y", content="apple"),
        Document(id="x", content="banana"),  # same id, better text
        Document(id="y", content="apple"),
    ]
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    assert [(d.id, d.content, d.score) for d in out] == [("x", "banana", 1.5), ("y", "apple", -0.5)]


def test_inputs_are_not_mutated(make_ranker):
    ranker = make_ranker()
    docs = _docs()
    before = copy.deepcopy(docs)
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    assert docs == before
    assert [(d.id, d.score) for d in docs] == [(d.id, d.score) for d in before]
    assert not any(o is d for o in out for d in docs)
    out[0].meta["touched"] = True  # outputs own their meta dict
    assert all("touched" not in d.meta for d in docs)


def test_meta_fields_prefixes_and_content_none_shape_the_text(make_ranker, monkeypatch: pytest.MonkeyPatch):
    ranker = make_ranker(
        meta_fields_to_embed=["title", "missing", "year"],
        embedding_separator=" | ",
        query_prefix="Q: ",
        document_prefix="D: ",
        scale_score=False,
    )
    seen: list = []
    real_score = ranker._engine.score_with_readings

    def spy(query, documents):
        seen.append((query, list(documents)))
        return real_score(query, documents)

    monkeypatch.setattr(ranker._engine, "score_with_readings", spy)
    docs = [
        Document(id="a", content="cherry", meta={"title": "banana", "year": 2020}),
        Document(id="b", content="apple"),
        Document(id="c", content=None, meta={"title": "apple"}),
    ]
    out = ranker.run(query="fruit", documents=docs)["documents"]
    assert seen == [("Q: fruit", ["D: banana | 2020 | cherry", "D: apple", "D: apple | "])]
    assert out[0].id == "a"  # ranked first only because its title is embedded

    plain = make_ranker(scale_score=False)
    assert plain.run(query="fruit", documents=docs)["documents"][0].id == "b"


def test_run_warms_up_automatically_and_empty_input_skips_loading(model_path: str):
    ranker = WinnowRanker(model=model_path, device="cpu")
    assert ranker.run(query=QUERY, documents=[]) == {"documents": []}
    assert ranker._engine is None
    with pytest.raises(TypeError):
        ranker.run(query=None, documents=[])
    with pytest.raises(TypeError):
        ranker.run(query=QUERY, documents=["not a Document"])
    out = ranker.run(query=QUERY, documents=_docs()[:2])["documents"]
    assert ranker._engine is not None and ranker._engine.is_loaded
    assert len(out) == 2 and all(0 < d.score < 1 for d in out)
    engine = ranker._engine
    ranker.warm_up()
    assert ranker._engine is engine  # idempotent


def test_run_async_matches_run(make_ranker):
    ranker = make_ranker(scale_score=False)
    sync = ranker.run(query=QUERY, documents=_docs(), top_k=2, score_threshold=0.0)
    result = asyncio.run(ranker.run_async(query=QUERY, documents=_docs(), top_k=2, score_threshold=0.0))
    assert result == sync


def test_long_document_is_scored_by_its_best_window(make_ranker):
    ranker = make_ranker(scale_score=False, max_length=64)
    long = Document(id="long", content="the report said " * 200 + "banana")
    out = ranker.run(query=QUERY, documents=[Document(id="short", content="apple"), long])["documents"]
    assert [d.id for d in out] == ["long", "short"]
    assert out[0].content == long.content  # the document comes back whole


# ---------------------------------------------------------------- pipelines


def test_pipeline_yaml_round_trip_gives_same_results(model_path: str):
    ranker = WinnowRanker(
        model=model_path, device="cpu", top_k=3, scale_score=False, meta_fields_to_embed=["t"]
    )
    with torch.no_grad():  # make the tiny random model's logits spread out
        ranker.warm_up()
        ranker._engine._model.classifier.weight.mul_(300.0)
    pipe = Pipeline()
    pipe.add_component("ranker", ranker)
    yaml = pipe.dumps()
    assert "winnow.rerank.ranker.WinnowRanker" in yaml

    loaded = Pipeline.loads(yaml, allowed_modules=["winnow"])
    assert loaded.dumps() == yaml
    loaded_ranker = loaded.get_component("ranker")
    loaded_ranker.warm_up()
    with torch.no_grad():
        loaded_ranker._engine._model.classifier.weight.mul_(300.0)

    docs = [*_docs(), Document(id="meta", content="x", meta={"t": "banana"})]
    inputs = {"ranker": {"query": QUERY, "documents": docs}}
    first = pipe.run(inputs)["ranker"]["documents"]
    second = loaded.run(inputs)["ranker"]["documents"]
    assert len(first) == 3
    assert [d.id for d in first] == [d.id for d in second]
    np.testing.assert_allclose([d.score for d in first], [d.score for d in second], atol=1e-5)
    assert first[0].score != first[-1].score


def test_every_output_document_says_how_it_was_read(model_path: str, word_ids, monkeypatch):
    ranker = WinnowRanker(model=model_path, device="cpu", max_length=32, windows=True, scale_score=False)
    ranker.warm_up()
    monkeypatch.setattr(ranker._engine, "_forward", _stub_forward(*word_ids))
    long_text = " ".join(["report"] * 80 + ["banana"] + ["report"] * 20)
    docs = [
        Document(id="long", content=long_text, meta={"year": 2020}),
        Document(id="short", content="an apple"),
    ]
    out = {d.id: d for d in ranker.run(query="cell", documents=docs)["documents"]}
    long, short = out["long"].meta["rerank_reading"], out["short"].meta["rerank_reading"]
    budget = 32 - 3 - 1  # max_length, [CLS]/[SEP]/[SEP], a one-token query
    assert long["read"] == "windows" and long["windows"] > 1 and long["tokens"] == budget
    assert long["document_tokens"] == 101 and long["complete"]
    # the banana (token 80) is in the best window, and not in the first
    assert long["best_window"] > 0 and out["long"].score == pytest.approx(1.5)
    assert short["read"] == "whole" and short["tokens"] == 2 and short["windows"] == 1
    assert out["long"].meta["year"] == 2020 and "rerank_reading" not in docs[0].meta  # input untouched

    truncating = WinnowRanker(model=model_path, device="cpu", max_length=32, windows=False)
    truncating.warm_up()
    monkeypatch.setattr(truncating._engine, "_forward", _stub_forward(*word_ids))
    (doc,) = truncating.run(query="cell", documents=docs[:1])["documents"]
    assert doc.meta["rerank_reading"]["read"] == "truncated"
    assert doc.meta["rerank_reading"]["tokens"] == budget and not doc.meta["rerank_reading"]["complete"]
