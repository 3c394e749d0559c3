"""The matcher's heavy parts, created once per process and held by the app (or a CLI command):
the embedder, the embedding cache, the policy vector index, the trained tagger and ranker, and the
open catalog as arrays (`policy_sets`).

The policy index follows the database lazily: each use compares a cheap signature (count and
latest update of published policies) and re-embeds only what changed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from catalog import rules as rules_mod
from catalog.models import Policy, PolicyStatus
from core import codes
from core.config import Settings
from core.files import atomic_write
from matcher import ranker as ranker_mod
from matcher.embeddings import Embedder, EmbeddingCache, check_role, make_embedder, policy_text
from matcher.facts import FactsCache
from matcher.index import VectorIndex
from matcher.policyset import PolicySet, PolicySets
from matcher.ranking import Weights


@dataclass
class _IndexState:
    index: VectorIndex | None = None
    signature: tuple[Any, ...] | None = None
    synced: dict[int, str] = field(default_factory=dict)  # id → updated_at (ISO) embedded


class Matcher:
    """Embedder, embedding cache and vector indexes, created once per process."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.weights = Weights.from_settings(settings)
        self._embedder = embedder
        self._cache: EmbeddingCache | None = None
        self._lock = threading.RLock()
        self._policies = _IndexState()
        self.index_dir = Path(settings.var_dir) / "indexes"
        self.models_dir = Path(settings.models_dir)
        self._tagger: Any = None
        self._tagger_loaded = False
        self._rankers = ranker_mod.RankerCache()
        # The open catalog as arrays, per catalog revision and day (serving, calculator, batch).
        self.policy_sets = PolicySets(vectors=self.policy_vectors)
        # Every firm's facts for curators' live rule previews.
        self.facts = FactsCache()
        # The API loads the model in the background at start-up and sets this False, so no request waits
        # for it: until it is loaded, search answers by keywords and the calculator without similarity.
        self.wait_for_model = True

    @property
    def semantic_ready(self) -> bool:
        """Tell whether embedding a text now would not wait for the model to load."""
        return self.wait_for_model or self._embedder is not None

    @property
    def embedder(self) -> Embedder:
        """Return the embedder, loading the model on first use."""
        with self._lock:
            if self._embedder is None:
                self._embedder = make_embedder(
                    self.settings.embedder,
                    num_threads=self.settings.embed_threads,
                    device=self.settings.embed_device,
                    batch_size=self.settings.embed_batch_size,
                )
            return self._embedder

    @property
    def cache(self) -> EmbeddingCache:
        """Return the on-disk embedding cache of the current model."""
        with self._lock:
            if self._cache is None:
                self._cache = EmbeddingCache.for_embedder(self.settings.var_dir, self.embedder)
            return self._cache

    @property
    def tagger(self) -> Any:
        """Return the trained policy tagger under models/, or None when none has been trained."""
        with self._lock:
            if not self._tagger_loaded:
                # Deferred: scikit-learn and skops cost about a second of start-up, and most processes never tag.
                from matcher import tagger as tagger_mod

                self._tagger = tagger_mod.load(self.models_dir)
                self._tagger_loaded = True
            return self._tagger

    @property
    def ranker(self) -> ranker_mod.LearnedRanker | None:
        """Return the learned ranker when `huiqi train ranker` marked one used, else None (hand weights).

        Cached per file stamp: two stat calls per request, a reload after retraining.
        """
        return self._rankers.active(self.models_dir)

    def reload_tagger(self) -> None:
        """Forget the loaded tagger so the next use reads models/ again (after training)."""
        with self._lock:
            self._tagger, self._tagger_loaded = None, False

    def encode(self, texts: Sequence[str], role: str) -> np.ndarray:
        """Embed texts through the cache, so nothing is embedded twice."""
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return self.cache.encode_cached(self.embedder, list(texts), check_role(role))

    def close(self) -> None:
        """Release the cache's file handle."""
        if self._cache is not None:
            self._cache.close()

    def policy_vectors(self, db: Session, policies: PolicySet) -> np.ndarray:
        """Return the embedding of each policy of a set, in its order (embedding what changed)."""
        index = self.policy_index(db)
        out = np.zeros((len(policies), self.embedder.dim), dtype=np.float32)
        held = set(index.ids().tolist())
        missing = [pid for pid in policies.ids.tolist() if pid not in held]
        if missing:  # published after the index was synced in this process
            for policy in load_policies(db, missing):
                index.add_or_update([policy.id], self.encode([policy_embedding_text(policy)], "passage"))
        for row, pid in enumerate(policies.ids.tolist()):
            out[row] = index.faiss_index.reconstruct(int(pid))
        return out

    # -- policy index

    def policy_index(self, db: Session) -> VectorIndex:
        """Return the index of published policies, brought up to date with the database."""
        signature = tuple(
            db.execute(
                select(func.count(), func.max(Policy.updated_at)).where(Policy.status == PolicyStatus.published)
            ).one()
        )
        state = self._policies
        if state.index is not None and state.signature == signature:
            return state.index
        with self._lock:
            rows = dict(
                db.execute(select(Policy.id, Policy.updated_at).where(Policy.status == PolicyStatus.published))
                .tuples()
                .all()
            )
            current = {pid: ts.isoformat() for pid, ts in rows.items()}
            self._load_or_create(state, "policies")
            assert state.index is not None
            gone = [pid for pid in state.synced if pid not in current]
            changed = [pid for pid, ts in current.items() if state.synced.get(pid) != ts]
            if gone:
                state.index.remove(gone)
            for chunk in _chunks(changed, 256):
                policies = load_policies(db, chunk)
                vectors = self.encode([policy_embedding_text(p) for p in policies], "passage")
                state.index.add_or_update([p.id for p in policies], vectors)
            state.synced = current
            state.signature = signature
            if gone or changed:
                self._save(state, "policies")
            return state.index

    def _load_or_create(self, state: _IndexState, name: str) -> None:
        if state.index is not None:
            return
        path = self.index_dir / f"{name}.faiss"
        loaded = VectorIndex.load(path, self.embedder.model_id, self.embedder.dim)
        synced_path = path.with_suffix(".synced.json")
        if loaded is not None and synced_path.exists():
            try:
                synced = {int(k): v for k, v in json.loads(synced_path.read_text()).items()}
            except (ValueError, OSError):
                synced = None
            if synced is not None and len(synced) == len(loaded):
                state.index, state.synced = loaded, synced
                return
        state.index = VectorIndex(self.embedder.dim, model_id=self.embedder.model_id)
        state.synced = {}

    def _save(self, state: _IndexState, name: str) -> None:
        assert state.index is not None
        self.index_dir.mkdir(parents=True, exist_ok=True)
        path = self.index_dir / f"{name}.faiss"
        state.index.save(path)
        atomic_write(
            path.with_suffix(".synced.json"), json.dumps({str(k): v for k, v in state.synced.items()}).encode()
        )


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def load_policies(db: Session, ids: Iterable[int]) -> list[Policy]:
    """Load policies with their categories and tags, in id order."""
    return list(
        db.scalars(
            select(Policy)
            .where(Policy.id.in_(list(ids)))
            .options(selectinload(Policy.categories), selectinload(Policy.tags))
            .order_by(Policy.id)
        )
    )


def policy_embedding_text(policy: Policy) -> str:
    """Return the text a policy is embedded as: title, summary, categories, tags, conditions in words."""
    lines = rules_mod.describe_rules(policy.rules, region_name=codes.region_name) if policy.rules else []
    return policy_text(policy, lines)
