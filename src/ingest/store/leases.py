"""Job leases in SQL (table `job_leases`): take, renew, fence, give back, re-send. Callers own transactions;
the decisions (lapsed? may this process take it?) are the pure functions of `ingest.leases`, fed with
the database's clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from ingest.db.rows import scalar
from ingest.leases import Lease, LeaseState

COLUMNS = "job_id, unit, owner, generation, renewed_at, expires_at"


def _cur(conn: psycopg.Connection) -> psycopg.Cursor[LeaseState]:
    return conn.cursor(row_factory=class_row(LeaseState))


def db_now(conn: psycopg.Connection) -> datetime:
    """The database's clock: every expiry is written with it, so every decision reads it too."""
    now: datetime = scalar(conn.execute("SELECT now()"))
    return now


def lock(conn: psycopg.Connection, job_id: UUID, unit: str) -> LeaseState | None:
    """The unit's lease, locked until the transaction ends (takers of one unit take turns)."""
    return (
        _cur(conn)
        .execute(
            f"SELECT {COLUMNS} FROM job_leases WHERE job_id = %s AND unit = %s FOR UPDATE", (job_id, unit)
        )
        .fetchone()
    )


def put(
    conn: psycopg.Connection, job_id: UUID, unit: str, owner: str, lease_s: float, *, seen: int | None
) -> Lease | None:
    """Take the unit for `owner` with the next generation, after `lock` showed generation `seen` (None:
    no lease yet) and the decision was yes. None when a concurrent taker of a new unit inserted first."""
    row = conn.execute(
        "INSERT INTO job_leases (job_id, unit, owner, expires_at)"
        " VALUES (%(job)s, %(unit)s, %(owner)s, now() + make_interval(secs => %(lease)s))"
        " ON CONFLICT (job_id, unit) DO UPDATE SET owner = EXCLUDED.owner,"
        "  generation = job_leases.generation + 1, taken_at = now(), renewed_at = now(),"
        "  expires_at = EXCLUDED.expires_at"
        "  WHERE job_leases.generation = %(seen)s"
        " RETURNING generation",
        {"job": job_id, "unit": unit, "owner": owner, "lease": lease_s, "seen": seen},
    ).fetchone()
    return Lease(job_id, unit, owner, row[0]) if row is not None else None


def lock_many(conn: psycopg.Connection, job_ids: Sequence[UUID], unit: str) -> dict[UUID, LeaseState]:
    """`lock` for many jobs' `unit`, in one order: the leases that exist."""
    rows = _cur(conn).execute(
        f"SELECT {COLUMNS} FROM job_leases WHERE job_id = ANY(%s) AND unit = %s ORDER BY job_id FOR UPDATE",
        (list(job_ids), unit),
    )
    return {lease.job_id: lease for lease in rows}


def put_many(
    conn: psycopg.Connection, seen: Mapping[UUID, int | None], unit: str, owner: str, lease_s: float
) -> list[Lease]:
    """`put` for many jobs in one statement, job -> the generation `lock_many` showed (None: no lease);
    the leases taken (a job deleted meanwhile, or whose new unit a concurrent taker inserted, is not)."""
    if not seen:
        return []
    rows = conn.execute(
        "INSERT INTO job_leases (job_id, unit, owner, generation, expires_at)"
        " SELECT r.job_id, %(unit)s, %(owner)s, coalesce(r.seen, 0) + 1, now() + make_interval(secs => %(lease)s)"
        " FROM unnest(%(jobs)s::uuid[], %(seen)s::bigint[]) AS r(job_id, seen) JOIN jobs j ON j.id = r.job_id"
        " ORDER BY r.job_id"
        " ON CONFLICT (job_id, unit) DO UPDATE SET owner = EXCLUDED.owner,"
        "  generation = EXCLUDED.generation, taken_at = now(), renewed_at = now(),"
        "  expires_at = EXCLUDED.expires_at"
        "  WHERE job_leases.generation = EXCLUDED.generation - 1"  # still the one seen (a new unit: never)
        " RETURNING job_id, generation",
        {"unit": unit, "owner": owner, "lease": lease_s, "jobs": list(seen), "seen": list(seen.values())},
    ).fetchall()
    return [Lease(job_id, unit, owner, generation) for job_id, generation in rows]


def put_over(conn: psycopg.Connection, job_id: UUID, unit: str, owner: str, lease_s: float) -> Lease:
    """Take the unit for `owner` whoever held it (a message this process has just sent holds its job)."""
    generation = scalar(
        conn.execute(
            "INSERT INTO job_leases (job_id, unit, owner, expires_at)"
            " VALUES (%(job)s, %(unit)s, %(owner)s, now() + make_interval(secs => %(lease)s))"
            " ON CONFLICT (job_id, unit) DO UPDATE SET owner = EXCLUDED.owner,"
            "  generation = job_leases.generation + 1, taken_at = now(), renewed_at = now(),"
            "  expires_at = EXCLUDED.expires_at"
            " RETURNING generation",
            {"job": job_id, "unit": unit, "owner": owner, "lease": lease_s},
        )
    )
    return Lease(job_id, unit, owner, generation)


def holds(conn: psycopg.Connection, lease: Lease) -> bool:
    """Whether `lease` is still the unit's current one. The row stays share-locked until the transaction
    ends, so no one takes the unit over between this check and the writes it guards."""
    row = conn.execute(
        "SELECT 1 FROM job_leases WHERE job_id = %s AND unit = %s AND owner = %s AND generation = %s"
        " FOR SHARE",
        (lease.job_id, lease.unit, lease.owner, lease.generation),
    ).fetchone()
    return row is not None


def renew(conn: psycopg.Connection, owner: str, held: list[Lease], lease_s: float) -> int:
    """Push back the expiry of every lease in `held` that is still the owner's (one statement); return
    how many were. A lease a transaction has locked right now (a batch fencing or taking several) is
    skipped until the next beat: waiting for it while holding others could deadlock with that transaction."""
    if not held:
        return 0
    cur = conn.execute(
        "WITH h AS (SELECT l.job_id, l.unit FROM job_leases l"
        " JOIN unnest(%(jobs)s::uuid[], %(units)s::text[], %(gens)s::bigint[]) AS h(job_id, unit, generation)"
        " ON l.job_id = h.job_id AND l.unit = h.unit AND l.generation = h.generation"
        " WHERE l.owner = %(owner)s ORDER BY l.job_id, l.unit FOR UPDATE OF l SKIP LOCKED)"
        " UPDATE job_leases l SET expires_at = now() + make_interval(secs => %(lease)s), renewed_at = now()"
        " FROM h WHERE l.job_id = h.job_id AND l.unit = h.unit",
        {
            "lease": lease_s,
            "owner": owner,
            "jobs": [lease.job_id for lease in held],
            "units": [lease.unit for lease in held],
            "gens": [lease.generation for lease in held],
        },
    )
    return cur.rowcount


def release(conn: psycopg.Connection, *leases: Lease) -> None:
    """The units are done (or given up to Dramatiq's retries): each lease goes, if it is still this one."""
    if not leases:
        return
    conn.execute(
        "DELETE FROM job_leases l USING unnest(%s::uuid[], %s::text[], %s::text[], %s::bigint[])"
        " AS r(job_id, unit, owner, generation) WHERE (l.job_id, l.unit, l.owner, l.generation)"
        " = (r.job_id, r.unit, r.owner, r.generation)",
        (
            [lease.job_id for lease in leases],
            [lease.unit for lease in leases],
            [lease.owner for lease in leases],
            [lease.generation for lease in leases],
        ),
    )


def drop(conn: psycopg.Connection, job_id: UUID | Sequence[UUID], unit: str) -> None:
    """Delete the jobs' lease on `unit`, whoever holds it."""
    ids = [job_id] if isinstance(job_id, UUID) else list(job_id)
    conn.execute("DELETE FROM job_leases WHERE job_id = ANY(%s) AND unit = %s", (ids, unit))


def expire(conn: psycopg.Connection, owner: str) -> int:
    """The owner stops: its leases lapse now, for the next sweep, on any host, to re-send at once."""
    return conn.execute(
        "UPDATE job_leases SET expires_at = now() WHERE owner = %s AND expires_at > now()", (owner,)
    ).rowcount


def sweepable(conn: psycopg.Connection) -> list[LeaseState]:
    """Every lease, locked for the sweep; one a taker has locked is skipped (it is being taken)."""
    return _cur(conn).execute(f"SELECT {COLUMNS} FROM job_leases FOR UPDATE SKIP LOCKED").fetchall()


def mark_resent(conn: psycopg.Connection, leases: list[LeaseState], lease_s: float) -> list[LeaseState]:
    """A sweep re-sends these: no owner, the next generation (its old holder is fenced from now on), and
    one lease period for a worker to take the message before it counts as lost again."""
    if not leases:
        return []
    return (
        _cur(conn)
        .execute(
            f"UPDATE job_leases l SET owner = NULL, generation = l.generation + 1,"
            f" expires_at = now() + make_interval(secs => %(lease)s)"
            f" FROM unnest(%(jobs)s::uuid[], %(units)s::text[], %(gens)s::bigint[])"
            f" AS s(job_id, unit, generation)"
            f" WHERE l.job_id = s.job_id AND l.unit = s.unit AND l.generation = s.generation"
            f" RETURNING {', '.join('l.' + c.strip() for c in COLUMNS.split(','))}",
            {
                "lease": lease_s,
                "jobs": [lease.job_id for lease in leases],
                "units": [lease.unit for lease in leases],
                "gens": [lease.generation for lease in leases],
            },
        )
        .fetchall()
    )


def of_job(conn: psycopg.Connection, job_id: UUID) -> list[LeaseState]:
    return (
        _cur(conn)
        .execute(f"SELECT {COLUMNS} FROM job_leases WHERE job_id = %s ORDER BY unit", (job_id,))
        .fetchall()
    )


def of_jobs(conn: psycopg.Connection, job_ids: list[UUID]) -> dict[UUID, list[LeaseState]]:
    found: dict[UUID, list[LeaseState]] = {job_id: [] for job_id in job_ids}
    rows = _cur(conn).execute(
        f"SELECT {COLUMNS} FROM job_leases WHERE job_id = ANY(%s) ORDER BY job_id, unit", (job_ids,)
    )
    for lease in rows:
        found[lease.job_id].append(lease)
    return found


def holding(conn: psycopg.Connection, leases: Sequence[Lease]) -> set[UUID]:
    """`holds` for many leases in one statement: the jobs whose lease is still the current one, each row
    share-locked until the transaction ends."""
    if not leases:
        return set()
    rows = conn.execute(
        "SELECT l.job_id FROM job_leases l"
        " JOIN unnest(%s::uuid[], %s::text[], %s::text[], %s::bigint[]) AS r(job_id, unit, owner, generation)"
        " ON (l.job_id, l.unit, l.owner, l.generation) = (r.job_id, r.unit, r.owner, r.generation)"
        " ORDER BY l.job_id FOR SHARE OF l",
        (
            [lease.job_id for lease in leases],
            [lease.unit for lease in leases],
            [lease.owner for lease in leases],
            [lease.generation for lease in leases],
        ),
    ).fetchall()
    return {job_id for (job_id,) in rows}
