"""Settings: defaults -> TOML file -> QUEUEWATCH_* env -> explicit overrides; bad input is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from queuewatch.config import Settings, load_settings, mask_url
from queuewatch.errors import ConfigError


def test_defaults_without_file_or_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s == Settings(state_dir=s.state_dir)
    assert s.effective_vhost == "/" and s.credentials == ("guest", "guest")
    assert s.poll_interval == 5.0


def test_file_then_env_then_overrides(tmp_path):
    cfg = tmp_path / "qw.toml"
    cfg.write_text(
        'amqp_url = "amqp://alice:s3cret@rabbit:5672/prod"\npoll_interval = 10\n'
        "[thresholds]\nstuck_job_seconds = 60\nfill_warning = 0.5\n"
    )
    env = {"QUEUEWATCH_POLL_INTERVAL": "7.5", "QUEUEWATCH_FILL_WARNING": "0.6", "QUEUEWATCH_OTHER": "x"}
    s = load_settings(cfg, env=env, read_only=True, vhost=None)
    assert s.poll_interval == 7.5  # env beats file
    assert s.thresholds.stuck_job_seconds == 60  # file beats default
    assert s.thresholds.fill_warning == 0.6  # env beats file
    assert s.read_only is True  # override
    assert s.effective_vhost == "prod"  # from the URL path
    assert s.credentials == ("alice", "s3cret")
    assert s.amqp_url_for("other/vh") == "amqp://alice:s3cret@rabbit:5672/other%2Fvh"


def test_env_names_config_file(tmp_path):
    cfg = tmp_path / "x.toml"
    cfg.write_text("read_only = true\n")
    assert load_settings(env={"QUEUEWATCH_CONFIG": str(cfg)}).read_only is True


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nonsense = 1\n", "unknown key 'nonsense'"),
        ("[thresholds]\nstuck = 1\n", "unknown key thresholds.stuck"),
        ("poll_interval = 'fast'\n", "poll_interval = 'fast' is not a valid"),
        ("poll_interval = 0\n", "poll_interval must be > 0"),
        ("amqp_url = 'http://x'\n", "must start with amqp"),
        ("[thresholds]\nstuck_job_seconds = -1\n", "must not be negative"),
        ("this is [ not toml", "is not valid TOML"),
    ],
)
def test_bad_file_gives_one_clear_error(tmp_path, text, fragment):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path, env={})


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="QUEUEWATCH_READ_ONLY"):
        load_settings(env={"QUEUEWATCH_READ_ONLY": "maybe"})


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://u:p@h:5672/v", "amqp://u:***@h:5672/v"),
        ("amqps://user:p%40ss@host/", "amqps://user:***@host/"),
        ("http://h:15672", "http://h:15672"),
        ("amqp://u@h/", "amqp://u@h/"),
        ("amqp://u:pw@[::1]:5672/", "amqp://u:***@[::1]:5672/"),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_describe_never_shows_a_password():
    s = load_settings(env={}, amqp_url="amqp://bob:hunter2@h/", management_password="pw2")
    text = repr(s.describe())
    assert "hunter2" not in text and "pw2" not in text and "***" in text


def test_state_paths_follow_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    s = load_settings(env={})
    assert s.audit_log_path == Path(tmp_path) / "queuewatch" / "audit.jsonl"
