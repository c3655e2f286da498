"""The one redaction at the edge: secrets registered by the settings never reach a log
record, a traceback or a child's command line."""

from __future__ import annotations

import argparse
import logging
import sys
import uuid

import pytest

from queuewatch import redact
from queuewatch.cli.worker_procs import broker_env, child_command
from queuewatch.config import load_settings

SECRET = f"S3cr3t-{uuid.uuid4().hex[:8]}"


def test_settings_register_their_secrets():
    load_settings(env={"QUEUEWATCH_AMQP_URL": f"amqp://bob:{SECRET}%2Fx@h/",
                       "QUEUEWATCH_MANAGEMENT_PASSWORD": SECRET + "-mgmt"})
    assert redact.redact(f"a {SECRET}/x b {SECRET}%2Fx c {SECRET}-mgmt") == "a *** b *** c ***"
    assert redact.redact(f"see amqps://u:{SECRET}@host:5671/") == "see amqps://u:***@host:5671/"


def test_a_password_equal_to_the_user_does_not_garble_text():
    load_settings(env={"QUEUEWATCH_AMQP_URL": "amqp://guest:guest@h/"})
    assert redact.redact("user 'guest' refused") == "user 'guest' refused"


def test_log_records_and_uncaught_tracebacks_are_redacted(capsys):
    # Given a secret the settings registered, and the redaction installed (as the CLI does)
    redact.register_url(f"amqp://someone:{SECRET}@host/")
    redact.install()
    # When a library logs it in a message, an argument and an exception
    stream = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("some.library")
    logger.addHandler(stream)
    try:
        logger.error("connecting to %s", f"amqps://x:{SECRET}@h/")
        logger.error("the password is %s", SECRET)
        try:
            raise RuntimeError(f"failed with password {SECRET}")
        except RuntimeError:
            logger.exception("oops")
        try:
            raise ValueError(f"bad {SECRET}")
        except ValueError:
            sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    finally:
        logger.removeHandler(stream)
    err = capsys.readouterr().err
    assert "connecting to amqps://x:***@h/" in err and "the password is ***" in err
    assert "RuntimeError" in err and "ValueError" in err
    assert SECRET not in err


def test_worker_children_get_the_url_through_the_environment_not_argv():
    url = f"amqp://bob:{SECRET}@h/"
    args = argparse.Namespace(app="app:make", amqp_url=url, management_url=None, vhost="v",
                              config=None, concurrency=None, prefetch=None, metrics_port=None,
                              verbose=False, web_config="web.yml")
    cmd = child_command(args, 1)
    assert not any(SECRET in part for part in cmd)
    assert cmd[-2:] == ["--web-config", "web.yml"] or "--web-config" in cmd
    settings = load_settings(env={}, amqp_url=url)
    assert broker_env(settings)["QUEUEWATCH_AMQP_URL"] == url


@pytest.mark.parametrize("argv", [
    ["amqp://guest:s3cr3t-pw@127.0.0.1:1/", "status"],  # a URL where a command goes
    ["status", "amqp://guest:s3cr3t-pw@127.0.0.1:1/"],  # a URL where no argument goes
    ["dlq", "amqp://guest:s3cr3t-pw@127.0.0.1:1/"],  # a subcommand's parser
])
def test_a_usage_error_never_prints_a_password(argv, capsys):
    from queuewatch.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "s3cr3t-pw" not in err and "guest:***@" in err, err


@pytest.mark.parametrize("password", [
    f"{SECRET[:4]}@{SECRET[4:]}",         # an unencoded '@' (the clients split at the last one)
    f"a@b@{SECRET}",                      # several
    f"{SECRET[:5]}@9:x%w-{SECRET[5:]}",   # '@', ':' and a bare '%' together
    f"{SECRET[:6]} @{SECRET[6:]}",        # a space before the '@'
], ids=["one-at", "several-ats", "at-colon-percent", "space-at"])  # (SECRET differs per process)
def test_a_password_with_an_unencoded_at_sign_is_redacted_whole(password):
    # Given settings whose URL holds a password with an '@' that was not percent-encoded
    # (accepted: the URL's host is after the last '@', as mask_url and the AMQP clients read it)
    url = f"amqp://bob:{password}@127.0.0.1:5672/v"
    load_settings(env={"QUEUEWATCH_AMQP_URL": url})
    # When a library puts the URL, or the bare password, in a line
    line = redact.redact(f"connect to {url} failed; the password {password} was refused")
    # Then no part of the password is left: the line reads as mask_url would show the URL
    assert line == "connect to amqp://bob:***@127.0.0.1:5672/v failed; the password *** was refused"


def test_a_list_of_urls_keeps_its_hosts():
    assert redact.redact("amqp://u:pw-1@h1/,amqp://u:pw-2@h2/ and 'http://a:b@c/' me@x.org") == (
        "amqp://u:***@h1/,amqp://u:***@h2/ and 'http://a:***@c/' me@x.org")
