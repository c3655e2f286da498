"""Property-based tier (hypothesis) over configuration and URLs: whatever a user writes in a
TOML file, an environment variable, a flag or a URL, loading ends in valid settings or one
ConfigError line — never a traceback, never a non-finite or out-of-range value, never the
password in the message."""

from __future__ import annotations

import json
import math
from dataclasses import fields

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from queuewatch.config import Settings, Thresholds, load_settings, mask_url
from queuewatch.errors import ConfigError
from queuewatch.webconfig import WebConfig

#: A shared, loaded 2-core machine: no timing health checks or deadlines; 80 examples each
#: keep the tier at a few seconds.
FAST = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

SETTING_NAMES = sorted(f.name for f in fields(Settings) if f.name != "thresholds")
THRESHOLD_NAMES = sorted(f.name for f in fields(Thresholds))

values = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.lists(st.text(max_size=10), max_size=3),
)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


def assert_valid(s: Settings) -> None:
    for obj in (s, s.thresholds):
        for f in fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, float):
                assert math.isfinite(value) and value >= 0, (f.name, value)
            if isinstance(value, int) and not isinstance(value, bool):
                assert 0 <= value <= 2**63 - 1, (f.name, value)
    assert 0 < s.thresholds.fill_warning <= 1 and 0 < s.thresholds.fill_critical <= 1
    assert s.poll_interval > 0 and s.http_timeout > 0 and s.history_size >= 1
    assert isinstance(s.read_only, bool)


def load_or_refuse(**kwargs: object) -> Settings | None:
    try:
        s = load_settings(**kwargs)  # type: ignore[arg-type]
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
        return None
    assert_valid(s)
    return s


@FAST
@given(st.dictionaries(st.sampled_from(SETTING_NAMES), values, max_size=4),
       st.dictionaries(st.sampled_from(THRESHOLD_NAMES), values, max_size=3))
def test_any_toml_file_loads_or_is_one_line(tmp_path_factory, top, thresholds):
    path = tmp_path_factory.mktemp("cfg") / "qw.toml"
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    if thresholds:
        lines += ["[thresholds]"] + [f"{k} = {toml_value(v)}" for k, v in thresholds.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load_or_refuse(path=path, env={})


@FAST
@given(st.dictionaries(st.sampled_from(SETTING_NAMES + THRESHOLD_NAMES),
                       st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=25),
                       max_size=4))
@example({"http_timeout": "nan"})
@example({"stalled_polls": "1.5"})
@example({"read_only": "1"})
def test_any_environment_loads_or_is_one_line(env):
    load_or_refuse(env={f"QUEUEWATCH_{k.upper()}": v.replace("\x00", "") for k, v in env.items()})


@FAST
@given(st.dictionaries(st.sampled_from(["poll_interval", "http_timeout", "history_size", "heartbeat",
                                        "read_only", "fill_warning", "stalled_polls", "state_dir"]),
                       values, max_size=3))
def test_any_flag_value_loads_or_is_one_line(overrides):
    load_or_refuse(env={}, **overrides)


PASSWORDS = st.text(alphabet="abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ/#?@:%[]!$&'()*+,;=~-_.",
                    min_size=1, max_size=16).map(lambda s: "Pw9" + s)


@FAST
@given(scheme=st.sampled_from(["amqp", "amqps", "http", "https", "amqp:", "", "ftp"]),
       user=st.text(alphabet="abcxyz_-.", max_size=6), password=PASSWORDS,
       host=st.sampled_from(["h", "127.0.0.1", "[::1]", "[::1", "", "rabbit.example"]),
       port=st.one_of(st.none(), st.integers(min_value=-5, max_value=100_000),
                      st.sampled_from(["abc", "", "5672x"])),
       path=st.text(alphabet="/%2Fabc", max_size=6),
       which=st.sampled_from(["QUEUEWATCH_AMQP_URL", "QUEUEWATCH_MANAGEMENT_URL",
                              "QUEUEWATCH_AMQP_URLS"]))
def test_any_url_loads_or_is_one_line_without_its_password(scheme, user, password, host, port, path, which):
    url = f"{scheme}://{user}:{password}@{host}{'' if port is None else f':{port}'}{path}"
    try:
        load_settings(env={which: url})
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        assert password not in message, message
    assert password not in mask_url(url)


@FAST
@given(st.one_of(st.none(), st.text(max_size=200),
                 st.binary(max_size=60).map(lambda b: "Basic " + __import__("base64").b64encode(b).decode())))
def test_authorization_headers_never_raise(header):
    web = WebConfig(users={"prom": "$2b$04$" + "a" * 53})
    assert web.authorized(header) in (True, False)
