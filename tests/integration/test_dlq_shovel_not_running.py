"""A replay shovel the broker keeps defined but does not run.

Seen after the process of a replay was killed just as it created a shovel (the PUT being
answered): RabbitMQ kept the definition (a runtime parameter) and started no shovel, so
nothing ever removed it, and the DLQ it names was refused as busy for ever. Here the state
is made on purpose, on a throwaway node with the shovel plugin: an Erlang watcher stops the
replay's shovel (``stop_child``, what a killed start leaves) within milliseconds of its
definition, and the replay's process is then killed. The next replay must find it, delete
it, move back what was held back, and replay: every timeout once in the job queue, every
other dead letter in the DLQ, nothing left of the broken replay.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from queuewatch.config import Settings, load_settings
from queuewatch.dlq import DeadLetterQueue
from queuewatch.dlq.held import back_name, held_queue
from queuewatch.dlq.model import REPLAY_SHOVEL_PREFIX
from queuewatch.dlq.shovel import SPLIT_PREFETCH, ReplayInProgress, ensure_not_busy
from tests.conftest import make_vhost
from tests.helpers import depth, wait_until
from tests.integration.test_dlq_filtered_shovel import (
    TIMEOUTS,
    given_kinds,
    half_timeouts,
    replay_leftovers,
)
from tests.integration.test_dlq_kill import cli_env, replay_command
from tests.integration.test_dlq_support import drain_ids, publish_dead_letters
from tests.nodes import Node, rabbitmq_installed, running_node

pytestmark = pytest.mark.slow

N = 4_000

# Stops the first replay shovel defined in VHOST whose name matches (the first one, or its
# second, "-back"), as soon as it starts: its definition stays, no shovel runs. (The
# definition is visible a moment before its shovel is started: stop_child is retried.)
WATCHER = """
Match = fun(X) -> {match} end,
Stop = fun Again(X, 0) -> {not_started, X};
           Again(X, K) ->
             case catch rabbit_shovel_dyn_worker_sup_sup:stop_child({<<"{vhost}">>, X}) of
               ok -> X;
               _ -> timer:sleep(1), Again(X, K - 1)  % defined, its shovel not started yet
             end
       end,
F = fun Loop(0) -> timeout;
        Loop(K) ->
          Names = [proplists:get_value(name, P)
                   || P <- rabbit_runtime_parameters:list(<<"{vhost}">>, <<"shovel">>)],
          case [X || X <- Names, Match(X)] of
            [] -> timer:sleep(2), Loop(K - 1);
            [X | _] -> Stop(X, 1000)
          end
    end,
F(20000).
"""
FIRST = f"binary:match(X, <<\"{REPLAY_SHOVEL_PREFIX}\">>) =:= {{0, {len(REPLAY_SHOVEL_PREFIX)}}} " \
        "andalso binary:match(X, <<\"-back\">>) =:= nomatch"
BACK = "binary:longest_common_suffix([X, <<\"-back\">>]) =:= 5"


@pytest.fixture(scope="module")
def shovel_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    if not rabbitmq_installed():
        pytest.skip("rabbitmq-server is not installed here")
    with running_node(tmp_path_factory.mktemp("rmq"), management=True,
                      plugins=("rabbitmq_shovel", "rabbitmq_shovel_management")) as node:
        yield node


@pytest.fixture
def settings(shovel_node: Node, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """This module's settings: a vhost of its own on the throwaway node (conftest's ``mgmt``
    and ``connection`` fixtures then talk to that node)."""
    base = load_settings(env={}, amqp_url=shovel_node.amqp_url,
                         management_url=shovel_node.management_url, vhost="/")
    with httpx.Client(base_url=shovel_node.management_url + "/api", auth=("guest", "guest"),
                      timeout=30) as admin:
        vhost = make_vhost(admin, base, request.node.name)
    return replace(base, vhost=vhost, state_dir=tmp_path / "state")


def watch(node: Node, vhost: str, match: str) -> subprocess.Popen[str]:
    """Start the watcher (``rabbitmqctl eval``); it prints the shovel it stopped."""
    expr = WATCHER.replace("{match}", match).replace("{vhost}", vhost)
    return subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", node.name, "eval", expr],
                            env=node.ctl_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


async def stopped(watcher: subprocess.Popen[str]) -> str:
    out, err = await asyncio.to_thread(watcher.communicate, timeout=120)
    assert watcher.returncode == 0 and out.strip().startswith('<<"'), (out, err)
    return out.strip()[3:-3]


@pytest.mark.parametrize(("which", "dlq_kind"), [
    ("first", "quorum"), ("back", "quorum"),
    ("first", "classic"),  # one shovel, holding back into the DLQ itself: no second one
])
async def test_a_replay_shovel_defined_but_not_running_is_swept_and_nothing_is_lost(
        shovel_node, settings, mgmt, connection, which, dlq_kind):
    vhost = settings.effective_vhost
    # Given 4,000 dead letters of "jobs" in a quorum (or classic) DLQ, half of them timeouts
    await given_kinds(connection, vhost, dlq_kind, "classic")
    ids = await publish_dead_letters(connection, "jobs", N, headers=half_timeouts, batch=500)
    matching = {ids[i] for i in range(0, N, 2)}
    # And a replay of the timeouts whose shovel (the first, or the second moving back what
    # the first held back) stays defined with no shovel running, its process then killed
    watcher = watch(shovel_node, vhost, FIRST if which == "first" else BACK)
    await asyncio.sleep(1.5)  # rabbitmqctl connects to the node
    proc = await asyncio.create_subprocess_exec(
        *replay_command(settings, "--error-type", "TimeoutError", "--via-shovel"),
        env=cli_env(settings), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        name = await stopped(watcher)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert [p["name"] for p in await mgmt.shovel_parameters(vhost)] == [name]
    assert [s for s in await mgmt.shovel_status(vhost) if s.get("name") == name] == []
    first = name.removesuffix("-back")
    held = await depth(connection, held_queue(first)) if dlq_kind == "quorum" else 0
    if which == "back":
        assert name == back_name(first) and held > 0
    # Then the DLQ is refused as busy (the hint names both ways out) until the next replay
    with pytest.raises(ReplayInProgress, match="clear_parameter"):
        await ensure_not_busy(mgmt, vhost, "jobs.dlq")
    # When the timeouts are replayed again
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    result = await dlq.replay(TIMEOUTS, via_shovel=True)
    # Then the broken shovel is gone, what it held back went back first (and is reported),
    # every timeout is in "jobs" and every other dead letter in the DLQ, nothing left over
    assert result.outcome == "ok", result
    assert sum(m.count for m in dlq.moved_back) == held
    await wait_until(lambda: _no_shovel(mgmt, vhost), timeout=30, what="no replay shovel")
    moved = await drain_ids(connection, "jobs")
    # (a shovel stopped while it ran gives back what it had not acked, republished or not:
    # at most its prefetch twice in the job queue)
    assert set(moved) == matching and len(moved) - len(matching) <= SPLIT_PREFETCH
    # (from a quorum DLQ, at its head, what the shovel gave back as it ended although their
    # republish was confirmed: redelivered, within the prefetch and the in-doubt count; seen
    # in CI, several dozen timeouts there: docs/dlq.md)
    items = (await dlq.peek(0, 2 * N)).items
    extra = len(items) - (N - len(matching))
    print(f"{which} ({dlq_kind} DLQ): {name} stopped, {held} held back, {extra} given back "
          f"at the DLQ's head, {result.in_doubt} in doubt")
    rest = [d.job_id for d in items[max(extra, 0):]]
    assert set(rest) == set(ids) - matching and len(rest) == N - len(matching)
    if extra and dlq_kind == "quorum":
        # This replay's own are counted in doubt. When the killed replay had got as far as its
        # second shovel, its first had ended and given some back the same way; counted by a
        # process that was then killed, reported by none: dead letters of either kind, the
        # timeouts among them replayed again (within the prefetch above), the others held
        # back again, so twice in the DLQ (seen in CI: 110, 0 in doubt; docs/dlq.md)
        earlier = SPLIT_PREFETCH if which == "back" else 0
        assert 0 < extra <= result.in_doubt + earlier and result.in_doubt <= SPLIT_PREFETCH
    if extra:
        # A classic DLQ (held back straight into it): what the stopped first shovel gave back
        # (it had moved part of the DLQ before the watcher stopped it: seen in CI, 202) is
        # not counted as in doubt there (docs/dlq.md, "Filtered replay"); at most its prefetch
        assert 0 < extra <= SPLIT_PREFETCH
        # copies, never strangers: each is also in "jobs" or further down the DLQ
        assert {d.job_id for d in items[:extra]} <= set(moved) | set(rest), items[:extra]
        if not (which == "back" and dlq_kind == "quorum"):
            # (after a replay killed at its second shovel, those held back twice came back
            # through the held queue: published again, not redelivered; seen in CI, 89)
            assert all(d.redelivered for d in items[:extra])
    assert await replay_leftovers(mgmt, vhost) == [] and await dlq.held_elsewhere() == []


async def _no_shovel(mgmt, vhost) -> bool:  # type: ignore[no-untyped-def]
    return not await mgmt.shovel_parameters(vhost)
