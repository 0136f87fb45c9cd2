"""`ingest worker`'s process supervision: one Dramatiq worker command per process, restarted when it dies.

Dramatiq's own CLI stops all its worker processes when one exits unexpectedly ("Worker with PID … exited
unexpectedly. Shutting down…") and does not restart it. So `ingest worker --processes N` runs N Dramatiq
commands of one worker process each, every one in its own process group (the supervisor forwards signals;
a command gets SIGTERM if the supervisor dies), and watches them: when one dies
(a SIGKILL, the out-of-memory killer, a crash), whatever is left of its group is killed and it is started
again, while the others carry on. Its unacknowledged messages come back through the broker, as after any
worker death. A command that dies again soon after starting waits longer each time (up to a minute), so a
worker that cannot start does not spin; one that cannot import its code stops them all. SIGTERM and
SIGINT stop every command gracefully (Dramatiq's shutdown: messages in progress finish), SIGHUP makes each
reload; the supervisor returns once all stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

import structlog

from workers.messages import CALLBACK_QUEUE, INGEST_QUEUE

log = structlog.get_logger(__name__)

POLL_S = 0.2
# A command that ran this long before dying is restarted at once; sooner, after a growing delay.
HEALTHY_AFTER_S = 30.0
MAX_RESTART_DELAY_S = 60.0
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RET_IMPORT = 2  # Dramatiq's exit code when the actors' modules fail to import
_PR_SET_PDEATHSIG = 1


def restart_delay(previous: float, ran_s: float) -> float:
    """Seconds to wait before starting again a command that died after running `ran_s` seconds."""
    if ran_s >= HEALTHY_AFTER_S:
        return 0.0
    return min(MAX_RESTART_DELAY_S, max(1.0, previous * 2))


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (Linux's PR_SET_PDEATHSIG; elsewhere a
    supervisor killed outright leaves its commands running until they are stopped)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Slot:
    """One worker command: its process, when it started, and when it may start again."""

    index: int
    argv: Sequence[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay_s: float = 0.0
    due_at: float = 0.0
    restarts: int = field(default=0)

    def start(self) -> None:
        # Its own process group (the whole group is cleaned up if the command dies), told to stop should the
        # supervisor die without stopping it.
        self.proc = subprocess.Popen(self.argv, env=self.env, process_group=0, preexec_fn=_stop_with_parent)
        self.started_at = time.monotonic()
        log.info("worker_process_started", slot=self.index, pid=self.proc.pid, restarts=self.restarts)

    def reap(self) -> None:
        """Kill what is left of a dead command's group (a worker process whose parent was killed)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class Supervisor:
    def __init__(self, commands: Sequence[tuple[Sequence[str], dict[str, str]]]) -> None:
        self.slots = [Slot(i, argv, env) for i, (argv, env) in enumerate(commands)]
        self.stopping = False
        self.exit_code = 0

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGHUP:
            self.stopping = True
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._forward) for sig in FORWARDED}
        try:
            for slot in self.slots:
                slot.start()
            while not self.stopping or any(s.proc is not None and s.proc.poll() is None for s in self.slots):
                self._watch(time.monotonic())
                time.sleep(POLL_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code

    def _watch(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None:
                if not self.stopping and now >= slot.due_at:
                    slot.start()
                continue
            code = slot.proc.poll()
            if code is None:
                continue
            slot.reap()
            if self.stopping:
                continue
            if code == RET_IMPORT:  # the code cannot be loaded: starting it again cannot help
                log.error("worker_process_cannot_start", slot=slot.index, exit_code=code)
                self.exit_code = code
                self._forward(signal.SIGTERM, None)
                continue
            ran_s = now - slot.started_at
            slot.delay_s = restart_delay(slot.delay_s, ran_s)
            slot.due_at = now + slot.delay_s
            slot.restarts += 1
            slot.proc = None
            log.warning(
                "worker_process_died",
                slot=slot.index,
                exit_code=code,
                ran_s=round(ran_s, 1),
                restart_in_s=slot.delay_s,
            )


def worker_commands(
    processes: int, threads: int, env: dict[str, str], *, serve_metrics: bool, callback_threads: int
) -> list[tuple[list[str], dict[str, str]]]:
    """One Dramatiq command of one worker process per process wanted (see `workers.__main__`), each taking
    the ingestion queue only, and one more process that only delivers callbacks (a slow receiver then
    holds none of the ingestion threads). Only the first runs the process serving the summed metrics
    (`INGEST_WORKER_METRICS_PORT`)."""
    base = [sys.executable, "-m", "workers", "workers.process:start_worker_process", "--processes", "1"]
    ingestion = [*base, "--threads", str(threads), "--queues", INGEST_QUEUE]
    metrics = ["--fork-function", "workers.process:serve_metrics"] if serve_metrics else []
    # The ingestion processes start no callback threads of their own (workers.middleware.callback_workers).
    ingestion_env = env | {"INGEST_CALLBACK_WORKER_THREADS": "0"}
    commands = [([*ingestion, *metrics] if i == 0 else ingestion, ingestion_env) for i in range(processes)]
    callbacks = [*base, "--threads", str(max(callback_threads, 1)), "--queues", CALLBACK_QUEUE]
    return [*commands, (callbacks, env)]


def supervise(commands: Sequence[tuple[Sequence[str], dict[str, str]]]) -> int:
    """Run every command, restart any that dies, stop them all on SIGTERM/SIGINT; the exit code."""
    return Supervisor(commands).run()
