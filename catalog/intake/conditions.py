"""Propose eligibility conditions (docs/rules.md) from the 申报条件 / 支持对象 parts of a policy text.

Each proposal is one condition node with the sentence it came from and a confidence. A requirement
the rule format cannot express (经营异常名录, 财务制度健全 …) stays a plain-language condition for
the curator to confirm by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from catalog.intake.extract import Section, split_sections
from catalog.intake.fields import find_region
from catalog.intake.text import NUM, amount_wan, cn_number, sentences, to_number
from core import codes
from core.text import normalize

CONDITION_HEADINGS = re.compile(
    r"申报条件|申请条件|申报对象|支持对象|扶持对象|资助对象|奖补对象|奖励对象|补贴对象|申报主体|申报范围|"
    r"支持范围|适用范围|适用对象|基本条件|认定条件|申领条件|享受条件|申报要求|申报单位|评价条件|对象和条件|对象及条件|"
    r"实施对象|服务对象|政策对象|申请主体|申请对象|培育对象|支持方向|认定标准|入库标准|评定标准|征集条件|征集对象"
)
OTHER_HEADINGS = re.compile(
    r"申报材料|申请材料|提交材料|所需材料|申报程序|申报流程|申报方式|工作程序|办理流程|申报时间|受理时间|"
    r"联系方式|其他事项|工作要求|注意事项|资金用途|附件|审核|评审|拨付|监督管理|材料报送|报送方式|"
    r"企业收益|奖励标准|补贴标准|资助标准|扶持标准|奖补标准|支持标准"
)


@dataclass
class ConditionProposal:
    """A proposed condition: a rule node (field/op/value) or, when `node` is None, plain text to confirm."""

    node: dict[str, Any] | None
    source: str
    confidence: float
    text: str = ""
    # Alternatives ("满足下列条件之一", "…或…"): proposals sharing `group` are the branches of one `any`;
    # those sharing (`group`, `branch`) must hold together (one `all` branch).
    group: int | None = None
    branch: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "confidence": round(self.confidence, 2)}
        if self.node is not None:
            out["rule"] = self.node
        else:
            out["text"] = self.text
        if self.group is not None:
            out["alternative"] = {"group": self.group, "branch": self.branch}
        return out

    def key(self) -> tuple[str, str, str] | None:
        if self.node is None:
            return None
        return condition_key(self.node)


def condition_key(node: dict[str, Any]) -> tuple[str, str, str]:
    """The identity used for scoring and de-duplication: field, op and a canonical value."""
    value = node["value"]
    if isinstance(value, list):
        value = sorted(value, key=str)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return node["field"], node["op"], json.dumps(value, ensure_ascii=False, sort_keys=True)


def rules_of(proposals: Iterable[ConditionProposal]) -> dict[str, Any] | None:
    """The rule tree (docs/rules.md) of the coded proposals: `all` of them, alternatives as one `any`.

    A group whose branches are not at least two (the other alternatives stayed plain language) is
    put in as its conditions, for the curator to review against the source sentence.
    """
    top: list[Any] = []
    groups: dict[int, dict[int, list[dict[str, Any]]]] = {}
    for p in proposals:
        if p.node is None:
            continue
        if p.group is None:
            top.append(p.node)
            continue
        if p.group not in groups:
            groups[p.group] = {}
            top.append(p.group)  # the group's place in the list
        groups[p.group].setdefault(p.branch or 0, []).append(p.node)
    nodes: list[dict[str, Any]] = []
    for item in top:
        if not isinstance(item, int):
            nodes.append(item)
            continue
        branches = list(groups[item].values())
        if len(branches) < 2:
            nodes.extend(branches[0])
            continue
        nodes.append({"any": [b[0] if len(b) == 1 else {"all": b} for b in branches]})
    return {"all": nodes} if nodes else None


# ---------------------------------------------------------------- vocabularies


@dataclass
class QualificationVocabulary:
    """Qualification names with their synonyms; longest terms first so 小巨人 wins over 专精特新."""

    terms: list[tuple[str, str]] = field(default_factory=list)  # (normalised term, canonical name)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, Iterable[str]]]) -> QualificationVocabulary:
        terms: dict[str, str] = {}
        for name, synonyms in pairs:
            for term in (name, *synonyms):
                t = normalize(term).lower().replace('"', "“")
                if len(t) >= 2:
                    terms.setdefault(t, name)
                    terms.setdefault(t.replace("“", "").replace("”", ""), name)
        return cls(sorted(terms.items(), key=lambda kv: len(kv[0]), reverse=True))

    def find(self, text: str) -> list[tuple[int, str, str]]:
        """Return (position, matched term, canonical name), no overlapping matches."""
        rest = normalize(text).lower().replace('"', "“")
        taken = [False] * len(rest)
        hits: list[tuple[int, str, str]] = []
        for term, name in self.terms:
            start = rest.find(term)
            while start != -1:
                if not any(taken[start : start + len(term)]):
                    for i in range(start, start + len(term)):
                        taken[i] = True
                    hits.append((start, term, name))
                start = rest.find(term, start + 1)
        hits.sort()
        return hits


@cache
def default_qualifications() -> QualificationVocabulary:
    """The demo taxonomy's qualification tags: used when no database vocabulary is given (eval)."""
    data = json.loads((resources.files("catalog") / "demo_data" / "taxonomy.json").read_text(encoding="utf-8"))
    pairs = [(t["name"], t.get("synonyms") or []) for t in data["tags"] if t["kind"] == "qualification"]
    return QualificationVocabulary.from_pairs(pairs)


# Words for industries that are not a 门类/大类 name of GB/T 4754.
INDUSTRY_WORDS: dict[str, list[str]] = {
    "工业企业": ["B", "C", "D"],
    "制造业": ["C"],
    "制造企业": ["C"],
    "制造型企业": ["C"],
    "软件企业": ["I65"],
    "软件和信息技术服务业": ["I65"],
    "软件和信息服务业": ["I65"],
    "信息技术服务": ["I65"],
    "建筑业": ["E"],
    "建筑企业": ["E"],
    "批发零售": ["F"],
    "批发和零售业": ["F"],
    "住宿餐饮": ["H"],
    "住宿和餐饮业": ["H"],
    "餐饮": ["H62"],
    "住宿": ["H61"],
    "批发": ["F51"],
    "零售": ["F52"],
    "软件业": ["I65"],
    "交通运输": ["G"],
    "物流企业": ["G"],
    "农业": ["A"],
    "文化、体育和娱乐业": ["R"],
    "科学研究和技术服务业": ["M"],
    "房地产": ["K"],
}


@cache
def _industry_names() -> list[tuple[str, str]]:
    rows = [r for r in codes.list_industries() if r["level"] in ("门类", "大类")]
    pairs = [(str(r["name"]), str(r["code"])) for r in rows if len(str(r["name"])) >= 3]
    return sorted(pairs, key=lambda p: len(p[0]), reverse=True)


@cache
def _divisions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in codes.list_industries("大类"):
        out.setdefault(str(r["parent"]), []).append(str(r["code"]))
    return out


def find_industries(text: str) -> tuple[list[str], list[str]]:
    """Return (codes, matched words) of industries named in the text."""
    found: list[str] = []
    words: list[str] = []
    rest = text
    for name, code in _industry_names():
        if name in rest:
            found.append(code)
            words.append(name)
            rest = rest.replace(name, "　")
    for word, codes_ in sorted(INDUSTRY_WORDS.items(), key=lambda kv: len(kv[0]), reverse=True):
        if word in rest:
            found.extend(codes_)
            words.append(word)
            rest = rest.replace(word, "　")
    uniq: list[str] = []
    for c in found:
        if c not in uniq:
            uniq.append(c)
    # A section letter covers its divisions: drop C39 when C is there.
    uniq = [c for c in uniq if not any(o != c and c.startswith(o) for o in uniq)]
    # Every division of a section named (批发 + 零售 = F): the section itself.
    for section, divisions in _divisions().items():
        if len(divisions) > 1 and all(d in uniq for d in divisions):
            uniq = [c for c in uniq if c not in divisions]
            uniq.append(section)
    return uniq, words


# ---------------------------------------------------------------- numeric thresholds

METRICS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "rd_ratio",
        re.compile(
            r"(?:研(?:发|究开发|究与试验发展)|R\s*[&＆]\s*D\s*|技术开发)(?:费用|投入|经费)(?:支出)?(?:总额)?[^。；;，,]{0,24}?占[^。；;，,]{0,20}?"
            r"(?:营业|销售|主营业务)?收入(?:总额)?[^。；;，,]{0,8}?(?:比例|比重|的?比值?)?|"
            r"研(?:发|究开发)(?:费用|投入|经费)(?:支出)?(?:总额)?(?:的)?占比"
        ),
    ),
    (
        "rd_expense",
        re.compile(r"研(?:发|究开发)(?:费用|投入|经费|费(?=支出))(?:支出)?(?:总额|投入)?|技术开发费(?:用)?(?:投入)?"),
    ),
    (
        "annual_revenue",
        re.compile(
            r"(?:年度?|上年度?|近一年|最近一年|年)?(?:主营业务收入|营业收入|营业额|销售收入|销售额|营收|年收入|主营收入|"
            r"主营业务年收入|年销售收入|营业收入总额|销售[(（]营业[)）]收入)"
        ),
    ),
    (
        "employees",
        re.compile(
            r"从业人员|职工总数|职工人数|员工人数|从业人数|参保(?:职工|人数|员工)|在职职工|员工总数|用工人数|企业职工|"
            r"(?:拥有|现有)(?:员工|职工)|员工(?=\s*(?:不少于|不低于|不超过|达到|超过|少于|在\s*\d))"
        ),
    ),
    ("registered_capital", re.compile(r"注册资本|注册资金|实缴资本")),
    ("total_assets", re.compile(r"资产总额|总资产")),
    ("export_revenue", re.compile(r"出口额|出口总额|出口交货值|年出口")),
)
_NOT_METRIC = re.compile(r"增长|增幅|增速|同比|较上|比上年|提高|裁员|失业|负债|利润率|每增加|每\d")
_ASIDE = re.compile(r"[(（](?:超过|不超过|低于|高于|少于|大于|小于)[^()（）]{0,30}?的(?:企业|单位)[^()（）]{0,20}[)）]")
# 研发经费不低于年销售额的 2%: the ratio stated after its base.
_RATIO_OF_REVENUE = re.compile(
    rf"(?:研发|科研|研究开发)的?(?:投入|费用|经费|投资)+[^。；;，,]{{0,6}}?(不低于|不少于|达到|超过|高于)[^。；;，,]{{0,8}}?"
    rf"(?:销售额|销售收入|营业收入|主营业务收入|收入)的\s*({NUM})(?:\s*[-~至]\s*{NUM})?\s*%"
)
_SKIP_NUMERIC = re.compile(r"新招用|招用|吸纳|带动")
_LAYOFF = re.compile(r"裁员率|失业率")

# Comparison words → op. 以上/以下 include the number itself (《民法典》第一千二百五十九条).
_AFTER_OPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\s*[(（]不含[)）]\s*以上"), "gt"),
    (re.compile(r"^\s*[(（]不含[)）]\s*以下"), "lt"),
    (re.compile(r"^\s*(?:[(（]含(?:本数)?[)）])?\s*(?:及|或)?\s*以上"), "gte"),
    (re.compile(r"^\s*(?:[(（]含(?:本数)?[)）])?\s*(?:及|或)?\s*以下"), "lte"),
    (re.compile(r"^\s*(?:[(（]含[)）])?\s*以内"), "lte"),
)
_BEFORE_OPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"(?:不低于|不少于|不小于|达到|达|≥|>=|大于等于|大于或等于|至少|达到或超过|超过或达到|突破)\s*$"),
        "gte",
    ),
    (re.compile(r"(?:不超过|不超|不高于|不大于|不多于|≤|<=|小于等于|小于或等于|最多)\s*$"), "lte"),
    (re.compile(r"(?:超过|高于|大于|多于|>|(?<![不未])超)\s*$"), "gt"),
    (re.compile(r"(?:低于|少于|小于|不足|不到|未达到|未满|<)\s*$"), "lt"),
)
_INCLUSIVE = re.compile(r"^\s*[(（]含[)）]")
# Money in 万元; a bare 万 / 亿 counts too (2000万≤销售收入<10亿), not 万美元, 万人, 亿美元 ….
_MONEY = r"亿元|千万元|百万元|万元|元|万(?![美人户亩吨平])|亿(?![美人户亩吨平])"
# "2000万≤上年度销售收入": the lower bound written before the metric.
_BOUND_BEFORE = re.compile(rf"({NUM})\s*(亿元|千万元|百万元|万元|千万|百万|万|亿|%)?\s*(≤|<=|<|＜)\s*$")
_UNIT = {
    "rd_ratio": r"%",
    "rd_expense": _MONEY,
    "annual_revenue": _MONEY,
    "registered_capital": _MONEY,
    "total_assets": _MONEY,
    "export_revenue": r"亿元|千万元|万元|元|万美元",
    "employees": r"人|名",
}
_SMALL_NUM = r"[一二两三四五六七八九十百千]+"


def _number_with_unit(field_name: str, clause: str, start: int) -> tuple[str, Any, int] | None:
    """The comparison after a metric word: (op, value, end position) or None."""
    unit = _UNIT[field_name]
    segment = clause[start:]
    range_re = re.compile(
        rf"({NUM}|{_SMALL_NUM})\s*({unit})?\s*(?:[(（]含[)）])?\s*(?:至|到|-|－|—|~|～)\s*({NUM}|{_SMALL_NUM})\s*({unit})\s*([(（]含[)）])?"
    )
    num_re = re.compile(rf"({NUM}|{_SMALL_NUM})\s*(?:个)?\s*({unit})")
    rm = range_re.search(segment)
    m = num_re.search(segment)
    if rm and rm.start() < 30 and (m is None or rm.start() <= m.start()):
        lo = _scale(field_name, rm.group(1), rm.group(2) or rm.group(4))
        hi = _scale(field_name, rm.group(3), rm.group(4))
        if lo is not None and hi is not None and lo <= hi:
            before = segment[: rm.start()][-8:]
            for pattern, range_op in _BEFORE_OPS:
                if pattern.search(before):
                    return range_op, (lo if range_op in ("gte", "gt") else hi), start + rm.end()
            if rm.group(5):  # 5000万元至2亿元（含）: the lower tier owns 5000
                return "range_upper_inclusive", [lo, hi], start + rm.end()
            return "between", [lo, hi], start + rm.end()
    if m is None or m.start() > 40:
        return None
    value = _scale(field_name, m.group(1), m.group(2))
    if value is None:
        return None
    before = segment[: m.start()][-8:]
    after = re.sub(r"^\s*人民币", "", segment[m.end() : m.end() + 16])  # "500万元人民币以上"
    op: str | None = None
    for pattern, name in _BEFORE_OPS:
        if pattern.search(before):
            op = name
            break
    if op == "lt" and _INCLUSIVE.match(after):
        op = "lte"  # 小于5000万元（含）
    elif op == "gt" and _INCLUSIVE.match(after):
        op = "gte"
    if op is None:
        for pattern, name in _AFTER_OPS:
            if pattern.match(after):
                op = name
                break
    if op is None:
        return None
    return op, value, start + m.end()


def _scale(field_name: str, raw: str, unit: str | None) -> float | None:
    number: float | None
    if raw and raw[0].isdigit():
        number = to_number(raw)
    else:
        cn = cn_number(raw)
        number = float(cn) if cn is not None else None
    if number is None or unit is None:
        return None
    if field_name in ("rd_ratio", "employees"):
        return number
    if unit == "万美元":
        return None
    return round(amount_wan(str(number), unit), 4)


def _clean_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _numeric(clause: str, *, ratio_context: bool) -> list[ConditionProposal]:
    out: list[ConditionProposal] = []
    # Parenthetical asides hold exceptions and tiers (超过100人的企业达到5%): not conditions.
    text = _ASIDE.sub(lambda m: " " * len(m.group(0)), clause)
    text = re.sub(r"(?:过|超)亿元?", lambda m: "超过1亿元".ljust(len(m.group(0))), text)  # 营收过亿
    if _LAYOFF.search(clause):
        return out  # 裁员率 tiers (参保职工30人以下的企业放宽至20%) say nothing of who may apply
    # "新招用…达到职工人数15%" / "吸纳就业10人": hiring targets, not the firm's size; the rest of the clause counts.
    text = re.sub(r"[^，,；;。]*(?:" + _SKIP_NUMERIC.pattern + r")[^，,；;。]*", lambda m: " " * len(m.group(0)), text)
    used_until = -1
    hits: list[tuple[int, str, re.Match[str]]] = []
    for field_name, pattern in METRICS:
        for m in pattern.finditer(text):
            hits.append((m.start(), field_name, m))
    hits.sort(key=lambda h: h[0])
    for pos, field_name, m in hits:
        if pos < used_until:
            continue
        window = text[m.start() : m.end() + 30]
        # "营业收入增长20%" is no level of revenue; "研发投入在30万元以上且增幅在50%以上" is one.
        level_part = re.split(r"[，,]", window)[0]
        stated = re.search(rf"{NUM}\s*(?:{_MONEY}|%|人|名)", level_part)
        if _NOT_METRIC.search(level_part[: stated.end()] if stated else level_part):
            continue
        if field_name == "rd_expense" and re.search(r"占|比例|比重|加计扣除", text[m.end() : m.end() + 12]):
            continue
        if field_name == "employees" and re.search(r"(设计|研发|科技|技术|专职|专业)$", text[max(0, pos - 4) : pos]):
            continue  # 研发人员、设计从业人员: a part of the staff, not the firm's headcount
        if (
            field_name == "annual_revenue"
            and re.search(r"(软件|设计|嵌入式|服务|业务)(?!业?企业)[^，,。]{0,6}$", text[max(0, pos - 16) : pos])
            and not re.search(r"主营", text[max(0, pos - 4) : m.end()])
        ):
            continue  # 软件业务年收入: a part of revenue, not the firm's revenue
        bound = _BOUND_BEFORE.search(text[max(0, pos - 16) : pos])
        if bound and pos > used_until:
            unit = bound.group(2) or ("%" if field_name == "rd_ratio" else None)
            if unit is None and field_name in ("annual_revenue", "rd_expense", "registered_capital", "total_assets"):
                unit = "万"
            low = _scale(field_name, bound.group(1), unit) if unit and re.fullmatch(_UNIT[field_name], unit) else None
            if low is not None:
                op = "gte" if bound.group(3) in ("≤", "<=") else "gt"
                out.append(ConditionProposal({"field": field_name, "op": op, "value": _clean_value(low)}, clause, 0.8))
        found = _number_with_unit(field_name, text, m.end())
        if found is None:
            continue
        op, value, end = found
        between = text[m.end() : end]
        if any(p.search(between) for f, p in METRICS if f != field_name and f != "rd_expense") or re.search(
            r"[。；;]", between
        ):
            continue
        # "首次突破1亿元、3亿元、5亿元": tiers written as a list after one comparison word.
        while op in ("gte", "gt", "lte", "lt"):
            more = re.match(
                rf"\s*(?:[(（]含[)）])?\s*[、和及]\s*({NUM})\s*({_UNIT[field_name]})\s*([(（]含[)）])?", text[end:]
            )
            tier = _scale(field_name, more.group(1), more.group(2)) if more else None
            if more is None or tier is None:
                break
            tier_op = {"gt": "gte", "lt": "lte"}.get(op, op) if more.group(3) else op  # "1000万元（含）"
            out.append(
                ConditionProposal({"field": field_name, "op": tier_op, "value": _clean_value(tier)}, clause, 0.8)
            )
            end += more.end()
        used_until = end
        for node in _threshold_nodes(field_name, op, value):
            out.append(ConditionProposal(node, clause, 0.85))
    share = _RATIO_OF_REVENUE.search(text)
    if share and not any(p.node and p.node["field"] == "rd_ratio" for p in out):
        op = {"不低于": "gte", "不少于": "gte", "达到": "gte", "超过": "gt", "高于": "gt"}[share.group(1)]
        for node in _threshold_nodes("rd_ratio", op, to_number(share.group(2))):
            out.append(ConditionProposal(node, clause, 0.8))
    if ratio_context and not any(p.node and p.node["field"] == "rd_ratio" for p in out):
        ratio = re.search(r"(?<!产品)(?<!服务\))(?:比例|比重|比值)[^。；;，,]{0,6}?", text)
        other_base = re.search(r"占(?![^。；;，,]{0,12}收入)", text)
        if ratio and not other_base and not re.search(r"人员|科技人员|产品|增加值|销售额占|负债|农产品|境内", text):
            found = _number_with_unit("rd_ratio", text, ratio.end())
            if found:
                op, value, _ = found
                for node in _threshold_nodes("rd_ratio", op, value):
                    out.append(ConditionProposal(node, clause, 0.7))
        # 最近一年销售收入小于5,000万元（含）的企业: the revenue tier of the same item.
    return out


def _threshold_nodes(field_name: str, op: str, value: Any) -> list[dict[str, Any]]:
    if op == "range_upper_inclusive":
        lo, hi = value
        return [
            {"field": field_name, "op": "gt", "value": _clean_value(lo)},
            {"field": field_name, "op": "lte", "value": _clean_value(hi)},
        ]
    return [{"field": field_name, "op": op, "value": _clean_value(value)}]


# ---------------------------------------------------------------- detectors per clause

_REGISTERED = re.compile(
    r"注册|登记|设立|落户|纳税|税收|税务|征管|统计关系|经营地|工商|依法经营|从事生产经营|创办|"
    r"(?:在|于)[^，,。；;]{1,12}生产、?经营|纳入[^，,。；;]{1,12}统计"
)
_LOCAL = re.compile(
    r"(?:在|于|为)?(?:本市|本区|本县|我市|我区|我县|全市|全区|辖区|本省|我省|全省|市内|区内|县内|省内|本地)"
)
_ZONE = re.compile(r"(?:在|于|落户)(?:本|我)?(?:高新区|经开区|经济开发区|开发区|高新技术产业开发区|园区)(?:内)?")


def _local_region(word: str, home: str) -> str:
    """The region "本省 / 本市 / 本区" means for an issuer of region home: a district's 本市 is its city
    (a county-level city's 本市 is itself: 余姚市)."""
    if "省" in word:
        return home[:2] + "0000"
    if "市" in word and not home.endswith("00") and not (codes.region_name(home) or "").endswith("市"):
        city = home[:4] + "00"
        return city if codes.region_name(city) else home[:2] + "0000"  # 北京市海淀区: 本市 is 北京
    return home


_YEARS_GTE = re.compile(
    r"(?:成立|注册|设立|经营|运营|登记)(?:时间|年限|期限|期)?\s*(?:已)?(?:满|达到|在|超过|不少于|不低于)?\s*"
    r"([\d一二两三四五六七八九十]+)\s*(?:个)?(?:完整)?(?:会计)?(?:年度|周?年)\s*(?:\(含\)|（含）)?\s*(?:及|或)?\s*(以上)?"
)
# "注册成立365个日历天数以上": whole years written as days.
_DAYS_GTE = re.compile(
    r"(?:成立|注册|设立|经营)[^，,。；;]{0,6}?(\d{3,4})\s*(?:个)?(?:日历)?(?:天|日)(?:数)?\s*(?:\(含\)|（含）)?\s*(?:及|或)?\s*以上"
)
_YEARS_LTE = re.compile(
    r"(?:成立|注册|设立)(?:时间|年限)?\s*(?:(?:不超过|不满|未满|少于)\s*([\d一二两三四五六七八九十]+)\s*(?:个)?(?:周?年)|"
    r"在\s*([\d一二两三四五六七八九十]+)\s*(?:个)?(?:周?年)\s*(?:以内|内))"
)
_DATE_SINCE = re.compile(
    r"(\d{4})\s*年\s*(?:(\d{1,2})\s*月\s*(?:(\d{1,2})\s*日)?)?\s*(?:\(含\)|（含）)?\s*(以后|之后|后|以来|起|以前|之前|前)\s*(?:新)?(?:企业|公司)?(?:注册|成立|设立|登记)"
)
# "注册时间在2021年1月1日以后": the date after the word.
_DATE_SINCE_AFTER = re.compile(
    r"(?:注册|成立|设立|登记)(?:时间|日期)?\s*(?:在|为|于)?\s*(\d{4})\s*年\s*(?:(\d{1,2})\s*月\s*(?:(\d{1,2})\s*日)?)?\s*"
    r"(?:\(含\)|（含）)?\s*(以后|之后|后|以来|起|以前|之前|前)"
)
_DISHONEST = re.compile(
    r"(?:未|没有|不得|无|不属于|不在)[^。；;]{0,36}?(?:失信|黑名单|信用不良|不良信用)|信用(?:记录|状况)?良好|诚实守信|诚信经营|无不良信用|"
    r"信用良好|良好的(?:社会)?信用|无(?:严重)?违法失信|无[^。；;]{0,30}?(?:违法|违规|违反|不良)[^。；;，,]{0,6}?(?:信用|诚信)记录|信用记录良好|信誉良好|诚信记录良好|诚信良好"
)
_TAX_LEVEL = re.compile(
    r"纳税信用(?:等级|评价|级别)?[^。；;，,]{0,6}?([ABMCD])\s*级\s*(?:\(含\)|（含）)?\s*(?:及|或)?\s*(以上)?"
)
_TAX_NOT = re.compile(
    r"纳税信用(?:等级|评价|级别)?[^。；;]{0,8}?(?:不为|非|不是|不得为|未被评为)\s*([ABMCD])\s*(?:级)?(?:[、和或及]\s*([ABMCD])\s*级?)?"
)
_TAX_ORDER = ["A", "B", "M", "C", "D"]
# "省级（含）以上" / "市级及以上": that level and every level above it.
_LEVELS = ("国家", "省", "市", "区")
_LEVEL_UP = re.compile(r"(省|市|区)级?\s*(?:（含）|\(含\))?\s*(?:及|或)?以上(?:的)?(?=[\u4e00-\u9fa5])")

_SIZE_WORDS: tuple[tuple[re.Pattern[str], list[str]], ...] = (
    (
        re.compile(r"中型、小型、微型企业|中小微(?:型)?企业|中小企业|中、小、微|中小型企业|中小微型企业"),
        ["medium", "small", "micro"],
    ),
    (re.compile(r"中型、小型企业|中型和小型企业|中型及小型企业"), ["medium", "small"]),
    (re.compile(r"小微(?:型)?企业|小型微型企业|小型、微型企业"), ["small", "micro"]),
    (re.compile(r"(?<![中小、])微型企业"), ["micro"]),
    (re.compile(r"(?<![大中小、])小型企业"), ["small"]),
)
_SIZE_CONTEXT = re.compile(r"属于|为|是|符合|划型|划分|认定为|的")
_PLAIN_HINT = re.compile(
    r"独立法人|法人资格|财务(?:管理)?制度|会计核算|经营异常|安全生产|环境|环保|质量事故|违法违规|违规|知识产权|"
    r"产业政策|统计|合同|社会保险|社保|研发机构|项目|产品|技术|专利|资质|证书"
)
_NEGATION = re.compile(r"(?:未|不|非|没有|无)[^。；;，,]{0,4}$")


def _condition_clauses(text: str, sections: list[Section] | None) -> tuple[list[str], bool]:
    """Sentences under the condition headings; without such headings, every sentence outside the
    material / procedure / contact parts (and the title line). Returns (sentences, under_heading)."""
    sections = sections if sections is not None else split_sections(text)
    picked: list[str] = []
    rest: list[str] = []
    active_level: int | None = None
    skip_level: int | None = None
    headed = any(
        s.level > 0
        and len(s.heading) <= 30
        and CONDITION_HEADINGS.search(s.heading)
        and not re.search(r"[。；;]$", s.heading)
        for s in sections
    )
    for s in sections:
        if skip_level is not None and s.level > skip_level:
            continue
        skip_level = None
        if active_level is not None and s.level <= active_level:
            active_level = None
        # "（一）申报对象属于制造业中小企业。" is an item that reads like a heading: a sentence is no heading.
        is_heading = (
            len(s.heading) <= 30 and CONDITION_HEADINGS.search(s.heading) and not re.search(r"[。；;]$", s.heading)
        )
        # The text before the first heading counts when it ends like one ("…申报条件"), unless it only leads in
        # ("具体申报要求如下：") to condition headings of its own, which then bound the conditions.
        lead_in = s.level == 0 and CONDITION_HEADINGS.search(s.text[-40:])
        last_line = s.text.strip().split("\n")[-1]
        if (
            lead_in
            and headed
            and not CONDITION_HEADINGS.search(s.text.strip().split("\n", 1)[0])
            and (len(last_line) > 30 or re.search(r"(?:如下|以下)[:：]?$", last_line))
        ):
            lead_in = None
        if is_heading or lead_in:
            # A title like "…申报条件" makes the whole text conditions (level 0 never closes).
            if active_level is None:
                active_level = s.level
            picked.extend(sentences(s.text))
            continue
        other = OTHER_HEADINGS.search(s.heading)
        # "（二）主营业务应属于…（见附件13）确定的经营范围": an item naming 附件 is no 附件 heading;
        # "一、奖励内容、标准和申报材料" also names what is rewarded, and to whom: its part is read.
        if other and re.search(r"对象|条件|内容|范围|主体", s.heading[: other.start()]):
            other = None
        # "补贴标准及方式：（一）对经认定的初创科技型中小企业，给予…": with no condition heading anywhere, the
        # support standards are where the text names whom it supports (award tiers are left out further on).
        if other and not headed and re.search(r"标准|收益", other.group(0)):
            other = None
        if other and (len(s.heading) <= 30 or other.start() <= 8):
            skip_level = s.level
            if active_level is not None and active_level > 0:
                active_level = None
            continue
        if active_level is not None:
            picked.extend(sentences(s.text))
        else:
            rest.extend(sentences(s.text))
    if picked:
        return picked, True
    return rest, False


_TITLE_LIKE = re.compile(
    r"(通知|办法|意见|措施|细则|指南|公告|规定|方案|决定|通告|规程|政策|条件|要求|标准|说明|摘编|摘录)[)）]?$"
)


def _clauses(sentence: str) -> list[str]:
    """Split a sentence into clauses at ；; and at numbered sub-items."""
    parts = re.split(r"[；;]|(?<=[:：])(?!//)|(?=[(（]\d{1,2}[)）])|(?<=[，,])(?=\d{1,2}[、.．])", sentence)
    return [p.strip(" ，,") for p in parts if p and p.strip(" ，,")]


def propose_conditions(
    text: str,
    *,
    sections: list[Section] | None = None,
    home_region: str | None = None,
    qualifications: QualificationVocabulary | None = None,
) -> list[ConditionProposal]:
    """Propose conditions for a policy text; home_region is the issuer's code (本区 / 本市 resolve to it)."""
    vocab = qualifications or default_qualifications()
    clauses, under_heading = _condition_clauses(text, sections)
    first_line = text.strip().split("\n", 1)[0].strip()
    ratio_context = bool(_RATIO_CONTEXT.search(text))
    farming = bool(_FARMING.search(text))
    base = 1.0 if under_heading else 0.8
    out: list[ConditionProposal] = []
    seen: set[tuple[str, str, str, int | None, int | None]] = set()
    merged_quals: dict[int | None, ConditionProposal] = {}  # one has_any per alternatives group (None: required)
    carry = ""  # a metric named in a lead-in ("销售收入规模：") applies to the list items below it
    groups = 0  # alternatives found so far
    alt_group: int | None = None  # the open "满足下列条件之一" list
    alt_marker: str | None = None  # the numbering style of its items
    alt_branch = 0

    def add(p: ConditionProposal) -> None:
        p.confidence = round(min(0.99, p.confidence * base), 2)
        node = p.node
        if node is None:
            out.append(p)
            return
        if node["field"] == "qualifications" and node["op"] == "has_any":
            # Qualifications named across the conditions are alternatives: one has_any.
            # "…的规模以上工业企业。满足以下条件之一：（1）…专精特新企业、单项冠军企业…": a required name and
            # the names of one alternative are two conditions, not one list.
            merged = merged_quals.get(p.group)
            if merged is not None and merged.node is not None:
                values = merged.node["value"]
                values.extend(v for v in node["value"] if v not in values)
                if p.source not in merged.source:
                    merged.source += "；" + p.source
                return
            merged_quals[p.group] = p
            out.append(p)
            return
        key = (*condition_key(node), p.group, p.branch)  # the same threshold may open two alternatives
        if key in seen:
            return
        seen.add(key)
        out.append(p)

    def alternatives(clause: str) -> tuple[int | None, int | None]:
        """(group, branch) of a clause: an item of an open "…之一" list, or None."""
        nonlocal alt_group, alt_marker, alt_branch, groups
        item = _LIST_ITEM.match(clause)
        style = _marker_style(item.group(0)) if item else None
        if alt_group is not None:
            if style is not None and (alt_marker is None or style == alt_marker):
                alt_marker = style
                alt_branch += 1
                return alt_group, alt_branch
            if style is None or style != alt_marker:
                alt_group, alt_marker = None, None
        if _ONE_OF.search(clause):
            groups += 1
            alt_group, alt_marker, alt_branch = groups, None, 0
        return None, None

    negated = False  # under "未发生下列情况：": what the items name is excluded
    scoped = False  # under "申请…项目的企业还应具备以下条件：": items for some applicants only
    previous = ""
    uppers: dict[str, set[Any]] = {}  # tier bounds already owned by a lower tier (≤ 2亿元): "2亿元以上" starts above

    metric_word = ""  # "销售收入首次超过2000万元的…；首次超过500万的…": the metric goes on to the next clauses
    for sentence in clauses:
        if negated and re.search(r"[。.]\s*$", previous):
            negated = False  # the excluded items end with the sentence that lists them
        if not re.search(r"[；;]\s*$", previous):
            metric_word = ""
        previous = sentence
        # "申请改善融资环境项目的企业还应具备以下条件：（一）…": the items bind only those applicants.
        if _ALSO_FOR.search(sentence):
            scoped = True
            continue
        if scoped and _LIST_ITEM.match(sentence):
            continue
        scoped = False
        if _TITLE_LIKE.search(sentence) and (
            sentence == first_line or (len(sentence) < 80 and not re.search(r"[，,；;:：。]", sentence))
        ):
            continue
        if _PURPOSE.match(sentence) or re.match(r"\s*附件\s*\d*\s*[:：]", sentence):
            continue  # "附件：…申报指南": the titles of attachments
        award = bool(_AWARD.search(sentence))
        for clause in _clauses(sentence):
            clean = _drop_preferences(_strip_references(clause))
            if not clean:
                continue
            named_metric = next((m.group(0) for _, p in METRICS for m in [p.search(clean)] if m), "")
            if named_metric:
                metric_word = named_metric
            elif metric_word and _BARE_BOUND.match(clean):
                clean = metric_word + clean
            excluding = bool(_EXCLUDING_LEAD.search(clean))
            if excluding or _NEGATED_LEAD.search(clean):
                negated = True
            if carry and _LIST_ITEM.match(clean) and not any(p.search(clean) for _, p in METRICS):
                marker = _LIST_ITEM.match(clean)
                assert marker is not None
                clean = marker.group(0) + carry + clean[marker.end() :]
            elif not _LIST_ITEM.match(clean):
                carry = ""
            lead_in = _METRIC_LEAD.search(clean)
            if lead_in:
                carry = lead_in.group(1)
            encoded = _encode_clause(
                clean,
                home_region,
                vocab,
                ratio_context=ratio_context,
                strict=not under_heading,
                award=award,
                farming=farming,
            )
            if _SCOPED.match(clean):
                encoded = []
            if negated:
                # What an exclusion list names is no requirement: only "not dishonest" can be coded from it.
                encoded = [p for p in encoded if p.node is None or p.node["field"] == "credit_standing"]
            elif _DEFINITION.search(clean):
                encoded = []  # "本通知所称规上企业是指…": a word's meaning, not a requirement
            elif _BARRED.search(clean):
                # "已享受专精特新企业奖励的企业不得重复申报": who is barred, not who qualifies.
                encoded = [
                    p for p in encoded if p.node is None or p.node["field"] in ("credit_standing", "region_code")
                ]
                if _DISHONEST_NAMED.search(clean) and not any(
                    p.node is not None and p.node["field"] == "credit_standing" for p in encoded
                ):
                    # "列入失信被执行人名单的企业…不得申报": barring the dishonest is "not dishonest".
                    encoded.append(
                        ConditionProposal({"field": "credit_standing", "op": "ne", "value": "dishonest"}, clause, 0.8)
                    )
            if excluding:
                alt_group, alt_marker = None, None  # "有下列情形之一的，不予支持": no alternatives follow
                group, branch = None, None
            else:
                group, branch = alternatives(clean)
            if group is None and _OR.search(clean):
                # "营业收入达2000万元或研发投入达100万元": thresholds joined by 或 are alternatives.
                either = [p for p in encoded if p.node is not None and p.node["field"] in _THRESHOLD_FIELDS]
                if len({condition_key(p.node) for p in either if p.node is not None}) >= 2:
                    groups += 1
                    for i, p in enumerate(either):
                        p.group, p.branch = groups, i + 1
            elif group is not None:
                for p in encoded:
                    p.group, p.branch = group, branch
            if (
                negated
                and _DISHONEST_NAMED.search(clean)
                and not any(p.node is not None and p.node["field"] == "credit_standing" for p in encoded)
            ):
                encoded.append(
                    ConditionProposal({"field": "credit_standing", "op": "ne", "value": "dishonest"}, clause, 0.8)
                )
            for p in encoded:
                node = p.node
                if node is not None and node["op"] == "gte" and node["value"] in uppers.get(node["field"], ()):
                    node["op"] = "gt"
            for p in encoded:
                if p.node is not None and p.node["op"] == "lte" and p.node["field"] in _THRESHOLD_FIELDS:
                    uppers.setdefault(p.node["field"], set()).add(p.node["value"])
                p.source = clause
                add(p)
            if not under_heading or not _PLAIN_HINT.search(clause):
                continue
            # What the rule format cannot say stays plain language for the curator to confirm.
            phrases = [clause] if not encoded else re.split(r"[，,、]", clause)
            for phrase in phrases:
                text_only = re.sub(r"^(?:[(（]?[\d一二三四五六七八九十]+[)）、.．]\s*)", "", phrase).strip("。；; ")
                if (
                    len(text_only) >= 6
                    and _PLAIN_HINT.search(phrase)
                    and not (encoded and _encode_clause(_strip_references(phrase), home_region, vocab))
                ):
                    add(ConditionProposal(None, clause, 0.5, text=text_only[:200]))
    required = merged_quals.get(None)
    if required is not None and required.node is not None:
        for group, merged in merged_quals.items():
            if group is not None and merged.node is not None:
                merged.node["value"] = [v for v in merged.node["value"] if v not in required.node["value"]]
        out = [p for p in out if p.node is None or p.node["value"] != []]
    out = _one_industry(out)
    if any(
        p.node is not None and p.node["field"] == "qualifications" and "规模以上工业企业" in p.node["value"]
        for p in out
    ):
        # 规模以上工业企业 already says the firm is industrial: "…的工业企业" beside it adds no condition.
        out = [
            p
            for p in out
            if p.node is None
            or p.node != {"field": "industry_code", "op": "prefix", "value": INDUSTRY_WORDS["工业企业"]}
        ]
    return out


def _one_industry(proposals: list[ConditionProposal]) -> list[ConditionProposal]:
    """Industries named in several places are alternatives: one prefix list (a firm has one industry code,
    so two disjoint prefix conditions would together admit no firm)."""
    industries = [p for p in proposals if p.node is not None and p.node["field"] == "industry_code"]
    if len(industries) < 2:
        return proposals
    first = industries[0]
    assert first.node is not None
    codes_: list[str] = []
    for p in industries:
        assert p.node is not None
        codes_.extend(c for c in p.node["value"] if c not in codes_)
        if p is not first and p.source not in first.source:
            first.source += "；" + p.source
    codes_ = [c for c in codes_ if not any(o != c and c.startswith(o) for o in codes_)]
    for section, divisions in _divisions().items():
        if len(divisions) > 1 and all(d in codes_ for d in divisions):
            codes_ = [c for c in codes_ if c not in divisions] + [section]
    first.node["value"] = codes_
    first.group, first.branch = None, None
    return [p for p in proposals if p is first or p not in industries]


_EXAMPLES = re.compile(r"(?:^|[^\u4e00-\u9fa5])(?:如|例如|比如|诸如|譬如)[:：]?[^。；;]*$|(?:如|例如|比如|诸如)[:：]")
_ALSO_FOR = re.compile(
    r"(?:申请|申报)[^。；;，,]{2,40}?的(?:企业|单位|机构|项目)[^。；;，,]{0,4}?(?:还|另|另外|此外|同时还)(?:应|须|需|要)(?:当)?"
    r"(?:具备|符合|满足)"
)
_LIST_ITEM = re.compile(r"^\s*(?:[(（]?\d{1,2}[)）、.．]|[(（][一二三四五六七八九十]+[)）])\s*")
_ONE_OF = re.compile(
    r"(?:下列|以下|如下|下述)[^。；;]{0,12}(?:条件|情形|要求|标准|指标|情况)?(?:之一|中的一项|其中一项|任一|任意一)|"
    r"(?:符合|满足|具备|达到)(?:以下|下列)?(?:任一|任意一|其中之一)"
)
_OR = re.compile(r"或(?!以上|以下)")
_THRESHOLD_FIELDS = frozenset(
    {"annual_revenue", "rd_ratio", "rd_expense", "employees", "total_assets", "registered_capital", "export_revenue"}
)


def _marker_style(marker: str) -> str:
    """The numbering style of a list item: "1." and "2、" differ from "（1）" and "（一）"."""
    m = marker.strip()
    return re.sub(r"\d+|[一二三四五六七八九十]+", lambda d: "9" if d.group(0).isdigit() else "十", m)


_BARE_BOUND = re.compile(r"\s*(?:首次)?(?:分别)?(?:超过|达到|不低于|不少于|突破|高于)\s*\d")
_METRIC_LEAD = re.compile(r"((?:年)?(?:销售收入|营业收入|主营业务收入))(?:规模|标准|要求)?\s*[:：]\s*$")
_AWARD = re.compile(r"奖励|补助|资助|补贴|奖补|给予|贴息")
_PURPOSE = re.compile(
    r"^(为(了)?(进一步|加快|深入|贯彻|落实|推动|规范|促进|实施|支持|鼓励|抢抓|做好)|根据《|按照《|经研究|"
    r"为(了)?[^。；;，,]{2,40}[，,][^。；;]{0,160}?(?:出台|制定|印发|现将|特制定|结合(?:我|本)))"
)
# "（包括智能家居产品制造企业、产业链供应链企业…）": what an aside lists is examples, not the condition.
_INCLUDING = re.compile(r"[（(](?:包括|含|如|例如|主要包括)[^（）()]{0,80}[)）]")
# "申请第七条第一款的批发、零售企业，…": a requirement of one item of the policy, not of every applicant.
_SCOPED = re.compile(
    r"^\s*(?:[(（]?[\d一二三四五六七八九十]+[)）、.．])?\s*(?:申请|申报|享受)第[\d一二三四五六七八九十]+[条款项]"
)
_RATIO_CONTEXT = re.compile(
    r"研(?:发|究开发|究与试验发展)(?:费用|投入|经费)[^。；;]{0,20}占[^。；;]{0,24}收入[^。；;]{0,12}比"
)


_NEGATED_LEAD = re.compile(
    r"(?:(?:未|不得|无|没有)(?:发生|出现|存在|有)?|不(?:发生|出现|存在))(?:以下|下列|如下)[^。；;，,]{0,6}(?:情况|情形|行为|事项)"
)
_DISHONEST_NAMED = re.compile(r"失信|黑名单|不良信用|信用不良")
_DEFINITION = re.compile(r"所称[^。；;]{1,20}?(?:是指|系指|指的是|指)")
_BARRED = re.compile(
    r"不得(?:重复)?(?:申报|申请|享受)|不予(?:支持|受理|资助|奖励|补助)|不再(?:支持|享受|给予)|不重复(?:奖励|支持|享受|补助|资助)"
)
# "有下列情形之一的，不予支持：" / "以下企业不得申报：": the items below are exclusions.
_EXCLUDING_LEAD = re.compile(
    r"(?:有|存在|具有|属于|出现)(?:以下|下列|如下)[^。；;]{0,10}?(?:之一)?的?[^。；;]{0,6}?(?:不予|不得|不能|不可|取消|不再|不列入)|"
    r"(?:以下|下列|如下)[^。；;]{0,12}?(?:企业|单位|项目|主体|情形|情况)[^。；;]{0,4}?(?:不得|不予|不能|不可)"
    r"(?:申报|申请|支持|受理|享受|资助|奖励|补助)|"
    r"(?:不含|不包括|不包含)(?:以下|下列|如下)[^。；;，,]{0,6}?(?:企业|单位|主体|情形|情况)"
)
_PREFERRED_ALONE = re.compile(r"^\s*优先(?:予以|给予)?(?:认定|支持|推荐|考虑|立项|安排|入选)[。；;]?\s*$")


def _drop_preferences(clause: str) -> str:
    """Drop what is only preferred: "优先支持高新技术企业", "…的企业，优先予以认定" are no requirements."""
    if "优先" not in clause:
        return clause
    keep: list[str] = []
    for part in re.split(r"(?<=[，,])", clause):
        if "优先" in part:
            if _PREFERRED_ALONE.match(part.rstrip("，,")) and keep:
                keep.clear()  # "A、B，以及C，优先予以认定": the firms named before are the preferred ones
            continue
        keep.append(part)
    return "".join(keep).rstrip("，,")


_EXCEPTED_ASIDE = re.compile(r"[（(][^（）()]{0,40}?(?:除外|不含|不包括|不包含)[^（）()]{0,40}?[)）]")
_ANNOUNCED_WORK = re.compile(
    r"开展[^。；;，,]{0,60}?(?:申报|认定|评价|推荐|遴选|征集|评定)(?:工作|活动)|组织[^。；;，,]{0,40}?(?:申报|认定)(?:工作|活动)"
)
_OTHER_LEADERS = re.compile(
    r"(?:工业|链主型?|制造业|行业|产业链|商贸|流通|服务业|科技|文化|外贸|电商|物流|旅游|软件|金融|平台)$"
)
_FARMING = re.compile(r"农业|农产品|农民|涉农|农村|种植|养殖|畜牧|林业|渔业|水产")
_OTHER_KINDS = re.compile(r"(?:机构|组织|单位|社会团体|个体工商户|民营企业|合作社|高校|院所)(?:$|基本信息|名称)")


def _one_kind_among_others(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is one item of an enumeration of kinds of applicant (A、B、C)."""
    left = max(text.rfind(c, 0, start) for c in "，,。；;：:的") + 1
    rights = [i for i in (text.find(c, end) for c in "，,。；;：:") if i != -1]
    right = min(rights) if rights else len(text)
    items = [item.strip() for item in re.split(r"、|或者|或", text[left:right])]
    return len(items) > 1 and any(_OTHER_KINDS.search(item) for item in items if text[start:end] not in item)


def _example_among_others(text: str, vocab: QualificationVocabulary, start: int, length: int) -> bool:
    """Whether a qualification is one item of an open list ("A、B、C等") whose other items are no qualifications."""
    norm = normalize(text).lower().replace('"', "“")
    left = max(norm.rfind(c, 0, start) for c in "，,。；;：:") + 1
    rights = [i for i in (norm.find(c, start + length) for c in "，,。；;：:") if i != -1]
    span = norm[left : min(rights) if rights else len(norm)]
    if not re.search(r"等(?:[\u4e00-\u9fa5]{0,4})$", span) or "、" not in span:
        return False
    items = [item for item in re.split(r"[、]", re.sub(r"等[\u4e00-\u9fa5]{0,4}$", "", span)) if item]
    return len(items) > 1 and any(not vocab.find(item) for item in items)


def _compounds(hits: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """One name written straight after another is one compound name: "专精特新小巨人" is the 小巨人, and the
    words around it (申报…, …认定) are read around the whole compound."""
    out: list[tuple[int, str, str]] = []
    for pos, term, name in sorted(hits):
        if out and out[-1][0] + len(out[-1][1]) == pos:
            start, first, _ = out.pop()
            out.append((start, first + term, name))
        else:
            out.append((pos, term, name))
    return out


def _strip_references(clause: str) -> str:
    """Drop cited document titles and parenthetical asides: 《中小企业划型标准规定》 is not a condition."""
    clause = re.sub(r"《[^》]{0,80}》", "《》", clause)
    return clause


def _encode_clause(
    clause: str,
    home_region: str | None,
    vocab: QualificationVocabulary,
    *,
    ratio_context: bool = False,
    strict: bool = False,
    award: bool = False,
    farming: bool = True,
) -> list[ConditionProposal]:
    """Encode one clause; strict (no condition heading found) skips award tiers and weak industry hints."""
    found: list[ConditionProposal] = []
    award = award or bool(_AWARD.search(clause))
    # Region of registration / taxation.
    # The phrases naming registration, not another phrase of the clause, decide (引进境外技术 is no exclusion).
    registered = [ph for ph in re.split(r"[，,]", clause) if _REGISTERED.search(ph)]
    if registered and not any(re.search(r"境外|外地|以外|迁入|迁离", ph) for ph in registered):
        region = find_region(clause, home=home_region) or find_region(clause, short_names=True)
        code: str | None = None
        if region is not None:
            code = region[1]
        elif home_region and home_region != codes.NATIONAL_REGION:
            local = _LOCAL.search(clause)
            if local:
                code = _local_region(local.group(0), home_region)
            elif _ZONE.search(clause):
                code = home_region  # "注册和税务登记在高新区": the issuer's zone, coded as its place
        if code and code != codes.NATIONAL_REGION:
            found.append(
                ConditionProposal({"field": "region_code", "op": "within_region", "value": [code]}, clause, 0.85)
            )
    # Qualifications. "省级以上企业技术中心" names the provincial one and those above it.
    levelled = _LEVEL_UP.search(clause)
    qual_text = _LEVEL_UP.sub(lambda m: m.group(1) + "级", clause)
    hits = _compounds(vocab.find(qual_text))
    if hits:
        positive: list[str] = []
        negative: list[str] = []
        norm = normalize(qual_text).lower().replace('"', "“")
        skipped_until = -1  # "申报高新技术企业、专精特新中小企业": what follows a skipped name in its list goes too
        # "（已认定的专精特新中小企业除外）": what an aside excepts is barred, not required.
        excepted = [(m.start(), m.end()) for m in _EXCEPTED_ASIDE.finditer(norm)]
        # "现开展2024年度专精特新中小企业申报工作": what the work announced confers, not who may apply.
        announced = [(m.start(), m.end()) for m in _ANNOUNCED_WORK.finditer(norm)]
        for pos, term, name in hits:
            if skipped_until >= 0 and re.fullmatch(
                r"[、和及或与以及“”\"\s]*([\u4e00-\u9fa5]{1,4}[省市区县])?(国家级|省级|市级|区级)?",
                norm[skipped_until:pos],
            ):
                skipped_until = pos + len(term)
                continue
            skipped_until = -1
            if _EXAMPLES.search(norm[max(norm.rfind("，", 0, pos), norm.rfind(",", 0, pos), 0) : pos]):
                skipped_until = pos + len(term)
                continue  # "各类市场主体，如高新技术企业、科技型中小企业等": examples of another word
            if term == "规模以上" and not re.search(r"规模以上\s*(工业|企业|[(（])|规上", clause):
                continue
            lead = norm[max(0, pos - 8) : pos]
            tail = norm[pos + len(term) : pos + len(term) + 6].lstrip("”")
            if re.search(r"尚未|暂未", lead) and re.search(
                r"^[^。；;]{0,30}?(?:应|须|需)(?:在|于)?[^。；;]{0,16}?(?:内|前)", norm[pos + len(term) :]
            ):
                continue  # "尚未获得国高新资质的企业原则上应在一年内通过": a grace period, not a bar
            if any(a <= pos < b for a, b in excepted) or re.search(
                r"(未|不|非|没有)(被)?(认定|评为|列入|纳入|属于|是|获得)?为?$", lead
            ):
                negative.append(name)
            elif any(a <= pos < b for a, b in announced):
                continue
            elif re.match(r"[^，,。；;]{0,6}平均(?:水平|值|增幅|增速)", norm[pos + len(term) : pos + len(term) + 12]):
                continue  # "高于全省规上工业企业平均水平": a benchmark, not the firm's standing
            elif name == "规模以上工业企业" and re.match(r"(?:服务业|服务|批发|零售|商贸|住宿|餐饮)", tail):
                continue  # "规上服务业企业": above the threshold of another sector, not an industrial firm
            elif term == "龙头企业" and (_OTHER_LEADERS.search(lead) or not farming):
                # "工业龙头企业、链主型龙头企业", or a bare "龙头企业" in a text that names no farming: leaders of
                # another kind than the agricultural one
                continue
            elif re.match(r"(企业|单位)?(奖励|奖补|补助|补贴|资助|扶持|贡献奖)(政策|资金|办法|项目|措施)", tail):
                continue  # "新增入库限上企业奖励政策": the name of a scheme, not whom it is for
            elif re.match(r"(产品|服务产品)", tail):
                continue  # "（一）专精特新产品": a kind of product applied for, not the firm's standing
            elif _example_among_others(qual_text, vocab, pos, len(term)):
                continue  # "设立技术研究院、企业技术中心、博士后工作站等": one example of what is asked
            elif re.search(
                r"(申报|申请|认定|评选|推荐|培育|监测|争创|创建|争当|成长为|培育为|(?<!已)成为)(\d{4}年度?)?([\u4e00-\u9fa5]{1,4}[省市区县])?"
                r"(国家级|省级|市级|区级|国家|省|市|区)?(重点)?[“\"]?$",
                lead,
            ):
                skipped_until = pos + len(term)
                continue  # "申报省级龙头企业应符合以下条件": the policy confers it
            elif re.match(
                r"(的)?(国家级|省级|市级|区级|县级)?(认定|申报|申请|评价|培育|入库|梯度|奖补资金|政策|工作|管理|标准|指标|条件|专?板|潜质|潜力)",
                tail,
            ) and not (
                re.search(r"(通过|获得|已|(?<![特创高更])新|首次|取得|被|评为|认定为|列入)[^，,。]{0,12}$", lead)
                or re.match(r"”?入库[\u4e00-\u9fa5]{0,4}企业", norm[pos + len(term) : pos + len(term) + 10])
            ):  # "限上入库零售企业": a firm in the statistics, not one applying to enter them
                continue  # "申报高新技术企业认定": about becoming one, not for holders
            else:
                positive.append(name)
        if levelled:
            known = {name for _, name in vocab.terms}
            rank = _LEVELS.index(levelled.group(1))
            for name in list(positive):
                if name.startswith(levelled.group(1) + "级"):
                    rest = name[2:]
                    positive += [lv + "级" + rest for lv in _LEVELS[:rank] if lv + "级" + rest in known]
        positive = list(dict.fromkeys(positive))
        negative = list(dict.fromkeys(negative))
        if positive:
            found.append(
                ConditionProposal({"field": "qualifications", "op": "has_any", "value": positive}, clause, 0.8)
            )
        if negative:
            found.append(
                ConditionProposal({"field": "qualifications", "op": "has_none", "value": negative}, clause, 0.7)
            )
    # Size class.
    sized = _EXCEPTED_ASIDE.sub(lambda m: "　" * len(m.group(0)), clause)
    for _, term, _name in hits:
        sized = re.sub(re.escape(term), "　" * len(term), sized, flags=re.I)
    if not re.search(r"裁员|失业率|失业保险", clause):  # "招用城镇登记失业人员的小微企业": whom it hires
        candidates: list[tuple[int, list[str]]] = []
        taken: list[tuple[int, int]] = []
        for pattern, classes in _SIZE_WORDS:
            for m in pattern.finditer(sized):
                if any(a < m.end() and m.start() < b for a, b in taken):
                    continue
                taken.append((m.start(), m.end()))
                if re.match(
                    r"\s*(划型|划分|标准|认定标准|的?划型|股份|公共服务|服务|局|发展|促进|主管|创新创业|创业创新|大赛|竞赛|上云|计划|工程|专项|行动)",
                    sized[m.end() : m.end() + 4],
                ):
                    continue
                if _NEGATION.search(sized[: m.start()]) or re.search(r"　[”\"]?$", sized[: m.start()]):
                    continue  # "“专精特新”中小企业": the size word is part of the qualification's name
                defined = sized.find("是指")
                if _one_kind_among_others(sized, m.start(), m.end()) or (
                    -1 < defined < m.start() and not any(p.search(sized[:defined]) for p, _ in _SIZE_WORDS)
                ):
                    continue  # "民营企业、中小微企业、服务机构" may all apply; "隐形冠军是指…的中小企业" defines another word
                candidates.append((m.start(), classes))
        if candidates:
            candidates.sort(key=lambda c: c[0])
            found.append(
                ConditionProposal({"field": "size_class", "op": "in", "value": candidates[-1][1]}, clause, 0.75)
            )
    # Years established.
    lte = _YEARS_LTE.search(clause)
    if lte:
        years = cn_number(lte.group(1) or lte.group(2))
        if years is not None and years <= 50:
            found.append(
                ConditionProposal({"field": "established_on", "op": "years_since_lte", "value": years}, clause, 0.8)
            )
    else:
        gte = _YEARS_GTE.search(clause)
        days = _DAYS_GTE.search(clause)
        if days and int(days.group(1)) % 365 == 0 and not gte:
            found.append(
                ConditionProposal(
                    {"field": "established_on", "op": "years_since_gte", "value": int(days.group(1)) // 365},
                    clause,
                    0.75,
                )
            )
        if gte and re.search(r"承诺[^。；;]{0,30}$", clause[: gte.start()]):
            gte = None  # "承诺在本市经营期限不低于10年": a promise about the future, not the firm's age
        if gte and (gte.group(2) or re.search(r"满|超过|不少于|不低于|达到", gte.group(0))):
            years = cn_number(gte.group(1))
            if years is not None and 0 < years <= 50:
                found.append(
                    ConditionProposal({"field": "established_on", "op": "years_since_gte", "value": years}, clause, 0.8)
                )
    since = _DATE_SINCE.search(clause) or _DATE_SINCE_AFTER.search(clause)
    if since:
        year, month, day = int(since.group(1)), int(since.group(2) or 1), int(since.group(3) or 1)
        if since.group(4) in ("以前", "之前", "前"):
            if not since.group(2):
                month, day = 12, 31
            op = "lte"
        else:
            op = "gte"
        try:
            value = dt.date(year, month, day).isoformat()
            found.append(ConditionProposal({"field": "established_on", "op": op, "value": value}, clause, 0.75))
        except ValueError:
            pass
    # Thresholds (an award tier in a text without condition headings is a support standard, not eligibility).
    if not (strict and award):
        found.extend(_numeric(clause, ratio_context=ratio_context))
    # Credit standing.
    if _DISHONEST.search(clause):
        found.append(ConditionProposal({"field": "credit_standing", "op": "ne", "value": "dishonest"}, clause, 0.85))
    tax_not = _TAX_NOT.search(clause)
    if tax_not:
        levels = [lv for lv in (tax_not.group(1), tax_not.group(2)) if lv]
        found.append(ConditionProposal({"field": "tax_credit_level", "op": "not_in", "value": levels}, clause, 0.8))
    else:
        tax = _TAX_LEVEL.search(clause)
        if tax:
            level = tax.group(1)
            levels = _TAX_ORDER[: _TAX_ORDER.index(level) + 1] if tax.group(2) else [level]
            if tax.group(2) and level == "B":
                levels = ["A", "B"]  # B级及以上: M is a separate grade for new taxpayers
            found.append(ConditionProposal({"field": "tax_credit_level", "op": "in", "value": levels}, clause, 0.85))
    # Industry: a sector named as what the firm is or does (not inside a qualification's name).
    plain_clause = _INCLUDING.sub(lambda m: "　" * len(m.group(0)), clause)  # "（包括…制造企业…）": examples
    for _, term, _name in hits:
        plain_clause = re.sub(re.escape(term), "　", plain_clause, flags=re.I)
    industry, words = find_industries(plain_clause)
    if industry and not (strict and award):  # "制造业企业奖励方面，对…给予": the scope of one award tier
        named = "|".join(map(re.escape, words))
        firm = re.search(
            rf"(属于|从事|为)[^，,。；;]{{0,12}}({named})|({named})[^，,。；;]{{0,8}}(企业|行业|领域|单位)",
            plain_clause,
        )
        excluded = re.search(rf"(除|不含|不包括|以外|非)[^。；;]{{0,30}}({named})", plain_clause) or re.search(
            rf"({named})[^。；;]{{0,30}}?(除外|以外|不予支持|不得申报|不在[^。；;]{{0,8}}范围)", plain_clause
        )
        # "工业企业或现代服务业企业": the other kind has no code, so the sectors named are only part of it.
        other = re.search(
            rf"({named})[^，,。；;或]{{0,4}}(?:企业|行业)?(?:或|或者|以及)([\u4e00-\u9fa5]{{2,10}}?)(?:企业|行业|单位)",
            plain_clause,
        )
        kinds = "|".join(map(re.escape, (w for w in words if w.endswith("企业"))))
        if not firm and kinds:
            # "具有独立法人资格的工业企业；": the word is the applicant itself (not "全区工业企业平均水平").
            firm = re.search(
                rf"(?<!全区)(?<!全市)(?<!全省)(?<!全县)({kinds})(?=[，,。；;、(（]|和|或|及|$)", plain_clause
            )
        if other and not find_industries(other.group(2))[0]:
            firm = None
        if firm and re.match(r"[^，,。；;、]{0,12}?项目", plain_clause[firm.end() :]):
            firm = None  # "申报的制造业中小企业数字化改造项目在…实施": a kind of project, not the firm's sector
        if firm and excluded and re.match(r"不含|不包括|不包含", excluded.group(0)):
            # "…的制造业企业，不包括电力、热力、燃气和水的生产和供应业": the sectors named outside the exception stay.
            kept, _ = find_industries(re.sub(r"(?:不含|不包括|不包含)[^。；;]*", "", plain_clause))
            kept = [c for c in kept if c in industry]
            if kept and firm.start() < excluded.start():
                industry, excluded = kept, None
        if firm and not excluded:
            found.append(ConditionProposal({"field": "industry_code", "op": "prefix", "value": industry}, clause, 0.65))
    return found
