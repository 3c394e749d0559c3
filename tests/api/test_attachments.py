"""Attachments over HTTP: curators attach files to policies, firms and officers to cases; only those who may
see the object download it, as a file with a safe name, its checked type and nosniff."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from auth.models import Role
from core.attachments import Attachment
from core.config import Settings
from core.storage import store_for
from tests import factories
from tests.support import sample_files as sf
from tests.support.s3server import running_s3

Headers = Callable[..., dict[str, str]]


@pytest.fixture
def people(db: Session, auth_headers: Headers) -> dict[str, Any]:
    dept_a = factories.make_department(db)
    dept_b = factories.make_department(db)
    published = factories.make_policy(db, publish=True, department=dept_a)
    draft = factories.make_policy(db, department=dept_a)
    firm = factories.make_enterprise(db)
    other = factories.make_enterprise(db)
    return {
        "dept_a": dept_a,
        "published": published,
        "draft": draft,
        "firm": auth_headers(Role.enterprise, enterprise_id=firm.id),
        "other_firm": auth_headers(Role.enterprise, enterprise_id=other.id),
        "desk_a": auth_headers(Role.desk, department_id=dept_a.id),
        "desk_b": auth_headers(Role.desk, department_id=dept_b.id),
        "supervisor": auth_headers(Role.supervisor),
        "curator": auth_headers(Role.curator),
        "admin": auth_headers(Role.admin),
    }


def _upload(name: str, data: bytes, content_type: str = "application/octet-stream", **fields: str) -> dict[str, Any]:
    return {"files": {"file": (name, data, content_type)}, "data": fields}


def _attach_policy(client: TestClient, people: dict[str, Any], policy_id: int, name: str, data: bytes, kind: str):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/policies/{policy_id}/attachments", headers=people["curator"], **_upload(name, data, kind=kind)
    )


def test_curator_attaches_and_everyone_downloads_a_published_policys_files(
    client: TestClient, people: dict[str, Any], test_settings: Settings
) -> None:
    pid = people["published"].id
    r = _attach_policy(client, people, pid, "2026年申报指南.pdf", sf.pdf(), "guide")
    assert r.status_code == 201, r.text
    guide = r.json()
    assert guide["kind"] == "guide" and guide["kind_label"] == "申报指南" and guide["name"] == "2026年申报指南.pdf"
    assert guide["content_type"] == "application/pdf" and guide["size"] == len(sf.pdf())
    # The client's content type is ignored: the bytes say it is a PNG.
    r = _attach_policy(client, people, pid, "流程图.png", sf.png(), "original")
    assert r.status_code == 201 and r.json()["content_type"] == "image/png"
    image = r.json()

    for who in (None, "firm", "desk_b"):
        headers = people[who] if who else {}
        listed = client.get(f"/api/v1/policies/{pid}/attachments", headers=headers)
        assert listed.status_code == 200 and [a["id"] for a in listed.json()] == [guide["id"], image["id"]]
        got = client.get(guide["download_url"], headers=headers)
        assert got.status_code == 200 and got.content == sf.pdf()
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["x-content-type-options"] == "nosniff"
    disposition = got.headers["content-disposition"]
    assert disposition.startswith("attachment;") and f"filename*=UTF-8''{quote('2026年申报指南.pdf')}" in disposition

    img = client.get(image["download_url"])
    assert img.headers["content-type"] == "image/png" and img.headers["content-disposition"].startswith("attachment;")


def test_a_drafts_files_are_for_staff_only(client: TestClient, people: dict[str, Any]) -> None:
    pid = people["draft"].id
    r = _attach_policy(client, people, pid, "申请表.docx", sf.docx(), "form")
    assert r.status_code == 201, r.text
    url = r.json()["download_url"]
    assert client.get(url).status_code == 404
    assert client.get(url, headers=people["firm"]).status_code == 404
    assert client.get(f"/api/v1/policies/{pid}/attachments", headers=people["firm"]).status_code == 404
    assert client.get(url, headers=people["curator"]).status_code == 200


def test_only_curators_and_admins_change_policy_files(client: TestClient, people: dict[str, Any]) -> None:
    pid = people["published"].id
    for who in ("firm", "desk_a", "supervisor"):
        r = client.post(
            f"/api/v1/policies/{pid}/attachments", headers=people[who], **_upload("a.pdf", sf.pdf(), kind="guide")
        )
        assert r.status_code == 403, who
    assert (
        client.post(f"/api/v1/policies/{pid}/attachments", **_upload("a.pdf", sf.pdf(), kind="guide")).status_code
        == 401
    )
    r = client.post(
        f"/api/v1/policies/{pid}/attachments", headers=people["admin"], **_upload("表.xlsx", sf.xlsx(), kind="form")
    )
    assert r.status_code == 201 and r.json()["content_type"].endswith("spreadsheetml.sheet")


def test_replace_and_delete_a_policy_file(
    client: TestClient, people: dict[str, Any], test_settings: Settings, db: Session
) -> None:
    pid = people["published"].id
    first = _attach_policy(client, people, pid, "指南.pdf", sf.pdf("v1"), "guide").json()
    keys_before = [db.get(Attachment, first["id"]).storage_key]  # type: ignore[union-attr]
    r = client.put(
        f"/api/v1/policies/{pid}/attachments/{first['id']}",
        headers=people["curator"],
        **_upload("指南v2.pdf", sf.pdf("v2")),
    )
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["kind"] == "guide" and second["name"] == "指南v2.pdf" and second["id"] == first["id"]
    assert client.get(second["download_url"]).content == sf.pdf("v2")
    store = store_for(test_settings)
    key = db.get(Attachment, second["id"]).storage_key  # type: ignore[union-attr]
    assert store.exists(key) and key not in keys_before and not any(store.exists(k) for k in keys_before)
    r = client.delete(f"/api/v1/policies/{pid}/attachments/{second['id']}", headers=people["curator"])
    assert r.status_code == 204
    assert not store.exists(key)  # removed once the delete committed
    assert client.get(f"/api/v1/policies/{pid}/attachments").json() == []
    assert (
        client.delete(f"/api/v1/policies/{pid}/attachments/{second['id']}", headers=people["curator"]).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("name", "data", "code", "status"),
    [
        ("申请表.docx", sf.pdf(), "file.type_mismatch", 422),
        ("photo.png", sf.html(), "file.unsupported_file", 422),
        ("archive.zip", sf.plain_zip(), "file.unsupported_file", 422),
        ("empty.pdf", b"", "file.empty_file", 422),
    ],
)
def test_bad_files_are_refused_with_a_code_and_nothing_is_kept(
    client: TestClient, people: dict[str, Any], test_settings: Settings, name: str, data: bytes, code: str, status: int
) -> None:
    pid = people["published"].id
    folder = test_settings.resolved_attachment_dir
    before = sorted(folder.rglob("*")) if folder.exists() else []
    r = _attach_policy(client, people, pid, name, data, "guide")
    assert r.status_code == status and r.json()["code"] == code, r.text
    assert r.json()["errors"][0]["field"] == "file"
    assert client.get(f"/api/v1/policies/{pid}/attachments").json() == []
    assert (sorted(folder.rglob("*")) if folder.exists() else []) == before


def test_kind_and_missing_file_are_refused(client: TestClient, people: dict[str, Any]) -> None:
    pid = people["published"].id
    r = _attach_policy(client, people, pid, "a.pdf", sf.pdf(), "evidence")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind"
    r = client.post(f"/api/v1/policies/{pid}/attachments", headers=people["curator"], data={"kind": "guide"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "file"
    r = client.post(f"/api/v1/policies/{pid}/attachments", headers=people["curator"], json={"kind": "guide"})
    assert r.status_code == 422


def test_size_limit_over_http(app: Any, client: TestClient, people: dict[str, Any], test_settings: Settings) -> None:
    app.state.settings = test_settings.model_copy(update={"attachment_max_mb": 1})
    pid = people["published"].id
    r = _attach_policy(client, people, pid, "big.pdf", sf.pdf() + b"0" * (1024 * 1024 + 10), "guide")
    assert r.status_code == 413 and r.json()["code"] == "file.too_large", r.text
    assert "1 MB" in r.json()["message"]


def _raw_multipart(filename: bytes, data: bytes, kind: str) -> tuple[bytes, str]:
    """A multipart body written by hand: HTTP clients escape CR/LF in file names, an attacker's need not."""
    boundary = "huiqi-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\n{kind}\r\n'.encode()
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="'.encode()
        + filename
        + b'"\r\nContent-Type: application/pdf\r\n\r\n'
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_names_are_kept_safe(client: TestClient, people: dict[str, Any]) -> None:
    pid = people["published"].id
    url = f"/api/v1/policies/{pid}/attachments"
    body, content_type = _raw_multipart("../../etc/申报\x1b[31m\u202egnp.pdf".encode(), sf.pdf(), "guide")
    r = client.post(url, content=body, headers={**people["curator"], "Content-Type": content_type})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "申报[31mgnp.pdf"
    got = client.get(r.json()["download_url"])
    disposition = got.headers["content-disposition"]
    assert disposition.isascii() and "/" not in disposition.split("filename*")[0] and ".." not in disposition
    crlf = _attach_policy(client, people, pid, "a\r\nX-Evil: 1.pdf", sf.pdf(), "guide")
    assert crlf.status_code == 201 and "\r" not in crlf.json()["name"] and "\n" not in crlf.json()["name"]
    assert "\n" not in client.get(crlf.json()["download_url"]).headers["content-disposition"]
    long = _attach_policy(client, people, pid, "长" * 400 + ".pdf", sf.pdf(), "guide").json()
    assert len(long["name"]) <= 120 and long["name"].endswith(".pdf")


# ---------------------------------------------------------------- cases


def _case(client: TestClient, people: dict[str, Any]) -> dict[str, Any]:
    body = {
        "kind": "complaint",
        "title": "补贴迟迟未拨付",
        "content": "去年申请的研发补助公示已经三个月，资金一直没有拨付，附上公示截图和申请材料。",
        "related_policy_id": people["published"].id,
    }
    r = client.post("/api/v1/desk/cases", json=body, headers=people["firm"])
    assert r.status_code == 201, r.text
    assert r.json()["department"]["id"] == people["dept_a"].id
    return r.json()


def test_case_files_are_seen_only_by_those_who_see_the_case(client: TestClient, people: dict[str, Any]) -> None:
    case = _case(client, people)
    base = f"/api/v1/desk/cases/{case['id']}/attachments"
    r = client.post(base, headers=people["firm"], **_upload("公示截图.jpg", sf.jpeg(), "image/png"))
    assert r.status_code == 201, r.text
    evidence = r.json()
    assert evidence["kind"] == "evidence" and evidence["content_type"] == "image/jpeg"
    r = client.post(base, headers=people["desk_a"], **_upload("答复意见.pdf", sf.pdf()))
    assert r.status_code == 201 and r.json()["kind"] == "reply"
    reply = r.json()

    for who in ("firm", "desk_a", "supervisor", "admin"):
        listed = client.get(base, headers=people[who])
        assert [a["id"] for a in listed.json()] == [evidence["id"], reply["id"]], who
        got = client.get(evidence["download_url"], headers=people[who])
        assert got.status_code == 200 and got.content == sf.jpeg(), who
    # Another firm and another department's officer do not learn the case exists; anonymous must sign in.
    for who in ("other_firm", "desk_b"):
        assert client.get(evidence["download_url"], headers=people[who]).status_code == 404, who
        assert client.get(base, headers=people[who]).status_code == 404, who
        assert client.post(base, headers=people[who], **_upload("x.pdf", sf.pdf())).status_code == 404, who
    assert client.get(evidence["download_url"]).status_code == 401
    assert client.get(base).status_code == 401
    # A policy's attachment id does not open through a case, nor a case file through a policy.
    pid = people["published"].id
    assert client.get(f"/api/v1/policies/{pid}/attachments/{evidence['id']}/download").status_code == 404

    timeline = client.get(f"/api/v1/desk/cases/{case['id']}", headers=people["firm"]).json()["events"]
    assert any("公示截图.jpg" in (e["note"] or "") for e in timeline)


def test_only_the_lead_department_adds_reply_files(client: TestClient, people: dict[str, Any]) -> None:
    case = _case(client, people)
    base = f"/api/v1/desk/cases/{case['id']}/attachments"
    r = client.post(base, headers=people["supervisor"], **_upload("督办意见.pdf", sf.pdf()))
    assert r.status_code == 201 and r.json()["kind"] == "reply"
    r = client.post(base, headers=people["firm"], **_upload("补充.docx", sf.pdf()))
    assert r.status_code == 422 and r.json()["code"] == "file.type_mismatch"


def test_the_s3_store_serves_the_api_end_to_end(
    app: Any, client: TestClient, people: dict[str, Any], test_settings: Settings
) -> None:
    """HUIQI_ATTACHMENT_STORAGE=s3 against a real local S3 server (moto's server mode): upload, download, delete."""
    import boto3
    from pydantic import SecretStr

    with running_s3("huiqi-api-test") as s3:
        app.state.settings = test_settings.model_copy(
            update={
                "attachment_storage": "s3",
                "s3_endpoint_url": s3.endpoint_url,
                "s3_bucket": s3.bucket,
                "s3_region": "us-east-1",
                "s3_prefix": "files/",
                "s3_access_key_id": SecretStr(s3.access_key_id),
                "s3_secret_access_key": SecretStr(s3.secret_access_key),
            }
        )
        raw = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key,
        )

        def keys() -> list[str]:
            return [o["Key"] for o in raw.list_objects_v2(Bucket=s3.bucket).get("Contents", [])]

        pid = people["published"].id
        form = sf.xlsx()  # openpyxl stamps the time: make it once
        r = _attach_policy(client, people, pid, "申请表.xlsx", form, "form")
        assert r.status_code == 201, r.text
        stored = keys()
        assert len(stored) == 1 and stored[0].startswith(f"files/policy/{pid}/")
        got = client.get(r.json()["download_url"])
        assert got.status_code == 200 and got.content == form
        refused = _attach_policy(client, people, pid, "申请表.docx", sf.pdf(), "form")
        assert refused.status_code == 422 and keys() == stored  # refused before anything is stored
        assert (
            client.delete(f"/api/v1/policies/{pid}/attachments/{r.json()['id']}", headers=people["curator"]).status_code
            == 204
        )
        assert keys() == []


_MAGIC = st.sampled_from([b"", b"%PDF-", b"PK\x03\x04", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"<html>"])


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    name=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300),
    head=_MAGIC,
    body=st.binary(max_size=2000),
    kind=st.sampled_from(["guide", "form", "original", "evidence", "", "x" * 50]),
)
def test_any_upload_to_a_real_policy_answers_without_a_server_error(
    client: TestClient, people: dict[str, Any], name: str, head: bytes, body: bytes, kind: str
) -> None:
    """Schemathesis rarely draws an existing policy id: here every draw reaches the checks."""
    pid = people["published"].id
    r = client.post(
        f"/api/v1/policies/{pid}/attachments", headers=people["curator"], **_upload(name, head + body, kind=kind)
    )
    assert r.status_code in (201, 409, 413, 422), r.text
    if r.status_code == 201:
        got = client.get(r.json()["download_url"])
        assert got.status_code == 200 and got.content == head + body
        assert (
            client.delete(f"/api/v1/policies/{pid}/attachments/{r.json()['id']}", headers=people["curator"]).status_code
            == 204
        )


def test_deleting_a_draft_deletes_its_files(
    client: TestClient, people: dict[str, Any], test_settings: Settings, db: Session
) -> None:
    pid = people["draft"].id
    made = _attach_policy(client, people, pid, "原文.pdf", sf.pdf(), "original").json()
    key = db.get(Attachment, made["id"]).storage_key  # type: ignore[union-attr]
    assert store_for(test_settings).exists(key)
    assert client.delete(f"/api/v1/policies/{pid}", headers=people["curator"]).status_code == 204
    assert db.get(Attachment, made["id"]) is None and not store_for(test_settings).exists(key)
