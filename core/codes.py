"""Industry (GB/T 4754-2017) and administrative region (GB/T 2260) code tables.

Both tables live as CSV files in core/data and are read once, on first use.
Industry codes are stored in the canonical "section letter + digits" form
(C, C39, C391, C3911); region codes are six-digit strings.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

INDUSTRY_LEVELS = ("门类", "大类", "中类", "小类")
REGION_LEVELS = ("国家", "省", "市", "区县")
# Pseudo-code for the whole country: departments of the State Council sit here; it contains every region.
NATIONAL_REGION = "100000"

_STANDARD = "《国民经济行业分类》(GB/T 4754-2017)"
_INDUSTRY_SHAPE = re.compile(r"^([A-Z]?)(\d*)$")
_REGION_SHAPE = re.compile(r"^\d{6}$")


@dataclass(frozen=True)
class CodeRow:
    """One row of a code table."""

    code: str
    name: str
    level: str
    parent: str | None

    def as_dict(self) -> dict[str, str | None]:
        """Return the row as a plain dict (parent is None at the top level)."""
        return {"code": self.code, "name": self.name, "level": self.level, "parent": self.parent}


def _read_table(filename: str, levels: tuple[str, ...]) -> dict[str, CodeRow]:
    text = (resources.files("core") / "data" / filename).read_text(encoding="utf-8")
    rows: dict[str, CodeRow] = {}
    for record in csv.DictReader(text.splitlines()):
        code = record["code"].strip()
        level = record["level"].strip()
        parent = record["parent"].strip() or None
        # A broken table must fail loudly at load time, not mislabel firms later.
        if level not in levels:
            raise RuntimeError(f"{filename}: unknown level {level!r} for code {code}")
        if code in rows:
            raise RuntimeError(f"{filename}: duplicate code {code}")
        if parent is not None and parent not in rows:
            raise RuntimeError(f"{filename}: parent {parent} of {code} must precede it")
        rows[code] = CodeRow(code, record["name"].strip(), level, parent)
    return rows


@cache
def _industries() -> dict[str, CodeRow]:
    return _read_table("industries.csv", INDUSTRY_LEVELS)


@cache
def _section_of_division() -> dict[str, str]:
    """Map each two-digit 大类 number to its 门类 letter."""
    return {row.code[1:]: row.code[0] for row in _industries().values() if row.level == "大类"}


@cache
def _regions() -> dict[str, CodeRow]:
    return _read_table("regions.csv", REGION_LEVELS)


def _clean(raw: object) -> str:
    # NFKC folds full-width letters and digits typed with a Chinese IME.
    return unicodedata.normalize("NFKC", str(raw)).strip().upper()


def normalize_industry_code(raw: str) -> str:
    """Return an industry code in canonical letter+digits form, or raise ValueError."""
    if raw is None:
        raise ValueError("行业代码不能为空")
    text = _clean(raw).replace(" ", "")
    if not text:
        raise ValueError("行业代码不能为空")
    shape = _INDUSTRY_SHAPE.match(text)
    if shape is None or len(shape.group(2)) not in (0, 2, 3, 4):
        raise ValueError(f"行业代码 {text} 格式不正确，应为门类字母加2至4位数字，如 C3911、I65 或 C")
    letter, digits = shape.groups()
    if letter and letter not in _industries():
        raise ValueError(f"行业代码 {text} 不在{_STANDARD}中")
    if not digits:
        return letter
    section = _section_of_division().get(digits[:2])
    if section is None:
        raise ValueError(f"行业代码 {text} 不在{_STANDARD}中")
    if letter and letter != section:
        raise ValueError(f"行业代码 {text} 的门类与大类不符：大类 {digits[:2]} 属于门类 {section}")
    return section + digits


def industry_section(code: str) -> str:
    """Return the 门类 letter of an industry code."""
    return normalize_industry_code(code)[0]


def industry_division(code: str) -> str | None:
    """Return the 大类 code (e.g. "C39") of an industry code, None for a bare 门类."""
    canonical = normalize_industry_code(code)
    return canonical[:3] if len(canonical) >= 3 else None


def industry_name(code: str) -> str | None:
    """Return the name of the most specific known level of an industry code, None if invalid."""
    try:
        canonical = normalize_industry_code(code)
    except ValueError:
        return None
    table = _industries()
    # Finer codes absent from the table fall back to their nearest listed ancestor.
    for length in range(len(canonical), 0, -1):
        row = table.get(canonical[:length])
        if row is not None:
            return row.name
    return None


def list_industries(level: str | None = None) -> list[dict[str, str | None]]:
    """List industry table rows in standard order, optionally only one level."""
    if level is not None and level not in INDUSTRY_LEVELS:
        raise ValueError(f"行业层级 {level} 无效，应为{'、'.join(INDUSTRY_LEVELS)}之一")
    return [row.as_dict() for row in _industries().values() if level is None or row.level == level]


def search_industries(query: str, limit: int = 20) -> list[dict[str, str | None]]:
    """Find industry rows by words or code: "软件开发" → 软件开发 (I651), 应用软件开发 (I6513) ….

    Codes match by prefix; names by containing every character run of the query. Exact names come
    first, then names that start with the query, then the rest; finer levels before coarser ones.
    """
    text = unicodedata.normalize("NFKC", str(query or "")).strip()
    if not text:
        return []
    upper = text.upper().replace(" ", "")
    words = [w for w in re.split(r"[\s,，、/]+", text) if w]
    order = {level: i for i, level in enumerate(reversed(INDUSTRY_LEVELS))}
    hits: list[tuple[tuple[int, int, int], CodeRow]] = []
    for position, row in enumerate(_industries().values()):
        if _INDUSTRY_SHAPE.match(upper) and row.code.startswith(upper):
            hits.append(((0, len(row.code), position), row))
        elif words and all(w in row.name for w in words):
            closeness = 0 if row.name == text else 1 if row.name.startswith(text) else 2
            hits.append(((closeness, order.get(row.level, 9), position), row))
    hits.sort(key=lambda h: h[0])
    return [row.as_dict() for _, row in hits[: max(1, limit)]]


def resolve_industry(raw: str) -> str:
    """Return the industry code a person typed, as a code (C3911) or an exact name (应用软件开发).

    Raise ValueError naming the closest rows when neither matches.
    """
    try:
        return normalize_industry_code(raw)
    except ValueError:
        text = unicodedata.normalize("NFKC", str(raw or "")).strip()
        if not text or _INDUSTRY_SHAPE.match(text.upper().replace(" ", "")) or text.isascii():
            raise
        exact = [row for row in _industries().values() if row.name == text]
        if exact:
            return exact[-1].code  # the finest level of that name
        close = search_industries(text, limit=5)
        if not close:
            raise ValueError(f"没有名称含「{text}」的行业，请换个说法，或填写行业代码（如 I6513）") from None
        names = "、".join(f"{row['name']}（{row['code']}）" for row in close)
        raise ValueError(f"没有名称为「{text}」的行业，您要找的是不是：{names}") from None


def _province_of(code: str) -> str:
    return code[:2] + "0000"


def _prefecture_of(code: str) -> str:
    return code[:4] + "00"


def _region_shape(raw: object) -> str:
    if raw is None:
        raise ValueError("行政区划代码不能为空")
    text = _clean(raw)
    if not _REGION_SHAPE.match(text):
        raise ValueError(f"行政区划代码 {text or '（空）'} 格式不正确，应为6位数字")
    return text


def normalize_region_code(raw: str) -> str:
    """Return a six-digit region code known to the table (at least by province), or raise ValueError."""
    code = _region_shape(raw)
    table = _regions()
    if code not in table and _province_of(code) not in table:
        raise ValueError(f"行政区划代码 {code} 不在已收录的行政区划(GB/T 2260)中")
    return code


def region_contains(parent: str, child: str) -> bool:
    """Tell whether region parent contains region child (a region contains itself)."""
    outer = _region_shape(parent)
    inner = _region_shape(child)
    if outer == NATIONAL_REGION:
        return True
    if outer.endswith("0000"):
        return inner[:2] == outer[:2]
    if outer.endswith("00"):
        return inner[:4] == outer[:4]
    return inner == outer


def region_name(code: str) -> str | None:
    """Return the name of a region code, None when the table does not list it."""
    try:
        row = _regions().get(_region_shape(code))
    except ValueError:
        return None
    return row.name if row else None


def region_path(code: str) -> list[str]:
    """Return the codes from the province down to the region itself (e.g. 440000, 440100, 440106)."""
    canonical = normalize_region_code(code)
    table = _regions()
    path = [_province_of(canonical)]
    prefecture = _prefecture_of(canonical)
    # Only listed prefectures appear: 110105 has no "110100" row, so its path skips that level.
    if prefecture not in path and prefecture != canonical and prefecture in table:
        path.append(prefecture)
    if canonical not in path:
        path.append(canonical)
    return path


def list_regions(parent: str | None = None) -> list[dict[str, str | None]]:
    """List all region rows, or only the direct children of parent when given."""
    rows = _regions().values()
    if parent is None:
        return [row.as_dict() for row in rows]
    key = _region_shape(parent)
    return [row.as_dict() for row in rows if row.parent == key]
