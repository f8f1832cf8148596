"""winnow.retrieval: corpora, the embedder, first stages (dense, BM25, hybrid), the FAISS-backed document
store and the Haystack store, embedder and retriever (embedding, hybrid) components, and document converters
(PDF, HTML, DOCX)."""

from winnow.retrieval import bm25_index as _bm25_index  # noqa: F401  (registers BM25 as an index attachment)
