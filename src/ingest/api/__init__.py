"""The HTTP API (FastAPI): `create_app()` builds it; `ingest serve` runs it with uvicorn."""
