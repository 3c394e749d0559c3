"""GB/T 4754-2017 industry and GB/T 2260 region code tables."""

from __future__ import annotations

import pytest

from core.codes import (
    industry_division,
    industry_name,
    industry_section,
    list_industries,
    list_regions,
    normalize_industry_code,
    normalize_region_code,
    region_contains,
    region_name,
    region_path,
)

# 门类 → its 大类 numbers, written out independently of the CSV.
SECTIONS = {
    "A": range(1, 6),
    "B": range(6, 13),
    "C": range(13, 44),
    "D": range(44, 47),
    "E": range(47, 51),
    "F": range(51, 53),
    "G": range(53, 61),
    "H": range(61, 63),
    "I": range(63, 66),
    "J": range(66, 70),
    "K": range(70, 71),
    "L": range(71, 73),
    "M": range(73, 76),
    "N": range(76, 80),
    "O": range(80, 83),
    "P": range(83, 84),
    "Q": range(84, 86),
    "R": range(86, 91),
    "S": range(91, 97),
    "T": range(97, 98),
}


def test_table_has_exactly_the_twenty_sections_a_to_t() -> None:
    codes = [row["code"] for row in list_industries("门类")]
    assert codes == list("ABCDEFGHIJKLMNOPQRST")


def test_table_has_all_97_divisions_each_under_its_section() -> None:
    rows = list_industries("大类")
    assert len(rows) == 97
    expected = {f"{letter}{n:02d}" for letter, numbers in SECTIONS.items() for n in numbers}
    assert {row["code"] for row in rows} == expected
    assert all(row["parent"] == row["code"][0] for row in rows)


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("A", "农、林、牧、渔业"),
        ("C", "制造业"),
        ("D", "电力、热力、燃气及水生产和供应业"),
        ("I", "信息传输、软件和信息技术服务业"),
        ("M", "科学研究和技术服务业"),
        ("T", "国际组织"),
        ("A05", "农、林、牧、渔专业及辅助性活动"),
        ("B11", "开采专业及辅助性活动"),
        ("C39", "计算机、通信和其他电子设备制造业"),
        ("C43", "金属制品、机械和设备修理业"),
        ("G58", "多式联运和运输代理业"),
        ("G59", "装卸搬运和仓储业"),
        ("I64", "互联网和相关服务"),
        ("I65", "软件和信息技术服务业"),
        ("M73", "研究和试验发展"),
        ("R86", "新闻和出版业"),
        ("S96", "基层群众自治组织及其他组织"),
        ("C391", "计算机制造"),
        ("C392", "通信设备制造"),
        ("C395", "非专业视听设备制造"),
        ("C3973", "集成电路制造"),
        ("I651", "软件开发"),
        ("I652", "集成电路设计"),
        ("M731", "自然科学研究和试验发展"),
        ("K701", "房地产开发经营"),
    ],
)
def test_listed_codes_carry_their_official_names(code: str, name: str) -> None:
    assert industry_name(code) == name


def test_table_lists_at_least_sixty_groups_across_c_i_m_f_g() -> None:
    groups = list_industries("中类")
    assert len(groups) >= 60
    assert {row["code"][0] for row in groups} >= {"C", "I", "M", "F", "G"}


def test_every_group_and_class_hangs_under_its_prefix() -> None:
    for row in list_industries("中类") + list_industries("小类"):
        assert row["parent"] == row["code"][:-1]


def test_list_industries_without_level_returns_every_row() -> None:
    total = sum(len(list_industries(level)) for level in ("门类", "大类", "中类", "小类"))
    assert len(list_industries()) == total


def test_list_industries_refuses_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="行业层级"):
        list_industries("细类")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("C3911", "C3911"),
        ("c3911", "C3911"),
        ("3911", "C3911"),
        ("391", "C391"),
        ("39", "C39"),
        (" C39 ", "C39"),
        ("C", "C"),
        ("c", "C"),
        ("Ｃ３９１１", "C3911"),
        ("0111", "A0111"),
        ("01", "A01"),
        ("6520", "I6520"),
        ("i65", "I65"),
        ("97", "T97"),
    ],
)
def test_normalize_industry_code_accepts_every_input_shape(raw: str, expected: str) -> None:
    assert normalize_industry_code(raw) == expected


def test_normalize_industry_code_accepts_finer_codes_under_a_known_division() -> None:
    assert normalize_industry_code("3999") == "C3999"
    assert normalize_industry_code("C1311") == "C1311"


@pytest.mark.parametrize("raw", ["98", "99", "00", "C99", "U", "9911", "U01"])
def test_normalize_industry_code_refuses_codes_outside_the_standard(raw: str) -> None:
    with pytest.raises(ValueError, match=r"不在《国民经济行业分类》\(GB/T 4754-2017\)"):
        normalize_industry_code(raw)


def test_normalize_industry_code_refuses_a_division_under_the_wrong_section() -> None:
    with pytest.raises(ValueError, match="大类 39 属于门类 C"):
        normalize_industry_code("A39")


@pytest.mark.parametrize("raw", ["", "   ", "3", "C1", "C39111", "391122", "软件", "C-39"])
def test_normalize_industry_code_refuses_malformed_input(raw: str) -> None:
    with pytest.raises(ValueError, match="行业代码"):
        normalize_industry_code(raw)


def test_industry_name_falls_back_to_the_nearest_listed_level() -> None:
    assert industry_name("C3999") == "其他电子设备制造"
    assert industry_name("C1311") == "农副食品加工业"


def test_industry_name_is_none_for_an_invalid_code() -> None:
    assert industry_name("99") is None


def test_industry_section_returns_the_letter() -> None:
    assert industry_section("6513") == "I"
    assert industry_section("M") == "M"


def test_industry_division_returns_letter_and_two_digits() -> None:
    assert industry_division("3911") == "C39"
    assert industry_division("I652") == "I65"
    assert industry_division("C") is None


def test_province_has_all_21_prefectures() -> None:
    names = {row["code"]: row["name"] for row in list_regions("440000")}
    assert names == {
        "440100": "广州市",
        "440200": "韶关市",
        "440300": "深圳市",
        "440400": "珠海市",
        "440500": "汕头市",
        "440600": "佛山市",
        "440700": "江门市",
        "440800": "湛江市",
        "440900": "茂名市",
        "441200": "肇庆市",
        "441300": "惠州市",
        "441400": "梅州市",
        "441500": "汕尾市",
        "441600": "河源市",
        "441700": "阳江市",
        "441800": "清远市",
        "441900": "东莞市",
        "442000": "中山市",
        "445100": "潮州市",
        "445200": "揭阳市",
        "445300": "云浮市",
    }


@pytest.mark.parametrize(
    ("prefecture", "districts"),
    [
        (
            "440100",
            {
                "荔湾区",
                "越秀区",
                "海珠区",
                "天河区",
                "白云区",
                "黄埔区",
                "番禺区",
                "花都区",
                "南沙区",
                "从化区",
                "增城区",
            },
        ),
        ("440300", {"罗湖区", "福田区", "南山区", "宝安区", "龙岗区", "盐田区", "龙华区", "坪山区", "光明区"}),
        ("440400", {"香洲区", "斗门区", "金湾区"}),
        ("440600", {"禅城区", "南海区", "顺德区", "三水区", "高明区"}),
        ("441900", set()),
        ("442000", set()),
    ],
)
def test_prefecture_lists_its_districts(prefecture: str, districts: set[str]) -> None:
    rows = list_regions(prefecture)
    assert {row["name"] for row in rows} == districts
    assert all(row["level"] == "区县" and row["code"][:4] == prefecture[:4] for row in rows)


def test_every_province_and_prefecture_is_listed() -> None:
    """31 provincial-level divisions and 333 prefecture-level ones (GB/T 2260, 2023 edition)."""
    rows = list_regions()
    provinces = {row["code"]: row["name"] for row in rows if row["level"] == "省"}
    assert len(provinces) == 31
    assert provinces["110000"] == "北京市" and provinces["650000"] == "新疆维吾尔自治区"
    prefectures = [row for row in rows if row["level"] == "市"]
    assert len(prefectures) == 333
    assert all(row["parent"] == str(row["code"])[:2] + "0000" for row in prefectures)
    assert {row["name"] for row in list_regions("330000")} >= {"杭州市", "宁波市", "丽水市"}


@pytest.mark.parametrize(("municipality", "count"), [("110000", 16), ("120000", 16), ("310000", 16), ("500000", 38)])
def test_municipalities_list_their_districts_directly(municipality: str, count: int) -> None:
    rows = list_regions(municipality)
    assert len(rows) == count
    assert all(row["level"] == "区县" for row in rows)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("440106", "440106"),
        (" 440106 ", "440106"),
        ("４４０３０５", "440305"),
        ("442000", "442000"),
        ("110105", "110105"),
    ],
)
def test_normalize_region_code_accepts_listed_codes_and_codes_of_listed_provinces(raw: str, expected: str) -> None:
    assert normalize_region_code(raw) == expected


def test_normalize_region_code_refuses_a_province_not_in_the_table() -> None:
    with pytest.raises(ValueError, match="行政区划代码 990103 不在"):
        normalize_region_code("990103")


@pytest.mark.parametrize("raw", ["", "4401", "4401066", "44O106", "天河区"])
def test_normalize_region_code_refuses_anything_but_six_digits(raw: str) -> None:
    with pytest.raises(ValueError, match="应为6位数字"):
        normalize_region_code(raw)


@pytest.mark.parametrize(
    ("parent", "child", "contained"),
    [
        ("440000", "442000", True),
        ("442000", "442000", True),
        ("440000", "440106", True),
        ("440100", "440106", True),
        ("440100", "440100", True),
        ("440106", "440106", True),
        ("440100", "440300", False),
        ("440106", "440100", False),
        ("440100", "440000", False),
        ("440000", "110000", False),
        ("440106", "440105", False),
        ("441900", "442000", False),
    ],
)
def test_region_contains_follows_the_code_hierarchy(parent: str, child: str, contained: bool) -> None:
    assert region_contains(parent, child) is contained


def test_region_name_of_listed_and_unlisted_codes() -> None:
    assert region_name("440305") == "南山区"
    assert region_name("441900") == "东莞市"
    assert region_name("110105") == "朝阳区"
    assert region_name("330212") == "鄞州区"  # every county of every province is listed
    assert region_name("429004") == "仙桃市"  # a county-level city its province governs directly
    assert region_name("130171") is None  # development zones' statistics-only codes are not divisions
    assert region_name("330299") is None


def test_the_table_lists_every_county_level_division_once() -> None:
    counties = [r for r in list_regions() if r["level"] == "区县"]
    assert len(counties) == 2844  # as dist/areas.csv lists them, less the development zones
    assert len({r["code"] for r in counties}) == len(counties)
    assert {r["parent"] for r in list_regions(None) if r["code"] == "419001"} == {"410000"}


@pytest.mark.parametrize(
    ("code", "path"),
    [
        ("440106", ["440000", "440100", "440106"]),
        ("440100", ["440000", "440100"]),
        ("440000", ["440000"]),
        ("442000", ["440000", "442000"]),
        ("110105", ["110000", "110105"]),
        ("330212", ["330000", "330200", "330212"]),
    ],
)
def test_region_path_runs_from_province_down(code: str, path: list[str]) -> None:
    assert region_path(code) == path


def test_industries_are_found_by_words_and_resolved_by_name() -> None:
    """Issue 14 item 3: 软件开发 → I651 / I6513; a name that is no row offers the closest ones."""
    from core.codes import resolve_industry, search_industries

    assert [r["code"] for r in search_industries("软件开发")][:2] == ["I651", "I6511"]
    assert "I6513" in [r["code"] for r in search_industries("软件开发")]
    assert [r["code"] for r in search_industries("C391")][0] == "C391"
    assert resolve_industry("应用软件开发") == "I6513"
    assert resolve_industry(" c3911 ") == "C3911"
    with pytest.raises(ValueError, match="应用软件开发（I6513）"):
        resolve_industry("软件")
    with pytest.raises(ValueError, match="请换个说法"):
        resolve_industry("宇宙飞船维修")
    with pytest.raises(ValueError, match="格式不正确"):
        resolve_industry("C39111")
