"""Enterprise size class under 统计上大中小微型企业划分办法（2017）(国统字〔2017〕213号).

The standard's annex table is transcribed below as data. Each row gives, per indicator,
the lower bounds of the large, medium and small classes; anything below the small
bound of any one indicator is micro. Money is in 万元, headcount in 人.

Scope (第二条): 15 GB/T 4754-2017 门类 (A–I, K–O, R) plus the 社会工作 大类 (Q85).
金融业, 教育, 卫生, 公共管理 and 国际组织 are outside it, as are 铁路运输业 and
房地产租赁经营 (自有房地产经营活动), which the annex notes explicitly exclude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

from core.codes import normalize_industry_code

SIZE_LABELS = {"large": "大型", "medium": "中型", "small": "小型", "micro": "微型"}

# Classes with lower bounds, in the order the standard tests them.
_BOUNDED_CLASSES = ("large", "medium", "small")

# (large, medium, small) lower bounds of one indicator.
Bounds = tuple[float, float, float]


@dataclass(frozen=True)
class SizeRow:
    """One industry row of the standard's annex table."""

    group: str
    prefixes: tuple[str, ...]  # GB/T 4754-2017 codes (canonical letter form) the row covers
    employees: Bounds | None = None  # 从业人员, 人
    annual_revenue: Bounds | None = None  # 营业收入, 万元
    total_assets: Bounds | None = None  # 资产总额, 万元
    note: str = ""

    def indicators(self) -> dict[str, Bounds]:
        """Return the indicators this row uses, by profile field name."""
        found = {
            "employees": self.employees,
            "annual_revenue": self.annual_revenue,
            "total_assets": self.total_assets,
        }
        return {name: bounds for name, bounds in found.items() if bounds is not None}


SIZE_TABLE: tuple[SizeRow, ...] = (
    SizeRow("农、林、牧、渔业", ("A",), annual_revenue=(20000, 500, 50)),
    SizeRow(
        "工业",
        ("B", "C", "D"),
        employees=(1000, 300, 20),
        annual_revenue=(40000, 2000, 300),
        note="包括采矿业，制造业，电力、热力、燃气及水生产和供应业",
    ),
    SizeRow("建筑业", ("E",), annual_revenue=(80000, 6000, 300), total_assets=(80000, 5000, 300)),
    SizeRow("批发业", ("F51",), employees=(200, 20, 5), annual_revenue=(40000, 5000, 1000)),
    SizeRow("零售业", ("F52",), employees=(300, 50, 10), annual_revenue=(20000, 500, 100)),
    SizeRow(
        "交通运输业",
        ("G54", "G55", "G56", "G57", "G58", "G591"),
        employees=(1000, 300, 20),
        annual_revenue=(30000, 3000, 200),
        note="包括道路运输业，水上运输业，航空运输业，管道运输业，多式联运和运输代理业、装卸搬运，不包括铁路运输业",
    ),
    SizeRow(
        "仓储业",
        ("G592", "G593", "G594", "G595", "G596", "G599"),
        employees=(200, 100, 20),
        annual_revenue=(30000, 1000, 100),
        note="包括通用仓储，低温仓储，危险品仓储，谷物、棉花等农产品仓储，中药材仓储和其他仓储业",
    ),
    SizeRow("邮政业", ("G60",), employees=(1000, 300, 20), annual_revenue=(30000, 2000, 100)),
    SizeRow("住宿业", ("H61",), employees=(300, 100, 10), annual_revenue=(10000, 2000, 100)),
    SizeRow("餐饮业", ("H62",), employees=(300, 100, 10), annual_revenue=(10000, 2000, 100)),
    SizeRow(
        "信息传输业",
        ("I63", "I64"),
        employees=(2000, 100, 10),
        annual_revenue=(100000, 1000, 100),
        note="包括电信、广播电视和卫星传输服务，互联网和相关服务",
    ),
    SizeRow("软件和信息技术服务业", ("I65",), employees=(300, 100, 10), annual_revenue=(10000, 1000, 50)),
    SizeRow("房地产开发经营", ("K701",), annual_revenue=(200000, 1000, 100), total_assets=(10000, 5000, 2000)),
    SizeRow("物业管理", ("K702",), employees=(1000, 300, 100), annual_revenue=(5000, 1000, 500)),
    SizeRow("租赁和商务服务业", ("L",), employees=(300, 100, 10), total_assets=(120000, 8000, 100)),
    SizeRow(
        "其他未列明行业",
        ("M", "N", "O", "Q85", "R", "K703", "K709"),
        employees=(300, 100, 10),
        note="包括科学研究和技术服务业，水利、环境和公共设施管理业，居民服务、修理和其他服务业，社会工作，"
        "文化、体育和娱乐业，以及房地产中介服务，其他房地产业等，不包括自有房地产经营活动",
    ),
)


@cache
def _row_by_prefix() -> dict[str, SizeRow]:
    mapping: dict[str, SizeRow] = {}
    for row in SIZE_TABLE:
        for prefix in row.prefixes:
            if prefix in mapping:
                raise RuntimeError(f"industry prefix {prefix} is assigned to two size rows")
            mapping[prefix] = row
    return mapping


@lru_cache(maxsize=8192)  # pure, and called per row by bulk generation and imports
def size_row(industry_code: str | None) -> SizeRow | None:
    """Return the annex row that applies to an industry code, None when none applies unambiguously."""
    if industry_code is None:
        return None
    try:
        code = normalize_industry_code(industry_code)
    except ValueError:
        return None
    mapping = _row_by_prefix()
    row = next((mapping[code[:n]] for n in range(len(code), 0, -1) if code[:n] in mapping), None)
    if row is None:
        return None
    # A code coarser than the standard's split (G59, K70) covers several rows: refuse to pick one.
    for prefix, other in mapping.items():
        if len(prefix) > len(code) and prefix.startswith(code) and other is not row:
            return None
    return row


def _checked(label: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{label}不是有效数值")
    if value < 0:
        raise ValueError(f"{label}不能为负数")
    return value


def size_class(
    *,
    industry_code: str | None,
    employees: int | None,
    annual_revenue: float | None,
    total_assets: float | None,
) -> str | None:
    """Classify a firm as large/medium/small/micro, None when the industry or a needed indicator is unknown."""
    values = {
        "employees": _checked("从业人员", employees),
        "annual_revenue": _checked("营业收入", annual_revenue),
        "total_assets": _checked("资产总额", total_assets),
    }
    row = size_row(industry_code)
    if row is None:
        return None
    indicators = row.indicators()
    known = {name: value for name, value in values.items() if value is not None}
    if any(name not in known for name in indicators):
        return None
    # Large, medium and small need every indicator at or above the class's lower bound;
    # failing any one drops the firm a class, so micro needs only one indicator below "small".
    for rank, size in enumerate(_BOUNDED_CLASSES):
        if all(known[name] >= bounds[rank] for name, bounds in indicators.items()):
            return size
    return "micro"
