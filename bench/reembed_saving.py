"""What `ingest reembed --when-cheapest` saves on a corpus: the same files ingested in real mode against the
OpenAI stand-in (text-embedding-3-small), then re-embedded into text-embedding-3-large twice, each in a
fresh INGEST_HOME (embedded PostgreSQL): once through the embeddings endpoint, once through the Batch API.
Prints, per route, the quote, the tokens the stand-in billed for the run and what the ledger charged.

    .venv/bin/python bench/reembed_saving.py ../shared/corpus-sample/{pdf,docx,html,md,txt}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.batch_saving import serve
from mocks import server
from mocks.faults import FaultPlan

INGEST = str(Path(sys.executable).parent / "ingest")
TARGET = ("text-embedding-3-large", "256")


def run(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run([INGEST, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode not in ok:
        raise SystemExit(done.stdout + done.stderr)
    return done.stdout


def main(paths: list[str]) -> None:
    app = server.create_app(FaultPlan())
    base = serve(app)
    openai = app.state.openai.state
    for route in ("sync", "batch"):
        with tempfile.TemporaryDirectory(prefix=f"reembed-saving-{route}-") as home:
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("INGEST_", "MOCKS_")) and k != "DATABASE_URL"
            }
            env |= {
                "INGEST_HOME": home,
                "OPENAI_API_KEY": "sk-standin-key",
                "OPENAI_BASE_URL": f"{base}/v1",
                "INGEST_OPENAI_EMBEDDING_DIMENSIONS": "256",
                "INGEST_SWEEP_INTERVAL_S": "0.5",
                "INGEST_BATCH_POLL_S": "1",
            }
            run(env, "mode", "set", "real", "--service", "openai")
            run(env, "add", *paths, ok=(0, 1))  # 1: some file refused (an .odt, say); the rest was ingested
            extra = ["--when-cheapest"] if route == "batch" else []
            model = ["--model", TARGET[0], "--dimensions", TARGET[1]]
            quote = run(env, "reembed", *model, *extra, "--estimate")
            endpoint_before, batch_before = openai.ledger.prompt_tokens, openai.batches.billed_tokens
            began = time.monotonic()
            run(env, "reembed", *model, *extra, "--yes")
            took = time.monotonic() - began
            billed = (openai.ledger.prompt_tokens - endpoint_before) + (
                openai.batches.billed_tokens - batch_before
            )
            report = json.loads(run(env, "costs", "--json"))
            charged, saved = report["stages"]["openai:reembed"]["actual_usd"], report["batch_saved"]
            print(f"--- {route}")
            print(quote.strip())
            print(f"the run, from start to switch: {took:.1f} s")
            print(f"billed by the stand-in for the run: {billed} tokens; ledger (stage reembed): ${charged}")
            print(f"batch_saved: {saved}")


if __name__ == "__main__":
    main(sys.argv[1:])
