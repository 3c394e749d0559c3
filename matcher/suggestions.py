"""Tag suggestions for curators: from a policy's words, its rules and the trained tagger."""

from __future__ import annotations

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


def suggest_policy_tags(*, db: Session, matcher: Any, policy_id: int) -> list[Any]:
    """Propose tags for a policy from its text, its rules and the trained classifier; return open ones."""
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
