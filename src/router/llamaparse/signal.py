"""A cross-process wake-up for LlamaParse webhooks: the API's webhook endpoint calls `notify(job_id)`, and
the worker waiting on that parse job returns from `wait(job_id, timeout_s)` with True.

`job_signal` picks the transport from settings:

- Redis (`REDIS_URL` set): one list per job. `notify` pushes an item (which expires), `wait` pops it
  with BLPOP. A list, not pub/sub: a message published before the worker subscribes is gone, while an
  item pushed before the worker pops stays there for it, so an event never loses a race with its wait.
  A wait (up to a minute) is cut into BLPOPs of at most 2 s: one that outlasts the client's socket
  timeout (redis-py's default is 5 s) raises TimeoutError instead of waiting. Redis away during a wait
  turns it into a plain sleep: the caller looks at the job itself afterwards, as after a lost event.
- PostgreSQL otherwise: NOTIFY on one channel. Each process that waits holds one LISTEN connection
  (a daemon thread) that keeps the job ids it hears for `memory_s`, so an event heard before its wait
  still counts. Events sent while no LISTEN is in place (before the first wait, or while the listener
  reconnects) cannot be heard; a wait that may have missed one returns False as soon as LISTEN is back,
  and the caller looks at the job itself.

A wake-up is only a hint. The parser reads the job's status after every wait and never trusts the
event, and a lost wake-up costs one fallback interval of its polling, never the document.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import psycopg
import structlog
from psycopg import sql

if TYPE_CHECKING:
    import redis
    from psycopg_pool import ConnectionPool

    from ingest.config import Settings

log = structlog.get_logger(__name__)

CHANNEL = "ingest_llamaparse_events"
# Longer than any job waits for its event: a job deadline is a third of a stage's 10-minute limit.
MEMORY_S = 600.0


class JobSignal(Protocol):
    def notify(self, vendor_job_id: str) -> None: ...

    def wait(self, vendor_job_id: str, timeout_s: float) -> bool:
        """True as soon as an event for the job arrives; False when timeout_s passes without one."""
        ...

    def close(self) -> None: ...


def job_signal(settings: Settings, pool: ConnectionPool) -> JobSignal:
    if settings.redis_url:
        import redis

        return RedisJobSignal(redis.Redis.from_url(settings.redis_url), namespace=settings.broker_namespace)
    return PostgresJobSignal(pool)


class RedisJobSignal:
    # BLPOP's timeout 0 means "forever", and Redis rounds tiny ones down to it: never block for less.
    _MIN_BLOCK_S = 0.01
    # One BLPOP blocks at most this long (or half of a shorter socket timeout): well inside the 5 s
    # socket timeout of redis-py's default client.
    _MAX_BLOCK_S = 2.0

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "ingest",
        memory_s: float = MEMORY_S,
        max_block_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis as redis_lib

        self._client = client
        self._namespace = namespace
        self._memory_s = max(1, round(memory_s))
        self._max_block_s = max_block_s if max_block_s is not None else _longest_block(client)
        self._errors: tuple[type[Exception], ...] = (redis_lib.RedisError,)
        self._sleep = sleep
        self._clock = clock

    def _key(self, vendor_job_id: str) -> str:
        return f"{self._namespace}:llamaparse:event:{vendor_job_id}"

    def notify(self, vendor_job_id: str) -> None:
        key = self._key(vendor_job_id)
        # One transaction: an item without its expiry would stay forever if nobody waits for it.
        with self._client.pipeline() as pipe:
            pipe.rpush(key, 1)
            pipe.expire(key, self._memory_s)
            pipe.execute()

    def wait(self, vendor_job_id: str, timeout_s: float) -> bool:
        key = self._key(vendor_job_id)
        deadline = self._clock() + max(timeout_s, 0)
        try:
            if timeout_s <= 0:
                return self._client.lpop(key) is not None
            # One BLPOP blocking past the client's socket timeout fails with TimeoutError (after 5 s
            # with redis-py's default) instead of waiting: block in slices the socket outlasts.
            while (left := deadline - self._clock()) > 0:
                block = max(min(left, self._max_block_s), self._MIN_BLOCK_S)
                if self._client.blpop([key], timeout=block) is not None:
                    return True
            return False
        except self._errors as exc:
            # A wake-up is only a hint: without Redis, wait as a poll timer would, then the caller looks.
            left = max(deadline - self._clock(), 0.0)
            log.warning("llamaparse_signal_unavailable", job_id=vendor_job_id, error=str(exc), sleep_s=left)
            self._sleep(left)
            return False

    def close(self) -> None:
        self._client.close()


def _longest_block(client: redis.Redis) -> float:
    """How long one BLPOP may block: a slice well inside redis-py's default socket timeout (5 s; the
    default is not in the pool's connection_kwargs), or inside a shorter one set in the URL or kwargs."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
    socket_timeout = kwargs.get("socket_timeout")
    if not socket_timeout:
        return RedisJobSignal._MAX_BLOCK_S
    # Half of it: Redis ends a blocked call up to a tick (100 ms by default) late, and the answer travels.
    return max(min(RedisJobSignal._MAX_BLOCK_S, socket_timeout / 2), RedisJobSignal._MIN_BLOCK_S)


class PostgresJobSignal:
    """NOTIFY through the pool; LISTEN on a connection of its own, held by a thread from the first wait on."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        channel: str = CHANNEL,
        memory_s: float = MEMORY_S,
        poll_s: float = 0.2,
        reconnect_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._channel = channel
        self._memory_s = memory_s
        self._poll_s = poll_s  # how often the listener looks up from the socket to see if it should stop
        self._reconnect_s = reconnect_s
        self._clock = clock
        self._heard: OrderedDict[str, float] = OrderedDict()  # job id -> when heard, oldest first
        self._changed = threading.Condition()
        self._epoch = 0  # how many times LISTEN was put in place; 0: not yet
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def notify(self, vendor_job_id: str) -> None:
        # Delivered when the pool's transaction commits, as the connection goes back.
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (self._channel, vendor_job_id))

    def wait(self, vendor_job_id: str, timeout_s: float) -> bool:
        self._start()
        with self._changed:
            epoch = self._epoch
            if epoch == 0:
                # Not listening yet: whatever was sent so far went unheard. Return once LISTEN is in place.
                self._changed.wait_for(lambda: self._epoch != epoch, max(timeout_s, 0))
                return False
            # A new epoch means the connection was lost and remade: events of the gap went unheard.
            self._changed.wait_for(
                lambda: vendor_job_id in self._heard or self._epoch != epoch, max(timeout_s, 0)
            )
            return self._heard.pop(vendor_job_id, None) is not None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._poll_s + 5)

    def _start(self) -> None:
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="llamaparse-signal", daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                # Not a pool connection: it is held for the life of the process, blocked in LISTEN.
                conninfo = self._pool.conninfo  # a pool may be given a callable that makes it
                with psycopg.connect(conninfo() if callable(conninfo) else conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    with self._changed:
                        self._epoch += 1
                        self._changed.notify_all()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=self._poll_s):
                            self._heard_one(note.payload)
            except psycopg.Error as exc:
                log.warning("llamaparse_signal_listener_lost", error=str(exc), retry_s=self._reconnect_s)
                self._stop.wait(self._reconnect_s)

    def _heard_one(self, vendor_job_id: str) -> None:
        now = self._clock()
        with self._changed:
            self._heard[vendor_job_id] = now
            self._heard.move_to_end(vendor_job_id)
            # Every process hears every job's events: forget those nobody here waited for.
            while self._heard and next(iter(self._heard.values())) < now - self._memory_s:
                self._heard.popitem(last=False)
            self._changed.notify_all()
