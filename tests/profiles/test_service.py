"""Enterprise profiles over the API: validation in Chinese, derived attributes, ownership, masking."""

from __future__ import annotations

import datetime as dt

from auth.models import Role
from tests import factories


def _payload(**kw):  # type: ignore[no-untyped-def]
    return {
        "credit_code": factories.credit_code(),
        "name": "中山市明辉灯饰科技有限公司",
        "region_code": "442000",
        "industry_code": "3872",
        "established_on": "2019-03-01",
        "employees": 350,
        "annual_revenue": 8000,
        "total_assets": 6000,
        "rd_expense": 400,
        "contact_name": "王强",
        "contact_phone": "13912345678",
    } | kw


def test_staff_creates_enterprise_with_derived_attributes(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/enterprises", json=_payload(), headers=auth_headers(Role.curator))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["industry_code"] == "C3872"
    assert body["size_class"] == "medium" and body["size_label"] == "中型"
    assert body["rd_ratio"] == 5.0
    assert body["region_name"] == "中山市"
    assert body["years_established"] > 5
    assert "needs" in body["missing_fields"] and "企业需求" in body["missing_labels"]


def test_bad_credit_code_is_refused_naming_the_field_in_chinese(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    code = factories.credit_code()
    bad = code[:-1] + ("0" if code[-1] != "0" else "1")
    r = client.post("/api/v1/enterprises", json=_payload(credit_code=bad), headers=auth_headers(Role.curator))
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation_failed"
    [err] = body["errors"]
    assert err["field"] == "credit_code" and "校验位" in err["reason"]


def test_every_bad_field_is_reported_at_once(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    payload = _payload(region_code="999999", industry_code="Z99", employees=-3, established_on="2099-01-01")
    r = client.post("/api/v1/enterprises", json=payload, headers=auth_headers(Role.curator))
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"region_code", "industry_code", "employees", "established_on"}


def test_duplicate_credit_code_is_a_conflict(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    payload = _payload()
    headers = auth_headers(Role.curator)
    assert client.post("/api/v1/enterprises", json=payload, headers=headers).status_code == 201
    r = client.post(
        "/api/v1/enterprises", json=payload | {"credit_code": payload["credit_code"].lower()}, headers=headers
    )
    assert r.status_code == 409 and r.json()["code"] == "profiles.enterprise_exists"


def test_self_registration_creates_user_and_enterprise_and_signs_in(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/auth/register",
        json={"username": "mingsheng", "password": "secret-pass-1x", "display_name": "刘洋", "enterprise": _payload()},
    )
    assert r.status_code == 201, r.text
    token = r.json()["access_token"]
    me = client.get("/api/v1/enterprises/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["name"] == "中山市明辉灯饰科技有限公司"


def test_firm_updates_own_profile_and_qualifications_resolve_synonyms(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    factories.make_tag(db, name="高新技术企业", kind="qualification", synonyms=["高企"])
    ent = factories.make_enterprise(db)
    headers = auth_headers(Role.enterprise, enterprise_id=ent.id)
    r = client.patch(
        "/api/v1/enterprises/me",
        json={"qualifications": [{"name": "高企", "valid_until_on": "2027-12-31"}], "needs": "希望了解高企认定奖励"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["qualifications"][0]["name"] == "高新技术企业"
    assert "needs" not in r.json()["missing_fields"]


def test_non_qualification_tag_is_refused_as_qualification(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    factories.make_tag(db, name="资金补贴", kind="benefit")
    ent = factories.make_enterprise(db)
    r = client.patch(
        "/api/v1/enterprises/me",
        json={"qualifications": [{"name": "资金补贴"}]},
        headers=auth_headers(Role.enterprise, enterprise_id=ent.id),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "not_a_qualification"


def test_listing_masks_contacts_but_detail_shows_them_to_staff(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    ent = factories.make_enterprise(db, contact_phone="13812345678", contact_name="张三丰")
    headers = auth_headers(Role.curator)
    listed = client.get("/api/v1/enterprises", params={"q": ent.name}, headers=headers).json()["items"][0]
    assert listed["contact_phone"] == "138****5678" and listed["contact_name"] == "张**"
    detail = client.get(f"/api/v1/enterprises/{ent.id}", headers=headers).json()
    assert detail["contact_phone"] == "13812345678"


def test_firm_cannot_see_another_firms_profile(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = factories.make_enterprise(db), factories.make_enterprise(db)
    headers = auth_headers(Role.enterprise, enterprise_id=mine.id)
    assert client.get(f"/api/v1/enterprises/{theirs.id}", headers=headers).status_code == 404
    assert client.patch(f"/api/v1/enterprises/{theirs.id}", json={"needs": "x"}, headers=headers).status_code == 404


def test_enterprise_filters_by_region_prefix_industry_and_size(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    a = factories.make_enterprise(db, region_code="440606", industry_code="C3857", employees=10, annual_revenue=100)
    factories.make_enterprise(db, region_code="440305", industry_code="I6513")
    r = client.get(
        "/api/v1/enterprises",
        params={"region": "440600", "industry": "C38", "size_class": "micro"},
        headers=auth_headers(Role.supervisor),
    )
    assert [e["id"] for e in r.json()["items"]] == [a.id]


def test_missing_fields_shrink_as_profile_fills(db) -> None:  # type: ignore[no-untyped-def]
    ent = factories.make_enterprise(db, total_assets=None, established_on=None)
    assert {"total_assets", "established_on"} <= set(ent.missing_fields)
    before = ent.completeness
    from profiles import service
    from profiles.schemas import EnterpriseUpdate

    service.update_enterprise(
        db=db,
        enterprise_id=ent.id,
        enterprise_in=EnterpriseUpdate(total_assets=500, established_on=dt.date(2020, 1, 1)),
        actor=factories_principal(),
    )
    assert ent.completeness > before and "total_assets" not in ent.missing_fields


def factories_principal():  # type: ignore[no-untyped-def]
    from auth.service import Principal

    return Principal(id=0, role=Role.admin, name="测试")


def _registration(username: str, credit_code: str) -> dict:  # type: ignore[type-arg]
    payload = _payload() | {"credit_code": credit_code}
    return {"username": username, "password": "Claim-pass-2026", "display_name": "王敏", "enterprise": payload}


def test_registration_answers_the_same_for_a_registered_credit_code(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    """Nobody learns which firms are registered by trying codes: a known code becomes a claim staff confirm."""
    owner = factories.make_enterprise(db, name="中山市已注册科技有限公司")
    fresh = client.post("/api/v1/auth/register", json=_registration("newfirm", factories.credit_code(777001)))
    claim = client.post("/api/v1/auth/register", json=_registration("claimant", owner.credit_code.lower()))
    assert fresh.status_code == claim.status_code == 201
    assert set(fresh.json()) == set(claim.json()) and fresh.json()["role"] == claim.json()["role"] == "enterprise"
    assert "已注册科技" not in claim.text
    # The claimant cannot act for the firm until staff approve.
    bearer = {"Authorization": f"Bearer {claim.json()['access_token']}"}
    assert client.get("/api/v1/enterprises/me", headers=bearer).status_code == 401
    assert (
        client.post("/api/v1/auth/token", data={"username": "claimant", "password": "Claim-pass-2026"}).status_code
        == 401
    )
    staff = auth_headers(Role.supervisor)
    pending = client.get("/api/v1/enterprise-claims", headers=staff).json()
    (item,) = [c for c in pending["items"] if c["username"] == "claimant"]
    assert item["enterprise_id"] == owner.id and item["enterprise_name"] == owner.name and item["status"] == "pending"
    assert client.get("/api/v1/enterprise-claims", headers=auth_headers(Role.enterprise)).status_code == 403
    approved = client.post(f"/api/v1/enterprise-claims/{item['id']}/approve", json={"note": "电话核实"}, headers=staff)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    again = client.post(f"/api/v1/enterprise-claims/{item['id']}/reject", headers=staff)
    assert again.status_code == 409
    token = client.post("/api/v1/auth/token", data={"username": "claimant", "password": "Claim-pass-2026"})
    assert token.status_code == 200
    me = client.get("/api/v1/enterprises/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert me.status_code == 200 and me.json()["id"] == owner.id


def test_a_rejected_claim_never_signs_in(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    owner = factories.make_enterprise(db)
    assert client.post("/api/v1/auth/register", json=_registration("intruder", owner.credit_code)).status_code == 201
    staff = auth_headers(Role.admin)
    (item,) = [
        c for c in client.get("/api/v1/enterprise-claims", headers=staff).json()["items"] if c["username"] == "intruder"
    ]
    assert client.post(f"/api/v1/enterprise-claims/{item['id']}/reject", headers=staff).json()["status"] == "rejected"
    assert (
        client.post("/api/v1/auth/token", data={"username": "intruder", "password": "Claim-pass-2026"}).status_code
        == 401
    )
    assert client.get("/api/v1/enterprise-claims", params={"status": "rejected"}, headers=staff).json()["total"] >= 1


def test_claim_page_and_web_signup_answer_alike(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    import re

    from auth import service as auth_service
    from web.deps import SESSION_COOKIE

    owner = factories.make_enterprise(db, name="中山市页面认领测试有限公司")

    def signup(username: str, code: str):  # type: ignore[no-untyped-def]
        client.cookies.clear()
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/signup").text).group(1)
        form = {
            "csrf_token": csrf,
            "username": username,
            "password": "Claim-pass-2026",
            "password2": "Claim-pass-2026",
            "display_name": "王敏",
            "name": "中山市随便填写有限公司",
            "credit_code": code,
        }
        return client.post("/signup", data=form, follow_redirects=False)

    fresh, claim = signup("webfresh", factories.credit_code(888002)), signup("webclaim", owner.credit_code)
    assert fresh.status_code == claim.status_code == 303
    assert fresh.headers["location"] == claim.headers["location"]
    supervisor = factories.make_user(db, role=Role.supervisor)
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, auth_service.access_token_for(settings=test_settings, user=supervisor))
    page = client.get("/staff/claims")
    assert page.status_code == 200 and "页面认领测试" in page.text and "webclaim" in page.text
    claim_id = re.search(r'name="claim_id" value="(\d+)"', page.text).group(1)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)
    done = client.post(
        "/staff/claims/decide",
        data={"csrf_token": token, "claim_id": claim_id, "decision": "approve"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "webclaim" in client.get("/staff/claims", params={"status": "approved"}).text
    ok = client.post("/api/v1/auth/token", data={"username": "webclaim", "password": "Claim-pass-2026"})
    assert ok.status_code == 200
