"""Re-embedding every stored chunk with another model (`ingest reembed`, `POST /v1/admin/reembed`): the
quote, the start of a run, its progress, the rollback and the drop of the previous space. The work
itself is the workers' (workers/reembed.py); the switch is one transaction (ingest/store/spaces.py)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from costs import ledger
from costs.prices import UnknownPrice
from ingest.errors import Conflict, IngestError
from ingest.store import reembed_batches as batch_inputs
from ingest.store import reembeds, spaces, vectors
from ingest.store.embedding_batches import FALLBACKS, Waiting
from ingest.store.reembeds import Run
from ingest.store.vectors import Space
from router.decide import Mode
from workers import reembed
from workers.reembed import Quote
from workers.runtime import Runtime

# pgvector indexes halfvec up to 4,000 dimensions.
MAX_DIMENSIONS = 4000


@dataclass(frozen=True, slots=True)
class Plan:
    """A run not started yet: from the active space to the target, and its quote."""

    source: Space
    target: Space
    quote: Quote
    rollback: bool


@dataclass(frozen=True, slots=True)
class Progress:
    run: Run
    source: Space
    target: Space
    done: int  # chunks of the source with their vector in the target
    total: int  # chunks in the source now (documents added meanwhile count)
    charged_usd: Decimal  # what the run's calls were charged so far
    batch: Waiting | None  # the Batch API batch a --when-cheapest run waits for (vendor id, deadline)


@dataclass(frozen=True, slots=True)
class Spaces:
    active: Space | None
    active_chunks: int
    previous: Space | None
    previous_vectors: int


def plan(rt: Runtime, model: str, dimensions: int | None) -> Plan:
    """The quote for moving every search to (model, dimensions); refuses what cannot run."""
    if not model.strip():
        raise IngestError("--model is empty")
    try:
        rt.router.meter.embed_charge(0, model=model)
    except UnknownPrice as unknown:
        raise IngestError(str(unknown)) from None
    dims = dimensions or rt.settings.openai_embedding_dimensions
    if not 1 <= dims <= MAX_DIMENSIONS:
        raise IngestError(f"--dimensions must be between 1 and {MAX_DIMENSIONS}")
    source = _source(rt)
    if (source.model, source.dimensions) == (model, dims):
        raise Conflict(f"searches already read {model}/{dims}")
    with rt.pool.connection() as conn:
        target = vectors.ensure_space(conn, model, dims, simulated=False, index_kind=rt.settings.vector_index)
    return _plan(rt, source, target, rollback=False)


def plan_rollback(rt: Runtime) -> Plan:
    source = _source(rt)
    with rt.pool.connection() as conn:
        previous_id = spaces.active(conn).previous_space_id
        previous = vectors.get_space(conn, previous_id) if previous_id is not None else None
    if previous is None:
        raise Conflict("no previous space to roll back to (none was switched from, or it was dropped)")
    return _plan(rt, source, previous, rollback=True)


def _source(rt: Runtime) -> Space:
    if rt.router.modes.get("openai") is Mode.MOCK:
        raise Conflict("the openai mode is mock: re-embedding needs the real service (ingest mode set real)")
    with rt.pool.connection() as conn:
        source = spaces.active_space(conn)
        if reembeds.building(conn) is not None:
            raise Conflict("a re-embed is already under way: see `ingest reembed --status`")
    if source is None:
        raise Conflict("no real embedding space is active yet: nothing to re-embed")
    return source


def _plan(rt: Runtime, source: Space, target: Space, *, rollback: bool) -> Plan:
    with rt.pool.connection() as conn:
        owed = reembeds.owed(conn, source, target)
        chunks = reembeds.missing_count(conn, source, target)
    return Plan(source, target, reembed.quote(rt, owed, chunks, target), rollback)


def start(rt: Runtime, planned: Plan, *, when_cheapest: bool = False, batch_fallback: str = "batch") -> Run:
    """Record the run and send its first message; the workers do the rest. `when_cheapest`: through the
    Batch API (quoted at its price); `batch_fallback`: where inputs a batch did not embed go."""
    if batch_fallback not in FALLBACKS:
        raise IngestError(f"batch fallback must be one of {', '.join(FALLBACKS)}")
    with rt.pool.connection() as conn, conn.transaction():
        active = spaces.lock(conn)
        if active.space_id != planned.source.id:
            raise Conflict("the active space changed since the quote: ask for a new one")
        if reembeds.building(conn) is not None:
            raise Conflict("a re-embed is already under way: see `ingest reembed --status`")
        run = reembeds.create(
            conn,
            planned.source,
            planned.target,
            chunks_total=reembeds.in_space(conn, planned.source),
            quoted_usd=planned.quote.batch_usd if when_cheapest else planned.quote.usd,
            rollback=planned.rollback,
            embed_route="batch" if when_cheapest else "sync",
            batch_fallback=batch_fallback,
        )
    reembed.send(run.id, run.step)
    return run


def progress(rt: Runtime, run_id: int | None = None) -> Progress | None:
    """A run's progress (default: the latest run); None when there is none."""
    with rt.pool.connection() as conn:
        run = reembeds.get(conn, run_id) if run_id is not None else reembeds.latest(conn)
        if run is None:
            return None
        source = vectors.get_space(conn, run.source_space_id)
        target = vectors.get_space(conn, run.target_space_id)
        assert source is not None and target is not None  # spaces are never deleted
        if run.status == "building":
            total = reembeds.in_space(conn, source)
            done = total - reembeds.missing_count(conn, source, target)
        else:
            total = done = run.chunks_total if run.status != "switched" else reembeds.in_space(conn, target)
        charged = ledger.charged_under(conn, f"reembed:{run.id}:")
        batch = batch_inputs.waiting(conn, run.id) if run.status == "building" else None
    return Progress(run, source, target, done, total, charged, batch)


def current(rt: Runtime) -> Spaces:
    with rt.pool.connection() as conn:
        active = spaces.active(conn)
        act = vectors.get_space(conn, active.space_id) if active.space_id is not None else None
        prev = (
            vectors.get_space(conn, active.previous_space_id)
            if active.previous_space_id is not None
            else None
        )
        return Spaces(
            act,
            reembeds.in_space(conn, act) if act else 0,
            prev,
            vectors.count(conn, prev) if prev else 0,
        )


def cancel(rt: Runtime) -> Run:
    """Stop the building run; searches keep the active space, the vectors built so far stay (a later run
    to the same space reuses them)."""
    with rt.pool.connection() as conn, conn.transaction():
        run = reembeds.building(conn)
        if run is None:
            raise Conflict("no re-embed is under way")
        reembeds.finish(conn, run.id, "cancelled")
        # Inputs not sent yet stay home; a batch already out is collected and charged as it ends.
        batch_inputs.drop_unsent(conn, run.id)
    return run


def drop_previous(rt: Runtime) -> Space:
    """Free the previous space's vectors and cache: after this, a rollback is a full re-embed."""
    with rt.pool.connection() as conn, conn.transaction():
        if reembeds.building(conn) is not None:
            raise Conflict("a re-embed is under way: drop the previous space once it has switched")
        active = spaces.lock(conn)
        previous = vectors.get_space(conn, active.previous_space_id) if active.previous_space_id else None
        if previous is None:
            raise Conflict("no previous space to drop")
        vectors.empty(conn, previous)
        spaces.forget_previous(conn)
    return previous
