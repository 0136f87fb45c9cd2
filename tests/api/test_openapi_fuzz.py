"""Schemathesis against /openapi.json over real HTTP: valid and invalid requests to every operation, and
none is answered with a 5xx. Bounded (a few examples per operation) so it runs in seconds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.api.conftest import LiveServer, new_key

EXAMPLES_PER_OPERATION = 15


@pytest.fixture
def live(start_server: Callable[..., LiveServer]) -> LiveServer:
    # High limits, so the fuzzer explores past 429; a small size limit, so 413 is reachable.
    return start_server(UPLOADS_PER_MINUTE="10000", SEARCHES_PER_MINUTE="10000", MAX_UPLOAD_MB="1")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_operation_answers_5xx(live: LiveServer, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    # An admin key reaches every route, PUT /v1/router included.
    headers = new_key(live, "fuzzer", admin=True)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    untouched: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=live.url, headers=headers, timeout=30)
            # Readiness is 503 by design while a service cannot serve (the fuzzer may switch one to real
            # mode without a key); every other 5xx is a bug.
            allowed = response.status_code == 503 and case.operation.label == "GET /health/ready"
            assert response.status_code < 500 or allowed, (
                f"{case.operation.label}: {response.status_code} {response.text}"
            )

        try:
            no_server_error()
        except Unsatisfiable:
            # Nothing to send wrong: an operation without parameters or body (e.g. GET /health/live).
            assert mode is GenerationMode.NEGATIVE, operation.label
            untouched.append(operation.label)
    assert len(untouched) < len(operations) / 2, untouched
