"""The score of a policy for a firm: a weighted blend of rule evidence, shared tags, semantic
similarity and urgency, with every component returned so a firm can see why."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.config import Settings
from matcher.eligibility import ELIGIBLE, LIKELY, MET, PolicyVerdict


def _default(name: str) -> Any:
    # One source of truth for the defaults: the settings.
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class Weights:
    """How much each component counts; from settings, tunable per site."""

    rules: float = _default("weight_rules")
    tags: float = _default("weight_tags")
    semantic: float = _default("weight_semantic")
    urgency: float = _default("weight_urgency")
    urgency_days: int = _default("urgency_days")
    semantic_floor: float = _default("semantic_floor")
    semantic_ceiling: float = _default("semantic_ceiling")

    @classmethod
    def from_settings(cls, settings: Settings) -> Weights:
        """Read the weights from settings."""
        return cls(
            rules=settings.weight_rules,
            tags=settings.weight_tags,
            semantic=settings.weight_semantic,
            urgency=settings.weight_urgency,
            urgency_days=settings.urgency_days,
            semantic_floor=settings.semantic_floor,
            semantic_ceiling=settings.semantic_ceiling,
        )


@dataclass
class Components:
    """The parts of a score, each in [0, 1], and the adjustment from feedback."""

    rules: float
    tags: float
    semantic: float
    urgency: float
    adjustment: float = 0.0
    shared_tags: list[str] = field(default_factory=list)

    def score(self, w: Weights) -> float:
        """Blend the components into one score."""
        return round(
            w.rules * self.rules
            + w.tags * self.tags
            + w.semantic * self.semantic
            + w.urgency * self.urgency
            + self.adjustment,
            4,
        )


# A policy with no computable conditions is "eligible" for everyone, which says nothing about fit.
NO_CONDITIONS_SCORE = 0.7


def rule_score(verdict: PolicyVerdict) -> float:
    """Score rule evidence: eligible 1; likely 0.5–0.8 by the share of conditions met; ineligible ≤ 0.2."""
    if not verdict.conditions:
        return NO_CONDITIONS_SCORE
    total = len(verdict.conditions)
    met = sum(1 for c in verdict.conditions if c.state == MET) / total
    if verdict.status == ELIGIBLE:
        return 1.0
    if verdict.status == LIKELY:
        return round(0.5 + 0.3 * met, 4)
    return round(0.2 * met, 4)


# Sharing an industry, a qualification or a wanted benefit says much; sharing a size class, a life
# stage or a region says little (rules already check those), so those kinds count for less.
KIND_WEIGHTS = {"industry": 1.0, "qualification": 1.0, "benefit": 1.0, "size": 0.5, "stage": 0.3, "region": 0.3}


def tag_score(
    policy_tags: set[str], firm_tags: set[str], idf: Mapping[str, float], kinds: Mapping[str, str] | None = None
) -> tuple[float, list[str]]:
    """Return the IDF- and kind-weighted share of the policy's tags the firm carries, and the shared tags."""
    if not policy_tags:
        return 0.0, []

    def weight(tag: str) -> float:
        return idf.get(tag, 1.0) * KIND_WEIGHTS.get((kinds or {}).get(tag, ""), 1.0)

    shared = sorted(policy_tags & firm_tags, key=lambda t: (-weight(t), t))  # ties by name, not set order
    total = sum(weight(t) for t in policy_tags)
    return round(sum(weight(t) for t in shared) / total, 4), shared


def semantic_score(cosine: float | None, w: Weights) -> float:
    """Map a cosine similarity onto [0, 1] between the embedder's unrelated and close levels."""
    if cosine is None:
        return 0.0
    span = max(w.semantic_ceiling - w.semantic_floor, 1e-6)
    return round(min(1.0, max(0.0, (cosine - w.semantic_floor) / span)), 4)


def urgency_score(apply_end_on: dt.date | None, today: dt.date, w: Weights) -> float:
    """Score how soon an open application window closes: 1 within a week, falling to 0 at urgency_days."""
    if apply_end_on is None:
        return 0.0
    days = (apply_end_on - today).days
    if days < 0:
        return 0.0
    if days <= 7:
        return 1.0
    if days >= w.urgency_days:
        return 0.0
    return round(1 - (days - 7) / max(w.urgency_days - 7, 1), 4)
