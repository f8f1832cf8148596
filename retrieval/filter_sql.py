"""Haystack filters translated to SQL over a winnow document table, with Haystack's exact semantics.

:func:`compile_filter` turns a Haystack 2.x filter into two conditions over the rows of the ``documents``
table (``key, id, parent_id, text, meta``; ``meta`` is JSON text, read with
``json_extract(meta, '$."a"."b"')``):
``sure`` holds on rows that match, ``maybe`` on the rows SQL leaves to Python, which the caller checks with
``document_matches_filter`` (:func:`winnow.retrieval.metadata_filter.filter_keys`). Every other row does not
match, and Haystack would not raise on it. :meth:`CompiledFilter.select` finds both sets in one scan, reading
each meta path once per row (SQLite 3.40 parses the JSON again for every ``json_extract``); JSON types are
read from ``typeof(json_extract(...))``, with ``json_type`` only where that is ambiguous (text starting with
``[`` or ``{``, reals that may be huge integers). Values are always bound as parameters, JSON paths too.

Semantics followed (``haystack.utils.filters``): a missing field is ``None``; ``==`` is Python equality
(``True == 1 == 1.0``, JSON true read as 1) or two ISO 8601 strings/datetimes naming the same time; ``!=``
is its negation (so it matches documents without the field); ordering operators are ``False`` against
``None``, compare numbers (booleans as 0/1) and compare strings only as dates, raising ``FilterError`` (or
``TypeError``) otherwise; ``in``/``not in`` are ``==`` over a list (a non-list raises ``FilterError``);
``AND``/``OR``/``NOT`` over their conditions.

Left to Python (``maybe``), exactly these:

* Every row, for a condition SQL does not translate: fields other than ``id``, ``content``, ``meta.*`` (and
  bare names, which Haystack reads from ``meta``), i.e. ``embedding``, ``score``, ``blob``,
  ``sparse_embedding``, ``meta`` itself or other attributes; meta keys holding ``"``, ``\\`` or control
  characters (escaped in the stored JSON); values other than None, bool, int within int64, finite float,
  str, datetime, list or dict (tuples, dates, NaN, infinities, huge ints ...); an ordering against a string
  that ``dateutil`` fails on with an error Haystack does not catch.
* The rows on which an ordering condition may raise (a string or a list compared with a number, a number
  with a date, anything with a list or dict value ...): Python then raises Haystack's error, or not where
  ``AND``/``OR`` short-circuits past that condition for that row.
* Date comparisons (``==`` with a date string or datetime, any ordering against a date) on stored strings
  other than plain naive ``YYYY-MM-DD`` and ``YYYY-MM-DD[T ]HH:MM:SS`` (time zones, fractions, lenient
  formats, invalid dates, ``24:00``).
* ``==``/``!=``/``in``/``not in`` between a list (object) valued field and a list (dict) value.
* Integers beyond int64 stored in meta (SQLite reads them as floats), compared with numbers of magnitude
  2**62 or more.
* Every row, when SQLite refuses the query: a filter too large or too deeply nested for it, or a meta it
  cannot parse (``NaN``, ``Infinity``, which Python's ``json`` writes) on a row the query reads.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dateutil.parser
from haystack.errors import FilterError
from haystack.utils.filters import COMPARISON_OPERATORS, LOGICAL_OPERATORS

RESERVED_META_KEY = "__haystack__"
_ORDERING = {">": ">", ">=": ">=", "<": "<", "<=": "<="}
_INT64 = (-(2**63), 2**63 - 1)
_HUGE = 2**62
_BAD_KEY_CHARS = frozenset('"\\') | frozenset(chr(c) for c in range(0x20))
_DOCUMENT_FIELDS = ("id", "content", "blob", "meta", "score", "embedding", "sparse_embedding")
_TRUE, _FALSE = "1", "0"
_NO_TYPE = "''"  # the type of a missing value
_DAY = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
_PLAIN_DATES = (
    f"'{_DAY}'",
    f"'{_DAY}[T ][01][0-9]:[0-5][0-9]:[0-5][0-9]'",
    f"'{_DAY}[T ]2[0-3]:[0-5][0-9]:[0-5][0-9]'",
)


@dataclass(frozen=True)
class Sql:
    """An SQL expression and its parameters, in order."""

    text: str
    params: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return self.text


TRUE, FALSE = Sql(_TRUE), Sql(_FALSE)


def _join(op: str, parts: Sequence[Sql], unit: Sql, zero: Sql) -> Sql:
    """``parts`` joined by ``op`` as a balanced tree (SQLite caps expression depth), constants folded."""
    kept: list[Sql] = []
    for part in parts:
        if part.text == zero.text:
            return zero
        if part.text != unit.text:
            kept.append(part)
    if not kept:
        return unit
    while len(kept) > 1:
        pairs = [kept[i : i + 2] for i in range(0, len(kept), 2)]
        kept = [
            p[0] if len(p) == 1 else Sql(f"({p[0].text} {op} {p[1].text})", p[0].params + p[1].params)
            for p in pairs
        ]
    return kept[0]


def and_(*parts: Sql) -> Sql:
    """Conjunction (``1`` when empty)."""
    return _join("AND", parts, TRUE, FALSE)


def or_(*parts: Sql) -> Sql:
    """Disjunction (``0`` when empty)."""
    return _join("OR", parts, FALSE, TRUE)


def not_(part: Sql) -> Sql:
    """Negation of a 0/1 expression."""
    if part.text == _TRUE:
        return FALSE
    if part.text == _FALSE:
        return TRUE
    return Sql(f"(NOT {part.text})", part.params)


# ---------------------------------------------------------------------- a node over each row
@dataclass(frozen=True)
class Outcomes:
    """A filter node over each row, as 0/1 SQL expressions (never NULL): ``python`` holds the rows SQL
    leaves to Python (a superset of those on which evaluating the node may raise, or whose value SQL cannot
    work out); on every other row the node's value is ``p``. ``exact``: ``python`` is 0."""

    p: Sql
    python: Sql = FALSE

    @property
    def exact(self) -> bool:
        return self.python.text == _FALSE

    @staticmethod
    def certain(p: Sql) -> Outcomes:
        return Outcomes(p, FALSE)


UNKNOWN = Outcomes(FALSE, TRUE)


def _leaf(p: Sql, *, r: Sql = FALSE, u: Sql = FALSE) -> Outcomes:
    """A condition that is ``p`` on rows outside ``r`` (it raises there) and ``u`` (undecided)."""
    return Outcomes(p, or_(r, u))


def _combine(children: list[Outcomes], join: Any) -> Outcomes:
    """AND/OR: where no condition raises, short-circuiting does not change the value."""
    return Outcomes(join(*(c.p for c in children)), or_(*(c.python for c in children)))


def _and(children: list[Outcomes]) -> Outcomes:
    return _combine(children, and_)


def _or(children: list[Outcomes]) -> Outcomes:
    return _combine(children, or_)


def _not(children: list[Outcomes]) -> Outcomes:
    inner = _and(children)
    return Outcomes(not_(inner.p), inner.python)


# ---------------------------------------------------------------------- field values
class _Row:
    """What a compiled filter reads from each row: the ``documents`` columns it names, and the expressions
    over meta it extracts, each evaluated once per row as a column of a sub-query
    (:meth:`CompiledFilter.select`), however often the filter refers to it."""

    def __init__(self) -> None:
        self.extracted: dict[Sql, str] = {}

    def column(self, name: str) -> Sql:
        return Sql(name)

    def extract(self, expression: Sql) -> Sql:
        return Sql(self.extracted.setdefault(expression, f"_v{len(self.extracted)}"))


@dataclass(frozen=True)
class _Value:
    """A field's value in SQL: ``value`` its SQL value (``json_extract`` semantics: JSON true/false read as
    1/0, arrays and objects as JSON text) and ``kind`` its JSON type ('' when missing), which costs a parse
    of meta, so it is only read where ``value`` is ambiguous (text starting with ``[`` or ``{``, a real that
    may be a huge integer). ``typed``: ``value`` has no SQL affinity and only JSON's types (NULL, integer,
    real, text), so a comparison with a number (a string) is false on text (numbers) without a type check."""

    kind: Sql
    value: Sql
    uses_meta: bool = False
    typed: bool = False

    def _guarded(self, guard: str, kind_test: str) -> Sql:
        """``kind_test`` on the JSON type, read only on rows where ``guard`` (over ``{v}``) holds."""
        guard_sql = self._template(guard)
        return Sql(
            f"(CASE WHEN {guard_sql.text} THEN {self.kind.text} {kind_test} ELSE 0 END)",
            guard_sql.params + self.kind.params,
        )

    def is_none(self) -> Sql:
        return self._template("({v} IS NULL)")

    def is_text(self, value: str | None = None) -> Sql:
        """A string (not an array or object). Where the caller also compares with the string ``value``,
        which no array or object text equals unless it starts with ``[`` or ``{``, this is only needed for
        such strings."""
        if self.typed and value is not None and value[:1] not in ("[", "{"):
            return TRUE
        plain = self._template("(typeof({v}) = 'text')")
        if not self.uses_meta:
            return plain
        return and_(plain, not_(self._guarded("substr({v}, 1, 1) IN ('[', '{{')", "<> 'text'")))

    def is_text_or_container(self) -> Sql:
        """A string, array or object (the SQL type of all three)."""
        return self._template("(typeof({v}) = 'text')")

    def is_container(self, kind: str) -> Sql:
        """An array (``kind='array'``) or object."""
        if not self.uses_meta:
            return FALSE
        first = "[" if kind == "array" else "{{"
        return self._guarded(f"typeof({{v}}) = 'text' AND substr({{v}}, 1, 1) = '{first}'", f"= '{kind}'")

    def is_number(self) -> Sql:
        """Numbers and booleans (JSON true/false read as 1/0, which compare as Python's True/False)."""
        return self._template("(typeof({v}) IN ('integer', 'real'))")

    def number_guard(self) -> Sql:
        """:meth:`is_number` where a comparison with a number could hold on other values."""
        return TRUE if self.typed else self.is_number()

    def is_huge_int(self, against: Sequence[int | float]) -> Sql:
        """JSON integers beyond int64, which SQLite reads as rounded floats: they compare as in Python with
        numbers below 2**62 in magnitude, so they are undecided only against larger ones."""
        if not self.uses_meta or all(abs(x) < _HUGE for x in against):
            return FALSE
        return self._guarded("typeof({v}) = 'real' AND abs({v}) >= 9.2e18", "= 'integer'")

    def compare(self, op: str, param: Any) -> Sql:
        return Sql(f"COALESCE({self.value.text} {op} ?, 0)", (*self.value.params, param))

    def in_json_list(self, values: list[Any]) -> Sql:
        text = json.dumps(values, ensure_ascii=False, allow_nan=False)
        return Sql(
            f"COALESCE({self.value.text} IN (SELECT value FROM json_each(?)), 0)", (*self.value.params, text)
        )

    def _template(self, template: str) -> Sql:
        """``template`` with every ``{v}`` replaced by the value expression (its parameters repeated)."""
        return Sql(template.format(v=self.value.text), self.value.params * template.count("{v}"))

    # plain naive ISO dates, which SQL compares as text once put in one canonical form
    def looks_like_date(self) -> Sql:
        """A superset of the strings Haystack's ``_looks_like_iso_date`` accepts (any digits)."""
        return self._template("(length({v}) >= 10 AND substr({v}, 5, 1) = '-' AND substr({v}, 8, 1) = '-')")

    def is_plain_date(self) -> Sql:
        """``YYYY-MM-DD`` or ``YYYY-MM-DD[T ]HH:MM:SS``, valid and naive: strings ``datetime.fromisoformat``
        reads exactly (years 1 to 9999). No number's text, array or object has that shape. SQLite's
        ``date()`` checks only days past the 28th."""
        shapes = " OR ".join(f"{{v}} GLOB {shape}" for shape in _PLAIN_DATES)
        return self._template(
            f"(({shapes}) AND substr({{v}}, 1, 4) <> '0000' AND substr({{v}}, 6, 2) BETWEEN '01' AND '12' "
            "AND substr({v}, 9, 2) >= '01' "
            "AND (substr({v}, 9, 2) <= '28' OR COALESCE(date({v}, '+0 days') = substr({v}, 1, 10), 0)))"
        )

    def canonical_date(self) -> Sql:
        """A plain date as ``YYYY-MM-DDTHH:MM:SS`` (as ``datetime.isoformat``): compared as text."""
        return self._template(
            "(CASE WHEN length({v}) = 10 THEN {v} || 'T00:00:00' "
            "ELSE substr({v}, 1, 10) || 'T' || substr({v}, 12) END)"
        )

    def compare_date(self, op: str, date: datetime) -> Sql:
        canonical = self.canonical_date()
        return Sql(f"COALESCE({canonical.text} {op} ?, 0)", (*canonical.params, _canonical(date)))


def _meta_value(path: list[str], row: _Row, *, store_view: bool) -> _Value | None:
    """The value at ``meta.<path>``; None when SQL cannot address it."""
    if any(_BAD_KEY_CHARS.intersection(part) for part in path):
        return None
    if store_view and path[0] == RESERVED_META_KEY:  # stripped from the documents the store hands out
        return _Value(Sql(_NO_TYPE), Sql("NULL"))
    json_path = "$" + "".join(f'."{part}"' for part in path)
    value = row.extract(Sql("json_extract(meta, ?)", (json_path,)))
    if store_view and path == ["parent_id"]:  # the store puts the parent_id column there when meta lacks it
        parent, kind = row.column("parent_id"), row.extract(Sql("json_type(meta, ?)", (json_path,)))
        return _Value(
            Sql(f"COALESCE({kind}, CASE WHEN {parent} IS NULL THEN '' ELSE 'text' END)"),
            Sql(f"CASE WHEN {kind} IS NULL THEN {parent} ELSE {value} END"),
            uses_meta=True,
        )
    kind = Sql("COALESCE(json_type(meta, ?), '')", (json_path,))
    return _Value(kind, value, uses_meta=True, typed=True)


def field_value(name: Any, row: _Row, *, store_view: bool) -> _Value | None:
    """How Haystack reads ``name`` from a document, in SQL; None when SQL cannot (Python decides)."""
    if not isinstance(name, str):
        return None
    if "." in name:
        root, *path = name.split(".")
        if root == "meta":
            return _meta_value(path, row, store_view=store_view)
        if root in ("id", "content"):  # a string (or None) has no sub-fields: Haystack reads None
            return _Value(Sql(_NO_TYPE), Sql("NULL"))
        return None
    if name == "id":
        return _Value(Sql("'text'"), row.column("id"))
    if name == "content":
        text = row.column("text")
        return _Value(Sql(f"CASE WHEN {text.text} IS NULL THEN '' ELSE 'text' END"), text)
    if name in _DOCUMENT_FIELDS:
        return None
    return _meta_value([name], row, store_view=store_view)  # legacy filters: bare names are meta keys


# ---------------------------------------------------------------------- comparisons
def _number(value: Any) -> bool:
    """A bool, an int within int64 or a finite float: values SQLite compares as Python does."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    return isinstance(value, float) and math.isfinite(value)


def _sql_number(value: Any) -> int | float:
    return int(value) if isinstance(value, bool) else value


def _iso_date(value: Any) -> datetime | None:
    """``value`` as Haystack's ``==`` reads a date: a datetime, or a strict ISO 8601 string."""
    if isinstance(value, datetime):
        return value
    if not (
        isinstance(value, str)
        and len(value) >= 10
        and value[:4].isdigit()
        and value[4] == "-"
        and value[5:7].isdigit()
        and value[7] == "-"
        and value[8:10].isdigit()
        and (len(value) == 10 or value[10] in {"T", "t", " "})
    ):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        try:
            return dateutil.parser.isoparse(value)
        except (ValueError, OverflowError):
            return None


def _canonical(date: datetime) -> str:
    """The wall-clock time of ``date`` in the form :meth:`_Value.canonical_date` gives plain dates (a naive
    stored date takes the filter's time zone, so only the wall clock counts)."""
    return date.replace(tzinfo=None).isoformat()


_UNDECIDED = object()


def _ordering_date(value: str) -> datetime | None | object:
    """Haystack's ``_parse_date``: the datetime, None when it raises FilterError, _UNDECIDED otherwise."""
    try:
        return datetime.fromisoformat(value)
    except (ValueError, TypeError):
        try:
            return dateutil.parser.parse(value)
        except (ValueError, TypeError):
            return None
        except Exception:  # noqa: BLE001 - whatever else dateutil raises, Haystack raises too: Python decides
            return _UNDECIDED


def _equal(v: _Value, value: Any) -> Outcomes | None:
    """``field == value``; None when SQL cannot decide it for any row."""
    if value is None:
        return Outcomes.certain(v.is_none())
    if _number(value):
        number = _sql_number(value)
        return _leaf(and_(v.number_guard(), v.compare("=", number)), u=v.is_huge_int([number]))
    if isinstance(value, (list, dict)):
        return _leaf(FALSE, u=v.is_container("array" if isinstance(value, list) else "object"))
    if not isinstance(value, (str, datetime)):
        return None
    date = _iso_date(value)
    same = and_(v.is_text(value), v.compare("=", value)) if isinstance(value, str) else FALSE
    if date is None:
        return Outcomes.certain(same)
    plain = v.is_plain_date()  # only strings have that shape
    as_date = and_(plain, v.compare_date("=", date))
    undecided = and_(v.is_text_or_container(), v.looks_like_date(), not_(plain), not_(same))
    return _leaf(or_(same, as_date), u=undecided)


def _in(v: _Value, values: list[Any]) -> Outcomes | None:
    """``field in values``: ``==`` against each, numbers and plain strings in one ``json_each`` list each."""
    numbers = [_sql_number(x) for x in values if _number(x)]
    texts = [x for x in values if isinstance(x, str) and _iso_date(x) is None]
    rest = [x for x in values if not _number(x) and not (isinstance(x, str) and _iso_date(x) is None)]
    children: list[Outcomes] = []
    if numbers:
        number_in = and_(v.number_guard(), v.in_json_list(numbers))
        children.append(_leaf(number_in, u=v.is_huge_int(numbers)))
    if texts:
        strings = [v.is_text(x) for x in texts]
        is_text = TRUE if all(x.text == _TRUE for x in strings) else v.is_text()
        children.append(Outcomes.certain(and_(is_text, v.in_json_list(texts))))
    for value in rest:
        child = _equal(v, value)
        if child is None:
            return None
        children.append(child)
    return _or(children)


def _ordering(v: _Value, op: str, value: Any) -> Outcomes | None:
    """``field op value`` for ``>``, ``>=``, ``<``, ``<=``; None when SQL cannot decide it for any row."""
    if value is None:
        return Outcomes.certain(FALSE)
    present = not_(v.is_none())
    if isinstance(value, (list, dict)):  # FilterError (or TypeError) whatever the stored value
        return _leaf(FALSE, r=present)
    if _number(value):
        number = _sql_number(value)
        # text sorts after every number in SQLite: only '>' and '>=' may hold on a non-number
        guard = v.number_guard() if op in ("<", "<=") else v.is_number()
        compared = and_(guard, v.compare(_ORDERING[op], number))
        raises = v.is_text_or_container() if v.typed else and_(present, not_(v.is_number()))
        return _leaf(compared, r=raises, u=v.is_huge_int([number]))
    if isinstance(value, str):
        date = _ordering_date(value)
        if date is _UNDECIDED:
            return None
        if date is None:  # Haystack cannot read the value as a date: raises on every present field
            return _leaf(FALSE, r=present)
    elif isinstance(value, datetime):
        date = value
    else:
        return None
    assert isinstance(date, datetime)
    plain = v.is_plain_date()  # only strings have that shape
    compared = and_(plain, v.compare_date(_ORDERING[op], date))
    # raises on other types, undecided on other strings: Python for anything but None and plain dates
    return _leaf(compared, r=and_(present, not_(plain)))


def _comparison(node: dict[str, Any], row: _Row, *, store_view: bool) -> Outcomes:
    operator, value = node["operator"], node["value"]
    if operator not in COMPARISON_OPERATORS:
        raise FilterError(
            f"Unknown comparison operator '{operator}'. Valid operators are: {sorted(COMPARISON_OPERATORS)}"
        )
    if operator in ("in", "not in") and not isinstance(value, list):
        raise FilterError(
            "Filter value must be a `list` when using operator 'in' or 'not in', "
            f"received type '{type(value)}'"
        )
    v = field_value(node["field"], row, store_view=store_view)
    result: Outcomes | None = None
    if v is not None:
        if operator in ("==", "!="):
            result = _equal(v, value)
        elif operator in ("in", "not in"):
            result = _in(v, value)
        else:
            result = _ordering(v, operator, value)
    if result is None:
        return UNKNOWN
    return _not([result]) if operator in ("!=", "not in") else result


def _node(node: Any, row: _Row, *, store_view: bool) -> Outcomes:
    if not isinstance(node, dict):
        raise FilterError(f"each filter condition must be a dict, got {type(node).__name__}: {node!r}")
    if "field" in node:
        for key in ("operator", "value"):
            if key not in node:
                raise FilterError(f"'{key}' key missing in {node}")
        return _comparison(node, row, store_view=store_view)
    for key in ("operator", "conditions"):
        if key not in node:
            raise FilterError(f"'{key}' key missing in {node}")
    operator = node["operator"]
    if operator not in LOGICAL_OPERATORS:
        raise FilterError(
            f"Unknown logical operator '{operator}'. Valid operators are: {sorted(LOGICAL_OPERATORS)}"
        )
    children = [_node(c, row, store_view=store_view) for c in node["conditions"]]
    return {"AND": _and, "OR": _or, "NOT": _not}[operator](children)


# ---------------------------------------------------------------------- the result
_ROW_COLUMNS = ("id", "parent_id", "text", "meta")


@dataclass(frozen=True)
class CompiledFilter:
    """A filter as SQL over a row of :meth:`select`'s sub-query (the ``documents`` columns a filter names,
    and ``_v0``, ``_v1`` ... for the expressions over meta in ``extracted``, each evaluated once per row):
    ``sure`` holds on rows that match, ``maybe`` on rows that Python must check (they may match, or make
    Haystack raise); every other row does not match. ``exact``: SQL decides every row whose meta SQLite can
    parse (``maybe`` holds only the others)."""

    sure: Sql
    maybe: Sql
    exact: bool
    matches: Sql = TRUE
    """Holds on the rows that match, among those outside ``maybe`` (``sure`` is ``matches AND NOT maybe``)."""
    columns: tuple[str, ...] = ()
    extracted: tuple[Sql, ...] = ()

    def select(self, where: str = "1", params: Sequence[object] = ()) -> tuple[str, list[object]]:
        """One scan over the ``documents`` rows matching the SQL ``where`` (with ``params``): the query (and
        its parameters) giving, in no set order, the key of each row in ``sure`` and ``-1 - key`` for each
        row in ``maybe`` (keys are never negative)."""
        inner = [*("key", *self.columns), *(f"{e.text} AS _v{i}" for i, e in enumerate(self.extracted))]
        inner_params = [p for e in self.extracted for p in e.params]
        wanted = or_(self.matches, self.maybe)
        flagged = Sql("key") if self.exact else Sql(f"CASE WHEN {self.maybe.text} THEN -1 - key ELSE key END")
        flagged = Sql(flagged.text, self.maybe.params if not self.exact else ())
        sql = (
            f"SELECT {flagged.text} FROM (SELECT {', '.join(inner)} FROM documents WHERE ({where}) "
            f"LIMIT -1) WHERE {wanted.text}"  # LIMIT: a co-routine, never flattened into the outer query
        )
        return sql, [*flagged.params, *inner_params, *params, *wanted.params]


def compile_filter(filters: dict[str, Any], *, store_view: bool = False) -> CompiledFilter:
    """Translate Haystack ``filters`` to SQL over the ``documents`` table (see the module docstring).

    ``store_view`` reads meta as :class:`~retrieval.document_store.WinnowDocumentStore` hands documents out
    (without its reserved ``__haystack__`` key, ``parent_id`` from its column when meta lacks it); otherwise
    meta is the stored JSON as it is.

    :raises FilterError: for a malformed filter (an ``in`` whose value is not a list, an unknown operator).
    """
    row = _Row()
    root = _node(filters, row, store_view=store_view)
    sure, maybe = and_(root.p, not_(root.python)), root.python
    used = f"{root.p.text} {maybe.text}"
    columns = tuple(c for c in _ROW_COLUMNS if re.search(rf"(?<!')\b{c}\b(?!')", used))
    extracted = tuple(sorted(row.extracted, key=lambda e: int(row.extracted[e][2:])))
    return CompiledFilter(sure, maybe, root.exact, root.p, columns, extracted)
