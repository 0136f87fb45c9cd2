"""The workers: threads, retries, time limits, and what many workers over a broker need (leases, sweeps,
fair sharing between users)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator


class WorkerSettings(BaseModel):
    """How stages run, and how work lost with a worker or a message comes back."""

    # --- workers ------------------------------------------------------------------------------------
    worker_threads: int = Field(default=4, ge=1, description="In-process worker threads (embedded mode).")
    job_max_retries: int = Field(default=5, ge=0, description="Dramatiq retries for a failing stage.")
    job_time_limit_s: int = Field(default=600, ge=1, description="Hard limit for one stage.")

    # --- production: many workers over a broker (docs/deploy.md, docs/operations.md) ---------------
    broker_maintenance_chance: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Redis: broker commands out of a million that also return the messages of workers"
        " silent for broker_heartbeat_timeout_s to their queue (and drop expired dead letters).",
    )
    broker_dead_message_ttl_s: int = Field(
        default=7 * 86400,
        ge=60,
        description="Redis: how long a given-up message stays in its dead-letter queue (<queue>.XQ).",
    )
    sweep_interval_s: float = Field(
        default=10,
        gt=0,
        description="How often one worker (under a PostgreSQL lock) re-sends jobs whose lease lapsed or whose"
        " message was lost, and admits jobs held back by user_active_jobs.",
    )
    lease_s: float = Field(
        default=20,
        gt=0,
        description="A worker holds each stage it runs under a lease its heartbeat renews; a lease not renewed"
        " this long (worker dead, frozen or cut off) has lapsed, and the next sweep re-sends the stage.",
    )
    lease_heartbeat_s: float = Field(
        default=5,
        gt=0,
        description="How often each worker process renews the leases it holds (one statement); at most half"
        " of lease_s.",
    )
    requeue_idle_s: int | None = Field(
        default=None,
        ge=1,
        description="A queued, running or due deferred job untouched this long has lost its message and"
        " is sent again. Must exceed job_time_limit_s, so a stage still at work is never doubled; unset,"
        " job_time_limit_s + 5 minutes.",
    )
    user_active_jobs: int = Field(
        default=32,
        ge=1,
        description="Jobs of one user in the broker's queue or running at once; the rest wait in the"
        " database, so one user's big upload cannot starve another's single file.",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="`ingest worker` serves Prometheus metrics of all its processes on this port"
        " (every interface). Unset: not served.",
    )

    @model_validator(mode="after")
    def _requeue_after_the_time_limit(self) -> Self:
        # Re-sending a job whose stage may still be running would call a paid vendor twice at once.
        if self.requeue_idle_s is not None and self.requeue_idle_s <= self.job_time_limit_s:
            raise ValueError(
                f"requeue_idle_s ({self.requeue_idle_s}) must exceed job_time_limit_s ({self.job_time_limit_s})"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_the_lease(self) -> Self:
        # One late heartbeat must not let a live worker's lease lapse.
        if self.lease_heartbeat_s * 2 > self.lease_s:
            raise ValueError(
                f"lease_heartbeat_s ({self.lease_heartbeat_s}) must be at most half of lease_s ({self.lease_s})"
            )
        return self

    @property
    def requeue_after_s(self) -> int:
        return self.requeue_idle_s or self.job_time_limit_s + 300
