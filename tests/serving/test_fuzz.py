"""Fuzzing from the OpenAPI document (schemathesis) against a real uvicorn process: valid and
invalid requests for every documented operation, a bounded number of examples each, and not
one 5xx. Hypothesis runs derandomized, so a failure reproduces.

(schemathesis' own pytest integration, ``schemathesis.pytest.from_fixture``, does not run on
pytest 9 here: it reads ``node._nodeid``. Each operation's strategy is driven with ``@given``.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.integration

# Examples per operation and generation mode (6 operations x 2 modes); hypothesis stops
# earlier where the inputs run out. ~10 s here.
MAX_EXAMPLES = 100


def test_no_server_errors(served_champion: Any, http: Any) -> None:
    schema = schemathesis.openapi.from_url(f"{served_champion.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/score",
        "/v1/score/batch",
        "/v1/model",
    }
    calls: list[tuple[str, int]] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                response = case.call(headers={"X-API-Key": http.key}, timeout=30)
                calls.append((case.path, response.status_code))
                case.validate_response(response, checks=[not_a_server_error])

            try:
                fuzz()
            except Unsatisfiable:
                # No invalid request exists for an operation without inputs (GET /healthz).
                assert mode is GenerationMode.NEGATIVE, operation.path
    statuses = {status for _, status in calls}
    assert not {s for s in statuses if s >= 500}
    assert {200, 422} <= statuses  # both valid and refused requests were sent
    scored = [s for path, s in calls if path == "/v1/score"]
    assert scored.count(200) >= 5, scored
