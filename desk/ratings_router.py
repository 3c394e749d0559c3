"""HTTP routes of policy ratings (政企互动): a firm rates a policy; anyone sees the average; staff read comments."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from auth.deps import Allow, EnterpriseUser, public
from auth.service import Principal
from core.deps import DbSession, Paging
from core.errors import NotFound
from core.schemas import Id, Page
from desk import ratings
from desk.schemas import PolicyRatingIn, PolicyRatingOut, PolicyRatingsOut, RatingOut, RatingSummaryOut

router = APIRouter()
TAGS: list[str | Enum] = ["政策评价"]
CommentReader = Annotated[Principal, Depends(Allow(*ratings.COMMENT_READERS))]


@router.get(
    "/policies/{policy_id}/rating-summary",
    response_model=RatingSummaryOut,
    tags=TAGS,
    dependencies=[Depends(public)],
)
def get_rating_summary(db: DbSession, policy_id: Id) -> RatingSummaryOut:
    """A published policy's average rating, count and star distribution (no comments)."""
    return RatingSummaryOut.model_validate(ratings.summary(db=db, policy_id=policy_id).to_dict())


@router.get("/policies/{policy_id}/my-rating", response_model=PolicyRatingOut, tags=TAGS)
def get_my_rating(db: DbSession, actor: EnterpriseUser, policy_id: Id) -> PolicyRatingOut:
    """The signed-in firm's own rating of a policy (404 when it has not rated it)."""
    row = ratings.own_rating(db=db, enterprise_id=actor.own_enterprise_id, policy_id=policy_id)
    if row is None:
        raise NotFound("尚未评价该政策", code="desk.rating_not_found")
    return PolicyRatingOut.model_validate(row)


@router.put("/policies/{policy_id}/my-rating", response_model=PolicyRatingOut, tags=TAGS)
def put_my_rating(db: DbSession, actor: EnterpriseUser, policy_id: Id, rating_in: PolicyRatingIn) -> PolicyRatingOut:
    """Rate a policy the firm viewed or applied to (1–5 and a comment); rating again edits the rating."""
    row = ratings.rate_policy(
        db=db,
        enterprise_id=actor.own_enterprise_id,
        policy_id=policy_id,
        stars=rating_in.stars,
        comment=rating_in.comment,
        user_id=actor.user_id,
    )
    return PolicyRatingOut.model_validate(row)


@router.get("/policies/{policy_id}/ratings", response_model=PolicyRatingsOut, tags=TAGS)
def list_policy_ratings(
    db: DbSession,
    actor: CommentReader,
    paging: Paging,
    policy_id: Id,
    with_comment: Annotated[bool, Query(description="只列出有评价内容的")] = False,
) -> PolicyRatingsOut:
    """A policy's ratings with firms and comments, newest first, and its summary (staff; desk: own department)."""
    items, total = ratings.list_ratings(
        db=db,
        actor=actor,
        policy_id=policy_id,
        offset=paging.offset,
        limit=paging.page_size,
        with_comment=with_comment,
    )
    summary = ratings.summaries(db=db, policy_ids=[policy_id])[policy_id]
    return PolicyRatingsOut(
        summary=RatingSummaryOut.model_validate(summary.to_dict()),
        ratings=Page(
            items=[RatingOut.model_validate(i) for i in items],
            total=total,
            page=paging.page,
            page_size=paging.page_size,
        ),
    )
