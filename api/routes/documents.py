"""``PUT /documents`` (upsert, embedded server-side), ``GET`` and ``DELETE /documents/{id}``.

A write is acknowledged only after it is in the fsynced write log, so it survives a crash of the server.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from winnow.api.dependencies import ERROR_RESPONSES, ServiceDep, fit_text
from winnow.api.errors import ApiError
from winnow.api.schemas import DocumentDeleted, DocumentOut, DocumentsWrite, DocumentsWritten, ErrorResponse
from winnow.retrieval.corpus import Passage

router = APIRouter(tags=["documents"])

_NOT_FOUND: dict[int | str, dict] = {404: {"model": ErrorResponse, "description": "no document with this id"}}


@router.put("/documents", response_model=DocumentsWritten, responses=ERROR_RESPONSES)
async def put_documents(body: DocumentsWrite, service: ServiceDep) -> DocumentsWritten:
    """Insert or replace documents by id; they are embedded (and chunked like the index) on the server."""
    settings = service.settings
    if len(body.documents) > settings.max_write_documents:
        raise ApiError(
            422,
            f"documents holds {len(body.documents)} documents; the limit is "
            f"{settings.max_write_documents} per request (WINNOW_MAX_WRITE_DOCUMENTS)",
        )
    chunked = bool(service.index is not None and service.index.extra.get("chunked"))
    truncate = settings.long_text == "truncate"
    passages = []
    for i, doc in enumerate(body.documents):
        if chunked and "#" in doc.id:
            raise ApiError(422, f"documents[{i}].id: '#' is reserved for chunk ids in this chunked index")
        text = fit_text(doc.text, settings.max_document_chars, f"documents[{i}].text", truncate=truncate)
        title = fit_text(doc.title, settings.max_document_chars, f"documents[{i}].title", truncate=truncate)
        passages.append(Passage(id=doc.id, text=text, title=title, meta=dict(doc.meta)))
    written = await run_in_threadpool(service.upsert, passages)
    documents, _ = await run_in_threadpool(service.count)  # takes the table's lock: never on the event loop
    return DocumentsWritten(written=written, ids=[p.id for p in passages], documents=documents)


@router.get("/documents/{doc_id:path}", response_model=DocumentOut, responses=ERROR_RESPONSES | _NOT_FOUND)
async def get_document(doc_id: str, service: ServiceDep) -> DocumentOut:
    """One stored document by id."""
    doc = await run_in_threadpool(service.get, doc_id)
    if doc is None:
        raise ApiError(404, f"no document with id {doc_id!r}")
    return DocumentOut(id=doc.id, text=doc.text, title=doc.title, meta=doc.meta)


@router.delete(
    "/documents/{doc_id:path}", response_model=DocumentDeleted, responses=ERROR_RESPONSES | _NOT_FOUND
)
async def delete_document(doc_id: str, service: ServiceDep) -> DocumentDeleted:
    """Delete a document (and its chunks); durable when acknowledged."""
    if not await run_in_threadpool(service.delete, [doc_id]):
        raise ApiError(404, f"no document with id {doc_id!r}")
    return DocumentDeleted(id=doc_id, deleted=True)
