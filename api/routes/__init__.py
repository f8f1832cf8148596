"""HTTP routes, one module per resource: search, rerank (Cohere and TEI shapes), documents, health."""
