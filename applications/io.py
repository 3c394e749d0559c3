"""Importing a department's lists: the application result list (申报结果) of a policy and the payout list
(兑现清单) of a 免申即享 roster. Matched by 统一社会信用代码, reported row by row (row number, column,
reason), idempotent: importing the same file again changes nothing. Layout in docs/import-format.md.

Both run through `core.tabular.run_import`: without `partial`, one bad row writes nothing.
"""

from __future__ import annotations

from typing import Any

from applications import exempt, lifecycle, service
from applications.lifecycle import ACTION_FOR_STATUS, S
from applications.models import STATUS_LABELS, Application, ExemptRoster
from auth.service import Principal
from catalog.models import Policy
from core import tabular
from core.db import utcnow
from core.errors import FieldError, ValidationFailed
from core.tabular import Column, ImportReport, RowKey, RowOutcome
from profiles import service as profiles_service
from profiles import uscc

_STATUS_CHOICES = {
    **{STATUS_LABELS[s]: s for s in ACTION_FOR_STATUS},
    **{s: s for s in ACTION_FOR_STATUS},
    "受理": "accepted",
    "审核": "reviewing",
    "公示中": "publicized",
    "兑现": "paid",
    "不通过": "rejected",
    "驳回": "rejected",
}
_STATUS_SHOWN = "、".join(STATUS_LABELS[s] for s in ACTION_FOR_STATUS)


def _status(text: str) -> str:
    value = _STATUS_CHOICES.get(tabular.header_key(text))
    if value is None:
        raise ValueError(f"状态「{text}」无效，应为{_STATUS_SHOWN}之一")
    return value


def _money(header: str, key: str) -> Column:
    return Column(header, key, parse=tabular.parse_number, format=tabular.format_number, note="数字，单位万元")


_CREDIT = Column(
    "统一社会信用代码", "credit_code", parse=uscc.validate_credit_code, format=lambda v: v or "", note="18 位，必填"
)
_NAME = tabular.text_column("企业名称", "name", "文本，仅供核对（不导入）")
_PAID_ON = Column(
    "兑现日期", "paid_on", parse=tabular.parse_date, format=tabular.format_date, note="日期，YYYY-MM-DD；空为今天"
)

RESULT_COLUMNS: list[Column] = [
    _CREDIT,
    _NAME,
    Column(
        "状态",
        "status",
        parse=_status,
        format=lambda v: STATUS_LABELS.get(v or "", v or ""),
        note=f"必填：{_STATUS_SHOWN}",
    ),
    _money("兑现金额（万元）", "amount"),
    _PAID_ON,
    tabular.text_column("说明", "note", "文本；未通过时填写原因"),
]
PAYOUT_COLUMNS: list[Column] = [_CREDIT, _NAME, _money("兑现金额（万元）", "amount"), _PAID_ON]


def _key_of(values: dict[str, Any]) -> RowKey:
    if not values.get("credit_code"):
        raise ValidationFailed(errors=[FieldError("credit_code", "统一社会信用代码不能为空", "missing_key")])
    return "credit_code", values["credit_code"]


def _firm_id(db: Any, credit_code: str) -> int:
    ent = profiles_service.get_by_credit_code(db=db, credit_code=credit_code)
    if ent is None:
        raise ValidationFailed(errors=[FieldError("credit_code", "平台上没有该信用代码的企业", "unknown_enterprise")])
    return ent.id


# ---------------------------------------------------------------- application results


def import_results(
    *, db: Any, actor: Principal, policy_id: int, data: bytes, filename: str, partial: bool = False
) -> ImportReport:
    """Apply a department's result list for one policy: each row moves (or opens) a firm's application."""
    policy = service.visible_policy(db, policy_id)
    lifecycle.require_manager(policy, actor)
    service.require_application_type(policy)
    return tabular.run_import(
        db=db,
        data=data,
        filename=filename,
        columns=RESULT_COLUMNS,
        required=("credit_code", "status"),
        key_of=_key_of,
        apply_row=lambda values: _result_row(db, policy, actor, values),
        partial=partial,
    )


def _result_row(db: Any, policy: Policy, actor: Principal, values: dict[str, Any]) -> RowOutcome:
    status = values.get("status")
    if not status:
        raise ValidationFailed(errors=[FieldError("status", "状态不能为空", "required")])
    note = values.get("note")
    amount, paid_on, reason = service.check_outcome(
        status, values.get("amount"), values.get("paid_on"), note if status == S.rejected else None, reason_field="note"
    )
    enterprise_id = _firm_id(db, values["credit_code"])
    app = service.find(db, enterprise_id, policy.id)
    if app is not None and app.status == status:
        same = (status != S.paid or (app.amount == amount and app.paid_on == paid_on)) and (
            status != S.rejected or app.reason == reason
        )
        if same:
            return "unchanged"
        raise ValidationFailed(
            errors=[
                FieldError("amount" if status == S.paid else "note", "与已登记的结果不一致，请逐条更正", "conflict")
            ]
        )
    outcome: RowOutcome = "updated"
    if app is None:
        # The firm applied outside the platform: its application is opened from the department's list.
        now = utcnow()
        app = Application(
            enterprise_id=enterprise_id,
            policy_id=policy.id,
            status=S.submitted,
            source="import",
            submitted_at=now,
            updated_at=now,
        )
        db.add(app)
        db.flush()
        lifecycle.record(db, app, "submit", actor=actor, from_status=None, note="根据部门申报结果登记", at=now)
        outcome = "created"
    lifecycle.check_transition(app, ACTION_FOR_STATUS[status])
    service.set_status(
        db=db,
        actor=actor,
        app=app,
        status=status,
        note=None if status == S.rejected else note,
        amount=amount,
        paid_on=paid_on,
        reason=reason,
    )
    return outcome


# ---------------------------------------------------------------- 免申即享 payouts


def import_payouts(
    *, db: Any, actor: Principal, roster_id: int, data: bytes, filename: str, partial: bool = False
) -> ImportReport:
    """Record a department's payout list against a roster: each row pays one confirmed firm."""
    roster = exempt.get_roster(db=db, roster_id=roster_id, actor=actor)
    return tabular.run_import(
        db=db,
        data=data,
        filename=filename,
        columns=PAYOUT_COLUMNS,
        required=("credit_code", "amount"),
        key_of=_key_of,
        apply_row=lambda values: _payout_row(db, roster, actor, values),
        partial=partial,
    )


def _payout_row(db: Any, roster: ExemptRoster, actor: Principal, values: dict[str, Any]) -> RowOutcome:
    amount, paid_on = exempt.check_payout(values.get("amount"), values.get("paid_on"))
    enterprise_id = _firm_id(db, values["credit_code"])
    entry = next((e for e in roster.entries if e.enterprise_id == enterprise_id), None)
    if entry is None:
        raise ValidationFailed(errors=[FieldError("credit_code", "该企业不在本期兑现名单中", "not_on_roster")])
    if entry.status == "paid":
        if entry.amount == amount and entry.paid_on == paid_on:
            return "unchanged"
        raise ValidationFailed(errors=[FieldError("amount", "该企业已兑现，金额或日期与已登记的不一致", "conflict")])
    if entry.status != "confirmed":
        raise ValidationFailed(
            errors=[FieldError("credit_code", "该企业尚未确认（或已排除），不能登记兑现", "not_confirmed")]
        )
    exempt.pay_entry(db, entry, actor, amount, paid_on)
    return "updated"
