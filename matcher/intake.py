"""Policy intake with the matcher's tag vocabulary: the one composition the API, the pages and the CLI use.

Catalog reads documents and proposes fields and conditions (catalog.intake); tags come from the
matcher's vocabulary, which catalog may not import, so the two meet here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from auth.deps import CuratorUser
from auth.service import Principal
from catalog import service as catalog_service
from catalog.intake import review as intake_review
from catalog.intake import service as intake_service
from catalog.intake.extract import Limits
from catalog.intake.service import IntakeResult, Plan
from core.config import Settings
from core.db import write_stage
from core.deps import AppSettings, DbSession, ReleasedReads, UploadedFile, upload_openapi, writes_in_stages
from matcher import coverage
from matcher.deps import MatcherDep
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


def eligible_count(*, db: Session, matcher: Any, policy_id: int) -> dict[str, Any]:
    """How many firms the draft's rules admit now: the editor's preview (vectorised rules over stored firm facts).

    Reads only; a count, not a match run (nothing is stored).
    """
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    preview = coverage.preview_rules(db=db, matcher=matcher, rules=policy.rules)
    return {k: preview[k] for k in ("total", "eligible", "likely", "ineligible", "text", "errors")}


def decide_in_stages(
    *,
    db: Session,
    policy_id: int,
    key: str,
    decision: str,
    actor: Principal | None,
    value: Any = None,
    op: Any = None,
) -> intake_review.Item:
    """One curator decision in a short write of its own (the count that follows is a separate read)."""
    with write_stage(db):
        return intake_review.decide(
            db, policy_id=policy_id, key=key, decision=decision, actor=actor, value=value, op=op
        )


def review_state(*, db: Session, matcher: Any, policy_id: int) -> dict[str, Any]:
    """The review of an intake draft: proposals with their decisions, what is left, duplicates, the live count."""
    record = intake_review.record_for(db, policy_id)
    return intake_review.summary(record) | {"preview": eligible_count(db=db, matcher=matcher, policy_id=policy_id)}


class DecisionIn(BaseModel):
    """A curator's decision on one proposal."""

    model_config = ConfigDict(extra="forbid")

    decision: str = Field(..., max_length=10, description="accept（采纳）、edit（修改）或 reject（驳回）")
    op: str | None = Field(None, max_length=20, description="修改条件时的运算（如 gte）；不填沿用建议的运算")
    value: Any = Field(None, description="修改后的值：字段的新值、条件的取值（数字、列表或文字）或文字条件的新表述")


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


@router.get("/intake/{policy_id}", tags=["政策录入"], responses={404: {"description": "政策不存在或不是由文件录入的"}})
def intake_review_state(db: DbSession, matcher: MatcherDep, actor: CuratorUser, policy_id: int) -> dict[str, Any]:
    """The proposals of a draft read from a document, each with its source sentence, confidence and decision.

    ``undecided`` counts the proposals still waiting: publishing is refused until it is 0.
    ``preview`` is the eligible-firm count under the draft's current rules.
    """
    return review_state(db=db, matcher=matcher, policy_id=policy_id)


@router.post(
    "/intake/{policy_id}/proposals/{key}",
    tags=["政策录入"],
    responses={
        404: {"description": "政策、录入记录或建议不存在"},
        422: {"description": "操作或取值无效（code 与 errors[].field 指明哪一项）"},
    },
)
@writes_in_stages
def intake_decide(
    db: DbSession,
    matcher: MatcherDep,
    actor: CuratorUser,
    _released: ReleasedReads,
    policy_id: int,
    key: Annotated[str, Path(max_length=60, description="建议编号：field-字段名、condition-序号 或 tag-序号")],
    body: DecisionIn,
) -> dict[str, Any]:
    """Accept, edit or reject one proposal; the draft changes to match and the eligible count is returned."""
    item = decide_in_stages(
        db=db, policy_id=policy_id, key=key, decision=body.decision, actor=actor, value=body.value, op=body.op
    )
    return {"proposal": item.as_dict()} | review_state(db=db, matcher=matcher, policy_id=policy_id)
