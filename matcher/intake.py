"""Policy intake with the matcher's tag vocabulary: the one composition the API, the pages and the CLI use.

Catalog reads documents and proposes fields and conditions (catalog.intake); tags come from the
matcher's vocabulary, which catalog may not import, so the two meet here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from auth.deps import CuratorUser
from auth.service import Principal
from catalog.intake import service as intake_service
from catalog.intake.extract import Limits
from catalog.intake.service import IntakeResult, Plan
from core.config import Settings
from core.db import write_stage
from core.deps import AppSettings, DbSession, ReleasedReads, UploadedFile, upload_openapi, writes_in_stages
from matcher.tags import policy_tag_suggester


def prepare(
    *, db: Session, settings: Settings, files: list[tuple[str, bytes]], department: str | None = None
) -> list[Plan]:
    """Read and analyse every document of an upload; writes nothing."""
    return intake_service.prepare(
        db=db,
        files=files,
        department=department,
        limits=Limits.from_settings(settings),
        suggest_tags=policy_tag_suggester(db),
    )


def intake_in_stages(
    *,
    db: Session,
    settings: Settings,
    files: list[tuple[str, bytes]],
    actor: Principal | None,
    department: str | None = None,
) -> list[IntakeResult]:
    """For a request whose session began as a reader: analyse first, then store the drafts in one short write.

    SQLite's write lock is held only while the drafts and their originals are written, never while a
    PDF is being read.
    """
    plans = prepare(db=db, settings=settings, files=files, department=department)
    with write_stage(db):
        return intake_service.store(db=db, plans=plans, actor=actor, settings=settings)


router = APIRouter()


@router.post(
    "/intake",
    tags=["政策录入"],
    status_code=201,
    openapi_extra=upload_openapi("PDF、DOCX、HTML、TXT 或 zip"),
    responses={422: {"description": "文件无法读取（扫描件、加密、类型不符、压缩包过大等），未保存任何内容"}},
)
@writes_in_stages
def intake(
    db: DbSession,
    actor: CuratorUser,
    _released: ReleasedReads,
    settings: AppSettings,
    file: UploadedFile,
    department: Annotated[
        str | None, Query(max_length=40, description="发文部门编码；不填则按文中发文机关匹配")
    ] = None,
) -> dict[str, Any]:
    """Read a policy document and create a draft policy (never published) with proposed fields and conditions.

    The original PDF or DOCX is kept as the draft's 政策原文 attachment.
    """
    results = intake_in_stages(
        db=db, settings=settings, files=[(file.filename, file.data)], actor=actor, department=department
    )
    return {"drafts": [r.as_dict() for r in results]}
