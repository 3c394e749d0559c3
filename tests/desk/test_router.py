"""The desk over HTTP: intake with idempotency keys, scoped reads, every transition as a POST, queues, FAQ."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from auth.models import Role
from desk import demo
from tests import factories

API = "/api/v1/desk"
Headers = Callable[..., dict[str, str]]


@pytest.fixture
def setup(db: Session, auth_headers: Headers) -> dict[str, Any]:
    dept_a = factories.make_department(db)
    dept_b = factories.make_department(db)
    policy = factories.make_policy(db, publish=True, department=dept_a)
    firm = factories.make_enterprise(db)
    other = factories.make_enterprise(db)
    return {
        "dept_a": dept_a,
        "dept_b": dept_b,
        "policy": policy,
        "firm": auth_headers(Role.enterprise, enterprise_id=firm.id),
        "firm_id": firm.id,
        "other_firm": auth_headers(Role.enterprise, enterprise_id=other.id),
        "desk_a": auth_headers(Role.desk, department_id=dept_a.id),
        "desk_b": auth_headers(Role.desk, department_id=dept_b.id),
        "supervisor": auth_headers(Role.supervisor),
        "curator": auth_headers(Role.curator),
        "admin": auth_headers(Role.admin),
    }


def _complaint(setup: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "kind": "complaint",
        "title": "补贴迟迟未拨付",
        "content": "去年申请的研发补助公示已经三个月，资金一直没有拨付，打电话也没人说得清。",
        "related_policy_id": setup["policy"].id,
    } | kw


def _submit(client: TestClient, setup: dict[str, Any], **kw: Any) -> dict[str, Any]:
    r = client.post(f"{API}/cases", json=_complaint(setup, **kw), headers=setup["firm"])
    assert r.status_code == 201, r.text
    return r.json()


def test_firm_submits_and_only_the_right_people_read_the_case(client: TestClient, setup: dict[str, Any]) -> None:
    r = client.post(
        f"{API}/cases", json=_complaint(setup), headers={**setup["firm"], "Idempotency-Key": "web-form-7f3a"}
    )
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["status"] == "dispatched" and case["status_label"] == "已分拨"
    assert case["kind_label"] == "投诉" and case["enterprise_id"] == setup["firm_id"]
    assert case["department"]["id"] == setup["dept_a"].id
    assert case["number"].startswith("HQ") and case["contact_due_at"] and case["close_due_at"]
    assert case["sla"]["stage"] == "contact" and case["sla"]["colour"] in ("green", "yellow", "orange", "red")
    assert [e["kind"] for e in case["events"]] == ["submitted", "dispatched"]
    assert case["events"][1]["label"] == "分拨" and case["events"][1]["data"] == {}
    assert case["routing_candidates"] is None and not case["replayed"]

    again = client.post(
        f"{API}/cases",
        json=_complaint(setup, content="网络超时后重试提交的同一诉求内容。"),
        headers={**setup["firm"], "Idempotency-Key": "web-form-7f3a"},
    )
    assert again.status_code == 200 and again.json()["id"] == case["id"] and again.json()["replayed"]
    mismatch = client.post(
        f"{API}/cases",
        json=_complaint(setup, idempotency_key="other"),
        headers={**setup["firm"], "Idempotency-Key": "web-form-7f3a"},
    )
    assert mismatch.status_code == 422 and mismatch.json()["errors"][0]["field"] == "idempotency_key"

    url = f"{API}/cases/{case['id']}"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=setup["firm"]).status_code == 200
    assert client.get(url, headers=setup["other_firm"]).status_code == 404
    assert client.get(url, headers=setup["desk_a"]).status_code == 200
    assert client.get(url, headers=setup["desk_b"]).status_code == 404
    assert client.get(url, headers=setup["supervisor"]).json()["routing_method"] == "policy"
    assert client.get(url, headers=setup["curator"]).status_code == 403

    mine = client.get(f"{API}/my/cases", headers=setup["firm"]).json()
    assert [c["id"] for c in mine["items"]] == [case["id"]] and mine["total"] == 1
    assert client.get(f"{API}/my/cases", headers=setup["other_firm"]).json()["total"] == 0
    listed = client.get(f"{API}/cases", headers=setup["desk_b"]).json()
    assert case["id"] not in [c["id"] for c in listed["items"]]


def test_validation_errors_name_the_field(client: TestClient, setup: dict[str, Any]) -> None:
    r = client.post(
        f"{API}/cases",
        json=_complaint(setup, channel="proxy", enterprise_id=setup["firm_id"]),
        headers=setup["desk_a"],
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "visit_record", "reason": "代提必须填写走访记录（走访日期、走访人、地点）", "code": "required"}
    ]
    r = client.post(
        f"{API}/cases",
        json=_complaint(
            setup,
            channel="proxy",
            enterprise_id=setup["firm_id"],
            visit_record={"visited_on": "2026-01-05", "visitor": "王五", "location": "企业会议室"},
        ),
        headers=setup["desk_a"],
    )
    assert r.status_code == 201 and r.json()["channel"] == "proxy"
    assert r.json()["visit_record"]["visitor"] == "王五"
    r = client.post(
        f"{API}/cases", json={"content": "x" * 6, "kind": "complaint", "channel": "web"}, headers=setup["curator"]
    )
    assert r.status_code == 403


def test_the_lifecycle_over_http_with_refusals(client: TestClient, setup: dict[str, Any]) -> None:
    case = _submit(client, setup)
    url = f"{API}/cases/{case['id']}"
    assert client.post(f"{url}/accept", json={}, headers=setup["firm"]).status_code == 403
    assert client.post(f"{url}/accept", json={}, headers=setup["desk_b"]).status_code == 404
    r = client.post(f"{url}/accept", json={"note": "已签收"}, headers=setup["desk_a"])
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    r = client.post(f"{url}/accept", json={}, headers=setup["desk_a"])
    assert r.status_code == 409 and r.json()["code"] == "desk.illegal_transition"
    assert "已签收" in r.json()["message"]
    assert client.post(f"{url}/contact", json={"note": "电话联系"}, headers=setup["desk_a"]).status_code == 200
    assert client.post(f"{url}/reply", json={}, headers=setup["desk_a"]).status_code == 422
    r = client.post(f"{url}/reply", json={"note": "已转财政部门核实"}, headers=setup["desk_a"])
    assert r.json()["status"] == "in_progress"
    r = client.post(f"{url}/resolve", json={"resolution": "资金已拨付。"}, headers=setup["desk_a"])
    assert r.json()["status"] == "resolved" and r.json()["resolution"] == "资金已拨付。"
    assert client.post(f"{url}/rate", json={"rating": "dissatisfied"}, headers=setup["desk_a"]).status_code == 403
    r = client.post(f"{url}/rate", json={"rating": "dissatisfied", "comment": "没到账"}, headers=setup["firm"])
    body = r.json()
    assert body["status"] == "reopened" and body["supervised"] and body["reopen_count"] == 1
    assert (
        client.post(f"{url}/accept-answer", json={}, headers=setup["firm"]).json()["code"] == "desk.illegal_transition"
    )
    r = client.post(f"{url}/resolve", json={"resolution": "已核实到账。"}, headers=setup["desk_a"])
    assert r.json()["status"] == "resolved"
    r = client.post(f"{url}/revisit", json={"note": "电话回访", "rating": "satisfied"}, headers=setup["supervisor"])
    assert r.json()["status"] == "rated" and r.json()["rating"] == "satisfied"
    r = client.post(f"{url}/close", json={}, headers=setup["desk_a"])
    assert r.json()["status"] == "closed"
    kinds = [e["kind"] for e in client.get(url, headers=setup["supervisor"]).json()["events"]]
    assert kinds == [
        "submitted",
        "dispatched",
        "accepted",
        "contacted",
        "replied",
        "resolved",
        "rated",
        "reopened",
        "supervised",
        "resolved",
        "revisited",
        "rated",
        "closed",
    ]


def test_firm_sees_only_the_public_part_of_the_timeline(client: TestClient, setup: dict[str, Any]) -> None:
    case = _submit(client, setup)
    url = f"{API}/cases/{case['id']}"
    client.post(f"{url}/accept", json={}, headers=setup["desk_a"])
    client.post(f"{url}/return-request", json={"reason": "不属本部门职责"}, headers=setup["desk_a"])
    client.post(f"{url}/notes", json={"note": "内部备注"}, headers=setup["desk_a"])
    client.post(f"{url}/notes", json={"note": "补充说明：金额为20万元"}, headers=setup["firm"])
    staff = client.get(url, headers=setup["supervisor"]).json()
    firm = client.get(url, headers=setup["firm"]).json()
    assert [e["kind"] for e in staff["events"]][-3:] == ["return_requested", "note", "note"]
    assert staff["return_request"]["reason"] == "不属本部门职责"
    assert [e["kind"] for e in firm["events"]] == ["submitted", "dispatched", "accepted", "note"]
    assert firm["events"][-1]["note"] == "补充说明：金额为20万元"
    assert firm["return_request"] is None


def test_dispatch_return_extension_and_supervision_views(client: TestClient, setup: dict[str, Any]) -> None:
    case = _submit(client, setup)
    url = f"{API}/cases/{case['id']}"
    client.post(f"{url}/accept", json={}, headers=setup["desk_a"])
    r = client.post(
        f"{url}/extension-request",
        json={"amount": 2, "unit": "working_days", "reason": "需省厅核实"},
        headers=setup["desk_a"],
    )
    assert r.status_code == 200 and r.json()["extension_request"]["amount"] == 2
    client.post(f"{url}/return-request", json={"reason": "应由市税务局办理"}, headers=setup["desk_a"])
    for path in ("pending", "escalations", "overdue"):
        assert client.get(f"{API}/supervision/{path}", headers=setup["desk_a"]).status_code == 403
    pending = client.get(f"{API}/supervision/pending", headers=setup["supervisor"]).json()
    assert case["id"] in [c["id"] for c in pending["items"]]
    assert client.post(f"{url}/extension-decision", json={"approve": True}, headers=setup["desk_a"]).status_code == 403
    before = client.get(url, headers=setup["supervisor"]).json()["close_due_at"]
    r = client.post(f"{url}/extension-decision", json={"approve": True}, headers=setup["supervisor"])
    assert r.status_code == 200 and r.json()["close_due_at"] > before
    r = client.post(f"{url}/return-decision", json={"approve": True}, headers=setup["supervisor"])
    assert r.json()["department"] is None and r.json()["status"] == "dispatched"
    queue = client.get(f"{API}/dispatch-queue", headers=setup["supervisor"]).json()
    assert case["id"] in [c["id"] for c in queue["items"]]
    assert client.get(f"{API}/dispatch-queue", headers=setup["desk_a"]).status_code == 403
    r = client.post(f"{url}/assign", json={"department_id": setup["dept_b"].id}, headers=setup["supervisor"])
    assert r.json()["department"]["id"] == setup["dept_b"].id
    assert client.get(url, headers=setup["desk_b"]).status_code == 200
    assert client.get(url, headers=setup["desk_a"]).status_code == 404
    r = client.post(f"{url}/joint", json={"department_id": setup["dept_a"].id}, headers=setup["desk_b"])
    assert sorted(d["role"] for d in r.json()["departments"]) == ["assist", "lead"]
    assert client.get(url, headers=setup["desk_a"]).status_code == 200
    r = client.post(f"{url}/kind", json={"kind": "help"}, headers=setup["desk_b"])
    assert r.json()["kind"] == "help"


def test_work_queue_is_ordered_by_deadline(client: TestClient, setup: dict[str, Any]) -> None:
    first = _submit(client, setup)
    second = _submit(client, setup)
    client.post(f"{API}/cases/{first['id']}/accept", json={}, headers=setup["desk_a"])
    client.post(f"{API}/cases/{first['id']}/contact", json={}, headers=setup["desk_a"])
    queue = client.get(f"{API}/queue", headers=setup["desk_a"]).json()["items"]
    ids = [c["id"] for c in queue]
    # second still waits to be contacted (due within the hour); first now runs on its reply deadline.
    assert ids.index(second["id"]) < ids.index(first["id"])
    assert [c["sla"]["stage"] for c in queue if c["id"] in (first["id"], second["id"])] == ["contact", "reply"]
    assert client.get(f"{API}/queue", headers=setup["desk_b"]).json()["total"] == 0
    assert client.get(f"{API}/queue", headers=setup["firm"]).status_code == 403


def test_faq_curation_over_http(client: TestClient, setup: dict[str, Any]) -> None:
    body = {
        "code": "faq-http-1",
        "question": "研发费用补助什么时候申报？",
        "answer": "每年5月至6月在市科技业务管理系统申报。",
    }
    assert client.post(f"{API}/faq", json=body, headers=setup["firm"]).status_code == 403
    r = client.post(f"{API}/faq", json=body, headers=setup["desk_a"])
    assert r.status_code == 201 and r.json()["department_id"] == setup["dept_a"].id
    faq_id = r.json()["id"]
    assert client.post(f"{API}/faq", json=body, headers=setup["curator"]).status_code == 409
    assert client.get(f"{API}/faq/{faq_id}").json()["code"] == "faq-http-1"
    listed = client.get(f"{API}/faq", params={"q": "研发费用补助"}).json()
    assert faq_id in [f["id"] for f in listed["items"]]
    assert (
        client.patch(f"{API}/faq/{faq_id}", json={"answer": "改成新的答案。"}, headers=setup["desk_b"]).status_code
        == 403
    )
    r = client.patch(f"{API}/faq/{faq_id}", json={"active": False}, headers=setup["curator"])
    assert r.status_code == 200 and not r.json()["active"]
    assert client.get(f"{API}/faq/{faq_id}").status_code == 404
    assert client.get(f"{API}/faq/{faq_id}", headers=setup["desk_a"]).status_code == 200
    assert client.delete(f"{API}/faq/{faq_id}", headers=setup["desk_a"]).status_code == 204
    assert client.get(f"{API}/faq/{faq_id}", headers=setup["desk_a"]).status_code == 404


def test_site_wide_faq_belongs_to_curators_not_desk_officers(client: TestClient, setup: dict[str, Any]) -> None:
    body = {"code": "faq-site-1", "question": "惠企平台怎么注册？", "answer": "在首页点击注册并填写统一社会信用代码。"}
    r = client.post(f"{API}/faq", json=body, headers=setup["curator"])
    assert r.status_code == 201 and r.json()["department_id"] is None  # site-wide: every firm's instant answers
    faq_id = r.json()["id"]
    for officer in ("desk_a", "desk_b"):
        patch = client.patch(f"{API}/faq/{faq_id}", json={"answer": "请拨打 0760-12345678。"}, headers=setup[officer])
        assert patch.status_code == 403 and patch.json()["code"] == "desk.site_wide_faq"
        assert client.delete(f"{API}/faq/{faq_id}", headers=setup[officer]).status_code == 403
        # Nor can an officer take the entry into their department (which would let them edit it next).
        move = client.patch(f"{API}/faq/{faq_id}", json={"department_id": setup["dept_a"].id}, headers=setup[officer])
        assert move.status_code == 403
    assert client.get(f"{API}/faq/{faq_id}").json()["answer"] == body["answer"]
    assert client.patch(f"{API}/faq/{faq_id}", json={"answer": "新答案。"}, headers=setup["curator"]).status_code == 200
    assert client.delete(f"{API}/faq/{faq_id}", headers=setup["curator"]).status_code == 204


def test_promote_resolved_answer_over_http(client: TestClient, setup: dict[str, Any]) -> None:
    case = _submit(client, setup, kind="consultation", title="研发补助到账时间", content="研发补助公示后多久到账？")
    url = f"{API}/cases/{case['id']}"
    if case["status"] == "answered":  # the knowledge base answered it; ask for a person to get a department reply
        client.post(f"{url}/ask-for-person", json={}, headers=setup["firm"])
    client.post(f"{url}/accept", json={}, headers=setup["desk_a"])
    client.post(f"{url}/resolve", json={"resolution": "公示结束后约20个工作日内拨付。"}, headers=setup["desk_a"])
    assert client.post(f"{url}/promote", json={}, headers=setup["firm"]).status_code == 403
    r = client.post(f"{url}/promote", json={"keywords": ["研发补助", "到账"]}, headers=setup["curator"])
    assert r.status_code == 201 and r.json()["source"] == "promoted" and r.json()["case_id"] == case["id"]
    assert client.post(f"{url}/promote", json={}, headers=setup["curator"]).status_code == 409


def test_consultation_gets_a_cited_instant_answer(
    client: TestClient, db: Session, setup: dict[str, Any], tmp_path: Path
) -> None:
    # A dozen curated entries (embedding all of them would only slow the test down).
    entries = json.loads((demo.DATA_DIR / "faq.json").read_text(encoding="utf-8"))[:12]
    (tmp_path / "faq.json").write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    assert demo.load_faq(db=db, path=tmp_path / "faq.json") == 12
    question = "高新技术企业认定怎么申报？需要准备哪些材料？"  # an FAQ question (faq-001) asked as is
    r = client.post(f"{API}/cases", json={"content": question}, headers=setup["firm"])
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["kind"] == "consultation" and case["kind_detected"]
    assert case["status"] == "answered", case["instant_answer"]
    answer = case["instant_answer"]
    assert answer["confident"] and answer["confidence"] >= answer["threshold"]
    assert answer["citations"] and answer["citations"][0]["source"] == "faq"
    assert answer["citations"][0]["code"] == "faq-001"
    faq_url = answer["citations"][0]["url"]
    assert client.get(faq_url).status_code == 200
    assert [e["kind"] for e in case["events"]] == ["submitted", "answered_instantly"]
    assert case["department"] is None and case["sla"]["stage"] is None

    url = f"{API}/cases/{case['id']}"
    r = client.post(f"{url}/accept-answer", json={"rating": "satisfied"}, headers=setup["firm"])
    assert r.json()["status"] == "closed" and r.json()["rating"] == "satisfied"
    assert [e["kind"] for e in r.json()["events"]][-3:] == ["accepted_answer", "closed", "rated"]

    # The same question again; this time the firm wants a person: the case is routed, the answer attached.
    second = client.post(f"{API}/cases", json={"content": question}, headers=setup["firm"]).json()
    r = client.post(f"{API}/cases/{second['id']}/ask-for-person", json={"note": "想当面咨询"}, headers=setup["firm"])
    body = r.json()
    assert body["status"] == "dispatched" and body["instant_answer"]["citations"]
    assert [e["kind"] for e in body["events"]][-2:] == ["asked_for_person", "dispatched"]
    assert body["contact_due_at"] is not None
