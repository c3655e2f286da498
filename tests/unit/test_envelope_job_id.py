"""The job id of a message without a ``message_id``: the worker (``queuewatch.envelope``) and
the DLQ (``queuewatch.dlq.model``) find the same one, so a foreign job's record, its
dead letter and a replay of it all name it alike."""

from __future__ import annotations

import json

import pytest

from queuewatch import envelope
from queuewatch.dlq import model

CASES = [
    ("m1", {"id": "celery-1"}, b""),
    (None, {"id": "celery-1", "task": "add"}, b"{}"),
    ("", {"id": bytearray(b"c-2")}, b""),
    (None, {"id": ""}, json.dumps({"actor_name": "send", "message_id": "dq-1"}).encode()),
    (None, None, json.dumps({"task": "add", "id": "c1-body"}).encode()),
    (None, None, json.dumps({"id": "no-task"}).encode()),
    (None, None, b"plain"),
    (None, None, b"{not json"),
    (None, None, b'{"actor_name": "x", "message_id": 7}'),
    (None, {}, b"[1]"),
]


@pytest.mark.parametrize("message_id, headers, body", CASES)
def test_the_worker_and_the_dlq_find_the_same_job_id(message_id, headers, body):  # type: ignore[no-untyped-def]
    assert envelope.job_id_of(message_id, headers, body) == model.job_id_of(message_id, headers, body)


def test_what_fits_a_message_id():
    assert envelope.fits_message_id("x" * 255)
    assert not envelope.fits_message_id("x" * 256)
    assert not envelope.fits_message_id("é" * 128)  # 256 bytes
    assert envelope.fits_message_id(envelope.new_job_id())
