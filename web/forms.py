"""Form handling shared by the pages: blank fields, and API errors turned into per-field Chinese messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError
from starlette.datastructures import FormData, ImmutableMultiDict

from core.errors import FieldError, HuiqiError, pydantic_field_errors
from profiles.derived import FIELD_LABELS as DERIVED_LABELS

# Names of the form fields, for the error summary at the top of a refused form.
FIELD_LABELS = {
    **DERIVED_LABELS,
    "name": "企业名称",
    "credit_code": "统一社会信用代码",
    "username": "登录名",
    "password": "密码",
    "password2": "再次输入密码",
    "display_name": "联系人姓名",
    "contact_name": "联系人",
    "contact_email": "联系邮箱",
    "products": "主要产品",
    "channels": "推送方式",
    "frequency": "推送频率",
    "quiet_start": "免打扰开始",
    "quiet_end": "免打扰结束",
    "weekly_cap": "每周站外推送上限",
    "email": "接收邮箱",
    "phone": "接收短信的手机号",
    "webhook_url": "Webhook 地址",
    "webhook_format": "消息格式",
    "webhook_secret": "签名密钥",
    "scopes": "权限范围",
    "role": "角色",
    "department_id": "所属部门",
    "kind": "订阅类型",
    "value": "订阅内容",
}


class FormErrors:
    """Messages of a refused form: one per field, plus the general message."""

    def __init__(self, message: str = "", fields: dict[str, str] | None = None) -> None:
        self.message = message
        self.fields = fields or {}

    def __bool__(self) -> bool:
        return bool(self.message or self.fields)

    def get(self, name: str) -> str | None:
        """Return the message for one field, if any."""
        return self.fields.get(name)

    @classmethod
    def from_field_errors(cls, errors: Iterable[FieldError], message: str, prefix: str = "") -> FormErrors:
        """Build from the API's field errors; `prefix` is dropped from nested names (enterprise.name → name)."""
        fields: dict[str, str] = {}
        for err in errors:
            name = err.field.removeprefix(prefix)
            # qualifications[2] and qualifications.0.name both belong to the qualifications input.
            base = name.split("[")[0].split(".")[0]
            fields.setdefault(base, err.reason)
        return cls(message, fields)

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: str = "") -> FormErrors:
        """Build from a pydantic ValidationError with the same Chinese reasons the API returns."""
        return cls.from_field_errors(pydantic_field_errors(exc.errors()), "填写有误，请按提示修改", prefix)

    @classmethod
    def from_domain(cls, exc: HuiqiError, prefix: str = "") -> FormErrors:
        """Build from a domain error (ValidationFailed, Conflict, …)."""
        return cls.from_field_errors(exc.errors, exc.message, prefix)


def form_values(form: ImmutableMultiDict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Return the named text fields, stripped; blank ones become None."""
    out: dict[str, Any] = {}
    for name in names:
        value = form.get(name)
        if isinstance(value, str):
            value = value.strip()
            out[name] = value or None
        else:
            out[name] = None
    return out


def form_list(form: ImmutableMultiDict[str, Any], name: str) -> list[str]:
    """Return the non-blank values of a repeated field (checkboxes)."""
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def keep(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the values to show again in a refused form (None as empty)."""
    return {k: ("" if v is None else v) for k, v in values.items()}


async def read_form(request: Request) -> FormData:
    """Parse the submitted form once (Starlette keeps it on the request), so page handlers stay plain `def`."""
    return await request.form()


async def read_json_or_form(request: Request) -> Mapping[str, Any]:
    """Return a JSON object body, or the form when the page posted one; {} for a body that is neither."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
    return await request.form()


# Handlers that do blocking work (database, embedding) are plain `def`, run in the thread pool; these
# async dependencies read the request body on the event loop for them.
PageForm = Annotated[FormData, Depends(read_form)]
PageBody = Annotated[Mapping[str, Any], Depends(read_json_or_form)]
