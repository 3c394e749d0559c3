"""Enterprise request and response bodies, with field validation in Chinese."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, field_validator

from catalog.fields import CREDIT_STANDINGS, TAX_CREDIT_LEVELS
from core import codes
from profiles import uscc

_CREDIT_VALUES = {v for v, _ in CREDIT_STANDINGS}
_TAX_VALUES = {v for v, _ in TAX_CREDIT_LEVELS}


class QualificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=60, description="资质名称（标签库中的资质，可用简称）")
    valid_until_on: dt.date | None = Field(None, description="有效期至")


class QualificationOut(BaseModel):
    name: str
    tag_id: int
    valid_until_on: dt.date | None


class _EnterpriseFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, min_length=2, max_length=200, description="企业名称")
    region_code: str | None = Field(None, description="所在地区（GB/T 2260 六位代码）")
    industry_code: str | None = Field(None, description="所属行业（GB/T 4754-2017，如 C3911）")
    established_on: dt.date | None = Field(None, description="成立日期")
    registered_capital: float | None = Field(None, ge=0, le=1e9, description="注册资本（万元）")
    employees: int | None = Field(None, ge=0, le=10_000_000, description="从业人数")
    annual_revenue: float | None = Field(None, ge=0, le=1e10, description="年营业收入（万元）")
    total_assets: float | None = Field(None, ge=0, le=1e10, description="资产总额（万元）")
    rd_expense: float | None = Field(None, ge=0, le=1e9, description="年研发费用（万元）")
    export_revenue: float | None = Field(None, ge=0, le=1e10, description="年出口额（万元）")
    credit_standing: str | None = Field(None, description="信用状况：good 良好 / normal 一般 / dishonest 失信")
    tax_credit_level: str | None = Field(None, description="纳税信用等级：A/B/M/C/D")
    qualifications: list[QualificationIn] | None = Field(None, description="企业资质")
    business_scope: str | None = Field(None, max_length=4000, description="经营范围")
    products: str | None = Field(None, max_length=2000, description="主要产品")
    needs: str | None = Field(None, max_length=2000, description="需求（希望获得哪些帮助）")
    contact_name: str | None = Field(None, max_length=60, description="联系人")
    contact_phone: str | None = Field(None, max_length=40, description="联系电话")
    contact_email: str | None = Field(None, max_length=120, description="联系邮箱")

    @field_validator("region_code")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return codes.normalize_region_code(v) if v else None

    @field_validator("industry_code")
    @classmethod
    def _industry(cls, v: str | None) -> str | None:
        # A code (C3911) or the name people say (应用软件开发); stored as the code.
        return codes.resolve_industry(v) if v else None

    @field_validator("established_on")
    @classmethod
    def _established(cls, v: dt.date | None) -> dt.date | None:
        if v and v > dt.date.today():
            raise ValueError("成立日期不能晚于今天")
        if v and v.year < 1949:
            raise ValueError("成立日期不早于1949年")
        return v

    @field_validator("credit_standing")
    @classmethod
    def _credit(cls, v: str | None) -> str | None:
        if v is not None and v not in _CREDIT_VALUES:
            raise ValueError("信用状况应为 good（良好）、normal（一般）或 dishonest（失信）")
        return v

    @field_validator("tax_credit_level")
    @classmethod
    def _tax(cls, v: str | None) -> str | None:
        if v is not None:
            v = v.upper()
            if v not in _TAX_VALUES:
                raise ValueError("纳税信用等级应为 A、B、M、C、D 之一")
        return v

    @field_validator("contact_phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v:
            digits = v.replace("-", "").replace(" ", "")
            if not digits.isdigit() or not 7 <= len(digits) <= 12:
                raise ValueError("联系电话应为手机号或带区号的固定电话")
        return v

    @field_validator("contact_email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v and ("@" not in v or "." not in v.split("@")[-1]):
            raise ValueError("邮箱格式不正确")
        return v


class EnterpriseIn(_EnterpriseFields):
    credit_code: str = Field(description="统一社会信用代码（18位）")
    name: str = Field(min_length=2, max_length=200, description="企业名称")

    @field_validator("credit_code")
    @classmethod
    def _uscc(cls, v: str) -> str:
        return uscc.validate_credit_code(v)


class EnterpriseUpdate(_EnterpriseFields):
    pass


class EnterpriseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    credit_code: str
    name: str
    region_code: str | None
    region_name: str | None = None
    industry_code: str | None
    industry_name: str | None = None
    established_on: dt.date | None
    years_established: float | None = None
    registered_capital: float | None
    employees: int | None
    annual_revenue: float | None
    total_assets: float | None
    rd_expense: float | None
    export_revenue: float | None
    credit_standing: str | None
    tax_credit_level: str | None
    qualifications: list[QualificationOut] = []
    business_scope: str | None
    products: str | None
    needs: str | None
    contact_name: str | None
    contact_phone: str | None
    contact_email: str | None
    size_class: str | None
    size_label: str | None = None
    rd_ratio: float | None
    completeness: int
    missing_fields: list[str]
    missing_labels: list[str] = []
    profile_updated_at: dt.datetime
    created_at: dt.datetime


class EnterpriseFilters(BaseModel):
    q: str | None = None
    region: str | None = None
    industry: str | None = None
    size_class: str | None = None
    qualification: str | None = None


class RegisterIn(BaseModel):
    """Self-registration of a firm: the user and the enterprise in one step."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    username: str = Field(min_length=3, max_length=60, pattern=r"^[A-Za-z0-9_.@-]+$", description="登录名")
    password: str = Field(min_length=10, max_length=128, description="密码，至少10位，不能是常见密码或与登录名相同")
    display_name: str = Field(min_length=1, max_length=60, description="联系人姓名")
    enterprise: EnterpriseIn
    phone_code: str | None = Field(
        None,
        max_length=12,
        description="短信验证码（先以 POST /auth/phone-codes 发送到联系电话）；填写则联系电话验证通过后方可注册",
    )


class ClaimOut(BaseModel):
    """A claim on a registered firm, as staff review it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    enterprise_id: int
    enterprise_name: str | None = None
    credit_code: str | None = None
    user_id: int | None
    username: str | None = None
    display_name: str
    contact_phone: str | None
    contact_email: str | None
    status: str
    status_label: str | None = None
    created_at: dt.datetime
    decided_at: dt.datetime | None
    note: str | None


class ClaimDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=200, description="处理说明")
