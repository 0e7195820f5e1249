"""A bounded schemathesis run against the real service with each role's token (both stores).

Every operation of the OpenAPI document gets a few generated requests that fit its schema and a
few that do not, sent with the token of each role over loopback to the served app; any 5xx, any
status or media type the document does not declare fails the test. Bounded: a fixed seed, a few
examples per operation and mode, no shrinking; the schema is loaded once per store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from tests.functional.hardening.conftest import Target

ROLES: Final = ("service", "operator", "admin_a", "viewer_a")
SEED: Final = 2026
EXAMPLES: Final = 2  # per operation, mode and role
CHECKS: Final = [not_a_server_error, status_code_conformance, content_type_conformance]
SKIPPED: Final = frozenset({"/metrics"})  # Prometheus text; nothing to generate


@pytest.fixture(scope="module")
def schema(target: Target) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{target.live.base_url}/openapi.json")


Operation = APIOperation[Any, Any, Any, Any]


def _operations(schema: BaseSchema) -> Iterator[Operation]:
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document is invalid: {result}"
        operation = result.ok()
        if operation.path not in SKIPPED:
            yield operation


def _fuzz(operation: Operation, mode: GenerationMode, base_url: str, token: str) -> None:
    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def attempt(case: Case[Operation]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        response = case.call(base_url=base_url, headers=headers, timeout=20)
        case.validate_response(response, checks=CHECKS, headers=headers)

    attempt()


@pytest.mark.parametrize("role", ROLES)
def test_the_schema_holds_under_fuzzing(target: Target, schema: BaseSchema, role: str) -> None:
    failures = []
    for operation in _operations(schema):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, target.live.base_url, target.tokens[role])
            except Unsatisfiable:
                continue  # no request can break this operation's schema (e.g. a path string, no query)
            except Exception as exc:  # noqa: BLE001 - every failing operation is reported, not just the first
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert failures == [], "\n\n".join(failures)
