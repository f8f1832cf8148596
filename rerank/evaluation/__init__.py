"""winnow.rerank.evaluation: how much reranking adds over the first stage.

``runs`` (one first-stage pass and one rerank pass per query, cut at every depth), ``measures`` (ir-measures),
``statistics`` (paired tests, bootstrap intervals), ``report`` (the JSON contract), ``render`` (Markdown and
plot), ``trec`` (TREC run files) and ``compare`` (several reports side by side).
"""
