"""Bad input from a new user gets one line and exit 2: numeric options out of range, a
worker target that is not an app, a misspelled variable, a refused port, an unknown host,
amqps to a plain port, a management URL with a wrong path prefix."""

from __future__ import annotations

import pytest

from tests.cli_helpers import assert_one_line_error, qw


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["exporter", "--port", "99999"], "argument --port: '99999' is not a port"),
        (["exporter", "--port", "-1"], "argument --port"),
        (["exporter", "--max-age", "nan"], "argument --max-age"),
        (["status", "--count", "-1"], "argument --count"),
        (["status", "--listen", "inf"], "argument --listen"),
        (["status", "--watch", "--interval", "0"], "argument --interval"),
        (["tui", "--interval", "-2"], "argument --interval"),
        (["worker", "app:make", "--concurrency", "0"], "argument --concurrency"),
        (["worker", "app:make", "--metrics-port", "70000"], "argument --metrics-port"),
        (["workers", "terminate", "--pid", "abc"], "argument --pid"),
        (["demo", "--exit-after", "-1"], "argument --exit-after"),
    ],
)
def test_numeric_options_are_checked_by_argparse(args, fragment):
    proc = qw(*args, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("target", ["json:loads", "json:JSONDecoder", "os:sep"])
def test_a_worker_target_that_is_not_an_app_is_one_line(target):
    assert_one_line_error(qw("worker", target, timeout=30), "must be a Worker or a factory")


def test_a_bad_setting_in_the_environment_is_one_line_naming_the_variable():
    proc = qw("status", env={"QUEUEWATCH_HTTP_TIMEOUT": "nan"}, timeout=30)
    assert_one_line_error(proc, "QUEUEWATCH_HTTP_TIMEOUT: http_timeout must be a finite number")


def test_a_misspelled_variable_is_warned_about():
    proc = qw("status", "--no-heartbeats", env={"QUEUEWATCH_POLL_INTERVALL": "3"}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert ("queuewatch: warning: QUEUEWATCH_POLL_INTERVALL is not a queuewatch setting and is "
            "ignored; did you mean QUEUEWATCH_POLL_INTERVAL?") in proc.stderr


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:S3cr3t-pw@127.0.0.1:1/",  # refused
        "amqp://guest:S3cr3t-pw@no-such-host.invalid/",  # unknown host
        "amqps://guest:S3cr3t-pw@127.0.0.1:5672/",  # TLS to a plain port
    ],
)
@pytest.mark.parametrize("command", [["status"], ["dlq", "list", "jobs.dlq"]])
def test_an_unreachable_broker_is_one_line_without_library_logs(url, command):
    proc = qw(*command, env={"QUEUEWATCH_AMQP_URL": url}, timeout=60)
    assert_one_line_error(proc, "cannot connect to RabbitMQ")
    assert "S3cr3t" not in proc.stderr + proc.stdout
    assert "error when creating transport" not in proc.stderr


def test_a_wrong_management_path_prefix_is_not_a_missing_vhost(vhost):
    proc = qw("status", "--no-heartbeats", "--vhost", vhost,
              env={"QUEUEWATCH_MANAGEMENT_URL": "http://127.0.0.1:15672/wrong/prefix"}, timeout=30)
    assert_one_line_error(proc, "check management_url")
    assert "does not exist" not in proc.stderr
