"""Request and response shapes of applications (申报) and 免申即享 rosters."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from core.schemas import Id

Amount = Field(None, gt=0, lt=1e9, description="兑现金额（万元）")


class ApplyIn(BaseModel):
    """A firm applies for a policy (or records that it applied)."""

    policy_id: Id = Field(description="申报的政策（须为已发布的申报类政策）")


class WithdrawIn(BaseModel):
    note: str | None = Field(None, max_length=500, description="撤回说明")


class StatusIn(BaseModel):
    """A department sets an application's status."""

    status: str = Field(
        max_length=20,
        description="新状态：accepted 已受理 / reviewing 审核中 / publicized 公示 / paid 已兑现 / rejected 未通过",
    )
    note: str | None = Field(None, max_length=500, description="说明（企业可见）")
    amount: float | None = Amount
    paid_on: dt.date | None = Field(None, description="兑现日期（已兑现时；空为今天）")
    reason: str | None = Field(None, max_length=500, description="未通过的原因（未通过时必填）")


class ApplicationEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str
    from_status: str | None
    to_status: str
    note: str | None
    actor_role: str
    actor_name: str
    at: dt.datetime


class ApplicationOut(BaseModel):
    id: int
    enterprise_id: int
    enterprise_name: str
    credit_code: str
    policy_id: int
    policy_title: str
    status: str
    status_label: str
    source: str
    amount: float | None
    paid_on: dt.date | None
    reason: str | None
    submitted_at: dt.datetime
    updated_at: dt.datetime
    events: list[ApplicationEventOut] = Field(default_factory=list, description="状态变更记录（谁、何时、说明）")


class RosterIn(BaseModel):
    note: str | None = Field(None, max_length=200, description="备注（如批次）")


class DecisionIn(BaseModel):
    action: str = Field(max_length=20, description="confirm 确认 / exclude 排除")
    reason: str | None = Field(None, max_length=500, description="排除原因（排除时必填）")


class PayoutIn(BaseModel):
    amount: float | None = Amount
    paid_on: dt.date | None = Field(None, description="兑现日期（空为今天）")


class RosterOut(BaseModel):
    id: int
    policy_id: int
    policy_title: str
    frozen_on: dt.date
    frozen_at: dt.datetime
    policy_version: int
    created_by_name: str
    note: str | None
    counts: dict[str, int] = Field(
        description="各状态企业数：pending 待确认 / confirmed 已确认 / excluded 已排除 / paid 已兑现"
    )


class EntryOut(BaseModel):
    id: int
    roster_id: int
    enterprise_id: int
    enterprise_name: str
    credit_code: str
    status: str
    status_label: str
    match_status: str
    reason: str | None
    amount: float | None
    paid_on: dt.date | None
    decided_by_name: str | None
    decided_at: dt.datetime | None


class PayoutOut(BaseModel):
    """A firm's 免申即享 payout, as the firm sees it."""

    policy_id: int
    policy_title: str
    amount: float
    paid_on: dt.date | None


class NeverAppliedPushIn(BaseModel):
    """Push a policy to its eligible firms that never applied."""

    channels: list[str] = Field(default_factory=lambda: ["inbox"], max_length=4, description="推送方式")
    message: str | None = Field(None, max_length=500, description="附言")
