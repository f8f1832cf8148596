"""/ready and /search when the reranker's model card sets weight 0: the first stage's order, and why."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.rerank.helpers import model_with_card

WEIGHT_ZERO = {"interpolation": {"weight": 0.0, "split": "x/dev"}, "depth": 5}


def test_ready_and_search_say_when_the_card_keeps_the_first_stage(
    make_settings, tiny_cross_encoder_path, tmp_path
):
    from winnow.api.app import create_app

    model = model_with_card(tiny_cross_encoder_path, tmp_path / "m", WEIGHT_ZERO)
    with TestClient(create_app(make_settings(reranker=model))) as client:
        ready = client.get("/ready").json()
        assert "winnow finetune" in ready["reranker_note"]
        body = client.post("/search", json={"query": "apple", "top_k": 3, "first_stage": "dense"}).json()
        assert body["reranked"] is False and len(body["results"]) == 3


def test_ready_says_why_the_reranker_runs_fp32_after_its_quality_check_failed(
    make_settings, tiny_cross_encoder_path, tmp_path
):
    from winnow.api.app import create_app

    card = {"cpu_quantization": {"default": "torch", "reason": "onnx-qdq-int8 lost 0.04 nDCG@10 on scifact"}}
    model = model_with_card(tiny_cross_encoder_path, tmp_path / "m", card)
    with TestClient(create_app(make_settings(reranker=model))) as client:  # backend: the default, auto
        ready = client.get("/ready").json()
    assert ready["reranker_backend"] == "torch"
    assert "runs fp32" in ready["reranker_backend_note"] and "lost 0.04" in ready["reranker_backend_note"]
