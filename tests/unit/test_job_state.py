"""A job's state folded from its events (:func:`queuewatch.jobs.state.fold`), and the webhook
body made from it: no broker needed, the events are built here."""

from __future__ import annotations

from typing import Any

from queuewatch.events import model as ev
from queuewatch.events.model import Event, Source
from queuewatch.jobs.state import JobState, fold
from queuewatch.jobs.webhooks import outcome_body

WORKER = Source("worker", "host-a", 1, "w-1")
PRODUCER = Source("producer", "host-p", 2, "p")
T0 = 1_800_000_000_000


def _life(*steps: tuple[str, int, dict[str, Any]]) -> list[Event]:
    """Events of job ``j`` on queue ``q``, one millisecond apart: (kind, attempt, data)."""
    return [Event(kind, "j", "q", attempt, PRODUCER if kind == ev.ACCEPTED else WORKER,
                  T0 + i, data) for i, (kind, attempt, data) in enumerate(steps)]


def _failed(attempt: int, error: str) -> list[tuple[str, int, dict[str, Any]]]:
    return [(ev.STARTED, attempt, {}),
            (ev.ATTEMPT_FAILED, attempt, {"error_type": "RuntimeError", "error": error}),
            (ev.RETRY_SCHEDULED, attempt, {"due": T0 + 10_000})]


def test_a_job_that_failed_then_succeeded_has_no_error_and_its_webhook_says_none():
    # Given a job that failed twice, then succeeded with a value
    events = _life((ev.ACCEPTED, 1, {}), *_failed(1, "boom 1"), *_failed(2, "boom 2"),
                   (ev.STARTED, 3, {}), (ev.SUCCEEDED, 3, {"result": {"n": 1}}))
    # When its status is asked
    st = fold("j", events)
    # Then it succeeded without an error of its own; the failed attempts keep theirs
    assert st.state is JobState.SUCCEEDED and st.result == {"n": 1}
    assert (st.error_type, st.error, st.reason) == (None, None, None)
    assert [(a.outcome, a.error) for a in st.attempts] == [
        ("failed", "boom 1"), ("failed", "boom 2"), ("succeeded", None)]
    # And its completion webhook carries the result and no "error" (documented: when failed)
    body = outcome_body(st, events[-1])
    assert body["state"] == "succeeded" and body["result"] == {"n": 1}
    assert "error" not in body, body


def test_a_job_dead_lettered_replayed_then_succeeded_reads_as_succeeded_without_error():
    # Given a job retried, then dead-lettered, then replayed from its DLQ, then succeeded
    dead = {"reason": "failed", "error_type": "RuntimeError", "error": "gate closed"}
    events = _life((ev.ACCEPTED, 1, {}), *_failed(1, "gate closed"),
                   (ev.STARTED, 2, {}),
                   (ev.ATTEMPT_FAILED, 2, {"error_type": "RuntimeError", "error": "gate closed"}),
                   (ev.DEAD_LETTERED, 2, dead))
    assert fold("j", events).to_json(timeline=False)["error"] == "gate closed"
    replayed = _life(*[(e.kind, e.attempt, dict(e.data)) for e in events],
                     (ev.REPLAYED, 2, {"to": "q"}))
    # When it was replayed, it is queued again, with none of its old life's error
    st = fold("j", replayed)
    assert st.state is JobState.QUEUED
    assert (st.error_type, st.error, st.reason) == (None, None, None)
    # And once it succeeded: succeeded, no error; the webhook body says so
    done = _life(*[(e.kind, e.attempt, dict(e.data)) for e in replayed],
                 (ev.STARTED, 1, {}), (ev.SUCCEEDED, 1, {"result": "ok"}))
    st = fold("j", done)
    assert st.state is JobState.SUCCEEDED and st.attempt == 1
    assert (st.error_type, st.error, st.reason) == (None, None, None)
    assert "error" not in outcome_body(st, done[-1])
    # While a dead-lettered job still reads with its error (the webhook's "error" too)
    st = fold("j", events)
    assert outcome_body(st, events[-1])["error"] == {
        "type": "RuntimeError", "message": "gate closed", "reason": "failed"}
