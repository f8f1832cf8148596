"""winnow.indexes: FAISS vector index, SQLite document table, atomic index directories (numpy in and out)."""

from .document_table import DocumentRecord, DocumentTable
from .errors import (
    DuplicateIdError,
    EmbedderMismatchError,
    IndexCorruptedError,
    IndexNotFoundError,
    IndexNotTrainedError,
    UnsupportedIndexFormatError,
    WinnowIndexError,
)
from .index_dir import FORMAT_VERSION, IndexManifest, WinnowIndex, read_manifest
from .vector_index import VectorIndex, set_faiss_threads
from .write_log import IndexWrite, WriteLog, upsert_write

__all__ = [
    "FORMAT_VERSION",
    "DocumentRecord",
    "DocumentTable",
    "DuplicateIdError",
    "EmbedderMismatchError",
    "IndexCorruptedError",
    "IndexManifest",
    "IndexNotFoundError",
    "IndexNotTrainedError",
    "IndexWrite",
    "UnsupportedIndexFormatError",
    "VectorIndex",
    "WinnowIndex",
    "WinnowIndexError",
    "WriteLog",
    "read_manifest",
    "set_faiss_threads",
    "upsert_write",
]
