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
    assert r.status_code == 409 and r.json()["code"] == "enterprise_exists"


def test_self_registration_creates_user_and_enterprise_and_signs_in(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/auth/register",
        json={"username": "mingsheng", "password": "secret-pass-1", "display_name": "刘洋", "enterprise": _payload()},
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
