"""The matcher's face to other packages for work over many firms at once.

Push (fan-out, change notices, reminders, targeting), curators' previews and re-matching read
firms' facts, their tags and the stored match results through these functions only; no other
package reads the matcher's tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from catalog.fields import FIELDS
from catalog.models import Policy, PolicyStatus, Tag
from core.db import driver_cursor
from matcher import eligibility
from matcher.eligibility import LIKELY, FactsFrame
from matcher.lists import ListPending
from matcher.models import EnterpriseTag, MatchResult, PolicyMatchState
from profiles.models import Enterprise, EnterpriseQualification

# ---------------------------------------------------------------- judging every firm against a rule tree


def _rule_references(rules: Mapping[str, Any] | None) -> tuple[set[str], dict[str, set[str]]]:
    """Return the fields a rule tree tests and, for set fields, the members it names."""
    fields: set[str] = set()
    members: dict[str, set[str]] = {}

    def walk(node: Any) -> None:
        if not isinstance(node, Mapping):
            return
        if "field" in node:
            name = node["field"]
            fields.add(name)
            spec = FIELDS.get(name)
            if spec is not None and spec.type == "set":
                value = node.get("value")
                members.setdefault(name, set()).update(
                    value if isinstance(value, list) else [] if value is None else [value]
                )
        for key in ("all", "any"):
            for child in node.get(key) or []:
                walk(child)
        walk(node.get("not"))

    walk(rules)
    return fields, members


def judge_all(*, db: Session, rules: Mapping[str, Any] | None, today: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """Judge every firm against one rule tree at once; return (firm ids ascending, int8 status codes).

    Loads only the facts the rules test — those profile columns, and of qualifications (valid
    today) and stored tags only the members the rules name — and runs `eligibility.evaluate_many`,
    the engine batch matching uses, on the facts `profile_facts` gives each firm. No embedder.
    """
    fields, members = _rule_references(rules)
    columns = sorted(
        {
            "established_on" if name == "years_established" else name  # years derive from the date
            for name in fields
            if name in FIELDS and FIELDS[name].type != "set"
        }
    )
    names = ["id", *columns]
    stmt = select(*(getattr(Enterprise, name) for name in names)).order_by(Enterprise.id)
    # The driver's own values (ISO text or dates, floats or Decimals), not processed one by one in
    # Python: pandas parses each column at once. A million firms' rows arrive in a few seconds.
    connection = db.connection()
    cursor = driver_cursor(connection)
    try:
        cursor.execute(str(stmt.compile(dialect=connection.dialect)))
        parts = [
            pd.DataFrame.from_records(batch, columns=names) for batch in iter(lambda: cursor.fetchmany(100_000), [])
        ]
    finally:
        cursor.close()
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=names)
    del parts
    ids = table["id"].to_numpy(np.int64)
    frame = FactsFrame.from_dataframe(table, today=today)
    del table
    # A firm's qualifications and tags are always known: an empty set when it holds none.
    for name, wanted in members.items():
        if name == "qualifications":
            held = (
                select(EnterpriseQualification.enterprise_id, Tag.name)
                .join(Tag, Tag.id == EnterpriseQualification.tag_id)
                .where(
                    Tag.name.in_(sorted(wanted)),
                    or_(
                        EnterpriseQualification.valid_until_on.is_(None),
                        EnterpriseQualification.valid_until_on >= today,
                    ),
                )
            )
        else:
            held = (
                select(EnterpriseTag.enterprise_id, Tag.name)
                .join(Tag, Tag.id == EnterpriseTag.tag_id)
                .where(Tag.name.in_(sorted(wanted)))
            )
        holders: dict[str, list[int]] = {member: [] for member in wanted}
        for eid, member in db.execute(held):
            holders[member].append(eid)
        frame.sets[name] = {member: np.isin(ids, firm_ids) for member, firm_ids in holders.items()}
        frame.set_known[name] = np.ones(len(ids), dtype=bool)
    return ids, eligibility.evaluate_many(rules, frame, today=today)


# ---------------------------------------------------------------- stored results and tags, for other packages


def _complete_lists() -> Select[tuple[int]]:
    """The policies whose kept list is complete (`PolicyMatchState.listed`): readers read only these.

    A list being written (a listing run's units), or marked stale by a full run until it is written
    again, is not complete: `listed` is false from the run's start until its last unit is committed.
    """
    return select(PolicyMatchState.policy_id).where(PolicyMatchState.listed.is_(True))


def matched_firms(*, db: Session, policy_id: int, statuses: Sequence[str]) -> dict[int, str]:
    """Return firm → stored verdict for the firms matched to a policy with one of `statuses`.

    Raises `matcher.lists.ListPending` when the policy's list is not complete (not made, being written,
    or stale): the flag and the rows are read in one statement, so a list is never read half written.
    """
    rows = db.execute(
        select(PolicyMatchState.listed, MatchResult.enterprise_id, MatchResult.status)
        .select_from(PolicyMatchState)
        .outerjoin(
            MatchResult,
            and_(MatchResult.policy_id == PolicyMatchState.policy_id, MatchResult.status.in_(list(statuses))),
        )
        .where(PolicyMatchState.policy_id == policy_id)
    ).all()
    if not rows or not rows[0][0]:
        raise ListPending
    return {int(eid): status for _, eid, status in rows if eid is not None}


def matched_firms_query(*, policy_id: int, statuses: Sequence[str]) -> Select[tuple[int]]:
    """Return a query of the firms matched to a policy with one of `statuses` (to filter firms in SQL).

    It selects nobody while the policy's list is not complete: callers tell a pending list from an empty
    one with `policy_listed` (push targeting, applications figures).
    """
    return select(MatchResult.enterprise_id).where(
        MatchResult.policy_id == policy_id,
        MatchResult.status.in_(list(statuses)),
        MatchResult.policy_id.in_(_complete_lists()),
    )


def match_counts(*, db: Session, policy_ids: Sequence[int], statuses: Sequence[str]) -> dict[int, int | None]:
    """Return policy → number of firms matched to it with one of `statuses` (figures over many policies).

    None for a policy whose list is not complete (not made, being written, or stale): not a count of 0.
    """
    ids = list(dict.fromkeys(int(p) for p in policy_ids))
    if not ids:
        return {}
    out: dict[int, int | None] = dict.fromkeys(ids)
    for start in range(0, len(ids), 900):
        part = ids[start : start + 900]
        rows = db.execute(
            select(PolicyMatchState.policy_id, func.count(MatchResult.enterprise_id))
            .select_from(PolicyMatchState)
            .outerjoin(
                MatchResult,
                and_(MatchResult.policy_id == PolicyMatchState.policy_id, MatchResult.status.in_(list(statuses))),
            )
            .where(PolicyMatchState.policy_id.in_(part), PolicyMatchState.listed.is_(True))
            .group_by(PolicyMatchState.policy_id)
        )
        out.update({int(pid): int(n) for pid, n in rows})
    return out


def tagged_firms_query(*, tag_id: int) -> Select[tuple[int]]:
    """Return a query of the firms carrying a tag (to filter firms in SQL)."""
    return select(EnterpriseTag.enterprise_id).where(EnterpriseTag.tag_id == tag_id)


def firm_tags(*, db: Session, enterprise_id: int) -> set[str]:
    """Return the names of the tags a firm carries."""
    return set(
        db.scalars(
            select(Tag.name)
            .join(EnterpriseTag, EnterpriseTag.tag_id == Tag.id)
            .where(EnterpriseTag.enterprise_id == enterprise_id)
        )
    )


def _open_likely(today: dt.date) -> Select[tuple[int, int]]:
    return (
        select(MatchResult.enterprise_id, MatchResult.policy_id)
        .join(Policy, Policy.id == MatchResult.policy_id)
        .where(
            MatchResult.status == LIKELY,
            MatchResult.policy_id.in_(_complete_lists()),
            Policy.status == PolicyStatus.published,
            or_(Policy.apply_end_on.is_(None), Policy.apply_end_on >= today),
        )
    )


def firms_with_open_likely(*, db: Session, today: dt.date) -> set[int]:
    """Return the firms with at least one open policy stored as "likely" (a profile gap decides it).

    Read from complete lists only: a policy whose list is being written counts on a later run."""
    return set(db.scalars(_open_likely(today).with_only_columns(MatchResult.enterprise_id).distinct()))


def open_likely_policy_ids(*, db: Session, enterprise_id: int, today: dt.date) -> list[int]:
    """Return the open policies stored as "likely" for a firm (complete lists only)."""
    q = _open_likely(today).where(MatchResult.enterprise_id == enterprise_id)
    return sorted(db.scalars(q.with_only_columns(MatchResult.policy_id)))


def policy_listed(*, db: Session, policy_id: int) -> bool:
    """Tell whether a policy's full eligible / likely list is kept and complete (made by the worker; see matcher.lists)."""
    return bool(db.scalar(select(PolicyMatchState.listed).where(PolicyMatchState.policy_id == policy_id)))
