"""Haystack embedder components around winnow's bi-encoder (:class:`retrieval.embedder.Embedder`).

Haystack's core package has no sentence-transformers embedders; these two fill the gap for winnow pipelines.
Vectors are float32 and L2-normalised (inner product = cosine), as ``WinnowDocumentStore(metric="ip")``
expects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict

from winnow.retrieval.embedder import Embedder, resolve_embedder
from winnow.retrieval.legacy_names import register_legacy_name, upgrade_legacy_type

logger = logging.getLogger(__name__)


class _EmbedderHolder:
    """Shared init, lazy model loading and serialisation for both components."""

    def _setup(
        self,
        model: str | None,
        device: str | None,
        batch_size: int,
        prefix: str,
        suffix: str,
        progress_bar: bool,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.prefix = prefix
        self.suffix = suffix
        self.progress_bar = progress_bar
        self._embedder: Embedder | None = None
        self._warm_up_lock = threading.Lock()

    @property
    def embedder_name(self) -> str:
        """The model name recorded in index manifests (pass it as ``WinnowDocumentStore(embedder=...)``)."""
        return resolve_embedder(self.model)[0]

    def warm_up(self) -> None:
        """Load the model (idempotent; ``run`` calls it when needed)."""
        with self._warm_up_lock:
            if self._embedder is not None:
                return
            embedder = Embedder(
                self.model, device=self.device, batch_size=self.batch_size, show_progress=self.progress_bar
            )
            logger.info("Loading embedder %s on %s", embedder.name, embedder.device)
            _ = embedder.dim  # loads the model now rather than on the first run
            self._embedder = embedder

    def _ready_embedder(self) -> Embedder:
        self.warm_up()
        embedder = self._embedder
        # progress bars follow the log level: shown only when this module logs at INFO or below
        embedder.show_progress = self.progress_bar and logger.isEnabledFor(logging.INFO)
        return embedder

    def _common_init_parameters(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "batch_size": self.batch_size,
            "prefix": self.prefix,
            "suffix": self.suffix,
            "progress_bar": self.progress_bar,
        }


@component
class WinnowTextEmbedder(_EmbedderHolder):
    """Embeds a query string with winnow's bi-encoder.

    ### Usage example
    ```python
    embedder = WinnowTextEmbedder()  # the packaged all-MiniLM-L6-v2
    embedding = embedder.run("what is the revenue?")["embedding"]
    ```
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        device: str | None = None,
        batch_size: int = 32,
        prefix: str = "",
        suffix: str = "",
        progress_bar: bool = True,
    ) -> None:
        """
        :param model: Local sentence-transformers folder, or ``None`` / ``"all-MiniLM-L6-v2"`` for the
            packaged model.
        :param device: ``"cpu"``, ``"cuda"``, ``"mps"``...; ``None`` picks cuda, then mps, then cpu.
        :param batch_size: Texts per forward pass.
        :param prefix: Text put before the query (e.g. an instruction some models expect).
        :param suffix: Text put after the query.
        :param progress_bar: Allow a progress bar (shown only when logging is at INFO or below).
        """
        self._setup(model, device, batch_size, prefix, suffix, progress_bar)

    def to_dict(self) -> dict[str, Any]:
        """Serialises the component's init parameters."""
        return default_to_dict(self, **self._common_init_parameters())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WinnowTextEmbedder:
        """Builds the component from :meth:`to_dict` output."""
        return default_from_dict(cls, upgrade_legacy_type(data, cls))

    def _embed(self, text: str) -> list[float]:
        if not isinstance(text, str):
            raise TypeError(
                f"WinnowTextEmbedder expects a string as input, got {type(text).__name__}; to embed a list "
                f"of Documents use WinnowDocumentEmbedder"
            )
        vectors = self._ready_embedder().embed_queries([self.prefix + text + self.suffix])
        return vectors[0].tolist()

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict[str, list[float]]:
        """Embed ``text``; returns ``{"embedding": [...]}`` (L2-normalised).

        :raises TypeError: if ``text`` is not a string.
        """
        return {"embedding": self._embed(text)}

    @component.output_types(embedding=list[float])
    async def run_async(self, text: str) -> dict[str, list[float]]:
        """Async :meth:`run` (the model runs in a worker thread)."""
        return {"embedding": await asyncio.to_thread(self._embed, text)}


@component
class WinnowDocumentEmbedder(_EmbedderHolder):
    """Embeds Documents (content, optionally with some meta fields) with winnow's bi-encoder.

    Returns copies of the input Documents with ``embedding`` set; the input Documents are never changed.

    ### Usage example
    ```python
    embedder = WinnowDocumentEmbedder(meta_fields_to_embed=["title"])
    documents = embedder.run([Document(content="...", meta={"title": "..."})])["documents"]
    ```
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        device: str | None = None,
        batch_size: int = 32,
        prefix: str = "",
        suffix: str = "",
        progress_bar: bool = True,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
    ) -> None:
        """
        :param model: Local sentence-transformers folder, or ``None`` / ``"all-MiniLM-L6-v2"`` for the
            packaged model.
        :param device: ``"cpu"``, ``"cuda"``, ``"mps"``...; ``None`` picks cuda, then mps, then cpu.
        :param batch_size: Texts per forward pass.
        :param prefix: Text put before each document's text.
        :param suffix: Text put after each document's text.
        :param progress_bar: Allow a progress bar (shown only when logging is at INFO or below).
        :param meta_fields_to_embed: Meta fields whose values are embedded before the content (missing or
            ``None`` values are left out).
        :param embedding_separator: Joins the meta values and the content.
        """
        self._setup(model, device, batch_size, prefix, suffix, progress_bar)
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator

    def to_dict(self) -> dict[str, Any]:
        """Serialises the component's init parameters."""
        return default_to_dict(
            self,
            **self._common_init_parameters(),
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WinnowDocumentEmbedder:
        """Builds the component from :meth:`to_dict` output."""
        return default_from_dict(cls, upgrade_legacy_type(data, cls))

    def _text_to_embed(self, doc: Document) -> str:
        values = [
            str(doc.meta[key])
            for key in self.meta_fields_to_embed
            if key in doc.meta and doc.meta[key] is not None
        ]
        return self.prefix + self.embedding_separator.join([*values, doc.content or ""]) + self.suffix

    def _embed(self, documents: list[Document]) -> list[Document]:
        if not isinstance(documents, list) or any(not isinstance(doc, Document) for doc in documents):
            raise TypeError(
                "WinnowDocumentEmbedder expects a list of Documents as input; to embed a string use "
                "WinnowTextEmbedder"
            )
        if not documents:
            return []
        vectors = self._ready_embedder().embed_documents([self._text_to_embed(doc) for doc in documents])
        return [
            dataclasses.replace(doc, embedding=vector.tolist())
            for doc, vector in zip(documents, vectors, strict=True)
        ]

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Embed ``documents``; returns ``{"documents": [...]}``, copies with ``embedding`` set.

        :raises TypeError: if ``documents`` is not a list of Documents.
        """
        return {"documents": self._embed(documents)}

    @component.output_types(documents=list[Document])
    async def run_async(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Async :meth:`run` (the model runs in a worker thread)."""
        return {"documents": await asyncio.to_thread(self._embed, documents)}


register_legacy_name(WinnowTextEmbedder)  # pipelines saved before the move to winnow.*


register_legacy_name(WinnowDocumentEmbedder)  # pipelines saved before the move to winnow.*
