"""Response shapes shared by every domain."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list with the total count, so clients can paginate."""

    items: list[T]
    total: int = Field(description="符合条件的总条数")
    page: int
    page_size: int
