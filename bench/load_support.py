"""Helpers of bench/load.py: child processes that are always stopped, the generated corpus, the children's
environment, and a few statistics. Nothing here talks to anything but loopback."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

INGEST = str(Path(sys.executable).parent / "ingest")

# Variables of the outer shell that would point the children elsewhere, spend money, or reach a network.
_DROPPED_PREFIXES = ("INGEST_", "MOCKS_")
_DROPPED = {
    "DATABASE_URL",
    "REDIS_URL",
    "RABBITMQ_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "LLAMA_CLOUD_API_KEY",
    "LLAMA_CLOUD_BASE_URL",
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "PROMETHEUS_MULTIPROC_DIR",
}
_PROXIES = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}


def child_env(settings: dict[str, str]) -> dict[str, str]:
    """os.environ without anything that names a database, broker, vendor or proxy, plus `settings`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_DROPPED_PREFIXES) and name not in _DROPPED and name not in _PROXIES
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(settings)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if the bench process dies (even by SIGKILL), so an `ingest`
    process never outlives the run. Linux only; elsewhere the `finally` of the bench is the only stop."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Child:
    """One `ingest` command run in its own session (a terminal's Ctrl-C reaches the bench only, which then
    stops the children in order), its output in a log file."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], cwd: Path, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            list(args),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Children start before the bench starts any thread, so preexec_fn is safe here.
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited ({self.proc.returncode}); its log ends:\n{self.output()[-3000:]}"
            )

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace_s: float = 30) -> None:
        """SIGTERM to the command (Dramatiq and uvicorn pass it on and finish what they hold), then
        SIGKILL to its whole session after `grace_s`. Only processes this bench started are signalled."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the session (forked workers)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self._log.close()


def wait_until(check: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class RssSampler:
    """Peak resident memory of the API and of the worker tree, sampled by `sample()`."""

    def __init__(self, children: dict[str, Child]) -> None:
        self.children = children
        self.peak_mb: dict[str, float] = {name: 0.0 for name in children}

    def sample(self) -> None:
        for name, child in self.children.items():
            total = 0
            for proc in child.tree():
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += proc.memory_info().rss
            self.peak_mb[name] = max(self.peak_mb[name], total / 2**20)


# --- the corpus -------------------------------------------------------------------------------------------
# Common words with a random number each: no two documents share text, so no vector comes from the reuse
# cache and every chunk costs a real embedding call (of the mock embedder).
WORDS = [
    "harbor",
    "lantern",
    "quartz",
    "meadow",
    "cobalt",
    "ember",
    "falcon",
    "glacier",
    "juniper",
    "kelp",
    "lagoon",
    "marble",
    "nectar",
    "orchid",
    "pepper",
    "quiver",
    "raven",
    "saffron",
    "timber",
    "umber",
    "velvet",
    "walnut",
    "yarrow",
    "zephyr",
    "anchor",
    "basalt",
    "cedar",
    "dune",
    "estuary",
    "fjord",
    "granite",
    "heron",
    "iris",
    "jasper",
    "kestrel",
    "lichen",
    "mistral",
    "nimbus",
    "opal",
    "prairie",
    "quarry",
    "reef",
    "sierra",
    "tundra",
    "upland",
    "vale",
    "willow",
    "xenon",
    "yucca",
    "zinnia",
    "amber",
    "birch",
    "canyon",
    "delta",
]

KINDS = ("txt", "md", "html")
MEDIA_TYPES = {"txt": "text/plain", "md": "text/markdown", "html": "text/html"}


@dataclass(frozen=True, slots=True)
class Document:
    index: int
    filename: str
    media_type: str
    body: bytes


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(f"{rng.choice(WORDS)}{rng.randrange(10**5)}" for _ in range(words)).capitalize() + "."


def _paragraphs(rng: random.Random, total_words: int) -> list[str]:
    paragraphs, left = [], total_words
    while left > 0:
        size = min(left, rng.randint(30, 90))
        sentences = []
        while size > 0:
            n = min(size, rng.randint(8, 20))
            sentences.append(_sentence(rng, n))
            size -= n
        paragraphs.append(" ".join(sentences))
        left -= sum(len(s.split()) for s in sentences)
    return paragraphs


def generate(count: int, *, seed: int, min_words: int = 60, max_words: int = 400) -> list[Document]:
    """`count` small distinct documents, a third each of plain text, Markdown and HTML, in memory."""
    rng = random.Random(seed)
    docs = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        title = f"Load test document {n} (seed {seed})"
        paras = _paragraphs(rng, rng.randint(min_words, max_words))
        if kind == "txt":
            text = title + "\n\n" + "\n\n".join(paras) + "\n"
        elif kind == "md":
            parts = [f"# {title}"]
            for i, para in enumerate(paras):
                parts += [f"## Part {i + 1}", para]
            text = "\n\n".join(parts) + "\n"
        else:
            body = "".join(f"<h2>Part {i + 1}</h2><p>{para}</p>\n" for i, para in enumerate(paras))
            text = (
                f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
                f"<body><h1>{title}</h1>\n{body}</body></html>\n"
            )
        docs.append(Document(n, f"load-{n:05d}.{kind}", MEDIA_TYPES[kind], text.encode()))
    return docs


# --- statistics -------------------------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


# --- leftovers of a run that was killed outright (SIGKILL, power cut) --------------------------------------
RUN_PREFIX = "ingest-load-"
MARKER = "load-run.json"


def write_marker(folder: Path, namespace: str, redis_url: str) -> None:
    """Who owns `folder`: this process, and the Redis namespace it uses."""
    (folder / MARKER).write_text(
        json.dumps({"pid": os.getpid(), "namespace": namespace, "redis_url": redis_url})
    )


def reap_stale_runs(delete_keys: Callable[[str, str], int]) -> list[str]:
    """Stop the PostgreSQL, delete the Redis keys and the folder of earlier runs of this bench whose own
    process is gone (its `finally` never ran). Only folders holding our marker are touched, and only
    the postmaster whose pid file lives in such a folder is signalled. The API and worker processes of
    such a run are already gone: they receive SIGTERM when the bench dies."""
    reaped = []
    for folder in Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}*"):
        marker = folder / MARKER
        try:
            owner = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if psutil.pid_exists(int(owner["pid"])):
            continue  # a run in progress (ours or another user's)
        pid_file = folder / "pgdata" / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
            proc = psutil.Process(pid)
            if str(folder / "pgdata") in " ".join(proc.cmdline()):
                proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
                proc.wait(timeout=30)
        except (OSError, ValueError, IndexError, psutil.Error):
            pass
        # Best effort: the keys of a dead run hold nothing of value.
        with contextlib.suppress(Exception):
            delete_keys(owner["redis_url"], owner["namespace"])
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(str(folder))
    return reaped
