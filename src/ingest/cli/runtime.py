"""The whole Runtime (pool, blob store, service router), for the commands that run the pipeline, reach a
vendor or the broker: `add`, `search`, `retry`, `health`, `reembed`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ingest.cli.common import command_settings, user_of
from ingest.store.users import User
from workers.inprocess import serving
from workers.process import start_broker
from workers.runtime import Runtime


@contextmanager
def runtime(*, workers: bool = False) -> Iterator[Runtime]:
    """Open the runtime; with `workers`, also run the actors in this process when no broker is set."""
    settings = command_settings()
    with Runtime.open(settings) as rt:
        if not workers:
            start_broker(settings)  # what a command sends (a retry) goes to the configured broker
            yield rt
            return
        with serving(rt, threads=settings.worker_threads):
            yield rt


def cli_user(rt: Runtime, name: str | None) -> User:
    with rt.pool.connection() as conn:
        return user_of(conn, rt.settings, name)
