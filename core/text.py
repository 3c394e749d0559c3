"""Text normalisation for everything that is searched or matched: NFKC, traditional → simplified."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

_SPACES = re.compile(r"\s+")
# Mainland mobile numbers: 11 digits, 1 then 3–9 (after stripping +86 / 0086 and separators).
_MOBILE = re.compile(r"1[3-9]\d{9}")
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Convert traditional Chinese characters to simplified ones."""
    return _t2s().convert(text) if text else text


def normalize(text: str | None) -> str:
    """Return text in NFKC form, simplified, with runs of whitespace collapsed."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    text = to_simplified(text)
    return _SPACES.sub(" ", text).strip()


def mask_phone(phone: str | None) -> str | None:
    """Mask the middle of a phone number (138****5678) for listings and logs."""
    if not phone:
        return phone
    digits = phone.strip()
    if len(digits) <= 4:
        return "*" * len(digits)
    keep_head = 3 if len(digits) >= 7 else 1
    return digits[:keep_head] + "*" * (len(digits) - keep_head - 4) + digits[-4:]


def mask_name(name: str | None) -> str | None:
    """Mask a person's name except its first character (张**)."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


def normalize_phone(phone: str) -> str | None:
    """Return a mainland mobile number as 11 digits (dropping +86 and separators), or None if it is not one."""
    digits = _PHONE_SEPARATORS.sub("", phone or "")
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
            break
    return digits if _MOBILE.fullmatch(digits) else None
