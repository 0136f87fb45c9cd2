"""Document ingestion and embedding pipeline."""

__version__ = "0.1.0"
