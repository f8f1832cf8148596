"""A write-ahead log of index changes: every change is on disk (fsynced) before it is acknowledged.

A long-running writer (the REST service) appends each :class:`IndexWrite` to the log before applying it to
the :class:`~indexes.WinnowIndex`; from time to time it empties the log (:meth:`WriteLog.checkpoint`). An
index loaded from its directory writes each applied change there in place (committed before ``apply``
returns), so a checkpoint only compacts it when its changes passed the threshold; an index still in memory
is saved atomically first and opened in place. After a crash, loading the index and replaying the log
restores every acknowledged write. Replaying a write the index already holds is harmless: an upsert
replaces, a delete of a missing id does nothing.

One JSON object per line, with a CRC32 of its payload. A torn last line (the process died while writing it, so
the write was never acknowledged) is dropped with a warning; a damaged line before the end raises
:class:`~indexes.IndexCorruptedError`.

The log cannot lie: acknowledged writes are exactly what replay returns. Lines are written with ``os.write``
on an unbuffered descriptor; a failed write or fsync is cut back off the file, so it never reappears. After an
fsync error the log refuses writes until the process restarts. :meth:`IndexWrite.check` runs before logging,
so a logged write applies; :meth:`WriteLog.retract` takes back one whose apply failed anyway.
"""

from __future__ import annotations

import base64
import contextlib
import errno
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

from ._fsutil import fsync_dir, is_disk_full
from .document_table import DocumentRecord, _check_unique_ids, _encode, _id_list
from .errors import IndexCorruptedError, StorageFullError, WriteLogUnavailableError
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

    def check(self, index: WinnowIndex) -> None:
        """Raise ``ValueError`` (or :class:`IndexNotTrainedError`) if :meth:`apply` would refuse this write
        on ``index``; run it before logging, so a logged write always applies."""
        _id_list(self.ids)
        if self.op == "delete":
            return
        _check_unique_ids([_encode(r)[1] for r in self.records])
        vectors = self.vectors if self.vectors is not None and len(self.vectors) else None
        index._check_batch(self.records, vectors, self.has_vector if vectors is not None else None)

    def apply(self, index: WinnowIndex) -> int:
        """Apply to ``index`` under its lock and in one table transaction, so readers (in other processes
        too) never see a half-applied write; returns documents written or deleted."""
        with index.lock, index.table.transaction():
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
    """An append-only, fsynced log of :class:`IndexWrite` at ``path`` (created when missing).

    Writes go through an unbuffered file descriptor, so a failed append leaves nothing behind in a buffer:
    on any error the file is cut back to the end of the last acknowledged entry and reopened. After an
    fsync error the log refuses writes (:class:`WriteLogUnavailableError`) until the process restarts,
    since a later fsync can report success for data the kernel already dropped.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        self._seq = sum(1 for _ in self._entries(strict=False))
        self._fd = _open_log(self.path)
        self._offset = os.fstat(self._fd).st_size  # end of the last acknowledged entry
        self._last: tuple[int, int] | None = None  # (offset, seq) before the last append, for retract()
        self._failure: str | None = None

    def __len__(self) -> int:
        """Writes logged since the last checkpoint."""
        return self._seq

    def __repr__(self) -> str:
        return f"WriteLog({str(self.path)!r}, entries={self._seq})"

    @property
    def failure(self) -> str | None:
        """Why the log refuses writes, or ``None`` while it accepts them."""
        return self._failure

    def disable(self, reason: str) -> None:
        """Refuse every later append with ``reason`` (until the process restarts)."""
        with self._lock:
            self._failure = self._failure or reason

    def append(self, write: IndexWrite) -> None:
        """Write ``write`` to disk and fsync; when this returns, the write survives a crash.

        On failure nothing of ``write`` stays in the log: :class:`StorageFullError` when the disk or quota
        is full (the log stays usable), :class:`WriteLogUnavailableError` after an fsync error (the log
        refuses writes from then on), the original error otherwise.
        """
        with self._lock:
            self._check_usable()
            line = _encode_line(self._seq + 1, write)
            start = self._offset
            try:
                _write_all(self._fd, line)
            except BaseException as exc:
                self._cut_back(start)
                if isinstance(exc, OSError) and is_disk_full(exc):
                    raise StorageFullError(
                        exc.errno,
                        f"the disk holding the write log {self.path} is full; the write was not saved. "
                        f"Free space (or raise the quota) and retry",
                    ) from exc
                raise
            try:
                os.fsync(self._fd)
            except BaseException as exc:
                self._failure = (
                    f"fsync of the write log {self.path} failed ({exc}); data may have been lost by the "
                    f"disk, so writes are refused until winnow restarts. Check the disk, then restart"
                )
                logger.error("%s", self._failure)
                self._cut_back(start)
                raise WriteLogUnavailableError(self._failure) from exc
            self._last = (start, self._seq)
            self._offset = start + len(line)
            self._seq += 1

    def retract(self) -> None:
        """Remove the entry the last :meth:`append` wrote (its apply failed). The caller keeps other writers
        out between the two calls; if the entry cannot be removed the log refuses writes."""
        with self._lock:
            if self._last is None:
                raise RuntimeError("retract() without a preceding successful append()")
            start, seq = self._last
            self._last = None
            if not self._cut_back(start):
                raise WriteLogUnavailableError(self._failure or f"could not cut back {self.path}")
            self._seq = seq

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise WriteLogUnavailableError(self._failure)
        if self._fd < 0:
            raise WriteLogUnavailableError(f"the write log {self.path} is closed")

    def _cut_back(self, offset: int) -> bool:
        """Truncate to ``offset`` (dropping a failed entry, even one the kernel already holds), fsync, and
        reopen; returns False (and disables the log) when that fails."""
        try:
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._fd = _open_log(self.path)
            self._offset = offset
            self._last = None
            return True
        except OSError as err:
            self._failure = self._failure or (
                f"could not cut a failed entry from the write log {self.path} ({err}); writes are refused "
                f"until winnow restarts. Check the disk, then restart"
            )
            logger.error("%s", self._failure)
            return False

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
        """Apply every logged write to ``index`` in order, in one table transaction (one commit); returns how
        many were applied."""
        count = 0
        with index.lock, index.table.transaction():
            for write in self._entries():
                write.apply(index)
                count += 1
        if count:
            logger.info("replayed %d logged writes from %s", count, self.path)
        return count

    def checkpoint(self, index: WinnowIndex, index_dir: str | Path, *, compact: bool = False) -> None:
        """Make ``index`` durable in ``index_dir``, then empty the log. The caller keeps writers out.

        An index live in ``index_dir`` already holds every applied write on disk: it is compacted when
        ``compact`` or when its changes passed the threshold. Any other index is saved atomically and opened
        in place there.

        The empty replacement log is created, fsynced and opened before it replaces the old one, and the
        old one is closed last: on any error the old log stays in place and open.
        """
        with self._lock:
            live = index.live_dir
            if live is not None and live.resolve() == Path(index_dir).absolute().resolve():
                if compact:
                    index.compact()
                else:
                    index.compact_if_due()
            else:
                index.save(index_dir, open_in_place=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = _open_log(tmp, truncate=True)
            try:
                os.fsync(fd)
                os.replace(tmp, self.path)
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            fsync_dir(self.path.parent)
            old, self._fd = self._fd, fd
            if old >= 0:
                with contextlib.suppress(OSError):
                    os.close(old)
            self._offset = 0
            self._seq = 0
            self._last = None

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)


def _open_log(path: Path, *, truncate: bool = False) -> int:
    """An unbuffered append-only descriptor on ``path`` (created when missing)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    return os.open(path, flags | (os.O_TRUNC if truncate else 0), 0o644)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte of ``data`` is on its way (a write may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - os.write raises rather than returning 0 on a regular file
            raise OSError(errno.EIO, f"os.write wrote {written} bytes")
        view = view[written:]


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
