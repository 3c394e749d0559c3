"""Import and export of enterprises as CSV/XLSX in the layout of docs/import-format.md."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from auth.models import Role
from auth.service import Principal
from catalog.fields import CREDIT_STANDINGS, TAX_CREDIT_LEVELS
from core import tabular
from core.errors import FieldError, ValidationFailed
from core.tabular import Column, ExportFormat, ImportReport, RowKey, RowOutcome
from profiles import service as profiles_service
from profiles import uscc
from profiles.models import Enterprise, EnterpriseQualification
from profiles.schemas import EnterpriseIn, EnterpriseUpdate

_CREDIT_LABELS = dict(CREDIT_STANDINGS)
_CREDIT = {**{label: value for value, label in CREDIT_STANDINGS}, **{value: value for value, _ in CREDIT_STANDINGS}}
_TAX = {**{label: value for value, label in TAX_CREDIT_LEVELS}, **{value: value for value, _ in TAX_CREDIT_LEVELS}}
_NAME_AND_DATE = re.compile(r"^(.+?)\s*[:：]\s*(\S+)$")


def parse_qualifications(text: str) -> list[dict[str, Any]]:
    """Parse "高新技术企业:2027-12-31；科技型中小企业" into names with optional expiry dates."""
    out = []
    for item in tabular.parse_list(text):
        m = _NAME_AND_DATE.match(item)
        if m:
            try:
                until = tabular.parse_date(m[2])
            except ValueError as exc:
                raise ValueError(f"资质「{m[1]}」的有效期{exc}") from None
            out.append({"name": m[1], "valid_until_on": until})
        else:
            out.append({"name": item, "valid_until_on": None})
    return out


def format_qualifications(quals: list[dict[str, Any]] | None) -> str:
    """Format qualifications as "名称:有效期至；名称", sorted by name so equal sets read the same."""
    return tabular.format_list(
        f"{q['name']}:{tabular.format_date(q['valid_until_on'])}" if q.get("valid_until_on") else q["name"]
        for q in sorted(quals or [], key=lambda q: q["name"])
    )


def _credit_code(text: str) -> str:
    return uscc.validate_credit_code(text)


def _money(header: str, key: str) -> Column:
    return Column(header, key, parse=tabular.parse_number, format=tabular.format_number, note="数字，单位万元")


# The layout of an enterprise sheet, in export order. Keys are EnterpriseIn fields.
ENTERPRISE_COLUMNS: list[Column] = [
    Column(
        "统一社会信用代码",
        "credit_code",
        parse=_credit_code,
        format=lambda v: v or "",
        note="18 位，必填；重复导入时据此识别企业",
    ),
    tabular.text_column("企业名称", "name", "文本；新增时必填"),
    tabular.text_column("所在地区代码", "region_code", "6 位行政区划代码（GB/T 2260），如 442000"),
    tabular.text_column("行业代码", "industry_code", "国民经济行业分类代码（GB/T 4754-2017），如 C3911"),
    Column("成立日期", "established_on", parse=tabular.parse_date, format=tabular.format_date, note="日期，YYYY-MM-DD"),
    _money("注册资本（万元）", "registered_capital"),
    Column(
        "从业人数",
        "employees",
        parse=tabular.parse_int,
        format=lambda v: "" if v is None else str(v),
        note="整数",
    ),
    _money("年营业收入（万元）", "annual_revenue"),
    _money("资产总额（万元）", "total_assets"),
    _money("年研发费用（万元）", "rd_expense"),
    _money("年出口额（万元）", "export_revenue"),
    Column(
        "信用状况",
        "credit_standing",
        parse=tabular.choice_parser(_CREDIT, "信用状况"),
        format=lambda v: _CREDIT_LABELS.get(v, v or ""),
        note="良好/一般/失信",
    ),
    Column(
        "纳税信用等级",
        "tax_credit_level",
        parse=tabular.choice_parser(_TAX, "纳税信用等级"),
        format=lambda v: v or "",
        note="A/B/M/C/D",
    ),
    Column(
        "企业资质",
        "qualifications",
        parse=parse_qualifications,
        format=format_qualifications,
        note="资质名称，可带有效期（名称:YYYY-MM-DD），多个用；分隔",
        empty=list,
    ),
    tabular.text_column("经营范围", "business_scope"),
    tabular.text_column("主要产品", "products"),
    tabular.text_column("企业需求", "needs"),
    tabular.text_column("联系人", "contact_name"),
    tabular.text_column("联系电话", "contact_phone", "手机号或带区号的固定电话"),
    tabular.text_column("联系邮箱", "contact_email"),
]

_COLUMN = {c.key: c for c in ENTERPRISE_COLUMNS}

# Who imports from the command line: staff rights, no user account (user_id is None).
_SYSTEM = Principal(id=0, role=Role.admin, name="批量导入", via_api_key=True)


def enterprise_record(ent: Enterprise) -> dict[str, Any]:
    """Return the enterprise as one sheet row's worth of values."""
    record = {c.key: getattr(ent, c.key) for c in ENTERPRISE_COLUMNS if c.key != "qualifications"}
    record["qualifications"] = [{"name": q.tag.name, "valid_until_on": q.valid_until_on} for q in ent.qualifications]
    return record


def export_enterprises(*, db: Session, fmt: ExportFormat) -> bytes:
    """Write every enterprise in the import layout, oldest first."""
    q = (
        select(Enterprise)
        .options(selectinload(Enterprise.qualifications).joinedload(EnterpriseQualification.tag))
        .order_by(Enterprise.id)
    )
    records = (enterprise_record(e) for e in db.scalars(q))
    return tabular.export_table(ENTERPRISE_COLUMNS, records, fmt, sheet_title="企业")


def import_enterprises(
    *, db: Session, data: bytes, filename: str, actor: Principal | None, partial: bool = False
) -> ImportReport:
    """Create or update enterprises by credit code; with a failed row nothing is written unless partial."""
    actor = actor or _SYSTEM
    return tabular.run_import(
        db=db,
        data=data,
        filename=filename,
        columns=ENTERPRISE_COLUMNS,
        required=("credit_code",),
        key_of=_key_of,
        apply_row=lambda values: _apply_row(db, values, actor),
        partial=partial,
    )


def _key_of(values: dict[str, Any]) -> RowKey:
    if not values.get("credit_code"):
        raise ValidationFailed(errors=[FieldError("credit_code", "统一社会信用代码不能为空", "missing_key")])
    return "credit_code", values["credit_code"]


def _formatted(record: dict[str, Any]) -> dict[str, str]:
    return {c.key: c.format(record.get(c.key)) for c in ENTERPRISE_COLUMNS}


def _apply_row(db: Session, values: dict[str, Any], actor: Principal) -> RowOutcome:
    """Create or update the enterprise of one row."""
    credit_code = values.pop("credit_code")
    ent = profiles_service.get_by_credit_code(db=db, credit_code=credit_code)
    if ent is None:
        fields = {k: v for k, v in values.items() if v not in (None, [])}
        profiles_service.create_enterprise(db=db, enterprise_in=EnterpriseIn(credit_code=credit_code, **fields))
        return "created"
    before = _formatted(enterprise_record(ent))
    wanted = {k: _COLUMN[k].format(v) for k, v in values.items()}
    if all(before[k] == v for k, v in wanted.items()):
        return "unchanged"
    profiles_service.update_enterprise(
        db=db, enterprise_id=ent.id, enterprise_in=EnterpriseUpdate(**values), actor=actor
    )
    return "unchanged" if _formatted(enterprise_record(ent)) == before else "updated"
