"""The one place that builds service clients from settings and routes each call to one of them.

Each call is decided by `router.decide.decide` from the service's mode, whether its key is set, whether
its circuit lets a call through, and whether budget is left; the decision is logged (`route_decided`,
with its reason) and counted (`ingest_route_decisions_total`). Real clients are handed out wrapped in
`router.guarded`, so every real call's outcome reaches the service's circuit breaker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog
from psycopg_pool import ConnectionPool

from costs.meter import Meter
from ingest.config import Settings
from ingest.errors import ServiceUnavailable
from ingest.store import spaces, upgrades, vectors
from router.backends import circuit_store
from router.batches import BatchClient, MockBatchClient
from router.circuit import CircuitBreaker, Outcome, Policy
from router.decide import Choice, Decision, Mode, decide
from router.embedder_mock import MockEmbedder
from router.guarded import GuardedEmbedder, GuardedParser, StandInEmbedder, outcome_of
from router.llamaparse.signal import JobSignal, job_signal
from router.metrics import ROUTE_DECISIONS
from router.modes import ModeStore
from router.parser_mock import MockParser
from router.protocols import Embedder, Parser

log = structlog.get_logger(__name__)

Client = TypeVar("Client")
# An embedding space by what makes it: (model, dimensions).
Target = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Routed(Generic[Client]):
    """A decision and, when it says real or mock, the client that serves the call."""

    decision: Decision
    client: Client | None


class ServiceRouter:
    def __init__(self, settings: Settings, pool: ConnectionPool) -> None:
        self.settings = settings
        self.modes = ModeStore(pool, ttl_s=settings.mode_cache_s)
        self.meter = Meter(settings, pool)
        self.circuits = CircuitBreaker(
            circuit_store(settings, pool),
            Policy(
                failure_threshold=settings.circuit_failure_threshold, cooldown_s=settings.circuit_cooldown_s
            ),
        )
        self._mock_parser = MockParser()
        self._mock_embedder = MockEmbedder(settings.mock_embedding_dimensions)
        self._stand_in = StandInEmbedder(self._mock_embedder)
        self._real_parser: Parser | None = None
        self._real_embedder: Embedder | None = None  # the configured model's
        self._other_embedders: dict[Target, Embedder] = {}  # models an `ingest reembed` moved to
        self._active: tuple[Target, float] | None = None  # the active space's target, and when it was read
        self._real_batches: BatchClient | None = None
        self._mock_batches = {
            kind: MockBatchClient(self._mock_embedder.model, self._mock_embedder.dimensions, kind=kind)
            for kind in ("mock", "standin")
        }
        # Worker threads asking at once build one client, and import its SDK in one thread: SDKs imported
        # concurrently can see each other half-initialized (httpx's "partially initialized module").
        self._building = threading.Lock()
        self._pool = pool
        self._signal: JobSignal | None = None

    def key_present(self, service: str) -> bool:
        key = self.settings.llama_cloud_api_key if service == "llamaparse" else self.settings.openai_api_key
        return key is not None and bool(key.get_secret_value())

    def parses_remotely(self) -> bool:
        """Whether a parse may go to LlamaParse now (real or hybrid mode, with its key): such a parse waits
        on the vendor for seconds to minutes."""
        return self.modes.get("llamaparse") is not Mode.MOCK and self.key_present("llamaparse")

    def _decide(self, service: str, budget_ok: bool | None = None) -> tuple[Mode, Decision]:
        """`budget_ok=False` re-routes a call whose reservation the budget refused (hybrid: mock)."""
        mode = self.modes.get(service)
        key_present = self.key_present(service)
        if budget_ok is None:  # mock mode never spends: no need to ask the ledger
            budget_ok = mode is Mode.MOCK or self.meter.budget_ok(service)
        # The circuit is asked only when its answer can matter: without a key or budget the choice is the
        # same either way, and asking could take a half-open circuit's one probe for a call never made.
        healthy = mode is Mode.MOCK or not (key_present and budget_ok) or self.circuits.allow(service)
        decision = decide(service, mode, key_present=key_present, healthy=healthy, budget_ok=budget_ok)
        if not healthy and (why := self.circuits.circuit(service).reason):
            # The circuit's own reason (a refused key, say) is what an operator needs to read.
            decision = Decision(decision.choice, f"{decision.reason} (last failure: {why[:200]})")
        self._announce(service, mode, decision, key_present=key_present, healthy=healthy, budget_ok=budget_ok)
        return mode, decision

    @staticmethod
    def _announce(service: str, mode: Mode, decision: Decision, **inputs: bool) -> None:
        ROUTE_DECISIONS.labels(service=service, choice=decision.choice.value).inc()
        log.info(
            "route_decided",
            service=service,
            mode=mode.value,
            choice=decision.choice.value,
            reason=decision.reason,
            **inputs,
        )

    def parser(self, *, budget_ok: bool | None = None) -> Routed[Parser]:
        _, decision = self._decide("llamaparse", budget_ok)
        if decision.choice is Choice.MOCK:
            return Routed(decision, self._mock_parser)
        if decision.choice is Choice.REAL:
            return Routed(decision, GuardedParser(self.real_parser(), "llamaparse", self.circuits))
        return Routed(decision, None)

    def target(self, *, fresh: bool = False) -> Target:
        """The real model and dimensions: the active space's (ingest/store/spaces.py), read at most every
        `mode_cache_s` unless `fresh`; the configured ones until a first real vector makes a space active."""
        now = time.monotonic()
        if fresh or self._active is None or now - self._active[1] > self.settings.mode_cache_s:
            with self._pool.connection() as conn:
                space = spaces.active_space(conn)
            target = (
                (space.model, space.dimensions)
                if space is not None
                else (self.settings.openai_embedding_model, self.settings.openai_embedding_dimensions)
            )
            self._active = (target, now)
        return self._active[0]

    def embedder(self, *, budget_ok: bool | None = None, target: Target | None = None) -> Routed[Embedder]:
        """The client for one embedding call; a real one embeds into `target` (default: the active space)."""
        mode, decision = self._decide("openai", budget_ok)
        if decision.choice is Choice.MOCK:
            # In hybrid the mock stands in for the real embedder: its vectors wait for upgrade.
            return Routed(decision, self._stand_in if mode is Mode.HYBRID else self._mock_embedder)
        if decision.choice is Choice.REAL:
            real = self.real_embedder(target or self.target())
            return Routed(decision, GuardedEmbedder(real, "openai", self.circuits))
        return Routed(decision, None)

    def batch_client(self) -> Routed[BatchClient]:
        """The client a new embedding batch goes to, decided as an embedding call is: the Batch API in real
        mode (and in hybrid while the service can serve), the mock batch client otherwise."""
        mode, decision = self._decide("openai")
        if decision.choice is Choice.MOCK:
            return Routed(decision, self._mock_batches["standin" if mode is Mode.HYBRID else "mock"])
        if decision.choice is Choice.REAL:
            return Routed(decision, self.real_batches())
        return Routed(decision, None)

    def batch_target(self, client: BatchClient) -> Target:
        """The space a new batch of `client` embeds for: the active space, read now (a batch waits hours,
        so a cached answer saves nothing), for the real client; the mock space for the mock ones."""
        if client.kind == "real":
            return self.target(fresh=True)
        return self._mock_embedder.model, self._mock_embedder.dimensions

    def batch_client_of(self, kind: str) -> BatchClient:
        """The client that made a batch of `kind`, to follow it up."""
        return self.real_batches() if kind == "real" else self._mock_batches[kind]

    def real_batches(self) -> BatchClient:
        with self._building:
            if self._real_batches is None:
                from router.openai_batch import OpenAIBatchClient

                self._real_batches = OpenAIBatchClient(self.settings)
            return self._real_batches

    def _fallback(self, service: str, failed: BaseException) -> Decision | None:
        """In hybrid, a real call that failed for the service's sake (down, retries spent, key or quota
        refused) is served by the mock instead; None where the failure must stand (other modes, bad input)."""
        mode = self.modes.get(service)
        if mode is not Mode.HYBRID or outcome_of(failed) not in (Outcome.FAILURE, Outcome.FATAL):
            return None
        decision = Decision(Choice.MOCK, f"hybrid: the real call failed, using mock ({str(failed)[:200]})")
        self._announce(service, mode, decision)
        return decision

    def parse_fallback(self, failed: BaseException) -> Routed[Parser] | None:
        decision = self._fallback("llamaparse", failed)
        return None if decision is None else Routed(decision, self._mock_parser)

    def embed_fallback(self, failed: BaseException) -> Routed[Embedder] | None:
        decision = self._fallback("openai", failed)
        return None if decision is None else Routed(decision, self._stand_in)

    def search_embedder(self) -> Embedder:
        """The embedder of the one space a search reads (docs/architecture.md, "Router"):

        - `mock`: the mock space.
        - `real`: the real space; when the real embedder cannot embed the query (no key, circuit open)
          the search fails with the reason, never silently reads another space.
        - `hybrid`: the real space when it holds vectors and the real embedder can embed the query now;
          otherwise the mock space (where hybrid put what it embedded while the service was away).

        A spent budget defers new documents, not searches: the query's embedding is not held to it.
        """
        mode = self.modes.get("openai")
        if mode is Mode.MOCK or (mode is Mode.HYBRID and not self._real_space_filled()):
            return self._mock_embedder
        routed = self.embedder(budget_ok=True)
        if routed.decision.choice is Choice.REAL and routed.client is not None:
            return routed.client
        if mode is Mode.HYBRID:
            return self._mock_embedder
        raise ServiceUnavailable(f"search: {routed.decision.reason}")

    def _real_space_filled(self) -> bool:
        with self._pool.connection() as conn:
            space = vectors.find_space(conn, *self.target())
            return space is not None and upgrades.space_in_use(conn, space)

    def real_parser(self) -> Parser:
        with self._building:
            if self._real_parser is None:
                # Imported here: only a process that calls the real vendor loads its SDK.
                from router.llamaparse.client import LlamaParseParser

                # With a public URL, LlamaParse calls our webhook: the worker waits for that, not a poll
                # timer.
                waiter = self.llamaparse_signal().wait if self.settings.public_url else None
                self._real_parser = LlamaParseParser(self.settings, waiter=waiter)
            return self._real_parser

    def llamaparse_signal(self) -> JobSignal:
        """The webhook endpoint's `notify(job_id)` wakes the worker whose parser `wait`s on that job."""
        if self._signal is None:
            self._signal = job_signal(self.settings, self._pool)
        return self._signal

    def real_embedder(self, target: Target | None = None) -> Embedder:
        """The real client of `target` (default: the configured model and dimensions)."""
        configured = (self.settings.openai_embedding_model, self.settings.openai_embedding_dimensions)
        with self._building:
            # Imported here: only a process that calls the real vendor loads its SDK.
            from router.openai_real import OpenAIEmbedder

            if target is None or target == configured:
                if self._real_embedder is None:
                    self._real_embedder = OpenAIEmbedder(self.settings)
                return self._real_embedder
            if target not in self._other_embedders:
                model, dimensions = target
                settings = self.settings.model_copy(
                    update={"openai_embedding_model": model, "openai_embedding_dimensions": dimensions}
                )
                self._other_embedders[target] = OpenAIEmbedder(settings)
            return self._other_embedders[target]

    def close(self) -> None:
        clients = (self._real_parser, self._real_embedder, self._real_batches, self._signal)
        for client in (*clients, *self._other_embedders.values()):
            close = getattr(client, "close", None)
            if close is not None:
                close()
