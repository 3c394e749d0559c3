"""Desk request and response bodies."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.schemas import Page
from desk.models import Channel, Rating
from desk.sla import Kind

SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Units an extension (延期) may be granted in.
ExtensionUnit = Literal["working_days", "working_hours", "calendar_days", "hours"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AttachmentIn(_In):
    """Metadata of a file the firm attached (the file itself is kept by the document store)."""

    name: str = Field(min_length=1, max_length=200, description="文件名")
    size: int = Field(gt=0, description="字节数")
    content_type: str = Field(min_length=3, max_length=100, description="MIME 类型，如 application/pdf")
    sha256: str = Field(description="文件内容的 SHA-256（64位十六进制）")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError("文件名不能包含路径")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.lower()
        if not SHA256.match(value):
            raise ValueError("应为64位十六进制的 SHA-256 摘要")
        return value


class VisitRecord(_In):
    """The visit after which staff file a case on behalf of a firm (走访代提)."""

    visited_on: dt.date = Field(description="走访日期")
    visitor: str = Field(min_length=1, max_length=60, description="走访人")
    location: str = Field(min_length=1, max_length=200, description="走访地点")
    note: str | None = Field(None, max_length=2000, description="走访记录")


class CaseIn(_In):
    """A new enquiry. The kind is detected from the text when not given."""

    kind: Kind | None = Field(
        None,
        description="诉求类型：consultation 咨询 / help 求助 / complaint 投诉 / report 举报 / suggestion 建议；不填则自动识别",
    )
    title: str | None = Field(None, max_length=200, description="标题；不填取正文开头")
    content: str = Field(min_length=2, max_length=5000, description="诉求内容")
    channel: Channel | None = Field(
        None, description="渠道：企业网上提交为 web，系统对接为 api/hotline，工作人员代提为 proxy"
    )
    enterprise_id: int | None = Field(None, description="企业（工作人员代提、热线转入时填写；企业用户自动取本企业）")
    contact_name: str | None = Field(None, max_length=60)
    contact_phone: str | None = Field(None, max_length=40)
    related_policy_id: int | None = Field(None, description="相关政策")
    department_id: int | None = Field(None, description="承办部门（仅工作人员可指定；不填则自动分拨）")
    visit_record: VisitRecord | None = Field(None, description="走访记录（代提必填）")
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=20)
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=100, description="幂等键：同一调用方重复提交同一键只生成一件工单"
    )
    external_ref: str | None = Field(None, max_length=80, description="外部编号（如12345工单号）")
    received_at: dt.datetime | None = Field(None, description="受理时间（仅系统对接、导入可填；默认当前时间）")


class NoteIn(_In):
    note: str | None = Field(None, max_length=5000, description="说明")


class RequiredNoteIn(_In):
    note: str = Field(min_length=1, max_length=5000, description="说明")


class NoteOnFirmIn(_In):
    note: str = Field(min_length=1, max_length=5000)
    visible_to_firm: bool = Field(False, description="企业是否可见（企业本人的补充说明总是可见）")


class ResolveIn(_In):
    resolution: str = Field(min_length=2, max_length=5000, description="办结答复")


class RateIn(_In):
    rating: Rating = Field(description="满意 satisfied / 基本满意 basically_satisfied / 不满意 dissatisfied")
    comment: str | None = Field(None, max_length=2000)


class AcceptAnswerIn(_In):
    rating: Rating | None = Field(None, description="可同时评价即时答复")
    comment: str | None = Field(None, max_length=2000)


class DepartmentTargetIn(_In):
    department_id: int = Field(description="部门")
    note: str | None = Field(None, max_length=2000)


class ReasonIn(_In):
    reason: str = Field(min_length=2, max_length=2000, description="理由")


class DecisionIn(_In):
    approve: bool = Field(description="true 批准 / false 驳回")
    note: str | None = Field(None, max_length=2000)


class ExtensionIn(_In):
    amount: float = Field(gt=0, le=60, description="延长时长")
    unit: ExtensionUnit = Field(
        "working_days", description="单位：working_days / working_hours / calendar_days / hours"
    )
    reason: str = Field(min_length=2, max_length=2000, description="延期理由")


class RevisitIn(_In):
    note: str = Field(min_length=1, max_length=5000, description="回访记录")
    rating: Rating | None = Field(None, description="企业在回访中给出的评价")
    comment: str | None = Field(None, max_length=2000)


class KindIn(_In):
    kind: Kind
    note: str | None = Field(None, max_length=2000)


class PromoteIn(_In):
    code: str | None = Field(None, max_length=40, pattern=r"^[a-z0-9-]+$", description="FAQ 编码；不填自动生成")
    question: str | None = Field(None, min_length=2, max_length=500, description="问题；不填取工单标题")
    answer: str | None = Field(None, min_length=2, max_length=5000, description="答案；不填取办结答复")
    keywords: list[str] = Field(default_factory=list, max_length=20)


class FaqIn(_In):
    code: str = Field(min_length=2, max_length=40, pattern=r"^[a-z0-9-]+$")
    question: str = Field(min_length=2, max_length=500)
    answer: str = Field(min_length=2, max_length=5000)
    department_id: int | None = None
    keywords: list[str] = Field(default_factory=list, max_length=20)
    related_policies: list[str] = Field(default_factory=list, max_length=20)
    active: bool = True


class FaqUpdate(_In):
    question: str | None = Field(None, min_length=2, max_length=500)
    answer: str | None = Field(None, min_length=2, max_length=5000)
    department_id: int | None = None
    keywords: list[str] | None = Field(None, max_length=20)
    related_policies: list[str] | None = Field(None, max_length=20)
    active: bool | None = None

    @field_validator("keywords", "related_policies", mode="before")
    @classmethod
    def _null_clears(cls, value: Any) -> Any:
        # An explicit null clears the list (the column itself is never null).
        return [] if value is None else value


# ---------------------------------------------------------------- responses


class DepartmentRef(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    short_name: str


class CaseDepartmentOut(BaseModel):
    department: DepartmentRef
    role: str


class PauseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    start: dt.datetime
    end: dt.datetime | None
    reason: str


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    label: str = ""
    actor_name: str | None
    actor_role: str | None
    department_id: int | None
    from_status: str | None
    to_status: str | None
    note: str | None
    data: dict[str, Any]
    visible_to_firm: bool
    at: dt.datetime


class SlaOut(BaseModel):
    """The clock the case is on now: which stage, when due, state and colour."""

    stage: str | None
    due_at: dt.datetime | None
    state: str | None
    state_label: str | None
    colour: str | None


class CaseBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: str
    kind: str
    kind_label: str = ""
    title: str
    channel: str
    status: str
    status_label: str = ""
    enterprise_id: int | None
    enterprise_name: str | None = None
    department: DepartmentRef | None = None
    received_at: dt.datetime
    contact_due_at: dt.datetime | None
    reply_due_at: dt.datetime | None
    close_due_at: dt.datetime | None
    due_provisional: bool
    sla: SlaOut | None = None
    supervised: bool
    reopen_count: int
    escalation_level: int
    paused: bool
    rating: str | None


class CaseOut(CaseBrief):
    content: str
    kind_detected: bool
    kind_confidence: float | None
    contact_name: str | None
    contact_phone: str | None
    related_policy_id: int | None
    routing_method: str | None
    routing_confidence: float | None
    instant_answer: dict[str, Any] | None
    attachments: list[dict[str, Any]]
    resolution: str | None
    sla_profile: str
    due_warnings: list[str]
    contacted_at: dt.datetime | None
    first_reply_at: dt.datetime | None
    resolved_at: dt.datetime | None
    closed_at: dt.datetime | None
    rating_comment: str | None
    departments: list[CaseDepartmentOut] = []
    pauses: list[PauseOut] = []
    events: list[EventOut] = []
    # Staff only (empty for firms):
    visit_record: dict[str, Any] | None = None
    extension_request: dict[str, Any] | None = None
    return_request: dict[str, Any] | None = None
    extensions: list[dict[str, Any]] = []
    routing_candidates: list[Any] | None = None
    external_ref: str | None = None
    replayed: bool = Field(False, description="幂等重放：此前已用同一幂等键提交过，返回的是原工单")


class FaqOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    question: str
    answer: str
    department_id: int | None
    keywords: list[str]
    related_policies: list[str]
    source: str
    case_id: int | None
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class PolicyRatingIn(_In):
    """A firm's rating of a policy: 1–5 stars and an optional comment."""

    stars: int = Field(ge=1, le=5, description="评分，1–5 星")
    comment: str | None = Field(None, max_length=500, description="评价内容（可选，最多 500 字）")


class PolicyRatingOut(BaseModel):
    """A firm's own rating of a policy."""

    model_config = ConfigDict(from_attributes=True)

    policy_id: int
    stars: int
    comment: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class RatingSummaryOut(BaseModel):
    """A policy's ratings in figures (anyone may see them; comments are for staff)."""

    policy_id: int
    count: int
    average: float | None
    distribution: dict[str, int] = Field(description="各星级的评价数，键为 1–5")


class RatingOut(BaseModel):
    """One firm's rating with its comment, as staff read it."""

    id: int
    policy_id: int
    enterprise_id: int
    enterprise_name: str
    stars: int
    stars_label: str
    comment: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class PolicyRatingsOut(BaseModel):
    """A policy's rating summary and one page of its ratings (staff)."""

    summary: RatingSummaryOut
    ratings: Page[RatingOut]
