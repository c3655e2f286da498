"""The raw process ``status --json`` is compared with (``python -m bench.apps.raw_fetch``):
start Python, fetch the same three endpoints and fields with httpx (queues unpaged with
``columns=``, nodes, overview), print them as JSON. ``BENCH_MGMT_URL``, ``BENCH_VHOST``,
``BENCH_USER``/``BENCH_PASSWORD``, ``BENCH_COLUMNS`` (comma-separated)."""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import quote

import httpx


def main() -> None:
    base = os.environ["BENCH_MGMT_URL"].rstrip("/")
    vhost = quote(os.environ["BENCH_VHOST"], safe="")
    auth = (os.environ.get("BENCH_USER", "guest"), os.environ.get("BENCH_PASSWORD", "guest"))
    with httpx.Client(base_url=base, auth=auth, timeout=120) as http:
        queues = http.get(f"/api/queues/{vhost}", params={"columns": os.environ["BENCH_COLUMNS"]})
        nodes = http.get("/api/nodes", params={"columns": "name,running,mem_alarm,disk_free_alarm"})
        overview = http.get("/api/overview", params={"columns": "rabbitmq_version,cluster_name"})
    json.dump({"queues": queues.json(), "nodes": nodes.json(), "overview": overview.json()},
              sys.stdout)


if __name__ == "__main__":
    main()
