"""How soon after its start a SIGTERM stops ``queuewatch worker`` cleanly (exit 0) rather
than killing it (exit -15): the installed console script, the supervised form, 5 runs per
delay. Needs a broker at the settings' URLs (the default: the local one). ::

    .venv/bin/python -m bench.early_sigterm [PROCESSES]

Prints, per delay in seconds, the exit codes.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = '''
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker import Job, Worker

def make_worker(settings):
    worker = Worker(settings, Topology(queues=(QueueSpec("bench-early-sigterm"),),
                                        delay_levels=1), heartbeat_interval=0.5)

    @worker.job("bench-early-sigterm")
    async def handle(job: Job) -> None:
        pass

    return worker
'''


def main(processes: str) -> None:
    command = Path(sys.executable).parent / "queuewatch"
    with tempfile.TemporaryDirectory(prefix="qwbench-sigterm-") as tmp:
        (Path(tmp) / "app.py").write_text(APP)
        env = {**os.environ, "QUEUEWATCH_STATE_DIR": tmp}
        for delay in (0.01, 0.02, 0.03, 0.04, 0.06, 0.1, 0.2, 0.5, 1.0):
            codes = []
            for _ in range(5):
                proc = subprocess.Popen(
                    [str(command), "worker", f"{tmp}/app.py:make_worker", "--processes",
                     processes], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(delay)
                proc.send_signal(signal.SIGTERM)
                codes.append(proc.wait(60))
            print(f"{delay:.2f}s: {codes}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "2")
