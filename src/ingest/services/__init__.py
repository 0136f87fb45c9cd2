"""Application services: what the API and the CLI do, over the foundation and the workers."""
