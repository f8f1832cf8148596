"""A FAISS vector index with stable int64 ids, deletion, allow-list search and on-disk persistence."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

from ._fsutil import fsync_file
from .errors import DuplicateIdError, IndexNotTrainedError

logger = logging.getLogger(__name__)

METRICS: dict[str, int] = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
COMPACT_TOMBSTONE_FRACTION = 0.20
EXACT_ALLOW_LIST_MIN = 1024
EXACT_ALLOW_FRACTION = 0.02  # allow-lists this small a share of the index are scored exactly ...
EXACT_ALLOW_LIST_MAX = 1 << 16  # ... up to this many ids
MAX_FILTER_WIDENING = 16  # efSearch / nprobe grow by up to this factor as an allow-list gets more selective
_RECONSTRUCT_CHUNK = 65536
_EXACT_SCORE_BUDGET = 1 << 22  # query x candidate scores held at once by the exact scorer
_STATE_VERSION = 1
_DEFAULT_OMP_THREADS = faiss.omp_get_max_threads()
_MAX_LISTED = 10


def set_faiss_threads(n: int | None) -> int:
    """Set the number of OpenMP threads FAISS uses; ``None`` restores the count found at import.

    Returns the thread count now in effect.
    """
    if n is None:
        n = _DEFAULT_OMP_THREADS
    if int(n) < 1:
        raise ValueError(f"FAISS thread count must be >= 1 (or None for the default), got {n}")
    faiss.omp_set_num_threads(int(n))
    return faiss.omp_get_max_threads()


def _listed(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:_MAX_LISTED])
    more = f" and {values.size - _MAX_LISTED} more" if values.size > _MAX_LISTED else ""
    return f"[{shown}]{more}"


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float32_matrix(vectors: object, dim: int, name: str = "vectors") -> np.ndarray:
    """Validate ``vectors`` as an (n, dim) finite real array and return a C-contiguous float32 copy."""
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, {dim}); got an array of shape {arr.shape}")
    if arr.shape[1] != dim:
        raise ValueError(f"{name} have dimension {arr.shape[1]} but the index has dimension {dim}")
    if arr.dtype not in _FLOAT_DTYPES and (  # the dtype checks cost microseconds a query: common ones first
        arr.dtype == np.bool_
        or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating))
    ):
        raise ValueError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    out = np.array(arr, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(out).all():  # one reduction on the common path; rows only to say which are bad
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        raise ValueError(f"{name} contain NaN or infinite values (as float32) in rows {_listed(bad)}")
    return out


def as_id_array(ids: object, name: str = "ids") -> np.ndarray:
    """Validate ``ids`` as a 1-D sequence of non-negative integers and return a contiguous int64 copy."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of integers; got an array of shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers; got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.unsignedinteger) and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must fit in int64")
    out = np.array(arr, dtype=np.int64, order="C", copy=True)
    if (out < 0).any():
        raise ValueError(f"{name} must be non-negative (-1 marks 'no result'); got {_listed(out[out < 0])}")
    return out


def _check_unique(ids: np.ndarray, name: str = "ids") -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        raise ValueError(f"{name} contain duplicates within one call: {_listed(uniq[counts > 1])}")


def _as_allow_list(allow_ids: Iterable[int] | np.ndarray) -> np.ndarray:
    if not isinstance(allow_ids, np.ndarray):
        allow_ids = np.asarray(list(allow_ids))
    return np.unique(as_id_array(allow_ids, "allow_ids"))


def _isin_sorted(sorted_values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Membership of ``query`` in the sorted array ``sorted_values``, O(len(query) * log n)."""
    if sorted_values.size == 0 or query.size == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_values, query), sorted_values.size - 1)
    return sorted_values[pos] == query


def _union_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two disjoint sorted arrays; timsort merges the two runs in linear time."""
    return np.sort(np.concatenate([a, b]), kind="stable")


def _difference_sorted(a: np.ndarray, b_sorted: np.ndarray) -> np.ndarray:
    return a[~_isin_sorted(b_sorted, a)]


def _empty_results(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of ``k`` padding results: score -inf, id -1."""
    return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)


def _unwrap(index: faiss.Index) -> faiss.Index:
    """The core index below IndexPreTransform wrappers (PCA, OPQ, L2norm, ...)."""
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index


def _extract_ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


class VectorIndex:
    """A FAISS index (any ``faiss.index_factory`` string) with stable external int64 ids.

    The factory index is always wrapped in ``faiss.IndexIDMap2``, so callers address vectors by their own
    non-negative int64 ids. ``metric="ip"`` scores by inner product, on L2-normalised vectors by default
    (cosine); ``metric="l2"`` returns NEGATIVE squared distances, so a higher score is always better.

    Deletion policy. Flat-family indexes (``IndexFlatCodes``: Flat, SQ8, PQ16, LSH, also under a
    pre-transform), whose storage renumbers on removal, use FAISS' native ``remove_ids``. Every other index
    cannot remove correctly under IDMap2 (HNSW cannot remove at all; IVF's internal labels do not renumber,
    which breaks IDMap2's id map), so it uses TOMBSTONES: removed ids go into a tombstone set that search
    excludes through an IDSelector. When tombstones exceed 20% of the stored vectors, or when ``upsert`` or
    ``add`` touches an id that is stored (live or tombstoned), the index is COMPACTED: live vectors are
    reconstructed, the index is reset (an IVF keeps its trained quantizer) and they are re-added.
    Reconstruction of an IVF relies on its direct map (``make_direct_map()`` on the IVF sub-index, kept
    through save/load). Compaction rebuilds the whole index (HNSW: the whole graph) and, for lossy codes
    (SQ, PQ), re-encodes the decoded vectors; batch your upserts.

    Search with an allow-list uses ``faiss.IDSelectorBatch`` over the allowed live ids (allow-list minus
    tombstones), passed in ``SearchParameters``/``SearchParametersHNSW(efSearch)``/``SearchParametersIVF
    (nprobe)``; IDMap2 translates it to internal labels. Approximate indexes can miss results under a tight
    selector, so when the allowed live ids number at most ``max(1024, 8 * k)``, or at most 2% of the index
    (up to 65,536 ids), they are scored exactly against their reconstructed (stored) vectors instead; larger
    allow-lists search with efSearch / nprobe raised by the index size over the allow-list size (at most 16
    times). Any query row that still returns fewer than
    ``min(k, candidates)`` results is re-scored exactly over the candidates, so search always returns that
    many. Indexes that take no IDSelector (IndexPQ, IndexLSH, IndexRefine) score allow-lists exactly and
    skip tombstones by over-fetching. Rows are padded with score ``-inf`` and id ``-1``.

    Thread-safe: every operation holds an internal re-entrant lock.
    """

    def __init__(
        self,
        dim: int,
        factory: str = "Flat",
        metric: str = "ip",
        *,
        normalize: bool | None = None,
        ef_search: int = 128,
        nprobe: int = 16,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
        if not isinstance(factory, str) or not factory.strip():
            raise ValueError(f"factory must be a FAISS index_factory string such as 'Flat', got {factory!r}")
        factory = factory.strip()
        if factory.upper().startswith("IDMAP"):
            raise ValueError(
                f"factory {factory!r}: leave out 'IDMap'; VectorIndex always wraps in IndexIDMap2"
            )
        self._dim = int(dim)
        self._factory = factory
        self._metric = metric
        self._normalize = (metric == "ip") if normalize is None else bool(normalize)
        self.ef_search = self._positive(ef_search, "ef_search")
        self.nprobe = self._positive(nprobe, "nprobe")
        try:
            base = faiss.index_factory(self._dim, factory, METRICS[metric])
        except RuntimeError as exc:
            raise ValueError(f"FAISS cannot build index factory {factory!r} for dim {dim}: {exc}") from exc
        self._needs_training = not base.is_trained
        self._lock = threading.RLock()
        self._memory_mapped = False
        self._setup(faiss.IndexIDMap2(base))

    @staticmethod
    def _positive(value: int, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return int(value)

    def _setup(self, index: faiss.IndexIDMap2) -> None:
        """Attach a (new or loaded) IndexIDMap2 and derive the policy and id bookkeeping from it."""
        self._index = index
        core = _unwrap(index.index)
        self._ivf = _extract_ivf(index.index)
        if self._ivf is not None and self._ivf.direct_map.type == faiss.DirectMap.NoMap:
            self._ivf.make_direct_map()
        self._is_hnsw = isinstance(core, faiss.IndexHNSW)
        self._is_refine = isinstance(core, faiss.IndexRefine)
        self._selector_ok: bool | None = None
        self._params_cache: tuple[tuple[int, int, int], faiss.SearchParameters | None] | None = None
        self._native_remove = isinstance(core, faiss.IndexFlatCodes)
        self._stored = np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
        self._set_tombstones(np.empty(0, dtype=np.int64))

    def _set_tombstones(self, tombstones: np.ndarray) -> None:
        self._tombstones = tombstones
        self._tombstone_selector: tuple | None = None

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def factory(self) -> str:
        return self._factory

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def normalize(self) -> bool:
        return self._normalize

    @property
    def is_trained(self) -> bool:
        """Whether vectors can be added now."""
        return bool(self._index.is_trained)

    @property
    def needs_training(self) -> bool:
        """Whether this factory needs ``train()`` before use (IVF, PQ, SQ, ...); fixed at construction."""
        return self._needs_training

    @property
    def uses_tombstones(self) -> bool:
        """True when removal uses tombstones + compaction instead of native ``remove_ids``."""
        return not self._native_remove

    @property
    def memory_mapped(self) -> bool:
        """True when the index was loaded with ``mmap=True``: searchable, but it cannot change."""
        return self._memory_mapped

    def _check_writable(self) -> None:
        if self._memory_mapped:
            raise RuntimeError(
                "this vector index is memory-mapped from its file (opened read-only) and cannot change; "
                "load it without mmap to write"
            )

    @property
    def num_tombstones(self) -> int:
        return int(self._tombstones.size)

    def __len__(self) -> int:
        return int(self._stored.size - self._tombstones.size)

    def __repr__(self) -> str:
        return (
            f"VectorIndex(dim={self._dim}, factory={self._factory!r}, metric={self._metric!r}, "
            f"normalize={self._normalize}, live={len(self)}, tombstones={self.num_tombstones})"
        )

    # ------------------------------------------------------------------ helpers
    def _prepare(self, vectors: object, name: str = "vectors") -> np.ndarray:
        x = as_float32_matrix(vectors, self._dim, name)
        if self._normalize and x.shape[0]:
            faiss.normalize_L2(x)  # in place on our own copy; zero rows stay zero
        return x

    def _prepare_pairs(self, ids: object, vectors: object) -> tuple[np.ndarray, np.ndarray]:
        id_arr = as_id_array(ids)
        x = self._prepare(vectors)
        if id_arr.size != x.shape[0]:
            raise ValueError(f"got {id_arr.size} ids for {x.shape[0]} vectors; pass one id per vector")
        _check_unique(id_arr)
        return id_arr, x

    def check_trained(self) -> None:
        """Raise :class:`IndexNotTrainedError` (saying what to do) unless vectors can be added now."""
        if self._index.is_trained:
            return
        hint = ""
        if self._ivf is not None:
            nlist = self._ivf.nlist
            hint = f" (at least {nlist} vectors for nlist={nlist}, ideally {39 * nlist})"
        raise IndexNotTrainedError(
            f"The {self._factory!r} index needs training before vectors can be added: call "
            f"train(vectors) first with a representative sample{hint}."
        )

    def _live_mask(self, ids: np.ndarray) -> np.ndarray:
        return _isin_sorted(self._stored, ids) & ~_isin_sorted(self._tombstones, ids)

    def _live_ids(self) -> np.ndarray:
        return _difference_sorted(self._stored, self._tombstones)

    def _add_raw(self, ids: np.ndarray, x: np.ndarray) -> None:
        if ids.size == 0:
            return
        self._index.add_with_ids(x, ids)
        self._stored = _union_sorted(self._stored, np.sort(ids))

    def _remove_native(self, ids: np.ndarray) -> None:
        self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
        self._stored = _difference_sorted(self._stored, np.sort(ids))

    def _reconstruct_stored(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((ids.size, self._dim), dtype=np.float32)
        for start in range(0, ids.size, _RECONSTRUCT_CHUNK):
            chunk = np.ascontiguousarray(ids[start : start + _RECONSTRUCT_CHUNK])
            try:
                out[start : start + chunk.size] = self._index.reconstruct_batch(chunk)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"FAISS cannot reconstruct vectors from a {self._factory!r} index ({exc}); "
                    f"tombstone compaction and exact allow-list scoring need it; choose a factory that "
                    f"supports reconstruct."
                ) from exc
        return out

    def _compact(self, exclude: np.ndarray | None = None) -> None:
        """Rebuild the index from its live vectors (minus ``exclude``), dropping tombstoned vectors."""
        keep = self._live_ids()
        if exclude is not None and exclude.size:
            keep = _difference_sorted(keep, np.sort(exclude))
        vectors = self._reconstruct_stored(keep)
        logger.debug(
            "Compacting %s index: %d live vectors kept, %d dropped",
            self._factory,
            keep.size,
            self._stored.size - keep.size,
        )
        self._index.reset()
        self._stored = np.empty(0, dtype=np.int64)
        self._set_tombstones(np.empty(0, dtype=np.int64))
        self._add_raw(keep, vectors)

    # ------------------------------------------------------------------ mutation
    def train(self, vectors: object) -> None:
        """Train the index (IVF quantizer, PQ/SQ codebooks); a no-op for indexes that need no training."""
        x = self._prepare(vectors, "training vectors")
        with self._lock:
            self._check_writable()
            if not self._needs_training:
                return
            if self._index.is_trained:
                raise ValueError(
                    f"The {self._factory!r} index is already trained; create a new VectorIndex to retrain it."
                )
            n = x.shape[0]
            if self._ivf is not None:
                nlist = self._ivf.nlist
                if n < nlist:
                    raise ValueError(
                        f"The {self._factory!r} index has nlist={nlist} clusters but got {n} training "
                        f"vectors; at least {nlist} are required (FAISS recommends about {39 * nlist}). "
                        f"Train on more vectors or choose a smaller nlist "
                        f"(about {max(1, n // 39)} for {n} vectors)."
                    )
                if n < 39 * nlist:
                    logger.warning(
                        "Training %s on %d vectors; FAISS recommends about %d (39 * nlist)",
                        self._factory,
                        n,
                        39 * nlist,
                    )
            try:
                self._index.train(x)
            except RuntimeError as exc:
                raise ValueError(f"FAISS could not train {self._factory!r} on {n} vectors: {exc}") from exc

    def add(self, ids: object, vectors: object) -> None:
        """Add new vectors; raises :class:`DuplicateIdError` if any id is already live (use ``upsert``)."""
        id_arr, x = self._prepare_pairs(ids, vectors)
        with self._lock:
            self._check_writable()
            self.check_trained()
            live = self._live_mask(id_arr)
            if live.any():
                raise DuplicateIdError(
                    f"ids already in the index: {_listed(id_arr[live])}; use upsert() to replace them",
                    id_arr[live].tolist(),
                )
            if _isin_sorted(self._tombstones, id_arr).any():
                self._compact()  # the old vector still occupies the id under IDMap2
            self._add_raw(id_arr, x)

    def upsert(self, ids: object, vectors: object) -> None:
        """Add vectors, replacing those of ids already present."""
        id_arr, x = self._prepare_pairs(ids, vectors)
        with self._lock:
            self._check_writable()
            self.check_trained()
            stored = _isin_sorted(self._stored, id_arr)
            if stored.any():
                if self._native_remove:
                    self._remove_native(id_arr[stored])
                else:
                    self._compact(exclude=id_arr[stored])
            self._add_raw(id_arr, x)

    def remove(self, ids: object) -> int:
        """Remove ids; unknown ids are ignored. Returns how many were actually removed."""
        id_arr = np.unique(as_id_array(ids))
        with self._lock:
            gone = id_arr[self._live_mask(id_arr)]
            if gone.size == 0:
                return 0
            self._check_writable()
            if self._native_remove:
                self._remove_native(gone)
            else:
                self._set_tombstones(_union_sorted(self._tombstones, gone))
                if self._tombstones.size > COMPACT_TOMBSTONE_FRACTION * self._stored.size:
                    self._compact()
            return int(gone.size)

    def reset(self) -> None:
        """Remove every vector; a trained index stays trained."""
        with self._lock:
            self._check_writable()
            self._index.reset()
            self._stored = np.empty(0, dtype=np.int64)
            self._set_tombstones(np.empty(0, dtype=np.int64))

    # ------------------------------------------------------------------ lookup
    def contains(self, ids: object) -> np.ndarray:
        """Boolean mask: which ids are live (stored and not removed)."""
        id_arr = as_id_array(ids)
        with self._lock:
            return self._live_mask(id_arr)

    def ids(self) -> np.ndarray:
        """Sorted int64 array of the live ids."""
        with self._lock:
            return self._live_ids()

    def reconstruct(self, ids: object) -> np.ndarray:
        """Stored vectors (normalised when ``normalize``; decoded, so approximate for SQ/PQ) of live ids."""
        id_arr = as_id_array(ids)
        with self._lock:
            live = self._live_mask(id_arr)
            if not live.all():
                raise KeyError(f"ids not in the index: {_listed(id_arr[~live])}")
            return self._reconstruct_stored(id_arr)

    # ------------------------------------------------------------------ search
    def search(
        self, queries: object, k: int, *, allow_ids: Iterable[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores float32 (n, k), ids int64 (n, k)) per query, best first, higher score better.

        ``allow_ids`` restricts results to those ids (unknown or removed ones are ignored).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        q = self._prepare(queries, "queries")
        allowed = None if allow_ids is None else _as_allow_list(allow_ids)
        with self._lock:
            if q.shape[0] == 0 or len(self) == 0:
                return _empty_results(q.shape[0], k)
            if allowed is None:
                candidates = None
                n_candidates = len(self)
            else:
                candidates = allowed[self._live_mask(allowed)]
                n_candidates = candidates.size
                if n_candidates == 0:
                    return _empty_results(q.shape[0], k)
                small = n_candidates <= max(EXACT_ALLOW_LIST_MIN, 8 * k) or (
                    n_candidates <= EXACT_ALLOW_LIST_MAX and n_candidates <= EXACT_ALLOW_FRACTION * len(self)
                )
                if small or not self._selector_supported():
                    return self._exact_search(q, candidates, k)
            scores, labels = self._approximate_search(q, k, candidates)
            self._fill_short_rows(q, k, scores, labels, candidates, min(k, n_candidates))
        return scores, labels

    def _approximate_search(
        self, q: np.ndarray, k: int, candidates: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search restricted to ``candidates`` (or to the live ids when None)."""
        if candidates is not None:
            selector = faiss.IDSelectorBatch(candidates)
            return self._faiss_search(q, k, selector, widen=len(self) / max(candidates.size, 1))
        if self._tombstones.size == 0:
            return self._faiss_search(q, k, None)
        if self._selector_supported():
            return self._faiss_search(q, k, self._tombstone_sel())
        # No selector support (e.g. IndexRefine): over-fetch by the tombstone count and drop them.
        wide = max(k, min(k + self._tombstones.size, self._stored.size))
        scores, labels = self._faiss_search(q, wide, None)
        dead = (labels < 0) | _isin_sorted(self._tombstones, labels.ravel()).reshape(labels.shape)
        order = np.argsort(dead, axis=1, kind="stable")[:, :k]  # live first, score order kept
        labels = np.where(
            np.take_along_axis(dead, order, axis=1), -1, np.take_along_axis(labels, order, axis=1)
        )
        scores = np.where(labels >= 0, np.take_along_axis(scores, order, axis=1), -np.inf).astype(np.float32)
        return scores, labels

    def _selector_supported(self) -> bool:
        """Whether this index accepts search parameters with an IDSelector (IndexPQ, LSH, Refine do not)."""
        if self._selector_ok is None:
            params = self._search_params(1) or faiss.SearchParameters()
            selector = faiss.IDSelectorAll()
            params.sel = selector
            try:
                self._index.search(np.zeros((1, self._dim), dtype=np.float32), 1, params=params)
                self._selector_ok = True
            except RuntimeError:
                logger.debug("%s does not take IDSelectors; filtering without them", self._factory)
                self._selector_ok = False
        return self._selector_ok

    def _tombstone_sel(self) -> faiss.IDSelector | None:
        if self._tombstones.size == 0:
            return None
        if self._tombstone_selector is None:
            batch = faiss.IDSelectorBatch(self._tombstones)
            self._tombstone_selector = (batch, faiss.IDSelectorNot(batch))
        return self._tombstone_selector[1]

    def _search_params(self, k: int, widen: float = 1.0) -> faiss.SearchParameters | None:
        """Fresh search parameters (callers may attach a selector to them). ``widen`` (the index size over
        the allow-list size) raises efSearch / nprobe, up to :data:`MAX_FILTER_WIDENING` times, so a
        selective allow-list still finds its nearest vectors."""
        widen = min(max(widen, 1.0), MAX_FILTER_WIDENING)
        if self._is_hnsw:
            return faiss.SearchParametersHNSW(efSearch=int(max(self.ef_search, k) * widen))
        if self._ivf is not None and not self._is_refine:
            return faiss.SearchParametersIVF(nprobe=min(int(np.ceil(self.nprobe * widen)), self._ivf.nlist))
        return None

    def _faiss_search(
        self, q: np.ndarray, k: int, selector: faiss.IDSelector | None, *, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        if selector is not None:
            params = self._search_params(k, widen) or faiss.SearchParameters()
            params.sel = selector  # ``selector`` stays referenced by the caller during the search
        else:  # building SWIG parameter objects costs microseconds a query: reuse them while settings hold
            key = (k, self.ef_search, self.nprobe)
            if self._params_cache is None or self._params_cache[0] != key:
                self._params_cache = (key, self._search_params(k))
            params = self._params_cache[1]
        distances, labels = self._index.search(q, k, params=params)
        scores = -distances if self._metric == "l2" else distances
        if labels.min() < 0:  # FAISS pads missing results with -1 and +-FLT_MAX
            scores = np.where(labels >= 0, scores, -np.inf)
        return scores.astype(np.float32, copy=False), labels.astype(np.int64, copy=False)

    def _fill_short_rows(
        self,
        q: np.ndarray,
        k: int,
        scores: np.ndarray,
        labels: np.ndarray,
        candidates: np.ndarray | None,
        expected: int,
    ) -> None:
        """Re-score exactly the query rows for which the approximate search returned too few results."""
        if expected <= 0 or labels[:, :expected].min() >= 0:  # the common case, in one reduction
            return
        short = np.flatnonzero((labels >= 0).sum(axis=1) < expected)
        if short.size == 0:
            return
        logger.debug(
            "%d of %d queries returned < %d results; scoring them exactly", short.size, len(q), expected
        )
        pool = self._live_ids() if candidates is None else candidates
        scores[short], labels[short] = self._exact_search(q[short], pool, k)

    def _exact_search(self, q: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of ``q`` over the stored vectors of ``candidates`` (live ids), in bounded chunks."""
        n = q.shape[0]
        best_scores = np.full((n, k), -np.inf, dtype=np.float32)
        best_ids = np.full((n, k), -1, dtype=np.int64)
        chunk = max(256, _EXACT_SCORE_BUDGET // max(n, 1))
        q_norms = (q * q).sum(axis=1, keepdims=True) if self._metric == "l2" else None
        for start in range(0, candidates.size, chunk):
            ids = candidates[start : start + chunk]
            v = self._reconstruct_stored(ids)
            part = q @ v.T
            if q_norms is not None:
                part = -np.maximum(q_norms - 2.0 * part + (v * v).sum(axis=1)[None, :], 0.0)
            all_scores = np.concatenate([best_scores, part.astype(np.float32, copy=False)], axis=1)
            all_ids = np.concatenate([best_ids, np.broadcast_to(ids, (n, ids.size))], axis=1)
            top = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
            best_scores = np.take_along_axis(all_scores, top, axis=1)
            best_ids = np.take_along_axis(all_ids, top, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(best_ids, order, axis=1)

    # ------------------------------------------------------------------ persistence
    @staticmethod
    def state_path(path: str | Path) -> Path:
        """The sidecar file (tombstones + settings) that goes with the FAISS file at ``path``."""
        return Path(path).with_suffix(".state.npz")

    def _config(self) -> dict:
        return {
            "state_version": _STATE_VERSION,
            "dim": self._dim,
            "factory": self._factory,
            "metric": self._metric,
            "normalize": self._normalize,
            "ef_search": self.ef_search,
            "nprobe": self.nprobe,
            "needs_training": self._needs_training,
        }

    def snapshot(self) -> VectorSnapshot:
        """A point-in-time copy of what :meth:`save` writes, taken in memory under the lock (fast), so the
        slow part (writing, fsync) can run without it."""
        with self._lock:
            return VectorSnapshot(
                faiss.serialize_index(self._index), self._tombstones.copy(), self._config(), len(self)
            )

    def save(self, path: str | Path) -> list[Path]:
        """Write the FAISS index to ``path`` and tombstones + settings to :meth:`state_path`.

        Each file is written to a temporary name, fsynced and renamed into place. Returns both paths.
        """
        return self.snapshot().save(path)

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = False) -> VectorIndex:
        """Load an index written by :meth:`save` (the FAISS file plus its state sidecar).

        ``mmap=True`` maps the file's codes instead of reading them (``faiss.IO_FLAG_MMAP_IFC``): the flat
        codes of Flat, SQ and PQ indexes (also under a pre-transform), the HNSW storage and the IVF
        inverted lists stay in the page cache, shared between processes, and RSS grows only by the id map
        (and the HNSW graph). Such an index is read-only: every write raises, since FAISS aborts the
        process when a mapped index is resized.
        """
        path = Path(path)
        state_file = cls.state_path(path)
        for needed in (path, state_file):
            if not needed.is_file():
                raise FileNotFoundError(
                    f"{needed} does not exist; a saved VectorIndex has {path.name} and {state_file.name}"
                )
        with np.load(state_file, allow_pickle=False) as state:
            config = json.loads(str(state["config"]))
            tombstones = np.sort(np.asarray(state["tombstones"], dtype=np.int64))
        if config.get("state_version") != _STATE_VERSION:
            raise ValueError(
                f"{state_file} has state version {config.get('state_version')}, expected {_STATE_VERSION}"
            )
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{path} holds a {type(index).__name__}, not the IndexIDMap2 VectorIndex writes")
        if index.d != config["dim"] or index.metric_type != METRICS[config["metric"]]:
            raise ValueError(f"{path} (dim {index.d}) disagrees with its settings in {state_file}: {config}")
        obj = cls.__new__(cls)
        obj._dim = int(config["dim"])
        obj._factory = config["factory"]
        obj._metric = config["metric"]
        obj._normalize = bool(config["normalize"])
        obj.ef_search = int(config["ef_search"])
        obj.nprobe = int(config["nprobe"])
        obj._needs_training = bool(config["needs_training"])
        obj._lock = threading.RLock()
        obj._memory_mapped = bool(mmap)
        obj._setup(index)
        if not _isin_sorted(obj._stored, tombstones).all():
            raise ValueError(f"{state_file} lists tombstones for ids that {path} does not hold")
        obj._set_tombstones(tombstones)
        return obj


class VectorSnapshot:
    """The bytes of a :class:`VectorIndex` at one moment (see :meth:`VectorIndex.snapshot`); ``count`` is
    its number of live vectors."""

    def __init__(self, index_bytes: np.ndarray, tombstones: np.ndarray, config: dict, count: int) -> None:
        self.index_bytes = index_bytes
        self.tombstones = tombstones
        self.config = config
        self.count = count

    def save(self, path: str | Path) -> list[Path]:
        """Write the files :meth:`VectorIndex.save` writes (temporary names, fsync, rename)."""
        path = Path(path)
        state = VectorIndex.state_path(path)
        tmp_index = path.with_name(path.name + ".tmp")
        tmp_state = state.with_name(state.name + ".tmp")
        try:
            with open(tmp_index, "wb") as handle:
                handle.write(memoryview(self.index_bytes))
            with open(tmp_state, "wb") as handle:
                np.savez(handle, tombstones=self.tombstones, config=np.array(json.dumps(self.config)))
            for tmp in (tmp_index, tmp_state):
                fsync_file(tmp)
            os.replace(tmp_index, path)
            os.replace(tmp_state, state)
        finally:
            for tmp in (tmp_index, tmp_state):
                tmp.unlink(missing_ok=True)
        return [path, state]
