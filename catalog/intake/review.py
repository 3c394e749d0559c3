"""The curator's review of an intake draft: every proposal (field, condition, tag) accepted, edited or rejected.

Intake writes its proposals into the draft at once (fields, the conditions that validate, known tags),
so the draft can be previewed before anyone looks at it. Each decision then keeps, changes or takes
back what its proposal put into the draft, through `catalog.service.update_policy` (the same checks
as a hand edit), and is recorded in the intake record (`PolicyIntake.proposals["decisions"]`, keyed
by proposal: ``field-<name>``, ``condition-<n>``, ``tag-<n>``).

A proposal nobody decided blocks publishing (`check_decided`, called by `publish_policy`): nothing
read from a document reaches firms without a curator. A plain-language condition (one the rules
cannot encode) is confirmed or rejected by hand; confirmed, it stays in the record for the curator
and the policy's text, not in the computable rules.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.service import Principal
from catalog import rules as rules_mod
from catalog import service as catalog_service
from catalog.fields import FIELDS
from catalog.models import Policy, PolicyIntake
from catalog.schemas import PolicyUpdate
from core.db import utcnow
from core.errors import FieldError, NotFound, ValidationFailed, pydantic_field_errors

ACCEPT, EDIT, REJECT = "accept", "edit", "reject"
DECISIONS = (ACCEPT, EDIT, REJECT)
STATUS_OF = {ACCEPT: "accepted", EDIT: "edited", REJECT: "rejected"}
STATUS_LABELS = {"pending": "待处理", "accepted": "已采纳", "edited": "已修改", "rejected": "已驳回"}

# Intake field → the policy column its value went into (None: shown for checking, not stored on the policy).
FIELD_COLUMNS: dict[str, str | None] = {
    "title": "title",
    "doc_number": "doc_number",
    "apply_start_on": "apply_start_on",
    "apply_end_on": "apply_end_on",
    "valid_from_on": "valid_from_on",
    "valid_to_on": "valid_to_on",
    "max_amount": "max_amount",
    "amount_text": "amount_text",
    "apply_url": "apply_url",
    "contact_name": "interpreter_name",
    "contact_phone": "interpreter_contact",
    "level": "level",
    "region_code": "region_codes",
    "issuer": None,
    "published_on": None,
    "contact_address": None,
}
REQUIRED_COLUMNS = {"title", "level"}  # a rejection cannot empty these; the curator edits them instead
_KEY = re.compile(r"^(field|condition|tag)-([A-Za-z0-9_]{1,40})$")


@dataclass
class Item:
    """One proposal with its decision, as the review page and the API show it."""

    key: str
    kind: str  # field, condition, tag
    name: str  # field name, condition field, tag name
    value: Any  # proposed value (field), rule node (coded condition), text (plain condition), tag name
    source: str
    confidence: float
    coded: bool
    status: str = "pending"
    decided: dict[str, Any] | None = None
    alternative: tuple[int, int] | None = None  # (group, branch): one branch of an `any` of alternatives

    @property
    def current(self) -> Any:
        """What the draft holds for this proposal now: the edited value if edited, else the proposal."""
        if self.decided and self.status == "edited":
            return self.decided.get("value")
        return self.value

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "kind": self.kind,
            "name": self.name,
            "proposed": self.value,
            "current": self.current,
            "coded": self.coded,
            "source": self.source,
            "confidence": self.confidence,
            "status": self.status,
        }
        if self.alternative:
            out["alternative"] = {"group": self.alternative[0], "branch": self.alternative[1]}
        if self.decided:
            out["decided_at"] = self.decided.get("at")
            out["decided_by"] = self.decided.get("by")
        return out


def items(record: PolicyIntake) -> list[Item]:
    """Every proposal of an intake record, fields first, with the decision taken on it (if any)."""
    proposals = record.proposals or {}
    decisions = proposals.get("decisions") or {}
    out: list[Item] = []
    for name, prop in (proposals.get("fields") or {}).items():
        out.append(
            Item(
                f"field-{name}",
                "field",
                name,
                prop.get("value"),
                prop.get("source", ""),
                prop.get("confidence", 0),
                True,
            )
        )
    for n, cond in enumerate(proposals.get("conditions") or []):
        rule = cond.get("rule")
        name = rule.get("field", "") if isinstance(rule, dict) else ""
        value = rule if rule is not None else cond.get("text", "")
        out.append(
            Item(
                f"condition-{n}",
                "condition",
                name,
                value,
                cond.get("source", ""),
                cond.get("confidence", 0),
                rule is not None,
                alternative=_alternative(cond.get("alternative")),
            )
        )
    for n, tag in enumerate(proposals.get("tags") or []):
        out.append(Item(f"tag-{n}", "tag", tag, tag, "", 0, True))
    for item in out:
        decided = decisions.get(item.key)
        if decided:
            item.status, item.decided = decided.get("status", "pending"), decided
    return out


def _alternative(raw: Any) -> tuple[int, int] | None:
    if isinstance(raw, dict) and isinstance(raw.get("group"), int):
        return raw["group"], int(raw.get("branch") or 0)
    return None


def undecided(record: PolicyIntake | None) -> list[Item]:
    return [i for i in items(record) if i.status == "pending"] if record is not None else []


def check_decided(db: Session, policy_id: int) -> None:
    """Refuse to publish a draft made from a document while any of its proposals is undecided."""
    record = db.scalar(select(PolicyIntake).where(PolicyIntake.policy_id == policy_id))
    left = undecided(record)
    if left:
        raise ValidationFailed(
            f"还有 {len(left)} 条录入建议未处理，请逐条采纳、修改或驳回后再发布",
            code="catalog.intake_undecided",
            errors=[
                FieldError(
                    "intake", f"还有 {len(left)} 条录入建议未处理（采纳、修改或驳回）", "catalog.intake_undecided"
                )
            ],
        )


def record_for(db: Session, policy_id: int, *, lock: bool = False) -> PolicyIntake:
    """The intake record of a policy; NotFound for a policy not made from a document.

    `lock` takes the row for the rest of the transaction (PostgreSQL; SQLite's write lock is whole),
    so two curators deciding at once cannot overwrite each other's decisions.
    """
    catalog_service.get_policy(db=db, policy_id=policy_id)  # NotFound for an unknown policy
    query = select(PolicyIntake).where(PolicyIntake.policy_id == policy_id)
    record = db.scalar(query.with_for_update() if lock else query)
    if record is None:
        raise NotFound("该政策不是由政策文件录入的，没有录入建议", code="catalog.intake_not_found")
    return record


def _bad(field: str, reason: str, code: str = "catalog.intake_bad_value") -> ValidationFailed:
    return ValidationFailed(reason, code=code, errors=[FieldError(field, reason, code)])


# ---------------------------------------------------------------- values typed by a curator


def condition_value(field: str, op: str, value: Any) -> Any:
    """A condition's value from what the curator typed (text from a form) or sent (JSON), by the op's kind.

    Numbers accept 万元 / % suffixes; lists are split on commas, 、 or spaces; ranges take "a-b" / "a~b".
    Anything the rules cannot take is refused by `rules.validate_rules` afterwards, with its reason.
    """
    spec = rules_mod.OPS.get(op)
    if spec is None or not isinstance(value, str):
        return value
    text = value.strip()
    kind = spec.value_def
    profile = FIELDS.get(field)
    if kind in ("stringList", "industryPrefixes", "regionCodes", "tagList"):
        return [t for t in re.split(r"[\s,，、;；]+", text) if t]
    if kind in ("numberRange", "dateRange"):
        parts = [p for p in re.split(r"\s*(?:~|～|至|到|—|,|，|\s-\s|(?<=\d)-(?=\d))\s*", text) if p]
        parsed = [_number(p) if kind == "numberRange" else p for p in parts]
        return parsed if len(parsed) == 2 else text
    if kind == "years" or (profile is not None and profile.type == "number"):
        return _number(text)
    return text


def _number(text: str) -> Any:
    cleaned = re.sub(r"(万元|亿元|元|%|％|人|年|\s)", "", text)
    try:
        number = float(cleaned)
    except ValueError:
        return text  # refused by the rules check with the field's reason
    if "亿元" in text:
        number *= 10000
    return int(number) if number.is_integer() else number


def _field_value(column: str, value: Any) -> Any:
    """A field's edited value checked by the policy schema; refused with the column's Chinese reason."""
    if column == "region_codes":
        value = [v for v in re.split(r"[\s,，、;；]+", value) if v] if isinstance(value, str) else value
    if isinstance(value, str):
        value = value.strip() or None
    try:
        return PolicyUpdate(**{column: value}).model_dump(exclude_unset=True)[column]
    except ValidationError as exc:
        reasons = "；".join(e.reason for e in pydantic_field_errors(exc.errors()))
        raise _bad("value", f"取值无效：{reasons}") from exc


# ---------------------------------------------------------------- applying a decision to the draft


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, ensure_ascii=False, default=str) == json.dumps(
        b, sort_keys=True, ensure_ascii=False, default=str
    )


Path = tuple[int, ...]  # child indexes from the top-level `all` down to a leaf


def _kids(node: Any) -> list[Any] | None:
    if isinstance(node, dict):
        for key in ("all", "any"):
            if isinstance(node.get(key), list):
                return list(node[key])
    return None


def _top(rules: dict[str, Any] | None) -> dict[str, Any]:
    if not rules:
        return {"all": []}
    return {"all": list(rules["all"])} if isinstance(rules.get("all"), list) else {"all": [rules]}


def _leaves(node: Any, path: Path = ()) -> list[tuple[Path, Any]]:
    kids = _kids(node)
    if kids is None:
        return [(path, node)]
    out: list[tuple[Path, Any]] = []
    for i, kid in enumerate(kids):
        out.extend(_leaves(kid, (*path, i)))
    return out


def _at(tree: Any, path: Path) -> Any:
    for i in path:
        tree = _kids(tree)[i]  # type: ignore[index]
    return tree


def _with(tree: Any, path: Path, value: Any) -> Any:
    """A copy of the tree with the node at `path` replaced by `value` (None removes it, and tidies up)."""
    if not path:
        return value
    kids = _kids(tree) or []
    key = "all" if "all" in tree else "any"
    kid = _with(kids[path[0]], path[1:], value)
    if kid is None or (_kids(kid) == []):
        kids.pop(path[0])
    else:
        kids[path[0]] = kid
    if key == "any" and len(kids) == 1:
        return kids[0]  # one alternative left: it is simply required
    return {key: kids} if kids else None


def _find(tree: Any, node: dict[str, Any] | None) -> Path | None:
    """Where the condition stands in the tree: by equality, else the only leaf of its field and op."""
    if node is None:
        return None
    leaves = _leaves(tree)
    hit = next((path for path, leaf in leaves if _same(leaf, node)), None)
    if hit is None:
        alike = [
            path
            for path, leaf in leaves
            if isinstance(leaf, dict) and leaf.get("field") == node.get("field") and leaf.get("op") == node.get("op")
        ]
        hit = alike[0] if len(alike) == 1 else None
    return hit


def _tidy(tree: Any) -> dict[str, Any] | None:
    return tree if tree and _kids(tree) else None


def _without(rules: dict[str, Any] | None, node: dict[str, Any]) -> dict[str, Any] | None:
    """The rules without the condition, wherever it stands (an alternative leaves its `any`)."""
    tree = _top(rules)
    hit = _find(tree, node)
    if hit is None:
        return rules
    return _tidy(_with(tree, hit, None))


def _replace(
    rules: dict[str, Any] | None,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    siblings: Sequence[tuple[dict[str, Any], bool]] = (),
) -> dict[str, Any]:
    """The rules with `old` replaced by `new` where it stands.

    When `old` is not there (the proposal was rejected before), `new` goes back beside its alternatives:
    `siblings` are the other conditions of its `any` group as they stand now, each with whether it shares
    the proposal's branch (conditions of one branch hold together). Without any of them in the rules it
    is added as a plain requirement.
    """
    tree = _top(rules)
    hit = _find(tree, old)
    if hit is not None:
        return _with(tree, hit, new) or {"all": []}
    if any(_same(leaf, new) for _, leaf in _leaves(tree)):
        return tree
    for same_branch in (True, False):
        for sibling, shares in siblings:
            at = _find(tree, sibling) if shares is same_branch else None
            if at is None:
                continue
            parent = _at(tree, at[:-1])
            if same_branch:
                if "all" in parent and len(at) > 1:  # the branch's `all`: one more condition in it
                    return _with(tree, at[:-1], {"all": [*parent["all"], new]})
                return _with(tree, at, {"all": [_at(tree, at), new]})
            # another branch of the group: the proposal is one more alternative
            branch_at = at[:-1] if "all" in parent and len(at) > 1 else at
            holder = _at(tree, branch_at[:-1])
            if "any" in holder:
                return _with(tree, branch_at[:-1], {"any": [*holder["any"], new]})
            return _with(tree, branch_at, {"any": [_at(tree, branch_at), new]})
    return {"all": [*tree["all"], new]}


def _update(db: Session, policy: Policy, actor: Principal | None, **data: Any) -> None:
    try:
        update = PolicyUpdate(**data)
    except ValidationError as exc:
        reasons = "；".join(e.reason for e in pydantic_field_errors(exc.errors()))
        raise _bad("value", f"取值无效：{reasons}") from exc
    catalog_service.update_policy(db=db, policy_id=policy.id, policy_in=update, actor=actor)


def _decide_field(db: Session, policy: Policy, item: Item, decision: str, value: Any, actor: Principal | None) -> Any:
    column = FIELD_COLUMNS.get(item.name)
    if decision == REJECT:
        if column in REQUIRED_COLUMNS:
            raise _bad("decision", "该字段为必填项，不能驳回，请修改为正确的值", "catalog.intake_required_field")
        if column and _holds(policy, column, item):  # a value the curator typed by hand stays
            _update(db, policy, actor, **{column: [] if column == "region_codes" else None})
        return None
    if decision == EDIT:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise _bad("value", "请填写修改后的值", "catalog.intake_value_required")
        if column:
            stored = _field_value(column, value)
            _update(db, policy, actor, **{column: stored})
            return stored if not isinstance(stored, dt.date) else stored.isoformat()
        return str(value).strip()[:500]
    # Accept: the proposed value is what intake put in; put it back if it was taken out or changed.
    if column and item.status in ("rejected", "edited") and item.value is not None:
        proposed = [item.value] if column == "region_codes" else item.value
        _update(db, policy, actor, **{column: _field_value(column, proposed)})
    return None


def _holds(policy: Policy, column: str, item: Item) -> bool:
    """Whether the draft's column still holds what this proposal put there (the proposal or its edit)."""
    held = getattr(policy, column)
    current = [item.current] if column == "region_codes" and not isinstance(item.current, list) else item.current
    try:
        expected = _field_value(column, current)
    except ValidationFailed:
        return False
    if column == "level" and held is not None:
        held = held.value
    return bool(_same(held, expected))


def _decide_condition(
    db: Session,
    policy: Policy,
    item: Item,
    decision: str,
    op: Any,
    value: Any,
    actor: Principal | None,
    others: Sequence[Item] = (),
) -> Any:
    if not item.coded:
        if decision == EDIT:
            text = str(value or "").strip()
            if not text:
                raise _bad("value", "请填写修改后的条件文字", "catalog.intake_value_required")
            return text[:500]
        return None  # a plain-language condition: confirmed or rejected by hand, never in the rules
    current = item.current if item.status != "rejected" else None
    edited = None
    if decision == REJECT:
        rules = _without(policy.rules, current) if current is not None else policy.rules
    else:
        edited = _edited_node(db, dict(item.value), op, value) if decision == EDIT else None
        siblings = [
            (o.current, o.alternative[1] == item.alternative[1])
            for o in others
            if item.alternative and o.alternative and o.alternative[0] == item.alternative[0]
            if o.key != item.key and o.coded and o.status != "rejected"
        ]
        rules = _replace(policy.rules, current, edited or dict(item.value), siblings)
    if not _same(rules, policy.rules):
        _update(db, policy, actor, rules=rules)
    return edited


def _edited_node(db: Session, node: dict[str, Any], op: Any, value: Any) -> dict[str, Any]:
    """The curator's version of a proposed condition (same field; operator and value as typed), checked."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _bad("value", "请填写条件的取值", "catalog.intake_value_required")
    op = op or node["op"]
    allowed = rules_mod.OPS_BY_TYPE.get(FIELDS[node["field"]].type, ()) if node.get("field") in FIELDS else ()
    if op not in allowed:
        names = "、".join(f"{o}（{rules_mod.OPS[o].title}）" for o in allowed)
        raise _bad("op", f"运算“{op}”不适用于该字段（可选：{names}）", "catalog.intake_bad_op")
    edited = {"field": node["field"], "op": op, "value": condition_value(node["field"], op, value)}
    known = {t.name for t in catalog_service.tag_lookup(db=db).values()}
    problems = rules_mod.validate_rules({"all": [edited]}, known_tags=known)
    if problems:
        reason = "；".join(p.reason for p in problems)
        raise _bad("value", f"条件无效：{reason}", "catalog.intake_bad_rule")
    return edited


def _decide_tag(db: Session, policy: Policy, item: Item, decision: str, actor: Principal | None) -> None:
    if decision == EDIT:
        raise _bad("decision", "标签建议只能采纳或驳回；其他标签请在“标签”栏填写", "catalog.intake_bad_decision")
    names = [t.name for t in policy.tags]
    if decision == REJECT and item.name in names:
        names.remove(item.name)
    elif decision == ACCEPT and item.name not in names:
        known = {t.name for t in catalog_service.tag_lookup(db=db).values()}
        if item.name not in known:
            raise _bad("decision", f"标签“{item.name}”不在标签库中，无法采纳", "catalog.intake_unknown_tag")
        names.append(item.name)
    else:
        return
    _update(db, policy, actor, tags=names)


def decide(
    db: Session,
    *,
    policy_id: int,
    key: str,
    decision: str,
    actor: Principal | None,
    value: Any = None,
    op: Any = None,
) -> Item:
    """Accept, edit or reject one proposal of an intake draft and change the draft to match (caller's transaction)."""
    if decision not in DECISIONS:
        raise _bad("decision", "操作应为 accept（采纳）、edit（修改）或 reject（驳回）", "catalog.intake_bad_decision")
    if not isinstance(key, str) or not _KEY.match(key):
        raise _bad("key", "建议编号格式应为 field-字段名、condition-序号 或 tag-序号", "catalog.intake_bad_key")
    record = record_for(db, policy_id, lock=True)
    found = {i.key: i for i in items(record)}
    item = found.get(key)
    if item is None:
        raise NotFound(f"没有编号为 {key} 的录入建议", code="catalog.intake_proposal_not_found")
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    if item.kind == "field":
        stored = _decide_field(db, policy, item, decision, value, actor)
    elif item.kind == "condition":
        stored = _decide_condition(db, policy, item, decision, op, value, actor, list(found.values()))
    else:
        _decide_tag(db, policy, item, decision, actor)
        stored = None
    entry: dict[str, Any] = {
        "status": STATUS_OF[decision],
        "by": actor.user_id if actor else None,
        "at": utcnow().isoformat(timespec="seconds"),
    }
    if decision == EDIT:
        entry["value"] = stored
    proposals = dict(record.proposals or {})
    decisions = dict(proposals.get("decisions") or {})
    decisions[key] = entry
    proposals["decisions"] = decisions
    record.proposals = proposals  # a new dict: the JSON column sees the change
    db.flush()
    item.status, item.decided = entry["status"], entry
    return item


def summary(record: PolicyIntake) -> dict[str, Any]:
    """The review state: every proposal with its decision, how many are left, the duplicates found."""
    all_items = items(record)
    return {
        "policy_id": record.policy_id,
        "filename": record.filename,
        "kind": record.kind,
        "proposals": [i.as_dict() for i in all_items],
        "undecided": sum(1 for i in all_items if i.status == "pending"),
        "duplicates": (record.proposals or {}).get("duplicates") or [],
    }
