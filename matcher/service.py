"""Matching operations: firm tags, recommendations, the policy calculator, eligible-firm lists,
hybrid search and batch re-matching.

The heavy parts (embedder, embedding cache, FAISS indexes) live in one `Matcher` object that the
app creates at start-up and the CLI creates per command. Indexes follow the database lazily: each
use compares a cheap signature (count and latest update of published policies, or of profiles)
and re-embeds only what changed, so publishing, editing or withdrawing a policy and editing a
profile are reflected on the next request without the catalog knowing about the matcher.

Match results are persisted per (firm, policy): verdict, the rule/tag/semantic components and the
state of each condition. Urgency and per-firm feedback adjustments change daily and are applied
when a list is read; Chinese reasons are rendered then too, from the rules and the live profile.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, exists, func, insert, or_, select
from sqlalchemy.orm import Session, selectinload

from catalog import rules as rules_mod
from catalog import service as catalog_service
from catalog.fields import FIELDS
from catalog.models import Policy, PolicyRegion, PolicyStatus, PolicyType, Tag, policy_tag
from catalog.schemas import PolicyFilters
from core import codes
from core.config import Settings
from core.db import utcnow
from core.errors import NotFound
from core.files import atomic_write
from core.text import normalize
from matcher import eligibility, feedback
from matcher import ranker as ranker_mod
from matcher import tags as tags_mod
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY, FactsFrame, PolicyVerdict
from matcher.embeddings import Embedder, EmbeddingCache, enterprise_text, make_embedder, policy_text
from matcher.index import VectorIndex, choose_index
from matcher.models import EnterpriseTag, MatchResult, PolicyMatchState
from matcher.ranking import (
    NO_CONDITIONS_SCORE,
    Components,
    Weights,
    rule_score,
    semantic_score,
    tag_score,
    urgency_score,
)
from profiles.models import Enterprise

log = logging.getLogger(__name__)

STATE_CODE = {"met": 2, "unknown": 1, "not_met": 0}
NEEDS_SHARE = 0.6  # weight of the needs text in the semantic similarity, when a firm wrote one
NEAR_MISS_WINDOW = 20  # best-scored non-eligible results that feed "what would open more"


# ---------------------------------------------------------------- the heavy parts


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
        self._enterprises = _IndexState()
        self.index_dir = Path(settings.var_dir) / "indexes"
        self.models_dir = Path(settings.models_dir)
        self._tagger: Any = None
        self._tagger_loaded = False

    @property
    def embedder(self) -> Embedder:
        """Return the embedder, loading the model on first use."""
        with self._lock:
            if self._embedder is None:
                self._embedder = make_embedder(self.settings.embedder, num_threads=self.settings.embed_threads)
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
                from matcher import tagger as tagger_mod

                self._tagger = tagger_mod.load(self.models_dir)
                self._tagger_loaded = True
            return self._tagger

    @property
    def ranker(self) -> ranker_mod.LearnedRanker | None:
        """Return the learned ranker when `huiqi train ranker` marked one used, else None (hand weights).

        Cached per file stamp in matcher.ranker: two stat calls per request, a reload after retraining.
        """
        return ranker_mod.active(self.models_dir)

    def reload_tagger(self) -> None:
        """Forget the loaded tagger so the next use reads models/ again (after training)."""
        with self._lock:
            self._tagger, self._tagger_loaded = None, False

    def encode(self, texts: Sequence[str], role: str) -> np.ndarray:
        """Embed texts through the cache, so nothing is embedded twice."""
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return self.cache.encode_cached(self.embedder, list(texts), role)  # type: ignore[arg-type]

    def close(self) -> None:
        """Release the cache's file handle."""
        if self._cache is not None:
            self._cache.close()

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
                db.execute(select(Policy.id, Policy.updated_at).where(Policy.status == PolicyStatus.published)).all()
            )
            current = {pid: ts.isoformat() for pid, ts in rows.items()}
            self._load_or_create(state, "policies")
            assert state.index is not None
            gone = [pid for pid in state.synced if pid not in current]
            changed = [pid for pid, ts in current.items() if state.synced.get(pid) != ts]
            if gone:
                state.index.remove(gone)
            for chunk in _chunks(changed, 256):
                policies = _load_policies(db, chunk)
                vectors = self.encode([policy_embedding_text(p) for p in policies], "passage")
                state.index.add_or_update([p.id for p in policies], vectors)
            state.synced = current
            state.signature = signature
            if gone or changed:
                self._save(state, "policies")
            return state.index

    # -- enterprise index (reverse matching: a policy's text against firms' needs)

    def enterprise_index(self, db: Session, *, progress: Callable[[int], None] | None = None) -> VectorIndex:
        """Return the index of enterprise profiles, brought up to date with the database."""
        signature = tuple(db.execute(select(func.count(), func.max(Enterprise.profile_updated_at))).one())
        state = self._enterprises
        if state.index is not None and state.signature == signature:
            return state.index
        with self._lock:
            current = {
                eid: ts.isoformat() for eid, ts in db.execute(select(Enterprise.id, Enterprise.profile_updated_at))
            }
            self._load_or_create(state, "enterprises")
            assert state.index is not None
            gone = [eid for eid in state.synced if eid not in current]
            changed = [eid for eid, ts in current.items() if state.synced.get(eid) != ts]
            if gone:
                state.index.remove(gone)
            for chunk in _chunks(changed, 512):
                firms = list(
                    db.scalars(
                        select(Enterprise)
                        .where(Enterprise.id.in_(chunk))
                        .options(selectinload(Enterprise.qualifications))
                    )
                )
                vectors = self.encode([enterprise_text(f) for f in firms], "query")
                state.index.add_or_update([f.id for f in firms], vectors)
                if progress:
                    progress(len(firms))
            state.synced = current
            state.signature = signature
            if gone or changed:
                self._save(state, "enterprises")
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

    def rebuild_enterprise_index(self, db: Session) -> dict[str, Any]:
        """Rebuild the enterprise index from scratch, approximate if large and accurate enough."""
        with self._lock:
            index = self.enterprise_index(db)
            ids = index.ids()
            vectors = (
                np.vstack([index.faiss_index.reconstruct(int(i)) for i in ids])
                if len(ids)
                else np.zeros((0, index.dim), "float32")
            )
            chosen, report = choose_index(
                ids, vectors, model_id=self.embedder.model_id, approx_threshold=self.settings.approx_index_threshold
            )
            self._enterprises.index = chosen
            self._save(self._enterprises, "enterprises")
            return report


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _load_policies(db: Session, ids: Iterable[int]) -> list[Policy]:
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


# ---------------------------------------------------------------- tags


def sync_enterprise_tags(
    *, db: Session, enterprise: Enterprise, vocab: tags_mod.Vocabulary, today: dt.date
) -> dict[str, str]:
    """Derive an enterprise's tags from its profile and store them; return tag → why."""
    facts = eligibility.profile_facts(enterprise, today)
    derived = tags_mod.enterprise_tags(facts, (enterprise.business_scope, enterprise.products, enterprise.needs), vocab)
    db.execute(delete(EnterpriseTag).where(EnterpriseTag.enterprise_id == enterprise.id))
    if derived:
        db.execute(
            insert(EnterpriseTag),
            [
                {"enterprise_id": enterprise.id, "tag_id": vocab.tags[name].id, "reason": why}
                for name, why in derived.items()
            ],
        )
    return derived


def sync_all_enterprise_tags(*, db: Session, today: dt.date) -> None:
    """Re-derive and store the tags of every enterprise."""
    vocab = tags_mod.Vocabulary.from_db(db)
    for firm in db.scalars(select(Enterprise).options(selectinload(Enterprise.qualifications))):
        sync_enterprise_tags(db=db, enterprise=firm, vocab=vocab, today=today)


def _policy_tags(policy: Policy, vocab: tags_mod.Vocabulary) -> set[str]:
    """Return a policy's curated tags plus those its rules imply."""
    return {t.name for t in policy.tags} | tags_mod.policy_rule_tags(policy.rules, vocab)


def _tag_idf(db: Session, vocab: tags_mod.Vocabulary) -> dict[str, float]:
    """Return IDF of each tag over published policies (rare tags say more)."""
    names = dict(db.execute(select(Tag.id, Tag.name)).all())
    docs: dict[int, set[str]] = {}
    for pid, tid in db.execute(
        select(policy_tag.c.policy_id, policy_tag.c.tag_id)
        .join(Policy, Policy.id == policy_tag.c.policy_id)
        .where(Policy.status == PolicyStatus.published)
    ):
        docs.setdefault(pid, set()).add(names[tid])
    return vocab.idf(docs.values())


# ---------------------------------------------------------------- recommendations


@dataclass
class Recommendation:
    """One policy for one firm, with its verdict, score, components and reasons."""

    policy: Policy
    verdict: PolicyVerdict
    components: Components
    score: float
    similarity: float | None
    shared_tags: list[str]
    needs_overlap: list[str]


def _open_policies_query(today: dt.date, region_code: str | None):  # type: ignore[no-untyped-def]
    """Published policies a firm could still use: windows not closed, applicable to its region."""
    q = select(Policy).where(
        Policy.status == PolicyStatus.published,
        or_(Policy.policy_type != PolicyType.application, Policy.apply_end_on.is_(None), Policy.apply_end_on >= today),
    )
    if region_code:
        try:
            path = [codes.NATIONAL_REGION, *codes.region_path(region_code)]
        except ValueError:
            path = [codes.NATIONAL_REGION, region_code]
        q = q.where(
            or_(
                ~exists().where(PolicyRegion.policy_id == Policy.id),
                exists().where(and_(PolicyRegion.policy_id == Policy.id, PolicyRegion.region_code.in_(path))),
            )
        )
    return q.options(selectinload(Policy.categories), selectinload(Policy.tags))


def _similarities(matcher: Matcher, db: Session, query_vector: np.ndarray, policy_ids: list[int]) -> dict[int, float]:
    index = matcher.policy_index(db)
    if not len(index) or not policy_ids:
        return {}
    scores, ids = index.search(query_vector.reshape(1, -1), len(index))
    wanted = set(policy_ids)
    return {int(i): float(s) for s, i in zip(scores[0], ids[0], strict=True) if int(i) in wanted}


def rank(
    *,
    db: Session,
    matcher: Matcher,
    facts: Mapping[str, Any],
    firm_tags: set[str],
    needs_text: str | None,
    query_text: str,
    today: dt.date,
    include: set[str],
    limit: int,
    adjustments: Mapping[int, float] | None = None,
    vocab: tags_mod.Vocabulary | None = None,
) -> list[Recommendation]:
    """Evaluate every open policy for one set of facts and return the best first."""
    vocab = vocab or tags_mod.Vocabulary.from_db(db)
    policies = list(db.scalars(_open_policies_query(today, facts.get("region_code"))))
    idf = _tag_idf(db, vocab)
    ids = [p.id for p in policies]
    sims = _similarities(matcher, db, matcher.encode([query_text], "query")[0], ids) if query_text.strip() else {}
    if needs_text and needs_text.strip():
        # What the firm says it wants counts more than what it is.
        needs_sims = _similarities(matcher, db, matcher.encode([needs_text], "query")[0], ids)
        sims = {pid: NEEDS_SHARE * s + (1 - NEEDS_SHARE) * sims.get(pid, s) for pid, s in needs_sims.items()}
    needs_tags = set(vocab.find_in_text(needs_text)) if needs_text else set()
    kinds = {name: info.kind for name, info in vocab.tags.items()}
    out = []
    for policy in policies:
        verdict = eligibility.evaluate(policy.rules, facts, today=today)
        if verdict.status not in include:
            continue
        ptags = _policy_tags(policy, vocab)
        tscore, shared = tag_score(ptags, firm_tags, idf, kinds)
        similarity = sims.get(policy.id)
        comp = Components(
            rules=rule_score(verdict),
            tags=tscore,
            semantic=semantic_score(similarity, matcher.weights),
            urgency=urgency_score(policy.apply_end_on, today, matcher.weights)
            if policy.policy_type == PolicyType.application
            else 0.0,
            adjustment=(adjustments or {}).get(policy.id, 0.0),
            shared_tags=shared,
        )
        out.append(
            Recommendation(
                policy=policy,
                verdict=verdict,
                components=comp,
                score=0.0,  # set below for the whole batch at once
                similarity=similarity,
                shared_tags=shared,
                needs_overlap=sorted(needs_tags & ptags),
            )
        )
    # One vectorised step for the batch: the hand blend, or the learned ranker when one is in use.
    scores = ranker_mod.score_components([r.components for r in out], matcher.weights, matcher.ranker)
    for rec, score in zip(out, scores, strict=True):
        rec.score = score
    # Score already weighs rule evidence (eligible > likely); a close needs match may outrank a loose fit.
    out.sort(key=lambda r: (-r.score, r.policy.id))
    return out[:limit]


def recommend(
    *,
    db: Session,
    matcher: Matcher,
    enterprise_id: int,
    include: Iterable[str] = (ELIGIBLE, LIKELY),
    limit: int = 20,
    today: dt.date | None = None,
    adjustments: Mapping[int, float] | None = None,
) -> tuple[Enterprise, list[Recommendation], list[eligibility.Change], dict[str, str]]:
    """Rank the open policies for a stored firm; also return what would open more and its tags.

    Reads the stored results when they are fresh (nothing changed since they were computed), so a
    request costs a few rows and the reasons of the policies shown; otherwise evaluates every open
    policy for the firm and stores the results.
    """
    today = today or dt.date.today()
    enterprise = db.get(Enterprise, enterprise_id)
    if enterprise is None:
        raise NotFound("企业不存在", code="enterprise_not_found")
    wanted = set(include) | {ELIGIBLE}
    vocab = tags_mod.Vocabulary.from_db(db)
    if adjustments is None:
        hidden, adjustments = feedback.adjustments(feedback.latest_for_firm(db=db, enterprise_id=enterprise.id))
    else:
        hidden = set()
    if INELIGIBLE not in wanted and _results_fresh(db, enterprise):
        firm_tags = _stored_tags(db, enterprise.id)
        shown, changes = _from_results(
            db, matcher, enterprise, firm_tags, wanted, limit + len(hidden), today, adjustments, vocab
        )
        return enterprise, [r for r in shown if r.policy.id not in hidden][:limit], changes, firm_tags
    firm_tags = sync_enterprise_tags(db=db, enterprise=enterprise, vocab=vocab, today=today)
    facts = eligibility.profile_facts(enterprise, today, tags=firm_tags)
    ranked = rank(
        db=db,
        matcher=matcher,
        facts=facts,
        firm_tags=set(firm_tags),
        needs_text=enterprise.needs,
        query_text=enterprise_text(enterprise, today=today),
        today=today,
        include={ELIGIBLE, LIKELY, INELIGIBLE},
        limit=10_000,
        adjustments=adjustments,
        vocab=vocab,
    )
    changes = eligibility.best_changes({r.policy.id: r.verdict for r in ranked if r.verdict.status != ELIGIBLE})
    _persist(db, enterprise.id, ranked, matcher.weights)
    # "Not relevant" drops a policy from this firm's lists; its result is still stored for staff.
    shown = [r for r in ranked if r.verdict.status in wanted and r.policy.id not in hidden][:limit]
    return enterprise, shown, changes, firm_tags


def _results_fresh(db: Session, enterprise: Enterprise) -> bool:
    """Tell whether the firm's stored results postdate its profile and every published policy."""
    earliest = db.scalar(select(func.min(MatchResult.computed_at)).where(MatchResult.enterprise_id == enterprise.id))
    if earliest is None or earliest < enterprise.profile_updated_at:
        return False
    changed = db.scalar(
        select(func.count())
        .select_from(Policy)
        .where(
            or_(Policy.updated_at > earliest, and_(Policy.published_at.is_not(None), Policy.published_at > earliest))
        )
    )
    return not changed


def _stored_tags(db: Session, enterprise_id: int) -> dict[str, str]:
    return dict(
        db.execute(
            select(Tag.name, EnterpriseTag.reason)
            .join(Tag, Tag.id == EnterpriseTag.tag_id)
            .where(EnterpriseTag.enterprise_id == enterprise_id)
        ).all()
    )


def _from_results(  # type: ignore[no-untyped-def]
    db, matcher, enterprise, firm_tags, wanted, limit, today, adjustments, vocab
) -> tuple[list[Recommendation], list[eligibility.Change]]:
    """Rank from stored results: add today's urgency and feedback, render reasons for what is shown.

    Only score columns are read for the ranking; full policies are loaded for the few shown and
    for the best near misses that feed "what would open more policies".
    """
    rows = db.execute(
        select(
            MatchResult.policy_id,
            MatchResult.status,
            MatchResult.rule_score,
            MatchResult.tag_score,
            MatchResult.semantic_score,
            MatchResult.similarity,
            MatchResult.shared_tags,
            Policy.policy_type,
            Policy.apply_end_on,
        )
        .join(Policy, Policy.id == MatchResult.policy_id)
        .where(
            MatchResult.enterprise_id == enterprise.id,
            Policy.status == PolicyStatus.published,
            or_(
                Policy.policy_type != PolicyType.application,
                Policy.apply_end_on.is_(None),
                Policy.apply_end_on >= today,
            ),
        )
    ).all()
    w = matcher.weights
    comps = [
        Components(
            rules=rules,
            tags=tags_,
            semantic=semantic,
            urgency=urgency_score(end_on, today, w) if ptype == PolicyType.application else 0.0,
            adjustment=(adjustments or {}).get(pid, 0.0),
            shared_tags=list(shared or []),
        )
        for pid, _, rules, tags_, semantic, _, shared, ptype, end_on in rows
    ]
    scores = ranker_mod.score_components(comps, w, matcher.ranker)
    scored = [(score, row[0], row[1], row[5], comp) for score, row, comp in zip(scores, rows, comps, strict=True)]
    scored.sort(key=lambda x: (-x[0], x[1]))
    top = [x for x in scored if x[2] in wanted][:limit]
    near_rows = [x for x in scored if x[2] != ELIGIBLE][:NEAR_MISS_WINDOW]
    policies = {p.id: p for p in _load_policies(db, {x[1] for x in top} | {x[1] for x in near_rows})}
    facts = eligibility.profile_facts(enterprise, today, tags=firm_tags)
    needs_tags = set(vocab.find_in_text(enterprise.needs)) if enterprise.needs else set()
    verdicts: dict[int, PolicyVerdict] = {}

    def verdict_of(pid: int) -> PolicyVerdict:
        if pid not in verdicts:
            verdicts[pid] = eligibility.evaluate(policies[pid].rules, facts, today=today)
        return verdicts[pid]

    shown = [
        Recommendation(
            policy=policies[pid],
            verdict=verdict_of(pid),
            components=comp,
            score=score,
            similarity=similarity,
            shared_tags=comp.shared_tags,
            needs_overlap=sorted(needs_tags & _policy_tags(policies[pid], vocab)),
        )
        for score, pid, _, similarity, comp in top
    ]
    near = {pid: verdict_of(pid) for _, pid, _, _, _ in near_rows}
    return shown, eligibility.best_changes({pid: v for pid, v in near.items() if v.status != ELIGIBLE})


def _persist(db: Session, enterprise_id: int, ranked: list[Recommendation], w: Weights) -> None:
    """Store this firm's eligible, likely and near-miss results, replacing what was there."""
    db.execute(delete(MatchResult).where(MatchResult.enterprise_id == enterprise_id))
    rows = [
        _result_row(enterprise_id, r, w)
        for r in ranked
        if r.verdict.status in (ELIGIBLE, LIKELY) or len(r.verdict.missing) == 1
    ]
    if rows:
        db.execute(insert(MatchResult), rows)


def _result_row(enterprise_id: int, r: Recommendation, w: Weights) -> dict[str, Any]:
    c = r.components
    return {
        "enterprise_id": enterprise_id,
        "policy_id": r.policy.id,
        "policy_version": r.policy.version,
        "status": r.verdict.status,
        # Stored without urgency and feedback, which change daily and are applied on read.
        "score": round(w.rules * c.rules + w.tags * c.tags + w.semantic * c.semantic, 4),
        "rule_score": c.rules,
        "tag_score": c.tags,
        "semantic_score": c.semantic,
        "similarity": r.similarity,
        "shared_tags": r.shared_tags,
        "condition_states": [STATE_CODE[x.state] for x in r.verdict.conditions],
        "computed_at": utcnow(),
    }


def calculator(
    *, db: Session, matcher: Matcher, attributes: Mapping[str, Any], limit: int = 20, today: dt.date | None = None
) -> tuple[dict[str, Any], list[Recommendation], list[eligibility.Change]]:
    """The public policy calculator: attributes in, the same ranked list out, nothing stored."""
    today = today or dt.date.today()
    vocab = tags_mod.Vocabulary.from_db(db)
    facts = eligibility.facts_from_attributes({k: v for k, v in attributes.items() if k in FIELDS}, today)
    needs = attributes.get("needs") or ""
    firm_tags = tags_mod.enterprise_tags(facts, (attributes.get("business_scope"), needs), vocab)
    facts["tags"] = set(firm_tags)
    industry = codes.industry_name(facts["industry_code"]) if facts.get("industry_code") else None
    query = "；".join(filter(None, [industry, attributes.get("business_scope"), needs]))
    ranked = rank(
        db=db,
        matcher=matcher,
        facts=facts,
        firm_tags=set(firm_tags),
        needs_text=needs,
        query_text=query,
        today=today,
        include={ELIGIBLE, LIKELY, INELIGIBLE},
        limit=10_000,
        vocab=vocab,
    )
    changes = eligibility.best_changes({r.policy.id: r.verdict for r in ranked if r.verdict.status != ELIGIBLE})
    return facts, [r for r in ranked if r.verdict.status != INELIGIBLE][:limit], changes


# ---------------------------------------------------------------- reverse matching (免申即享 lists)


@dataclass
class BatchContext:
    """What matching one policy against every firm needs, built once per batch."""

    today: dt.date
    vocab: tags_mod.Vocabulary
    idf: dict[str, float]
    frame: FactsFrame
    ids: list[int]
    firm_tags: list[set[str]]  # aligned with ids
    kinds: dict[str, str]  # tag → kind
    vectors: np.ndarray  # firm profile vectors aligned with ids (zero rows: not embedded)


def batch_context(*, db: Session, matcher: Matcher, today: dt.date | None = None) -> BatchContext:
    """Load every firm's facts, stored tags and profile vector for batch matching."""
    today = today or dt.date.today()
    vocab = tags_mod.Vocabulary.from_db(db)
    firms = list(
        db.scalars(select(Enterprise).options(selectinload(Enterprise.qualifications)).order_by(Enterprise.id))
    )
    tags_by_firm: dict[int, set[str]] = {}
    for eid, name in db.execute(
        select(EnterpriseTag.enterprise_id, Tag.name).join(Tag, Tag.id == EnterpriseTag.tag_id)
    ):
        tags_by_firm.setdefault(eid, set()).add(name)
    ids = [f.id for f in firms]
    index = matcher.enterprise_index(db)
    vectors = np.zeros((len(ids), matcher.embedder.dim), dtype=np.float32)
    held = set(index.ids().tolist())
    for row, eid in enumerate(ids):
        if eid in held:
            vectors[row] = index.faiss_index.reconstruct(int(eid))
    return BatchContext(
        today=today,
        vocab=vocab,
        idf=_tag_idf(db, vocab),
        frame=FactsFrame.from_enterprises(firms, today, tags=tags_by_firm),
        ids=ids,
        firm_tags=[tags_by_firm.get(eid, set()) for eid in ids],
        kinds={name: info.kind for name, info in vocab.tags.items()},
        vectors=vectors,
    )


def match_policy(*, db: Session, matcher: Matcher, policy: Policy, ctx: BatchContext | None = None) -> dict[str, int]:
    """Evaluate one policy against every firm at once and store its eligible and likely firms."""
    ctx = ctx or batch_context(db=db, matcher=matcher)
    db.execute(delete(MatchResult).where(MatchResult.policy_id == policy.id))
    # Remember the run even when no firm qualifies, so the policy is not "changed" forever.
    db.execute(delete(PolicyMatchState).where(PolicyMatchState.policy_id == policy.id))
    db.add(PolicyMatchState(policy_id=policy.id, policy_version=policy.version, matched_at=utcnow()))
    if policy.status != PolicyStatus.published or not ctx.ids:
        return {"eligible": 0, "likely": 0}
    status = eligibility.evaluate_many(policy.rules, ctx.frame, today=ctx.today)
    states = eligibility.condition_states_many(policy.rules, ctx.frame, today=ctx.today)
    all_leaves = np.vstack(list(states.values())) if states else np.zeros((0, len(ctx.ids)), "int8")
    # Near misses: failed on exactly one condition and unknown on none.
    near = (status == 0) & ((all_leaves == 0).sum(axis=0) == 1) & ((all_leaves == 1).sum(axis=0) == 0)
    chosen = np.nonzero((status >= 1) | near)[0]
    if not len(chosen):
        return {"eligible": 0, "likely": 0}
    leaves = all_leaves[:, chosen]
    met_share = (leaves == 2).mean(axis=0) if len(states) else np.ones(len(chosen))
    ptags = _policy_tags(policy, ctx.vocab)
    pvec = matcher.encode([policy_embedding_text(policy)], "passage")[0]
    cosines = ctx.vectors[chosen] @ pvec
    embedded = np.abs(ctx.vectors[chosen]).sum(axis=1) > 0
    w = matcher.weights
    now = utcnow()
    rows = []
    verdicts = {2: ELIGIBLE, 1: LIKELY, 0: INELIGIBLE}
    for k, i in enumerate(chosen):
        verdict = verdicts[int(status[i])]
        if not len(states):
            rscore = NO_CONDITIONS_SCORE
        else:
            rscore = {ELIGIBLE: 1.0, LIKELY: round(0.5 + 0.3 * float(met_share[k]), 4)}.get(
                verdict, round(0.2 * float(met_share[k]), 4)
            )
        tscore, shared = tag_score(ptags, ctx.firm_tags[i], ctx.idf, ctx.kinds)
        sscore = semantic_score(float(cosines[k]) if embedded[k] else None, w)
        rows.append(
            {
                "enterprise_id": ctx.ids[i],
                "policy_id": policy.id,
                "policy_version": policy.version,
                "status": verdict,
                "score": round(w.rules * rscore + w.tags * tscore + w.semantic * sscore, 4),
                "rule_score": rscore,
                "tag_score": tscore,
                "semantic_score": sscore,
                "similarity": float(cosines[k]) if embedded[k] else None,
                "shared_tags": shared,
                "condition_states": leaves[:, k].tolist(),
                "computed_at": now,
            }
        )
    for chunk in range(0, len(rows), 5000):
        db.execute(insert(MatchResult), rows[chunk : chunk + 5000])
    return {"eligible": int((status == 2).sum()), "likely": int((status == 1).sum())}


def match_all(
    *,
    db: Session,
    matcher: Matcher,
    today: dt.date | None = None,
    policy_ids: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Re-match every published policy (or the given ones) against every firm; return totals."""
    today = today or dt.date.today()
    totals = {"policies": 0, "eligible": 0, "likely": 0}
    if policy_ids is not None and not policy_ids:
        return totals
    sync_all_enterprise_tags(db=db, today=today)
    ctx = batch_context(db=db, matcher=matcher, today=today)
    q = select(Policy).where(Policy.status == PolicyStatus.published)
    if policy_ids is not None:
        q = q.where(Policy.id.in_(list(policy_ids)))
    for policy in db.scalars(q.options(selectinload(Policy.tags), selectinload(Policy.categories)).order_by(Policy.id)):
        counts = match_policy(db=db, matcher=matcher, policy=policy, ctx=ctx)
        totals["policies"] += 1
        totals["eligible"] += counts["eligible"]
        totals["likely"] += counts["likely"]
        if progress:
            progress(1)
    # Results of policies that are no longer published go with them.
    db.execute(
        delete(MatchResult).where(
            MatchResult.policy_id.in_(select(Policy.id).where(Policy.status != PolicyStatus.published))
        )
    )
    return totals


def rematch(
    *,
    database: Any,
    matcher: Matcher,
    all_policies: bool = False,
    today: dt.date | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> dict[str, int]:
    """Bring stored results up to date in short transactions, so the API stays responsive meanwhile.

    Embedding firm profiles (slow) happens with no write transaction open; each policy's results
    are replaced in a transaction of their own; then firms whose profile changed are refreshed one
    by one. A failing firm or policy is logged and left for the next run.
    """
    today = today or dt.date.today()
    with database.session() as db:
        matcher.policy_index(db)
        matcher.enterprise_index(db, progress=(lambda k: progress("firms", k, None)) if progress else None)
        policy_ids = (
            list(db.scalars(select(Policy.id).where(Policy.status == PolicyStatus.published)))
            if all_policies
            else changed_policy_ids(db=db)
        )
    totals = {"policies": 0, "eligible": 0, "likely": 0, "firms": 0, "failed": 0}
    if policy_ids:
        with database.session() as db:
            sync_all_enterprise_tags(db=db, today=today)
        with database.session() as db:
            ctx = batch_context(db=db, matcher=matcher, today=today)
        for pid in policy_ids:
            try:
                with database.session() as db:
                    policy = db.get(Policy, pid)
                    if policy is None:
                        continue
                    counts = match_policy(db=db, matcher=matcher, policy=policy, ctx=ctx)
            except Exception:
                log.exception("matching policy %s failed; it will be retried on the next run", pid)
                totals["failed"] += 1
                continue
            totals["policies"] += 1
            totals["eligible"] += counts["eligible"]
            totals["likely"] += counts["likely"]
            if progress:
                progress("policies", 1, len(policy_ids))
    with database.session() as db:
        stale = changed_enterprise_ids(db=db)
    for eid in stale:
        try:
            with database.session() as db:
                recommend(db=db, matcher=matcher, enterprise_id=eid, today=today)
            totals["firms"] += 1
        except Exception:
            log.exception("re-matching enterprise %s failed; it will be retried on the next run", eid)
            totals["failed"] += 1
    return totals


def published_count(*, db: Session) -> int:
    """Return how many policies are published."""
    return db.scalar(select(func.count()).select_from(Policy).where(Policy.status == PolicyStatus.published)) or 0


def changed_policy_ids(*, db: Session) -> list[int]:
    """Published policies edited since they were last matched, or never matched."""
    rows = db.execute(
        select(Policy.id)
        .outerjoin(PolicyMatchState, PolicyMatchState.policy_id == Policy.id)
        .where(
            Policy.status == PolicyStatus.published,
            or_(PolicyMatchState.matched_at.is_(None), PolicyMatchState.matched_at < Policy.updated_at),
        )
        .order_by(Policy.id)
    )
    return [r[0] for r in rows]


def changed_enterprise_ids(*, db: Session) -> list[int]:
    """Firms whose profile changed after their results were computed."""
    latest = (
        select(MatchResult.enterprise_id, func.max(MatchResult.computed_at).label("at"))
        .group_by(MatchResult.enterprise_id)
        .subquery()
    )
    rows = db.execute(
        select(Enterprise.id)
        .join(latest, latest.c.enterprise_id == Enterprise.id)
        .where(latest.c.at < Enterprise.profile_updated_at)
    )
    return [r[0] for r in rows]


def eligible_enterprises(
    *, db: Session, matcher: Matcher, policy_id: int, statuses: Sequence[str], offset: int, limit: int
) -> tuple[Policy, list[tuple[MatchResult, Enterprise]], int]:
    """Return a policy's eligible (and likely) firms, best first, computing them when stale."""
    policy = db.get(Policy, policy_id)
    if policy is None:
        raise NotFound("政策不存在", code="policy_not_found")
    ensure_policy_results(db=db, matcher=matcher, policy=policy)
    q = (
        select(MatchResult, Enterprise)
        .join(Enterprise, Enterprise.id == MatchResult.enterprise_id)
        .where(MatchResult.policy_id == policy_id, MatchResult.status.in_(list(statuses)))
    )
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.execute(
        q.order_by(MatchResult.status.asc(), MatchResult.score.desc(), Enterprise.id).offset(offset).limit(limit)
    )
    return policy, [(m, e) for m, e in rows], total


def ensure_policy_results(*, db: Session, matcher: Matcher, policy: Policy) -> None:
    """Re-match a policy against every firm when its stored results are older than it or than a profile."""
    latest = db.scalar(select(func.max(MatchResult.computed_at)).where(MatchResult.policy_id == policy.id))
    stale_firms = db.scalar(
        select(func.count())
        .select_from(Enterprise)
        .where(Enterprise.profile_updated_at > (latest or policy.updated_at))
    )
    if latest is None or latest < policy.updated_at or stale_firms:
        vocab = tags_mod.Vocabulary.from_db(db)
        for firm in db.scalars(select(Enterprise).where(Enterprise.profile_updated_at > (latest or policy.updated_at))):
            sync_enterprise_tags(db=db, enterprise=firm, vocab=vocab, today=dt.date.today())
        match_policy(db=db, matcher=matcher, policy=policy)


# ---------------------------------------------------------------- search


@dataclass
class SearchHit:
    policy: Policy
    score: float
    semantic: float | None
    keyword: bool


def search(
    *, db: Session, matcher: Matcher, q: str, limit: int = 10, region: str | None = None, today: dt.date | None = None
) -> list[SearchHit]:
    """Hybrid search over published policies: semantic neighbours fused with keyword hits (RRF)."""
    text = normalize(q)
    if not text:
        return []
    vocab = tags_mod.Vocabulary.from_db(db)
    # Abbreviations become full names for the embedder too (高企 → 高新技术企业).
    expanded = text + "".join(f" {name}" for name in vocab.find_in_text(text) if name not in text)
    index = matcher.policy_index(db)
    semantic: dict[int, tuple[int, float]] = {}
    if len(index):
        scores, ids = index.search(matcher.encode([expanded], "query"), min(len(index), 50))
        semantic = {
            int(i): (rank, float(s)) for rank, (s, i) in enumerate(zip(scores[0], ids[0], strict=True)) if i >= 0
        }
    keyword_hits, _ = catalog_service.list_policies(
        db=db, filters=PolicyFilters(q=text, region=region), actor=None, limit=50
    )
    keyword = {p.id: rank for rank, p in enumerate(keyword_hits)}
    fused: dict[int, float] = {}
    for pid, (rank, _) in semantic.items():
        fused[pid] = fused.get(pid, 0.0) + 1 / (60 + rank)
    for pid, rank in keyword.items():
        # Exact words are strong evidence in policy search; weight keyword ranks double.
        fused[pid] = fused.get(pid, 0.0) + 2 / (60 + rank)
    policies = {p.id: p for p in _load_policies(db, fused)}
    if region:
        allowed = {p.id for p in db.scalars(_open_policies_query(today or dt.date.today(), region))} | set(keyword)
        fused = {pid: s for pid, s in fused.items() if pid in allowed}
    ordered = sorted(fused.items(), key=lambda kv: -kv[1])[:limit]
    return [
        SearchHit(
            policy=policies[pid],
            score=round(score * 60, 4),
            semantic=semantic.get(pid, (None, None))[1],
            keyword=pid in keyword,
        )
        for pid, score in ordered
        if pid in policies and policies[pid].status == PolicyStatus.published
    ]


# ---------------------------------------------------------------- tag suggestions for curators


def suggest_policy_tags(*, db: Session, matcher: Matcher, policy_id: int) -> list[Any]:
    """Propose tags for a policy from its text, its rules and the trained classifier; return open ones."""
    from matcher.models import PolicyTagSuggestion

    policy = db.get(Policy, policy_id)
    if policy is None:
        raise NotFound("政策不存在", code="policy_not_found")
    vocab = tags_mod.Vocabulary.from_db(db)
    current = {t.name for t in policy.tags}
    candidates: dict[str, tuple[str, float]] = {}
    text = " ".join(filter(None, [policy.title, policy.summary, policy.interpretation]))
    for name in vocab.find_in_text(text):
        candidates[name] = ("keyword", 0.9)
    for name in tags_mod.policy_rule_tags(policy.rules, vocab):
        candidates[name] = ("rule", 1.0)
    tagger = matcher.tagger
    if tagger is not None:
        from matcher import tagger as tagger_mod

        for name, prob in tagger.suggest(tagger_mod.policy_input_text(policy)):
            if name in vocab.tags and name not in candidates:
                candidates[name] = ("classifier", round(prob, 3))
    existing = {
        s.tag_id: s for s in db.scalars(select(PolicyTagSuggestion).where(PolicyTagSuggestion.policy_id == policy.id))
    }
    for name, (source, score) in candidates.items():
        tag_id = vocab.tags[name].id
        if name in current or tag_id in existing:
            continue
        row = PolicyTagSuggestion(policy_id=policy.id, tag_id=tag_id, source=source, score=score)
        db.add(row)
        existing[tag_id] = row
    db.flush()
    names = {t.id: t for t in vocab.tags.values()}
    return [
        s
        for s in sorted(existing.values(), key=lambda s: (-s.score, s.id))
        if s.status == "pending" and names.get(s.tag_id) and names[s.tag_id].name not in current
    ]


def decide_tag_suggestion(*, db: Session, policy_id: int, suggestion_id: int, accept: bool, actor: Any) -> Any:
    """Accept (the tag is added to the policy, versioned if published) or reject a suggestion."""
    from catalog import service as catalog_service
    from catalog.schemas import PolicyUpdate
    from matcher.models import PolicyTagSuggestion

    row = db.get(PolicyTagSuggestion, suggestion_id)
    if row is None or row.policy_id != policy_id:
        raise NotFound("标签建议不存在", code="suggestion_not_found")
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    tag = db.get(Tag, row.tag_id)
    if accept and tag is not None and tag.name not in {t.name for t in policy.tags}:
        catalog_service.update_policy(
            db=db,
            policy_id=policy_id,
            policy_in=PolicyUpdate(tags=[t.name for t in policy.tags] + [tag.name], note=f"采纳标签建议：{tag.name}"),
            actor=actor,
        )
    row.status = "accepted" if accept else "rejected"
    row.decided_by_id = getattr(actor, "user_id", None)
    row.decided_at = utcnow()
    db.flush()
    return row


# ---------------------------------------------------------------- feedback (政企互动)

# ---------------------------------------------------------------- curators: rule preview and policy coverage

PREVIEW_STATUSES = {2: ELIGIBLE, 1: LIKELY, 0: INELIGIBLE}
_preview_lock = threading.Lock()
_preview_frames: dict[str, tuple[tuple[Any, ...], FactsFrame]] = {}


def _preview_frame(db: Session, today: dt.date) -> FactsFrame:
    """Return every firm's facts as a frame, rebuilt only when firms, profiles or firm tags changed."""
    count, latest = db.execute(select(func.count(), func.max(Enterprise.profile_updated_at))).one()
    tag_rows = db.scalar(select(func.count()).select_from(EnterpriseTag)) or 0
    signature = (count, latest, tag_rows, today)
    key = db.get_bind().engine.url.render_as_string(hide_password=True)
    with _preview_lock:
        cached = _preview_frames.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
    firms = list(
        db.scalars(select(Enterprise).options(selectinload(Enterprise.qualifications)).order_by(Enterprise.id))
    )
    tags_by_firm: dict[int, set[str]] = {}
    for eid, name in db.execute(
        select(EnterpriseTag.enterprise_id, Tag.name).join(Tag, Tag.id == EnterpriseTag.tag_id)
    ):
        tags_by_firm.setdefault(eid, set()).add(name)
    frame = FactsFrame.from_enterprises(firms, today, tags=tags_by_firm)
    with _preview_lock:
        _preview_frames[key] = (signature, frame)
    return frame


def preview_rules(*, db: Session, rules: Mapping[str, Any] | None, today: dt.date | None = None) -> dict[str, Any]:
    """Judge an unsaved rule tree against every firm and count the verdicts; nothing is written.

    Tag synonyms are resolved as saving would resolve them, and the tree is validated first: with
    errors the counts are None and ``errors`` lists them (field path and Chinese reason). The firm
    facts are the same the batch matcher uses (stored firm tags included), so the counts equal the
    eligible and likely lists the policy gets once it is saved and published.
    """
    today = today or dt.date.today()
    vocab = tags_mod.Vocabulary.from_db(db)
    canonical: dict[str, Any] | None = None
    if rules is not None:
        canonical = json.loads(json.dumps(rules))
        for cond in rules_mod.iter_conditions(canonical):
            if cond.get("op") in ("has_any", "has_all", "has_none") and isinstance(cond.get("value"), list):
                cond["value"] = [(vocab.resolve(v) or v) if isinstance(v, str) else v for v in cond["value"]]
    errors = rules_mod.validate_rules(canonical, known_tags=set(vocab.tags))
    out: dict[str, Any] = {
        "rules": canonical,
        "errors": [{"field": e.field, "reason": e.reason} for e in errors],
        "text": [],
        "total": None,
        ELIGIBLE: None,
        LIKELY: None,
        INELIGIBLE: None,
    }
    if errors:
        return out
    out["text"] = (
        rules_mod.describe_rules(canonical, region_name=codes.region_name, use_labels=False) if canonical else []
    )
    frame = _preview_frame(db, today)
    status = eligibility.evaluate_many(canonical, frame, today=today)
    out["total"] = int(frame.size)
    for code, name in PREVIEW_STATUSES.items():
        out[name] = int((status == code).sum())
    return out


def policy_coverage(*, db: Session, limit: int = 30, sample: int = 10) -> dict[str, Any]:
    """Return how far the published catalog reaches firms, from the stored match results.

    ``policies``: published policies with their eligible and likely firm counts, most eligible first
    (at most ``limit``); ``no_eligible``: matched published policies no firm is eligible for;
    ``unmatched``: policies not matched yet; ``firms_with_needs`` and ``needs_unmatched``: firms that
    wrote down needs, and those of them with no eligible or likely published policy, with a sample.
    """
    published = dict(db.execute(select(Policy.id, Policy.title).where(Policy.status == PolicyStatus.published)).all())
    counts: dict[int, dict[str, int]] = {pid: {ELIGIBLE: 0, LIKELY: 0} for pid in published}
    for pid, status, n in db.execute(
        select(MatchResult.policy_id, MatchResult.status, func.count())
        .where(MatchResult.status.in_([ELIGIBLE, LIKELY]))
        .group_by(MatchResult.policy_id, MatchResult.status)
    ):
        if pid in counts:
            counts[pid][status] = int(n)
    matched = set(db.scalars(select(PolicyMatchState.policy_id))) & set(published)
    rows = [
        {"policy_id": pid, "title": published[pid], "matched": pid in matched, **counts[pid]}
        for pid in sorted(published, key=lambda p: (-counts[p][ELIGIBLE], -counts[p][LIKELY], p))
    ]
    has_needs = and_(Enterprise.needs.is_not(None), func.length(func.trim(Enterprise.needs)) > 0)
    reached = exists().where(
        MatchResult.enterprise_id == Enterprise.id,
        MatchResult.status.in_([ELIGIBLE, LIKELY]),
        MatchResult.policy_id.in_(select(Policy.id).where(Policy.status == PolicyStatus.published)),
    )
    with_needs = db.scalar(select(func.count()).select_from(Enterprise).where(has_needs)) or 0
    unmatched_q = select(Enterprise.id, Enterprise.name, Enterprise.needs).where(has_needs, ~reached)
    needs_unmatched = db.scalar(select(func.count()).select_from(unmatched_q.subquery())) or 0
    examples = [
        {"enterprise_id": eid, "name": name, "needs": needs}
        for eid, name, needs in db.execute(unmatched_q.order_by(Enterprise.id).limit(sample))
    ]
    return {
        "published": len(published),
        "policies": rows[:limit],
        "no_eligible": [r for r in rows if r["matched"] and r[ELIGIBLE] == 0],
        "unmatched": [r for r in rows if not r["matched"]],
        "firms_with_needs": with_needs,
        "needs_unmatched": needs_unmatched,
        "needs_unmatched_sample": examples,
    }
