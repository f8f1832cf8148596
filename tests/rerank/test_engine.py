from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from winnow.rerank import engine as engine_module
from winnow.rerank.engine import CrossEncoderEngine, pair_template, resolve_dtype, sigmoid
from winnow.rerank.models import MODEL_REGISTRY, ModelNotFoundError, resolve_model
from winnow.rerank.windows import window_spans
from winnow.retrieval.device import resolve_device

QUERY = "what was the net income"
SHORT_DOCS = [
    "net income was 5 million",
    "the company said revenue increase",
    "cash",
    "",
    "total assets and liabilities of the company at the end of the fiscal year were 3 billion",
    "apple cherry",
]


@pytest.fixture(scope="module")
def model_path(tiny_cross_encoder_path: str) -> str:
    return tiny_cross_encoder_path


@pytest.fixture(scope="module")
def engine(model_path: str) -> CrossEncoderEngine:
    eng = CrossEncoderEngine(model_path, device="cpu").load()
    # the random head gives logits of ~1e-3; scale it so that comparisons at atol 1e-4 mean something
    with torch.no_grad():
        eng._model.classifier.weight.mul_(300.0)
    return eng


@pytest.fixture(scope="module")
def token_ids(model_path: str) -> dict[str, int]:
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    ids = {w: tokenizer.convert_tokens_to_ids(w) for w in ("banana", "apple", "the", "revenue")}
    assert tokenizer.unk_token_id not in ids.values()
    return ids


def _plain_forward(engine: CrossEncoderEngine, model_path: str, query: str, docs: list[str]) -> np.ndarray:
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    scores = []
    with torch.inference_mode():
        for doc in docs:  # one pair at a time: no padding at all
            # lists: a pair even when doc == "" (the single-pair call drops an empty second text)
            enc = tokenizer([query], [doc], truncation=True, max_length=512, return_tensors="pt")
            scores.append(engine._model(**enc).logits[0, 0].item())
    return np.asarray(scores)


def _token_stub(token: int, hit: float = 5.0, miss: float = -5.0):
    """A _forward that scores `hit` iff `token` sits in an attended position of the row."""

    def forward(input_ids, attention_mask, token_type_ids):
        present = ((input_ids == token) & (attention_mask == 1)).any(dim=1)
        return torch.where(present, torch.tensor(hit), torch.tensor(miss))

    return forward


def _counting_stub(token: int, calls: list):
    """A _forward that scores the number of attended `token`s in a row, and records batch shapes."""

    def forward(input_ids, attention_mask, token_type_ids):
        calls.append((tuple(input_ids.shape), attention_mask.sum(dim=1).tolist()))
        return ((input_ids == token) & (attention_mask == 1)).sum(dim=1).float()

    return forward


# ---------------------------------------------------------------- exactness against plain transformers


def test_raw_logits_match_plain_transformers_forward(engine: CrossEncoderEngine, model_path: str):
    scores = engine.score(QUERY, SHORT_DOCS)
    expected = _plain_forward(engine, model_path, QUERY, SHORT_DOCS)
    assert scores.dtype == np.float32 and scores.shape == (len(SHORT_DOCS),)
    assert np.ptp(expected) > 1e-2  # the comparison is not trivially satisfied
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_order_preserved_under_length_sorting_and_small_batches(model_path: str, engine: CrossEncoderEngine):
    docs = [f"{'the company ' * (i % 7)}revenue {i}" for i in range(23)]
    small = CrossEncoderEngine(model_path, device="cpu", batch_size=3)
    small._model, small._tokenizer, small._template = engine._model, engine._tokenizer, engine._template
    small._max_length, small._use_token_types, small._pad_id = 512, True, engine._pad_id
    expected = _plain_forward(engine, model_path, QUERY, docs)
    np.testing.assert_allclose(small.score(QUERY, docs), expected, atol=1e-4)
    np.testing.assert_allclose(engine.score(QUERY, docs), expected, atol=1e-4)


def test_score_pairs_matches_score(engine: CrossEncoderEngine):
    pairs = [(QUERY, d) for d in SHORT_DOCS] + [("apple", d) for d in SHORT_DOCS]
    got = engine.score_pairs(pairs)
    np.testing.assert_allclose(got[: len(SHORT_DOCS)], engine.score(QUERY, SHORT_DOCS), atol=1e-5)
    np.testing.assert_allclose(got[len(SHORT_DOCS) :], engine.score("apple", SHORT_DOCS), atol=1e-5)


def test_sigmoid_activation(model_path: str, engine: CrossEncoderEngine):
    sig = CrossEncoderEngine(model_path, device="cpu", activation="sigmoid")
    sig._model, sig._tokenizer, sig._template = engine._model, engine._tokenizer, engine._template
    sig._max_length, sig._use_token_types, sig._pad_id = 512, True, engine._pad_id
    raw = engine.score(QUERY, SHORT_DOCS)
    got = sig.score(QUERY, SHORT_DOCS)
    assert np.all((got > 0) & (got < 1))
    np.testing.assert_allclose(got, sigmoid(raw), atol=1e-6)


def test_empty_input_and_type_errors(engine: CrossEncoderEngine):
    assert engine.score(QUERY, []).shape == (0,)
    assert engine.score_pairs([]).dtype == np.float32
    with pytest.raises(TypeError):
        engine.score(QUERY, "a single string")
    with pytest.raises(TypeError):
        engine.score(QUERY, ["ok", None])
    with pytest.raises(TypeError):
        engine.score(b"bytes", ["ok"])
    with pytest.raises(TypeError):
        engine.score_pairs([("q", "d", "extra")])
    with pytest.raises(TypeError):
        engine.score_pairs([("q", 3)])


def test_empty_input_does_not_load_the_model(model_path: str):
    lazy = CrossEncoderEngine(model_path, device="cpu")
    assert lazy.score("q", []).shape == (0,)
    assert not lazy.is_loaded
    assert lazy.load() is lazy.load()  # idempotent
    assert lazy.is_loaded


def test_properties(engine: CrossEncoderEngine, model_path: str):
    assert engine.device == "cpu"
    assert engine.dtype == torch.float32
    assert engine.model_name == model_path
    assert engine.max_length == 512
    assert CrossEncoderEngine(model_path, device="cpu", max_length=64).max_length == 64
    assert "CrossEncoderEngine" in repr(engine)


def test_bf16_on_cpu_scores_like_fp32(engine: CrossEncoderEngine, model_path: str):
    docs = ["net income was 3 million", "bananas are yellow", "the company reported revenue", "cherry"]
    fast = CrossEncoderEngine(model_path, device="cpu", dtype="bf16").load()
    assert fast.dtype == torch.bfloat16
    with torch.no_grad():  # the same head scaling as the fp32 fixture
        fast._model.classifier.weight.mul_(300.0)
    reference, scores = engine.score(QUERY, docs), fast.score(QUERY, docs)
    assert np.isfinite(scores).all()
    assert np.abs(reference).max() > 0.1  # the comparison means something
    np.testing.assert_allclose(scores, reference, atol=0.05 * np.abs(reference).max())


# ---------------------------------------------------------------- windows


def _long_doc_with_banana_at_end(words: int = 600) -> str:
    filler = ("the company said revenue and net income of the fiscal year " * 100).split()[:words]
    return " ".join(filler) + " banana"


def test_long_document_relevant_only_at_end_ranks_first_with_windows(
    model_path: str, token_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
):
    docs = ["apple", "cherry", _long_doc_with_banana_at_end(), "the apple", "net income"]
    on = CrossEncoderEngine(model_path, device="cpu", windows=True).load()
    off = CrossEncoderEngine(model_path, device="cpu", windows=False).load()
    assert on.windows and not off.windows
    for eng in (on, off):
        monkeypatch.setattr(eng, "_forward", _token_stub(token_ids["banana"]))

    scores_on = on.score("fruit question", docs)
    scores_off = off.score("fruit question", docs)
    assert int(np.argmax(scores_on)) == 2 and scores_on[2] == 5.0
    assert np.all(np.delete(scores_on, 2) == -5.0)
    assert scores_off[2] == -5.0  # truncated at 512 tokens: the end is lost


def test_windows_default_follows_the_model_card(
    tmp_path, model_path: str, token_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
):
    import json
    import shutil

    folder = tmp_path / "truncating"
    shutil.copytree(model_path, folder)
    (folder / "winnow.json").write_text(json.dumps({"windows": False}))
    carded = CrossEncoderEngine(str(folder), device="cpu").load()
    assert not carded.windows  # the card chose truncation on its dev split
    assert CrossEncoderEngine(str(folder), device="cpu", windows=True).windows  # the argument wins
    assert CrossEncoderEngine(model_path, device="cpu").windows  # no card: windows
    monkeypatch.setattr(carded, "_forward", _token_stub(token_ids["banana"]))
    assert carded.score("fruit question", [_long_doc_with_banana_at_end()])[0] == -5.0  # truncated


def test_window_count_and_max_pooling(
    model_path: str, token_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
):
    max_length, num_special, query = 40, 3, "apple"
    eng = CrossEncoderEngine(
        model_path, device="cpu", max_length=max_length, windows=True, window_stride=20
    ).load()
    calls: list = []
    monkeypatch.setattr(eng, "_forward", _counting_stub(token_ids["banana"], calls))
    # 200 tokens: one banana near the start, three in the middle
    words = ["the"] * 200
    words[5] = "banana"
    for k in (98, 100, 102):
        words[k] = "banana"
    budget = max_length - num_special - 1  # the query is one token
    spans = window_spans(len(words), budget, 20)
    best = max(sum(w == "banana" for w in words[s:e]) for s, e in spans)
    assert best == 3

    scores = eng.score(query, [" ".join(words), "cherry"])
    assert scores.tolist() == [3.0, 0.0]  # max over windows, not first / mean / sum
    rows = sum(shape[0] for shape, _ in calls)
    assert rows == len(spans) + 1
    assert all(length <= max_length for _, lengths in calls for length in lengths)


def test_max_windows_caps_rows_and_keeps_the_end(
    model_path: str,
    token_ids: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    eng = CrossEncoderEngine(model_path, device="cpu", max_length=32, windows=True, max_windows=3).load()
    calls: list = []
    monkeypatch.setattr(eng, "_forward", _counting_stub(token_ids["banana"], calls))
    with caplog.at_level("DEBUG", logger="winnow.rerank.engine"):
        scores = eng.score("apple", [_long_doc_with_banana_at_end(300)])
    assert sum(shape[0] for shape, _ in calls) == 3
    assert scores.tolist() == [1.0]  # the last window always ends at the document end
    assert any("max_windows=3" in r.getMessage() for r in caplog.records)


def test_query_is_truncated_to_half_the_window(model_path: str, token_ids: dict[str, int], monkeypatch):
    eng = CrossEncoderEngine(model_path, device="cpu", max_length=23, windows=True).load()
    calls: list = []
    monkeypatch.setattr(eng, "_forward", _counting_stub(token_ids["banana"], calls))
    scores = eng.score("the " * 100, ["the " * 30 + "banana"])
    assert scores.tolist() == [1.0]
    assert all(length <= 23 for _, lengths in calls for length in lengths)


def test_batches_sorted_by_length_and_capped(model_path: str, token_ids: dict[str, int], monkeypatch):
    eng = CrossEncoderEngine(model_path, device="cpu", batch_size=4, max_batch_tokens=60).load()
    calls: list = []
    monkeypatch.setattr(eng, "_forward", _counting_stub(token_ids["banana"], calls))
    docs = [" ".join(["the"] * n) + (" banana" if n % 2 else "") for n in (3, 30, 1, 12, 7, 25, 2, 9, 4)]
    scores = eng.score("apple", docs)
    assert scores.tolist() == [float(n % 2) for n in (3, 30, 1, 12, 7, 25, 2, 9, 4)]
    widths = [shape[1] for shape, _ in calls]
    assert widths == sorted(widths, reverse=True)
    for (rows, width), lengths in calls:
        assert rows <= 4 and (rows == 1 or rows * width <= 60)
        assert width == max(lengths)  # padded to the batch's longest row only


# ---------------------------------------------------------------- loading, configs, errors


def test_sentence_transformers_saved_folder(
    model_path: str, tmp_path_factory: pytest.TempPathFactory, token_ids: dict[str, int]
):
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(model_path, num_labels=1, max_length=128, device="cpu")
    with torch.no_grad():
        ce.model.classifier.weight.mul_(300.0)
    folder = tmp_path_factory.mktemp("st-cross-encoder")
    ce.save(str(folder))

    eng = CrossEncoderEngine(str(folder), device="cpu", activation="model")
    assert eng.max_length == 128
    assert eng.default_activation == "sigmoid"
    pairs = [(QUERY, d) for d in SHORT_DOCS]
    np.testing.assert_allclose(eng.score_pairs(pairs), ce.predict(pairs), atol=1e-4)
    raw = CrossEncoderEngine(str(folder), device="cpu").score_pairs(pairs)
    np.testing.assert_allclose(sigmoid(raw), ce.predict(pairs), atol=1e-4)


def test_pair_template_from_tokenizer(model_path: str):
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    template = pair_template(tokenizer)
    q = tokenizer("net income", add_special_tokens=False)["input_ids"]
    d = tokenizer("cash flow", add_special_tokens=False)["input_ids"]
    ids, types = template.build(q, d)
    enc = tokenizer("net income", "cash flow")
    assert ids == enc["input_ids"] and types == enc["token_type_ids"]


def test_two_label_model_scores_log_odds(tmp_path_factory: pytest.TempPathFactory, model_path: str):
    config = AutoConfig.from_pretrained(model_path)
    config.num_labels = 2
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        model.classifier.weight.mul_(300.0)
    folder = tmp_path_factory.mktemp("two-label")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(folder)
    eng = CrossEncoderEngine(str(folder), device="cpu", activation="sigmoid")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    enc = tokenizer([QUERY] * 2, SHORT_DOCS[:2], padding=True, return_tensors="pt")
    with torch.inference_mode():
        probs = model.eval()(**enc).logits.softmax(-1)[:, 1].numpy()
    np.testing.assert_allclose(eng.score(QUERY, SHORT_DOCS[:2]), probs, atol=1e-5)


def test_resolve_model(tmp_path, model_path: str, monkeypatch: pytest.MonkeyPatch):
    assert resolve_model(model_path) == str(tmp_path.__class__(model_path).resolve())
    assert resolve_model("cross-encoder/ms-marco-MiniLM-L6-v2") == "cross-encoder/ms-marco-MiniLM-L6-v2"
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelNotFoundError):
        resolve_model("./no-such-model")
    monkeypatch.setitem(MODEL_REGISTRY, "winnow-tiny", model_path)
    assert resolve_model("winnow-tiny") == model_path
    monkeypatch.setitem(MODEL_REGISTRY, "winnow-gone", str(tmp_path / "gone"))
    with pytest.raises(ModelNotFoundError, match="reinstall"):
        resolve_model("winnow-gone")
    with pytest.raises(ValueError):
        resolve_model("  ")


def test_hub_name_failing_to_load_says_it_needs_network(monkeypatch: pytest.MonkeyPatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(engine_module.AutoConfig, "from_pretrained", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    eng = CrossEncoderEngine("some-org/some-reranker", device="cpu")
    with pytest.raises(ModelNotFoundError, match="not a local folder; hub names need network access"):
        eng.load()
    assert not eng.is_loaded


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_on_cpu_is_bf16_only_where_the_cpu_computes_it(monkeypatch, native: bool):
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("auto", "mps") == torch.float32


def test_cpu_bf16_flag_detection(monkeypatch):
    from winnow.retrieval import device

    monkeypatch.delenv("WINNOW_CPU_BF16", raising=False)
    for flags, expected in (({"avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True), ({"avx2"}, False)):
        monkeypatch.setattr(device, "_cpu_flags", lambda flags=flags: frozenset(flags))
        assert device.cpu_has_native_bf16() is expected
    monkeypatch.setenv("WINNOW_CPU_BF16", "0")
    monkeypatch.setattr(device, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert device.cpu_has_native_bf16() is False
    monkeypatch.setenv("WINNOW_CPU_BF16", "1")
    monkeypatch.setattr(device, "_cpu_flags", lambda: frozenset())
    assert device.cpu_has_native_bf16() is True


def test_device_dtype_and_argument_validation(model_path: str):
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) in {"cpu", "cuda", "mps"}
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype("float32", "cpu") == torch.float32
    with pytest.raises(ValueError):
        resolve_dtype("int3", "cpu")
    with pytest.raises(ValueError):
        resolve_device("toaster")
    for bad in ({"max_length": 0}, {"batch_size": -1}, {"max_windows": 0}, {"activation": "relu"}):
        with pytest.raises(ValueError):
            CrossEncoderEngine(model_path, **bad)
    with pytest.raises(ValueError):
        CrossEncoderEngine("")


# ---------------------------------------------------------------- readings: how each document was read


def test_readings_report_whole_and_best_of_k_windows(
    model_path: str, token_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
):
    max_length, num_special = 40, 3
    eng = CrossEncoderEngine(
        model_path, device="cpu", max_length=max_length, windows=True, window_stride=20
    ).load()
    monkeypatch.setattr(eng, "_forward", _counting_stub(token_ids["banana"], []))
    words = ["the"] * 200
    for k in (98, 100, 102):  # three bananas in the middle: one window holds all three
        words[k] = "banana"
    words[5] = "banana"
    budget = max_length - num_special - 1  # the query "apple" is one token
    spans = window_spans(len(words), budget, 20)
    counts = [sum(w == "banana" for w in words[s:e]) for s, e in spans]
    expected_best = counts.index(max(counts))
    assert 0 < expected_best < len(spans) - 1

    scored = eng.score_with_readings("apple", [" ".join(words), "cherry"])
    assert scored.scores.tolist() == eng.score("apple", [" ".join(words), "cherry"]).tolist() == [3.0, 0.0]
    long, short = scored.readings
    assert long.read == "windows" and long.windows == len(spans) > 1
    assert long.best_window == expected_best and long.tokens == budget
    assert long.document_tokens == 200 and long.complete and long.query_tokens == 1
    assert not long.query_truncated
    assert short.to_dict() == {
        "read": "whole",
        "tokens": 1,
        "document_tokens": 1,
        "windows": 1,
        "best_window": None,
        "complete": True,
        "query_tokens": 1,
        "query_truncated": False,
    }


def test_readings_report_truncation_at_the_engines_budget(
    model_path: str, token_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
):
    max_length, num_special = 60, 3
    eng = CrossEncoderEngine(model_path, device="cpu", max_length=max_length, windows=False).load()
    monkeypatch.setattr(eng, "_forward", _counting_stub(token_ids["banana"], []))
    scored = eng.score_with_readings("apple", ["the " * 100, "the " * 10, "the " * 1000])
    long, short, huge = scored.readings
    assert long.read == "truncated" and long.tokens == max_length - num_special - 1 == 56
    assert long.document_tokens == 100 and long.windows == 1 and long.best_window is None
    assert not long.complete
    assert short.read == "whole" and short.tokens == 10 and short.complete
    # cut to max_length * 8 characters before tokenising: its length is known only as a lower bound
    assert huge.read == "truncated" and huge.tokens == 56 and 56 < huge.document_tokens < 1000


def test_readings_report_query_truncation_and_windows_with_gaps(
    model_path: str, token_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
):
    eng = CrossEncoderEngine(model_path, device="cpu", max_length=23, windows=True).load()
    monkeypatch.setattr(eng, "_forward", _counting_stub(token_ids["banana"], []))
    (reading,) = eng.score_with_readings("the " * 100, ["the " * 30 + "banana"]).readings
    assert reading.query_truncated and reading.query_tokens == (23 - 3) // 2
    assert reading.read == "windows" and reading.best_window == reading.windows - 1  # banana is at the end

    capped = CrossEncoderEngine(model_path, device="cpu", max_length=32, windows=True, max_windows=3).load()
    monkeypatch.setattr(capped, "_forward", _counting_stub(token_ids["banana"], []))
    (spread,) = capped.score_with_readings("apple", [_long_doc_with_banana_at_end(300)]).readings
    assert spread.read == "windows" and spread.windows == 3 and spread.best_window == 2
    assert not spread.complete  # three windows of 28 tokens cannot cover 300 tokens


def test_score_pairs_with_readings_matches_score_pairs(engine: CrossEncoderEngine):
    pairs = [(QUERY, doc) for doc in SHORT_DOCS] + [("apple", "apple cherry"), (QUERY, "cash")]
    scored = engine.score_pairs_with_readings(pairs)
    np.testing.assert_array_equal(scored.scores, engine.score_pairs(pairs))
    assert len(scored.readings) == len(pairs)
    assert all(r.read == "whole" and r.complete for r in scored.readings)
    assert scored.readings[-2].query_tokens == 1 and scored.readings[0].query_tokens > 1
    assert engine.score_with_readings(QUERY, []).readings == []
