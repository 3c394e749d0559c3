"""Response shapes shared by every domain."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

import annotated_types
from pydantic import BaseModel, Field

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
