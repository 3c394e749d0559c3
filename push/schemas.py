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
