"""Haystack type names from before winnow's modules moved under ``winnow.`` (``rerank.ranker.WinnowRanker``
is now ``winnow.rerank.ranker.WinnowRanker``), so that pipelines saved with the old names still load.

Each winnow component registers its old name in Haystack's component registry when its module is imported,
and each ``from_dict`` accepts the old ``type`` with a ``DeprecationWarning`` that names the new one. Haystack
looks a type up in the registry before importing it, so an old YAML loads once winnow's components are
imported (``import winnow.rerank.ranker``, ``import winnow.retrieval.embedding_retriever``) and its module
names are on the allowlist it was loaded with before (``allowed_modules=["rerank", "retrieval"]``). Saving it
again writes the new names, which load with ``allowed_modules=["winnow"]``.
"""

from __future__ import annotations

import warnings
from typing import Any

from haystack import component

__all__ = ["legacy_type_name", "register_legacy_name", "upgrade_legacy_type"]

_PREFIX = "winnow."


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def legacy_type_name(cls: type) -> str:
    """The type name ``cls`` was saved under before the move (its module without the ``winnow.`` prefix)."""
    return _type_name(cls).removeprefix(_PREFIX)


def register_legacy_name(cls: type) -> type:
    """Make Haystack's component registry find ``cls`` under its old name too; returns ``cls``."""
    component.registry.setdefault(legacy_type_name(cls), cls)
    return cls


def upgrade_legacy_type(data: dict[str, Any], cls: type) -> dict[str, Any]:
    """``data`` (a ``to_dict`` result) with an old ``type`` replaced by ``cls``'s current one, with a warning;
    other data is returned unchanged (``data`` itself is never modified)."""
    if data.get("type") != legacy_type_name(cls):
        return data
    new = _type_name(cls)
    warnings.warn(
        f"{data['type']!r} is now {new!r}: winnow's modules moved under 'winnow.'. Save the pipeline again "
        "to record the new name (it loads with allowed_modules=['winnow'])",
        DeprecationWarning,
        stacklevel=3,
    )
    return {**data, "type": new}
