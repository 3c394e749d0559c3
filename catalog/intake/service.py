"""Intake: extracted documents become draft policies (never published) with their proposals.

Two stages: `prepare` reads and analyses every file of an upload and writes nothing (slow work: PDF
text, rules), then `store` creates all drafts in one short transaction, so a bad file in a batch
leaves nothing half-saved and no write lock is held while documents are read. A PDF or DOCX original
is kept as the draft's 政策原文 attachment (catalog.attachments) when settings are given.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.service import Principal
from catalog import attachments as policy_files
from catalog import rules as rules_mod
from catalog import service as catalog_service
from catalog.intake.conditions import ConditionProposal, QualificationVocabulary, propose_conditions, rules_of
from catalog.intake.extract import DOCX, PDF, Document, Limits, extract_batch
from catalog.intake.fields import Proposal, extract_fields
from catalog.models import Department, Policy, PolicyIntake, PolicyLevel, PolicyType, Tag, TagKind
from catalog.schemas import PolicyIn
from core.attachments import AttachmentKind
from core.config import Settings
from core.errors import FieldError, ValidationFailed
from core.text import normalize

# Tag proposals come from a higher layer (the matcher's vocabulary): (title, text, rules) → tag names.
TagSuggester = Callable[[str, str, dict[str, Any] | None], list[str]]

SHINGLE = 5
NEAR_DUPLICATE = 0.8  # Jaccard of character 5-gram sets at or above which texts count as the same


@dataclass
class Analysis:
    """What intake found in one document, before anything is stored."""

    document: Document
    fields: dict[str, Proposal]
    conditions: list[ConditionProposal]
    tags: list[str] = field(default_factory=list)

    def rules(self) -> dict[str, Any] | None:
        return rules_of(self.conditions)


@dataclass
class IntakeResult:
    analysis: Analysis
    policy: Policy | None = None
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        a = self.analysis
        return {
            "policy_id": self.policy.id if self.policy else None,
            "status": str(self.policy.status) if self.policy else None,
            "document": a.document.as_dict(),
            "fields": {k: v.as_dict() for k, v in a.fields.items()},
            "conditions": [c.as_dict() for c in a.conditions],
            "tags": a.tags,
            "duplicates": self.duplicates,
        }


def shingles(text: str, size: int = SHINGLE) -> set[str]:
    """Character n-grams of the text with spaces and punctuation removed."""
    compact = re.sub(r"[\s\W_]+", "", normalize(text or ""))
    if len(compact) <= size:
        return {compact} if compact else set()
    return {compact[i : i + size] for i in range(len(compact) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def qualification_vocabulary(db: Session) -> QualificationVocabulary:
    rows = db.scalars(select(Tag).where(Tag.kind == TagKind.qualification))
    return QualificationVocabulary.from_pairs((t.name, t.synonyms or []) for t in rows)


def analyse(
    doc: Document,
    *,
    qualifications: QualificationVocabulary | None = None,
    home_region: str | None = None,
    suggest_tags: TagSuggester | None = None,
) -> Analysis:
    """Find fields and conditions in one extracted document."""
    found = extract_fields(doc.text)
    region = found.get("region_code")
    conditions = propose_conditions(
        doc.text,
        sections=doc.sections,
        home_region=home_region or (region.value if region else None),
        qualifications=qualifications,
    )
    analysis = Analysis(doc, found, conditions)
    if suggest_tags is not None:
        title = found["title"].value if "title" in found else ""
        analysis.tags = suggest_tags(title, doc.text, analysis.rules())
    return analysis


def _department_for(db: Session, issuer: str | None, code: str | None) -> Department:
    if code:
        return catalog_service.get_department_by_code(db=db, code=code, field="department")
    if issuer:
        departments = list(db.scalars(select(Department)))
        first = re.split(r"[、，,\s]", issuer)[0]
        for d in departments:
            if d.name == first or d.name == issuer:
                return d
        hits = [d for d in departments if d.name in issuer or (len(d.short_name) >= 3 and d.short_name in first)]
        if len(hits) == 1:
            return hits[0]
    raise ValidationFailed(
        f"无法确定发文部门（识别到：{issuer or '无'}），请选择发文部门后重新上传",
        code="catalog.intake_department_unknown",
        errors=[
            FieldError("department", "发文部门不在部门列表中，请指定部门编码", "catalog.intake_department_unknown")
        ],
    )


def _level(found: dict[str, Proposal], department: Department) -> PolicyLevel:
    if "level" in found:
        return PolicyLevel(found["level"].value)
    code = department.region_code
    if code == "100000":
        return PolicyLevel.national
    if code.endswith("0000"):
        return PolicyLevel.provincial
    if code.endswith("00"):
        return PolicyLevel.municipal
    return PolicyLevel.county


def _valid_rules(rules: dict[str, Any] | None, known_tags: set[str]) -> dict[str, Any] | None:
    """Keep the proposed nodes that validate on their own (a bad guess never blocks the draft)."""
    if not rules:
        return None
    kept = [n for n in rules["all"] if not rules_mod.validate_rules(n, known_tags=known_tags)]
    return {"all": kept} if kept else None


def intake_record(db: Session, policy_id: int) -> PolicyIntake | None:
    """What intake proposed for a draft, if it was made from a document."""
    return db.scalar(select(PolicyIntake).where(PolicyIntake.policy_id == policy_id))


def find_duplicates(db: Session, analysis: Analysis, exclude: set[int] | None = None) -> list[dict[str, Any]]:
    """Existing policies with the same 文号 or near-identical text (character shingles, Jaccard)."""
    out: list[dict[str, Any]] = []
    doc_number = analysis.fields.get("doc_number")
    if doc_number:
        for pid, title in db.execute(select(Policy.id, Policy.title).where(Policy.doc_number == doc_number.value)):
            out.append({"policy_id": pid, "title": title, "reason": "文号相同", "similarity": 1.0})
    mine = shingles(analysis.document.text)
    seen = {d["policy_id"] for d in out} | (exclude or set())
    rows = db.execute(select(Policy.id, Policy.title, Policy.full_text).where(Policy.full_text.is_not(None)))
    for pid, title, text in rows:
        if pid in seen:
            continue
        score = jaccard(mine, shingles(text))
        if score >= NEAR_DUPLICATE:
            out.append({"policy_id": pid, "title": title, "reason": "正文几乎相同", "similarity": round(score, 3)})
    return out


@dataclass
class Plan:
    """One document read and analysed, with the department its draft will belong to (nothing stored yet)."""

    analysis: Analysis
    department_id: int


def prepare(
    *,
    db: Session,
    files: list[tuple[str, bytes]],
    department: str | None = None,
    limits: Limits | None = None,
    suggest_tags: TagSuggester | None = None,
) -> list[Plan]:
    """Read every file (a zip is a batch) and analyse each document; reads only, refuses the whole upload."""
    documents: list[Document] = []
    for filename, data in files:
        documents.extend(extract_batch(data, filename, limits))
    vocab = qualification_vocabulary(db)
    plans: list[Plan] = []
    for doc in documents:
        first = extract_fields(doc.text)
        issuer = first.get("issuer")
        dept = _department_for(db, issuer.value if issuer else None, department)
        region = first.get("region_code")
        home = region.value if region else dept.region_code
        analysis = analyse(doc, qualifications=vocab, home_region=home, suggest_tags=suggest_tags)
        plans.append(Plan(analysis, dept.id))
    return plans


def store(
    *, db: Session, plans: list[Plan], actor: Principal | None, settings: Settings | None = None
) -> list[IntakeResult]:
    """Create one draft policy per planned document (the caller's transaction), keeping PDF / DOCX originals."""
    lookup = catalog_service.tag_lookup(db=db)
    known = {t.name for t in lookup.values()}
    results: list[IntakeResult] = []
    created: set[int] = set()
    for plan in plans:
        analysis = plan.analysis
        dept = db.get_one(Department, plan.department_id)
        duplicates = find_duplicates(db, analysis, exclude=created)
        policy = _create_draft(
            db, analysis, dept, actor, known, taken_number=any(d["reason"] == "文号相同" for d in duplicates)
        )
        result = IntakeResult(analysis, policy, duplicates)
        record = result.as_dict()
        db.add(
            PolicyIntake(
                policy_id=policy.id,
                filename=analysis.document.filename[:255],
                kind=analysis.document.kind,
                sha256=hashlib.sha256(analysis.document.text.encode("utf-8")).hexdigest(),
                sections=record["document"]["sections"],
                proposals={k: record[k] for k in ("fields", "conditions", "tags", "duplicates")},
                created_by_id=actor.user_id if actor else None,
            )
        )
        if settings is not None and _keeps_original(analysis.document, settings):
            policy_files.attach_to_policy(
                db,
                policy_id=policy.id,
                kind=AttachmentKind.original,
                name=analysis.document.filename,
                data=analysis.document.original,
                user=actor,
                settings=settings,
            )
        created.add(policy.id)
        results.append(result)
    db.flush()
    return results


def _keeps_original(doc: Document, settings: Settings) -> bool:
    """PDF and DOCX originals within the attachment size limit are kept (HTML / TXT live on as full text)."""
    return doc.kind in (PDF, DOCX) and 0 < len(doc.original) <= settings.attachment_max_mb * 1024 * 1024


def intake_files(
    *,
    db: Session,
    files: list[tuple[str, bytes]],
    actor: Principal | None,
    department: str | None = None,
    limits: Limits | None = None,
    suggest_tags: TagSuggester | None = None,
    settings: Settings | None = None,
) -> list[IntakeResult]:
    """Both stages in the caller's transaction (the CLI and tests; requests write in a stage of their own)."""
    plans = prepare(db=db, files=files, department=department, limits=limits, suggest_tags=suggest_tags)
    return store(db=db, plans=plans, actor=actor, settings=settings)


def _create_draft(
    db: Session, analysis: Analysis, dept: Department, actor: Principal | None, known: set[str], *, taken_number: bool
) -> Policy:
    found = analysis.fields
    title = found["title"].value if "title" in found else (analysis.document.filename or "未命名政策")
    title = title[:190]
    if len(title) < 4:
        title = f"{title}（导入）"
    base_title = title
    n = 1
    while db.scalar(select(Policy.id).where(Policy.title == title, Policy.issuing_department_id == dept.id)):
        n += 1
        title = f"{base_title}（导入稿{n}）"
    data: dict[str, Any] = {
        "title": title,
        "issuing_department": dept.code,
        "level": _level(found, dept),
        "policy_type": PolicyType.application if "申报" in analysis.document.text else PolicyType.informational,
        "full_text": analysis.document.text[:200000],
        "rules": _valid_rules(analysis.rules(), known),
        "tags": [t for t in analysis.tags if t in known],
    }
    if "doc_number" in found and not taken_number and len(found["doc_number"].value) <= 80:
        data["doc_number"] = found["doc_number"].value
    for key in ("apply_start_on", "apply_end_on", "valid_from_on", "valid_to_on", "max_amount", "apply_url"):
        if key in found:
            data[key] = found[key].value
    if "amount_text" in found:
        data["amount_text"] = found["amount_text"].value[:500]
    if "contact_phone" in found:
        name = found["contact_name"].value if "contact_name" in found else ""
        data["interpreter_contact"] = f"{name} {found['contact_phone'].value}".strip()[:120]
        if name:
            data["interpreter_name"] = name
    if "region_code" in found and found["region_code"].value != "100000":
        data["region_codes"] = [found["region_code"].value]
    for a, b in (("apply_start_on", "apply_end_on"), ("valid_from_on", "valid_to_on")):
        if a in data and b in data and data[a] > data[b]:
            data.pop(a)
    if "max_amount" in data and not 0 <= data["max_amount"] <= 10_000_000:
        data.pop("max_amount")
    try:
        policy_in = PolicyIn(**data)
    except Exception:  # noqa: BLE001 - a proposed value out of range: drop the optional ones and retry
        for key in ("apply_url", "amount_text", "interpreter_contact", "interpreter_name"):
            data.pop(key, None)
        policy_in = PolicyIn(**data)
    return catalog_service.create_policy(db=db, policy_in=policy_in, actor=actor)
