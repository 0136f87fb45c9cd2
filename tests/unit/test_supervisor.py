"""The worker supervisor's rules, over plain processes: restart what dies, back off what keeps dying,
stop everything on SIGTERM, and give up on a command that cannot import its code."""

from __future__ import annotations

import sys
from pathlib import Path

from workers.supervisor import (
    HEALTHY_AFTER_S,
    MAX_RESTART_DELAY_S,
    Supervisor,
    restart_delay,
    worker_commands,
)

# First run: note it and die. Second run: note it, then ask the supervisor (our parent) to stop, and
# stop with it when it passes the SIGTERM on.
FLAKY = """
import os, signal, sys, time
log = sys.argv[1]
with open(log, "a") as f:
    f.write("start\\n")
runs = open(log).read().count("start")
if runs == 1:
    sys.exit(1)
os.kill(os.getppid(), signal.SIGTERM)
time.sleep(60)
"""


def test_restart_delay_grows_for_a_command_that_keeps_dying() -> None:
    delays = []
    delay = 0.0
    for _ in range(8):
        delay = restart_delay(delay, ran_s=0.5)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 32, MAX_RESTART_DELAY_S, MAX_RESTART_DELAY_S]
    assert restart_delay(MAX_RESTART_DELAY_S, ran_s=HEALTHY_AFTER_S) == 0  # it ran well: at once


def test_a_command_that_dies_is_started_again_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    steady = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor([([sys.executable, "-c", FLAKY, str(log)], {}), (steady, {})])
    assert supervisor.run() == 0
    assert log.read_text().count("start") == 2
    assert [slot.restarts for slot in supervisor.slots] == [1, 0]
    assert all(slot.proc is not None and slot.proc.poll() is not None for slot in supervisor.slots)


def test_a_command_that_cannot_import_its_code_stops_the_supervisor() -> None:
    steady = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor([([sys.executable, "-c", "raise SystemExit(2)"], {}), (steady, {})])
    assert supervisor.run() == 2
    assert supervisor.slots[0].restarts == 0


def test_ingest_worker_runs_callbacks_in_a_process_of_their_own() -> None:
    commands = worker_commands(2, 4, {"A": "1"}, serve_metrics=True, callback_threads=3)
    ingestion, callbacks = commands[:2], commands[2]
    assert len(commands) == 3
    for argv, env in ingestion:
        assert argv[argv.index("--queues") + 1] == "ingest" and argv[argv.index("--threads") + 1] == "4"
        assert env == {
            "A": "1",
            "INGEST_CALLBACK_WORKER_THREADS": "0",
        }  # no callback threads beside ingestion
    assert "--fork-function" in ingestion[0][0] and "--fork-function" not in ingestion[1][0]
    argv, env = callbacks
    assert argv[argv.index("--queues") + 1] == "callbacks" and argv[argv.index("--threads") + 1] == "3"
    assert env == {"A": "1"}
