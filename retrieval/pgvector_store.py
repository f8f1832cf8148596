"""pgvector-haystack's ``PgvectorDocumentStore`` as winnow configures it (open it with
:func:`retrieval.store_uri.open_document_store`).

What winnow adds to the stock store:

- every connection runs ``SET hnsw.iterative_scan = strict_order`` (and ``hnsw.ef_search`` when given), so
  an HNSW search with a filter keeps scanning until it has ``top_k`` matches, in exact distance order;
- ``NOT`` filters, which the stock store refuses, are rewritten by De Morgan's laws into ``AND``/``OR`` of
  negated comparisons (:func:`rewrite_not_filters`), with Haystack's semantics for missing fields; a ``NOT``
  over an operator that has no exact negation raises ``FilterError`` instead of answering wrongly;
- :meth:`WinnowPgvectorDocumentStore.keyword_search`: Postgres full-text ranking (``ts_rank_cd``) over title
  and text with any query word matching (the stock keyword retrieval needs every word), from tsvectors
  stored in a side table ``{table}_fts`` (GIN-indexed, kept in step by triggers on the documents table);
- the embedder's name and dimension are recorded on the table (``COMMENT ON TABLE``), and checked;
- the connection string is kept out of every message: errors name the store by :func:`redact_dsn`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from haystack import Document
from haystack.document_stores.errors import DocumentStoreError
from haystack.errors import FilterError
from haystack.utils.auth import Secret
from haystack_integrations.document_stores.pgvector import PgvectorDocumentStore
from haystack_integrations.document_stores.pgvector.converters import _from_pg_to_haystack_documents
from haystack_integrations.document_stores.pgvector.filters import _convert_filters_to_where_clause_and_params
from psycopg import Connection, Error
from psycopg.sql import SQL, Identifier
from psycopg.sql import Literal as SQLLiteral

from winnow.retrieval.redaction import redact_dsn

logger = logging.getLogger(__name__)

__all__ = ["WinnowPgvectorDocumentStore", "rewrite_not_filters"]

# Full text: a side table {table}_fts (doc_id, tsv) kept in step by triggers, so ranking reads stored
# tsvectors instead of re-parsing every matching document per query, while the documents table keeps exactly
# the columns pgvector-haystack reads with SELECT *.
_TSVECTOR = (
    "to_tsvector({{}}::regconfig, coalesce({row}meta->>'title', '') || ' ' || coalesce({row}content, ''))"
)
_FTS_TABLE = "CREATE TABLE IF NOT EXISTS {fts} (doc_id VARCHAR(128) PRIMARY KEY, tsv tsvector NOT NULL)"
_FTS_INDEX = "CREATE INDEX IF NOT EXISTS {fts_index} ON {fts} USING GIN (tsv)"
_FTS_FUNCTION = """CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE {fts};
  ELSIF TG_OP = 'DELETE' THEN
    DELETE FROM {fts} WHERE doc_id = OLD.id;
  ELSE
    IF TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id THEN
      DELETE FROM {fts} WHERE doc_id = OLD.id;
    END IF;
    INSERT INTO {fts} (doc_id, tsv) VALUES (NEW.id, {tsvector_new})
    ON CONFLICT (doc_id) DO UPDATE SET tsv = EXCLUDED.tsv;
  END IF;
  RETURN NULL;
END $$"""
_FTS_ROW_TRIGGER = (
    "CREATE OR REPLACE TRIGGER {row_trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION {function}()"
)
_FTS_TRUNCATE_TRIGGER = (
    "CREATE OR REPLACE TRIGGER {truncate_trigger} AFTER TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
)
_FTS_BACKFILL = (
    "INSERT INTO {fts} (doc_id, tsv) SELECT id, {tsvector_row} FROM {table} ON CONFLICT (doc_id) DO NOTHING"
)

_NEGATED = {"==": "!=", "!=": "==", "in": "not in", "not in": "in"}
_ORDERING_NEGATED = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}


def rewrite_not_filters(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """``filters`` with every ``NOT`` pushed down to its comparisons (De Morgan), so stores that know only
    ``AND``/``OR`` answer them exactly. ``NOT`` applies to the ``AND`` of its conditions (Haystack's rule).

    ``==``/``!=`` and ``in``/``not in`` negate into each other (both treat a missing field as a value that
    equals nothing). An ordering comparison (``>``...) never matches a missing field, so its negation is the
    opposite comparison OR the field being missing. Any other operator under ``NOT`` raises ``FilterError``.
    """
    if not filters:
        return filters
    return _rewrite(filters, negate=False)


def _rewrite(node: Any, *, negate: bool) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise FilterError(f"each filter condition must be a dict, got {type(node).__name__}")
    if "field" in node:
        return _negate_comparison(node) if negate else node
    operator = node.get("operator")
    conditions = node.get("conditions")
    if operator not in ("AND", "OR", "NOT") or not isinstance(conditions, list):
        return node  # malformed: left for the store's own validation to reject
    if operator == "NOT":
        # NOT(AND(c...)) = OR(NOT c...); a NOT under a negation cancels: AND(c...)
        negate = not negate
        operator = "AND"
    if negate:
        operator = "OR" if operator == "AND" else "AND"
    return {"operator": operator, "conditions": [_rewrite(c, negate=negate) for c in conditions]}


def _negate_comparison(node: dict[str, Any]) -> dict[str, Any]:
    operator = node.get("operator")
    if operator in _NEGATED:
        return {**node, "operator": _NEGATED[operator]}
    if operator in _ORDERING_NEGATED:
        return {
            "operator": "OR",
            "conditions": [
                {**node, "operator": _ORDERING_NEGATED[operator]},
                {"field": node["field"], "operator": "==", "value": None},
            ],
        }
    raise FilterError(
        f"'NOT' over the {operator!r} operator has no exact rewrite for PostgreSQL; express the filter "
        "without NOT (e.g. with '!=' or 'not in')"
    )


class WinnowPgvectorDocumentStore(PgvectorDocumentStore):
    """A ``PgvectorDocumentStore`` with winnow's settings (see the module docstring). ``dsn``: a libpq URI;
    it is held as a Haystack ``Secret`` and never appears in messages (``display_name`` is redacted)."""

    def __init__(self, *, dsn: str, table_name: str, embedding_dimension: int, **kwargs: Any) -> None:
        kwargs.setdefault("vector_function", "cosine_similarity")
        kwargs.setdefault("hnsw_index_name", f"{table_name}_hnsw")
        kwargs.setdefault("keyword_index_name", f"{table_name}_keyword")
        super().__init__(
            connection_string=Secret.from_token(dsn),
            table_name=table_name,
            embedding_dimension=embedding_dimension,
            **kwargs,
        )
        self.display_name = redact_dsn(dsn) + (
            "" if table_name == "winnow_documents" else f" (table {table_name})"
        )

    def __repr__(self) -> str:
        return f"WinnowPgvectorDocumentStore({self.display_name!r})"

    # ------------------------------------------------------------------ connections
    def _create_connection(self) -> Connection:
        """A new connection with winnow's session settings (iterative HNSW scans, ``ef_search``)."""
        try:
            connection = Connection.connect(self.connection_string.resolve_value() or "", autocommit=True)
        except Error as err:
            raise DocumentStoreError(
                f"could not connect to PostgreSQL at {self.display_name}: {redact_dsn(str(err)).strip()}"
            ) from None
        try:
            connection.execute("SET hnsw.iterative_scan = strict_order")
            if self.hnsw_ef_search:
                connection.execute(
                    SQL("SET hnsw.ef_search = {}").format(SQLLiteral(int(self.hnsw_ef_search)))
                )
        except Error as err:
            connection.close()
            raise DocumentStoreError(
                f"PostgreSQL at {self.display_name} refused pgvector's settings "
                f"({redact_dsn(str(err)).strip()}); winnow needs pgvector >= 0.8 (iterative index scans)"
            ) from None
        return connection

    def _initialize_table(self) -> None:
        """Create table and indexes when missing, under an advisory lock: threads or replicas opening a new
        table at once do not race on CREATE TABLE."""
        assert self._connection is not None
        key = f"winnow:{self.schema_name}.{self.table_name}"
        self._connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        try:
            self._create_table_and_indexes()
        finally:
            self._connection.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

    def _create_table_and_indexes(self) -> None:
        self._check_pgvector_version()
        super()._initialize_table()
        assert self._cursor is not None
        names = self._fts_names()
        created = self._execute_sql(
            cursor=self._cursor,
            sql_query=SQL("SELECT to_regclass({}) IS NULL").format(
                SQLLiteral(f'"{self.schema_name}"."{self.table_name}_fts"')
            ),
            error_msg="Could not check the full-text table",
        ).fetchone()[0]
        for statement in (_FTS_TABLE, _FTS_INDEX, _FTS_FUNCTION, _FTS_ROW_TRIGGER, _FTS_TRUNCATE_TRIGGER):
            self._execute_sql(
                cursor=self._cursor,
                sql_query=SQL(statement).format(**names),
                error_msg="Could not create the full-text table and its triggers",
            )
        if created:  # documents written before the table existed (by another tool)
            self._execute_sql(
                cursor=self._cursor,
                sql_query=SQL(_FTS_BACKFILL).format(**names),
                error_msg="Could not fill the full-text table",
            )

    def _check_pgvector_version(self) -> None:
        """Refuse pgvector < 0.8: without iterative index scans a filtered HNSW search returns fewer hits."""
        assert self._cursor is not None
        row = self._execute_sql(
            cursor=self._cursor,
            sql_query=SQL("SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
            error_msg="Could not read pgvector's version",
        ).fetchone()
        version = tuple(int(p) for p in re.findall(r"\d+", row[0])[:2]) if row else ()
        if version and version < (0, 8):
            raise DocumentStoreError(
                f"{self.display_name} has pgvector {row[0]}; winnow needs pgvector >= 0.8 (iterative index "
                "scans, so a filtered search still fills top_k): ALTER EXTENSION vector UPDATE"
            )

    def _fts_names(self) -> dict[str, Any]:
        return {
            "table": Identifier(self.schema_name, self.table_name),
            "fts": Identifier(self.schema_name, f"{self.table_name}_fts"),
            "fts_index": Identifier(f"{self.table_name}_fts_gin"),
            "function": Identifier(self.schema_name, f"{self.table_name}_fts_sync"),
            "row_trigger": Identifier(f"{self.table_name}_fts_rows"),
            "truncate_trigger": Identifier(f"{self.table_name}_fts_truncate"),
            "tsvector_new": SQL(_TSVECTOR.format(row="NEW.")).format(SQLLiteral(self.language)),
            "tsvector_row": SQL(_TSVECTOR.format(row="")).format(SQLLiteral(self.language)),
        }

    def delete_table(self) -> None:
        """Drop the table and winnow's full-text table and trigger function beside it."""
        super().delete_table()
        assert self._cursor is not None
        names = self._fts_names()
        for statement in ("DROP TABLE IF EXISTS {fts}", "DROP FUNCTION IF EXISTS {function}()"):
            self._execute_sql(
                cursor=self._cursor,
                sql_query=SQL(statement).format(**names),
                error_msg="Could not drop the full-text table",
            )

    def _handle_hnsw(self) -> None:
        """Create the HNSW index when missing (an existing one is kept without the stock store's warning on
        every open; ``ef_search`` is set per connection by :meth:`_create_connection`)."""
        assert self._cursor is not None
        exists = self._execute_sql(
            cursor=self._cursor,
            sql_query=SQL(
                "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND tablename = %s AND indexname = %s"
            ),
            params=(self.schema_name, self.table_name, self.hnsw_index_name),
            error_msg="Could not check if the HNSW index exists",
        ).fetchone()
        if exists and not self.hnsw_recreate_index_if_exists:
            return
        super()._handle_hnsw()

    def connection_pid(self) -> int:
        """The PostgreSQL backend process id of this store's connection (one per store)."""
        self._ensure_db_setup()
        assert self._connection is not None
        return int(self._connection.info.backend_pid)

    # ------------------------------------------------------------------ table metadata
    def table_exists(self) -> bool:
        """Whether the table exists (checked without creating it)."""
        with self._raw_connection() as connection:
            row = connection.execute(
                "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                (self.schema_name, self.table_name),
            ).fetchone()
        return row is not None

    def _raw_connection(self) -> Connection:
        try:
            return Connection.connect(self.connection_string.resolve_value() or "", autocommit=True)
        except Error as err:
            raise DocumentStoreError(
                f"could not connect to PostgreSQL at {self.display_name}: {redact_dsn(str(err)).strip()}"
            ) from None

    def table_info(self) -> dict[str, Any]:
        """What winnow recorded on the table: ``{"embedder": name, "dim": n}`` (empty when nothing)."""
        self._ensure_db_setup()
        assert self._cursor is not None
        row = self._execute_sql(
            cursor=self._cursor,
            sql_query=SQL("SELECT obj_description(to_regclass(%s), 'pg_class')"),
            params=(f"{self.schema_name}.{self.table_name}",),
            error_msg="Could not read the table's comment",
        ).fetchone()
        try:
            info = json.loads(row[0]).get("winnow") if row and row[0] else None
        except (ValueError, AttributeError):
            info = None
        return info if isinstance(info, dict) else {}

    def record_embedder(self, embedder: str, dim: int) -> None:
        """Record the embedder that wrote the table's vectors (read back by :meth:`table_info`)."""
        self._ensure_db_setup()
        assert self._cursor is not None
        self._execute_sql(
            cursor=self._cursor,
            sql_query=SQL("COMMENT ON TABLE {}.{} IS {}").format(
                Identifier(self.schema_name),
                Identifier(self.table_name),
                SQLLiteral(store_info_json(embedder, dim)),
            ),
            error_msg="Could not record the embedder on the table",
        )

    def check_embedder(self, embedder: str | None, dim: int) -> None:
        """Adopt an existing table's recorded dimension; raise ``ValueError`` when ``embedder`` (if given)
        differs from the one recorded, or when an existing column's dimension differs from ``dim`` for a
        given embedder."""
        if not self.table_exists():
            return
        info = self.table_info()
        recorded, recorded_dim = info.get("embedder"), info.get("dim")
        if embedder and recorded and embedder != recorded:
            raise ValueError(
                f"{self.display_name} holds vectors of embedder {recorded!r}, not {embedder!r}; search it "
                f"with --embedder {recorded} (or index into another table with ?table=NAME)"
            )
        if isinstance(recorded_dim, int) and recorded_dim != dim:
            if embedder:
                raise ValueError(
                    f"{self.display_name} holds {recorded_dim}-d vectors; the embedder gives {dim}-d vectors"
                )
            self.embedding_dimension = recorded_dim

    # ------------------------------------------------------------------ filters: NOT rewritten
    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        return super().filter_documents(rewrite_not_filters(filters))

    async def filter_documents_async(self, filters: dict[str, Any] | None = None) -> list[Document]:
        return await super().filter_documents_async(rewrite_not_filters(filters))

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        return super().count_documents_by_filter(rewrite_not_filters(filters) or {})

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        return super().delete_by_filter(rewrite_not_filters(filters) or {})

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        return super().update_by_filter(rewrite_not_filters(filters) or {}, meta)

    def _embedding_retrieval(
        self, query_embedding: list[float], *, filters: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return super()._embedding_retrieval(query_embedding, filters=rewrite_not_filters(filters), **kwargs)

    def _keyword_retrieval(
        self, query: str, *, filters: dict[str, Any] | None = None, top_k: int = 10
    ) -> list[Document]:
        return super()._keyword_retrieval(query, filters=rewrite_not_filters(filters), top_k=top_k)

    # ------------------------------------------------------------------ lexical search
    def keyword_search(
        self, query: str, *, top_k: int = 10, filters: dict[str, Any] | None = None
    ) -> list[Document]:
        """The ``top_k`` documents by Postgres full-text rank (``ts_rank_cd``, normalised by document
        length) of title + text against ``query``'s words (any of them; stemmed, stop words dropped by the
        store's ``language``), optionally restricted by Haystack ``filters``. Scores are ``ts_rank_cd``'s."""
        if not query or not query.strip():
            raise ValueError("query must be a non-empty string")
        where, params = SQL(""), ()
        filters = rewrite_not_filters(filters)
        if filters:
            where, params = _convert_filters_to_where_clause_and_params(filters=filters, operator="AND")
        sql = (
            SQL(
                "SELECT {table_name}.*, ts_rank_cd(f.tsv, q, 1) AS score "
                "FROM {fts} f JOIN {table} ON {table_name}.id = f.doc_id, "
                "(SELECT replace(plainto_tsquery({lang}::regconfig, %s)::text, ' & ', ' | ')::tsquery AS q) "
                "query "
                "WHERE f.tsv @@ q"
            ).format(
                table_name=Identifier(self.table_name),
                table=Identifier(self.schema_name, self.table_name),
                fts=Identifier(self.schema_name, f"{self.table_name}_fts"),
                lang=SQLLiteral(self.language),
            )
            + where
            + SQL(" ORDER BY score DESC, {}.id LIMIT {}").format(
                Identifier(self.table_name), SQLLiteral(int(top_k))
            )
        )
        self._ensure_db_setup()
        assert self._dict_cursor is not None
        records = self._execute_sql(
            cursor=self._dict_cursor,
            sql_query=sql,
            params=(query, *params),
            error_msg="Could not run the full-text search",
        ).fetchall()
        return _from_pg_to_haystack_documents(records)


def store_info_json(embedder: str, dim: int) -> str:
    """What winnow records about a PostgreSQL table (its embedder and dimension), as JSON."""
    return json.dumps({"winnow": {"embedder": embedder, "dim": dim}})
