"""Dual tags (双向标签): one vocabulary for policies and enterprises, synonyms resolved.

Policies carry curated tags; suggestions come from keywords in their text, from their rules
(a `has_any` on 高新技术企业 implies that tag; a size condition implies size tags) and from the
trained classifier (matcher/tagger.py). Enterprises are tagged from attributes (size class,
industry code, qualifications, age, region, exports) and from keywords in their business scope,
products and needs. All text is normalised (NFKC, traditional → simplified) before matching.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import rules as rules_mod
from catalog.models import Tag
from core import codes
from core.text import normalize

# Single characters (穗, 莞) match inside unrelated words; keyword tagging needs two or more.
MIN_TERM_LENGTH = 2


@dataclass(frozen=True)
class TagInfo:
    """One tag of the vocabulary."""

    id: int
    name: str
    kind: str
    synonyms: tuple[str, ...] = ()


@dataclass
class Vocabulary:
    """The tag vocabulary with every name and synonym resolvable to its canonical tag."""

    tags: dict[str, TagInfo]
    terms: dict[str, str] = field(default_factory=dict)  # normalised term → canonical name

    def __post_init__(self) -> None:
        if not self.terms:
            for info in self.tags.values():
                for term in (info.name, *info.synonyms):
                    self.terms.setdefault(normalize(term).lower(), info.name)
        # Longest terms first, so 专精特新"小巨人"企业 wins over 专精特新 at the same place.
        self._keywords = sorted((t for t in self.terms if len(t) >= MIN_TERM_LENGTH), key=len, reverse=True)

    @classmethod
    def from_db(cls, db: Session) -> Vocabulary:
        """Load the vocabulary from the catalog's tag table."""
        return cls.from_tags(db.scalars(select(Tag)))

    @classmethod
    def from_tags(cls, tags: Iterable[Any]) -> Vocabulary:
        """Build the vocabulary from tag rows (anything with id, name, kind, synonyms)."""
        return cls(
            {t.name: TagInfo(id=t.id, name=t.name, kind=str(t.kind), synonyms=tuple(t.synonyms or ())) for t in tags}
        )

    def resolve(self, term: str) -> str | None:
        """Return the canonical tag name for a name, synonym or abbreviation (高企 → 高新技术企业)."""
        return self.terms.get(normalize(term).lower())

    def find_in_text(self, text: str | None) -> dict[str, list[str]]:
        """Return canonical tags whose name or synonym occurs in the text, with the matched terms."""
        found: dict[str, list[str]] = {}
        rest = normalize(text).lower()
        if not rest:
            return found
        for term in self._keywords:
            if term in rest:
                found.setdefault(self.terms[term], []).append(term)
                # Blank the match out so a shorter synonym inside it is not counted again.
                rest = rest.replace(term, " ")
        return found

    def kind_of(self, name: str) -> str | None:
        """Return a tag's kind."""
        info = self.tags.get(name)
        return info.kind if info else None

    def idf(self, document_tags: Iterable[set[str]]) -> dict[str, float]:
        """Return smoothed inverse document frequencies of tags over a set of tagged documents."""
        docs = list(document_tags)
        n = len(docs)
        counts: dict[str, int] = {}
        for tags in docs:
            for name in tags:
                counts[name] = counts.get(name, 0) + 1
        return {name: math.log((1 + n) / (1 + counts.get(name, 0))) + 1 for name in self.tags}


@cache
def attribute_map() -> dict[str, Any]:
    """Return the attribute → tag mapping shipped in matcher/data/attribute_tags.json."""
    return json.loads((Path(__file__).parent / "data" / "attribute_tags.json").read_text(encoding="utf-8"))


def _known(vocab: Vocabulary, names: Iterable[str]) -> set[str]:
    return {n for n in names if n in vocab.tags}


def enterprise_tags(facts: dict[str, Any], texts: Iterable[str | None], vocab: Vocabulary) -> dict[str, str]:
    """Tag an enterprise from its facts and free texts; return tag → why (Chinese)."""
    amap = attribute_map()
    out: dict[str, str] = {}
    size = facts.get("size_class")
    for name in _known(vocab, amap["size_classes"].get(size or "", [])):
        out[name] = "企业规模"
    industry = facts.get("industry_code") or ""
    for name, prefixes in amap["industry_prefixes"].items():
        if name in vocab.tags and industry and any(industry.startswith(p) for p in prefixes):
            out[name] = "所属行业"
    for name in _known(vocab, facts.get("qualifications") or ()):
        out[name] = "企业资质"
    region = facts.get("region_code")
    if region:
        for name, region_codes in amap["region_codes"].items():
            if name in vocab.tags and any(codes.region_contains(c, region) for c in region_codes):
                out[name] = "所在地区"
    years = facts.get("years_established")
    if years is not None:
        for stage in amap["stages_by_years"]:
            if stage["tag"] in vocab.tags and stage["min"] <= years < stage["max"]:
                out[stage["tag"]] = "成立年限"
    if (facts.get("export_revenue") or 0) > 0:
        for name in _known(vocab, amap["export_tags"]):
            out[name] = "有出口业务"
    for text in texts:
        for name in vocab.find_in_text(text):
            # Qualifications are facts to prove, not words to mention: never inferred from text.
            if name not in out and vocab.kind_of(name) != "qualification":
                out[name] = "经营范围或需求中提及"
    return out


class EnterpriseTagger:
    """`enterprise_tags` for many firms at once, with each part worked out once per distinct value.

    A firm's tags are the union of parts that each depend on one fact (size class, industry code,
    qualifications, region, age, exports) or one text; firms share most of those values, so each
    part is computed by `enterprise_tags` itself the first time a value is seen and reused after.
    Parts are merged in `enterprise_tags`' own order (a later attribute's reason replaces an earlier
    one; a text never replaces anything), so `tags(facts, texts)` equals `enterprise_tags(facts,
    texts, vocab)` for every firm (tests/matcher/test_firmtags.py holds them equal).
    """

    MAX_TEXTS = 200_000
    _FIELDS = ("size_class", "industry_code", "qualifications", "region_code", "years_established", "export_revenue")

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self._parts: dict[tuple[str, Any], dict[str, str]] = {}
        self._texts: dict[str | None, dict[str, str]] = {}

    def _part(self, field: str, value: Any) -> dict[str, str]:
        got = self._parts.get((field, value))
        if got is None:
            got = self._parts[(field, value)] = enterprise_tags({field: value}, (), self.vocab)
        return got

    def tags(self, facts: dict[str, Any], texts: Iterable[str | None]) -> dict[str, str]:
        """Return tag → why for one firm, exactly as `enterprise_tags` would."""
        out: dict[str, str] = {}
        for name in self._FIELDS:
            value = facts.get(name)
            if name == "qualifications":
                value = frozenset(value or ())
            elif name == "export_revenue":
                value = 1 if (value or 0) > 0 else 0
            out.update(self._part(name, value))
        for text in texts:
            found = self._texts.get(text)
            if found is None:
                if len(self._texts) >= self.MAX_TEXTS:
                    self._texts.clear()  # bounded memory over millions of firms
                found = self._texts[text] = enterprise_tags({}, (text,), self.vocab)
            for name, why in found.items():
                out.setdefault(name, why)
        return out


def policy_rule_tags(rules: dict[str, Any] | None, vocab: Vocabulary) -> set[str]:
    """Return tags implied by a policy's eligibility rules (qualifications, size, industry, region)."""
    amap = attribute_map()
    out: set[str] = set()
    for cond in rules_mod.iter_conditions(rules):
        op, value, fld = cond.get("op"), cond.get("value"), cond.get("field")
        values = value if isinstance(value, list) else [value]
        if fld in ("qualifications", "tags") and op in ("has_any", "has_all"):
            out |= _known(vocab, (v for v in values if isinstance(v, str)))
        elif fld == "size_class" and op in ("eq", "in"):
            for size in values:
                out |= _known(vocab, amap["size_classes"].get(size, [])[:1])
        elif fld == "industry_code" and op == "prefix":
            # A sector tag applies only when every allowed prefix lies inside that sector.
            for name, prefixes in amap["industry_prefixes"].items():
                if name in vocab.tags and values and all(any(str(v).startswith(p) for p in prefixes) for v in values):
                    out.add(name)
    return out


def policy_text_tags(title: str | None, summary: str | None, vocab: Vocabulary) -> set[str]:
    """Return tags whose names or synonyms occur in a policy's title or summary."""
    return set(vocab.find_in_text(f"{title or ''} {summary or ''}"))


def policy_tag_suggester(db: Session) -> Callable[[str, str, dict[str, Any] | None], list[str]]:
    """Tags for a policy being drafted from a document (intake): named in its title, or implied by its rules."""
    vocab = Vocabulary.from_db(db)

    def suggest(title: str, text: str, rules: dict[str, Any] | None) -> list[str]:
        return sorted(policy_text_tags(title, None, vocab) | policy_rule_tags(rules, vocab))

    return suggest
