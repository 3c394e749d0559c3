"""Enterprise import and export: encodings, all-or-nothing, partial mode, re-import, round trip, HTTP."""

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
from auth.models import Role
from auth.service import Principal
from core import tabular
from profiles import io as profiles_io
from profiles import service as profiles_service
from profiles.models import Enterprise
from tests import factories

CURATOR = Principal(id=0, role=Role.curator, name="导入测试", via_api_key=True)


@dataclass
class Quals:
    high_tech: str
    small_tech: str
    synonym: str


@pytest.fixture
def quals(db: Session) -> Quals:
    i = factories.n()
    a = factories.make_tag(db, name=f"高新技术企业{i}", kind="qualification", synonyms=[f"高企{i}"])
    b = factories.make_tag(db, name=f"科技型中小企业{i}", kind="qualification")
    return Quals(a.name, b.name, f"高企{i}")


def row(quals: Quals, **kw: str) -> dict[str, str]:
    """Return one complete enterprise row keyed by Chinese header."""
    i = factories.n()
    return {
        "统一社会信用代码": factories.credit_code(i * 7907),
        "企业名称": f"中山市导入测试科技有限公司{i}",
        "所在地区代码": "442000",
        "行业代码": "C3911",
        "成立日期": "2018-05-01",
        "注册资本（万元）": "500",
        "从业人数": "120",
        "年营业收入（万元）": "8000.5",
        "资产总额（万元）": "6000",
        "年研发费用（万元）": "450",
        "年出口额（万元）": "0",
        "信用状况": "良好",
        "纳税信用等级": "A",
        "企业资质": f"{quals.high_tech}:2027-12-31；{quals.small_tech}",
        "经营范围": "计算机软硬件开发、销售",
        "主要产品": "工业控制计算机",
        "企业需求": "希望了解研发费用补助",
        "联系人": "李雷",
        "联系电话": "0760-88886666",
        "联系邮箱": "lilei@example.com",
    } | kw


def as_csv(rows: list[dict[str, str]], encoding: str) -> bytes:
    headers = list(rows[0])
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(headers)
    for r in rows:
        writer.writerow([r.get(h, "") for h in headers])
    return out.getvalue().encode(encoding)


def as_xlsx(rows: list[dict[str, str]]) -> bytes:
    headers = list(rows[0])
    return tabular.write_xlsx(headers, [[r.get(h, "") for h in headers] for r in rows], "企业")


FORMATS = {
    "utf-8": lambda rows: (as_csv(rows, "utf-8"), "enterprises.csv"),
    "utf-8-bom": lambda rows: (as_csv(rows, "utf-8-sig"), "enterprises.csv"),
    "gbk": lambda rows: (as_csv(rows, "gbk"), "企业.csv"),
    "xlsx": lambda rows: (as_xlsx(rows), "企业.xlsx"),
}


def do_import(db: Session, rows: list[dict[str, str]], fmt: str = "utf-8", **kw: Any) -> tabular.ImportReport:
    data, filename = FORMATS[fmt](rows)
    return profiles_io.import_enterprises(db=db, data=data, filename=filename, actor=CURATOR, **kw)


def count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Enterprise)) or 0


def get(db: Session, credit_code: str) -> Enterprise | None:
    return profiles_service.get_by_credit_code(db=db, credit_code=credit_code)


# ---------------------------------------------------------------- encodings and all-or-nothing


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_good_file_creates_every_enterprise(db: Session, quals: Quals, fmt: str) -> None:
    rows = [row(quals), row(quals, 企业资质=quals.synonym, 信用状况="normal", 纳税信用等级="b级")]
    before = count(db)
    report = do_import(db, rows, fmt)
    assert (report.total, report.created, report.failed, report.written) == (2, 2, 0, True)
    assert count(db) == before + 2
    first = get(db, rows[0]["统一社会信用代码"])
    assert (first.employees, first.annual_revenue, first.established_on) == (120, 8000.5, dt.date(2018, 5, 1))
    assert {(q.tag.name, q.valid_until_on) for q in first.qualifications} == {
        (quals.high_tech, dt.date(2027, 12, 31)),
        (quals.small_tech, None),
    }
    assert first.size_class is not None  # derived attributes were computed on the way in
    second = get(db, rows[1]["统一社会信用代码"])
    assert [q.tag.name for q in second.qualifications] == [quals.high_tech]
    assert (second.credit_standing, second.tax_credit_level) == ("normal", "B")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_bad_file_writes_nothing_and_names_row_column_and_reason(db: Session, quals: Quals, fmt: str) -> None:
    good = row(quals)
    bad_code = good["统一社会信用代码"][:-1] + ("0" if good["统一社会信用代码"][-1] != "0" else "1")
    rows = [row(quals, 统一社会信用代码=bad_code), row(quals, 联系电话="12ab", 成立日期="2099-01-01")]
    before = count(db)
    report = do_import(db, rows, fmt)
    assert (report.created, report.failed, report.written) == (0, 2, False)
    assert count(db) == before
    problems = {(e.row, e.column): e for e in report.errors}
    assert problems[(2, "统一社会信用代码")].reason == "统一社会信用代码校验位错误，请核对是否有录入错误"
    assert problems[(2, "统一社会信用代码")].value == bad_code
    assert problems[(3, "联系电话")].reason == "联系电话应为手机号或带区号的固定电话"
    assert problems[(3, "成立日期")].reason == "成立日期不能晚于今天"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mixed_file_writes_nothing_by_default(db: Session, quals: Quals, fmt: str) -> None:
    rows = [row(quals), row(quals, 行业代码="Z99"), row(quals)]
    before = count(db)
    report = do_import(db, rows, fmt)
    assert (report.total, report.created, report.failed, report.written) == (3, 2, 1, False)
    assert count(db) == before
    [problem] = report.errors
    assert (problem.row, problem.column, problem.value) == (3, "行业代码", "Z99")
    assert "行业代码 Z99" in problem.reason


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_partial_mode_keeps_good_rows_and_reports_bad_ones(db: Session, quals: Quals, fmt: str) -> None:
    rows = [row(quals, 企业资质="不存在的资质"), row(quals), row(quals, 从业人数="十二")]
    before = count(db)
    report = do_import(db, rows, fmt, partial=True)
    assert (report.created, report.failed, report.written) == (1, 2, True)
    assert count(db) == before + 1
    assert get(db, rows[1]["统一社会信用代码"]) is not None
    problems = {(e.row, e.column): e.reason for e in report.errors}
    assert problems == {
        (2, "企业资质"): "标签「不存在的资质」不在标签库中",
        (4, "从业人数"): "「十二」不是有效的数字",
    }


def test_non_qualification_tag_is_refused(db: Session, quals: Quals) -> None:
    other = factories.make_tag(db, kind="benefit")
    report = do_import(db, [row(quals, 企业资质=other.name)])
    assert report.errors[0].column == "企业资质"
    assert report.errors[0].code == "not_a_qualification"


def test_bad_qualification_date_names_the_qualification(db: Session, quals: Quals) -> None:
    report = do_import(db, [row(quals, 企业资质=f"{quals.high_tech}:明年底")])
    assert report.errors[0].column == "企业资质"
    assert quals.high_tech in report.errors[0].reason


def test_credit_code_column_is_required(db: Session, quals: Quals) -> None:
    r = row(quals)
    del r["统一社会信用代码"]
    report = do_import(db, [r])
    assert [(e.row, e.column, e.code) for e in report.errors] == [(1, "统一社会信用代码", "missing_column")]


def test_lower_case_and_full_width_credit_codes_are_normalised(db: Session, quals: Quals) -> None:
    r = row(quals)
    code = r["统一社会信用代码"]
    report = do_import(db, [r | {"统一社会信用代码": code.lower()}])
    assert report.created == 1
    assert get(db, code) is not None


# ---------------------------------------------------------------- keys and duplicates


def test_reimport_updates_instead_of_duplicating(db: Session, quals: Quals) -> None:
    rows = [row(quals), row(quals)]
    do_import(db, rows)
    before = count(db)
    rows[0]["从业人数"] = "150"
    rows[1]["企业资质"] = ""
    report = do_import(db, rows)
    assert (report.created, report.updated, report.unchanged) == (0, 2, 0)
    assert count(db) == before
    assert get(db, rows[0]["统一社会信用代码"]).employees == 150
    assert get(db, rows[1]["统一社会信用代码"]).qualifications == []


def test_identical_reimport_changes_nothing(db: Session, quals: Quals) -> None:
    rows = [row(quals), row(quals), row(quals)]
    do_import(db, rows)
    ents = [get(db, r["统一社会信用代码"]) for r in rows[:2]]
    stamps = [(e.updated_at, e.profile_updated_at) for e in ents]
    # Same content spelled differently (synonym, other order, English value) is still the same.
    rows[1]["企业资质"] = f"{quals.small_tech}；{quals.synonym}:2027/12/31"
    rows[1]["信用状况"] = "good"
    rows[2]["从业人数"] = "121"  # one real change, so the import is written
    report = do_import(db, rows)
    assert (report.updated, report.unchanged, report.written, report.rejected) == (1, 2, True, False)
    db.expire_all()
    assert [(e.updated_at, e.profile_updated_at) for e in ents] == stamps


def test_reimport_without_changes_writes_nothing_and_is_not_an_error(db: Session, quals: Quals) -> None:
    rows = [row(quals)]
    do_import(db, rows)
    report = do_import(db, rows)
    assert (report.unchanged, report.written, report.rejected, report.errors) == (1, False, False, [])


def test_file_with_fewer_columns_updates_only_those(db: Session, quals: Quals) -> None:
    r = row(quals)
    do_import(db, [r])
    report = do_import(db, [{"统一社会信用代码": r["统一社会信用代码"], "从业人数": "99"}])
    assert report.updated == 1
    ent = get(db, r["统一社会信用代码"])
    assert (ent.employees, ent.name, len(ent.qualifications)) == (99, r["企业名称"], 2)


def test_clearing_the_name_is_refused(db: Session, quals: Quals) -> None:
    r = row(quals)
    do_import(db, [r])
    report = do_import(db, [r | {"企业名称": ""}])
    assert {(e.column, e.reason) for e in report.errors} == {("企业名称", "企业名称不能为空")}


def test_duplicate_credit_code_in_one_file_is_refused_on_the_later_row(db: Session, quals: Quals) -> None:
    first = row(quals)
    report = do_import(db, [first, row(quals), row(quals, 统一社会信用代码=first["统一社会信用代码"].lower())])
    [problem] = report.errors
    assert (problem.row, problem.column, problem.reason, problem.code) == (
        4,
        "统一社会信用代码",
        "与第 2 行重复",
        "duplicate_row",
    )


# ---------------------------------------------------------------- export and round trip


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_import_export_is_lossless(db: Session, quals: Quals, fmt: str) -> None:
    savepoint = db.begin_nested()
    made = [
        factories.make_enterprise(
            db,
            registered_capital=1234.56,
            credit_standing="dishonest",
            tax_credit_level="M",
            qualifications=[
                {"name": quals.small_tech, "valid_until_on": dt.date(2026, 6, 30)},
                {"name": quals.high_tech},
            ],
            business_scope="=研发、生产；销售\n第二行",
            contact_email="a@b.cn",
            contact_phone="0760-1234567",
        ),
        factories.make_enterprise(db, region_code=None, industry_code=None, established_on=None, employees=None),
    ]
    records = {e.credit_code: profiles_io.enterprise_record(e) for e in made}
    first = profiles_io.export_enterprises(db=db, fmt=fmt)
    savepoint.rollback()
    assert all(get(db, code) is None for code in records)

    report = profiles_io.import_enterprises(db=db, data=first, filename=f"企业.{fmt}", actor=CURATOR)
    assert report.errors == []
    assert report.created >= 2
    for code, record in records.items():
        ent = get(db, code)
        assert profiles_io.enterprise_record(ent) | {"qualifications": None} == record | {"qualifications": None}
        assert sorted(q["name"] for q in profiles_io.enterprise_record(ent)["qualifications"]) == sorted(
            q["name"] for q in record["qualifications"]
        )
    second = profiles_io.export_enterprises(db=db, fmt=fmt)
    if fmt == "csv":
        assert second == first
    else:
        sheet = lambda data: list(load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))  # noqa: E731
        assert sheet(second) == sheet(first)


def test_export_uses_the_import_layout_with_chinese_labels(db: Session, quals: Quals) -> None:
    ent = factories.make_enterprise(
        db, credit_standing="good", qualifications=[{"name": quals.high_tech, "valid_until_on": dt.date(2027, 12, 31)}]
    )
    table = tabular.read_table(profiles_io.export_enterprises(db=db, fmt="csv"), "x.csv")
    assert table.headers == [c.header for c in profiles_io.ENTERPRISE_COLUMNS]
    mine = next(r.cells for r in table.rows if r.cells["统一社会信用代码"] == ent.credit_code)
    assert mine["信用状况"] == "良好"
    assert mine["企业资质"] == f"{quals.high_tech}:2027-12-31"
    assert mine["年营业收入（万元）"] == "3000"


# ---------------------------------------------------------------- HTTP


@pytest.fixture
def io_client(app) -> TestClient:  # type: ignore[no-untyped-def]
    """The test client, with the import/export routes first even before api/app.py includes them."""
    if not any(getattr(r, "path", "") == "/api/v1/enterprises/export" for r in app.router.routes):
        start = len(app.router.routes)
        app.include_router(io_router.router, prefix="/api/v1")
        added = app.router.routes[start:]
        del app.router.routes[start:]
        app.router.routes[0:0] = added
    with TestClient(app) as client:
        yield client


def test_http_import_then_export(db: Session, quals: Quals, io_client: TestClient, auth_headers) -> None:  # type: ignore[no-untyped-def]
    r = row(quals)
    headers = auth_headers("curator")
    response = io_client.post(
        "/api/v1/enterprises/import",
        files={"file": ("企业.xlsx", as_xlsx([r]), "application/octet-stream")},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1
    response = io_client.get("/api/v1/enterprises/export?format=xlsx", headers=headers)
    assert response.status_code == 200
    assert "filename*=UTF-8''%E4%BC%81%E4%B8%9A-" in response.headers["content-disposition"]
    codes = {row.cells["统一社会信用代码"] for row in tabular.read_table(response.content, "x.xlsx").rows}
    assert r["统一社会信用代码"] in codes


def test_http_refused_import_is_422_with_the_report(
    db: Session, quals: Quals, io_client: TestClient, auth_headers
) -> None:  # type: ignore[no-untyped-def]
    data = as_csv([row(quals, 联系邮箱="not-an-email")], "gbk")
    response = io_client.post(
        "/api/v1/enterprises/import", files={"file": ("企业.csv", data, "text/csv")}, headers=auth_headers("admin")
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "import_failed"
    assert body["report"]["errors"] == [
        {"row": 2, "column": "联系邮箱", "value": "not-an-email", "reason": "邮箱格式不正确", "code": "value_error"}
    ]


def test_http_oversize_upload_is_refused(io_client: TestClient, auth_headers, test_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(test_settings, "upload_max_mb", 1)
    response = io_client.post(
        "/api/v1/enterprises/import",
        files={"file": ("big.csv", b"x" * (1024 * 1024 + 1), "text/csv")},
        headers=auth_headers("curator"),
    )
    assert response.status_code == 413
    assert response.json() == {
        "code": "payload_too_large",
        "message": "文件超过 1 MB，请拆分后分批导入",
        "errors": [{"field": "file", "reason": "文件超过 1 MB", "code": "file_too_large"}],
    }


def test_http_unsupported_file_is_422(io_client: TestClient, auth_headers) -> None:  # type: ignore[no-untyped-def]
    response = io_client.post(
        "/api/v1/enterprises/import",
        files={"file": ("企业.xls", b"x", "application/vnd.ms-excel")},
        headers=auth_headers("curator"),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "file.unsupported_file"


def test_http_enterprise_export_needs_a_curator(io_client: TestClient, auth_headers) -> None:  # type: ignore[no-untyped-def]
    assert io_client.get("/api/v1/enterprises/export", headers=auth_headers("enterprise")).status_code == 403


def test_docs_list_the_enterprise_columns_in_order() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "import-format.md").read_text(encoding="utf-8")
    section = text.split("## 3. 企业表", 1)[1].split("\n## ", 1)[0]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    documented = [(c[0], c[1]) for c in cells if c[1].isascii() and c[1].isidentifier()]  # the column table only
    assert documented == [(c.header, c.key) for c in profiles_io.ENTERPRISE_COLUMNS]


def test_command_line_import_without_a_user_updates_too(db: Session, quals: Quals) -> None:
    r = row(quals)
    data = as_csv([r], "utf-8")
    profiles_io.import_enterprises(db=db, data=data, filename="a.csv", actor=None)
    report = profiles_io.import_enterprises(
        db=db, data=as_csv([r | {"从业人数": "7"}], "utf-8"), filename="a.csv", actor=None
    )
    assert report.updated == 1
    assert get(db, r["统一社会信用代码"]).employees == 7
