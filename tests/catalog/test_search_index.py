"""The catalog's Chinese keyword index (FTS5 trigram on SQLite, pg_trgm on PostgreSQL), on real databases."""

from __future__ import annotations

from sqlalchemy import text

from catalog import search_index
from catalog import service as catalog_service
from catalog.schemas import PolicyUpdate
from tests.factories import make_policy


def _ids(db, query: str, **alts) -> list[int]:  # type: ignore[no-untyped-def]
    terms = search_index.split_query(query, alternatives=alts or None)
    return [h.policy_id for h in search_index.search(db, terms) if h.coverage >= 0.5 or h.phrase >= 4]


def test_backend_is_the_real_index_on_each_database(db) -> None:  # type: ignore[no-untyped-def]
    expected = {"sqlite": "fts5", "postgresql": "pg_trgm"}[db.bind.dialect.name]
    assert search_index.backend(db) == expected


def test_chinese_sentence_without_spaces_finds_the_policy_and_ranks_the_closest_first(db) -> None:  # type: ignore[no-untyped-def]
    grant = make_policy(
        db,
        publish=True,
        title="失业保险稳岗返还",
        summary="参保企业上年度未裁员或裁员率不高于控制目标的，按缴费的一定比例返还失业保险费。",
    )
    other = make_policy(
        db, publish=True, title="小微企业创业担保贷款贴息", summary="小微企业申请创业担保贷款的，财政给予贴息。"
    )
    hits = _ids(db, "企业没有裁员能申请失业保险返还吗")
    assert hits[:1] == [grant.id]
    assert other.id not in hits


def test_index_follows_inserts_edits_and_deletes_through_the_triggers(db) -> None:  # type: ignore[no-untyped-def]
    policy = make_policy(
        db, publish=True, title="首台套重大技术装备保险补偿", summary="装备制造企业投保综合险给予保费补贴。"
    )
    db.flush()
    assert policy.id in _ids(db, "重大技术装备保险补偿")
    catalog_service.update_policy(
        db=db, policy_id=policy.id, policy_in=PolicyUpdate(title="首批次新材料应用保险补偿"), actor=None
    )
    db.flush()
    assert policy.id not in _ids(db, "重大技术装备")
    assert policy.id in _ids(db, "新材料应用保险")
    # Full text is indexed too: a clause deep in the text finds its policy.
    db.execute(
        text("UPDATE policy SET full_text = :t WHERE id = :i"),
        {"t": "第九条 保费补贴比例为百分之八十。", "i": policy.id},
    )
    assert policy.id in _ids(db, "保费补贴比例为百分之八十")
    db.execute(text("DELETE FROM policy_region WHERE policy_id = :i"), {"i": policy.id})
    db.execute(text("DELETE FROM policy WHERE id = :i"), {"i": policy.id})
    assert _ids(db, "新材料应用保险") == []
    if db.bind.dialect.name == "sqlite":
        # The external-content table agrees with its content after the triggers ran.
        db.execute(text("INSERT INTO policy_fts(policy_fts, rank) VALUES ('integrity-check', 1)"))


def test_short_queries_and_abbreviations_fall_back_to_like_and_full_names(db) -> None:  # type: ignore[no-untyped-def]
    hi_tech = make_policy(db, publish=True, title="高新技术企业认定奖励", summary="首次通过认定的企业给予一次性奖励。")
    jobs = make_policy(db, publish=True, title="稳岗补贴申领", summary="稳岗补贴按规定发放。")
    assert _ids(db, "稳岗") == [jobs.id]
    assert _ids(db, "高企", 高企=["高新技术企业"]) == [hi_tech.id]
    assert _ids(db, "高企") == []  # without the expansion two characters match nothing


def test_nonsense_and_drafts_find_nothing(db) -> None:  # type: ignore[no-untyped-def]
    make_policy(db, publish=True, title="中小企业数字化转型补助政策", summary="企业上云用云给予补助。")
    draft = make_policy(db, title="草稿里的独特名称政策")
    assert _ids(db, "zzqqxx不存在的政策") == []
    assert draft.id not in _ids(db, "草稿里的独特名称")
    assert _ids(db, "") == []
    assert _ids(db, "，。！？") == []
