"""Circuits in Redis: one JSON value per service, changed under WATCH so concurrent updates never interleave.

The transition runs in Python (the pure functions of `router.circuit`), not in a Lua copy of them: WATCH
makes the read-modify-write optimistic, and a writer that lost the race reads again and re-decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import redis

from router.circuit import CLOSED, Circuit

T = TypeVar("T")


class RedisCircuitStore:
    def __init__(self, client: redis.Redis, *, namespace: str = "ingest") -> None:
        self._client = client
        self._namespace = namespace

    def _key(self, service: str) -> str:
        return f"{self._namespace}:circuit:{service}"

    @staticmethod
    def _decode(raw: bytes | str | None) -> Circuit:
        return CLOSED if raw is None else Circuit.from_dict(json.loads(raw))

    def read(self, service: str) -> Circuit:
        return self._decode(self._client.get(self._key(service)))

    def update(self, service: str, change: Callable[[Circuit], tuple[T, Circuit]]) -> T:
        key = self._key(service)
        with self._client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    current = self._decode(pipe.get(key))
                    value, after = change(current)
                    if after == current:
                        pipe.unwatch()
                        return value
                    pipe.multi()
                    pipe.set(key, json.dumps(after.as_dict()))
                    pipe.execute()
                    return value
                except redis.WatchError:
                    continue  # another process changed it first: decide again on what it wrote
