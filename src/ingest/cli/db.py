"""`ingest db migrate` and `ingest db shell` (psql on the configured database, the embedded one included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import typer
from psycopg.conninfo import conninfo_to_dict

from ingest.cli.common import fail, handle_errors, out
from ingest.config import Settings
from ingest.db import embedded, migrate

LIBPQ_VARIABLES = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE",
}

db_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Database: schema migrations and a SQL shell."
)


@db_app.command("migrate")
@handle_errors
def db_migrate() -> None:
    """Apply schema migrations (also applied on start)."""
    settings = Settings()
    if settings.database_url:
        applied = migrate.apply(settings.database_url)
    else:
        with embedded.hold(settings.pgdata_dir) as conninfo:
            applied = migrate.apply(conninfo)
    out.print(f"applied {', '.join(map(str, applied))}" if applied else "schema is up to date")


def libpq_env(conninfo: str) -> dict[str, str]:
    """The connection as libpq's variables: a password never shows in the process list."""
    env = dict(os.environ)
    for key, value in conninfo_to_dict(conninfo).items():
        if key in LIBPQ_VARIABLES and value is not None:
            env[LIBPQ_VARIABLES[key]] = str(value)
    return env


def find_psql() -> Path | None:
    """The embedded server's own psql (same version), else the first on PATH."""
    found = embedded.psql_path()
    if found is None and (on_path := shutil.which("psql")):
        found = Path(on_path)
    return found


@db_app.command("shell", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@handle_errors
def shell(ctx: typer.Context) -> None:
    """psql on the configured database (DATABASE_URL, else the embedded one, started for the session).
    Arguments after the command go to psql, e.g. `ingest db shell -c "SELECT count(*) FROM documents"`."""
    psql = find_psql()
    if psql is None:
        raise fail("psql was not found: the embedded server ships none here and none is on PATH")
    settings = Settings()
    sys.stdout.flush()
    if settings.database_url:
        code = subprocess.call([str(psql), *ctx.args], env=libpq_env(settings.database_url))
    else:
        # The server is held while psql runs, and let go (stopped, if no one else holds it) after.
        with embedded.hold(settings.pgdata_dir) as conninfo:
            code = subprocess.call([str(psql), *ctx.args], env=libpq_env(conninfo))
    if code:
        raise typer.Exit(code)
