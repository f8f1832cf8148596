"""Real documents in: the text of ``.pdf``, ``.html``/``.htm`` and ``.docx`` files through Haystack's own
converters (``PyPDFToDocument``, ``HTMLToDocument``, ``DOCXToDocument``; ``pip install
'winnow-rerank[convert]'``). :func:`retrieval.corpus.load_document_folder` reads folders with them.

A PDF's pages stay separated by form feeds (``\\f``) in the text, so the chunkers can give each chunk its
``page_number``. Haystack's converters log and skip a file they cannot read; :func:`convert_file` turns that
into a ``ValueError`` that says why, so the caller can report the file and go on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "CONVERTED_SUFFIXES",
    "INSTALL_HINT",
    "PAGE_BREAK",
    "MissingConverterError",
    "convert_file",
    "make_converter",
]

INSTALL_HINT = "pip install 'winnow-rerank[convert]'"
# suffix -> (Haystack module, converter class, the package it needs)
_CONVERTERS = {
    ".pdf": ("haystack.components.converters.pypdf", "PyPDFToDocument", "pypdf"),
    ".html": ("haystack.components.converters.html", "HTMLToDocument", "trafilatura"),
    ".htm": ("haystack.components.converters.html", "HTMLToDocument", "trafilatura"),
    ".docx": ("haystack.components.converters.docx", "DOCXToDocument", "python-docx"),
}
CONVERTED_SUFFIXES = tuple(_CONVERTERS)
PAGE_BREAK = "\f"


class MissingConverterError(ImportError, ValueError):
    """A converter's package is not installed; the message names the ``convert`` extra to install (a
    ``ValueError`` too, so the CLI reports it as a usage error, without a traceback)."""


class _Warnings(logging.Handler):
    """Collects the warnings Haystack's converters log when they skip a file (they do not raise)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _converter_warnings() -> Iterator[_Warnings]:
    handler = _Warnings()
    target = logging.getLogger("haystack.components.converters")
    target.addHandler(handler)
    try:
        yield handler
    finally:
        target.removeHandler(handler)


def make_converter(suffix: str) -> Any:
    """A Haystack converter for ``suffix`` files; raises :class:`MissingConverterError` with the extra to
    install when its package is missing."""
    import importlib

    module_name, class_name, package = _CONVERTERS[suffix]
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except ImportError as err:
        raise MissingConverterError(
            f"reading {suffix} files needs {package} (Haystack's {class_name}); install winnow's 'convert' "
            f"extra: {INSTALL_HINT}  ({err})"
        ) from err


def convert_file(converter: Any, file: Path) -> str:
    """The text of ``file`` read by ``converter`` (from :func:`make_converter`); raises ``ValueError`` saying
    why when it could not be read or holds no text."""
    with _converter_warnings() as warnings:
        try:
            documents = converter.run(sources=[file])["documents"]
        except Exception as err:  # a converter bug or an unexpected library error: still only this file
            raise ValueError(f"{type(err).__name__}: {err}") from err
    text = PAGE_BREAK.join(d.content or "" for d in documents)
    if not documents:
        raise ValueError(warnings.messages[-1] if warnings.messages else "the converter returned nothing")
    if not text.replace(PAGE_BREAK, "").strip():
        raise ValueError("no text could be extracted (a scanned PDF needs OCR first)")
    return text
