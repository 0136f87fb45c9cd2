"""What the batch route saves on a corpus: the same files ingested twice in real mode against the OpenAI
stand-in, through the embeddings endpoint and with `--when-cheapest`, each into a fresh INGEST_HOME
(embedded PostgreSQL). Prints, per route, the tokens the stand-in billed and what the ledger charged.

    .venv/bin/python bench/batch_saving.py ../shared/corpus-sample/{pdf,docx,html,md,txt}
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import uvicorn

from mocks import server
from mocks.faults import FaultPlan

INGEST = str(Path(sys.executable).parent / "ingest")


def serve(app: object) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # type: ignore[arg-type]
    threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not srv.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([INGEST, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):  # 1: some file refused (an .odt, say); the rest was ingested
        raise SystemExit(done.stdout + done.stderr)
    return done.stdout


def main(paths: list[str]) -> None:
    app = server.create_app(FaultPlan())
    base = serve(app)
    results = {}
    for route in ("sync", "batch"):
        with tempfile.TemporaryDirectory(prefix=f"batch-saving-{route}-") as home:
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
            }
            run(env, "mode", "set", "real", "--service", "openai")
            extra = ["--when-cheapest"] if route == "batch" else []
            summary = run(env, "add", *paths, *extra)
            report = json.loads(run(env, "costs", "--json"))
            results[route] = (
                summary.splitlines()[0],
                Decimal(report["services"]["openai"]["spent_usd"]),
                report,
            )
    openai_app = app.state.openai
    sync_tokens = openai_app.state.ledger.prompt_tokens
    batch_tokens = openai_app.state.batches.billed_tokens
    sync_usd, batch_usd = results["sync"][1], results["batch"][1]
    print(f"files: {results['sync'][0]} (sync) / {results['batch'][0]} (batch)")
    print(f"sync:  {sync_tokens} tokens billed by the endpoint, ledger ${sync_usd}")
    print(
        f"batch: {batch_tokens} tokens billed by {len(openai_app.state.batches.batches)} batch(es), ledger ${batch_usd}"
    )
    saved = results["batch"][2]["batch_saved"]
    print(
        f"saved: ${saved['saved_usd']} on {saved['chunks']} chunks; batch/sync = {batch_usd / sync_usd:.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
