"""The actors by name, on the broker this process started (workers.process).

Senders name the actor instead of importing it: an actor exists only once `workers.actors` has declared
it on a broker at a process's start, and the modules that send (admission, callbacks, upgrades, index
builds) sit below that.
"""

from __future__ import annotations

import dramatiq
import dramatiq.broker

PARSE_DOCUMENT = "parse_document"
EMBED_CHUNKS = "embed_chunks"
DELIVER_CALLBACK = "deliver_callback"
UPGRADE_EMBEDDINGS = "upgrade_embeddings"
BUILD_VECTOR_INDEX = "build_vector_index"


def started_broker() -> dramatiq.Broker:
    """The broker `workers.process.start_broker` set; an error, not Dramatiq's default RabbitMQ broker on
    localhost, when none was started."""
    broker = dramatiq.broker.global_broker
    if broker is None:
        raise RuntimeError("no broker was started in this process: call workers.process.start_broker first")
    return broker


def actor(name: str) -> dramatiq.Actor:
    return started_broker().get_actor(name)
