"""Options of the select boxes and checkbox groups, read from the code tables and the catalog."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import service as catalog_service
from catalog.fields import CREDIT_STANDINGS, TAX_CREDIT_LEVELS
from catalog.models import LEVEL_LABELS, Tag, TagKind
from core import codes

LEVELS = tuple(LEVEL_LABELS.items())
CREDIT = CREDIT_STANDINGS
TAX_LEVELS = TAX_CREDIT_LEVELS
CHANNEL_LABELS = {"inbox": "站内信", "email": "电子邮件", "sms": "短信", "webhook": "Webhook（企业微信/钉钉/飞书等）"}
FREQUENCY_LABELS = {"instant": "即时推送", "daily": "每日汇总", "weekly": "每周汇总"}
WEBHOOK_FORMAT_LABELS = {
    "huiqi": "惠企标准格式",
    "wecom": "企业微信群机器人",
    "dingtalk": "钉钉群机器人",
    "feishu": "飞书群机器人",
}


RegionGroups = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]


def region_groups(home_region: str = "", selected: str | None = None) -> RegionGroups:
    """Return regions grouped for a select box.

    Every province and prefecture is listed, with the districts and counties of the home region's province and of
    the four municipalities; the ~2,800 counties elsewhere would make every form carry 3,000+ options. A selected
    region outside that list (a firm registered in a county elsewhere) is shown in a group of its own, so saving
    the form never loses it.
    """
    groups = _region_groups(home_region[:2] if home_region else "")
    if selected and not any(code == selected for _, options in groups for code, _ in options):
        path = [codes.region_name(code) or code for code in _safe_path(selected)]
        if path:
            groups = (("当前所选地区", ((selected, "".join(path)),)), *groups)
    return groups


def _safe_path(code: str) -> list[str]:
    try:
        return codes.region_path(code)
    except ValueError:
        return []


@lru_cache(maxsize=4)
def _region_groups(home_province: str) -> RegionGroups:
    rows = codes.list_regions()
    by_parent: dict[str | None, list[dict]] = {}
    for row in rows:
        by_parent.setdefault(row["parent"], []).append(row)
    groups: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for top in by_parent.get(None, []):
        if top["code"] == codes.NATIONAL_REGION:
            continue
        with_counties = (top["code"] or "")[:2] == home_province
        for child in by_parent.get(top["code"], []):
            options = [(child["code"], child["name"])]
            counties = by_parent.get(child["code"], []) if with_counties else []
            options += [(d["code"], f"{child['name']}{d['name']}") for d in counties]
            groups.append((f"{top['name']} · {child['name']}" if counties else top["name"], tuple(options)))
    merged: dict[str, list[tuple[str, str]]] = {}
    for label, grouped in groups:
        merged.setdefault(label, []).extend(grouped)
    return tuple((label, tuple(grouped)) for label, grouped in merged.items())


@lru_cache(maxsize=1)
def industry_divisions() -> tuple[tuple[str, str], ...]:
    """Return the industry divisions (大类, e.g. C39) with their names, for a datalist."""
    return tuple((row["code"] or "", row["name"] or "") for row in codes.list_industries("大类"))


def categories(*, db: Session) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """Return the top categories with their sub-categories as (code, name, children)."""
    return [
        (
            c.code,
            c.name,
            [(child.code, child.name) for child in sorted(c.children, key=lambda x: (x.sort_order, x.code))],
        )
        for c in catalog_service.list_categories(db=db)
    ]


def departments(*, db: Session, home_region: str | None = None) -> list[tuple[str, str]]:
    """Return (code, name) of every department, the home city's first."""
    return [(d.code, d.name) for d in catalog_service.list_departments(db=db, home_region=home_region)]


def qualifications(*, db: Session) -> list[str]:
    """Return the names of the qualification tags a firm can hold."""
    return list(db.scalars(select(Tag.name).where(Tag.kind == TagKind.qualification).order_by(Tag.id)))
