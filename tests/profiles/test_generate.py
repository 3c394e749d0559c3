"""Synthetic enterprises: determinism, realistic shape, consistent qualifications, demo and bulk loading."""

from __future__ import annotations

import collections
import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from catalog.models import Tag
from core import codes, migrate
from core.db import make_engine
from profiles import derived
from profiles.demo import load_demo_enterprises
from profiles.generate import (
    ABOVE_SCALE_MIN_REVENUE,
    ENTERPRISE_FIELDS,
    HNTE_MIN_RD_RATIO,
    TECH_SME_MAX_EMPLOYEES,
    TECH_SME_MAX_REVENUE,
    TRADES,
    generate_enterprises,
    resolve_qualification_names,
)
from profiles.models import Enterprise, EnterpriseQualification
from profiles.synth import synth_enterprises
from profiles.uscc import is_valid_credit_code
from tests import factories

TODAY = dt.date(2026, 11, 23)
TAXONOMY = Path(__file__).resolve().parents[2] / "catalog" / "demo_data" / "taxonomy.json"
QUALIFICATION_TAGS = [t for t in json.loads(TAXONOMY.read_text("utf-8"))["tags"] if t["kind"] == "qualification"]
QUALIFICATION_NAMES = [t["name"] for t in QUALIFICATION_TAGS]
TECH_OF = {t.code: t.tech for t in TRADES}


def _generate(count: int, seed: int = 42, **kw: Any) -> list[dict[str, Any]]:
    kw.setdefault("qualification_names", QUALIFICATION_NAMES)
    kw.setdefault("today", TODAY)
    return list(generate_enterprises(seed=seed, count=count, **kw))


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return _generate(5000)


def _holders(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in rows if any(q == name for q, _ in r["qualifications"])]


# ---------------------------------------------------------------- determinism


def test_same_seed_and_count_give_identical_rows() -> None:
    assert _generate(300, seed=7) == _generate(300, seed=7)


def test_different_seeds_give_different_rows() -> None:
    first, second = _generate(50, seed=1), _generate(50, seed=2)
    assert [r["credit_code"] for r in first] != [r["credit_code"] for r in second]


def test_start_index_yields_the_matching_slice_of_the_stream() -> None:
    whole = _generate(150, seed=3)
    assert _generate(50, seed=3, start_index=100) == whole[100:]


def test_today_anchors_every_date() -> None:
    later = _generate(200, seed=4, today=TODAY + dt.timedelta(days=365))
    now = _generate(200, seed=4)
    shifted = [
        (b["established_on"] - a["established_on"]).days
        for a, b in zip(now, later, strict=True)
        if a["established_on"] is not None
    ]
    assert set(shifted) == {365}


# ---------------------------------------------------------------- shape


def test_rows_carry_every_enterprise_column_and_qualifications(rows: list[dict[str, Any]]) -> None:
    columns = set(Enterprise.__table__.columns.keys())
    for row in rows[:50]:
        assert set(row) == set(ENTERPRISE_FIELDS) | {"qualifications"}
        assert set(ENTERPRISE_FIELDS) <= columns


def test_credit_codes_are_valid_and_unique_over_5000_rows(rows: list[dict[str, Any]]) -> None:
    issued = [r["credit_code"] for r in rows]
    assert len(set(issued)) == len(issued) == 5000
    assert all(is_valid_credit_code(code) for code in issued)
    assert all(r["credit_code"][2:8] == r["region_code"] for r in rows)


def test_names_are_unique_and_name_the_region(rows: list[dict[str, Any]]) -> None:
    names = [r["name"] for r in rows]
    assert len(set(names)) == len(names)
    zhongshan = [r["name"] for r in rows if r["region_code"] == "442000"]
    assert all(n.startswith(("中山市", "广东")) for n in zhongshan)
    assert all(n.endswith("公司") for n in names)


def test_industry_and_region_codes_exist_in_the_code_tables(rows: list[dict[str, Any]]) -> None:
    industries = {r["code"] for r in codes.list_industries()}
    assert {r["industry_code"] for r in rows} <= industries
    assert all(codes.region_contains("440000", r["region_code"]) for r in rows)


def test_zhongshan_holds_about_45_percent_of_firms(rows: list[dict[str, Any]]) -> None:
    share = sum(r["region_code"] == "442000" for r in rows) / len(rows)
    assert 0.40 <= share <= 0.50


def test_size_classes_are_skewed_to_small_and_micro(rows: list[dict[str, Any]]) -> None:
    sizes = collections.Counter(r["size_class"] for r in rows if r["size_class"])
    assert (sizes["micro"] + sizes["small"]) / sum(sizes.values()) >= 0.70
    assert sizes["medium"] > 0 and sizes["large"] > 0


def test_headcount_is_mostly_under_100_with_a_few_giants(rows: list[dict[str, Any]]) -> None:
    staff = [r["employees"] for r in rows if r["employees"] is not None]
    assert 0.75 <= sum(e < 100 for e in staff) / len(staff) <= 0.92
    assert 0 < sum(e > 1000 for e in staff) <= 0.01 * len(staff)


def test_rd_ratio_stays_within_15_percent_and_is_higher_in_tech_industries(rows: list[dict[str, Any]]) -> None:
    ratios = [r["rd_ratio"] for r in rows if r["rd_ratio"] is not None]
    assert max(ratios) <= 15.0 + 0.01
    tech = [r["rd_ratio"] or 0 for r in rows if r["industry_code"][:3] in ("C39", "I65", "M73")]
    other = [r["rd_ratio"] or 0 for r in rows if r["industry_code"][0] in "FHLEG"]
    assert sum(tech) / len(tech) > 3 * (sum(other) / len(other))


def test_credit_standing_is_mostly_good_with_about_one_percent_dishonest(rows: list[dict[str, Any]]) -> None:
    standing = collections.Counter(r["credit_standing"] for r in rows if r["credit_standing"])
    total = sum(standing.values())
    assert standing["good"] / total >= 0.85
    assert 0.003 <= standing["dishonest"] / total <= 0.025


def test_some_manufacturers_export(rows: list[dict[str, Any]]) -> None:
    makers = [r for r in rows if r["industry_code"][0] == "C" and r["export_revenue"] is not None]
    share = sum(r["export_revenue"] > 0 for r in makers) / len(makers)
    assert 0.08 <= share <= 0.25


def test_about_a_fifth_of_profiles_miss_some_fields(rows: list[dict[str, Any]]) -> None:
    incomplete = [r for r in rows if r["missing_fields"]]
    assert 0.12 <= len(incomplete) / len(rows) <= 0.30
    assert {f for r in incomplete for f in r["missing_fields"]} >= {"total_assets", "rd_expense", "needs"}
    assert all(r["completeness"] < 100 for r in incomplete)


def test_derived_columns_match_profiles_derived(rows: list[dict[str, Any]]) -> None:
    for row in rows[:1000]:
        shadow = SimpleNamespace(**row)
        derived.refresh(shadow)  # type: ignore[arg-type]
        assert (row["size_class"], row["rd_ratio"], row["completeness"], row["missing_fields"]) == (
            shadow.size_class,
            shadow.rd_ratio,
            shadow.completeness,
            shadow.missing_fields,
        )


def test_texts_are_filled_from_the_phrase_banks(rows: list[dict[str, Any]]) -> None:
    complete = [r for r in rows if not r["missing_fields"]]
    assert all(r["business_scope"].startswith("一般项目：") for r in complete)
    assert len({r["needs"] for r in complete}) > 500
    lighting = [r for r in rows if r["industry_code"] == "C387" and r["products"]]
    assert lighting and all(any(w in r["products"] for w in ("灯", "照明")) for r in lighting)


# ---------------------------------------------------------------- qualifications


def test_every_high_tech_enterprise_spends_at_least_3_percent_on_rd(rows: list[dict[str, Any]]) -> None:
    holders = _holders(rows, "高新技术企业")
    assert len(holders) > 50
    assert all(r["rd_ratio"] is not None and r["rd_ratio"] >= HNTE_MIN_RD_RATIO for r in holders)
    assert all(r["established_on"] <= TODAY - dt.timedelta(days=365) for r in holders)


def test_tech_smes_are_small_tech_firms(rows: list[dict[str, Any]]) -> None:
    holders = _holders(rows, "科技型中小企业")
    assert holders
    for r in holders:
        assert TECH_OF[r["industry_code"]] in ("high", "mid")
        assert r["employees"] <= TECH_SME_MAX_EMPLOYEES and r["annual_revenue"] <= TECH_SME_MAX_REVENUE
        assert r["rd_ratio"] >= 4.0


def test_above_scale_industrial_firms_are_industrial_with_20_million_revenue(rows: list[dict[str, Any]]) -> None:
    holders = _holders(rows, "规模以上工业企业")
    assert holders
    assert all(r["industry_code"][0] in "BCD" and r["annual_revenue"] >= ABOVE_SCALE_MIN_REVENUE for r in holders)
    assert all(until is None for r in holders for q, until in r["qualifications"] if q == "规模以上工业企业")


def test_specialised_smes_are_manufacturers_and_little_giants_are_specialised_first() -> None:
    many = _generate(20000, seed=11)
    specialised = _holders(many, "专精特新中小企业")
    assert specialised
    assert all(r["industry_code"][0] == "C" and r["size_class"] in ("medium", "small") for r in specialised)
    giants = _holders(many, "专精特新“小巨人”企业")
    assert all(r in specialised for r in giants)


def test_agricultural_leaders_farm_or_process_food(rows: list[dict[str, Any]]) -> None:
    many = rows + _generate(5000, seed=12)
    assert all(
        r["industry_code"][0] == "A" or r["industry_code"] in ("C13", "C14")
        for r in _holders(many, "农业产业化龙头企业")
    )


def test_some_qualifications_have_expired(rows: list[dict[str, Any]]) -> None:
    dated = [until for r in rows for _, until in r["qualifications"] if until is not None]
    expired = sum(until < TODAY for until in dated)
    assert 0 < expired < len(dated) / 2


def test_only_the_given_qualification_names_are_granted() -> None:
    granted = {
        q for r in _generate(2000, qualification_names=["高新技术企业", "不存在的资质"]) for q, _ in r["qualifications"]
    }
    assert granted == {"高新技术企业"}


def test_qualification_names_match_whatever_quotes_the_vocabulary_uses() -> None:
    resolved = resolve_qualification_names(['专精特新"小巨人"企业', "规模以上工业企业", "别的标签"])
    assert resolved == {"little_giant": '专精特新"小巨人"企业', "above_scale_industry": "规模以上工业企业"}


# ---------------------------------------------------------------- loading


def test_synth_loads_enterprises_and_qualifications_in_batches(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'synth.db'}"
    migrate.upgrade(url=url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(Tag.__table__),
                [{"name": t["name"], "kind": "qualification", "synonyms": t["synonyms"]} for t in QUALIFICATION_TAGS],
            )
        expected_quals = sum(len(r["qualifications"]) for r in _generate(2000, seed=5))
        seen: list[int] = []

        inserted = synth_enterprises(
            engine=engine, count=2000, seed=5, batch_size=700, progress=seen.append, today=TODAY
        )

        assert inserted == 2000 and seen == [700, 1400, 2000]
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Enterprise.__table__)) == 2000
            assert conn.scalar(select(func.count()).select_from(EnterpriseQualification.__table__)) == expected_quals
            assert conn.scalar(select(func.min(Enterprise.id))) == 1
            assert conn.scalar(select(func.max(Enterprise.id))) == 2000
            assert conn.scalar(select(func.count()).where(Enterprise.size_class.is_(None))) < 200

        # Loading the same seed again must reissue every clashing credit code instead of failing.
        synth_enterprises(engine=engine, count=500, seed=5, today=TODAY)
        with engine.connect() as conn:
            assert conn.scalar(select(func.count(func.distinct(Enterprise.credit_code)))) == 2500
    finally:
        engine.dispose()


def test_demo_enterprises_are_added_with_their_qualifications(db: Session) -> None:
    for name in ("高新技术企业", "规模以上工业企业", "科技型中小企业"):
        factories.make_tag(db, name=name, kind="qualification")

    assert load_demo_enterprises(db=db, count=300, seed=9, today=TODAY) == 300

    assert db.scalar(select(func.count()).select_from(Enterprise)) >= 300
    holders = db.scalars(select(EnterpriseQualification).join(Tag).where(Tag.name == "规模以上工业企业")).all()
    assert holders and all(q.enterprise.annual_revenue >= ABOVE_SCALE_MIN_REVENUE for q in holders)
