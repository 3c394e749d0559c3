"""Demo desk data: the curated FAQ (desk/demo_data/faq.json), about thirty cases in every state, and
policy ratings with comments from demo firms (政企互动).

Cases go through the real service functions (submit, accept, reply, resolve, rate, …) with past
times, so their timelines, due times and SLA colours are what the desk would have produced. The
firm demo user owns several of them; the demo desk officers' departments (市科技局、市工信局、市人社局)
handle most of the rest, so every demo account has something to look at.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auth.models import Role, User
from auth.service import Principal, principal_for_user
from catalog.models import Department, Policy, PolicyStatus
from core.config import Settings
from core.db import utcnow
from desk import clock, handling, intake, outcome, ratings
from desk.models import Case, Channel, FaqEntry, PolicyRating, Rating
from desk.schemas import CaseIn, ExtensionIn, VisitRecord
from desk.sla import Kind
from profiles.models import Enterprise
from push import events as push_events

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "demo_data"
DEMO_KEY_PREFIX = "demo-case-"


def load_faq(*, db: Session, path: Path | None = None) -> int:
    """Insert the curated FAQ entries that do not exist yet; return how many were added."""
    entries = json.loads((path or DATA_DIR / "faq.json").read_text(encoding="utf-8"))
    departments = {d.code: d.id for d in db.scalars(select(Department))}
    existing = set(db.scalars(select(FaqEntry.code)))
    added = 0
    now = utcnow()
    for e in entries:
        if e["id"] in existing:
            continue
        db.add(
            FaqEntry(
                code=e["id"],
                question=e["question"],
                answer=e["answer"],
                department_id=departments.get(e.get("department", "")),
                keywords=list(e.get("keywords", [])),
                related_policies=list(e.get("related_policies", [])),
                source="curated",
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        added += 1
    db.flush()
    return added


@dataclass(frozen=True)
class DemoCase:
    """One demo case: what the firm wrote and how far its handling got."""

    kind: Kind
    title: str
    content: str
    department: str | None  # None: the central dispatch queue
    state: str  # see _drive
    days_ago: float
    firm_user: bool = False  # filed by the demo firm user (README: firm)
    channel: str = "web"
    extra: dict[str, Any] = field(default_factory=dict)


# fmt: off
DEMO_CASES: tuple[DemoCase, ...] = (
    DemoCase("help", "研发费用加计扣除备案后系统查不到", "我司今年5月已在电子税务局完成研发费用加计扣除的优惠备案，但在市科技局的研发费用补助申报系统里查不到备案记录，导致无法提交补助申请，麻烦帮忙核实一下数据对接情况。", "zs-kjj", "dispatched", 0.1, firm_user=True),
    DemoCase("consultation", "高企认定奖励到账时间", "我们去年12月通过了高新技术企业认定，按中山的政策有30万元认定奖励，今年已经提交了申请材料，想了解大概什么时候能到账，需要我们再补充什么材料吗？", "zs-kjj", "in_progress", 2.2, firm_user=True),
    DemoCase("complaint", "科技创新券兑付迟迟没有办理", "我公司2025年申领的科技创新券已经在服务机构使用完毕并提交了兑付材料，至今三个多月一直没有拨付，打电话问了几次都说在走流程，希望尽快处理。", "zs-kjj", "reopened", 9.0, firm_user=True),
    DemoCase("suggestion", "建议简化科技项目验收材料", "科技项目结题验收要求提交的纸质材料太多，同一份审计报告要交三份，建议改为线上提交电子版，减少企业跑腿。", "zs-kjj", "closed", 20.0, firm_user=True),
    DemoCase("help", "企业研发机构认定材料退回", "我们申请市级工程技术研究中心认定，材料被退回说研发场地证明不符合要求，但我们提交的是租赁合同和房产证复印件，请问还需要什么证明？", "zs-kjj", "resolved", 4.0, firm_user=True),
    DemoCase("consultation", "稳岗返还没有收到", "我公司去年参保职工一直稳定，没有裁员，今年的失业保险稳岗返还名单里没有我们，想问一下是什么原因，能不能补发？", "zs-rsj", "rated", 12.0, firm_user=True),
    DemoCase("help", "技改项目备案无法提交", "在广东省投资项目在线审批监管平台做技术改造项目备案时，一直提示统一社会信用代码校验失败，已经试了好几天，项目设备下个月要进场，很着急。", "zs-gxj", "accepted", 0.6, firm_user=True),
    DemoCase("complaint", "专精特新申报材料被要求重复提交", "我们申报省级专精特新中小企业，区里已经审核通过，市里又要求我们把同样的材料再线下报一遍，前后交了三次，希望能统一要求。", "zs-gxj", "in_progress", 3.5),
    DemoCase("help", "工业企业技术改造奖补资金拨付咨询", "我司2025年的技改项目已通过验收，公示名单里也有我们，但奖补资金还没到账，想了解拨付进度。", "zs-gxj", "dispatched", 1.0),
    DemoCase("complaint", "用电报装工作人员推诿", "新厂房申请工业用电报装，供电部门说要先有规划验收，规划部门说要先通电才能验收，两边互相推，已经拖了一个多月，生产线装好了不能开工。", "zs-gxj", "joint", 2.0, channel="hotline", extra={"joint": "zs-zjj"}),
    DemoCase("consultation", "数字化转型诊断服务怎么申请", "听说市里有免费的中小企业数字化转型诊断服务，我们是一家做五金的小厂，想申请，请问从哪里报名？", "zs-gxj", "resolved", 5.0),
    DemoCase("help", "小升规奖励申报系统打不开", "申报小升规奖励的系统一直打不开，截止日期是这周五，怕赶不上。", "zs-gxj", "paused", 1.5),
    DemoCase("complaint", "招聘补贴审核超时", "我司今年3月招用了12名高校毕业生，按规定申请了一次性吸纳就业补贴，材料提交已经两个月，系统显示一直在审核中，没有任何反馈。", "zs-rsj", "overdue", 12.0),
    DemoCase("help", "社保费缓缴申请", "受订单减少影响，公司现金流紧张，想申请阶段性缓缴社会保险费，请问符合什么条件，怎么申请？", "zs-rsj", "extension", 3.0),
    DemoCase("consultation", "以工代训补贴是否还有", "去年有以工代训补贴，今年还有没有？我们新招了一批员工想申请岗前培训补贴。", "zs-rsj", "resolved", 6.0),
    DemoCase("complaint", "劳动仲裁案件久拖不决", "我们作为被申请人的一宗劳动争议案件，开庭后已经过去90天还没有出裁决，影响公司正常经营，希望加快处理。", "zs-rsj", "return", 2.5, extra={"reason": "劳动仲裁属仲裁院依法独立办理事项，请转市劳动人事争议仲裁院"}),
    DemoCase("help", "技能人才评价机构备案", "公司想开展企业技能等级自主评价，需要到人社部门备案，请问要准备哪些材料？", "zs-rsj", "closed_unrated", 15.0),
    DemoCase("report", "举报某培训机构套取职业培训补贴", "实名举报：某职业培训学校虚报参训人数，让员工签到不上课，套取职业技能培训补贴，我掌握了签到表和照片。", "zs-rsj", "accepted", 1.2, channel="hotline"),
    DemoCase("complaint", "企业开办一网通办多次退回", "我们在中山市企业开办一网通办平台办理设立登记，材料被退回了四次，每次只说一个问题，希望能一次性告知所有需要修改的地方。", "zs-scjgj", "red", 15.0, channel="hotline"),
    DemoCase("help", "出口退税进度查询", "我司3月申报的出口退税至今没有到账，电子税务局显示已审核，想了解什么时候能退库。", "zs-tax", "orange", 13.0),
    DemoCase("consultation", "首贷户贴息政策", "我们从来没有在银行贷过款，听说首贷户有贴息，请问是哪个部门负责，怎么申请？", "zs-jrj", "yellow", 8.5),
    DemoCase("suggestion", "建议翠亨新区增加公交线路", "翠亨新区园区上下班高峰公交车太少，员工通勤很困难，建议增加园区到中心城区的公交线路和班次。", None, "queue", 0.3, channel="hotline"),
    DemoCase("help", "厂房租金补贴找不到申报入口", "我们是小微企业，听说租用标准厂房可以申请租金补贴，但在政府网站上找不到申报入口，不知道该找哪个部门。", None, "queue", 0.8),
    DemoCase("complaint", "园区道路长期积水", "我们公司所在的工业园区门口道路一下雨就积水，货车进出困难，已经反映过多次，一直没有整改。", None, "queue", 1.1, channel="hotline"),
    DemoCase("help", "外贸企业参展补贴申报", "我们计划参加明年的广交会，想了解市里对企业参加境外展会有没有补贴，申报时间是什么时候？", "zs-swj", "in_progress", 2.8),
    DemoCase("consultation", "企业上市奖励", "我司计划明年申报北交所上市，想了解中山市对企业上市各阶段的奖励标准。", "zs-jrj", "rated", 18.0),
    DemoCase("help", "知识产权质押融资贴息", "我们用专利做了质押贷款，想申请知识产权质押融资贴息，贴息比例是多少，需要哪些材料？", "zs-scjgj", "proxy", 0.9, channel="proxy"),
    DemoCase("complaint", "政府采购款拖欠", "我公司为某事业单位提供的设备已验收合格半年，合同约定的尾款至今未支付，多次催要无果，影响企业资金周转。", "zs-czj", "in_progress", 4.5, channel="hotline"),
    DemoCase("consultation", "人才入户办理流程", "公司新引进一名博士研发人员，想办理人才入户中山，请问需要哪些材料，在哪里办理？", "zs-rsj", "reopened_twice", 16.0),
    DemoCase("help", "高企认定专项审计机构选择", "高企认定的专项审计报告必须由指定的机构出具吗？我们之前合作的会计师事务所可以吗？", "zs-kjj", "accepted", 0.4),
)
# fmt: on


def _desk_principal(db: Session, department_id: int | None) -> Principal | None:
    if department_id is None:
        return None
    user = db.scalar(
        select(User).where(User.role == Role.desk, User.department_id == department_id, User.is_active.is_(True))
    )
    return principal_for_user(user) if user else None


def _user(db: Session, username: str) -> Principal | None:
    user = db.scalar(select(User).where(User.username == username))
    return principal_for_user(user) if user else None


def _enterprises(db: Session, firm: Principal | None, count: int) -> list[int]:
    ids = list(
        db.scalars(
            select(Enterprise.id).where(Enterprise.region_code == "442000").order_by(Enterprise.id).limit(count + 1)
        )
    ) or list(db.scalars(select(Enterprise.id).order_by(Enterprise.id).limit(count + 1)))
    if firm and firm.enterprise_id in ids:
        ids.remove(firm.enterprise_id)
    return ids[:count]


def load_demo_cases(*, db: Session, settings: Settings, now: dt.datetime | None = None) -> int:
    """File the demo cases not filed yet and drive each to its state; return how many were added."""
    now = now or utcnow()
    departments = {d.code: d.id for d in db.scalars(select(Department))}
    firm = _user(db, "firm")
    supervisor = _user(db, "supervisor")
    others = _enterprises(db, firm, len(DEMO_CASES))
    added = 0
    for i, demo in enumerate(DEMO_CASES):
        key = f"{DEMO_KEY_PREFIX}{i + 1:02d}"
        if db.scalar(select(func.count()).select_from(Case).where(Case.idempotency_key == key)):
            continue
        dept_id = departments.get(demo.department) if demo.department else None
        if demo.department and dept_id is None:
            log.warning("demo department %s missing; case %s left out", demo.department, key)
            continue
        base = now - dt.timedelta(days=demo.days_ago)
        own = demo.firm_user and firm is not None
        enterprise_id = firm.enterprise_id if own and firm else (others[i % len(others)] if others else None)
        if demo.channel == "hotline" and i % 2:
            enterprise_id = None  # an anonymous 12345 caller
        visit = None
        if demo.channel == "proxy":
            visit = VisitRecord(
                visited_on=base.date(),
                visitor="市金融工作局 何伟",
                location="企业生产车间",
                note="走访中企业提出融资需求",
            )
        case_in = CaseIn(
            kind=demo.kind,
            title=demo.title,
            content=demo.content,
            channel=Channel(demo.channel),
            enterprise_id=enterprise_id,
            contact_name="李明" if own else "王经理",
            contact_phone="13800000000" if own else "13900000000",
            department_id=dept_id,
            visit_record=visit,
            idempotency_key=key,
            received_at=base,
        )
        submitter = _desk_principal(db, dept_id) if demo.channel == "proxy" else None
        case = intake.submit_case(db=db, matcher=None, settings=settings, actor=submitter, case_in=case_in, now=base)
        firm_actor = firm if own else None
        _drive(
            db,
            settings,
            case,
            demo,
            base=base,
            now=now,
            firm=firm_actor,
            supervisor=supervisor,
            departments=departments,
        )
        clock.refresh_sla_state(case, settings=settings, now=now)
        added += 1
    db.flush()
    return added


def _drive(
    db: Session,
    settings: Settings,
    case: Case,
    demo: DemoCase,
    *,
    base: dt.datetime,
    now: dt.datetime,
    firm: Principal | None,
    supervisor: Principal | None,
    departments: dict[str, int],
) -> None:
    """Take a freshly dispatched case through the service to the demo state, at past times."""
    span = now - base

    def at(fraction: float) -> dt.datetime:
        return base + span * fraction

    desk = _desk_principal(db, case.department_id)
    kw: dict[str, Any] = {"db": db, "settings": settings, "case_id": case.id}
    state = demo.state
    if state in ("queue", "dispatched", "overdue"):
        return
    handling.accept(**kw, actor=desk, now=at(0.05))
    handling.contact(**kw, actor=desk, note="已电话联系企业，了解具体情况", now=at(0.08))
    if state in ("accepted", "proxy"):
        return
    if state == "joint":
        handling.add_joint(**kw, actor=desk, department_id=departments[demo.extra["joint"]], now=at(0.2))
        handling.reply(**kw, actor=desk, note="已联合住建部门现场核实，正在协调规划验收与临时用电方案。", now=at(0.5))
        return
    if state == "paused":
        handling.pause(**kw, actor=desk, reason="请企业补充提供系统报错截图和申报账号信息", now=at(0.3))
        return
    if state == "return":
        handling.request_return(**kw, actor=desk, reason=demo.extra["reason"], now=at(0.3))
        return
    handling.reply(**kw, actor=desk, note="已收到您的诉求，正在与相关科室核实，预计3个工作日内给出答复。", now=at(0.05))
    if state in ("in_progress", "yellow", "orange", "red"):
        return  # the colours come from how long ago the case came in
    if state == "extension":
        handling.request_extension(
            **kw,
            actor=desk,
            extension_in=ExtensionIn(amount=3, unit="working_days", reason="需省级系统核验缴费数据，等待省厅反馈"),
            now=at(0.5),
        )
        return
    handling.resolve(**kw, actor=desk, resolution=_RESOLUTIONS.get(demo.kind, _RESOLUTIONS["help"]), now=at(0.4))
    if state in ("resolved",):
        return
    if state == "closed_unrated":
        outcome.close(**kw, actor=supervisor, note="企业逾期未评价，按规定归档", now=at(0.9))
        return
    if state in ("reopened", "reopened_twice"):
        _rate(db, settings, case, Rating.dissatisfied, "问题没有实际解决，只是解释了流程", firm, supervisor, at(0.5))
        if state == "reopened":
            return
        handling.reply(**kw, actor=desk, note="已重新核查材料，正在与公安部门协调户籍办理。", now=at(0.6))
        handling.resolve(
            **kw, actor=desk, resolution="已协调办理人才入户，请携带材料到政务服务中心公安窗口办理。", now=at(0.7)
        )
        _rate(db, settings, case, Rating.dissatisfied, "窗口仍然说材料不全", firm, supervisor, at(0.8))
        return
    rating = Rating.satisfied if demo.kind != "complaint" else Rating.basically_satisfied
    _rate(db, settings, case, rating, "答复及时，问题已解决", firm, supervisor, at(0.6))
    if state == "rated":
        return
    outcome.close(**kw, actor=desk, note="企业评价满意，归档", now=at(0.7))


def _rate(
    db: Session,
    settings: Settings,
    case: Case,
    rating: Rating,
    comment: str,
    firm: Principal | None,
    supervisor: Principal | None,
    when: dt.datetime,
) -> None:
    """The demo firm rates its own cases; for other firms the rating comes from a revisit (回访)."""
    if firm is not None:
        outcome.rate(db=db, settings=settings, case_id=case.id, actor=firm, rating=rating, comment=comment, now=when)
    else:
        outcome.revisit(
            db=db,
            settings=settings,
            case_id=case.id,
            actor=supervisor,
            note="电话回访企业",
            rating=rating,
            comment=comment,
            now=when,
        )


_RESOLUTIONS = {
    "consultation": "经核实，您咨询的事项按现行政策办理：请在申报期内登录相应业务系统提交材料，审核通过后资金直接拨付至企业对公账户。如有疑问可拨打承办科室电话咨询。",
    "help": "已协调相关科室处理，问题已解决。请重新登录系统操作，如仍有问题请随时联系我们。",
    "complaint": "经调查，情况基本属实，已责成相关科室限期整改，并对经办人员进行批评教育；资金已于本周内拨付。",
    "report": "已会同相关部门开展核查，对查实问题依法依规处理，处理结果将按规定反馈举报人。",
    "suggestion": "感谢您的建议，我局已将其纳入下一步优化工作计划，相关措施将在门户网站公布。",
}


# Demo ratings (stars, comment): several comments share a subject (申报材料、申报系统), so the hot topics
# show a cluster drawn from ratings; some firms rate without a comment.
DEMO_RATINGS: tuple[tuple[int, str | None], ...] = (
    (2, "申报材料清单太长，希望精简申报材料，很多证明要重复提交"),
    (3, "申报材料太多，同样的证明材料每年都要重复提交"),
    (2, "希望精简申报材料，减少重复提交的证明"),
    (5, "政策解读很清楚，解读人电话一打就通，答复很耐心"),
    (5, "兑现速度快，补贴资金一个月就到账了"),
    (1, "申报系统经常卡顿，上传附件总是失败"),
    (2, "申报系统上传附件失败，反复提交好几次才成功"),
    (4, None),
    (3, "申报条件写得比较笼统，不确定我们企业是否符合"),
    (4, "扶持力度不错，建议延长申报时间"),
    (5, None),
    (4, "线上申报流程顺畅，希望增加进度查询"),
)


def load_demo_ratings(*, db: Session, policies: int = 6) -> int:
    """Have demo firms rate a few published policies they viewed (with comments); return how many were added.

    Each firm first views the policy (the engagement event a page visit records), as rating requires.
    Nothing is added when any rating exists, so running it again changes nothing.
    """
    if db.scalar(select(func.count()).select_from(PolicyRating)):
        return 0
    firm = _user(db, "firm")
    policy_ids = list(
        db.scalars(select(Policy.id).where(Policy.status == PolicyStatus.published).order_by(Policy.id).limit(policies))
    )
    firm_ids = _enterprises(db, firm, len(DEMO_RATINGS))
    added = 0
    for p_index, policy_id in enumerate(policy_ids):
        # Policies get fewer ratings further down the list, so the averages and counts differ.
        raters = firm_ids[: max(3, len(DEMO_RATINGS) - 2 * p_index)]
        for r_index, enterprise_id in enumerate(raters):
            stars, comment = DEMO_RATINGS[(r_index + p_index) % len(DEMO_RATINGS)]
            push_events.record_events(db=db, enterprise_id=enterprise_id, policy_ids=[policy_id], kind="viewed")
            ratings.rate_policy(db=db, enterprise_id=enterprise_id, policy_id=policy_id, stars=stars, comment=comment)
            added += 1
    if firm is not None and firm.enterprise_id is not None and policy_ids:
        push_events.record_events(db=db, enterprise_id=firm.enterprise_id, policy_ids=[policy_ids[0]], kind="viewed")
        ratings.rate_policy(
            db=db,
            enterprise_id=firm.enterprise_id,
            policy_id=policy_ids[0],
            stars=4,
            comment="政策很实用，希望申报材料能再精简一些",
            user_id=firm.user_id,
        )
        added += 1
    return added


def load_demo_desk(*, db: Session, settings: Settings) -> dict[str, int]:
    """Load the FAQ, the demo cases and the demo policy ratings; return the counts added."""
    return {
        "faq": load_faq(db=db),
        "cases": load_demo_cases(db=db, settings=settings),
        "ratings": load_demo_ratings(db=db),
    }
