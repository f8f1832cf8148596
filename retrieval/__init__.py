"""winnow.retrieval: corpora, the embedder, first stages (dense, BM25, hybrid), the FAISS-backed document
store and the Haystack store, embedder and retriever components."""
