"""Domain events: a lower package says what happened; the packages above it decide what follows.

Catalog publishes a policy; push queues the fan-out and matcher queues a re-match. Catalog never
imports either of them: it emits `PolicyPublished` and the subscribers run.

Handlers run synchronously, in the emitter's thread and transaction (the event carries the session),
so whatever they write — a queued job, an engagement row — commits or rolls back with the change
that caused it. Handlers must be quick: they queue work, they don't do it.

Subscribers register at import time of the modules in `SUBSCRIBER_MODULES`, which `emit` loads on
first use, so no process can publish a policy without its subscribers listening (the same way the
scheduler loads every domain's jobs).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Modules whose import registers handlers; loaded by name because they sit above core.
SUBSCRIBER_MODULES = ("matcher.subscribers", "push.subscribers", "applications.subscribers", "desk.subscribers")


@dataclass(frozen=True)
class Event:
    """Base of every domain event: the session of the transaction it happened in."""

    db: Session


@dataclass(frozen=True)
class PolicyPublished(Event):
    """A policy version became visible to firms."""

    policy_id: int
    version: int


@dataclass(frozen=True)
class PolicyRevised(Event):
    """A published policy was edited into a new version."""

    policy_id: int
    from_version: int
    to_version: int


@dataclass(frozen=True)
class PolicyWithdrawn(Event):
    """A published policy was withdrawn or expired."""

    policy_id: int


@dataclass(frozen=True)
class PoliciesSeen(Event):
    """A signed-in firm looked at policies (`kind`: viewed on a page, or listed by the calculator)."""

    enterprise_id: int
    policy_ids: tuple[int, ...]
    kind: str


@dataclass(frozen=True)
class DeliveryCited(Event):
    """A firm's request names a push it received (feedback "from a push"): the push package checks it is
    the firm's own and refuses the request otherwise."""

    enterprise_id: int
    delivery_id: int


@dataclass(frozen=True)
class ProfileChanged(Event):
    """A firm's profile changed in a way matching depends on."""

    enterprise_id: int


@dataclass(frozen=True)
class CaseUpdated(Event):
    """The firm that filed a case has news of it: a reply, the resolution, a transfer or a delay (延期).

    `kind` is the timeline event's kind; `event_id` makes the notice unique (one per event and channel).
    """

    case_id: int
    event_id: int
    enterprise_id: int
    kind: str
    number: str
    title: str
    note: str | None = None
    department_name: str | None = None
    at: Any = None  # when it happened (aware datetime); a notice of something long past goes to the inbox only


@dataclass(frozen=True)
class PolicyApplied(Event):
    """A firm said it applied for a policy (feedback 已申报): the applications package opens its application."""

    enterprise_id: int
    policy_id: int
    user_id: int | None = None


@dataclass(frozen=True)
class ApplicationStatusChanged(Event):
    """A firm's application (申报) changed status; `event_id` makes the notice unique (one per change and channel).

    `by_firm` is true when the firm itself made the change (applied, withdrew): it is not told of its own act.
    """

    application_id: int
    event_id: int
    enterprise_id: int
    policy_id: int
    policy_title: str
    status: str
    status_label: str
    note: str | None = None
    amount: float | None = None  # 万元, when paid
    paid_on: Any = None  # date, when paid
    by_firm: bool = False
    at: Any = None  # when it happened (aware datetime)


@dataclass(frozen=True)
class ExemptPaid(Event):
    """A 免申即享 payout was recorded for a firm (no application): the firm is told "已为您兑现 X 万元"."""

    entry_id: int
    enterprise_id: int
    policy_id: int
    policy_title: str
    amount: float
    paid_on: Any = None  # date
    at: Any = None


E = TypeVar("E", bound=Event)
Handler = Callable[[Any], None]


class EventBus:
    """Handlers by event type; `emit` calls each one in order of subscription."""

    def __init__(self, subscriber_modules: tuple[str, ...] = ()) -> None:
        self._handlers: dict[type[Event], list[Handler]] = defaultdict(list)
        self._modules = subscriber_modules
        self._loaded = False
        self._lock = threading.Lock()

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> None:
        """Call `handler` for every event of `event_type` (once, however often it is subscribed)."""
        if handler not in self._handlers[event_type]:
            self._handlers[event_type].append(handler)

    def handlers(self, event_type: type[Event]) -> list[Handler]:
        """Return the handlers of an event type, loading the subscriber modules first."""
        self._load()
        return list(self._handlers.get(event_type, ()))

    def emit(self, event: Event) -> None:
        """Run every handler of the event's type; an exception aborts the emitter's transaction."""
        for handler in self.handlers(type(event)):
            handler(event)

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            for name in self._modules:
                try:
                    importlib.import_module(name)
                except ModuleNotFoundError as exc:
                    # Only a missing subscriber module itself is skipped; a broken import inside it is raised.
                    if exc.name != name:
                        raise
                    log.debug("no subscriber module %s", name)
            self._loaded = True


bus = EventBus(SUBSCRIBER_MODULES)


def emit(event: Event) -> None:
    """Announce a domain event to its subscribers (see `bus`)."""
    bus.emit(event)


def _firm_of(principal: Any) -> int | None:
    enterprise_id = getattr(principal, "enterprise_id", None)
    if principal is None or enterprise_id is None or str(getattr(principal, "role", "")) != "enterprise":
        return None
    return int(enterprise_id)


def policies_seen(*, tasks: Any, database: Any, principal: Any, policy_ids: list[int], kind: str) -> None:
    """Announce, after the response is sent, that the caller saw these policies (signed-in firms only).

    The announcement runs as a background task in a short write transaction of its own, so the
    request that showed the policies stays a pure read. `tasks` is the request's BackgroundTasks.
    """
    enterprise_id = _firm_of(principal)
    if enterprise_id is None or not policy_ids:
        return
    tasks.add_task(_announce_seen, database, enterprise_id, tuple(policy_ids), kind)


def _announce_seen(database: Any, enterprise_id: int, policy_ids: tuple[int, ...], kind: str) -> None:
    try:
        with database.writer_session() as db:
            emit(PoliciesSeen(db=db, enterprise_id=enterprise_id, policy_ids=policy_ids, kind=kind))
    except Exception:  # counting a view must never surface as an error
        log.warning("%s of firm %s not recorded", kind, enterprise_id, exc_info=True)
