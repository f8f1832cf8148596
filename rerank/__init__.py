"""winnow: rerank — cross-encoder scoring engine and the Haystack ranker component.

Names are imported lazily so that ``import rerank`` stays cheap (torch and haystack load on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rerank.engine import CrossEncoderEngine
    from rerank.models import ModelNotFoundError, resolve_model
    from rerank.ranker import WinnowRanker

_LAZY = {
    "CrossEncoderEngine": "rerank.engine",
    "ModelNotFoundError": "rerank.models",
    "resolve_model": "rerank.models",
    "WinnowRanker": "rerank.ranker",
}

__all__ = ["CrossEncoderEngine", "ModelNotFoundError", "WinnowRanker", "resolve_model"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rerank' has no attribute {name!r}")
