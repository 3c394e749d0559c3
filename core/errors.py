"""Domain exceptions and their single mapping to HTTP responses.

Every error body has the same shape::

    {"code": "catalog.policy_not_found", "message": "政策不存在", "errors": [{"field": ..., "reason": ..., "code": ...}]}

`code` is stable English for programs, `message` is Chinese for people, and `errors`
lists each problem of a validation failure with the field it concerns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldError:
    """One problem with one input field."""

    field: str
    reason: str
    code: str = "invalid"


class HuiqiError(Exception):
    """Base of every domain error: a stable code, a Chinese message and an HTTP status."""

    status_code = 400
    code = "bad_request"
    message = "请求有误"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.errors = errors or []
        self.headers = headers
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """Return the JSON error body."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            out["errors"] = [asdict(e) for e in self.errors]
        return out


class NotAuthenticated(HuiqiError):
    status_code = 401
    code = "not_authenticated"
    message = "请先登录"

    def __init__(self, message: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kw)


class PermissionDenied(HuiqiError):
    status_code = 403
    code = "permission_denied"
    message = "没有权限执行此操作"


class NotFound(HuiqiError):
    status_code = 404
    code = "not_found"
    message = "对象不存在"


class Conflict(HuiqiError):
    status_code = 409
    code = "conflict"
    message = "与现有数据冲突"


class InvalidState(HuiqiError):
    status_code = 409
    code = "invalid_state"
    message = "当前状态不允许此操作"


class ValidationFailed(HuiqiError):
    status_code = 422
    code = "validation_failed"
    message = "输入数据校验未通过"


class PayloadTooLarge(HuiqiError):
    status_code = 413
    code = "payload_too_large"
    message = "上传内容过大"


class ServiceUnavailable(HuiqiError):
    status_code = 503
    code = "service_unavailable"
    message = "服务暂时不可用，请稍后再试"


class TooManyRequests(HuiqiError):
    status_code = 429
    code = "too_many_requests"
    message = "请求过于频繁，请稍后再试"


# Chinese reasons for pydantic's error types, so people read why a field was refused.
_PYDANTIC_REASONS = {
    "missing": "必填项未填写",
    "string_too_short": "长度不足",
    "string_too_long": "长度超出限制",
    "string_pattern_mismatch": "格式不正确",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "float_parsing": "应为数字",
    "float_type": "应为数字",
    "decimal_parsing": "应为数字",
    "bool_parsing": "应为是/否",
    "date_parsing": "日期格式应为 YYYY-MM-DD",
    "date_from_datetime_parsing": "日期格式应为 YYYY-MM-DD",
    "datetime_parsing": "时间格式不正确",
    "greater_than": "数值过小",
    "greater_than_equal": "数值过小",
    "less_than": "数值过大",
    "less_than_equal": "数值过大",
    "enum": "取值不在允许范围内",
    "literal_error": "取值不在允许范围内",
    "list_type": "应为列表",
    "dict_type": "应为对象",
    "json_invalid": "JSON 格式错误",
    "extra_forbidden": "不允许的字段",
    "value_error": "取值无效",
    "too_short": "数量不足",
    "too_long": "数量超出限制",
}


def pydantic_field_errors(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """Translate pydantic's error list into FieldErrors with Chinese reasons."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = ".".join(loc) or "body"
        kind = err.get("type", "value_error")
        reason = _PYDANTIC_REASONS.get(kind, "取值无效")
        ctx = err.get("ctx") or {}
        if kind == "value_error" and "error" in ctx:
            # Our own validators raise ValueError with a Chinese reason already.
            reason = str(ctx["error"])
        elif "limit_value" in ctx:
            reason = f"{reason}（限值 {ctx['limit_value']}）"
        elif "ge" in ctx or "le" in ctx or "gt" in ctx or "lt" in ctx:
            limit = next(ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx)
            reason = f"{reason}（限值 {limit}）"
        elif "expected" in ctx:
            reason = f"{reason}（可选：{ctx['expected']}）"
        out.append(FieldError(field=field, reason=reason, code=kind))
    return out


_HTTP_MESSAGES = {
    401: ("not_authenticated", "请先登录"),
    403: ("permission_denied", "没有权限执行此操作"),
    404: ("not_found", "请求的地址不存在"),
    405: ("method_not_allowed", "不支持该请求方法"),
    413: ("payload_too_large", "上传内容过大"),
}


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and stray HTTP errors to the one JSON shape."""

    @app.exception_handler(HuiqiError)
    def _domain(request: Request, exc: HuiqiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = ValidationFailed(errors=pydantic_field_errors(list(exc.errors())))
        return JSONResponse(err.body(), status_code=err.status_code)

    @app.exception_handler(IntegrityError)
    def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # The last line of defence: services validate references first; what still reaches a database
        # constraint (a dangling id, a duplicate, a null) is the caller's input, never a 500.
        log.warning("integrity error answered 409: %s", str(exc.orig).splitlines()[0] if exc.orig else exc)
        err = Conflict(
            "数据与现有记录冲突，或引用的对象不存在",
            code="integrity_error",
            errors=[FieldError("body", "引用的对象不存在、与现有记录重复或缺少必填项", "integrity_error")],
        )
        return JSONResponse(err.body(), status_code=err.status_code)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = _HTTP_MESSAGES.get(exc.status_code, ("http_error", "请求处理失败"))
        return JSONResponse({"code": code, "message": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"code": "internal_error", "message": "服务器内部错误，请稍后再试"}, status_code=500)
