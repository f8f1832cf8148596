"""Quantised CPU backends (OpenVINO, NNCF int8, ONNX Runtime static QDQ int8), the quality check that
decides whether ``backend="auto"`` runs one, and the fp32 fallback (reported) when a model fails it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tests.rerank.helpers import model_with_card, scaled_cross_encoder
from winnow.rerank.engine import CrossEncoderEngine
from winnow.rerank.quantize_check import CheckSet, beir_check_set, record_check, run_check
from winnow.rerank.quantized import (
    CHECK_SECTION,
    SOURCE_FILE,
    artifact_path,
    auto_backend,
    drop_stale_artifacts,
    read_calibration,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

QUERY = "what was the net income"
DOCS = [
    "net income was 5 million",
    "the company said revenue increase",
    "cash",
    "total assets and liabilities of the company at the end of the fiscal year were 3 billion",
    "apple cherry banana revenue " * 10,
]
CALIBRATION = [(q, d) for q in (QUERY, "revenue of the company", "cash and debt") for d in DOCS]
CARD = {"format": 1, "kind": "winnow cross-encoder reranker", "max_length": 64}


@pytest.fixture(scope="module")
def scaled_model(tiny_cross_encoder_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny random cross-encoder with its head scaled up (scores far apart), and a model card."""
    out = scaled_cross_encoder(tiny_cross_encoder_path, tmp_path_factory.mktemp("tiny-scaled-q"))
    (Path(out) / "winnow.json").write_text(json.dumps(CARD))
    return out


@pytest.fixture(scope="module")
def torch_scores(scaled_model: str) -> np.ndarray:
    return CrossEncoderEngine(scaled_model, backend="torch", max_length=64).score(QUERY, DOCS)


def _check_set() -> CheckSet:
    pairs, owners, qrels = [], [], {}
    for q, query in enumerate((QUERY, "revenue of the company")):
        for d, doc in enumerate(DOCS):
            pairs.append((query, doc))
            owners.append((f"q{q}", f"d{d}"))
        qrels[f"q{q}"] = {f"d{q}": 1}
    return CheckSet("tiny", "dev", pairs, owners, qrels)


@pytest.mark.parametrize("backend", ["openvino", "openvino-int8", "onnx-qdq-int8"])
def test_quantized_backends_score_like_torch(
    backend: str, scaled_model: str, torch_scores: np.ndarray, tmp_path: Path
) -> None:
    if backend.startswith("openvino"):
        pytest.importorskip("openvino")
    if backend == "openvino-int8":
        pytest.importorskip("nncf")
    engine = CrossEncoderEngine(
        scaled_model, backend=backend, max_length=64, onnx_dir=tmp_path, calibration_pairs=CALIBRATION
    )
    scores = engine.score(QUERY, DOCS)
    assert engine.backend == backend and engine.backend_note is None
    assert scores.shape == torch_scores.shape and np.all(np.isfinite(scores))
    if backend == "openvino":
        np.testing.assert_allclose(scores, torch_scores, rtol=1e-3, atol=1e-3 * np.abs(torch_scores).max())
    else:
        assert artifact_path(tmp_path, backend).is_file()
        record = read_calibration(artifact_path(tmp_path, backend))
        assert (
            record is not None
            and record["pairs"] == len(CALIBRATION)
            and record["kept_in_float"]["classifier"]
        )
        assert np.corrcoef(scores, torch_scores)[0, 1] > 0.5  # a random tiny model: loose agreement only
        # a second engine reuses the cached quantised model without calibration pairs
        again = CrossEncoderEngine(scaled_model, backend=backend, max_length=64, onnx_dir=tmp_path)
        np.testing.assert_allclose(again.score(QUERY, DOCS), scores, rtol=1e-5, atol=1e-5)


def test_int8_without_calibration_or_cache_refuses(scaled_model: str, tmp_path: Path) -> None:
    engine = CrossEncoderEngine(scaled_model, backend="onnx-qdq-int8", max_length=64, onnx_dir=tmp_path)
    with pytest.raises(ValueError, match="calibration_pairs"):
        engine.load()


def test_check_never_reads_a_test_split(tiny_beir_dir: Path) -> None:
    with pytest.raises(ValueError, match="test split"):
        beir_check_set(tiny_beir_dir, "test")


def test_failing_check_falls_back_to_fp32_and_says_why(
    scaled_model: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = model_with_card(scaled_model, tmp_path / "model", CARD)
    # a tolerance no backend can meet: the check fails, as one that loses nDCG@10 would
    check = run_check(
        model, [_check_set()], CALIBRATION, "tiny calibration", candidates=["onnx-qdq-int8"], tolerance=-1.0
    )
    assert check["default"] == "torch" and not check["candidates"]["onnx-qdq-int8"]["passed"]
    assert "no quantised backend kept nDCG@10" in check["reason"]
    record_check(model, check)
    recorded = json.loads((Path(model) / "winnow.json").read_text())[CHECK_SECTION]
    assert (
        recorded["fp32_ndcg10"]["tiny"] == check["fp32_ndcg10"]["tiny"]
        and recorded["data"][0]["split"] == "dev"
    )
    with caplog.at_level(logging.WARNING, logger="winnow.rerank.engine"):
        engine = CrossEncoderEngine(model, max_length=64)  # backend="auto"
    assert engine.backend == "torch" and engine.dtype == torch.float32
    assert engine.backend_note is not None and "runs fp32" in engine.backend_note
    assert "no quantised backend kept nDCG@10" in engine.backend_note
    assert any("runs fp32" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(
        engine.score(QUERY, DOCS),
        CrossEncoderEngine(model, backend="torch", max_length=64).score(QUERY, DOCS),
    )


def test_passing_check_makes_the_quantized_backend_the_cpu_default(scaled_model: str, tmp_path: Path) -> None:
    model = model_with_card(scaled_model, tmp_path / "model", CARD)
    check = run_check(
        model, [_check_set()], CALIBRATION, "tiny calibration", candidates=["onnx-qdq-int8"], tolerance=1.0
    )
    assert check["candidates"]["onnx-qdq-int8"]["passed"]
    check["default"] = "onnx-qdq-int8"  # whatever the timing of a tiny model said
    record_check(model, check)
    engine = CrossEncoderEngine(model, max_length=64)
    assert engine.backend == "onnx-qdq-int8" and engine.backend_note is None
    assert np.all(np.isfinite(engine.score(QUERY, DOCS)))
    # not on an accelerator or in an explicit dtype other than fp32, and never when the file is gone
    assert CrossEncoderEngine(model, dtype="bfloat16").backend == "torch"
    artifact_path(Path(model) / "quantized", "onnx-qdq-int8").unlink()
    fallback = CrossEncoderEngine(model, max_length=64)
    assert fallback.backend == "torch" and "is missing" in (fallback.backend_note or "")


def test_auto_backend_without_a_check_runs_fp32_silently() -> None:
    assert auto_backend(None, None) == ("torch", None)
    assert auto_backend({"kind": "x"}, "/nowhere") == ("torch", None)
    backend, note = auto_backend({CHECK_SECTION: {"default": "torch", "reason": "int8 lost 0.04"}}, None)
    assert backend == "torch" and note == "runs fp32: int8 lost 0.04"


def test_auto_backend_keeps_fp32_where_int8_would_be_slow(
    scaled_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "quantized"
    folder.mkdir()
    artifact_path(folder, "onnx-qdq-int8").write_bytes(b"")
    measured_with_vnni = {CHECK_SECTION: {"default": "onnx-qdq-int8", "cpu": {"isa": {"vnni": True}}}}
    monkeypatch.setenv("WINNOW_CPU_INT8", "0")
    backend, note = auto_backend(measured_with_vnni, str(tmp_path))
    assert backend == "torch" and "VNNI" in (note or "")
    monkeypatch.setenv("WINNOW_CPU_INT8", "1")
    assert auto_backend(measured_with_vnni, str(tmp_path)) == ("onnx-qdq-int8", None)


def test_fp32_kept_for_speed_is_reported_but_not_warned(
    scaled_model: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check = {
        "default": "torch",
        "reason": "the backends that passed (openvino-int8) were not faster than fp32 torch in the check",
        "candidates": {"openvino-int8": {"passed": True, "speedup_vs_fp32": 0.44}},
    }
    model = model_with_card(scaled_model, tmp_path / "model", {**CARD, CHECK_SECTION: check})
    with caplog.at_level(logging.INFO, logger="winnow.rerank.engine"):
        engine = CrossEncoderEngine(model, max_length=64)
    assert engine.backend == "torch" and "were not faster" in (engine.backend_note or "")
    records = [r for r in caplog.records if "were not faster" in r.getMessage()]
    assert records and all(r.levelno == logging.INFO for r in records)


def test_auto_backend_exports_fp32_openvino_on_demand_and_yields_to_native_bf16(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    card = {CHECK_SECTION: {"default": "openvino", "cpu": {"isa": {}}}}
    # no cached file: an fp32 backend needs no calibration, the engine exports it on first use
    assert auto_backend(card, str(tmp_path)) == ("openvino", None)
    # where torch runs bf16 natively (dtype "auto"), it beats a checked fp32 backend
    assert auto_backend(card, str(tmp_path), native_bf16=True) == ("torch", None)
    folder = tmp_path / "quantized"
    folder.mkdir()
    artifact_path(folder, "onnx-qdq-int8").write_bytes(b"")
    int8 = {CHECK_SECTION: {"default": "onnx-qdq-int8", "cpu": {"isa": {"vnni": False, "amx": False}}}}
    assert auto_backend(int8, str(tmp_path), native_bf16=True) == ("onnx-qdq-int8", None)


def test_files_built_from_other_weights_are_rebuilt(scaled_model: str, tmp_path: Path) -> None:
    model = Path(model_with_card(scaled_model, tmp_path / "model", CARD))
    folder = tmp_path / "artifacts"
    engine = CrossEncoderEngine(str(model), backend="onnx", onnx_dir=folder, max_length=64)
    before = engine.score(QUERY, DOCS)
    assert (folder / "model.onnx").is_file() and (folder / SOURCE_FILE).is_file()
    (folder / "unrelated.txt").write_text("a user's file")
    assert drop_stale_artifacts(folder, model) == []  # same weights: nothing dropped
    # retrain into the same folder: new weights, so the old export must not run
    retrained = AutoModelForSequenceClassification.from_pretrained(model)
    with torch.no_grad():
        retrained.classifier.weight.mul_(-1.0)
    retrained.save_pretrained(model)
    after = CrossEncoderEngine(str(model), backend="onnx", onnx_dir=folder, max_length=64).score(QUERY, DOCS)
    np.testing.assert_allclose(
        after,
        CrossEncoderEngine(str(model), backend="torch", max_length=64).score(QUERY, DOCS),
        rtol=1e-4,
        atol=1e-3,
    )
    assert not np.allclose(after, before)
    assert (folder / "unrelated.txt").read_text() == "a user's file"  # only winnow's own files are touched
