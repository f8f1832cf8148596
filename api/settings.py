"""Every setting of the REST service, in one pydantic-settings class.

Sources, highest priority first: values passed in code (the CLI's flags), environment variables with the
prefix ``WINNOW_`` (``WINNOW_INDEX=/data/idx``, ``WINNOW_API_KEYS=k1,k2`` or a JSON list), a config file
(``--config FILE`` or ``WINNOW_CONFIG=FILE``; ``.toml`` or ``.json``, keys as the field names
below), then the defaults.
"""

from __future__ import annotations

import json
import os
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("winnow_config_file", default=None)
MIN_API_KEY_CHARS = 16


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a ``.toml`` or ``.json`` file (a ``[winnow]`` table in TOML is also accepted)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    elif path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        data = tomllib.loads(text)
        data = data.get("winnow", data)
    else:
        raise ValueError(f"config file {path} must end in .toml or .json")
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a table/object of settings")
    return data


# the values of winnow.api.cli.options.RERANK_BACKENDS (a test keeps the two alike)
RerankBackend = Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "onnx-qdq-int8"]


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The config file named by ``load_settings(config_file=...)`` or ``WINNOW_CONFIG``."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = _CONFIG_FILE.get() or os.environ.get("WINNOW_CONFIG") or None
        self._values = read_config_file(path) if path else {}
        unknown = sorted(set(self._values) - set(settings_cls.model_fields))
        if unknown:
            raise ValueError(f"unknown settings in {path}: {', '.join(unknown)}")

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class WinnowSettings(BaseSettings):
    """Settings of ``winnow serve`` (see the module docstring for where they are read from)."""

    model_config = SettingsConfigDict(env_prefix="WINNOW_", extra="forbid", validate_default=True)

    # -- what to serve
    index: Path | None = Field(
        None, description="index directory (from `winnow index`); created on the first write when missing"
    )
    store: SecretStr | None = Field(
        None,
        description="instead of `index`: an index directory, or postgresql://USER:PASS@HOST/DB[?table=T] "
        "(pgvector: the database is the source of truth, writes go straight to it); never shown in full",
    )
    embedder: str | None = Field(None, description="bi-encoder; default: the one the index was built with")
    reranker: str | None = Field(
        "winnow-general",
        description="cross-encoder path or name; 'none': first stage only, no rerank routes",
    )
    device: str | None = Field(None, description="cuda, mps or cpu (default: the best available)")
    backend: RerankBackend = Field(
        "auto",
        description="reranker runtime. auto: on CPU the quantised backend the model's own quality check "
        "chose (model card), else torch fp32, with the reason in /ready; torch; or on CPU onnx (same "
        "scores), onnx-int8 (dynamic int8, unchecked: reorders near-ties), openvino, openvino-int8, "
        "onnx-qdq-int8",
    )
    windows: bool | None = Field(
        None,
        description="score long documents by their best overlapping window (true) or truncate them (false); "
        "default: what the model's card chose on a dev split, else windows",
    )
    factory: str = Field("Flat", description="faiss factory for a new index (when `index` does not exist)")

    # -- server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="bearer keys; when set, every route but /health needs `Authorization: Bearer KEY`",
    )
    read_only_api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="bearer keys that may search and rerank but get 403 on PUT/DELETE /documents",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="serve on a non-loopback host without API keys (anyone who can reach it may write)",
    )
    log_document_ids: bool = Field(
        False,
        description="keep document ids in the access log's paths (/documents/ID); off: logged as "
        "/documents/{doc_id}",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="allowed CORS origins (none: CORS off)"
    )

    # -- request limits
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="larger request bodies get 413")
    max_rerank_documents: int = Field(1000, ge=1, description="most documents per rerank request")
    max_write_documents: int = Field(1000, ge=1, description="most documents per PUT /documents")
    max_top_k: int = Field(1000, ge=1, description="largest top_k / candidates of /search")
    max_query_chars: int = Field(4096, ge=1, description="longest query, in characters")
    max_document_chars: int = Field(
        100_000, ge=1, description="longest document (and document title), in characters"
    )
    max_filter_nodes: int = Field(
        256, ge=1, description="most conditions and logical operators in one /search filter"
    )
    max_filter_in_values: int = Field(
        1024, ge=1, description="most values in all the lists ('in'/'not in') of one /search filter"
    )
    max_filter_seconds: float = Field(
        10.0, gt=0, description="longest a /search filter may take to match the stored documents (422)"
    )
    long_text: Literal["reject", "truncate"] = Field(
        "reject",
        description="a query or document over its limit: 'reject' answers 413, 'truncate' cuts it to the "
        "limit (TEI's per-request `truncate: true` also truncates)",
    )
    strict_top_n: bool = Field(
        False,
        description="/v2/rerank: answer 422 when top_n exceeds the documents (Cohere, and so its clients, "
        "return all documents instead)",
    )
    default_candidates: int | None = Field(
        None,
        ge=1,
        description="first-stage candidates /search reranks by default (default: the reranker's model card's "
        "depth, else 100)",
    )

    # -- scoring
    micro_batching: bool = Field(True, description="score concurrent rerank requests together")
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="longest a request waits for company")
    max_batch_pairs: int = Field(512, ge=1, description="pairs per shared model call")
    max_queue_pairs: int = Field(
        8192,
        ge=1,
        description="windows (a long document counts as the windows it becomes) waiting to be reranked; "
        "beyond it requests get 429",
    )
    latency_budget_ms: float = Field(
        2000.0,
        ge=0,
        description="most expected wait for the reranker (queued windows over the measured windows per "
        "second); a request that would wait longer gets 429 with Retry-After at once (0: no budget)",
    )
    rerank_timeout_s: float = Field(
        30.0, gt=0, description="longest a request waits for the reranker before a 503 (its work is dropped)"
    )
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: all cores)")
    faiss_threads: int = Field(1, ge=1, description="FAISS OpenMP threads (1 suits many small queries)")

    # -- durability
    write_log: Path | None = Field(
        None, description="write-ahead log of document writes (default: INDEX + '.wal' beside the index)"
    )
    snapshot_interval_s: float = Field(
        60.0,
        ge=0,
        description="save the index and empty the log this often when writes happened (0: only at exit)",
    )

    @field_validator("api_keys", "read_only_api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("api_keys", "read_only_api_keys")
    @classmethod
    def _keys_long_enough(cls, value: list[SecretStr]) -> list[SecretStr]:
        for i, key in enumerate(value):
            length = len(key.get_secret_value())
            if length < MIN_API_KEY_CHARS:
                raise ValueError(
                    f"API key #{i + 1} is {length} characters; keys need at least {MIN_API_KEY_CHARS} "
                    "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        return value

    @field_validator("reranker")
    @classmethod
    def _none_reranker(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "none", "off"):
            return None
        return value

    @model_validator(mode="after")
    def _default_log(self) -> WinnowSettings:
        from winnow.retrieval.store_uri import is_postgres_uri

        if self.store is not None and self.index is not None:
            raise ValueError("set either index (WINNOW_INDEX) or store (WINNOW_STORE), not both")
        if self.store is not None and not is_postgres_uri(self.store.get_secret_value()):
            self.index, self.store = Path(self.store.get_secret_value()), None  # a directory: the FAISS path
        if self.index is None and self.store is None:
            raise ValueError("index: Field required (set index or store: WINNOW_INDEX or WINNOW_STORE)")
        if self.write_log is None and self.index is not None:
            self.write_log = self.index.with_name(self.index.name + ".wal")
        return self

    @property
    def postgres_uri(self) -> str | None:
        """The PostgreSQL store's URI (with its password: never log it; see ``store_name``), or None when
        serving an index directory."""
        return None if self.store is None else self.store.get_secret_value()

    @property
    def store_uri(self) -> str:
        """Where the documents live, as ``--store`` takes it: the PostgreSQL URI or the index directory."""
        return self.postgres_uri or str(self.index)

    @property
    def store_name(self) -> str:
        """:attr:`store_uri` with any password redacted: what logs and messages show."""
        from winnow.retrieval.store_uri import redact_dsn

        return redact_dsn(self.store_uri)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls), file_secret_settings)

    def api_key_values(self) -> list[bytes]:
        return [key.get_secret_value().encode("utf-8") for key in self.api_keys]

    def read_only_key_values(self) -> list[bytes]:
        return [key.get_secret_value().encode("utf-8") for key in self.read_only_api_keys]

    @property
    def authenticated(self) -> bool:
        """Whether requests need a key (full or read-only)."""
        return bool(self.api_keys or self.read_only_api_keys)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> WinnowSettings:
    """Settings from ``overrides`` > ``WINNOW_*`` environment > ``config_file`` (or ``WINNOW_CONFIG``) >
    defaults. ``None`` overrides are ignored, so CLI flags that were not given do not mask other sources."""
    token = _CONFIG_FILE.set(Path(config_file) if config_file else None)
    try:
        return WinnowSettings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _CONFIG_FILE.reset(token)
