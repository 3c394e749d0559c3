"""What the pages share about attachments: reading a posted file, the upload hints, the card contexts.

Checking, storing and who may do what live in the domain (core.attachments, catalog.attachments,
desk.attachments); the pages call the same functions as the API and serve downloads with the same
response (core.responses.download_response).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from core import attachments as files
from core.config import Settings
from core.errors import FieldError, ValidationFailed

ACCEPT = ".pdf,.docx,.xlsx,.png,.jpg,.jpeg"


def upload_hint(settings: Settings) -> str:
    """Return the sentence under a file input."""
    return f"可上传 PDF、Word（.docx）、Excel（.xlsx）、PNG 或 JPEG 图片，每个不超过 {settings.attachment_max_mb} MB"


def posted_files(form: FormData, name: str, settings: Settings) -> list[tuple[str, bytes]]:
    """Return the files posted in a field (name, bytes), each read up to just past the size limit."""
    limit = files.max_bytes(settings)
    out = []
    for item in form.getlist(name):
        if isinstance(item, UploadFile) and item.filename:
            out.append((item.filename, item.file.read(limit + 1)))
    return out


def posted_file(form: FormData, settings: Settings, name: str = "file") -> tuple[str, bytes]:
    """Return the one file posted in a field, or refuse the field."""
    found = posted_files(form, name, settings)
    if not found:
        raise ValidationFailed("请选择要上传的文件", errors=[FieldError(name, "请选择要上传的文件", "required")])
    return found[0]


def policy_card(db: Session, settings: Settings, policy: Any, **extra: Any) -> dict[str, Any]:
    """Return the context of the policy editor's attachment card."""
    return {
        "policy": policy,
        "attachments": files.list_for(db, owner_kind=files.OwnerKind.policy, owner_id=policy.id),
        "attachment_kinds": [(k.value, files.KIND_LABELS[k]) for k in files.POLICY_KINDS],
        "attachment_accept": ACCEPT,
        "attachment_hint": upload_hint(settings),
        **extra,
    }


def filesize(size: int | None) -> str:
    """Return a byte count for people: 820 B, 12.3 KB, 4.5 MB."""
    if size is None:
        return ""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"
