"""Command-line plumbing the example workers share (not part of the library)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from queuewatch.config import Settings, load_settings
from queuewatch.topology import Topology, load_topology

TOPOLOGY = Path(__file__).with_name("demo_topology.toml")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--amqp-url", help="AMQP URL (default: settings / QUEUEWATCH_AMQP_URL)")
    p.add_argument("--vhost", help="virtual host (default: from the URL)")
    p.add_argument("--config", help="queuewatch settings file")
    p.add_argument("--topology", default=str(TOPOLOGY), help="topology TOML file")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on this port (127.0.0.1)")
    p.add_argument("--fail-ratio", type=float, default=0.1,
                   help="share of email jobs that fail on a run (they retry)")
    p.add_argument("--poison-ratio", type=float, default=0.01,
                   help="share of email jobs that always fail (they end in the DLQ)")
    p.add_argument("--slow-ratio", type=float, default=0.02,
                   help="share of report jobs that take 15-40 s (stuck-job detection)")
    return p


def settings_and_topology(args: argparse.Namespace) -> tuple[Settings, Topology]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(args.config, amqp_url=args.amqp_url, vhost=args.vhost)
    return settings, load_topology(args.topology)
