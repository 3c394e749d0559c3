"""12345 export import: cases through the desk service, a row-level report, idempotent by 工单编号."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auth.models import Role
from auth.service import principal_for_user
from core.config import Settings
from desk import io as desk_io
from desk.models import Case, CaseEvent
from tests import factories

CST = ZoneInfo("Asia/Shanghai")
HEADER = [
    "工单编号",
    "来电时间",
    "诉求类型",
    "标题",
    "诉求内容",
    "企业名称",
    "统一社会信用代码",
    "联系人",
    "联系电话",
    "承办单位",
]


def csv_bytes(rows: list[list[str]], header: list[str] = HEADER, encoding: str = "utf-8") -> bytes:
    lines = [",".join(header), *(",".join(r) for r in rows)]
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def _order() -> str:
    return f"ZS12345-{factories.n():06d}"


def _count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Case)) or 0


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(update={"desk_sla_profile": "zhongshan"})


def test_good_file_creates_hotline_cases(db: Session, settings: Settings) -> None:
    dept = factories.make_department(db, name="中山市工业和信息化局测试", short_name="工信测试")
    other = factories.make_department(db)
    firm = factories.make_enterprise(db)
    by_name = factories.make_enterprise(db, name=f"中山市按名称关联有限公司{factories.n()}")
    o1, o2, o3, o4 = _order(), _order(), _order(), _order()
    data = csv_bytes(
        [
            [
                o1,
                "2026-11-02 09:30",
                "投诉",
                "技改奖补迟迟未到账",
                "技改奖补公示两个月了还没拨付",
                firm.name,
                firm.credit_code,
                "李先生",
                "13800138000",
                dept.name,
            ],
            [
                o2,
                "2026/11/3 14:05",
                "政策咨询",
                "",
                "小微企业房租补贴怎么申请？",
                by_name.name,
                "",
                "王女士",
                "13900139000",
                other.code,
            ],
            [
                o3,
                "2026年11月4日 10:00",
                "",
                "",
                "有人在微信群里卖增值税专用发票，疑似虚开，请查处",
                "中山市未登记贸易行",
                factories.credit_code(),
                "",
                "",
                "工信测试",
            ],
            [o4, "2026-11-05", "建议", "", "建议政务服务中心周末也开放", "", "", "", "", " 中山市工业和信息化局测试 "],
        ]
    )
    before = _count(db)
    report = desk_io.import_12345(db=db, settings=settings, data=data, filename="12345.csv", actor=None)

    assert (report.total, report.created, report.failed, report.written) == (4, 4, 0, True), report.errors
    assert _count(db) == before + 4
    cases = {c.external_ref: c for c in db.scalars(select(Case).where(Case.external_ref.in_([o1, o2, o3, o4])))}
    c1, c2, c3, c4 = cases[o1], cases[o2], cases[o3], cases[o4]
    assert all(c.channel == "hotline" and c.idempotency_scope == "12345" for c in cases.values())
    assert c1.idempotency_key == o1 and c1.number.startswith("HQ20261102-")
    assert c1.received_at == dt.datetime(2026, 11, 2, 9, 30, tzinfo=CST)
    assert c2.received_at == dt.datetime(2026, 11, 3, 14, 5, tzinfo=CST)
    assert c4.received_at == dt.datetime(2026, 11, 5, 0, 0, tzinfo=CST)
    assert (c1.kind, c1.kind_detected, c2.kind, c4.kind) == ("complaint", False, "consultation", "suggestion")
    assert c3.kind_detected and c3.kind == "report"  # detected from the text
    assert (c1.department_id, c2.department_id, c3.department_id, c4.department_id) == (
        dept.id,
        other.id,
        dept.id,
        dept.id,
    )
    assert (c1.enterprise_id, c2.enterprise_id, c3.enterprise_id) == (firm.id, by_name.id, None)
    assert c2.title.startswith("小微企业房租补贴") and c1.contact_phone == "13800138000"
    assert c1.close_due_at is not None and c1.status == "dispatched"
    notes = db.scalars(select(CaseEvent).where(CaseEvent.case_id == c3.id, CaseEvent.kind == "note")).all()
    [note] = [n for n in notes if (n.data or {}).get("source") == "12345"]
    assert "中山市未登记贸易行" in note.note and not note.visible_to_firm and note.data["order_no"] == o3

    # The same file again creates nothing.
    again = desk_io.import_12345(db=db, settings=settings, data=data, filename="12345.csv", actor=None)
    assert (again.created, again.unchanged, again.failed, again.written) == (0, 4, 0, False)
    assert _count(db) == before + 4


def test_bad_rows_are_reported_and_nothing_is_written(db: Session, settings: Settings) -> None:
    dept = factories.make_department(db)
    good, dup = _order(), _order()
    code = factories.credit_code()
    bad_code = code[:-1] + ("0" if code[-1] != "0" else "1")
    rows = [
        [good, "2026-11-02 09:30", "投诉", "", "补贴迟迟没有拨付", "", "", "", "", dept.code],
        [_order(), "2026-11-02 09:30", "投诉", "", "补贴迟迟没有拨付", "", bad_code, "", "", dept.code],
        [_order(), "2026-11-02 09:30", "投诉", "", "补贴迟迟没有拨付", "", "", "", "", "不存在的局"],
        [_order(), "11月2日上午", "投诉", "", "补贴迟迟没有拨付", "", "", "", "", dept.code],
        [_order(), "2026-11-02 09:30", "表扬", "", "补贴迟迟没有拨付", "", "", "", "", dept.code],
        [_order(), "2026-11-02 09:30", "投诉", "", "", "", "", "", "", dept.code],
        [dup, "2026-11-02 09:30", "投诉", "", "补贴迟迟没有拨付", "", "", "", "", dept.code],
        [dup, "2026-11-02 09:30", "投诉", "", "补贴迟迟没有拨付", "", "", "", "", dept.code],
        [_order(), "2099-01-01 09:00", "投诉", "", "补贴迟迟没有拨付", "", "", "", "", dept.code],
    ]
    before = _count(db)
    report = desk_io.import_12345(db=db, settings=settings, data=csv_bytes(rows), filename="x.csv", actor=None)
    assert report.rejected and not report.written and _count(db) == before
    problems = {(e.row, e.column): e for e in report.errors}
    assert problems[(3, "统一社会信用代码")].reason == "统一社会信用代码校验位错误，请核对是否有录入错误"
    assert problems[(4, "承办单位")].code == "unknown_department" and "不存在的局" in problems[(4, "承办单位")].reason
    assert problems[(5, "来电时间")].value == "11月2日上午"
    assert "诉求类型「表扬」无效" in problems[(6, "诉求类型")].reason
    assert (7, "诉求内容") in problems
    assert problems[(9, "工单编号")].code == "duplicate_row" and "第 8 行" in problems[(9, "工单编号")].reason
    assert problems[(10, "来电时间")].code == "future_datetime"
    assert report.failed == 7 and report.created == 2  # rows 2 and 8 would have gone in

    partial = desk_io.import_12345(
        db=db, settings=settings, data=csv_bytes(rows), filename="x.csv", actor=None, partial=True
    )
    assert partial.written and partial.created == 2 and _count(db) == before + 2
    assert db.scalar(select(Case).where(Case.idempotency_scope == "12345", Case.idempotency_key == good)) is not None


def test_gbk_csv_and_alias_headers(db: Session, settings: Settings) -> None:
    dept = factories.make_department(db, name=f"中山市人力资源和社会保障局{factories.n()}")
    order = _order()
    header = ["工单号", "受理时间", "诉求类型", "诉求内容", "来电人", "来电号码", "承办部门"]
    data = csv_bytes(
        [
            [
                order,
                "2026-11-06 16:20",
                "求助",
                "稳岗返还的钱被退回了，对公账户已销户，怎么重新发放",
                "赵会计",
                "0760-88886666",
                dept.name,
            ]
        ],
        header=header,
        encoding="gbk",
    )
    report = desk_io.import_12345(db=db, settings=settings, data=data, filename="导出.CSV", actor=None)
    assert report.created == 1, report.errors
    case = db.scalar(select(Case).where(Case.external_ref == order))
    assert case is not None and case.content.startswith("稳岗返还") and case.contact_name == "赵会计"
    assert (case.kind, case.department_id) == ("help", dept.id)


def test_xlsx_with_date_cells(db: Session, settings: Settings) -> None:
    dept = factories.make_department(db)
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER)
    order = _order()
    sheet.append(
        [
            order,
            dt.datetime(2026, 11, 9, 8, 45),
            "咨询",
            "",
            "高企认定奖励什么时候发",
            "",
            "",
            "",
            13800138000,
            dept.code,
        ]
    )
    out = io.BytesIO()
    book.save(out)
    report = desk_io.import_12345(db=db, settings=settings, data=out.getvalue(), filename="12345.xlsx", actor=None)
    assert report.created == 1, report.errors
    case = db.scalar(select(Case).where(Case.external_ref == order))
    assert case is not None and case.received_at == dt.datetime(2026, 11, 9, 8, 45, tzinfo=CST)
    assert case.contact_phone == "13800138000"


def test_missing_required_column_refuses_the_file(db: Session, settings: Settings) -> None:
    data = csv_bytes([[_order(), "2026-11-02 09:30"]], header=["工单编号", "来电时间"])
    report = desk_io.import_12345(db=db, settings=settings, data=data, filename="x.csv", actor=None)
    assert report.header_failed and [(e.row, e.column, e.code) for e in report.errors] == [
        (1, "诉求内容", "missing_column")
    ]


def test_import_route_for_supervisors(db: Session, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    dept = factories.make_department(db)
    order = _order()
    data = csv_bytes(
        [[order, "2026-11-10 09:00", "投诉", "", "办事窗口推诿，材料一次性告知没有做到", "", "", "", "", dept.code]]
    )
    files: dict[str, Any] = {"file": ("12345.csv", data, "text/csv")}
    ok = client.post("/api/v1/desk/import/12345", files=files, headers=auth_headers(Role.supervisor))
    assert ok.status_code == 200 and ok.json()["created"] == 1
    case = db.scalar(select(Case).where(Case.external_ref == order))
    assert case is not None and case.channel == "hotline"
    bad = csv_bytes([[_order(), "明天", "投诉", "", "办事窗口推诿", "", "", "", "", dept.code]])
    refused = client.post(
        "/api/v1/desk/import/12345", files={"file": ("12345.csv", bad, "text/csv")}, headers=auth_headers(Role.admin)
    )
    assert refused.status_code == 422 and refused.json()["report"]["errors"][0]["column"] == "来电时间"
    officer = client.post("/api/v1/desk/import/12345", files=files, headers=auth_headers(Role.desk))
    assert officer.status_code == 403


def test_import_by_a_supervisor_records_who_filed(db: Session, settings: Settings) -> None:
    sup = principal_for_user(factories.make_user(db, role=Role.supervisor))
    dept = factories.make_department(db)
    order = _order()
    data = csv_bytes([[order, "2026-11-10 09:00", "投诉", "", "窗口人员态度差", "", "", "", "", dept.code]])
    report = desk_io.import_12345(db=db, settings=settings, data=data, filename="x.csv", actor=sup)
    assert report.created == 1
    case = db.scalar(select(Case).where(Case.external_ref == order))
    assert case is not None and case.submitted_by_id == sup.id


def test_docs_list_the_columns() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "import-format.md").read_text(encoding="utf-8")
    section = text.split("## 9. 12345 热线工单导入", 1)[1].split("\n## ", 1)[0]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    documented = [(c[0], c[1]) for c in cells if c[1].isascii() and c[1].isidentifier()]
    assert documented == [(c.header, c.key) for c in desk_io.COLUMNS]
