"""Firms' tags derived in bulk (matcher/firmtags.py: Core reads, memoised parts, COPY or executemany)
equal the scalar path — `tags.enterprise_tags` on each firm's ORM-loaded facts — firm by firm."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import demo
from catalog.models import Tag
from matcher import eligibility, firmtags
from matcher import tags as tags_mod
from matcher.models import EnterpriseTag, FirmTagState
from profiles.demo import load_demo_enterprises
from profiles.models import Enterprise

TODAY = dt.date(2026, 12, 6)


def _population(db: Session, count: int) -> list[Enterprise]:
    """Generated firms, some with the edge values tagging treats specially (no exports, no age, no industry)."""
    demo.load_taxonomy(db=db)
    load_demo_enterprises(db=db, count=count, seed=11, today=TODAY)
    db.flush()
    firms = list(db.scalars(select(Enterprise).order_by(Enterprise.id)))
    for k, firm in enumerate(firms):
        if k % 7 == 0:
            firm.export_revenue = 0
        if k % 11 == 0:
            firm.export_revenue = None
        if k % 13 == 0:
            firm.established_on = None
        if k % 17 == 0:
            firm.industry_code = None
        if k % 19 == 0:
            firm.business_scope = firm.products = firm.needs = None
    db.flush()
    return firms


def _scalar(firm: Enterprise, vocab: tags_mod.Vocabulary, today: dt.date) -> dict[str, str]:
    facts = eligibility.profile_facts(firm, today)
    return tags_mod.enterprise_tags(facts, (firm.business_scope, firm.products, firm.needs), vocab)


# Two days: on the later one some qualifications have expired and every firm is older.
@pytest.mark.parametrize("today", [TODAY, TODAY + dt.timedelta(days=3 * 365)])
def test_bulk_tags_equal_the_scalar_path_and_are_stored(db: Session, today: dt.date) -> None:
    firms = _population(db, 1_000)  # > 900: SQLite reads and deletes in several parts
    vocab = tags_mod.Vocabulary.from_db(db)
    expected = {firm.id: _scalar(firm, vocab, today) for firm in firms}
    assert sum(len(t) for t in expected.values()) > 2 * len(firms)  # a population that carries tags
    assert any(why == "经营范围或需求中提及" for t in expected.values() for why in t.values())
    assert any(why == "企业资质" for t in expected.values() for why in t.values())

    derived = firmtags.sync(db, [f.id for f in firms], today=today)

    assert derived == expected
    stored: dict[int, dict[str, str]] = {}
    for eid, name, why in db.execute(
        select(EnterpriseTag.enterprise_id, Tag.name, EnterpriseTag.reason).join(Tag, Tag.id == EnterpriseTag.tag_id)
    ):
        stored.setdefault(eid, {})[name] = why
    assert stored == {eid: t for eid, t in expected.items() if t}
    states = db.scalars(select(FirmTagState.vocabulary)).all()
    assert len(states) == len(firms) and set(states) == {firmtags.vocabulary_signature(vocab)}

    # Derived again (a changed vocabulary, a re-run): the rows are replaced, never duplicated.
    again = firmtags.sync(db, [f.id for f in firms[:50]], today=today)
    assert again == {f.id: expected[f.id] for f in firms[:50]}
    assert len(db.scalars(select(FirmTagState.enterprise_id)).all()) == len(firms)


def test_tagger_memo_never_changes_a_firm_s_tags() -> None:
    """Memoised parts reused across firms give each firm exactly its own tags, in any order of firms."""
    vocab = tags_mod.Vocabulary.from_tags(
        [
            type("T", (), {"id": i, "name": n, "kind": k, "synonyms": s})
            for i, (n, k, s) in enumerate(
                [
                    ("高新技术企业", "qualification", ["高企"]),
                    ("小微企业", "size", []),
                    ("中小企业", "size", []),
                    ("制造业", "industry", []),
                    ("外贸进出口", "topic", ["出口"]),
                    ("广州市", "region", []),
                    ("初创期", "stage", []),
                    ("成熟期", "stage", ["老字号"]),
                ],
                start=1,
            )
        ]
    )
    tagger = tags_mod.EnterpriseTagger(vocab)
    cases = [
        (
            {"size_class": "micro", "industry_code": "C3411", "qualifications": frozenset({"高新技术企业"})},
            ("出口高企",),
        ),
        ({"size_class": "small", "export_revenue": 5, "region_code": "440100", "years_established": 1}, (None, "")),
        ({"export_revenue": 0, "region_code": "110000", "years_established": 30}, ("做出口", "外贸出口", "老字号")),
        ({"qualifications": frozenset({"未知资质"}), "industry_code": ""}, ("高新技术企业申报",)),
    ]
    reasons = set()
    for facts, texts in [*cases, *reversed(cases), *cases]:
        got = tagger.tags(facts, texts)
        assert got == tags_mod.enterprise_tags(facts, texts, vocab)
        reasons |= set(got.values())
    # Every part fired somewhere, and a text never overrode an attribute (外贸进出口 stays 有出口业务).
    assert reasons == {"企业规模", "所属行业", "企业资质", "所在地区", "成立年限", "有出口业务", "经营范围或需求中提及"}
    assert tagger.tags(cases[1][0], ("出口",))["外贸进出口"] == "有出口业务"
