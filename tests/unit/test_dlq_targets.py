"""Where a replay's republish lands (queuewatch.dlq.targets.queues_reached), as RabbitMQ
routes it: the default exchange by queue name; direct by key; topic by pattern; fanout and
headers to every bound queue; through exchange-to-exchange bindings."""

from queuewatch.dlq.model import Route
from queuewatch.dlq.targets import queues_reached


def b(source: str, dest: str, key: str = "", kind: str = "queue") -> dict[str, str]:
    return {"source": source, "destination": dest, "routing_key": key, "destination_type": kind}


BINDINGS = [b("orders", "small", "new"), b("orders", "other", "old"),
            b("events", "audit", "order.*"), b("events", "all", "#"),
            b("fan", "f1"), b("fan", "f2"), b("orders", "events", "new", "exchange"),
            b("loop", "loop", "", "exchange")]
TYPES = {"orders": "direct", "events": "topic", "fan": "fanout", "loop": "fanout"}


def test_each_exchange_type_routes_as_rabbitmq_does() -> None:
    assert queues_reached(Route("", "jobs"), BINDINGS, TYPES) == {"jobs"}
    assert queues_reached(Route("fan", "x"), BINDINGS, TYPES) == {"f1", "f2"}
    assert queues_reached(Route("events", "order.new"), BINDINGS, TYPES) == {"audit", "all"}
    assert queues_reached(Route("events", "order.new.eu"), BINDINGS, TYPES) == {"all"}
    # direct by key, and on through the exchange bound with that key
    assert queues_reached(Route("orders", "new"), BINDINGS, TYPES) == {"small", "all"}
    assert queues_reached(Route("orders", "old"), BINDINGS, TYPES) == {"other"}
    assert queues_reached(Route("loop", "x"), BINDINGS, TYPES) == set()  # a cycle ends
