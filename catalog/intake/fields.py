"""Find a policy's fields in its text, each with the sentence it came from.

Title, 发文机关, 文号, 发布日期, 施行/有效期, 申报时间 window, 支持标准 amounts, contact (person,
phone, address), application link, level and region. Rules are plain patterns over the usual layout
of a Chinese government notice (红头文件): title and 文号 on top, signature and date at the bottom.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from catalog.intake.extract import heading_level
from catalog.intake.text import DATE_RE, NUM, amount_wan, cn_number, find_dates, sentences
from core import codes


@dataclass
class Proposal:
    """One proposed value with its evidence."""

    value: Any
    source: str
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if isinstance(self.value, dt.date):
            out["value"] = self.value.isoformat()
        return out


_TITLE_END = re.compile(
    r"(通知|办法|意见|措施|细则|指南|公告|规定|方案|决定|通告|规程|政策|函|计划|条例|清单|批复|公示|规划|若干措施|实施意见|"
    r"条件|要求|说明|摘编|摘录|标准|材料|(征求意见稿)|（征求意见稿）|(摘录)|（摘录）|(摘要)|（摘要）)$"
)
DOC_NUMBER = re.compile(
    r"([\u4e00-\u9fa5]{1,14}(?:[〔\[［【(（]\s*(?:19|20)\d{2}\s*[〕\]］】)）]|(?:19|20)\d{2}年?)\s*第?\s*\d{1,4}\s*号)"
)
_ORG_END = (
    "人民政府办公厅", "人民政府办公室", "人民政府", "委员会", "管理委员会", "管委会", "办公厅", "办公室", "局", "厅", "部",
    "委", "署", "中心", "总局", "银行", "协会", "领导小组",
)  # fmt: skip
_ORG = re.compile(r"^[\u4e00-\u9fa5（）()“”]{3,40}(" + "|".join(_ORG_END) + r")$")
_PHONE = re.compile(r"(?<![\d-])((?:0\d{2,3}[-－—]?)?[2-9]\d{6,7}(?:[-－转]\d{1,5})?|1[3-9]\d{9})(?!\d)")
_URL = re.compile(r"https?://[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")
_APPLY_WORDS = re.compile(r"申报|申请|登录|网址|系统|平台|填报|网站")
_SUPPORT_WORDS = re.compile(r"奖励|补助|资助|补贴|奖补|扶持|贴息|支持|给予|最高|额度|发放|券")
_AMOUNT_LEAD = re.compile(
    rf"(?:最高|最多|不超过|不高于|上限为?|给予|奖励|资助|补助|补贴|奖补|一次性|每[户家个项年]|共)[^。；;，,]{{0,10}}?({NUM})\s*(亿元|万元|元)"
)
_AMOUNT_BLOCK = re.compile(
    r"收入|营收|销售|投资|投入|资产|产值|注册资本|规模|纳税|税收|总额达|贷款额|增长|增加|零售额|交易额"
)


@cache
def _region_names() -> list[tuple[str, str, str]]:
    """(name, code, level) of every region in the table, longest names first; also short forms (龙华)."""
    rows = [r for r in codes.list_regions() if r["level"] != "国家"]
    out: list[tuple[str, str, str]] = []
    by_code = {str(r["code"]): str(r["name"]) for r in rows}
    for r in rows:
        name, code, level = str(r["name"]), str(r["code"]), str(r["level"])
        out.append((name, code, level))
        # A county's short name right after its city's (成都龙泉驿, 宁波余姚, 北京海淀) names it unambiguously.
        short = re.sub(r"(?:自治县|自治旗|新区|区|县|市|旗)$", "", name)
        if level == "区县" and short != name and len(short) >= 2:
            outer = code[:4] + "00" if code[:4] + "00" in by_code else code[:2] + "0000"
            for form in {
                by_code.get(outer, ""),
                re.sub(r"(?:维吾尔|壮族|回族)?自治区$|省$|市$", "", by_code.get(outer, "")),
            }:
                if len(form) >= 2:
                    out.append((form + short, code, level))
    out.sort(key=lambda x: len(x[0]), reverse=True)
    return out


@cache
def _region_names_by_first_char() -> dict[str, list[tuple[int, tuple[str, str, str]]]]:
    """`_region_names` rows keyed by their first character, each with its place in that list."""
    out: dict[str, list[tuple[int, tuple[str, str, str]]]] = {}
    for i, row in enumerate(_region_names()):
        out.setdefault(row[0][0], []).append((i, row))
    return out


@cache
def _county_name_counts() -> dict[str, int]:
    """How many county-level divisions bear each name (鼓楼区 ×4, 城关区 ×2 …)."""
    counts: dict[str, int] = {}
    for name, _, level in _region_names():
        if level == "区县":
            counts[name] = counts.get(name, 0) + 1
    return counts


def _place_forms(code: str) -> list[str]:
    """The names of a region as a text may write them: 厦门市 and 厦门."""
    name = codes.region_name(code)
    if not name:
        return []
    short = re.sub(r"(?:维吾尔|壮族|回族)?自治区$|省$|市$", "", name)
    return [name, short] if short != name and len(short) >= 2 else [name]


def _named_within(code: str, context: str, home: str | None) -> bool:
    """Whether the context names the county's prefecture or province, or the issuer's region holds it."""
    if home and home != codes.NATIONAL_REGION and codes.region_contains(home, code):
        return True
    for outer in (code[:4] + "00", code[:2] + "0000"):
        if outer != code and any(form in context for form in _place_forms(outer)):
            return True
    return False


@cache
def _short_region_names() -> list[tuple[str, str, str]]:
    """Provinces and prefecture-level cities by their short names (江苏, 杭州), where the short name is unique."""
    full = {name for name, _, _ in _region_names()}
    found: dict[str, list[tuple[str, str, str]]] = {}
    for name, code, level in _region_names():
        if level not in ("省", "市"):
            continue
        short = re.sub(r"(?:维吾尔|壮族|回族)?自治区$|省$|市$", "", name)
        if short != name and len(short) >= 2 and short not in full:
            found.setdefault(short, []).append((short, code, level))
    return sorted((rows[0] for rows in found.values() if len(rows) == 1), key=lambda r: len(r[0]), reverse=True)


def find_region(
    text: str, *, short_names: bool = False, context: str | None = None, home: str | None = None
) -> tuple[str, str, str] | None:
    """Return (name, code, level) of the most specific region named in the text.

    With short_names, a province or city named without its suffix right after 在 (在杭州注册, 在江苏境内)
    counts too. A county name that several counties share (鼓楼区, 城关区) or that is a bare two-character
    word (城区, 矿区) is taken only when the text or ``context`` names its city or province, or the issuer's
    region ``home`` holds it, and only one such county fits; otherwise it names no region.
    """
    best: tuple[str, str, str] | None = None
    rank = {"省": 1, "市": 2, "区县": 3}
    if short_names:
        names = [row for row in _short_region_names() if "在" + row[0] in text]
    else:
        by_char = _region_names_by_first_char()
        names = [row for _, row in sorted(hit for ch in set(text) for hit in by_char.get(ch, ()))]
    counts = _county_name_counts()
    around = text + "\n" + (context or "")
    fitting: dict[str, list[str]] = {}
    for name, code, level in names:
        if name not in text or (best is not None and rank.get(level, 0) <= rank.get(best[2], 0)):
            continue
        if level == "区县" and (counts.get(name, 0) > 1 or len(name) <= 2):
            if name not in fitting:
                fitting[name] = [
                    c for n, c, lv in _region_names() if n == name and lv == "区县" and _named_within(c, around, home)
                ]
            if fitting[name] != [code]:
                continue
        best = (name, code, level)
    return best


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def find_title(text: str) -> Proposal | None:
    lines = _lines(text)[:25]
    for i, line in enumerate(lines):
        if len(line) > 160 or DOC_NUMBER.fullmatch(line) or heading_level(line) is not None:
            continue
        if re.match(r"[(（]?\d{1,2}[)）]", line):
            continue  # "2）申报条件": an item of a list, not a title
        if i > 0 and re.fullmatch(r"《[^》]+》\s*(?:[(（][^()（）]{2,30}[)）])?", line):
            continue  # a cited document (政策依据), with its 文号 or not, is not this one's title
        if i > 0 and re.match(r"[\u4e00-\u9fa5]{2,6}[:：]", line):
            continue  # "政策依据：《…的通知》", "咨询部门：…": a labelled line, not the title
        candidate = line
        # A title wrapped over two or three lines: join until it ends like a title.
        for j in range(i, min(i + 3, len(lines))):
            if j > i:
                if heading_level(lines[j]) is not None or DOC_NUMBER.fullmatch(lines[j]):
                    break
                candidate += lines[j]
            if (
                _TITLE_END.search(candidate.rstrip("》 "))
                and ("关于" in candidate or "《" in candidate or j == i)
                and 6 <= len(candidate) <= 200
                and not re.search(r"[。；;]", candidate)
            ):
                title = candidate.strip()
                if title.startswith("《") and title.endswith("》") and title.count("《") == 1:
                    title = title[1:-1]
                return Proposal(title, candidate, 0.9 if "关于" in title else 0.7)
    for line in lines[:5]:
        if (
            6 <= len(line) <= 100
            and not DOC_NUMBER.fullmatch(line)
            and not line.endswith(("：", ":"))
            and heading_level(line) is None
        ):
            return Proposal(line, line, 0.4)
    return None


def find_doc_number(text: str) -> Proposal | None:
    lines = _lines(text)
    for line in lines[:15]:
        m = DOC_NUMBER.search(line)
        if m and len(line) <= len(m.group(1)) + 12 and "《" not in line:
            return Proposal(_clean_doc_number(m.group(1)), line, 0.95)
    return None


def _clean_doc_number(raw: str) -> str:
    text = re.sub(r"\s+", "", raw)
    text = re.sub(r"[\[［【(（](\d{4})[\]］】)）]", r"〔\1〕", text)
    return text


def find_issuer(text: str, title: str | None) -> Proposal | None:
    lines = _lines(text)
    # The signature: one or more organisation lines right above the date at the end.
    tail = lines[-12:]
    for i in range(len(tail) - 1, -1, -1):
        if DATE_RE.fullmatch(tail[i].replace(" ", "")) or re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日", tail[i]):
            orgs: list[str] = []
            k = i - 1
            while k >= 0 and _ORG.match(tail[k].replace(" ", "")):
                parts = tail[k].split()
                # "烟台市商务局 烟台市财政局": joint issuers signing on one line
                joint = len(parts) > 1 and all(_ORG.match(part) for part in parts)
                orgs[:0] = parts if joint else [tail[k].replace(" ", "")]
                k -= 1
            if not orgs:
                # "XX局2023年3月15日" on one line
                m = re.match(r"^([\u4e00-\u9fa5]{3,40}?(?:" + "|".join(_ORG_END) + r"))\s*" + DATE_RE.pattern, tail[i])
                if m:
                    orgs = [m.group(1)]
            if orgs:
                return Proposal("、".join(orgs), "\n".join([*orgs, tail[i]]), 0.9)
            break
    # A page's metadata line: "发布机构：无锡市惠山区科技局", "制发机关 李沧区人民政府办公室".
    for line in lines[:20]:
        m = _ISSUER_LABEL.match(line)
        if m and _ORG.match(m.group(1).replace("、", "")):
            return Proposal(m.group(1), line, 0.85)
    last = tail[-1].replace(" ", "") if tail else ""
    if _ORG.match(last) and len(last) <= 30:
        return Proposal(last, last, 0.6)
    inline = re.search(
        r"([\u4e00-\u9fa5]{3,40}?(?:" + "|".join(_ORG_END) + r"))\s*" + DATE_RE.pattern + r"\s*(?:附件|$|\(|（)",
        text[-400:],
    )
    if inline:
        return Proposal(inline.group(1), inline.group(0), 0.75)
    if title and "关于" in title:
        head = title.split("关于", 1)[0].strip()
        if 3 <= len(head) <= 60:
            parts = head.split()
            if len(parts) > 1 and all(_ORG.match(part) for part in parts):
                head = "、".join(parts)  # "烟台市商务局 烟台市财政局关于…": joint issuers
            return Proposal(head, title, 0.8)
    return None


_ISSUER_LABEL = re.compile(
    r"^\s*[|｜]?\s*(?:发布机构|发文机关|发文单位|发布单位|制发机关|发文机构|成文机关)\s*[:：|｜]?\s*"
    r"([\u4e00-\u9fa5（）()、]{3,60}?)\s*(?:[|｜].*)?$"
)


def find_published_on(text: str) -> Proposal | None:
    lines = _lines(text)
    for line in reversed(lines[-12:]):
        compact = line.replace(" ", "")
        m = DATE_RE.search(compact)
        if (
            m
            and (m.end() == len(compact) or compact[m.end() :].startswith(("(", "（")))
            and len(compact) - len(m.group(0)) <= 40
        ):
            dates = find_dates(compact)
            if dates:
                return Proposal(dates[-1][1], line, 0.85)
    # "现将《…细则》印发给你们…": the cover notice's signature (bodies, then a date line) opens the text and
    # the attached rules follow without one of their own.
    head = lines[:15]
    for i in range(1, len(head)):
        compact = head[i].replace(" ", "")
        if re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日", compact) and all(
            _ORG.match(part) for part in head[i - 1].split()
        ):
            dates = find_dates(compact)
            if dates:
                return Proposal(dates[-1][1], head[i - 1] + "\n" + head[i], 0.75)
    tail = text[-300:]
    dates = find_dates(tail)
    if dates:
        pos, date = dates[-1]
        return Proposal(date, tail[max(0, pos - 30) : pos + 15], 0.5)
    return None


def _date_after(text: str, base_year: int | None) -> list[dt.date]:
    """Full and partial dates in order: 2023年3月16日-3月23日 gives both (the year carried over)."""
    out: list[dt.date] = []
    year = base_year
    month: int | None = None
    pattern = re.compile(
        r"(?:(\d{4}|[二〇零一三四五六七八九]{4})\s*年)?\s*(?:([\d一二三四五六七八九十]{1,3})\s*月)?\s*([\d一二三四五六七八九十]{1,3})\s*日"
    )
    for m in pattern.finditer(text):
        y, mo, d = m.groups()
        if y:
            year = cn_number(y)
        if mo:
            month = cn_number(mo)
        if year is None or month is None:
            continue
        day = cn_number(d)
        try:
            out.append(dt.date(year, month, day or 0))
        except (ValueError, TypeError):
            continue
    return out


_WINDOW_WORDS = re.compile(
    r"申报时限|申请时限|申报时间|受理时间|申报截止|截止时间|截止日期|申报期限|报送时间|申请时间|申报日期|受理期限|集中受理|网上申报时间|起止时间"
)


def find_apply_window(text: str, year_hint: int | None) -> tuple[Proposal | None, Proposal | None]:
    start: Proposal | None = None
    end: Proposal | None = None
    all_sentences = sentences(text)
    for i, s in enumerate(all_sentences):
        if not _WINDOW_WORDS.search(s) and not re.search(
            r"(前|之前)\s*(将|把|报送|提交|完成|登录|向)|逾期不予受理|截止", s
        ):
            continue
        dates = _date_after(s, year_hint)
        if not dates and len(s) <= 20 and i + 1 < len(all_sentences):
            s = s + all_sentences[i + 1]  # "三、申报时间" on its own line, the dates below it
            dates = _date_after(s, year_hint)
        if not dates:
            continue
        if len(dates) >= 2 and re.search(r"[至到\-－—~～]", s):
            if start is None:
                start = Proposal(dates[0], s, 0.85)
            if end is None:
                end = Proposal(dates[1], s, 0.85)
        elif end is None and re.search(r"前|截止|截至|为止|止", s):
            end = Proposal(dates[-1], s, 0.75)
        elif start is None and re.search(r"起|开始", s):
            start = Proposal(dates[0], s, 0.7)
        if start and end:
            break
    return start, end


def find_validity(text: str) -> tuple[Proposal | None, Proposal | None]:
    start: Proposal | None = None
    end: Proposal | None = None
    for s in sentences(text):
        if not re.search(r"施行|实施|执行|有效期|生效", s):
            continue
        dates = find_dates(s)
        m_from = re.search(r"自\s*(" + DATE_RE.pattern + r")\s*起", s)
        if m_from and start is None:
            from_dates = find_dates(m_from.group(1))
            if from_dates:
                start = Proposal(from_dates[0][1], s, 0.85)
        m_to = re.search(r"有效期(?:至|到|截至)\s*(" + DATE_RE.pattern + ")", s)
        if m_to and end is None:
            to_dates = find_dates(m_to.group(1))
            if to_dates:
                end = Proposal(to_dates[0][1], s, 0.85)
        m_years = re.search(r"有效期\s*(?:为)?\s*([\d一二三四五六七八九十两]+)\s*年", s)
        if m_years and end is None and start is not None:
            years = cn_number(m_years.group(1)) or 0
            with contextlib.suppress(ValueError):
                end = Proposal(start.value.replace(year=start.value.year + years) - dt.timedelta(days=1), s, 0.75)
        if start is None and dates and re.search(r"起施行|起实施|起生效", s):
            start = Proposal(dates[0][1], s, 0.7)
        m_until = re.search(r"(?:执行|施行|实施)[^。；;]{0,12}?(" + DATE_RE.pattern + r")\s*(?:截止|止|为止)", s)
        if m_until and end is None:
            until = find_dates(m_until.group(1))
            if until:
                end = Proposal(until[0][1], s, 0.75)
        if len(dates) >= 2 and re.search(r"有效期", s) and end is None:
            end = Proposal(dates[-1][1], s, 0.7)
    return start, end


def find_amounts(text: str) -> tuple[Proposal | None, Proposal | None]:
    """Return (max_amount in 万元, amount_text): the largest grant named in support sentences."""
    best: tuple[float, str] | None = None
    support: list[str] = []
    for s in sentences(text):
        if not _SUPPORT_WORDS.search(s):
            continue
        hit = False
        for m in _AMOUNT_LEAD.finditer(s):
            lead = s[max(0, m.start() - 12) : m.start(1)]
            if _AMOUNT_BLOCK.search(s[m.start() : m.start(1)]) or re.search(
                r"(收入|营收|销售额|投资额|投入)[^，,。]{0,4}$", lead
            ):
                continue
            value = amount_wan(m.group(1), m.group(2))
            # 最高分别不超过25万元、35万元、45万元: the largest of the list
            tail = re.match(rf"(?:[、，,]\s*{NUM}\s*(?:亿元|万元|元))+", s[m.end() :])
            if tail:
                for extra in re.finditer(rf"({NUM})\s*(亿元|万元|元)", tail.group(0)):
                    value = max(value, amount_wan(extra.group(1), extra.group(2)))
            hit = True
            if best is None or value > best[0]:
                best = (value, s)
        if hit or re.search(rf"按[^。；]{{0,30}}?{NUM}\s*%", s):
            support.append(s)
    amount = Proposal(round(best[0], 2), best[1], 0.8) if best else None
    amount_text = Proposal("；".join(support)[:500], "；".join(support)[:500], 0.7) if support else None
    return amount, amount_text


def find_contact(text: str) -> dict[str, Proposal]:
    out: dict[str, Proposal] = {}
    asked = False  # a heading such as "七、联系电话" with the number on the next line
    for s in sentences(text):
        if "contact_phone" not in out and (asked or re.search(r"电话|联系方式|咨询|联系人", s)):
            m = _PHONE.search(s)
            if m:
                out["contact_phone"] = Proposal(m.group(1), s, 0.85)
            asked = m is None and bool(re.search(r"(?:电话|联系方式)\s*[:：]?\s*$", s))
        if "contact_name" not in out:
            m = re.search(
                r"联系人\s*[:：]?\s*(?:[\u4e00-\u9fa5]{0,12}?[科处室股局]\s*)?([\u4e00-\u9fa5]{2,3})(?=[,，、;；\s\d(（]|电话|$)",
                s,
            )
            if m and m.group(1) not in ("电话", "方式", "及联"):
                out["contact_name"] = Proposal(m.group(1), s, 0.7)
        if "contact_address" not in out:
            m = re.search(r"(?:地址|受理地点|提交地址|报送地点|办公地点)\s*[:：]?\s*([^，,；;。\n]{4,60})", s)
            if m:
                out["contact_address"] = Proposal(m.group(1).strip(), s, 0.75)
    return out


def find_apply_url(text: str) -> Proposal | None:
    fallback: Proposal | None = None
    for s in sentences(text):
        for m in _URL.finditer(s):
            url = re.sub(r"[).,，。;；]+$", "", m.group(0))
            if _APPLY_WORDS.search(s):
                return Proposal(url, s, 0.8)
            fallback = fallback or Proposal(url, s, 0.4)
    return fallback


# A provincial body's 文号 opens with its province's abbreviation (桂工信综合〔2024〕80号).
_PROVINCE_ABBREVIATIONS = {
    "冀": "130000", "晋": "140000", "辽": "210000", "吉": "220000", "黑": "230000", "苏": "320000", "浙": "330000",
    "皖": "340000", "闽": "350000", "赣": "360000", "鲁": "370000", "豫": "410000", "鄂": "420000", "湘": "430000",
    "粤": "440000", "琼": "460000", "川": "510000", "黔": "520000", "滇": "530000", "陕": "610000", "甘": "620000",
    "青": "630000", "蒙": "150000", "桂": "450000", "藏": "540000", "宁": "640000", "新": "650000",
}  # fmt: skip
_NATIONAL = re.compile(
    r"^(国务院|国家|中华人民共和国|中共中央|工业和信息化部|财政部|科学技术部|科技部|商务部|人力资源和社会保障部|国家税务总局|人民银行|中国人民银行|发展改革委|国家发展和改革委员会|教育部|农业农村部|生态环境部|市场监管总局)"
)


def find_level_region(issuer: str | None, title: str | None, text: str) -> tuple[Proposal | None, Proposal | None]:
    """Level (national/provincial/municipal/county) and region code, from the issuer first.

    A title's quoted document (关于转发《福建省…》的通知) is another issuer's: its places do not count.
    """
    if title and "《" in title:
        title = re.sub(r"《[^》]*》", "", title)
    for source in (issuer, title):
        if not source:
            continue
        if _NATIONAL.match(source):
            return Proposal("national", source, 0.9), Proposal(codes.NATIONAL_REGION, source, 0.9)
        found = find_region(source, context=text)
        if found:
            name, code, level = found
            lvl = {"省": "provincial", "市": "municipal", "区县": "county"}[level]
            return Proposal(lvl, source, 0.85), Proposal(code, source, 0.85)
        # An issuer or title opening with a short place name: 株洲创业担保贷款…, 新乡高新区 (a zone of that city).
        opening = re.sub(r"^\d{4}\s*(?:年度?)?", "", source)  # "2020昆明…": the year before the place
        for short, code, level in _short_region_names():
            if opening.startswith(short):
                if re.match(
                    r"(?:国家)?(?:高新区|高新技术产业开发区|经济技术开发区|经开区|开发区|新区|园区)",
                    opening[len(short) :],
                ):
                    return Proposal("municipal", source, 0.6), Proposal(code, source, 0.6)  # a city's zone
                lvl = {"省": "provincial", "市": "municipal"}[level]
                return Proposal(lvl, source, 0.6), Proposal(code, source, 0.6)
        m = re.match(r"^(?:[\u4e00-\u9fa5]{2,6}?(?:省(?!级)|自治区)|自治区|省(?!级))", source)
        if m:
            # "自治区工业和信息化厅…（桂工信综合〔2024〕80号）": a provincial body's 文号 opens with its abbreviation.
            own = find_doc_number(text) if m.group(0) in ("自治区", "省") else None
            province = _PROVINCE_ABBREVIATIONS.get(str(own.value)[0]) if own else None
            region = Proposal(province, str(own.value), 0.6) if own and province else None
            return Proposal("provincial", source, 0.7), region
        m = re.match(r"^[\u4e00-\u9fa5]{2,6}?(区|县)(?!域|级)", source)
        if m:
            return Proposal("county", source, 0.7), None
        m = re.match(r"^(?!关于)[\u4e00-\u9fa5]{2,6}?市(?![级外内])", source)
        if m:
            return Proposal("municipal", source, 0.7), None
    if title:
        named = re.sub(r"高新区|开发区|园区|保税区|示范区|试验区|合作区", "", title)
        named = re.sub(r"[省市区县]级", "", named)  # "省级专精特新": a level word, not a place
        if re.search(r"[\u4e00-\u9fa5]{2,4}(?<!本)(?<!全)(?<!辖)(区|县)(?!域)", named):
            return Proposal("county", title, 0.5), None
        if re.search(r"[\u4e00-\u9fa5]{2,4}(?<!本)(?<!全)(?<!我)市(?![外内])", named):
            return Proposal("municipal", title, 0.5), None
        if re.search(r"[\u4e00-\u9fa5]{2,3}省", named):
            return Proposal("provincial", title, 0.5), None
    # An issuing body on its own line under the title ("河北省工业和信息化厅"): its place before any other.
    for line in _lines(text)[1:4]:
        if len(line) <= 30 and re.search(r"(?:厅|局|委|委员会|政府|办公室|办公厅|管委会)$", line):
            found = find_region(line, context=text)
            if found:
                lvl = {"省": "provincial", "市": "municipal", "区县": "county"}[found[2]]
                return Proposal(lvl, line, 0.6), Proposal(found[1], line, 0.6)
    head = "\n".join(_lines(text)[:40])
    found = find_region(head, context=text)
    if found:
        name, code, level = found
        lvl = {"省": "provincial", "市": "municipal", "区县": "county"}[level]
        return Proposal(lvl, name, 0.5), Proposal(code, name, 0.5)
    return None, None


def extract_fields(text: str) -> dict[str, Proposal]:
    """Return every field found, keyed by name (missing fields are absent)."""
    out: dict[str, Proposal] = {}
    title = find_title(text)
    if title:
        out["title"] = title
    doc_number = find_doc_number(text)
    if doc_number:
        out["doc_number"] = doc_number
    issuer = find_issuer(text, title.value if title else None)
    if issuer:
        out["issuer"] = issuer
    published = find_published_on(text)
    if published:
        out["published_on"] = published
    year_hint = published.value.year if published else None
    start, end = find_apply_window(text, year_hint)
    if start:
        out["apply_start_on"] = start
    if end:
        out["apply_end_on"] = end
    valid_from, valid_to = find_validity(text)
    if valid_from:
        out["valid_from_on"] = valid_from
    if valid_to:
        out["valid_to_on"] = valid_to
    amount, amount_text = find_amounts(text)
    if amount:
        out["max_amount"] = amount
    if amount_text:
        out["amount_text"] = amount_text
    out.update(find_contact(text))
    url = find_apply_url(text)
    if url:
        out["apply_url"] = url
    level, region = find_level_region(issuer.value if issuer else None, title.value if title else None, text)
    if level:
        out["level"] = level
    if region:
        out["region_code"] = region
    return out
