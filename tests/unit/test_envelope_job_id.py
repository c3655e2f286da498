"""The job id of a message without a ``message_id``: the worker (``queuewatch.envelope``) and
the DLQ (``queuewatch.dlq.model``) find the same one, so a foreign job's record, its
dead letter and a replay of it all name it alike."""

from __future__ import annotations

import json

import pytest

from queuewatch import envelope
from queuewatch.dlq import model

CASES = [
    ("m1", {"id": "celery-1"}, b"", "m1"),
    (None, {"id": "celery-1", "task": "add"}, b"{}", "celery-1"),
    ("", {"id": bytearray(b"c-2")}, b"", "c-2"),
    (None, {"id": ""}, json.dumps({"actor_name": "send", "message_id": "dq-1"}).encode(), "dq-1"),
    (None, None, json.dumps({"task": "add", "id": "c1-body"}).encode(), "c1-body"),
    (None, None, json.dumps({"id": "no-task"}).encode(), None),
    (None, None, b"plain", None),
    (None, None, b"{not json", None),
    (None, None, b'{"actor_name": "x", "message_id": 7}', None),
    (None, {}, b"[1]", None),
]


@pytest.mark.parametrize("message_id, headers, body, expected", CASES)
def test_the_job_id_of_a_message(message_id, headers, body, expected):  # type: ignore[no-untyped-def]
    assert envelope.job_id_of(message_id, headers, body) == expected


def test_the_worker_and_the_dlq_use_one_rule():
    # (the DLQ had its own copy of these rules until 2026-12-02)
    assert model.job_id_of is envelope.job_id_of and model.body_job_id is envelope.body_job_id


def test_a_copy_keeps_a_job_id_that_fits_a_message_id():
    celery = {"id": "c" * 255}
    assert model.message_id_for_copy(None, celery, b"") == "c" * 255
    assert model.message_id_for_copy(None, {"id": "c" * 256}, b"") is None
    assert model.message_id_for_copy("own", celery, b"") == "own"


def test_what_fits_a_message_id():
    assert envelope.fits_message_id("x" * 255)
    assert not envelope.fits_message_id("x" * 256)
    assert not envelope.fits_message_id("é" * 128)  # 256 bytes
    assert envelope.fits_message_id(envelope.new_job_id())
