"""Haystack metadata filters over a winnow index: syntax checks and the documents a filter selects.

The syntax is Haystack's (``{"field": "meta.year", "operator": ">=", "value": 2020}`` and
``{"operator": "AND", "conditions": [...]}``); matching uses Haystack's own ``document_matches_filter``,
in Python, one pass over the table: fine for tens of thousands of documents.
"""

from __future__ import annotations

from typing import Any

from haystack import Document
from haystack.errors import FilterError
from haystack.utils.filters import COMPARISON_OPERATORS, LOGICAL_OPERATORS, document_matches_filter

from winnow.indexes import WinnowIndex

_BATCH = 1000


def check_filter_syntax(node: Any) -> None:
    """Raise FilterError for a malformed filter, whatever the stored documents are."""
    if not isinstance(node, dict):
        raise FilterError(f"each filter condition must be a dict, got {type(node).__name__}: {node!r}")
    if "field" in node:
        for key in ("operator", "value"):
            if key not in node:
                raise FilterError(f"'{key}' key missing in {node}")
        operator = node["operator"]
        if operator not in COMPARISON_OPERATORS:
            raise FilterError(
                f"Unknown comparison operator '{operator}'. "
                f"Valid operators are: {sorted(COMPARISON_OPERATORS)}"
            )
        if operator in ("in", "not in") and not isinstance(node["value"], list):
            raise FilterError(
                f"Filter value must be a `list` when using operator 'in' or 'not in', "
                f"received type '{type(node['value'])}'"
            )
        return
    for key in ("operator", "conditions"):
        if key not in node:
            raise FilterError(f"'{key}' key missing in {node}")
    if node["operator"] not in LOGICAL_OPERATORS:
        raise FilterError(
            f"Unknown logical operator '{node['operator']}'. Valid operators are: {sorted(LOGICAL_OPERATORS)}"
        )
    if not isinstance(node["conditions"], list):
        raise FilterError(f"'conditions' must be a list in {node}")
    for condition in node["conditions"]:
        check_filter_syntax(condition)


def validate_filters(filters: dict[str, Any] | None, *, required: bool = False) -> None:
    """ValueError for non-Haystack filter syntax (as InMemoryDocumentStore); FilterError when malformed."""
    if not filters:
        if required:
            raise FilterError(
                "filters are required here; to act on every document use delete_all_documents()"
            )
        return
    if not isinstance(filters, dict) or ("operator" not in filters and "conditions" not in filters):
        raise ValueError(
            "Invalid filter syntax. See https://docs.haystack.deepset.ai/docs/metadata-filtering for details."
        )
    check_filter_syntax(filters)


def matching_document_ids(index: WinnowIndex, filters: dict[str, Any]) -> list[str]:
    """Ids of the documents (not chunks) of ``index`` whose id, content and meta match ``filters``.

    :raises ValueError: for non-Haystack syntax; :raises FilterError: for a malformed filter.
    """
    validate_filters(filters, required=True)
    ids = []
    for record in index.table.iter_records(_BATCH, with_embedding=False):
        if record.parent_id:
            continue
        doc = Document(id=record.id, content=record.text, meta=dict(record.meta))
        if document_matches_filter(filters=filters, document=doc):
            ids.append(record.id)
    return ids
