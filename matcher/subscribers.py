"""What the matcher does when other packages announce a change (see core.events).

Everything is queued for the worker in the announcer's transaction; requests never compute matches.
"""

from __future__ import annotations

from core import events
from matcher import jobs


def on_policy_changed(event: events.PolicyPublished | events.PolicyRevised) -> None:
    """Queue the judging of the policy against every firm (its list; every firm's stored best)."""
    jobs.queue_policy(event.db, policy_id=event.policy_id)


def on_profile_changed(event: events.ProfileChanged) -> None:
    """Queue the catch-up, which re-scores firms whose profile changed since their matches."""
    jobs.queue_catch_up(event.db)


events.bus.subscribe(events.PolicyPublished, on_policy_changed)
events.bus.subscribe(events.PolicyRevised, on_policy_changed)
events.bus.subscribe(events.ProfileChanged, on_profile_changed)
