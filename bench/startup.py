"""Start-up time of the everyday `ingest` commands, each run N times as separate processes (the way a user
runs them); prints the median and the slowest, in seconds.

    .venv/bin/python bench/startup.py [N]

The commands run against a throwaway INGEST_HOME and its embedded PostgreSQL, made by a first, unmeasured
run (initdb, migrations). Two rounds, interleaved so both see the same machine load:

- `up`: another process holds the embedded server (as a running worker or `ingest serve` does), so the
  command only connects;
- `cold`: nothing holds it, so each command starts PostgreSQL and stops it when it exits.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
INGEST = str(BIN / "ingest")

COMMANDS = (
    ["--help"],
    ["--version"],
    ["status"],
    ["documents", "list"],
    ["keys", "list"],
    ["budget", "show"],
    ["costs"],
    ["mode", "show"],
)

# Holds the embedded server until its stdin closes.
HOLDER = """
import sys
from ingest.config import Settings
from ingest.db import embedded
with embedded.hold(Settings().pgdata_dir):
    print("up", flush=True)
    sys.stdin.read()
"""


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([INGEST, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with tempfile.TemporaryDirectory(prefix="ingest-startup-") as home:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"INGEST_HOME": home}
        subprocess.run([INGEST, "status"], env=env, check=True, capture_output=True)  # initdb, migrations
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(runs):
            for args in COMMANDS:
                name = " ".join(args)
                if args[0].startswith("--"):  # no database
                    times.setdefault((name, ""), []).append(timed(args, env))
                    continue
                holder = subprocess.Popen(
                    [str(BIN / "python"), "-c", HOLDER],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                assert holder.stdout is not None and holder.stdin is not None
                holder.stdout.readline()  # the server is up
                times.setdefault((name, "server up"), []).append(timed(args, env))
                holder.stdin.close()
                holder.wait()  # it was the last holder: the server stops
                times.setdefault((name, "cold"), []).append(timed(args, env))
        for (command, where), found in times.items():
            print(
                f"ingest {command:<15} {where:<10} median {statistics.median(found):.3f} s"
                f"  max {max(found):.3f} s"
            )


if __name__ == "__main__":
    main()
