"""Imports, before the worker threads start, every module a job would otherwise import on first use.

A module imported by two threads at once can be seen half-initialised by one of them ("cannot import name
… from partially initialized module"): issue 12 saw a vendor call fail that way inside the SDK after the
vendor had billed it. So a worker imports up front what its jobs import lazily: the vendor clients whose
key is set (with their SDKs and HTTP stacks), the budget alerts' HTTP client, and the tokenizer's
vocabulary. Dramatiq runs `before_worker_boot` in the thread that starts the worker threads, before it
starts them: in `ingest worker` processes and in the in-process workers of `ingest add` and `ingest serve`.
"""

from __future__ import annotations

import importlib

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from ingest import tokens
from ingest.config import Settings

log = structlog.get_logger(__name__)


def on_demand_modules(settings: Settings) -> list[str]:
    """The modules jobs may import lazily under these settings (a client without its key is never built)."""
    names = ["httpx"]  # costs.alerts.notify
    if settings.openai_api_key is not None:
        names += ["router.openai_real", "router.openai_batch"]
    if settings.llama_cloud_api_key is not None:
        names.append("router.llamaparse.client")
    return names


def preload(settings: Settings) -> list[str]:
    names = on_demand_modules(settings)
    for name in names:
        importlib.import_module(name)
    tokens.encoding()
    return names


class Preload(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        log.debug("modules_preloaded", modules=preload(self.settings))
