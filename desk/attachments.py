"""A case's attachments: the firm's evidence (证据材料) and the handling officers' reply files (答复附件).

Who may see them is who may see the case (`lifecycle.get_case`: the firm that filed it, officers of
its lead and assisting departments, supervisors and admins); the firm adds evidence to its own case
(`lifecycle.require_firm`), the lead department's officers, supervisors and admins add reply files
(`lifecycle.require_handler`) — the desk's existing rules, not new ones. Each upload is noted on the
timeline, visible to the firm. Case files are part of the record: nobody deletes them.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from auth.models import Role
from auth.service import Principal
from core import attachments as files
from core.attachments import Attachment, AttachmentKind, OwnerKind
from core.config import Settings
from desk import lifecycle
from desk.models import Case, EventKind

CASE = OwnerKind.case


def list_case_attachments(db: Session, *, case_id: int, actor: Principal | None) -> list[Attachment]:
    """Return the attachments of a case the actor may see (NotFound otherwise)."""
    case = lifecycle.get_case(db=db, case_id=case_id, actor=actor)
    return files.list_for(db, owner_kind=CASE, owner_id=case.id)


def attachments_of(db: Session, case: Case) -> list[Attachment]:
    """Return the attachments of a case already checked visible."""
    return files.list_for(db, owner_kind=CASE, owner_id=case.id)


def get_case_attachment(db: Session, *, case_id: int, attachment_id: int, actor: Principal | None) -> Attachment:
    """Return one attachment of a case the actor may see (NotFound otherwise, also for a stranger's case)."""
    case = lifecycle.get_case(db=db, case_id=case_id, actor=actor)
    return files.get_for(db, owner_kind=CASE, owner_id=case.id, attachment_id=attachment_id)


def attach_to_case(
    db: Session, *, settings: Settings, case_id: int, actor: Principal | None, name: str | None, data: bytes
) -> Attachment:
    """Attach a file to a case: the firm's evidence, or the handling department's reply file."""
    case = lifecycle.get_case(db=db, case_id=case_id, actor=actor)
    if actor is not None and actor.role == Role.enterprise:
        lifecycle.require_firm(case, actor, "上传证据材料")
        kind = AttachmentKind.evidence
    else:
        lifecycle.require_handler(case, actor, "上传答复附件")
        kind = AttachmentKind.reply
    row = files.save(
        db,
        settings=settings,
        owner_kind=CASE,
        owner_id=case.id,
        kind=kind,
        name=name,
        data=data,
        user_id=actor.user_id if actor else None,
        uploader_role=str(actor.role) if actor else None,
    )
    lifecycle.add_event(
        db,
        case,
        EventKind.note,
        actor,
        note=f"上传{files.KIND_LABELS[kind]}：{row.display_name}",
        data={"attachment_id": row.id, "attachment_kind": kind.value},
        visible_to_firm=True,
    )
    return row
