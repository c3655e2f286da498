"""Recurring jobs: schedules (cron in a time zone, or a fixed interval), kept in streams on
the broker, fired by ``queuewatch scheduler`` — each tick once, from any number of
scheduler processes (see :mod:`.scheduler` and docs/jobs.md)."""

from queuewatch.schedules.book import Entry, ScheduleBook
from queuewatch.schedules.cron import Cron
from queuewatch.schedules.scheduler import Fired, Scheduler
from queuewatch.schedules.spec import FIRE_ONCE, SKIP, Schedule, tick_id
from queuewatch.schedules.store import ScheduleStore
from queuewatch.schedules.view import ScheduleView, list_schedules, with_store

__all__ = [
    "FIRE_ONCE", "SKIP", "Cron", "Entry", "Fired", "Schedule", "ScheduleBook", "ScheduleStore",
    "ScheduleView", "Scheduler", "list_schedules", "tick_id", "with_store",
]
