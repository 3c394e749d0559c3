"""The desk's SLA clock: time-limit profiles per site and kind, pauses, extensions, 黄橙红 escalation.

A profile gives, for each kind of enquiry, targets per stage (contact the firm, reply, close). A target
is an amount in one unit:

- ``working_hours`` / ``working_days`` count working time on the site's :class:`core.workcal.WorkCalendar`;
  a whole number of working days ends at the close of the n-th working day after the day of receipt,
  a fractional number is converted to working time (amount × the length of a working day);
- ``minutes`` / ``hours`` / ``calendar_days`` are plain clock time (Jiangmen's 60 minutes / 24 hours /
  7 days): ``received_at + timedelta``, weekends and holidays included.

Pauses (waiting on the firm, 挂起) stop every clock. They are bounded: all pauses of a case together
count at most ``max_pause_working_days`` of working time; the rest of a longer pause runs the clock as
usual. A pause still open counts as if it lasted its whole allowance, so the due time shown is the
latest it can become; close the pause and recompute when the firm answers.

Escalation (徐州黄橙红三色预警) is measured in working days past due, whatever the target's unit:
yellow as soon as overdue (``yellow_after_working_days=0``), orange at 3, red at 5 — all configurable.
``due_soon`` (shown green, labelled 即将到期) is when less than ``due_soon_fraction`` of the allowed time
remains, or less than ``due_soon_hours`` for targets longer than that many hours.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from core.errors import FieldError, ValidationFailed
from core.workcal import Deadline, WorkCalendar

log = logging.getLogger(__name__)

Kind = Literal["consultation", "help", "complaint", "report", "suggestion"]
Stage = Literal["contact", "reply", "close"]
Unit = Literal["minutes", "hours", "working_hours", "working_days", "calendar_days"]
State = Literal["on_track", "due_soon", "yellow", "orange", "red"]
Colour = Literal["green", "yellow", "orange", "red"]
Clock = Literal["working", "calendar"]

KINDS: tuple[Kind, ...] = get_args(Kind)
STAGES: tuple[Stage, ...] = get_args(Stage)
UNITS: tuple[Unit, ...] = get_args(Unit)

# Keyed by plain str: labels are also looked up with stored values (a timeline's old kind).
KIND_LABELS: dict[str, str] = {
    "consultation": "咨询",
    "help": "求助",
    "complaint": "投诉",
    "report": "举报",
    "suggestion": "建议",
}
STAGE_LABELS: dict[str, str] = {"contact": "联系企业", "reply": "答复", "close": "办结"}
UNIT_LABELS: dict[Unit, str] = {
    "minutes": "分钟",
    "hours": "小时",
    "working_hours": "个工作小时",
    "working_days": "个工作日",
    "calendar_days": "天（自然日）",
}
STATE_LABELS: dict[str, str] = {
    "on_track": "正常",
    "due_soon": "即将到期",
    "yellow": "黄色预警",
    "orange": "橙色预警",
    "red": "红色预警",
}
# The three warning colours are for overdue orders only; due_soon stays green and is told apart by its label.
STATE_COLOURS: dict[State, Colour] = {
    "on_track": "green",
    "due_soon": "green",
    "yellow": "yellow",
    "orange": "orange",
    "red": "red",
}

_CALENDAR_UNITS = {"minutes": "minutes", "hours": "hours", "calendar_days": "days"}


@dataclass(frozen=True)
class SlaTarget:
    """One time limit: a stage of handling to reach within an amount of time."""

    stage: Stage
    amount: float
    unit: Unit

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"环节取值不在允许范围内（可选：{'、'.join(STAGES)}）")
        if self.unit not in UNITS:
            raise ValueError(f"单位取值不在允许范围内（可选：{'、'.join(UNITS)}）")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int | float) or not self.amount > 0:
            raise ValueError("时限应为大于 0 的数字")

    @property
    def clock(self) -> Clock:
        """Return whether the target counts working time or plain clock time."""
        return "working" if self.unit.startswith("working_") else "calendar"

    @property
    def label(self) -> str:
        """Return the target in words, e.g. 3个工作日内办结."""
        amount = int(self.amount) if float(self.amount).is_integer() else self.amount
        return f"{amount}{UNIT_LABELS[self.unit]}内{STAGE_LABELS[self.stage]}"


@dataclass(frozen=True)
class EscalationRule:
    """When an order is due soon, and how many working days past due it turns yellow, orange, red."""

    yellow_after_working_days: float = 0
    orange_after_working_days: float = 3
    red_after_working_days: float = 5
    due_soon_fraction: float = 0.2
    due_soon_hours: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.yellow_after_working_days <= self.orange_after_working_days <= self.red_after_working_days:
            raise ValueError("预警阈值应满足 0 ≤ 黄 ≤ 橙 ≤ 红")
        if not 0 <= self.due_soon_fraction < 1:
            raise ValueError("即将到期比例应在 0 到 1 之间")
        if self.due_soon_hours < 0:
            raise ValueError("即将到期小时数不能为负")


@dataclass(frozen=True)
class SlaProfile:
    """A site's time limits: targets per kind of enquiry, escalation thresholds and the pause allowance."""

    code: str
    name: str
    targets_by_kind: Mapping[Kind, tuple[SlaTarget, ...]]
    escalation: EscalationRule = field(default_factory=EscalationRule)
    max_pause_working_days: float = 5

    def __post_init__(self) -> None:
        missing = [KIND_LABELS.get(k, k) for k in KINDS if not self.targets_by_kind.get(k)]
        if missing:
            raise ValueError(f"以下诉求类型未配置时限：{'、'.join(missing)}")
        unknown = sorted(set(self.targets_by_kind) - set(KINDS))
        if unknown:
            raise ValueError(f"未知的诉求类型：{'、'.join(unknown)}")
        for kind, targets in self.targets_by_kind.items():
            stages = [t.stage for t in targets]
            if len(stages) != len(set(stages)):
                raise ValueError(f"{KIND_LABELS[kind]}类诉求的同一环节配置了多个时限")
        if self.max_pause_working_days < 0:
            raise ValueError("挂起时限不能为负")

    def targets(self, kind: Kind) -> tuple[SlaTarget, ...]:
        """Return the targets for a kind of enquiry."""
        try:
            return tuple(self.targets_by_kind[kind])
        except KeyError:
            raise ValidationFailed(
                errors=[FieldError("kind", f"取值不在允许范围内（可选：{'、'.join(KINDS)}）", "enum")]
            ) from None


def _same_for_all(*targets: SlaTarget) -> dict[Kind, tuple[SlaTarget, ...]]:
    return {k: tuple(targets) for k in KINDS}


# 中山企业诉求"马上办": 1小时内联系企业、3个工作日内阶段性答复、5个工作日内办结. The contact hour is counted
# in working time, like the other two: an enquiry filed at night is contacted in the first working hour.
ZHONGSHAN = SlaProfile(
    code="zhongshan",
    name="中山：1小时联系、3个工作日答复、5个工作日办结",
    targets_by_kind=_same_for_all(
        SlaTarget("contact", 1, "working_hours"),
        SlaTarget("reply", 3, "working_days"),
        SlaTarget("close", 5, "working_days"),
    ),
)

# 徐州"135": 政策咨询1个工作日内答复，求助、建议3个工作日内办结，其他（投诉、举报）5个工作日内办结.
XUZHOU_135 = SlaProfile(
    code="xuzhou_135",
    name="徐州“135”：咨询1个、求助和建议3个、其他5个工作日",
    targets_by_kind={
        "consultation": (SlaTarget("close", 1, "working_days"),),
        "help": (SlaTarget("close", 3, "working_days"),),
        "suggestion": (SlaTarget("close", 3, "working_days"),),
        "complaint": (SlaTarget("close", 5, "working_days"),),
        "report": (SlaTarget("close", 5, "working_days"),),
    },
)

# 江门: 60分钟内联系企业、24小时内提出解决方案、7天内办结 — plain clock time.
JIANGMEN = SlaProfile(
    code="jiangmen",
    name="江门：60分钟联系、24小时答复、7天办结（自然时间）",
    targets_by_kind=_same_for_all(
        SlaTarget("contact", 60, "minutes"),
        SlaTarget("reply", 24, "hours"),
        SlaTarget("close", 7, "calendar_days"),
    ),
)

PRESETS: dict[str, SlaProfile] = {p.code: p for p in (ZHONGSHAN, XUZHOU_135, JIANGMEN)}


@dataclass(frozen=True)
class Pause:
    """A time the clock stands still while waiting on the firm; end is None while it lasts."""

    start: dt.datetime
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if value is not None and value.utcoffset() is None:
                raise ValueError("pause times must be timezone-aware")
        if self.end is not None and self.end < self.start:
            raise ValueError("挂起结束时间早于开始时间")


def effective_pauses(
    pauses: Sequence[Pause], *, calendar: WorkCalendar, max_working_days: float
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Return the pause intervals that stop the clock, all together capped at max_working_days of working time."""
    spans: list[tuple[dt.datetime, dt.datetime | None]] = []
    for p in sorted(pauses, key=lambda p: p.start):
        if spans and (spans[-1][1] is None or p.start <= spans[-1][1]):
            last_start, last_end = spans[-1]
            end = None if last_end is None or p.end is None else max(last_end, p.end)
            spans[-1] = (last_start, end)
        else:
            spans.append((p.start, p.end))
    budget = calendar.day_length * max_working_days
    out = []
    for start, end in spans:
        used = calendar.working_time_between(start, end) if end is not None else None
        if end is not None and used is not None and used <= budget:
            out.append((start, end))
            budget -= used
            continue
        capped = calendar.add_working_time(start, budget).due_at
        if end is not None:
            log.info("pause from %s to %s capped at %s", start.isoformat(), end.isoformat(), capped.isoformat())
        if capped > start:
            out.append((start, capped))
        budget = dt.timedelta(0)
    return out


def deadline_for(
    target: SlaTarget,
    *,
    start: dt.datetime,
    calendar: WorkCalendar,
    pauses: Sequence[tuple[dt.datetime, dt.datetime]] = (),
) -> Deadline:
    """Return when a target falls due counted from start, skipping the given (already bounded) pauses."""
    if target.unit in _CALENDAR_UNITS:
        duration = dt.timedelta(**{_CALENDAR_UNITS[target.unit]: target.amount})
        return calendar.add_calendar_time(start, duration, pauses=pauses)
    if target.unit == "working_hours":
        return calendar.add_working_time(start, dt.timedelta(hours=target.amount), pauses=pauses)
    if float(target.amount).is_integer():
        return calendar.add_working_days(start, int(target.amount), pauses=pauses)
    return calendar.add_working_time(start, calendar.day_length * target.amount, pauses=pauses)


def due_times(
    *,
    profile: SlaProfile,
    kind: Kind,
    received_at: dt.datetime,
    calendar: WorkCalendar,
    pauses: Sequence[Pause] = (),
) -> dict[Stage, Deadline]:
    """Return the due time of every stage the profile sets for this kind, counted from receipt."""
    bounded = effective_pauses(pauses, calendar=calendar, max_working_days=profile.max_pause_working_days)
    return {
        t.stage: deadline_for(t, start=received_at, calendar=calendar, pauses=bounded) for t in profile.targets(kind)
    }


def extend(
    deadline: Deadline,
    *,
    by: SlaTarget,
    calendar: WorkCalendar,
    pauses: Sequence[tuple[dt.datetime, dt.datetime]] = (),
) -> Deadline:
    """Return the new due time after an approved extension (延期), counted on from the old one."""
    new = deadline_for(by, start=deadline.due_at, calendar=calendar, pauses=pauses)
    warnings = list(dict.fromkeys([*deadline.warnings, *new.warnings]))
    return Deadline(due_at=new.due_at, provisional=deadline.provisional or new.provisional, warnings=warnings)


def sla_state(
    *,
    due_at: dt.datetime,
    now: dt.datetime,
    calendar: WorkCalendar,
    rule: EscalationRule,
    received_at: dt.datetime | None = None,
    clock: Clock = "working",
) -> State:
    """Return the order's state: on track, due soon, or its warning colour by working days past due."""
    if now <= due_at:
        if clock == "working":
            remaining = calendar.working_time_between(now, due_at)
            allowed = calendar.working_time_between(received_at, due_at) if received_at else None
        else:
            remaining = due_at - now
            allowed = due_at - received_at if received_at else None
        soon = dt.timedelta(hours=rule.due_soon_hours)
        # The hours threshold only makes sense for targets longer than it (not for a 60-minute contact).
        if remaining < soon and (allowed is None or allowed > soon):
            return "due_soon"
        if allowed is not None and allowed > dt.timedelta(0) and remaining < allowed * rule.due_soon_fraction:
            return "due_soon"
        return "on_track"
    past = calendar.working_days_between(due_at, now)
    if past >= rule.red_after_working_days:
        return "red"
    if past >= rule.orange_after_working_days:
        return "orange"
    if past >= rule.yellow_after_working_days:
        return "yellow"
    return "due_soon"  # overdue but inside a configured grace period before yellow


def colour(state: State) -> Colour:
    """Return the UI colour of a state: green, yellow, orange or red."""
    return STATE_COLOURS[state]


# ---------------------------------------------------------------------------------------------
# Site configuration

_PROFILE_KEYS = {"preset", "code", "name", "targets_by_kind", "escalation", "max_pause_working_days"}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _targets_from(raw: Any, where: str, errors: list[FieldError]) -> tuple[SlaTarget, ...]:
    if not isinstance(raw, list) or not raw:
        errors.append(FieldError(where, '应为非空列表：[{"stage": ..., "amount": ..., "unit": ...}]', "list_type"))
        return ()
    out = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            errors.append(FieldError(at, "应为对象", "dict_type"))
            continue
        bad = False
        for key in sorted(set(item) - {"stage", "amount", "unit"}):
            errors.append(FieldError(f"{at}.{key}", "不允许的字段", "extra_forbidden"))
            bad = True
        if item.get("stage") not in STAGES:
            errors.append(FieldError(f"{at}.stage", f"取值不在允许范围内（可选：{'、'.join(STAGES)}）", "enum"))
            bad = True
        if item.get("unit") not in UNITS:
            errors.append(FieldError(f"{at}.unit", f"取值不在允许范围内（可选：{'、'.join(UNITS)}）", "enum"))
            bad = True
        if not _number(item.get("amount")) or not item["amount"] > 0:
            errors.append(FieldError(f"{at}.amount", "应为大于 0 的数字", "greater_than"))
            bad = True
        if not bad:
            out.append(SlaTarget(item["stage"], item["amount"], item["unit"]))
    return tuple(out)


def profile_from_dict(data: Mapping[str, Any]) -> SlaProfile:
    """Build a site's profile from settings JSON, optionally starting from a preset ("preset": "zhongshan")."""
    errors: list[FieldError] = []
    if not isinstance(data, Mapping):
        raise ValidationFailed("时限配置应为 JSON 对象", errors=[FieldError("body", "应为对象", "dict_type")])
    for key in sorted(set(data) - _PROFILE_KEYS):
        errors.append(FieldError(key, "不允许的字段", "extra_forbidden"))

    base: SlaProfile | None = None
    if "preset" in data:
        base = PRESETS.get(data["preset"])
        if base is None:
            errors.append(FieldError("preset", f"取值不在允许范围内（可选：{'、'.join(PRESETS)}）", "enum"))
    code = data.get("code", base.code if base else None)
    name = data.get("name", base.name if base else None)
    if not isinstance(code, str) or not code.strip():
        errors.append(FieldError("code", "必填项未填写", "missing"))
    if not isinstance(name, str) or not name.strip():
        errors.append(FieldError("name", "必填项未填写", "missing"))

    targets: dict[Kind, tuple[SlaTarget, ...]] = dict(base.targets_by_kind) if base else {}
    raw = data.get("targets_by_kind")
    if raw is not None and not isinstance(raw, Mapping):
        errors.append(FieldError("targets_by_kind", "应为对象：{诉求类型: [时限, ...]}", "dict_type"))
    elif raw is not None:
        for key in raw:
            if key != "*" and key not in KINDS:
                errors.append(
                    FieldError(f"targets_by_kind.{key}", f"未知的诉求类型（可选：{'、'.join(KINDS)} 或 *）", "enum")
                )
        if "*" in raw:
            every = _targets_from(raw["*"], "targets_by_kind.*", errors)
            targets.update({k: every for k in KINDS if k not in raw})
        for kind in KINDS:
            if kind in raw:
                targets[kind] = _targets_from(raw[kind], f"targets_by_kind.{kind}", errors)
    for kind in KINDS:
        if kind not in targets:
            errors.append(FieldError(f"targets_by_kind.{kind}", f"{KIND_LABELS[kind]}类诉求未配置时限", "missing"))
        elif len({t.stage for t in targets[kind]}) != len(targets[kind]):
            errors.append(FieldError(f"targets_by_kind.{kind}", "同一环节配置了多个时限", "duplicate"))

    escalation = base.escalation if base else EscalationRule()
    raw_esc = data.get("escalation", {})
    if not isinstance(raw_esc, Mapping):
        errors.append(FieldError("escalation", "应为对象", "dict_type"))
    else:
        names = {f.name for f in dataclasses.fields(EscalationRule)}
        for key, value in raw_esc.items():
            if key not in names:
                errors.append(FieldError(f"escalation.{key}", "不允许的字段", "extra_forbidden"))
            elif not _number(value):
                errors.append(FieldError(f"escalation.{key}", "应为数字", "float_type"))
        if not any(e.field.startswith("escalation") for e in errors):
            try:
                escalation = dataclasses.replace(escalation, **raw_esc)
            except ValueError as exc:
                errors.append(FieldError("escalation", str(exc), "value_error"))

    max_pause = data.get("max_pause_working_days", base.max_pause_working_days if base else 5)
    if not _number(max_pause) or max_pause < 0:
        errors.append(FieldError("max_pause_working_days", "应为不小于 0 的数字", "greater_than_equal"))

    if errors:
        raise ValidationFailed("诉求时限配置有误", errors=errors)
    return SlaProfile(
        code=code.strip(),
        name=name.strip(),
        targets_by_kind={k: targets[k] for k in KINDS},
        escalation=escalation,
        max_pause_working_days=max_pause,
    )


def profile_to_dict(profile: SlaProfile) -> dict[str, Any]:
    """Return a profile in the settings format profile_from_dict reads."""
    return {
        "code": profile.code,
        "name": profile.name,
        "targets_by_kind": {k: [dataclasses.asdict(t) for t in profile.targets_by_kind[k]] for k in KINDS},
        "escalation": dataclasses.asdict(profile.escalation),
        "max_pause_working_days": profile.max_pause_working_days,
    }
