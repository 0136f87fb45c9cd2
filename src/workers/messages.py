"""The actors by name, on the broker this process started (workers.process).

Senders name the actor instead of importing it: an actor exists only once `workers.actors` has declared
it on a broker at a process's start, and the modules that send (admission, callbacks, upgrades, index
builds) sit below that.
"""

from __future__ import annotations

from uuid import UUID

import dramatiq
import dramatiq.broker

from ingest.leases import EMBED_PREFIX

# The two queues: ingestion stages, and webhook deliveries (their own workers, so a slow receiver delays
# no document).
INGEST_QUEUE = "ingest"
CALLBACK_QUEUE = "callbacks"

PARSE_DOCUMENT = "parse_document"
EMBED_CHUNKS = "embed_chunks"
INGEST_BATCH = "ingest_batch"
DELIVER_CALLBACK = "deliver_callback"
UPGRADE_EMBEDDINGS = "upgrade_embeddings"
BUILD_VECTOR_INDEX = "build_vector_index"
REEMBED_STEP = "reembed_step"
TEND_BATCHES = "tend_embedding_batches"


def started_broker() -> dramatiq.Broker:
    """The broker `workers.process.start_broker` set; an error, not Dramatiq's default RabbitMQ broker on
    localhost, when none was started."""
    broker = dramatiq.broker.global_broker
    if broker is None:
        raise RuntimeError("no broker was started in this process: call workers.process.start_broker first")
    return broker


def actor(name: str) -> dramatiq.Actor:
    return started_broker().get_actor(name)


def message_for(unit: str, job_id: UUID) -> tuple[str, tuple[object, ...]]:
    """The actor and arguments that do `unit` of the job again. A parse (or a lost in-process message)
    is `parse_document`, which resumes the job where it stopped; a batch is its own `embed_chunks`."""
    if unit.startswith(EMBED_PREFIX):
        first, _, last = unit.removeprefix(EMBED_PREFIX).partition("-")
        return EMBED_CHUNKS, (str(job_id), int(first), int(last))
    return PARSE_DOCUMENT, (str(job_id),)
