"""Unified social credit codes (统一社会信用代码, GB 32100-2015): validation and generation.

Validity is decided by python-stdnum's stdnum.cn.uscc; this module only turns its
verdict into a precise Chinese reason and builds valid codes for demo data.
"""

from __future__ import annotations

import random
import re
import unicodedata

from stdnum.cn import uscc
from stdnum.exceptions import InvalidChecksum, InvalidFormat, InvalidLength, ValidationError

CREDIT_CODE_LENGTH = 18

# GB 32100 alphabet: digits and capitals without I, O, Z, S, V (kept in step with stdnum).
_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_ALPHABET_SET = frozenset(_ALPHABET)
_DIGITS = "0123456789"

# GB 11714 organisation code: 8 body characters weighted 3,7,9,10,5,8,4,2; letters count A=10 … Z=35.
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_VALUES = {c: int(c, 36) for c in _ALPHABET}

_REGION_SHAPE = re.compile(r"^\d{6}$")

# 登记管理部门代码 9 = 工商 (market regulation), 机构类别 1 = 企业.
_ENTERPRISE_PREFIX = "91"


def validate_credit_code(raw: str) -> str:
    """Return the compact upper-case credit code, or raise ValueError with a Chinese reason."""
    if raw is None or not str(raw).strip():
        raise ValueError("统一社会信用代码不能为空")
    # NFKC folds full-width characters typed with a Chinese IME; lower case is normal input.
    code = uscc.compact(unicodedata.normalize("NFKC", str(raw)))
    try:
        return uscc.validate(code)
    except InvalidLength:
        raise ValueError(f"统一社会信用代码应为{CREDIT_CODE_LENGTH}位，实际{len(code)}位") from None
    except InvalidFormat:
        raise ValueError(_format_reason(code)) from None
    except InvalidChecksum:
        raise ValueError("统一社会信用代码校验位错误，请核对是否有录入错误") from None
    except ValidationError:
        raise ValueError("统一社会信用代码无效") from None


def is_valid_credit_code(raw: str) -> bool:
    """Tell whether raw is a valid unified social credit code."""
    try:
        validate_credit_code(raw)
    except ValueError:
        return False
    return True


def _format_reason(code: str) -> str:
    for position, char in enumerate(code, start=1):
        if position <= 8 and char not in _DIGITS:
            return f"统一社会信用代码第{position}位“{char}”无效：前8位（登记管理部门、机构类别和行政区划码）应为数字"
        if position > 8 and char not in _ALPHABET_SET:
            return f"统一社会信用代码第{position}位“{char}”无效：只能是数字或除 I、O、Z、S、V 以外的大写字母"
    return "统一社会信用代码包含无效字符"


def organization_check_digit(body: str) -> str:
    """Return the GB 11714 check character for an 8-character organisation code body."""
    total = sum(_ORG_VALUES[c] * w for c, w in zip(body, _ORG_WEIGHTS, strict=True))
    remainder = 11 - total % 11
    if remainder == 10:
        return "X"
    return "0" if remainder == 11 else str(remainder)


def make_credit_code(rng: random.Random, region_code: str) -> str:
    """Generate a valid enterprise credit code registered in region_code, deterministic for rng."""
    if not _REGION_SHAPE.match(region_code):
        raise ValueError(f"行政区划代码 {region_code} 格式不正确，应为6位数字")
    # Codes issued since 2015 carry an "MA…" organisation code; older firms kept a numeric one.
    new_style = rng.random() < 0.5
    body = "MA" + "".join(rng.choices(_ALPHABET, k=6)) if new_style else "".join(rng.choices(_DIGITS, k=8))
    first17 = _ENTERPRISE_PREFIX + region_code + body + organization_check_digit(body)
    return first17 + uscc.calc_check_digit(first17)
