"""HTTP routes of the catalog."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Response
from pydantic import AfterValidator

from auth.deps import AdminUser, CuratorUser, PublicUser, StaffUser, public
from catalog import attachments as policy_files
from catalog import rules as rules_mod
from catalog import service
from catalog.models import (
    Category,
    Department,
    Policy,
    PolicyLevel,
    PolicyStatus,
    PolicyType,
    PolicyVersion,
    Tag,
    TagKind,
    Topic,
)
from catalog.schemas import (
    CategoryIn,
    CategoryOut,
    CategoryUpdate,
    DepartmentIn,
    DepartmentOut,
    DepartmentUpdate,
    PolicyBrief,
    PolicyDiff,
    PolicyFilters,
    PolicyIn,
    PolicyOut,
    PolicyUpdate,
    PolicyVersionOut,
    TagIn,
    TagOut,
    TagUpdate,
    TopicIn,
    TopicOut,
)
from core import codes, events
from core.attachments import Attachment
from core.deps import AppDatabase, AppSettings, DbSession, Paging, UploadedAttachment, attachment_openapi
from core.responses import DOWNLOAD_RESPONSES, download_response
from core.schemas import AttachmentOut, Id, Page

router = APIRouter()


def _brief(policy: Policy, today: dt.date) -> PolicyBrief:
    out = PolicyBrief.model_validate(policy)
    out.days_left = service.days_left(policy, today)
    return out


def _full(policy: Policy) -> PolicyOut:
    out = PolicyOut.model_validate(policy)
    out.days_left = service.days_left(policy)
    out.rules_text = rules_mod.describe_rules(policy.rules, region_name=codes.region_name) if policy.rules else []
    return out


# ---------------------------------------------------------------- departments


@router.get("/departments", response_model=list[DepartmentOut], tags=["目录"], dependencies=[Depends(public)])
def list_departments(db: DbSession) -> list:
    """List issuing and handling units."""
    return service.list_departments(db=db)


@router.post("/departments", response_model=DepartmentOut, status_code=201, tags=["目录"])
def create_department(db: DbSession, actor: CuratorUser, department_in: DepartmentIn) -> Department:
    """Create a department."""
    return service.create_department(db=db, department_in=department_in)


@router.get("/departments/{department_id}", response_model=DepartmentOut, tags=["目录"], dependencies=[Depends(public)])
def get_department(db: DbSession, department_id: Id) -> Department:
    """Show one department."""
    return service.get_department(db=db, department_id=department_id)


@router.patch("/departments/{department_id}", response_model=DepartmentOut, tags=["目录"])
def update_department(
    db: DbSession, actor: CuratorUser, department_id: Id, department_in: DepartmentUpdate
) -> Department:
    """Change a department."""
    return service.update_department(db=db, department_id=department_id, department_in=department_in)


@router.delete("/departments/{department_id}", status_code=204, tags=["目录"])
def delete_department(db: DbSession, actor: AdminUser, department_id: Id) -> Response:
    """Delete a department no policy refers to."""
    service.delete_department(db=db, department_id=department_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- categories, tags, topics


@router.get("/categories", response_model=list[CategoryOut], tags=["目录"], dependencies=[Depends(public)])
def list_categories(db: DbSession) -> list[Category]:
    """Return the two-level policy taxonomy."""
    return service.list_categories(db=db)


@router.post("/categories", response_model=CategoryOut, status_code=201, tags=["目录"])
def create_category(db: DbSession, actor: CuratorUser, category_in: CategoryIn) -> Category:
    """Create a category."""
    return service.create_category(db=db, category_in=category_in)


@router.patch("/categories/{category_id}", response_model=CategoryOut, tags=["目录"])
def update_category(db: DbSession, actor: CuratorUser, category_id: Id, category_in: CategoryUpdate) -> Category:
    """Rename or reorder a category."""
    return service.update_category(db=db, category_id=category_id, category_in=category_in)


@router.get("/tags", response_model=list[TagOut], tags=["目录"], dependencies=[Depends(public)])
def list_tags(db: DbSession, kind: TagKind | None = None) -> list[Tag]:
    """Return the tag vocabulary shared by policies and enterprises."""
    return service.list_tags(db=db, kind=kind)


@router.post("/tags", response_model=TagOut, status_code=201, tags=["目录"])
def create_tag(db: DbSession, actor: CuratorUser, tag_in: TagIn) -> Tag:
    """Add a tag with its synonyms."""
    return service.create_tag(db=db, tag_in=tag_in)


@router.patch("/tags/{tag_id}", response_model=TagOut, tags=["目录"])
def update_tag(db: DbSession, actor: CuratorUser, tag_id: Id, tag_in: TagUpdate) -> Tag:
    """Change a tag."""
    return service.update_tag(db=db, tag_id=tag_id, tag_in=tag_in)


@router.delete("/tags/{tag_id}", status_code=204, tags=["目录"])
def delete_tag(db: DbSession, actor: CuratorUser, tag_id: Id) -> Response:
    """Delete an unused tag."""
    service.delete_tag(db=db, tag_id=tag_id)
    return Response(status_code=204)


@router.get("/topics", response_model=list[TopicOut], tags=["目录"], dependencies=[Depends(public)])
def list_topics(db: DbSession) -> list[Topic]:
    """Return the topic columns (专栏)."""
    return service.list_topics(db=db)


@router.post("/topics", response_model=TopicOut, status_code=201, tags=["目录"])
def create_topic(db: DbSession, actor: CuratorUser, topic_in: TopicIn) -> Topic:
    """Create a topic column."""
    return service.create_topic(db=db, topic_in=topic_in)


@router.get("/rules/schema", tags=["目录"], dependencies=[Depends(public)])
def rules_schema() -> dict:
    """Return the JSON Schema of eligibility rules."""
    return rules_mod.RULES_JSON_SCHEMA


# ---------------------------------------------------------------- policies


@router.get("/policies", response_model=Page[PolicyBrief], tags=["政策"])
def list_policies(
    db: DbSession,
    actor: PublicUser,
    paging: Paging,
    q: Annotated[str | None, Query(description="关键词（标题、摘要、文号；繁简均可）")] = None,
    category: Annotated[str | None, Query(description="分类编码（大类含其小类）")] = None,
    department: Annotated[str | None, Query(description="部门编码")] = None,
    level: PolicyLevel | None = None,
    region: Annotated[
        str | None, AfterValidator(codes.checked_region), Query(pattern=r"^\d{6}$", description="适用于该地区的政策")
    ] = None,
    policy_type: PolicyType | None = None,
    status: Annotated[PolicyStatus | None, Query(description="状态（非工作人员只能看已发布/已过期）")] = None,
    topic: str | None = None,
    tag: str | None = None,
    open_now: Annotated[bool, Query(description="只看正在申报的")] = False,
    sort: Annotated[
        str, Query(pattern="^(published|deadline|title)$", description="排序：published / deadline / title")
    ] = "published",
) -> Page[Any]:
    """Search and filter policies."""
    filters = PolicyFilters(
        q=q,
        category=category,
        department=department,
        level=level,
        region=region,
        policy_type=policy_type,
        status=status,
        topic=topic,
        tag=tag,
        open_now=open_now,
        sort=sort,
    )
    today = dt.date.today()
    items, total = service.list_policies(
        db=db, filters=filters, actor=actor, offset=paging.offset, limit=paging.page_size, today=today
    )
    return Page(items=[_brief(p, today) for p in items], total=total, page=paging.page, page_size=paging.page_size)


@router.post("/policies", response_model=PolicyOut, status_code=201, tags=["政策"])
def create_policy(db: DbSession, actor: CuratorUser, policy_in: PolicyIn) -> PolicyOut:
    """Create a draft policy."""
    return _full(service.create_policy(db=db, policy_in=policy_in, actor=actor))


@router.get("/policies/{policy_id}", response_model=PolicyOut, tags=["政策"])
def get_policy(
    db: DbSession, database: AppDatabase, tasks: BackgroundTasks, actor: PublicUser, policy_id: Id
) -> PolicyOut:
    """Show a policy (drafts and withdrawn ones only to staff); a signed-in firm's view is counted after the response."""
    policy = service.get_visible_policy(db=db, policy_id=policy_id, actor=actor)
    events.policies_seen(tasks=tasks, database=database, principal=actor, policy_ids=[policy.id], kind="viewed")
    return _full(policy)


@router.patch("/policies/{policy_id}", response_model=PolicyOut, tags=["政策"])
def update_policy(db: DbSession, actor: CuratorUser, policy_id: Id, policy_in: PolicyUpdate) -> PolicyOut:
    """Edit a policy; edits of published policies become new versions and matched firms hear what changed."""
    policy = service.update_policy(db=db, policy_id=policy_id, policy_in=policy_in, actor=actor)
    return _full(policy)


@router.delete("/policies/{policy_id}", status_code=204, tags=["政策"])
def delete_policy(db: DbSession, settings: AppSettings, actor: CuratorUser, policy_id: Id) -> Response:
    """Delete a never-published draft (and its attachments)."""
    service.delete_policy(db=db, policy_id=policy_id, settings=settings)
    return Response(status_code=204)


# ---------------------------------------------------------------- attachments (申报指南 / 申请表 / 政策原文)


def attachment_out(row: Attachment) -> AttachmentOut:
    """Describe a policy attachment with its download address."""
    return AttachmentOut.of(row, f"/api/v1/policies/{row.owner_id}")


@router.get("/policies/{policy_id}/attachments", response_model=list[AttachmentOut], tags=["政策"])
def list_policy_attachments(db: DbSession, actor: PublicUser, policy_id: Id) -> list[AttachmentOut]:
    """List a policy's attachments (anyone who may see the policy)."""
    return [attachment_out(r) for r in policy_files.list_policy_attachments(db, policy_id=policy_id, actor=actor)]


@router.post(
    "/policies/{policy_id}/attachments",
    response_model=AttachmentOut,
    status_code=201,
    tags=["政策"],
    openapi_extra=attachment_openapi(with_kind=True),
)
def add_policy_attachment(
    db: DbSession, settings: AppSettings, actor: CuratorUser, policy_id: Id, upload: UploadedAttachment
) -> AttachmentOut:
    """Attach a 申报指南 / 申请表 / 政策原文 (PDF, DOCX, XLSX, PNG, JPEG; type checked by content)."""
    row = policy_files.attach_to_policy(
        db,
        policy_id=policy_id,
        kind=upload.kind or "",
        name=upload.filename,
        data=upload.data,
        user=actor,
        settings=settings,
    )
    return attachment_out(row)


@router.put(
    "/policies/{policy_id}/attachments/{attachment_id}",
    response_model=AttachmentOut,
    tags=["政策"],
    openapi_extra=attachment_openapi(with_kind=False),
)
def replace_policy_attachment(
    db: DbSession,
    settings: AppSettings,
    actor: CuratorUser,
    policy_id: Id,
    attachment_id: Id,
    upload: UploadedAttachment,
) -> AttachmentOut:
    """Replace an attachment's file (the kind stays; the new file gets a new id)."""
    row = policy_files.replace_policy_attachment(
        db,
        policy_id=policy_id,
        attachment_id=attachment_id,
        name=upload.filename,
        data=upload.data,
        user=actor,
        settings=settings,
    )
    return attachment_out(row)


@router.delete("/policies/{policy_id}/attachments/{attachment_id}", status_code=204, tags=["政策"])
def delete_policy_attachment(
    db: DbSession, settings: AppSettings, actor: CuratorUser, policy_id: Id, attachment_id: Id
) -> Response:
    """Delete an attachment."""
    policy_files.delete_policy_attachment(db, policy_id=policy_id, attachment_id=attachment_id, settings=settings)
    return Response(status_code=204)


@router.get(
    "/policies/{policy_id}/attachments/{attachment_id}/download",
    tags=["政策"],
    response_class=Response,
    responses=DOWNLOAD_RESPONSES,
)
def download_policy_attachment(
    db: DbSession, settings: AppSettings, actor: PublicUser, policy_id: Id, attachment_id: Id
) -> Response:
    """Download an attachment (anyone who may see the policy), as a file, with its name and checked type."""
    row = policy_files.get_policy_attachment(db, policy_id=policy_id, attachment_id=attachment_id, actor=actor)
    return download_response(settings=settings, attachment=row)


@router.post("/policies/{policy_id}/publish", response_model=PolicyOut, tags=["政策"])
def publish_policy(db: DbSession, actor: CuratorUser, policy_id: Id) -> PolicyOut:
    """Publish a policy (needs summary, interpreter and a category); eligible firms hear of it at once."""
    # Subscribers of PolicyPublished queue the fan-out in this transaction: it runs only if the publish commits.
    return _full(service.publish_policy(db=db, policy_id=policy_id, actor=actor))


@router.post("/policies/{policy_id}/withdraw", response_model=PolicyOut, tags=["政策"])
def withdraw_policy(db: DbSession, actor: CuratorUser, policy_id: Id) -> PolicyOut:
    """Withdraw a published policy."""
    return _full(service.withdraw_policy(db=db, policy_id=policy_id, actor=actor))


@router.get("/policies/{policy_id}/versions", response_model=list[PolicyVersionOut], tags=["政策"])
def list_versions(db: DbSession, actor: StaffUser, policy_id: Id) -> list[PolicyVersion]:
    """List a policy's versions, newest first."""
    return service.list_versions(db=db, policy_id=policy_id)


@router.get("/policies/{policy_id}/versions/{version}", response_model=PolicyVersionOut, tags=["政策"])
def get_version(db: DbSession, actor: StaffUser, policy_id: Id, version: Id) -> PolicyVersion:
    """Show one version's snapshot."""
    return service.get_version(db=db, policy_id=policy_id, version=version)


@router.get("/policies/{policy_id}/diff", response_model=PolicyDiff, tags=["政策"])
def diff_versions(
    db: DbSession,
    actor: StaffUser,
    policy_id: Id,
    from_version: Annotated[Id, Query(alias="from")],
    to_version: Annotated[Id, Query(alias="to")],
) -> PolicyDiff:
    """Compare two versions field by field."""
    return service.diff_versions(db=db, policy_id=policy_id, from_version=from_version, to_version=to_version)
