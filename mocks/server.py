"""Both vendor stand-ins on one port: `ingest mocks serve` (point OPENAI_BASE_URL at `http://HOST:PORT/v1`
and LLAMA_CLOUD_BASE_URL at `http://HOST:PORT`).

Each vendor app stays a complete FastAPI app with its own state, fault injector and error shapes, and
owns its paths as the real service spells them (OpenAI `/v1/...`, LlamaParse `/api/v1/...` and
`/api/v2/...`). The front app only routes by path prefix and hands the request over unchanged (a
Starlette `Mount` would strip the prefix from the path the vendor app sees), and runs both lifespans.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Route

from mocks import openai_api
from mocks.faults import FaultPlan


def _llamaparse_app(plan: FaultPlan | None) -> FastAPI | None:
    # The LlamaParse stand-in is its own module; the OpenAI one serves alone until it exists.
    if importlib.util.find_spec("mocks.llamaparse_api") is None:
        return None
    from mocks import llamaparse_api

    return llamaparse_api.create_app(plan)


def create_app(plan: FaultPlan | None = None) -> Starlette:
    """The combined app; `app.state.openai` and `app.state.llamaparse` are the vendor apps (for tests)."""
    plan = plan or FaultPlan.from_env()
    vendors: dict[str, FastAPI] = {"/v1": openai_api.create_app(plan)}
    llamaparse = _llamaparse_app(plan)
    if llamaparse is not None:
        vendors["/api"] = llamaparse

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for sub in vendors.values():
                await stack.enter_async_context(sub.router.lifespan_context(sub))
            yield

    # A Route whose endpoint is an ASGI app passes the scope through untouched, full path included.
    routes = [Route(f"{prefix}/{{rest:path}}", endpoint=sub) for prefix, sub in vendors.items()]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.openai = vendors["/v1"]
    app.state.llamaparse = llamaparse
    return app


def serve(host: str = "127.0.0.1", port: int = 8900) -> None:
    uvicorn.run(create_app(), host=host, port=port, log_level="info")
