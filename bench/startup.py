"""Start-up time of the `ingest` command: `--help`, `--version` and `status`, each run N times as separate
processes (the way a user runs them); prints the median and the slowest, in seconds.

    .venv/bin/python bench/startup.py [N]

`status` runs against a throwaway INGEST_HOME with the embedded PostgreSQL already started by a first,
unmeasured run, so it measures the command, not initdb.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INGEST = str(Path(sys.executable).parent / "ingest")


def timed(args: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([INGEST, *args], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with tempfile.TemporaryDirectory(prefix="ingest-startup-") as home:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"INGEST_HOME": home}
        subprocess.run([INGEST, "status"], env=env, check=True, capture_output=True)  # initdb, migrations
        for args in (["--help"], ["--version"], ["status"]):
            times = timed(args, env, runs)
            print(
                f"ingest {' '.join(args):<10} median {statistics.median(times):.3f} s  max {max(times):.3f} s"
            )


if __name__ == "__main__":
    main()
