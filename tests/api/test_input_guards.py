"""Hostile input refused with 422 naming the field, never a 500: rules nested hundreds deep wherever rules
enter (API save and update, the editor's preview, the import file), and NUL characters in any text
(JSON body, query parameter, form field, import cell)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from auth.models import Role
from core import tabular
from core.errors import ValidationFailed
from tests import factories
from web.staff import parse_rules

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def deep_rules(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"field": "region_code", "op": "within_region", "value": "442000"}
    for _ in range(levels):
        node = {"all": [node]}
    return node


def _policy_body(db: Any, **kw: Any) -> dict[str, Any]:
    dept = factories.make_department(db)
    return {
        "title": "中山市深层嵌套测试政策",
        "issuing_department": dept.code,
        "level": "municipal",
        "policy_type": "application",
        "region_codes": ["442000"],
        **kw,
    }


@pytest.mark.parametrize("levels", [400, 5000])
def test_deeply_nested_rules_are_a_422_on_create_and_update(db, client, auth_headers, levels: int) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(Role.curator)
    # Sent as text: json.dumps itself gives up at ~1000 levels; the server must not.
    body = json.dumps(_policy_body(db, rules=None)).replace('"rules": null', '"rules": ' + _deep_text(levels))
    response = client.post("/api/v1/policies", content=body, headers={**headers, "content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    if levels == 400:
        assert response.status_code == 422
        assert any(e["field"] == "rules" for e in response.json()["errors"]), response.json()
    policy = factories.make_policy(db)
    response = client.patch(
        f"/api/v1/policies/{policy.id}",
        content=json.dumps({"rules": deep_rules(400)}),
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code == 422
    error = next(e for e in response.json()["errors"] if e["field"] == "rules")
    assert "嵌套层级过深" in error["reason"]


def _deep_text(levels: int) -> str:
    return '{"all": [' * levels + '{"field": "region_code", "op": "within_region", "value": "442000"}' + "]}" * levels


@pytest.mark.parametrize("levels", [400, 5000])
def test_the_editor_preview_reads_deep_rules_as_a_field_error(levels: int) -> None:
    rules, problem = parse_rules(_deep_text(levels))
    assert rules is None and problem is not None
    assert problem.field == "rules" and problem.code == "too_deep"


def test_an_import_row_with_deep_rules_is_reported_not_a_crash() -> None:
    with pytest.raises(ValueError, match="嵌套层级过深"):
        tabular.parse_json_object(_deep_text(400))
    with pytest.raises(ValueError, match="嵌套层级过深"):
        tabular.parse_json_object(_deep_text(5000))


def test_nul_in_a_json_field_is_a_422_naming_it(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    headers = auth_headers(Role.enterprise, enterprise_id=firm.id)
    response = client.post(
        "/api/v1/desk/cases",
        json={"kind": "help", "title": "补贴\x00进度", "content": "请帮忙查询补贴进度，谢谢。"},
        headers=headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "nul_character"
    assert response.json()["errors"][0]["field"] == "title"
    response = client.post(
        "/api/v1/desk/cases",
        json={"kind": "help", "content": "请帮忙查询补贴进度", "attachments": [{"name": "a\x00.pdf"}]},
        headers=headers,
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "attachments[0].name"


def test_nul_in_a_query_parameter_is_a_422_naming_it(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/policies", params={"q": "研发\x00补贴"})
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "field": "q",
        "reason": "含有不允许的空字符（\\u0000）",
        "code": "nul_character",
    }


def test_nul_in_a_form_field_is_the_chinese_422_page(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/login")
    token = CSRF_META.search(page.text).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/login",
        data={"csrf_token": token, "username": "firm\x00", "password": "x"},
        headers={"accept": "text/html"},
        follow_redirects=False,
    )
    assert response.status_code == 422
    assert "填写有误" in response.text and "username" in response.text and 'lang="zh-CN"' in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'self'")


def test_nul_in_an_import_cell_is_refused_naming_the_cell() -> None:
    with pytest.raises(ValidationFailed) as refused:
        tabular.read_table("标题,文号\n研发补贴,中\x00〔2026〕1号\n".encode(), "x.csv")
    assert refused.value.code == "nul_character"
    assert refused.value.errors[0].field == "第 2 行第 2 列"


def test_text_without_nul_still_passes(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/policies", params={"q": "研发\\u0000补贴"})  # a literal backslash-u is text
    assert response.status_code == 200
