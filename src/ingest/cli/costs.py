"""`ingest costs` and `ingest budget set|show|unset`: the ledger and the limits, read from the database alone."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Annotated

import typer
from rich.table import Table

from costs import budget, ledger
from costs.money import fmt_usd, usd
from costs.prices import SERVICES
from costs.report import day_report, to_json
from ingest.cli.common import fail, handle_errors, out, session

budget_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Daily cost limits.")


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--date must be YYYY-MM-DD, not {value!r}") from None


@handle_errors
def costs(
    day: Annotated[
        str | None, typer.Option("--date", help="Budget day, YYYY-MM-DD (default: today).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Spent, reserved and limit per service for the budget day, shadow costs, and what reuse and the batch
    route saved."""
    wanted = _day(day)
    now = datetime.now(UTC)
    with session() as db:
        tz = db.settings.budget_timezone
        report = day_report(db.conn, wanted or budget.budget_day(now, tz), tz=tz, at=now)
    if as_json:
        out.print_json(json.dumps(to_json(report)))
        return
    table = Table(title=f"costs on {report.day} ({report.timezone}), USD", title_justify="left")
    for column in ("service", "spent", "reserved", "limit", "simulated"):
        table.add_column(column, justify="left" if column == "service" else "right")
    rows = [*report.services.items(), ("total", report.total)]
    for name, a in rows:
        limit = "none" if a.limit is None else fmt_usd(a.limit)
        table.add_row(name, fmt_usd(a.spent), fmt_usd(a.reserved), limit, fmt_usd(a.simulated))
    out.print(table)
    if report.stages:
        drift = Table(title="estimate against actual, settled calls", title_justify="left")
        for column in ("stage", "calls", "estimated", "actual", "drift"):
            drift.add_column(column, justify="left" if column == "stage" else "right")
        for name, s in report.stages.items():
            drift.add_row(name, str(s.calls), fmt_usd(s.estimated), fmt_usd(s.actual), fmt_usd(s.drift))
        out.print(drift)
    saved = report.saved
    if saved.chunks:
        out.print(
            f"reused {saved.chunks} embedded chunks ({saved.tokens} tokens not sent):"
            f" saved ${fmt_usd(saved.usd)}, simulated ${fmt_usd(saved.simulated_usd)}",
            markup=False,
            highlight=False,
        )
    batch = report.batch_saved
    if batch.chunks:
        out.print(
            f"batch route: {batch.chunks} chunks ({batch.tokens} tokens) at the Batch API's price:"
            f" saved ${fmt_usd(batch.usd)}, simulated ${fmt_usd(batch.simulated_usd)}",
            markup=False,
            highlight=False,
        )


def _service(service: str | None) -> str:
    if service is not None and service not in SERVICES:
        raise fail(f"unknown service {service!r}; services are {', '.join(SERVICES)}")
    return service or ledger.ALL


# A negative amount looks like an option to the parser: take it as the argument and refuse it clearly.
@budget_app.command("set", context_settings={"ignore_unknown_options": True})
@handle_errors
def budget_set(
    amount_usd: Annotated[str, typer.Argument(help="Daily limit in US dollars, e.g. 5 or 0.25.")],
    service: Annotated[
        str | None,
        typer.Option("--service", help="llamaparse or openai (default: all services together)."),
    ] = None,
) -> None:
    """Set a daily limit for one service, or for all services together."""
    if amount_usd.startswith("-"):
        raise fail(
            f"a daily budget cannot be negative ({amount_usd}); 0 stops all spending,"
            " `ingest budget unset` removes the limit"
        )
    target = _service(service)
    limit = usd(amount_usd)
    with session() as db:
        ledger.set_limit(db.conn, target, limit)
    out.print(f"{service or 'all services'}: daily limit ${fmt_usd(limit)}")


@budget_app.command("show")
@handle_errors
def budget_show(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The daily limits: per service and for all services together (none: spending is unlimited)."""
    with session() as db:
        limits = ledger.limits(db.conn)
    names = (ledger.ALL, *SERVICES)
    if as_json:
        out.print_json(json.dumps({n: None if n not in limits else fmt_usd(limits[n]) for n in names}))
        return
    for name in names:
        shown = f"${fmt_usd(limits[name])} a day" if name in limits else "no limit"
        out.print(f"{'all services' if name == ledger.ALL else name}: {shown}", markup=False, highlight=False)


@budget_app.command("unset")
@handle_errors
def budget_unset(
    service: Annotated[
        str | None,
        typer.Option("--service", help="llamaparse or openai (default: the limit of all services together)."),
    ] = None,
) -> None:
    """Remove a daily limit: that spending becomes unlimited (other limits still apply)."""
    target = _service(service)
    with session() as db:
        removed = ledger.unset_limit(db.conn, target)
    name = service or "all services"
    out.print(f"{name}: no daily limit" + ("" if removed else " (there was none)"), markup=False)
