"""Small text helpers shared by the field and condition extractors: sentences, numbers, dates."""

from __future__ import annotations

import datetime as dt
import re

_CN_DIGITS = {
    "〇": 0,
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}


def cn_number(text: str) -> int | None:
    """Return the value of a number written in digits or Chinese numerals (三, 十二, 二〇二三), else None."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    if all(ch in _CN_DIGITS for ch in text) and len(text) > 1:  # 二〇二三: digit by digit
        return int("".join(str(_CN_DIGITS[ch]) for ch in text))
    total, section, unit_seen = 0, 0, False
    num = 0
    for ch in text:
        if ch in _CN_DIGITS:
            num = _CN_DIGITS[ch]
        elif ch == "十":
            section += (num or 1) * 10
            num, unit_seen = 0, True
        elif ch == "百":
            section += (num or 1) * 100
            num, unit_seen = 0, True
        elif ch == "千":
            section += (num or 1) * 1000
            num, unit_seen = 0, True
        else:
            return None
    total = section + num
    return total if (unit_seen or total or text in ("〇", "零")) else None


_SENTENCE_END = re.compile(r"(?<=[。;；!！?？])|\n")


def sentences(text: str) -> list[str]:
    """Split text into sentences (at 。；！？ and line ends), stripped, non-empty."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
DATE_RE = re.compile(
    r"(\d{4}|[二〇零一三四五六七八九]{4})\s*年\s*([\d一二三四五六七八九十]{1,3})\s*月\s*([\d一二三四五六七八九十]{1,3})\s*日"
)
DATE_ISO = re.compile(r"(?<!\d)(\d{4})[-./](\d{1,2})[-./](\d{1,2})(?!\d)")


def to_number(text: str) -> float:
    return float(text.replace(",", ""))


def make_date(y: str, m: str, d: str) -> dt.date | None:
    year, month, day = cn_number(y), cn_number(m), cn_number(d)
    if year is None or month is None or day is None:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def find_dates(text: str) -> list[tuple[int, dt.date]]:
    """Return (position, date) of every full date (2023年3月15日, 二〇二三年三月十五日, 2023-03-15)."""
    found: list[tuple[int, dt.date]] = []
    for m in DATE_RE.finditer(text):
        d = make_date(*m.groups())
        if d:
            found.append((m.start(), d))
    for m in DATE_ISO.finditer(text):
        d = make_date(*m.groups())
        if d:
            found.append((m.start(), d))
    found.sort(key=lambda x: x[0])
    return found


def amount_wan(value: str, unit: str) -> float:
    """Convert an amount to 万元."""
    number = to_number(value)
    if unit.startswith("亿"):
        return number * 10000
    if unit in ("元",):
        return number / 10000
    if unit.startswith("千万"):
        return number * 1000
    if unit.startswith("百万"):
        return number * 100
    return number
