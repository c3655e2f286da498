"""queuewatch's benchmark harness: every speed claim as a ratio against a baseline measured
side by side on the same broker (raw aio-pika, pika, Dramatiq, Celery, RabbitMQ's shovel,
raw management-API fetches). Run ``./dev bench`` or ``python -m bench --help``."""
