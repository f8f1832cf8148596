"""Evaluation runs built by hand (interpolation and tuning tests) and model folders derived from the tiny
cross-encoder (card, quantisation and ONNX tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from winnow.rerank.card import CARD_FILE
from winnow.rerank.evaluation.runs import EvalRun


def constructed_run() -> EvalRun:
    """Two queries: the first stage is right on q1 and wrong on q2, the reranker the other way round;
    only a mix of both gets both right."""
    return EvalRun(
        dataset="constructed",
        split="dev",
        queries={"q1": "first", "q2": "second"},
        qrels={"q1": {"a": 1}, "q2": {"e": 1}},
        depths=[10],
        first_stage={"q1": [("a", 1.0), ("b", 0.8), ("c", 0.0)], "q2": [("d", 1.0), ("e", 0.9), ("f", 0.0)]},
        rerank_scores={"q1": {"a": 0.9, "b": 1.0, "c": 0.0}, "q2": {"d": 0.5, "e": 1.0, "f": 0.0}},
    )


def model_with_card(model: str, folder: Path, card: dict) -> str:
    """A copy of the model folder ``model`` at ``folder`` whose ``winnow.json`` card is ``card``."""
    shutil.copytree(model, folder)
    (folder / CARD_FILE).write_text(json.dumps(card))
    return str(folder)


def scaled_cross_encoder(model: str, folder: Path) -> str:
    """A copy of the cross-encoder ``model`` at ``folder`` with its classifier weights scaled by 30,000, so
    that scores lie far apart and a small tolerance on them means something."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    scaled = AutoModelForSequenceClassification.from_pretrained(model)
    with torch.no_grad():
        scaled.classifier.weight.mul_(30_000.0)
    scaled.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model).save_pretrained(folder)
    return str(folder)
