"""Property-based tier (hypothesis) over topology files: whatever a [[queue]] table holds,
loading gives a topology or one ConfigError line, never another exception."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from queuewatch.errors import ConfigError
from queuewatch.topology import _QUEUE_KEYS, _RETRY_KEYS, topology_from_mapping

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.booleans(),  # TOML has no null st.integers(min_value=-(2**63), max_value=2**63 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.sampled_from(sorted(_RETRY_KEYS)), scalars, max_size=3))
queue = st.dictionaries(st.sampled_from(sorted(_QUEUE_KEYS)), values, max_size=6).map(
    lambda d: {"name": "jobs", **d} if "name" not in d else d)


@FAST
@given(st.lists(queue, min_size=1, max_size=3),
       st.dictionaries(st.sampled_from(["delay_levels", "telemetry_exchange", "control_exchange"]),
                       scalars, max_size=2))
@example([{"name": "jobs", "rate_limit_key": True}], {})  # was an AttributeError traceback
@example([{"name": "jobs", "stuck_after": "soon"}], {"delay_levels": "many"})
def test_any_topology_loads_or_is_one_line(queues, top):
    try:
        topology_from_mapping({"queue": queues, **top}, "t.toml")
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
