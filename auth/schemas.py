"""Auth request and response bodies."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from auth.models import Role

ApiScope = Literal["desk:intake", "read", "full"]
DEFAULT_SCOPE: ApiScope = "desk:intake"


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="有效期（秒）")
    role: Role


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=60, pattern=r"^[A-Za-z0-9_.@-]+$", description="登录名")
    password: str = Field(min_length=10, max_length=128, description="密码，至少10位，不能是常见密码或与登录名相同")
    display_name: str = Field(min_length=1, max_length=60, description="姓名")
    role: Role
    department_id: int | None = Field(None, description="业务专员所属部门")
    enterprise_id: int | None = Field(None, description="企业用户所属企业")
    email: str | None = Field(None, max_length=120)
    phone: str | None = Field(None, max_length=40)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(None, min_length=1, max_length=60)
    password: str | None = Field(None, min_length=10, max_length=128, description="新密码，至少10位")
    role: Role | None = Field(None, description="新角色；更改后该用户需要重新登录")
    is_active: bool | None = None
    department_id: int | None = None
    email: str | None = Field(None, max_length=120)
    phone: str | None = Field(None, max_length=40)


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=128, description="当前密码")
    new_password: str = Field(
        min_length=10, max_length=128, description="新密码，至少10位，不能是常见密码或与登录名相同"
    )


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    department_id: int | None
    enterprise_id: int | None
    email: str | None
    is_active: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, description="用途，例如 12345热线对接")
    role: Role = Role.desk
    department_id: int | None = None
    scopes: list[ApiScope] = Field(
        default_factory=lambda: [DEFAULT_SCOPE],
        min_length=1,
        max_length=3,
        description="权限范围：desk:intake（提交诉求、查看本密钥提交的诉求）、read（按角色只读）、full（按角色全部权限）",
    )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    role: Role
    scopes: list[str] = Field(  # type: ignore[pydantic-alias]  # scope_list is a property of the ORM row
        default_factory=list, validation_alias=AliasChoices("scope_list", "scopes"), description="权限范围"
    )
    department_id: int | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="明文密钥，只显示这一次")
