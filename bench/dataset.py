"""Bench databases: synthetic policies and firms with precomputed vectors, on SQLite or PostgreSQL.

`build` migrates a database, loads the demo taxonomy, `catalog.synth.synth_policies` and
`profiles.synth.synth_enterprises` (what `huiqi synth` runs), then stores vectors so that nothing is
embedded while measuring: every policy's passage vector in the embedding cache under `var_dir`
(the policy index is built from it on first use) and every firm's vector in `firm_vector`, marked
current, so `huiqi match` does not re-embed. The vectors are random unit vectors: embedding 10k
policies and 100k firms with e5 on 2 cores would take hours, and the values do not change the
work a request or a chunk does. `huiqi_env` is the environment a `huiqi` subprocess needs to use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, Stopwatch

DIM = 384


def huiqi_env(url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """Return the environment of a `huiqi` subprocess serving this database and var dir."""
    env = {
        **os.environ,
        "HUIQI_ENV": "development",
        "HUIQI_VAR_DIR": str(var_dir),
        "HUIQI_DATABASE_URL": url,
        "HUIQI_MODELS_DIR": str(var_dir / "models"),
        "HUIQI_LOG_LEVEL": "WARNING",
        "HUIQI_DEMO_USERS": "false",
        "HUIQI_SECRET_KEY": "b" * 48,
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


def huiqi(url: str, var_dir: Path, *args: str, timeout: float = 3600, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m api.cli ARGS` (this worktree's code) against the database; raise if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=huiqi_env(url, var_dir, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"huiqi {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc


def model_identity() -> tuple[str, int]:
    """Return (model id, dimension) of the default e5 embedder, as the matcher names its vectors."""
    from matcher.embeddings import E5Embedder

    embedder = E5Embedder(num_threads=1)
    return embedder.model_id, embedder.dim


def seed_policy_vectors(url: str, var_dir: Path, *, seed: int) -> int:
    """Put a random unit passage vector for every policy's embedding text in the embedding cache."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from catalog.models import Policy
    from core.db import Database
    from matcher import engine as matcher_engine
    from matcher.embeddings import EmbeddingCache

    model_id, dim = model_identity()
    cache = EmbeddingCache(var_dir, model_id=model_id, dim=dim)
    rng = np.random.default_rng(seed)
    database = Database(url)
    n = 0
    try:
        with database.session() as db:
            ids = list(db.scalars(select(Policy.id).order_by(Policy.id)))
            for start in range(0, len(ids), 500):
                chunk = db.scalars(
                    select(Policy)
                    .where(Policy.id.in_(ids[start : start + 500]))
                    .options(selectinload(Policy.categories), selectinload(Policy.tags))
                )
                texts = [matcher_engine.policy_embedding_text(p) for p in chunk]
                vectors = rng.standard_normal((len(texts), dim)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                cache.put_many(texts, "passage", vectors)
                n += len(texts)
    finally:
        cache.close()
        database.dispose()
    return n


def seed_firm_vectors(url: str, *, seed: int, only_missing: bool = True) -> int:
    """Store a random unit vector (float16) for every firm in `firm_vector`, current as of now.

    Each vector is stored under the digest of the firm's real profile texts (`vectors.text_keys`), as
    if e5 had embedded them: a later profile edit that leaves the texts alone is not embedded again,
    one that changes them is (as in a deployment).
    """
    from sqlalchemy import insert, select

    from core.db import Database, utcnow
    from matcher.models import FirmVector
    from matcher.vectors import text_keys
    from profiles.models import Enterprise

    model_id, dim = model_identity()
    rng = np.random.default_rng(seed)
    database = Database(url)
    n = 0
    try:
        with database.session() as db:
            q = select(Enterprise.id).order_by(Enterprise.id)
            if only_missing:
                q = q.outerjoin(FirmVector, FirmVector.enterprise_id == Enterprise.id).where(
                    FirmVector.enterprise_id.is_(None)
                )
            ids = list(db.scalars(q))
        now = utcnow()
        postgres = url.startswith("postgresql")
        for start in range(0, len(ids), 20_000):
            part = ids[start : start + 20_000]
            vectors = rng.standard_normal((len(part), dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            blobs = vectors.astype(np.float16)
            with database.session() as db:
                keys = text_keys(db, part, model_id=model_id)
            with database.writer_session() as db:
                if postgres:
                    cursor: Any = db.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
                    with cursor.copy(
                        "COPY firm_vector (enterprise_id, model_id, text_key, vector, embedded_at) FROM STDIN"
                    ) as copy:
                        for eid, blob in zip(part, blobs, strict=True):
                            copy.write_row((eid, model_id, keys[eid], blob.tobytes(), now))
                else:
                    db.execute(
                        insert(FirmVector),
                        [
                            {
                                "enterprise_id": eid,
                                "model_id": model_id,
                                "text_key": keys[eid],
                                "vector": blob.tobytes(),
                                "embedded_at": now,
                            }
                            for eid, blob in zip(part, blobs, strict=True)
                        ],
                    )
            n += len(part)
    finally:
        database.dispose()
    return n


def build(url: str, var_dir: Path, *, policies: int, firms: int, seed: int = 7, log: Any = print) -> dict[str, float]:
    """Migrate and fill a database for a bench; return the seconds of each set-up step."""
    from catalog import demo
    from catalog.synth import synth_policies
    from core import migrate
    from core.db import Database
    from profiles.synth import synth_enterprises

    var_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with Stopwatch() as sw:
        migrate.upgrade(url=url)
    timings["migrate_s"] = round(sw.seconds, 2)
    database = Database(url)
    try:
        with Stopwatch() as sw:
            with database.session() as db:
                demo.load_taxonomy(db=db)
            with database.session() as db:
                synth_policies(db=db, count=policies, seed=seed)
        timings["synth_policies_s"] = round(sw.seconds, 2)
        log(f"dataset: {policies:,} policies in {sw.seconds:.1f} s; firms …")
        with Stopwatch() as sw:
            synth_enterprises(engine=database.engine, count=firms, seed=seed)
        timings["synth_firms_s"] = round(sw.seconds, 2)
        log(f"dataset: {firms:,} firms in {sw.seconds:.1f} s; vectors …")
    finally:
        database.dispose()
    with Stopwatch() as sw:
        seed_policy_vectors(url, var_dir, seed=seed)
    timings["policy_vectors_s"] = round(sw.seconds, 2)
    with Stopwatch() as sw:
        seed_firm_vectors(url, seed=seed)
    timings["firm_vectors_s"] = round(sw.seconds, 2)
    return timings


def stored_rows(url: str, enterprise_id: int) -> dict[str, Any]:
    """Return what is stored for a firm: its firm_match blob's size and items (top-N and near misses)."""
    from sqlalchemy import select

    from core.db import Database
    from matcher import store
    from matcher.models import FirmMatch

    database = Database(url)
    try:
        with database.session() as db:
            payload = db.scalar(select(FirmMatch.payload).where(FirmMatch.enterprise_id == enterprise_id))
            stored = store.read_many(db, [enterprise_id]).get(enterprise_id)
    finally:
        database.dispose()
    if stored is None:
        return {"firm_match_rows": 0}
    return {
        "firm_match_rows": 1,
        "payload_bytes": len(payload or b""),
        "items": int(len(stored.items)),
        "near_misses": int(len(stored.near)),
        "eligible": int(stored.eligible),
        "likely": int(stored.likely),
    }


def create_users(url: str, specs: Sequence[dict[str, Any]], password: str) -> list[int]:
    """Create users (username, role, enterprise_id) through the auth service; return their ids."""
    from auth import service as auth_service
    from auth.schemas import UserIn
    from core.db import Database

    database = Database(url)
    ids = []
    try:
        with database.session() as db:
            for spec in specs:
                user = auth_service.create_user(
                    db=db,
                    user_in=UserIn(
                        username=spec["username"],
                        password=password,
                        display_name=spec.get("display_name", spec["username"]),
                        role=spec["role"],
                        enterprise_id=spec.get("enterprise_id"),
                        department_id=spec.get("department_id"),
                    ),
                )
                db.flush()
                ids.append(user.id)
    finally:
        database.dispose()
    return ids


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 120) -> None:
    """Wait until /healthz answers 200, or raise with the server's log tail."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server did not answer /healthz within {timeout} s")
