"""Connection options work wherever they are given: before or after a subcommand."""

from __future__ import annotations

import pytest

from queuewatch.cli.common import settings_from_args
from queuewatch.cli.main import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["workers", "--vhost", "vx", "terminate", "--pid", "123"],
        ["workers", "terminate", "--vhost", "vx", "--pid", "123"],
        ["dlq", "list", "jobs.dlq", "--vhost", "vx"],
        ["declare", "t.toml", "--vhost", "vx"],
    ],
)
def test_vhost_reaches_the_settings(argv):
    args = build_parser().parse_args(argv)
    assert settings_from_args(args).vhost == "vx"


def test_read_only_after_the_subcommand_is_kept():
    args = build_parser().parse_args(["workers", "--vhost", "vx", "terminate", "--read-only", "--pid", "1"])
    s = settings_from_args(args)
    assert s.read_only is True and s.vhost == "vx"


def test_absent_options_fall_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("QUEUEWATCH_VHOST", "from-env")
    args = build_parser().parse_args(["workers", "terminate", "--pid", "1"])
    assert settings_from_args(args).vhost == "from-env"
