"""FAISS vector indexes keyed by database id, their verified files and the exact/approximate choice.

Vectors are L2-normalised and compared by inner product (= cosine). The default index is exact
(`IndexIDMap2(IndexFlatIP)`): ~0.2 ms per query over 10k × 384 on one thread. An approximate index
(IVF or HNSW) is only used above a size threshold and only when its recall@10 against exact search,
measured on a sample of the live data, is at least 0.99 (`choose_index`).

Indexes are heavy objects: the app builds or loads them once at start-up and holds them; publish
and edit update them incrementally with `add_or_update` / `remove`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from core.files import atomic_write

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "ivf", "hnsw"]
KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw")
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1
MIN_RECALL = 0.99
BULK_QUERIES = 1024  # from this many queries on, a search uses BULK_THREADS (measured: ~26k queries/s)
BULK_THREADS = 2
IVF_NPROBES = (4, 8, 16, 32, 64, 128, 256)
HNSW_EF_SEARCH = (32, 64, 128, 256, 512)


def _as_ids(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
    if (out < 0).any():
        raise ValueError("ids must be non-negative database ids")
    return out


def _as_vectors(vectors: np.ndarray, dim: int, rows: int | None = None) -> np.ndarray:
    out = np.array(vectors, dtype=np.float32, order="C", copy=True, ndmin=2)
    if out.shape[1] != dim or (rows is not None and out.shape[0] != rows):
        want = f"({rows if rows is not None else 'n'}, {dim})"
        raise ValueError(f"expected vectors of shape {want}, got {np.shape(vectors)}")
    # Inner product is cosine only on unit vectors; re-normalising unit rows is a no-op.
    faiss.normalize_L2(out)
    return out


@contextmanager
def _faiss_threads(n: int) -> Iterator[None]:
    """Run FAISS calls of this thread with n OpenMP threads, then restore the previous number."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """Return where the manifest of an index file lives (beside it)."""
    p = Path(path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


class VectorIndex:
    """A FAISS inner-product index whose labels are database ids (int64).

    ``flat`` (exact) and ``ivf`` indexes can add, replace and remove vectors by id. ``hnsw`` graphs
    cannot delete, so they only accept new ids; rebuild them (`choose_index`) to apply edits.
    Operations are serialised by a lock: one flat query over 10k vectors takes ~0.2 ms.
    """

    def __init__(
        self,
        dim: int,
        *,
        model_id: str,
        kind: IndexKind = "flat",
        faiss_index: Any | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.dim = int(dim)
        self.model_id = model_id
        self.kind: IndexKind = kind
        self.params: dict[str, Any] = dict(params or {})
        if faiss_index is None:
            if kind != "flat":
                raise ValueError("build approximate indexes with build_approximate()")
            faiss_index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if faiss_index.d != self.dim:
            raise ValueError(f"FAISS index has dimension {faiss_index.d}, expected {self.dim}")
        # Any: faiss's stubs give the SWIG signatures, not the numpy-taking methods its wrappers install.
        self._index: Any = faiss_index
        self._lock = threading.RLock()

    @property
    def faiss_index(self) -> Any:
        """Return the wrapped FAISS index (for benchmarks and inspection)."""
        return self._index

    @property
    def supports_removal(self) -> bool:
        """Tell whether vectors can be replaced or removed in place (not for HNSW)."""
        return self.kind != "hnsw"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, dim={self.dim}, count={len(self)}, model_id={self.model_id!r})"

    def ids(self) -> np.ndarray:
        """Return the database ids held, in internal order."""
        with self._lock:
            if self.kind == "ivf":
                invlists = self._index.invlists
                parts = [
                    faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                    for i in range(self._index.nlist)
                    if invlists.list_size(i)
                ]
                return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add_or_update(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Insert vectors under their database ids, replacing any vector already held for an id."""
        id_arr = _as_ids(ids)
        if len(np.unique(id_arr)) != len(id_arr):
            raise ValueError("ids must be unique within one call")
        vecs = _as_vectors(vectors, self.dim, rows=len(id_arr))
        if not len(id_arr):
            return
        with self._lock:
            if self.kind == "hnsw":
                if np.isin(id_arr, self.ids()).any():
                    raise NotImplementedError("an HNSW index cannot replace vectors; rebuild it with choose_index()")
            else:
                self._index.remove_ids(id_arr)
            self._index.add_with_ids(vecs, id_arr)

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove the vectors of these database ids; return how many were removed."""
        id_arr = _as_ids(ids)
        if not len(id_arr):
            return 0
        if self.kind == "hnsw":
            raise NotImplementedError("an HNSW index cannot remove vectors; rebuild it with choose_index()")
        with self._lock:
            return int(self._index.remove_ids(id_arr))

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each (n, k), best first; missing places have id -1."""
        queries = _as_vectors(query_vectors, self.dim)
        k = int(k)
        if k <= 0:
            raise ValueError("k must be positive")
        # One thread is fastest for a single query (0.2 ms vs 0.55 ms on 2); bulk batches use both cores.
        threads = BULK_THREADS if len(queries) >= BULK_QUERIES else 1
        with self._lock, _faiss_threads(threads):
            scores, labels = self._index.search(queries, k)
        return scores, labels.astype(np.int64, copy=False)

    # --- files ---------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Write the index and its manifest (model, dim, count, sha256) atomically; return the manifest."""
        target = Path(path)
        with self._lock:
            data = faiss.serialize_index(self._index)
            count = len(self)
        blob = np.ascontiguousarray(data).data.cast("B")
        manifest = {
            "format": MANIFEST_FORMAT,
            "kind": self.kind,
            "model_id": self.model_id,
            "dim": self.dim,
            "count": count,
            "sha256": _sha256(blob),
            "size_bytes": len(blob),
            "params": self.params,
            "faiss_version": faiss.__version__,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        # Index first, manifest second: a crash in between leaves a checksum mismatch, i.e. a rebuild.
        atomic_write(target, blob)
        atomic_write(manifest_path(target), json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"))
        log.info("saved %s index of %d vectors to %s", self.kind, count, target)
        return manifest

    @classmethod
    def load(cls, path: str | os.PathLike[str], expected_model_id: str, expected_dim: int) -> VectorIndex | None:
        """Load a saved index if its manifest and checksum match; return None (and log why) otherwise."""
        target = Path(path)
        if not target.exists() and not manifest_path(target).exists():
            # A first start: nothing was built yet, which is expected, not a warning.
            log.info("vector index %s not built yet", target)
            return None
        try:
            return cls._load(target, expected_model_id, int(expected_dim))
        except _Stale as why:
            log.warning("vector index %s not used, will rebuild: %s", target, why)
        except Exception as exc:  # a bad file must lead to a rebuild, never to a failed start-up
            log.warning("vector index %s unreadable, will rebuild: %s: %s", target, type(exc).__name__, exc)
        return None

    @classmethod
    def _load(cls, target: Path, expected_model_id: str, expected_dim: int) -> VectorIndex:
        mpath = manifest_path(target)
        if not target.is_file():
            raise _Stale("index file missing")
        if not mpath.is_file():
            raise _Stale("manifest missing")
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise _Stale("manifest is not a JSON object")
        if manifest.get("format") != MANIFEST_FORMAT:
            raise _Stale(f"manifest format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
        if manifest.get("model_id") != expected_model_id:
            raise _Stale(f"built with {manifest.get('model_id')!r}, current model is {expected_model_id!r}")
        if manifest.get("dim") != expected_dim:
            raise _Stale(f"dimension {manifest.get('dim')!r}, expected {expected_dim}")
        kind = manifest.get("kind")
        if kind not in KINDS:
            raise _Stale(f"unknown kind {kind!r}")
        data = target.read_bytes()
        if _sha256(data) != manifest.get("sha256"):
            raise _Stale("checksum mismatch (file changed or torn write)")
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        if index.d != expected_dim:
            raise _Stale(f"file holds dimension {index.d}, expected {expected_dim}")
        if index.ntotal != manifest.get("count"):
            raise _Stale(f"file holds {index.ntotal} vectors, manifest says {manifest.get('count')}")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise _Stale("index does not use inner product")
        log.info("loaded %s index of %d vectors from %s", kind, index.ntotal, target)
        return cls(
            expected_dim, model_id=expected_model_id, kind=kind, faiss_index=index, params=manifest.get("params")
        )


class _Stale(Exception):
    """A saved index that must not be used; the message says why."""


# --- exact and approximate builds -------------------------------------------------------------


def build_exact(ids: Sequence[int] | np.ndarray, vectors: np.ndarray, *, model_id: str) -> VectorIndex:
    """Build an exact inner-product index over vectors keyed by ids."""
    vecs = np.asarray(vectors)
    index = VectorIndex(vecs.shape[1], model_id=model_id)
    index.add_or_update(ids, vecs)
    return index


def _ivf_nlist(n: int) -> int:
    # ~4·√n lists, each with at least 39 training points (FAISS warns below that).
    return int(max(1, min(4 * int(np.sqrt(n)), n // 39)))


def build_approximate(
    ids: Sequence[int] | np.ndarray,
    vectors: np.ndarray,
    *,
    model_id: str,
    kind: Literal["ivf", "hnsw"] = "ivf",
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 64,
    seed: int = 0,
) -> VectorIndex:
    """Build an IVF-flat or HNSW-flat inner-product index over vectors keyed by ids."""
    id_arr = _as_ids(ids)
    vecs = _as_vectors(vectors, np.shape(vectors)[1], rows=len(id_arr))
    dim = vecs.shape[1]
    if len(np.unique(id_arr)) != len(id_arr):
        raise ValueError("ids must be unique")
    index: faiss.Index
    with _faiss_threads(BULK_THREADS):
        if kind == "ivf":
            nlist = nlist or _ivf_nlist(len(vecs))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            sample = vecs
            if len(vecs) > nlist * 256:  # k-means needs a sample, not the whole set
                rng = np.random.default_rng(seed)
                sample = vecs[rng.choice(len(vecs), nlist * 256, replace=False)]
            index.train(sample)
            index.nprobe = min(nprobe, nlist)
            index.add_with_ids(vecs, id_arr)
            params: dict[str, Any] = {"nlist": nlist, "nprobe": int(index.nprobe)}
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = ef_construction
            inner.hnsw.efSearch = ef_search
            index = faiss.IndexIDMap2(inner)
            index.add_with_ids(vecs, id_arr)
            params = {"m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
        else:
            raise ValueError(f"kind must be 'ivf' or 'hnsw', got {kind!r}")
    return VectorIndex(dim, model_id=model_id, kind=kind, faiss_index=index, params=params)


def _set_search_param(index: VectorIndex, value: int) -> None:
    raw = index.faiss_index
    if index.kind == "ivf":
        raw.nprobe = min(int(value), raw.nlist)
        index.params["nprobe"] = int(raw.nprobe)
    elif index.kind == "hnsw":
        inner = faiss.downcast_index(raw.index)
        if not isinstance(inner, faiss.IndexHNSWFlat):
            raise TypeError(f"expected an HNSW index inside the id map, got {type(inner).__name__}")
        inner.hnsw.efSearch = int(value)
        index.params["ef_search"] = int(value)


def recall_at_k(exact: VectorIndex, approx: VectorIndex, queries: np.ndarray, k: int = 10) -> float:
    """Return the mean share of exact top-k ids that the approximate index also returns in its top k."""
    _, truth = exact.search(queries, k)
    _, found = approx.search(queries, k)
    hits = total = 0
    for want, got in zip(truth, found, strict=True):
        want = want[want >= 0]
        total += len(want)
        hits += len(np.intersect1d(want, got[got >= 0], assume_unique=False))
    return hits / total if total else 1.0


def _ms_per_query(index: VectorIndex, queries: np.ndarray, k: int) -> float:
    start = time.perf_counter()
    for q in queries:
        index.search(q[None, :], k)
    return (time.perf_counter() - start) * 1000 / max(len(queries), 1)


def choose_index(
    ids: Sequence[int] | np.ndarray,
    vectors: np.ndarray,
    *,
    model_id: str,
    approx_threshold: int,
    sample_queries: np.ndarray | None = None,
    kind: Literal["ivf", "hnsw"] = "ivf",
    search_values: Sequence[int] | None = None,
    min_recall: float = MIN_RECALL,
    k: int = 10,
    sample_size: int = 200,
    seed: int = 0,
    **build_kwargs: Any,
) -> tuple[VectorIndex, dict[str, Any]]:
    """Return the index to serve and a report: exact below the threshold, approximate only at recall ≥ 0.99.

    Above ``approx_threshold`` vectors the approximate index is built and its search parameter
    (IVF nprobe or HNSW efSearch, from ``search_values``) raised until recall@k against exact
    search on ``sample_queries`` (default: a sample of the indexed vectors) reaches ``min_recall``.
    If no value gets there, the exact index is kept.
    """
    id_arr = _as_ids(ids)
    vecs = np.asarray(vectors, dtype=np.float32)
    count = len(id_arr)
    report: dict[str, Any] = {"count": count, "approx_threshold": approx_threshold, "kind": "flat", "k": k}
    exact = build_exact(id_arr, vecs, model_id=model_id)
    if count < approx_threshold or count == 0:
        report.update(
            decision="exact_below_threshold",
            recall=None,
            reason=f"向量数 {count} 低于阈值 {approx_threshold}，使用精确检索",
        )
        return exact, report

    rng = np.random.default_rng(seed)
    if sample_queries is None or len(sample_queries) == 0:
        pick = rng.choice(count, min(sample_size, count), replace=False)
        queries, query_source = vecs[pick], "indexed_vectors"
    else:
        queries = np.asarray(sample_queries, dtype=np.float32)
        if len(queries) > sample_size:
            queries = queries[rng.choice(len(queries), sample_size, replace=False)]
        query_source = "given"
    start = time.perf_counter()
    approx = build_approximate(id_arr, vecs, model_id=model_id, kind=kind, seed=seed, **build_kwargs)
    build_seconds = time.perf_counter() - start
    values = list(search_values or (IVF_NPROBES if kind == "ivf" else HNSW_EF_SEARCH))
    if kind == "ivf":
        # Probing half the lists or more costs as much as exact search: no point in keeping such an index.
        nlist = approx.params["nlist"]
        values = [v for v in values if 2 * v <= nlist] or [max(1, nlist // 2)]
    tried: list[dict[str, Any]] = []
    recall = 0.0
    for value in values:
        _set_search_param(approx, value)
        recall = recall_at_k(exact, approx, queries, k)
        tried.append({"value": int(value), "recall": round(recall, 4)})
        if recall >= min_recall:
            break
    timing_queries = queries[: min(len(queries), 100)]
    report.update(
        tried_kind=kind,
        recall=round(recall, 4),
        min_recall=min_recall,
        sample_queries=len(queries),
        query_source=query_source,
        tried=tried,
        params=dict(approx.params),
        build_seconds=round(build_seconds, 3),
        exact_ms_per_query=round(_ms_per_query(exact, timing_queries, k), 4),
        approx_ms_per_query=round(_ms_per_query(approx, timing_queries, k), 4),
    )
    report["speedup"] = round(report["exact_ms_per_query"] / max(report["approx_ms_per_query"], 1e-9), 2)
    if recall >= min_recall:
        report.update(
            kind=kind, decision="approx_kept", reason=f"近似索引 recall@{k} = {recall:.4f} ≥ {min_recall}，采用近似检索"
        )
        log.info("approximate %s index kept: %s", kind, report)
        return approx, report
    report.update(decision="approx_rejected", reason=f"近似索引 recall@{k} = {recall:.4f} < {min_recall}，保留精确检索")
    log.warning("approximate %s index rejected: %s", kind, report)
    return exact, report
