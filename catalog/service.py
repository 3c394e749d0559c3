"""Catalog operations: departments, categories, tags, topics, and the policy lifecycle."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from auth.service import Principal
from catalog import rules as rules_mod
from catalog.models import (
    CatalogRevision,
    Category,
    Department,
    Policy,
    PolicyRegion,
    PolicyStatus,
    PolicyType,
    PolicyVersion,
    Tag,
    Topic,
    policy_category,
    policy_tag,
    policy_topic,
)
from catalog.schemas import (
    CategoryIn,
    CategoryUpdate,
    DepartmentIn,
    DepartmentUpdate,
    FieldChange,
    PolicyDiff,
    PolicyFilters,
    PolicyIn,
    PolicyUpdate,
    TagIn,
    TagUpdate,
    TopicIn,
)
from core import attachments, codes, events
from core.attachments import OwnerKind
from core.config import Settings, get_settings
from core.db import utcnow
from core.errors import Conflict, FieldError, InvalidState, NotFound, ValidationFailed
from core.text import normalize

# ---------------------------------------------------------------- departments


def current_revision(*, db: Session) -> int:
    """Return the catalog revision: it grows with every change matching depends on."""
    return db.scalar(select(CatalogRevision.revision).where(CatalogRevision.id == 1)) or 0


def revision_stamp(*, db: Session) -> tuple[int, Any]:
    """Return (revision, changed_at): unique per change even when a rolled-back change reused a number."""
    # Read by every request that serves matches: a prepared Core select.
    row = db.connection().execute(_STAMP, {"id": 1}).first()
    return (row[0], row[1]) if row else (0, None)


_STAMP = select(CatalogRevision.revision, CatalogRevision.changed_at).where(CatalogRevision.id == bindparam("id"))


def bump_revision(db: Session) -> None:
    """Count a change to what matching reads (published policies, tags, names on cards)."""
    db.execute(
        update(CatalogRevision)
        .where(CatalogRevision.id == 1)
        .values(revision=CatalogRevision.revision + 1, changed_at=utcnow())
    )


def list_departments(*, db: Session, home_region: str | None = None) -> list[Department]:
    """Return every department ordered by code; with ``home_region``, the home city's first (see `home_first`)."""
    return home_first(list(db.scalars(select(Department).order_by(Department.code))), home_region)


def home_first(departments: list[Department], home_region: str | None) -> list[Department]:
    """Order departments for a picker: the home city's (and its districts') first, then those above it
    (province, national), then the rest; by code within each group."""
    if not home_region:
        return list(departments)
    try:
        above = set(codes.region_path(home_region)) | {codes.NATIONAL_REGION}
    except ValueError:
        above = {codes.NATIONAL_REGION}

    def rank(d: Department) -> tuple[int, str]:
        try:
            home = codes.region_contains(home_region, d.region_code)
        except ValueError:
            home = False
        if home:
            return 0, d.code
        if d.region_code == codes.NATIONAL_REGION:
            return 2, d.code
        return (1 if d.region_code in above else 3), d.code

    return sorted(departments, key=rank)


def get_department(*, db: Session, department_id: int) -> Department:
    """Return a department or raise NotFound."""
    dept = db.get(Department, department_id)
    if dept is None:
        raise NotFound("部门不存在", code="catalog.department_not_found")
    return dept


def get_department_by_code(*, db: Session, code: str, field: str = "department") -> Department:
    """Return the department with this code, or fail naming the input field."""
    dept = db.scalar(select(Department).where(Department.code == code))
    if dept is None:
        raise ValidationFailed(errors=[FieldError(field, f"部门编码 {code} 不存在", "unknown_department")])
    return dept


def create_department(*, db: Session, department_in: DepartmentIn) -> Department:
    """Create an issuing or handling unit."""
    _region_or_fail(department_in.region_code, "region_code")
    clash = db.scalar(
        select(Department).where(or_(Department.code == department_in.code, Department.name == department_in.name))
    )
    if clash:
        raise Conflict("部门编码或名称已存在", code="catalog.department_exists")
    dept = Department(**department_in.model_dump())
    db.add(dept)
    db.flush()
    return dept


def update_department(*, db: Session, department_id: int, department_in: DepartmentUpdate) -> Department:
    """Change a department's names or contact."""
    dept = get_department(db=db, department_id=department_id)
    data = department_in.model_dump(exclude_unset=True)
    if data.get("region_code"):
        _region_or_fail(data["region_code"], "region_code")
    for key, value in data.items():
        setattr(dept, key, value)
    db.flush()
    bump_revision(db)
    return dept


def delete_department(*, db: Session, department_id: int) -> None:
    """Delete a department that no policy refers to."""
    dept = get_department(db=db, department_id=department_id)
    used = db.scalar(
        select(func.count())
        .select_from(Policy)
        .where(or_(Policy.issuing_department_id == dept.id, Policy.handling_department_id == dept.id))
    )
    if used:
        raise Conflict(f"该部门仍有 {used} 条政策引用，不能删除", code="catalog.department_in_use")
    db.delete(dept)
    db.flush()


# ---------------------------------------------------------------- categories


def list_categories(*, db: Session) -> list[Category]:
    """Return the top classes with their sub-classes loaded."""
    return list(
        db.scalars(
            select(Category)
            .where(Category.parent_id.is_(None))
            .options(selectinload(Category.children))
            .order_by(Category.sort_order, Category.code)
        )
    )


def get_category(*, db: Session, category_id: int) -> Category:
    """Return a category or raise NotFound."""
    cat = db.get(Category, category_id)
    if cat is None:
        raise NotFound("政策分类不存在", code="catalog.category_not_found")
    return cat


def create_category(*, db: Session, category_in: CategoryIn) -> Category:
    """Create a top class, or a sub-class under one (two levels only)."""
    parent = None
    if category_in.parent_code:
        parent = db.scalar(select(Category).where(Category.code == category_in.parent_code))
        if parent is None:
            raise ValidationFailed(errors=[FieldError("parent_code", "上级分类不存在", "unknown_category")])
        if parent.parent_id is not None:
            raise ValidationFailed(errors=[FieldError("parent_code", "政策分类只有两级，不能挂在小类下", "too_deep")])
    if db.scalar(select(Category).where(Category.code == category_in.code)):
        raise Conflict("分类编码已存在", code="catalog.category_exists")
    cat = Category(code=category_in.code, name=category_in.name, parent=parent, sort_order=category_in.sort_order)
    db.add(cat)
    db.flush()
    return cat


def update_category(*, db: Session, category_id: int, category_in: CategoryUpdate) -> Category:
    """Rename or reorder a category."""
    cat = get_category(db=db, category_id=category_id)
    for key, value in category_in.model_dump(exclude_unset=True).items():
        setattr(cat, key, value)
    db.flush()
    bump_revision(db)
    return cat


# ---------------------------------------------------------------- tags


def list_tags(*, db: Session, kind: str | None = None) -> list[Tag]:
    """Return the tag vocabulary, optionally of one kind."""
    q = select(Tag).order_by(Tag.kind, Tag.name)
    if kind:
        q = q.where(Tag.kind == kind)
    return list(db.scalars(q))


def get_tag(*, db: Session, tag_id: int) -> Tag:
    """Return a tag or raise NotFound."""
    tag = db.get(Tag, tag_id)
    if tag is None:
        raise NotFound("标签不存在", code="catalog.tag_not_found")
    return tag


def tag_lookup(*, db: Session) -> dict[str, Tag]:
    """Map every tag name and synonym (normalised) to its tag."""
    out: dict[str, Tag] = {}
    for tag in db.scalars(select(Tag)):
        for term in (tag.name, *(tag.synonyms or [])):
            out.setdefault(normalize(term).lower(), tag)
    return out


def closest_tags(lookup: dict[str, Tag], name: str, limit: int = 3) -> list[str]:
    """Return the names of the tags whose name or synonym is closest to an unknown one (研发投入 → 研发…)."""
    import difflib

    wanted = normalize(name).lower()
    best: dict[str, float] = {}
    for term, tag in lookup.items():
        shared = len(set(wanted) & set(term)) / max(len(set(wanted)), 1)
        score = max(difflib.SequenceMatcher(None, wanted, term).ratio(), shared * 0.9)
        if score >= 0.4 and score > best.get(tag.name, 0.0):
            best[tag.name] = score
    return [n for n, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def tag_examples(*, db: Session, limit: int = 3) -> list[str]:
    """Return a few real tags to show in a hint: an abbreviation first when one exists (高企), then names."""
    tags = list(db.scalars(select(Tag).order_by(Tag.id).limit(200)))
    short = next((syn for t in tags for syn in (t.synonyms or []) if 1 < len(syn) <= 3), None)
    names = [t.name for t in tags if t.kind != "industry"] or [t.name for t in tags]
    return ([short] if short else []) + names[: limit - (1 if short else 0)]


def resolve_tags(*, db: Session, names: list[str], field: str = "tags") -> list[Tag]:
    """Resolve tag names or synonyms to tags, failing with every unknown one named (and the closest offered)."""
    lookup = tag_lookup(db=db)
    found: list[Tag] = []
    errors = []
    for i, name in enumerate(names):
        tag = lookup.get(normalize(name).lower())
        if tag is None:
            close = closest_tags(lookup, name)
            hint = f"，您要找的是不是：{'、'.join(close)}" if close else ""
            errors.append(FieldError(f"{field}[{i}]", f"标签「{name}」不在标签库中{hint}", "unknown_tag"))
        elif tag not in found:
            found.append(tag)
    if errors:
        raise ValidationFailed(errors=errors)
    return found


def create_tag(*, db: Session, tag_in: TagIn) -> Tag:
    """Add a term to the vocabulary; its name and synonyms must not clash with existing ones."""
    _check_tag_terms(db=db, name=tag_in.name, synonyms=tag_in.synonyms, exclude_id=None)
    tag = Tag(
        name=tag_in.name,
        kind=tag_in.kind,
        synonyms=[normalize(s) for s in tag_in.synonyms if s.strip()],
        description=tag_in.description,
    )
    db.add(tag)
    db.flush()
    bump_revision(db)
    return tag


def update_tag(*, db: Session, tag_id: int, tag_in: TagUpdate) -> Tag:
    """Change a tag's name, kind, synonyms or description."""
    tag = get_tag(db=db, tag_id=tag_id)
    data = tag_in.model_dump(exclude_unset=True)
    name = normalize(data.get("name") or tag.name)
    synonyms = [normalize(s) for s in (data.get("synonyms") if "synonyms" in data else tag.synonyms) or [] if s.strip()]
    _check_tag_terms(db=db, name=name, synonyms=synonyms, exclude_id=tag.id)
    tag.name = name
    tag.synonyms = synonyms
    if data.get("kind"):
        tag.kind = data["kind"]
    if "description" in data:
        tag.description = data["description"]
    db.flush()
    bump_revision(db)
    return tag


def delete_tag(*, db: Session, tag_id: int) -> None:
    """Delete a tag that no policy uses."""
    tag = get_tag(db=db, tag_id=tag_id)
    used = db.scalar(select(func.count()).select_from(policy_tag).where(policy_tag.c.tag_id == tag.id))
    if used:
        raise Conflict(f"该标签仍被 {used} 条政策使用，不能删除", code="catalog.tag_in_use")
    db.delete(tag)
    db.flush()
    bump_revision(db)


def _check_tag_terms(*, db: Session, name: str, synonyms: list[str], exclude_id: int | None) -> None:
    lookup = tag_lookup(db=db)
    errors = []
    for field, term in [("name", name), *((f"synonyms[{i}]", s) for i, s in enumerate(synonyms))]:
        other = lookup.get(normalize(term).lower())
        if other is not None and other.id != exclude_id:
            errors.append(FieldError(field, f"「{term}」已是标签「{other.name}」的名称或同义词", "tag_term_taken"))
    if errors:
        raise Conflict("标签名称或同义词重复", code="catalog.tag_exists", errors=errors)


# ---------------------------------------------------------------- topics


def list_topics(*, db: Session) -> list[Topic]:
    """Return the topic columns in display order."""
    return list(db.scalars(select(Topic).order_by(Topic.sort_order, Topic.code)))


def create_topic(*, db: Session, topic_in: TopicIn) -> Topic:
    """Create a topic column (专栏)."""
    if db.scalar(select(Topic).where(or_(Topic.code == topic_in.code, Topic.name == topic_in.name))):
        raise Conflict("专栏编码或名称已存在", code="catalog.topic_exists")
    topic = Topic(**topic_in.model_dump())
    db.add(topic)
    db.flush()
    return topic


# ---------------------------------------------------------------- policies

# Fields a snapshot records and a diff compares, with their Chinese labels.
POLICY_FIELD_LABELS: dict[str, str] = {
    "title": "政策标题",
    "doc_number": "文号",
    "issuing_department": "发文部门",
    "handling_department": "承办部门",
    "level": "层级",
    "policy_type": "政策类型",
    "region_codes": "适用地区",
    "categories": "政策分类",
    "tags": "标签",
    "topics": "专栏",
    "summary": "摘要",
    "interpretation": "解读",
    "interpreter_name": "解读人",
    "interpreter_contact": "解读人联系方式",
    "full_text": "政策原文",
    "apply_start_on": "申报开始日期",
    "apply_end_on": "申报截止日期",
    "valid_from_on": "有效期起",
    "valid_to_on": "有效期止",
    "max_amount": "最高金额（万元）",
    "amount_text": "金额说明",
    "apply_url": "申报网址",
    "rules": "资格条件",
    "pinned": "置顶",
}


def get_policy(*, db: Session, policy_id: int) -> Policy:
    """Return a policy or raise NotFound."""
    policy = db.get(Policy, policy_id)
    if policy is None:
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    return policy


def get_visible_policy(*, db: Session, policy_id: int, actor: Principal | None) -> Policy:
    """Return a policy the caller may see: staff see all, others only published or expired ones."""
    policy = get_policy(db=db, policy_id=policy_id)
    if (actor is None or not actor.is_staff) and policy.status not in (PolicyStatus.published, PolicyStatus.expired):
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    return policy


def list_policies(
    *,
    db: Session,
    filters: PolicyFilters,
    actor: Principal | None,
    offset: int = 0,
    limit: int = 20,
    today: dt.date | None = None,
) -> tuple[list[Policy], int]:
    """Search and filter policies; callers who are not staff only ever see published ones."""
    today = today or dt.date.today()
    q = select(Policy)
    if actor is None or not actor.is_staff:
        q = q.where(
            Policy.status == (filters.status if filters.status == PolicyStatus.expired else PolicyStatus.published)
        )
    elif filters.status:
        q = q.where(Policy.status == filters.status)
    if filters.q:
        lookup = tag_lookup(db=db)
        for term in normalize(filters.q).lower().split():
            # An abbreviation (高企, 规上) also finds texts that spell the tag out in full.
            tag = lookup.get(term)
            alternatives = {term, normalize(tag.name).lower()} if tag else {term}
            q = q.where(or_(*(Policy.search_text.contains(t) for t in sorted(alternatives))))
    if filters.category:
        cat_ids = select(Category.id).where(
            or_(
                Category.code == filters.category,
                Category.parent_id.in_(select(Category.id).where(Category.code == filters.category)),
            )
        )
        q = q.where(
            exists().where(and_(policy_category.c.policy_id == Policy.id, policy_category.c.category_id.in_(cat_ids)))
        )
    if filters.department:
        dept_ids = select(Department.id).where(Department.code == filters.department)
        q = q.where(or_(Policy.issuing_department_id.in_(dept_ids), Policy.handling_department_id.in_(dept_ids)))
    if filters.level:
        q = q.where(Policy.level == filters.level)
    if filters.policy_type:
        q = q.where(Policy.policy_type == filters.policy_type)
    if filters.region:
        # Applies to a firm in `region`: nationwide (no region rows) or listed for it or an ancestor.
        path = [codes.NATIONAL_REGION, *codes.region_path(filters.region)]
        q = q.where(
            or_(
                ~exists().where(PolicyRegion.policy_id == Policy.id),
                exists().where(and_(PolicyRegion.policy_id == Policy.id, PolicyRegion.region_code.in_(path))),
            )
        )
    if filters.topic:
        topic_ids = select(Topic.id).where(Topic.code == filters.topic)
        q = q.where(exists().where(and_(policy_topic.c.policy_id == Policy.id, policy_topic.c.topic_id.in_(topic_ids))))
    if filters.tag:
        tag = tag_lookup(db=db).get(normalize(filters.tag).lower())
        if tag is None:
            return [], 0
        q = q.where(exists().where(and_(policy_tag.c.policy_id == Policy.id, policy_tag.c.tag_id == tag.id)))
    if filters.open_now:
        q = q.where(
            Policy.policy_type == PolicyType.application,
            or_(Policy.apply_start_on.is_(None), Policy.apply_start_on <= today),
            Policy.apply_end_on >= today,
        )
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    order: list[ColumnElement[Any]]
    if filters.sort == "deadline":
        # Open windows first, soonest deadline first; closed and undated ones after.
        closed = or_(Policy.apply_end_on.is_(None), Policy.apply_end_on < today)
        order = [Policy.pinned.desc(), closed.asc(), Policy.apply_end_on.asc(), Policy.id.desc()]
    elif filters.sort == "title":
        order = [Policy.title.asc()]
    else:
        order = [Policy.pinned.desc(), Policy.published_at.desc().nulls_last(), Policy.id.desc()]
    items = db.scalars(
        q.options(selectinload(Policy.categories), selectinload(Policy.tags))
        .order_by(*order)
        .offset(offset)
        .limit(limit)
    )
    return list(items), total


class HasDeadline(Protocol):
    """Anything with an application deadline: a Policy, or the matcher's plain PolicyInfo."""

    @property
    def apply_end_on(self) -> dt.date | None: ...


def days_left(policy: HasDeadline, today: dt.date | None = None) -> int | None:
    """Return days until the application deadline (negative when closed), None without one."""
    if policy.apply_end_on is None:
        return None
    return (policy.apply_end_on - (today or dt.date.today())).days


def _region_or_fail(code: str, field: str) -> str:
    try:
        return codes.normalize_region_code(code)
    except ValueError as exc:
        raise ValidationFailed(errors=[FieldError(field, str(exc), "unknown_region")]) from exc


_Coded = TypeVar("_Coded", Category, Topic)


def _resolve_codes(
    db: Session, model: type[_Coded], values: list[str], field: str, label: str, code: str
) -> list[_Coded]:
    rows = {r.code: r for r in db.scalars(select(model).where(model.code.in_(values)))}
    errors = [
        FieldError(f"{field}[{i}]", f"{label}编码 {v} 不存在", code) for i, v in enumerate(values) if v not in rows
    ]
    if errors:
        raise ValidationFailed(errors=errors)
    return [rows[v] for v in dict.fromkeys(values)]


def _apply_fields(db: Session, policy: Policy, data: dict[str, Any]) -> None:
    """Copy validated input onto the policy, resolving codes and names to rows."""
    errors: list[FieldError] = []
    if "issuing_department" in data:
        policy.issuing_department = get_department_by_code(
            db=db, code=data.pop("issuing_department"), field="issuing_department"
        )
    if "handling_department" in data:
        code = data.pop("handling_department")
        policy.handling_department = (
            get_department_by_code(db=db, code=code, field="handling_department") if code else None
        )
    if "region_codes" in data:
        regions = data.pop("region_codes") or []
        normalised = []
        for i, code in enumerate(regions):
            try:
                normalised.append(codes.normalize_region_code(code))
            except ValueError as exc:
                errors.append(FieldError(f"region_codes[{i}]", str(exc), "unknown_region"))
        wanted = list(dict.fromkeys(normalised))
        policy.regions = [r for r in policy.regions if r.region_code in wanted] + [
            PolicyRegion(region_code=c) for c in wanted if c not in policy.region_codes
        ]
    if "categories" in data:
        policy.categories = _resolve_codes(
            db, Category, data.pop("categories") or [], "categories", "政策分类", "unknown_category"
        )
    if "topics" in data:
        policy.topics = _resolve_codes(db, Topic, data.pop("topics") or [], "topics", "专栏", "unknown_topic")
    if "tags" in data:
        policy.tags = resolve_tags(db=db, names=data.pop("tags") or [])
    if "rules" in data and data["rules"] is not None:
        lookup = tag_lookup(db=db)
        data["rules"] = _canonical_tags(data["rules"], lookup)
        errors.extend(rules_mod.validate_rules(data["rules"], known_tags={t.name for t in lookup.values()}))
    if errors:
        raise ValidationFailed(errors=errors)
    if "title" in data:
        data["title"] = normalize(data["title"])
    for key, value in data.items():
        setattr(policy, key, value)
    policy.search_text = normalize(" ".join(filter(None, [policy.title, policy.summary, policy.doc_number]))).lower()


def _canonical_tags(rules: dict[str, Any], lookup: dict[str, Tag]) -> dict[str, Any]:
    """Replace tag synonyms in set conditions by canonical names, so matching compares like with like."""
    rules = copy.deepcopy(rules)
    for cond in rules_mod.iter_conditions(rules):
        if cond.get("op") in ("has_any", "has_all", "has_none") and isinstance(cond.get("value"), list):
            cond["value"] = [
                lookup[key].name if isinstance(v, str) and (key := normalize(v).lower()) in lookup else v
                for v in cond["value"]
            ]
    return rules


def create_policy(*, db: Session, policy_in: PolicyIn, actor: Principal | None) -> Policy:
    """Create a draft policy."""
    data = policy_in.model_dump(exclude_unset=True)
    data.setdefault("pinned", False)
    policy = Policy(status=PolicyStatus.draft, created_by_id=actor.user_id if actor else None)
    _apply_fields(db, policy, data)
    _check_unique(db, policy)
    db.add(policy)
    db.flush()
    return policy


def _check_unique(db: Session, policy: Policy) -> None:
    if policy.doc_number:
        other = db.scalar(
            select(Policy.id).where(Policy.doc_number == policy.doc_number, Policy.id != (policy.id or -1))
        )
        if other:
            raise Conflict(
                f"文号 {policy.doc_number} 已被政策 #{other} 使用",
                code="catalog.doc_number_taken",
                errors=[FieldError("doc_number", "文号已存在", "taken")],
            )
    other = db.scalar(
        select(Policy.id).where(
            Policy.title == policy.title,
            Policy.issuing_department_id == policy.issuing_department.id,
            Policy.id != (policy.id or -1),
        )
    )
    if other:
        raise Conflict(
            f"同一发文部门已有同名政策 #{other}",
            code="catalog.policy_title_taken",
            errors=[FieldError("title", "同一发文部门已有同名政策", "taken")],
        )


def update_policy(*, db: Session, policy_id: int, policy_in: PolicyUpdate, actor: Principal | None) -> Policy:
    """Edit a policy; an edit of a published policy is recorded as a new version."""
    policy = get_policy(db=db, policy_id=policy_id)
    if policy.status == PolicyStatus.withdrawn:
        raise InvalidState("已撤回的政策不能修改，请重新发布后再改", code="catalog.policy_withdrawn")
    data = policy_in.model_dump(exclude_unset=True)
    note = data.pop("note", None)
    for required in ("title", "issuing_department", "level", "policy_type"):
        if required in data and data[required] is None:
            raise ValidationFailed(errors=[FieldError(required, "必填项不能清空", "required")])
    before = snapshot(policy)
    _apply_fields(db, policy, data)
    _check_unique(db, policy)
    policy.updated_by_id = actor.user_id if actor else None
    db.flush()
    if policy.status == PolicyStatus.published and policy.version and before != snapshot(policy):
        _check_publishable(policy)
        from_version = policy.version
        _record_version(db, policy, actor, note or "修改已发布政策")
        bump_revision(db)
        events.emit(
            events.PolicyRevised(db=db, policy_id=policy.id, from_version=from_version, to_version=policy.version)
        )
    return policy


def delete_policy(*, db: Session, policy_id: int, settings: Settings | None = None) -> None:
    """Delete a draft that was never published (with its attachments); published ones are withdrawn instead."""
    policy = get_policy(db=db, policy_id=policy_id)
    if policy.version:
        raise InvalidState("已发布过的政策不能删除，请使用撤回", code="catalog.policy_was_published")
    attachments.delete_all(db, settings=settings or get_settings(), owner_kind=OwnerKind.policy, owner_id=policy.id)
    db.delete(policy)
    db.flush()


def _check_publishable(policy: Policy, today: dt.date | None = None) -> None:
    """Enforce 一政策一摘要一解读人 and a usable window; name every missing field."""
    errors = []
    if not (policy.summary or "").strip():
        errors.append(FieldError("summary", "发布前必须填写政策摘要", "required"))
    if not (policy.interpreter_name or "").strip():
        errors.append(FieldError("interpreter_name", "发布前必须指定解读人", "required"))
    if not (policy.interpreter_contact or "").strip():
        errors.append(FieldError("interpreter_contact", "发布前必须填写解读人联系方式", "required"))
    if not policy.categories:
        errors.append(FieldError("categories", "发布前至少选择一个政策分类", "required"))
    if policy.policy_type == PolicyType.application and policy.apply_end_on is None:
        errors.append(FieldError("apply_end_on", "申报类政策发布前必须填写申报截止日期", "required"))
    today = today or dt.date.today()
    if policy.valid_to_on and policy.valid_to_on < today:
        errors.append(FieldError("valid_to_on", "政策有效期已过，不能发布", "expired"))
    if errors:
        missing = "、".join(POLICY_FIELD_LABELS.get(e.field, e.field) for e in errors)
        raise ValidationFailed(f"发布前需补全：{missing}", code="catalog.policy_incomplete", errors=errors)


def publish_policy(
    *,
    db: Session,
    policy_id: int,
    actor: Principal | None,
    note: str | None = None,
    today: dt.date | None = None,
    announce: bool = True,
) -> Policy:
    """Publish a draft, withdrawn or expired policy and record a version.

    Subscribers of `PolicyPublished` tell eligible firms; `announce=False` is for seeding history
    (the demo catalog), where the policies were "published" before anyone was there to hear.
    """
    policy = get_policy(db=db, policy_id=policy_id)
    if policy.status == PolicyStatus.published:
        raise InvalidState("政策已是发布状态", code="catalog.policy_already_published")
    _check_publishable(policy, today)
    from catalog.intake.review import check_decided  # intake builds on this module

    check_decided(db, policy.id)  # a draft read from a document: every proposal decided by a curator
    policy.status = PolicyStatus.published
    policy.published_at = utcnow()
    policy.withdrawn_at = None
    policy.updated_by_id = actor.user_id if actor else None
    db.flush()
    _record_version(db, policy, actor, note or "发布")
    bump_revision(db)
    if announce:
        events.emit(events.PolicyPublished(db=db, policy_id=policy.id, version=policy.version))
    return policy


def withdraw_policy(*, db: Session, policy_id: int, actor: Principal | None, note: str | None = None) -> Policy:
    """Withdraw a published policy; it disappears from public lists and matching."""
    policy = get_policy(db=db, policy_id=policy_id)
    if policy.status != PolicyStatus.published:
        raise InvalidState("只有已发布的政策可以撤回", code="catalog.policy_not_published")
    policy.status = PolicyStatus.withdrawn
    policy.withdrawn_at = utcnow()
    policy.updated_by_id = actor.user_id if actor else None
    db.flush()
    bump_revision(db)
    events.emit(events.PolicyWithdrawn(db=db, policy_id=policy.id))
    return policy


def expire_due_policies(*, db: Session, today: dt.date | None = None) -> list[int]:
    """Mark published policies whose validity has ended as expired; return their ids."""
    today = today or dt.date.today()
    due = list(db.scalars(select(Policy).where(Policy.status == PolicyStatus.published, Policy.valid_to_on < today)))
    for policy in due:
        policy.status = PolicyStatus.expired
    db.flush()
    if due:
        bump_revision(db)
    for policy in due:
        events.emit(events.PolicyWithdrawn(db=db, policy_id=policy.id))
    return [p.id for p in due]


def snapshot(policy: Policy) -> dict[str, Any]:
    """Return the policy's curated content as plain JSON, for versions and diffs."""

    def iso(d: dt.date | None) -> str | None:
        return d.isoformat() if d else None

    return {
        "title": policy.title,
        "doc_number": policy.doc_number,
        "issuing_department": policy.issuing_department.code if policy.issuing_department else None,
        "handling_department": policy.handling_department.code if policy.handling_department else None,
        "level": str(policy.level) if policy.level else None,
        "policy_type": str(policy.policy_type) if policy.policy_type else None,
        "region_codes": sorted(policy.region_codes),
        "categories": sorted(c.code for c in policy.categories),
        "tags": sorted(t.name for t in policy.tags),
        "topics": sorted(t.code for t in policy.topics),
        "summary": policy.summary,
        "interpretation": policy.interpretation,
        "interpreter_name": policy.interpreter_name,
        "interpreter_contact": policy.interpreter_contact,
        "full_text": policy.full_text,
        "apply_start_on": iso(policy.apply_start_on),
        "apply_end_on": iso(policy.apply_end_on),
        "valid_from_on": iso(policy.valid_from_on),
        "valid_to_on": iso(policy.valid_to_on),
        "max_amount": policy.max_amount,
        "amount_text": policy.amount_text,
        "apply_url": policy.apply_url,
        "rules": policy.rules,
        "pinned": bool(policy.pinned),
    }


def _record_version(db: Session, policy: Policy, actor: Principal | None, note: str) -> PolicyVersion:
    policy.version = (policy.version or 0) + 1
    version = PolicyVersion(
        policy_id=policy.id,
        version=policy.version,
        snapshot=snapshot(policy),
        note=note,
        actor_id=actor.user_id if actor else None,
    )
    db.add(version)
    db.flush()
    return version


def list_versions(*, db: Session, policy_id: int) -> list[PolicyVersion]:
    """Return a policy's versions, newest first."""
    get_policy(db=db, policy_id=policy_id)
    return list(
        db.scalars(
            select(PolicyVersion).where(PolicyVersion.policy_id == policy_id).order_by(PolicyVersion.version.desc())
        )
    )


def get_version(*, db: Session, policy_id: int, version: int) -> PolicyVersion:
    """Return one version of a policy or raise NotFound."""
    row = db.scalar(select(PolicyVersion).where(PolicyVersion.policy_id == policy_id, PolicyVersion.version == version))
    if row is None:
        raise NotFound(f"政策 #{policy_id} 没有第 {version} 版", code="catalog.version_not_found")
    return row


def diff_snapshots(before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    """List the fields that differ between two snapshots, in display order."""
    return [
        FieldChange(field=key, label=label, before=before.get(key), after=after.get(key))
        for key, label in POLICY_FIELD_LABELS.items()
        if before.get(key) != after.get(key)
    ]


def diff_versions(*, db: Session, policy_id: int, from_version: int, to_version: int) -> PolicyDiff:
    """Compare two versions of a policy field by field."""
    a = get_version(db=db, policy_id=policy_id, version=from_version)
    b = get_version(db=db, policy_id=policy_id, version=to_version)
    return PolicyDiff(
        policy_id=policy_id,
        from_version=from_version,
        to_version=to_version,
        changes=diff_snapshots(a.snapshot, b.snapshot),
    )
