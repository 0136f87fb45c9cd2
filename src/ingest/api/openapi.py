"""The OpenAPI document, as the API really answers: FastAPI documents a 422 `HTTPValidationError` on every
route with parameters, but malformed input answers 400 here (see `ingest.api.errors`), and 422 means a
file that cannot be parsed. The generated 422s are taken out; the ones a route declares itself stay."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_GENERATED = "#/components/schemas/HTTPValidationError"


def without_generated_422(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with FastAPI's generated 422 responses and their component schemas removed."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            content = responses.get("422", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref")
            if ref == _GENERATED:
                del responses["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = without_generated_422(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
