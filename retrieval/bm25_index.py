"""BM25 that lives with the index: saved in ``INDEX/bm25/`` (bm25s' own files plus ``doc_ids.json``) by
:meth:`indexes.WinnowIndex.save` for an index that keeps it (``winnow index`` marks its indexes so; a loaded
index whose manifest lists it, or one :func:`bm25_for_index` served, keeps it), loaded instead of rebuilt when
it was built from the saved table, and cached on the index per write count.
Importing this module (``winnow.retrieval`` does) registers the writer.

The manifest lists the folder's files (``winnow index --verify`` hashes them) and records the table it was
built from (row count and the table's write counter, :attr:`indexes.DocumentTable.stamp`): a missing, stale
(the live table was written since, by this process or another), damaged or unreadable folder is ignored and
BM25 is rebuilt from the table, as for indexes saved before BM25 was; the next save or compaction writes it
again (read-only paths such as ``winnow search`` never write into an index directory).
bm25s has no incremental update, so a write makes the cached BM25 stale and the next use rebuilds it
(O(corpus)); a save reuses the cached one when it is current, else builds one from the table copy it saves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from winnow.indexes import DocumentTable, WinnowIndex
from winnow.indexes.index_dir import attachment_state, register_attachment
from winnow.retrieval.bm25 import BM25Retriever
from winnow.retrieval.corpus import Passage
from winnow.retrieval.records import record_to_passage

logger = logging.getLogger(__name__)

__all__ = ["BM25_FOLDER", "bm25_for_index", "build_bm25", "keep_bm25", "table_passages"]

BM25_FOLDER = "bm25"
IDS_FILE = "doc_ids.json"


def table_passages(table: DocumentTable) -> list[Passage]:
    """The passages BM25 indexes: the table's whole documents (not their chunks), in table order."""
    return [record_to_passage(r) for r in table.iter_records(with_embedding=False) if not r.parent_id]


def build_bm25(passages: list[Passage], **kwargs: Any) -> BM25Retriever:
    """Tokenise and index ``passages`` (the O(corpus) step a saved BM25 avoids)."""
    return BM25Retriever(passages, **kwargs)


def keep_bm25(index: WinnowIndex) -> WinnowIndex:
    """Have ``index``'s saves write its BM25 (built from the saved table unless a current one is cached)."""
    index.keep_attachment(BM25_FOLDER)
    return index


def bm25_for_index(index: WinnowIndex, **kwargs: Any) -> BM25Retriever:
    """BM25 over ``index``'s documents: the one cached for its current write count, else the one saved in
    its directory when that was built from the same table, else built from the table (then cached).
    ``kwargs`` (BM25Retriever settings) other than the defaults always build a new, uncached one."""
    if kwargs:
        return build_bm25(table_passages(index.table), **kwargs)
    index.keep_attachment(BM25_FOLDER)
    cached = index.derived.get(BM25_FOLDER)
    if cached is not None and cached[0] == index.generation:
        return cached[1]
    with index.lock:  # the rows and their write count must match (a save may reuse the cached BM25)
        generation = index.generation
        passages = table_passages(index.table)
    retriever = _load_saved(index, passages) if passages else None
    if retriever is None:
        retriever = build_bm25(passages)
    index.derived[BM25_FOLDER] = (generation, retriever)
    return retriever


def _load_saved(index: WinnowIndex, passages: list[Passage]) -> BM25Retriever | None:
    saved = index.on_disk()
    if saved is None:
        return None
    path, manifest = saved
    state = attachment_state(path, manifest, BM25_FOLDER)
    if state is None:
        if BM25_FOLDER in (manifest.attachments or {}):
            logger.info("the BM25 saved in %s is stale or damaged; rebuilding it", path)
        return None
    folder = path / BM25_FOLDER
    try:
        ids = json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))
        if ids != [p.id for p in passages]:
            raise ValueError("its documents differ from the table's")
        return BM25Retriever.load(folder, passages, state)
    except Exception as exc:  # noqa: BLE001 - derived data: any unreadable file means rebuild
        logger.warning("cannot use the BM25 saved in %s (%s); rebuilding it", folder, exc)
        return None


def _write_bm25(index: WinnowIndex, table: DocumentTable, generation: int, folder: Path) -> dict | None:
    """Attachment writer (see :func:`indexes.index_dir.register_attachment`): save BM25 over ``table``."""
    cached = index.derived.get(BM25_FOLDER)
    if cached is not None and cached[0] == generation:
        retriever = cached[1]
    else:
        passages = table_passages(table)
        if not passages:
            return None
        retriever = build_bm25(passages)
        if index.generation == generation:
            index.derived[BM25_FOLDER] = (generation, retriever)
    state = retriever.save(folder)
    (folder / IDS_FILE).write_text(json.dumps([p.id for p in retriever.passages]), encoding="utf-8")
    return state


register_attachment(BM25_FOLDER, _write_bm25)
