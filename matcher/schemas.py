"""Matcher request and response bodies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from catalog.fields import label_of
from catalog.schemas import DepartmentRef
from matcher import eligibility


class ConditionOut(BaseModel):
    path: str
    field: str
    state: str = Field(description="met 满足 / not_met 不满足 / unknown 无法判断")
    reason: str
    needs: list[str] = Field(default_factory=list, description="需补充的资料（字段中文名）")


class ComponentsOut(BaseModel):
    rules: float = Field(description="资格条件得分")
    tags: float = Field(description="标签重合得分（IDF 加权）")
    semantic: float = Field(description="需求与政策语义相似度得分")
    urgency: float = Field(description="临近截止得分")
    adjustment: float = Field(0.0, description="根据企业反馈的调整")


class ReasonsOut(BaseModel):
    summary: str
    conditions: list[ConditionOut]
    shared_tags: list[str] = Field(description="企业与政策共有的标签")
    needs_overlap: list[str] = Field(description="企业需求中提到、政策也涉及的主题")
    similarity: float | None = Field(None, description="企业画像/需求与政策文本的余弦相似度")


class PolicyCard(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    summary: str | None
    issuing_department: DepartmentRef
    policy_type: str
    level: str
    apply_end_on: dt.date | None
    max_amount: float | None
    amount_text: str | None
    apply_url: str | None
    days_left: int | None = None


class RecommendationOut(BaseModel):
    policy: PolicyCard
    status: str = Field(description="eligible 符合 / likely 可能符合 / ineligible 不符合")
    status_label: str
    score: float
    components: ComponentsOut
    reasons: ReasonsOut
    missing: list[ConditionOut] = Field(description="未满足或无法判断的条件，最接近的在前")
    fields_to_fill: list[str] = Field(description="补充这些资料后可判断")
    feedback: str | None = Field(None, description="企业最近一次反馈：interested / not_relevant / applied")


class ChangeOut(BaseModel):
    description: str
    field: str
    policy_ids: list[int]
    count: int


class TagReason(BaseModel):
    name: str
    why: str


class RecommendationsOut(BaseModel):
    enterprise_id: int | None = None
    enterprise_name: str | None = None
    completeness: int | None = None
    tags: list[TagReason] = Field(default_factory=list, description="企业标签（双向标签的企业侧）")
    items: list[RecommendationOut]
    changes: list[ChangeOut] = Field(description="最能增加可享受政策的几项改变")


class QualificationName(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str


class CalculatorIn(BaseModel):
    """A few attributes typed into the policy calculator; every field optional."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    region_code: str | None = Field(None, description="所在地区（6位行政区划代码）")
    industry_code: str | None = Field(None, description="行业代码，如 C3872")
    established_on: dt.date | None = Field(None, description="成立日期")
    employees: int | None = Field(None, ge=0, description="从业人数")
    annual_revenue: float | None = Field(None, ge=0, description="年营业收入（万元）")
    total_assets: float | None = Field(None, ge=0, description="资产总额（万元）")
    rd_expense: float | None = Field(None, ge=0, description="年研发费用（万元）")
    export_revenue: float | None = Field(None, ge=0, description="年出口额（万元）")
    registered_capital: float | None = Field(None, ge=0, description="注册资本（万元）")
    qualifications: list[str] | None = Field(None, description="已有资质（可用简称，如 高企、小巨人）")
    credit_standing: str | None = Field(None, description="good / normal / dishonest")
    tax_credit_level: str | None = Field(None, description="A/B/M/C/D")
    business_scope: str | None = Field(None, max_length=2000)
    needs: str | None = Field(None, max_length=2000, description="想获得哪些帮助")
    limit: int = Field(20, ge=1, le=100)

    # Checked here, field by field, so one 422 names every bad field (not only the first the engine meets).
    @field_validator("region_code", "industry_code", "credit_standing", "tax_credit_level", "established_on")
    @classmethod
    def _check_attribute(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        try:
            parsed = eligibility.check_attribute(str(info.field_name), value)
        except ValueError as exc:  # shown under the field: without the field's name in front
            raise ValueError(str(exc).removeprefix(f"{label_of(str(info.field_name))}：")) from None
        # Industries may be typed by name (应用软件开发): the engine then gets the code.
        return parsed if info.field_name == "industry_code" else value


class EligibleEnterpriseOut(BaseModel):
    enterprise_id: int
    credit_code: str
    name: str
    region_code: str | None
    industry_code: str | None
    size_class: str | None
    contact_name: str | None
    contact_phone: str | None
    status: str
    status_label: str
    score: float
    shared_tags: list[str]
    computed_at: dt.datetime


class SearchHitOut(BaseModel):
    policy: PolicyCard
    score: float
    semantic: float | None = Field(None, description="语义相似度")
    keyword: bool = Field(description="是否命中关键词")


class TagSuggestionOut(BaseModel):
    id: int
    tag: str
    kind: str
    source: str = Field(description="keyword 关键词 / rule 资格条件 / classifier 分类模型")
    score: float
    status: str


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_id: int
    action: str = Field(description="interested 感兴趣 / not_relevant 不相关 / applied 已申报")
    source: str = Field("recommendation", pattern="^(recommendation|push|policy_page)$")
    delivery_id: int | None = None


class FeedbackOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    policy_id: int
    action: str
    action_label: str = ""
    source: str
    created_at: dt.datetime


class MatchRunOut(BaseModel):
    kind: str
    status: str = Field(description="running 进行中 / done 完成")
    chunks: int
    chunks_done: int
    firms: int
    firms_done: int
    started_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None


class ListRunOut(BaseModel):
    kind: str = Field(description="list 名单 / patch 单个政策（名单并更新各企业的匹配结果）")
    policies: int = Field(description="本次生成名单的政策数")
    units: int = Field(description="企业分段数")
    units_done: int = Field(description="已写入的分段数（中断后从未写入的分段继续）")
    waiting: bool = Field(False, description="超过 5 分钟未写入新分段：已中断，等待匹配任务继续")
    runs: int = Field(1, description="进行中或待继续的名单生成任务数（上列为最早的一个）")
    started_at: dt.datetime
    updated_at: dt.datetime


class MatchStatusOut(BaseModel):
    firms: int = Field(description="企业总数")
    firms_current: int = Field(description="匹配结果与当前画像一致的企业数")
    policies_pending: int = Field(description="发布或修改后尚未重新匹配的政策数")
    catalog_revision: int
    matched_revision: int
    up_to_date: bool = Field(description="全部企业与政策的匹配均为最新")
    run: MatchRunOut | None = Field(None, description="最近一次全量匹配")
    listing: ListRunOut | None = Field(None, description="正在生成（或中断后待继续）的政策名单")
