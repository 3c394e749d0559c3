"""Import and export of policies as CSV/XLSX in the layout of docs/import-format.md."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from auth.service import Principal
from catalog import service as catalog_service
from catalog.models import (
    LEVEL_LABELS,
    STATUS_LABELS,
    TYPE_LABELS,
    Department,
    Policy,
    PolicyStatus,
)
from catalog.schemas import PolicyIn, PolicyUpdate
from core import tabular
from core.errors import FieldError, ValidationFailed
from core.tabular import Column, ExportFormat, ImportReport, RowKey, RowOutcome
from core.text import normalize

_LEVELS = {
    **{v: k for k, v in LEVEL_LABELS.items()},
    **{k: k for k in LEVEL_LABELS},
    "国家": "national",
    "省": "provincial",
    "市": "municipal",
    "区县": "county",
    "区": "county",
    "县": "county",
    "县级": "county",
}
_TYPES = {
    **{v: k for k, v in TYPE_LABELS.items()},
    **{k: k for k in TYPE_LABELS},
    "免申": "exempt",
    "普惠": "informational",
}
_STATUSES = {
    **{v: k for k, v in STATUS_LABELS.items()},
    **{k: k for k in STATUS_LABELS},
    "发布": "published",
    "撤回": "withdrawn",
    "过期": "expired",
}


def _list_column(header: str, key: str, note: str) -> Column:
    return Column(header, key, parse=tabular.parse_list, format=tabular.format_list, note=note, empty=list)


def _date_column(header: str, key: str) -> Column:
    return Column(header, key, parse=tabular.parse_date, format=tabular.format_date, note="日期，YYYY-MM-DD")


# The layout of a policy sheet, in export order. Keys are PolicyIn fields, plus "status".
POLICY_COLUMNS: list[Column] = [
    tabular.text_column("标题", "title", "文本，4–200 字；新增时必填"),
    tabular.text_column("文号", "doc_number", "文本；填写后作为重复导入时识别政策的依据"),
    tabular.text_column("发文部门编码", "issuing_department", "部门编码（如 zs-kjj）；新增时必填"),
    tabular.text_column("承办部门编码", "handling_department", "部门编码"),
    Column(
        "层级",
        "level",
        parse=tabular.choice_parser(_LEVELS, "层级"),
        format=lambda v: LEVEL_LABELS.get(v, v or ""),
        note="国家级/省级/市级/区县级（也可写 国家/省/市/区县 或 national/provincial/municipal/county）；新增时必填",
    ),
    Column(
        "政策类型",
        "policy_type",
        parse=tabular.choice_parser(_TYPES, "政策类型"),
        format=lambda v: TYPE_LABELS.get(v, v or ""),
        note="申报类/免申即享/普惠告知；新增时必填",
    ),
    _list_column("适用地区", "region_codes", "行政区划代码，多个用；分隔；空表示不限地区"),
    _list_column("政策分类", "categories", "小类编码，多个用；分隔"),
    _list_column("标签", "tags", "标签名或同义词，多个用；分隔"),
    _list_column("专栏", "topics", "专栏编码，多个用；分隔"),
    tabular.text_column("摘要", "summary", "文本，至多 2000 字；发布时必填"),
    tabular.text_column("解读", "interpretation"),
    tabular.text_column("解读人", "interpreter_name", "文本；发布时必填"),
    tabular.text_column("解读人联系方式", "interpreter_contact", "文本；发布时必填"),
    tabular.text_column("政策原文", "full_text"),
    _date_column("申报开始日期", "apply_start_on"),
    _date_column("申报截止日期", "apply_end_on"),
    _date_column("有效期起", "valid_from_on"),
    _date_column("有效期止", "valid_to_on"),
    Column(
        "最高金额（万元）",
        "max_amount",
        parse=tabular.parse_number,
        format=tabular.format_number,
        note="数字，单位万元",
    ),
    tabular.text_column("金额说明", "amount_text"),
    tabular.text_column("申报网址", "apply_url", "以 http:// 或 https:// 开头"),
    Column(
        "资格条件（JSON）",
        "rules",
        parse=tabular.parse_json_object,
        format=tabular.format_json,
        note='JSON 对象，如 {"all": [{"field": "region_code", "op": "within_region", "value": ["442000"]}]}；'
        "可在政策编辑页用条件构建器生成后复制；空表示不设条件",
    ),
    Column(
        "状态",
        "status",
        parse=tabular.choice_parser(_STATUSES, "状态"),
        format=lambda v: STATUS_LABELS.get(v, v or ""),
        note="草稿/已发布/已撤回/已过期；空表示新增为草稿、已有的保持不变",
    ),
    Column("置顶", "pinned", parse=tabular.parse_bool, format=tabular.format_bool, note="是/否；空为否", empty=False),
]


def policy_record(policy: Policy) -> dict[str, Any]:
    """Return the policy as one sheet row's worth of values (the snapshot plus its status)."""
    return catalog_service.snapshot(policy) | {"status": str(policy.status)}


def export_policies(*, db: Session, fmt: ExportFormat, status: PolicyStatus | str | None = None) -> bytes:
    """Write every policy (or those of one status) in the import layout, oldest first."""
    q = select(Policy).options(
        selectinload(Policy.categories),
        selectinload(Policy.tags),
        selectinload(Policy.topics),
        selectinload(Policy.handling_department),
    )
    if status:
        try:
            q = q.where(Policy.status == PolicyStatus(status))
        except ValueError:
            choices = "、".join(PolicyStatus)
            raise ValidationFailed(
                errors=[FieldError("status", f"状态应为 {choices} 之一", "invalid_status")]
            ) from None
    records = (policy_record(p) for p in db.scalars(q.order_by(Policy.id)))
    return tabular.export_table(POLICY_COLUMNS, records, fmt, sheet_title="政策")


def import_policies(
    *, db: Session, data: bytes, filename: str, actor: Principal | None, partial: bool = False
) -> ImportReport:
    """Create or update policies from a sheet; with a failed row nothing is written unless partial."""
    return tabular.run_import(
        db=db,
        data=data,
        filename=filename,
        columns=POLICY_COLUMNS,
        required=(),
        key_of=_key_of,
        apply_row=lambda values: _apply_row(db, values, actor),
        partial=partial,
    )


def _key_of(values: dict[str, Any]) -> RowKey:
    """Identify a row by 文号, or by 发文部门 + 标题 when it has none."""
    if values.get("doc_number"):
        return "doc_number", ("doc", values["doc_number"])
    if values.get("title") and values.get("issuing_department"):
        return "title", ("title", values["issuing_department"], normalize(values["title"]))
    raise ValidationFailed(
        errors=[FieldError("doc_number", "缺少文号，也没有标题和发文部门编码，无法识别是哪条政策", "missing_key")]
    )


def _find(db: Session, values: dict[str, Any]) -> Policy | None:
    """Return the stored policy a row refers to, if any."""
    doc_number = values.get("doc_number")
    if doc_number:
        policy = db.scalar(select(Policy).where(Policy.doc_number == doc_number))
        if policy is not None:
            return policy
    if not (values.get("title") and values.get("issuing_department")):
        return None
    policy = db.scalar(
        select(Policy)
        .join(Department, Policy.issuing_department_id == Department.id)
        .where(Department.code == values["issuing_department"], Policy.title == normalize(values["title"]))
    )
    # A namesake with another 文号 is a different policy; creating the row will report the clash.
    if policy is not None and doc_number and policy.doc_number and policy.doc_number != doc_number:
        return None
    return policy


def _apply_row(db: Session, values: dict[str, Any], actor: Principal | None) -> RowOutcome:
    """Create or update the policy of one row and bring it to the row's status."""
    target = values.pop("status", None)
    policy = _find(db, values)
    if policy is None:
        fields = {k: v for k, v in values.items() if v not in (None, [])}
        policy = catalog_service.create_policy(db=db, policy_in=PolicyIn(**fields), actor=actor)
        _move_to(db, policy, target, actor)
        return "created"

    before = _formatted(policy_record(policy))
    wanted = {k: _COLUMN[k].format(v) for k, v in values.items()}
    if target is not None:
        wanted["status"] = _COLUMN["status"].format(target)
    if all(before.get(k) == v for k, v in wanted.items()):
        return "unchanged"
    update = PolicyUpdate(**values)
    if target == PolicyStatus.published and policy.status != PolicyStatus.published:
        # Withdrawn policies cannot be edited: publish first, then the edit becomes a new version.
        reopen = policy.status == PolicyStatus.withdrawn
        if reopen:
            _move_to(db, policy, target, actor)
        catalog_service.update_policy(db=db, policy_id=policy.id, policy_in=update, actor=actor)
        if not reopen:
            _move_to(db, policy, target, actor)
    else:
        catalog_service.update_policy(db=db, policy_id=policy.id, policy_in=update, actor=actor)
        _move_to(db, policy, target, actor)
    return "unchanged" if _formatted(policy_record(policy)) == before else "updated"


_COLUMN = {c.key: c for c in POLICY_COLUMNS}


def _formatted(record: dict[str, Any]) -> dict[str, str]:
    return {c.key: c.format(record.get(c.key)) for c in POLICY_COLUMNS}


def _move_to(db: Session, policy: Policy, target: str | None, actor: Principal | None) -> None:
    """Bring a policy to the status a row asks for, through the lifecycle operations."""
    if target is None or target == policy.status:
        return
    if target == PolicyStatus.published:
        catalog_service.publish_policy(db=db, policy_id=policy.id, actor=actor, note="导入发布")
        return
    if target == PolicyStatus.withdrawn and policy.status == PolicyStatus.published:
        catalog_service.withdraw_policy(db=db, policy_id=policy.id, actor=actor, note="导入撤回")
        return
    if target == PolicyStatus.withdrawn:
        reason = "政策尚未发布，不能设为已撤回"
    elif target == PolicyStatus.expired:
        reason = "已过期状态由系统按有效期自动设置，不能通过导入设置"
    else:
        reason = "已发布过的政策不能改回草稿，如需下线请设为已撤回"
    raise ValidationFailed(errors=[FieldError("status", reason, "invalid_status")])
