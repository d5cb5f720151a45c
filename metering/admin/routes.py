"""Every admin endpoint, in the order the OpenAPI document lists them."""

from __future__ import annotations

from metering.admin.endpoint import Endpoint


def admin_endpoints() -> list[Endpoint]:
    from metering.admin import budgets_routes, keys_routes, prices_routes, reports_routes

    return [
        *keys_routes.ENDPOINTS,
        *budgets_routes.ENDPOINTS,
        *reports_routes.ENDPOINTS,
        *prices_routes.ENDPOINTS,
    ]
