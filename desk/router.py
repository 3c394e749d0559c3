"""HTTP routes of the desk (企业诉求服务台): intake, the case timeline, every transition, queues, FAQ."""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from sqlalchemy.orm import Session

from auth.deps import Allow, PublicUser, public
from auth.models import Role
from auth.scopes import DESK_INTAKE
from auth.service import Principal
from core.attachments import Attachment
from core.config import Settings
from core.deps import (
    AppSettings,
    DbSession,
    PageParams,
    Paging,
    ReleasedReads,
    UploadedAttachment,
    attachment_openapi,
    writes_in_stages,
)
from core.errors import FieldError, ValidationFailed
from core.responses import DOWNLOAD_RESPONSES, download_response
from core.schemas import AttachmentOut, Id, Page
from desk import attachments as case_files
from desk import clock, faq, flows, handling, lifecycle, outcome, queries
from desk.models import CHANNEL_LABELS, STATUS_LABELS, Case, Channel, FaqEntry
from desk.schemas import (
    AcceptAnswerIn,
    CaseBrief,
    CaseDepartmentOut,
    CaseIn,
    CaseOut,
    DecisionIn,
    DepartmentRef,
    DepartmentTargetIn,
    EventOut,
    ExtensionIn,
    FaqIn,
    FaqOut,
    FaqUpdate,
    KindIn,
    NoteIn,
    NoteOnFirmIn,
    PauseOut,
    PromoteIn,
    RateIn,
    ReasonIn,
    RequiredNoteIn,
    ResolveIn,
    RevisitIn,
    SlaOut,
)
from desk.sla import KIND_LABELS, Kind
from matcher.deps import MatcherDep

router = APIRouter(prefix="/desk")
TAGS: list[str | Enum] = ["服务台"]

# Who may call what.
# API keys with the `desk:intake` scope (12345 hotline) may file cases and read the ones they filed, nothing else.
Submitter = Annotated[
    Principal, Depends(Allow(Role.enterprise, Role.desk, Role.supervisor, Role.admin, scopes=(DESK_INTAKE,)))
]
IntakeReader = Annotated[
    Principal, Depends(Allow(Role.enterprise, Role.desk, Role.supervisor, Role.admin, scopes=(DESK_INTAKE,)))
]
CaseReader = Annotated[Principal, Depends(Allow(Role.enterprise, Role.desk, Role.supervisor, Role.admin))]
Firm = Annotated[Principal, Depends(Allow(Role.enterprise))]
Handler = Annotated[Principal, Depends(Allow(Role.desk, Role.supervisor, Role.admin))]
Supervisor = Annotated[Principal, Depends(Allow(Role.supervisor, Role.admin))]
Promoter = Annotated[Principal, Depends(Allow(Role.desk, Role.supervisor, Role.admin, Role.curator))]
FaqEditor = Annotated[Principal, Depends(Allow(Role.desk, Role.curator, Role.admin))]


# ---------------------------------------------------------------- response shaping


def _sla(case: Case, settings: Settings) -> SlaOut:
    view = clock.sla_view(case, settings=settings)
    return SlaOut(
        stage=view.stage, due_at=view.due_at, state=view.state, state_label=view.state_label, colour=view.colour
    )


def _brief(case: Case, settings: Settings, departments: dict, enterprises: dict[int, str]) -> CaseBrief:
    out = CaseBrief.model_validate(case)
    out.kind_label = KIND_LABELS.get(case.kind, case.kind)
    out.status_label = STATUS_LABELS.get(case.status, case.status)
    dept = departments.get(case.department_id) if case.department_id else None
    out.department = DepartmentRef.model_validate(dept) if dept else None
    out.enterprise_name = enterprises.get(case.enterprise_id) if case.enterprise_id else None
    out.sla = _sla(case, settings)
    return out


def _page(db: Session, items: list[Case], total: int, paging: PageParams, settings: Settings) -> Page[CaseBrief]:
    departments = queries.department_names(db, (c.department_id for c in items))
    enterprises = queries.enterprise_names(db, (c.enterprise_id for c in items))
    return Page(
        items=[_brief(c, settings, departments, enterprises) for c in items],
        total=total,
        page=paging.page,
        page_size=paging.page_size,
    )


def _full(db: Session, case: Case, actor: Principal, settings: Settings) -> CaseOut:
    departments = queries.department_names(db, [case.department_id, *(d.department_id for d in case.departments)])
    enterprises = queries.enterprise_names(db, [case.enterprise_id])
    brief = _brief(case, settings, departments, enterprises)
    computed = {"departments", "pauses", "events", "replayed"}
    extra = {n: getattr(case, n) for n in CaseOut.model_fields if n not in CaseBrief.model_fields and n not in computed}
    out = CaseOut(**brief.model_dump(), **extra)
    out.departments = [
        CaseDepartmentOut(department=DepartmentRef.model_validate(departments[d.department_id]), role=d.role)
        for d in sorted(case.departments, key=lambda d: (d.role != "lead", d.department_id))
        if d.department_id in departments
    ]
    out.pauses = [PauseOut.model_validate(p) for p in case.pauses]
    out.replayed = bool(case.replayed)
    if actor.role == Role.enterprise:
        # The firm sees what desk.queries.firm_view says: no internals, no draft answer, its own events.
        view = queries.firm_view(case)
        for name, value in view.hidden.items():
            setattr(out, name, value)
        out.instant_answer = view.instant_answer
        out.events = [EventOut(**{**asdict(e), "data": {}, "visible_to_firm": True}) for e in view.events]
        return out
    out.events = []
    for event in queries.timeline(case, actor):
        item = EventOut.model_validate(event)
        item.label = queries.event_label(event.kind)
        out.events.append(item)
    return out


# ---------------------------------------------------------------- intake and reading


@router.post("/cases", response_model=CaseOut, status_code=201, tags=TAGS)
@writes_in_stages
def submit_case(
    db: DbSession,
    settings: AppSettings,
    matcher: MatcherDep,
    actor: Submitter,
    _released: ReleasedReads,
    case_in: CaseIn,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=100, description="幂等键（也可放在请求体）")
    ] = None,
) -> CaseOut:
    """Submit an enquiry (firm: web; staff: 代提 with the visit record or hotline; API key: 12345 integration).

    A consultation is answered at once when the knowledge base is confident; otherwise the case is
    routed to a department (or the central queue) with its due times. Repeating a request with the same
    idempotency key returns the first case (200) instead of making another. The case is committed
    before its answer is computed; under load it may come back ``submitted`` and be answered or
    routed within a minute (desk/flows.py).
    """
    if idempotency_key and case_in.idempotency_key and idempotency_key != case_in.idempotency_key:
        raise ValidationFailed(
            errors=[FieldError("idempotency_key", "请求头 Idempotency-Key 与请求体中的幂等键不一致", "mismatch")]
        )
    if idempotency_key and not case_in.idempotency_key:
        case_in = case_in.model_copy(update={"idempotency_key": idempotency_key})
    case = flows.submit(db=db, matcher=matcher, settings=settings, actor=actor, case_in=case_in)
    if case.replayed:
        response.status_code = 200
    out = _full(db, case, actor, settings)
    # End the reads too: the response is serialised on another worker thread, and a connection held
    # while waiting for one starves the requests that hold threads and wait for connections.
    db.commit()
    return out


@router.get("/cases", response_model=Page[CaseBrief], tags=TAGS)
def list_cases(
    db: DbSession,
    settings: AppSettings,
    actor: IntakeReader,
    paging: Paging,
    status: Annotated[list[str] | None, Query(description="状态，可多选")] = None,
    kind: Kind | None = None,
    channel: Channel | None = None,
    department_id: Id | None = None,
    enterprise_id: Id | None = None,
    sla_state: Annotated[str | None, Query(pattern="^(on_track|due_soon|yellow|orange|red)$")] = None,
    supervised: bool | None = None,
    open_only: Annotated[bool, Query(description="只看未办结的")] = False,
    overdue: Annotated[bool, Query(description="只看已超时的")] = False,
    q: Annotated[str | None, Query(max_length=100, description="标题、内容或工单号")] = None,
    sort: Annotated[
        str, Query(pattern="^(received|due)$", description="received 最新在前 / due 最早到期在前")
    ] = "received",
) -> Page[CaseBrief]:
    """List the cases the caller may see (firm: own; desk officer: own department incl. 会办; supervisors: all)."""
    filters = queries.CaseFilters(
        status=status,
        kind=kind,
        channel=channel,
        department_id=department_id,
        enterprise_id=enterprise_id,
        sla_state=sla_state,
        supervised=supervised,
        open_only=open_only,
        overdue=overdue,
        q=q,
        sort=sort,
    )
    items, total = queries.list_cases(db=db, actor=actor, filters=filters, offset=paging.offset, limit=paging.page_size)
    return _page(db, items, total, paging, settings)


@router.get("/my/cases", response_model=Page[CaseBrief], tags=TAGS)
def my_cases(db: DbSession, settings: AppSettings, actor: Firm, paging: Paging) -> Page[CaseBrief]:
    """The firm's own cases, newest first."""
    items, total = queries.list_cases(db=db, actor=actor, offset=paging.offset, limit=paging.page_size)
    return _page(db, items, total, paging, settings)


@router.get("/queue", response_model=Page[CaseBrief], tags=TAGS)
def work_queue(db: DbSession, settings: AppSettings, actor: Handler, paging: Paging) -> Page[CaseBrief]:
    """Open cases whose clock runs, earliest deadline first, with their SLA colour (desk: own department)."""
    items, total = queries.queue(db=db, actor=actor, offset=paging.offset, limit=paging.page_size)
    return _page(db, items, total, paging, settings)


@router.get("/dispatch-queue", response_model=Page[CaseBrief], tags=TAGS)
def dispatch_queue(db: DbSession, settings: AppSettings, actor: Supervisor, paging: Paging) -> Page[CaseBrief]:
    """The central dispatch queue (统一分拨): cases no department was found for, oldest first."""
    filters = queries.CaseFilters(in_queue=True, sort="due")
    items, total = queries.list_cases(db=db, actor=actor, filters=filters, offset=paging.offset, limit=paging.page_size)
    return _page(db, items, total, paging, settings)


@router.get("/supervision/overdue", response_model=Page[CaseBrief], tags=TAGS)
def overdue_cases(db: DbSession, settings: AppSettings, actor: Supervisor, paging: Paging) -> Page[CaseBrief]:
    """Cases past their running deadline, the longest overdue first."""
    filters = queries.CaseFilters(overdue=True, sort="due")
    items, total = queries.list_cases(db=db, actor=actor, filters=filters, offset=paging.offset, limit=paging.page_size)
    return _page(db, items, total, paging, settings)


@router.get("/supervision/escalations", response_model=Page[CaseBrief], tags=TAGS)
def escalated_cases(db: DbSession, settings: AppSettings, actor: Supervisor, paging: Paging) -> Page[CaseBrief]:
    """Open cases in yellow / orange / red, under supervision (督办) or reopened repeatedly."""
    items, total = queries.escalations(
        db=db, actor=actor, settings=settings, offset=paging.offset, limit=paging.page_size
    )
    return _page(db, items, total, paging, settings)


@router.get("/supervision/pending", response_model=Page[CaseBrief], tags=TAGS)
def pending_approvals(db: DbSession, settings: AppSettings, actor: Supervisor, paging: Paging) -> Page[CaseBrief]:
    """Return (退单) and extension (延期) requests waiting for a decision, oldest first."""
    items, total = queries.pending_approvals(db=db, actor=actor, offset=paging.offset, limit=paging.page_size)
    return _page(db, items, total, paging, settings)


@router.get("/channels", tags=TAGS, dependencies=[Depends(public)])
def channels() -> dict[str, str]:
    """The intake channels and their Chinese names."""
    return dict(CHANNEL_LABELS)


@router.get("/cases/{case_id}", response_model=CaseOut, tags=TAGS)
def get_case(db: DbSession, settings: AppSettings, actor: IntakeReader, case_id: Id) -> CaseOut:
    """A case with its departments, pauses and timeline (firms see only the events meant for them)."""
    return _full(db, lifecycle.get_case(db=db, case_id=case_id, actor=actor), actor, settings)


# ---------------------------------------------------------------- attachments (证据材料 / 答复附件)


def attachment_out(row: Attachment) -> AttachmentOut:
    """Describe a case attachment with its download address."""
    return AttachmentOut.of(row, f"/api/v1/desk/cases/{row.owner_id}")


@router.get("/cases/{case_id}/attachments", response_model=list[AttachmentOut], tags=TAGS)
def list_case_attachments(db: DbSession, actor: CaseReader, case_id: Id) -> list[AttachmentOut]:
    """The case's files: the firm's evidence and the reply files (whoever may see the case)."""
    return [attachment_out(r) for r in case_files.list_case_attachments(db, case_id=case_id, actor=actor)]


@router.post(
    "/cases/{case_id}/attachments",
    response_model=AttachmentOut,
    status_code=201,
    tags=TAGS,
    openapi_extra=attachment_openapi(with_kind=False),
)
def add_case_attachment(
    db: DbSession, settings: AppSettings, actor: CaseReader, case_id: Id, upload: UploadedAttachment
) -> AttachmentOut:
    """Attach a file: the firm's evidence to its own case, or the lead department's reply file (PDF, DOCX, XLSX,
    PNG, JPEG; type checked by content)."""
    row = case_files.attach_to_case(
        db, settings=settings, case_id=case_id, actor=actor, name=upload.filename, data=upload.data
    )
    return attachment_out(row)


@router.get(
    "/cases/{case_id}/attachments/{attachment_id}/download",
    tags=TAGS,
    response_class=Response,
    responses=DOWNLOAD_RESPONSES,
)
def download_case_attachment(
    db: DbSession, settings: AppSettings, actor: CaseReader, case_id: Id, attachment_id: Id
) -> Response:
    """Download a case's file (whoever may see the case), as a file, with its name and checked type."""
    row = case_files.get_case_attachment(db, case_id=case_id, attachment_id=attachment_id, actor=actor)
    return download_response(settings=settings, attachment=row)


# ---------------------------------------------------------------- the firm's actions


@router.post("/cases/{case_id}/accept-answer", response_model=CaseOut, tags=TAGS)
def accept_answer(db: DbSession, settings: AppSettings, actor: Firm, case_id: Id, body: AcceptAnswerIn) -> CaseOut:
    """Accept the instant answer: the case closes (a rating may be given at once)."""
    case = outcome.accept_answer(
        db=db, settings=settings, case_id=case_id, actor=actor, rating=body.rating, comment=body.comment
    )
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/ask-for-person", response_model=CaseOut, tags=TAGS)
def ask_for_person(db: DbSession, settings: AppSettings, actor: Firm, case_id: Id, body: NoteIn) -> CaseOut:
    """Not helped by the instant answer: route the case to a department, the answer attached."""
    case = outcome.ask_for_person(db=db, settings=settings, case_id=case_id, actor=actor, note=body.note)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/rate", response_model=CaseOut, tags=TAGS)
def rate(db: DbSession, settings: AppSettings, actor: Firm, case_id: Id, body: RateIn) -> CaseOut:
    """Rate the outcome: 满意 / 基本满意 / 不满意 (不满意 reopens the case under supervision)."""
    case = outcome.rate(
        db=db, settings=settings, case_id=case_id, actor=actor, rating=body.rating, comment=body.comment
    )
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/notes", response_model=CaseOut, tags=TAGS)
def add_note(db: DbSession, settings: AppSettings, actor: CaseReader, case_id: Id, body: NoteOnFirmIn) -> CaseOut:
    """Add a note: the firm's supplement (visible to it) or a staff remark (visible only if asked)."""
    case = handling.add_note(
        db=db, settings=settings, case_id=case_id, actor=actor, note=body.note, visible_to_firm=body.visible_to_firm
    )
    return _full(db, case, actor, settings)


# ---------------------------------------------------------------- the department's actions


@router.post("/cases/{case_id}/accept", response_model=CaseOut, tags=TAGS)
def accept(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: NoteIn) -> CaseOut:
    """The lead department accepts (签收) the case."""
    case = handling.accept(db=db, settings=settings, case_id=case_id, actor=actor, note=body.note)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/contact", response_model=CaseOut, tags=TAGS)
def contact(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: NoteIn) -> CaseOut:
    """Record that the firm was contacted (stops the contact clock)."""
    case = handling.contact(db=db, settings=settings, case_id=case_id, actor=actor, note=body.note)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/reply", response_model=CaseOut, tags=TAGS)
def reply(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: RequiredNoteIn) -> CaseOut:
    """Give a phased reply (阶段性答复)."""
    case = handling.reply(db=db, settings=settings, case_id=case_id, actor=actor, note=body.note)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/resolve", response_model=CaseOut, tags=TAGS)
def resolve(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: ResolveIn) -> CaseOut:
    """Give the final reply (办结); the firm is asked to rate it."""
    case = handling.resolve(db=db, settings=settings, case_id=case_id, actor=actor, resolution=body.resolution)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/pause", response_model=CaseOut, tags=TAGS)
def pause(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: ReasonIn) -> CaseOut:
    """Stop the clocks while waiting on the firm (挂起, bounded by the SLA profile)."""
    case = handling.pause(db=db, settings=settings, case_id=case_id, actor=actor, reason=body.reason)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/resume", response_model=CaseOut, tags=TAGS)
def resume(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: NoteIn) -> CaseOut:
    """Restart the clocks and recompute the due times."""
    case = handling.resume(db=db, settings=settings, case_id=case_id, actor=actor, note=body.note)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/transfer", response_model=CaseOut, tags=TAGS)
def transfer(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: DepartmentTargetIn) -> CaseOut:
    """Hand the case to another department (转办)."""
    case = handling.transfer(
        db=db, settings=settings, case_id=case_id, actor=actor, department_id=body.department_id, note=body.note
    )
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/joint", response_model=CaseOut, tags=TAGS)
def add_joint(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: DepartmentTargetIn) -> CaseOut:
    """Add an assisting department (会办)."""
    case = handling.add_joint(
        db=db, settings=settings, case_id=case_id, actor=actor, department_id=body.department_id, note=body.note
    )
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/return-request", response_model=CaseOut, tags=TAGS)
def request_return(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: ReasonIn) -> CaseOut:
    """Ask to give the case back (退单) with a reason; a dispatcher decides."""
    case = handling.request_return(db=db, settings=settings, case_id=case_id, actor=actor, reason=body.reason)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/extension-request", response_model=CaseOut, tags=TAGS)
def request_extension(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: ExtensionIn) -> CaseOut:
    """Ask for more time (延期申请) before the close deadline; a supervisor decides."""
    case = handling.request_extension(db=db, settings=settings, case_id=case_id, actor=actor, extension_in=body)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/kind", response_model=CaseOut, tags=TAGS)
def correct_kind(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: KindIn) -> CaseOut:
    """Correct the kind of the case; the due times follow the new kind."""
    case = handling.correct_kind(db=db, settings=settings, case_id=case_id, actor=actor, kind=body.kind, note=body.note)
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/revisit", response_model=CaseOut, tags=TAGS)
def revisit(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: RevisitIn) -> CaseOut:
    """Record a revisit (回访) of the firm, with the rating it gave, if any."""
    case = outcome.revisit(
        db=db,
        settings=settings,
        case_id=case_id,
        actor=actor,
        note=body.note,
        rating=body.rating,
        comment=body.comment,
    )
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/close", response_model=CaseOut, tags=TAGS)
def close(db: DbSession, settings: AppSettings, actor: Handler, case_id: Id, body: NoteIn) -> CaseOut:
    """Close (归档) a rated case; supervisors may close a resolved one the firm did not rate, with a reason."""
    case = outcome.close(db=db, settings=settings, case_id=case_id, actor=actor, note=body.note)
    return _full(db, case, actor, settings)


# ---------------------------------------------------------------- dispatchers and supervisors


@router.post("/cases/{case_id}/assign", response_model=CaseOut, tags=TAGS)
def assign(db: DbSession, settings: AppSettings, actor: Supervisor, case_id: Id, body: DepartmentTargetIn) -> CaseOut:
    """Send a case from the central queue to a department (人工分拨)."""
    case = handling.assign(
        db=db, settings=settings, case_id=case_id, actor=actor, department_id=body.department_id, note=body.note
    )
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/return-decision", response_model=CaseOut, tags=TAGS)
def decide_return(db: DbSession, settings: AppSettings, actor: Supervisor, case_id: Id, body: DecisionIn) -> CaseOut:
    """Approve (back to the central queue) or reject a return request."""
    case = handling.decide_return(
        db=db, settings=settings, case_id=case_id, actor=actor, approve=body.approve, note=body.note
    )
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/extension-decision", response_model=CaseOut, tags=TAGS)
def decide_extension(db: DbSession, settings: AppSettings, actor: Supervisor, case_id: Id, body: DecisionIn) -> CaseOut:
    """Approve (before the deadline; due times move on) or reject an extension request."""
    case = handling.decide_extension(
        db=db, settings=settings, case_id=case_id, actor=actor, approve=body.approve, note=body.note
    )
    return _full(db, case, actor, settings)


@router.post("/cases/{case_id}/reopen", response_model=CaseOut, tags=TAGS)
def reopen(db: DbSession, settings: AppSettings, actor: Supervisor, case_id: Id, body: ReasonIn) -> CaseOut:
    """Reopen a resolved, rated or closed case under supervision (督办)."""
    case = outcome.reopen(db=db, settings=settings, case_id=case_id, actor=actor, reason=body.reason)
    return _full(db, case, actor, settings)


# ---------------------------------------------------------------- FAQ


@router.post("/cases/{case_id}/promote", response_model=FaqOut, status_code=201, tags=TAGS)
def promote_to_faq(db: DbSession, settings: AppSettings, actor: Promoter, case_id: Id, body: PromoteIn) -> FaqEntry:
    """Add a resolved case's answer to the FAQ (source "promoted"), so instant answers can use it."""
    return faq.promote_to_faq(db=db, settings=settings, case_id=case_id, actor=actor, promote_in=body)


@router.get("/faq", response_model=Page[FaqOut], tags=TAGS)
def list_faq(
    db: DbSession,
    actor: PublicUser,
    paging: Paging,
    q: Annotated[str | None, Query(max_length=100)] = None,
    department_id: Id | None = None,
    source: Annotated[str | None, Query(pattern="^(curated|promoted)$")] = None,
    include_inactive: Annotated[bool, Query(description="含已停用（仅工作人员）")] = False,
) -> Page[Any]:
    """The FAQ of the knowledge base (anyone; staff may include inactive entries)."""
    items, total = faq.list_faq(
        db=db,
        actor=actor,
        q=q,
        department_id=department_id,
        source=source,
        include_inactive=include_inactive,
        offset=paging.offset,
        limit=paging.page_size,
    )
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/faq/{faq_id}", response_model=FaqOut, tags=TAGS)
def get_faq(db: DbSession, actor: PublicUser, faq_id: Id) -> FaqEntry:
    """One FAQ entry (instant answers link here)."""
    return faq.get_faq(db=db, faq_id=faq_id, actor=actor)


@router.post("/faq", response_model=FaqOut, status_code=201, tags=TAGS)
def create_faq(db: DbSession, actor: FaqEditor, body: FaqIn) -> FaqEntry:
    """Add a curated FAQ entry (desk officers: for their own department)."""
    return faq.create_faq(db=db, actor=actor, faq_in=body)


@router.patch("/faq/{faq_id}", response_model=FaqOut, tags=TAGS)
def update_faq(db: DbSession, actor: FaqEditor, faq_id: Id, body: FaqUpdate) -> FaqEntry:
    """Change an FAQ entry."""
    return faq.update_faq(db=db, actor=actor, faq_id=faq_id, faq_in=body)


@router.delete("/faq/{faq_id}", status_code=204, tags=TAGS)
def delete_faq(db: DbSession, actor: FaqEditor, faq_id: Id) -> Response:
    """Delete an FAQ entry."""
    faq.delete_faq(db=db, actor=actor, faq_id=faq_id)
    return Response(status_code=204)
