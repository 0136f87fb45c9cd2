"""`ingest keys create --user U [--admin]`: a new API key, printed once (only its hash is stored)."""

from __future__ import annotations

from typing import Annotated

import typer

from ingest.cli.common import err, handle_errors, out, runtime
from ingest.store.users import create_key, ensure_user

keys_app = typer.Typer(no_args_is_help=True, help="API keys for the HTTP API.")


@keys_app.command("create")
@handle_errors
def create(
    user: Annotated[str, typer.Option("--user", help="Whose key: the user is created if new.")],
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="An operator: may switch modes, read /metrics and the readiness checks, and see every"
            " user's costs.",
        ),
    ] = False,
) -> None:
    """Print a new API key for USER. It is shown once: store it now."""
    with runtime() as rt, rt.pool.connection() as conn, conn.transaction():
        owner = ensure_user(conn, user, is_admin=admin)
        key = create_key(conn, owner)
    # The key alone on stdout, so `KEY=$(ingest keys create --user ada)` works; the note goes to stderr.
    out.print(key, markup=False, highlight=False, soft_wrap=True)
    role = "admin" if owner.is_admin else "user"
    err.print(
        f"API key for {owner.name} ({role}); shown once, only its hash is stored",
        markup=False,
        highlight=False,
    )
