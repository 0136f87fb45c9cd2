"""`ingest worker` (Dramatiq worker processes) and `ingest mocks serve` (the vendor stand-ins)."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Annotated

import typer

from ingest.cli.common import fail
from ingest.config import Settings


def worker(
    processes: Annotated[int, typer.Option("--processes", "-p", min=1, help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option("--threads", "-t", min=1, help="Threads per process.")] = 4,
) -> None:
    """Dramatiq workers against the configured broker (REDIS_URL or RABBITMQ_URL)."""
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
    # Dramatiq's own CLI supervises the processes (signals, graceful shutdown), behind our logging setup.
    argv = [sys.executable, "-m", "workers", "workers.process:start_worker_process"]
    argv += ["--processes", str(processes), "--threads", str(threads)]
    if settings.worker_metrics_port is not None:
        argv += ["--fork-function", "workers.process:serve_metrics"]
    # The threads above take the ingestion queue; each process delivers callbacks on threads of their own
    # (INGEST_CALLBACK_WORKER_THREADS, workers.middleware.callback_workers), so a slow receiver delays no
    # document.
    argv += ["--queues", "ingest"]
    os.execve(sys.executable, argv, env)


mocks_app = typer.Typer(no_args_is_help=True, help="Local stand-ins for the vendor APIs.")


@mocks_app.command("serve")
def mocks_serve(
    host: Annotated[str, typer.Option(help="Loopback by default: the stand-ins are for this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="One port serves both APIs.")] = 8900,
) -> None:
    """Serve the LlamaParse and OpenAI stand-ins on one port (point the *_BASE_URL variables at it)."""
    # Imported here: the other commands need neither the stand-ins nor their start-up cost.
    from mocks.server import serve

    serve(host=host, port=port)
