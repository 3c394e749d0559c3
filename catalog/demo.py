"""Load the demo catalog written by the team: taxonomy, tags, departments, topics, policies."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auth.service import Principal
from catalog import attachments, service
from catalog.models import Category, Department, Policy, Tag, TagKind, Topic
from catalog.schemas import PolicyIn
from core import tabular
from core.config import Settings

DATE_FIELDS = ("apply_start_on", "apply_end_on", "valid_from_on", "valid_to_on")
POLICY_FILES = ("policies_a.json", "policies_b.json")


def _read(name: str) -> Any:
    return json.loads(resources.files("catalog").joinpath("demo_data", name).read_text(encoding="utf-8"))


def has_catalog(*, db: Session) -> bool:
    """Tell whether any policy exists (demo loading is skipped then)."""
    return bool(db.scalar(select(func.count()).select_from(Policy)))


def demo_policies(today: dt.date) -> list[dict[str, Any]]:
    """Return the demo policies with day offsets turned into dates relative to today."""
    out = []
    for name in POLICY_FILES:
        for raw in _read(name):
            item = dict(raw)
            for key in DATE_FIELDS:
                if item.get(key) is not None:
                    item[key] = today + dt.timedelta(days=int(item[key]))
            out.append(item)
    return out


def load_taxonomy(*, db: Session) -> dict[str, int]:
    """Insert departments, categories, tags and topics from the demo taxonomy."""
    data = _read("taxonomy.json")
    for d in data["departments"]:
        db.add(Department(**d))
    for i, top in enumerate(data["categories"]):
        parent = Category(code=top["code"], name=top["name"], sort_order=i)
        db.add(parent)
        for j, child in enumerate(top.get("children", [])):
            db.add(Category(code=child["code"], name=child["name"], parent=parent, sort_order=j))
    for t in data["tags"]:
        db.add(
            Tag(
                name=t["name"],
                kind=TagKind(t["kind"]),
                synonyms=t.get("synonyms", []),
                description=t.get("description"),
            )
        )
    for i, t in enumerate(data["topics"]):
        db.add(Topic(code=t["code"], name=t["name"], description=t.get("description"), sort_order=i))
    db.flush()
    return {
        "departments": len(data["departments"]),
        "categories": len(data["categories"]) + sum(len(c.get("children", [])) for c in data["categories"]),
        "tags": len(data["tags"]),
        "topics": len(data["topics"]),
    }


def load_demo_catalog(*, db: Session, actor: Principal | None, today: dt.date | None = None) -> dict[str, int]:
    """Load the whole demo catalog through the catalog service; return counts."""
    today = today or dt.date.today()
    counts = load_taxonomy(db=db)
    by_status: dict[str, int] = {}
    for item in demo_policies(today):
        status = item.pop("status", "published")
        item.pop("pinned", None) if item.get("pinned") is None else None
        policy = service.create_policy(db=db, policy_in=PolicyIn(**item), actor=actor)
        if status in ("published", "withdrawn", "expired"):
            # Publish as of the day the policy took effect, so ones past their validity get a history.
            as_of = min(today, policy.valid_from_on or today)
            service.publish_policy(db=db, policy_id=policy.id, actor=actor, today=as_of, announce=False)
            if status == "withdrawn":
                service.withdraw_policy(db=db, policy_id=policy.id, actor=actor, note="演示：已撤回")
        by_status[status] = by_status.get(status, 0) + 1
    expired = service.expire_due_policies(db=db, today=today)
    counts["policies"] = sum(by_status.values())
    counts["expired"] = len(expired)
    for status, k in sorted(by_status.items()):
        counts[f"policies_{status}"] = k
    return counts


def department_ids(*, db: Session) -> dict[str, int]:
    """Return every department's id by its code."""
    return dict(db.execute(select(Department.code, Department.id)).tuples().all())


DEMO_FORM_COLUMNS = (
    "企业名称",
    "统一社会信用代码",
    "所属行业",
    "申请事项",
    "申请金额（万元）",
    "联系人",
    "联系电话",
    "备注",
)


def load_demo_attachments(*, db: Session, settings: Settings, limit: int = 8) -> int:
    """Attach a 申请表 (an XLSX form to fill in, written by the project's one spreadsheet writer) to the first
    published application-type policies, so the policy pages and the editor show downloads; return how many."""
    policies = db.scalars(
        select(Policy)
        .where(Policy.status == "published", Policy.policy_type == "application")
        .order_by(Policy.id)
        .limit(limit)
    )
    made = 0
    for policy in policies:
        sample = ["（企业全称）", "（18 位代码）", "", policy.title, "", "", "", ""]
        data = tabular.write_xlsx(DEMO_FORM_COLUMNS, [sample], "申请表")
        attachments.attach_to_policy(
            db,
            policy_id=policy.id,
            kind="form",
            name=f"{policy.title}申请表.xlsx",
            data=data,
            user=None,
            settings=settings,
        )
        made += 1
    return made
