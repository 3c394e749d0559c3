"""Subscriptions, the delivery outbox, channels, scheduled and event-driven pushes."""
