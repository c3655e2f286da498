"""A 3-node RabbitMQ cluster on loopback for the slow tier: kill -9, restart, partition, heal.

Three throwaway nodes (:mod:`tests.nodes`) share one Erlang cookie through one ``HOME``
under ``base_dir`` (never the machine's own cookie), boot side by side, and nodes 2 and 3
join node 1 with ``stop_app`` / ``join_cluster`` / ``start_app``. Partitions use
``cluster_partition_handling = ignore`` (RabbitMQ's default, stated explicitly) so both
sides stay up and report the partition::

    cluster = start_cluster(tmp_path)          # ~15-30 s cold on a 2-core machine
    try:
        cluster.amqp_urls, cluster.management_urls
        settings = cluster.settings(vhost)     # queuewatch Settings with every address
        cluster.kill9(1); cluster.restart(1)
        cluster.partition(0, 2)                # cut the link, keep it cut
        cluster.reconnect()                    # RabbitMQ now records the partition
        cluster.heal()                         # restart the cut-off side: one cluster again
    finally:
        cluster.close()

How a partition is made and held: node ``i`` disconnects from node ``j``
(``erlang:disconnect_node/1``) after setting a wrong cookie for ``j`` alone
(``erlang:set_cookie/2``), so every reconnection attempt between the two fails the
distribution handshake, in both directions, until :meth:`Cluster.reconnect`. RabbitMQ
records a partition when two nodes that each saw the other go down meet again
(mnesia's ``inconsistent_database``): while they are apart each side only says the
other is down. A cut between two nodes that both still see the third becomes a full
partition of the first node by RabbitMQ's own doing (it disconnects from the proxy).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.nodes import START_TIMEOUT, Node, prepare_node, rabbitmq_installed, write_cookie

if TYPE_CHECKING:
    from queuewatch.config import Settings

#: rabbitmq.conf lines every cluster node gets.
CLUSTER_CONFIG = "cluster_partition_handling = ignore\n"
#: The cookie a node is given for a peer it must not reach while partitioned.
PARTITION_COOKIE = "qwt_partitioned"
#: Seconds to wait for the cluster to agree on a state (nodes down, partitions seen, healed).
SETTLE_TIMEOUT = 60.0
#: Seconds :meth:`Cluster.heal` may take: node restarts under a loaded CI machine's two cores.
HEAL_TIMEOUT = 120.0


@dataclass
class Cluster:
    nodes: list[Node]
    base: Path
    cut: set[tuple[int, int]] = field(default_factory=set)
    """Links held apart by :meth:`partition` (pairs of node indexes, low first)."""
    partitioned: bool = False
    """Set by :meth:`partition`, cleared by :meth:`heal`."""

    @property
    def amqp_urls(self) -> list[str]:
        return [n.amqp_url for n in self.nodes]

    @property
    def management_urls(self) -> list[str]:
        return [n.management_url for n in self.nodes]

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def __len__(self) -> int:
        return len(self.nodes)

    def settings(self, vhost: str = "/", via: int | None = None, **overrides: Any) -> Settings:
        """queuewatch settings for this cluster: every node's AMQP and management address in
        order (failover), or only node ``via``'s (to know whose view a poll gets)."""
        from queuewatch.config import load_settings

        idx = range(len(self.nodes)) if via is None else [via]
        return load_settings(
            env={}, amqp_urls=tuple(self.amqp_urls[i] for i in idx),
            management_urls=tuple(self.management_urls[i] for i in idx), vhost=vhost, **overrides)

    # -- nodes --------------------------------------------------------------------------
    def kill9(self, i: int) -> None:
        """SIGKILL node ``i``'s processes (its own process group; never epmd)."""
        self.nodes[i].kill9()

    def stop(self, i: int) -> None:
        self.nodes[i].stop()

    def restart(self, i: int, timeout: float = START_TIMEOUT) -> None:
        """Start node ``i`` again (same name, ports, data) and wait until the others see it."""
        self.nodes[i].restart(timeout)
        self.wait_running(timeout=timeout)

    def running_nodes(self, via: int) -> list[str]:
        """The nodes node ``via`` considers running."""
        status = json.loads(self.nodes[via].ctl("cluster_status", "--formatter", "json"))
        return list(status.get("running_nodes", []))

    def partitions(self, via: int) -> dict[str, list[str]]:
        """Partitions as node ``via`` reports them: node -> the nodes it is partitioned from."""
        status = json.loads(self.nodes[via].ctl("cluster_status", "--formatter", "json"))
        return dict(status.get("partitions") or {})

    def wait_running(self, expected: Sequence[int] | None = None, *, via: int | None = None,
                     timeout: float = SETTLE_TIMEOUT) -> None:
        """Until node ``via`` (default: the first of ``expected``) sees exactly ``expected``
        (default: every node) running."""
        idx = list(range(len(self.nodes))) if expected is None else list(expected)
        want = {self.nodes[i].name for i in idx}
        via = idx[0] if via is None else via
        _wait(lambda: set(self.running_nodes(via)) == want, timeout,
              f"{self.nodes[via].name} to see {sorted(want)} running")

    def ensure_whole(self, timeout: float = START_TIMEOUT) -> None:
        """Every node running and clustered, no partition: what each test starts from."""
        stopped = [n for n in self.nodes if n.proc is None or n.proc.poll() is not None]
        for n in stopped:
            n.proc = None
            n.start()
        for n in stopped:
            n.wait_up(timeout)
        if self.cut or self.partitioned:
            self.heal()
        self.wait_running(timeout=timeout)

    # -- partitions ---------------------------------------------------------------------
    def partition(self, i: int, j: int, timeout: float = SETTLE_TIMEOUT) -> None:
        """Cut the link between nodes ``i`` and ``j`` and keep it cut until :meth:`reconnect`;
        returns when ``i`` no longer counts ``j`` as running."""
        a, b = self.nodes[i], self.nodes[j]
        a.eval(f"erlang:set_cookie('{b.name}', '{PARTITION_COOKIE}'), "
               f"erlang:disconnect_node('{b.name}').")
        self.cut.add((min(i, j), max(i, j)))
        self.partitioned = True
        _wait(lambda: b.name not in self.running_nodes(i), timeout,
              f"{a.name} to see {b.name} down")

    def reconnect(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Let cut links connect again; returns once some node reports a partition (which
        RabbitMQ records when two nodes that both saw the other down meet again)."""
        for i, j in sorted(self.cut):
            self._restore_link(i, j)
        self.cut.clear()
        _wait(self.partition_edges, timeout, "a partition to be reported after reconnecting")

    def heal(self, timeout: float = HEAL_TIMEOUT) -> None:
        """One cluster again: reconnect cut links, then restart (``stop_app``/``start_app``)
        the nodes on the cut-off side, until no node reports a partition and every node runs.
        RabbitMQ's advice, automated: keep the largest side, restart every node of the others.

        The nodes to restart cover every reported partition edge (:func:`_losers`): with one
        edge that is one node; when every pair reports a partition (a cut between two nodes
        can end with each of the three partitioned from the others) it is two of the three,
        restarted together. One node at a time left the third pair to a second round, which
        did not fit the time on a loaded machine."""
        for i, j in sorted(self.cut):
            self._restore_link(i, j)
        self.cut.clear()
        deadline = time.monotonic() + timeout
        time.sleep(2)  # reconnections (nodes ping the down ones every second) and their verdicts
        clean = 0
        since_restart = 99  # the first restart at once, later ones after a few checks
        while clean < 3:  # late verdicts (a restarted node's mnesia) show up within seconds
            edges = self.partition_edges()
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster still partitioned after {timeout:g}s: {edges}")
            clean = 0 if edges else clean + 1
            since_restart += 1
            if edges and since_restart > 3:
                self._restart_apps(_losers(edges))
                since_restart = 0
            time.sleep(1)
        self.wait_running(timeout=max(deadline - time.monotonic(), 10))
        self.partitioned = False

    def _restart_apps(self, idx: Sequence[int]) -> None:
        """``stop_app`` every node of ``idx`` (in parallel), then ``start_app`` them."""
        nodes = [self.nodes[k] for k in idx]
        with ThreadPoolExecutor(len(nodes) or 1) as pool:
            list(pool.map(lambda n: n.ctl("stop_app"), nodes))
            list(pool.map(lambda n: n.ctl("start_app"), nodes))

    def partition_edges(self) -> set[frozenset[int]]:
        """Pairs of nodes that some node reports as partitioned from each other."""
        index = {n.name: k for k, n in enumerate(self.nodes)}
        edges: set[frozenset[int]] = set()

        def ask(k: int) -> dict[str, list[str]]:
            try:
                return self.partitions(k)
            except Exception:
                return {}  # a node that cannot answer reports nothing

        with ThreadPoolExecutor(len(self.nodes) or 1) as pool:
            views = list(pool.map(ask, range(len(self.nodes))))
        for seen in views:
            for node, others in seen.items():
                for other in others:
                    if node in index and other in index:
                        edges.add(frozenset((index[node], index[other])))
        return edges

    def _restore_link(self, i: int, j: int) -> None:
        a, b = self.nodes[i], self.nodes[j]
        for x, y in ((a, b), (b, a)):
            with contextlib.suppress(Exception):
                x.eval(f"erlang:set_cookie('{y.name}', erlang:get_cookie()), "
                       f"net_adm:ping('{y.name}').")

    # -- the end ---------------------------------------------------------------------------
    def close(self, keep: bool = False) -> None:
        """Stop every node (in parallel) and remove their files (``keep``: leave the logs)."""
        with ThreadPoolExecutor(len(self.nodes) or 1) as pool:
            list(pool.map(lambda n: n.stop(timeout=20), self.nodes))
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)


def _losers(edges: set[frozenset[int]]) -> list[int]:
    """Nodes that cover every partition edge, chosen greedily: the node in most edges (on a
    tie the highest index: node 1 is the one others joined, kept when it can be) until no
    edge is left. ``{0-2}`` gives ``[2]``; ``{0-1, 0-2, 1-2}`` gives ``[2, 1]``."""
    left = set(edges)
    chosen: list[int] = []
    while left:
        degree: dict[int, int] = {}
        for e in left:
            for k in e:
                degree[k] = degree.get(k, 0) + 1
        pick = max(degree, key=lambda k: (degree[k], k))
        chosen.append(pick)
        left = {e for e in left if pick not in e}
    return chosen


def _wait(check: object, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:  # a CLI call against a busy node may fail: try again
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"waited {timeout:g}s for {what}" + (f" (last error: {last})" if last else ""))


def start_cluster(base_dir: Path, size: int = 3, management: bool = True,
                  config_extra: str = "", timeout: float = START_TIMEOUT) -> Cluster:
    """Boot ``size`` nodes side by side and join them into one cluster; stops them all on
    failure."""
    if not rabbitmq_installed():
        raise RuntimeError("rabbitmq-server is not installed here")
    base = Path(base_dir)
    home = base / "home"
    write_cookie(home, secrets.token_hex(16).upper())
    tag = secrets.token_hex(3)
    nodes = [
        prepare_node(base, management=management, name=f"qwt-{tag}-{k + 1}", home=home,
                     config_extra=CLUSTER_CONFIG + config_extra)
        for k in range(size)
    ]
    cluster = Cluster(nodes, base)
    try:
        for n in nodes:
            n.start()
        with ThreadPoolExecutor(size) as pool:
            list(pool.map(lambda n: n.wait_up(timeout), nodes))
        for n in nodes[1:]:
            n.ctl("stop_app")
            # Right after boot, or on a loaded machine, the seed node may not answer the
            # join yet (exit 69, "unable to connect"): try again for a while.
            _wait(lambda n=n: n.ctl("join_cluster", nodes[0].name) is not None, timeout,
                  f"{n.name} to join {nodes[0].name}", interval=2.0)
            n.ctl("start_app")
        for n in nodes[1:]:
            n.wait_up(timeout)
        cluster.wait_running(timeout=timeout)
    except BaseException:
        cluster.close()
        raise
    return cluster


@pytest.fixture(scope="session")
def cluster_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node cluster (management on every node) for the whole session; stopped and
    removed at the end, whatever happened. Every test that uses it runs on the same xdist
    worker (``tests/conftest.py`` groups them), so a run never starts two clusters."""
    if not rabbitmq_installed():
        pytest.skip("rabbitmq-server is not installed here")
    c = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def cluster(cluster_module: Cluster) -> Cluster:
    """The module's cluster, made whole for this test: nodes an earlier test killed are
    started again and its partitions healed. Give each test its own vhost or queue names
    (the cluster's definitions outlive a test)."""
    cluster_module.ensure_whole()
    return cluster_module
