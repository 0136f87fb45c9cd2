# The commands of the README: `make demo` (ingest the samples and search them), `make test`, `make lint`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUERY ?= The Docker daemon makes the volumes available by bind-mounting the provided paths
PYTEST_ARGS ?=

.PHONY: demo test lint install bench bench-peers bench-load clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	# Bytecode compiled now: where PYTHONDONTWRITEBYTECODE is set, every command would otherwise compile
	# what it imports from source, each time (about half of a read-only command's start).
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]"
	$(BIN)/python -m compileall -q src mocks
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/ingest add samples
	$(BIN)/ingest search "$(QUERY)" -k 3

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Style, types and the layers' import contracts (pyproject.toml); CI runs it before the tests.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python bench/pipeline.py

# 1,000 documents through the HTTP API and 2 `ingest worker` processes, on loopback (mock mode, free):
# documents/s, upload p50/p95, and that every document completed exactly once. docs/load-test.md.
bench-load: install
	$(BIN)/python bench/load.py $(LOAD_ARGS)

# Against LlamaIndex and LangChain, in their own environment (bench/.venv-peers); writes docs/benchmarks.md.
bench-peers: install
	bench/run.sh

clean:
	rm -rf $(VENV) .pytest_cache
