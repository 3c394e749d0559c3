"""Response shapes shared by every domain."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Generic, TypeVar

import annotated_types
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from core.attachments import Attachment

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list with the total count, so clients can paginate."""

    items: list[T]
    total: int = Field(description="符合条件的总条数")
    page: int
    page_size: int


# The largest integer any id, page or count parameter takes: 2**53 - 1 (exact as a JSON/JS number and
# far inside SQLite's and PostgreSQL's 64-bit integers, so no input reaches the database as an overflow).
MAX_INT = 2**53 - 1

Id = Annotated[int, annotated_types.Ge(1), annotated_types.Le(MAX_INT)]
"""A database id in a path, query or body: 1 … 2**53 - 1 (anything else is a 422 naming the field)."""


class AttachmentOut(BaseModel):
    """A file attached to a policy or a case (its bytes at `download_url`)."""

    id: int
    kind: str = Field(
        description="guide 申报指南 / form 申请表 / original 政策原文 / evidence 证据材料 / reply 答复附件"
    )
    kind_label: str
    name: str = Field(description="原文件名（已去除路径和控制字符）")
    content_type: str = Field(description="按文件内容识别的类型")
    size: int = Field(description="字节数")
    sha256: str
    created_at: dt.datetime
    download_url: str

    @classmethod
    def of(cls, row: Attachment, owner_path: str) -> AttachmentOut:
        """Describe an attachment row; its bytes are at `{owner_path}/attachments/{id}/download`."""
        return cls(
            id=row.id,
            kind=row.kind,
            kind_label=row.kind_label,
            name=row.display_name,
            content_type=row.content_type,
            size=row.size,
            sha256=row.sha256,
            created_at=row.created_at,
            download_url=f"{owner_path}/attachments/{row.id}/download",
        )
