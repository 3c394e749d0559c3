"""Push inputs and outputs: preferences, subscriptions, the inbox and fan-out counts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PreferencesIn(BaseModel):
    """A change of a firm's push preferences; fields left out keep their value."""

    channels: list[str] | None = Field(None, description="推送方式：inbox、email、sms、webhook（站内信始终开启）")
    frequency: str | None = Field(None, description="频率：instant 即时、daily 每日汇总、weekly 每周汇总")
    quiet_start: str | None = Field(None, description="免打扰开始时间 HH:MM（不发短信）")
    quiet_end: str | None = Field(None, description="免打扰结束时间 HH:MM")
    weekly_cap: int | None = Field(None, description="每周站外推送上限（站内信不计）")
    email: str | None = Field(None, description="接收邮箱")
    phone: str | None = Field(None, description="接收短信的手机号")
    webhook_url: str | None = Field(None, description="Webhook 地址（http:// 或 https://）")
    webhook_secret: str | None = Field(None, description="Webhook 签名密钥；不填则自动生成")
    webhook_format: str | None = Field(None, description="Webhook 格式：huiqi、wecom、dingtalk、feishu")
    unsubscribed_all: bool | None = Field(None, description="是否退订全部推送（设为 false 即重新订阅）")


class PreferencesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    enterprise_id: int
    channels: list[str]
    frequency: str
    quiet_start: str
    quiet_end: str
    weekly_cap: int
    email: str | None
    phone: str | None
    webhook_url: str | None
    webhook_secret: str | None
    webhook_format: str
    unsubscribed_all: bool
    phone_verified: bool = Field(False, description="接收短信的手机号是否已通过验证码验证（未验证的号码不发短信）")


class SubscriptionIn(BaseModel):
    kind: str = Field(description="category 政策分类（填分类代码）或 keyword 关键词")
    value: str = Field(description="分类代码或 2–20 字的关键词")


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    value: str
    active: bool
    created_at: dt.datetime


class InboxItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    policy_id: int | None
    title: str
    body: str
    url: str | None
    payload: dict[str, Any]
    created_at: dt.datetime
    read_at: dt.datetime | None


class InboxPage(BaseModel):
    items: list[InboxItemOut]
    total: int = Field(description="符合条件的总条数")
    unread: int = Field(description="未读条数")
    page: int
    page_size: int


class MarkReadIn(BaseModel):
    ids: list[int] = Field(default_factory=list, description="要标为已读的站内信编号")
    all: bool = Field(False, description="全部标为已读")


class MarkReadOut(BaseModel):
    updated: int
    unread: int


class FanOutOut(BaseModel):
    policy_id: int
    policy_version: int
    enterprises: int = Field(description="决定推送的企业数")
    created: int = Field(description="新建的推送记录数（重复执行为 0）")
    skipped_feedback: int = Field(description="因企业反馈“不相关”而跳过的企业数")
    skipped_unsubscribed: int = Field(description="因企业已退订而跳过的企业数")
    over_cap: int = Field(description="超过每周上限而记为跳过的推送记录数")
    skipped_already_told: int = Field(description="已就该政策较早版本推送过、本次不再推送的企业数")


class UnsubscribeOut(BaseModel):
    enterprise_id: int
    scope: str
    message: str


# ---------------------------------------------------------------- staff: targeted push (人工定向)


class TargetFilters(BaseModel):
    """Which firms a targeted push reaches; criteria combine with AND, values within one list with OR."""

    region_codes: list[str] = Field(default_factory=list, description="所在地区代码（含下级地区），任一即可")
    industry_codes: list[str] = Field(
        default_factory=list, description="行业代码前缀（GB/T 4754，如 C、C39、C3911），任一即可"
    )
    size_classes: list[str] = Field(default_factory=list, description="企业规模：large、medium、small、micro，任一即可")
    tags: list[str] = Field(default_factory=list, description="企业标签（名称或同义词），须全部具备")
    qualifications: list[str] = Field(default_factory=list, description="有效资质（名称或同义词），须全部具备")
    eligible_for_policy_id: int | None = Field(None, description="只选该政策的符合（或可能符合）企业名单")
    eligible_statuses: list[str] = Field(
        default_factory=lambda: ["eligible"], description="与上一项配合：eligible 符合、likely 可能符合"
    )
    enterprise_ids: list[int] = Field(default_factory=list, description="人工勾选的企业编号（最多 5000 个）")


class ManualPushIn(BaseModel):
    """A targeted push of one published policy to the firms a filter selects."""

    policy_id: int = Field(description="要推送的政策（须已发布）")
    filters: TargetFilters = Field(default_factory=TargetFilters)
    channels: list[str] = Field(
        default_factory=lambda: ["inbox"],
        description="推送方式：inbox、email、sms、webhook（站内信始终发送；其他方式仅发给选择了该方式的企业）",
    )
    message: str | None = Field(None, max_length=500, description="写给企业的附言，附在推送正文中")
    note: str | None = Field(None, max_length=200, description="内部备注（企业看不到）")


class SampleFirmOut(BaseModel):
    name: str = Field(description="企业名称（已脱敏）")
    region_code: str | None
    industry_code: str | None
    size_class: str | None


class ManualPushPreviewOut(BaseModel):
    policy_id: int
    policy_title: str
    matched: int = Field(description="符合筛选条件的企业数")
    enterprises: int = Field(description="将收到推送的企业数")
    excluded_unsubscribed: int = Field(description="已退订全部推送而排除的企业数")
    excluded_not_relevant: int = Field(description="已反馈该政策“不相关”而排除的企业数")
    already_pushed: int = Field(description="其中此前已收到过该政策推送的企业数（仍会推送）")
    channels: dict[str, int] = Field(description="各推送方式将发送的条数（按企业自己的推送设置）")
    over_cap: int = Field(description="超过企业每周上限、将记为跳过的站外推送条数")
    deliveries: int = Field(description="将写入的推送记录总数（含记为跳过的）")
    sample: list[SampleFirmOut] = Field(description="部分企业样例（名称已脱敏）")


class ManualPushOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    policy_id: int
    policy_title: str = ""
    filters: dict[str, Any]
    channels: list[str]
    enterprise_count: int
    note: str | None
    message: str | None = None
    created_by_id: int | None
    created_by_name: str | None = None
    created_at: dt.datetime
    created: int | None = Field(None, description="本次新写入的推送记录数（仅发送时返回）")
    deliveries: dict[str, int] = Field(default_factory=dict, description="推送记录按状态统计，另含 opened、clicked")


# ---------------------------------------------------------------- staff: delivery log and stats


class DeliveryLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    enterprise_id: int
    enterprise_name: str = ""
    policy_id: int | None
    policy_title: str | None = None
    policy_version: int
    kind: str
    dedupe_key: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    title: str
    created_at: dt.datetime
    sent_at: dt.datetime | None
    read_at: dt.datetime | None
    clicked_at: dt.datetime | None


class DeliveryStatsRow(BaseModel):
    key: str = Field(description="日期（YYYY-MM-DD，北京时间）、推送方式或政策编号")
    label: str = Field(description="中文说明：日期、推送方式名称或政策标题")
    total: int
    pending: int
    sent: int
    failed: int = Field(description="发送失败、等待重试的条数")
    dead: int = Field(description="多次重试仍失败、已放弃的条数")
    skipped: int
    opened: int = Field(description="已读/已打开的条数")
    clicked: int = Field(description="点击了链接的条数")


class DeliveryStatsOut(BaseModel):
    group_by: str
    rows: list[DeliveryStatsRow]
    totals: DeliveryStatsRow


class FunnelStageOut(BaseModel):
    stage: str = Field(description="pushed / opened / viewed / calculator / applied")
    label: str
    enterprises: int = Field(description="到达该环节的企业数（去重）")
    after_push: int = Field(description="其中收到过该政策推送的企业数")
    rate: float | None = Field(description="after_push 占收到推送企业数的比例")


class FunnelOut(BaseModel):
    policy_id: int
    policy_title: str
    stages: list[FunnelStageOut]


class PhoneCodeIn(BaseModel):
    """Ask for a one-time code by SMS to a mainland mobile number."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str = Field(max_length=20, description="11 位大陆手机号")


class PhoneCodeOut(BaseModel):
    """Where the code went (masked) and how long it stays valid."""

    phone: str = Field(description="已发送验证码的手机号（中间四位隐藏）")
    expires_in_minutes: int


class PhoneVerifyIn(BaseModel):
    """A code received by SMS, to verify the number it was sent to."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str = Field(max_length=20, description="11 位大陆手机号")
    code: str = Field(max_length=12, description="短信验证码（6 位数字）")


class PhoneVerifiedOut(BaseModel):
    phone: str
    verified: bool
