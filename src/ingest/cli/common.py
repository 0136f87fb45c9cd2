"""What every command shares: its settings, its user, one database connection, and one-line errors on
stderr. Nothing here reaches the router, the broker or a vendor: a command that only reads and writes rows
starts with this alone (ingest.cli.runtime opens the whole Runtime for those that run the pipeline)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, ParamSpec, TypeVar
from uuid import UUID

import psycopg
import typer
from rich.console import Console

from ingest.config import Settings
from ingest.db.connect import database
from ingest.errors import IngestError
from ingest.logs import configure_logging, redact_value
from ingest.store.users import User, ensure_user

P = ParamSpec("P")
R = TypeVar("R")

out = Console()
err = Console(stderr=True)

# Whose documents a command acts on: --user, else INGEST_USER (environment or .env), else `local`.
UserOption = Annotated[
    str | None,
    typer.Option("--user", help="Whose documents (default: INGEST_USER, else `local`).", show_default=False),
]


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


def command_settings() -> Settings:
    """The settings, with logging set up for a command: warnings and errors only, on stderr."""
    settings = Settings()
    configure_logging(settings, interactive=sys.stderr.isatty(), quiet=True)
    return settings


def user_of(conn: psycopg.Connection, settings: Settings, name: str | None) -> User:
    """The command's user (made on first use): --user, else INGEST_USER, else `local`."""
    return ensure_user(conn, name or settings.user)


@dataclass(frozen=True, slots=True)
class Session:
    """A command's settings and its one connection. Each statement commits on its own (no transaction
    left open while the command prints); `conn.transaction()` groups the writes that go together."""

    settings: Settings
    conn: psycopg.Connection

    def user(self, name: str | None) -> User:
        return user_of(self.conn, self.settings, name)


@contextmanager
def session() -> Iterator[Session]:
    """The database alone (started or joined, migrated), for the commands that only read and write rows."""
    settings = command_settings()
    with database(settings) as conninfo, psycopg.connect(conninfo, autocommit=True) as conn:
        yield Session(settings, conn)


def short_id(value: UUID) -> str:
    """The first 8 characters of an id: what tables show, and enough to name it again."""
    return str(value)[:8]
