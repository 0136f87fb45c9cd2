"""A worker imports what its jobs would import lazily before its threads start (issue 12: two threads
importing httpx at once broke a vendor call inside the SDK after the vendor had billed it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Builds the worker as `ingest worker` and the in-process workers do, and records, in a middleware hook
# that runs after the preload and before Dramatiq starts any worker thread, which modules are loaded.
PROBE = """
import json, sys, threading
import dramatiq
from ingest.config import Settings
from workers.process import start_broker

LAZY = ["httpx", "router.openai_real", "router.openai_batch", "openai", "router.llamaparse.client", "llama_cloud"]
seen = {"before": [m for m in LAZY if m in sys.modules]}

class Probe(dramatiq.Middleware):
    def before_worker_boot(self, broker, worker):
        seen["at_boot"] = [m for m in LAZY if m in sys.modules]
        seen["worker_threads"] = [t.name for t in threading.enumerate() if "Worker" in t.name]

broker = start_broker(Settings())
broker.add_middleware(Probe())
worker = dramatiq.Worker(broker, worker_threads=2)
worker.start()
worker.stop()
print(json.dumps(seen))
"""


def probe(home: Path, **env: str) -> dict[str, list[str]]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "LLAMA_CLOUD_API_KEY")}
    clean = {k: v for k, v in clean.items() if not k.startswith(("INGEST_", "REDIS_", "RABBITMQ_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, "INGEST_HOME": str(home), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_vendor_clients_and_their_http_stacks_load_before_the_threads(tmp_path: Path) -> None:
    seen = probe(tmp_path, OPENAI_API_KEY="sk-preload-test-0001", LLAMA_CLOUD_API_KEY="llx-preload-test-0001")
    assert "openai" not in seen["before"] and "llama_cloud" not in seen["before"]
    assert set(seen["at_boot"]) == {
        "httpx",
        "router.openai_real",
        "router.openai_batch",
        "openai",
        "router.llamaparse.client",
        "llama_cloud",
    }
    assert seen["worker_threads"] == []


def test_a_client_without_its_key_is_not_loaded(tmp_path: Path) -> None:
    seen = probe(tmp_path)
    assert "httpx" in seen["at_boot"]
    assert "openai" not in seen["at_boot"] and "llama_cloud" not in seen["at_boot"]
