"""Policy import and export: encodings, all-or-nothing, partial mode, re-import, round trip, HTTP."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api import io_router
from catalog import io as catalog_io
from catalog import service as catalog_service
from catalog.models import Policy, PolicyStatus, PolicyVersion
from catalog.schemas import TopicIn
from core import tabular
from core.errors import ValidationFailed
from tests import factories

TODAY = dt.date.today()
RULES = '{"all":[{"field":"region_code","op":"within_region","value":["442000"]}]}'


@dataclass
class Taxonomy:
    dept: str
    other_dept: str
    category: str
    tag: str
    tag_synonym: str
    topic: str


@pytest.fixture
def tax(db: Session) -> Taxonomy:
    i = factories.n()
    dept = factories.make_department(db)
    other = factories.make_department(db)
    cat = factories.make_category(db)
    tag = factories.make_tag(db, synonyms=[f"同义{i}"])
    topic = catalog_service.create_topic(db=db, topic_in=TopicIn(code=f"topic-{i}", name=f"专栏{i}"))
    return Taxonomy(dept.code, other.code, cat.code, tag.name, f"同义{i}", topic.code)


def row(tax: Taxonomy, **kw: str) -> dict[str, str]:
    """Return one complete, publishable policy row keyed by Chinese header."""
    i = factories.n()
    base = {
        "标题": f"导入测试政策第{i}号",
        "文号": f"导〔2026〕{i}号",
        "发文部门编码": tax.dept,
        "承办部门编码": tax.other_dept,
        "层级": "市",
        "政策类型": "申报类",
        "适用地区": "442000；440300",
        "政策分类": tax.category,
        "标签": tax.tag,
        "专栏": tax.topic,
        "摘要": "对符合条件的企业给予资金扶持。",
        "解读": "第一段\n第二段",
        "解读人": "张敏",
        "解读人联系方式": "0760-88880000",
        "政策原文": "第一条 为了……",
        "申报开始日期": (TODAY - dt.timedelta(days=5)).isoformat(),
        "申报截止日期": (TODAY + dt.timedelta(days=40)).isoformat(),
        "有效期起": "2026-01-01",
        "有效期止": (TODAY + dt.timedelta(days=400)).isoformat(),
        "最高金额（万元）": "50",
        "金额说明": "按研发投入的 10% 补助",
        "申报网址": "https://example.gov.cn/apply",
        "资格条件（JSON）": RULES,
        "状态": "草稿",
        "置顶": "否",
    }
    return base | kw


def as_csv(rows: list[dict[str, str]], encoding: str = "utf-8-sig") -> bytes:
    headers = list(rows[0])
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(headers)
    for r in rows:
        writer.writerow([r.get(h, "") for h in headers])
    return out.getvalue().encode(encoding)


def as_xlsx(rows: list[dict[str, str]]) -> bytes:
    headers = list(rows[0])
    return tabular.write_xlsx(headers, [[r.get(h, "") for h in headers] for r in rows], "政策")


FORMATS = {
    "utf-8": lambda rows: (as_csv(rows, "utf-8"), "policies.csv"),
    "utf-8-bom": lambda rows: (as_csv(rows, "utf-8-sig"), "policies.csv"),
    "gbk": lambda rows: (as_csv(rows, "gbk"), "政策.csv"),
    "xlsx": lambda rows: (as_xlsx(rows), "政策.xlsx"),
}


def do_import(db: Session, rows: list[dict[str, str]], fmt: str = "utf-8", **kw: Any) -> tabular.ImportReport:
    data, filename = FORMATS[fmt](rows)
    return catalog_io.import_policies(db=db, data=data, filename=filename, actor=None, **kw)


def count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Policy)) or 0


def by_doc(db: Session, doc_number: str) -> Policy | None:
    return db.scalar(select(Policy).where(Policy.doc_number == doc_number))


# ---------------------------------------------------------------- encodings and all-or-nothing


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_good_file_creates_every_policy(db: Session, tax: Taxonomy, fmt: str) -> None:
    rows = [row(tax), row(tax, 标签=tax.tag_synonym, 状态="", 置顶="是")]
    before = count(db)
    report = do_import(db, rows, fmt)
    assert (report.total, report.created, report.failed, report.written) == (2, 2, 0, True)
    assert report.errors == []
    assert count(db) == before + 2
    policy = by_doc(db, rows[1]["文号"])
    assert policy is not None
    snap = catalog_service.snapshot(policy)
    assert snap["level"] == "municipal"
    assert snap["policy_type"] == "application"
    assert snap["region_codes"] == ["440300", "442000"]
    assert snap["tags"] == [tax.tag]  # the synonym resolved to the tag
    assert snap["handling_department"] == tax.other_dept
    assert snap["interpretation"] == "第一段\n第二段"
    assert snap["max_amount"] == 50
    assert snap["rules"]["all"][0]["op"] == "within_region"
    assert snap["pinned"] is True
    assert policy.status == PolicyStatus.draft


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_bad_file_writes_nothing_and_names_row_column_and_reason(db: Session, tax: Taxonomy, fmt: str) -> None:
    rows = [row(tax, 申报截止日期="下个月"), row(tax, 标签="不存在的标签")]
    before = count(db)
    report = do_import(db, rows, fmt)
    assert (report.total, report.created, report.failed, report.written) == (2, 0, 2, False)
    assert count(db) == before
    problems = {(e.row, e.column): e for e in report.errors}
    assert problems[(2, "申报截止日期")].value == "下个月"
    assert "不是有效日期" in problems[(2, "申报截止日期")].reason
    assert problems[(3, "标签")].value == "不存在的标签"
    assert problems[(3, "标签")].reason == "标签「不存在的标签」不在标签库中"
    assert problems[(3, "标签")].code == "unknown_tag"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mixed_file_writes_nothing_but_reports_what_would_have_happened(db: Session, tax: Taxonomy, fmt: str) -> None:
    rows = [row(tax), row(tax, 层级="乡镇"), row(tax)]
    before = count(db)
    report = do_import(db, rows, fmt)
    assert (report.total, report.created, report.failed, report.written) == (3, 2, 1, False)
    assert count(db) == before
    assert by_doc(db, rows[0]["文号"]) is None
    [problem] = report.errors
    assert (problem.row, problem.column, problem.value) == (3, "层级", "乡镇")
    assert "层级「乡镇」无效" in problem.reason


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_partial_mode_keeps_good_rows_and_reports_bad_ones(db: Session, tax: Taxonomy, fmt: str) -> None:
    rows = [row(tax), row(tax, 发文部门编码="no-such-dept"), row(tax, **{"最高金额（万元）": "很多"})]
    before = count(db)
    report = do_import(db, rows, fmt, partial=True)
    assert (report.created, report.failed, report.written) == (1, 2, True)
    assert count(db) == before + 1
    assert by_doc(db, rows[0]["文号"]) is not None
    problems = {(e.row, e.column): e.reason for e in report.errors}
    assert problems[(3, "发文部门编码")] == "部门编码 no-such-dept 不存在"
    assert problems[(4, "最高金额（万元）")] == "「很多」不是有效的数字"


def test_caller_transaction_stays_usable_after_a_refused_import(db: Session, tax: Taxonomy) -> None:
    kept = factories.make_policy(db)
    report = do_import(db, [row(tax), row(tax, 政策类型="其他")])
    assert not report.written
    assert db.get(Policy, kept.id) is not None
    factories.make_policy(db)  # the session still works


def test_schema_errors_name_the_chinese_column(db: Session, tax: Taxonomy) -> None:
    rows = [
        row(tax, 标题="短"),
        row(tax, 申报网址="example.gov.cn"),
        row(tax, 适用地区="999999"),
        row(tax, 政策分类="00000"),
        row(tax, **{"资格条件（JSON）": '{"all": [{"field": "nope", "op": "eq", "value": 1}]}'}),
    ]
    report = do_import(db, rows)
    columns = {e.row: e.column for e in report.errors}
    assert columns == {2: "标题", 3: "申报网址", 4: "适用地区", 5: "政策分类", 6: "资格条件（JSON）"}
    assert report.failed == 5


def test_missing_required_fields_of_a_new_policy_are_reported(db: Session, tax: Taxonomy) -> None:
    report = do_import(db, [{"文号": f"缺〔2026〕{factories.n()}号", "标题": "只有标题的政策一条"}])
    reasons = {e.column: e.reason for e in report.errors}
    assert reasons == {"发文部门编码": "必填项未填写", "层级": "必填项未填写", "政策类型": "必填项未填写"}


def test_window_check_reports_the_row(db: Session, tax: Taxonomy) -> None:
    report = do_import(db, [row(tax, 申报开始日期="2026-12-01", 申报截止日期="2026-11-01")])
    [problem] = report.errors
    assert problem.row == 2
    assert problem.reason == "申报开始日期不能晚于申报截止日期"


def test_unknown_or_missing_columns_refuse_the_whole_file(db: Session, tax: Taxonomy) -> None:
    rows = [row(tax) | {"备注栏": "x"}]
    before = count(db)
    report = do_import(db, rows)
    assert report.header_failed and report.rejected
    assert [(e.row, e.column, e.code) for e in report.errors] == [(1, "备注栏", "unknown_column")]
    assert report.summary() == "导入失败：表头有误，未写入任何数据"
    assert count(db) == before


def test_headers_with_ascii_brackets_are_recognised(db: Session, tax: Taxonomy) -> None:
    r = row(tax)
    r["最高金额(万元)"] = r.pop("最高金额（万元）")
    report = do_import(db, [r])
    assert report.created == 1
    assert by_doc(db, r["文号"]).max_amount == 50


def test_unsupported_file_is_refused_before_reading(db: Session) -> None:
    with pytest.raises(ValidationFailed) as exc:
        catalog_io.import_policies(db=db, data=b"x", filename="policies.pdf", actor=None)
    assert exc.value.code == "file.unsupported_file"


# ---------------------------------------------------------------- keys, duplicates, status


def test_reimport_updates_instead_of_duplicating(db: Session, tax: Taxonomy) -> None:
    rows = [row(tax), row(tax, 文号="")]
    assert do_import(db, rows).created == 2
    before = count(db)
    rows[0]["摘要"] = "修改后的摘要。"
    rows[1]["摘要"] = "按标题识别的修改。"
    report = do_import(db, rows)
    assert (report.created, report.updated, report.unchanged) == (0, 2, 0)
    assert count(db) == before
    assert by_doc(db, rows[0]["文号"]).summary == "修改后的摘要。"
    by_title = db.scalar(select(Policy).where(Policy.title == rows[1]["标题"]))
    assert by_title.summary == "按标题识别的修改。"


def test_identical_reimport_changes_nothing(db: Session, tax: Taxonomy) -> None:
    rows = [row(tax, 状态="已发布"), row(tax, 文号="")]
    do_import(db, rows)
    published = by_doc(db, rows[0]["文号"])
    stamp, version = published.updated_at, published.version
    report = do_import(db, rows)
    assert (report.created, report.updated, report.unchanged, report.written) == (0, 0, 2, False)
    assert not report.rejected
    db.expire_all()
    assert (published.updated_at, published.version) == (stamp, version)


def test_reimport_with_synonyms_counts_as_unchanged_and_touches_nothing(db: Session, tax: Taxonomy) -> None:
    r = row(tax, 状态="已发布")
    do_import(db, [r])
    policy = by_doc(db, r["文号"])
    stamp = (policy.updated_at, policy.version)
    report = do_import(db, [r | {"标签": tax.tag_synonym, "层级": "municipal", "状态": "published"}])
    assert (report.unchanged, report.written) == (1, False)
    db.expire_all()
    assert (policy.updated_at, policy.version) == stamp


def test_file_with_fewer_columns_leaves_the_others_alone(db: Session, tax: Taxonomy) -> None:
    r = row(tax)
    do_import(db, [r])
    report = do_import(db, [{"文号": r["文号"], "摘要": "只改摘要。"}])
    assert report.updated == 1
    policy = by_doc(db, r["文号"])
    assert (policy.summary, policy.interpreter_name, policy.max_amount) == ("只改摘要。", "张敏", 50)


def test_empty_cell_clears_the_value_on_update(db: Session, tax: Taxonomy) -> None:
    r = row(tax)
    do_import(db, [r])
    do_import(db, [r | {"金额说明": "", "标签": ""}])
    policy = by_doc(db, r["文号"])
    assert policy.amount_text is None
    assert policy.tags == []


def test_update_of_published_policy_records_a_version(db: Session, tax: Taxonomy) -> None:
    r = row(tax, 状态="已发布")
    do_import(db, [r])
    policy = by_doc(db, r["文号"])
    assert (policy.status, policy.version) == (PolicyStatus.published, 1)
    report = do_import(db, [r | {"最高金额（万元）": "80"}])
    assert report.updated == 1
    assert policy.version == 2
    versions = db.scalars(select(PolicyVersion).where(PolicyVersion.policy_id == policy.id)).all()
    assert sorted(v.snapshot["max_amount"] for v in versions) == [50, 80]


def test_published_row_that_cannot_be_published_is_a_row_error(db: Session, tax: Taxonomy) -> None:
    before = count(db)
    report = do_import(db, [row(tax, 状态="已发布", 摘要="", 解读人="")])
    assert report.failed == 1
    assert count(db) == before  # the created draft went with its row
    assert {e.column: e.reason for e in report.errors} == {
        "摘要": "发布前必须填写政策摘要",
        "解读人": "发布前必须指定解读人",
    }


def test_published_row_publishes_an_existing_draft_and_withdrawn_row_withdraws(db: Session, tax: Taxonomy) -> None:
    r = row(tax)
    do_import(db, [r])
    do_import(db, [r | {"状态": "已发布"}])
    policy = by_doc(db, r["文号"])
    assert policy.status == PolicyStatus.published
    do_import(db, [r | {"状态": "已撤回"}])
    assert policy.status == PolicyStatus.withdrawn


def test_published_policy_cannot_go_back_to_draft(db: Session, tax: Taxonomy) -> None:
    r = row(tax, 状态="已发布")
    do_import(db, [r])
    report = do_import(db, [r | {"状态": "草稿"}])
    [problem] = report.errors
    assert (problem.column, problem.code) == ("状态", "invalid_status")


def test_new_policy_cannot_be_imported_as_withdrawn(db: Session, tax: Taxonomy) -> None:
    report = do_import(db, [row(tax, 状态="已撤回")])
    assert report.errors[0].reason == "政策尚未发布，不能设为已撤回"


def test_duplicate_doc_number_in_one_file_is_refused_on_the_later_row(db: Session, tax: Taxonomy) -> None:
    first = row(tax)
    report = do_import(db, [first, row(tax), row(tax, 文号=first["文号"])])
    [problem] = report.errors
    assert (problem.row, problem.column, problem.value) == (4, "文号", first["文号"])
    assert problem.reason == "与第 2 行重复"
    assert problem.code == "duplicate_row"


def test_duplicate_title_without_doc_number_is_refused_on_the_later_row(db: Session, tax: Taxonomy) -> None:
    first = row(tax, 文号="")
    report = do_import(db, [first, row(tax, 文号="", 标题=first["标题"])])
    [problem] = report.errors
    assert (problem.row, problem.column, problem.reason) == (3, "标题", "与第 2 行重复")


def test_namesake_with_another_doc_number_is_a_conflict(db: Session, tax: Taxonomy) -> None:
    first = row(tax)
    do_import(db, [first])
    report = do_import(db, [row(tax, 标题=first["标题"])])
    [problem] = report.errors
    assert problem.column == "标题"
    assert "同一发文部门已有同名政策" in problem.reason


def test_row_without_any_key_is_refused(db: Session, tax: Taxonomy) -> None:
    report = do_import(db, [row(tax, 文号="", 标题="")])
    assert report.errors[0].code == "missing_key"


# ---------------------------------------------------------------- export and round trip


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_import_export_is_lossless(db: Session, tax: Taxonomy, fmt: str) -> None:
    tag2 = factories.make_tag(db, name=f"扶持方式{factories.n()}")
    dept = catalog_service.get_department_by_code(db=db, code=tax.dept)
    cat = factories.make_category(db)
    # Policies live only inside this savepoint; the taxonomy outlives it, as in a fresh database.
    savepoint = db.begin_nested()
    created = [
        factories.make_policy(
            db,
            department=dept,
            category=cat,
            publish=True,
            tags=[tax.tag, tag2.name],
            topics=[tax.topic],
            interpretation="解读：\n1. 条件\n2. 流程",
            amount_text='=最高 30 万元, "一次性"',
            pinned=True,
            max_amount=12.5,
        ),
        factories.make_policy(
            db, department=dept, category=cat, doc_number=None, summary=None, region_codes=[], rules=None
        ),
        factories.make_policy(
            db,
            department=dept,
            category=cat,
            handling_department=tax.other_dept,
            policy_type="exempt",
            level="national",
            apply_end_on=None,
            full_text="原文",
        ),
    ]
    snapshots = {p.title: catalog_service.snapshot(p) for p in created}
    statuses = {p.title: p.status for p in created}
    first = catalog_io.export_policies(db=db, fmt=fmt)
    savepoint.rollback()
    assert all(db.scalar(select(Policy).where(Policy.title == t)) is None for t in snapshots)

    report = catalog_io.import_policies(db=db, data=first, filename=f"政策.{fmt}", actor=None)
    assert report.errors == []
    assert report.created >= 3  # other tests' rows may share the database on some backends
    for title, snap in snapshots.items():
        policy = db.scalar(select(Policy).where(Policy.title == title))
        assert catalog_service.snapshot(policy) == snap
        assert policy.status == statuses[title]
    second = catalog_io.export_policies(db=db, fmt=fmt)
    if fmt == "csv":
        assert second == first
    else:
        assert _sheet(second) == _sheet(first)


def _sheet(data: bytes) -> list[tuple]:
    return [tuple(r) for r in load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True)]


def test_export_uses_the_import_layout_with_chinese_labels(db: Session, tax: Taxonomy) -> None:
    policy = factories.make_policy(db, publish=True, pinned=True)
    table = tabular.read_table(catalog_io.export_policies(db=db, fmt="csv", status="published"), "x.csv")
    assert table.headers == [c.header for c in catalog_io.POLICY_COLUMNS]
    mine = next(r.cells for r in table.rows if r.cells["文号"] == policy.doc_number)
    assert (mine["层级"], mine["政策类型"], mine["状态"], mine["置顶"]) == ("市级", "申报类", "已发布", "是")
    assert mine["最高金额（万元）"] == "30"


def test_export_filters_by_status(db: Session, tax: Taxonomy) -> None:
    draft = factories.make_policy(db)
    published = factories.make_policy(db, publish=True)
    table = tabular.read_table(catalog_io.export_policies(db=db, fmt="csv", status=PolicyStatus.draft), "x.csv")
    docs = {r.cells["文号"] for r in table.rows}
    assert draft.doc_number in docs
    assert published.doc_number not in docs


def test_export_refuses_unknown_format(db: Session) -> None:
    with pytest.raises(ValidationFailed) as exc:
        catalog_io.export_policies(db=db, fmt="pdf")  # type: ignore[arg-type]
    assert exc.value.code == "file.unsupported_format"


# ---------------------------------------------------------------- HTTP


@pytest.fixture
def io_client(app) -> TestClient:  # type: ignore[no-untyped-def]
    """The test client, with the import/export routes first even before api/app.py includes them."""
    if not any(getattr(r, "path", "") == "/api/v1/policies/export" for r in app.router.routes):
        start = len(app.router.routes)
        app.include_router(io_router.router, prefix="/api/v1")
        added = app.router.routes[start:]
        del app.router.routes[start:]
        app.router.routes[0:0] = added
    with TestClient(app) as client:
        yield client


def test_http_import_returns_the_report(db: Session, tax: Taxonomy, io_client: TestClient, auth_headers) -> None:  # type: ignore[no-untyped-def]
    data = as_csv([row(tax), row(tax)])
    response = io_client.post(
        "/api/v1/policies/import", files={"file": ("政策.csv", data, "text/csv")}, headers=auth_headers("curator")
    )
    assert response.status_code == 200, response.text
    assert response.json() | {"errors": []} == {
        "total": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "written": True,
        "errors": [],
    }


def test_http_refused_import_is_422_with_the_report(
    db: Session, tax: Taxonomy, io_client: TestClient, auth_headers
) -> None:  # type: ignore[no-untyped-def]
    before = count(db)
    data = as_csv([row(tax), row(tax, 置顶="也许")])
    response = io_client.post(
        "/api/v1/policies/import", files={"file": ("政策.csv", data, "text/csv")}, headers=auth_headers("admin")
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "import_failed"
    assert body["message"] == "导入失败：1 行有误，未写入任何数据"
    assert body["report"]["errors"][0] | {"reason": ""} == {
        "row": 3,
        "column": "置顶",
        "value": "也许",
        "reason": "",
        "code": "invalid_value",
    }
    assert count(db) == before


def test_http_partial_import_is_200_with_errors(
    db: Session, tax: Taxonomy, io_client: TestClient, auth_headers
) -> None:  # type: ignore[no-untyped-def]
    data = as_csv([row(tax), row(tax, 置顶="也许")])
    response = io_client.post(
        "/api/v1/policies/import?partial=true",
        files={"file": ("政策.csv", data, "text/csv")},
        headers=auth_headers("curator"),
    )
    assert response.status_code == 200
    assert (response.json()["created"], response.json()["failed"]) == (1, 1)


def test_http_oversize_upload_is_refused(io_client: TestClient, auth_headers, test_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(test_settings, "upload_max_mb", 1)
    data = b"a" * (1024 * 1024 + 1)
    response = io_client.post(
        "/api/v1/policies/import", files={"file": ("big.csv", data, "text/csv")}, headers=auth_headers("curator")
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_http_import_needs_a_curator(io_client: TestClient, auth_headers) -> None:  # type: ignore[no-untyped-def]
    files = {"file": ("政策.csv", b"a\n", "text/csv")}
    assert io_client.post("/api/v1/policies/import", files=files).status_code == 401
    assert io_client.post("/api/v1/policies/import", files=files, headers=auth_headers("desk")).status_code == 403


@pytest.mark.parametrize(("fmt", "media"), [("csv", "text/csv"), ("xlsx", "application/vnd.openxmlformats")])
def test_http_export_is_an_attachment_with_a_chinese_file_name(
    db: Session, io_client: TestClient, auth_headers, fmt: str, media: str
) -> None:  # type: ignore[no-untyped-def]
    factories.make_policy(db, publish=True)
    response = io_client.get(f"/api/v1/policies/export?format={fmt}&status=published", headers=auth_headers("curator"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media)
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="policies-')
    assert f"filename*=UTF-8''%E6%94%BF%E7%AD%96-{TODAY.isoformat()}.{fmt}" in disposition
    table = tabular.read_table(response.content, f"x.{fmt}")
    assert table.headers[0] == "标题"


def test_http_export_is_not_taken_for_a_policy_id(io_client: TestClient, auth_headers) -> None:  # type: ignore[no-untyped-def]
    response = io_client.get("/api/v1/policies/export", headers=auth_headers("admin"))
    assert response.status_code == 200
    assert response.content.startswith(b"\xef\xbb\xbf\xe6\xa0\x87\xe9\xa2\x98")  # BOM + 标题


def test_docs_list_the_policy_columns_in_order() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "import-format.md").read_text(encoding="utf-8")
    section = text.split("## 2. 政策表", 1)[1].split("\n## ", 1)[0]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    documented = [(c[0], c[1]) for c in cells if c[1].isascii() and c[1].isidentifier()]  # the column table only
    assert documented == [(c.header, c.key) for c in catalog_io.POLICY_COLUMNS]
