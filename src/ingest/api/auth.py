"""`Authorization: Bearer <key>` → the key's user. Keys are looked up by their hash; admins may switch modes.

`current_user` is async (its look-up goes to the thread pool) so that the user it binds to structlog's
context stays bound for the rest of the request, the request log line included.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ingest.api.errors import Forbidden
from ingest.api.state import ApiState, api_state
from ingest.errors import Unauthorized
from ingest.store.users import User, user_for_key
from workers.runtime import Runtime

# auto_error=False: a missing key is our own 401 with the JSON error body, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="A key from `ingest keys create --user NAME`.")


def _lookup(rt: Runtime, key: str) -> User | None:
    with rt.pool.connection() as conn:
        return user_for_key(conn, key)


async def current_user(
    state: Annotated[ApiState, Depends(api_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    user = await run_in_threadpool(_lookup, state.rt, credentials.credentials)
    if user is None:
        raise Unauthorized("the API key is not valid")
    structlog.contextvars.bind_contextvars(user=user.name)
    return user


async def optional_user(
    state: Annotated[ApiState, Depends(api_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User | None:
    """The key's user on routes open without a key (which show more to an admin); a bad key is still 401."""
    if credentials is None or not credentials.credentials:
        return None
    return await current_user(state, credentials)


def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise Forbidden("this needs an admin key (ingest keys create --user NAME --admin)")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]
OptionalUser = Annotated[User | None, Depends(optional_user)]
