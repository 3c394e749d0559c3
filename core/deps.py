"""Request dependencies every domain uses: the app's settings, the database session, paging.

Routers of every package take these from here (never from api/), so dependencies point one way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import attachments
from core.config import Settings
from core.db import Database
from core.errors import FieldError, PayloadTooLarge, ValidationFailed

F = TypeVar("F", bound=Callable[..., Any])


# Dependencies that do no I/O are async: a plain def would cost every request a hop to a worker thread.
async def get_settings_dep(request: Request) -> Settings:
    """Return the settings the app was built with."""
    return request.app.state.settings


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def reads_only(endpoint: F) -> F:
    """Mark a POST endpoint that reads and computes but writes nothing (the calculator, previews):
    it gets a reader session, so it never takes SQLite's write lock however long it computes."""
    vars(endpoint)["reads_only"] = True
    return endpoint


def writes_in_stages(endpoint: F) -> F:
    """Mark an endpoint that writes in short transactions of its own (`core.db.write_stage`).

    Its request session begins as a reader too, so neither the dependencies (signing in) nor slow
    work between its writes hold SQLite's write lock.
    """
    vars(endpoint)["writes_in_stages"] = True
    return endpoint


def reads(request: Request) -> bool:
    """Tell whether the request's session is a reader (a safe method, or a route marked as reading only)."""
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    marked = getattr(endpoint, "reads_only", False) or getattr(endpoint, "writes_in_stages", False)
    return request.method in SAFE_METHODS or bool(marked)


def _finish(session: Session, failed: bool) -> None:
    try:
        if failed:
            session.rollback()
        else:
            session.commit()
    finally:
        session.close()


async def _end(session: Session, *, failed: bool) -> None:
    """Commit (or roll back) and close a request's session: on a worker thread when it holds a transaction."""
    if not (session.in_transaction() or session.new or session.dirty or session.deleted):
        session.close()  # never connected: nothing to end, no I/O
        return
    with anyio.CancelScope(shield=True):  # a cancelled request still ends its transaction
        await run_in_threadpool(_finish, session, failed)


async def get_db(request: Request) -> AsyncIterator[Session]:
    """Yield a session for one request: commit on success, roll back on any error.

    Async: making the session does no I/O (it connects at its first statement), so the request
    does not wait for a worker thread to get one; ending it waits for one only when it began a
    transaction (a commit may write).
    """
    # Requests that change things take SQLite's write lock up front (waiting for it rather than
    # failing when a background job commits between their read and their write); reads never do, and
    # staged writers take it themselves, stage by stage.
    db = request.app.state.db
    async with _connection_slots(request.app.state, db):
        session = (db.sessionmaker if reads(request) else db.writer)()
        try:
            yield session
        except BaseException:
            await _end(session, failed=True)
            raise
        await _end(session, failed=False)


T = TypeVar("T")


async def on_one_thread(session: Session, work: Callable[[], T]) -> T:
    """Run a route's database work and the end of its request's transaction in one hop to a worker thread.

    For hot routes written `async def`: `work` does everything that touches the database (the
    caller's check too: `auth.deps.Caller.verify`) and builds the response; the session's
    transaction is then committed on the same thread, as `get_db` would commit it, so ending the
    request needs no further hop. A failure leaves the transaction to `get_db`, which rolls it back.
    """

    def run() -> T:
        result = work()
        session.commit()
        return result

    return await run_in_threadpool(run)


def _connection_slots(state: Any, db: Database) -> Any:
    """The app's limit on requests holding or waiting for a pooled connection at once.

    Fewer than the pool's connections (two are left for jobs and sessions of their own), so a
    request's checkout never waits: otherwise, with every worker thread taken by requests waiting
    for a connection, the requests holding one wait for a thread to end their session, and all
    stall until the pool's timeout (seen as 30 s stalls and 500s at 128 clients). Requests beyond
    the limit wait on the event loop, holding neither a thread nor a connection. Pools without a
    fixed size (SQLite in memory, NullPool) are not limited.
    """
    slots = getattr(state, "connection_slots", None)
    if slots is None:
        pool = db.engine.pool
        overflow = getattr(pool, "_max_overflow", -1)  # QueuePool's limit beyond its size; -1: none
        if not isinstance(pool, QueuePool) or overflow < 0:
            slots = nullcontext()
        else:
            slots = anyio.Semaphore(max(1, pool.size() + overflow - 2))
        state.connection_slots = slots
    return slots


# scope="function": commit before the response is sent, so a client that gets 200 sees its write
# and its next request cannot race the commit (the default scope would commit after sending).
DbSession = Annotated[Session, Depends(get_db, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


async def get_database(request: Request) -> Database:
    """Return the app's database (for work done after the response, in sessions of its own)."""
    return request.app.state.db


AppDatabase = Annotated[Database, Depends(get_database)]


async def release_reads(db: DbSession) -> None:
    """End what a staged route's session read while signing in, returning its connection to the pool.

    Declared after the principal of a route marked `writes_in_stages`: it runs on the event loop, so
    the request holds no connection while it waits for a worker thread to run its body (with every
    thread busy, requests holding connections while waiting for a thread starve the threads waiting
    for a connection). Ending a read-only transaction does no I/O worth a thread.
    """
    if db.in_transaction():
        db.commit()


ReleasedReads = Annotated[None, Depends(release_reads)]


class PageParams:
    """Page number and size from the query string, with a ceiling from settings."""

    def __init__(self, settings: Settings, page: int = 1, page_size: int = 20) -> None:
        self.page = page
        self.page_size = min(page_size, settings.page_size_max)

    @property
    def offset(self) -> int:
        """Return the row offset of this page."""
        return (self.page - 1) * self.page_size


async def page_params(
    settings: AppSettings,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="页码，从1开始")] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000, description="每页条数")] = 20,
) -> PageParams:
    """Return the page asked for (async: a class dependency would cost a worker-thread hop)."""
    return PageParams(settings, page=page, page_size=page_size)


Paging = Annotated[PageParams, Depends(page_params)]


# ---------------------------------------------------------------- file uploads


@dataclass(frozen=True)
class Upload:
    """An uploaded file, read in full (its size already checked)."""

    filename: str
    data: bytes


def upload_openapi(description: str, **fields: dict[str, Any]) -> dict[str, Any]:
    """Return the multipart request body of a route whose file is read by a dependency (unseen by FastAPI):
    a required `file` and, required too, the other form `fields` given (name → JSON schema)."""
    properties: dict[str, Any] = {"file": {"type": "string", "format": "binary", "description": description}}
    properties.update(fields)
    schema = {"type": "object", "required": list(properties), "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


# The request body of a route taking `Upload` (a table to import).
UPLOAD_OPENAPI = upload_openapi("CSV 或 XLSX 文件")


async def _read_file_form(request: Request, *, limit: int, too_big: Exception, missing: Exception) -> tuple[Any, Any]:
    """Read a multipart body holding one `file` (at most `limit` bytes) and a few small fields."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise missing
    try:
        form = await request.form(max_files=1, max_fields=20, max_part_size=64 * 1024)
    except StarletteHTTPException as exc:  # past the body limit (api.guards.BodyLimit), malformed, too many parts
        if exc.status_code == 413:
            raise too_big from exc
        raise ValidationFailed(
            "上传内容格式错误", errors=[FieldError("file", str(exc.detail), "bad_multipart")]
        ) from exc
    file = form.get("file")
    if file is None or isinstance(file, str):
        raise missing
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise too_big
    return form, Upload(filename=file.filename or "", data=data)


async def read_upload(request: Request, settings: AppSettings) -> Upload:
    """Read the multipart body's `file`, refusing it past HUIQI_UPLOAD_MAX_MB.

    Declare it after the route's principal: FastAPI then authenticates the caller before this reads
    a byte of the body (a route declaring UploadFile parses the whole body first, for anyone).
    api.guards.BodyLimit stops a body past the limit while it streams in.
    """
    too_big = PayloadTooLarge(
        f"文件超过 {settings.upload_max_mb} MB，请拆分后分批导入",
        errors=[FieldError("file", f"文件超过 {settings.upload_max_mb} MB", "file_too_large")],
    )
    missing = ValidationFailed(
        "请上传要导入的文件（CSV 或 XLSX）",
        errors=[FieldError("file", "请以 multipart/form-data 上传 file 字段", "missing")],
    )
    _, upload = await _read_file_form(
        request, limit=settings.upload_max_mb * 1024 * 1024, too_big=too_big, missing=missing
    )
    return upload


UploadedFile = Annotated[Upload, Depends(read_upload)]


@dataclass(frozen=True)
class AttachmentUpload(Upload):
    """An uploaded attachment, read in full (at most HUIQI_ATTACHMENT_MAX_MB), and its `kind` field."""

    kind: str | None = None


def attachment_openapi(*, with_kind: bool) -> dict[str, Any]:
    """Return the request body of a route taking `AttachmentUpload` (read by the dependency, unseen by FastAPI)."""
    kind = {
        "type": "string",
        "enum": [k.value for k in attachments.POLICY_KINDS],
        "description": "guide 申报指南 / form 申请表 / original 政策原文",
    }
    return upload_openapi("PDF、DOCX、XLSX、PNG 或 JPEG 文件", **({"kind": kind} if with_kind else {}))


async def read_attachment(request: Request, settings: AppSettings) -> AttachmentUpload:
    """Read the multipart body's `file` and `kind`, refusing a file past HUIQI_ATTACHMENT_MAX_MB (413 file.too_large).

    Declare it after the route's principal, like `read_upload`; the type is checked by content later
    (core.attachments.check_file).
    """
    missing = ValidationFailed(
        "请选择要上传的文件",
        errors=[FieldError("file", "请以 multipart/form-data 上传 file 字段", "missing")],
    )
    form, upload = await _read_file_form(
        request,
        limit=attachments.max_bytes(settings),
        too_big=attachments.too_large(settings),
        missing=missing,
    )
    kind = form.get("kind")
    return AttachmentUpload(
        filename=upload.filename, data=upload.data, kind=kind.strip() if isinstance(kind, str) else None
    )


UploadedAttachment = Annotated[AttachmentUpload, Depends(read_attachment)]
