"""Start-up time of the everyday `ingest` commands, each run N times as separate processes (the way a user
runs them); prints the median and the slowest wall-clock time, and the median CPU time (user + system, the
figure a loaded machine inflates least), in seconds.

    .venv/bin/python bench/startup.py [N] [--baseline DIR]

The commands run against a throwaway INGEST_HOME and its embedded PostgreSQL, made by a first, unmeasured
run (initdb, migrations). Each database command is measured two ways:

- `server up`: another process holds the embedded server (as a running worker or `ingest serve` does),
  so the command only connects;
- `cold`: nothing holds it, so the command starts PostgreSQL and stops it when it exits.

`--baseline DIR` also runs every command from another source tree (`git archive main src mocks | tar -x
-C DIR`), interleaved with this one so both see the same load, and prints the ratio of the medians: on a
shared machine only a ratio measured in one run means anything.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
# What the `ingest` script runs.
MAIN = "from ingest.cli.main import app; app(prog_name='ingest')"

COMMANDS = (
    ["--help"],
    ["--version"],
    ["status"],
    ["documents", "list"],
    ["keys", "list"],
    ["budget", "show"],
    ["costs"],
    ["verify"],
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


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds (user + system) of the command's process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", MAIN, *args], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


class Holder:
    """A process holding the embedded server, so the commands measured only join it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "-c", HOLDER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def __enter__(self) -> Holder:
        assert self.process.stdout is not None
        self.process.stdout.readline()  # the server is up
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()  # it was the last holder: the server stops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=int, nargs="?", default=10)
    parser.add_argument("--baseline", type=Path, help="another source tree to compare with")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingest-startup-") as home:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
        env["INGEST_HOME"] = home
        trees = {"this": env}
        if options.baseline:
            base = options.baseline.resolve()
            trees["baseline"] = env | {"PYTHONPATH": f"{base / 'src'}{os.pathsep}{base}"}
        subprocess.run([PYTHON, "-c", MAIN, "status"], env=env, check=True, capture_output=True)  # initdb
        times: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        for _ in range(options.runs):
            for args in COMMANDS:
                name = " ".join(args)
                if args[0].startswith("--"):  # no database
                    for tree, tree_env in trees.items():
                        times.setdefault((name, "", tree), []).append(timed(args, tree_env))
                    continue
                with Holder(env):
                    for tree, tree_env in trees.items():
                        times.setdefault((name, "server up", tree), []).append(timed(args, tree_env))
                for tree, tree_env in trees.items():
                    times.setdefault((name, "cold", tree), []).append(timed(args, tree_env))
        for (command, where, tree), found in times.items():
            wall = [w for w, _ in found]
            line = f"ingest {command:<15} {where:<10} {tree:<9} median {statistics.median(wall):.3f} s"
            line += f"  max {max(wall):.3f} s  cpu {statistics.median(c for _, c in found):.3f} s"
            if tree == "this" and options.baseline:
                base = [w for w, _ in times[(command, where, "baseline")]]
                line += f"  (baseline / this: {statistics.median(base) / statistics.median(wall):.2f})"
            print(line)


if __name__ == "__main__":
    main()
