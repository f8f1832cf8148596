"""Exceptions raised by the ``indexes`` package."""

from __future__ import annotations


class WinnowIndexError(Exception):
    """Base class of every error raised by the ``indexes`` package."""


class DuplicateIdError(WinnowIndexError, ValueError):
    """An id that must be new is already present (in the vector index or the document table)."""

    def __init__(self, message: str, ids: list | None = None) -> None:
        super().__init__(message)
        self.ids = list(ids or [])


class IndexNotTrainedError(WinnowIndexError, RuntimeError):
    """Vectors were added to an index type that needs ``train()`` first (IVF, PQ, SQ, ...)."""


class IndexNotFoundError(WinnowIndexError, FileNotFoundError):
    """The path holds no winnow index (no ``manifest.json``)."""


class IndexCorruptedError(WinnowIndexError):
    """A file of the index is missing, unreadable, fails its checksum or disagrees with the manifest."""

    def __init__(self, message: str, *, file: str | None = None) -> None:
        super().__init__(message)
        self.file = file


class UnsupportedIndexFormatError(WinnowIndexError):
    """The index was written in a format version this winnow cannot read."""


class EmbedderMismatchError(WinnowIndexError, ValueError):
    """The index was built with a different embedder from the one asked for."""

    def __init__(self, *, index_embedder: str, requested_embedder: str, path: str) -> None:
        self.index_embedder = index_embedder
        self.requested_embedder = requested_embedder
        super().__init__(
            f"The index at {path} was built with embedder {index_embedder!r}, but {requested_embedder!r} "
            f"was asked for; its vectors are not comparable with that embedder's. Either re-index the corpus "
            f"with {requested_embedder!r}, or pass the same embedder that built the index "
            f"(--embedder {index_embedder})."
        )


class WriteLogUnavailableError(WinnowIndexError):
    """The write log refuses writes until a restart (after an fsync error, or after memory and log split)."""


class StorageFullError(WinnowIndexError, OSError):
    """The disk (or the quota) holding the index or the write log is full; nothing was written."""
