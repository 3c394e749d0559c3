"""HTTP routes for importing and exporting policies and enterprises as CSV/XLSX.

Include this router before the catalog and profiles routers: `/policies/export` must be
matched here before `/policies/{policy_id}` sees it (that route would answer 422, not fall through).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Response

from auth.deps import CuratorUser
from catalog import io as catalog_io
from catalog.models import PolicyStatus
from core import tabular
from core.deps import UPLOAD_OPENAPI, DbSession, UploadedFile
from core.tabular import ImportFailed, ImportReport
from profiles import io as profiles_io

router = APIRouter()

_TAG = "导入导出"
_FAILED: dict[int | str, dict[str, Any]] = {
    422: {"description": "有行未通过校验，未写入任何数据；响应体含完整报告（report）"}
}
_MEDIA_TYPES = {"csv": tabular.CSV_MEDIA_TYPE, "xlsx": tabular.XLSX_MEDIA_TYPE}

FormatParam = Annotated[Literal["csv", "xlsx"], Query(alias="format", description="文件格式：csv 或 xlsx")]
PartialParam = Annotated[bool, Query(description="部分导入：写入无误的行，仅报告有误的行")]


def _checked(report: ImportReport) -> ImportReport:
    if report.rejected:
        raise ImportFailed(report)
    return report


def _attachment(data: bytes, fmt: str, stem_zh: str, stem_en: str) -> Response:
    """Return a download whose Chinese file name survives every browser (RFC 6266 / RFC 5987)."""
    day = dt.date.today().isoformat()
    name_zh = f"{stem_zh}-{day}.{fmt}"
    name_en = f"{stem_en}-{day}.{fmt}"
    disposition = f"attachment; filename=\"{name_en}\"; filename*=UTF-8''{quote(name_zh)}"
    return Response(content=data, media_type=_MEDIA_TYPES[fmt], headers={"Content-Disposition": disposition})


@router.post(
    "/policies/import", response_model=ImportReport, tags=[_TAG], responses=_FAILED, openapi_extra=UPLOAD_OPENAPI
)
def import_policies(
    db: DbSession, actor: CuratorUser, file: UploadedFile, partial: PartialParam = False
) -> ImportReport:
    """Import policies from CSV/XLSX: new ones are created, known ones (by 文号, or 发文部门+标题) updated."""
    report = catalog_io.import_policies(db=db, data=file.data, filename=file.filename, actor=actor, partial=partial)
    return _checked(report)


@router.get("/policies/export", tags=[_TAG], response_class=Response)
def export_policies(
    db: DbSession,
    actor: CuratorUser,
    fmt: FormatParam = "csv",
    status: Annotated[PolicyStatus | None, Query(description="只导出此状态的政策")] = None,
) -> Response:
    """Download policies in the import layout."""
    data = catalog_io.export_policies(db=db, fmt=fmt, status=status)
    return _attachment(data, fmt, "政策", "policies")


@router.post(
    "/enterprises/import", response_model=ImportReport, tags=[_TAG], responses=_FAILED, openapi_extra=UPLOAD_OPENAPI
)
def import_enterprises(
    db: DbSession, actor: CuratorUser, file: UploadedFile, partial: PartialParam = False
) -> ImportReport:
    """Import enterprises from CSV/XLSX: new credit codes are created, known ones updated."""
    report = profiles_io.import_enterprises(db=db, data=file.data, filename=file.filename, actor=actor, partial=partial)
    return _checked(report)


@router.get("/enterprises/export", tags=[_TAG], response_class=Response)
def export_enterprises(db: DbSession, actor: CuratorUser, fmt: FormatParam = "csv") -> Response:
    """Download enterprises in the import layout."""
    data = profiles_io.export_enterprises(db=db, fmt=fmt)
    return _attachment(data, fmt, "企业", "enterprises")
