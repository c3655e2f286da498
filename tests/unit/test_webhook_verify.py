"""The documented receiver-side check of a webhook: signature, timestamp, delivery id."""

from __future__ import annotations

import json
import time

import pytest

from queuewatch.errors import ConfigError
from queuewatch.jobs.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    WebhookRejected,
    receiver,
    sign,
    verify,
    webhook_job_id,
)
from queuewatch.producer import build
from queuewatch.topology import QueueSpec, topology_from_mapping

SECRET = "s3cret-shared"
BODY = json.dumps({"job_id": "42", "state": "succeeded", "result": {"ok": True}}).encode()


def headers(body: bytes = BODY, *, at: float | None = None, secret: str = SECRET,
            delivery: str = "webhook-42-e1") -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(secret, int(time.time() if at is None else at), body),
            DELIVERY_HEADER: delivery}


def test_a_genuine_delivery_is_accepted_in_any_header_case() -> None:
    h = {k.lower(): v for k, v in headers().items()}
    assert verify(SECRET, BODY, h)["job_id"] == "42"


@pytest.mark.parametrize("case", ["other secret", "altered body", "no signature", "bad format",
                                  "v1 missing"])
def test_a_forged_signature_is_rejected(case: str) -> None:
    h = headers()
    body = BODY
    if case == "other secret":
        h = headers(secret="guessed")
    elif case == "altered body":
        body = BODY.replace(b"succeeded", b"dead_lettered")
    elif case == "no signature":
        del h[SIGNATURE_HEADER]
    elif case == "bad format":
        h[SIGNATURE_HEADER] = "sha256=abcdef"
    else:
        h[SIGNATURE_HEADER] = h[SIGNATURE_HEADER].split(",")[0]
    with pytest.raises(WebhookRejected):
        verify(SECRET, body, h)


def test_a_replayed_delivery_is_rejected() -> None:
    # A captured delivery sent again later: its timestamp is outside the tolerance
    old = headers(at=time.time() - 301)
    with pytest.raises(WebhookRejected, match="replayed"):
        verify(SECRET, BODY, old)
    assert verify(SECRET, BODY, old, tolerance=600)
    # A captured delivery sent again at once: the delivery id was handled already
    seen: set[str] = set()
    fresh = headers()
    verify(SECRET, BODY, fresh, seen=seen)
    with pytest.raises(WebhookRejected, match="already handled"):
        verify(SECRET, BODY, fresh, seen=seen)
    # A forged one never enters `seen`
    with pytest.raises(WebhookRejected):
        verify(SECRET, BODY, headers(secret="x", delivery="webhook-43-e1"), seen=seen)
    assert seen == {"webhook-42-e1"}


def test_webhook_job_ids_are_deterministic_and_short_enough() -> None:
    assert webhook_job_id("42", "e1") == webhook_job_id("42", "e1") == "webhook-42-e1"
    long_id = webhook_job_id("j" * 255, "e" * 32)
    assert len(long_id.encode()) <= 255 and long_id == webhook_job_id("j" * 255, "e" * 32)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "http://", "/relative",
                                 "https://exa mple.com/", "http://h:99999/", ""])
def test_invalid_webhook_urls_are_refused_at_publish_and_topology_load(url: str) -> None:
    with pytest.raises(ConfigError, match="webhook"):
        build("jobs", {}, delay_levels=4, webhook=url)
    with pytest.raises(ConfigError, match="webhook"):
        topology_from_mapping({"queue": [{"name": "jobs", "webhook": url}]})


def test_a_valid_webhook_is_carried_by_the_job_and_the_queue() -> None:
    out = build("jobs", {}, delay_levels=4, webhook="https://hooks.example.com/done?k=1")
    assert out.headers["x-qw-webhook"] == "https://hooks.example.com/done?k=1"
    topo = topology_from_mapping({"queue": [{"name": "jobs", "webhook": "http://127.0.0.1:8/h"}]})
    assert topo.queue("jobs").webhook == "http://127.0.0.1:8/h"
    assert QueueSpec("queuewatch.webhooks").name == "queuewatch.webhooks"
    with pytest.raises(ConfigError, match="reserved"):
        QueueSpec("queuewatch.other")


def test_errors_name_the_receiver_not_its_secret_path() -> None:
    url = "https://user:pw@hooks.example.com:8443/services/T0/B0/SECRET-TOKEN?sig=abc"
    assert receiver(url) == "https://hooks.example.com:8443"
    assert receiver("http://127.0.0.1/hook") == "http://127.0.0.1"
    assert receiver("http://u:pw@[::1]:8080/hook?k=1") == "http://[::1]:8080"
