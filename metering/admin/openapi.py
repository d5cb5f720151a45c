"""The admin API's OpenAPI 3.1 document, made from the route table: each endpoint's
scope, query parameters, body model (its pydantic JSON schema) and response schema;
every error in SPEC §4's shape."""

from __future__ import annotations

import re
from typing import Any

from metering.admin.endpoint import Endpoint
from metering.storage.admin_tokens import SCOPES

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "type", "status_code", "is_bifrost_error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
            },
        },
        "type": {"type": "string"},
        "status_code": {"type": "integer"},
        "is_bifrost_error": {"type": "boolean"},
    },
}
_ERRORS = {
    "400": "bad input: nothing was changed",
    "401": "no admin token, an unknown or revoked one, or a virtual key",
    "403": "the token lacks the route's scope",
    "404": "no such resource (or the admin API is off)",
    "409": "the change contradicts what is stored",
    "413": "the body is too large",
    "422": "the Idempotency-Key was used for another request",
    "503": "the metering database is unavailable",
}


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in re.findall(r"{(\w+)}", path)
    ]


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    parameters = _path_params(endpoint.path)
    parameters += [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "description": p.description,
            "schema": p.schema(),
        }
        for p in endpoint.query
    ]
    if endpoint.method == "POST":
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same key and body within 24 h: the stored answer, once",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        )
    content = (
        {"text/csv": {"schema": {"type": "string"}}}
        if endpoint.csv
        else {"application/json": {"schema": endpoint.response}}
    )
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": f"{endpoint.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', endpoint.path)}",
        "security": [{"adminToken": [endpoint.scope]}],
        "description": f"Needs the scope `{endpoint.scope}`.",
        "parameters": parameters,
        "responses": {
            str(endpoint.status): {"description": "done", "content": content},
            **{
                code: {
                    "description": why,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for code, why in _ERRORS.items()
            },
        },
    }
    if endpoint.body is not None:
        schema = endpoint.body.model_json_schema()
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return operation


def openapi_document(endpoints: list[Endpoint]) -> dict[str, Any]:
    from metering import __version__

    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault("/admin/v1" + endpoint.path, {})[endpoint.method.lower()] = _operation(
            endpoint
        )
    paths["/admin/v1/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "get_openapi",
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "metering admin API",
            "version": __version__,
            "description": "Keys, teams, customers, budgets, spend, exports, prices, "
            "reconcile and the audit log (README, Admin API).",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an sk-adm-… token; scopes: " + ", ".join(SCOPES),
                }
            },
        },
    }
