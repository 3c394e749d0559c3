"""POST /intake: a curator uploads a policy document (or a zip of them) and gets draft policies back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.intake import run_intake
from auth.deps import CuratorUser
from core.deps import AppSettings, DbSession, UploadedFile

router = APIRouter()

_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "PDF、DOCX、HTML、TXT 或 zip"}
                    },
                }
            }
        },
    }
}


@router.post(
    "/intake",
    tags=["政策录入"],
    status_code=201,
    openapi_extra=_OPENAPI,
    responses={422: {"description": "文件无法读取（扫描件、加密、类型不符、压缩包过大等），未保存任何内容"}},
)
def intake(
    db: DbSession,
    actor: CuratorUser,
    settings: AppSettings,
    file: UploadedFile,
    department: Annotated[
        str | None, Query(max_length=40, description="发文部门编码；不填则按文中发文机关匹配")
    ] = None,
) -> dict[str, Any]:
    """Read a policy document and create a draft policy (never published) with proposed fields and conditions."""
    drafts = run_intake(
        db=db, settings=settings, files=[(file.filename, file.data)], actor=actor, department=department
    )
    return {"drafts": drafts}
