"""The broker edge: everything that talks AMQP or the management API lives here.

- :mod:`.addresses` — the ordered list of broker addresses (AMQP and management) with failover;
- :mod:`.policy` — the one reconnect policy (exponential backoff, full jitter, a cap);
- :mod:`.errors` — the one set of "the link broke" errors, and connect-error translation;
- :mod:`.link` — :class:`BrokerLink`: a connection that notices it died, reconnects, and
  restores its channels and consumers;
- :mod:`.publish` — the one confirmed, mandatory publish with one classification of outcomes;
- :mod:`.management` — the only module that knows management API paths;
- :mod:`.fieldcodec` — names and header values as RabbitMQ takes them (pamqp is stricter).
"""

from queuewatch.broker import fieldcodec as _fieldcodec

# pamqp takes every name and value RabbitMQ takes, and sends them back unchanged.
_fieldcodec.install()
