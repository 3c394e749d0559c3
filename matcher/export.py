"""The eligible-firm list (免申即享 名单) as rows for pages and as CSV / XLSX downloads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from core import codes, tabular
from core.text import mask_name, mask_phone
from matcher import lists
from matcher.eligibility import STATUS_LABELS
from matcher.schemas import EligibleEnterpriseOut
from profiles.sizing import SIZE_LABELS

# People read the names and labels; the codes a machine joins on keep their own columns.
EXPORT_HEADERS = [
    "统一社会信用代码",
    "企业名称",
    "所在地区",
    "所在地区代码",
    "所属行业",
    "行业代码",
    "企业规模",
    "企业规模代码",
    "匹配结论",
    "匹配得分",
    "共有标签",
    "联系人",
    "联系电话",
]
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "xlsx": tabular.XLSX_MEDIA_TYPE}


def eligible_row(result: Any, enterprise: Any) -> EligibleEnterpriseOut:
    """Return one firm of the list, contacts masked."""
    return EligibleEnterpriseOut(
        enterprise_id=enterprise.id,
        credit_code=enterprise.credit_code,
        name=enterprise.name,
        region_code=enterprise.region_code,
        industry_code=enterprise.industry_code,
        size_class=enterprise.size_class,
        contact_name=mask_name(enterprise.contact_name),
        contact_phone=mask_phone(enterprise.contact_phone),
        status=result.status,
        status_label=STATUS_LABELS[result.status],
        score=result.score,
        shared_tags=result.shared_tags or [],
        computed_at=result.computed_at,
    )


def _region_text(code: str | None) -> str:
    """Name a region as people say it, with its city: "中山市", "广州市天河区"."""
    if not code:
        return ""
    try:
        path = codes.region_path(code)
    except ValueError:
        return ""
    return "".join(filter(None, (codes.region_name(c) for c in (path[1:] or path))))


def _table(rows: Sequence[EligibleEnterpriseOut]) -> list[list[str]]:
    return [
        [
            r.credit_code,
            r.name,
            _region_text(r.region_code),
            r.region_code or "",
            (codes.industry_name(r.industry_code) or "") if r.industry_code else "",
            r.industry_code or "",
            SIZE_LABELS.get(r.size_class or "", ""),
            r.size_class or "",
            r.status_label,
            f"{r.score:.4f}",
            "；".join(r.shared_tags),
            r.contact_name or "",
            r.contact_phone or "",
        ]
        for r in rows
    ]


def export_eligible(*, db: Session, policy_id: int, statuses: Sequence[str], fmt: str) -> tuple[bytes, str, str]:
    """Return the whole list as a file: (content, media type, Content-Disposition)."""
    policy, rows, _ = lists.eligible_enterprises(
        db=db, policy_id=policy_id, statuses=list(statuses), offset=0, limit=1_000_000
    )
    table = _table([eligible_row(m, e) for m, e in rows])
    if fmt == "csv":
        data = tabular.write_csv(EXPORT_HEADERS, table)
    else:
        data = tabular.write_xlsx(EXPORT_HEADERS, table, "符合条件企业")
    name = f"{policy.title}-符合条件企业.{fmt}"
    disposition = f"attachment; filename=eligible-{policy.id}.{fmt}; filename*=UTF-8''{quote(name)}"
    return data, MEDIA_TYPES[fmt], disposition
