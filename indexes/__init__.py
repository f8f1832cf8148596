"""winnow.indexes: FAISS vector index, SQLite document table, atomic index directories (numpy in and out)."""

from ._fsutil import is_disk_full
from .document_table import DocumentRecord, DocumentTable
from .errors import (
    DuplicateIdError,
    EmbedderMismatchError,
    IndexCorruptedError,
    IndexNotFoundError,
    IndexNotTrainedError,
    StorageFullError,
    UnsupportedIndexFormatError,
    WinnowIndexError,
    WriteLogUnavailableError,
)
from .index_dir import (
    FORMAT_VERSION,
    IndexManifest,
    IndexVerification,
    WinnowIndex,
    index_disk_bytes,
    process_rss_bytes,
    read_manifest,
    recover_interrupted_save,
    verify_index,
)
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
    "IndexVerification",
    "IndexWrite",
    "StorageFullError",
    "UnsupportedIndexFormatError",
    "VectorIndex",
    "WinnowIndex",
    "WinnowIndexError",
    "WriteLog",
    "WriteLogUnavailableError",
    "index_disk_bytes",
    "is_disk_full",
    "process_rss_bytes",
    "read_manifest",
    "recover_interrupted_save",
    "set_faiss_threads",
    "upsert_write",
    "verify_index",
]
