"""Fire and eventually confirm: a job's status, timeline and result by id.

Read from the job events stream (see :mod:`queuewatch.events`) through a local index.
"""

from queuewatch.jobs.api import (
    EventsUnavailable,
    JobFailed,
    Jobs,
    JobsClient,
    JobUnknown,
    ResultExpired,
    ResultTimeout,
    check_job_id,
)
from queuewatch.jobs.state import Attempt, JobState, JobStatus, fold

__all__ = [
    "Attempt", "EventsUnavailable", "JobFailed", "JobState", "JobStatus", "JobUnknown", "Jobs", "JobsClient",
    "ResultExpired", "ResultTimeout", "check_job_id", "fold",
]
