"""The desk's case lifecycle: intake, the state machine, the timeline, SLA clocks, requests and role scoping."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auth import service as auth_service
from auth.models import Role
from auth.schemas import ApiKeyIn
from auth.service import Principal, principal_for_user
from catalog.models import Department, Policy
from core.config import Settings
from core.errors import Conflict, InvalidState, NotFound, PermissionDenied, ValidationFailed
from desk import clock, faq, handling, intake, lifecycle, outcome, queries
from desk.lifecycle import TRANSITIONS, IllegalTransition
from desk.models import STATUS_LABELS, Case, CaseEvent, CaseStatus, FaqEntry, Rating
from desk.schemas import AttachmentIn, CaseIn, ExtensionIn, PromoteIn, VisitRecord
from tests import factories

CST = ZoneInfo("Asia/Shanghai")
MONDAY = dt.datetime(2026, 11, 23, 10, 0, tzinfo=CST)  # a Monday, official calendar year
S = CaseStatus


@dataclass
class Desk:
    """Two departments with a desk officer each, a policy handled by the first, two firms, a supervisor."""

    db: Session
    settings: Settings
    dept_a: Department
    dept_b: Department
    policy: Policy
    firm: Principal
    other_firm: Principal
    desk_a: Principal
    desk_b: Principal
    supervisor: Principal
    admin: Principal
    curator: Principal

    def submit(self, actor: Principal | None = None, now: dt.datetime = MONDAY, **kw: Any) -> Case:
        data: dict[str, Any] = {"kind": "complaint", "content": "补贴资金迟迟没有拨付，打了几次电话都说在走流程。"}
        data.setdefault("related_policy_id", self.policy.id)
        data |= kw
        return intake.submit_case(
            db=self.db, matcher=None, settings=self.settings, actor=actor or self.firm, case_in=CaseIn(**data), now=now
        )

    def call(self, fn: Any, case: Case, actor: Principal | None, now: dt.datetime, **kw: Any) -> Case:
        return fn(db=self.db, settings=self.settings, case_id=case.id, actor=actor, now=now, **kw)


def _principal(db: Session, role: Role, **kw: Any) -> Principal:
    return principal_for_user(factories.make_user(db, role=role, **kw))


@pytest.fixture
def desk(db: Session, test_settings: Settings) -> Desk:
    dept_a = factories.make_department(db)
    dept_b = factories.make_department(db)
    policy = factories.make_policy(db, publish=True, department=dept_a)
    return Desk(
        db=db,
        settings=test_settings,
        dept_a=dept_a,
        dept_b=dept_b,
        policy=policy,
        firm=_principal(db, Role.enterprise),
        other_firm=_principal(db, Role.enterprise),
        desk_a=_principal(db, Role.desk, department_id=dept_a.id),
        desk_b=_principal(db, Role.desk, department_id=dept_b.id),
        supervisor=_principal(db, Role.supervisor),
        admin=_principal(db, Role.admin),
        curator=_principal(db, Role.curator),
    )


def _events(case: Case) -> list[str]:
    return [e.kind for e in case.events]


def _h(hours: float) -> dt.timedelta:
    return dt.timedelta(hours=hours)


# ---------------------------------------------------------------- intake


def test_complaint_is_routed_to_the_related_policy_department_with_due_times(desk: Desk) -> None:
    case = desk.submit()
    assert case.status == S.dispatched
    assert case.department_id == desk.dept_a.id
    assert case.routing_method == "policy"
    assert case.number == f"HQ20261123-{case.id:06d}"
    assert case.channel == "web" and case.enterprise_id == desk.firm.enterprise_id
    # 中山: 1 working hour to contact, 3 working days to reply, 5 to close (day of receipt not counted).
    assert case.contact_due_at.astimezone(CST) == dt.datetime(2026, 11, 23, 11, 0, tzinfo=CST)
    assert case.reply_due_at.astimezone(CST) == dt.datetime(2026, 11, 26, 18, 0, tzinfo=CST)
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 11, 30, 18, 0, tzinfo=CST)
    assert not case.due_provisional and case.sla_profile == "zhongshan"
    assert _events(case) == ["submitted", "dispatched"]
    dispatched = case.events[1]
    assert (dispatched.from_status, dispatched.to_status) == ("submitted", "dispatched")
    assert dispatched.actor_id == desk.firm.user_id and dispatched.actor_role == "enterprise"
    assert [d.role for d in case.departments] == ["lead"]


def test_kind_is_detected_when_not_given_and_can_be_corrected_by_staff(desk: Desk) -> None:
    settings = desk.settings.model_copy(update={"desk_sla_profile": "xuzhou_135"})
    desk.settings = settings
    case = desk.submit(kind=None, content="我要投诉！窗口工作人员态度恶劣，材料交了三次都被退回。")
    assert case.kind == "complaint" and case.kind_detected and case.kind_confidence >= 0.5
    # 徐州“135”: complaints close in 5 working days, suggestions in 3.
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 11, 30, 18, 0, tzinfo=CST)
    with pytest.raises(NotFound):
        desk.call(handling.correct_kind, case, desk.desk_b, MONDAY + _h(1), kind="suggestion")
    desk.call(handling.correct_kind, case, desk.desk_a, MONDAY + _h(1), kind="suggestion")
    assert case.kind == "suggestion"
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 11, 26, 18, 0, tzinfo=CST)
    corrected = case.events[-1]
    assert corrected.kind == "kind_corrected" and corrected.data == {
        "from": "complaint",
        "to": "suggestion",
        "was_detected": True,
    }
    with pytest.raises(ValidationFailed):
        desk.call(handling.correct_kind, case, desk.desk_a, MONDAY + _h(1), kind="suggestion")


def test_same_idempotency_key_returns_the_same_case(desk: Desk) -> None:
    first = desk.submit(idempotency_key="retry-1")
    again = desk.submit(idempotency_key="retry-1", content="重试时内容即使不同也不再新建工单。")
    assert again is first and again.replayed
    other_key = desk.submit(idempotency_key="retry-2")
    other_caller = desk.submit(actor=desk.other_firm, idempotency_key="retry-1")
    assert len({first.id, other_key.id, other_caller.id}) == 3
    count = desk.db.scalar(select(func.count()).select_from(Case).where(Case.idempotency_key == "retry-1"))
    assert count == 2  # one per caller
    assert first.idempotency_scope == f"user:{desk.firm.user_id}"


def test_proxy_filing_needs_staff_and_a_visit_record(desk: Desk) -> None:
    enterprise_id = desk.firm.enterprise_id
    with pytest.raises(ValidationFailed) as err:
        desk.submit(actor=desk.desk_a, channel="proxy", enterprise_id=enterprise_id)
    assert [e.field for e in err.value.errors] == ["visit_record"]
    with pytest.raises(ValidationFailed) as err:
        desk.submit(actor=desk.firm, channel="proxy")
    assert "channel" in [e.field for e in err.value.errors]
    visit = VisitRecord(visited_on=dt.date(2026, 11, 20), visitor="张三", location="企业车间", note="企业反映融资难")
    case = desk.submit(actor=desk.desk_a, channel="proxy", enterprise_id=enterprise_id, visit_record=visit)
    assert case.channel == "proxy" and case.visit_record["visitor"] == "张三"
    assert case.submitted_by_id == desk.desk_a.user_id and case.enterprise_id == enterprise_id
    future = VisitRecord(visited_on=dt.date(2026, 12, 1), visitor="张三", location="企业车间")
    with pytest.raises(ValidationFailed) as err:
        desk.submit(actor=desk.desk_a, channel="proxy", enterprise_id=enterprise_id, visit_record=future)
    assert [e.field for e in err.value.errors] == ["visit_record.visited_on"]


def test_staff_can_dispatch_by_hand_and_firms_cannot(desk: Desk) -> None:
    visit = VisitRecord(visited_on=dt.date(2026, 11, 20), visitor="张三", location="企业车间")
    case = desk.submit(
        actor=desk.supervisor,
        channel="proxy",
        enterprise_id=desk.firm.enterprise_id,
        visit_record=visit,
        department_id=desk.dept_b.id,
    )
    assert case.department_id == desk.dept_b.id and case.routing_method == "manual"
    with pytest.raises(ValidationFailed) as err:
        desk.submit(department_id=desk.dept_b.id)
    assert [e.field for e in err.value.errors] == ["department_id"]


def test_attachments_are_checked_against_the_upload_limit_and_types(desk: Desk) -> None:
    sha = "ab" * 32
    ok = AttachmentIn(name="营业执照.pdf", size=1024, content_type="application/pdf", sha256=sha)
    case = desk.submit(attachments=[ok])
    assert case.attachments == [ok.model_dump()]
    too_big = AttachmentIn(
        name="视频.mp4", size=desk.settings.upload_max_mb * 1024 * 1024 + 1, content_type="video/mp4", sha256="cd" * 32
    )
    exe = AttachmentIn(name="a.exe", size=10, content_type="application/x-msdownload", sha256="ef" * 32)
    dup = AttachmentIn(name="副本.pdf", size=1024, content_type="application/pdf", sha256=sha)
    with pytest.raises(ValidationFailed) as err:
        desk.submit(attachments=[ok, too_big, exe, dup])
    assert [(e.field, e.code) for e in err.value.errors] == [
        ("attachments[1].size", "too_large"),
        ("attachments[2].content_type", "unsupported_type"),
        ("attachments[3].sha256", "duplicate"),
    ]
    with pytest.raises(ValueError):
        AttachmentIn(name="../etc/passwd", size=1, content_type="text/plain", sha256=sha)
    with pytest.raises(ValueError):
        AttachmentIn(name="a.pdf", size=1, content_type="application/pdf", sha256="xyz")


def test_api_key_submissions_use_their_own_scope(desk: Desk) -> None:
    _, plain = auth_service.create_api_key(
        db=desk.db, key_in=ApiKeyIn(name="12345热线对接", department_id=desk.dept_b.id), actor=desk.admin
    )
    key = auth_service.principal_for_api_key(db=desk.db, plain=plain)
    assert key is not None and key.via_api_key
    case = desk.submit(actor=key, channel="hotline", idempotency_key="12345-0001", external_ref="ZS2611230001")
    assert case.channel == "hotline" and case.api_key_id == key.id and case.submitted_by_id is None
    assert case.idempotency_scope == f"apikey:{key.id}"
    assert desk.submit(actor=key, channel="hotline", idempotency_key="12345-0001").id == case.id
    assert lifecycle.get_case(db=desk.db, case_id=case.id, actor=key).id == case.id
    other_key = Principal(id=key.id + 1, role=Role.desk, name="其他对接", via_api_key=True)
    with pytest.raises(NotFound):
        lifecycle.get_case(db=desk.db, case_id=case.id, actor=other_key)
    with pytest.raises(ValidationFailed):
        desk.submit(actor=key, channel="web")


def test_provisional_deadlines_are_flagged_with_a_warning_not_refused(desk: Desk) -> None:
    received = dt.datetime(2026, 12, 28, 10, 0, tzinfo=CST)  # five working days reach into 2027
    case = desk.submit(now=received)
    assert case.status == S.dispatched
    assert case.due_provisional
    assert case.due_warnings == ["2027年放假安排尚未导入，截止时间按周末和法定节假日推算，可能有误"]
    warning = next(e for e in case.events if e.kind == "note")
    assert not warning.visible_to_firm and warning.data["provisional"] is True


def test_loaded_year_arrangements_make_deadlines_official(db: Session, test_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "calendar"
    folder.mkdir()
    arrangement = {
        "year": 2027,
        "source": "国务院办公厅关于2027年部分节假日安排的通知",
        "holidays": [{"name": "元旦", "dates": ["2027-01-01", "2027-01-02", "2027-01-03"]}],
        "workdays": [],
    }
    (folder / "2027.json").write_text(json.dumps(arrangement, ensure_ascii=False), encoding="utf-8")
    settings = test_settings.model_copy(update={"var_dir": tmp_path})
    calendar = clock.site_calendar(settings)
    assert calendar.year_status(2027) == "loaded"
    dept = factories.make_department(db)
    policy = factories.make_policy(db, publish=True, department=dept)
    firm = _principal(db, Role.enterprise)
    case = intake.submit_case(
        db=db,
        matcher=None,
        settings=settings,
        actor=firm,
        now=dt.datetime(2026, 12, 28, 10, 0, tzinfo=CST),
        case_in=CaseIn(kind="complaint", content="申报系统无法登录，请协助处理。", related_policy_id=policy.id),
    )
    assert not case.due_provisional and case.due_warnings == []
    # 12-29, 12-30, 12-31, (1-1…1-3 off), 1-4, 1-5 → the fifth working day is 2027-01-05.
    assert case.close_due_at.astimezone(CST) == dt.datetime(2027, 1, 5, 18, 0, tzinfo=CST)


def test_site_profile_comes_from_settings(test_settings: Settings) -> None:
    assert clock.site_profile(test_settings).code == "zhongshan"
    custom = json.dumps({"preset": "jiangmen", "code": "jm-test", "name": "江门测试"})
    assert clock.site_profile(test_settings.model_copy(update={"desk_sla_profile": custom})).code == "jm-test"
    with pytest.raises(ValidationFailed) as err:
        clock.site_profile(test_settings.model_copy(update={"desk_sla_profile": "nowhere"}))
    assert err.value.errors[0].field == "desk_sla_profile"


# ---------------------------------------------------------------- the state machine: legal paths


def test_full_path_to_a_satisfied_close(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(0.2))
    assert case.status == S.accepted and case.accepted_at is not None
    desk.call(handling.contact, case, desk.desk_a, MONDAY + _h(0.5), note="已电话联系企业财务")
    assert case.contacted_at == MONDAY + _h(0.5)
    desk.call(handling.reply, case, desk.desk_a, MONDAY + _h(3), note="已转财务科核实拨付进度")
    assert case.status == S.in_progress and case.first_reply_at == MONDAY + _h(3)
    desk.call(handling.reply, case, desk.desk_a, MONDAY + _h(24), note="资金已进入拨付流程")
    desk.call(handling.resolve, case, desk.desk_a, MONDAY + _h(48), resolution="资金已于今日拨付到企业账户。")
    assert case.status == S.resolved and case.resolution == "资金已于今日拨付到企业账户。"
    desk.call(outcome.rate, case, desk.firm, MONDAY + _h(50), rating=Rating.satisfied, comment="很及时")
    assert case.status == S.rated and case.rating == "satisfied"
    desk.call(outcome.close, case, desk.desk_a, MONDAY + _h(51))
    assert case.status == S.closed and case.closed_at == MONDAY + _h(51)
    assert _events(case) == [
        "submitted",
        "dispatched",
        "accepted",
        "contacted",
        "replied",
        "replied",
        "resolved",
        "rated",
        "closed",
    ]
    moves = [(e.from_status, e.to_status) for e in case.events]
    assert moves[2:] == [
        ("dispatched", "accepted"),
        ("accepted", "accepted"),
        ("accepted", "in_progress"),
        ("in_progress", "in_progress"),
        ("in_progress", "resolved"),
        ("resolved", "rated"),
        ("rated", "closed"),
    ]
    assert [e.at for e in case.events] == sorted(e.at for e in case.events)
    assert case.events[-1].actor_name == desk.desk_a.name
    # A closed and rated case cannot be rated again.
    with pytest.raises(IllegalTransition):
        desk.call(outcome.rate, case, desk.firm, MONDAY + _h(52), rating=Rating.dissatisfied)


def test_dissatisfied_rating_reopens_under_supervision_until_satisfied(desk: Desk) -> None:
    settings = desk.settings
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(0.2))
    desk.call(handling.resolve, case, desk.desk_a, MONDAY + _h(5), resolution="已督促经办科室加快办理。")
    assert case.contacted_at is not None and case.first_reply_at is not None  # a final reply counts as both
    later = dt.datetime(2026, 11, 25, 10, 0, tzinfo=CST)
    desk.call(outcome.rate, case, desk.firm, later, rating=Rating.dissatisfied, comment="钱还是没到账")
    assert case.status == S.reopened and case.supervised and case.reopen_count == 1
    assert case.resolved_at is None and case.rating == "dissatisfied"
    # A new round: the close clock starts again from the reopening.
    assert case.sla_started_at == later
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 12, 2, 18, 0, tzinfo=CST)
    assert _events(case)[-3:] == ["rated", "reopened", "supervised"]
    assert not any(e.kind == "escalated" for e in case.events)

    desk.call(handling.reply, case, desk.desk_a, later + _h(2), note="已与财政局对接")
    desk.call(handling.resolve, case, desk.desk_a, later + _h(6), resolution="资金已到账。")
    # 回访: the supervisor calls the firm, which is still not satisfied → second reopening escalates.
    desk.call(outcome.revisit, case, desk.supervisor, later + _h(8), note="电话回访", rating=Rating.dissatisfied)
    assert case.status == S.reopened and case.reopen_count == 2
    escalated = [e for e in case.events if e.kind == "escalated"]
    assert len(escalated) == 1 and escalated[0].data["reason"] == "repeated_reopen"
    assert not escalated[0].visible_to_firm
    assert settings.desk_reopen_escalate_after == 2

    desk.call(handling.resolve, case, desk.desk_a, later + _h(24), resolution="已全额拨付并致歉。")
    desk.call(outcome.revisit, case, desk.supervisor, later + _h(26), note="再次回访")
    desk.call(outcome.rate, case, desk.firm, later + _h(27), rating=Rating.basically_satisfied)
    assert case.status == S.rated
    desk.call(outcome.close, case, desk.supervisor, later + _h(28))
    assert case.status == S.closed
    kinds = _events(case)
    assert kinds.count("reopened") == 2 and kinds.count("revisited") == 2 and kinds[-2:] == ["rated", "closed"]


def test_supervisor_may_close_an_unrated_resolved_case_with_a_reason(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(1))
    desk.call(handling.resolve, case, desk.desk_a, MONDAY + _h(2), resolution="已办结。")
    with pytest.raises(PermissionDenied):
        desk.call(outcome.close, case, desk.desk_a, MONDAY + _h(3), note="企业未评价")
    with pytest.raises(ValidationFailed):
        desk.call(outcome.close, case, desk.supervisor, MONDAY + _h(3))
    desk.call(outcome.close, case, desk.supervisor, MONDAY + _h(3), note="企业逾期未评价")
    assert case.status == S.closed and case.rating is None
    # A late rating is still taken; a dissatisfied one reopens the case.
    desk.call(outcome.rate, case, desk.firm, MONDAY + _h(30), rating=Rating.dissatisfied)
    assert case.status == S.reopened and case.reopen_count == 1


def test_supervisor_reopens_a_closed_case(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(1))
    desk.call(handling.resolve, case, desk.desk_a, MONDAY + _h(2), resolution="已办结。")
    desk.call(outcome.rate, case, desk.firm, MONDAY + _h(3), rating=Rating.satisfied)
    desk.call(outcome.close, case, desk.desk_a, MONDAY + _h(4))
    with pytest.raises(PermissionDenied):
        desk.call(outcome.reopen, case, desk.desk_a, MONDAY + _h(5), reason="复查")
    desk.call(outcome.reopen, case, desk.supervisor, MONDAY + _h(5), reason="抽查发现答复不实")
    assert case.status == S.reopened and case.supervised and case.closed_at is None


# ---------------------------------------------------------------- the state machine: illegal transitions


def _reach(desk: Desk, status: CaseStatus) -> Case:
    """Drive a new case to a status through legal transitions (submitted / answered are set directly)."""
    case = desk.submit()
    t = MONDAY
    step = _h(0.1)
    if status in (S.submitted, S.answered):
        case.status = status  # intake states are left at once; set them to check refusals from there
        return case
    if status == S.dispatched:
        return case
    desk.call(handling.accept, case, desk.desk_a, t + step)
    if status == S.accepted:
        return case
    desk.call(handling.reply, case, desk.desk_a, t + 2 * step, note="阶段性答复")
    if status == S.in_progress:
        return case
    desk.call(handling.resolve, case, desk.desk_a, t + 3 * step, resolution="办结答复")
    if status == S.resolved:
        return case
    if status == S.reopened:
        desk.call(outcome.rate, case, desk.firm, t + 4 * step, rating=Rating.dissatisfied)
        return case
    desk.call(outcome.rate, case, desk.firm, t + 4 * step, rating=Rating.satisfied)
    if status == S.rated:
        return case
    desk.call(outcome.close, case, desk.supervisor, t + 5 * step)
    assert case.status == S.closed
    return case


def _attempts(desk: Desk) -> dict[str, Any]:
    """Each action of the table as a call a permitted actor would make (supervisor or the firm)."""
    t = MONDAY + _h(1)
    sup, firm = desk.supervisor, desk.firm
    ext = ExtensionIn(amount=1, unit="working_days", reason="需补充调查")
    return {
        "accept_answer": lambda c: desk.call(outcome.accept_answer, c, firm, t),
        "ask_for_person": lambda c: desk.call(outcome.ask_for_person, c, firm, t),
        "assign": lambda c: desk.call(handling.assign, c, sup, t, department_id=desk.dept_b.id),
        "transfer": lambda c: desk.call(handling.transfer, c, sup, t, department_id=desk.dept_b.id),
        "accept": lambda c: desk.call(handling.accept, c, sup, t),
        "reply": lambda c: desk.call(handling.reply, c, sup, t, note="答复"),
        "resolve": lambda c: desk.call(handling.resolve, c, sup, t, resolution="办结"),
        "rate_ok": lambda c: desk.call(outcome.rate, c, firm, t, rating=Rating.satisfied),
        "rate_bad": lambda c: desk.call(outcome.rate, c, firm, t, rating=Rating.dissatisfied),
        "close": lambda c: desk.call(outcome.close, c, sup, t, note="归档"),
        "reopen": lambda c: desk.call(outcome.reopen, c, sup, t, reason="复查"),
        "revisit": lambda c: desk.call(outcome.revisit, c, sup, t, note="回访"),
        "contact": lambda c: desk.call(handling.contact, c, sup, t),
        "request_return": lambda c: desk.call(handling.request_return, c, sup, t, reason="不属于本部门职责"),
        "request_extension": lambda c: desk.call(handling.request_extension, c, sup, t, extension_in=ext),
        "add_joint": lambda c: desk.call(handling.add_joint, c, sup, t, department_id=desk.dept_b.id),
        "pause": lambda c: desk.call(handling.pause, c, sup, t, reason="等待企业补充材料"),
        "resume": lambda c: desk.call(handling.resume, c, sup, t),
        "correct_kind": lambda c: desk.call(handling.correct_kind, c, sup, t, kind="suggestion"),
        "promote": lambda c: faq.promote_to_faq(
            db=desk.db, settings=desk.settings, case_id=c.id, actor=sup, promote_in=PromoteIn(answer="答案"), now=t
        ),
    }


# Table entries reached only inside other actions (intake) or needing a pending request first.
NOT_DIRECTLY_CALLABLE = {"answer", "dispatch", "return", "reject_return", "decide_extension", "rate_answer_bad", "note"}


def test_every_action_of_the_table_is_tried(desk: Desk) -> None:
    assert set(TRANSITIONS) - NOT_DIRECTLY_CALLABLE == set(_attempts(desk))


@pytest.mark.parametrize("status", [s for s in CaseStatus], ids=str)
def test_actions_outside_their_states_are_refused(desk: Desk, status: CaseStatus) -> None:
    case = _reach(desk, status)
    attempts = _attempts(desk)
    refused = 0
    for action, attempt in attempts.items():
        if status in TRANSITIONS[action]:
            continue
        before_events = len(case.events)
        with pytest.raises(IllegalTransition) as err:
            attempt(case)
        assert err.value.code == "desk.illegal_transition", action
        assert err.value.status_code == 409
        if action not in ("rate_ok", "rate_bad") or status != S.closed:
            # The message names the current state and the one the action leads to.
            assert f"“{STATUS_LABELS[status]}”" in err.value.message, (action, err.value.message)
            target = next(iter(TRANSITIONS[action].values()))
            assert f"“{STATUS_LABELS[target]}”" in err.value.message, (action, err.value.message)
        assert case.status == status and len(case.events) == before_events, action
        refused += 1
    assert refused > 0


def test_legal_actions_in_each_state_are_admitted_by_the_table(desk: Desk) -> None:
    # Spot-check the table against the state machine.
    assert TRANSITIONS["answer"] == {S.submitted: S.answered}
    assert TRANSITIONS["accept_answer"] == {S.answered: S.closed}
    assert TRANSITIONS["ask_for_person"] == {S.answered: S.dispatched}
    assert set(TRANSITIONS["transfer"]) == {S.dispatched, S.accepted, S.in_progress}
    assert set(TRANSITIONS["transfer"].values()) == {S.dispatched}
    assert TRANSITIONS["rate_bad"][S.resolved] == S.reopened
    assert TRANSITIONS["rate_ok"][S.resolved] == S.rated
    assert TRANSITIONS["close"][S.rated] == S.closed
    assert S.closed not in TRANSITIONS["correct_kind"]


# ---------------------------------------------------------------- transfer, return, joint handling


def test_transfer_moves_the_case_and_its_visibility(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(1))
    with pytest.raises(NotFound):  # another department's officer does not even see the case
        desk.call(handling.transfer, case, desk.desk_b, MONDAY + _h(2), department_id=desk.dept_b.id)
    with pytest.raises(ValidationFailed):
        desk.call(handling.transfer, case, desk.desk_a, MONDAY + _h(2), department_id=desk.dept_a.id)
    desk.call(handling.transfer, case, desk.desk_a, MONDAY + _h(2), department_id=desk.dept_b.id, note="属市场监管职责")
    assert case.status == S.dispatched and case.department_id == desk.dept_b.id and case.routing_method == "manual"
    assert case.events[-1].kind == "transferred" and case.events[-1].data["to"] == desk.dept_b.code
    with pytest.raises(NotFound):
        lifecycle.get_case(db=desk.db, case_id=case.id, actor=desk.desk_a)
    assert lifecycle.get_case(db=desk.db, case_id=case.id, actor=desk.desk_b) is case
    desk.call(handling.accept, case, desk.desk_b, MONDAY + _h(3))
    assert case.status == S.accepted
    # The clocks run on from the original receipt.
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 11, 30, 18, 0, tzinfo=CST)


def test_return_request_is_decided_by_a_dispatcher(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(1))
    desk.call(handling.request_return, case, desk.desk_a, MONDAY + _h(2), reason="该事项属于税务部门职责")
    assert case.return_request["reason"] == "该事项属于税务部门职责"
    with pytest.raises(Conflict):
        desk.call(handling.request_return, case, desk.desk_a, MONDAY + _h(2), reason="再次申请")
    pending, total = queries.pending_approvals(db=desk.db, actor=desk.supervisor)
    assert case in pending and total >= 1
    with pytest.raises(PermissionDenied):
        desk.call(handling.decide_return, case, desk.desk_a, MONDAY + _h(3), approve=True)
    desk.call(
        handling.decide_return, case, desk.supervisor, MONDAY + _h(3), approve=False, note="属本部门职责，请继续办理"
    )
    assert case.status == S.accepted and case.department_id == desk.dept_a.id and case.return_request is None
    assert case.events[-1].kind == "return_rejected"
    with pytest.raises(InvalidState) as err:
        desk.call(handling.decide_return, case, desk.supervisor, MONDAY + _h(3), approve=True)
    assert err.value.code == "desk.no_return_request"

    desk.call(handling.request_return, case, desk.desk_a, MONDAY + _h(4), reason="经核实确属税务部门职责")
    desk.call(handling.decide_return, case, desk.supervisor, MONDAY + _h(5), approve=True)
    assert case.status == S.dispatched and case.department_id is None and case.departments == []
    assert case.events[-1].kind == "returned" and not case.events[-1].visible_to_firm
    with pytest.raises(NotFound):
        lifecycle.get_case(db=desk.db, case_id=case.id, actor=desk.desk_a)
    queue, _ = queries.list_cases(db=desk.db, actor=desk.supervisor, filters=queries.CaseFilters(in_queue=True))
    assert case in queue
    # From the central queue a dispatcher assigns it; only cases in the queue can be assigned.
    with pytest.raises(PermissionDenied):
        desk.call(handling.assign, case, desk.curator, MONDAY + _h(6), department_id=desk.dept_b.id)
    desk.call(handling.assign, case, desk.supervisor, MONDAY + _h(6), department_id=desk.dept_b.id)
    assert case.department_id == desk.dept_b.id and case.events[-1].kind == "assigned"
    assert case.events[-1].actor_id == desk.supervisor.user_id
    with pytest.raises(IllegalTransition):
        desk.call(handling.assign, case, desk.supervisor, MONDAY + _h(7), department_id=desk.dept_a.id)


def test_joint_handling_shows_the_case_to_the_assisting_department(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(1))
    with pytest.raises(NotFound):
        lifecycle.get_case(db=desk.db, case_id=case.id, actor=desk.desk_b)
    desk.call(handling.add_joint, case, desk.desk_a, MONDAY + _h(2), department_id=desk.dept_b.id)
    assert sorted((d.department_id, d.role) for d in case.departments) == sorted(
        [(desk.dept_a.id, "lead"), (desk.dept_b.id, "assist")]
    )
    with pytest.raises(Conflict):
        desk.call(handling.add_joint, case, desk.desk_a, MONDAY + _h(2), department_id=desk.dept_b.id)
    assert lifecycle.get_case(db=desk.db, case_id=case.id, actor=desk.desk_b) is case
    items, _ = queries.list_cases(db=desk.db, actor=desk.desk_b)
    assert case in items
    # The assisting department contributes notes but the lead department resolves.
    handling.add_note(
        db=desk.db,
        settings=desk.settings,
        case_id=case.id,
        actor=desk.desk_b,
        note="已提供审核意见",
        now=MONDAY + _h(3),
    )
    assert case.events[-1].kind == "note" and not case.events[-1].visible_to_firm
    with pytest.raises(PermissionDenied):
        desk.call(handling.resolve, case, desk.desk_b, MONDAY + _h(4), resolution="办结")
    desk.call(handling.resolve, case, desk.desk_a, MONDAY + _h(4), resolution="两部门联合办结")
    assert case.status == S.resolved


# ---------------------------------------------------------------- pauses and extensions


def test_pause_stops_the_clock_for_a_bounded_time(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(0.2))
    desk.call(handling.contact, case, desk.desk_a, MONDAY + _h(0.5))
    original_close = case.close_due_at
    desk.call(handling.pause, case, desk.desk_a, MONDAY + _h(1), reason="等待企业补充银行流水")
    assert case.paused and case.events[-1].kind == "paused" and case.events[-1].visible_to_firm
    # An open pause counts as its whole allowance (5 working days): the latest the case can be due.
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 12, 7, 18, 0, tzinfo=CST)
    with pytest.raises(InvalidState) as err:
        desk.call(handling.pause, case, desk.desk_a, MONDAY + _h(2), reason="再次挂起")
    assert err.value.code == "desk.already_paused"
    # The firm answers at 14:30 the same day.
    desk.call(handling.resume, case, desk.desk_a, dt.datetime(2026, 11, 23, 14, 30, tzinfo=CST))
    assert not case.paused and case.pauses[0].end is not None
    # Two working hours paused (11:00–12:00, 13:30–14:30): due Monday 18:00 → Tuesday 11:00.
    assert original_close.astimezone(CST) == dt.datetime(2026, 11, 30, 18, 0, tzinfo=CST)
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 12, 1, 11, 0, tzinfo=CST)
    with pytest.raises(InvalidState) as err:
        desk.call(handling.resume, case, desk.desk_a, MONDAY + _h(6))
    assert err.value.code == "desk.not_paused"


def test_pause_allowance_once_used_refuses_further_pauses(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(0.2))
    desk.call(handling.pause, case, desk.desk_a, MONDAY + _h(1), reason="等待企业补充材料")
    desk.call(handling.resume, case, desk.desk_a, MONDAY + dt.timedelta(days=10), note="企业补齐材料")
    with pytest.raises(InvalidState) as err:
        desk.call(handling.pause, case, desk.desk_a, MONDAY + dt.timedelta(days=10, hours=1), reason="又缺材料")
    assert err.value.code == "desk.pause_allowance_used"
    # The ten-day pause counted only its five working days.
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 12, 7, 18, 0, tzinfo=CST)


def test_transfer_or_resolution_ends_an_open_pause(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(0.2))
    desk.call(handling.pause, case, desk.desk_a, MONDAY + _h(1), reason="等待企业补充材料")
    desk.call(handling.transfer, case, desk.desk_a, MONDAY + _h(2), department_id=desk.dept_b.id)
    assert not case.paused and case.pauses[0].end == MONDAY + _h(2)
    assert [e.kind for e in case.events][-2:] == ["resumed", "transferred"]
    # One working hour paused (11:00–12:00): Monday 30 Nov 18:00 → Tuesday 1 Dec 10:00.
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 12, 1, 10, 0, tzinfo=CST)
    desk.call(handling.accept, case, desk.desk_b, MONDAY + _h(3))
    desk.call(handling.pause, case, desk.desk_b, MONDAY + _h(4), reason="再次等待企业")
    desk.call(handling.resolve, case, desk.desk_b, MONDAY + _h(5), resolution="企业补齐材料后办结。")
    assert case.status == S.resolved and not case.paused and all(p.end for p in case.pauses)


def test_extension_is_requested_before_the_deadline_and_approved_by_a_supervisor(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(0.2))
    ext = ExtensionIn(amount=2, unit="working_days", reason="需要省厅核实数据")
    with pytest.raises(NotFound):
        desk.call(handling.request_extension, case, desk.desk_b, MONDAY + _h(1), extension_in=ext)
    desk.call(handling.request_extension, case, desk.desk_a, MONDAY + _h(1), extension_in=ext)
    assert case.extension_request["amount"] == 2 and case.extension_requested_at == MONDAY + _h(1)
    with pytest.raises(Conflict):
        desk.call(handling.request_extension, case, desk.desk_a, MONDAY + _h(1), extension_in=ext)
    with pytest.raises(PermissionDenied):
        desk.call(handling.decide_extension, case, desk.desk_a, MONDAY + _h(2), approve=True)
    desk.call(handling.decide_extension, case, desk.supervisor, MONDAY + _h(2), approve=True)
    # Monday 30 Nov 18:00 + 2 working days → Wednesday 2 Dec 18:00.
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 12, 2, 18, 0, tzinfo=CST)
    assert case.extension_request is None and len(case.extensions) == 1
    approved = case.events[-1]
    assert approved.kind == "extension_approved" and approved.visible_to_firm
    # Due times recomputed later (e.g. after a pause) keep the approved extension.
    desk.call(handling.pause, case, desk.desk_a, MONDAY + _h(3), reason="等待企业")
    desk.call(handling.resume, case, desk.desk_a, MONDAY + _h(3))
    assert case.close_due_at.astimezone(CST) == dt.datetime(2026, 12, 2, 18, 0, tzinfo=CST)
    # A second request is rejected; after the deadline none can be made.
    desk.call(handling.request_extension, case, desk.desk_a, MONDAY + _h(4), extension_in=ext)
    desk.call(handling.decide_extension, case, desk.supervisor, MONDAY + _h(5), approve=False, note="理由不充分")
    assert case.events[-1].kind == "extension_rejected" and len(case.extensions) == 1
    too_late = dt.datetime(2026, 12, 3, 9, 0, tzinfo=CST)
    with pytest.raises(InvalidState) as err:
        desk.call(handling.request_extension, case, desk.desk_a, too_late, extension_in=ext)
    assert err.value.code == "desk.extension_too_late"


def test_extension_cannot_be_approved_after_the_deadline(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(0.2))
    ext = ExtensionIn(amount=1, unit="working_days", reason="等待外部数据")
    desk.call(handling.request_extension, case, desk.desk_a, MONDAY + _h(1), extension_in=ext)
    with pytest.raises(InvalidState) as err:
        desk.call(
            handling.decide_extension, case, desk.supervisor, dt.datetime(2026, 12, 1, 9, 0, tzinfo=CST), approve=True
        )
    assert err.value.code == "desk.extension_too_late"
    assert case.extensions == [] and case.extension_request is not None


# ---------------------------------------------------------------- lists, queues, SLA colours


def test_role_scoping_of_lists_and_timelines(desk: Desk) -> None:
    mine = desk.submit()
    theirs = desk.submit(actor=desk.other_firm)
    elsewhere = desk.submit(related_policy_id=None, department_id=None, kind="suggestion")
    desk.call(handling.accept, mine, desk.desk_a, MONDAY + _h(1))
    desk.call(handling.request_return, mine, desk.desk_a, MONDAY + _h(2), reason="不属本部门")

    firm_items, firm_total = queries.list_cases(db=desk.db, actor=desk.firm)
    assert {c.id for c in firm_items} == {mine.id, elsewhere.id} and firm_total == 2
    other_items, _ = queries.list_cases(db=desk.db, actor=desk.other_firm)
    assert {c.id for c in other_items} == {theirs.id}
    with pytest.raises(NotFound):
        lifecycle.get_case(db=desk.db, case_id=theirs.id, actor=desk.firm)

    desk_items, _ = queries.list_cases(db=desk.db, actor=desk.desk_a)
    assert {mine.id, theirs.id} <= {c.id for c in desk_items}
    assert all(c.department_id == desk.dept_a.id for c in desk_items)
    desk_b_items, _ = queries.list_cases(db=desk.db, actor=desk.desk_b)
    assert mine.id not in {c.id for c in desk_b_items}
    with pytest.raises(NotFound):
        lifecycle.get_case(db=desk.db, case_id=mine.id, actor=desk.desk_b)

    sup_items, _ = queries.list_cases(db=desk.db, actor=desk.supervisor, limit=1000)
    assert {mine.id, theirs.id, elsewhere.id} <= {c.id for c in sup_items}

    firm_view = [e.kind for e in queries.timeline(mine, desk.firm)]
    staff_view = [e.kind for e in queries.timeline(mine, desk.desk_a)]
    assert "return_requested" in staff_view and "return_requested" not in firm_view
    assert firm_view == ["submitted", "dispatched", "accepted"]


def test_list_filters(desk: Desk) -> None:
    a = desk.submit(kind="complaint")
    b = desk.submit(kind="help")
    desk.call(handling.accept, b, desk.desk_a, MONDAY + _h(1))
    F = queries.CaseFilters
    by_kind, _ = queries.list_cases(db=desk.db, actor=desk.firm, filters=F(kind="help"))
    assert [c.id for c in by_kind] == [b.id]
    by_status, _ = queries.list_cases(db=desk.db, actor=desk.firm, filters=F(status=["dispatched"]))
    assert [c.id for c in by_status] == [a.id]
    by_number, _ = queries.list_cases(db=desk.db, actor=desk.firm, filters=F(q=b.number))
    assert [c.id for c in by_number] == [b.id]
    by_dept, _ = queries.list_cases(db=desk.db, actor=desk.supervisor, filters=F(department_id=desk.dept_a.id))
    assert {a.id, b.id} <= {c.id for c in by_dept}


def test_queue_is_ordered_by_running_deadline_with_sla_colours(desk: Desk) -> None:
    early = desk.submit(now=MONDAY)
    late = desk.submit(now=MONDAY + _h(2))
    contacted = desk.submit(now=MONDAY - _h(1))
    desk.call(handling.accept, contacted, desk.desk_a, MONDAY - _h(0.5))
    desk.call(handling.contact, contacted, desk.desk_a, MONDAY - _h(0.4))
    items, _ = queries.queue(db=desk.db, actor=desk.desk_a)
    ids = [c.id for c in items]
    # early's contact is due 11:00, late's 14:30 (after the lunch break); contacted runs on its reply (Thursday).
    assert ids.index(early.id) < ids.index(late.id) < ids.index(contacted.id)
    view = clock.sla_view(early, settings=desk.settings, now=MONDAY + dt.timedelta(minutes=50))
    assert (view.stage, view.state, view.colour) == ("contact", "due_soon", "green")
    assert clock.sla_view(early, settings=desk.settings, now=MONDAY).state == "on_track"
    # Not contacted: yellow once late, orange after 3 working days past due, red after 5.
    states = {
        d: clock.sla_view(early, settings=desk.settings, now=dt.datetime(2026, 11, d, 11, 30, tzinfo=CST)).colour
        for d in (23, 26, 30)
    }
    assert states == {23: "yellow", 26: "orange", 30: "red"}
    overdue, _ = queries.list_cases(
        db=desk.db,
        actor=desk.supervisor,
        filters=queries.CaseFilters(overdue=True),
        now=dt.datetime(2026, 11, 23, 12, 0, tzinfo=CST),
        limit=1000,
    )
    overdue_ids = {c.id for c in overdue}
    assert early.id in overdue_ids and contacted.id not in overdue_ids


def test_escalations_view_lists_reopened_cases(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(1))
    desk.call(handling.resolve, case, desk.desk_a, MONDAY + _h(2), resolution="已办结")
    items, _ = queries.escalations(db=desk.db, actor=desk.supervisor, settings=desk.settings, limit=1000)
    assert case not in items
    desk.call(outcome.rate, case, desk.firm, MONDAY + _h(3), rating=Rating.dissatisfied)
    items, _ = queries.escalations(db=desk.db, actor=desk.supervisor, settings=desk.settings, limit=1000)
    assert case in items


# ---------------------------------------------------------------- FAQ


def test_resolved_answer_is_promoted_to_the_faq_once(desk: Desk) -> None:
    case = desk.submit(kind="consultation", title="研发费用补助怎么申请", content="研发费用补助在哪里申请？")
    with pytest.raises(IllegalTransition):
        faq.promote_to_faq(db=desk.db, settings=desk.settings, case_id=case.id, actor=desk.curator, now=MONDAY)
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(1))
    desk.call(handling.resolve, case, desk.desk_a, MONDAY + _h(2), resolution="登录市科技业务管理系统在线申报。")
    with pytest.raises(NotFound):
        faq.promote_to_faq(db=desk.db, settings=desk.settings, case_id=case.id, actor=desk.desk_b, now=MONDAY)
    entry = faq.promote_to_faq(
        db=desk.db,
        settings=desk.settings,
        case_id=case.id,
        actor=desk.curator,
        promote_in=PromoteIn(keywords=["研发费用"]),
        now=MONDAY + _h(3),
    )
    assert (entry.source, entry.case_id, entry.code) == ("promoted", case.id, f"faq-case-{case.id}")
    assert entry.question == "研发费用补助怎么申请" and entry.answer == "登录市科技业务管理系统在线申报。"
    assert entry.department_id == desk.dept_a.id and entry.active
    with pytest.raises(Conflict):
        faq.promote_to_faq(
            db=desk.db, settings=desk.settings, case_id=case.id, actor=desk.supervisor, now=MONDAY + _h(4)
        )
    found, _ = faq.list_faq(db=desk.db, actor=None, source="promoted", q="研发费用补助")
    assert entry in found


def test_faq_curation_respects_departments(desk: Desk) -> None:
    from desk.schemas import FaqIn, FaqUpdate

    entry = faq.create_faq(
        db=desk.db, actor=desk.desk_a, faq_in=FaqIn(code="faq-t-1", question="问题一？", answer="答案一。")
    )
    assert entry.department_id == desk.dept_a.id and entry.source == "curated"
    with pytest.raises(PermissionDenied):
        faq.update_faq(db=desk.db, actor=desk.desk_b, faq_id=entry.id, faq_in=FaqUpdate(answer="改了"))
    with pytest.raises(Conflict):
        faq.create_faq(db=desk.db, actor=desk.curator, faq_in=FaqIn(code="faq-t-1", question="重复？", answer="重复。"))
    faq.update_faq(db=desk.db, actor=desk.curator, faq_id=entry.id, faq_in=FaqUpdate(active=False))
    with pytest.raises(NotFound):
        faq.get_faq(db=desk.db, faq_id=entry.id, actor=desk.firm)
    assert faq.get_faq(db=desk.db, faq_id=entry.id, actor=desk.desk_a) is entry
    faq.delete_faq(db=desk.db, actor=desk.desk_a, faq_id=entry.id)
    assert desk.db.get(FaqEntry, entry.id) is None


def test_demo_faq_loads_once(db: Session) -> None:
    from desk import demo

    added = demo.load_faq(db=db)
    assert added == 76
    assert demo.load_faq(db=db) == 0
    assert db.scalar(select(func.count()).select_from(FaqEntry).where(FaqEntry.source == "curated")) >= 76


def test_events_are_append_only_records_of_every_change(desk: Desk) -> None:
    case = desk.submit()
    desk.call(handling.accept, case, desk.desk_a, MONDAY + _h(1))
    desk.call(handling.add_joint, case, desk.desk_a, MONDAY + _h(2), department_id=desk.dept_b.id)
    stored = desk.db.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)).all()
    assert [e.kind for e in stored] == ["submitted", "dispatched", "accepted", "joint_added"]
    assert all(e.at is not None and e.actor_role for e in stored)


def test_demo_cases_reach_every_state_once(db: Session, test_settings: Settings) -> None:
    from catalog import demo as catalog_demo
    from desk import demo

    catalog_demo.load_taxonomy(db=db)
    for _ in range(3):
        factories.make_enterprise(db)
    now = dt.datetime(2026, 11, 23, 15, 0, tzinfo=CST)
    assert demo.load_demo_cases(db=db, settings=test_settings, now=now) == len(demo.DEMO_CASES) == 30
    assert demo.load_demo_cases(db=db, settings=test_settings, now=now) == 0
    cases = db.scalars(select(Case).where(Case.idempotency_key.like(f"{demo.DEMO_KEY_PREFIX}%"))).all()
    statuses = {c.status for c in cases}
    assert statuses == {"dispatched", "accepted", "in_progress", "resolved", "rated", "closed", "reopened"}
    assert any(c.department_id is None for c in cases)  # the central queue
    assert {c.sla_state for c in cases} >= {"on_track", "yellow", "orange", "red"}
    assert any(c.paused for c in cases) and any(c.extension_request for c in cases)
    assert any(c.return_request for c in cases) and any(len(c.departments) == 2 for c in cases)
    assert max(c.reopen_count for c in cases) == 2
    assert {c.channel for c in cases} == {"web", "hotline", "proxy"}
