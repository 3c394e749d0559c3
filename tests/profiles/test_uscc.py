"""Unified social credit codes: validation reasons and generated codes."""

from __future__ import annotations

import random

import pytest
from stdnum.cn import uscc

from profiles.uscc import is_valid_credit_code, make_credit_code, organization_check_digit, validate_credit_code

# Each verified valid with stdnum.cn.uscc.
VALID = ["91110000600037341L", "914403001922038216", "91440300708461136T"]


@pytest.mark.parametrize("code", VALID)
def test_valid_code_is_returned_unchanged(code: str) -> None:
    assert validate_credit_code(code) == code


def test_lower_case_input_is_accepted_and_upper_cased() -> None:
    assert validate_credit_code("91440300708461136t") == "91440300708461136T"
    assert validate_credit_code("91110000600037341l") == "91110000600037341L"


def test_spaces_hyphens_and_full_width_characters_are_tolerated() -> None:
    assert validate_credit_code(" 9144 0300 7084 6113 6T ") == "91440300708461136T"
    assert validate_credit_code("91440300-708461136-T") == "91440300708461136T"
    assert validate_credit_code("９１４４０３００７０８４６１１３６ｔ") == "91440300708461136T"


@pytest.mark.parametrize(
    "code", ["91110000600037341A", "914403001922038217", "91440300708461136U", "91440300708461163T"]
)
def test_bad_check_digit_is_refused(code: str) -> None:
    with pytest.raises(ValueError, match="校验位错误"):
        validate_credit_code(code)


@pytest.mark.parametrize(("code", "actual"), [("9144030070846113", 16), ("914403007084611367T", 19), ("9", 1)])
def test_wrong_length_is_refused_with_the_actual_length(code: str, actual: int) -> None:
    with pytest.raises(ValueError, match=f"应为18位，实际{actual}位"):
        validate_credit_code(code)


def test_letter_in_the_first_eight_positions_is_refused_with_its_position() -> None:
    with pytest.raises(ValueError, match="第1位“A”无效"):
        validate_credit_code("A1110000600037341L")


@pytest.mark.parametrize(
    ("code", "position", "char"), [("9144030070846113I6", 17, "I"), ("91440300708461O36T", 15, "O")]
)
def test_excluded_letter_is_refused_with_its_position(code: str, position: int, char: str) -> None:
    with pytest.raises(ValueError, match=f"第{position}位“{char}”无效"):
        validate_credit_code(code)


def test_chinese_character_is_refused_as_invalid() -> None:
    with pytest.raises(ValueError, match="无效"):
        validate_credit_code("91440300708461136号")


@pytest.mark.parametrize("raw", ["", "   "])
def test_empty_input_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="不能为空"):
        validate_credit_code(raw)


def test_is_valid_credit_code_reports_without_raising() -> None:
    assert is_valid_credit_code("91440300708461136T")
    assert not is_valid_credit_code("91440300708461136U")


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ("60003734", "1"),  # organisation codes inside the valid codes above
        ("19220382", "1"),
        ("70846113", "6"),
        ("00000001", "9"),  # 2 → 11 − 2
        ("00000006", "X"),  # 12 ≡ 1 (mod 11) → 10 → X
        ("00000000", "0"),  # 0 → 11 → 0
    ],
)
def test_organization_check_digit_follows_gb_11714(body: str, check: str) -> None:
    assert organization_check_digit(body) == check


@pytest.mark.parametrize("region", ["440106", "440305", "442000", "110000"])
def test_generated_codes_are_always_valid(region: str) -> None:
    rng = random.Random(region)
    for _ in range(2000):
        code = make_credit_code(rng, region)
        assert uscc.is_valid(code)
        assert validate_credit_code(code) == code
        assert code[:8] == "91" + region
        assert organization_check_digit(code[8:16]) == code[16]


def test_generation_is_deterministic_for_a_seed() -> None:
    first = [make_credit_code(random.Random(7), "440106") for _ in range(3)]
    again = [make_credit_code(random.Random(7), "440106") for _ in range(3)]
    assert first == again
    rng = random.Random(7)
    assert len({make_credit_code(rng, "440106") for _ in range(1000)}) == 1000


@pytest.mark.parametrize("region", ["4401", "44010A", ""])
def test_generation_refuses_a_malformed_region_code(region: str) -> None:
    with pytest.raises(ValueError, match="6位数字"):
        make_credit_code(random.Random(1), region)
