"""A separate `ingest worker` process for the tests that run the production shape (a broker between the
CLI and the workers), and the CLI run against the same environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INGEST = str(Path(sys.executable).parent / "ingest")
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`ingest worker` in a session of its own (its forks go with it), stopped as a supervisor would:
    SIGTERM to the group, SIGKILL if it has not stopped after 20 s."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [INGEST, "worker", "--processes", "1", "--threads", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_ingest(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INGEST, *args], check=False, env=env, capture_output=True, text=True, timeout=timeout
    )
