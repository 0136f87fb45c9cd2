"""Where circuit breakers keep their state: Redis when configured, else PostgreSQL."""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from ingest.config import Settings
from router.circuit import CircuitStore


def circuit_store(settings: Settings, pool: ConnectionPool) -> CircuitStore:
    if settings.redis_url:
        import redis

        from router.backends.redis_circuits import RedisCircuitStore

        return RedisCircuitStore(
            redis.Redis.from_url(settings.redis_url), namespace=settings.broker_namespace
        )
    from router.backends.postgres_circuits import PostgresCircuitStore

    return PostgresCircuitStore(pool)
