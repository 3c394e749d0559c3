"""统计上大中小微型企业划分办法（2017）: every row's boundaries, written out independently of sizing.py."""

from __future__ import annotations

import pytest

from profiles.sizing import SIZE_LABELS, size_class, size_row

E, Y, Z = "employees", "annual_revenue", "total_assets"

# The standard's annex, typed again here: (group, sample codes, {indicator: (large, medium, small) lower bounds}).
# Kept separate from profiles/sizing.py on purpose, so a transcription slip in either one fails the tests.
ANNEX = [
    ("农、林、牧、渔业", ["A", "A01", "A0511"], {Y: (20000, 500, 50)}),
    ("工业", ["B", "B06", "C", "C3911", "C27", "D44"], {E: (1000, 300, 20), Y: (40000, 2000, 300)}),
    ("建筑业", ["E", "E47", "E50"], {Y: (80000, 6000, 300), Z: (80000, 5000, 300)}),
    ("批发业", ["F51", "F517"], {E: (200, 20, 5), Y: (40000, 5000, 1000)}),
    ("零售业", ["F52", "F527"], {E: (300, 50, 10), Y: (20000, 500, 100)}),
    ("交通运输业", ["G54", "G55", "G56", "G57", "G58", "G582", "G591"], {E: (1000, 300, 20), Y: (30000, 3000, 200)}),
    ("仓储业", ["G592", "G593", "G594", "G595", "G596", "G599"], {E: (200, 100, 20), Y: (30000, 1000, 100)}),
    ("邮政业", ["G60", "G602"], {E: (1000, 300, 20), Y: (30000, 2000, 100)}),
    ("住宿业", ["H61"], {E: (300, 100, 10), Y: (10000, 2000, 100)}),
    ("餐饮业", ["H62"], {E: (300, 100, 10), Y: (10000, 2000, 100)}),
    ("信息传输业", ["I63", "I64", "I643"], {E: (2000, 100, 10), Y: (100000, 1000, 100)}),
    ("软件和信息技术服务业", ["I65", "I651", "I6520"], {E: (300, 100, 10), Y: (10000, 1000, 50)}),
    ("房地产开发经营", ["K701", "K7010"], {Y: (200000, 1000, 100), Z: (10000, 5000, 2000)}),
    ("物业管理", ["K702"], {E: (1000, 300, 100), Y: (5000, 1000, 500)}),
    ("租赁和商务服务业", ["L", "L71", "L72"], {E: (300, 100, 10), Z: (120000, 8000, 100)}),
    ("其他未列明行业", ["M", "M73", "N77", "O80", "Q85", "R86", "K703", "K709"], {E: (300, 100, 10)}),
]

CLASSES = ("large", "medium", "small")
NEXT_DOWN = {"large": "medium", "medium": "small", "small": "micro"}
JUST_BELOW = {E: 1, Y: 0.01, Z: 0.01}


def _firm(code: str, values: dict[str, float]) -> str | None:
    return size_class(
        industry_code=code,
        employees=values.get(E),
        annual_revenue=values.get(Y),
        total_assets=values.get(Z),
    )


def _at(bounds: dict[str, tuple[float, float, float]], rank: int) -> dict[str, float]:
    return {name: b[rank] for name, b in bounds.items()}


CODE_CASES = [pytest.param(group, code, id=code) for group, codes, _ in ANNEX for code in codes]
BOUND_CASES = [
    pytest.param(codes[0], bounds, rank, size, id=f"{group}-{size}")
    for group, codes, bounds in ANNEX
    for rank, size in enumerate(CLASSES)
]
DROP_CASES = [
    pytest.param(codes[0], bounds, rank, size, name, id=f"{group}-{size}-{name}")
    for group, codes, bounds in ANNEX
    for rank, size in enumerate(CLASSES)
    for name in bounds
]
INDICATOR_CASES = [
    pytest.param(codes[0], bounds, name, id=f"{group}-{name}") for group, codes, bounds in ANNEX for name in bounds
]


@pytest.mark.parametrize(("group", "code"), CODE_CASES)
def test_industry_code_selects_the_standard_row(group: str, code: str) -> None:
    row = size_row(code)
    assert row is not None
    assert row.group == group


def test_every_row_of_the_annex_is_transcribed() -> None:
    assert [size_row(codes[0]).group for _, codes, _ in ANNEX] == [group for group, _, _ in ANNEX]


@pytest.mark.parametrize(("code", "bounds", "rank", "size"), BOUND_CASES)
def test_firm_exactly_at_lower_bounds_gets_that_class(code: str, bounds: dict, rank: int, size: str) -> None:
    assert _firm(code, _at(bounds, rank)) == size


@pytest.mark.parametrize(("code", "bounds", "rank", "size", "name"), DROP_CASES)
def test_one_indicator_just_below_its_bound_drops_one_class(
    code: str, bounds: dict, rank: int, size: str, name: str
) -> None:
    values = _at(bounds, rank)
    values[name] -= JUST_BELOW[name]
    assert _firm(code, values) == NEXT_DOWN[size]


@pytest.mark.parametrize(("code", "bounds", "name"), INDICATOR_CASES)
def test_one_indicator_below_small_makes_a_micro_firm(code: str, bounds: dict, name: str) -> None:
    values = {n: b[0] * 10 for n, b in bounds.items()}
    values[name] = bounds[name][2] - JUST_BELOW[name]
    assert _firm(code, values) == "micro"


@pytest.mark.parametrize(("code", "bounds", "name"), INDICATOR_CASES)
def test_missing_indicator_that_the_row_needs_gives_none(code: str, bounds: dict, name: str) -> None:
    values = _at(bounds, 0)
    del values[name]
    assert _firm(code, values) is None


def test_weakest_indicator_decides_the_class() -> None:
    # Large by headcount but only small by revenue: 下划 until every bound is met.
    assert size_class(industry_code="C3911", employees=5000, annual_revenue=300, total_assets=None) == "small"


def test_indicators_the_row_does_not_use_are_ignored() -> None:
    assert size_class(industry_code="A01", employees=0, annual_revenue=20000, total_assets=0) == "large"
    assert size_class(industry_code="M73", employees=300, annual_revenue=0, total_assets=None) == "large"


def test_zero_everything_is_micro() -> None:
    assert size_class(industry_code="C39", employees=0, annual_revenue=0, total_assets=0) == "micro"


@pytest.mark.parametrize(
    "code",
    [
        None,
        "J66",  # 金融业: outside the standard's scope
        "P83",  # 教育
        "Q84",  # 卫生
        "S92",
        "T97",
        "G53",  # 铁路运输业: excluded from 交通运输业
        "G531",
        "K704",  # 房地产租赁经营 (自有房地产经营活动): excluded from 其他未列明行业
        "99",  # not a GB/T 4754 code at all
        "garbage",
    ],
)
def test_industry_outside_the_standard_gives_none(code: str | None) -> None:
    assert size_row(code) is None
    assert size_class(industry_code=code, employees=500, annual_revenue=50000, total_assets=50000) is None


@pytest.mark.parametrize("code", ["G", "G59", "K", "K70", "F", "H", "I", "Q"])
def test_code_too_coarse_to_pick_one_row_gives_none(code: str) -> None:
    assert size_row(code) is None
    assert size_class(industry_code=code, employees=500, annual_revenue=50000, total_assets=50000) is None


def test_digit_only_and_lower_case_codes_are_understood() -> None:
    assert size_row("6513").group == "软件和信息技术服务业"
    assert size_row("c3911").group == "工业"
    assert size_row("5920").group == "仓储业"


@pytest.mark.parametrize(("field", "label"), [(E, "从业人员"), (Y, "营业收入"), (Z, "资产总额")])
def test_negative_indicator_is_refused(field: str, label: str) -> None:
    values: dict[str, float] = {E: 10, Y: 10.0, Z: 10.0}
    values[field] = -1
    with pytest.raises(ValueError, match=label):
        _firm("E47", values)


def test_size_labels_are_the_chinese_names() -> None:
    assert SIZE_LABELS == {"large": "大型", "medium": "中型", "small": "小型", "micro": "微型"}
