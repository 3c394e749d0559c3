"""Derived enterprise attributes, computed in one place: size class, years, R&D ratio, completeness."""

from __future__ import annotations

import datetime as dt

from catalog.fields import FIELDS
from profiles.models import Enterprise
from profiles.sizing import size_class

# Fields that policies commonly test or that staff need to serve the firm; a gap here blocks matching.
COMMON_FIELDS = (
    "region_code",
    "industry_code",
    "established_on",
    "employees",
    "annual_revenue",
    "total_assets",
    "rd_expense",
    "credit_standing",
    "tax_credit_level",
    "business_scope",
    "needs",
    "contact_phone",
)

FIELD_LABELS = {
    **{name: f.label for name, f in FIELDS.items()},
    "business_scope": "经营范围",
    "needs": "企业需求",
    "contact_phone": "联系电话",
    "products": "主要产品",
}


def years_since(day: dt.date | None, today: dt.date | None = None) -> float | None:
    """Return full years (with fraction) elapsed since a date."""
    if day is None:
        return None
    today = today or dt.date.today()
    return round((today - day).days / 365.2425, 2)


def rd_ratio(rd_expense: float | None, annual_revenue: float | None) -> float | None:
    """Return R&D expense as a percentage of revenue, None when either is unknown or revenue is 0."""
    if rd_expense is None or not annual_revenue:
        return None
    return round(rd_expense / annual_revenue * 100, 2)


def missing_fields(enterprise: Enterprise) -> list[str]:
    """List the commonly needed fields the profile lacks."""
    return [name for name in COMMON_FIELDS if getattr(enterprise, name) in (None, "")]


def refresh(enterprise: Enterprise) -> None:
    """Recompute and store every derived attribute after a change."""
    enterprise.size_class = size_class(
        industry_code=enterprise.industry_code,
        employees=enterprise.employees,
        annual_revenue=enterprise.annual_revenue,
        total_assets=enterprise.total_assets,
    )
    enterprise.rd_ratio = rd_ratio(enterprise.rd_expense, enterprise.annual_revenue)
    gaps = missing_fields(enterprise)
    enterprise.missing_fields = gaps
    enterprise.completeness = round(100 * (len(COMMON_FIELDS) - len(gaps)) / len(COMMON_FIELDS))
