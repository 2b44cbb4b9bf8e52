"""Prometheus metrics of one server, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from persistence.models import CallState

SIGNAL_TYPES = ("offer", "answer", "candidate", "end-of-candidates")
#: How a push job ended, as its ``push.*`` log event names it (docs/push.md).
PUSH_OUTCOMES = ("sent", "gone", "retry", "expired", "refused", "dropped", "failed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "signaling_connections",
            "Open Socket.IO connections",
            ["namespace"],
            registry=self.registry,
        )
        for namespace in ("/call", "/chat"):
            self.connections.labels(namespace)  # present (at 0) before anyone connects
        self.calls = Gauge(
            "signaling_calls",
            "Calls by state (from the database)",
            ["state"],
            registry=self.registry,
        )
        signals = Counter(
            "signaling_signals_relayed",
            "Signals relayed (or queued) to a partner",
            ["type"],
            registry=self.registry,
        )
        # Bound children once: labels() on the hot path costs a lock and a lookup.
        self.signals_by_type = {t: signals.labels(t) for t in SIGNAL_TYPES}
        self.signals_queued = Counter(
            "signaling_signals_queued",
            "Signals held for a partner who was not connected",
            registry=self.registry,
        )
        self.errors = Counter(
            "signaling_errors", "Error answers by code", ["code"], registry=self.registry
        )
        self.chat_messages = Counter(
            "signaling_chat_messages_stored",
            "Chat messages stored (retries of a stored message not counted)",
            registry=self.registry,
        )
        self.gifts = Counter(
            "signaling_gifts_sent", "Gifts sent, by kind", ["kind"], registry=self.registry
        )
        self.timer_lateness = Histogram(
            "signaling_timer_lateness_seconds",
            "How late a call timer applied its effect after its deadline",
            ["kind"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            registry=self.registry,
        )

        pushes = Counter(
            "signaling_pushes",
            "Web Push jobs by outcome (a retried push counts once per attempt)",
            ["outcome"],
            registry=self.registry,
        )
        # Every outcome present (at 0) from the start, so a rate of failures
        # is defined before the first one.
        self.pushes_by_outcome = {o: pushes.labels(o) for o in PUSH_OUTCOMES}
        #: read from the push queue at scrape time (the dispatcher binds it)
        self.push_queue_depth = Gauge(
            "signaling_push_queue_depth",
            "Push jobs (notices and deliveries) waiting for a worker",
            registry=self.registry,
        )

    def observe_lateness(self, kind: str, seconds: float) -> None:
        self.timer_lateness.labels(kind).observe(max(seconds, 0.0))

    def set_calls_by_state(self, counts: dict[CallState, int]) -> None:
        for state in CallState:
            self.calls.labels(state.value).set(counts.get(state, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
