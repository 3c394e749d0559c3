"""A policy's attachments (申报指南 / 申请表 / 政策原文): curators add, replace and delete them; everyone who may
see the policy may download them.

`attach_to_policy` is the one way to attach a file to a policy, for the API, the pages and other
domains (e.g. keeping an intake's original document); core.attachments does the checking and storing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from auth.service import Principal
from catalog import service
from core import attachments as files
from core.attachments import Attachment, AttachmentKind, OwnerKind
from core.config import Settings
from core.errors import FieldError, ValidationFailed

POLICY = OwnerKind.policy


def policy_kind(value: str | AttachmentKind, field: str = "kind") -> AttachmentKind:
    """Return a policy attachment kind, or refuse the field (case kinds are not policy kinds)."""
    if value in [k.value for k in files.POLICY_KINDS]:
        return AttachmentKind(value)
    allowed = "、".join(f"{k.value}（{files.KIND_LABELS[k]}）" for k in files.POLICY_KINDS)
    raise ValidationFailed(errors=[FieldError(field, f"附件类别应为 {allowed}", "file.bad_kind")])


def attach_to_policy(
    session: Session,
    *,
    policy_id: int,
    kind: str | AttachmentKind,
    name: str | None,
    data: bytes,
    user: Principal | None,
    settings: Settings,
) -> Attachment:
    """Attach a file to a policy (any status); the caller decided the user may (curators, admins, jobs)."""
    policy = service.get_policy(db=session, policy_id=policy_id)
    return files.save(
        session,
        settings=settings,
        owner_kind=POLICY,
        owner_id=policy.id,
        kind=policy_kind(kind),
        name=name,
        data=data,
        user_id=user.user_id if user else None,
        uploader_role=str(user.role) if user else None,
    )


def replace_policy_attachment(
    session: Session,
    *,
    policy_id: int,
    attachment_id: int,
    name: str | None,
    data: bytes,
    user: Principal | None,
    settings: Settings,
) -> Attachment:
    """Replace an attachment's file: same id and kind, the new file's name, type and size."""
    row = files.get_for(session, owner_kind=POLICY, owner_id=policy_id, attachment_id=attachment_id)
    return files.replace(
        session,
        settings=settings,
        attachment=row,
        name=name,
        data=data,
        user_id=user.user_id if user else None,
        uploader_role=str(user.role) if user else None,
    )


def delete_policy_attachment(session: Session, *, policy_id: int, attachment_id: int, settings: Settings) -> None:
    """Delete one attachment of a policy."""
    row = files.get_for(session, owner_kind=POLICY, owner_id=policy_id, attachment_id=attachment_id)
    files.delete(session, settings=settings, attachment=row)


def list_policy_attachments(session: Session, *, policy_id: int, actor: Principal | None) -> list[Attachment]:
    """Return the attachments of a policy the actor may see (NotFound otherwise)."""
    policy = service.get_visible_policy(db=session, policy_id=policy_id, actor=actor)
    return files.list_for(session, owner_kind=POLICY, owner_id=policy.id)


def get_policy_attachment(
    session: Session, *, policy_id: int, attachment_id: int, actor: Principal | None
) -> Attachment:
    """Return one attachment of a policy the actor may see (NotFound otherwise)."""
    policy = service.get_visible_policy(db=session, policy_id=policy_id, actor=actor)
    return files.get_for(session, owner_kind=POLICY, owner_id=policy.id, attachment_id=attachment_id)
