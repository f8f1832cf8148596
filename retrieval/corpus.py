"""Corpus loaders: a BEIR folder, a ``.jsonl`` file or a folder of documents (``.txt``/``.md``, and PDF,
HTML and DOCX through Haystack's converters, :mod:`retrieval.converters`). In a folder, one file that cannot
be read never stops the rest: it is skipped, logged with its path and reason, and listed in ``skipped``."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winnow.retrieval.converters import CONVERTED_SUFFIXES, PAGE_BREAK, convert_file, make_converter

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of text: a document or a chunk of one (``parent_id`` names the document)."""

    id: str
    text: str = ""
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None

    @property
    def doc_id(self) -> str:
        """The id of the source document (the passage's own id when it is not a chunk)."""
        return self.parent_id or self.id

    def full_text(self) -> str:
        """Title and text joined the way BEIR evaluations embed them."""
        return f"{self.title}. {self.text}" if self.title else self.text


@dataclass
class Dataset:
    """A BEIR-style dataset: corpus, queries and relevance judgements (qrels) per split."""

    name: str
    corpus: list[Passage]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> query id -> doc id -> grade

    def split_queries(self, split: str) -> dict[str, str]:
        """Queries that have judgements in ``split``, in file order."""
        if split not in self.qrels:
            raise ValueError(f"dataset {self.name!r} has no split {split!r}; available: {sorted(self.qrels)}")
        judged = self.qrels[split]
        return {qid: text for qid, text in self.queries.items() if qid in judged}


class CorpusFormatError(ValueError):
    """A corpus file is malformed; the message names the file and line."""


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusFormatError(f"{path}:{line_no}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise CorpusFormatError(
                    f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}"
                )
            yield line_no, record


def load_jsonl_corpus(path: str | Path) -> list[Passage]:
    """Read ``{"_id"|"id", "text", "title"?, "metadata"|"meta"?}`` lines; duplicate ids are an error."""
    path = Path(path)
    passages: list[Passage] = []
    seen: set[str] = set()
    for line_no, record in _read_jsonl(path):
        doc_id = record.get("_id", record.get("id"))
        text = record.get("text", record.get("content"))
        if doc_id is None or text is None:
            raise CorpusFormatError(f"{path}:{line_no}: each line needs an '_id' (or 'id') and a 'text'")
        doc_id = str(doc_id)
        if doc_id in seen:
            raise CorpusFormatError(f"{path}:{line_no}: duplicate document id {doc_id!r}")
        seen.add(doc_id)
        meta = record.get("metadata", record.get("meta")) or {}
        if not isinstance(meta, dict):
            raise CorpusFormatError(
                f"{path}:{line_no}: 'metadata' must be a JSON object, got {type(meta).__name__}"
            )
        passages.append(
            Passage(id=doc_id, text=str(text), title=str(record.get("title") or ""), meta=dict(meta))
        )
    return passages


def load_text_folder(path: str | Path) -> list[Passage]:
    """Each ``.txt``/``.md`` file under ``path`` (recursively) is one document, its id the relative path."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    passages = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        rel = file.relative_to(root).as_posix()
        passages.append(Passage(id=rel, text=text, title=file.stem, meta={"path": rel}))
    return passages


def load_queries(path: str | Path) -> dict[str, str]:
    """BEIR ``queries.jsonl`` as ``{query id: text}``."""
    path = Path(path)
    queries: dict[str, str] = {}
    for line_no, record in _read_jsonl(path):
        if "_id" not in record or "text" not in record:
            raise CorpusFormatError(f"{path}:{line_no}: each query needs '_id' and 'text'")
        queries[str(record["_id"])] = str(record["text"])
    return queries


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """BEIR ``qrels/<split>.tsv`` (header ``query-id corpus-id score``) as ``{qid: {doc id: grade}}``."""
    qrels: dict[str, dict[str, int]] = {}
    with Path(path).open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None:
            return qrels
        if header[0] != "query-id":  # headerless file: the first row is data
            handle.seek(0)
            reader = csv.reader(handle, delimiter="\t")
        for row in reader:
            if len(row) < 3:
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return qrels


def is_beir_folder(path: str | Path) -> bool:
    return (Path(path) / "corpus.jsonl").is_file()


def load_beir(path: str | Path) -> Dataset:
    """Load a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/*.tsv``)."""
    root = Path(path)
    if not is_beir_folder(root):
        raise FileNotFoundError(f"{root} is not a BEIR folder: corpus.jsonl is missing")
    queries_path = root / "queries.jsonl"
    queries = load_queries(queries_path) if queries_path.is_file() else {}
    qrels_dir = root / "qrels"
    qrels = {p.stem: load_qrels(p) for p in sorted(qrels_dir.glob("*.tsv"))} if qrels_dir.is_dir() else {}
    return Dataset(
        name=root.name, corpus=load_jsonl_corpus(root / "corpus.jsonl"), queries=queries, qrels=qrels
    )


def load_corpus(path: str | Path) -> list[Passage]:
    """Load documents from a BEIR folder, a ``.jsonl`` file or a folder of ``.txt``/``.md``/``.pdf``/
    ``.html``/``.htm``/``.docx`` files (:func:`load_document_folder`: unreadable files are logged and skipped;
    :func:`load_corpus_report` also returns them)."""
    return load_corpus_report(path).passages


@dataclass(frozen=True)
class SkippedFile:
    """A file that could not be read: its path (relative to the corpus folder) and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class FolderCorpus:
    """The documents read from a folder and the files skipped on the way."""

    passages: list[Passage]
    skipped: list[SkippedFile] = field(default_factory=list)


def _read_text(file: Path) -> str:
    return file.read_text(encoding="utf-8", errors="replace")


def load_document_folder(path: str | Path) -> FolderCorpus:
    """Every ``.txt``/``.md``/``.pdf``/``.html``/``.htm``/``.docx`` file under ``path`` (recursively, in path
    order) as one document: its id the relative path, its title the file name without suffix, its meta
    ``path`` and ``file_type`` (and ``pages`` for a PDF).

    A file that cannot be read is skipped and listed in ``skipped`` (and logged), never raised.

    :raises MissingConverterError: when the folder holds a kind of file whose converter package is missing
        (nothing is read then: the message says to ``pip install 'winnow-rerank[convert]'``).
    :raises CorpusFormatError: when the folder holds no file of those kinds.
    """
    root = Path(path)
    suffixes = (*TEXT_SUFFIXES, *CONVERTED_SUFFIXES)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise CorpusFormatError(
            f"{root}: no corpus.jsonl (BEIR layout) and no {'/'.join(suffixes)} files found; pass a BEIR "
            "folder, a .jsonl file or a folder of documents"
        )
    converters = {
        s: make_converter(s) for s in sorted({f.suffix.lower() for f in files}) if s in CONVERTED_SUFFIXES
    }
    result = FolderCorpus(passages=[])
    for file in files:
        rel = file.relative_to(root).as_posix()
        suffix = file.suffix.lower()
        try:
            text = _read_text(file) if suffix in TEXT_SUFFIXES else convert_file(converters[suffix], file)
        except (OSError, ValueError) as err:
            reason = str(err) or type(err).__name__
            logger.warning("skipping %s: %s", file, reason)
            result.skipped.append(SkippedFile(path=rel, reason=reason))
            continue
        meta: dict[str, Any] = {"path": rel, "file_type": suffix.lstrip(".")}
        if suffix == ".pdf":
            meta["pages"] = text.count(PAGE_BREAK) + 1
        result.passages.append(Passage(id=rel, text=text, title=file.stem, meta=meta))
    return result


def load_corpus_report(path: str | Path) -> FolderCorpus:
    """Documents from a BEIR folder, a ``.jsonl`` file or a folder of documents
    (:func:`load_document_folder`), with the files skipped on the way (always none for BEIR and JSONL)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus not found: {path}")
    if path.is_file():
        if path.suffix != ".jsonl":
            raise CorpusFormatError(f"{path}: a corpus file must be .jsonl (or pass a folder)")
        return FolderCorpus(passages=load_jsonl_corpus(path))
    if is_beir_folder(path):
        return FolderCorpus(passages=load_jsonl_corpus(path / "corpus.jsonl"))
    return load_document_folder(path)


def sample_dataset_path() -> Path:
    """The small BEIR-layout sample (10-K style passages and fact-checks) that ships inside the package."""
    from importlib.resources import files

    return Path(str(files("winnow.retrieval") / "sample_data"))
