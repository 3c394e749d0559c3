"""Bulk import of a 12345 hotline export (CSV/XLSX) into desk cases, with the foundation's row report.

Layout in docs/import-format.md §9. Each row becomes a case through :func:`desk.intake.submit_case`
(channel ``hotline``, no instant answer — the caller already talked to 12345), so kind detection,
routing when 承办单位 is empty, due times and the timeline are exactly those of any other case.
The 12345 order number (工单编号) is the idempotency key in scope ``"12345"``: importing the same file
again creates nothing and reports those rows as unchanged. As everywhere, one bad row leaves the
whole file unwritten unless ``partial``.

Firms are found by 统一社会信用代码 (else by an exact, unique 企业名称); a caller the platform does
not know stays anonymous, and what 12345 recorded about it is kept in a note on the case.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from auth.service import Principal
from catalog.models import Department
from core import tabular
from core.config import Settings
from core.errors import FieldError, ValidationFailed
from core.tabular import Column, ImportReport, RowKey, RowOutcome
from desk import clock, intake
from desk.lifecycle import add_event
from desk.models import Case, Channel, EventKind
from desk.schemas import CaseIn
from profiles import uscc
from profiles.models import Enterprise

IDEMPOTENCY_SCOPE = "12345"

# 诉求类型 as 12345 writes them, and the desk's own labels and codes.
KIND_CHOICES: dict[str, str] = {
    "咨询": "consultation",
    "政策咨询": "consultation",
    "求助": "help",
    "求决": "help",
    "投诉": "complaint",
    "举报": "report",
    "检举": "report",
    "建议": "suggestion",
    "意见建议": "suggestion",
    "意见": "suggestion",
    **{k: k for k in ("consultation", "help", "complaint", "report", "suggestion")},
}

_DATETIME = re.compile(
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T]+(\d{1,2})[:：时](\d{1,2})(?:[:：分](\d{1,2})秒?)?)?$"
)


def parse_local_datetime(text: str) -> dt.datetime:
    """Parse 2026-11-23 09:30[:00], 2026/11/23 9:30, 2026年11月23日 09:30 or a date (midnight) — naive local time."""
    raw = unicodedata.normalize("NFKC", text).strip()
    m = _DATETIME.match(raw)
    if not m:
        raise ValueError(f"「{text}」不是有效的时间，应为 YYYY-MM-DD HH:MM")
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in m.groups())
    try:
        return dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise ValueError(f"「{text}」不是存在的时间") from None


def _text(header: str, key: str, note: str = "文本") -> Column:
    return tabular.text_column(header, key, note)


# The layout of a 12345 export, in documentation order. Alias headers (工单号, 受理时间 …) come before
# the canonical one of the same field so that reports name the canonical header.
COLUMNS: list[Column] = [
    _text("工单编号", "order_no", "必填；12345 工单号，重复导入时据此识别，不会重复建单"),
    Column(
        "来电时间",
        "received_at",
        parse=parse_local_datetime,
        format=lambda v: v.isoformat(sep=" ", timespec="minutes") if v else "",
        note="YYYY-MM-DD HH:MM（本地时间）；也接受 YYYY/M/D H:MM、YYYY年M月D日 HH:MM；空则按导入时间",
    ),
    Column(
        "诉求类型",
        "kind",
        parse=tabular.choice_parser(KIND_CHOICES, "诉求类型"),
        format=lambda v: v or "",
        note="咨询/求助/投诉/举报/建议（也接受 政策咨询、求决、意见建议、检举）；空则自动识别",
    ),
    _text("标题", "title", "不超过 200 字；空则取诉求内容开头"),
    _text("诉求内容", "content", "必填"),
    _text("企业名称", "enterprise_name", "平台已登记的企业据信用代码（或唯一的名称）关联"),
    Column(
        "统一社会信用代码",
        "credit_code",
        parse=uscc.validate_credit_code,
        format=lambda v: v or "",
        note="18 位；须通过校验位检查",
    ),
    _text("联系人", "contact_name"),
    _text("联系电话", "contact_phone"),
    _text("承办单位", "department", "部门名称、简称或编码；空则按诉求内容自动分拨"),
]
ALIASES: list[Column] = [
    Column(alias, col.key, col.parse, col.format, col.note)
    for alias, key in (
        ("工单号", "order_no"),
        ("受理时间", "received_at"),
        ("诉求内容描述", "content"),
        ("来电人", "contact_name"),
        ("来电号码", "contact_phone"),
        ("承办部门", "department"),
    )
    for col in COLUMNS
    if col.key == key
]
REQUIRED = ("order_no", "content")


def _key_of(values: dict[str, Any]) -> RowKey:
    if not values.get("order_no"):
        raise ValidationFailed(errors=[FieldError("order_no", "工单编号不能为空", "missing_key")])
    return "order_no", values["order_no"]


def _fold(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()


def find_department(db: Session, text: str) -> Department | None:
    """Return the department a 12345 承办单位 names: by code, name or short name (spacing and width ignored)."""
    wanted = _fold(text)
    exact = db.scalars(
        select(Department).where(or_(Department.code == text, Department.name == text, Department.short_name == text))
    ).first()
    if exact is not None:
        return exact
    for dept in db.scalars(select(Department).order_by(Department.id)):
        if wanted in {_fold(dept.code), _fold(dept.name), _fold(dept.short_name or "")}:
            return dept
    return None


def _find_enterprise(db: Session, credit_code: str | None, name: str | None) -> Enterprise | None:
    if credit_code:
        return db.scalar(select(Enterprise).where(Enterprise.credit_code == credit_code.upper()))
    if name:
        found = list(db.scalars(select(Enterprise).where(func.lower(Enterprise.name) == name.lower()).limit(2)))
        return found[0] if len(found) == 1 else None
    return None


def _apply_row(db: Session, values: dict[str, Any], *, settings: Settings, actor: Principal | None) -> RowOutcome:
    order_no = values["order_no"]
    existing = db.scalar(
        select(Case.id).where(Case.idempotency_scope == IDEMPOTENCY_SCOPE, Case.idempotency_key == order_no)
    )
    if existing is not None:
        return "unchanged"

    department_id = None
    if values.get("department"):
        dept = find_department(db, values["department"])
        if dept is None:
            raise ValidationFailed(
                errors=[
                    FieldError(
                        "department", f"承办单位「{values['department']}」不是平台上的部门", "unknown_department"
                    )
                ]
            )
        department_id = dept.id
    received_at = None
    if values.get("received_at") is not None:
        received_at = values["received_at"].replace(tzinfo=clock.site_tz(settings))
    firm = _find_enterprise(db, values.get("credit_code"), values.get("enterprise_name"))

    case = intake.submit_case(
        db=db,
        matcher=None,
        settings=settings,
        actor=actor,
        case_in=CaseIn(
            kind=values.get("kind"),
            title=values.get("title") or None,
            content=values["content"],
            channel=Channel.hotline,
            enterprise_id=firm.id if firm else None,
            contact_name=values.get("contact_name") or None,
            contact_phone=values.get("contact_phone") or None,
            department_id=department_id,
            external_ref=order_no,
            received_at=received_at,
        ),
    )
    case.idempotency_scope = IDEMPOTENCY_SCOPE
    case.idempotency_key = order_no
    caller = values.get("enterprise_name") or ""
    if values.get("credit_code"):
        caller += f"（统一社会信用代码 {values['credit_code']}）"
    note = f"由12345热线工单 {order_no} 导入"
    if caller and firm is None:
        note += f"；来电企业：{caller}，平台未登记，未关联企业"
    add_event(
        db,
        case,
        EventKind.note,
        actor,
        visible_to_firm=False,
        note=note,
        data={
            "source": IDEMPOTENCY_SCOPE,
            "order_no": order_no,
            "enterprise_name": values.get("enterprise_name"),
            "credit_code": values.get("credit_code"),
            "enterprise_id": firm.id if firm else None,
        },
    )
    db.flush()
    return "created"


def import_12345(
    *,
    db: Session,
    settings: Settings,
    data: bytes,
    filename: str,
    actor: Principal | None,
    partial: bool = False,
) -> ImportReport:
    """Create a case for every new 12345 order in the file; rows already imported are unchanged.

    `actor` None is the command line (the system); over HTTP a supervisor or admin imports.
    """
    return tabular.run_import(
        db=db,
        data=data,
        filename=filename,
        columns=[*ALIASES, *COLUMNS],
        required=REQUIRED,
        key_of=_key_of,
        apply_row=lambda values: _apply_row(db, values, settings=settings, actor=actor),
        partial=partial,
    )
