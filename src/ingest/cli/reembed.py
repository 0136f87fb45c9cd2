"""`ingest reembed`: move every search to another embedding model (or dimensions) without downtime."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from costs.money import ZERO, fmt_usd
from ingest.cli.add import BatchFallback
from ingest.cli.common import err, fail, handle_errors, out
from ingest.cli.runtime import runtime
from ingest.services import reembed as service
from ingest.store.vectors import Space
from workers.runtime import Runtime

# Progress counts the source's chunks against the target's vectors: a look a second is plenty.
POLL_S = 1.0


def _name(space: Space | None) -> str:
    return "none" if space is None else f"{space.model}/{space.dimensions}"


def say(text: str) -> None:
    # One line however long: operators grep these.
    out.print(text, soft_wrap=True, highlight=False, markup=False)


def _show_plan(rt: Runtime, planned: service.Plan, *, when_cheapest: bool) -> None:
    q = planned.quote
    verb = "roll back" if planned.rollback else "re-embed"
    say(f"{verb}: {_name(planned.source)} -> {_name(planned.target)}")
    say(
        f"  {q.chunks} chunks to give a vector ({q.texts} distinct texts, {q.cached_texts} from the cache),"
        f" {q.tokens} tokens to pay for: ${fmt_usd(q.usd)}"
    )
    chosen = "  <- this run (--when-cheapest)" if when_cheapest else ""
    say(f"  through the Batch API (--when-cheapest, within 24 hours): ${fmt_usd(q.batch_usd)}{chosen}")
    amounts = rt.router.meter.report().services.get("openai")
    if amounts is not None and amounts.limit is not None:
        left = max(ZERO, amounts.limit - amounts.spent - amounts.reserved)
        say(f"  openai budget left today: ${fmt_usd(left)}")
        if (q.batch_usd if when_cheapest else q.usd) > left:
            say("  more than is left today: the run waits for the next budget day when it runs out")


def _follow(rt: Runtime, run_id: int, *, wait: bool) -> service.Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("chunks", total=None)
        while True:
            now = service.progress(rt, run_id)
            assert now is not None
            note = f" (waiting: {now.run.waiting_reason})" if now.run.waiting_reason else ""
            if now.batch is not None and now.batch.vendor_batch_id is not None:
                note = f" (waiting for batch {now.batch.vendor_batch_id})"
            bar.update(
                task,
                completed=now.done,
                total=now.total or None,
                description=f"chunks, ${fmt_usd(now.charged_usd)} charged{note}"[:120],
            )
            if now.run.status != "building" or not wait:
                return now
            time.sleep(POLL_S)


def _status(rt: Runtime) -> None:
    now = service.current(rt)
    say(f"active space: {_name(now.active)} ({now.active_chunks} chunks)")
    if now.previous is not None:
        say(
            f"previous space: {_name(now.previous)} ({now.previous_vectors} vectors kept;"
            " --rollback returns to it, --drop-previous frees it)"
        )
    last = service.progress(rt)
    if last is None:
        say("no re-embed has run")
        return
    run = last.run
    kind = "rollback" if run.rollback else "re-embed"
    say(
        f"last {kind} #{run.id}: {_name(last.source)} -> {_name(last.target)}, {run.status},"
        f" {last.done}/{last.total} chunks, ${fmt_usd(last.charged_usd)} charged"
        f" (quoted ${fmt_usd(run.quoted_usd)})"
    )
    if run.embed_route == "batch" and run.status == "building":
        say(_batch_line(last))
    elif run.status == "building" and run.waiting_reason:
        say(f"  waiting: {run.waiting_reason}")
    elif run.status == "failed" and run.waiting_reason:
        say(f"  failed: {run.waiting_reason}")


def _batch_line(now: service.Progress) -> str:
    """Where a --when-cheapest run stands: the batch it waits for (id, deadline), or why none is out."""
    batch, why = now.batch, now.run.waiting_reason
    if batch is not None and batch.vendor_batch_id is not None:
        deadline = f"{batch.expires_at:%Y-%m-%d %H:%M:%S %Z}" if batch.expires_at else "unknown"
        return f"  waiting for batch {batch.vendor_batch_id} (deadline {deadline})"
    if batch is not None:
        return f"  waiting for batch (being sent{': ' + why if why and why != 'waiting for batch' else ''})"
    return "  through the Batch API (--when-cheapest): no input waits for a batch now"


@handle_errors
def reembed(
    model: Annotated[
        str | None, typer.Option("--model", help="The embedding model to move every search to.")
    ] = None,
    dimensions: Annotated[
        int | None,
        typer.Option("--dimensions", help="Its dimensions (default: INGEST_OPENAI_EMBEDDING_DIMENSIONS)."),
    ] = None,
    estimate: Annotated[bool, typer.Option("--estimate", help="Print the quote and start nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking after the quote.")] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the run until it switches (else return at once).")
    ] = True,
    status: Annotated[bool, typer.Option("--status", help="The active space and the last run.")] = False,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Move every search back to the previous space.")
    ] = False,
    drop_previous: Annotated[
        bool, typer.Option("--drop-previous", help="Free the previous space (no rollback after).")
    ] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="Stop the run under way; searches stay.")] = False,
    when_cheapest: Annotated[
        bool,
        typer.Option(
            "--when-cheapest",
            help="Embed through OpenAI's Batch API: half the price, done within 24 hours (searches keep"
            " the active space meanwhile).",
        ),
    ] = False,
    batch_fallback: Annotated[
        BatchFallback,
        typer.Option(
            "--batch-fallback",
            help="What --when-cheapest does with inputs a batch did not embed (expired, failed lines): send"
            " them in a later batch, or embed them now at the full price.",
        ),
    ] = BatchFallback.batch,
) -> None:
    """Re-embed every stored chunk with another model, then switch every search to it at once."""
    actions = [model is not None, status, rollback, drop_previous, cancel]
    if sum(actions) != 1:
        raise fail("give exactly one of --model, --status, --rollback, --drop-previous, --cancel")
    if dimensions is not None and model is None:
        raise fail("--dimensions goes with --model")
    if when_cheapest and not (model is not None or rollback):
        raise fail("--when-cheapest goes with --model or --rollback")
    with runtime(workers=wait and (model is not None or rollback)) as rt:
        if status:
            _status(rt)
            return
        if cancel:
            run = service.cancel(rt)
            say(f"re-embed #{run.id} cancelled; searches stay on the active space")
            return
        if drop_previous:
            dropped = service.drop_previous(rt)
            say(f"dropped the vectors of {_name(dropped)}")
            return
        planned = service.plan_rollback(rt) if rollback else service.plan(rt, model or "", dimensions)
        _show_plan(rt, planned, when_cheapest=when_cheapest)
        if estimate:
            return
        if not yes and not typer.confirm("start?", default=False):
            raise typer.Exit(1)
        run = service.start(rt, planned, when_cheapest=when_cheapest, batch_fallback=batch_fallback.value)
        say(f"re-embed #{run.id} started" + (" through the Batch API" if when_cheapest else ""))
        if not wait and rt.settings.broker_url is None:
            # In-process, the run's message lives in this process: a sweep of the next process with
            # workers picks the run up once it has been idle for INGEST_REQUEUE_IDLE_S.
            say("no broker: the run goes on in the next `ingest serve` or `ingest add` that runs workers")
        ended = _follow(rt, run.id, wait=wait)
    if ended.run.status == "switched":
        say(f"every search now reads {_name(planned.target)}")
    elif wait:
        why = (
            f": {ended.run.waiting_reason}"
            if ended.run.status == "failed" and ended.run.waiting_reason
            else ""
        )
        raise fail(f"re-embed #{run.id} ended {ended.run.status}{why}")
