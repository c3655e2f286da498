"""DLQ discovery from management API records (issue 14, defect 9): dead-letter arguments,
policies, bindings, Dramatiq's .XQ — not only names ending in .dlq."""

from __future__ import annotations

from queuewatch.dlq.discover import dead_letter_route, dlqs_of, find_dead_letter_queues, topic_matches
from queuewatch.topology import (
    DELIVERY_EXCHANGE,
    QueueSpec,
    delay_level_arguments,
    delay_queue_name,
    due_queue_arguments,
    due_queue_name,
)


def test_dlqs_are_found_from_arguments_policies_bindings_and_names():
    # Given queues dead-lettering by argument (default exchange), by policy (a direct DLX
    # without a routing key: the message's own key), through a topic and a fanout DLX,
    # Dramatiq's pair, queuewatch's pair, and bystanders
    queues = [
        {"name": "legacy", "arguments": {"x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "legacy.dead"},
         "consumers": 2},
        {"name": "legacy.dead", "messages_ready": 7, "consumers": 0},
        {"name": "orders", "effective_policy_definition": {"dead-letter-exchange": "dlx"}},
        {"name": "orders-parked"}, {"name": "other-parked"},
        {"name": "audit", "arguments": {"x-dead-letter-exchange": "topic-dlx",
                                         "x-dead-letter-routing-key": "dead.audit"}},
        {"name": "audit-dead"},
        {"name": "fan", "arguments": {"x-dead-letter-exchange": "fan-dlx"}}, {"name": "fan-dead"},
        {"name": "rdq", "arguments": {"x-dead-letter-exchange": "",
                                       "x-dead-letter-routing-key": "rdq.XQ"}},
        {"name": "rdq.XQ"}, {"name": "jobs"}, {"name": "jobs.dlq"}, {"name": "plain"},
    ]
    bindings = [
        {"source": "", "destination": "orders", "destination_type": "queue", "routing_key": "orders"},
        {"source": "in", "destination": "orders", "destination_type": "queue", "routing_key": "new"},
        {"source": "dlx", "destination": "orders-parked", "destination_type": "queue",
         "routing_key": "new"},
        {"source": "dlx", "destination": "other-parked", "destination_type": "queue",
         "routing_key": "zzz"},
        {"source": "topic-dlx", "destination": "audit-dead", "destination_type": "queue",
         "routing_key": "dead.#"},
        {"source": "fan-dlx", "destination": "fan-dead", "destination_type": "queue",
         "routing_key": ""},
    ]
    exchanges = [{"name": "dlx", "type": "direct"}, {"name": "topic-dlx", "type": "topic"},
                 {"name": "fan-dlx", "type": "fanout"}]
    # When the DLQs are looked for
    found = {f.name: f for f in find_dead_letter_queues(queues, bindings, exchanges)}
    # Then each is found with its source and why; the bystanders are not DLQs
    assert sorted(found) == ["audit-dead", "fan-dead", "jobs.dlq", "legacy.dead",
                             "orders-parked", "rdq.XQ"]
    assert found["legacy.dead"].sources == ("legacy",)
    assert found["legacy.dead"].how == ("arguments of legacy",)
    assert (found["legacy.dead"].messages, found["legacy.dead"].consumers) == (7, 0)
    assert found["orders-parked"].how == ("policy of orders",)
    assert found["rdq.XQ"].how == ("Dramatiq .XQ", "arguments of rdq")
    assert found["jobs.dlq"].sources == ("jobs",)
    assert [f.name for f in dlqs_of("legacy", found.values())] == ["legacy.dead"]
    # And without bindings, the default-exchange routes and the names still count
    bare = [f.name for f in find_dead_letter_queues(queues)]
    assert bare == ["jobs.dlq", "legacy.dead", "rdq.XQ"]


def test_an_argument_wins_over_the_policy():
    q = {"name": "q", "arguments": {"x-dead-letter-exchange": "a"},
         "effective_policy_definition": {"dead-letter-exchange": "b",
                                         "dead-letter-routing-key": "k"}}
    route = dead_letter_route(q)
    assert route is not None and (route.exchange, route.routing_key, route.via) == ("a", "k", "arguments")
    assert dead_letter_route({"name": "q", "arguments": None}) is None


def test_topic_matching():
    assert topic_matches("dead.#", "dead") and topic_matches("dead.#", "dead.a.b")
    assert topic_matches("*.x", "a.x") and not topic_matches("*.x", "a.b.x")
    assert topic_matches("#", "") and topic_matches("a.*.#", "a.b")
    assert not topic_matches("a.*", "a")


def test_queuewatch_delay_levels_and_due_queues_do_not_make_job_queues_dlqs():
    # Given queuewatch's own topology for "orders": delay levels that dead-letter onward, the
    # level 0 into the delivery exchange, and the due queue that dead-letters into "orders"
    # (these deliver delayed jobs; a job queue is not a DLQ for them)
    spec = QueueSpec("orders")
    queues = [
        {"name": delay_queue_name(0), "arguments": delay_level_arguments(0)},
        {"name": delay_queue_name(1), "arguments": delay_level_arguments(1)},
        {"name": due_queue_name("orders"), "arguments": due_queue_arguments("orders")},
        {"name": "orders", "arguments": spec.arguments()},
        {"name": "orders.dlq"},
    ]
    bindings = [{"source": DELIVERY_EXCHANGE, "destination": due_queue_name("orders"),
                 "destination_type": "queue", "routing_key": ""}]
    exchanges = [{"name": DELIVERY_EXCHANGE, "type": "headers"},
                 {"name": delay_queue_name(0), "type": "topic"}]
    # When the DLQs are looked for, then the job queue's own DLQ is the only one
    found = find_dead_letter_queues(queues, bindings, exchanges)
    assert [(f.name, f.sources) for f in found] == [("orders.dlq", ("orders",))]
