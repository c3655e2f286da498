"""queuewatch: job queues on RabbitMQ that never lose a job, and a console to see them.

The core (everything but :mod:`queuewatch.tui`) never imports Textual.
"""

__version__ = "0.1.0"
