"""A write-ahead log of index changes: every change is on disk (fsynced) before it is acknowledged.

A long-running writer (the REST service) appends each :class:`IndexWrite` to the log before applying it to
the in-memory :class:`~indexes.WinnowIndex`; from time to time it saves the index atomically and empties the
log (:meth:`WriteLog.checkpoint`). After a crash, loading the last saved index and replaying the log restores
every acknowledged write. Replaying a write the saved index already holds is harmless: an upsert replaces,
a delete of a missing id does nothing.

One JSON object per line, with a CRC32 of its payload. A torn last line (the process died while writing it, so
the write was never acknowledged) is dropped with a warning; a damaged line before the end raises
:class:`~indexes.IndexCorruptedError`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._fsutil import fsync_dir
from .document_table import DocumentRecord
from .errors import IndexCorruptedError
from .index_dir import WinnowIndex

logger = logging.getLogger(__name__)

LOG_FORMAT = 1


@dataclass
class IndexWrite:
    """One change: ``upsert`` replaces documents ``ids`` (and any chunks they had) by ``records``;
    ``delete`` removes documents ``ids`` and their chunks.

    ``vectors`` holds one float32 row per record flagged in ``has_vector`` (records without a vector are
    stored as rows only, e.g. a chunked document's full text).
    """

    op: Literal["upsert", "delete"]
    ids: list[str]
    records: list[DocumentRecord] = field(default_factory=list)
    vectors: np.ndarray | None = None
    has_vector: list[bool] | None = None

    def __post_init__(self) -> None:
        if self.op not in ("upsert", "delete"):
            raise ValueError(f"op must be 'upsert' or 'delete', got {self.op!r}")
        if self.op == "upsert" and self.has_vector is not None and len(self.has_vector) != len(self.records):
            raise ValueError("has_vector needs one flag per record")

    def apply(self, index: WinnowIndex) -> int:
        """Apply to ``index`` under its lock, so readers never see a half-applied write; returns documents
        written or deleted."""
        with index.lock:
            children = index.table.ids_for_parent(self.ids)
            if self.op == "delete":
                deleted = index.delete_ids(self.ids)
                index.delete_ids(children)
                return deleted
            keep = {r.id for r in self.records}
            stale = [c for c in children if c not in keep]
            if stale:
                index.delete_ids(stale)
            vectors = self.vectors if self.vectors is not None and len(self.vectors) else None
            has_vector = self.has_vector if vectors is not None else None
            index.upsert_records(self.records, vectors, has_vector=has_vector)
            return len(self.ids)

    # ------------------------------------------------------------------ (de)serialisation
    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"op": self.op, "ids": list(self.ids)}
        if self.op == "upsert":
            payload["records"] = [
                {"id": r.id, "text": r.text, "meta": r.meta, "parent_id": r.parent_id} for r in self.records
            ]
            payload["has_vector"] = None if self.has_vector is None else [bool(x) for x in self.has_vector]
            if self.vectors is not None and len(self.vectors):
                x = np.ascontiguousarray(self.vectors, dtype="<f4")
                payload["dim"] = int(x.shape[1])
                payload["vectors"] = base64.b64encode(x.tobytes()).decode("ascii")
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> IndexWrite:
        records = [
            DocumentRecord(id=r["id"], text=r["text"], meta=r.get("meta") or {}, parent_id=r.get("parent_id"))
            for r in payload.get("records") or []
        ]
        vectors = None
        if payload.get("vectors"):
            raw = np.frombuffer(base64.b64decode(payload["vectors"]), dtype="<f4")
            vectors = raw.reshape(-1, int(payload["dim"])).astype(np.float32)
        return cls(
            op=payload["op"],
            ids=list(payload["ids"]),
            records=records,
            vectors=vectors,
            has_vector=payload.get("has_vector"),
        )


def _encode_line(seq: int, write: IndexWrite) -> bytes:
    body = json.dumps(
        {"v": LOG_FORMAT, "seq": seq, "write": write.to_json()},
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    )
    crc = zlib.crc32(body.encode("utf-8"))
    return f'{{"crc":{crc},"body":{json.dumps(body, ensure_ascii=False)}}}\n'.encode()


def _decode_line(line: bytes) -> tuple[int, IndexWrite]:
    outer = json.loads(line)
    body = outer["body"]
    if zlib.crc32(body.encode("utf-8")) != outer["crc"]:
        raise ValueError("CRC mismatch")
    inner = json.loads(body)
    if inner.get("v") != LOG_FORMAT:
        raise ValueError(f"log format {inner.get('v')!r}, this winnow reads {LOG_FORMAT}")
    return int(inner["seq"]), IndexWrite.from_json(inner["write"])


class WriteLog:
    """An append-only, fsynced log of :class:`IndexWrite` at ``path`` (created when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        self._seq = sum(1 for _ in self._entries(strict=False))
        self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open for the log's lifetime

    def __len__(self) -> int:
        """Writes logged since the last checkpoint."""
        return self._seq

    def __repr__(self) -> str:
        return f"WriteLog({str(self.path)!r}, entries={self._seq})"

    def append(self, write: IndexWrite) -> None:
        """Write ``write`` to disk and fsync; when this returns, the write survives a crash."""
        with self._lock:
            self._handle.write(_encode_line(self._seq + 1, write))
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._seq += 1

    def _drop_torn_tail(self) -> None:
        """Cut bytes after the last newline: a line is acknowledged only once written whole and fsynced."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            logger.warning(
                "dropping %d bytes of a torn last entry of %s; it was never acknowledged",
                len(data) - end,
                self.path,
            )
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())

    def _entries(self, *, strict: bool = True) -> Iterator[IndexWrite]:
        if not self.path.exists():
            return
        lines = self.path.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for number, line in enumerate(lines, start=1):
            try:
                _, write = _decode_line(line)
            except (ValueError, KeyError, TypeError) as err:
                if number == len(lines):
                    if strict:
                        logger.warning(
                            "dropping a torn last entry of %s (line %d: %s); it was never acknowledged",
                            self.path,
                            number,
                            err,
                        )
                    return
                raise IndexCorruptedError(
                    f"write log {self.path} is damaged at line {number} of {len(lines)}: {err}",
                    file=str(self.path),
                ) from err
            yield write

    def replay(self, index: WinnowIndex) -> int:
        """Apply every logged write to ``index`` in order; returns how many were applied."""
        count = 0
        for write in self._entries():
            write.apply(index)
            count += 1
        if count:
            logger.info("replayed %d logged writes from %s", count, self.path)
        return count

    def checkpoint(self, index: WinnowIndex, index_dir: str | Path) -> None:
        """Save ``index`` atomically to ``index_dir``, then empty the log. The caller keeps writers out."""
        with self._lock:
            index.save(index_dir)
            self._handle.close()
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(b"")
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
            self._handle = open(self.path, "ab")  # noqa: SIM115
            self._seq = 0

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.close()


def upsert_write(
    ids: Sequence[str],
    records: Sequence[DocumentRecord],
    vectors: np.ndarray | None,
    has_vector: Sequence[bool],
) -> IndexWrite:
    """An ``upsert`` :class:`IndexWrite` (checks that vectors match the flagged records)."""
    flagged = int(sum(bool(x) for x in has_vector))
    rows = 0 if vectors is None else len(vectors)
    if flagged != rows:
        raise ValueError(f"{flagged} records are flagged to have a vector but {rows} vectors were given")
    return IndexWrite(
        op="upsert", ids=list(ids), records=list(records), vectors=vectors, has_vector=list(has_vector)
    )
