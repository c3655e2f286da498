"""``every`` is bounded: ticks are whole milliseconds, and a tick must stay a date that can be
shown and named. A 1e12-second interval used to be accepted, after which ``queuewatch
schedules list`` ended in a traceback (``ValueError: year 33658 is out of range``); a
0.0001-second one was shown as such and fired every millisecond."""

from __future__ import annotations

import pytest

from queuewatch.errors import ConfigError
from queuewatch.schedules.changes import build_schedule, parse_every
from queuewatch.schedules.spec import Schedule, schedules_from_topology, tick_id
from tests.cli_helpers import assert_one_line_error, qw

#: The bounds (spec.MIN_EVERY, spec.MAX_EVERY: 8 years), written out so that this file
#: also runs against a tree without them.
MIN_EVERY = 0.001
MAX_EVERY = 366 * 8 * 86_400.0


@pytest.mark.parametrize("every", [1e12, 1e300, MAX_EVERY * 2, 0.0001, MIN_EVERY / 2])
def test_an_interval_out_of_bounds_is_one_clear_error(every):
    with pytest.raises(ConfigError, match=r"every must be a number of seconds > 0, from 0\.001 to"):
        Schedule("s", "q", every=every)
    with pytest.raises(ConfigError, match=r"every must be a number of seconds > 0"):
        parse_every(str(every))
    with pytest.raises(ConfigError, match=r"schedule 's': every must be"):
        schedules_from_topology(({"name": "s", "queue": "q", "every": every},))


@pytest.mark.parametrize("every", [MIN_EVERY, 1, 86_400, MAX_EVERY])
def test_every_interval_in_bounds_has_ticks_that_can_be_named(every):
    s = build_schedule("s", "q", every=every)
    tick = s.next_tick(1_796_000_000_000)
    assert tick is not None
    assert tick_id("s", tick).startswith("s@")


@pytest.mark.parametrize("every", ["1e12", "0.0001"])
def test_the_cli_refuses_it_before_writing_anything(every):
    # (pointed at a vhost that does not exist: reaching the broker would be another error)
    assert_one_line_error(qw("schedules", "add", "x", "--queue", "q", "--every", every,
                             "--vhost", "qwt-every-bounds-no-such-vhost", timeout=30),
                          "every must be a number of seconds > 0, from 0.001 to")
