"""Job leases, the pure part: who owns a lease, when it has lapsed, which leases a sweep re-sends, and
the leases this process holds now.

A lease is held on a *unit* of a job's work: its parse, one embedding batch, or (in-process only) a
message waiting in this process's memory. The unit is a plain string, so a later unit of work (a batch
of several documents) can be leased the same way. The SQL is in `ingest.store.leases`; the worker side
(taking, fencing, renewing) in `workers.leasing`, the heartbeat and the sweep in `workers.middleware`.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

PARSE = "parse"
QUEUED = "queued"
EMBED_PREFIX = "embed:"


def embed_unit(first: int, last: int) -> str:
    return f"{EMBED_PREFIX}{first}-{last}"


# --- owners --------------------------------------------------------------------------------------------
def new_owner(host: str | None = None, pid: int | None = None) -> str:
    """A process's owner id, 'host:pid:token'. The token tells apart two processes that got the same pid
    (a restarted container runs as the same pid every time)."""
    return f"{host or socket.gethostname()}:{pid or os.getpid()}:{secrets.token_hex(4)}"


def owner_process(owner: str) -> tuple[str, int] | None:
    """(host, pid) of an owner id; None when it is not one."""
    rest, _, _token = owner.rpartition(":")
    host, _, pid = rest.rpartition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def dead_owners(owners: Iterable[str], *, host: str, alive: Callable[[int], bool]) -> set[str]:
    """The owners that are processes of `host` no longer running. Another host's processes are judged
    by their leases' expiry alone."""
    dead = set()
    for owner in owners:
        process = owner_process(owner)
        if process is not None and process[0] == host and not alive(process[1]):
            dead.add(owner)
    return dead


# --- decisions -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LeaseState:
    """A lease row as the decisions see it."""

    job_id: UUID
    unit: str
    owner: str | None  # None: re-sent by a sweep, not taken yet
    generation: int
    renewed_at: datetime
    expires_at: datetime


def lapsed(lease: LeaseState, *, now: datetime, dead: set[str]) -> bool:
    """Past its expiry (its owner stopped renewing it: dead, frozen, or cut off), or held by a process of
    this host that is gone (known at once, without waiting for the expiry)."""
    return lease.expires_at <= now or (lease.owner is not None and lease.owner in dead)


def may_take(lease: LeaseState | None, *, me: str, mine_now: bool, now: datetime, dead: set[str]) -> bool:
    """Whether this process may take the unit. Free, re-sent by a sweep or lapsed: yes. Held by another
    live process: no, it is at work. Held by this process: only when no thread of it holds it now (a
    lease this process failed to give back); a second thread on the same unit would double the work."""
    if lease is None or lease.owner is None or lapsed(lease, now=now, dead=dead):
        return True
    return lease.owner == me and not mine_now


def to_resend(leases: Iterable[LeaseState], *, now: datetime, dead: set[str]) -> list[LeaseState]:
    """The leases a sweep re-sends: every lapsed one, whether its owner died, froze, or its re-sent
    message was lost again (a re-sent lease lapses one lease period after the re-send)."""
    return [lease for lease in leases if lapsed(lease, now=now, dead=dead)]


# --- what this process holds ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Lease:
    """What a holder carries: the unit it took and the generation its writes are fenced with."""

    job_id: UUID
    unit: str
    owner: str
    generation: int

    @property
    def token(self) -> str:
        """Marks what this holder reserved in the cost ledger: unit and generation, since a batch embeds a
        document's chunks under its parse lease and a redo may embed the same chunks under an embed lease
        (each unit's generations count from 1)."""
        return f"{self.unit}#{self.generation}"


class HeldLeases:
    """The leases this process holds right now, for its heartbeat to renew. One per process, built with
    its Runtime; worker threads add and remove under a lock."""

    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner or new_owner()
        self._held: dict[tuple[UUID, str], Lease] = {}
        self._lock = threading.Lock()

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._held[(lease.job_id, lease.unit)] = lease

    def discard(self, job_id: UUID, unit: str) -> None:
        with self._lock:
            self._held.pop((job_id, unit), None)

    def holds(self, job_id: UUID, unit: str) -> bool:
        with self._lock:
            return (job_id, unit) in self._held

    def snapshot(self) -> list[Lease]:
        with self._lock:
            return list(self._held.values())
