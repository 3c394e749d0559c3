"""What the matcher does when the catalog announces a change (see core.events).

A published or edited policy is re-matched against every firm by the worker, queued in the
catalog's transaction; requests never compute it.
"""

from __future__ import annotations

from core import events
from matcher import jobs


def on_policy_changed(event: events.PolicyPublished | events.PolicyRevised) -> None:
    """Queue a re-match of the policy against every firm."""
    jobs.queue_policy_rematch(event.db, policy_id=event.policy_id)


events.bus.subscribe(events.PolicyPublished, on_policy_changed)
events.bus.subscribe(events.PolicyRevised, on_policy_changed)
