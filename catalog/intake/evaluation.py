"""Evaluate intake on the labelled policy documents in tests/data/intake (labels written by hand).

Fields: accuracy over every labelled (document, field) pair — a missing or different value is wrong.
Conditions: a proposed condition counts when field, operator and value all equal a labelled one;
precision over proposed coded conditions, recall over labelled ones. Plain-language conditions are
not scored. The baseline in the same run is keyword rules alone: a qualification word anywhere in
the text, a metric word followed by a number (always ≥), the first 文号 and date anywhere, the first
line as title — no sections, no operators, no layout.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalog.intake.conditions import (
    METRICS,
    ConditionProposal,
    condition_key,
    default_qualifications,
    propose_conditions,
)
from catalog.intake.extract import clean_text, split_sections
from catalog.intake.fields import DOC_NUMBER, Proposal, extract_fields, find_region
from catalog.intake.text import NUM, amount_wan, find_dates
from core import codes

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "tests" / "data" / "intake"
SCORED_FIELDS = (
    "title", "issuer", "doc_number", "published_on", "apply_start_on", "apply_end_on", "valid_from_on",
    "valid_to_on", "max_amount", "contact_phone", "apply_url", "level", "region_code",
)  # fmt: skip


@dataclass
class Labelled:
    doc_id: str
    split: str
    text: str
    fields: dict[str, Any]
    conditions: list[tuple[str, str, str]]


@dataclass
class Score:
    field_hits: int = 0
    field_total: int = 0
    outside_table: int = 0  # region labels whose code core/data/regions.csv lacks: intake cannot propose them
    tp: int = 0
    proposed: int = 0
    labelled: int = 0
    per_field: dict[str, list[int]] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)

    @property
    def field_accuracy(self) -> float:
        return self.field_hits / self.field_total if self.field_total else 0.0

    @property
    def field_accuracy_in_table(self) -> float:
        """Accuracy over the fields the project's code tables can express."""
        total = self.field_total - self.outside_table
        return self.field_hits / total if total else 0.0

    @property
    def precision(self) -> float:
        return self.tp / self.proposed if self.proposed else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.labelled if self.labelled else 0.0


def load(split: str = "all", data_dir: Path = DATA_DIR) -> list[Labelled]:
    """Read the labelled set; split is "tune", "test", "fresh" (texts added in session 7, never studied one by
    one: scored in aggregate only, see tests/data/README.md) or "all"."""
    labels = json.loads((data_dir / "labels.json").read_text(encoding="utf-8"))
    out: list[Labelled] = []
    for doc_id, item in sorted(labels.items()):
        if split != "all" and item["split"] != split:
            continue
        text = (data_dir / f"{doc_id}.txt").read_text(encoding="utf-8")
        conditions = [condition_key({"field": f, "op": o, "value": v}) for f, o, v in item["conditions"]]
        out.append(Labelled(doc_id, item["split"], text, item["fields"], conditions))
    return out


def _same(name: str, got: Any, want: Any) -> bool:
    if got is None:
        return False
    if isinstance(got, dt.date):
        got = got.isoformat()
    if name == "max_amount":
        try:
            return abs(float(got) - float(want)) < 1e-6
        except (TypeError, ValueError):
            return False
    norm = lambda s: re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(s)))  # noqa: E731
    return norm(got) == norm(want)


def _in_table(code: str) -> bool:
    try:
        return codes.normalize_region_code(code) == code and codes.region_name(code) is not None
    except ValueError:
        return False


def _score(
    score: Score, doc: Labelled, fields: dict[str, Any], proposals: list[tuple[str, str, str]], verbose: bool
) -> None:
    for name, want in doc.fields.items():
        if name not in SCORED_FIELDS:
            continue
        ok = _same(name, fields.get(name), want)
        if name == "region_code" and not _in_table(str(want)):
            score.outside_table += 1
        score.field_total += 1
        score.field_hits += ok
        score.per_field.setdefault(name, [0, 0])
        score.per_field[name][0] += ok
        score.per_field[name][1] += 1
        if not ok and verbose:
            score.misses.append(f"{doc.doc_id} 字段 {name}: 得到 {fields.get(name)!r}，应为 {want!r}")
    got = set(proposals)
    want_set = set(doc.conditions)
    score.tp += len(got & want_set)
    score.proposed += len(got)
    score.labelled += len(want_set)
    if verbose:
        for k in sorted(got - want_set):
            score.misses.append(f"{doc.doc_id} 多出条件: {k}")
        for k in sorted(want_set - got):
            score.misses.append(f"{doc.doc_id} 漏掉条件: {k}")


def intake_text(text: str) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Run the real extractors on a text: (field values, condition keys)."""
    text = clean_text(text)
    found = extract_fields(text)
    region = found.get("region_code")
    proposals = propose_conditions(text, sections=split_sections(text), home_region=region.value if region else None)
    return {k: v.value for k, v in found.items()}, [k for p in proposals if (k := p.key())]


# ---------------------------------------------------------------- baseline


def baseline_text(text: str) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Keyword rules alone (see the module docstring)."""
    text = clean_text(text)
    lines = [line for line in text.split("\n") if line.strip()]
    fields: dict[str, Any] = {}
    if lines:
        fields["title"] = lines[0]
    m = DOC_NUMBER.search(text)
    if m:
        fields["doc_number"] = m.group(1)
    dates = find_dates(text)
    if dates:
        fields["published_on"] = dates[0][1]
    amounts = [amount_wan(a, u) for a, u in re.findall(rf"({NUM})\s*(亿元|万元)", text)]
    if amounts:
        fields["max_amount"] = max(amounts)
    region = find_region(text)
    if region:
        fields["region_code"] = region[1]
    keys: set[tuple[str, str, str]] = set()
    for _, _, name in default_qualifications().find(text):
        keys.add(condition_key({"field": "qualifications", "op": "has_any", "value": [name]}))
    for field_name, pattern in METRICS:
        for m2 in pattern.finditer(text):
            n = re.search(rf"({NUM})\s*(亿元|万元|%|人)", text[m2.end() : m2.end() + 20])
            if n:
                value = (
                    float(n.group(1).replace(",", ""))
                    if n.group(2) in ("%", "人")
                    else amount_wan(n.group(1), n.group(2))
                )
                keys.add(condition_key({"field": field_name, "op": "gte", "value": value}))
    if re.search(r"失信|信用", text):
        keys.add(condition_key({"field": "credit_standing", "op": "ne", "value": "dishonest"}))
    return fields, sorted(keys)


@dataclass
class Result:
    split: str
    documents: int
    system: Score
    baseline: Score
    seconds: float


def run(
    split: str = "test",
    *,
    verbose: bool = False,
    data_dir: Path = DATA_DIR,
    only: Callable[[str], bool] | None = None,
) -> Result:
    """Score intake and the keyword baseline on a split (`only`: the documents whose id it accepts)."""
    docs = [doc for doc in load(split, data_dir) if only is None or only(doc.doc_id)]
    system, baseline = Score(), Score()
    started = time.perf_counter()
    for doc in docs:
        fields, conds = intake_text(doc.text)
        _score(system, doc, fields, conds, verbose)
    seconds = time.perf_counter() - started
    for doc in docs:
        fields, conds = baseline_text(doc.text)
        _score(baseline, doc, fields, conds, False)
    return Result(split, len(docs), system, baseline, seconds)


def format_report(result: Result) -> str:
    s, b = result.system, result.baseline
    lines = [
        f"政策录入评估（{result.split}，{result.documents} 份文件，标注字段 {s.field_total} 个，标注条件 {s.labelled} 条）",
        f"{'':14}{'字段准确率':>10}{'条件精确率':>10}{'条件召回率':>10}",
        f"{'本系统':14}{s.field_accuracy:>10.3f}{s.precision:>10.3f}{s.recall:>10.3f}",
        f"{'关键词基线':12}{b.field_accuracy:>10.3f}{b.precision:>10.3f}{b.recall:>10.3f}",
        f"字段准确率（不计地区代码表 core/data/regions.csv 之外的 {s.outside_table} 个地区标注）："
        f"本系统 {s.field_accuracy_in_table:.3f}，关键词基线 {b.field_accuracy_in_table:.3f}",
        "各字段准确率：" + "，".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(s.per_field.items())),
        f"耗时 {result.seconds:.2f} 秒",
    ]
    lines.extend(s.misses)
    return "\n".join(lines)


__all__ = ["ConditionProposal", "Proposal", "Result", "format_report", "run"]
