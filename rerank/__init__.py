"""winnow.rerank: the scoring core — the cross-encoder engine, windows, model loading, the model card, the
Haystack ranker, interpolation with the first stage and the micro-batcher. Training and evaluation live in
the sub-packages ``training`` and ``evaluation``.

Names are imported lazily so that ``import winnow.rerank`` stays cheap (torch and haystack load on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from winnow.rerank.engine import CrossEncoderEngine
    from winnow.rerank.models import ModelNotFoundError, resolve_model
    from winnow.rerank.ranker import WinnowRanker

_LAZY = {
    "CrossEncoderEngine": "winnow.rerank.engine",
    "ModelNotFoundError": "winnow.rerank.models",
    "resolve_model": "winnow.rerank.models",
    "WinnowRanker": "winnow.rerank.ranker",
}

__all__ = ["CrossEncoderEngine", "ModelNotFoundError", "WinnowRanker", "resolve_model"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'winnow.rerank' has no attribute {name!r}")
