"""The profile attributes that eligibility rules may test, with Chinese labels and units.

This is the shared vocabulary between policies (whose rules name these fields) and
enterprises (whose profiles supply the values). Derived fields are computed in
profiles/derived.py and stored on the enterprise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["number", "date", "code", "region", "enum", "set"]


@dataclass(frozen=True)
class ProfileField:
    """One attribute of an enterprise that a rule can test."""

    name: str
    label: str
    type: FieldType
    unit: str = ""
    derived: bool = False
    choices: tuple[tuple[str, str], ...] = ()  # (value, Chinese label) for enums


SIZE_CLASSES = (("large", "大型"), ("medium", "中型"), ("small", "小型"), ("micro", "微型"))
CREDIT_STANDINGS = (("good", "良好"), ("normal", "一般"), ("dishonest", "失信"))
TAX_CREDIT_LEVELS = (("A", "A级"), ("B", "B级"), ("M", "M级"), ("C", "C级"), ("D", "D级"))

FIELDS: dict[str, ProfileField] = {
    f.name: f
    for f in (
        ProfileField("region_code", "所在地区", "region"),
        ProfileField("industry_code", "所属行业", "code"),
        ProfileField("size_class", "企业规模", "enum", derived=True, choices=SIZE_CLASSES),
        ProfileField("established_on", "成立日期", "date"),
        ProfileField("years_established", "成立年限", "number", "年", derived=True),
        ProfileField("registered_capital", "注册资本", "number", "万元"),
        ProfileField("employees", "从业人数", "number", "人"),
        ProfileField("annual_revenue", "年营业收入", "number", "万元"),
        ProfileField("total_assets", "资产总额", "number", "万元"),
        ProfileField("rd_expense", "年研发费用", "number", "万元"),
        ProfileField("rd_ratio", "研发费用占营业收入比例", "number", "%", derived=True),
        ProfileField("export_revenue", "年出口额", "number", "万元"),
        ProfileField("qualifications", "企业资质", "set"),
        ProfileField("tags", "企业标签", "set", derived=True),
        ProfileField("credit_standing", "信用状况", "enum", choices=CREDIT_STANDINGS),
        ProfileField("tax_credit_level", "纳税信用等级", "enum", choices=TAX_CREDIT_LEVELS),
    )
}


def label_of(field: str) -> str:
    """Return a field's Chinese label (the field name itself when unknown)."""
    f = FIELDS.get(field)
    return f.label if f else field
