"""What the app's lifespan opens and the routes use, reached through the request instead of globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from workers.runtime import Runtime

if TYPE_CHECKING:
    from ingest.api.metrics import Metrics
    from ingest.api.request_limits import RateLimiter


@dataclass(frozen=True, slots=True)
class ApiState:
    rt: Runtime
    limiter: RateLimiter
    metrics: Metrics


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def runtime(request: Request) -> Runtime:
    return api_state(request).rt
