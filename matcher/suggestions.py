"""Tag suggestions for curators: from a policy's words, its rules and the trained tagger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import service as catalog_service
from catalog.models import Policy, Tag
from catalog.schemas import PolicyUpdate
from core.db import utcnow
from core.errors import NotFound
from matcher import tagger as tagger_mod
from matcher import tags as tags_mod
from matcher.models import PolicyTagSuggestion


@dataclass(frozen=True)
class Suggestion:
    """A tag proposed for a policy; its id is the tag's, so deciding needs nothing stored beforehand."""

    id: int
    tag_id: int
    tag: str
    kind: str
    source: str  # keyword / rule / classifier
    score: float
    status: str = "pending"


def suggest_policy_tags(*, db: Session, matcher: Any, policy_id: int) -> list[Suggestion]:
    """Propose tags for a policy from its text, its rules and the trained classifier (reads only).

    Tags the policy carries and tags a curator already rejected are left out.
    """
    policy = db.get(Policy, policy_id)
    if policy is None:
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    vocab = tags_mod.Vocabulary.from_db(db)
    current = {t.name for t in policy.tags}
    decided = set(db.scalars(select(PolicyTagSuggestion.tag_id).where(PolicyTagSuggestion.policy_id == policy.id)))
    candidates: dict[str, tuple[str, float]] = {}
    text = " ".join(filter(None, [policy.title, policy.summary, policy.interpretation]))
    for name in vocab.find_in_text(text):
        candidates[name] = ("keyword", 0.9)
    for name in tags_mod.policy_rule_tags(policy.rules, vocab):
        candidates[name] = ("rule", 1.0)
    tagger = matcher.tagger
    if tagger is not None:
        for name, prob in tagger.suggest(tagger_mod.policy_input_text(policy)):
            if name in vocab.tags and name not in candidates:
                candidates[name] = ("classifier", round(prob, 3))
    out = [
        Suggestion(vocab.tags[name].id, vocab.tags[name].id, name, vocab.tags[name].kind, source, score)
        for name, (source, score) in candidates.items()
        if name not in current and vocab.tags[name].id not in decided
    ]
    return sorted(out, key=lambda s: (-s.score, s.id))


def decide_tag_suggestion(*, db: Session, policy_id: int, suggestion_id: int, accept: bool, actor: Any) -> Suggestion:
    """Accept (the tag is added to the policy, versioned if published) or reject a suggested tag; either
    way the decision is remembered so the tag is not proposed again."""
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    tag = db.get(Tag, suggestion_id)
    if tag is None:
        raise NotFound("标签建议不存在", code="matcher.suggestion_not_found")
    if accept and tag.name not in {t.name for t in policy.tags}:
        catalog_service.update_policy(
            db=db,
            policy_id=policy_id,
            policy_in=PolicyUpdate(tags=[t.name for t in policy.tags] + [tag.name], note=f"采纳标签建议：{tag.name}"),
            actor=actor,
        )
    row = db.scalar(
        select(PolicyTagSuggestion).where(
            PolicyTagSuggestion.policy_id == policy_id, PolicyTagSuggestion.tag_id == tag.id
        )
    )
    if row is None:
        row = PolicyTagSuggestion(policy_id=policy_id, tag_id=tag.id, source="curator", score=1.0)
        db.add(row)
    row.status = "accepted" if accept else "rejected"
    row.decided_by_id = getattr(actor, "user_id", None)
    row.decided_at = utcnow()
    db.flush()
    return Suggestion(tag.id, tag.id, tag.name, str(tag.kind), row.source, row.score, row.status)
