"""The OpenAPI document checked against the served admin API by Schemathesis: every
operation, valid and invalid inputs generated from the document (a fixed seed, few
examples: deterministic and well under a minute), no 5xx, every response matching
the document."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from metering.admin.routes import admin_endpoints
from tests.admin.conftest import Admin

pytestmark = pytest.mark.slow

EXAMPLES = 25  # per operation and mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_admin_operation_conforms(admin: Admin) -> None:
    schema = schemathesis.openapi.from_url(admin.url + "/admin/v1/openapi.json")
    auth = {"authorization": f"Bearer {admin.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {(op.method.upper(), op.path) for op in operations}
    assert ("POST", "/admin/v1/keys") in paths and ("GET", "/admin/v1/exports/{month}") in paths
    served = {(e.method, "/admin/v1" + e.path) for e in admin_endpoints()}
    assert served <= paths  # every admin route is in the document, and checked
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=admin.url, headers=auth)
                case.validate_response(response, checks=CHECKS)

            check()
