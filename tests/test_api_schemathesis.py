"""Property-based run of the whole OpenAPI document with schemathesis against a live server with a
tiny model: no operation may answer 5xx, and answers must match the documented status codes,
content types and schemas. Bounded: a few examples per operation, small images, a short queue."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)


KEY = "schemathesis-key-1"
EXAMPLES = 10
CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def live_server(studio_factory):
    argv = ["--nowebui", "--api-key", KEY, "--max-pixels", str(64 * 64), "--max-images", "1", "--max-queue", "3",
            "--max-queue-per-user", "2"]
    return studio_factory(argv, name="schemathesis", own_ckpt_dir=True)


def _run_operation(operation, mode) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS, timeout=120)

    run()


@pytest.mark.timeout(900)
def test_no_server_errors_and_documented_answers(live_server) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.base_url}/openapi.json", headers={"X-API-Key": KEY})
    failures, tested = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/v1/events":  # the all-jobs event stream never ends, by design
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _run_operation(operation, mode)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect all failures, then report
                failures.append(f"{operation.label} ({mode.value}): {exc}")
        tested.append(operation.label)
    assert len(tested) >= 38
    assert not failures, "\n\n".join(failures)
