"""Attachments: uploaded files kept in the blob store (core.storage), described by one table.

A policy carries 申报指南 / 申请表 / 政策原文 (catalog.attachments says who may add them); a case carries
the firm's evidence and the officers' reply files (desk.attachments). This module knows no owners'
rules: it checks the file (type by content, size, count per owner), stores it under a generated key,
keeps the sanitised original name, and keeps the store and the table in step:

- the bytes are stored first; if the store fails nothing is inserted;
- if the insert fails the stored object is removed at once, and if the transaction (or a savepoint
  inside it) is rolled back later, the objects stored in it are removed then (session events);
- a deleted attachment's object is removed only after the deleting transaction commits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import ForeignKey, Index, Integer, String, event, func, select
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from core.config import Settings
from core.db import Base, utcnow
from core.errors import Conflict, FieldError, NotFound, PayloadTooLarge, ValidationFailed
from core.files import ALLOWED_TEXT, FileType, name_extension, safe_display_name, sniff_type
from core.storage import BlobStore, new_key, store_for

log = logging.getLogger(__name__)


class OwnerKind(enum.StrEnum):
    policy = "policy"
    case = "case"


class AttachmentKind(enum.StrEnum):
    guide = "guide"  # 申报指南
    form = "form"  # 申请表
    original = "original"  # 政策原文
    evidence = "evidence"  # 证据（企业提交的材料）
    reply = "reply"  # 答复附件（承办部门）


KIND_LABELS: dict[str, str] = {
    AttachmentKind.guide: "申报指南",
    AttachmentKind.form: "申请表",
    AttachmentKind.original: "政策原文",
    AttachmentKind.evidence: "证据材料",
    AttachmentKind.reply: "答复附件",
}
POLICY_KINDS = (AttachmentKind.guide, AttachmentKind.form, AttachmentKind.original)
CASE_KINDS = (AttachmentKind.evidence, AttachmentKind.reply)


class Attachment(Base):
    """One stored file and what it belongs to."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(10))
    owner_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    display_name: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    uploader_role: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_attachment_owner", "owner_kind", "owner_id"),)

    @property
    def kind_label(self) -> str:
        """Return the kind in Chinese."""
        return KIND_LABELS.get(self.kind, self.kind)


# ---------------------------------------------------------------- store and table in step


@dataclass
class _Pending:
    """Objects to remove when their transaction ends: (transaction, store, key)."""

    stored: list[tuple[SessionTransaction, BlobStore, str]] = field(default_factory=list)  # on rollback
    deleted: list[tuple[SessionTransaction, BlobStore, str]] = field(default_factory=list)  # on commit


_INFO_KEY = "huiqi_attachment_blobs"


def _remember(session: Session, which: str, store: BlobStore, key: str) -> None:
    pending = session.info.get(_INFO_KEY)
    if pending is None:
        pending = session.info[_INFO_KEY] = _Pending()
    transaction = session.get_nested_transaction() or session.get_transaction()
    assert transaction is not None  # called after a flush, inside a transaction
    getattr(pending, which).append((transaction, store, key))


def _within(transaction: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ended:
            return True
        transaction = transaction.parent
    return False


def _remove(store: BlobStore, key: str) -> None:
    try:
        store.delete(key)
    except Exception:  # logged by the store; an orphan object is harmless, a failed request is not
        log.warning("could not remove stored object %s", key)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending = session.info.pop(_INFO_KEY, None)
    for _, store, key in pending.deleted if pending else ():
        _remove(store, key)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    # Every rollback, a savepoint's too: what was stored inside the rolled-back transaction goes, and
    # deletions made inside it are forgotten; the enclosing transaction's own work stays pending.
    pending = session.info.get(_INFO_KEY)
    if pending is None:
        return
    gone = [(store, key) for tx, store, key in pending.stored if _within(tx, previous_transaction)]
    pending.stored = [e for e in pending.stored if not _within(e[0], previous_transaction)]
    pending.deleted = [e for e in pending.deleted if not _within(e[0], previous_transaction)]
    if not pending.stored and not pending.deleted:
        session.info.pop(_INFO_KEY, None)
    for store, key in gone:
        _remove(store, key)


# ---------------------------------------------------------------- checking a file


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed the checks: its type by content and its safe display name."""

    file_type: FileType
    display_name: str


def max_bytes(settings: Settings) -> int:
    """Return the attachment size limit in bytes."""
    return settings.attachment_max_mb * 1024 * 1024


def too_large(settings: Settings) -> PayloadTooLarge:
    """Return the error for a file past HUIQI_ATTACHMENT_MAX_MB."""
    reason = f"文件超过 {settings.attachment_max_mb} MB 的上限"
    return PayloadTooLarge(reason, code="file.too_large", errors=[FieldError("file", reason, "file.too_large")])


def check_file(*, name: str | None, data: bytes, settings: Settings) -> CheckedFile:
    """Check an uploaded file by its content: size, allowed type, and a name whose extension agrees."""
    if len(data) > max_bytes(settings):
        raise too_large(settings)
    if not data:
        reason = "文件是空的"
        raise ValidationFailed(reason, code="file.empty_file", errors=[FieldError("file", reason, "file.empty_file")])
    file_type = sniff_type(data)
    if file_type is None:
        reason = f"无法识别的文件内容，只能上传 {ALLOWED_TEXT}"
        raise ValidationFailed(
            f"不支持的文件类型：{reason}",
            code="file.unsupported_file",
            errors=[FieldError("file", reason, "file.unsupported_file")],
        )
    display = safe_display_name(name, file_type)
    ext = name_extension(display)
    if not ext:
        display = safe_display_name(display + file_type.extension)
    elif ext not in file_type.extensions:
        reason = f"文件内容是 {file_type.label}，与文件名的扩展名 {ext} 不符"
        raise ValidationFailed(
            f"文件类型不符：{reason}",
            code="file.type_mismatch",
            errors=[FieldError("file", reason, "file.type_mismatch")],
        )
    return CheckedFile(file_type=file_type, display_name=display)


# ---------------------------------------------------------------- the service


def list_for(session: Session, *, owner_kind: OwnerKind, owner_id: int) -> list[Attachment]:
    """Return an owner's attachments, oldest first."""
    return list(
        session.scalars(
            select(Attachment)
            .where(Attachment.owner_kind == owner_kind, Attachment.owner_id == owner_id)
            .order_by(Attachment.created_at, Attachment.id)
        )
    )


def get_for(session: Session, *, owner_kind: OwnerKind, owner_id: int, attachment_id: int) -> Attachment:
    """Return one attachment of an owner, or NotFound (also for another owner's)."""
    row = session.get(Attachment, attachment_id)
    if row is None or row.owner_kind != owner_kind or row.owner_id != owner_id:
        raise NotFound("附件不存在", code="file.attachment_not_found")
    return row


def _store_checked(store: BlobStore, *, owner_kind: str, owner_id: int, data: bytes, checked: CheckedFile) -> str:
    key = new_key(owner_kind, owner_id)
    store.put(key, io.BytesIO(data), content_type=checked.file_type.content_type)  # fails: nothing recorded
    return key


def _flush_or_remove(session: Session, store: BlobStore, key: str, row: Attachment | None = None) -> None:
    """Flush what was recorded of a stored object; if the flush fails, remove the object at once."""
    try:
        session.flush()
    except BaseException:
        if row is not None:
            with contextlib.suppress(Exception):
                session.expunge(row)
        _remove(store, key)
        raise
    _remember(session, "stored", store, key)


def save(
    session: Session,
    *,
    settings: Settings,
    owner_kind: OwnerKind,
    owner_id: int,
    kind: AttachmentKind,
    name: str | None,
    data: bytes,
    user_id: int | None,
    uploader_role: str | None = None,
    store: BlobStore | None = None,
) -> Attachment:
    """Check a file, store it and record it; the caller has checked who may attach what to the owner."""
    checked = check_file(name=name, data=data, settings=settings)
    count = session.scalar(
        select(func.count()).where(Attachment.owner_kind == owner_kind, Attachment.owner_id == owner_id)
    )
    if (count or 0) >= settings.attachment_max_per_object:
        what = "每条政策" if owner_kind == OwnerKind.policy else "每个工单"
        reason = f"{what}最多 {settings.attachment_max_per_object} 个附件"
        raise Conflict(
            f"附件数量已达上限：{reason}", code="file.too_many", errors=[FieldError("file", reason, "file.too_many")]
        )
    store = store or store_for(settings)
    key = _store_checked(store, owner_kind=owner_kind.value, owner_id=owner_id, data=data, checked=checked)
    row = Attachment(
        owner_kind=owner_kind.value,
        owner_id=owner_id,
        kind=kind.value,
        display_name=checked.display_name,
        content_type=checked.file_type.content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_key=key,
        uploaded_by_id=user_id,
        uploader_role=uploader_role,
    )
    session.add(row)
    _flush_or_remove(session, store, key, row)
    return row


def replace(
    session: Session,
    *,
    settings: Settings,
    attachment: Attachment,
    name: str | None,
    data: bytes,
    user_id: int | None,
    uploader_role: str | None = None,
    store: BlobStore | None = None,
) -> Attachment:
    """Put a new file in an attachment's place (same id and kind); the old object goes once this commits."""
    checked = check_file(name=name, data=data, settings=settings)
    store = store or store_for(settings)
    old_key = attachment.storage_key
    key = _store_checked(
        store, owner_kind=attachment.owner_kind, owner_id=attachment.owner_id, data=data, checked=checked
    )
    attachment.display_name = checked.display_name
    attachment.content_type = checked.file_type.content_type
    attachment.size = len(data)
    attachment.sha256 = hashlib.sha256(data).hexdigest()
    attachment.storage_key = key
    attachment.uploaded_by_id = user_id
    attachment.uploader_role = uploader_role
    attachment.created_at = utcnow()
    _flush_or_remove(session, store, key)
    _remember(session, "deleted", store, old_key)
    return attachment


def delete(session: Session, *, settings: Settings, attachment: Attachment, store: BlobStore | None = None) -> None:
    """Delete an attachment: the row now, its stored object once the transaction commits."""
    key = attachment.storage_key
    session.delete(attachment)
    session.flush()
    _remember(session, "deleted", store or store_for(settings), key)


def delete_all(session: Session, *, settings: Settings, owner_kind: OwnerKind, owner_id: int) -> int:
    """Delete every attachment of an owner (the owner is being deleted); return how many."""
    rows = list_for(session, owner_kind=owner_kind, owner_id=owner_id)
    for row in rows:
        delete(session, settings=settings, attachment=row)
    return len(rows)


def open_blob(*, settings: Settings, attachment: Attachment, store: BlobStore | None = None) -> Iterator[bytes]:
    """Return the attachment's bytes in chunks (BlobMissing before the first chunk if the object is gone)."""
    return (store or store_for(settings)).get(attachment.storage_key)
