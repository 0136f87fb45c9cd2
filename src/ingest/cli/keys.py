"""`ingest keys create --user U [--admin]`: a new API key, printed once (only its hash is stored);
`ingest keys list` and `ingest keys revoke ID`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ingest.cli.common import err, fail, handle_errors, out, session
from ingest.store import users
from ingest.store.users import create_key, ensure_user

keys_app = typer.Typer(no_args_is_help=True, add_completion=False, help="API keys for the HTTP API.")


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
    if not user.strip():
        raise ValueError("user name must not be empty")
    with session() as db, db.conn.transaction():
        owner = ensure_user(db.conn, user, is_admin=admin)
        key = create_key(db.conn, owner)
    # The key alone on stdout, so `KEY=$(ingest keys create --user ada)` works; the note goes to stderr.
    out.print(key, markup=False, highlight=False, soft_wrap=True)
    role = "admin" if owner.is_admin else "user"
    err.print(
        f"API key for {owner.name} ({role}); shown once, only its hash is stored",
        markup=False,
        highlight=False,
    )


@keys_app.command("list")
@handle_errors
def list_keys(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every API key: its id, user, first characters and dates (the key itself is never stored)."""
    with session() as db:
        found = users.list_keys(db.conn, user=user)
    if as_json:
        out.print_json(json.dumps([_key_row(k) for k in found]))
        return
    table = Table(title=f"{len(found)} API keys", title_justify="left")
    for column in ("id", "user", "starts", "created", "revoked"):
        table.add_column(column, overflow="fold")
    for k in found:
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else ""
        table.add_row(str(k.id), k.user, f"{k.prefix}…", f"{k.created_at:%Y-%m-%d %H:%M}", revoked)
    out.print(table)


@keys_app.command("revoke")
@handle_errors
def revoke(key_id: Annotated[int, typer.Argument(help="The key's id, from `ingest keys list`.")]) -> None:
    """Revoke a key: the API refuses it from its next request."""
    with session() as db:
        key = users.revoke_key(db.conn, key_id)
    if key is None:
        raise fail(f"no API key has id {key_id}; `ingest keys list` shows them")
    out.print(f"key {key.id} of {key.user} ({key.prefix}…) revoked", markup=False, highlight=False)


def _key_row(k: users.KeyInfo) -> dict[str, object]:
    return {
        "id": k.id,
        "user": k.user,
        "prefix": k.prefix,
        "created_at": k.created_at.isoformat(),
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
    }
