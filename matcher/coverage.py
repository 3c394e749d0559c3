"""Curators' views of reach: the live count of firms an unsaved rule tree admits, and how far the
published catalog reaches firms (from the counts the worker keeps, not a scan of every match)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from catalog import rules as rules_mod
from catalog.models import Policy, PolicyStatus
from core import codes, jsonsafe
from matcher import eligibility
from matcher import tags as tags_mod
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY
from matcher.models import FirmMatch, PolicyMatchState
from profiles.models import Enterprise

PREVIEW_STATUSES = {2: ELIGIBLE, 1: LIKELY, 0: INELIGIBLE}


def preview_rules(
    *, db: Session, matcher: Any, rules: Mapping[str, Any] | None, today: dt.date | None = None
) -> dict[str, Any]:
    """Judge an unsaved rule tree against every firm and count the verdicts; nothing is written.

    Tag synonyms are resolved as saving would resolve them, and the tree is validated first: with
    errors the counts are None and ``errors`` lists them (field path and Chinese reason). The firm
    facts are the ones batch matching reads (stored firm tags included), so the counts equal the
    eligible and likely lists the policy gets once it is saved and published.
    """
    today = today or dt.date.today()
    vocab = tags_mod.Vocabulary.from_db(db)
    canonical: dict[str, Any] | None = None
    if rules is not None and jsonsafe.too_deep(rules):
        canonical = dict(rules)  # validate_rules reports the depth without walking it; nothing else touches it
    elif rules is not None:
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
    frame = matcher.facts.frame(db, today=today)
    status = eligibility.evaluate_many(canonical, frame, today=today)
    out["total"] = int(frame.size)
    for code, name in PREVIEW_STATUSES.items():
        out[name] = int((status == code).sum())
    return out


def policy_coverage(*, db: Session, limit: int = 30, sample: int = 10) -> dict[str, Any]:
    """Return how far the published catalog reaches firms, from the worker's counts.

    ``policies``: published policies with their eligible and likely firm counts, most eligible first
    (at most ``limit``); ``no_eligible``: matched published policies no firm is eligible for;
    ``unmatched``: policies not matched yet; ``firms_with_needs`` and ``needs_unmatched``: firms that
    wrote down needs, and those of them with no eligible or likely open policy, with a sample.
    """
    published = dict(
        db.execute(select(Policy.id, Policy.title).where(Policy.status == PolicyStatus.published)).tuples().all()
    )
    counts = {
        pid: (eligible, likely)
        for pid, eligible, likely in db.execute(
            select(PolicyMatchState.policy_id, PolicyMatchState.eligible, PolicyMatchState.likely)
        )
    }
    rows = [
        {
            "policy_id": pid,
            "title": published[pid],
            "matched": pid in counts,
            ELIGIBLE: counts.get(pid, (0, 0))[0],
            LIKELY: counts.get(pid, (0, 0))[1],
        }
        for pid in published
    ]
    rows.sort(key=lambda r: (-r[ELIGIBLE], -r[LIKELY], r["policy_id"]))
    has_needs = and_(Enterprise.needs.is_not(None), func.length(func.trim(Enterprise.needs)) > 0)
    reached = select(FirmMatch.enterprise_id).where(FirmMatch.eligible + FirmMatch.likely > 0)
    with_needs = db.scalar(select(func.count()).select_from(Enterprise).where(has_needs)) or 0
    unmatched_q = select(Enterprise.id, Enterprise.name, Enterprise.needs).where(
        has_needs, Enterprise.id.not_in(reached)
    )
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
