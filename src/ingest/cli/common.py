"""What every command shares: the runtime, the user, and one-line errors on stderr."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from ingest.config import Settings
from ingest.errors import IngestError
from ingest.logs import configure_logging, redact_value
from ingest.store.users import User, ensure_user
from workers.inprocess import serving
from workers.process import start_broker
from workers.runtime import Runtime

P = ParamSpec("P")
R = TypeVar("R")

out = Console()
err = Console(stderr=True)
DEFAULT_USER = "local"


def fail(message: str, code: int = 1) -> typer.Exit:
    # One line however long (rich would wrap it at the console's width), and no secret in it: a settings
    # error quotes the values it was given.
    err.print(f"error: {redact_value(message)}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Any error a user can cause ends the command with one clear line on stderr and a non-zero exit."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except IngestError as exc:
            raise fail(str(exc)) from None
        except (ValueError, OSError) as exc:
            raise fail(" ".join(str(exc).split()) or type(exc).__name__) from None

    return wrapper


@contextmanager
def runtime(*, workers: bool = False) -> Iterator[Runtime]:
    """Open the runtime; with `workers`, also run the actors in this process when no broker is set."""
    settings = Settings()
    configure_logging(settings, interactive=sys.stderr.isatty(), quiet=True)
    with Runtime.open(settings) as rt:
        if not workers:
            start_broker(settings)  # what a command sends (a retry) goes to the configured broker
            yield rt
            return
        with serving(rt, threads=settings.worker_threads):
            yield rt


def cli_user(rt: Runtime, name: str) -> User:
    with rt.pool.connection() as conn:
        return ensure_user(conn, name)
