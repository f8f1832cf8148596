"""Haystack metadata filters over a winnow index: syntax checks and the documents a filter selects.

The syntax is Haystack's (``{"field": "meta.year", "operator": ">=", "value": 2020}`` and
``{"operator": "AND", "conditions": [...]}``). Matching runs in SQLite (:mod:`winnow.retrieval.filter_sql`
translates the filter, :meth:`DocumentTable.keys_where` runs it); the rows and clauses SQL cannot decide
exactly as Haystack does are checked with Haystack's own ``document_matches_filter`` in Python, over those
rows only (:func:`filter_keys`).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import dateutil.parser
import numpy as np
from haystack import Document
from haystack.errors import FilterError
from haystack.utils.filters import COMPARISON_OPERATORS, LOGICAL_OPERATORS, document_matches_filter

from winnow.indexes import DocumentRecord, DocumentTable, WinnowIndex
from winnow.retrieval.filter_sql import compile_filter

logger = logging.getLogger(__name__)

_BATCH = 1000
_ORDERING = (">", ">=", "<", "<=")
_MAX_DATE_CHARS = 64
_DEADLINE_EVERY = 256  # records between two looks at the clock
_clock = time.monotonic
MAX_FIELD_CHARS = 256
"""Longest ``field`` of a condition (``meta.a.b``); matching splits it on dots for every document."""


class FilterLimitError(FilterError):
    """A filter over a size limit: ``what`` is ``"nodes"``, ``"values"`` or ``"field"``, ``limit`` the cap."""

    def __init__(self, message: str, *, what: str, limit: int) -> None:
        super().__init__(message)
        self.what = what
        self.limit = limit


class FilterMatchError(ValueError):
    """A well-formed filter that cannot be applied to the stored documents (e.g. ``>`` on a list-valued
    field), or that ran past its time budget: the caller's fault, not a bug."""


def _count_values(value: Any, budget: int) -> int:
    """Elements in the lists and objects of ``value`` (nested ones too), stopping once past ``budget``."""
    count = 0
    stack = [value]
    while stack and count <= budget:
        item = stack.pop()
        if isinstance(item, (list, dict)):
            count += len(item)
            if count <= budget:
                stack.extend(item.values() if isinstance(item, dict) else item)
    return count


def check_filter_limits(
    filters: Any, *, max_nodes: int, max_values: int, max_field_chars: int = MAX_FIELD_CHARS
) -> None:
    """Raise :class:`FilterLimitError` when ``filters`` hold more than ``max_nodes`` conditions and logical
    operators, more than ``max_values`` values in all their lists (``in``/``not in`` lists and list- or
    object-valued comparisons together), or a ``field`` longer than ``max_field_chars``.

    Runs in time bounded by the limits, not by the filter's size, so call it before anything that walks the
    whole filter. Malformed nodes are left to :func:`validate_filters`.
    """
    nodes = values = 0
    stack = [filters]
    while stack:
        node = stack.pop()
        nodes += 1
        if not isinstance(node, dict):
            continue
        conditions = node.get("conditions")
        if "field" not in node and isinstance(conditions, list):
            if nodes + len(stack) + len(conditions) > max_nodes:
                raise FilterLimitError(
                    f"filters hold more than {max_nodes} conditions and logical operators; "
                    f"the limit is {max_nodes}",
                    what="nodes",
                    limit=max_nodes,
                )
            stack.extend(conditions)
            continue
        field = node.get("field")
        if isinstance(field, str) and len(field) > max_field_chars:
            raise FilterLimitError(
                f"a filter field is {len(field)} characters long; the limit is {max_field_chars}",
                what="field",
                limit=max_field_chars,
            )
        values += _count_values(node.get("value"), max_values - values)
        if values > max_values:
            operator = node.get("operator")
            raise FilterLimitError(
                f"filters hold more than {max_values} values in their lists (this {operator!r} condition "
                f"on {field!r} alone brings them over); the limit is {max_values} values in all",
                what="values",
                limit=max_values,
            )


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


def _parse_ordering_dates(node: Any) -> Any:
    """A copy of ``node`` whose ordering comparisons against a string hold the parsed datetime, so the string
    is parsed once rather than once per document (Haystack accepts a datetime value)."""
    if not isinstance(node, dict):
        return node
    if "field" not in node:
        conditions = node.get("conditions")
        if isinstance(conditions, list):
            return {**node, "conditions": [_parse_ordering_dates(c) for c in conditions]}
        return node
    value = node.get("value")
    if node.get("operator") not in _ORDERING or not isinstance(value, str):
        return node
    parsed = None
    if len(value) <= _MAX_DATE_CHARS:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            with contextlib.suppress(ValueError, OverflowError):
                parsed = dateutil.parser.parse(value)  # Haystack's fallback
    if parsed is None:
        shown = value if len(value) <= _MAX_DATE_CHARS else value[:_MAX_DATE_CHARS] + "..."
        raise FilterError(
            f"{node.get('field')!r} {node['operator']} {shown!r}: strings compare with '>', '>=', '<', '<=' "
            "only as dates (ISO 8601: 2024-05-01 or 2024-05-01T12:00:00)"
        )
    return {**node, "value": parsed}


MatchRecords = Callable[[list[DocumentRecord]], list[bool]]
"""Haystack's verdict on records (in key order), raising as ``document_matches_filter`` does."""


def filter_keys(
    table: DocumentTable,
    filters: dict[str, Any],
    match: MatchRecords,
    *,
    store_view: bool = False,
    where: str = "1",
    params: Sequence[object] = (),
    with_embedding: bool = False,
) -> np.ndarray:
    """Sorted keys of the rows of ``table`` (among those matching the SQL ``where``) that ``filters`` select.

    SQL decides what it can (:func:`~winnow.retrieval.filter_sql.compile_filter`, ``store_view`` as there);
    ``match`` checks the other rows, fetched ``with_embedding`` or not, in key order, so an error Haystack
    raises on some document is raised here too. Should SQLite refuse the query (a filter too large or too
    deep for it, or a stored meta it cannot parse, such as ``NaN``), ``match`` checks every row.

    :raises FilterError: for a malformed filter; whatever ``match`` raises.
    """
    compiled = compile_filter(filters, store_view=store_view)
    base = [*params]
    sql, sql_params = compiled.select(where, base)
    try:
        flagged = table.select_integers(sql, sql_params)  # one scan gives both sets, which keys_where cannot
        sure, maybe = np.sort(flagged[flagged >= 0]), np.sort(-1 - flagged[flagged < 0])
    except (sqlite3.Error, OverflowError, RecursionError) as err:
        logger.debug("SQLite cannot run this filter (%s); matching every row in Python", err)
        sure, maybe = np.empty(0, dtype=np.int64), table.keys_where(where, base)
    if maybe.size == 0:
        return sure
    matched: list[int] = []
    for start in range(0, maybe.size, _BATCH):
        records = table.get_by_keys(maybe[start : start + _BATCH], with_embedding=with_embedding)
        present = [r for r in records if r is not None]  # deleted since the query
        matched.extend(int(r.key) for r, ok in zip(present, match(present), strict=True) if ok)
    return np.union1d(sure, np.asarray(matched, dtype=np.int64))


_DOCUMENTS_ONLY = "parent_id IS NULL OR parent_id = ''"


def matching_document_keys(
    index: WinnowIndex, filters: dict[str, Any], *, max_seconds: float | None = None
) -> np.ndarray:
    """Sorted table keys of the documents (not chunks) of ``index`` whose id, content and meta (the stored
    JSON as it is) match ``filters``, for ``WinnowIndex.search(allow_keys=...)``.

    ``max_seconds`` bounds the time spent matching (the SQL query is not interrupted, but a query that ran
    past it fails as a slow Python check does).

    :raises ValueError: for non-Haystack syntax; :raises FilterError: for a malformed filter;
        :raises FilterMatchError: when the filter cannot be applied to a document's values (an ordering
        operator on a list-valued field, say), or matching takes longer than ``max_seconds``.
    """
    validate_filters(filters, required=True)
    filters = _parse_ordering_dates(filters)
    deadline = None if max_seconds is None else _clock() + max_seconds
    checked = 0

    def over_time() -> FilterMatchError:
        return FilterMatchError(
            f"the filter took more than {max_seconds:g} s to match ({checked} records checked in Python); "
            "use fewer conditions or shorter 'in' lists"
        )

    def match(records: list[DocumentRecord]) -> list[bool]:
        nonlocal checked
        verdicts = []
        for record in records:
            checked += 1
            if deadline is not None and checked % _DEADLINE_EVERY == 0 and _clock() > deadline:
                raise over_time()
            doc = Document(id=record.id, content=record.text, meta=dict(record.meta))
            try:
                verdicts.append(document_matches_filter(filters=filters, document=doc))
            except (TypeError, OverflowError, ValueError) as err:
                raise FilterMatchError(
                    f"the filter cannot be applied to document {record.id!r}: {err}. Ordering operators "
                    "('>', '>=', '<', '<=') need a number or an ISO date on both sides, not a list or an "
                    "object"
                ) from None
        return verdicts

    keys = filter_keys(index.table, filters, match, where=_DOCUMENTS_ONLY)
    if deadline is not None and _clock() > deadline:
        raise over_time()
    return keys


def matching_document_ids(
    index: WinnowIndex, filters: dict[str, Any], *, max_seconds: float | None = None
) -> list[str]:
    """Ids of the documents (not chunks) of ``index`` whose id, content and meta match ``filters``, in key
    order (see :func:`matching_document_keys`, which gives their keys, and raises the same errors)."""
    keys = matching_document_keys(index, filters, max_seconds=max_seconds)
    ids: list[str] = []
    for start in range(0, keys.size, _BATCH):
        records = index.table.get_by_keys(keys[start : start + _BATCH], with_embedding=False)
        ids.extend(r.id for r in records if r is not None)
    return ids
