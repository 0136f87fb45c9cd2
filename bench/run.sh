#!/bin/sh
# One command: the peers' environment (bench/.venv-peers, never the project's), then the benchmark.
# Copies, not hardlinks: some sandboxes refuse to open multiply-linked files.
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make install
[ -x bench/.venv-peers/bin/python ] || .venv/bin/uv venv -q --python 3.11 bench/.venv-peers
.venv/bin/uv pip install -q --link-mode copy --python bench/.venv-peers/bin/python -r bench/peers/requirements.txt
exec .venv/bin/python bench/peers.py "$@"
