"""Index speed: FAISS Flat vs HNSW vs IVF-SQ8 on the same 384-d vectors; winnow's wrapper vs raw FAISS;
each index saved as a winnow index directory, then opened, searched (plain and filtered) and written to.

Datasets (every vector L2-normalised, inner-product metric, as winnow indexes them):

- ``synthetic-<n>`` for each ``--sizes`` entry: a seeded Gaussian mixture shaped like sentence embeddings.
  ``--centres`` cluster centres (default 2,000) sit around a shared mean direction (weight ``--mean-weight``);
  each vector is its centre plus noise scaled by the cluster's spread (``--spread`` x U(0.7, 1.3)), then
  normalised; cluster sizes are log-normal. Centre offsets and noise have a power-law spectrum (variance ~ 1/i
  along randomly rotated axes), which is what the covariance of winnow's MiniLM-L6 corpus embeddings shows;
  uniform random 384-d vectors would be unrealistically hard for approximate search. With the defaults, a 20k
  sample has a mean cosine of 0.68 to its nearest neighbour, 0.57 to its 10th and 0.12 to a random vector
  (SciFact's embeddings: 0.67, 0.52, 0.13). The mixture depends on ``--seed`` only, so every size shares the
  same clusters and the same ``--queries`` query vectors, which are fresh draws from the mixture (not in the
  base set).
- ``real-<name>`` for each ``--real`` winnow index folder (``work/idx-scifact`` ...; missing ones are
  skipped): its stored vectors (``VectorIndex.load(...).reconstruct``). Queries are a seeded HELD-OUT
  sample of the corpus vectors (``min(--queries, n // 10)``), removed from the base set. These are document
  vectors, not query embeddings: real queries lie a little further from the corpus, which can lower ANN
  recall somewhat.

Indexes, each built once through winnow's ``VectorIndex`` (``faiss.index_factory`` string in
``IndexIDMap2``; build time = ``train`` + ``add`` through the wrapper, with its copy and normalisation):

- ``Flat`` (exact); its results are the ground truth for recall@10;
- ``HNSW{--hnsw-m}`` (efConstruction FAISS' default 40 unless ``--ef-construction``), efSearch sweep
  ``--ef-search``;
- ``IVF{nlist},SQ8`` with nlist the power of two nearest (in log scale) to 4 * sqrt(n), at most n / 39
  (1,024 at 100k, 4,096 at 1M; ``--nlist`` overrides), trained on a seeded sample of
  ``--ivf-train-per-list`` x nlist vectors (64 x nlist by default: 262k at 1M, where the full set would cost
  4x the k-means time for little gain), nprobe sweep ``--nprobe``.

Per index: build time (train + add); memory: bytes of ``faiss.serialize_index`` of the ``IndexIDMap2``
(which includes the 8-byte id map and, for IVF, winnow's direct map) and the process RSS growth over the
build after ``malloc_trim`` (approximate); and per sweep point recall@10 against Flat (plain id overlap; the
JSON also holds a tie-aware figure that counts a hit whose exact score equals the 10th true score) and
queries/s at batch 1 (the first ``--single-queries`` queries one at a time) and at batch ``--batch`` (all
queries). The sweep searches the raw FAISS index (the ``IndexIDMap2`` inside the ``VectorIndex``, the
parameter set on the index); each timing is the best of ``--repeats`` passes after a warm-up, a pass
stopping early after ``--time-budget`` seconds (so exact search at 1M stays affordable).

Wrapper overhead: on the same built index, at winnow's default search settings (efSearch 128, nprobe 16),
``VectorIndex.search(queries, k)`` against ``IndexIDMap2.search(queries, k)`` with the parameter set on the
index, at batch 1 and batch ``--batch``, over the same queries (as many calls as take about
``--overhead-seconds``, at least ``--overhead-min-pairs`` pairs in all), ``--overhead-repeats`` passes.
Each call is made by both paths back to back, the order alternating call by call and pass by pass, so that
machine noise hits both alike; as the second of a pair runs with the query's data in cache, the reported
ratio is the geometric mean of the median winnow / FAISS time ratio over the winnow-first pairs and over
the FAISS-first pairs. Also reported: the extra microseconds a call, and whether both paths return the
same ids. The issue's target is a ratio <= 1.05.

The machine should be otherwise idle: with other processes on the cores, OpenMP threads wait for each other
and single-query timings swing by 10x or more (the load average is recorded, and a busy machine is warned
about).

On disk (all but ``--no-disk``), per index, after the figures above:

- ``disk``: the built index is saved with ``WinnowIndex(vectors, table).save(dir)``, the table holding one row
  per vector (key = vector id, ``meta = {"bucket": key % 100}``, a short text), into ``--work-dir`` (default
  ``/tmp/winnow-index-speed``, never under the repository; each index's folder is deleted once its sections
  are recorded, the work folder too when that leaves it empty). Recorded: save seconds, the directory's size
  and each file's. Then a FRESH process (this script with ``--probe``) imports what it needs, reads its
  VmRSS, runs ``WinnowIndex.load(dir)`` and reads VmRSS again: ``open_s``, ``rss_before_mib``,
  ``rss_after_open_mib``, ``rss_open_mib`` (the growth: what holding the opened index costs) and
  ``rss_after_searches_mib`` (after the searches below, which page in what a lazily opened index did not
  read). The files were just written, so the load reads them from the page cache (a warm open).
- ``latency``: in that process, ``WinnowIndex.search`` (FAISS through ``VectorIndex`` plus the documents'
  rows, the public path) at winnow's default settings (efSearch 128, nprobe 16, as saved), one query a call
  over the first ``--single-queries`` queries and ``--batch`` queries a call over all, ``--repeats`` passes
  of at most ``--time-budget`` s each after a warm-up call: p50, p99, mean and max milliseconds a call and
  queries/s (for batches also p50 ms a query).
- ``filtered``: the Haystack filter ``{"field": "meta.bucket", "operator": "<", "value": v}`` for v = 1, 10
  and 50 (1 %, 10 %, 50 % of the rows match), one query a call: the filter is resolved to table keys
  (``resolver``: ``winnow.retrieval.metadata_filter.matching_document_keys``, the SQL translation, when it
  exists, else ``DocumentTable.keys_where("json_extract(meta, '$.bucket') < ?")`` written by hand;
  ``--filter-resolver keys_where`` forces the latter), then ``WinnowIndex.search(q, k, allow_keys=keys)``.
  Timed separately (``resolve``, ``search``, ``total``: p50/p99 ms) over the first ``--filter-queries``
  queries, stopping after ``--filter-budget`` s (at least 5 queries; past the budget, the remaining queries
  of those 5 reuse the last keys instead of resolving again: ``resolves`` counts the resolutions timed).
  ``keys_where_by_hand`` times the hand-written condition (3 calls), a baseline for the resolver, and
  ``same_keys_as_by_hand`` checks that the resolver found the very same keys. The results are checked by
  the main process against exact search over the matching rows (``faiss.knn``): ``recall_at_k`` (and the
  tie-aware figure), ``queries_with_k_results`` / ``all_k_results`` (every query got min(k, matching)
  results: the acceptance that a filtered search returns k results when at least k documents match) and
  ``results_outside_filter``.
- ``writes``: the same process, after the searches (the searched index released), opens the directory as a
  Haystack store (``WinnowDocumentStore(index_path=dir)``) and calls ``write_documents([doc])`` with one new
  document and its embedding (a fresh seeded unit vector) ``--writes`` times, stopping after
  ``--write-budget`` s (a write that saves the whole directory takes seconds at 1M): ``done``/``asked``,
  p50/p99/max ms a document, ``first_ms``, ``store_open_s``, and each file's size, inode and mtime before
  and after (``files``: ``same_inode`` false means the file was replaced, i.e. rewritten; ``.`` is the
  directory).

The probe process takes ``--threads`` FAISS threads too. Should it fail, the error is recorded as
``probe_error`` (and shown in the Markdown), the run goes on with the next index, and the saved folder stays
for ``--resume`` to retry the missing sections on it without rebuilding.

The JSON's ``environment.cpu_features`` gives the CPU's name, logical and physical cores and ISA flags
(AVX2, FMA, AVX-512F/BW, AVX-512 VNNI, AVX-VNNI, AVX-512 BF16, AMX), from ``/proc/cpuinfo``; FAISS' own
build level is ``faiss_compile_options`` (e.g. ``OPTIMIZE DD AVX2``).

FAISS threads: ``--threads`` (OpenMP, via ``set_faiss_threads``). Results go to
``benchmarks/results/index_speed.json`` and ``.md``, written after every index and every on-disk step and
merged by dataset with what the files already hold (``--fresh`` starts over); ``--resume`` skips datasets,
indexes and on-disk sections already recorded with the same data and settings (the on-disk settings are
compared on their own, ``disk_settings``: changing ``--writes`` re-measures only the on-disk sections, on a
rebuilt index); a run killed during the on-disk sections resumes on the index it left saved in
``--work-dir``. ``--quick`` is a smoke run (20k synthetic vectors plus SciFact when ``work/idx-scifact``
exists, few queries, one pass, 10 filtered queries and 3 writes; written to ``index_speed_quick.*``).

    python benchmarks/index_speed.py --sizes 100000 --resume             # 100k + real corpora
    python benchmarks/index_speed.py --sizes 1000000 --real "" --resume  # 1M: HNSW build 10-20 min, 2 cores
    python benchmarks/index_speed.py --quick                             # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench_common import cpu_features, cpu_name, isa_summary  # noqa: E402

from winnow.indexes import DocumentRecord, DocumentTable, WinnowIndex  # noqa: E402
from winnow.indexes.index_dir import VECTORS_FILE, read_manifest  # noqa: E402
from winnow.indexes.vector_index import VectorIndex, set_faiss_threads  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_REAL = "work/idx-scifact,work/idx-fb,work/idx-arguana"
INDEX_KINDS = ("flat", "hnsw", "ivf-sq8")
WINNOW_DEFAULTS = {"efSearch": 128, "nprobe": 16}  # VectorIndex(ef_search=128, nprobe=16)
OVERHEAD_TARGET = 1.05
RECALL_TARGET = 0.95
TIE_TOLERANCE = 1e-5
GEN_CHUNK = 65536
DISK_SECTIONS = ("disk", "latency", "filtered", "writes")
SELECTIVITIES = (1, 10, 50)  # percent of the rows a filtered search may return: meta.bucket < value
BUCKETS = 100
TABLE_CHUNK = 50_000
MIN_FILTER_QUERIES = 5
BY_HAND_CALLS = 3
BENCH_EMBEDDER = "index-speed-benchmark-vectors"  # the embedder name the saved directories record
SQL_RESOLVER = "matching_document_keys"  # winnow.retrieval.metadata_filter's filter -> keys through SQL

logger = logging.getLogger("index_speed")


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Dataset:
    """Base vectors (ids are row numbers) and query vectors, both float32, C-contiguous, L2-normalised."""

    name: str
    kind: str
    base: np.ndarray
    queries: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        """Enough to tell whether recorded results were measured on these very vectors."""
        digest = hashlib.sha1()
        digest.update(self.queries.tobytes())
        digest.update(self.base[: min(len(self.base), 4096)].tobytes())
        return {
            "n": int(self.base.shape[0]),
            "queries": int(self.queries.shape[0]),
            "sha1": digest.hexdigest(),
        }


@dataclass(frozen=True)
class Mixture:
    """The synthetic Gaussian mixture; depends on the seed and shape parameters only, not on n."""

    centres: np.ndarray  # (c, d) float32, not normalised
    spreads: np.ndarray  # (c,) noise scale per cluster
    weights: np.ndarray  # (c,) cluster probabilities
    mix: np.ndarray  # (d, d) float32: row noise g @ mix has covariance R diag(1/i) R^T / sum(1/i)

    @classmethod
    def make(cls, dim: int, n_centres: int, spread: float, mean_weight: float, seed: int) -> Mixture:
        rng = np.random.default_rng([seed, 0])
        rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        scale = np.arange(1, dim + 1, dtype=np.float64) ** -0.5
        scale /= np.linalg.norm(scale)  # E|g @ mix|^2 = 1
        mix = (scale[:, None] * rotation.T).astype(np.float32)
        common = rng.standard_normal(dim)
        common /= np.linalg.norm(common)
        centres = (mean_weight * common + rng.standard_normal((n_centres, dim)) @ mix).astype(np.float32)
        spreads = (spread * rng.uniform(0.7, 1.3, n_centres)).astype(np.float32)
        weights = np.exp(rng.normal(0.0, 0.75, n_centres))
        return cls(centres, spreads, weights / weights.sum(), mix)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        dim = self.mix.shape[0]
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, GEN_CHUNK):
            size = min(GEN_CHUNK, n - start)
            which = rng.choice(len(self.weights), size=size, p=self.weights)
            noise = rng.standard_normal((size, dim), dtype=np.float32) @ self.mix
            out[start : start + size] = self.centres[which] + self.spreads[which, None] * noise
        faiss.normalize_L2(out)
        return out


def synthetic_dataset(n: int, args: argparse.Namespace) -> Dataset:
    started = time.perf_counter()
    mixture = Mixture.make(args.dim, args.centres, args.spread, args.mean_weight, args.seed)
    base = mixture.sample(n, np.random.default_rng([args.seed, 1]))
    queries = mixture.sample(args.queries, np.random.default_rng([args.seed, 2]))
    logger.info(
        "generated %s x %d synthetic vectors in %.1f s", f"{n:,}", args.dim, time.perf_counter() - started
    )
    info = {
        "source": "synthetic Gaussian mixture (see module docstring)",
        "centres": args.centres,
        "spread": args.spread,
        "mean_weight": args.mean_weight,
        "seed": args.seed,
        "queries_from": "fresh draws from the same mixture",
    }
    return Dataset(f"synthetic-{_short(n)}", "synthetic", base, queries, info)


def real_dataset(folder: Path, args: argparse.Namespace) -> Dataset | None:
    vectors_file = folder / VECTORS_FILE
    if not vectors_file.is_file():
        logger.warning("skipping %s: no %s there (not a winnow index folder?)", folder, VECTORS_FILE)
        return None
    vi = VectorIndex.load(vectors_file)
    x = vi.reconstruct(vi.ids())
    del vi
    faiss.normalize_L2(x)
    n = x.shape[0]
    n_queries = min(args.queries, n // 10)
    if n_queries < 10:
        logger.warning("skipping %s: %d vectors are too few to hold out queries", folder, n)
        return None
    rng = np.random.default_rng([args.seed, 3])
    held_out = np.sort(rng.choice(n, size=n_queries, replace=False))
    keep = np.ones(n, dtype=bool)
    keep[held_out] = False
    info: dict[str, Any] = {
        "source": str(_relative(folder)),
        "seed": args.seed,
        "queries_from": f"{n_queries} corpus vectors held out of the base set (seeded sample)",
    }
    try:
        manifest = read_manifest(folder)
        info.update(embedder=manifest.embedder, stored_factory=manifest.factory)
    except Exception as exc:  # the vectors are what matter; a missing/odd manifest only loses labels
        logger.warning("%s: manifest unreadable (%s)", folder, exc)
    name = "real-" + folder.name.removeprefix("idx-")
    return Dataset(name, "real", np.ascontiguousarray(x[keep]), np.ascontiguousarray(x[held_out]), info)


# ----------------------------------------------------------------------------------------------- helpers
def _short(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def _rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _trim() -> None:
    """Collect garbage and give freed heap back to the OS, so RSS deltas mean something (glibc only)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _ints(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part.strip()]


def nlist_for(n: int) -> int:
    """Power of two nearest (log scale) to 4 * sqrt(n), at most n / 39 (FAISS' minimum points per list)."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    cap = 2 ** int(math.log2(max(1, n // 39)))
    return max(1, min(nlist, cap))


# ----------------------------------------------------------------------------------------------- indexes
@dataclass(frozen=True)
class IndexSpec:
    kind: str  # "flat" | "hnsw" | "ivf-sq8"
    factory: str
    param: str | None  # "efSearch" | "nprobe" | None
    values: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        return {"factory": self.factory, "param": self.param, "values": list(self.values), **self.extra}


def index_specs(n: int, args: argparse.Namespace) -> list[IndexSpec]:
    specs = [IndexSpec("flat", "Flat", None, (0,))]
    if "hnsw" in args.index_kinds:
        extra = {"ef_construction": args.ef_construction}
        specs.append(IndexSpec("hnsw", f"HNSW{args.hnsw_m}", "efSearch", tuple(args.ef_search), extra))
    if "ivf-sq8" in args.index_kinds:
        nlist = args.nlist or nlist_for(n)
        nprobes = tuple(sorted({min(p, nlist) for p in args.nprobe}))
        train_n = min(n, args.ivf_train_per_list * nlist)
        extra = {"nlist": nlist, "train_vectors": train_n}
        specs.append(IndexSpec("ivf-sq8", f"IVF{nlist},SQ8", "nprobe", nprobes, extra))
    return specs


def raw_index(vi: VectorIndex) -> faiss.IndexIDMap2:
    """The FAISS ``IndexIDMap2`` a ``VectorIndex`` wraps (no public accessor; the benchmark needs the very
    same object so that both paths search one index)."""
    return vi._index


def set_raw_param(vi: VectorIndex, spec: IndexSpec, value: int) -> None:
    """Set the search parameter on the FAISS index itself (what a raw FAISS user does)."""
    idmap = raw_index(vi)
    if spec.param == "efSearch":
        faiss.downcast_index(idmap.index).hnsw.efSearch = value
    elif spec.param == "nprobe":
        faiss.extract_index_ivf(idmap.index).nprobe = value


def set_winnow_param(vi: VectorIndex, spec: IndexSpec, value: int) -> None:
    if spec.param == "efSearch":
        vi.ef_search = value
    elif spec.param == "nprobe":
        vi.nprobe = value


def build_index(
    spec: IndexSpec, data: Dataset, args: argparse.Namespace
) -> tuple[VectorIndex, dict[str, Any]]:
    """Train + add through ``VectorIndex``; returns it with build time and memory figures."""
    n, dim = data.base.shape
    _trim()
    rss_before = _rss_mib()
    vi = VectorIndex(dim, spec.factory, "ip")
    if spec.kind == "hnsw" and args.ef_construction:
        faiss.downcast_index(raw_index(vi).index).hnsw.efConstruction = args.ef_construction
    started = time.perf_counter()
    if vi.needs_training:
        rng = np.random.default_rng([args.seed, 4])
        train_n = spec.extra["train_vectors"]
        sample = data.base[np.sort(rng.choice(n, size=train_n, replace=False))] if train_n < n else data.base
        logger.info("  %s: training on %s vectors", spec.factory, f"{len(sample):,}")
        vi.train(sample)
        del sample
    train_s = time.perf_counter() - started
    added_at = time.perf_counter()
    for start in range(0, n, args.add_chunk):
        stop = min(n, start + args.add_chunk)
        vi.add(np.arange(start, stop, dtype=np.int64), data.base[start:stop])
        if n > args.add_chunk:
            elapsed = time.perf_counter() - added_at
            eta = elapsed / stop * (n - stop)
            logger.info(
                "  %s: added %s/%s (%.0f s, ~%.0f s left)", spec.factory, f"{stop:,}", f"{n:,}", elapsed, eta
            )
    add_s = time.perf_counter() - added_at
    _trim()
    rss_after = _rss_mib()
    serialised = int(faiss.serialize_index(raw_index(vi)).nbytes)
    info: dict[str, Any] = {
        "train_s": round(train_s, 3),
        "add_s": round(add_s, 3),
        "build_s": round(train_s + add_s, 3),
        "serialised_bytes": serialised,
        "serialised_mib": round(serialised / 2**20, 1),
        "bytes_per_vector": round(serialised / n, 1),
        "raw_vectors_mib": round(n * dim * 4 / 2**20, 1),
        "rss_delta_mib": None
        if rss_before is None or rss_after is None
        else round(rss_after - rss_before, 1),
    }
    if spec.kind == "hnsw":
        info["ef_construction"] = int(faiss.downcast_index(raw_index(vi).index).hnsw.efConstruction)
    logger.info(
        "  %s built in %.1f s (train %.1f s), %s MiB serialised",
        spec.factory,
        train_s + add_s,
        train_s,
        info["serialised_mib"],
    )
    return vi, info


# ----------------------------------------------------------------------------------------------- measuring
def batches_of(queries: np.ndarray, size: int) -> list[np.ndarray]:
    return [queries[i : i + size] for i in range(0, len(queries), size)]


def timed_pass(
    search: Callable[[np.ndarray], object], batches: Sequence[np.ndarray], budget_s: float
) -> tuple[int, float]:
    """Search batches in order until done or ``budget_s`` is spent; (queries searched, seconds)."""
    done = 0
    started = time.perf_counter()
    for batch in batches:
        search(batch)
        done += len(batch)
        if time.perf_counter() - started >= budget_s:
            break
    return done, time.perf_counter() - started


def best_qps(
    search: Callable[[np.ndarray], object], batches: Sequence[np.ndarray], args: argparse.Namespace
) -> dict[str, Any]:
    search(batches[0])  # warm-up
    best, best_done = math.inf, 0
    for _ in range(args.repeats):
        done, seconds = timed_pass(search, batches, args.time_budget)
        if seconds / done < best:
            best, best_done = seconds / done, done
    return {"qps": round(1.0 / best, 1), "ms_per_query": round(best * 1e3, 4), "queries_timed": best_done}


@dataclass
class Ground:
    """Flat's exact top-k for the queries, and what the tie-aware recall needs."""

    ids: np.ndarray  # (q, k) exact top-k ids from Flat
    kth: np.ndarray  # (q,) exact k-th score
    base: np.ndarray
    queries: np.ndarray


def recall_at_k(ids: np.ndarray, truth: Ground) -> tuple[float, float]:
    """(plain recall@k: share of the true top-k ids returned; tie-aware: share of returned ids whose exact
    score reaches the k-th true score)."""
    k = truth.ids.shape[1]
    plain = (ids[:, :, None] == truth.ids[:, None, :]).any(axis=2).sum(axis=1) / k
    found = ids >= 0
    exact = np.einsum("qd,qkd->qk", truth.queries, truth.base[np.where(found, ids, 0)])
    ties = (found & (exact >= truth.kth[:, None] - TIE_TOLERANCE)).sum(axis=1) / k
    return float(plain.mean()), float(ties.mean())


def sweep(
    vi: VectorIndex, spec: IndexSpec, data: Dataset, truth: Ground, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Recall@k and QPS at batch 1 / ``--batch`` for every value of the index's parameter (raw FAISS)."""
    raw = raw_index(vi)
    k = args.k
    single = batches_of(data.queries[: args.single_queries], 1)
    batched = batches_of(data.queries, args.batch)
    rows = []
    for value in spec.values:
        set_raw_param(vi, spec, value)

        def search(q: np.ndarray) -> object:
            return raw.search(q, k)

        _, ids = raw.search(data.queries, k)
        plain, ties = recall_at_k(ids, truth)
        b1 = best_qps(search, single, args)
        bn = best_qps(search, batched, args)
        row = {
            "param": spec.param,
            "value": value if spec.param else None,
            "recall_at_k": round(plain, 4),
            "recall_at_k_ties": round(ties, 4),
            "batch1": b1,
            f"batch{args.batch}": bn,
        }
        rows.append(row)
        logger.info(
            "  %s %s: recall@%d %.4f, %s q/s at batch 1, %s q/s at batch %d",
            spec.factory,
            f"{spec.param}={value}" if spec.param else "",
            k,
            plain,
            b1["qps"],
            bn["qps"],
            args.batch,
        )
    return rows


def wrapper_overhead(
    vi: VectorIndex, spec: IndexSpec, data: Dataset, args: argparse.Namespace
) -> dict[str, Any]:
    """``VectorIndex.search`` vs ``IndexIDMap2.search`` on the same index and settings, paired call by call.

    Every call is made by both paths back to back, the order alternating from call to call and pass to pass,
    so that machine noise hits both alike. The second call of a pair finds the query's data in cache, so the
    ratio is taken per order (median of winnow / FAISS over the pairs where winnow went first, and over those
    where FAISS went first) and the two are combined by geometric mean, which cancels that advantage.
    """
    raw = raw_index(vi)
    k = args.k
    value = None
    if spec.param:
        value = WINNOW_DEFAULTS[spec.param]
        if spec.param == "nprobe":
            value = min(value, spec.extra["nlist"])
        set_raw_param(vi, spec, value)
        set_winnow_param(vi, spec, value)
    out: dict[str, Any] = {"param": spec.param, "value": value}
    for batch in (1, args.batch):
        batches = batches_of(data.queries, batch)
        paths = (lambda q: vi.search(q, k), lambda q: raw.search(q, k))  # (winnow, faiss)
        for fn in paths:
            fn(batches[0])  # warm-up
        calls = 0
        started = time.perf_counter()  # as many calls as take about --overhead-seconds a pass
        while calls < len(batches) and (calls == 0 or time.perf_counter() - started < args.overhead_seconds):
            paths[1](batches[calls])
            calls += 1
        calls = max(calls, math.ceil(args.overhead_min_pairs / args.overhead_repeats))
        used = [batches[i % len(batches)] for i in range(calls)]  # few queries: cycle through them
        differing = sum(not np.array_equal(paths[0](q)[1], paths[1](q)[1]) for q in used)
        times = np.empty((args.overhead_repeats, calls, 2))  # [pass, call, path]
        for rep in range(args.overhead_repeats):
            for i, q in enumerate(used):
                for path in (0, 1) if (i + rep) % 2 == 0 else (1, 0):
                    t0 = time.perf_counter()
                    paths[path](q)
                    times[rep, i, path] = time.perf_counter() - t0
        winnow_s, faiss_s = times[..., 0].ravel(), times[..., 1].ravel()
        winnow_first = np.array(
            [(i + rep) % 2 == 0 for rep in range(args.overhead_repeats) for i in range(calls)]
        )
        by_order = [winnow_first, ~winnow_first]
        ratios = winnow_s / faiss_s
        per_order = [float(np.median(ratios[m])) if m.any() else 1.0 for m in by_order]
        ratio = math.sqrt(per_order[0] * per_order[1])
        extra_us = float(np.mean([np.median((winnow_s - faiss_s)[m]) for m in by_order if m.any()])) * 1e6
        out[f"batch{batch}"] = {
            "calls": calls,
            "queries_per_pass": int(sum(len(q) for q in used)),
            "repeats": args.overhead_repeats,
            "winnow_ms_per_call": round(float(np.median(winnow_s)) * 1e3, 4),
            "faiss_ms_per_call": round(float(np.median(faiss_s)) * 1e3, 4),
            "ratio": round(ratio, 4),
            "ratio_winnow_first": round(per_order[0], 4),
            "ratio_faiss_first": round(per_order[1], 4),
            "ratio_of_totals": round(float(winnow_s.sum() / faiss_s.sum()), 4),
            "overhead_us_per_call": round(extra_us, 2),
            "calls_with_different_ids": int(differing),
            "within_target": bool(ratio <= OVERHEAD_TARGET),
        }
        logger.info(
            "  %s overhead at batch %d: winnow/faiss %.4f (%+.1f us a call; %d calls x %d passes)",
            spec.factory,
            batch,
            ratio,
            extra_us,
            calls,
            args.overhead_repeats,
        )
    return out


# ----------------------------------------------------------------------------------------------- on disk
def disk_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Settings of the on-disk sections; recorded sections are reused by --resume only when they match."""
    return {
        "k": args.k,
        "batch": args.batch,
        "single_queries": args.single_queries,
        "repeats": args.repeats,
        "time_budget_s": args.time_budget,
        "threads": args.threads,
        "selectivities_pct": list(SELECTIVITIES),
        "filter_queries": args.filter_queries,
        "filter_budget_s": args.filter_budget,
        "writes": args.writes,
        "write_budget_s": args.write_budget,
    }


def _beside(folder: Path, suffix: str) -> Path:
    """A file next to ``folder``, named after it (the work folder holds nothing else of ours)."""
    return folder.parent / f"{folder.name}.{suffix}"


def document_table(n: int) -> DocumentTable:
    """An in-memory table of one row per vector: key = vector id, ``meta = {"bucket": key % 100}``."""
    started = time.perf_counter()
    table = DocumentTable()
    for start in range(0, n, TABLE_CHUNK):
        table.insert(
            DocumentRecord(id=f"doc-{i}", text=f"document {i}", meta={"bucket": i % BUCKETS}, key=i)
            for i in range(start, min(n, start + TABLE_CHUNK))
        )
    logger.info("document table of %s rows built in %.1f s", f"{n:,}", time.perf_counter() - started)
    return table


def bucket_filter(pct: int) -> dict[str, Any]:
    """The Haystack filter matching ``pct`` % of the rows."""
    return {"field": "meta.bucket", "operator": "<", "value": pct}


def by_hand_keys(index: WinnowIndex, filters: dict[str, Any]) -> np.ndarray:
    """The keys of a :func:`bucket_filter`, by an SQL condition written by hand."""
    return index.table.keys_where("json_extract(meta, '$.bucket') < ?", (filters["value"],))


def filter_resolver(choice: str) -> tuple[str, Callable[[WinnowIndex, dict[str, Any]], np.ndarray]]:
    """(name, function turning a Haystack filter into sorted int64 table keys).

    ``auto``: the retrieval layer's SQL translation,
    ``winnow.retrieval.metadata_filter.matching_document_keys(index, filters)``, when it exists and finds the
    right row of a one-row table; else (the name says why) ``keys_where`` with the bucket condition written
    by hand, which ``keys_where`` forces.
    """
    if choice == "keys_where":
        return "DocumentTable.keys_where (bucket condition written by hand)", by_hand_keys
    from winnow.retrieval import metadata_filter

    fn = getattr(metadata_filter, SQL_RESOLVER, None)
    if not callable(fn):
        why = f"metadata_filter has no {SQL_RESOLVER}"
    else:
        probe_index = WinnowIndex(VectorIndex(4, "Flat", "ip"), embedder="probe")
        probe_index.table.insert([DocumentRecord(id="a", text="a", meta={"bucket": 0}, key=0)])
        try:
            keys = np.asarray(fn(probe_index, bucket_filter(1)), dtype=np.int64).tolist()
            why = "" if keys == [0] else f"{SQL_RESOLVER} found keys {keys} instead of [0] on a one-row table"
        except Exception as exc:  # recorded in the resolver's name, shown in the report
            why = f"{SQL_RESOLVER} failed: {type(exc).__name__}: {exc}"
        finally:
            probe_index.table.close()
        if not why:
            return f"winnow.retrieval.metadata_filter.{SQL_RESOLVER}", (
                lambda index, filters: np.asarray(fn(index, filters), dtype=np.int64)
            )
    return f"DocumentTable.keys_where (bucket condition written by hand; {why})", by_hand_keys


def _percentiles(seconds: Sequence[float]) -> dict[str, Any]:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {"calls": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    return {
        "calls": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "max_ms": round(float(ms.max()), 4),
    }


def _vm_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _files(folder: Path) -> dict[str, dict[str, int]]:
    """Size, inode and mtime of every file in ``folder`` (and the folder itself, under ``"."``)."""
    out = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        if path.is_file() or path == folder:
            st = path.stat()
            name = "." if path == folder else str(path.relative_to(folder))
            out[name] = {"bytes": st.st_size, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns}
    return out


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _timed_calls(
    call: Callable[[np.ndarray], object], batches: Sequence[np.ndarray], repeats: int, budget_s: float
) -> list[float]:
    """Seconds of each call over ``batches``, ``repeats`` passes, each pass stopping after ``budget_s``."""
    call(batches[0])  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            call(batch)
            seconds.append(time.perf_counter() - t0)
            if time.perf_counter() - started >= budget_s:
                break
    return seconds


def probe_search(job: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: open the index (time, RSS), then search latency and filtered searches."""
    set_faiss_threads(job["threads"])
    resolver_name, resolve = filter_resolver(job["resolver"])  # imports Haystack before the RSS baseline
    queries = np.load(job["queries"])
    k, batch = job["k"], job["batch"]
    _trim()
    rss_before = _vm_kib("VmRSS")
    started = time.perf_counter()
    index = WinnowIndex.load(job["dir"])
    open_s = time.perf_counter() - started
    rss_after = _vm_kib("VmRSS")
    out: dict[str, Any] = {
        "open": {
            "open_s": round(open_s, 3),
            "rss_before_mib": None if rss_before is None else round(rss_before / 1024, 1),
            "rss_after_open_mib": None if rss_after is None else round(rss_after / 1024, 1),
            "rss_open_mib": None
            if rss_before is None or rss_after is None
            else round((rss_after - rss_before) / 1024, 1),
        }
    }

    def search(q: np.ndarray) -> object:
        return index.search(q, k)

    single = _timed_calls(
        search, batches_of(queries[: job["single_queries"]], 1), job["repeats"], job["budget"]
    )
    batched = _timed_calls(search, batches_of(queries, batch), job["repeats"], job["budget"])
    b1, bn = _percentiles(single), _percentiles(batched)
    b1["qps"] = round(len(single) / sum(single), 1)
    sizes = [len(b) for b in batches_of(queries, batch)]
    searched = sum(sizes[i % len(sizes)] for i in range(len(batched)))
    bn["qps"] = round(searched / sum(batched), 1)
    bn["p50_ms_per_query"] = round(bn["p50_ms"] / batch, 4)
    out["latency"] = {
        "path": "WinnowIndex.search (vectors + document rows)",
        "ef_search": index.vectors.ef_search,
        "nprobe": index.vectors.nprobe,
        "batch1": b1,
        f"batch{batch}": bn,
    }
    filtered: dict[str, Any] = {"resolver": resolver_name, "selectivity": {}}
    found: dict[str, np.ndarray] = {}
    n_queries = min(job["filter_queries"], len(queries))
    for pct in job["selectivities"]:
        filters = bucket_filter(pct)
        rows = np.full((n_queries, k), -1, dtype=np.int64)
        resolve_s, search_s = [], []
        keys = np.empty(0, dtype=np.int64)
        started = time.perf_counter()
        for i in range(n_queries):
            # each query resolves its filter while the budget lasts; past it (a slow resolver) the last
            # keys serve the remaining queries of the minimum, so that the search is still measured
            if not resolve_s or time.perf_counter() - started < job["filter_budget"]:
                t0 = time.perf_counter()
                keys = resolve(index, filters)
                resolve_s.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            hits = index.search(queries[i : i + 1], k, allow_keys=keys)[0]
            search_s.append(time.perf_counter() - t1)
            rows[i, : len(hits)] = [record.key for record, _ in hits]
            if i + 1 >= MIN_FILTER_QUERIES and time.perf_counter() - started >= job["filter_budget"]:
                break
        done = len(search_s)
        found[f"pct{pct}"] = rows[:done]
        by_hand_s = []
        for _ in range(BY_HAND_CALLS):  # the condition written by hand: a baseline and a check of the keys
            t0 = time.perf_counter()
            by_hand = by_hand_keys(index, filters)
            by_hand_s.append(time.perf_counter() - t0)
        paired = len(resolve_s)
        filtered["selectivity"][str(pct)] = {
            "filter": filters,
            "matching": int(keys.size),
            "queries": done,
            "resolves": paired,
            "resolve": _percentiles(resolve_s),
            "search": _percentiles(search_s),
            "total": _percentiles(np.add(resolve_s, search_s[:paired]).tolist()),
            "keys_where_by_hand": _percentiles(by_hand_s),
            "same_keys_as_by_hand": bool(np.array_equal(np.sort(keys), by_hand)),
        }
    out["filtered"] = filtered
    rss_end = _vm_kib("VmRSS")
    out["open"]["rss_after_searches_mib"] = None if rss_end is None else round(rss_end / 1024, 1)
    np.savez(job["found"], **found)
    return out


def probe_writes(job: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: open the directory as a Haystack store, write single documents, time each."""
    from haystack import Document

    from winnow.retrieval.document_store import WinnowDocumentStore

    set_faiss_threads(job["threads"])
    vectors = np.load(job["vectors"])
    folder = Path(job["dir"])
    before = _files(folder)
    started = time.perf_counter()
    store = WinnowDocumentStore(index_path=str(folder), factory=job["factory"], embedder=job["embedder"])
    open_s = time.perf_counter() - started
    count_before = store.count_documents()
    tag = os.urandom(4).hex()  # fresh ids: a resumed run writes into a folder an earlier run wrote to
    seconds: list[float] = []
    started = time.perf_counter()
    for i in range(job["writes"]):
        doc = Document(
            id=f"bench-write-{tag}-{i}",
            content=f"new document {i}",
            meta={"bucket": i % BUCKETS},
            embedding=vectors[i % len(vectors)].tolist(),
        )
        t0 = time.perf_counter()
        store.write_documents([doc])
        seconds.append(time.perf_counter() - t0)
        if time.perf_counter() - started >= job["write_budget"]:
            break
    count_after = store.count_documents()
    after = _files(folder)
    files = {}
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        files[name] = {
            "bytes_before": None if b is None else b["bytes"],
            "bytes_after": None if a is None else a["bytes"],
            "same_inode": b is not None and a is not None and b["inode"] == a["inode"],
            "modified": b is None or a is None or b["inode"] != a["inode"] or b["mtime_ns"] != a["mtime_ns"],
        }
    stats = _percentiles(seconds)
    return {
        "path": "WinnowDocumentStore(index_path=...).write_documents([doc]), one new document a call",
        "store_open_s": round(open_s, 3),
        "asked": job["writes"],
        "done": len(seconds),
        "budget_s": job["write_budget"],
        "stopped_by_budget": len(seconds) < job["writes"],
        "documents_before": count_before,
        "documents_after": count_after,
        "first_ms": round(seconds[0] * 1e3, 3) if seconds else None,
        **stats,
        "files": files,
    }


def probe_main(job_file: Path) -> int:
    """``--probe JOB.json``: a fresh process started by :class:`DiskBench`. Runs the job's parts in order
    ("search", then "writes": the store reopens the directory), rewriting the result file after each."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    job = json.loads(job_file.read_text(encoding="utf-8"))
    result: dict[str, Any] = {}
    for part in job["parts"]:
        result[part] = probe_search(job) if part == "search" else probe_writes(job)
        _trim()  # the searched index is gone: give its memory back before the store opens another copy
        Path(job["result"]).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


class DiskBench:
    """The on-disk sections for one dataset: save each index as a winnow index directory under the work
    folder, then open, search and write it in fresh processes (``--probe``); the folder goes afterwards."""

    def __init__(self, data: Dataset, args: argparse.Namespace) -> None:
        self.data = data
        self.args = args
        self.work: Path = args.work_dir
        self._table: DocumentTable | None = None
        self._truth: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def folder(self, spec: IndexSpec) -> Path:
        return self.work / f"{self.data.name}-{spec.kind}"

    def _marker(self, spec: IndexSpec) -> dict[str, Any]:
        return {"fingerprint": self.data.fingerprint(), "spec": spec.settings()}

    def can_resume(self, spec: IndexSpec, record: dict[str, Any]) -> bool:
        """Whether an earlier (killed or failed) run left this very index saved in the work folder, with
        its save recorded in ``record``: then the missing sections are measured on it, without a build."""
        marker = _beside(self.folder(spec), "json")
        try:
            same = json.loads(marker.read_text(encoding="utf-8")) == self._marker(spec)
        except (OSError, ValueError):
            return False
        return same and (self.folder(spec) / VECTORS_FILE).is_file() and "save_s" in record.get("disk", {})

    def table(self) -> DocumentTable:
        if self._table is None:
            self._table = document_table(self.data.base.shape[0])
        return self._table

    def close(self) -> None:
        if self._table is not None:
            self._table.close()
            self._table = None

    def _probe(self, job: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """(the parts' results the probe wrote, the reason it failed or None)."""
        folder = Path(job["dir"])
        job_file, result_file = _beside(folder, "job.json"), _beside(folder, "result.json")
        job["result"] = str(result_file)
        job_file.write_text(json.dumps(job), encoding="utf-8")
        try:
            done = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--probe", str(job_file)],
                capture_output=True,
                text=True,
                check=False,
            )
            result = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else {}
            failed = None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-3000:]}"
            return result, failed
        finally:
            job_file.unlink(missing_ok=True)
            result_file.unlink(missing_ok=True)

    def filtered_truth(self, pct: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (scores, ids) of the first ``n_queries`` queries over the rows of bucket < ``pct``."""
        if pct not in self._truth or self._truth[pct][0].shape[0] < n_queries:
            rows = np.flatnonzero(np.arange(self.data.base.shape[0]) % BUCKETS < pct)
            queries = self.data.queries[: max(n_queries, self.args.filter_queries)]
            scores, ids = faiss.knn(
                queries, np.ascontiguousarray(self.data.base[rows]), self.args.k, faiss.METRIC_INNER_PRODUCT
            )
            self._truth[pct] = (scores, np.where(ids >= 0, rows[np.maximum(ids, 0)], -1))
        scores, ids = self._truth[pct]
        return scores[:n_queries], ids[:n_queries]

    def run(
        self, spec: IndexSpec, vi: VectorIndex | None, record: dict[str, Any], save: Callable[[], None]
    ) -> None:
        """Fill ``record``'s "disk", "latency", "filtered" and "writes" (those missing), calling ``save``
        after each step. ``vi`` (the built index) is needed unless :meth:`can_resume`."""
        args, folder = self.args, self.folder(spec)
        self.work.mkdir(parents=True, exist_ok=True)
        marker = _beside(folder, "json")
        if not self.can_resume(spec, record):
            if vi is None:
                raise ValueError(f"{spec.kind}: no built index to save")
            for section in DISK_SECTIONS:
                record.pop(section, None)  # measured on another copy: measure again
            shutil.rmtree(folder, ignore_errors=True)
            index = WinnowIndex(vi, self.table(), embedder=BENCH_EMBEDDER)
            started = time.perf_counter()
            index.save(folder)
            save_s = time.perf_counter() - started
            files = _files(folder)
            size = _dir_bytes(folder)
            record["disk"] = {
                "save_s": round(save_s, 3),
                "dir_bytes": size,
                "dir_mib": round(size / 2**20, 1),
                "files_bytes": {name: f["bytes"] for name, f in files.items() if name != "."},
            }
            marker.write_text(json.dumps(self._marker(spec)), encoding="utf-8")
            logger.info("  %s saved in %.1f s: %.1f MiB on disk", spec.factory, save_s, size / 2**20)
            save()  # a run killed from here on resumes on the saved folder, without a rebuild
        queries_file, found_file = _beside(folder, "queries.npy"), _beside(folder, "found.npz")
        vectors_file = _beside(folder, "writes.npy")
        parts = []
        if not all(s in record for s in ("latency", "filtered")) or "open_s" not in record.get("disk", {}):
            parts.append("search")
            np.save(queries_file, self.data.queries)
        if "writes" not in record:
            parts.append("writes")
            rng = np.random.default_rng([args.seed, 5])
            fresh = rng.standard_normal((max(1, args.writes), self.data.base.shape[1]), dtype=np.float32)
            faiss.normalize_L2(fresh)
            np.save(vectors_file, fresh)
        job = {
            "parts": parts,
            "dir": str(folder),
            "threads": args.threads,
            "k": args.k,
            # search
            "queries": str(queries_file),
            "found": str(found_file),
            "batch": args.batch,
            "single_queries": args.single_queries,
            "repeats": args.repeats,
            "budget": args.time_budget,
            "resolver": args.filter_resolver,
            "selectivities": list(SELECTIVITIES),
            "filter_queries": args.filter_queries,
            "filter_budget": args.filter_budget,
            # writes
            "vectors": str(vectors_file),
            "writes": args.writes,
            "write_budget": args.write_budget,
            "factory": spec.factory,
            "embedder": BENCH_EMBEDDER,
        }
        try:
            result, failed = self._probe(job) if parts else ({}, None)
            if "search" in result:
                searched = result["search"]
                with np.load(found_file) as found:
                    for pct in SELECTIVITIES:
                        row = searched["filtered"]["selectivity"][str(pct)]
                        self._score_filtered(row, pct, found[f"pct{pct}"])
                record.setdefault("disk", {}).update(searched["open"])
                record["latency"] = searched["latency"]
                record["filtered"] = searched["filtered"]
                self._log_search(spec, record)
            if "writes" in result:
                record["writes"] = w = result["writes"]
                logger.info(
                    "  %s: %d/%d single-document writes, p50 %s ms, p99 %s ms (store opened in %.1f s)",
                    spec.factory,
                    w["done"],
                    w["asked"],
                    w["p50_ms"],
                    w["p99_ms"],
                    w["store_open_s"],
                )
            if failed:
                # keep the folder: --resume retries the missing parts on it without rebuilding
                record["probe_error"] = failed[-1500:]
                logger.error("  %s: the probe process failed (%s); --resume retries it", spec.factory, failed)
            else:
                record.pop("probe_error", None)
            save()
        finally:
            for leftover in (queries_file, found_file, vectors_file):
                leftover.unlink(missing_ok=True)
        if failed:
            return
        shutil.rmtree(folder, ignore_errors=True)
        marker.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.work.rmdir()  # only when empty: the folder may be the user's

    def _score_filtered(self, row: dict[str, Any], pct: int, found: np.ndarray) -> None:
        k = self.args.k
        n_queries = found.shape[0]
        scores, ids = self.filtered_truth(pct, n_queries)
        truth = Ground(
            ids=ids, kth=scores[:, -1].copy(), base=self.data.base, queries=self.data.queries[:n_queries]
        )
        plain, ties = recall_at_k(np.where(found >= 0, found, -2), truth)  # -2: never a true id
        want = min(k, row["matching"])
        got = (found >= 0).sum(axis=1)
        allowed = np.arange(self.data.base.shape[0]) % BUCKETS < pct
        outside = int(((found >= 0) & ~allowed[np.maximum(found, 0)]).sum())
        row.update(
            recall_at_k=round(plain, 4),
            recall_at_k_ties=round(ties, 4),
            expected_results=want,
            queries_with_k_results=int((got == want).sum()),
            all_k_results=bool((got == want).all()),
            results_outside_filter=outside,
        )

    @staticmethod
    def _log_search(spec: IndexSpec, record: dict[str, Any]) -> None:
        d, lat = record["disk"], record["latency"]
        logger.info(
            "  %s opened in %.2f s, RSS +%s MiB; search p50/p99 %s/%s ms at batch 1",
            spec.factory,
            d["open_s"],
            d["rss_open_mib"],
            lat["batch1"]["p50_ms"],
            lat["batch1"]["p99_ms"],
        )
        for pct, row in record["filtered"]["selectivity"].items():
            logger.info(
                "  %s filter bucket < %s (%s docs): resolve p50 %s ms, search p50 %s ms, recall@k %.4f, "
                "k results for %d/%d queries",
                spec.factory,
                pct,
                f"{row['matching']:,}",
                row["resolve"]["p50_ms"],
                row["search"]["p50_ms"],
                row["recall_at_k"],
                row["queries_with_k_results"],
                row["queries"],
            )


# ----------------------------------------------------------------------------------------------- driver
def environment(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_features": cpu_features(),
        "faiss_threads": args.threads,
        "faiss": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options().strip(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average": _load_average(),
        "command": " ".join(["python", "benchmarks/index_speed.py", *sys.argv[1:]]),
    }


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Settings that change the measurements; a recorded index is reused by --resume only when they match."""
    return {
        "k": args.k,
        "batch": args.batch,
        "single_queries": args.single_queries,
        "repeats": args.repeats,
        "time_budget_s": args.time_budget,
        "overhead_repeats": args.overhead_repeats,
        "overhead_seconds": args.overhead_seconds,
        "overhead_min_pairs": args.overhead_min_pairs,
        "threads": args.threads,
    }


def run_dataset(
    data: Dataset, args: argparse.Namespace, previous: dict[str, Any] | None, save: Callable[[dict], None]
) -> dict[str, Any]:
    n, dim = data.base.shape
    settings = run_settings(args)
    fingerprint = data.fingerprint()
    reusable = bool(
        args.resume
        and previous is not None
        and previous.get("fingerprint") == fingerprint
        and previous.get("settings") == settings
    )
    on_disk = disk_settings(args) if args.disk else None
    disk_reusable = reusable and previous is not None and previous.get("disk_settings") == on_disk
    indexes: dict[str, Any] = {}
    if reusable and previous:
        for kind, recorded in previous["indexes"].items():
            keep = (
                recorded if disk_reusable else {k: v for k, v in recorded.items() if k not in DISK_SECTIONS}
            )
            indexes[kind] = dict(keep)
    entry: dict[str, Any] = {
        "kind": data.kind,
        "n": n,
        "dim": dim,
        "queries": int(data.queries.shape[0]),
        "data": data.info,
        "fingerprint": fingerprint,
        "settings": settings,
        "disk_settings": on_disk,
        "environment": environment(args),
        "indexes": indexes,
    }
    for key in ("ground_truth_s", "query_nn1_cosine", "query_nnk_cosine"):
        if reusable and previous and key in previous:
            entry[key] = previous[key]
    specs = index_specs(n, args)
    wanted = [s for s in specs if s.kind in args.index_kinds]

    def core_done(spec: IndexSpec) -> bool:
        return spec.kind in indexes and _same_spec(entry, spec) and "sweep" in indexes[spec.kind]

    def disk_done(spec: IndexSpec) -> bool:
        return not args.disk or all(section in indexes.get(spec.kind, {}) for section in DISK_SECTIONS)

    todo = [s for s in wanted if not (core_done(s) and disk_done(s))]
    if not todo:
        logger.info("%s: everything already recorded (--resume)", data.name)
        return previous or entry
    logger.info("%s: %s x %d base vectors, %d queries", data.name, f"{n:,}", dim, len(data.queries))
    disk = DiskBench(data, args)

    # Flat first: its results are the ground truth for every other index's recall.
    flat: VectorIndex | None = None
    flat_build: dict[str, Any] = {}
    truth: Ground | None = None
    if any(not core_done(s) for s in todo):
        flat, flat_build = build_index(specs[0], data, args)
        started = time.perf_counter()
        scores, ids = raw_index(flat).search(data.queries, args.k)
        entry["ground_truth_s"] = round(time.perf_counter() - started, 2)
        entry["query_nn1_cosine"] = round(float(scores[:, 0].mean()), 4)
        entry["query_nnk_cosine"] = round(float(scores[:, -1].mean()), 4)
        truth = Ground(ids=ids, kth=scores[:, -1].copy(), base=data.base, queries=data.queries)
    try:
        for spec in todo:
            vi: VectorIndex | None = None
            if spec.kind == "flat" and flat is not None:
                vi, build = flat, flat_build
            elif not core_done(spec) or (
                args.disk and not disk_done(spec) and not disk.can_resume(spec, indexes.get(spec.kind, {}))
            ):
                flat = None  # ground truth taken: free Flat's memory before the next build
                _trim()
                vi, build = build_index(spec, data, args)
            if not core_done(spec):
                assert vi is not None and truth is not None
                indexes[spec.kind] = {
                    **spec.settings(),
                    "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "build": build,
                    "sweep": sweep(vi, spec, data, truth, args),
                    "wrapper_overhead": wrapper_overhead(vi, spec, data, args),
                }
                save(entry)
            if args.disk and not disk_done(spec):
                disk.run(spec, vi, indexes[spec.kind], lambda: save(entry))
            if spec.kind == "flat":
                flat = None
            del vi
            _trim()
            save(entry)
    finally:
        disk.close()
    flat = None
    _trim()
    return entry


def _same_spec(entry: dict[str, Any], spec: IndexSpec) -> bool:
    recorded = entry["indexes"][spec.kind]
    return all(recorded.get(key) == value for key, value in spec.settings().items())


# ----------------------------------------------------------------------------------------------- report
def _fmt_int(value: float | int | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ordered(indexes: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(indexes.items(), key=lambda item: INDEX_KINDS.index(item[0]))


def _cpu_line(env: dict[str, Any]) -> str:
    features = env.get("cpu_features")
    if not features:
        return str(env.get("cpu"))
    cores = f"{features['logical_cores']} logical / {features['physical_cores'] or '?'} physical cores"
    return f"{features['name']} ({cores}; {isa_summary(features)})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _mib(value: float | int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    if value >= 2**20:
        return f"{value / 2**20:,.1f} MiB"
    return f"{value / 1024:,.1f} KiB"


def disk_markdown(d: dict[str, Any]) -> list[str]:
    """The on-disk sections of one dataset: open, latency, filtered search, writes."""
    ordered = [(kind, idx) for kind, idx in _ordered(d["indexes"]) if "disk" in idx]
    if not ordered:
        return []
    batch = d["settings"]["batch"]
    lines = [
        "",
        "Saved as a winnow index directory (`WinnowIndex.save`, one table row per vector) and opened by "
        "`WinnowIndex.load` in a fresh process (files just written, so read from the page cache); RSS growth "
        "= that process' VmRSS after the load minus before it:",
        "",
        "| index | save s | directory MiB | vectors.faiss MiB | documents.sqlite MiB | open s "
        "| RSS before MiB | RSS after open MiB | RSS growth MiB | RSS after searches MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, idx in ordered:
        o = idx["disk"]
        files = o.get("files_bytes", {})
        lines.append(
            f"| {kind} | {o.get('save_s', '-')} | {o.get('dir_mib', '-')} "
            f"| {_mib(files.get('vectors.faiss'))} | {_mib(files.get('documents.sqlite'))} "
            f"| {o.get('open_s', '-')} | {o.get('rss_before_mib', '-')} "
            f"| {o.get('rss_after_open_mib', '-')} | {o.get('rss_open_mib', '-')} "
            f"| {o.get('rss_after_searches_mib', '-')} |"
        )
    lines += [
        "",
        "Search latency through `WinnowIndex.search` (FAISS + the documents' rows) on the opened index, at "
        "winnow's default settings (efSearch 128, nprobe 16), per call:",
        "",
        f"| index | batch 1 p50 ms | p99 ms | QPS | batch {batch} p50 ms | p99 ms | p50 ms/query | QPS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, idx in ordered:
        if "latency" not in idx:
            continue
        b1, bn = idx["latency"]["batch1"], idx["latency"][f"batch{batch}"]
        lines.append(
            f"| {kind} | {_ms(b1['p50_ms'])} | {_ms(b1['p99_ms'])} | {_fmt_int(b1['qps'])} "
            f"| {_ms(bn['p50_ms'])} | {_ms(bn['p99_ms'])} | {bn['p50_ms_per_query']:.3f} "
            f"| {_fmt_int(bn['qps'])} |"
        )
    resolvers = {idx["filtered"]["resolver"] for _, idx in ordered if "filtered" in idx}
    lines += [
        "",
        'Filtered search, one query a call: the Haystack filter `{"field": "meta.bucket", "operator": '
        '"<", "value": v}` (rows have `bucket = row % 100`, so v % of them match) resolved to table keys '
        f"by {' / '.join(sorted(resolvers)) or '-'}, then `WinnowIndex.search(q, k, allow_keys=keys)`. "
        "recall@10 against exact search over the matching rows; k results = queries that got "
        "min(k, matching) results. Each query resolves its filter while the budget lasts (resolves = how "
        "many did; later ones reuse the keys). By hand = "
        "`keys_where(\"json_extract(meta, '$.bucket') < ?\")`, the baseline; same keys: whether the resolver "
        "found the keys it finds:",
        "",
        "| index | selectivity | matching | queries (resolves) | resolve p50 / p99 ms | search p50 / p99 ms "
        "| total p50 / p99 ms | k results | recall@10 | by hand p50 ms | same keys |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind, idx in ordered:
        for pct, r in idx.get("filtered", {}).get("selectivity", {}).items():
            lines.append(
                f"| {kind} | {pct}% | {r['matching']:,} | {r['queries']} ({r['resolves']}) "
                f"| {_ms(r['resolve']['p50_ms'])} / {_ms(r['resolve']['p99_ms'])} "
                f"| {_ms(r['search']['p50_ms'])} / {_ms(r['search']['p99_ms'])} "
                f"| {_ms(r['total']['p50_ms'])} / {_ms(r['total']['p99_ms'])} "
                f"| {r['queries_with_k_results']}/{r['queries']}{'' if r['all_k_results'] else ' (NOT all)'} "
                f"| {r['recall_at_k']:.4f} | {_ms(r['keys_where_by_hand']['p50_ms'])} "
                f"| {'yes' if r['same_keys_as_by_hand'] else 'NO'} |"
            )
    lines += [
        "",
        "Writes: `WinnowDocumentStore(index_path=DIR).write_documents([doc])` of one new document with its "
        "embedding a call, in a fresh process, until the count or the time budget is reached; files: size "
        "before, growth over all the writes, and whether the file is still the same inode (a rewrite by "
        "rename replaces it); other files: those that changed:",
        "",
        "| index | writes done / asked | store open s | p50 ms | p99 ms | max ms | vectors.faiss | "
        "documents.sqlite | other files |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for kind, idx in ordered:
        w = idx.get("writes")
        if not w:
            continue
        files = w["files"]

        def cell(name: str, files: dict[str, Any] = files) -> str:
            f = files.get(name)
            if f is None:
                return "-"
            same = "same inode" if f["same_inode"] else "new inode (rewritten)"
            if f["bytes_before"] is None or f["bytes_after"] is None:
                return f"{_size(f['bytes_before'])} -> {_size(f['bytes_after'])}"
            grew = f["bytes_after"] - f["bytes_before"]
            return f"{_size(f['bytes_before'])} {grew:+,} B, {same}"

        others = [
            f"{name}: {_size(f['bytes_before'])} -> {_size(f['bytes_after'])}"
            for name, f in files.items()
            if name not in (".", "vectors.faiss", "documents.sqlite") and f["modified"]
        ]
        budget = f" (stopped by the {w['budget_s']} s budget)" if w["stopped_by_budget"] else ""
        lines.append(
            f"| {kind} | {w['done']} / {w['asked']}{budget} | {w['store_open_s']} | {_ms(w['p50_ms'])} "
            f"| {_ms(w['p99_ms'])} | {_ms(w['max_ms'])} | {cell('vectors.faiss')} "
            f"| {cell('documents.sqlite')} | {'; '.join(others) or '-'} |"
        )
    for kind, idx in ordered:
        if idx.get("probe_error"):
            last = idx["probe_error"].strip().splitlines()[-1]
            lines += [
                "",
                f"**{kind}: the open/search/write process failed** (`--resume` retries it): `{last}`",
            ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Index speed: FAISS Flat vs HNSW vs IVF-SQ8, and winnow's wrapper overhead",
        "",
        "384-d L2-normalised vectors, inner product. recall@10 = share of Flat's exact top 10 returned. "
        "QPS: raw FAISS on the built index, best pass; batch 1 = one query a call. Build = train + add "
        "through winnow's `VectorIndex`. Memory = `faiss.serialize_index` bytes of the `IndexIDMap2` "
        "(ids included) and the RSS growth over the build. Method and data: module docstring of "
        "`benchmarks/index_speed.py`.",
        "",
        "## Targets",
        "",
        f"| dataset | HNSW: smallest efSearch with recall@10 >= {RECALL_TARGET} | recall@10 | QPS batch 1 "
        f"| QPS batch 64 | max wrapper ratio (<= {OVERHEAD_TARGET}) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, d in report["datasets"].items():
        hnsw = d["indexes"].get("hnsw")
        first = None
        if hnsw:
            first = next((r for r in hnsw["sweep"] if r["recall_at_k"] >= RECALL_TARGET), None)
        batch_key = f"batch{d['settings']['batch']}"
        ratios = [
            o[key]["ratio"]
            for idx in d["indexes"].values()
            for o in [idx["wrapper_overhead"]]
            for key in ("batch1", batch_key)
            if key in o
        ]
        worst = max(ratios) if ratios else None
        if first:
            hnsw_cells = (
                f"{first['value']} | {first['recall_at_k']:.4f} | {_fmt_int(first['batch1']['qps'])} "
                f"| {_fmt_int(first[batch_key]['qps'])}"
            )
        elif hnsw:
            top = hnsw["sweep"][-1]
            hnsw_cells = f"none up to {top['value']} | {top['recall_at_k']:.4f} | - | -"
        else:
            hnsw_cells = "not run | - | - | -"
        verdict = (
            "-" if worst is None else f"{worst:.3f} ({'met' if worst <= OVERHEAD_TARGET else 'NOT met'})"
        )
        lines.append(f"| {name} | {hnsw_cells} | {verdict} |")
    for name, d in report["datasets"].items():
        env, cfg = d["environment"], d["settings"]
        batch = cfg["batch"]
        lines += [
            "",
            f"## {name}: {d['n']:,} x {d['dim']} base vectors, {d['queries']:,} queries",
            "",
            f"Data: {d['data'].get('source')}; queries: {d['data'].get('queries_from')}. Mean cosine of "
            f"a query to its nearest / {cfg['k']}th nearest base vector: {d.get('query_nn1_cosine')} / "
            f"{d.get('query_nnk_cosine')}. Run {env['date']} on {_cpu_line(env)}, {env['faiss_threads']} "
            f"FAISS threads, faiss {env['faiss']} ({env['faiss_compile_options']}); batch-1 QPS over the "
            f"first {cfg['single_queries']} queries; best of {cfg['repeats']} pass(es), "
            f"{cfg['time_budget_s']} s budget a pass. Load average at start: {env.get('load_average')}. "
            f"Command: `{env['command']}`",
            "",
            "| index | factory | train s | add s | build s | serialised MiB | bytes/vector "
            "| RSS growth MiB |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for kind, idx in _ordered(d["indexes"]):
            b = idx["build"]
            lines.append(
                f"| {kind} | `{idx['factory']}` | {b['train_s']:.1f} | {b['add_s']:.1f} | {b['build_s']:.1f} "
                f"| {b['serialised_mib']} | {b['bytes_per_vector']} | {b['rss_delta_mib']} |"
            )
        lines += [
            "",
            f"| index | setting | recall@10 | QPS batch 1 | ms/query batch 1 | QPS batch {batch} |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for kind, idx in _ordered(d["indexes"]):
            for r in idx["sweep"]:
                setting = f"{r['param']} {r['value']}" if r["param"] else "exact"
                lines.append(
                    f"| {kind} | {setting} | {r['recall_at_k']:.4f} | {_fmt_int(r['batch1']['qps'])} "
                    f"| {r['batch1']['ms_per_query']:.3f} | {_fmt_int(r[f'batch{batch}']['qps'])} |"
                )
        lines += [
            "",
            "Wrapper overhead, winnow `VectorIndex.search` vs FAISS `IndexIDMap2.search` on the same index, "
            "calls paired back to back in alternating order; ratio = geometric mean over the two orders of "
            "the median time ratio:",
            "",
            "| index | setting | batch | calls x passes | winnow ms/call | FAISS ms/call | ratio "
            "| extra us/call | same ids |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for kind, idx in _ordered(d["indexes"]):
            o = idx["wrapper_overhead"]
            setting = f"{o['param']} {o['value']}" if o["param"] else "exact"
            for key in ("batch1", f"batch{batch}"):
                r = o[key]
                same = "yes" if r["calls_with_different_ids"] == 0 else "NO"
                lines.append(
                    f"| {kind} | {setting} | {key.removeprefix('batch')} | {r['calls']} x {r['repeats']} "
                    f"| {r['winnow_ms_per_call']:.4f} | {r['faiss_ms_per_call']:.4f} | {r['ratio']:.3f} "
                    f"| {r['overhead_us_per_call']:.1f} | {same} |"
                )
        lines += disk_markdown(d)
    if report.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in report["skipped"].items())]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":  # a fresh process DiskBench started
        return probe_main(Path(sys.argv[2]))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="synthetic base sizes ('' for none)")
    parser.add_argument(
        "--real", default=None, help=f"winnow index folders ('' for none; default {DEFAULT_REAL})"
    )
    parser.add_argument(
        "--indexes",
        default=",".join(INDEX_KINDS),
        help="of flat,hnsw,ivf-sq8 (Flat is always built: it is the ground truth)",
    )
    parser.add_argument("--queries", type=int, default=1000, help="query vectors (recall, batched QPS)")
    parser.add_argument("--single-queries", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=None, help="default: FAISS' (40)")
    parser.add_argument("--ef-search", default="16,32,64,128,256")
    parser.add_argument("--nlist", type=int, default=None, help="default: ~4*sqrt(n), a power of two")
    parser.add_argument("--nprobe", default="8,16,32,64")
    parser.add_argument("--ivf-train-per-list", type=int, default=64, help="IVF training vectors per list")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per QPS figure (best kept)")
    parser.add_argument("--time-budget", type=float, default=10.0, help="seconds after which a pass stops")
    parser.add_argument("--overhead-repeats", type=int, default=10, help="passes per path, wrapper overhead")
    parser.add_argument("--overhead-seconds", type=float, default=1.0, help="about this long a pass")
    parser.add_argument(
        "--overhead-min-pairs", type=int, default=20, help="paired calls at least, all passes"
    )
    parser.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    parser.add_argument("--dim", type=int, default=384, help="synthetic dimension")
    parser.add_argument("--centres", type=int, default=2000, help="synthetic clusters")
    parser.add_argument("--spread", type=float, default=1.0, help="synthetic within-cluster noise scale")
    parser.add_argument("--mean-weight", type=float, default=0.5, help="synthetic shared-direction weight")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--add-chunk", type=int, default=100_000, help="vectors per add() call (progress)")
    parser.add_argument(
        "--no-disk", dest="disk", action="store_false", help="skip save/open/latency/filtered/write sections"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "winnow-index-speed",
        help="where indexes are saved for the on-disk sections (not under the repository; emptied after)",
    )
    parser.add_argument("--filter-queries", type=int, default=100, help="queries per filter selectivity")
    parser.add_argument("--filter-budget", type=float, default=15.0, help="seconds per filter selectivity")
    parser.add_argument(
        "--filter-resolver",
        choices=("auto", "keys_where"),
        default="auto",
        help="filter -> keys: winnow's SQL translation when there is one (auto), or keys_where by hand",
    )
    parser.add_argument("--writes", type=int, default=50, help="single-document writes per index")
    parser.add_argument("--write-budget", type=float, default=120.0, help="seconds of writes per index")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default results/index_speed)")
    parser.add_argument("--resume", action="store_true", help="skip datasets/indexes already recorded")
    parser.add_argument("--fresh", action="store_true", help="discard results already in the output")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20k synthetic + SciFact, < 1 min")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.quick:
        args.sizes = "20000"
        args.real = "work/idx-scifact" if args.real is None else args.real
        args.queries, args.single_queries = min(args.queries, 128), min(args.single_queries, 50)
        args.repeats, args.time_budget = 1, 1.0
        args.overhead_repeats, args.overhead_seconds, args.overhead_min_pairs = 2, 0.1, 4
        args.filter_queries, args.filter_budget = min(args.filter_queries, 10), 0.5
        args.writes, args.write_budget = min(args.writes, 3), 10.0
    args.out = args.out or RESULTS / ("index_speed_quick" if args.quick else "index_speed")
    args.real = DEFAULT_REAL if args.real is None else args.real
    args.index_kinds = [kind.strip() for kind in args.indexes.split(",") if kind.strip()]
    unknown = sorted(set(args.index_kinds) - set(INDEX_KINDS))
    if unknown:
        parser.error(f"--indexes: unknown {unknown}; choose from {list(INDEX_KINDS)}")
    args.ef_search, args.nprobe = _ints(args.ef_search), _ints(args.nprobe)
    args.work_dir = args.work_dir.absolute()
    if args.work_dir == ROOT or ROOT in args.work_dir.parents:
        parser.error(f"--work-dir {args.work_dir} is inside the repository; pick a folder outside it")
    sizes = _ints(args.sizes)
    threads = set_faiss_threads(args.threads)
    logger.info("FAISS %s, %d threads, %s", faiss.__version__, threads, cpu_name())
    load = _load_average()
    if load and load[0] > 0.5:
        logger.warning(
            "the machine is busy (load average %.2f over 1 min, %s cores): timings will be noisy, "
            "single-query ones especially; run on an idle machine for figures to keep",
            load[0],
            os.cpu_count(),
        )

    json_path, md_path = args.out.with_suffix(".json"), args.out.with_suffix(".md")
    report: dict[str, Any] = {"datasets": {}, "skipped": {}}
    if json_path.is_file() and not args.fresh:
        report = json.loads(json_path.read_text(encoding="utf-8"))
        report.setdefault("skipped", {})

    def write() -> None:
        report["environment"] = environment(args)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        md_path.write_text(markdown(report), encoding="utf-8")

    def save(entry: dict[str, Any], name: str) -> None:
        report["datasets"][name] = entry
        write()

    loaders: list[tuple[str, Callable[[], Dataset | None]]] = [
        (f"synthetic-{_short(n)}", lambda n=n: synthetic_dataset(n, args)) for n in sizes
    ]
    for folder in [p.strip() for p in args.real.split(",") if p.strip()]:
        path = Path(folder) if Path(folder).is_absolute() else ROOT / folder
        loaders.append(("real-" + path.name.removeprefix("idx-"), lambda path=path: real_dataset(path, args)))
    ran: list[str] = []
    for name, load in loaders:
        data = load()
        if data is None:
            report["skipped"][name] = "index folder missing or too small"
            continue
        report["skipped"].pop(name, None)
        previous = report["datasets"].get(name)
        entry = run_dataset(data, args, previous, lambda e, name=name: save(e, name))
        save(entry, name)
        ran.append(name)
        del data
        _trim()
    write()
    if not ran:
        logger.warning("nothing was run")
        return 1
    print(markdown(report))
    logger.info("wrote %s and %s", _relative(json_path), _relative(md_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
