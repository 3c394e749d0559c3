"""A policy's eligible and likely firms (免申即享 名单, staff lists): read from what the worker stored.

Lists are written by `runs.list_policy` — when a policy is published or edited, by the catch-up for
every policy at a city's scale (`HUIQI_POLICY_LISTS_MAX_FIRMS`), and when staff ask for one.
Reading never computes: a list not made yet, or being written (a listing run marks its policies
not listed until its last unit is written, `runs.list_policies`; a full run marks every kept list so
and lists them again, `runs.rematch_all`), is refused with `matcher.list_pending` (`ListPending`).
Every reader of the lists (here and `matcher.batch`) reads complete lists only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.models import Policy
from core.errors import Conflict, NotFound
from matcher.models import MatchResult, PolicyMatchState
from profiles.models import Enterprise


class ListPending(Conflict):
    """A policy's list is not complete: not made yet, or being written (or stale, waiting to be written again)."""

    code = "matcher.list_pending"
    message = "该政策的符合条件企业名单正在生成，请稍后刷新"


@dataclass(frozen=True)
class ListState:
    """Whether a policy's list is kept, and as of when."""

    listed: bool
    matched_at: dt.datetime | None
    policy_version: int | None
    current: bool  # made from the policy's current version


def state(db: Session, policy: Policy) -> ListState:
    """Return the state of a policy's list."""
    row = db.get(PolicyMatchState, policy.id)
    if row is None:
        return ListState(False, None, None, False)
    return ListState(row.listed, row.matched_at, row.policy_version, row.policy_version == policy.version)


def catalog_changes_since(db: Session, policy: Policy, at: dt.datetime | None) -> int:
    """Return how many other policies were published, edited, withdrawn or expired after `at` (a list's making).

    A list row's tag score weighs the shared tags by their IDF over the published catalog, so each such
    change moves other lists' scores a little (their order, never who is eligible or likely); the nightly
    full run makes every kept list again. Staff see the count beside the list.
    """
    if at is None:
        return 0
    return (
        db.scalar(
            select(func.count())
            .select_from(Policy)
            .where(Policy.id != policy.id, Policy.published_at.is_not(None), Policy.updated_at > at)
        )
        or 0
    )


def eligible_enterprises(
    *, db: Session, policy_id: int, statuses: Sequence[str], offset: int, limit: int
) -> tuple[Policy, list[tuple[MatchResult, Enterprise]], int]:
    """Return a page of a policy's eligible (and likely) firms, best first."""
    policy = db.get(Policy, policy_id)
    if policy is None:
        raise NotFound("政策不存在", code="matcher.policy_not_found")
    if not state(db, policy).listed:
        raise ListPending
    q = (
        select(MatchResult, Enterprise)
        .join(Enterprise, Enterprise.id == MatchResult.enterprise_id)
        .where(MatchResult.policy_id == policy_id, MatchResult.status.in_(list(statuses)))
    )
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.execute(
        q.order_by(MatchResult.status.asc(), MatchResult.score.desc(), Enterprise.id).offset(offset).limit(limit)
    )
    return policy, [(m, e) for m, e in rows], total
