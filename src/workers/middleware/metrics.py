"""Worker-side Prometheus metrics: stage durations, retries, dead letters, and the broker's queues.

`ingest worker --processes N` is N processes, and Prometheus should scrape it as one target. With
`INGEST_WORKER_METRICS_PORT` set, `ingest worker` turns on prometheus_client's multi-process mode
(`PROMETHEUS_MULTIPROC_DIR`, a fresh folder per start) before Dramatiq starts: every worker process writes
its counters and histograms there, and one extra process (a Dramatiq fork, workers.process.serve_metrics)
serves their sum on the port,
together with the queue depths, read from the broker at each scrape. Counters of a process that died
stay in the sum, as counters should.

The series (the API's `/metrics` has the HTTP and job-status side):
- `ingest_stage_duration_seconds{stage, outcome}`: one message of a stage, outcome `ok`, `error` (to be
  retried), `failed` (given up) or `skipped`;
- `ingest_stage_retries_total{stage}`: messages sent again by Dramatiq after a failure;
- `ingest_dead_letters_total{queue, actor}`: messages given up (their job is `failed`; `ingest retry`
  replays it);
- `ingest_chunks_embedded_total`, `ingest_documents_completed_total`: committed embedding work;
- `ingest_queue_messages{queue}`, `ingest_queue_delayed_messages{queue}`, `ingest_dead_letter_messages{queue}`:
  what waits in the broker now, what waits for its time (retries, deferrals), what sits in the
  dead-letter queue until `broker_dead_message_ttl_s` (Redis) drops it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dramatiq
import structlog
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.middleware import Middleware
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.middleware.lifecycle import JOB_STAGES

log = structlog.get_logger(__name__)

STAGE_SECONDS = Histogram(
    "ingest_stage_duration_seconds",
    "Time one message of a stage took, by outcome.",
    ["stage", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf")),
)
RETRIES = Counter("ingest_stage_retries", "Messages Dramatiq sent again after a failed stage.", ["stage"])
DEAD_LETTERS = Counter(
    "ingest_dead_letters", "Messages given up and moved to the dead-letter queue.", ["queue", "actor"]
)
CHUNKS_EMBEDDED = Counter("ingest_chunks_embedded", "Chunks whose vectors were stored (committed).")
DOCUMENTS_COMPLETED = Counter("ingest_documents_completed", "Documents whose last vector was stored.")


def stage_of(actor_name: str) -> str:
    """The pipeline's stage name for its actors; other actors (callbacks, upgrades) by their own name."""
    return JOB_STAGES.get(actor_name, actor_name)


class WorkerMetrics(Middleware):
    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        with self._lock:
            self._started[message.message_id] = time.monotonic()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        outcome = "failed" if message.failed else "error" if exception is not None else "ok"
        self._observe(message, outcome)

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._observe(message, "skipped")

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        # Retries enqueue with a delay; moving a delayed message to its queue when due enqueues without.
        if delay is not None and message.options.get("retries"):
            RETRIES.labels(stage_of(message.actor_name)).inc()

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        DEAD_LETTERS.labels(message.queue_name, message.actor_name).inc()

    def _observe(self, message: dramatiq.MessageProxy, outcome: str) -> None:
        with self._lock:
            started = self._started.pop(message.message_id, None)
        if started is not None:
            STAGE_SECONDS.labels(stage_of(message.actor_name), outcome).observe(time.monotonic() - started)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    ready: int
    delayed: int
    dead: int


def queue_depths(broker: dramatiq.Broker) -> dict[str, QueueDepth]:
    """What waits in each declared queue, its delay queue and its dead-letter queue."""
    queues = sorted(broker.get_declared_queues())
    if isinstance(broker, StubBroker):
        stub = broker
        return {
            q: QueueDepth(
                stub.queues[q].qsize(), stub.queues[dq_name(q)].qsize(), len(stub.dead_letters_by_queue[q])
            )
            for q in queues
        }
    from dramatiq.brokers.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        pipe = broker.client.pipeline(transaction=False)
        for q in queues:
            ns = broker.namespace
            pipe.llen(f"{ns}:{q}")
            pipe.llen(f"{ns}:{dq_name(q)}")
            pipe.zcard(f"{ns}:{xq_name(q)}")
        counts = pipe.execute()
        return {q: QueueDepth(*counts[3 * i : 3 * i + 3]) for i, q in enumerate(queues)}
    # RabbitMQ: a passive declare of each queue on the broker's channel answers its message count.
    return {q: QueueDepth(*broker.get_queue_message_counts(q)) for q in queues}  # type: ignore[attr-defined]


class QueueCollector(Collector):
    """Queue depths read from the broker at scrape time (one process answers for the whole cluster)."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        try:
            depths = queue_depths(self.broker)
        except Exception as exc:  # noqa: BLE001  (the broker away: the other series are still worth a scrape)
            log.warning("queue_depths_unavailable", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        families = (
            ("ingest_queue_messages", "Messages waiting in the broker's queue.", "ready"),
            (
                "ingest_queue_delayed_messages",
                "Messages waiting for their time (retries, deferrals).",
                "delayed",
            ),
            ("ingest_dead_letter_messages", "Given-up messages kept in the dead-letter queue.", "dead"),
        )
        for name, doc, field in families:
            family = GaugeMetricFamily(name, doc, labels=["queue"])
            for queue, depth in depths.items():
                family.add_metric([queue], getattr(depth, field))
            yield family
