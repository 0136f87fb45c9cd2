"""`ingest worker` (Dramatiq worker processes) and `ingest mocks serve` (the vendor stand-ins)."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Annotated

import typer

from ingest.cli.common import fail
from ingest.config import Settings
from ingest.logs import configure_logging
from workers.supervisor import supervise, worker_commands


def worker(
    processes: Annotated[int, typer.Option("--processes", "-p", min=1, help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option("--threads", "-t", min=1, help="Threads per process.")] = 4,
) -> None:
    """Dramatiq workers against the broker (REDIS_URL or RABBITMQ_URL); one that dies is restarted."""
    settings = Settings()
    if settings.broker_url is None:
        raise fail(
            "ingest worker needs REDIS_URL or RABBITMQ_URL; without a broker, jobs run inside `ingest add`"
            " and `ingest serve`"
        )
    env = dict(os.environ)
    if settings.log_format == "auto":
        # The worker processes write to a pipe, never a terminal: decide here, where the terminal is seen.
        env["INGEST_LOG_FORMAT"] = "console" if sys.stderr.isatty() else "json"
    if settings.worker_metrics_port is not None and "PROMETHEUS_MULTIPROC_DIR" not in env:
        # Every process writes its metrics here and one serves their sum (workers.middleware.metrics). Set before
        # any process imports prometheus_client; a fresh folder, so no earlier run's counters are added.
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ingest-worker-metrics-")
    # Each process takes from the broker only as many messages as it has threads: every message it holds
    # is then one at work, under a lease (workers.leasing) that a sweep re-sends within seconds should the
    # process die or freeze; a message merely waiting in a dead process would wait for the broker instead.
    env.setdefault("dramatiq_queue_prefetch", str(threads))
    # One Dramatiq command per process (signals, graceful shutdown, our logging), each restarted if it dies.
    configure_logging(settings, interactive=sys.stderr.isatty())
    commands = worker_commands(
        processes,
        threads,
        env,
        serve_metrics=settings.worker_metrics_port is not None,
        callback_threads=settings.callback_worker_threads,
    )
    raise typer.Exit(supervise(commands))


mocks_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Local stand-ins for the vendor APIs."
)


@mocks_app.command("serve")
def mocks_serve(
    host: Annotated[
        str, typer.Option(help="Loopback by default: the stand-ins are for this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="One port serves both APIs.")] = 8900,
) -> None:
    """Serve the LlamaParse and OpenAI stand-ins on one port (point the *_BASE_URL variables at it)."""
    # Imported here: the other commands need neither the stand-ins nor their start-up cost.
    from mocks.server import serve

    serve(host=host, port=port)
