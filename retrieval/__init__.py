"""winnow: retrieval."""
