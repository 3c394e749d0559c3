"""POST /api/v1/intake: curators upload a policy document and get a draft with proposals; others cannot."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auth.models import Role
from catalog.models import Policy
from tests import factories
from tests.support import intake_docs as docs

URL = "/api/v1/intake"


def _upload(client: Any, headers: dict[str, str], data: bytes, name: str, **params: str) -> Any:
    return client.post(URL, headers=headers, files={"file": (name, data, "application/octet-stream")}, params=params)


def test_anonymous_and_non_curators_are_refused_before_the_body_is_used(
    client: Any, auth_headers: Any, db: Session
) -> None:
    before = db.scalar(select(func.count()).select_from(Policy))
    assert _upload(client, {}, docs.NOTICE.encode(), "a.txt").status_code == 401
    for role in (Role.enterprise, Role.desk, Role.supervisor):
        response = _upload(client, auth_headers(role), docs.NOTICE.encode(), "a.txt")
        assert response.status_code == 403, role
    assert db.scalar(select(func.count()).select_from(Policy)) == before


def test_curator_gets_a_draft_with_fields_conditions_and_duplicates(
    client: Any, auth_headers: Any, db: Session
) -> None:
    dept = factories.make_department(db, name="中山市工业和信息化局", short_name="中山工信", region_code="442000")
    headers = auth_headers(Role.curator)
    pdf = docs.pdf_bytes()
    response = _upload(client, headers, pdf, "notice.pdf")
    assert response.status_code == 201, response.text
    draft = response.json()["drafts"][0]
    assert draft["status"] == "draft" and draft["policy_id"]
    assert draft["document"]["kind"] == "pdf"
    assert draft["fields"]["doc_number"]["value"] == "中工信〔2026〕18号"
    assert draft["fields"]["doc_number"]["source"]
    rules = [c["rule"] for c in draft["conditions"] if "rule" in c]
    assert {"field": "annual_revenue", "op": "gte", "value": 2000} in rules
    assert all(0 < c["confidence"] < 1 and c["source"] for c in draft["conditions"])
    policy = db.get(Policy, draft["policy_id"])
    assert policy is not None and policy.issuing_department_id == dept.id and policy.published_at is None
    # The uploaded PDF is kept as the draft's 政策原文, byte for byte, for staff to download.
    files = client.get(f"/api/v1/policies/{policy.id}/attachments", headers=headers)
    assert files.status_code == 200, files.text
    (original,) = files.json()
    assert original["kind"] == "original" and original["name"] == "notice.pdf"
    download = client.get(f"/api/v1/policies/{policy.id}/attachments/{original['id']}/download", headers=headers)
    assert download.status_code == 200 and download.content == pdf
    again = _upload(client, headers, docs.NOTICE.encode(), "copy.txt", department=dept.code)
    assert again.status_code == 201
    assert draft["policy_id"] in {d["policy_id"] for d in again.json()["drafts"][0]["duplicates"]}


@pytest.mark.parametrize(
    ("make", "name", "code"),
    [
        (docs.scanned_pdf_bytes, "scan.pdf", "file.no_text_layer"),
        (docs.encrypted_pdf_bytes, "locked.pdf", "file.encrypted_pdf"),
        (lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "picture.pdf", "file.unsupported_file"),
    ],
)
def test_bad_files_get_a_chinese_reason_and_nothing_is_saved(
    client: Any, auth_headers: Any, db: Session, make: Any, name: str, code: str
) -> None:
    factories.make_department(db, name="中山市工业和信息化局", short_name="中山工信", region_code="442000")
    before = db.scalar(select(func.count()).select_from(Policy))
    response = _upload(client, auth_headers(Role.curator), make(), name)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == code and any("\u4e00" <= ch <= "\u9fff" for ch in body["message"])
    assert db.scalar(select(func.count()).select_from(Policy)) == before
