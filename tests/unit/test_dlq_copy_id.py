"""The message_id a replayed or imported copy of a foreign dead letter is published with."""

from __future__ import annotations

import json

from queuewatch.dlq.model import message_id_for_copy


def test_its_own_message_id_wins():
    assert message_id_for_copy("m1", {"id": "celery-1"}, b"") == "m1"


def test_a_celery_or_dramatiq_job_keeps_its_id():
    assert message_id_for_copy(None, {"id": "celery-1", "task": "add"}, b"{}") == "celery-1"
    body = json.dumps({"actor_name": "send", "message_id": "dq-1"}).encode()
    assert message_id_for_copy(None, None, body) == "dq-1"
    assert message_id_for_copy("", {"id": bytearray(b"c-2")}, b"") == "c-2"


def test_no_id_or_one_too_long_for_the_property_gives_none():
    assert message_id_for_copy(None, None, b"plain") is None
    assert message_id_for_copy(None, {"id": "x" * 256}, b"") is None
    assert message_id_for_copy(None, {"id": "é" * 128}, b"") is None  # 256 bytes


def test_a_length_limit_that_drops_the_head_refuses_import():
    from queuewatch.dlq.kinds import kind_from_info

    def kind(args, policy=None, qtype="classic"):  # type: ignore[no-untyped-def]
        return kind_from_info("q", {"type": qtype, "arguments": args,
                                    "effective_policy_definition": policy or {}})

    assert kind({"x-max-length": 5}).refusal("import") is not None
    assert kind({}, {"max-length-bytes": 10}).refusal("import") is not None
    assert kind({"x-max-length": 5}, qtype="quorum").refusal("import") is not None
    assert kind({"x-max-length": 5, "x-overflow": "reject-publish"}).refusal("import") is None
    assert kind({}, {"max-length": 5, "overflow": "reject-publish-dlx"}).refusal("import") is None
    assert kind({}).refusal("import") is None
    assert kind({"x-max-length": 5}).refusal("read") is None  # only import adds messages
