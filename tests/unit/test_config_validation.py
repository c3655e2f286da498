"""One validation of every setting: a bad type, range or non-finite number is refused from
every source (file, environment, flags), in one line naming the key and the source; a
misspelled QUEUEWATCH_* variable is warned about; a bad URL never shows its password."""

from __future__ import annotations

import pytest

from queuewatch.config import load_settings, unknown_environment
from queuewatch.errors import ConfigError


def _refused(tmp_path, text: str) -> str:
    cfg = tmp_path / "qw.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    message = str(info.value)
    assert "\n" not in message
    assert str(cfg) in message  # the source
    return message


@pytest.mark.parametrize(
    ("text", "key", "why"),
    [
        ("read_only = 1\n", "read_only", "not a valid boolean"),
        ("state_dir = 5\n", "state_dir", "not a valid path"),
        ("state_dir = ''\n", "state_dir", "not a valid path"),
        ("[thresholds]\nstalled_polls = inf\n", "stalled_polls", "not a valid whole number"),
        ("[thresholds]\nstalled_polls = 1.5\n", "stalled_polls", "not a valid whole number"),
        ("[thresholds]\nstalled_polls = 0\n", "stalled_polls", "must be >= 1"),
        ("history_size = inf\n", "history_size", "not a valid whole number"),
        ("history_size = 1e30\n", "history_size", "must be <= 100000"),
        ("export_max_queues = 1e30\n", "export_max_queues", "must be <= 9223372036854775807"),
        ("http_timeout = -1\n", "http_timeout", "must be > 0"),
        ("http_timeout = 0\n", "http_timeout", "must be > 0"),
        ("http_timeout = nan\n", "http_timeout", "finite"),
        ("http_timeout = inf\n", "http_timeout", "finite"),
        ("poll_interval = nan\n", "poll_interval", "finite"),
        ("poll_interval = inf\n", "poll_interval", "finite"),
        ("heartbeat = 70000\n", "heartbeat", "must be <= 65535"),
        ("broker_consumer_timeout = -5\n", "broker_consumer_timeout", "must be > 0"),
        ("[thresholds]\nfill_warning = 5.0\n", "thresholds.fill_warning", "must be <= 1"),
        ("[thresholds]\nfill_critical = 0\n", "thresholds.fill_critical", "must be > 0"),
        ("[thresholds]\nstuck_job_seconds = nan\n", "thresholds.stuck_job_seconds", "finite"),
        ("[thresholds]\nheartbeat_stale_seconds = inf\n", "thresholds.heartbeat_stale_seconds",
         "finite"),
        ("[thresholds]\noldest_age_warning = 1e300\n", "thresholds.oldest_age_warning", "must be <="),
        ("vhost = 3\n", "vhost", "not a valid string"),
        ("amqp_urls = 'amqp://h/'\n", "amqp_urls", ""),  # a string is a one-address list: fine
    ],
)
def test_bad_values_in_the_file_are_refused_with_key_and_source(tmp_path, text, key, why):
    if not why:
        assert load_settings(_write(tmp_path, text), env={}).amqp_urls == ("amqp://h/",)
        return
    message = _refused(tmp_path, text)
    assert key in message and why in message, message


def _write(tmp_path, text):
    cfg = tmp_path / "ok.toml"
    cfg.write_text(text)
    return cfg


def test_a_password_of_the_wrong_type_is_not_shown(tmp_path):
    message = _refused(tmp_path, "management_password = 123456789\n")
    assert "123456789" not in message and "management_password" in message


@pytest.mark.parametrize(
    ("var", "value", "why"),
    [
        ("QUEUEWATCH_HTTP_TIMEOUT", "nan", "finite"),
        ("QUEUEWATCH_HTTP_TIMEOUT", "-1", "must be > 0"),
        ("QUEUEWATCH_STALLED_POLLS", "1.5", "not a valid whole number"),
        ("QUEUEWATCH_STALLED_POLLS", "inf", "not a valid whole number"),
        ("QUEUEWATCH_HISTORY_SIZE", str(10**30), "must be <= 100000"),
        ("QUEUEWATCH_FILL_WARNING", "5", "must be <= 1"),
        ("QUEUEWATCH_READ_ONLY", "maybe", "not a valid boolean"),
        ("QUEUEWATCH_POLL_INTERVAL", "inf", "finite"),
    ],
)
def test_bad_values_in_the_environment_name_the_variable(var, value, why):
    with pytest.raises(ConfigError) as info:
        load_settings(env={var: value})
    assert var in str(info.value) and why in str(info.value)


@pytest.mark.parametrize(
    ("override", "why"),
    [
        ({"poll_interval": float("nan")}, "finite"),
        ({"read_only": 1}, "not a valid boolean"),
        ({"stalled_polls": 2.5}, "not a valid whole number"),
        ({"fill_warning": 1.5}, "must be <= 1"),
    ],
)
def test_bad_values_from_flags_say_command_line(override, why):
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, **override)
    assert "command line" in str(info.value) and why in str(info.value)


def test_good_values_still_load(tmp_path):
    cfg = _write(tmp_path, "read_only = true\nhistory_size = 500\nheartbeat = 0\n"
                 "[thresholds]\nstalled_polls = 4.0\nfill_warning = 1\n")
    s = load_settings(cfg, env={"QUEUEWATCH_HTTP_TIMEOUT": "2.5", "QUEUEWATCH_READ_ONLY": "yes"})
    assert s.read_only is True and s.history_size == 500 and s.heartbeat == 0
    assert s.thresholds.stalled_polls == 4 and isinstance(s.thresholds.stalled_polls, int)
    assert s.thresholds.fill_warning == 1.0 and s.http_timeout == 2.5


def test_misspelled_variables_are_warned_about_with_the_closest_name():
    env = {"QUEUEWATCH_POLL_INTERVALL": "3", "QUEUEWATCH_AMQP_URL": "amqp://h/",
           "QUEUEWATCH_TEST_THING": "x", "QUEUEWATCH_CONFIG": "", "QUEUEWATCH_ZZZ": "1",
           "QUEUEWATCH_THRESHOLDS": "1"}
    warnings = unknown_environment(env)
    assert warnings[0].startswith("QUEUEWATCH_POLL_INTERVALL is not a queuewatch setting")
    assert warnings[0].endswith("did you mean QUEUEWATCH_POLL_INTERVAL?")
    assert any(w.startswith("QUEUEWATCH_ZZZ") and "did you mean" not in w for w in warnings)
    assert any(w.startswith("QUEUEWATCH_THRESHOLDS") for w in warnings)
    assert len(warnings) == 3
    load_settings(env=env)  # warned about, never an error


SECRET = "S3cr3t-pw"


@pytest.mark.parametrize(
    ("key", "url", "why"),
    [
        ("amqp_url", "amqp:/", "names no host"),
        ("amqp_url", "amqp://[::1", "is not a valid URL"),
        ("amqp_url", f"amqp://u:{SECRET}@h:99999/", "invalid port"),
        ("amqp_url", f"amqp://u:{SECRET}@h:-1/", "invalid port"),
        ("amqp_url", f"amqp://u:{SECRET}@h:abc/", "invalid port"),
        ("amqp_url", f"amqp://u:{SECRET}/x@h/", "percent-encoded"),
        ("amqp_url", f"http://u:{SECRET}@h/", "must start with amqp"),
        ("management_url", "http://[::1", "is not a valid URL"),
        ("management_url", "http://127.0.0.1:99999", "invalid port"),
        ("management_url", f"amqp://u:{SECRET}@h/", "must start with http"),
    ],
)
def test_bad_urls_are_one_line_without_the_password(key, url, why):
    var = "QUEUEWATCH_" + key.upper()
    with pytest.raises(ConfigError) as info:
        load_settings(env={var: url})
    message = str(info.value)
    assert why in message and var in message and "\n" not in message
    assert SECRET not in message and "S3cr3t" not in message
