"""The curator's pages (政策管理): policy list and editor with the rule builder and its live preview,
tag suggestions, publish / withdraw, versions and diffs, the eligible-firm list with export, targeted
pushes with preview, and policy / enterprise import and export with the row report on the page.

Every change goes through the catalog, matcher and push services the API uses; the pages only read
forms and shape results. Publishing and editing a published policy queue the same follow-up jobs
the API queues (fan-out to eligible firms, change notices).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from auth.models import Role, User
from auth.service import Principal
from catalog import attachments as policy_files
from catalog import io as catalog_io
from catalog import rules as rules_mod
from catalog import service as catalog_service
from catalog.fields import FIELDS, SIZE_CLASSES
from catalog.models import TAG_KIND_LABELS, TYPE_LABELS, PolicyLevel, PolicyStatus, PolicyType
from catalog.schemas import PolicyFilters, PolicyIn, PolicyUpdate
from core import codes, jsonsafe, tabular
from core.deps import AppSettings, DbSession, writes_in_stages
from core.errors import (
    Conflict,
    FieldError,
    HuiqiError,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
    pydantic_field_errors,
)
from desk import ratings as desk_ratings
from matcher import coverage as matcher_coverage
from matcher import export as matcher_export
from matcher import intake as matcher_intake
from matcher import lists as matcher_lists
from matcher import runs as matcher_runs
from matcher import suggestions as matcher_suggestions
from matcher.deps import MatcherDep
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY
from matcher.eligibility import STATUS_LABELS as VERDICT_LABELS
from profiles import io as profiles_io
from push import targeting
from push.schemas import ManualPushIn, TargetFilters
from web import attachments as web_files
from web import choices, views
from web.deps import WebAllow
from web.forms import FormErrors, PageBody, PageForm, form_list, form_values, keep
from web.templating import ROLE_HOME, WebRoute, redirect, register_nav, render

router = APIRouter(prefix="/staff", route_class=WebRoute, include_in_schema=False)
Curator = Annotated[Principal, Depends(WebAllow(Role.curator, Role.admin))]

register_nav("政策管理", "/staff/policies", (Role.curator, Role.admin), order=110)
register_nav("定向推送", "/staff/push", (Role.curator, Role.admin), order=120)
register_nav("导入导出", "/staff/io", (Role.curator, Role.admin), order=130)
ROLE_HOME.setdefault(Role.curator, "/staff/policies")

LIST_PAGE_SIZE = 20
ELIGIBLE_PAGE_SIZE = 20
TEXT_FIELDS = (
    "title",
    "doc_number",
    "issuing_department",
    "handling_department",
    "level",
    "policy_type",
    "summary",
    "interpretation",
    "interpreter_name",
    "interpreter_contact",
    "full_text",
    "apply_start_on",
    "apply_end_on",
    "valid_from_on",
    "valid_to_on",
    "max_amount",
    "amount_text",
    "apply_url",
)
LIST_FIELDS = ("region_codes", "tags")  # typed as text, separated by commas, 、 or spaces
CHECK_FIELDS = ("categories", "topics")
CHANNEL_LABELS = {"inbox": "站内信", "email": "电子邮件", "sms": "短信", "webhook": "Webhook"}
IMPORT_KINDS = {"policies": "政策", "enterprises": "企业"}


# ---------------------------------------------------------------- shaping


def split_list(text: str | None) -> list[str]:
    """Split a typed list (commas, 、, ；, spaces or new lines) into its non-blank items."""
    if not text:
        return []
    for sep in (",", "，", "、", ";", "；", "\n"):
        text = text.replace(sep, " ")
    return [item for item in (t.strip() for t in text.split(" ")) if item]


def rule_builder_schema(*, db: Any) -> dict[str, Any]:
    """Return what the rule builder offers: fields, operators by field type, choices and tag names."""
    tags = catalog_service.list_tags(db=db)
    return {
        "fields": [
            {
                "name": f.name,
                "label": f.label,
                "type": f.type,
                "unit": f.unit,
                "derived": f.derived,
                "choices": [list(c) for c in f.choices],
            }
            for f in FIELDS.values()
        ],
        "ops": {
            name: {"title": spec.title, "types": list(spec.types), "value": spec.value_def}
            for name, spec in rules_mod.OPS.items()
        },
        "qualifications": [t.name for t in tags if t.kind == "qualification"],
        "tags": [{"name": t.name, "kind": TAG_KIND_LABELS.get(t.kind, t.kind)} for t in tags],
        "regions": [
            {"code": r["code"], "name": r["name"]} for r in codes.list_regions() if r["code"] != codes.NATIONAL_REGION
        ],
        "limits": {"depth": rules_mod.MAX_DEPTH, "conditions": rules_mod.MAX_CONDITIONS},
    }


def parse_rules(text: str | None) -> tuple[dict[str, Any] | None, FieldError | None]:
    """Read the rules JSON of the editor: blank or null means no conditions; bad JSON is a field error."""
    text = (text or "").strip()
    if not text or text == "null":
        return None, None
    try:
        value = jsonsafe.loads(text)
    except json.JSONDecodeError as exc:
        return None, FieldError("rules", f"资格条件 JSON 格式有误（第 {exc.lineno} 行第 {exc.colno} 列）", "json")
    except ValueError as exc:  # nested past what json.loads can read
        return None, FieldError("rules", f"资格条件{exc}", "too_deep")
    if reason := jsonsafe.too_deep(value):
        return None, FieldError("rules", f"资格条件{reason}，条件树最多 {rules_mod.MAX_DEPTH} 层", "too_deep")
    if value is not None and not isinstance(value, dict):
        return None, FieldError("rules", '资格条件应为一个 JSON 对象，如 {"all": [...]}', "json")
    return value, None


def policy_values(policy: Any) -> dict[str, Any]:
    """Return an existing policy as editor values (lists typed as text, rules as indented JSON)."""
    snap = catalog_service.snapshot(policy)
    values: dict[str, Any] = {k: snap.get(k) for k in TEXT_FIELDS}
    values["region_codes"] = "、".join(snap["region_codes"])
    values["tags"] = "、".join(snap["tags"])
    values["categories"] = snap["categories"]
    values["topics"] = snap["topics"]
    values["pinned"] = snap["pinned"]
    values["rules_json"] = json.dumps(policy.rules, ensure_ascii=False, indent=2) if policy.rules else ""
    if values.get("max_amount") is not None:
        values["max_amount"] = tabular.format_number(values["max_amount"])
    return values


def read_policy_form(form: Any) -> tuple[dict[str, Any], dict[str, Any], list[FieldError]]:
    """Return (values to show again, data for the catalog service, errors found before the service)."""
    values = form_values(form, (*TEXT_FIELDS, *LIST_FIELDS, "rules_json", "note"))
    values["categories"] = form_list(form, "categories")
    values["topics"] = form_list(form, "topics")
    values["pinned"] = form.get("pinned") in ("1", "on", "true")
    data: dict[str, Any] = {k: values[k] for k in TEXT_FIELDS}
    data["region_codes"] = split_list(values["region_codes"])
    data["tags"] = split_list(values["tags"])
    data["categories"] = values["categories"]
    data["topics"] = values["topics"]
    data["pinned"] = values["pinned"]
    errors: list[FieldError] = []
    rules, problem = parse_rules(values["rules_json"])
    if problem:
        errors.append(problem)
    data["rules"] = rules
    return values, data, errors


def rule_errors(exc: HuiqiError | ValidationError | None) -> list[str]:
    """Return every reason given for the rules (the form shows one message per field, rules get all)."""
    if exc is None:
        return []
    found = pydantic_field_errors(exc.errors()) if isinstance(exc, ValidationError) else exc.errors
    return [
        f"{e.field.removeprefix('rules').lstrip('.') or '条件'}：{e.reason}"
        for e in found
        if e.field.startswith("rules")
    ]


def _display(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "（空）"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, indent=2)
    return str(value)


def inline_diff(before: Any, after: Any) -> list[tuple[str, str]]:
    """Return (op, text) pieces marking what was removed ("del") and added ("ins") between two values."""
    a, b = _display(before), _display(after)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("same", a[i1:i2]))
            continue
        if op in ("delete", "replace"):
            out.append(("del", a[i1:i2]))
        if op in ("insert", "replace"):
            out.append(("ins", b[j1:j2]))
    return out


# ---------------------------------------------------------------- policy list


@router.get("/policies")
def policy_list(
    request: Request,
    db: DbSession,
    curator: Curator,
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: str | None = None,
    category: str | None = None,
    department: str | None = None,
    level: str | None = None,
    policy_type: str | None = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """Every policy, drafts and withdrawn ones included, with filters and each one's status."""
    today = dt.date.today()
    filters = PolicyFilters(
        q=(q or "").strip() or None,
        status=PolicyStatus(status) if status and status in PolicyStatus.__members__ else None,
        category=category or None,
        department=department or None,
        level=PolicyLevel(level) if level and level in PolicyLevel.__members__ else None,
        policy_type=PolicyType(policy_type) if policy_type and policy_type in PolicyType.__members__ else None,
        sort="published",
    )
    items, total = catalog_service.list_policies(
        db=db, filters=filters, actor=curator, offset=(page - 1) * LIST_PAGE_SIZE, limit=LIST_PAGE_SIZE, today=today
    )
    pages = max(1, math.ceil(total / LIST_PAGE_SIZE))
    counts = {
        s: catalog_service.list_policies(db=db, filters=PolicyFilters(status=s), actor=curator, limit=0)[1]
        for s in PolicyStatus
    }
    return render(
        request,
        "staff_policies.html",
        {
            "rows": [views.policy_row(p, today) for p in items],
            "ratings": desk_ratings.summaries(db=db, policy_ids=[p.id for p in items]),
            "total": total,
            "filters": filters,
            "counts": counts,
            "page_links": views.page_links(request, page, pages),
            "categories": choices.categories(db=db),
            "departments": choices.departments(db=db, home_region=request.app.state.settings.home_region),
            "levels": choices.LEVELS,
            "saved": request.query_params.get("saved"),
            "match_status": matcher_runs.status(db),
        },
    )


# ---------------------------------------------------------------- policy editor


INTAKE_FIELD_LABELS = {
    "title": "标题",
    "doc_number": "文号",
    "issuer": "发文机关",
    "published_on": "发布日期",
    "apply_start_on": "申报开始",
    "apply_end_on": "申报截止",
    "valid_from_on": "施行日期",
    "valid_to_on": "有效期至",
    "max_amount": "最高金额（万元）",
    "amount_text": "支持标准",
    "contact_name": "联系人",
    "contact_phone": "联系电话",
    "contact_address": "地址",
    "apply_url": "申报网址",
    "level": "层级",
    "region_code": "地区",
}


def _value_text(value: Any) -> str:
    """A proposed value as the curator types it: lists joined with 、, ranges as a-b, whole numbers without .0."""
    if isinstance(value, list):
        return ("-" if len(value) == 2 and all(isinstance(v, int | float) for v in value) else "、").join(
            _value_text(v) for v in value
        )
    if isinstance(value, float):
        return tabular.format_number(value)
    return "" if value is None else str(value)


def _intake_review(
    db: Any, matcher: Any, policy: Any, *, error: dict[str, str] | None = None, sync: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """The proposals intake made for a draft read from a document, each with its source, confidence and decision,
    and how many firms the draft's rules admit now (the builder's preview: a read over stored firm facts)."""
    from catalog.intake import review as intake_review
    from catalog.intake.service import intake_record

    if policy is None:
        return None
    record = intake_record(db, policy.id)
    if record is None:
        return None
    fields, conditions, tags = [], [], []
    for item in intake_review.items(record):
        row = {
            "key": item.key,
            "status": item.status,
            "status_label": intake_review.STATUS_LABELS.get(item.status, item.status),
            "source": item.source,
            "confidence": item.confidence,
            "coded": item.coded,
            "editable": item.kind != "tag",
            "alternative": item.alternative[0] if item.alternative else None,
        }
        if item.kind == "field":
            shown = _value_text(item.current)
            if item.name == "level":
                shown = f"{dict(choices.LEVELS).get(shown, shown)}（{shown}）"
            elif item.name == "region_code" and shown:
                shown = f"{codes.region_name(shown) or shown}（{shown}）"
            row |= {
                "label": INTAKE_FIELD_LABELS.get(item.name, item.name),
                "text": shown,
                "value_text": _value_text(item.current),
                "required": intake_review.FIELD_COLUMNS.get(item.name) in intake_review.REQUIRED_COLUMNS,
                "stored": intake_review.FIELD_COLUMNS.get(item.name) is not None,
            }
            fields.append(row)
        elif item.kind == "condition":
            current = item.current
            if item.coded:
                spec = FIELDS.get(current.get("field"))
                row |= {
                    "label": spec.label if spec else current.get("field"),
                    "text": rules_mod.describe_condition(current),
                    "op": current.get("op"),
                    "value_text": _value_text(current.get("value")),
                    "ops": [(name, rules_mod.OPS[name].title) for name in rules_mod.OPS_BY_TYPE.get(spec.type, ())]
                    if spec
                    else [],
                    "unit": spec.unit if spec else "",
                }
            else:
                row |= {"label": "文字条件", "text": str(current or ""), "value_text": str(current or "")}
            conditions.append(row)
        else:
            tags.append(row | {"label": "标签", "text": item.name})
    undecided = sum(1 for group in (fields, conditions, tags) for r in group if r["status"] == "pending")
    preview = matcher_intake.eligible_count(db=db, matcher=matcher, policy_id=policy.id)
    return {
        "policy_id": policy.id,
        "filename": record.filename,
        "kind": record.kind,
        "fields": fields,
        "conditions": conditions,
        "tags": tags,
        "undecided": undecided,
        "duplicates": (record.proposals or {}).get("duplicates") or [],
        "preview": preview,
        "error": error,
        "sync": sync or {},
        "published": policy.status == PolicyStatus.published,
    }


def _editor_context(
    db: Any,
    matcher: Any,
    policy: Any,
    values: dict[str, Any],
    errors: FormErrors,
    rule_problems: list[str] | None = None,
    preview: dict[str, Any] | None = None,
) -> dict[str, Any]:
    suggestions = []
    versions: list[Any] = []
    if policy is not None:
        suggestions = [
            {"id": s.id, "name": s.tag, "source": s.source, "score": s.score}
            for s in matcher_suggestions.suggest_policy_tags(db=db, matcher=matcher, policy_id=policy.id)
        ]
        versions = catalog_service.list_versions(db=db, policy_id=policy.id)[:5]
    return {
        "intake": _intake_review(db, matcher, policy),
        "policy": policy,
        "values": keep(values) | {"categories": values.get("categories") or [], "topics": values.get("topics") or []},
        "errors": errors,
        "rule_problems": rule_problems or [],
        "preview": preview,
        "suggestions": suggestions,
        "versions": versions,
        "categories": choices.categories(db=db),
        "departments": choices.departments(db=db, home_region=matcher.settings.home_region),
        "topics": [(t.code, t.name) for t in catalog_service.list_topics(db=db)],
        "tag_examples": catalog_service.tag_examples(db=db),
        "levels": choices.LEVELS,
        "types": tuple(TYPE_LABELS.items()),
        "builder_schema": rule_builder_schema(db=db),
        "source_labels": {"keyword": "关键词", "rule": "资格条件", "classifier": "分类模型"},
        "verdict_labels": VERDICT_LABELS,
        **(web_files.policy_card(db, matcher.settings, policy) if policy is not None else {}),
    }


@router.get("/policies/new")
def new_policy(request: Request, db: DbSession, matcher: MatcherDep, curator: Curator) -> Response:
    """An empty editor for a new draft policy."""
    values = {"level": "municipal", "policy_type": "application", "rules_json": ""}
    return render(request, "staff_policy_edit.html", _editor_context(db, matcher, None, values, FormErrors()))


@router.post("/policies/new")
def create_policy(request: Request, db: DbSession, matcher: MatcherDep, curator: Curator, form: PageForm) -> Response:
    """Create a draft through the catalog service; its Chinese messages are shown by each field."""
    values, data, early = read_policy_form(form)
    if form.get("action") == "preview":
        return _preview_page(request, db, matcher, None, values, data, early)
    problem: HuiqiError | ValidationError | None = None
    try:
        if early:
            raise ValidationFailed(errors=early)
        policy = catalog_service.create_policy(
            db=db, policy_in=PolicyIn(**{k: v for k, v in data.items() if v not in (None, [])}), actor=curator
        )
    except ValidationError as exc:
        problem, errors = exc, FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()
        problem, errors = exc, FormErrors.from_domain(exc)
    else:
        return redirect(request, f"/staff/policies/{policy.id}?saved=created")
    context = _editor_context(db, matcher, None, values, errors, rule_errors(problem))
    return render(request, "staff_policy_edit.html", context, status_code=422)


@router.get("/policies/{policy_id}")
def edit_policy(request: Request, db: DbSession, matcher: MatcherDep, curator: Curator, policy_id: int) -> Response:
    """The editor: fields, the rule builder with live preview, tag suggestions, publish / withdraw."""
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    context = _editor_context(db, matcher, policy, policy_values(policy), FormErrors())
    context["saved"] = request.query_params.get("saved")
    context["attachment_done"] = ATTACHMENT_DONE.get(request.query_params.get("attachment") or "")
    return render(request, "staff_policy_edit.html", context)


# ---------------------------------------------------------------- intake review (录入建议)

# Editor inputs a decision may change (they are set again in the page after an htmx decision).
INTAKE_SYNC = (*TEXT_FIELDS, "region_codes", "tags", "rules_json")


@router.post("/policies/{policy_id}/intake/{key}")
@writes_in_stages
def decide_proposal(
    request: Request, db: DbSession, matcher: MatcherDep, curator: Curator, policy_id: int, key: str, form: PageForm
) -> Response:
    """Accept, edit or reject one intake proposal; htmx gets the review card again with the new eligible count.

    The decision is written in a short stage of its own; the count after it is a read (the builder's preview).
    A refused decision is shown on its proposal and changes nothing.
    """
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    before = policy_values(policy)
    htmx = bool(request.headers.get("hx-request"))
    error = None
    try:
        matcher_intake.decide_in_stages(
            db=db,
            policy_id=policy_id,
            key=key,
            decision=str(form.get("decision") or ""),
            actor=curator,
            value=form.get("value"),
            op=str(form.get("op") or "") or None,
        )
    except HuiqiError as exc:
        if not htmx:
            raise  # the Chinese error page, with the reason
        db.rollback()
        error = {"key": key, "message": "；".join(dict.fromkeys(e.reason for e in exc.errors)) or exc.message}
    if not htmx:
        return redirect(request, f"/staff/policies/{policy_id}?saved=intake#p-{key}")
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    after = policy_values(policy)
    sync = {f"f-{k}": after[k] or "" for k in INTAKE_SYNC if before.get(k) != after.get(k)}
    context = {"policy": policy, "intake": _intake_review(db, matcher, policy, error=error, sync=sync)}
    return render(request, "_intake_review.html", context)


# ---------------------------------------------------------------- attachments (申报指南 / 申请表 / 政策原文)

ATTACHMENT_DONE = {"added": "附件已上传", "replaced": "附件已替换", "deleted": "附件已删除"}


def _attachment_answer(
    request: Request, db: Any, settings: Any, policy_id: int, done: str, call: Callable[[], object]
) -> Response:
    """Run an attachment change: htmx gets the card again (with the refusal on it), a plain form the editor."""
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    htmx = bool(request.headers.get("hx-request"))
    try:
        call()
    except HuiqiError as exc:
        if not htmx:
            raise  # the Chinese error page, with the reason
        db.rollback()
        reason = "；".join(e.reason for e in exc.errors) or exc.message
        context = web_files.policy_card(db, settings, policy, attachment_error=f"上传未成功：{reason}")
        return render(request, "_policy_attachments.html", context)
    if htmx:
        context = web_files.policy_card(db, settings, policy, attachment_done=ATTACHMENT_DONE[done])
        return render(request, "_policy_attachments.html", context)
    return redirect(request, f"/staff/policies/{policy_id}?attachment={done}#attachments")


@router.post("/policies/{policy_id}/attachments")
def add_attachment(
    request: Request, db: DbSession, settings: AppSettings, curator: Curator, policy_id: int, form: PageForm
) -> Response:
    """Upload a 申报指南 / 申请表 / 政策原文 (type checked by content)."""

    def call() -> object:
        name, data = web_files.posted_file(form, settings)
        kind = str(form.get("kind") or "")
        return policy_files.attach_to_policy(
            db, policy_id=policy_id, kind=kind, name=name, data=data, user=curator, settings=settings
        )

    return _attachment_answer(request, db, settings, policy_id, "added", call)


@router.post("/policies/{policy_id}/attachments/{attachment_id}/replace")
def replace_attachment(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    curator: Curator,
    policy_id: int,
    attachment_id: int,
    form: PageForm,
) -> Response:
    """Put a new file in an attachment's place (same kind)."""

    def call() -> object:
        name, data = web_files.posted_file(form, settings)
        return policy_files.replace_policy_attachment(
            db, policy_id=policy_id, attachment_id=attachment_id, name=name, data=data, user=curator, settings=settings
        )

    return _attachment_answer(request, db, settings, policy_id, "replaced", call)


@router.post("/policies/{policy_id}/attachments/{attachment_id}/delete")
def delete_attachment(
    request: Request, db: DbSession, settings: AppSettings, curator: Curator, policy_id: int, attachment_id: int
) -> Response:
    """Delete an attachment; one already gone (a second click) is no error."""

    def call() -> object:
        with contextlib.suppress(NotFound):
            policy_files.delete_policy_attachment(
                db, policy_id=policy_id, attachment_id=attachment_id, settings=settings
            )
        return None

    return _attachment_answer(request, db, settings, policy_id, "deleted", call)


def _preview_page(
    request: Request, db: Any, matcher: Any, policy: Any, values: dict, data: dict, early: list[FieldError]
) -> Response:
    """Without JavaScript the preview button posts the form: render it again with the counts."""
    preview = None
    problems = [e.reason for e in early]
    if not early:
        preview = matcher_coverage.preview_rules(db=db, matcher=matcher, rules=data["rules"])
        problems = [f"{e['field']}：{e['reason']}" for e in preview["errors"]]
    context = _editor_context(db, matcher, policy, values, FormErrors(), problems, preview)
    return render(request, "staff_policy_edit.html", context)


@router.post("/policies/{policy_id}")
def save_policy(
    request: Request, db: DbSession, matcher: MatcherDep, curator: Curator, policy_id: int, form: PageForm
) -> Response:
    """Save an edit; an edit of a published policy becomes a new version and matched firms hear of it."""
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    values, data, early = read_policy_form(form)
    if form.get("action") == "preview":
        return _preview_page(request, db, matcher, policy, values, data, early)
    problem: HuiqiError | ValidationError | None = None
    try:
        if early:
            raise ValidationFailed(errors=early)
        update = PolicyUpdate(**data, note=values["note"])
        policy = catalog_service.update_policy(db=db, policy_id=policy_id, policy_in=update, actor=curator)
    except ValidationError as exc:
        problem, errors = exc, FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()
        problem, errors = exc, FormErrors.from_domain(exc)
    else:
        return redirect(request, f"/staff/policies/{policy_id}?saved=saved")
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    context = _editor_context(db, matcher, policy, values, errors, rule_errors(problem))
    return render(request, "staff_policy_edit.html", context, status_code=422)


@router.post("/rules/preview")
def rules_preview(request: Request, db: DbSession, matcher: MatcherDep, curator: Curator, body: PageBody) -> Response:
    """The builder's live preview: how many firms the unsaved rules make eligible / likely (JSON)."""
    text = body.get("rules_json")
    rules, problem = parse_rules(text if isinstance(text, str) else None)
    if problem:
        return JSONResponse({"errors": [{"field": problem.field, "reason": problem.reason}], "total": None})
    result = matcher_coverage.preview_rules(db=db, matcher=matcher, rules=rules)
    result["labels"] = {ELIGIBLE: VERDICT_LABELS[ELIGIBLE], LIKELY: VERDICT_LABELS[LIKELY], INELIGIBLE: "不符合"}
    return JSONResponse(result)


@router.post("/policies/{policy_id}/publish")
def publish(request: Request, db: DbSession, matcher: MatcherDep, curator: Curator, policy_id: int) -> Response:
    """Publish; eligible firms hear of it through the queued fan-out. Missing fields are named on the page."""
    try:
        policy = catalog_service.publish_policy(db=db, policy_id=policy_id, actor=curator)
    except HuiqiError as exc:
        db.rollback()
        policy = catalog_service.get_policy(db=db, policy_id=policy_id)
        context = _editor_context(db, matcher, policy, policy_values(policy), FormErrors.from_domain(exc))
        return render(request, "staff_policy_edit.html", context, status_code=exc.status_code)
    return redirect(request, f"/staff/policies/{policy_id}?saved=published")


@router.post("/policies/{policy_id}/withdraw")
def withdraw(request: Request, db: DbSession, matcher: MatcherDep, curator: Curator, policy_id: int) -> Response:
    """Withdraw a published policy from public lists and matching."""
    try:
        catalog_service.withdraw_policy(db=db, policy_id=policy_id, actor=curator)
    except HuiqiError as exc:
        db.rollback()
        policy = catalog_service.get_policy(db=db, policy_id=policy_id)
        context = _editor_context(db, matcher, policy, policy_values(policy), FormErrors.from_domain(exc))
        return render(request, "staff_policy_edit.html", context, status_code=exc.status_code)
    return redirect(request, f"/staff/policies/{policy_id}?saved=withdrawn")


@router.post("/policies/{policy_id}/tag-suggestions/{suggestion_id}/{decision}")
def decide_tag(
    request: Request, db: DbSession, curator: Curator, policy_id: int, suggestion_id: int, decision: str
) -> Response:
    """Accept (the tag is added, versioned if published) or reject a suggested tag."""
    if decision not in ("accept", "reject"):
        raise ValidationFailed(errors=[FieldError("decision", "操作应为采纳或忽略", "invalid")])
    matcher_suggestions.decide_tag_suggestion(
        db=db, policy_id=policy_id, suggestion_id=suggestion_id, accept=decision == "accept", actor=curator
    )
    return redirect(request, f"/staff/policies/{policy_id}?saved=tag-{decision}#tags")


# ---------------------------------------------------------------- versions and diff


@router.get("/policies/{policy_id}/versions")
def versions(
    request: Request,
    db: DbSession,
    curator: Curator,
    policy_id: int,
    from_version: Annotated[int | None, Query(alias="from", ge=1)] = None,
    to_version: Annotated[int | None, Query(alias="to", ge=1)] = None,
) -> Response:
    """A policy's versions, and what changed between two of them, field by field."""
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    rows = catalog_service.list_versions(db=db, policy_id=policy_id)
    actors = dict(
        db.execute(select(User.id, User.display_name).where(User.id.in_({v.actor_id for v in rows if v.actor_id})))
        .tuples()
        .all()
    )
    diff = None
    if len(rows) >= 2 or (from_version and to_version):
        to_version = to_version or rows[0].version
        from_version = from_version or (rows[1].version if len(rows) >= 2 else to_version)
        result = catalog_service.diff_versions(
            db=db, policy_id=policy_id, from_version=from_version, to_version=to_version
        )
        diff = [
            {
                "label": c.label,
                "field": c.field,
                "pieces": inline_diff(c.before, c.after),
                "before_text": rules_mod.describe_rules(c.before, region_name=codes.region_name, use_labels=False)
                if c.field == "rules" and c.before
                else None,
                "after_text": rules_mod.describe_rules(c.after, region_name=codes.region_name, use_labels=False)
                if c.field == "rules" and c.after
                else None,
            }
            for c in result.changes
        ]
    return render(
        request,
        "staff_versions.html",
        {
            "policy": policy,
            "versions": rows,
            "actors": actors,
            "diff": diff,
            "from_version": from_version,
            "to_version": to_version,
        },
    )


# ---------------------------------------------------------------- eligible firms


def _statuses(status: str | None) -> list[str]:
    if status == "likely":
        return [LIKELY]
    if status == "both":
        return [ELIGIBLE, LIKELY]
    return [ELIGIBLE]


RATINGS_PAGE_SIZE = 20


@router.get("/policies/{policy_id}/ratings")
def policy_ratings(
    request: Request,
    db: DbSession,
    curator: Curator,
    policy_id: int,
    comments: Annotated[bool, Query()] = False,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """A policy's ratings: average, distribution, and each firm's stars and comment, newest first."""
    policy = catalog_service.get_policy(db=db, policy_id=policy_id)
    items, total = desk_ratings.list_ratings(
        db=db,
        actor=curator,
        policy_id=policy_id,
        offset=(page - 1) * RATINGS_PAGE_SIZE,
        limit=RATINGS_PAGE_SIZE,
        with_comment=comments,
    )
    summary = desk_ratings.summaries(db=db, policy_ids=[policy_id])[policy_id]
    pages = max(1, math.ceil(total / RATINGS_PAGE_SIZE))
    return render(
        request,
        "staff_ratings.html",
        {
            "policy": policy,
            "summary": summary,
            "rows": items,
            "total": total,
            "comments_only": comments,
            "page_links": views.page_links(request, page, pages),
            "star_labels": desk_ratings.STAR_LABELS,
        },
    )


@router.get("/policies/{policy_id}/eligible")
def eligible(
    request: Request,
    db: DbSession,
    matcher: MatcherDep,
    curator: Curator,
    policy_id: int,
    status: str | None = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The firms a policy's rules admit (the 免申即享 list), best first, with export."""
    statuses = _statuses(status)
    pending = False
    try:
        policy, rows, total = matcher_lists.eligible_enterprises(
            db=db,
            policy_id=policy_id,
            statuses=statuses,
            offset=(page - 1) * ELIGIBLE_PAGE_SIZE,
            limit=ELIGIBLE_PAGE_SIZE,
        )
    except Conflict:  # the worker has not made this policy's list yet
        policy, rows, total, pending = catalog_service.get_policy(db=db, policy_id=policy_id), [], 0, True
    pages = max(1, math.ceil(total / ELIGIBLE_PAGE_SIZE))
    made = None if pending else matcher_lists.state(db, policy)
    return render(
        request,
        "staff_eligible.html",
        {
            "policy": policy,
            "pending": pending,
            "made_at": made.matched_at if made else None,
            "catalog_changes": matcher_lists.catalog_changes_since(db, policy, made.matched_at) if made else 0,
            "rows": [matcher_export.eligible_row(m, e) for m, e in rows],
            "total": total,
            "status": status if status in ("likely", "both") else "eligible",
            "page_links": views.page_links(request, page, pages),
            "size_labels": dict(SIZE_CLASSES),
            "region_name": codes.region_name,
        },
    )


@router.get("/policies/{policy_id}/eligible/export")
def eligible_export(
    db: DbSession,
    matcher: MatcherDep,
    curator: Curator,
    policy_id: int,
    status: str | None = None,
    format: str = "csv",
) -> Response:
    """Download the eligible-firm list as CSV (UTF-8 with BOM) or XLSX, in the API's export layout."""
    fmt = "xlsx" if format == "xlsx" else "csv"
    data, media, disposition = matcher_export.export_eligible(
        db=db, policy_id=policy_id, statuses=_statuses(status), fmt=fmt
    )
    return Response(content=data, media_type=media, headers={"Content-Disposition": disposition})


# ---------------------------------------------------------------- targeted push (人工定向)


PUSH_TEXT = ("policy_id", "region_codes", "industry_codes", "tags", "message", "note", "eligible_for")


def _push_form(form: Any) -> tuple[dict[str, Any], ManualPushIn | None, FormErrors]:
    values = form_values(form, PUSH_TEXT)
    values["size_classes"] = form_list(form, "size_classes")
    values["qualifications"] = form_list(form, "qualifications")
    values["channels"] = form_list(form, "channels") or ["inbox"]
    values["eligible_statuses"] = form_list(form, "eligible_statuses") or [ELIGIBLE]
    policy_id = values["policy_id"]
    if not policy_id or not policy_id.isdigit():
        return values, None, FormErrors("请选择要推送的政策", {"policy_id": "请选择要推送的政策"})
    try:
        filters = TargetFilters(
            region_codes=split_list(values["region_codes"]),
            industry_codes=split_list(values["industry_codes"]),
            size_classes=values["size_classes"],
            tags=split_list(values["tags"]),
            qualifications=values["qualifications"],
            eligible_for_policy_id=int(policy_id) if values["eligible_for"] else None,
            eligible_statuses=values["eligible_statuses"],
        )
        push_in = ManualPushIn(
            policy_id=int(policy_id),
            filters=filters,
            channels=values["channels"],
            message=values["message"],
            note=values["note"],
        )
    except ValidationError as exc:
        return values, None, FormErrors.from_validation(exc, prefix="filters.")
    return values, push_in, FormErrors()


def _push_context(db: Any, values: dict[str, Any], errors: FormErrors, preview: dict | None = None) -> dict:
    published, _ = catalog_service.list_policies(
        db=db, filters=PolicyFilters(status=PolicyStatus.published, sort="title"), actor=None, limit=2000
    )
    pushes, _ = targeting.list_manual_pushes(db=db, limit=10)
    return {
        "values": keep(values)
        | {k: values.get(k) or [] for k in ("size_classes", "qualifications", "channels", "eligible_statuses")},
        "errors": errors,
        "preview": preview,
        "policies": [(p.id, p.title) for p in published],
        "pushes": pushes,
        "size_classes": SIZE_CLASSES,
        "size_labels": dict(SIZE_CLASSES),
        "qualifications": choices.qualifications(db=db),
        "channel_labels": CHANNEL_LABELS,
    }


def _site_channels(settings: Any) -> dict[str, bool]:
    """Which channels this site can send through at all (email needs SMTP, SMS its gateway)."""
    return {
        "email": bool(settings.smtp_host and settings.smtp_sender),
        "sms": bool(settings.sms_gateway_url),
        "webhook": True,
    }


@router.get("/push")
def push_page(
    request: Request, db: DbSession, curator: Curator, policy_id: Annotated[int | None, Query()] = None
) -> Response:
    """The targeted push form (人工定向): pick firms, preview the reach, send; recent pushes below."""
    values: dict[str, Any] = {
        "policy_id": str(policy_id or ""),
        "channels": ["inbox"],
        "eligible_for": "1" if policy_id else "",
        "eligible_statuses": [ELIGIBLE],
    }
    context = _push_context(db, values, FormErrors())
    context["sent"] = request.query_params.get("sent")
    return render(request, "staff_push.html", context)


@router.post("/push/preview")
def push_preview(
    request: Request, db: DbSession, settings: AppSettings, matcher: MatcherDep, curator: Curator, form: PageForm
) -> Response:
    """Count the firms and messages per channel the push would reach, with a masked sample; nothing is sent."""
    values, push_in, errors = _push_form(form)
    preview = None
    if push_in is not None:
        try:
            preview = targeting.preview(db=db, push_in=push_in, matcher=matcher, settings=settings)
        except HuiqiError as exc:
            db.rollback()
            errors = FormErrors.from_domain(exc, prefix="filters.")
    status_code = 422 if errors else 200
    if request.headers.get("hx-request"):
        return render(
            request,
            "_staff_push_preview.html",
            {
                "preview": preview,
                "errors": errors,
                "channel_labels": CHANNEL_LABELS,
                "size_labels": dict(SIZE_CLASSES),
                "site_channels": _site_channels(request.app.state.settings),
            },
            status_code=200,
        )
    context = _push_context(db, values, errors, preview) | {"site_channels": _site_channels(request.app.state.settings)}
    return render(request, "staff_push.html", context, status_code=status_code)


@router.post("/push")
def push_send(
    request: Request, db: DbSession, settings: AppSettings, matcher: MatcherDep, curator: Curator, form: PageForm
) -> Response:
    """Send the push: one record and its outbox rows in this request's transaction."""
    values, push_in, errors = _push_form(form)
    if push_in is not None:
        try:
            row, _ = targeting.send(
                db=db,
                push_in=push_in,
                created_by_id=curator.user_id,
                matcher=matcher,
                base_url=settings.public_base_url,
                settings=settings,
            )
        except HuiqiError as exc:
            db.rollback()
            errors = FormErrors.from_domain(exc, prefix="filters.")
        else:
            return redirect(request, f"/staff/push?sent={row.id}#history")
    return render(request, "staff_push.html", _push_context(db, values, errors), status_code=422)


# ---------------------------------------------------------------- import and export


def _io_context() -> dict[str, Any]:
    """What the import page shows besides a report: the kinds and, for each, its columns and their format."""
    return {
        "kinds": IMPORT_KINDS,
        "statuses": list(PolicyStatus),
        "formats": {
            kind: [(c.header, c.note or "文本", TEMPLATE_SAMPLES[kind].get(c.key, "")) for c in _io_columns(kind)]
            for kind in IMPORT_KINDS
        },
    }


@router.get("/io")
def io_page(request: Request, db: DbSession, curator: Curator) -> Response:
    """Import policies or enterprises from CSV/XLSX, export them, or draft policies from policy documents."""
    departments = catalog_service.list_departments(db=db)
    return render(request, "staff_io.html", {"report": None, "departments": departments, **_io_context()})


@router.post("/io/import")
def io_import(request: Request, db: DbSession, settings: AppSettings, curator: Curator, form: PageForm) -> Response:
    """Run an import and show its row report on the page (nothing is written when a row fails, unless partial)."""
    kind = str(form.get("kind") or "")
    upload = form.get("file")
    partial = form.get("partial") in ("1", "on", "true")
    context: dict[str, Any] = {**_io_context(), "kind": kind, "partial": partial}
    if kind not in IMPORT_KINDS:
        raise ValidationFailed(errors=[FieldError("kind", "请选择导入政策还是企业", "invalid")])
    if upload is None or isinstance(upload, str) or not upload.filename:
        context |= {"report": None, "error": "请选择要导入的文件（CSV 或 XLSX）"}
        return render(request, "staff_io.html", context, status_code=422)
    limit = settings.upload_max_mb * 1024 * 1024
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"文件超过 {settings.upload_max_mb} MB，请拆分后分批导入")
    importer = catalog_io.import_policies if kind == "policies" else profiles_io.import_enterprises
    try:
        report = importer(db=db, data=data, filename=upload.filename, actor=curator, partial=partial)
    except HuiqiError as exc:
        db.rollback()
        context |= {"report": None, "error": exc.message}
        return render(request, "staff_io.html", context, status_code=exc.status_code)
    context |= {"report": report, "filename": upload.filename, "summary": report.summary()}
    return render(request, "staff_io.html", context, status_code=422 if report.rejected else 200)


@router.post("/io/intake")
@writes_in_stages
def io_intake(request: Request, db: DbSession, settings: AppSettings, curator: Curator, form: PageForm) -> Response:
    """Draft policies from policy documents (PDF, DOCX, HTML, TXT or a zip of them): fields and conditions proposed.

    Documents are read on a reader session; the drafts (and their originals) are written in one short stage.
    """
    upload = form.get("file")
    department = str(form.get("department") or "").strip() or None
    context: dict[str, Any] = {**_io_context(), "report": None, "departments": catalog_service.list_departments(db=db)}
    if upload is None or isinstance(upload, str) or not upload.filename:
        context |= {"intake_error": "请选择政策文件（PDF、DOCX、HTML、TXT 或 zip）"}
        return render(request, "staff_io.html", context, status_code=422)
    limit = settings.intake_max_mb * 1024 * 1024
    data = upload.file.read(limit + 1)
    try:
        results = matcher_intake.intake_in_stages(
            db=db, settings=settings, files=[(upload.filename, data)], actor=curator, department=department
        )
    except HuiqiError as exc:
        db.rollback()
        reasons = "；".join(e.reason for e in exc.errors if e.reason != exc.message)
        context |= {"intake_error": exc.message + (f"（{reasons}）" if reasons else "")}
        return render(request, "staff_io.html", context, status_code=exc.status_code)
    drafts = [
        {
            "id": r.policy.id if r.policy else None,
            "title": r.policy.title if r.policy else r.analysis.document.filename,
            "filename": r.analysis.document.filename,
            "coded": sum(1 for c in r.analysis.conditions if c.node is not None),
            "plain": sum(1 for c in r.analysis.conditions if c.node is None),
            "duplicates": r.duplicates,
        }
        for r in results
    ]
    context |= {"drafts": drafts}
    return render(request, "staff_io.html", context, status_code=201)


# One sample row per import kind, as a curator would fill it (the demo's 中山 departments and codes).
TEMPLATE_SAMPLES: dict[str, dict[str, str]] = {
    "policies": {
        "title": "中山市科技型中小企业研发投入后补助申报通知",
        "doc_number": "中科〔2026〕12号",
        "issuing_department": "zs-kjj",
        "handling_department": "zs-kjj",
        "level": "市级",
        "policy_type": "申报类",
        "region_codes": "442000",
        "tags": "资金补贴；科技型中小企业",
        "summary": "对上年度研发投入较上年增长的科技型中小企业，按增量的10%给予后补助，最高50万元。",
        "interpreter_name": "林晓",
        "interpreter_contact": "0760-88312617",
        "apply_start_on": "2026-12-01",
        "apply_end_on": "2027-01-31",
        "max_amount": "50",
        "amount_text": "最高50万元",
        "rules": '{"all": [{"field": "region_code", "op": "within_region", "value": ["442000"]}]}',
        "status": "草稿",
        "pinned": "否",
    },
    "enterprises": {
        "credit_code": "91442000MA4L2GB16C",
        "name": "中山市示例精密制造有限公司",
        "region_code": "442000",
        "industry_code": "C348",
        "established_on": "2018-05-01",
        "registered_capital": "500",
        "employees": "86",
        "annual_revenue": "4200",
        "total_assets": "3100",
        "rd_expense": "210",
        "credit_standing": "良好",
        "tax_credit_level": "A",
        "qualifications": "高新技术企业:2027-12-31",
        "business_scope": "精密零部件研发、制造、销售",
        "contact_name": "陈立",
        "contact_phone": "13800138000",
    },
}


def _io_columns(kind: str) -> list[tabular.Column]:
    return profiles_io.ENTERPRISE_COLUMNS if kind == "enterprises" else catalog_io.POLICY_COLUMNS


@router.get("/io/template")
def io_template(curator: Curator, kind: str = "policies", format: str = "csv") -> Response:
    """Download an import template: the columns, a sample row and (XLSX) a sheet of notes in Chinese."""
    kind = kind if kind in IMPORT_KINDS else "policies"
    fmt = "xlsx" if format == "xlsx" else "csv"
    data = tabular.write_template(_io_columns(kind), TEMPLATE_SAMPLES[kind], fmt, IMPORT_KINDS[kind])
    media = tabular.CSV_MEDIA_TYPE if fmt == "csv" else tabular.XLSX_MEDIA_TYPE
    name = f"{IMPORT_KINDS[kind]}导入模板.{fmt}"
    disposition = f"attachment; filename=\"{kind}-template.{fmt}\"; filename*=UTF-8''{quote(name)}"
    return Response(content=data, media_type=media, headers={"Content-Disposition": disposition})


@router.get("/io/export")
def io_export(
    db: DbSession, curator: Curator, kind: str = "policies", format: str = "csv", status: str | None = None
) -> Response:
    """Download policies or enterprises in the import layout."""
    fmt: Literal["csv", "xlsx"] = "xlsx" if format == "xlsx" else "csv"
    if kind == "enterprises":
        data, stem_zh, stem_en = profiles_io.export_enterprises(db=db, fmt=fmt), "企业", "enterprises"
    else:
        chosen = status if status in PolicyStatus.__members__ else None
        data, stem_zh, stem_en = catalog_io.export_policies(db=db, fmt=fmt, status=chosen), "政策", "policies"
    day = dt.date.today().isoformat()
    media = tabular.CSV_MEDIA_TYPE if fmt == "csv" else tabular.XLSX_MEDIA_TYPE
    disposition = f"attachment; filename=\"{stem_en}-{day}.{fmt}\"; filename*=UTF-8''{quote(f'{stem_zh}-{day}.{fmt}')}"
    return Response(content=data, media_type=media, headers={"Content-Disposition": disposition})
