"""The load test's verdict: what the database must say after N uploads, each document completed exactly once
(one job, every chunk once with one vector in its space, every billable call charged once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql


@dataclass
class Upload:
    index: int
    user: str
    status: int = 0
    latency_s: float = 0.0
    attempts: int = 0
    rate_limited: int = 0
    document_id: str | None = None
    job_id: str | None = None
    duplicate: bool = False
    error: str | None = None


@dataclass
class Check:
    name: str
    expected: object
    actual: object

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


def check_database(
    conninfo: str, uploads: list[Upload], expected: int
) -> tuple[list[Check], dict[str, object]]:
    checks: list[Check] = []
    figures: dict[str, object] = {}
    uploaded_ids = {u.document_id for u in uploads if u.document_id}
    with psycopg.connect(conninfo) as conn:

        def one(query: str, *params: object) -> Any:
            return conn.execute(query, params).fetchone()[0]

        doc_ids = {str(r[0]) for r in conn.execute("SELECT id FROM documents")}
        checks.append(Check("documents in the database", expected, len(doc_ids)))
        checks.append(
            Check("documents the API answered that are not in the database", 0, len(uploaded_ids - doc_ids))
        )
        checks.append(
            Check(
                "documents without exactly one job",
                0,
                one(
                    "SELECT count(*) FROM (SELECT d.id FROM documents d LEFT JOIN jobs j ON j.document_id = d.id"
                    " GROUP BY d.id HAVING count(j.id) <> 1) x"
                ),
            )
        )
        checks.append(
            Check(
                "documents not completed",
                0,
                one("SELECT count(*) FROM documents WHERE status <> 'completed'"),
            )
        )
        job_states = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
        checks.append(Check("jobs completed", expected, job_states.get("completed", 0)))
        checks.append(Check("jobs failed", 0, job_states.get("failed", 0)))
        checks.append(
            Check(
                "completed jobs without finished_at or stage done",
                0,
                one(
                    "SELECT count(*) FROM jobs WHERE status = 'completed' AND (finished_at IS NULL OR stage <> 'done')"
                ),
            )
        )
        # Each document's chunks are ordinals 0..total-1, each once, each in an embedding space.
        checks.append(
            Check(
                "documents whose chunks are not 0..chunks_total-1 once each, all embedded",
                0,
                one(
                    "SELECT count(*) FROM jobs j LEFT JOIN LATERAL ("
                    "  SELECT count(*) n, count(DISTINCT ordinal) d, min(ordinal) lo, max(ordinal) hi,"
                    "         count(space_id) e FROM chunks c WHERE c.document_id = j.document_id) c ON true"
                    " WHERE j.chunks_total IS NULL OR j.chunks_total < 1 OR c.n <> j.chunks_total"
                    "   OR c.d <> j.chunks_total OR c.lo <> 0 OR c.hi <> j.chunks_total - 1 OR c.e <> j.chunks_total"
                ),
            )
        )
        chunks = one("SELECT count(*) FROM chunks")
        figures["chunks"] = chunks
        figures["tokens"] = one("SELECT coalesce(sum(token_count), 0) FROM chunks")
        # Exactly one vector per chunk, in the space the chunk names, and none else.
        vectors = 0
        missing = extra = 0
        for space_id, table in conn.execute("SELECT id, table_name FROM embedding_spaces").fetchall():
            t = sql.Identifier(table)
            vectors += one(sql.SQL("SELECT count(*) FROM {}").format(t))
            missing += one(
                sql.SQL(
                    "SELECT count(*) FROM chunks c WHERE c.space_id = %s AND NOT EXISTS"
                    " (SELECT 1 FROM {} v WHERE v.chunk_id = c.id)"
                ).format(t),
                space_id,
            )
            extra += one(
                sql.SQL(
                    "SELECT count(*) FROM {} v JOIN chunks c ON c.id = v.chunk_id"
                    " WHERE c.space_id IS DISTINCT FROM %s"
                ).format(t),
                space_id,
            )
        checks.append(Check("vectors stored (one per chunk)", chunks, vectors))
        checks.append(Check("chunks without their vector", 0, missing))
        checks.append(Check("vectors in a space their chunk does not name", 0, extra))
        # The ledger: every billable call (shadow-priced in mock mode) recorded once and charged.
        checks.append(
            Check(
                "ledger entries not charged",
                0,
                one("SELECT count(*) FROM cost_entries WHERE state <> 'charged'"),
            )
        )
        checks.append(
            Check(
                "documents without exactly one parse in the ledger",
                0,
                one(
                    "SELECT count(*) FROM documents d WHERE (SELECT count(*) FROM cost_entries e"
                    " WHERE e.document_id = d.id AND e.service = 'llamaparse') <> 1"
                ),
            )
        )
        checks.append(
            Check(
                "documents whose embedded tokens in the ledger differ from their chunks' tokens",
                0,
                one(
                    "SELECT count(*) FROM documents d WHERE"
                    " (SELECT coalesce(sum((e.usage->>'tokens')::bigint), 0) FROM cost_entries e"
                    "   WHERE e.document_id = d.id AND e.service = 'openai')"
                    " <> (SELECT coalesce(sum(token_count), 0) FROM chunks c WHERE c.document_id = d.id)"
                ),
            )
        )
        figures["jobs_with_more_than_one_attempt"] = one("SELECT count(*) FROM jobs WHERE attempts > 1")
        figures["shadow_cost_usd"] = float(
            one("SELECT coalesce(sum(amount_usd), 0) FROM cost_entries WHERE simulated")
        )
        figures["real_cost_usd"] = float(
            one("SELECT coalesce(sum(amount_usd), 0) FROM cost_entries WHERE NOT simulated")
        )
        figures["last_completion_epoch"] = float(one("SELECT extract(epoch FROM max(finished_at)) FROM jobs"))
        finished = [
            float(r[0])
            for r in conn.execute(
                "SELECT extract(epoch FROM finished_at) FROM jobs WHERE finished_at IS NOT NULL ORDER BY 1"
            )
        ]
        figures["completions_epoch"] = finished
    return checks, figures
