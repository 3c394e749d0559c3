"""Catalog request and response bodies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from catalog.models import PolicyLevel, PolicyStatus, PolicyType, TagKind
from catalog.rules import MAX_DEPTH as MAX_RULE_DEPTH
from core import jsonsafe
from core.text import normalize


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DepartmentIn(_In):
    code: str = Field(min_length=2, max_length=40, pattern=r"^[a-z0-9-]+$", description="部门编码")
    name: str = Field(min_length=2, max_length=120, description="部门全称")
    short_name: str = Field(min_length=1, max_length=40, description="简称")
    region_code: str = Field(pattern=r"^\d{6}$", description="所在行政区划代码")
    contact_phone: str | None = Field(None, max_length=40)
    contact_email: str | None = Field(None, max_length=120)


class DepartmentUpdate(_In):
    name: str | None = Field(None, min_length=2, max_length=120)
    short_name: str | None = Field(None, min_length=1, max_length=40)
    region_code: str | None = Field(None, pattern=r"^\d{6}$")
    contact_phone: str | None = Field(None, max_length=40)
    contact_email: str | None = Field(None, max_length=120)


class DepartmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    short_name: str
    region_code: str
    contact_phone: str | None
    contact_email: str | None


class DepartmentRef(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    short_name: str


class CategoryIn(_In):
    code: str = Field(min_length=2, max_length=20, pattern=r"^\d+$")
    name: str = Field(min_length=1, max_length=60)
    parent_code: str | None = Field(None, description="上级分类编码；为空表示大类")
    sort_order: int = 0


class CategoryUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=60)
    sort_order: int | None = None


class CategoryRef(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str


class CategoryOut(CategoryRef):
    parent_id: int | None
    sort_order: int
    children: list[CategoryRef] = []


class TagIn(_In):
    name: str = Field(min_length=1, max_length=60)
    kind: TagKind
    synonyms: list[str] = Field(default_factory=list, description="同义词、简称")
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _simplified(cls, v: str) -> str:
        return normalize(v)


class TagUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=60)
    kind: TagKind | None = None
    synonyms: list[str] | None = None
    description: str | None = None


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: TagKind
    synonyms: list[str]
    description: str | None


class TagRef(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: TagKind


class TopicIn(_In):
    code: str = Field(min_length=2, max_length=40, pattern=r"^[a-z0-9-]+$")
    name: str = Field(min_length=1, max_length=60)
    description: str | None = None
    sort_order: int = 0


class TopicOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    description: str | None
    sort_order: int


class _PolicyFields(_In):
    doc_number: str | None = Field(None, max_length=80, description="文号")
    issuing_department: str | None = Field(None, description="发文部门编码")
    handling_department: str | None = Field(None, description="承办（受理）部门编码")
    level: PolicyLevel | None = Field(None, description="层级：national/provincial/municipal/county")
    policy_type: PolicyType | None = Field(
        None, description="类型：application 申报类 / exempt 免申即享 / informational 普惠告知"
    )
    region_codes: list[str] | None = Field(None, description="适用地区（行政区划代码）；空表示不限")
    categories: list[str] | None = Field(None, description="政策分类编码")
    tags: list[str] | None = Field(None, description="标签名（可用同义词）")
    topics: list[str] | None = Field(None, description="专栏编码")
    summary: str | None = Field(None, max_length=2000, description="摘要")
    interpretation: str | None = Field(None, max_length=20000, description="解读")
    interpreter_name: str | None = Field(None, max_length=60, description="解读人")
    interpreter_contact: str | None = Field(None, max_length=120, description="解读人联系方式")
    full_text: str | None = Field(None, max_length=200000, description="政策原文")
    apply_start_on: dt.date | None = Field(None, description="申报开始日期")
    apply_end_on: dt.date | None = Field(None, description="申报截止日期")
    valid_from_on: dt.date | None = Field(None, description="有效期起")
    valid_to_on: dt.date | None = Field(None, description="有效期止")
    max_amount: float | None = Field(None, ge=0, le=10_000_000, description="最高扶持金额（万元）")
    amount_text: str | None = Field(None, max_length=500, description="金额说明")
    apply_url: str | None = Field(None, max_length=500, pattern=r"^https?://", description="申报网址")
    rules: dict[str, Any] | None = Field(None, description="资格条件（见 docs/rules.md）")
    pinned: bool | None = Field(None, description="置顶")

    @field_validator("rules", mode="before")
    @classmethod
    def _not_too_deep(cls, value: Any) -> Any:
        # Before anything recursive (validation, deepcopy, json.dumps) walks it: 400 levels would crash.
        reason = jsonsafe.too_deep(value)
        if reason:
            raise ValueError(f"资格条件{reason}，条件树最多 {MAX_RULE_DEPTH} 层")
        return value

    @model_validator(mode="after")
    def _windows(self) -> _PolicyFields:
        if self.apply_start_on and self.apply_end_on and self.apply_start_on > self.apply_end_on:
            raise ValueError("申报开始日期不能晚于申报截止日期")
        if self.valid_from_on and self.valid_to_on and self.valid_from_on > self.valid_to_on:
            raise ValueError("有效期起不能晚于有效期止")
        return self


class PolicyIn(_PolicyFields):
    title: str = Field(min_length=4, max_length=200, description="政策标题")
    issuing_department: str = Field(description="发文部门编码")
    level: PolicyLevel
    policy_type: PolicyType


class PolicyUpdate(_PolicyFields):
    title: str | None = Field(None, min_length=4, max_length=200)
    note: str | None = Field(None, max_length=200, description="修改说明，记入版本")


class PolicyBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    doc_number: str | None
    issuing_department: DepartmentRef
    level: PolicyLevel
    policy_type: PolicyType
    region_codes: list[str]
    categories: list[CategoryRef]
    tags: list[TagRef]
    summary: str | None
    apply_start_on: dt.date | None
    apply_end_on: dt.date | None
    valid_to_on: dt.date | None
    max_amount: float | None
    status: PolicyStatus
    pinned: bool
    version: int
    published_at: dt.datetime | None
    days_left: int | None = Field(None, description="距申报截止天数；已截止为负")


class PolicyOut(PolicyBrief):
    handling_department: DepartmentRef | None
    topics: list[TopicOut]
    interpretation: str | None
    interpreter_name: str | None
    interpreter_contact: str | None
    full_text: str | None
    valid_from_on: dt.date | None
    amount_text: str | None
    apply_url: str | None
    rules: dict[str, Any] | None
    rules_text: list[str] = Field(default_factory=list, description="资格条件的文字说明")
    created_at: dt.datetime
    updated_at: dt.datetime


class PolicyVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    version: int
    note: str | None
    actor_id: int | None
    created_at: dt.datetime
    snapshot: dict[str, Any]


class FieldChange(BaseModel):
    field: str
    label: str
    before: Any
    after: Any


class PolicyDiff(BaseModel):
    policy_id: int
    from_version: int
    to_version: int
    changes: list[FieldChange]


class PolicyFilters(BaseModel):
    """Search and filter parameters for the policy list."""

    q: str | None = None
    category: str | None = None
    department: str | None = None
    level: PolicyLevel | None = None
    region: str | None = None
    policy_type: PolicyType | None = None
    status: PolicyStatus | None = None
    topic: str | None = None
    tag: str | None = None
    open_now: bool = False
    sort: str = "published"
