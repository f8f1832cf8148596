"""How passages are stored in an index's document table: the title travels in the record's metadata."""

from __future__ import annotations

from winnow.indexes import DocumentRecord
from winnow.retrieval.corpus import Passage
from winnow.retrieval.hit import Hit

TITLE_KEY = "title"


def passage_to_record(passage: Passage) -> DocumentRecord:
    meta = dict(passage.meta)
    if passage.title:
        meta[TITLE_KEY] = passage.title
    return DocumentRecord(id=passage.id, text=passage.text, meta=meta, parent_id=passage.parent_id)


def record_to_passage(record: DocumentRecord) -> Passage:
    meta = dict(record.meta)
    title = str(meta.pop(TITLE_KEY, "") or "")
    return Passage(id=record.id, text=record.text or "", title=title, meta=meta, parent_id=record.parent_id)


def record_to_hit(record: DocumentRecord, score: float) -> Hit:
    p = record_to_passage(record)
    return Hit(id=p.id, text=p.text, title=p.title, meta=p.meta, parent_id=p.parent_id, score=float(score))
