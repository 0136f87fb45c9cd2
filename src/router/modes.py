"""Modes live in PostgreSQL so every process sees a change at its next job, without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg

from router.decide import Mode

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

SERVICES = ("llamaparse", "openai")


def read(conn: psycopg.Connection) -> dict[str, Mode]:
    return {service: Mode(mode) for service, mode in conn.execute("SELECT service, mode FROM router_modes")}


def write(conn: psycopg.Connection, mode: Mode, services: tuple[str, ...] = SERVICES) -> None:
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown service {sorted(unknown)[0]!r}; services are {', '.join(SERVICES)}")
    conn.execute(
        "UPDATE router_modes SET mode = %s, updated_at = now() WHERE service = ANY(%s)",
        (mode.value, list(services)),
    )


class ModeStore:
    """Reads modes with a short-lived cache: a switch is seen within `ttl_s` by every process."""

    def __init__(
        self, pool: ConnectionPool, *, ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ):
        self._pool = pool
        self._ttl_s = ttl_s
        self._clock = clock
        self._cached: dict[str, Mode] = {}
        self._read_at = float("-inf")

    def all(self) -> dict[str, Mode]:
        if self._clock() - self._read_at > self._ttl_s:
            with self._pool.connection() as conn:
                self._cached = read(conn)
            self._read_at = self._clock()
        return dict(self._cached)

    def get(self, service: str) -> Mode:
        return self.all()[service]

    def set(self, mode: Mode, services: tuple[str, ...] = SERVICES) -> None:
        with self._pool.connection() as conn:
            write(conn, mode, services)
        self._read_at = float("-inf")
