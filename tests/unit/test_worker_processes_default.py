"""`queuewatch worker` runs one process per core unless told otherwise (issue 16 item 4)."""

from __future__ import annotations

import os
import subprocess
import sys

from queuewatch.cli.main import build_parser
from queuewatch.worker.supervisor import default_processes


def test_the_default_is_one_process_per_core_this_process_may_run_on() -> None:
    args = build_parser().parse_args(["worker", "app:make"])
    assert args.processes == default_processes() == len(os.sched_getaffinity(0))
    assert build_parser().parse_args(["worker", "app:make", "--processes", "1"]).processes == 1
    assert build_parser().parse_args(["worker", "app:make", "--processes", "auto"]).processes == (
        default_processes())


def test_auto_follows_the_cpu_affinity_not_the_machine() -> None:
    # Given a process pinned to one CPU (as taskset or a cgroup cpuset would)
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from queuewatch.cli.main import build_parser; "
            "print(build_parser().parse_args(['worker', 'app:make']).processes)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    # Then the default is one process: no supervisor, the worker's own pid
    assert out.stdout.strip() == "1"
