"""Access-log hygiene: document ids (they can be e-mail addresses or other personal data) out of paths."""

from __future__ import annotations

import logging
import re

_DOCUMENT_PATH = re.compile(r"/documents/[^?\s]+")
REDACTED = "/documents/{doc_id}"


def redact_document_ids(path: str) -> str:
    """``path`` with the id of ``/documents/ID`` replaced by ``{doc_id}`` (the route's template)."""
    return _DOCUMENT_PATH.sub(REDACTED, path)


class DropDocumentIds(logging.Filter):
    """A filter for uvicorn's ``uvicorn.access`` logger: rewrites the path of ``/documents/ID`` requests.

    uvicorn logs ``(client, method, path, http_version, status)`` as the record's args; the record is kept,
    with its path redacted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_document_ids(args[2]), *args[3:])
        elif isinstance(record.msg, str) and not args:
            record.msg = redact_document_ids(record.msg)
        return True
