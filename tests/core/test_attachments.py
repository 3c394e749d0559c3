"""Attachments below the HTTP layer: the two blob stores (a folder, and a real local S3 server), type by
content, safe names, and the store and the table kept in step."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import attachments
from core.attachments import Attachment, AttachmentKind, OwnerKind
from core.config import Settings
from core.errors import HuiqiError
from core.files import DOCX, JPEG, PDF, PNG, XLSX, content_disposition, safe_display_name, sniff_type
from core.storage import BlobMissing, BlobStore, LocalStore, S3Store, StorageUnavailable, new_key, store_for
from tests.support import sample_files as sf
from tests.support.s3server import S3Server, running_s3

# ---------------------------------------------------------------- stores


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server


def _s3_store(s3: S3Server) -> S3Store:
    return S3Store(
        bucket=s3.bucket,
        prefix="t/",
        endpoint_url=s3.endpoint_url,
        region="us-east-1",
        access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalStore(tmp_path / "blobs")
    return _s3_store(request.getfixturevalue("s3"))


def test_a_store_puts_streams_back_and_deletes_by_key(store: BlobStore) -> None:
    data = sf.pdf("x" * 300_000)  # several chunks
    key = new_key("policy", 7)
    assert not store.exists(key)
    store.put(key, io.BytesIO(data), content_type="application/pdf")
    assert store.exists(key)
    chunks = list(store.get(key))
    assert len(chunks) > 1 and b"".join(chunks) == data
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(BlobMissing):
        store.get(key)
    store.delete(key)  # deleting twice is no error


def test_keys_are_generated_and_others_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert new_key("case", 3).startswith("case/3/") and new_key("case", 3) != new_key("case", 3)
    for bad in ("../etc/passwd", "a/../../b", "/abs", "A/B", "x\\y", ""):
        with pytest.raises(ValueError):
            store.put(bad, io.BytesIO(b"x"), content_type="text/plain")


def test_an_unreachable_s3_store_fails_cleanly_and_never_logs_its_secret(caplog: pytest.LogCaptureFixture) -> None:
    store = S3Store(
        bucket="b",
        endpoint_url="http://127.0.0.1:9",  # nothing listens there
        region="us-east-1",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="very-secret-value",
    )
    store.client.meta.config.retries = {"max_attempts": 1}
    with caplog.at_level(logging.DEBUG), pytest.raises(StorageUnavailable) as info:
        store.put(new_key("policy", 1), io.BytesIO(b"%PDF-1.4"), content_type="application/pdf")
    assert info.value.status_code == 503 and info.value.code == "file.storage_unavailable"
    ours = [r.getMessage() for r in caplog.records if r.name == "core.storage"]
    assert ours and not any("very-secret-value" in m for m in ours)


def test_settings_choose_the_store(tmp_path: Path, s3: S3Server) -> None:
    local = Settings(env="test", var_dir=tmp_path)
    chosen = store_for(local)
    assert isinstance(chosen, LocalStore) and chosen.root == tmp_path / "attachments"
    remote = Settings(
        env="test",
        var_dir=tmp_path,
        attachment_storage="s3",
        s3_endpoint_url=s3.endpoint_url,
        s3_bucket=s3.bucket,
        s3_region="us-east-1",
        s3_access_key_id=s3.access_key_id,
        s3_secret_access_key=s3.secret_access_key,
    )
    assert isinstance(store_for(remote), S3Store)
    assert s3.secret_access_key not in repr(remote) and s3.secret_access_key not in str(remote.model_dump())


def test_attachment_limit_may_not_pass_the_request_body_limit() -> None:
    with pytest.raises(ValueError, match="HUIQI_ATTACHMENT_MAX_MB"):
        Settings(env="test", upload_max_mb=5, attachment_max_mb=10)
    with pytest.raises(ValueError, match="HUIQI_S3_BUCKET"):
        Settings(env="test", attachment_storage="s3")


# ---------------------------------------------------------------- type by content


@pytest.mark.parametrize(
    ("data", "expected"),
    [(sf.pdf(), PDF), (sf.docx(), DOCX), (sf.xlsx(), XLSX), (sf.png(), PNG), (sf.jpeg(), JPEG)],
    ids=["pdf", "docx", "xlsx", "png", "jpeg"],
)
def test_allowed_types_are_told_by_their_bytes(data: bytes, expected: object) -> None:
    assert sniff_type(data) is expected


@pytest.mark.parametrize(
    "data",
    [sf.html(), sf.plain_zip(), b"PK\x03\x04broken", b"GIF89a....", b"MZ\x90\x00", b"", b"<svg onload=alert(1)>"],
    ids=["html", "zip", "broken-zip", "gif", "exe", "empty", "svg"],
)
def test_other_contents_are_not_allowed(data: bytes) -> None:
    assert sniff_type(data) is None


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", var_dir=tmp_path, attachment_max_mb=1, attachment_max_per_object=3)


def _refusal(settings: Settings, name: str, data: bytes) -> HuiqiError:
    with pytest.raises(HuiqiError) as info:
        attachments.check_file(name=name, data=data, settings=settings)
    return info.value


def test_a_pdf_renamed_docx_is_refused_as_a_mismatch(settings: Settings) -> None:
    err = _refusal(settings, "申请表.docx", sf.pdf())
    assert err.code == "file.type_mismatch" and err.status_code == 422
    assert "PDF" in err.message and ".docx" in err.message


def test_html_renamed_png_is_refused_as_unsupported(settings: Settings) -> None:
    err = _refusal(settings, "photo.png", sf.html())
    assert err.code == "file.unsupported_file" and "PDF" in err.message
    assert err.errors[0].field == "file"


def test_size_limit_and_empty_files(settings: Settings) -> None:
    big = sf.pdf() + b"0" * (1024 * 1024)
    err = _refusal(settings, "big.pdf", big)
    assert err.code == "file.too_large" and err.status_code == 413 and "1 MB" in err.message
    assert _refusal(settings, "empty.pdf", b"").code == "file.empty_file"


def test_a_good_file_keeps_its_name_and_gets_its_extension(settings: Settings) -> None:
    assert attachments.check_file(name="指南.PDF", data=sf.pdf(), settings=settings).display_name == "指南.PDF"
    checked = attachments.check_file(name="scan", data=sf.jpeg(), settings=settings)
    assert checked.display_name == "scan.jpg" and checked.file_type is JPEG
    assert attachments.check_file(name="x.jpeg", data=sf.jpeg(), settings=settings).display_name == "x.jpeg"


# ---------------------------------------------------------------- safe names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd.pdf", "passwd.pdf"),
        ("C:\\Users\\a\\申报指南.pdf", "申报指南.pdf"),
        ("evil\r\nSet-Cookie: x=1.pdf", "evil Set-Cookie_ x=1.pdf"),
        ("a\x00b.pdf", "ab.pdf"),
        ("invoice\u202egnp.pdf", "invoicegnp.pdf"),  # a right-to-left override cannot disguise the extension
        ("...hidden.pdf", "hidden.pdf"),
        ("", "附件.pdf"),
        ("../", "附件.pdf"),
        ('a"<b>.pdf', "a__b_.pdf"),
    ],
)
def test_display_names_lose_paths_and_control_characters(raw: str, expected: str) -> None:
    assert safe_display_name(raw, PDF) == expected


def test_very_long_names_are_cut_keeping_the_extension() -> None:
    name = safe_display_name("申" * 500 + ".xlsx", XLSX)
    assert len(name) <= 120 and name.endswith(".xlsx") and name.startswith("申申")


def test_content_disposition_encodes_the_name_per_rfc_5987() -> None:
    header = content_disposition("申报指南 2026.pdf")
    assert header.startswith("attachment; ")
    assert "filename*=UTF-8''%E7%94%B3%E6%8A%A5%E6%8C%87%E5%8D%97%202026.pdf" in header
    assert 'filename="2026.pdf"' in header
    assert header.isascii() and "\r" not in header and "\n" not in header
    assert 'filename="attachment.pdf"' in content_disposition("申报.pdf")


# ---------------------------------------------------------------- store and table in step


def _rows(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Attachment)) or 0


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _save(db: Session, settings: Settings, store: BlobStore, **kw: object) -> Attachment:
    args: dict = {
        "settings": settings,
        "owner_kind": OwnerKind.policy,
        "owner_id": 1,
        "kind": AttachmentKind.guide,
        "name": "指南.pdf",
        "data": sf.pdf(),
        "user_id": None,
        "store": store,
    }
    return attachments.save(db, **(args | kw))


def test_saved_files_are_recorded_with_their_checksum(db: Session, settings: Settings, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blobs")
    row = _save(db, settings, store)
    assert row.size == len(sf.pdf()) and len(row.sha256) == 64 and row.content_type == "application/pdf"
    assert b"".join(store.get(row.storage_key)) == sf.pdf()


def test_a_failed_insert_removes_the_stored_object(db: Session, settings: Settings, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blobs")
    before = _rows(db)
    with pytest.raises(IntegrityError):
        _save(db, settings, store, user_id=2_000_000_000)  # no such user: the foreign key refuses the row
    db.rollback()
    assert _files(tmp_path / "blobs") == [] and _rows(db) == before


def test_a_failing_store_inserts_nothing(db: Session, settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    before = _rows(db)
    with pytest.raises(StorageUnavailable):
        _save(db, settings, LocalStore(blocker))
    assert _rows(db) == before


def test_a_rolled_back_transaction_removes_what_it_stored(db: Session, settings: Settings, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blobs")
    db.commit()
    row = _save(db, settings, store)
    assert store.exists(row.storage_key)
    db.rollback()
    assert _files(tmp_path / "blobs") == []


def test_a_delete_removes_the_object_only_when_it_commits(db: Session, settings: Settings, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blobs")
    row = _save(db, settings, store)
    db.commit()
    key = row.storage_key
    attachments.delete(db, settings=settings, attachment=row, store=store)
    db.rollback()
    assert store.exists(key)  # the delete was undone: the file stays
    row = db.get(Attachment, row.id)
    assert row is not None
    attachments.delete(db, settings=settings, attachment=row, store=store)
    db.commit()
    assert not store.exists(key)


def test_count_per_owner_is_limited(db: Session, settings: Settings, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blobs")
    for _ in range(3):
        _save(db, settings, store, owner_id=42)
    with pytest.raises(HuiqiError) as info:
        _save(db, settings, store, owner_id=42)
    assert info.value.code == "file.too_many" and "3" in info.value.message
    _save(db, settings, store, owner_id=43)  # another owner is not affected


def test_a_rolled_back_savepoint_removes_only_what_was_stored_inside_it(
    db: Session, settings: Settings, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "blobs")
    db.commit()
    outer = _save(db, settings, store, owner_id=7)
    savepoint = db.begin_nested()
    inner = _save(db, settings, store, owner_id=7)
    savepoint.rollback()
    assert store.exists(outer.storage_key) and not store.exists(inner.storage_key)
    with db.begin_nested():  # a released savepoint keeps its file until the whole transaction ends
        kept = _save(db, settings, store, owner_id=7)
    db.commit()
    assert store.exists(outer.storage_key) and store.exists(kept.storage_key)
    assert {r.id for r in attachments.list_for(db, owner_kind=OwnerKind.policy, owner_id=7)} == {outer.id, kept.id}
