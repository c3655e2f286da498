"""Worker programs the harness starts as subprocesses (one per measured worker).

They read their parameters from ``BENCH_*`` environment variables: ``BENCH_AMQP_URL``,
``BENCH_QUEUE``, ``BENCH_CONCURRENCY``, ``BENCH_PREFETCH``, ``BENCH_JOB`` (``noop``, ``io`` —
a 5 ms wait — or ``latency``: record publish-to-start delay) and ``BENCH_LATENCY_DIR``.
"""
